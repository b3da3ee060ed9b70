//! The voicemail report: messages left per mailbox and how fast they were dealt with.
//!
//! Computed from the mailbox index (each listed message with its length, whether the
//! owner heard it, and, for a mailbox with a `work-queue`, which agent handled it as a
//! task and when). A message deleted from the index no longer counts.
//!
//! # Definitions
//! A message counts in the period in which it was left (`from <= left < to`).
//! * **left**: messages left; **heard**: of those, heard by the owner or an agent;
//! * **handled**: of those, closed by an agent's disposition (voicemail as work), at
//!   any time up to now; **open**: not handled yet;
//! * **time to handle**: mean and longest time from the message being left to its
//!   disposition, over the handled ones;
//! * **average length**: mean message duration.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Period;

/// One message as the report needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub mailbox: String,
    pub left_ms: i64,
    pub duration_ms: i64,
    pub heard: bool,
    /// When an agent's disposition closed it, if one did.
    pub handled_ms: Option<i64>,
}

/// One mailbox's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MailboxFigures {
    pub mailbox: String,
    pub left: u64,
    pub heard: u64,
    pub handled: u64,
    length_ms: i64,
    handle_ms: i64,
    longest_handle_ms: i64,
}

impl MailboxFigures {
    /// Messages not handled yet.
    pub fn open(&self) -> u64 {
        self.left - self.handled
    }

    pub fn average_length(&self) -> Option<Duration> {
        mean(self.length_ms, self.left)
    }

    pub fn average_time_to_handle(&self) -> Option<Duration> {
        mean(self.handle_ms, self.handled)
    }

    pub fn longest_time_to_handle(&self) -> Option<Duration> {
        (self.handled > 0).then(|| ms(self.longest_handle_ms))
    }
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

fn mean(total_ms: i64, n: u64) -> Option<Duration> {
    (n > 0).then(|| ms(total_ms) / u32::try_from(n).unwrap_or(u32::MAX))
}

/// Per mailbox, by name.
pub fn voicemail_report(messages: &[Message], period: Period) -> Vec<MailboxFigures> {
    let mut by: BTreeMap<&str, MailboxFigures> = BTreeMap::new();
    for m in messages.iter().filter(|m| period.contains(m.left_ms)) {
        let f = by.entry(&m.mailbox).or_insert_with(|| MailboxFigures {
            mailbox: m.mailbox.clone(),
            ..MailboxFigures::default()
        });
        f.left += 1;
        f.length_ms += m.duration_ms.max(0);
        if m.heard {
            f.heard += 1;
        }
        if let Some(at) = m.handled_ms {
            let took = (at - m.left_ms).max(0);
            f.handled += 1;
            f.handle_ms += took;
            f.longest_handle_ms = f.longest_handle_ms.max(took);
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(
        mailbox: &str,
        left_ms: i64,
        secs: i64,
        heard: bool,
        handled_after_s: Option<i64>,
    ) -> Message {
        Message {
            mailbox: mailbox.into(),
            left_ms,
            duration_ms: secs * 1000,
            heard,
            handled_ms: handled_after_s.map(|s| left_ms + s * 1000),
        }
    }

    #[test]
    fn hand_checked_figures() {
        let messages = [
            // support: three left, two handled after 10 and 30 minutes, one open.
            message("support", 1_000, 20, true, Some(600)),
            message("support", 2_000, 40, true, Some(1_800)),
            message("support", 3_000, 30, false, None),
            // alice's own box: heard, never a task.
            message("alice", 4_000, 10, true, None),
            // Left after the period: not counted.
            message("support", 100_000, 5, false, None),
        ];
        let rows = voicemail_report(
            &messages,
            Period {
                from_ms: 0,
                to_ms: 50_000,
            },
        );
        assert_eq!(rows.len(), 2);
        let (alice, support) = (&rows[0], &rows[1]);
        assert_eq!(alice.mailbox, "alice");
        assert_eq!((alice.left, alice.heard, alice.handled), (1, 1, 0));
        assert_eq!(alice.average_time_to_handle(), None);
        assert_eq!(support.mailbox, "support");
        assert_eq!((support.left, support.heard, support.handled), (3, 2, 2));
        assert_eq!(support.open(), 1);
        assert_eq!(support.average_length(), Some(Duration::from_secs(30)));
        assert_eq!(
            support.average_time_to_handle(),
            Some(Duration::from_secs(1_200))
        );
        assert_eq!(
            support.longest_time_to_handle(),
            Some(Duration::from_secs(1_800))
        );
    }

    #[test]
    fn an_empty_period_has_no_rows() {
        assert!(voicemail_report(&[], Period::whole()).is_empty());
    }
}
