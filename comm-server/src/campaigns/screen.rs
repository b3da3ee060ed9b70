//! Before every dial: may this contact be called now? Pure: the wall-clock time, the
//! do-not-call lists and the contact's zone are arguments.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::compliance::Barred;
use super::{CallingHours, DoNotCall};

/// What to do with a due contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Dial it now.
    Dial,
    /// Never: a do-not-call list has the number (the contact is finished).
    Barred(Barred),
    /// Not now: calling hours are closed in the contact's zone; try again then
    /// (`None`: the hours never open, the contact is finished).
    ClosedUntil(Option<DateTime<Utc>>),
    /// Out of attempts: the contact is finished.
    Exhausted,
}

/// Screens one contact: do-not-call first (it always wins), then attempts, then hours.
/// `zone` is the contact's own zone when it has a valid one, else the campaign's.
pub fn screen(
    e164: &str,
    attempts: u32,
    max_attempts: u32,
    zone: Tz,
    at: DateTime<Utc>,
    dnc: &DoNotCall,
    hours: &CallingHours,
) -> Screen {
    if let Some(barred) = dnc.check(e164) {
        return Screen::Barred(barred);
    }
    if attempts >= max_attempts {
        return Screen::Exhausted;
    }
    if !hours.allows(at, zone) {
        return Screen::ClosedUntil(hours.next_open(at, zone));
    }
    Screen::Dial
}

/// The zone a contact is called in: its own when it names a valid one.
pub fn zone_of(contact_zone: Option<&str>, default: Tz) -> Tz {
    contact_zone.and_then(|z| z.parse().ok()).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Europe};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn do_not_call_wins_then_attempts_then_hours() {
        let dnc = DoNotCall::new(["+1".into()], ["+2".into()]);
        let hours: CallingHours = "mon-fri 09:00-20:00".parse().unwrap();
        // Wednesday 2026-11-25 14:00 UTC: open in London, 09:00 in New York.
        let wed = at("2026-11-25T14:00:00Z");
        let s = |n: &str, attempts, zone| screen(n, attempts, 3, zone, wed, &dnc, &hours);
        assert_eq!(s("+1", 0, Europe::London), Screen::Barred(Barred::Global));
        assert_eq!(s("+2", 9, Europe::London), Screen::Barred(Barred::Campaign));
        assert_eq!(s("+3", 3, Europe::London), Screen::Exhausted);
        assert_eq!(s("+3", 2, Europe::London), Screen::Dial);
        assert_eq!(s("+3", 0, America::New_York), Screen::Dial);
        assert_eq!(
            s("+3", 0, America::Los_Angeles),
            Screen::ClosedUntil(Some(at("2026-11-25T17:00:00Z"))),
            "06:00 in Los Angeles: wait for 09:00 there"
        );
    }

    #[test]
    fn bad_or_missing_zones_fall_back_to_the_campaign() {
        assert_eq!(zone_of(Some("Europe/Paris"), Tz::UTC), Europe::Paris);
        assert_eq!(zone_of(Some("Nowhere/Else"), Tz::UTC), Tz::UTC);
        assert_eq!(zone_of(None, Europe::London), Europe::London);
    }
}
