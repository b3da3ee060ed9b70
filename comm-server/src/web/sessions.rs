//! The web sessions in memory: who holds which token, and when a session goes.
//!
//! Owns the tokens, the bound on how many sessions live at once and the idle
//! expiry. Must not own the interpreter's rules or any clock: callers pass the
//! wall-clock time in milliseconds, so tests move time by hand.
//!
//! ```text
//!   insert ──► live ──get (refreshes last use)──► live
//!                │
//!                ├─ idle longer than the expiry ──► gone (found on any insert or get)
//!                └─ the longest idle when the store is full ──► gone (evicted)
//! ```

use std::collections::HashMap;
use std::time::Duration;

use script_engine::{Outcome, Session};

/// How many web sessions may be open at once, by default.
///
/// Unit: sessions. A saved session is a few kilobytes, so the default bounds the
/// store near 50 MB even with long answers. When the store is full the session idle
/// the longest goes first: a flood of new sessions costs the oldest visitors their
/// place, never the server its memory.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// How long a web session may sit without a request before it is dropped, by default.
///
/// Unit: wall-clock time since the last request. Thirty minutes lets a visitor go and
/// find a meter reading or a card, which the web channel invites; a tab left open
/// longer starts again, as a voice call would have ended long before.
pub const DEFAULT_IDLE_EXPIRY: Duration = Duration::from_secs(30 * 60);

/// How many sessions live at once and for how long they may sit idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// See [`DEFAULT_MAX_SESSIONS`]. At least one session is always kept.
    pub max_sessions: usize,
    /// See [`DEFAULT_IDLE_EXPIRY`].
    pub idle_expiry: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_expiry: DEFAULT_IDLE_EXPIRY,
        }
    }
}

/// One visitor's session and what the web host knows about it.
#[derive(Debug)]
pub(super) struct Entry {
    /// The id contact-history records and logs carry. Not the token: logs must not
    /// hold what would let a reader take over a visitor's session.
    pub interaction: String,
    pub script: String,
    pub session: Session,
    /// Set when the host had to stop a session the interpreter had not ended
    /// (a script that never reaches a question); the session takes no more input.
    pub stopped: Option<Outcome>,
    last_used_ms: i64,
}

impl Entry {
    pub fn new(interaction: String, script: String, session: Session) -> Entry {
        Entry {
            interaction,
            script,
            session,
            stopped: None,
            last_used_ms: 0,
        }
    }

    /// How the session ended, by the script or by the host.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.session.outcome().or(self.stopped.as_ref())
    }
}

/// The sessions by token. Every method takes `now_ms`, milliseconds since 1970.
#[derive(Debug)]
pub(super) struct SessionStore {
    entries: HashMap<String, Entry>,
    limits: SessionLimits,
}

impl SessionStore {
    pub fn new(limits: SessionLimits) -> SessionStore {
        SessionStore {
            entries: HashMap::new(),
            limits,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Stores a new session under a fresh token and returns the token, making
    /// room first: expired sessions go, then the longest idle while full.
    pub fn insert(&mut self, now_ms: i64, mut entry: Entry) -> String {
        let expiry = self.expiry_ms();
        self.entries
            .retain(|_, e| now_ms.saturating_sub(e.last_used_ms) <= expiry);
        while self.entries.len() >= self.limits.max_sessions.max(1) {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used_ms)
                .map(|(token, _)| token.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                tracing::info!(interaction = %e.interaction, "web session evicted: too many open");
            }
        }
        let token = loop {
            let t = new_token();
            if !self.entries.contains_key(&t) {
                break t;
            }
        };
        entry.last_used_ms = now_ms;
        self.entries.insert(token.clone(), entry);
        token
    }

    /// The session for `token`, unless it is unknown or has expired; a hit counts
    /// as use.
    pub fn get_mut(&mut self, now_ms: i64, token: &str) -> Option<&mut Entry> {
        let expiry = self.expiry_ms();
        let idle = now_ms.saturating_sub(self.entries.get(token)?.last_used_ms);
        if idle > expiry {
            if let Some(e) = self.entries.remove(token) {
                tracing::info!(interaction = %e.interaction, "web session expired");
            }
            return None;
        }
        let entry = self.entries.get_mut(token)?;
        entry.last_used_ms = entry.last_used_ms.max(now_ms);
        Some(entry)
    }

    fn expiry_ms(&self) -> i64 {
        i64::try_from(self.limits.idle_expiry.as_millis()).unwrap_or(i64::MAX)
    }
}

/// 128 bits from the thread's cryptographic generator, as hex: a token is the
/// only thing that lets a request into a session, so it must not be guessable.
fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// An id for logs and the contact history; unique enough, and no secret.
pub(super) fn new_interaction() -> String {
    format!("web-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use script_engine::{AnyAudio, Channel, Library, SessionContext, load_str};
    use std::time::SystemTime;

    fn entry() -> Entry {
        let xml = r#"<script version="1" id="s" channels="web">
          <ask id="q" input="text"><prompt>Hello?</prompt></ask>
        </script>"#;
        let library = Library::new([load_str("s.xml", xml, &AnyAudio).unwrap().script]).unwrap();
        let context = SessionContext {
            channel: Channel::Web,
            customer: serde_json::Value::Null,
            call: serde_json::json!({}),
        };
        let session = Session::start(&library, "s", context, SystemTime::UNIX_EPOCH).unwrap();
        Entry::new(new_interaction(), "s".into(), session)
    }

    fn store(max_sessions: usize, idle_secs: u64) -> SessionStore {
        SessionStore::new(SessionLimits {
            max_sessions,
            idle_expiry: Duration::from_secs(idle_secs),
        })
    }

    #[test]
    fn tokens_are_long_random_hex() {
        let mut s = store(10, 60);
        let a = s.insert(0, entry());
        let b = s.insert(0, entry());
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(t.len(), 32);
            assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn a_full_store_evicts_the_longest_idle_first() {
        let mut s = store(2, 3600);
        let first = s.insert(1_000, entry());
        let second = s.insert(2_000, entry());
        // Using the first makes the second the longest idle.
        assert!(s.get_mut(3_000, &first).is_some());
        let third = s.insert(4_000, entry());
        assert_eq!(s.len(), 2);
        assert!(s.get_mut(4_000, &second).is_none());
        assert!(s.get_mut(4_000, &first).is_some());
        assert!(s.get_mut(4_000, &third).is_some());
    }

    #[test]
    fn idle_sessions_expire_and_use_keeps_them_alive() {
        let mut s = store(10, 60);
        let kept = s.insert(0, entry());
        let left = s.insert(0, entry());
        assert!(s.get_mut(59_000, &kept).is_some());
        assert!(
            s.get_mut(60_000, &left).is_some(),
            "exactly the expiry is still fine"
        );
        assert!(s.get_mut(118_000, &kept).is_some());
        assert!(s.get_mut(120_001, &left).is_none());
        // An expired session is gone for good, and a sweep on insert drops the rest.
        assert!(s.get_mut(120_001, &left).is_none());
        let _ = s.insert(1_000_000, entry());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_clock_that_goes_back_neither_expires_nor_panics() {
        let mut s = store(10, 60);
        let t = s.insert(1_000_000, entry());
        assert!(s.get_mut(-5, &t).is_some());
        assert!(s.get_mut(i64::MIN, &t).is_some());
        assert!(s.get_mut(i64::MAX, &t).is_none());
    }
}
