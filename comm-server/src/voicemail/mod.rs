//! Voicemail: the pure parts. Callers leave a message in a mailbox ([`Deposit`]); the
//! owner listens, saves and deletes after a PIN ([`Retrieval`]); phones learn that
//! messages wait through RFC 3842 `message-summary` bodies ([`message_summary`]).
//!
//! Owns: the two dialogs as state machines fed `now`, digits and playback reports;
//! message file names and what they encode; the PIN comparison; the announcement of a
//! message (who and when, as prompt names). Must not own: files, the database, media
//! or SIP. The call task (`server::voicemail`) does those and reports back.
//!
//! Crash safety lives in the driver and rests on one order: the WAV is written to a
//! temporary file, renamed into the mailbox directory when complete, and only then
//! listed in the database; start-up reconciles the two (see `server::voicemail`).

pub mod deposit;
pub mod retrieval;

pub use deposit::{Deposit, DepositAction, DepositSettings};
pub use retrieval::{Retrieval, RetrievalAction};

/// One thing to play: a prompt from the sounds directory or a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audio {
    Prompt(String),
    /// A message, by id.
    Message(String),
    /// The message just recorded, played back for review before it is sent.
    Recording,
}

/// The mailbox greeting played when a mailbox has none of its own.
pub const DEFAULT_GREETING: &str = "voicemail/leave-message-after-tone";
pub const BEEP: &str = "voicemail/beep";
/// Longest caller text kept in a file name.
const MAX_CALLER_CHARS: usize = 32;

/// Whether the PIN typed matches, in time that does not depend on where they differ.
pub fn pin_matches(expected: &str, entered: &str) -> bool {
    let (a, b) = (expected.as_bytes(), entered.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The caller as it may appear in a file name: letters, digits and `+` only.
fn caller_for_file(caller: &str) -> String {
    caller
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+')
        .take(MAX_CALLER_CHARS)
        .collect()
}

/// A new message's id (and file stem): `<created_at_ms>-<token>-<caller>`. The file
/// name carries what the index row needs, so start-up can list a file whose row a
/// crash lost. `token` is random hex (no `-`).
pub fn message_id(created_at_ms: i64, token: &str, caller: &str) -> String {
    format!(
        "{created_at_ms}-{}-{}",
        token.replace('-', ""),
        caller_for_file(caller)
    )
}

/// What a message id says: when it was created and who called. `None` for a name this
/// server did not write.
pub fn parse_message_id(id: &str) -> Option<(i64, String)> {
    let mut parts = id.splitn(3, '-');
    let created = parts.next()?;
    let token = parts.next()?;
    let caller = parts.next()?;
    if created.is_empty()
        || !created.bytes().all(|b| b.is_ascii_digit())
        || token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_alphanumeric())
        || caller_for_file(caller) != caller
    {
        return None;
    }
    Some((created.parse().ok()?, caller.to_string()))
}

/// Milliseconds in a day, for `retention-days`.
const DAY_MS: i64 = 86_400_000;

/// Under a mailbox's `retention-days` policy at `now_ms`, the messages left before
/// this instant (Unix ms) have expired: a message exactly `days` old is kept until
/// the next sweep. Heard or not, handled or not: the policy is about age only.
pub fn retention_cutoff(now_ms: i64, days: u32) -> i64 {
    now_ms.saturating_sub(i64::from(days) * DAY_MS)
}

/// Whether a message left at `created_at_ms` has expired at the cutoff.
pub fn expired(created_at_ms: i64, cutoff_ms: i64) -> bool {
    created_at_ms < cutoff_ms
}

/// The RFC 3842 §5.2 `application/simple-message-summary` body for `account`
/// (a SIP URI): whether messages wait and the new/old voice message counts.
pub fn message_summary(account: &str, new: u32, old: u32) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: {account}\r\nVoice-Message: {new}/{old}\r\n",
        if new > 0 { "yes" } else { "no" }
    )
}

/// What retrieval says before a message: "Message from 5 5 5 1 received November 23
/// at 14 35", the date and time in the site's `zone` (`[server] time-zone`).
pub fn announcement(created_at_ms: i64, caller: &str, zone: chrono_tz::Tz) -> Vec<String> {
    use crate::media::prompt::{digit_prompts, number_prompts};
    let mut out = vec!["voicemail/message-from".to_string()];
    let digits = digit_prompts(caller);
    if digits.is_empty() {
        out.push("voicemail/unknown-caller".into());
    } else {
        out.extend(digits);
    }
    let (month, day, hour, minute) = civil(created_at_ms, zone);
    out.push("voicemail/received".into());
    out.push(format!("voicemail/month-{month}"));
    out.extend(number_prompts(day));
    out.push("voicemail/at".into());
    out.extend(number_prompts(hour));
    match minute {
        0 => out.push("voicemail/oclock".into()),
        1..=9 => {
            out.push("voicemail/oh".into());
            out.extend(number_prompts(minute));
        }
        _ => out.extend(number_prompts(minute)),
    }
    out
}

