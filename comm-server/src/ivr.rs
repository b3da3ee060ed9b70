//! The IVR (interactive voice response) runtime: a dialog script run on a call, as a
//! pure state machine between a `script_engine::Session` and the call's media.
//!
//! Owns: turning script steps into prompt playback, keypad digit collection (first-digit
//! timeout from the session, inter-digit timeout, terminator, maximum length), barge-in
//! (a key press stops a prompt that allows it) and type-ahead (keys pressed during a
//! prompt that does not stop, or between steps, count for the next questions), and
//! asking the host for what the script needs (customer lookup, actions, routing,
//! recording). Must not own: media, sockets, clocks, HTTP or storage; the call task
//! does those and reports back.
//!
//! ```text
//!   Idle --Say/Ask prompt--> Playing --finished--> Idle (Say) | Collecting (Ask)
//!     |                        '--key (barge-in)--> Collecting
//!     |--Lookup/Action/Route--> WaitingHost --reply--> Idle
//!     '--End--> Playing(goodbye) --> Ended (hang up)
//!   Collecting --complete / terminator / inter-digit timeout--> answer --> Idle
//!              '--no key before the session's timeout--> no-input --> Idle
//! ```
//!
//! Time is wall-clock `SystemTime` here because the script session keeps its deadlines
//! in it (sessions are saved and resumed across processes).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use script_engine::{
    Action, Audio, HistoryRecord, Input, InputKind, Library, Question, Session, SessionContext,
    Step,
};

/// Inter-digit timeout when a question sets none.
pub const DEFAULT_INTER_DIGIT: Duration = Duration::from_secs(3);

/// What the call task must do.
#[derive(Debug, Clone, PartialEq)]
pub enum IvrAction {
    /// Play these prompts; report `handle_playback_finished(id)` when done.
    Play { id: u64, audio: Vec<Audio> },
    /// Stop the prompt playing now (barge-in).
    StopPlayback,
    /// Find the customer; reply `Input::Customer`.
    Lookup {
        field: String,
        value: serde_json::Value,
    },
    /// Run an action; reply `ActionDone`/`ActionFailed`.
    RunAction(Action),
    /// Route the call (enqueue, voicemail, transfer); reply `Routed`/`RouteFailed`.
    Route(Step),
    /// Record the caller; reply `Recorded(path)` or `NoInput`.
    Record(Question),
    /// For the customer's contact history.
    History(HistoryRecord),
    /// The script is over: hang up.
    HangUp { outcome: String },
}

#[derive(Debug)]
enum State {
    Idle,
    Playing {
        id: u64,
        then: After,
        barge_in: bool,
    },
    Collecting {
        question: Question,
        digits: String,
        inter_deadline: Option<SystemTime>,
    },
    WaitingHost,
    Ended,
}

#[derive(Debug)]
enum After {
    Next,
    Collect(Question),
    Host(IvrAction),
    HangUp(String),
}

pub struct Ivr {
    library: Arc<Library>,
    session: Session,
    state: State,
    /// Keys pressed ahead of the question they answer: during a prompt that did not
    /// stop for them, or while the host looked up or ran something.
    typeahead: String,
    next_play: u64,
    actions: VecDeque<IvrAction>,
}

