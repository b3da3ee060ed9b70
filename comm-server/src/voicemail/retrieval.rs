//! Listening to a mailbox by phone: PIN, then each message with its menu.
//!
//! ```text
//!   EnterPin (prompt; keys until '#', 12 keys or a pause)
//!     --right--> Summary ("you have 2 new messages") --> Message(0)
//!     --wrong--> "PIN not correct" --> EnterPin, the third time --> Goodbye
//!   Message(i): announcement ("message from ... received ...") --> the message
//!     --played to the end (marked heard)--> Menu(i)
//!   Menu(i): 1 replay | 2 save --> Message(i+1) | 3 delete --> Message(i+1)
//!            | 4 call the caller back --> CallingBack(i)
//!            | '#' or no key --> Message(i+1); a key during Message(i) stops it and
//!            counts as the menu key
//!   CallingBack(i) --the host's call failed--> "could not call back" --> Menu(i)
//!                  (answered: the owner talks to the caller; retrieval is over)
//!   Message(past the last) --> "no more messages" --> Goodbye --> Ended (hang up)
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Audio, announcement, pin_matches};

/// Wrong PINs before the call ends.
pub const MAX_PIN_TRIES: u32 = 3;
/// Longest PIN accepted; entry completes at this many keys without '#'.
pub const MAX_PIN_DIGITS: usize = 12;
/// Time for the first key after a prompt, and between keys.
pub const KEY_TIMEOUT: Duration = Duration::from_secs(8);
/// Time for a menu key after the menu prompt, before moving to the next message.
pub const MENU_TIMEOUT: Duration = Duration::from_secs(8);

/// A message as retrieval needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub id: String,
    pub caller: String,
    pub created_at_ms: i64,
    pub heard: bool,
}

/// What the call task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetrievalAction {
    /// Play; report `handle_playback_finished(id)`.
    Play {
        id: u64,
        audio: Vec<Audio>,
    },
    StopPlayback,
    /// The owner heard this message to the end: it is no longer new.
    MarkHeard(String),
    /// Delete this message (row, then file).
    Delete(String),
    /// Call this number (the message's caller) and connect the owner to it; report
    /// `handle_call_back_failed` if it cannot be reached.
    CallBack(String),
    HangUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// The PIN prompt is playing (keys typed count already).
    PinPrompt {
        id: u64,
    },
    CollectPin {
        deadline: Instant,
    },
    /// "PIN not correct" is playing; then the PIN prompt again.
    WrongPin {
        id: u64,
    },
    Summary {
        id: u64,
    },
    Announcing {
        id: u64,
        index: usize,
    },
    PlayingMessage {
        id: u64,
        index: usize,
    },
    /// The message menu prompt is playing (a key acts at once).
    MenuPrompt {
        id: u64,
        index: usize,
    },
    Menu {
        index: usize,
        deadline: Instant,
    },
    /// "saved" / "deleted" is playing; then the next message.
    Confirming {
        id: u64,
        next: usize,
    },
    /// The host is calling message `index`'s caller.
    CallingBack {
        index: usize,
    },
    /// "could not call back" is playing; then the menu again.
    CallBackFailed {
        id: u64,
        index: usize,
    },
    Goodbye {
        id: u64,
    },
    Ended,
}

/// One owner listening to one mailbox.
#[derive(Debug)]
pub struct Retrieval {
    pin: String,
    /// The site's zone: message dates and times are announced in it.
    zone: chrono_tz::Tz,
    messages: Vec<Listing>,
    entered: String,
    tries: u32,
    state: State,
    next_play: u64,
    actions: VecDeque<RetrievalAction>,
}

fn prompts(names: &[&str]) -> Vec<Audio> {
    names.iter().map(|n| Audio::Prompt((*n).into())).collect()
}

