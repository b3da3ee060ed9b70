//! Server configuration: TOML, every key known (`deny_unknown_fields`), every value
//! checked at load. The commented reference is `deploy/comm-server.toml`, which is
//! also embedded as the demo configuration `serve` runs with when given none.
//!
//! Owns: the config types, their defaults (named constants), load-time checks with the
//! key and line of each error, and [`Config::check_references`]: the files a config
//! names (scripts, prompts) exist and load. Must not own: what the values mean at run
//! time.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use script_engine::{AnyAudio, AudioFiles, Channel, Diagnostic, Library, Severity, check_files};
use serde::Deserialize;
use thiserror::Error;

mod agent_script;
pub mod crm;
mod queue_rules;
mod script_names;
mod tls;

pub use queue_rules::{EmptySetting, JoinSetting, QueueExit};
pub use tls::TlsSection;

use crate::media::prompt::PromptLibrary;

/// The demo configuration shipped in `deploy/`, used when no `--config` is given.
pub const DEMO_CONFIG: &str = include_str!("../../deploy/comm-server.toml");

pub const DEFAULT_SIP_ADDR: &str = "0.0.0.0:5060";
pub const DEFAULT_DATA_DIR: &str = "data";
/// Dialog scripts (`*.xml`), relative to the working directory.
pub const DEFAULT_SCRIPTS_DIR: &str = "scripts";
/// Prompts (`*.wav`, any depth), relative to the working directory.
pub const DEFAULT_SOUNDS_DIR: &str = "sounds";
pub const DEFAULT_REALM: &str = "comm-server";
/// How long calls in progress may run on after SIGTERM before they are ended.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Retry-After sent with 503 while draining.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);
/// RFC 3261 §10.2.1.1: registrations shorter than this get 423.
pub const DEFAULT_MIN_EXPIRES: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_EXPIRES: Duration = Duration::from_secs(3600);
/// How long an outbound leg may ring before it counts as no-answer.
pub const DEFAULT_RING_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: String,
        line: usize,
        key: String,
        message: String,
    },
    /// An error in a dialog script the config loads; it names its own file, line
    /// and column.
    #[error("{0}")]
    Script(Diagnostic),
}

/// A duration written for people: `"500ms"`, `"20s"`, `"5m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid duration {s:?}: expected e.g. \"500ms\", \"20s\", \"5m\"")
        })?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
        };
        Ok(HumanDuration(d))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub sip: SipSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub media: MediaSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default, rename = "user")]
    pub users: Vec<UserSection>,
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkSection>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueSection>,
    #[serde(default, rename = "agent")]
    pub agents: Vec<AgentSection>,
    #[serde(default, rename = "mailbox")]
    pub mailboxes: Vec<MailboxSection>,
    /// Outbound campaigns (see [`crate::campaigns::settings`]).
    #[serde(default, rename = "campaign")]
    pub campaigns: Vec<crate::campaigns::settings::CampaignSection>,
    #[serde(default)]
    pub grpc: GrpcSection,
    #[serde(default, rename = "supervisor")]
    pub supervisors: Vec<SupervisorSection>,
    #[serde(default)]
    pub customers: CustomersSection,
    /// Outgoing e-mail (script `<email>`, voicemail notifications); none: no e-mail.
    #[serde(default)]
    pub smtp: Option<crate::mail::SmtpSection>,
    /// TLS for the HTTP and gRPC ports; none: both in clear.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// The text the config was parsed from, so later checks can name lines.
    #[serde(skip)]
    origin: Origin,
}

/// Where a config came from: its name in errors and its text (for line numbers).
#[derive(Debug, Clone, Default)]
struct Origin {
    path: String,
    text: Arc<str>,
}

/// Default wrap-up after each call: time to finish notes before the next offer.
pub const DEFAULT_WRAP_UP: Duration = Duration::from_secs(10);
/// Default time an offer rings an agent before it moves on.
pub const DEFAULT_AGENT_RING: Duration = Duration::from_secs(15);

/// An ACD queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QueueSection {
    pub name: toml::Spanned<String>,
    /// longest-idle (default), round-robin, fewest-calls, least-talk-time, ring-all,
    /// linear or random.
    #[serde(default = "default_strategy")]
    pub strategy: toml::Spanned<String>,
    /// After-call work before the agent's next offer. Default "10s".
    #[serde(default = "default_wrap_up")]
    pub wrap_up: HumanDuration,
    /// How long an offer rings one agent. Default "15s".
    #[serde(default = "default_agent_ring")]
    pub ring_timeout: HumanDuration,
    /// Tell waiting callers their position this often; never when absent.
    #[serde(default)]
    pub announce_every: Option<HumanDuration>,
    /// Longest a caller waits before going to `overflow`; no limit when absent.
    /// Queued callbacks never overflow: nobody is on hold.
    #[serde(default)]
    pub max_wait: Option<HumanDuration>,
    /// Most callers waiting; later arrivals go to `overflow` at once. No limit when absent.
    #[serde(default)]
    pub max_length: Option<toml::Spanned<usize>>,
    /// Where callers go on max-wait, max-length or the join/leave rules:
    /// `{ queue = "..." }`, `{ mailbox = "..." }`, `{ script = "..." }` or "hang-up"
    /// (default).
    #[serde(default)]
    pub overflow: Option<toml::Spanned<QueueExit>>,
    /// Whether callers may join with nobody to answer: "always" (default),
    /// "if-agents-logged-in", "if-agents-available". Refused callers overflow.
    #[serde(default)]
    pub join: JoinSetting,
    /// What waiting callers do when the queue's last agent logs out: "stay" (default)
    /// or "leave" (they overflow; queued callbacks keep their place).
    #[serde(default)]
    pub when_empty: EmptySetting,
    /// A key (0-9, *, #) that takes a waiting caller to `exit-target`. None by default.
    #[serde(default)]
    pub exit_key: Option<toml::Spanned<char>>,
    /// Where the exit key goes; required with `exit-key`. Same forms as `overflow`.
    #[serde(default)]
    pub exit_target: Option<toml::Spanned<QueueExit>>,
    /// A key (0-9, *, #) with which a waiting caller asks to be called back: they hear
    /// the callback prompt and hang up, and their place in line is kept. None by default.
    #[serde(default)]
    pub callback_key: Option<toml::Spanned<char>>,
    /// Handle time (talk plus wrap-up) the estimated wait assumes until calls are
    /// measured. Default "3m".
    #[serde(default)]
    pub expected_handle_time: Option<HumanDuration>,
    /// The agent-guided script (a file in scripts-dir that lists the `agent`
    /// channel) whose id the screen pop gives the agents of this queue. None by default.
    #[serde(default)]
    pub agent_script: Option<toml::Spanned<String>>,
}

fn default_strategy() -> toml::Spanned<String> {
    toml::Spanned::new(0..0, "longest-idle".into())
}
fn default_wrap_up() -> HumanDuration {
    HumanDuration(DEFAULT_WRAP_UP)
}
fn default_agent_ring() -> HumanDuration {
    HumanDuration(DEFAULT_AGENT_RING)
}

/// An agent: a SIP user whose registered phone rings with offers. Agents set their
/// status by dialling *1 (available), *2 (break) and *0 (log out).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentSection {
    /// A `[[user]]` name.
    pub name: toml::Spanned<String>,
    /// Queues this agent serves, in order of preference.
    pub queues: Vec<String>,
    /// Skills with proficiency 1 (novice) to 5 (expert): `{ billing = 3 }`. Routes and
    /// scripts may require them. Default none.
    #[serde(default)]
    pub skills: std::collections::BTreeMap<String, u8>,
    /// Desktop (gRPC) password as an argon2 PHC string, from `comm-server
    /// hash-password`; without it the agent cannot log in to the desktop API.
    #[serde(default)]
    pub password_hash: Option<toml::Spanned<String>>,
}

