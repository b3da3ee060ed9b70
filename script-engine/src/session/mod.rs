//! The interpreter: one conversation through a script, as a pure state machine.
//!
//! Owns a session's position, variables, answers, retry counters and the queue of
//! steps for the host. It must not own I/O, clocks or timers: the host (IVR
//! runtime, web endpoint, agent gateway) plays prompts, runs webhooks, looks up
//! customers and reports back through [`Session::handle_input`], passing `now`.
//!
//! ```text
//!            start / input
//!                 │
//!                 ▼
//!   ┌────────► Running ──── say, set, if, switch, goto, call, return ───┐
//!   │             │  (runs operations until one needs the host)         │
//!   │             ├──────────────────────────────────────────────────────┘
//!   │             ├─ ask/menu/record ─► AwaitAnswer ─┬ answer ─────────────┐
//!   │             │                                  ├ no-input/no-match ─► re-ask (tries left)
//!   │             │                                  └ tries used ─► on-failure / next
//!   │             ├─ lookup ──────────► AwaitCustomer ─ found / not found ─┤
//!   │             ├─ webhook, email… ─► AwaitAction ──── done / failed ────┤
//!   │             ├─ enqueue… ────────► AwaitRoute ─┬ routed ─► Finished    │
//!   │             │                                 └ failed ─► next ──────┤
//!   │             └─ end, hangup, error ─► Finished                         │
//!   └───────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! After each input the host drains [`Session::poll_step`] (what to play, show or
//! do, in order), [`Session::poll_history`] (records for the customer's contact
//! history) and [`Session::poll_timeout`] (when to call `handle_timeout`).
//! A session serializes with serde, so a web visitor or an agent's screen can
//! reconnect: [`Session::awaiting`] repeats the question that is open.
//!
//! Time is `SystemTime` given by the host: history records need wall-clock time,
//! and a deadline must survive being saved and restored in another process.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::expr::{Bindings, Expr};
use crate::library::Library;
use crate::model::{ActionSpec, Ask, Channel, InputSpec, OpKind, Piece, Prompt, RouteSpec, Script};
use crate::speech;

mod answer;
mod steps;

use answer::{Parsed, parse_answer};
pub use steps::{
    Action, Audio, ChoiceOut, HistoryEvent, HistoryRecord, Input, InputKind, Outcome, PromptOut,
    Question, SessionContext, SkillRequirement, Step,
};

/// How many operations may run between two inputs before the session is
/// declared stuck. Real scripts run a few dozen; the cap turns a `goto` loop
/// that never asks anything into an error instead of a hung call.
pub const MAX_OPS_PER_INPUT: u32 = 10_000;

/// What history records hold instead of a `sensitive` answer.
pub const WITHHELD: &str = "(withheld)";

/// How deep `<call>` may nest; a script that calls itself forever stops here.
pub const MAX_CALL_DEPTH: usize = 16;

/// Misuse of a session by the host (not a mistake in the script).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no script `{0}` in the library")]
    UnknownScript(String),
    #[error("script `{0}` does not run on the {1:?} channel")]
    ChannelNotSupported(String, Channel),
    #[error("script `{0}` changed since this session was saved")]
    ScriptChanged(String),
    #[error("the session is waiting for {expected}, not {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the session has finished")]
    Finished,
    /// A restored session whose state cannot be right (edited or truncated JSON).
    #[error("the saved session is damaged")]
    Damaged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// One script on the call stack. Each frame has its own variables and answers:
/// a called script is a black box that only shares `customer` and `call`, so a
/// reusable script (PIN check, address capture) cannot clobber its caller.
struct Frame {
    script: String,
    fingerprint: u64,
    pc: usize,
    vars: BTreeMap<String, Json>,
    answers: BTreeMap<String, Json>,
    /// The caller's variable that receives this frame's `<return value>`.
    result: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// What the session waits for. The counters live here, not in the frame, because
/// they only mean something while one question is open.
enum Wait {
    Running,
    Answer {
        attempt: u32,
        no_input: u32,
        no_match: u32,
        deadline: Option<SystemTime>,
    },
    Customer,
    Action {
        update: Option<serde_json::Map<String, Json>>,
    },
    Route,
    Finished(Outcome),
}

/// One conversation through a script. See the module docs for the protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    channel: Channel,
    customer: Json,
    call: Json,
    frames: Vec<Frame>,
    wait: Wait,
    /// A copy of the step the host must answer, kept for reconnects.
    awaiting: Option<Step>,
    /// Steps not yet taken by the host, in order.
    steps: VecDeque<Step>,
    /// History records not yet taken by the host.
    history: VecDeque<HistoryRecord>,
    /// Set once a runtime error has jumped to `on-error`: a second error ends the
    /// session instead of looping through the handler forever.
    error_handled: bool,
}

