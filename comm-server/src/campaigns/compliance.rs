//! The rules a campaign must keep before and after every dial: the do-not-call lists,
//! calling hours in the contact's own time zone, the rolling abandonment rate, and
//! how often and when a contact may be tried again. All pure: the wall-clock time and
//! the monotonic `now` are passed in.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use super::progress::Outcome;

/// Numbers that must never be dialled: the company's global list and a campaign's own.
/// Numbers are compared in E.164 form; the caller normalises before asking.
#[derive(Debug, Clone, Default)]
pub struct DoNotCall {
    global: HashSet<String>,
    campaign: HashSet<String>,
}

/// Which list barred a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barred {
    /// The company-wide list.
    Global,
    /// This campaign's list.
    Campaign,
}

impl DoNotCall {
    /// Lists from E.164 numbers.
    pub fn new(
        global: impl IntoIterator<Item = String>,
        campaign: impl IntoIterator<Item = String>,
    ) -> DoNotCall {
        DoNotCall {
            global: global.into_iter().collect(),
            campaign: campaign.into_iter().collect(),
        }
    }

    /// Adds a number to the global list (a called person asked not to be called).
    pub fn add_global(&mut self, e164: String) {
        self.global.insert(e164);
    }

    /// Why `e164` may not be dialled, if it may not.
    pub fn check(&self, e164: &str) -> Option<Barred> {
        if self.global.contains(e164) {
            Some(Barred::Global)
        } else if self.campaign.contains(e164) {
            Some(Barred::Campaign)
        } else {
            None
        }
    }
}

/// When contacts may be called, in their local time: a daily window on some weekdays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallingHours {
    /// First minute a call may start (local).
    pub start: NaiveTime,
    /// Calls may start until just before this (local); after `start`, same day.
    pub end: NaiveTime,
    /// Days calls are allowed, Monday = bit 0.
    pub days: u8,
}

impl Default for CallingHours {
    /// 09:00–20:00, Monday to Saturday: inside what most regulators allow.
    fn default() -> Self {
        CallingHours {
            start: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(20, 0, 0).unwrap_or_default(),
            days: 0b0011_1111,
        }
    }
}

/// A calling-hours setting that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("calling hours {input:?}: {reason}")]
pub struct CallingHoursError {
    input: String,
    reason: &'static str,
}

impl FromStr for CallingHours {
    type Err = CallingHoursError;

    /// `"09:00-20:00"` (every day) or `"mon-fri 09:00-20:00"` or `"mon,wed,sat 10:00-18:00"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| CallingHoursError {
            input: s.to_string(),
            reason,
        };
        let (days, window) = match s.trim().rsplit_once(' ') {
            Some((d, w)) => (parse_days(d.trim()).ok_or_else(|| err("unknown day"))?, w),
            None => (0b0111_1111, s.trim()),
        };
        let (a, b) = window
            .split_once('-')
            .ok_or_else(|| err("expected HH:MM-HH:MM"))?;
        let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M");
        let start = time(a).map_err(|_| err("start is not HH:MM"))?;
        let end = time(b).map_err(|_| err("end is not HH:MM"))?;
        if end <= start {
            return Err(err("the window must end after it starts"));
        }
        Ok(CallingHours { start, end, days })
    }
}

fn parse_days(s: &str) -> Option<u8> {
    let day = |d: &str| -> Option<u32> {
        d.trim()
            .parse::<Weekday>()
            .ok()
            .map(|w| w.num_days_from_monday())
    };
    let mut mask = 0u8;
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day(part)?,
        }
    }
    Some(mask)
}

impl CallingHours {
    /// May a call start at `at` for a contact living in `tz`?
    pub fn allows(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        let local = at.with_timezone(&tz);
        let day = local.weekday().num_days_from_monday();
        let t = local.time();
        self.days & (1 << day) != 0 && t >= self.start && t < self.end
    }