/// A supervisor: may watch every agent and queue over gRPC and act on agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SupervisorSection {
    /// Login name (need not be a SIP user).
    pub name: toml::Spanned<String>,
    /// Password as an argon2 PHC string, from `comm-server hash-password`.
    pub password_hash: toml::Spanned<String>,
}

/// Where the agent and supervisor gRPC API listens by default (the IANA-unassigned
/// port gRPC examples use).
pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50051";

/// The agent desktop and supervisor gRPC API (`agent-gateway`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GrpcSection {
    /// Listen address (gRPC and gRPC-web); "" disables it. Default "0.0.0.0:50051".
    #[serde(default = "default_grpc_addr")]
    pub listen: String,
    /// An agent whose desktop has had no event stream this long is put on break
    /// ("desktop-lost") so calls stop ringing a phone nobody watches. Default "60s".
    #[serde(default = "default_lease")]
    pub lease: HumanDuration,
    /// Consecutive failed logins that lock a name; 0 never locks. Default 5.
    #[serde(default = "default_lockout_after")]
    pub lockout_after: u32,
    /// How long a locked name stays locked. Default "5m".
    #[serde(default = "default_lockout_for")]
    pub lockout_for: HumanDuration,
    /// Lifetime of a session token. Default "12h".
    #[serde(default = "default_session_ttl")]
    pub session_ttl: HumanDuration,
    /// Longest a unary request may take (a client's shorter `grpc-timeout` wins);
    /// streams are not cut. Default "10s".
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// Sustained requests per second per logged-in user; 0: no limit. Default 20.
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second: u32,
    /// Requests a user may make at once above that rate. Default 40.
    #[serde(default = "default_request_burst")]
    pub request_burst: u32,
    /// Login attempts per minute from one address; 0: no limit. Default 30.
    #[serde(default = "default_logins_per_minute")]
    pub logins_per_minute: u32,
    /// Event or status streams one user may hold open at once; 0: no limit.
    /// Default 4.
    #[serde(default = "default_streams_per_user")]
    pub streams_per_user: u32,
}

impl Default for GrpcSection {
    fn default() -> Self {
        GrpcSection {
            listen: default_grpc_addr(),
            lease: default_lease(),
            lockout_after: default_lockout_after(),
            lockout_for: default_lockout_for(),
            session_ttl: default_session_ttl(),
            request_timeout: default_request_timeout(),
            requests_per_second: default_requests_per_second(),
            request_burst: default_request_burst(),
            logins_per_minute: default_logins_per_minute(),
            streams_per_user: default_streams_per_user(),
        }
    }
}

impl GrpcSection {
    /// The gateway's per-client limits.
    pub fn limits(&self) -> agent_gateway::LimitConfig {
        agent_gateway::LimitConfig {
            requests_per_second: self.requests_per_second,
            request_burst: self.request_burst,
            logins_per_minute: self.logins_per_minute,
            streams_per_user: self.streams_per_user,
        }
    }
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration(agent_gateway::DEFAULT_REQUEST_TIMEOUT)
}
fn default_requests_per_second() -> u32 {
    agent_gateway::limits::DEFAULT_REQUESTS_PER_SECOND
}
fn default_request_burst() -> u32 {
    agent_gateway::limits::DEFAULT_REQUEST_BURST
}
fn default_logins_per_minute() -> u32 {
    agent_gateway::limits::DEFAULT_LOGINS_PER_MINUTE
}
fn default_streams_per_user() -> u32 {
    agent_gateway::limits::DEFAULT_STREAMS_PER_USER
}

fn default_grpc_addr() -> String {
    DEFAULT_GRPC_ADDR.into()
}
fn default_lease() -> HumanDuration {
    HumanDuration(agent_gateway::sessions::DEFAULT_LEASE)
}
fn default_lockout_after() -> u32 {
    agent_gateway::sessions::DEFAULT_LOCKOUT_AFTER
}
fn default_lockout_for() -> HumanDuration {
    HumanDuration(agent_gateway::sessions::DEFAULT_LOCKOUT_FOR)
}
fn default_session_ttl() -> HumanDuration {
    HumanDuration(agent_gateway::sessions::DEFAULT_SESSION_TTL)
}

/// Longest voicemail message by default; the recording stops there.
pub const DEFAULT_MAX_MESSAGE: Duration = Duration::from_secs(180);
/// Messages shorter than this are discarded (a caller who hung up at the beep).
pub const DEFAULT_MIN_MESSAGE: Duration = Duration::from_secs(1);
/// A deposit ends after this much silence from the caller.
pub const DEFAULT_SILENCE_END: Duration = Duration::from_secs(5);
/// Mean absolute sample level (16-bit linear) below which audio counts as silence:
/// about -50 dBFS, under a phone's line noise but far below speech.
pub const DEFAULT_SILENCE_LEVEL: u16 = 100;

/// A voicemail box. Callers reach it through a `{ mailbox = NAME }` route and leave a
/// message; its owner listens through a `{ voicemail-retrieval = NAME }` route or by
/// dialling *98 from their own phone.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MailboxSection {
    /// The mailbox name, used in routes and as its directory under
    /// `data-dir/voicemail/` (letters, digits and - _ .).
    pub name: toml::Spanned<String>,
    /// A `[[user]]` whose registered phones get message-waiting NOTIFYs (RFC 3842) and
    /// who may dial *98 for this mailbox. None: no message-waiting indication.
    #[serde(default)]
    pub owner: Option<String>,
    /// The retrieval PIN: digits only. Written in plain text in the config (the phone
    /// keypad offers nothing to hash against), compared in constant time and never
    /// logged or shown in debug output.
    pub pin: String,
    /// A prompt name in the sounds directory played instead of
    /// "voicemail/leave-message-after-tone".
    #[serde(default)]
    pub greeting: Option<String>,
    /// The recording stops here. Default "180s".
    #[serde(default = "default_max_message")]
    pub max_message: HumanDuration,
    /// Shorter messages are discarded. Default "1s".
    #[serde(default = "default_min_message")]
    pub min_message: HumanDuration,
    /// The recording ends after this much silence. Default "5s".
    #[serde(default = "default_silence_end")]
    pub silence_end: HumanDuration,
    /// Mean absolute 16-bit sample level that counts as silence. Default 100.
    #[serde(default = "default_silence_level")]
    pub silence_level: u16,
    /// After the message, offer "listen 1, record again 2, send 3" before it is
    /// stored. A caller who hangs up during review has the message sent. Default false.
    #[serde(default)]
    pub review: bool,
    /// Messages older than this many days are deleted (file and row) by a sweep at
    /// start-up and every hour, heard or not. Default none: kept until deleted.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Where to e-mail new messages, with the recording attached (needs `[smtp]`).
    #[serde(default)]
    pub email: Option<String>,
    /// A `[[queue]]` whose agents work this mailbox: every new message becomes a
    /// voicemail task the ACD offers to them over the agent gateway, with a screen pop of
    /// the caller and the message, until an agent's disposition marks it handled.
    /// Default none: messages wait for the owner only.
    #[serde(default)]
    pub work_queue: Option<String>,
}

