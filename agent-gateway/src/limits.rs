//! Per-client limits: how fast one agent or supervisor may call, how many event
//! streams one of them may hold open, and how fast one address may try to log in.
//!
//! A pure state machine in the house style: no clock, no tasks; the caller passes
//! `now`. A desktop stuck in a retry loop, or a script hammering the API with a stolen
//! token, is slowed down with RESOURCE_EXHAUSTED instead of starving the agents who
//! are taking calls; the per-address login bucket slows password spraying across
//! many names, which the per-name lockout alone does not.
//!
//! Token buckets: each key holds up to `burst` tokens, refilled at `rate` per second;
//! a request takes one. Full buckets are forgotten when the table grows, so keys that
//! stopped calling cost no memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::sessions::Role;

/// Default sustained requests per second per logged-in user.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 20;
/// Default burst of requests per user above the sustained rate.
pub const DEFAULT_REQUEST_BURST: u32 = 40;
/// Default login attempts per minute from one address.
pub const DEFAULT_LOGINS_PER_MINUTE: u32 = 30;
/// Default event or status streams one user may hold open at once.
pub const DEFAULT_STREAMS_PER_USER: u32 = 4;

/// Buckets kept before the full ones are swept.
const SWEEP_AT: usize = 4096;

/// The knobs; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    /// See [`DEFAULT_REQUESTS_PER_SECOND`].
    pub requests_per_second: u32,
    /// See [`DEFAULT_REQUEST_BURST`].
    pub request_burst: u32,
    /// See [`DEFAULT_LOGINS_PER_MINUTE`].
    pub logins_per_minute: u32,
    /// See [`DEFAULT_STREAMS_PER_USER`].
    pub streams_per_user: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            request_burst: DEFAULT_REQUEST_BURST,
            logins_per_minute: DEFAULT_LOGINS_PER_MINUTE,
            streams_per_user: DEFAULT_STREAMS_PER_USER,
        }
    }
}

