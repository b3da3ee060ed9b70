//! The records the store keeps, as checked types. Text columns that hold a closed set of
//! values (transport, direction, who hung up, end reason) are parsed on the way out of the
//! database, so a bad row is an error at read time, not a surprise further on.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// An account the registrar authenticates REGISTER (and INVITE) requests against.
///
/// Only the HA1 digests are stored, never the password: `ha1_md5` is the lowercase hex
/// MD5 of `username:realm:password` (RFC 2617 §3.2.2.2) and `ha1_sha256` the SHA-256 of
/// the same string (RFC 8760 §2). Computing them is the digest module's job.
#[derive(Clone, PartialEq, Eq)]
pub struct SipAccount {
    /// The user part of the address-of-record; unique.
    pub username: String,
    /// The digest realm the HA1 values were computed for.
    pub realm: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
    pub display_name: Option<String>,
    /// A disabled account is kept (its CDRs still name it) but must not authenticate.
    pub enabled: bool,
}

// HA1 is password-equivalent for digest authentication, so it stays out of logs.
impl fmt::Debug for SipAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipAccount")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("ha1_md5", &"<redacted>")
            .field("ha1_sha256", &"<redacted>")
            .field("display_name", &self.display_name)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// One registration binding of an address-of-record to a contact (RFC 3261 §10.3).
///
/// Expiry is absolute wall-clock time so that bindings survive a restart; the registrar
/// computes it from its injected clock plus the granted `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The address-of-record's user part, e.g. `alice`.
    pub aor: String,
    /// The Contact URI as the UA sent it; with `aor`, the binding's identity.
    pub contact: String,
    /// Where the REGISTER came from, so requests can reach UAs behind NAT.
    pub source: SocketAddr,
    pub transport: Transport,
    /// Call-ID and CSeq of the REGISTER that last refreshed this binding; §10.3 step 7
    /// uses them to ignore out-of-order refreshes.
    pub call_id: String,
    pub cseq: u32,
    /// Unix milliseconds after which the binding no longer counts.
    pub expires_at_ms: i64,
    /// The Contact's `q` parameter, when the UA gave one.
    pub q: Option<QValue>,
    /// The `+sip.instance` Contact parameter (RFC 5626 §4.1), when the UA gave one.
    pub instance_id: Option<String>,
}

/// A Contact `q` parameter (RFC 3261 §20.10): 0 to 1 with at most three decimals, kept
/// as thousandths so that it round-trips exactly through both databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QValue(u16);

impl QValue {
    /// The highest preference, which RFC 3261 gives no explicit name but UAs default to.
    pub const MAX: QValue = QValue(1000);

    /// `None` unless `millis` is within 0..=1000.
    pub fn from_millis(millis: u16) -> Option<QValue> {
        (millis <= 1000).then_some(QValue(millis))
    }

    pub fn millis(self) -> u16 {
        self.0
    }
}

impl fmt::Display for QValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// The transport a binding was registered over; requests to it must use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Which way a call crossed the server's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a trunk or an outside caller into the call center.
    Inbound,
    /// From the call center (an agent or a campaign) out through a trunk.
    Outbound,
    /// Between two registered users.
    Internal,
}

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HungUpBy {
    Caller,
    Callee,
    /// The server itself: timeouts, shutdown, failures.
    System,
}

/// How a call ended. New reasons may be added without a migration: the column is free
/// text and only this enum decides what is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The call was answered and then hung up normally.
    Answered,
    /// The caller gave up before an answer (CANCEL).
    Cancelled,
    /// The caller left a queue before an agent took the call.
    Abandoned,
    Busy,
    NoAnswer,
    /// The callee declined (a 4xx/6xx other than busy).
    Rejected,
    /// Routing, trunk or internal failure.
    Failed,
    /// RTP stopped arriving and the call was torn down.
    MediaTimeout,
    /// The server's shutdown grace period ran out.
    Shutdown,
}