impl fmt::Debug for MailboxSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxSection")
            .field("name", self.name.get_ref())
            .field("owner", &self.owner)
            .field("pin", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn default_max_message() -> HumanDuration {
    HumanDuration(DEFAULT_MAX_MESSAGE)
}
fn default_min_message() -> HumanDuration {
    HumanDuration(DEFAULT_MIN_MESSAGE)
}
fn default_silence_end() -> HumanDuration {
    HumanDuration(DEFAULT_SILENCE_END)
}
fn default_silence_level() -> u16 {
    DEFAULT_SILENCE_LEVEL
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerSection {
    /// Where the SQLite database and recordings live; created when missing.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Dialog scripts; relative paths are resolved against the working directory.
    #[serde(default = "default_scripts_dir")]
    pub scripts_dir: PathBuf,
    #[serde(default = "default_sounds_dir")]
    pub sounds_dir: PathBuf,
    #[serde(default = "default_grace")]
    pub shutdown_grace: HumanDuration,
    /// The site's IANA time zone: where "today" starts on the wallboard, and the zone
    /// voicemail retrieval announces message times in. Default UTC.
    #[serde(default)]
    pub time_zone: Option<toml::Spanned<String>>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            data_dir: default_data_dir(),
            scripts_dir: default_scripts_dir(),
            sounds_dir: default_sounds_dir(),
            shutdown_grace: default_grace(),
            time_zone: None,
        }
    }
}

impl ServerSection {
    /// The site's zone; UTC when unset or (only in a config built by hand, `check`
    /// refuses it at load) unknown.
    pub fn zone(&self) -> chrono_tz::Tz {
        self.time_zone
            .as_ref()
            .and_then(|z| z.get_ref().parse().ok())
            .unwrap_or(chrono_tz::Tz::UTC)
    }
}

fn default_data_dir() -> PathBuf {
    DEFAULT_DATA_DIR.into()
}
fn default_scripts_dir() -> PathBuf {
    DEFAULT_SCRIPTS_DIR.into()
}
fn default_sounds_dir() -> PathBuf {
    DEFAULT_SOUNDS_DIR.into()
}
fn default_grace() -> HumanDuration {
    HumanDuration(DEFAULT_SHUTDOWN_GRACE)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SipSection {
    /// UDP listen address; empty string disables UDP.
    #[serde(default = "default_sip_addr")]
    pub udp: String,
    /// TCP listen address; empty string disables TCP.
    #[serde(default = "default_sip_addr")]
    pub tcp: String,
    /// Host written into Via/Contact; defaults to the listen IP (127.0.0.1 for 0.0.0.0).
    #[serde(default)]
    pub public_host: Option<String>,
    #[serde(default = "default_realm")]
    pub realm: String,
    #[serde(default = "default_min_expires")]
    pub min_expires: HumanDuration,
    #[serde(default = "default_max_expires")]
    pub max_expires: HumanDuration,
    #[serde(default = "default_retry_after")]
    pub retry_after: HumanDuration,
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout: HumanDuration,
    /// Digest algorithms challenged with, in this order (RFC 8760 §2.4: clients use the
    /// first they support). Credentials in any listed algorithm are accepted.
    #[serde(default = "default_digest_algorithms")]
    pub digest_algorithms: Vec<DigestAlgorithm>,
}

/// A digest algorithm name in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DigestAlgorithm {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

/// MD5 only: many deployed phones (and baresip 1.0, sipsak) fail when a 401 carries a
/// challenge with an algorithm they lack, even next to an MD5 one, so SHA-256 (RFC 8760)
/// is opt-in: `["SHA-256", "MD5"]` for mixed fleets, `["SHA-256"]` for modern ones.
pub fn default_digest_algorithms() -> Vec<DigestAlgorithm> {
    vec![DigestAlgorithm::Md5]
}

impl Default for SipSection {
    fn default() -> Self {
        SipSection {
            udp: default_sip_addr(),
            tcp: default_sip_addr(),
            public_host: None,
            realm: default_realm(),
            min_expires: default_min_expires(),
            max_expires: default_max_expires(),
            retry_after: default_retry_after(),
            ring_timeout: default_ring_timeout(),
            digest_algorithms: default_digest_algorithms(),
        }
    }
}

fn default_sip_addr() -> String {
    DEFAULT_SIP_ADDR.into()
}
fn default_realm() -> String {
    DEFAULT_REALM.into()
}
fn default_min_expires() -> HumanDuration {
    HumanDuration(DEFAULT_MIN_EXPIRES)
}
fn default_max_expires() -> HumanDuration {
    HumanDuration(DEFAULT_MAX_EXPIRES)
}
fn default_retry_after() -> HumanDuration {
    HumanDuration(DEFAULT_RETRY_AFTER)
}
fn default_ring_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_RING_TIMEOUT)
}

/// Where the web self-service pages and API listen by default.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpSection {
    /// Listen address for the web self-service page and its JSON API; "" disables it.
    /// Default "0.0.0.0:8080".
    #[serde(default = "default_http_addr")]
    pub listen: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: default_http_addr(),
        }
    }
}

fn default_http_addr() -> String {
    DEFAULT_HTTP_ADDR.into()
}

/// RTP port range default: 5,001 even ports, room for 2,500 concurrent bridged calls.
pub const DEFAULT_RTP_PORTS: &str = "10000-20000";
/// A leg that sends no RTP for this long (and is not on hold) is hung up.
pub const DEFAULT_MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MediaSection {
    /// Address RTP sockets bind to. Default "0.0.0.0".
    #[serde(default = "default_media_bind")]
    pub bind: IpAddr,
    /// Address written into our SDP; default: the SIP public host when it is an IP,
    /// else the bind address (127.0.0.1 for 0.0.0.0).
    #[serde(default)]
    pub public_ip: Option<IpAddr>,
    /// `"first-last"` (even ports are used, RTCP on the odd one above), or `"auto"`
    /// to let the OS choose (tests; no RTCP then).
    #[serde(default = "default_rtp_ports")]
    pub rtp_ports: String,
    #[serde(default = "default_media_timeout")]
    pub media_timeout: HumanDuration,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            bind: default_media_bind(),
            public_ip: None,
            rtp_ports: default_rtp_ports(),
            media_timeout: default_media_timeout(),
        }
    }
}

fn default_media_bind() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}
fn default_rtp_ports() -> String {
    DEFAULT_RTP_PORTS.into()
}
fn default_media_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_MEDIA_TIMEOUT)
}

