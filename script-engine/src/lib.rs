//! XML dialog scripts: format, loader, validator and a pure interpreter.
//!
//! One script format serves three channels: a caller in the IVR (interactive
//! voice response), an agent guided on screen, and a customer on the web. The
//! format is described in `FORMAT.md` and `dialog-script.dtd` beside this crate.
//!
//! This crate owns the format, its checks and the interpreter. It must not own
//! I/O, clocks, sockets or `tokio`: hosts (the IVR runtime, web endpoints, the
//! agent gateway) drive a [`Session`] and do what its [`Step`]s ask.
//!
//! ```text
//!  XML text ──load_str──► Script ──Library::new──► Library
//!                          (checked)                 │
//!           host ◄── poll_step/poll_history ── Session::start(library, id, context, now)
//!           host ──── handle_input(now, …) ──►  Session
//! ```
//!
//! A host's loop, here answering the only question a small script asks:
//!
//! ```
//! use std::time::SystemTime;
//! use script_engine::{AnyAudio, Channel, Input, Library, Session, SessionContext, Step, load_str};
//!
//! let xml = r#"<script version="1" id="hello" channels="web">
//!   <ask id="ok" input="yes-no"><prompt>Shall we?</prompt></ask>
//!   <if test="answers.ok"><say>Great.</say></if>
//! </script>"#;
//! let loaded = load_str("hello.xml", xml, &AnyAudio).expect("a valid script");
//! assert!(loaded.warnings.is_empty());
//! let library = Library::new([loaded.script]).expect("no missing <call> targets");
//!
//! let context = SessionContext {
//!     channel: Channel::Web,
//!     customer: serde_json::json!({"name": "Ada"}),
//!     call: serde_json::json!({}),
//! };
//! let now = SystemTime::UNIX_EPOCH; // the host passes its clock's time
//! let mut session = Session::start(&library, "hello", context, now).unwrap();
//! assert!(matches!(session.poll_step(), Some(Step::Ask(q)) if q.prompt.text == "Shall we?"));
//!
//! session.handle_input(&library, now, Input::Answer("yes".into())).unwrap();
//! assert!(matches!(session.poll_step(), Some(Step::Say { prompt, .. }) if prompt.text == "Great."));
//! assert!(matches!(session.poll_step(), Some(Step::End { .. })));
//! while let Some(record) = session.poll_history() {
//!     // The host writes `record` to the customer's contact history.
//!     let _ = record;
//! }
//! ```
//!
//! `comm-server check-script FILE...` is [`check_files`] with the sound set as
//! the [`AudioFiles`]: print each diagnostic, exit non-zero on errors.

mod diag;
mod expr;
mod library;
mod model;
mod parse;
mod session;
mod speech;
mod xml;

pub use diag::{Diagnostic, LoadError, Pos, Severity};
pub use expr::{MAX_EXPR_CHARS, MAX_EXPR_NESTING};
pub use library::{Checked, Library, check_files};
pub use model::{Channel, RouteName, RouteNameKind, Script, TransferTo};
pub use parse::{
    AnyAudio, AudioFiles, DEFAULT_RECORD_MAX, DEFAULT_TEXT_MAX, DEFAULT_TIMEOUT, DEFAULT_TRIES,
    DEFAULT_WEBHOOK_TIMEOUT, FORMAT_VERSION, Loaded, MAX_TRIES, load_file, load_str,
};
pub use session::{
    Action, Audio, ChoiceOut, HistoryEvent, HistoryRecord, Input, InputKind, MAX_CALL_DEPTH,
    MAX_OPS_PER_INPUT, Outcome, PromptOut, Question, Session, SessionContext, SessionError,
    SkillRequirement, Step, WITHHELD,
};
pub use xml::{MAX_DEPTH, MAX_ELEMENTS, MAX_SOURCE_BYTES};