    /// The first moment at or after `at` when a call may start in `tz` (within two
    /// weeks; `None` if the days mask is empty).
    pub fn next_open(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if self.allows(at, tz) {
            return Some(at);
        }
        let local = at.with_timezone(&tz);
        for offset in 0..15 {
            let date = local.date_naive() + chrono::Days::new(offset);
            if self.days & (1 << date.weekday().num_days_from_monday()) == 0 {
                continue;
            }
            let opening = date.and_time(self.start);
            // A DST gap can swallow the opening minute: take the earliest valid one.
            let Some(open) = tz.from_local_datetime(&opening).earliest().or_else(|| {
                tz.from_local_datetime(&(opening + chrono::Duration::hours(1)))
                    .earliest()
            }) else {
                continue;
            };
            let open = open.with_timezone(&Utc);
            if open > at {
                return Some(open);
            }
        }
        None
    }
}

impl fmt::Display for CallingHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start.hour(),
            self.start.minute(),
            self.end.hour(),
            self.end.minute()
        )
    }
}

/// Answered and abandoned calls over a rolling period: the abandonment rate regulators
/// cap (abandoned / answered by a person; Ofcom counts over 24 hours per campaign).
#[derive(Debug, Clone)]
pub struct AbandonWindow {
    period: Duration,
    /// (when, abandoned?) for each call answered by a person, oldest first.
    calls: VecDeque<(Instant, bool)>,
    abandoned: u32,
}

impl AbandonWindow {
    /// An empty window over `period`.
    pub fn new(period: Duration) -> AbandonWindow {
        AbandonWindow {
            period,
            calls: VecDeque::new(),
            abandoned: 0,
        }
    }

    /// A call answered by a person: connected to an agent (`abandoned = false`) or not.
    pub fn record(&mut self, now: Instant, abandoned: bool) {
        self.expire(now);
        self.calls.push_back((now, abandoned));
        self.abandoned += u32::from(abandoned);
    }

    /// Forgets calls older than the period.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, abandoned)) = self.calls.front() {
            if now.saturating_duration_since(at) <= self.period {
                break;
            }
            self.calls.pop_front();
            self.abandoned -= u32::from(abandoned);
        }
    }

    /// Answered calls in the window.
    pub fn answered(&self) -> u32 {
        self.calls.len() as u32
    }

    /// Abandoned calls in the window.
    pub fn abandoned(&self) -> u32 {
        self.abandoned
    }

    /// Abandoned / answered (0 when nothing was answered).
    pub fn rate(&self) -> f64 {
        if self.calls.is_empty() {
            0.0
        } else {
            f64::from(self.abandoned) / self.calls.len() as f64
        }
    }
}

/// How a contact is retried after each outcome, and how often at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per contact, the first included.
    pub max_attempts: u32,
    /// Wait after a busy signal.
    pub busy: Duration,
    /// Wait after nobody answered.
    pub no_answer: Duration,
    /// Wait after a network failure.
    pub failed: Duration,
    /// Wait after an answering machine (`None`: a machine ends the contact).
    pub machine: Option<Duration>,
    /// Wait after the call was abandoned (answered, no agent free).
    pub abandoned: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            busy: Duration::from_secs(10 * 60),
            no_answer: Duration::from_secs(60 * 60),
            failed: Duration::from_secs(30 * 60),
            machine: Some(Duration::from_secs(4 * 60 * 60)),
            abandoned: Duration::from_secs(60 * 60),
        }
    }
}

/// What happens to a contact after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again no earlier than this.
    RetryAt(DateTime<Utc>),
    /// The contact is finished (reached, barred, wrong number, or out of attempts).
    Done,
}

