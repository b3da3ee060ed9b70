//! What a session and its host say to each other: steps out, inputs in, and the
//! records for the customer's contact history.
//!
//! Owns only the shapes. They are serde types because hosts send them as JSON
//! (web self-service, the agent gateway) and store them with saved sessions.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::model::{Channel, TransferTo};

/// What the host knows when a session starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionContext {
    pub channel: Channel,
    /// The customer record, if already known (a JSON object), else `null`.
    pub customer: Json,
    /// Call data: `caller_id`, `called`, `language`, … (a JSON object).
    pub call: Json,
}

/// Something the host must play, show or do, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// Play or show information; needs no reply.
    Say { step: String, prompt: PromptOut },
    /// Ask a question; reply with `Input::Answer` or `Input::NoInput`.
    Ask(Question),
    /// Record the caller; reply with `Input::Recorded` or `Input::NoInput`.
    Record(Question),
    /// Find the customer whose `field` equals `value`; reply with `Input::Customer`.
    Lookup {
        step: String,
        field: String,
        value: Json,
    },
    /// Run an action; reply with `Input::ActionDone` or `Input::ActionFailed`.
    RunAction { step: String, action: Action },
    /// Put the call in an ACD (automatic call distribution) queue; reply with
    /// `Input::Routed` or `Input::RouteFailed`.
    Enqueue {
        step: String,
        queue: String,
        priority: i64,
        skills: Vec<SkillRequirement>,
        prompt: Option<PromptOut>,
    },
    /// Send the caller to a mailbox; reply as for `Enqueue`.
    Voicemail {
        step: String,
        mailbox: String,
        prompt: Option<PromptOut>,
    },
    /// Transfer the call; reply as for `Enqueue`.
    Transfer {
        step: String,
        to: TransferTo,
        target: String,
        prompt: Option<PromptOut>,
    },
    /// The script ended: play the prompt if any, then hang up or close the page.
    End {
        step: String,
        outcome: String,
        prompt: Option<PromptOut>,
    },
}

/// A rendered prompt: audio for voice, text for screens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptOut {
    pub audio: Vec<Audio>,
    pub text: String,
    /// Whether a keypress may interrupt the audio.
    pub barge_in: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audio {
    File(String),
    Silence { ms: u64 },
}

/// One open question (an `<ask>`, `<menu>` or `<record>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// The element's id; answers appear as `answers.<step>`.
    pub step: String,
    pub input: InputKind,
    pub prompt: PromptOut,
    /// 1 for the first time asked, 2 after one no-input or no-match, …
    pub attempt: u32,
    pub tries: u32,
    /// How long to wait for the first key or word after the prompt.
    #[serde(rename = "timeout_ms", with = "ms")]
    pub timeout: Duration,
    /// For digits: how long to wait between keys.
    #[serde(rename = "inter_digit_ms", with = "ms::option")]
    pub inter_digit: Option<Duration>,
    pub choices: Vec<ChoiceOut>,
    /// A secret (a PIN): screens mask the input, and the answer is withheld
    /// from history records.
    pub sensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputKind {
    Digits {
        min: u32,
        max: u32,
        terminator: Option<char>,
    },
    Choice,
    YesNo,
    Number {
        min: Option<i64>,
        max: Option<i64>,
    },
    /// Web and agent: `YYYY-MM-DD`; voice: eight digits `DDMMYYYY`.
    Date,
    Text {
        max_chars: u32,
    },
    Recording {
        #[serde(rename = "max_duration_ms", with = "ms")]
        max_duration: Duration,
        beep: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceOut {
    pub key: Option<char>,
    pub value: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillRequirement {
    pub skill: String,
    pub min_level: u8,
}

/// An action for the host to run, with every template already filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Reply with `ActionDone(json!({"status": 200, "body": …}))`; report transport
    /// errors, timeouts and non-2xx answers as `ActionFailed`.
    Webhook {
        url: String,
        method: String,
        body: Option<Json>,
        #[serde(rename = "timeout_ms", with = "ms")]
        timeout: Duration,
    },
    Email {
        to: String,
        subject: String,
        body: String,
    },
    /// Store these fields on the customer record. The session applies them to its
    /// own copy of `customer` when the host reports `ActionDone`.
    UpdateCustomer {
        fields: serde_json::Map<String, Json>,
    },
    Log {
        level: String,
        message: String,
    },
}

/// What the host reports back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Input {
    /// Keypad digits (voice) or what was typed or picked (agent, web).
    Answer(String),
    NoInput,
    /// The customer found by a lookup, or `None`.
    Customer(Option<Json>),
    ActionDone(Json),
    ActionFailed(String),
    /// A reference to the stored recording.
    Recorded(String),
    Routed,
    RouteFailed(String),
}

impl Input {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Input::Answer(_) => "an answer",
            Input::NoInput => "no input",
            Input::Customer(_) => "a lookup result",
            Input::ActionDone(_) | Input::ActionFailed(_) => "an action result",
            Input::Recorded(_) => "a recording",
            Input::Routed | Input::RouteFailed(_) => "a routing result",
        }
    }
}

/// One entry for the customer's contact history. The host adds what only it
/// knows (the interaction or call id, the agent) when it stores the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub script: String,
    pub step: String,
    pub event: HistoryEvent,
    /// The time the host passed with the input; milliseconds since 1970 on the wire.
    #[serde(rename = "at_ms", with = "epoch_ms")]
    pub at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HistoryEvent {
    Answer {
        value: Json,
    },
    NoInput,
    NoMatch {
        input: String,
    },
    /// Every try was used without a valid answer.
    Unanswered,
    Lookup {
        found: bool,
    },
    Action {
        action: Action,
        ok: bool,
        detail: Json,
    },
    Routed {
        ok: bool,
        detail: String,
    },
    Ended {
        outcome: String,
    },
    ScriptError {
        message: String,
    },
}

/// How a session finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// `<end>`, `<hangup>` or the end of the script.
    Ended { outcome: String },
    /// Handed to a queue, a mailbox or another party.
    Routed { step: String },
    /// A runtime error with no `on-error` to go to.
    Failed { message: String },
}

/// Durations on the wire are whole milliseconds (`"timeout_ms": 5000`), which
/// JavaScript and the agent gateway read without a duration type.
mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }

    pub(super) mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
        }
    }
}

/// Wall-clock times on the wire as whole milliseconds since 1970 (`"at_ms"`),
/// the form databases and JavaScript `Date` take directly.
mod epoch_ms {
    use std::time::{Duration, SystemTime};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        // Times before 1970 do not occur in a contact history; they clamp to 0.
        let ms = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        s.serialize_u64(ms)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = u64::deserialize(d)?;
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| serde::de::Error::custom("time out of range"))
    }
}
