//! Who is logged in to the gateway: session tokens, login lockout and the desktop lease.
//!
//! A pure state machine in the house style: no clock, no tasks, no randomness (the
//! driver draws tokens). Inputs are `handle_*(now, ..)`; the driver then drains
//! [`Sessions::poll_action`] and sleeps until [`Sessions::poll_timeout`].
//!
//! # Lockout
//! Consecutive failed logins are counted per login name (known or not, so a lockout
//! says nothing about which names exist). At `lockout_after` failures the name is
//! locked for `lockout_for`; a success resets the count. Counts of names that are
//! neither locked nor recently failed are forgotten at the next timeout, so guessing
//! names cannot grow memory without bound for longer than `lockout_for`.
//!
//! # Lease (per agent, supervisors have none)
//! ```text
//!            login / last stream closed
//!   ┌───────────────────────────────────────────┐
//!   │                                           ▼
//! Streaming ◄──── stream opened ──────── Unattended(since)
//!   ▲                                           │ now ≥ since + lease
//!   │                                           ▼
//!   └──────────── stream opened ──────── Unreachable  (ReportUnreachable once)
//! ```
//! An agent with no open event stream for longer than the lease is reported once as
//! unreachable, so the ACD stops offering calls to a desktop that is gone. Logging
//! out (or the last session expiring) forgets the agent.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Default lease: how long an agent's desktop may be without an event stream.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Default number of consecutive failed logins that locks a name.
pub const DEFAULT_LOCKOUT_AFTER: u32 = 5;
/// Default time a name stays locked.
pub const DEFAULT_LOCKOUT_FOR: Duration = Duration::from_secs(300);
/// Default session lifetime (a working day plus overtime).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The knobs of [`Sessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// See [`DEFAULT_LEASE`].
    pub lease: Duration,
    /// See [`DEFAULT_LOCKOUT_AFTER`]; 0 disables lockout.
    pub lockout_after: u32,
    /// See [`DEFAULT_LOCKOUT_FOR`].
    pub lockout_for: Duration,
    /// See [`DEFAULT_SESSION_TTL`].
    pub session_ttl: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            lease: DEFAULT_LEASE,
            lockout_after: DEFAULT_LOCKOUT_AFTER,
            lockout_for: DEFAULT_LOCKOUT_FOR,
            session_ttl: DEFAULT_SESSION_TTL,
        }
    }
}

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// An agent: their own status, calls and events.
    Agent,
    /// A supervisor: the status stream and actions on agents.
    Supervisor,
}

/// A checked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The agent's or supervisor's name.
    pub login: String,
    /// What it may do.
    pub role: Role,
    /// When the token stops working.
    pub expires: Instant,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAction {
    /// The agent's desktop has had no event stream for a whole lease: make them
    /// unavailable.
    ReportUnreachable(String),
}

/// The name is locked after too many failed logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedOut {
    /// When logins are accepted again.
    pub until: Instant,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    Streaming { streams: u32 },
    Unattended { since: Instant },
    Unreachable,
}

/// Sessions, lockouts and leases; see the module docs.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    tokens: HashMap<String, Session>,
    failures: HashMap<(Role, String), Failures>,
    leases: HashMap<String, Lease>,
    actions: VecDeque<SessionAction>,
}