/// A call detail record, written exactly once when a call ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdr {
    /// The caller leg's SIP Call-ID; unique.
    pub call_id: String,
    pub direction: Direction,
    pub caller: String,
    pub callee: String,
    /// The route or target the call was sent to (a number, a queue, a script).
    pub route: String,
    pub started_at_ms: i64,
    /// `None` when the call was never answered.
    pub answered_at_ms: Option<i64>,
    pub ended_at_ms: i64,
    pub hung_up_by: HungUpBy,
    pub end_reason: EndReason,
    /// The final SIP status sent to the caller.
    pub sip_status: u16,
    /// The legs of the call as JSON, as the B2BUA wrote them.
    pub legs_json: String,
    /// Media quality (loss, jitter, MOS) as JSON, when media flowed.
    pub media_quality_json: Option<String>,
}

/// A value outside its closed set; the text is kept for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue(pub String);

/// Text forms for the closed sets; these strings are what the database holds.
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(UnknownValue(other.to_owned())),
                }
            }
        }
    };
}

text_enum!(Transport { Udp => "udp", Tcp => "tcp" });
text_enum!(Direction { Inbound => "inbound", Outbound => "outbound", Internal => "internal" });
text_enum!(HungUpBy { Caller => "caller", Callee => "callee", System => "system" });
text_enum!(EndReason {
    Answered => "answered",
    Cancelled => "cancelled",
    Abandoned => "abandoned",
    Busy => "busy",
    NoAnswer => "no-answer",
    Rejected => "rejected",
    Failed => "failed",
    MediaTimeout => "media-timeout",
    Shutdown => "shutdown",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for reason in [
            EndReason::Answered,
            EndReason::Cancelled,
            EndReason::Abandoned,
            EndReason::Busy,
            EndReason::NoAnswer,
            EndReason::Rejected,
            EndReason::Failed,
            EndReason::MediaTimeout,
            EndReason::Shutdown,
        ] {
            assert_eq!(reason.as_str().parse::<EndReason>(), Ok(reason));
        }
        assert_eq!("tls".parse::<Transport>(), Err(UnknownValue("tls".into())));
    }

    #[test]
    fn q_value_is_bounded_and_prints_like_the_header() {
        assert_eq!(QValue::from_millis(1001), None);
        assert_eq!(
            QValue::from_millis(500).map(|q| q.to_string()),
            Some("0.500".into())
        );
        assert_eq!(QValue::MAX.to_string(), "1.000");
    }

    #[test]
    fn debug_hides_ha1() {
        let account = SipAccount {
            username: "alice".into(),
            realm: "example.com".into(),
            ha1_md5: "secret-md5".into(),
            ha1_sha256: "secret-sha".into(),
            display_name: None,
            enabled: true,
        };
        let shown = format!("{account:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}

/// One row of the ACD's durable event log (`acd_events`).
///
/// The store keeps it as the event log writer hands it over and gives it back in the
/// order written; what the JSON means is the reports module's business
/// (`crate::reports::log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcdEventRecord {
    /// Wall-clock time of the event, Unix milliseconds.
    pub at_ms: i64,
    /// The event's kind (`Answered`, `StatusChanged`, `ServerStarted`...).
    pub kind: String,
    /// The work item (the caller's call) the event is about, if any.
    pub item: Option<i64>,
    /// The queue's configured name, if the event names a queue.
    pub queue: Option<String>,
    /// The agent's configured name, if the event names an agent.
    pub agent: Option<String>,
    /// The whole event as JSON.
    pub details_json: String,
}

/// One voicemail message: a complete WAV in the mailbox directory, listed here once it
/// is in place. Rows are never written for partial recordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailMessage {
    /// The file's stem, `<created_at_ms>-<random>`; unique across mailboxes.
    pub id: String,
    /// The mailbox name from the config.
    pub mailbox: String,
    /// Who left it: the caller's user part or number as it arrived ("" when unknown).
    pub caller: String,
    pub duration_ms: i64,
    /// Unix milliseconds when the message was stored.
    pub created_at_ms: i64,
    /// Listened to by the mailbox owner (new messages are the unheard ones).
    pub heard: bool,
    /// The WAV, relative to the data directory.
    pub file: String,
}

/// How an agent handled a voicemail task (a message in a queue's mailbox): who, when
/// and with what disposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailHandling {
    /// The agent's configured name.
    pub agent: String,
    /// Unix milliseconds of the disposition.
    pub at_ms: i64,
    /// The disposition code.
    pub outcome: String,
}
