//! Leaving a message: greeting, beep, recording, then keep or discard.
//!
//! ```text
//!   Greeting --finished / any key--> Beep --finished--> Starting --started--> Recording
//!   Recording --'#' / silence / max length / caller hung up--> Stopping
//!   Stopping --recorded(duration)--> Store (>= min length) | Discard (shorter)
//!            --> Goodbye ("message saved", "goodbye") --> Ended (hang up)
//!   Starting --failed--> Goodbye
//!
//!   With review, a long enough message goes from Stopping to the review menu instead:
//!   Review ("listen 1, record again 2, send 3") --no key--> ReviewWait --5 s--> Review
//!     1 --> Listening (the message) --finished--> Review
//!     2 --> Discard, Beep (a new take; the first is never listed)
//!     3, or the menu asked three times unanswered --> Store, Goodbye
//! ```
//!
//! The caller hanging up ends the recording but not the deposit: what was said up to
//! then is a message, so the host still reports `handle_recorded` and acts on
//! `Store`/`Discard` (no prompts are played to a caller who is gone). Hanging up during
//! review sends the message too: a message is never lost.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Audio, BEEP, DEFAULT_GREETING};

/// The review menu's prompt.
pub const REVIEW_MENU: &str = "voicemail/review-menu";
/// Time for a key after the review menu before it is said again.
pub const REVIEW_WAIT: Duration = Duration::from_secs(5);
/// The review menu is said this many times; unanswered, the message is sent.
pub const MAX_REVIEW_MENUS: u32 = 3;

/// A mailbox's deposit settings, from its `[[mailbox]]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositSettings {
    /// Prompt name of the greeting; the default one when `None`.
    pub greeting: Option<String>,
    pub max_message: Duration,
    pub min_message: Duration,
    /// Mean absolute sample level under which audio is silence.
    pub silence_level: u16,
    /// This much silence ends the recording.
    pub silence_end: Duration,
    /// Offer the review menu (listen, record again, send) before storing.
    pub review: bool,
}

/// What the call task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositAction {
    /// Play; report `handle_playback_finished(id)`.
    Play {
        id: u64,
        audio: Vec<Audio>,
    },
    /// Record what the caller says, reporting silence of `silence_end` under
    /// `silence_level`; report `handle_recording_started` or `handle_recording_failed`.
    StartRecording {
        silence_level: u16,
        silence_end: Duration,
    },
    /// Stop the recording; report `handle_recorded` once the file is complete.
    StopRecording,
    /// Keep the recorded message (move it into the mailbox, then list it).
    Store {
        duration: Duration,
    },
    /// Throw the recording away (too short, or it failed).
    Discard,
    HangUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting {
        id: u64,
    },
    Beep {
        id: u64,
    },
    Starting,
    Recording {
        until: Instant,
    },
    Stopping,
    /// The review menu is playing; `asked` times so far.
    Review {
        id: u64,
        asked: u32,
    },
    ReviewWait {
        until: Instant,
        asked: u32,
    },
    /// The message is played back to the caller.
    Listening {
        id: u64,
        asked: u32,
    },
    Goodbye {
        id: u64,
    },
    Ended,
}

/// One caller leaving one message.
#[derive(Debug)]
pub struct Deposit {
    settings: DepositSettings,
    state: State,
    caller_gone: bool,
    /// Length of the take under review.
    take: Option<Duration>,
    next_play: u64,
    actions: VecDeque<DepositAction>,
}

impl Deposit {
    /// Starts with the greeting.
    pub fn new(settings: DepositSettings) -> Deposit {
        let greeting = settings
            .greeting
            .clone()
            .unwrap_or_else(|| DEFAULT_GREETING.to_string());
        let mut d = Deposit {
            settings,
            state: State::Ended,
            caller_gone: false,
            take: None,
            next_play: 0,
            actions: VecDeque::new(),
        };
        let id = d.play(vec![Audio::Prompt(greeting)]);
        d.state = State::Greeting { id };
        d
    }