impl Sessions {
    /// No sessions yet.
    pub fn new(config: SessionConfig) -> Sessions {
        Sessions {
            config,
            tokens: HashMap::new(),
            failures: HashMap::new(),
            leases: HashMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// The knobs.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Whether a login for this name may be tried now.
    pub fn check_lockout(&self, now: Instant, role: Role, login: &str) -> Result<(), LockedOut> {
        match self
            .failures
            .get(&(role, login.to_string()))
            .and_then(|f| f.locked_until)
        {
            Some(until) if now < until => Err(LockedOut { until }),
            _ => Ok(()),
        }
    }

    /// A wrong password or an unknown name. Returns the lock when this failure set it.
    pub fn handle_login_failed(
        &mut self,
        now: Instant,
        role: Role,
        login: &str,
    ) -> Option<LockedOut> {
        let f = self.failures.entry((role, login.to_string())).or_default();
        if f.locked_until.is_some_and(|u| now >= u) {
            *f = Failures::default();
        }
        f.count += 1;
        f.last = Some(now);
        if self.config.lockout_after > 0 && f.count >= self.config.lockout_after {
            let until = now + self.config.lockout_for;
            f.locked_until = Some(until);
            return Some(LockedOut { until });
        }
        None
    }

    /// The password was right: `token` (drawn by the driver) opens a session. An
    /// agent's lease starts now, as if a stream had just closed.
    pub fn handle_login(
        &mut self,
        now: Instant,
        role: Role,
        login: &str,
        token: String,
    ) -> Session {
        self.failures.remove(&(role, login.to_string()));
        let session = Session {
            login: login.to_string(),
            role,
            expires: now + self.config.session_ttl,
        };
        self.tokens.insert(token, session.clone());
        if role == Role::Agent {
            self.leases
                .entry(login.to_string())
                .or_insert(Lease::Unattended { since: now });
        }
        session
    }

    /// The session behind a bearer token, if it is valid now.
    pub fn authenticate(&self, now: Instant, token: &str) -> Option<&Session> {
        self.tokens.get(token).filter(|s| now < s.expires)
    }

    /// Ends one session; the agent's lease ends with their last session.
    pub fn handle_logout(&mut self, token: &str) -> Option<Session> {
        let session = self.tokens.remove(token)?;
        self.forget_if_gone(&session);
        Some(session)
    }

    /// Ends every session of a login (a supervisor's forced logout).
    pub fn handle_logout_all(&mut self, role: Role, login: &str) {
        self.tokens
            .retain(|_, s| !(s.role == role && s.login == login));
        if role == Role::Agent {
            self.leases.remove(login);
        }
    }

    fn forget_if_gone(&mut self, session: &Session) {
        if session.role == Role::Agent
            && !self
                .tokens
                .values()
                .any(|s| s.role == Role::Agent && s.login == session.login)
        {
            self.leases.remove(&session.login);
        }
    }

    /// An agent's event stream opened.
    pub fn handle_stream_opened(&mut self, _now: Instant, agent: &str) {
        let lease = self
            .leases
            .entry(agent.to_string())
            .or_insert(Lease::Unreachable);
        *lease = match *lease {
            Lease::Streaming { streams } => Lease::Streaming {
                streams: streams + 1,
            },
            Lease::Unattended { .. } | Lease::Unreachable => Lease::Streaming { streams: 1 },
        };
    }

    /// An agent's event stream closed (dropped by the client or the network).
    pub fn handle_stream_closed(&mut self, now: Instant, agent: &str) {
        if let Some(lease) = self.leases.get_mut(agent)
            && let Lease::Streaming { streams } = *lease
        {
            *lease = if streams > 1 {
                Lease::Streaming {
                    streams: streams - 1,
                }
            } else {
                Lease::Unattended { since: now }
            };
        }
    }

    /// Expires leases, sessions and stale failure counts due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let lease = self.config.lease;
        let mut expired: Vec<String> = Vec::new();
        for (agent, state) in &mut self.leases {
            if let Lease::Unattended { since } = *state
                && now >= since + lease
            {
                *state = Lease::Unreachable;
                expired.push(agent.clone());
            }
        }
        expired.sort();
        self.actions
            .extend(expired.into_iter().map(SessionAction::ReportUnreachable));
        let gone: Vec<Session> = self
            .tokens
            .iter()
            .filter(|(_, s)| now >= s.expires)
            .map(|(_, s)| s.clone())
            .collect();
        self.tokens.retain(|_, s| now < s.expires);
        for s in &gone {
            self.forget_if_gone(s);
        }
        let window = self.config.lockout_for;
        self.failures.retain(|_, f| match (f.locked_until, f.last) {
            (Some(until), _) => now < until,
            (None, Some(last)) => now < last + window,
            (None, None) => false,
        });
    }

    /// The next instant [`Sessions::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let lease = self.config.lease;
        let leases = self.leases.values().filter_map(|l| match l {
            Lease::Unattended { since } => Some(*since + lease),
            _ => None,
        });
        let tokens = self.tokens.values().map(|s| s.expires);
        let window = self.config.lockout_for;
        let failures = self
            .failures
            .values()
            .filter_map(|f| f.locked_until.or(f.last.map(|l| l + window)));
        leases.chain(tokens).chain(failures).min()
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<SessionAction> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests;