/// Month (1-12), day, hour and minute of a Unix time in milliseconds, in `zone`.
/// A time outside chrono's range (not one this server wrote) reads as the epoch.
fn civil(unix_ms: i64, zone: chrono_tz::Tz) -> (u32, u32, u32, u32) {
    use chrono::{Datelike, Timelike};
    let local = chrono::DateTime::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .with_timezone(&zone);
    (local.month(), local.day(), local.hour(), local.minute())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::UTC;

    #[test]
    fn pins_compare_whole() {
        assert!(pin_matches("1234", "1234"));
        assert!(!pin_matches("1234", "123"));
        assert!(!pin_matches("1234", "12345"));
        assert!(!pin_matches("1234", "1235"));
        assert!(!pin_matches("1234", ""));
    }

    #[test]
    fn message_ids_carry_time_and_caller_and_refuse_strangers() {
        let id = message_id(1_800_000_000_000, "ab12", "sip:+1 555/..alice");
        assert_eq!(id, "1800000000000-ab12-sip+1555alice");
        assert_eq!(
            parse_message_id(&id),
            Some((1_800_000_000_000, "sip+1555alice".into()))
        );
        assert_eq!(parse_message_id("1-ab-"), Some((1, String::new())));
        for bad in ["", "x-ab-1", "1--c", "1-ab", "1-ab-c.d", "../1-ab-c"] {
            assert_eq!(parse_message_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retention_selects_messages_older_than_the_policy() {
        let now = 1_800_000_000_000;
        let cutoff = retention_cutoff(now, 30);
        assert_eq!(cutoff, now - 30 * 86_400_000);
        let left = [
            ("today", now - 1_000),
            ("29 days", now - 29 * DAY_MS),
            ("exactly 30 days", now - 30 * DAY_MS),
            ("30 days and a second", now - 30 * DAY_MS - 1_000),
            ("a year", now - 365 * DAY_MS),
        ];
        let gone: Vec<&str> = left
            .iter()
            .filter(|(_, at)| expired(*at, cutoff))
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(gone, ["30 days and a second", "a year"]);
        // A huge policy never underflows: nothing expires.
        assert!(!expired(0, retention_cutoff(0, u32::MAX)));
    }

    #[test]
    fn summary_follows_rfc_3842() {
        assert_eq!(
            message_summary("sip:sales@example.com", 1, 0),
            "Messages-Waiting: yes\r\nMessage-Account: sip:sales@example.com\r\nVoice-Message: 1/0\r\n"
        );
        assert!(message_summary("sip:a@b", 0, 3).starts_with("Messages-Waiting: no\r\n"));
    }

    #[test]
    fn announcement_says_who_and_when() {
        // 2027-01-15 09:05:00 UTC.
        let t = 1_800_003_900_000;
        assert_eq!(civil(t, UTC), (1, 15, 9, 5));
        assert_eq!(
            announcement(t, "42", UTC),
            [
                "voicemail/message-from",
                "digits/4",
                "digits/2",
                "voicemail/received",
                "voicemail/month-1",
                "numbers/15",
                "voicemail/at",
                "numbers/9",
                "voicemail/oh",
                "numbers/5"
            ]
        );
        let a = announcement(0, "alice", UTC);
        assert_eq!(a[1], "voicemail/unknown-caller");
        assert_eq!(civil(0, UTC), (1, 1, 0, 0));
        assert_eq!(a.last().unwrap(), "voicemail/oclock");
        assert_eq!(civil(951_782_400_000, UTC), (2, 29, 0, 0)); // 2000-02-29
    }

    #[test]
    fn announcement_tells_the_time_in_the_site_zone() {
        use chrono_tz::{America::Los_Angeles, Asia::Tokyo};
        // 2027-01-15 09:05:00 UTC is 01:05 the same day in Los Angeles (UTC-8) and
        // 18:05 in Tokyo (UTC+9).
        let t = 1_800_003_900_000;
        assert_eq!(civil(t, Los_Angeles), (1, 15, 1, 5));
        assert_eq!(civil(t, Tokyo), (1, 15, 18, 5));
        let said = announcement(t, "42", Los_Angeles);
        assert_eq!(
            &said[6..],
            ["voicemail/at", "numbers/1", "voicemail/oh", "numbers/5"]
        );
        // Just after midnight UTC on New Year's Day is still the old year in Los Angeles.
        let new_year = 1_798_761_660_000; // 2027-01-01 00:01 UTC
        assert_eq!(civil(new_year, UTC), (1, 1, 0, 1));
        assert_eq!(civil(new_year, Los_Angeles), (12, 31, 16, 1));
        let said = announcement(new_year, "42", Los_Angeles);
        assert_eq!(said[4..6], ["voicemail/month-12", "numbers/30"]);
    }
}