    pub fn poll_action(&mut self) -> Option<DepositAction> {
        self.actions.pop_front()
    }

    /// When the recording reaches its maximum length.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Recording { until } | State::ReviewWait { until, .. } => Some(until),
            _ => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// True while a recording is running or finishing: the host must still report
    /// `handle_recorded`, even after the caller hung up.
    pub fn awaits_recording(&self) -> bool {
        matches!(
            self.state,
            State::Starting | State::Recording { .. } | State::Stopping
        )
    }

    fn play(&mut self, audio: Vec<Audio>) -> u64 {
        self.next_play += 1;
        self.actions.push_back(DepositAction::Play {
            id: self.next_play,
            audio,
        });
        self.next_play
    }

    fn beep(&mut self) {
        let id = self.play(vec![Audio::Prompt(BEEP.into())]);
        self.state = State::Beep { id };
    }

    pub fn handle_playback_finished(&mut self, now: Instant, id: u64) {
        match self.state {
            State::Greeting { id: g } if g == id => self.beep(),
            State::Beep { id: b } if b == id => {
                self.actions.push_back(DepositAction::StartRecording {
                    silence_level: self.settings.silence_level,
                    silence_end: self.settings.silence_end,
                });
                self.state = State::Starting;
            }
            State::Review { id: r, asked } if r == id => {
                self.state = State::ReviewWait {
                    until: now + REVIEW_WAIT,
                    asked,
                }
            }
            State::Listening { id: l, asked } if l == id => self.review(asked),
            State::Goodbye { id: g } if g == id => self.end(),
            _ => {}
        }
    }

    pub fn handle_recording_started(&mut self, now: Instant) {
        if self.state == State::Starting {
            self.state = State::Recording {
                until: now + self.settings.max_message,
            };
            if self.caller_gone {
                self.stop();
            }
        }
    }

    pub fn handle_recording_failed(&mut self, _now: Instant) {
        if self.awaits_recording() {
            self.actions.push_back(DepositAction::Discard);
            self.goodbye(false);
        }
    }

    /// `#` ends the recording; any key skips the greeting (callers who know it). In
    /// review, 1 listens, 2 records again and 3 sends, at once (over the menu too).
    pub fn handle_digit(&mut self, _now: Instant, digit: char) {
        match self.state {
            State::Greeting { .. } => self.beep(),
            State::Recording { .. } if digit == '#' => self.stop(),
            State::Review { asked, .. }
            | State::ReviewWait { asked, .. }
            | State::Listening { asked, .. } => match digit {
                '1' => {
                    let id = self.play(vec![Audio::Recording]);
                    self.state = State::Listening { id, asked };
                }
                '2' => {
                    self.take = None;
                    self.actions.push_back(DepositAction::Discard);
                    self.beep();
                }
                '3' => self.send(),
                _ => {}
            },
            _ => {}
        }
    }

    /// The media layer heard `silence_end` of silence.
    pub fn handle_silence(&mut self, _now: Instant) {
        if matches!(self.state, State::Recording { .. }) {
            self.stop();
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Recording { until } if until <= now => self.stop(),
            State::ReviewWait { until, asked } if until <= now => self.review(asked),
            _ => {}
        }
    }

    /// The caller hung up: a running recording ends here and is still kept, and so
    /// is a message under review.
    pub fn handle_caller_gone(&mut self, _now: Instant) {
        self.caller_gone = true;
        match self.state {
            State::Recording { .. } => self.stop(),
            State::Starting | State::Stopping => {}
            State::Review { .. } | State::ReviewWait { .. } | State::Listening { .. } => {
                self.send()
            }
            _ => self.state = State::Ended,
        }
    }