impl MediaSection {
    /// The port range, or `None` for OS-chosen ports.
    pub fn port_range(&self) -> Result<Option<(u16, u16)>, String> {
        if self.rtp_ports == "auto" {
            return Ok(None);
        }
        let bad = || {
            format!(
                "{:?}: use \"first-last\" (e.g. \"10000-20000\") or \"auto\"",
                self.rtp_ports
            )
        };
        let (a, b) = self.rtp_ports.split_once('-').ok_or_else(bad)?;
        let (a, b): (u16, u16) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a < 1024 || b <= a {
            return Err(bad());
        }
        Ok(Some((a, b)))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StorageSection {
    /// `sqlite://PATH` or `postgres://...`; default: SQLite in the data directory.
    #[serde(default)]
    pub url: Option<String>,
}

/// How many contact-history entries a screen pop carries by default.
pub const DEFAULT_SCREEN_POP_HISTORY: u32 = 10;

/// Customer records: how phone numbers are read (see [`crate::phone`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CustomersSection {
    /// Country calling code for national numbers, digits without `+` (`"44"`, `"1"`).
    /// Default: none, so national numbers (`020 7946 0958`) are refused and only
    /// international ones (`+44…`, `0044…`) match customers.
    #[serde(default)]
    pub default_country_code: Option<toml::Spanned<String>>,
    /// Dialled before a national number; "" when the country has none. Default "0".
    #[serde(default = "default_trunk_prefix")]
    pub trunk_prefix: String,
    /// Dialled before a country code. Default "00" (ITU-T's recommendation).
    #[serde(default = "default_international_prefix")]
    pub international_prefix: String,
    /// Contact-history entries given with a screen pop, newest first. Default 10.
    #[serde(default = "default_screen_pop_history")]
    pub screen_pop_history: u32,
    /// Local store or external CRM first (see [`crm::LookupOrder`]). Default
    /// "local-first".
    #[serde(default)]
    pub lookup_order: crm::LookupOrder,
    /// An external CRM asked over HTTP.
    #[serde(default)]
    pub http: Option<crm::HttpCrmSection>,
    /// An external CRM's table in another database.
    #[serde(default)]
    pub sql: Option<crm::SqlCrmSection>,
}

impl Default for CustomersSection {
    fn default() -> Self {
        CustomersSection {
            default_country_code: None,
            trunk_prefix: default_trunk_prefix(),
            international_prefix: default_international_prefix(),
            screen_pop_history: DEFAULT_SCREEN_POP_HISTORY,
            lookup_order: crm::LookupOrder::default(),
            http: None,
            sql: None,
        }
    }
}

fn default_trunk_prefix() -> String {
    crate::phone::DEFAULT_TRUNK_PREFIX.into()
}
fn default_international_prefix() -> String {
    crate::phone::DEFAULT_INTERNATIONAL_PREFIX.into()
}
fn default_screen_pop_history() -> u32 {
    DEFAULT_SCREEN_POP_HISTORY
}

impl CustomersSection {
    /// The dial plan phone numbers are normalised with; checked when the config loads.
    pub fn dial_plan(&self) -> Result<crate::phone::DialPlan, String> {
        crate::phone::DialPlan::new(
            self.default_country_code
                .as_ref()
                .map(|c| c.get_ref().as_str()),
            &self.trunk_prefix,
            &self.international_prefix,
        )
    }
}

/// A SIP account (an agent's phone, a softphone). Exactly one of `password` or the
/// two HA1 hashes; a password is hashed at load and never kept or logged.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserSection {
    pub name: toml::Spanned<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub ha1_md5: Option<String>,
    #[serde(default)]
    pub ha1_sha256: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

impl fmt::Debug for UserSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSection")
            .field("name", self.name.get_ref())
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrunkSection {
    pub name: toml::Spanned<String>,
    /// The peer, `host:port` (an IP address for now).
    pub address: toml::Spanned<String>,
    /// Source IPs whose INVITEs are accepted as inbound calls from this trunk;
    /// defaults to the address's IP.
    #[serde(default)]
    pub inbound_sources: Vec<String>,
    /// Dialled numbers starting with one of these go out through this trunk.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Credentials the trunk may challenge for; sent only to `realm` when it is set.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub realm: Option<String>,
    /// Register to the trunk with the credentials above, renewing before expiry.
    #[serde(default)]
    pub register: bool,
    #[serde(default)]
    pub caller_id: Option<String>,
}

impl fmt::Debug for TrunkSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrunkSection")
            .field("name", self.name.get_ref())
            .field("address", self.address.get_ref())
            .field("prefixes", &self.prefixes)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteSection {
    /// The Request-URI user that selects this route (a DID or an extension).
    pub number: toml::Spanned<String>,
    pub target: toml::Spanned<Target>,
}

/// Where an inbound call goes. Written as a table with one of these keys
/// (`{ queue = "support" }`); a queue may add the skills its callers need
/// (`{ queue = "support", skills = { billing = 2 } }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "queue_rules::RawTarget")]
pub enum Target {
    /// A registered SIP user (rings their most recent binding).
    User(String),
    /// An IVR (interactive voice response) dialog script: a file name in the scripts
    /// directory, `.xml` optional (`"bank-card"` is `scripts/bank-card.xml`). It must
    /// load with the other scripts there and run on the voice channel.
    Script(String),
    /// An ACD queue.
    Queue(String),
    /// An ACD queue, for callers who need agents with these skills (minimum levels).
    QueueWithSkills(String, std::collections::BTreeMap<String, u8>),
    /// An agent, by name.
    Agent(String),
    /// A `[[mailbox]]`: the caller leaves a message.
    Mailbox(String),
    /// A `[[mailbox]]`'s owner listens to its messages, after the PIN.
    VoicemailRetrieval(String),
    /// Answers, plays these prompts (names in the sounds directory, e.g.
    /// "general/welcome"), then hangs up.
    Prompt(Vec<String>),
    /// Answers and hangs up after a while; for tests and line checks.
    AutoAnswer(AutoAnswer),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AutoAnswer {
    /// Hang up after this long; never when absent.
    #[serde(default)]
    pub hangup_after: Option<HumanDuration>,
}

/// A checked trunk.
#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    pub address: SocketAddr,
    pub inbound_sources: Vec<IpAddr>,
    pub prefixes: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub realm: Option<String>,
    pub register: bool,
    pub caller_id: Option<String>,
}

impl Trunk {
    /// What the B2BUA may answer this trunk's challenges with.
    pub fn credentials(&self) -> Option<crate::call::TrunkCredentials> {
        Some(crate::call::TrunkCredentials {
            username: self.username.clone()?,
            password: self.password.clone()?,
            realm: self.realm.clone(),
        })
    }
}

fn line_of(src: &str, offset: usize) -> usize {
    line_column(src, offset).0
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset.min(src.len())).unwrap_or(src);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

impl Config {
    /// Parses and checks a configuration; `path` names it in errors.
    pub fn parse(src: &str, path: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(src).map_err(|e| ConfigError::Syntax {
            // `file:line:column` first, as editors and the script checker print it;
            // toml's own message repeats the line with a caret under the column.
            path: match e.span() {
                Some(span) => {
                    let (line, column) = line_column(src, span.start);
                    format!("{path}:{line}:{column}")
                }
                None => path.to_string(),
            },
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.check(src, path)?;
        cfg.origin = Origin {
            path: path.to_string(),
            text: src.into(),
        };
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        Config::parse(&src, &name)
    }

    fn check(&self, src: &str, path: &str) -> Result<(), ConfigError> {
        let invalid =
            |span: std::ops::Range<usize>, key: &str, message: String| ConfigError::Invalid {
                path: path.to_string(),
                line: line_of(src, span.start),
                key: key.to_string(),
                message,
            };
        if let Some(z) = &self.server.time_zone
            && z.get_ref().parse::<chrono_tz::Tz>().is_err()
        {
            return Err(invalid(
                z.span(),
                "server.time-zone",
                format!(
                    "unknown time zone {:?}: use an IANA name such as \"Europe/London\"",
                    z.get_ref()
                ),
            ));
        }
        if let Some(tls) = &self.tls
            && let Err(e) = tls.acceptor()
        {
            let (span, key) = match e {
                crate::tls::TlsError::Key { .. } => (tls.private_key.span(), "tls.private-key"),
                _ => (tls.certificate.span(), "tls.certificate"),
            };
            return Err(invalid(span, key, e.to_string()));
        }
        let mut numbers = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            if !numbers.insert(r.number.get_ref().clone()) {
                return Err(invalid(
                    r.number.span(),
                    &format!("route[{i}].number"),
                    format!("duplicate route number {:?}", r.number.get_ref()),
                ));
            }
            if let Target::User(u) | Target::Agent(u) = r.target.get_ref()
                && !self.users.iter().any(|x| x.name.get_ref() == u)
            {
                return Err(invalid(
                    r.target.span(),
                    &format!("route[{i}].target.user"),
                    format!("no [[user]] named {u:?}"),
                ));
            }
        }
        if self.sip.digest_algorithms.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                line: src
                    .lines()
                    .position(|l| l.trim_start().starts_with("digest-algorithms"))
                    .map_or(0, |l| l + 1),
                key: "sip.digest-algorithms".into(),
                message: "list at least one of \"MD5\", \"SHA-256\"".into(),
            });
        }
        if let Err(message) = self.customers.dial_plan() {
            let line = match &self.customers.default_country_code {
                Some(cc) => line_of(src, cc.span().start),
                None => src
                    .lines()
                    .position(|l| l.trim_start().starts_with("[customers]"))
                    .map_or(0, |l| l + 1),
            };
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                line,
                key: "customers".into(),
                message,
            });
        }
        let mut queue_names = HashSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            if !queue_names.insert(q.name.get_ref().clone()) {
                return Err(invalid(
                    q.name.span(),
                    &format!("queue[{i}].name"),
                    format!("duplicate queue {:?}", q.name.get_ref()),
                ));
            }
            if let Err(e) = q.strategy.get_ref().parse::<crate::acd::Strategy>() {
                return Err(invalid(
                    q.strategy.span(),
                    &format!("queue[{i}].strategy"),
                    e,
                ));
            }
        }
        for (i, a) in self.agents.iter().enumerate() {
            if !self
                .users
                .iter()
                .any(|u| u.name.get_ref() == a.name.get_ref())
            {
                return Err(invalid(
                    a.name.span(),
                    &format!("agent[{i}].name"),
                    format!("no [[user]] named {:?}", a.name.get_ref()),
                ));
            }
            if let Some(q) = a.queues.iter().find(|q| !queue_names.contains(*q)) {
                return Err(invalid(
                    a.name.span(),
                    &format!("agent[{i}].queues"),
                    format!("no [[queue]] named {q:?}"),
                ));
            }
            if let Some(h) = &a.password_hash
                && let Err(e) = agent_gateway::password::check(h.get_ref())
            {
                return Err(invalid(
                    h.span(),
                    &format!("agent[{i}].password-hash"),
                    e.to_string(),
                ));
            }
        }
        let mut supervisor_names = HashSet::new();
        for (i, sup) in self.supervisors.iter().enumerate() {
            if !supervisor_names.insert(sup.name.get_ref().clone()) {
                return Err(invalid(
                    sup.name.span(),
                    &format!("supervisor[{i}].name"),
                    format!("duplicate supervisor {:?}", sup.name.get_ref()),
                ));
            }
            if let Err(e) = agent_gateway::password::check(sup.password_hash.get_ref()) {
                return Err(invalid(
                    sup.password_hash.span(),
                    &format!("supervisor[{i}].password-hash"),
                    e.to_string(),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if let Target::Queue(q) | Target::QueueWithSkills(q, _) = r.target.get_ref()
                && !queue_names.contains(q)
            {
                return Err(invalid(
                    r.target.span(),
                    &format!("route[{i}].target.queue"),
                    format!("no [[queue]] named {q:?}"),
                ));
            }
        }
        let mut mailbox_names = HashSet::new();
        for (i, m) in self.mailboxes.iter().enumerate() {
            let name = m.name.get_ref();
            if name.is_empty()
                || name.starts_with('.')
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(invalid(
                    m.name.span(),
                    &format!("mailbox[{i}].name"),
                    "use letters, digits and - _ . (it names a directory)".into(),
                ));
            }
            if !mailbox_names.insert(name.clone()) {
                return Err(invalid(
                    m.name.span(),
                    &format!("mailbox[{i}].name"),
                    format!("duplicate mailbox {name:?}"),
                ));
            }
            if m.pin.is_empty() || !m.pin.bytes().all(|b| b.is_ascii_digit()) {
                // The PIN itself stays out of the message.
                return Err(invalid(
                    m.name.span(),
                    &format!("mailbox[{i}].pin"),
                    "give digits only (it is typed on a keypad)".into(),
                ));
            }
            if let Some(owner) = &m.owner
                && !self.users.iter().any(|u| u.name.get_ref() == owner)
            {
                return Err(invalid(
                    m.name.span(),
                    &format!("mailbox[{i}].owner"),
                    format!("no [[user]] named {owner:?}"),
                ));
            }
            if let Some(q) = &m.work_queue
                && !queue_names.contains(q)
            {
                return Err(invalid(
                    m.name.span(),
                    &format!("mailbox[{i}].work-queue"),
                    format!("no [[queue]] named {q:?}"),
                ));
            }
            if m.retention_days == Some(0) {
                return Err(invalid(
                    m.name.span(),
                    &format!("mailbox[{i}].retention-days"),
                    "give at least 1 (days); leave it out to keep messages".into(),
                ));
            }
            if m.min_message.0 > m.max_message.0 {
                return Err(invalid(
                    m.name.span(),
                    &format!("mailbox[{i}].min-message"),
                    format!(
                        "{} is longer than max-message {}",
                        m.min_message, m.max_message
                    ),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if let Target::Mailbox(m) | Target::VoicemailRetrieval(m) = r.target.get_ref()
                && !mailbox_names.contains(m)
            {
                return Err(invalid(
                    r.target.span(),
                    &format!("route[{i}].target.mailbox"),
                    format!("no [[mailbox]] named {m:?}"),
                ));
            }
        }
        self.check_queue_rules(&invalid, &queue_names, &mailbox_names)?;
        let mut names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let name = u.name.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
            {
                return Err(invalid(
                    u.name.span(),
                    &format!("user[{i}].name"),
                    "use letters, digits and - _ . +".into(),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(
                    u.name.span(),
                    &format!("user[{i}].name"),
                    format!("duplicate user {name:?}"),
                ));
            }
            let hashed = u.ha1_md5.is_some() || u.ha1_sha256.is_some();
            if u.password.is_some() == hashed {
                return Err(invalid(
                    u.name.span(),
                    &format!("user[{i}]"),
                    "give either password or ha1-md5 and ha1-sha256".into(),
                ));
            }
        }
        for (i, t) in self.trunks.iter().enumerate() {
            if t.address.get_ref().parse::<SocketAddr>().is_err() {
                return Err(invalid(
                    t.address.span(),
                    &format!("trunk[{i}].address"),
                    format!("{:?} is not an ip:port address", t.address.get_ref()),
                ));
            }
            for s in &t.inbound_sources {
                if s.parse::<IpAddr>().is_err() {
                    return Err(invalid(
                        t.name.span(),
                        &format!("trunk[{i}].inbound-sources"),
                        format!("{s:?} is not an IP address"),
                    ));
                }
            }
            if t.register && (t.username.is_none() || t.password.is_none()) {
                return Err(invalid(
                    t.name.span(),
                    &format!("trunk[{i}].register"),
                    "needs username and password".into(),
                ));
            }
        }
        if let Err(e) = self.checked_campaigns() {
            return Err(invalid(e.span, &e.key, e.message));
        }
        if let Err(message) = self.media.port_range() {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                line: src
                    .lines()
                    .position(|l| l.trim_start().starts_with("rtp-ports"))
                    .map_or(0, |l| l + 1),
                key: "media.rtp-ports".into(),
                message,
            });
        }
        if let Some((key, message)) = self.smtp.as_ref().and_then(|s| s.problem()) {
            let mut in_smtp = false;
            let line = src.lines().position(|l| {
                let l = l.trim_start();
                if l.starts_with('[') {
                    in_smtp = l.starts_with("[smtp]");
                }
                in_smtp && l.starts_with(key)
            });
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                line: line.map_or(0, |l| l + 1),
                key: format!("smtp.{key}"),
                message,
            });
        }
        for (key, addr) in [("sip.udp", &self.sip.udp), ("sip.tcp", &self.sip.tcp)] {
            if !addr.is_empty() && addr.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid {
                    path: path.to_string(),
                    line: src
                        .lines()
                        .position(|l| {
                            l.trim_start()
                                .starts_with(key.split('.').nth(1).unwrap_or(""))
                        })
                        .map_or(0, |l| l + 1),
                    key: key.to_string(),
                    message: format!("{addr:?} is not an ip:port address"),
                });
            }
        }
        Ok(())
    }

    /// The trunks, checked.
    pub fn trunks(&self) -> Vec<Trunk> {
        self.trunks
            .iter()
            .filter_map(|t| {
                let address: SocketAddr = t.address.get_ref().parse().ok()?;
                let mut sources: Vec<IpAddr> = t
                    .inbound_sources
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if sources.is_empty() {
                    sources.push(address.ip());
                }
                Some(Trunk {
                    name: t.name.get_ref().clone(),
                    address,
                    inbound_sources: sources,
                    prefixes: t.prefixes.clone(),
                    username: t.username.clone(),
                    password: t.password.clone(),
                    realm: t.realm.clone(),
                    register: t.register,
                    caller_id: t.caller_id.clone(),
                })
            })
            .collect()
    }

    /// The campaigns, checked (they were at load, so this is only an error for a
    /// config built by hand).
    pub fn checked_campaigns(
        &self,
    ) -> Result<Vec<crate::campaigns::settings::Campaign>, crate::campaigns::settings::SettingError>
    {
        let queues: Vec<&str> = self
            .queues
            .iter()
            .map(|q| q.name.get_ref().as_str())
            .collect();
        let trunks: Vec<&str> = self
            .trunks
            .iter()
            .map(|t| t.name.get_ref().as_str())
            .collect();
        crate::campaigns::settings::check_all(&self.campaigns, &queues, &trunks)
    }

    /// The route for a dialled number.
    pub fn route(&self, number: &str) -> Option<&Target> {
        self.routes
            .iter()
            .find(|r| r.number.get_ref() == number)
            .map(|r| r.target.get_ref())
    }

    /// Loads and checks what the config refers to: the sounds and scripts
    /// directories exist, every prompt and every script there loads, the scripts load
    /// together with every audio file they name in the sounds directory, each
    /// `{ script = ... }` route names one of them that runs on the voice channel, and
    /// each `{ prompt = [...] }` route names prompts that exist, and the queues,
    /// mailboxes, agents and skills scripts route to exist (`script_names`). Every problem is
    /// reported, with the config's file and line or the script's file, line and
    /// column. Relative directories are resolved against `base` (`Path::new("")` for
    /// the working directory, as the server resolves them).
    pub fn check_references(&self, base: &Path) -> References {
        let mut refs = References::default();
        let sounds_dir = base.join(&self.server.sounds_dir);
        let scripts_dir = base.join(&self.server.scripts_dir);
        let sounds_loaded = match self.directory(&sounds_dir, "sounds-dir") {
            Err(e) => {
                refs.errors.push(e);
                false
            }
            Ok(()) => match PromptLibrary::load_dir(&sounds_dir) {
                Ok(prompts) => {
                    refs.prompts = prompts;
                    true
                }
                Err(e) => {
                    refs.errors
                        .push(self.key_error("server", "sounds-dir", e.to_string()));
                    false
                }
            },
        };
        let mut script_files = Vec::new();
        match self.directory(&scripts_dir, "scripts-dir") {
            Err(e) => refs.errors.push(e),
            Ok(()) => match xml_files(&scripts_dir) {
                Err(e) => refs.errors.push(self.key_error(
                    "server",
                    "scripts-dir",
                    format!("{}: {e}", scripts_dir.display()),
                )),
                Ok(files) => script_files = files,
            },
        }
        if !script_files.is_empty() {
            let in_sounds = prompt_audio(&refs.prompts);
            // Without a sound set every audio name would be an error; the missing
            // directory is already reported once.
            let audio: &dyn AudioFiles = if sounds_loaded { &in_sounds } else { &AnyAudio };
            let checked = check_files(&script_files, audio);
            for d in checked.diagnostics {
                match d.severity {
                    Severity::Error => refs.errors.push(ConfigError::Script(d)),
                    Severity::Warning => refs.warnings.push(d),
                }
            }
            refs.scripts = checked.library;
        }
        for (i, route) in self.routes.iter().enumerate() {
            let span = route.target.span();
            match route.target.get_ref() {
                Target::Script(name) => {
                    let key = format!("route[{i}].target.script");
                    if let Err(message) =
                        self.route_script(name, &scripts_dir, &script_files, &refs)
                    {
                        refs.errors.push(self.span_error(span, &key, message));
                    }
                }
                Target::Prompt(names) if sounds_loaded => {
                    let key = format!("route[{i}].target.prompt");
                    for name in names {
                        if refs.prompts.prompt(name).is_err() {
                            refs.errors.push(self.span_error(
                                span.clone(),
                                &key,
                                format!(
                                    "no prompt {name:?} in sounds-dir (no {})",
                                    sounds_dir.join(format!("{name}.wav")).display()
                                ),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        let queue_scripts = self.queue_script_errors(&scripts_dir, &script_files, &refs);
        refs.errors.extend(queue_scripts);
        let agent_scripts = self.agent_script_errors(&scripts_dir, &refs);
        refs.errors.extend(agent_scripts);
        if let Some(library) = &refs.scripts {
            for d in self.script_route_names(&scripts_dir, library) {
                match d.severity {
                    Severity::Error => refs.errors.push(ConfigError::Script(d)),
                    Severity::Warning => refs.warnings.push(d),
                }
            }
        }
        for (i, c) in self.campaigns.iter().enumerate() {
            if let Some(message) = &c.amd_message
                && sounds_loaded
                && refs.prompts.prompt(message.get_ref().trim()).is_err()
            {
                refs.errors.push(self.span_error(
                    message.span(),
                    &format!("campaign[{i}].amd-message"),
                    format!("no prompt {:?} in sounds-dir", message.get_ref()),
                ));
            }
        }
        for (i, m) in self.mailboxes.iter().enumerate() {
            if let Some(greeting) = &m.greeting
                && sounds_loaded
                && refs.prompts.prompt(greeting).is_err()
            {
                refs.errors.push(self.span_error(
                    m.name.span(),
                    &format!("mailbox[{i}].greeting"),
                    format!("no prompt {greeting:?} in sounds-dir"),
                ));
            }
        }
        refs
    }

    /// The mailbox with this name.
    pub fn mailbox(&self, name: &str) -> Option<&MailboxSection> {
        self.mailboxes.iter().find(|m| m.name.get_ref() == name)
    }

    /// Why a `{ script = name }` route cannot run, if it cannot.
    fn route_script(
        &self,
        name: &str,
        dir: &Path,
        loaded: &[PathBuf],
        refs: &References,
    ) -> Result<(), String> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(format!(
                "{name:?}: give a file name in scripts-dir, e.g. \"bank-card.xml\""
            ));
        }
        let file = if Path::new(name).extension().is_some() {
            dir.join(name)
        } else {
            dir.join(format!("{name}.xml"))
        };
        if !loaded.contains(&file) {
            return Err(format!(
                "no script {} in scripts-dir (scripts are *.xml files)",
                file.display()
            ));
        }
        let shown = file.display().to_string();
        let errors = refs
            .errors
            .iter()
            .filter(|e| matches!(e, ConfigError::Script(d) if d.file == shown))
            .count();
        if errors > 0 {
            return Err(format!("{shown} does not load: {errors} error(s)"));
        }
        let Some(library) = &refs.scripts else {
            return Err(format!(
                "the scripts in {} do not load together, see their errors",
                dir.display()
            ));
        };
        match library.scripts().find(|s| s.file() == shown) {
            Some(script) if !script.channels().contains(&Channel::Voice) => Err(format!(
                "script `{}` in {shown} does not list the voice channel, so callers cannot run it",
                script.id()
            )),
            _ => Ok(()),
        }
    }

    fn directory(&self, dir: &Path, key: &str) -> Result<(), ConfigError> {
        if dir.is_dir() {
            Ok(())
        } else {
            Err(self.key_error(
                "server",
                key,
                format!("{} is not a directory", dir.display()),
            ))
        }
    }

    fn span_error(&self, span: std::ops::Range<usize>, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.path.clone(),
            line: line_of(&self.origin.text, span.start),
            key: key.to_string(),
            message,
        }
    }

    /// An error about `[section] key`, at the key's line, or the section's when the
    /// key is left at its default (line 1 when neither is written).
    fn key_error(&self, section: &str, key: &str, message: String) -> ConfigError {
        let text = &self.origin.text;
        let header = format!("[{section}]");
        let mut line = 1;
        let mut in_section = false;
        for (n, l) in text.lines().enumerate() {
            let l = l.trim_start();
            if l.starts_with('[') {
                in_section = l.starts_with(&header);
                if in_section {
                    line = n + 1;
                }
            } else if in_section
                && l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            {
                line = n + 1;
                break;
            }
        }
        ConfigError::Invalid {
            path: self.origin.path.clone(),
            line,
            key: format!("{section}.{key}"),
            message,
        }
    }
}

/// What a config refers to, loaded: the prompts and scripts the server plays and
/// runs, and everything wrong with them. Start-up refuses a config with `errors`.
#[derive(Debug, Default)]
pub struct References {
    /// Every prompt in the sounds directory (empty when it did not load).
    pub prompts: PromptLibrary,
    /// Every script in the scripts directory, when they all loaded together.
    pub scripts: Option<Library>,
    /// Config errors (file and line) and script errors (file, line and column).
    pub errors: Vec<ConfigError>,
    /// Script warnings (unreachable steps): worth reading, not worth refusing.
    pub warnings: Vec<Diagnostic>,
}

/// The audio files a script may name: `general/welcome.wav` is the prompt
/// `general/welcome`, which loaded from the sounds directory.
pub fn prompt_audio(prompts: &PromptLibrary) -> impl Fn(&str) -> bool + '_ {
    |name: &str| {
        name.strip_suffix(".wav")
            .is_some_and(|n| prompts.prompt(n).is_ok())
    }
}

/// The `*.xml` files directly in `dir`, sorted so reports come out in a stable order.
fn xml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "xml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_loads() {
        let cfg = Config::parse(DEMO_CONFIG, "deploy/comm-server.toml").unwrap();
        assert!(!cfg.routes.is_empty());
    }

    #[test]
    fn the_demo_desktop_passwords_are_the_demo_sip_passwords() {
        let cfg = Config::parse(DEMO_CONFIG, "deploy/comm-server.toml").unwrap();
        assert_eq!(cfg.grpc.listen, DEFAULT_GRPC_ADDR);
        for a in &cfg.agents {
            let user = cfg
                .users
                .iter()
                .find(|u| u.name.get_ref() == a.name.get_ref());
            let pw = user.and_then(|u| u.password.clone()).unwrap();
            let hash = a.password_hash.as_ref().unwrap();
            assert!(
                agent_gateway::password::verify(&pw, hash.get_ref()),
                "{}",
                a.name.get_ref()
            );
        }
        assert!(agent_gateway::password::verify(
            "sue-demo-pw",
            cfg.supervisors[0].password_hash.get_ref()
        ));
    }

    #[test]
    fn a_password_hash_that_is_not_argon2_names_key_and_line() {
        let src = "[grpc]\nlease = \"30s\"\n\n[[supervisor]]\nname = \"sue\"\npassword-hash = \"sue-pw\"\n";
        let msg = Config::parse(src, "t.toml").unwrap_err().to_string();
        assert!(
            msg.starts_with("t.toml:6: supervisor[0].password-hash: not an argon2"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::parse("[sip]\nrealm = \"x\"\nbogus = 1\n", "t.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 3") && msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn bad_values_name_their_line() {
        let src = "[[route]]\nnumber = \"1\"\ntarget = { queue = \"a\" }\n\n[[route]]\nnumber = \"1\"\ntarget = { queue = \"b\" }\n";
        let msg = Config::parse(src, "t.toml").unwrap_err().to_string();
        assert!(
            msg.starts_with("t.toml:6: route[1].number: duplicate"),
            "{msg}"
        );
        let msg = Config::parse("[sip]\nmin-expires = \"5 parsecs\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2") && msg.contains("duration"), "{msg}");
        let src = "[[trunk]]\nname = \"t\"\naddress = \"nowhere\"\n";
        let msg = Config::parse(src, "t.toml").unwrap_err().to_string();
        assert!(msg.starts_with("t.toml:3: trunk[0].address"), "{msg}");
        let src = "[server]\ndata-dir = \"d\"\ntime-zone = \"Mars/Olympus\"\n";
        let msg = Config::parse(src, "t.toml").unwrap_err().to_string();
        assert!(
            msg.starts_with("t.toml:3: server.time-zone: unknown time zone \"Mars/Olympus\""),
            "{msg}"
        );
        let ok = Config::parse("[server]\ntime-zone = \"Europe/London\"\n", "t.toml").unwrap();
        assert_eq!(ok.server.zone(), chrono_tz::Europe::London);
    }

    #[test]
    fn customers_dial_plan_is_checked_at_load() {
        let src = "[customers]\ntrunk-prefix = \"0\"\ndefault-country-code = \"044\"\n";
        let msg = Config::parse(src, "t.toml").unwrap_err().to_string();
        assert_eq!(
            msg,
            "t.toml:3: customers: country code \"044\": country codes do not start with 0"
        );
        let ok = Config::parse("[customers]\ndefault-country-code = \"44\"\n", "t.toml").unwrap();
        assert_eq!(ok.customers.dial_plan().unwrap().country_code(), Some("44"));
        assert_eq!(
            Config::default().customers.dial_plan(),
            Ok(Default::default())
        );
    }

    /// A scratch directory with a `scripts/` folder; `sounds` is the shipped set.
    struct Site {
        dir: PathBuf,
    }

    impl Site {
        fn new(name: &str, scripts: &[(&str, &str)]) -> Site {
            let dir = std::env::temp_dir()
                .join(format!("comm-server-config-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("scripts")).unwrap();
            for (file, text) in scripts {
                std::fs::write(dir.join("scripts").join(file), text).unwrap();
            }
            Site { dir }
        }

        /// Checks `routes` with the scripts here and the repository's sounds/.
        fn check(&self, routes: &str) -> References {
            let sounds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds");
            let src = format!(
                "[server]\nscripts-dir = \"scripts\"\nsounds-dir = {:?}\n\n{routes}",
                sounds.display().to_string()
            );
            Config::parse(&src, "t.toml")
                .unwrap()
                .check_references(&self.dir)
        }
    }

    impl Drop for Site {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn messages(refs: &References) -> Vec<String> {
        refs.errors.iter().map(ToString::to_string).collect()
    }

    const GREETING: &str = r#"<script version="1" id="greeting" channels="voice">
  <say audio="general/welcome.wav">Welcome.</say>
  <hangup/>
</script>
"#;

    #[test]
    fn the_demo_config_references_the_shipped_files() {
        let cfg = Config::parse(DEMO_CONFIG, "deploy/comm-server.toml").unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let refs = cfg.check_references(&root);
        assert!(refs.errors.is_empty(), "{:#?}", messages(&refs));
        assert!(refs.prompts.prompt("general/welcome").is_ok());
        let scripts = refs.scripts.expect("scripts/ loads");
        assert!(scripts.script("bank-card").is_some());
    }

    #[test]
    fn script_routes_name_a_loaded_voice_script() {
        let agent_only = r#"<script version="1" id="guide" channels="agent">
  <say>Ask about the contract.</say>
</script>
"#;
        let site = Site::new(
            "routes",
            &[("greeting.xml", GREETING), ("guide.xml", agent_only)],
        );
        let ok = "[[route]]\nnumber = \"1\"\ntarget = { script = \"greeting.xml\" }\n\n\
                  [[route]]\nnumber = \"2\"\ntarget = { script = \"greeting\" }\n";
        let refs = site.check(ok);
        assert!(refs.errors.is_empty(), "{:#?}", messages(&refs));
        assert_eq!(refs.scripts.unwrap().scripts().count(), 2);

        let bad = "[[route]]\nnumber = \"1\"\ntarget = { script = \"missing.xml\" }\n\n\
                   [[route]]\nnumber = \"2\"\ntarget = { script = \"guide\" }\n\n\
                   [[route]]\nnumber = \"3\"\ntarget = { script = \"../greeting.xml\" }\n";
        let msgs = messages(&site.check(bad));
        assert_eq!(msgs.len(), 3, "{msgs:#?}");
        assert!(
            msgs[0].starts_with("t.toml:7: route[0].target.script: no script ")
                && msgs[0].contains("missing.xml"),
            "{msgs:#?}"
        );
        assert!(
            msgs[1].starts_with("t.toml:11: route[1].target.script: script `guide`")
                && msgs[1].contains("voice channel"),
            "{msgs:#?}"
        );
        assert!(
            msgs[2].starts_with("t.toml:15: route[2].target.script: \"../greeting.xml\""),
            "{msgs:#?}"
        );
    }

    #[test]
    fn a_queues_agent_script_names_a_loaded_script_for_agents() {
        let guide = r#"<script version="1" id="guide" channels="agent">
  <say>Ask about the contract.</say>
</script>
"#;
        let site = Site::new(
            "agent-script",
            &[("greeting.xml", GREETING), ("guide.xml", guide)],
        );
        let ok = "[[queue]]\nname = \"a\"\nagent-script = \"guide.xml\"\n\n\
                  [[queue]]\nname = \"b\"\nagent-script = \"guide\"\n";
        let refs = site.check(ok);
        assert!(refs.errors.is_empty(), "{:#?}", messages(&refs));

        let bad = "[[queue]]\nname = \"a\"\nagent-script = \"greeting.xml\"\n\n\
                   [[queue]]\nname = \"b\"\nagent-script = \"missing.xml\"\n\n\
                   [[queue]]\nname = \"c\"\nagent-script = \"scripts/guide.xml\"\n";
        let msgs = messages(&site.check(bad));
        assert_eq!(msgs.len(), 3, "{msgs:#?}");
        assert!(
            msgs[0].starts_with("t.toml:7: queue[0].agent-script: script `greeting`")
                && msgs[0].contains("agent channel"),
            "{msgs:#?}"
        );
        assert!(
            msgs[1].starts_with("t.toml:11: queue[1].agent-script: no script ")
                && msgs[1].contains("missing.xml"),
            "{msgs:#?}"
        );
        assert!(
            msgs[2].starts_with("t.toml:15: queue[2].agent-script: \"scripts/guide.xml\""),
            "{msgs:#?}"
        );
    }

    #[test]
    fn script_errors_keep_their_line_and_column_and_fail_the_route() {
        let broken = "<script version=\"1\" id=\"broken\" channels=\"voice\">\n  <say audio=\"general/no-such-prompt.wav\">Hi.</say>\n  <hangup/>\n</script>\n";
        let site = Site::new(
            "broken",
            &[("greeting.xml", GREETING), ("broken.xml", broken)],
        );
        let refs = site.check("[[route]]\nnumber = \"1\"\ntarget = { script = \"broken\" }\n");
        let msgs = messages(&refs);
        let file = site.dir.join("scripts/broken.xml").display().to_string();
        assert!(refs.scripts.is_none());
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(
            msgs[0].starts_with(&format!("{file}:2:"))
                && msgs[0].contains("error:")
                && msgs[0].contains("general/no-such-prompt.wav"),
            "{msgs:#?}"
        );
        assert_eq!(
            msgs[1],
            format!("t.toml:7: route[0].target.script: {file} does not load: 1 error(s)")
        );
    }

    #[test]
    fn prompt_routes_name_prompts_in_the_sounds_dir() {
        let site = Site::new("prompts", &[]);
        let refs = site.check(
            "[[route]]\nnumber = \"1\"\ntarget = { prompt = [\"general/welcome\", \"general/nope\"] }\n",
        );
        let msgs = messages(&refs);
        assert_eq!(msgs.len(), 1, "{msgs:#?}");
        assert!(
            msgs[0].starts_with("t.toml:7: route[0].target.prompt: no prompt \"general/nope\""),
            "{msgs:#?}"
        );
    }

    #[test]
    fn missing_directories_name_their_key() {
        let src =
            "[server]\ndata-dir = \"d\"\nsounds-dir = \"no-sounds\"\n\n[sip]\nrealm = \"r\"\n";
        let cfg = Config::parse(src, "t.toml").unwrap();
        let empty = Site::new("dirs", &[]);
        std::fs::remove_dir(empty.dir.join("scripts")).unwrap();
        let msgs = messages(&cfg.check_references(&empty.dir));
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        // A key that is written is named at its line; a default at its section's.
        assert!(
            msgs[0].starts_with("t.toml:3: server.sounds-dir: ")
                && msgs[0].ends_with("is not a directory"),
            "{msgs:#?}"
        );
        assert!(
            msgs[1].starts_with("t.toml:1: server.scripts-dir: "),
            "{msgs:#?}"
        );
    }

    #[test]
    fn syntax_errors_lead_with_file_line_and_column() {
        let msg = Config::parse("[sip]\nrealm = \"x\"\n  bogus = 1\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("t.toml:3:3: "), "{msg}");
        assert!(msg.contains("unknown field `bogus`"), "{msg}");
    }

    #[test]
    fn mailboxes_are_checked_and_their_pin_stays_out_of_errors_and_debug() {
        let base = "[[user]]\nname = \"bob\"\npassword = \"x\"\n\n";
        let ok = format!(
            "{base}[[mailbox]]\nname = \"sales\"\nowner = \"bob\"\npin = \"4321\"\n\n\
             [[route]]\nnumber = \"1\"\ntarget = {{ mailbox = \"sales\" }}\n"
        );
        let cfg = Config::parse(&ok, "t.toml").unwrap();
        let m = cfg.mailbox("sales").unwrap();
        assert_eq!(m.max_message.0, DEFAULT_MAX_MESSAGE);
        assert!(
            !m.review && m.retention_days.is_none(),
            "both off by default"
        );
        assert!(!format!("{m:?}").contains("4321"));
        let cases = [
            ("name = \"../x\"\npin = \"1\"", "t.toml:6: mailbox[0].name"),
            (
                "name = \"a\"\npin = \"12a4\"",
                "t.toml:6: mailbox[0].pin: give digits only",
            ),
            (
                "name = \"a\"\npin = \"1\"\nowner = \"carol\"",
                "t.toml:6: mailbox[0].owner: no [[user]] named \"carol\"",
            ),
            (
                "name = \"a\"\npin = \"1\"\nmin-message = \"9s\"\nmax-message = \"5s\"",
                "mailbox[0].min-message",
            ),
            (
                "name = \"a\"\npin = \"1\"\nwork-queue = \"nope\"",
                "t.toml:6: mailbox[0].work-queue: no [[queue]] named \"nope\"",
            ),
            (
                "name = \"a\"\npin = \"1\"\nretention-days = 0",
                "t.toml:6: mailbox[0].retention-days: give at least 1 (days)",
            ),
            ("name = \"a\"\npin = \"1\"\nreview = \"yes\"", "review"),
        ];
        for (body, want) in cases {
            let src = format!("{base}[[mailbox]]\n{body}\n");
            let msg = Config::parse(&src, "t.toml").unwrap_err().to_string();
            assert!(msg.starts_with(want) || msg.contains(want), "{msg}");
            assert!(!msg.contains("12a4"), "the PIN is not repeated: {msg}");
        }
        let src = "[[route]]\nnumber = \"1\"\ntarget = { voicemail-retrieval = \"nope\" }\n";
        let msg = Config::parse(src, "t.toml").unwrap_err().to_string();
        assert!(msg.contains("no [[mailbox]] named \"nope\""), "{msg}");
    }

    #[test]
    fn durations() {
        assert_eq!(
            "500ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            "5m".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(300)
        );
        assert!("5".parse::<HumanDuration>().is_err());
    }
}