/// Who a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(Role, String),
    LoginFrom(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowDown {
    pub retry_after: Duration,
}

/// The limits' state; see the module docs.
#[derive(Debug)]
pub struct Limits {
    config: LimitConfig,
    buckets: HashMap<Key, Bucket>,
    streams: HashMap<(Role, String), u32>,
}

impl Limits {
    pub fn new(config: LimitConfig) -> Limits {
        Limits {
            config,
            buckets: HashMap::new(),
            streams: HashMap::new(),
        }
    }

    /// One request by `login`.
    pub fn request(&mut self, now: Instant, role: Role, login: &str) -> Result<(), SlowDown> {
        let (rate, burst) = (
            f64::from(self.config.requests_per_second),
            self.config.request_burst.max(1),
        );
        self.take(now, Key::User(role, login.to_string()), rate, burst)
    }

    /// One login attempt from `from`.
    pub fn login(&mut self, now: Instant, from: IpAddr) -> Result<(), SlowDown> {
        let per_minute = self.config.logins_per_minute;
        self.take(
            now,
            Key::LoginFrom(from),
            f64::from(per_minute) / 60.0,
            per_minute,
        )
    }

    fn take(&mut self, now: Instant, key: Key, rate: f64, burst: u32) -> Result<(), SlowDown> {
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(burst);
        if self.buckets.len() >= SWEEP_AT {
            self.sweep(now);
        }
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(SlowDown {
                retry_after: Duration::from_secs_f64((1.0 - b.tokens) / rate),
            })
        }
    }

    /// Forgets the buckets that would be full by now: they limit nothing.
    fn sweep(&mut self, now: Instant) {
        let config = self.config;
        self.buckets.retain(|key, b| {
            let (rate, burst) = match key {
                Key::User(..) => (
                    f64::from(config.requests_per_second),
                    f64::from(config.request_burst.max(1)),
                ),
                Key::LoginFrom(_) => (
                    f64::from(config.logins_per_minute) / 60.0,
                    f64::from(config.logins_per_minute),
                ),
            };
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }

    /// A stream opens for `login`; false: they hold as many as they may.
    pub fn open_stream(&mut self, role: Role, login: &str) -> bool {
        let max = self.config.streams_per_user;
        let n = self.streams.entry((role, login.to_string())).or_insert(0);
        if max > 0 && *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// A stream [`Limits::open_stream`] let open has closed.
    pub fn close_stream(&mut self, role: Role, login: &str) {
        let key = (role, login.to_string());
        if let Some(n) = self.streams.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.streams.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len() + self.streams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any instant will do: the limits only compare them.
    #[allow(clippy::disallowed_methods)]
    fn t() -> Instant {
        Instant::now()
    }

    fn limits(rps: u32, burst: u32) -> Limits {
        Limits::new(LimitConfig {
            requests_per_second: rps,
            request_burst: burst,
            logins_per_minute: 6,
            streams_per_user: 2,
        })
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_refills() {
        let t0 = t();
        let mut l = limits(10, 3);
        for _ in 0..3 {
            l.request(t0, Role::Agent, "ann").unwrap();
        }
        let refused = l.request(t0, Role::Agent, "ann").unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        // Another user has a bucket of their own, and so has the same name as a
        // supervisor.
        l.request(t0, Role::Agent, "ben").unwrap();
        l.request(t0, Role::Supervisor, "ann").unwrap();
        // 100 ms refill one token: one request, not two.
        let t1 = t0 + Duration::from_millis(100);
        l.request(t1, Role::Agent, "ann").unwrap();
        assert!(l.request(t1, Role::Agent, "ann").is_err());
        // Long idle refills to the burst, no further.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            l.request(t2, Role::Agent, "ann").unwrap();
        }
        assert!(l.request(t2, Role::Agent, "ann").is_err());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let t0 = t();
        let mut l = Limits::new(LimitConfig {
            requests_per_second: 0,
            request_burst: 0,
            logins_per_minute: 0,
            streams_per_user: 0,
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..1000 {
            l.request(t0, Role::Agent, "ann").unwrap();
            l.login(t0, ip).unwrap();
            assert!(l.open_stream(Role::Agent, "ann"));
        }
    }

    #[test]
    fn logins_are_limited_per_address() {
        let t0 = t();
        let mut l = limits(10, 3);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.7".parse().unwrap(), "::1".parse().unwrap());
        for _ in 0..6 {
            l.login(t0, a).unwrap();
        }
        let refused = l.login(t0, a).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(10), "6 a minute");
        l.login(t0, b).unwrap();
        l.login(t0 + Duration::from_secs(10), a).unwrap();
    }

    #[test]
    fn streams_are_counted_per_user_and_given_back() {
        let mut l = limits(10, 3);
        assert!(l.open_stream(Role::Agent, "ann"));
        assert!(l.open_stream(Role::Agent, "ann"));
        assert!(!l.open_stream(Role::Agent, "ann"));
        assert!(l.open_stream(Role::Supervisor, "ann"));
        l.close_stream(Role::Agent, "ann");
        assert!(l.open_stream(Role::Agent, "ann"));
        l.close_stream(Role::Agent, "ann");
        l.close_stream(Role::Agent, "ann");
        l.close_stream(Role::Agent, "ann");
        l.close_stream(Role::Supervisor, "ann");
        assert_eq!(l.tracked(), 0, "closed streams are forgotten");
    }

    #[test]
    fn idle_full_buckets_are_swept_when_the_table_grows() {
        let t0 = t();
        let mut l = limits(10, 3);
        for i in 0..SWEEP_AT {
            l.request(t0, Role::Agent, &format!("a{i}")).unwrap();
        }
        assert_eq!(l.tracked(), SWEEP_AT);
        // A second later every bucket has refilled; the next request sweeps them.
        l.request(t0 + Duration::from_secs(1), Role::Agent, "new")
            .unwrap();
        assert_eq!(l.tracked(), 1);
    }
}