impl std::fmt::Debug for Ivr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ivr")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Ivr {
    /// Starts `script` on a call; the first actions are ready at once.
    pub fn start(
        library: Arc<Library>,
        script: &str,
        context: SessionContext,
        now: SystemTime,
    ) -> Result<Ivr, script_engine::SessionError> {
        let session = Session::start(&library, script, context, now)?;
        let mut ivr = Ivr {
            library,
            session,
            state: State::Idle,
            typeahead: String::new(),
            next_play: 0,
            actions: VecDeque::new(),
        };
        ivr.advance(now);
        Ok(ivr)
    }

    pub fn poll_action(&mut self) -> Option<IvrAction> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<SystemTime> {
        match &self.state {
            State::Collecting {
                digits,
                inter_deadline,
                ..
            } if !digits.is_empty() => *inter_deadline,
            State::Collecting { .. } => self.session.poll_timeout(),
            _ => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    fn play(&mut self, audio: Vec<Audio>, then: After, barge_in: bool, now: SystemTime) {
        if audio.is_empty() {
            self.after(then, now);
            return;
        }
        self.next_play += 1;
        let id = self.next_play;
        self.actions.push_back(IvrAction::Play { id, audio });
        self.state = State::Playing { id, then, barge_in };
    }

    fn after(&mut self, then: After, now: SystemTime) {
        match then {
            After::Next => self.state = State::Idle,
            After::Collect(q) => {
                self.state = State::Collecting {
                    question: q,
                    digits: String::new(),
                    inter_deadline: None,
                };
                let keys = std::mem::take(&mut self.typeahead);
                if keys.is_empty() {
                    self.session.handle_prompt_played(now);
                }
                // Keys typed ahead answer this question first (the caller already
                // pressed, so no first-digit timeout); what is left over goes on to
                // whatever comes next, as if pressed now.
                for d in keys.chars() {
                    self.handle_digit(now, d);
                }
            }
            After::Host(action) => {
                self.actions.push_back(action);
                self.state = State::WaitingHost;
            }
            After::HangUp(outcome) => {
                self.actions.push_back(IvrAction::HangUp { outcome });
                self.state = State::Ended;
            }
        }
        self.advance(now);
    }

    /// Takes steps until one waits for something.
    fn advance(&mut self, now: SystemTime) {
        while matches!(self.state, State::Idle) {
            while let Some(h) = self.session.poll_history() {
                self.actions.push_back(IvrAction::History(h));
            }
            let Some(step) = self.session.poll_step() else {
                if self.session.outcome().is_some() {
                    self.after(After::HangUp("ended".into()), now);
                }
                return;
            };
            match step {
                Step::Say { prompt, .. } => {
                    self.play(prompt.audio, After::Next, prompt.barge_in, now)
                }
                Step::Ask(q) => {
                    let (audio, barge) = (q.prompt.audio.clone(), q.prompt.barge_in);
                    self.play(audio, After::Collect(q), barge, now);
                }
                Step::Record(q) => {
                    let audio = q.prompt.audio.clone();
                    self.play(audio, After::Host(IvrAction::Record(q)), false, now);
                }
                Step::Lookup { field, value, .. } => {
                    self.after(After::Host(IvrAction::Lookup { field, value }), now)
                }
                Step::RunAction { action, .. } => {
                    self.after(After::Host(IvrAction::RunAction(action)), now)
                }
                Step::Enqueue { ref prompt, .. }
                | Step::Voicemail { ref prompt, .. }
                | Step::Transfer { ref prompt, .. } => {
                    let audio = prompt.as_ref().map(|p| p.audio.clone()).unwrap_or_default();
                    self.play(
                        audio,
                        After::Host(IvrAction::Route(step.clone())),
                        false,
                        now,
                    );
                }
                Step::End {
                    outcome, prompt, ..
                } => {
                    let audio = prompt.map(|p| p.audio).unwrap_or_default();
                    self.play(audio, After::HangUp(outcome), false, now);
                }
            }
        }
        while let Some(h) = self.session.poll_history() {
            self.actions.push_back(IvrAction::History(h));
        }
    }

    pub fn handle_playback_finished(&mut self, now: SystemTime, id: u64) {
        if let State::Playing { id: playing, .. } = &self.state
            && *playing == id
        {
            let State::Playing { then, .. } = std::mem::replace(&mut self.state, State::Idle)
            else {
                return;
            };
            self.after(then, now);
        }
    }

    /// A key press (RFC 4733 or in-band; the media layer reports each press once).
    pub fn handle_digit(&mut self, now: SystemTime, digit: char) {
        match &self.state {
            State::Collecting { .. } => self.collect(now, digit),
            State::Playing {
                barge_in: true,
                then: After::Collect(_),
                ..
            } => {
                self.actions.push_back(IvrAction::StopPlayback);
                let State::Playing { then, .. } = std::mem::replace(&mut self.state, State::Idle)
                else {
                    return;
                };
                self.typeahead.push(digit);
                self.after(then, now);
            }
            // Between steps (a lookup, an action) too: callers who know the menu
            // type ahead of it.
            State::Playing { .. } | State::Idle | State::WaitingHost => self.typeahead.push(digit),
            State::Ended => {}
        }
    }

    fn collect(&mut self, now: SystemTime, digit: char) {
        let State::Collecting {
            question,
            digits,
            inter_deadline,
        } = &mut self.state
        else {
            return;
        };
        digits.push(digit);
        let complete = match &question.input {
            InputKind::Digits {
                max, terminator, ..
            } => Some(digit) == *terminator || digits.chars().count() as u32 >= *max,
            InputKind::Choice | InputKind::YesNo => true,
            InputKind::Number { .. } | InputKind::Date => digit == '#',
            InputKind::Text { .. } | InputKind::Recording { .. } => digit == '#',
        };
        if complete {
            let raw = std::mem::take(digits);
            self.answer(now, Input::Answer(raw));
        } else {
            *inter_deadline = Some(now + question.inter_digit.unwrap_or(DEFAULT_INTER_DIGIT));
        }
    }

    fn answer(&mut self, now: SystemTime, input: Input) {
        self.state = State::Idle;
        let library = self.library.clone();
        if let Err(e) = self.session.handle_input(&library, now, input) {
            tracing::warn!(error = %e, "script refused input");
            self.after(After::HangUp("error".into()), now);
            return;
        }
        self.advance(now);
    }

    /// The host's reply to a Lookup, RunAction, Route or Record.
    pub fn handle_host_reply(&mut self, now: SystemTime, input: Input) {
        if matches!(self.state, State::WaitingHost) {
            self.answer(now, input);
        }
    }

    pub fn handle_timeout(&mut self, now: SystemTime) {
        let State::Collecting {
            digits,
            inter_deadline,
            ..
        } = &mut self.state
        else {
            return;
        };
        if !digits.is_empty() {
            if inter_deadline.is_some_and(|d| d <= now) {
                let raw = std::mem::take(digits);
                self.answer(now, Input::Answer(raw));
            }
            return;
        }
        if self.session.poll_timeout().is_some_and(|d| d <= now) {
            self.state = State::Idle;
            let library = self.library.clone();
            if let Err(e) = self.session.handle_timeout(&library, now) {
                tracing::warn!(error = %e, "script timeout failed");
                self.after(After::HangUp("error".into()), now);
                return;
            }
            self.advance(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use script_engine::{AnyAudio, Channel, load_str};

    const MENU: &str = r#"<script version="1" id="m" channels="voice">
      <menu id="main" timeout="5s" tries="2">
        <prompt audio="menu.wav">Press 1 or 2.</prompt>
        <no-input audio="again.wav">Sorry.</no-input>
        <option key="1" value="one" label="One"><say audio="one.wav">One.</say></option>
        <option key="2" value="two" label="Two"><say audio="two.wav">Two.</say></option>
      </menu>
      <hangup outcome="done" audio="bye.wav">Bye.</hangup>
    </script>"#;

    const DIGITS: &str = r##"<script version="1" id="d" channels="voice">
      <ask id="acct" input="digits" min-length="2" max-length="4" terminator="#" timeout="5s" inter-digit="2s">
        <prompt audio="enter.wav" barge-in="true">Enter it.</prompt>
      </ask>
      <say audio="thanks.wav">Thanks {{ answers.acct }}.</say>
    </script>"##;

    fn start(xml: &str, id: &str) -> (Ivr, SystemTime) {
        let lib =
            Arc::new(Library::new([load_str("t.xml", xml, &AnyAudio).unwrap().script]).unwrap());
        let ctx = SessionContext {
            channel: Channel::Voice,
            customer: serde_json::json!({}),
            call: serde_json::json!({}),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        (Ivr::start(lib, id, ctx, now).unwrap(), now)
    }

    fn plays(ivr: &mut Ivr) -> Vec<(u64, String)> {
        std::iter::from_fn(|| ivr.poll_action())
            .filter_map(|a| match a {
                IvrAction::Play { id, audio } => Some((
                    id,
                    audio
                        .iter()
                        .map(|a| match a {
                            Audio::File(f) => f.clone(),
                            Audio::Silence { ms } => format!("{ms}ms"),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_key_pressed_chooses_the_branch() {
        for (key, prompt) in [('1', "one.wav"), ('2', "two.wav")] {
            let (mut ivr, now) = start(MENU, "m");
            let p = plays(&mut ivr);
            assert_eq!(p[0].1, "menu.wav");
            ivr.handle_playback_finished(now, p[0].0);
            ivr.handle_digit(now, key);
            let p = plays(&mut ivr);
            assert_eq!(p[0].1, prompt);
            ivr.handle_playback_finished(now, p[0].0);
            let p = plays(&mut ivr);
            assert_eq!(p[0].1, "bye.wav");
            ivr.handle_playback_finished(now, p[0].0);
            assert!(
                matches!(ivr.poll_action(), Some(IvrAction::HangUp { outcome }) if outcome == "done")
            );
        }
    }

    #[test]
    fn no_key_replays_with_the_no_input_prompt() {
        let (mut ivr, now) = start(MENU, "m");
        let p = plays(&mut ivr);
        ivr.handle_playback_finished(now, p[0].0);
        let t = ivr.poll_timeout().unwrap();
        assert_eq!(t, now + Duration::from_secs(5));
        ivr.handle_timeout(t);
        let p = plays(&mut ivr);
        assert!(p[0].1.contains("again.wav"), "{p:?}");
    }

    #[test]
    fn digits_barge_in_terminator_and_inter_digit_timeout() {
        let (mut ivr, now) = start(DIGITS, "d");
        let p = plays(&mut ivr);
        ivr.handle_digit(now, '4');
        assert_eq!(
            ivr.poll_action(),
            Some(IvrAction::StopPlayback),
            "barge-in stops the prompt"
        );
        ivr.handle_playback_finished(now, p[0].0); // late report of the stopped prompt
        ivr.handle_digit(now, '2');
        assert_eq!(ivr.poll_timeout(), Some(now + Duration::from_secs(2)));
        ivr.handle_timeout(now + Duration::from_secs(2));
        let p = plays(&mut ivr);
        assert_eq!(p[0].1, "thanks.wav");

        let (mut ivr, now) = start(DIGITS, "d");
        let p = plays(&mut ivr);
        ivr.handle_playback_finished(now, p[0].0);
        for d in ['1', '2', '3', '#'] {
            ivr.handle_digit(now, d);
        }
        assert_eq!(plays(&mut ivr)[0].1, "thanks.wav");
    }

    #[test]
    fn keys_during_a_say_are_kept_for_the_next_question() {
        let (mut ivr, now) = start(MENU, "m");
        let p = plays(&mut ivr);
        ivr.handle_digit(now, '2'); // the menu prompt does not allow barge-in
        ivr.handle_playback_finished(now, p[0].0);
        assert_eq!(plays(&mut ivr)[0].1, "two.wav");
    }

    const TYPE_AHEAD: &str = r##"<script version="1" id="t" channels="voice">
      <say audio="hello.wav">Hello.</say>
      <log level="info">between the greeting and the menu</log>
      <menu id="main" timeout="5s" tries="2">
        <prompt audio="menu.wav">Press 1 for your account.</prompt>
        <option key="1" value="account" label="Account"><say audio="one.wav">Account.</say></option>
      </menu>
      <ask id="acct" input="digits" min-length="2" max-length="4" terminator="#" timeout="5s" inter-digit="2s">
        <prompt audio="enter.wav">Enter it.</prompt>
      </ask>
      <say audio="thanks.wav">Thanks {{ answers.acct }}.</say>
    </script>"##;

    /// Plays and host requests, acknowledging every action as done at once.
    fn run_host(ivr: &mut Ivr, now: SystemTime) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while let Some(a) = ivr.poll_action() {
            match a {
                IvrAction::RunAction(_) => {
                    ivr.handle_host_reply(now, Input::ActionDone(serde_json::json!({})))
                }
                IvrAction::Play { id, audio } => out.push((
                    id,
                    audio
                        .iter()
                        .map(|a| match a {
                            Audio::File(f) => f.clone(),
                            Audio::Silence { ms } => format!("{ms}ms"),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                )),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn keys_typed_ahead_through_a_say_an_action_and_two_questions_are_all_kept() {
        let (mut ivr, now) = start(TYPE_AHEAD, "t");
        let p = plays(&mut ivr);
        assert_eq!(p[0].1, "hello.wav");
        // The caller knows the menu: 1 for the account, then the number and #.
        ivr.handle_digit(now, '1');
        ivr.handle_playback_finished(now, p[0].0);
        // The log action is with the host: keys pressed now are kept too.
        for d in "42#".chars() {
            ivr.handle_digit(now, d);
        }
        let p = run_host(&mut ivr, now);
        assert_eq!(p[0].1, "menu.wav", "{p:?}");
        ivr.handle_playback_finished(now, p[0].0);
        let p = run_host(&mut ivr, now);
        assert_eq!(p[0].1, "one.wav", "the typed 1 chose the option: {p:?}");
        ivr.handle_playback_finished(now, p[0].0);
        let p = run_host(&mut ivr, now);
        assert_eq!(p[0].1, "enter.wav", "{p:?}");
        ivr.handle_playback_finished(now, p[0].0);
        let p = run_host(&mut ivr, now);
        assert_eq!(
            p[0].1, "thanks.wav",
            "42# typed ahead answered the account question: {p:?}"
        );
        assert_eq!(ivr.poll_timeout(), None, "no question is waiting");
    }

    #[test]
    fn keys_left_over_from_one_answer_go_to_the_next_question() {
        let (mut ivr, now) = start(TYPE_AHEAD, "t");
        let p = plays(&mut ivr);
        ivr.handle_playback_finished(now, p[0].0);
        let p = run_host(&mut ivr, now);
        assert_eq!(p[0].1, "menu.wav");
        // Both keys during the menu prompt (no barge-in): the second is not lost.
        ivr.handle_digit(now, '1');
        ivr.handle_digit(now, '7');
        ivr.handle_playback_finished(now, p[0].0);
        let p = run_host(&mut ivr, now);
        assert_eq!(p[0].1, "one.wav");
        ivr.handle_playback_finished(now, p[0].0);
        let p = run_host(&mut ivr, now);
        assert_eq!(p[0].1, "enter.wav");
        ivr.handle_playback_finished(now, p[0].0);
        // The 7 already started the number: the inter-digit timeout (2 s) runs, not
        // the first-digit one (5 s).
        assert_eq!(ivr.poll_timeout(), Some(now + Duration::from_secs(2)));
        ivr.handle_digit(now, '3');
        ivr.handle_digit(now, '#');
        let p = run_host(&mut ivr, now);
        assert_eq!(p[0].1, "thanks.wav");
    }
}
