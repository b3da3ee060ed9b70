//! The checked form of a dialog script: what the loader produces and the
//! interpreter runs.
//!
//! Owns the types only. A script's elements are compiled into a flat list of
//! operations ([`Op`]) with jumps resolved to indexes, so the interpreter needs
//! no tree walk and a session's position is one number that serializes well.
//! Nothing here can be built outside `parse`, which is what makes a [`Script`]
//! proof that it passed every check.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diag::Pos;
use crate::expr::{Expr, Template};

/// The channels a session runs on. A script declares which it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A caller in the IVR (interactive voice response): prompts played, keypad answers.
    Voice,
    /// An agent on a call: steps shown on screen, the agent types the customer's answers.
    Agent,
    /// A customer on the web page, with no agent.
    Web,
}

impl Channel {
    pub(crate) fn parse(s: &str) -> Option<Channel> {
        match s {
            "voice" => Some(Channel::Voice),
            "agent" => Some(Channel::Agent),
            "web" => Some(Channel::Web),
            _ => None,
        }
    }
}

/// A loaded, checked dialog script.
#[derive(Debug)]
pub struct Script {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) file: String,
    pub(crate) channels: Vec<Channel>,
    /// Offered as a starting point (`listed="yes"`, the default) or only a part other
    /// scripts `<call>`.
    pub(crate) listed: bool,
    /// In declaration order, which is the order start values are evaluated in.
    pub(crate) vars: Vec<VarDecl>,
    /// The compiled steps; operation 0 is the start, the last is an implicit `<end>`.
    pub(crate) ops: Vec<Op>,
    /// Where runtime errors go (the script's `on-error`), once per session.
    pub(crate) on_error: Option<usize>,
    pub(crate) fingerprint: u64,
    /// Every audio file a session may play, for `audio_files` and the sound-set list.
    pub(crate) audio: BTreeSet<String>,
    /// The `<call>`s, for `Library` to check against their targets.
    pub(crate) calls: Vec<CallSite>,
}

impl Script {
    /// The script's `id` attribute: how sessions, `<call>` and the host name it.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// The `<description>` text, white space collapsed; empty when there is none.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The file name given to the loader.
    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Whether hosts offer the script as a starting point (the web page's list, a new
    /// web session). `listed="no"` scripts are parts other scripts `<call>`; calls and
    /// routes may still name them.
    pub fn listed(&self) -> bool {
        self.listed
    }

    /// Every audio file a session of this script may play, say-as files included.
    pub fn audio_files(&self) -> impl Iterator<Item = &str> {
        self.audio.iter().map(String::as_str)
    }

    /// A hash of the source text. A saved session records it so that resuming
    /// against an edited script fails instead of jumping to the wrong step.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// How many operations the script compiled to (a size measure for benchmarks).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The declared variable names, in declaration order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|v| v.name.as_str())
    }

    /// Every queue, mailbox, agent and skill this script routes to by a literal name
    /// (`<enqueue>`, `<voicemail>`, `<transfer>`), in source order, for hosts to check
    /// against their configuration. Names with `{{ }}` holes are only known at run
    /// time and are left out; so are numbers.
    pub fn route_names(&self) -> Vec<RouteName> {
        let mut out = Vec::new();
        for op in &self.ops {
            let OpKind::Route(route) = &op.kind else {
                continue;
            };
            let mut push = |kind, name: Option<String>| {
                if let Some(name) = name {
                    out.push(RouteName {
                        kind,
                        name,
                        pos: op.pos,
                    });
                }
            };
            match route {
                RouteSpec::Enqueue { queue, skills, .. } => {
                    push(RouteNameKind::Queue, Some(queue.clone()));
                    for (skill, _) in skills {
                        push(RouteNameKind::Skill, Some(skill.clone()));
                    }
                }
                RouteSpec::Voicemail { mailbox, .. } => {
                    push(RouteNameKind::Mailbox, mailbox.literal())
                }
                RouteSpec::Transfer { to, target, .. } => match to {
                    TransferTo::Queue => push(RouteNameKind::Queue, target.literal()),
                    TransferTo::Agent => push(RouteNameKind::Agent, target.literal()),
                    TransferTo::Number => {}
                },
            }
        }
        out
    }

    /// The ids of the scripts this one `<call>`s.
    pub fn called_scripts(&self) -> impl Iterator<Item = &str> {
        self.calls.iter().map(|c| c.script.as_str())
    }
}

/// A name a script routes to; see [`Script::route_names`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteName {
    pub kind: RouteNameKind,
    pub name: String,
    /// The routing element's position in the script's file.
    pub pos: Pos,
}

/// What a [`RouteName`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteNameKind {
    Queue,
    Mailbox,
    Agent,
    Skill,
}

impl RouteNameKind {
    /// The word an error message uses: "queue", "mailbox", "agent", "skill".
    pub fn as_str(self) -> &'static str {
        match self {
            RouteNameKind::Queue => "queue",
            RouteNameKind::Mailbox => "mailbox",
            RouteNameKind::Agent => "agent",
            RouteNameKind::Skill => "skill",
        }
    }
}

/// A `<call>` seen in a script, checked against its target once all scripts are loaded.
#[derive(Debug, Clone)]
pub(crate) struct CallSite {
    pub script: String,
    pub args: Vec<String>,
    pub pos: Pos,
}