    /// The recording file is complete (`Some(length)`) or failed (`None`).
    pub fn handle_recorded(&mut self, _now: Instant, length: Option<Duration>) {
        if !self.awaits_recording() {
            return;
        }
        match length {
            Some(d) if d >= self.settings.min_message => {
                self.take = Some(d);
                if self.settings.review && !self.caller_gone {
                    self.review(0);
                } else {
                    self.send();
                }
            }
            _ => {
                self.actions.push_back(DepositAction::Discard);
                self.goodbye(false);
            }
        }
    }

    /// Says the review menu, or sends the message once it went unanswered enough.
    fn review(&mut self, asked: u32) {
        if asked >= MAX_REVIEW_MENUS {
            return self.send();
        }
        let id = self.play(vec![Audio::Prompt(REVIEW_MENU.into())]);
        self.state = State::Review {
            id,
            asked: asked + 1,
        };
    }

    /// Stores the take and says goodbye.
    fn send(&mut self) {
        if let Some(duration) = self.take.take() {
            self.actions.push_back(DepositAction::Store { duration });
        }
        self.goodbye(true);
    }

    fn stop(&mut self) {
        self.actions.push_back(DepositAction::StopRecording);
        self.state = State::Stopping;
    }

    fn goodbye(&mut self, saved: bool) {
        if self.caller_gone {
            self.state = State::Ended;
            return;
        }
        let mut audio = Vec::new();
        if saved {
            audio.push(Audio::Prompt("voicemail/message-saved".into()));
        }
        audio.push(Audio::Prompt("voicemail/goodbye".into()));
        let id = self.play(audio);
        self.state = State::Goodbye { id };
    }