/// A runtime failure inside the script (bad data, failing expression).
struct ScriptError(String);

// Expression errors arrive as author-facing sentences; keep them as they are.
impl From<String> for ScriptError {
    fn from(s: String) -> Self {
        ScriptError(s)
    }
}

impl Session {
    /// Starts `script` and runs it up to the first step that needs the host.
    pub fn start(
        library: &Library,
        script: &str,
        context: SessionContext,
        now: SystemTime,
    ) -> Result<Session, SessionError> {
        let s = library
            .script(script)
            .ok_or_else(|| SessionError::UnknownScript(script.to_owned()))?;
        if !s.channels.contains(&context.channel) {
            return Err(SessionError::ChannelNotSupported(
                s.id.clone(),
                context.channel,
            ));
        }
        let mut session = Session {
            channel: context.channel,
            customer: context.customer,
            call: context.call,
            frames: Vec::new(),
            wait: Wait::Running,
            awaiting: None,
            steps: VecDeque::new(),
            history: VecDeque::new(),
            error_handled: false,
        };
        match session.new_frame(s, None, &[]) {
            Ok(frame) => {
                session.frames.push(frame);
                session.run(library, now);
            }
            Err(e) => session.script_error(library, now, e),
        }
        Ok(session)
    }

    /// Feeds the host's reply to the step that is awaiting one.
    pub fn handle_input(
        &mut self,
        library: &Library,
        now: SystemTime,
        input: Input,
    ) -> Result<(), SessionError> {
        self.check(library)?;
        let expected = match &self.wait {
            Wait::Finished(_) => return Err(SessionError::Finished),
            Wait::Running => "nothing",
            Wait::Answer { .. } => "an answer",
            Wait::Customer => "a lookup result",
            Wait::Action { .. } => "an action result",
            Wait::Route => "a routing result",
        };
        let recording = matches!(self.awaiting, Some(Step::Record(_)));
        let fits = match (&self.wait, &input) {
            (Wait::Answer { .. }, Input::NoInput) => true,
            (Wait::Answer { .. }, Input::Answer(_)) => !recording,
            (Wait::Answer { .. }, Input::Recorded(_)) => recording,
            (Wait::Customer, Input::Customer(_)) => true,
            (Wait::Action { .. }, Input::ActionDone(_) | Input::ActionFailed(_)) => true,
            (Wait::Route, Input::Routed | Input::RouteFailed(_)) => true,
            _ => false,
        };
        if !fits {
            return Err(SessionError::Unexpected {
                expected: if recording { "a recording" } else { expected },
                got: input.name(),
            });
        }
        let result = match input {
            Input::Answer(raw) | Input::Recorded(raw) => self.answer(library, now, raw),
            Input::NoInput => self.no_input(library, now),
            Input::Customer(found) => self.customer_found(library, now, found),
            Input::ActionDone(reply) => self.action_done(library, now, Ok(reply)),
            Input::ActionFailed(why) => self.action_done(library, now, Err(why)),
            Input::Routed => {
                self.routed(now, Ok(()));
                Ok(())
            }
            Input::RouteFailed(why) => {
                self.routed(now, Err(why));
                Ok(())
            }
        };
        match result {
            Ok(()) => self.run(library, now),
            Err(e) => self.script_error(library, now, e),
        }
        Ok(())
    }

    /// Tells the session the open question's prompt has been played or shown:
    /// its no-input deadline starts now.
    pub fn handle_prompt_played(&mut self, now: SystemTime) {
        if let (Wait::Answer { deadline, .. }, Some(Step::Ask(q) | Step::Record(q))) =
            (&mut self.wait, &self.awaiting)
        {
            // `checked_add`: an absurd timeout means no deadline rather than a panic.
            *deadline = now.checked_add(q.timeout);
        }
    }

    /// Call when [`poll_timeout`](Self::poll_timeout) has passed: counts as no input.
    pub fn handle_timeout(
        &mut self,
        library: &Library,
        now: SystemTime,
    ) -> Result<(), SessionError> {
        match self.wait {
            Wait::Answer {
                deadline: Some(d), ..
            } if now >= d => self.handle_input(library, now, Input::NoInput),
            _ => Ok(()),
        }
    }

    /// The next step for the host, in order.
    pub fn poll_step(&mut self) -> Option<Step> {
        self.steps.pop_front()
    }

