//! The only place that reads ambient clocks (`clippy.toml` bans them everywhere else).
//!
//! Cores never call this: they take `now` as an argument. Drivers use
//! `tokio::time::Instant` for monotonic time so paused-clock tests work, and read
//! wall-clock time (CDR timestamps, calling windows, registration expiry that must
//! survive a restart) through a [`Clock`], which tests replace.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock source, injected so tests can fix or advance it.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn unix_ms(&self) -> i64;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn unix_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as i64
    }
}

/// A fixed instant to count from, for tests and simulations that need a `now` but
/// no real clock (cores only ever compare instants, never read them).
pub fn base_instant() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    *BASE.get_or_init(std::time::Instant::now)
}

/// A wall-clock time as Unix milliseconds (0 before 1970): a conversion, no clock read.
pub fn unix_ms_of(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