    fn end(&mut self) {
        self.actions.push_back(DepositAction::HangUp);
        self.state = State::Ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DepositSettings {
        DepositSettings {
            greeting: None,
            max_message: Duration::from_secs(60),
            min_message: Duration::from_secs(1),
            silence_level: 100,
            silence_end: Duration::from_secs(5),
            review: false,
        }
    }

    fn drain(d: &mut Deposit) -> Vec<DepositAction> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    fn play_id(actions: &[DepositAction]) -> u64 {
        actions
            .iter()
            .find_map(|a| match a {
                DepositAction::Play { id, .. } => Some(*id),
                _ => None,
            })
            .expect("a prompt plays")
    }

    /// Greeting and beep played through; recording started at `t0`.
    fn recording(t0: Instant) -> Deposit {
        recording_with(t0, settings())
    }

    fn recording_with(t0: Instant, settings: DepositSettings) -> Deposit {
        let mut d = Deposit::new(settings);
        let a = drain(&mut d);
        assert_eq!(
            a,
            [DepositAction::Play {
                id: 1,
                audio: vec![Audio::Prompt(DEFAULT_GREETING.into())]
            }]
        );
        d.handle_playback_finished(t0, 1);
        let a = drain(&mut d);
        assert_eq!(
            a,
            [DepositAction::Play {
                id: 2,
                audio: vec![Audio::Prompt(BEEP.into())]
            }]
        );
        d.handle_digit(t0, '#'); // during the beep: nothing to end yet
        d.handle_playback_finished(t0, 2);
        assert!(matches!(
            drain(&mut d)[..],
            [DepositAction::StartRecording {
                silence_level: 100,
                ..
            }]
        ));
        d.handle_recording_started(t0);
        d
    }

    #[test]
    fn hash_ends_the_message_which_is_stored_then_goodbye() {
        let t0 = crate::time::base_instant();
        let mut d = recording(t0);
        assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        d.handle_digit(t0, '5'); // part of the message
        assert!(drain(&mut d).is_empty());
        d.handle_digit(t0, '#');
        assert_eq!(drain(&mut d), [DepositAction::StopRecording]);
        d.handle_recorded(t0, Some(Duration::from_secs(4)));
        let a = drain(&mut d);
        assert_eq!(
            a[0],
            DepositAction::Store {
                duration: Duration::from_secs(4)
            }
        );
        d.handle_playback_finished(t0, play_id(&a));
        assert_eq!(drain(&mut d), [DepositAction::HangUp]);
        assert!(d.is_ended());
    }

    #[test]
    fn silence_and_max_length_end_the_recording() {
        let t0 = crate::time::base_instant();
        let mut d = recording(t0);
        d.handle_silence(t0);
        assert_eq!(drain(&mut d), [DepositAction::StopRecording]);
        let mut d = recording(t0);
        d.handle_timeout(t0 + Duration::from_secs(59));
        assert!(drain(&mut d).is_empty());
        d.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(drain(&mut d), [DepositAction::StopRecording]);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn short_messages_are_discarded() {
        let t0 = crate::time::base_instant();
        let mut d = recording(t0);
        d.handle_digit(t0, '#');
        drain(&mut d);
        d.handle_recorded(t0, Some(Duration::from_millis(999)));
        assert_eq!(drain(&mut d)[0], DepositAction::Discard);
        let mut d = recording(t0);
        d.handle_digit(t0, '#');
        drain(&mut d);
        d.handle_recorded(t0, None);
        assert_eq!(drain(&mut d)[0], DepositAction::Discard);
    }

    #[test]
    fn hanging_up_keeps_what_was_said_and_plays_nothing_more() {
        let t0 = crate::time::base_instant();
        // With review too: a caller who is gone is not asked, the message is kept.
        for settings in [settings(), reviewing()] {
            let mut d = recording_with(t0, settings);
            d.handle_caller_gone(t0);
            assert_eq!(drain(&mut d), [DepositAction::StopRecording]);
            assert!(d.awaits_recording());
            d.handle_recorded(t0, Some(Duration::from_secs(3)));
            assert_eq!(
                drain(&mut d),
                [DepositAction::Store {
                    duration: Duration::from_secs(3)
                }]
            );
            assert!(d.is_ended());
        }

        // Gone during the greeting: nothing recorded, nothing to wait for.
        let mut d = Deposit::new(settings());
        drain(&mut d);
        d.handle_caller_gone(t0);
        assert!(d.is_ended() && !d.awaits_recording());
    }

    #[test]
    fn a_key_skips_the_greeting_and_a_failed_start_says_goodbye() {
        let t0 = crate::time::base_instant();
        let mut d = Deposit::new(DepositSettings {
            greeting: Some("custom/hello".into()),
            ..settings()
        });
        assert!(
            matches!(&drain(&mut d)[0], DepositAction::Play { audio, .. } if audio[0] == Audio::Prompt("custom/hello".into()))
        );
        d.handle_digit(t0, '1');
        let a = drain(&mut d);
        d.handle_playback_finished(t0, 1); // the interrupted greeting reports late
        d.handle_playback_finished(t0, play_id(&a));
        drain(&mut d);
        d.handle_recording_failed(t0);
        let a = drain(&mut d);
        assert_eq!(a[0], DepositAction::Discard);
        d.handle_playback_finished(t0, play_id(&a));
        assert_eq!(drain(&mut d), [DepositAction::HangUp]);
    }

    fn reviewing() -> DepositSettings {
        DepositSettings {
            review: true,
            ..settings()
        }
    }

    /// A review deposit with a take of `secs` recorded: the review menu is playing.
    fn in_review(t0: Instant, secs: u64) -> (Deposit, u64) {
        let mut d = recording_with(t0, reviewing());
        d.handle_digit(t0, '#');
        assert_eq!(drain(&mut d), [DepositAction::StopRecording]);
        d.handle_recorded(t0, Some(Duration::from_secs(secs)));
        let a = drain(&mut d);
        assert!(
            matches!(&a[..], [DepositAction::Play { audio, .. }] if audio[..] == [Audio::Prompt(REVIEW_MENU.into())]),
            "{a:?}"
        );
        let id = play_id(&a);
        (d, id)
    }

    #[test]
    fn review_listens_records_again_and_sends_only_the_second_take() {
        let t0 = crate::time::base_instant();
        let (mut d, menu) = in_review(t0, 4);
        // 1: the take is played back, then the menu again.
        d.handle_digit(t0, '1');
        let a = drain(&mut d);
        assert_eq!(
            a,
            [DepositAction::Play {
                id: menu + 1,
                audio: vec![Audio::Recording]
            }]
        );
        d.handle_playback_finished(t0, menu); // the interrupted menu reports late
        assert!(drain(&mut d).is_empty());
        d.handle_playback_finished(t0, menu + 1);
        let a = drain(&mut d);
        assert!(
            matches!(&a[..], [DepositAction::Play { audio, .. }] if audio[0] == Audio::Prompt(REVIEW_MENU.into()))
        );
        // 2: the first take is thrown away and a new one starts after the beep.
        d.handle_digit(t0, '2');
        let a = drain(&mut d);
        assert_eq!(a[0], DepositAction::Discard);
        assert!(
            matches!(&a[1], DepositAction::Play { audio, .. } if audio[0] == Audio::Prompt(BEEP.into()))
        );
        assert_eq!(a.len(), 2);
        d.handle_playback_finished(t0, play_id(&a));
        assert!(matches!(
            drain(&mut d)[..],
            [DepositAction::StartRecording { .. }]
        ));
        d.handle_recording_started(t0);
        d.handle_silence(t0);
        assert_eq!(drain(&mut d), [DepositAction::StopRecording]);
        d.handle_recorded(t0, Some(Duration::from_secs(2)));
        drain(&mut d);
        // 3: the second take is stored, once; goodbye.
        d.handle_digit(t0, '3');
        let a = drain(&mut d);
        assert_eq!(
            a[0],
            DepositAction::Store {
                duration: Duration::from_secs(2)
            }
        );
        assert_eq!(a.len(), 2);
        d.handle_playback_finished(t0, play_id(&a));
        assert_eq!(drain(&mut d), [DepositAction::HangUp]);
    }

    #[test]
    fn review_unanswered_or_hung_up_sends_the_message() {
        let t0 = crate::time::base_instant();
        let (mut d, mut menu) = in_review(t0, 4);
        for asked in 1..MAX_REVIEW_MENUS {
            d.handle_playback_finished(t0, menu);
            assert_eq!(d.poll_timeout(), Some(t0 + REVIEW_WAIT));
            d.handle_timeout(t0 + REVIEW_WAIT - Duration::from_millis(1));
            assert!(drain(&mut d).is_empty(), "not yet, asked {asked}");
            d.handle_timeout(t0 + REVIEW_WAIT);
            menu = play_id(&drain(&mut d));
        }
        d.handle_playback_finished(t0, menu);
        d.handle_timeout(t0 + REVIEW_WAIT);
        let a = drain(&mut d);
        assert_eq!(
            a[0],
            DepositAction::Store {
                duration: Duration::from_secs(4)
            }
        );

        // Hanging up during the menu or while listening sends it too.
        for listening in [false, true] {
            let (mut d, _) = in_review(t0, 3);
            if listening {
                d.handle_digit(t0, '1');
                drain(&mut d);
            }
            d.handle_caller_gone(t0);
            assert_eq!(
                drain(&mut d),
                [DepositAction::Store {
                    duration: Duration::from_secs(3)
                }]
            );
            assert!(d.is_ended());
        }
    }

    #[test]
    fn review_is_skipped_for_short_takes() {
        let t0 = crate::time::base_instant();
        let mut d = recording_with(t0, reviewing());
        d.handle_digit(t0, '#');
        drain(&mut d);
        d.handle_recorded(t0, Some(Duration::from_millis(500)));
        assert_eq!(drain(&mut d)[0], DepositAction::Discard);
    }
}