    /// The next record for the customer's contact history.
    pub fn poll_history(&mut self) -> Option<HistoryRecord> {
        self.history.pop_front()
    }

    /// When the open question times out, once its prompt has been played.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        match self.wait {
            Wait::Answer { deadline, .. } => deadline,
            _ => None,
        }
    }

    /// The step waiting for the host's reply: shown again after a reconnect.
    pub fn awaiting(&self) -> Option<&Step> {
        self.awaiting.as_ref()
    }

    /// How the session ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.wait {
            Wait::Finished(o) => Some(o),
            _ => None,
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The customer record as the session now sees it (after lookups and updates).
    pub fn customer(&self) -> &Json {
        &self.customer
    }

    /// The answers given so far in the script that is running.
    pub fn answers(&self) -> Option<&BTreeMap<String, Json>> {
        self.frames.last().map(|f| &f.answers)
    }

    /// A variable of the script that is running.
    pub fn variable(&self, name: &str) -> Option<&Json> {
        self.frames.last().and_then(|f| f.vars.get(name))
    }

    /// Fails if a script this session is inside of was edited since it started.
    pub fn check(&self, library: &Library) -> Result<(), SessionError> {
        let live = !matches!(self.wait, Wait::Finished(_));
        if live && (self.frames.is_empty() || self.frames.len() > MAX_CALL_DEPTH) {
            return Err(SessionError::Damaged);
        }
        for f in &self.frames {
            let s = library
                .script(&f.script)
                .ok_or_else(|| SessionError::UnknownScript(f.script.clone()))?;
            if s.fingerprint != f.fingerprint {
                return Err(SessionError::ScriptChanged(f.script.clone()));
            }
        }
        Ok(())
    }

    // ---- running ----

    /// Builds a frame for `script`: arguments win over declared start values, and
    /// start values are evaluated in order so one may use the ones above it.
    fn new_frame(
        &self,
        script: &Script,
        result: Option<String>,
        args: &[(String, Json)],
    ) -> Result<Frame, ScriptError> {
        let mut frame = Frame {
            script: script.id.clone(),
            fingerprint: script.fingerprint,
            pc: 0,
            vars: BTreeMap::new(),
            answers: BTreeMap::new(),
            result,
        };
        for v in &script.vars {
            let value = match (args.iter().find(|(n, _)| *n == v.name), &v.init) {
                (Some((_, value)), _) => value.clone(),
                (None, Some(init)) => self.bindings_for(&frame, &[]).eval(init)?,
                (None, None) => Json::Null,
            };
            frame.vars.insert(v.name.clone(), value);
        }
        Ok(frame)
    }

    /// What expressions in `frame` see. `extra` carries `answer` or `response`.
    fn bindings_for<'a>(
        &'a self,
        frame: &'a Frame,
        extra: &'a [(&'a str, &'a Json)],
    ) -> Bindings<'a> {
        Bindings {
            customer: &self.customer,
            call: &self.call,
            answers: &frame.answers,
            vars: &frame.vars,
            extra,
        }
    }

    fn bindings<'a>(&'a self, extra: &'a [(&'a str, &'a Json)]) -> Bindings<'a> {
        // `run` never leaves a live session without a frame.
        let frame = self.frames.last().expect("a running session has a frame");
        self.bindings_for(frame, extra)
    }

    /// The running frame. `check` refuses sessions without one before any input
    /// is handled, so this cannot fail on a restored session.
    fn frame(&mut self) -> &mut Frame {
        self.frames
            .last_mut()
            .expect("a running session has a frame")
    }

    /// The running script and position. Looked up by id on every use rather than
    /// held, so a session never borrows from the library between inputs.
    fn current<'l>(&self, library: &'l Library) -> Result<(&'l Script, usize), ScriptError> {
        let frame = self
            .frames
            .last()
            .ok_or_else(|| ScriptError("no script is running".into()))?;
        let script = library
            .script(&frame.script)
            .ok_or_else(|| ScriptError(format!("script `{}` is not loaded", frame.script)))?;
        Ok((script, frame.pc))
    }

    /// Queues a contact-history record, attributed to the running script.
    fn record(&mut self, now: SystemTime, step: &str, event: HistoryEvent) {
        let script = self
            .frames
            .last()
            .map(|f| f.script.clone())
            .unwrap_or_default();
        self.history.push_back(HistoryRecord {
            script,
            step: step.to_owned(),
            event,
            at: now,
        });
    }

    /// Ends the session; later inputs get `SessionError::Finished`.
    fn finish(&mut self, outcome: Outcome) {
        self.awaiting = None;
        self.wait = Wait::Finished(outcome);
    }

    /// Handles a runtime error: go to the `on-error` of the innermost script that
    /// has one (leaving any called scripts inside it), once; else end.
    fn script_error(&mut self, library: &Library, now: SystemTime, e: ScriptError) {
        let step = self
            .current(library)
            .ok()
            .and_then(|(s, pc)| s.ops.get(pc).map(|op| op.step.clone()))
            .unwrap_or_default();
        self.record(
            now,
            &step,
            HistoryEvent::ScriptError {
                message: e.0.clone(),
            },
        );
        let handler = self.frames.iter().enumerate().rev().find_map(|(depth, f)| {
            library
                .script(&f.script)
                .and_then(|s| s.on_error)
                .map(|t| (depth, t))
        });
        match handler {
            Some((depth, target)) if !self.error_handled => {
                self.error_handled = true;
                self.frames.truncate(depth + 1);
                self.awaiting = None;
                self.wait = Wait::Running;
                self.frame().pc = target;
                self.run(library, now);
            }
            _ => {
                self.steps.push_back(Step::End {
                    step,
                    outcome: "error".into(),
                    prompt: None,
                });
                self.finish(Outcome::Failed { message: e.0 });
            }
        }
    }

    /// Runs operations until one needs the host, the session ends, or an error.
    fn run(&mut self, library: &Library, now: SystemTime) {
        if let Err(e) = self.run_inner(library, now) {
            self.script_error(library, now, e);
        }
    }

    /// The interpreter loop. Each arm either moves `pc` and continues, or parks the
    /// session in a `Wait` state with the step for the host, which ends the loop.
    fn run_inner(&mut self, library: &Library, now: SystemTime) -> Result<(), ScriptError> {
        let mut budget = MAX_OPS_PER_INPUT;
        while matches!(self.wait, Wait::Running) {
            budget = budget.checked_sub(1).ok_or_else(|| {
                ScriptError(format!(
                    "ran {MAX_OPS_PER_INPUT} steps without waiting for the customer (a goto loop?)"
                ))
            })?;
            let (script, pc) = self.current(library)?;
            let op = script
                .ops
                .get(pc)
                .ok_or_else(|| ScriptError(format!("no step {pc} in `{}`", script.id)))?;
            let step = op.step.clone();
            match &op.kind {
                OpKind::Say(p) => {
                    let prompt = self.render(p)?;
                    self.steps.push_back(Step::Say { step, prompt });
                    self.frame().pc += 1;
                }
                OpKind::Ask(ask) => self.ask(ask, 1, None)?,
                OpKind::Branch { test, otherwise } => {
                    let holds = self.bindings(&[]).eval_bool(test)?;
                    self.frame().pc = if holds { pc + 1 } else { *otherwise };
                }
                OpKind::Switch {
                    value,
                    cases,
                    default,
                } => {
                    let v = match self.bindings(&[]).eval(value)? {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    let target = cases
                        .iter()
                        .find(|(values, _)| values.contains(&v))
                        .map_or(*default, |(_, t)| *t);
                    self.frame().pc = target;
                }
                OpKind::Jump(t) => self.frame().pc = *t,
                OpKind::Set { var, value } => {
                    let v = self.bindings(&[]).eval(value)?;
                    let frame = self.frame();
                    frame.vars.insert(var.clone(), v);
                    frame.pc += 1;
                }
                OpKind::Lookup { field, value, .. } => {
                    let value = self.bindings(&[]).eval(value)?;
                    self.wait_for(
                        Wait::Customer,
                        Step::Lookup {
                            step,
                            field: field.clone(),
                            value,
                        },
                    );
                }
                OpKind::Action { action, .. } => {
                    let (action, update) = self.render_action(action)?;
                    self.wait_for(Wait::Action { update }, Step::RunAction { step, action });
                }
                OpKind::Route(route) => {
                    let out = self.render_route(step, route)?;
                    self.wait_for(Wait::Route, out);
                }
                OpKind::Call {
                    script: callee,
                    args,
                    result,
                } => {
                    if self.frames.len() >= MAX_CALL_DEPTH {
                        return Err(ScriptError(format!(
                            "<call> nests deeper than {MAX_CALL_DEPTH} scripts"
                        )));
                    }
                    let callee = library
                        .script(callee)
                        .ok_or_else(|| ScriptError(format!("script `{callee}` is not loaded")))?;
                    let mut values = Vec::new();
                    for (name, e) in args {
                        values.push((name.clone(), self.bindings(&[]).eval(e)?));
                    }
                    let frame = self.new_frame(callee, result.clone(), &values)?;
                    self.frame().pc += 1;
                    self.frames.push(frame);
                }
                OpKind::Return { value } => {
                    let v = match value {
                        Some(e) => self.bindings(&[]).eval(e)?,
                        None => Json::Null,
                    };
                    self.return_from(now, v);
                }
                OpKind::End { .. } if !op.written && self.frames.len() > 1 => {
                    // The end of a called script returns to its caller.
                    self.return_from(now, Json::Null);
                }
                OpKind::End { outcome, prompt } => {
                    let prompt = prompt.as_ref().map(|p| self.render(p)).transpose()?;
                    let outcome = outcome.clone();
                    self.record(
                        now,
                        &step,
                        HistoryEvent::Ended {
                            outcome: outcome.clone(),
                        },
                    );
                    self.steps.push_back(Step::End {
                        step,
                        outcome: outcome.clone(),
                        prompt,
                    });
                    self.finish(Outcome::Ended { outcome });
                }
            }
        }
        Ok(())
    }

    /// Leaves the running script, handing `value` to the caller's result variable.
    fn return_from(&mut self, now: SystemTime, value: Json) {
        let Some(done) = self.frames.pop() else {
            return;
        };
        if self.frames.is_empty() {
            // `<return>` in the top script ends the session like `<end>` does.
            self.frames.push(done);
            self.record(
                now,
                "return",
                HistoryEvent::Ended {
                    outcome: "completed".into(),
                },
            );
            self.steps.push_back(Step::End {
                step: "return".into(),
                outcome: "completed".into(),
                prompt: None,
            });
            self.finish(Outcome::Ended {
                outcome: "completed".into(),
            });
            return;
        }
        if let Some(var) = done.result {
            self.frame().vars.insert(var, value);
        }
    }

    /// Parks the session: the host gets `step` now and again via `awaiting`.
    fn wait_for(&mut self, wait: Wait, step: Step) {
        self.wait = wait;
        self.awaiting = Some(step.clone());
        self.steps.push_back(step);
    }

    // ---- questions ----

    /// Opens a question (again, on a retry): the prompt escalates with the
    /// attempt, the last prompt repeating, and the no-input deadline waits for
    /// `handle_prompt_played` because only the host knows when playback ends.
    fn ask(
        &mut self,
        ask: &Ask,
        attempt: u32,
        counts: Option<(u32, u32)>,
    ) -> Result<(), ScriptError> {
        let index = (attempt as usize)
            .saturating_sub(1)
            .min(ask.prompts.len().saturating_sub(1));
        let prompt = match ask.prompts.get(index) {
            Some(p) => self.render(p)?,
            None => PromptOut::default(),
        };
        let (input, choices) = match &ask.input {
            InputSpec::Digits {
                min,
                max,
                terminator,
            } => (
                InputKind::Digits {
                    min: *min,
                    max: *max,
                    terminator: *terminator,
                },
                Vec::new(),
            ),
            InputSpec::Choice(choices) => (
                InputKind::Choice,
                choices
                    .iter()
                    .map(|c| ChoiceOut {
                        key: c.key,
                        value: c.value.clone(),
                        label: c.label.clone(),
                    })
                    .collect(),
            ),
            InputSpec::YesNo => (InputKind::YesNo, Vec::new()),
            InputSpec::Number { min, max } => (
                InputKind::Number {
                    min: *min,
                    max: *max,
                },
                Vec::new(),
            ),
            InputSpec::Date => (InputKind::Date, Vec::new()),
            InputSpec::Text { max } => (InputKind::Text { max_chars: *max }, Vec::new()),
            InputSpec::Record { max, beep } => (
                InputKind::Recording {
                    max_duration: *max,
                    beep: *beep,
                },
                Vec::new(),
            ),
        };
        let question = Question {
            step: ask.id.clone(),
            input,
            prompt,
            attempt,
            tries: ask.tries,
            timeout: ask.timeout,
            inter_digit: ask.inter_digit,
            choices,
            sensitive: ask.sensitive,
        };
        let (no_input, no_match) = counts.unwrap_or((0, 0));
        let wait = Wait::Answer {
            attempt,
            no_input,
            no_match,
            deadline: None,
        };
        let step = if matches!(ask.input, InputSpec::Record { .. }) {
            Step::Record(question)
        } else {
            Step::Ask(question)
        };
        self.wait_for(wait, step);
        Ok(())
    }

    /// The question being answered, found again from `pc` (not from `awaiting`,
    /// which is the host's copy and only for display).
    fn open_ask<'l>(&self, library: &'l Library) -> Result<(&'l Ask, usize), ScriptError> {
        let (script, pc) = self.current(library)?;
        match script.ops.get(pc).map(|op| &op.kind) {
            Some(OpKind::Ask(a)) => Ok((a, pc)),
            _ => Err(ScriptError(
                "the open question is gone from the script".into(),
            )),
        }
    }

    /// An answer: parse it for the input kind and channel, check `valid`, then
    /// store it and move on (to the chosen option's steps for a menu).
    fn answer(
        &mut self,
        library: &Library,
        now: SystemTime,
        raw: String,
    ) -> Result<(), ScriptError> {
        let (ask, pc) = self.open_ask(library)?;
        let parsed = parse_answer(&ask.input, self.channel, &raw);
        let value = match parsed {
            Parsed::Empty => return self.no_input(library, now),
            Parsed::NoMatch => None,
            Parsed::Value(v) => match &ask.valid {
                Some(check) if !self.bindings(&[("answer", &v)]).eval_bool(check)? => None,
                _ => Some(v),
            },
        };
        // A secret answer is still stored for the script's own checks, but the
        // contact history (read by agents and reports) never sees it.
        let Some(value) = value else {
            let input = if ask.sensitive {
                WITHHELD.to_owned()
            } else {
                raw
            };
            self.record(now, &ask.id, HistoryEvent::NoMatch { input });
            return self.retry(library, now, false);
        };
        let shown = if ask.sensitive {
            Json::from(WITHHELD)
        } else {
            value.clone()
        };
        self.record(now, &ask.id, HistoryEvent::Answer { value: shown });
        let target = match (&ask.input, &value) {
            (InputSpec::Choice(choices), Json::String(v)) => choices
                .iter()
                .find(|c| &c.value == v)
                .and_then(|c| c.target),
            _ => None,
        };
        let frame = self.frame();
        frame.answers.insert(ask.id.clone(), value);
        frame.pc = target.unwrap_or(pc + 1);
        self.resume();
        Ok(())
    }

    /// Silence, a timeout, or an empty entry.
    fn no_input(&mut self, library: &Library, now: SystemTime) -> Result<(), ScriptError> {
        let (ask, _) = self.open_ask(library)?;
        self.record(now, &ask.id, HistoryEvent::NoInput);
        self.retry(library, now, true)
    }

    /// After a no-input or no-match: play the handler, ask again, or give up.
    fn retry(
        &mut self,
        library: &Library,
        now: SystemTime,
        no_input: bool,
    ) -> Result<(), ScriptError> {
        let (ask, pc) = self.open_ask(library)?;
        let Wait::Answer {
            attempt,
            no_input: mut ni,
            no_match: mut nm,
            ..
        } = self.wait
        else {
            return Err(ScriptError("not waiting for an answer".into()));
        };
        let (count, handlers) = if no_input {
            ni = ni.saturating_add(1);
            (ni, &ask.no_input)
        } else {
            nm = nm.saturating_add(1);
            (nm, &ask.no_match)
        };
        if attempt >= ask.tries {
            self.record(now, &ask.id, HistoryEvent::Unanswered);
            self.frame().pc = ask.on_failure.unwrap_or(pc + 1);
            self.resume();
            return Ok(());
        }
        if !handlers.is_empty() {
            let p = &handlers[(count as usize).saturating_sub(1).min(handlers.len() - 1)];
            let prompt = self.render(p)?;
            self.steps.push_back(Step::Say {
                step: ask.id.clone(),
                prompt,
            });
        }
        self.ask(ask, attempt.saturating_add(1), Some((ni, nm)))
    }

    /// Back to running after the host's reply has been applied.
    fn resume(&mut self) {
        self.awaiting = None;
        self.wait = Wait::Running;
    }

    // ---- lookups, actions, routes ----

    /// For a lookup or action being answered: where it is, where its handler
    /// block starts (`<not-found>`, `<on-error>`), and its step name.
    fn handler_target(
        &self,
        library: &Library,
    ) -> Result<(usize, Option<usize>, String), ScriptError> {
        let (script, pc) = self.current(library)?;
        let op = script
            .ops
            .get(pc)
            .ok_or_else(|| ScriptError(format!("no step {pc} in `{}`", script.id)))?;
        let handler = match &op.kind {
            OpKind::Lookup { not_found, .. } => *not_found,
            OpKind::Action { on_error, .. } => *on_error,
            _ => None,
        };
        Ok((pc, handler, op.step.clone()))
    }

    /// A lookup reply. A found record replaces `customer` whole: the host's
    /// record is the truth, and merging could mix two customers' fields.
    fn customer_found(
        &mut self,
        library: &Library,
        now: SystemTime,
        found: Option<Json>,
    ) -> Result<(), ScriptError> {
        let (pc, not_found, step) = self.handler_target(library)?;
        self.record(
            now,
            &step,
            HistoryEvent::Lookup {
                found: found.is_some(),
            },
        );
        let next = match found {
            Some(customer) => {
                self.customer = customer;
                pc + 1
            }
            None => not_found.unwrap_or(pc + 1),
        };
        self.frame().pc = next;
        self.resume();
        Ok(())
    }

    /// An action reply. Failures run `<on-error>` if there is one, else the
    /// script carries on: a log line that failed should not end a call.
    fn action_done(
        &mut self,
        library: &Library,
        now: SystemTime,
        reply: Result<Json, String>,
    ) -> Result<(), ScriptError> {
        let (pc, on_error, step) = self.handler_target(library)?;
        let action = match &self.awaiting {
            Some(Step::RunAction { action, .. }) => action.clone(),
            _ => return Err(ScriptError("no action is open".into())),
        };
        let Wait::Action { update } = std::mem::replace(&mut self.wait, Wait::Running) else {
            return Err(ScriptError("no action is open".into()));
        };
        self.awaiting = None;
        match reply {
            Err(why) => {
                self.record(
                    now,
                    &step,
                    HistoryEvent::Action {
                        action,
                        ok: false,
                        detail: Json::String(why),
                    },
                );
                self.frame().pc = on_error.unwrap_or(pc + 1);
            }
            Ok(reply) => {
                // Map the reply first: a reply without the fields the script
                // expects is a failed action, handled by the webhook's <on-error>.
                let (script, _) = self.current(library)?;
                let mut mapped = Vec::new();
                let mut mapping_error = None;
                if let Some(OpKind::Action {
                    action: ActionSpec::Webhook { results, .. },
                    ..
                }) = script.ops.get(pc).map(|op| &op.kind)
                {
                    for (var, e) in results {
                        match self.bindings(&[("response", &reply)]).eval(e) {
                            Ok(v) => mapped.push((var.clone(), v)),
                            Err(why) => {
                                mapping_error = Some(why);
                                break;
                            }
                        }
                    }
                }
                if let Some(why) = mapping_error {
                    let detail = Json::String(format!("unexpected reply: {why}"));
                    self.record(
                        now,
                        &step,
                        HistoryEvent::Action {
                            action,
                            ok: false,
                            detail,
                        },
                    );
                    match on_error {
                        Some(target) => self.frame().pc = target,
                        None => return Err(ScriptError(format!("webhook `{step}`: {why}"))),
                    }
                    return Ok(());
                }
                self.record(
                    now,
                    &step,
                    HistoryEvent::Action {
                        action,
                        ok: true,
                        detail: reply,
                    },
                );
                if let (Some(fields), Json::Object(customer)) = (update, &mut self.customer) {
                    customer.extend(fields);
                }
                let frame = self.frame();
                frame.vars.extend(mapped);
                frame.pc = pc + 1;
            }
        }
        Ok(())
    }

    /// A routing reply: success hands the call over and ends the session.
    fn routed(&mut self, now: SystemTime, result: Result<(), String>) {
        let step = match &self.awaiting {
            Some(
                Step::Enqueue { step, .. }
                | Step::Voicemail { step, .. }
                | Step::Transfer { step, .. },
            ) => step.clone(),
            _ => String::new(),
        };
        match result {
            Ok(()) => {
                self.record(
                    now,
                    &step,
                    HistoryEvent::Routed {
                        ok: true,
                        detail: String::new(),
                    },
                );
                self.finish(Outcome::Routed { step });
            }
            Err(why) => {
                // A closed queue or a busy number falls through to the next element,
                // which is where an author puts the fallback (voicemail, callback).
                self.record(
                    now,
                    &step,
                    HistoryEvent::Routed {
                        ok: false,
                        detail: why,
                    },
                );
                let frame = self.frame();
                frame.pc = frame.pc.saturating_add(1);
                self.resume();
            }
        }
    }

    // ---- rendering ----

    /// Fills a prompt in: expressions evaluated, say-as values turned into file
    /// names, so the host plays a plain list and needs no number rules.
    fn render(&self, p: &Prompt) -> Result<PromptOut, ScriptError> {
        let b = self.bindings(&[]);
        let mut files = Vec::new();
        let mut audio = Vec::new();
        let flush = |files: &mut Vec<String>, audio: &mut Vec<Audio>| {
            audio.extend(files.drain(..).map(Audio::File));
        };
        for piece in &p.pieces {
            match piece {
                Piece::Audio(name) => files.push(name.clone()),
                Piece::Digits(e) => {
                    let v = b.eval(e)?;
                    speech::digits(&plain(&v), &mut files);
                }
                Piece::Number(e) => speech::number(as_i64(e, &b.eval(e)?)?, &mut files),
                Piece::Amount { value, currency } => {
                    speech::amount(as_f64(value, &b.eval(value)?)?, currency, &mut files);
                }
                Piece::Silence(d) => {
                    flush(&mut files, &mut audio);
                    audio.push(Audio::Silence {
                        ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                    });
                }
            }
        }
        flush(&mut files, &mut audio);
        let text = match &p.text {
            Some(t) => t.render_text(&b)?,
            None => String::new(),
        };
        Ok(PromptOut {
            audio,
            text,
            barge_in: p.barge_in,
        })
    }

    /// Fills an action's templates in. For `update-customer` also returns the
    /// fields, applied to the session's copy of the customer once the host confirms.
    fn render_action(
        &self,
        a: &ActionSpec,
    ) -> Result<(Action, Option<serde_json::Map<String, Json>>), ScriptError> {
        let b = self.bindings(&[]);
        Ok(match a {
            ActionSpec::Webhook {
                url,
                method,
                body,
                timeout,
                ..
            } => {
                let body = match body {
                    Some(t) => {
                        let text = t.render_json(&b)?;
                        Some(serde_json::from_str(&text).map_err(|e| {
                            ScriptError(format!("webhook body is not JSON after filling in: {e}"))
                        })?)
                    }
                    None => None,
                };
                (
                    Action::Webhook {
                        url: url.render_text(&b)?,
                        method: method.clone(),
                        body,
                        timeout: *timeout,
                    },
                    None,
                )
            }
            ActionSpec::Email { to, subject, body } => (
                Action::Email {
                    to: to.render_text(&b)?,
                    subject: subject.render_text(&b)?,
                    body: body.render_text(&b)?,
                },
                None,
            ),
            ActionSpec::UpdateCustomer { fields } => {
                let mut map = serde_json::Map::new();
                for (name, e) in fields {
                    map.insert(name.clone(), b.eval(e)?);
                }
                (
                    Action::UpdateCustomer {
                        fields: map.clone(),
                    },
                    Some(map),
                )
            }
            ActionSpec::Log { level, message } => (
                Action::Log {
                    level: level.clone(),
                    message: message.render_text(&b)?,
                },
                None,
            ),
        })
    }

    /// Fills a routing step in: the queue priority is evaluated now, with the
    /// customer data the session has at this moment.
    fn render_route(&self, step: String, r: &RouteSpec) -> Result<Step, ScriptError> {
        let b = self.bindings(&[]);
        let prompt = |p: &Option<Prompt>| p.as_ref().map(|p| self.render(p)).transpose();
        Ok(match r {
            RouteSpec::Enqueue {
                queue,
                priority,
                skills,
                prompt: p,
            } => Step::Enqueue {
                step,
                queue: queue.clone(),
                priority: as_i64(priority, &b.eval(priority)?)?,
                skills: skills
                    .iter()
                    .map(|(skill, min_level)| SkillRequirement {
                        skill: skill.clone(),
                        min_level: *min_level,
                    })
                    .collect(),
                prompt: prompt(p)?,
            },
            RouteSpec::Voicemail { mailbox, prompt: p } => Step::Voicemail {
                step,
                mailbox: mailbox.render_text(&b)?,
                prompt: prompt(p)?,
            },
            RouteSpec::Transfer {
                to,
                target,
                prompt: p,
            } => Step::Transfer {
                step,
                to: *to,
                target: target.render_text(&b)?,
                prompt: prompt(p)?,
            },
        })
    }
}

/// A value as the text a caller would key in: strings without quotes.
fn plain(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A whole number from a number or numeric text (CRM fields are often text).
fn as_i64(e: &Expr, v: &Json) -> Result<i64, ScriptError> {
    match v {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ScriptError(format!("`{}` gave {v}, not a whole number", e.source())))
}

/// A number from a number or numeric text.
fn as_f64(e: &Expr, v: &Json) -> Result<f64, ScriptError> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ScriptError(format!("`{}` gave {v}, not a number", e.source())))
}