impl RetryPolicy {
    /// After attempt number `attempts` (1 for the first) ended with `outcome` at `at`.
    /// A scheduled callback set by an agent is not decided here: it wins.
    pub fn next(&self, outcome: Outcome, attempts: u32, at: DateTime<Utc>) -> Next {
        let wait = match outcome {
            Outcome::Busy => Some(self.busy),
            Outcome::NoAnswer => Some(self.no_answer),
            Outcome::Failed => Some(self.failed),
            Outcome::Machine => self.machine,
            Outcome::Abandoned => Some(self.abandoned),
            Outcome::Answered | Outcome::InvalidNumber | Outcome::Rejected => None,
        };
        match wait {
            Some(w) if attempts < self.max_attempts => {
                let w = chrono::Duration::from_std(w).unwrap_or(chrono::Duration::MAX);
                Next::RetryAt(at.checked_add_signed(w).unwrap_or(at))
            }
            _ => Next::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Europe};

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn do_not_call_lists_bar_numbers() {
        let dnc = DoNotCall::new(["+442079460000".into()], ["+442079460001".into()]);
        assert_eq!(dnc.check("+442079460000"), Some(Barred::Global));
        assert_eq!(dnc.check("+442079460001"), Some(Barred::Campaign));
        assert_eq!(dnc.check("+442079460002"), None);
    }

    #[test]
    fn calling_hours_are_in_the_contacts_time_zone() {
        let hours: CallingHours = "mon-fri 09:00-20:00".parse().unwrap();
        // 2026-11-23 is a Monday. 14:30 UTC is 14:30 in London and 09:30 in New York.
        let at = utc("2026-11-23T14:30:00Z");
        assert!(hours.allows(at, Europe::London));
        assert!(hours.allows(at, America::New_York));
        // 13:30 UTC is 08:30 in New York: too early there, fine in London.
        let early = utc("2026-11-23T13:30:00Z");
        assert!(hours.allows(early, Europe::London));
        assert!(!hours.allows(early, America::New_York));
        assert_eq!(
            hours.next_open(early, America::New_York),
            Some(utc("2026-11-23T14:00:00Z"))
        );
        // Saturday is not in mon-fri: the next opening is Monday 09:00 local.
        let saturday = utc("2026-11-28T12:00:00Z");
        assert!(!hours.allows(saturday, Europe::London));
        assert_eq!(
            hours.next_open(saturday, Europe::London),
            Some(utc("2026-11-30T09:00:00Z"))
        );
        // The end is exclusive.
        assert!(!hours.allows(utc("2026-11-23T20:00:00Z"), Europe::London));
    }

    #[test]
    fn calling_hours_parse_with_clear_errors() {
        assert_eq!(
            "09:00-20:00".parse::<CallingHours>().unwrap().days,
            0b0111_1111
        );
        assert_eq!(
            "sat,mon 10:00-12:00".parse::<CallingHours>().unwrap().days,
            0b0010_0001
        );
        assert_eq!(
            "fri-mon 10:00-12:00".parse::<CallingHours>().unwrap().days,
            0b0111_0001
        );
        let e = "20:00-09:00".parse::<CallingHours>().unwrap_err();
        assert!(e.to_string().contains("must end after it starts"), "{e}");
        let e = "funday 09:00-10:00".parse::<CallingHours>().unwrap_err();
        assert!(e.to_string().contains("unknown day"), "{e}");
        let e = "9-5".parse::<CallingHours>().unwrap_err();
        assert!(e.to_string().contains("not HH:MM"), "{e}");
    }

    #[test]
    fn the_abandon_window_rolls() {
        let t0 = crate::time::base_instant();
        let mut w = AbandonWindow::new(Duration::from_secs(3600));
        for i in 0..97 {
            w.record(t0 + Duration::from_secs(i), false);
        }
        for i in 0..3 {
            w.record(t0 + Duration::from_secs(100 + i), true);
        }
        assert_eq!((w.answered(), w.abandoned()), (100, 3));
        assert!((w.rate() - 0.03).abs() < 1e-9);
        // An hour later the first 97 are gone, the abandoned ones still count.
        w.expire(t0 + Duration::from_secs(3600 + 97));
        assert_eq!((w.answered(), w.abandoned()), (3, 3));
        w.expire(t0 + Duration::from_secs(4000));
        assert_eq!(w.rate(), 0.0);
    }

    #[test]
    fn retries_follow_the_outcome_and_stop_at_the_limit() {
        let p = RetryPolicy::default();
        let at = utc("2026-11-23T10:00:00Z");
        assert_eq!(
            p.next(Outcome::Busy, 1, at),
            Next::RetryAt(utc("2026-11-23T10:10:00Z"))
        );
        assert_eq!(
            p.next(Outcome::NoAnswer, 2, at),
            Next::RetryAt(utc("2026-11-23T11:00:00Z"))
        );
        assert_eq!(p.next(Outcome::NoAnswer, 3, at), Next::Done);
        assert_eq!(p.next(Outcome::Answered, 1, at), Next::Done);
        assert_eq!(p.next(Outcome::InvalidNumber, 1, at), Next::Done);
        let no_machines = RetryPolicy {
            machine: None,
            ..RetryPolicy::default()
        };
        assert_eq!(no_machines.next(Outcome::Machine, 1, at), Next::Done);
    }
}