impl Retrieval {
    /// Starts with the PIN prompt. `messages` are the mailbox's, new ones are played
    /// first, each group oldest first. Their times are announced in `zone`.
    pub fn new(pin: &str, mut messages: Vec<Listing>, zone: chrono_tz::Tz) -> Retrieval {
        messages.sort_by_key(|m| (m.heard, m.created_at_ms));
        let mut r = Retrieval {
            pin: pin.to_string(),
            zone,
            messages,
            entered: String::new(),
            tries: 0,
            state: State::Ended,
            next_play: 0,
            actions: VecDeque::new(),
        };
        let id = r.play(prompts(&["voicemail/enter-pin"]));
        r.state = State::PinPrompt { id };
        r
    }

    pub fn poll_action(&mut self) -> Option<RetrievalAction> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::CollectPin { deadline } | State::Menu { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    fn play(&mut self, audio: Vec<Audio>) -> u64 {
        self.next_play += 1;
        self.actions.push_back(RetrievalAction::Play {
            id: self.next_play,
            audio,
        });
        self.next_play
    }

    pub fn handle_playback_finished(&mut self, now: Instant, id: u64) {
        let playing = match &self.state {
            State::PinPrompt { id }
            | State::WrongPin { id }
            | State::Summary { id }
            | State::Announcing { id, .. }
            | State::PlayingMessage { id, .. }
            | State::MenuPrompt { id, .. }
            | State::Confirming { id, .. }
            | State::CallBackFailed { id, .. }
            | State::Goodbye { id } => *id,
            _ => return,
        };
        if playing != id {
            return; // a stopped prompt reporting late
        }
        match self.state.clone() {
            State::PinPrompt { .. } => {
                self.state = State::CollectPin {
                    deadline: now + KEY_TIMEOUT,
                }
            }
            State::WrongPin { .. } => {
                let id = self.play(prompts(&["voicemail/enter-pin"]));
                self.state = State::PinPrompt { id };
            }
            State::Summary { .. } => self.message(0),
            State::Announcing { index, .. } => {
                let audio = vec![Audio::Message(self.messages[index].id.clone())];
                let id = self.play(audio);
                self.state = State::PlayingMessage { id, index };
            }
            State::PlayingMessage { index, .. } => {
                self.heard(index);
                self.menu(index);
            }
            State::MenuPrompt { index, .. } => {
                self.state = State::Menu {
                    index,
                    deadline: now + MENU_TIMEOUT,
                }
            }
            State::Confirming { next, .. } => self.message(next),
            State::CallBackFailed { index, .. } => self.menu(index),
            State::Goodbye { .. } => {
                self.actions.push_back(RetrievalAction::HangUp);
                self.state = State::Ended;
            }
            _ => {}
        }
    }

    pub fn handle_digit(&mut self, now: Instant, digit: char) {
        match self.state.clone() {
            State::PinPrompt { .. } => {
                // Type-ahead: the PIN may be keyed over its prompt.
                self.actions.push_back(RetrievalAction::StopPlayback);
                self.state = State::CollectPin {
                    deadline: now + KEY_TIMEOUT,
                };
                self.pin_key(now, digit);
            }
            State::CollectPin { .. } => self.pin_key(now, digit),
            State::Announcing { index, .. }
            | State::PlayingMessage { index, .. }
            | State::MenuPrompt { index, .. } => {
                self.actions.push_back(RetrievalAction::StopPlayback);
                self.menu_key(index, digit);
            }
            State::Menu { index, .. } => self.menu_key(index, digit),
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::CollectPin { deadline } if deadline <= now => self.check_pin(),
            State::Menu { index, deadline } if deadline <= now => self.message(index + 1),
            _ => {}
        }
    }

    /// The call back to a message's caller could not be placed or was not answered.
    pub fn handle_call_back_failed(&mut self, _now: Instant) {
        if let State::CallingBack { index } = self.state {
            let id = self.play(prompts(&["voicemail/call-back-failed"]));
            self.state = State::CallBackFailed { id, index };
        }
    }

    /// The caller hung up.
    pub fn handle_caller_gone(&mut self, _now: Instant) {
        self.state = State::Ended;
    }

    fn pin_key(&mut self, now: Instant, digit: char) {
        if digit == '#' {
            self.check_pin();
            return;
        }
        self.entered.push(digit);
        if self.entered.len() >= MAX_PIN_DIGITS {
            self.check_pin();
        } else {
            self.state = State::CollectPin {
                deadline: now + KEY_TIMEOUT,
            };
        }
    }

    fn check_pin(&mut self) {
        let entered = std::mem::take(&mut self.entered);
        if pin_matches(&self.pin, &entered) {
            let new = self.messages.iter().filter(|m| !m.heard).count() as u32;
            let mut audio = match new {
                0 => prompts(&["voicemail/no-new-messages"]),
                n => {
                    let mut a = prompts(&["voicemail/you-have"]);
                    a.extend(
                        crate::media::prompt::number_prompts(n)
                            .into_iter()
                            .map(Audio::Prompt),
                    );
                    a.push(Audio::Prompt(
                        if n == 1 {
                            "voicemail/new-message"
                        } else {
                            "voicemail/new-messages"
                        }
                        .into(),
                    ));
                    a
                }
            };
            if self.messages.is_empty() {
                audio.push(Audio::Prompt("voicemail/goodbye".into()));
                let id = self.play(audio);
                self.state = State::Goodbye { id };
            } else {
                let id = self.play(audio);
                self.state = State::Summary { id };
            }
            return;
        }
        self.tries += 1;
        if self.tries >= MAX_PIN_TRIES {
            let id = self.play(prompts(&["voicemail/invalid-pin", "voicemail/goodbye"]));
            self.state = State::Goodbye { id };
        } else {
            let id = self.play(prompts(&["voicemail/invalid-pin"]));
            self.state = State::WrongPin { id };
        }
    }

    fn message(&mut self, index: usize) {
        let Some(m) = self.messages.get(index) else {
            let id = self.play(prompts(&[
                "voicemail/no-more-messages",
                "voicemail/goodbye",
            ]));
            self.state = State::Goodbye { id };
            return;
        };
        let audio = announcement(m.created_at_ms, &m.caller, self.zone)
            .into_iter()
            .map(Audio::Prompt)
            .collect();
        let id = self.play(audio);
        self.state = State::Announcing { id, index };
    }

    fn heard(&mut self, index: usize) {
        if let Some(m) = self.messages.get_mut(index)
            && !m.heard
        {
            m.heard = true;
            self.actions
                .push_back(RetrievalAction::MarkHeard(m.id.clone()));
        }
    }

    fn menu_key(&mut self, index: usize, digit: char) {
        match digit {
            '1' => {
                let audio = vec![Audio::Message(self.messages[index].id.clone())];
                let id = self.play(audio);
                self.state = State::PlayingMessage { id, index };
            }
            '2' => {
                self.heard(index);
                let id = self.play(prompts(&["voicemail/message-saved"]));
                self.state = State::Confirming {
                    id,
                    next: index + 1,
                };
            }
            '3' => {
                let removed = self.messages.remove(index);
                self.actions.push_back(RetrievalAction::Delete(removed.id));
                let id = self.play(prompts(&["voicemail/message-deleted"]));
                self.state = State::Confirming { id, next: index };
            }
            // Only a caller with a number can be called back.
            '4' if self.messages[index]
                .caller
                .bytes()
                .any(|b| b.is_ascii_digit()) =>
            {
                self.heard(index);
                let number = self.messages[index].caller.clone();
                self.actions.push_back(RetrievalAction::CallBack(number));
                self.state = State::CallingBack { index };
            }
            '#' => self.message(index + 1),
            // Not a menu key: say the menu again.
            _ => self.menu(index),
        }
    }

    fn menu(&mut self, index: usize) {
        let id = self.play(prompts(&["voicemail/message-menu"]));
        self.state = State::MenuPrompt { id, index };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::UTC;

    fn listing(id: &str, heard: bool, at: i64) -> Listing {
        Listing {
            id: id.into(),
            caller: "42".into(),
            created_at_ms: at,
            heard,
        }
    }

    fn drain(r: &mut Retrieval) -> Vec<RetrievalAction> {
        std::iter::from_fn(|| r.poll_action()).collect()
    }

    /// Plays every prompt to its end until something else is asked; returns what
    /// was played (flattened) and the other actions.
    fn run(r: &mut Retrieval, now: Instant) -> (Vec<Audio>, Vec<RetrievalAction>) {
        let (mut heard, mut other) = (Vec::new(), Vec::new());
        loop {
            let actions = drain(r);
            if actions.is_empty() {
                return (heard, other);
            }
            for a in actions {
                match a {
                    RetrievalAction::Play { id, audio } => {
                        heard.extend(audio);
                        r.handle_playback_finished(now, id);
                    }
                    a => other.push(a),
                }
            }
        }
    }

    fn keys(r: &mut Retrieval, now: Instant, keys: &str) {
        for k in keys.chars() {
            r.handle_digit(now, k);
        }
    }

    #[test]
    fn three_wrong_pins_say_goodbye_and_hang_up() {
        let now = crate::time::base_instant();
        let mut r = Retrieval::new("1234", vec![listing("a", false, 0)], UTC);
        run(&mut r, now);
        keys(&mut r, now, "1111#");
        run(&mut r, now);
        keys(&mut r, now, "12345#");
        run(&mut r, now);
        // The third try times out with nothing typed.
        let t = r.poll_timeout().unwrap();
        assert_eq!(t, now + KEY_TIMEOUT);
        r.handle_timeout(t);
        let (heard, other) = run(&mut r, t);
        assert_eq!(
            heard,
            prompts(&["voicemail/invalid-pin", "voicemail/goodbye"])
        );
        assert_eq!(other, [RetrievalAction::HangUp]);
        assert!(r.is_ended());
    }

    #[test]
    fn the_right_pin_plays_new_messages_first_and_the_menu_saves_and_deletes() {
        let now = crate::time::base_instant();
        let mut r = Retrieval::new(
            "1234",
            vec![listing("old", true, 1), listing("new", false, 2)],
            UTC,
        );
        drain(&mut r);
        keys(&mut r, now, "1234#"); // over the prompt: type-ahead
        let (heard, other) = run(&mut r, now);
        assert_eq!(
            other,
            [
                RetrievalAction::StopPlayback,
                RetrievalAction::MarkHeard("new".into())
            ]
        );
        assert_eq!(
            heard[..3],
            prompts(&["voicemail/you-have", "numbers/1", "voicemail/new-message"])
        );
        assert!(heard.contains(&Audio::Message("new".into())));
        assert!(!heard.contains(&Audio::Message("old".into())));
        assert_eq!(
            heard.last().unwrap(),
            &Audio::Prompt("voicemail/message-menu".into())
        );

        keys(&mut r, now, "3");
        let (heard, other) = run(&mut r, now);
        assert_eq!(other, [RetrievalAction::Delete("new".into())]);
        assert_eq!(heard[0], Audio::Prompt("voicemail/message-deleted".into()));
        assert!(
            heard.contains(&Audio::Message("old".into())),
            "then the saved one"
        );

        keys(&mut r, now, "2");
        let (heard, other) = run(&mut r, now);
        assert_eq!(
            other,
            [RetrievalAction::HangUp],
            "already heard: not marked again"
        );
        assert_eq!(
            heard,
            prompts(&[
                "voicemail/message-saved",
                "voicemail/no-more-messages",
                "voicemail/goodbye"
            ])
        );
        assert!(r.is_ended());
    }

    #[test]
    fn a_key_during_a_message_acts_at_once_and_no_key_moves_on() {
        let now = crate::time::base_instant();
        let mut r = Retrieval::new(
            "9",
            vec![listing("a", false, 1), listing("b", false, 2)],
            UTC,
        );
        drain(&mut r);
        r.handle_playback_finished(now, 1);
        keys(&mut r, now, "9#");
        // Summary and announcement play; stop before the message finishes.
        let a = drain(&mut r);
        let RetrievalAction::Play { id, .. } = &a[0] else {
            panic!("{a:?}")
        };
        r.handle_playback_finished(now, *id);
        let a = drain(&mut r);
        let RetrievalAction::Play { id: announce, .. } = &a[0] else {
            panic!("{a:?}")
        };
        r.handle_digit(now, '#');
        let a = drain(&mut r);
        assert_eq!(a[0], RetrievalAction::StopPlayback);
        r.handle_playback_finished(now, *announce); // the stopped one, late: ignored
        let RetrievalAction::Play { id: next, audio } = &a[1] else {
            panic!("{a:?}")
        };
        assert_eq!(audio[0], Audio::Prompt("voicemail/message-from".into()));
        r.handle_playback_finished(now, *next);
        // Message b played to its end, then no menu key: past the last message.
        let (_, other) = run(&mut r, now);
        assert_eq!(other, [RetrievalAction::MarkHeard("b".into())]);
        let t = r.poll_timeout().unwrap();
        r.handle_timeout(t);
        let (heard, other) = run(&mut r, t);
        assert_eq!(
            heard,
            prompts(&["voicemail/no-more-messages", "voicemail/goodbye"])
        );
        assert_eq!(other, [RetrievalAction::HangUp]);
    }

    #[test]
    fn an_empty_mailbox_says_so_and_goodbye() {
        let now = crate::time::base_instant();
        let mut r = Retrieval::new("1", vec![], UTC);
        run(&mut r, now);
        keys(&mut r, now, "1#");
        let (heard, other) = run(&mut r, now);
        assert_eq!(
            heard,
            prompts(&["voicemail/no-new-messages", "voicemail/goodbye"])
        );
        assert_eq!(other, [RetrievalAction::HangUp]);
    }

    #[test]
    fn four_calls_the_caller_back_and_a_failure_returns_to_the_menu() {
        let now = crate::time::base_instant();
        let unknown = Listing {
            caller: "alice".into(),
            ..listing("b", false, 2)
        };
        let mut r = Retrieval::new("1", vec![listing("a", false, 1), unknown], UTC);
        drain(&mut r);
        keys(&mut r, now, "1#");
        let (_, other) = run(&mut r, now);
        assert_eq!(
            other,
            [
                RetrievalAction::StopPlayback,
                RetrievalAction::MarkHeard("a".into())
            ]
        );
        keys(&mut r, now, "4");
        assert_eq!(drain(&mut r), [RetrievalAction::CallBack("42".into())]);
        assert_eq!(r.poll_timeout(), None, "waits for the call");
        r.handle_digit(now, '3'); // keys while it is dialled change nothing
        assert!(drain(&mut r).is_empty());
        r.handle_call_back_failed(now);
        let (heard, _) = run(&mut r, now);
        assert_eq!(
            heard,
            prompts(&["voicemail/call-back-failed", "voicemail/message-menu"])
        );
        // The menu goes on: next message, whose caller has no number to call.
        keys(&mut r, now, "#");
        let (heard, _) = run(&mut r, now);
        assert_eq!(heard[1], Audio::Prompt("voicemail/unknown-caller".into()));
        keys(&mut r, now, "4");
        let (heard, other) = run(&mut r, now);
        assert_eq!(
            heard,
            prompts(&["voicemail/message-menu"]),
            "no number: the menu again"
        );
        assert!(other.is_empty());
    }
}