#[derive(Debug)]
pub(crate) struct VarDecl {
    pub name: String,
    /// The start value; `None` starts the variable as `null`.
    pub init: Option<Expr>,
}

#[derive(Debug)]
pub(crate) struct Op {
    pub pos: Pos,
    /// The step name used in history records: the element's id, or `element@line`.
    pub step: String,
    /// Whether an author wrote this operation (false for jumps the compiler adds).
    pub written: bool,
    pub kind: OpKind,
}

#[derive(Debug)]
pub(crate) enum OpKind {
    /// Queue a prompt for the host; no reply.
    Say(Prompt),
    /// Wait for an answer (boxed: much larger than the other operations).
    Ask(Box<Ask>),
    /// Falls through when `test` holds, else jumps.
    Branch {
        test: Expr,
        otherwise: usize,
    },
    Switch {
        value: Expr,
        cases: Vec<(Vec<String>, usize)>,
        default: usize,
    },
    /// `<goto>`, or a jump the compiler adds at the end of a block.
    Jump(usize),
    Set {
        var: String,
        value: Expr,
    },
    Lookup {
        field: String,
        value: Expr,
        not_found: Option<usize>,
    },
    Action {
        action: ActionSpec,
        on_error: Option<usize>,
    },
    /// Hands the call elsewhere: success ends the session, failure falls through.
    Route(RouteSpec),
    /// Push a frame for another script; `result` receives its return value.
    Call {
        script: String,
        args: Vec<(String, Expr)>,
        result: Option<String>,
    },
    /// Pop the frame; in the top script, end the session.
    Return {
        value: Option<Expr>,
    },
    /// `<end>`/`<hangup>` (and the implicit end, `written` false, which returns
    /// from a called script instead).
    End {
        outcome: String,
        prompt: Option<Prompt>,
    },
}

/// What to play and show. Audio pieces play in order; the text is for screens.
#[derive(Debug, Default)]
pub(crate) struct Prompt {
    /// Played in order on voice.
    pub pieces: Vec<Piece>,
    /// Shown on screens (and logged for voice).
    pub text: Option<Template>,
    pub barge_in: bool,
}

#[derive(Debug)]
pub(crate) enum Piece {
    Audio(String),
    /// Say-as: key by key (account numbers, references).
    Digits(Expr),
    /// Say-as: a whole number in words.
    Number(Expr),
    Amount {
        value: Expr,
        currency: String,
    },
    Silence(Duration),
}

/// An `<ask>`, `<menu>` or `<record>`: anything that waits for the customer.
#[derive(Debug)]
pub(crate) struct Ask {
    pub id: String,
    pub input: InputSpec,
    /// Escalating: attempt n plays prompt n, the last repeating.
    pub prompts: Vec<Prompt>,
    /// Played before re-asking after silence; the nth silence plays the nth.
    pub no_input: Vec<Prompt>,
    /// Played before re-asking after an unacceptable answer.
    pub no_match: Vec<Prompt>,
    /// How long the host waits for the first input after the prompt.
    pub timeout: Duration,
    pub inter_digit: Option<Duration>,
    /// Attempts in total, the first included.
    pub tries: u32,
    /// An extra check over `answer`; false is a no-match.
    pub valid: Option<Expr>,
    /// PINs and the like: kept out of history records and masked on screens.
    pub sensitive: bool,
    /// Where to go when every try is used; `None` carries on after the question.
    pub on_failure: Option<usize>,
}

#[derive(Debug)]
pub(crate) enum InputSpec {
    Digits {
        min: u32,
        max: u32,
        terminator: Option<char>,
    },
    Choice(Vec<Choice>),
    YesNo,
    Number {
        min: Option<i64>,
        max: Option<i64>,
    },
    Date,
    Text {
        max: u32,
    },
    Record {
        max: Duration,
        beep: bool,
    },
}

#[derive(Debug)]
pub(crate) struct Choice {
    /// The keypad key; required on voice, optional on screens.
    pub key: Option<char>,
    /// What `answers.<id>` holds when this is chosen.
    pub value: String,
    pub label: String,
    /// For `<menu>` options: where the option's block starts.
    pub target: Option<usize>,
}

#[derive(Debug)]
pub(crate) enum ActionSpec {
    Webhook {
        url: Template,
        method: String,
        body: Option<Template>,
        timeout: Duration,
        results: Vec<(String, Expr)>,
    },
    Email {
        to: Template,
        subject: Template,
        body: Template,
    },
    UpdateCustomer {
        fields: Vec<(String, Expr)>,
    },
    Log {
        level: String,
        message: Template,
    },
}

#[derive(Debug)]
pub(crate) enum RouteSpec {
    Enqueue {
        queue: String,
        // Boxed: a compiled expression is much larger than the other variants.
        priority: Box<Expr>,
        skills: Vec<(String, u8)>,
        prompt: Option<Prompt>,
    },
    Voicemail {
        mailbox: Template,
        prompt: Option<Prompt>,
    },
    Transfer {
        to: TransferTo,
        target: Template,
        prompt: Option<Prompt>,
    },
}

/// Where a `<transfer>` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferTo {
    Agent,
    Queue,
    Number,
}
