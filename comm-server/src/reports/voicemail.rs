//! The voicemail report: messages left per mailbox and how fast they were dealt with.
//!
//! Computed from the mailbox index (each message with its length, whether the owner
//! heard it, for a mailbox with a `work-queue` which agent handled it as a task and
//! when, and when it was deleted). Deleted messages keep their row, so a past period's
//! figures do not shrink when messages are deleted or expire.
//!
//! # Definitions
//! A message counts in the period in which it was left (`from <= left < to`).
//! * **left**: messages left; **heard**: of those, heard by the owner or an agent;
//! * **handled**: of those, closed by an agent's disposition (voicemail as work), at
//!   any time up to now; **deleted**: of those, deleted since (by the owner, an agent
//!   or the mailbox's retention); **open**: neither handled nor deleted;
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
    /// When it was deleted, if it was.
    pub deleted_ms: Option<i64>,
}

/// One mailbox's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MailboxFigures {
    pub mailbox: String,
    pub left: u64,
    pub heard: u64,
    pub handled: u64,
    pub deleted: u64,
    /// Deleted without an agent having handled it.
    deleted_unhandled: u64,
    length_ms: i64,
    handle_ms: i64,
    longest_handle_ms: i64,
}

impl MailboxFigures {
    /// Messages neither handled nor deleted.
    pub fn open(&self) -> u64 {
        self.left - self.handled - self.deleted_unhandled
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
        if m.deleted_ms.is_some() {
            f.deleted += 1;
            if m.handled_ms.is_none() {
                f.deleted_unhandled += 1;
            }
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
            deleted_ms: None,
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
            // sales: one deleted unheard (no longer open), one handled then deleted.
            Message {
                deleted_ms: Some(9_000),
                ..message("sales", 5_000, 12, false, None)
            },
            Message {
                deleted_ms: Some(90_000),
                ..message("sales", 6_000, 8, true, Some(60))
            },
        ];
        let rows = voicemail_report(
            &messages,
            Period {
                from_ms: 0,
                to_ms: 50_000,
            },
        );
        assert_eq!(rows.len(), 3);
        let (alice, sales, support) = (&rows[0], &rows[1], &rows[2]);
        assert_eq!(sales.mailbox, "sales");
        assert_eq!(
            (sales.left, sales.heard, sales.handled, sales.deleted),
            (2, 1, 1, 2),
            "deleted messages still count as left in their period"
        );
        assert_eq!(sales.open(), 0);
        assert_eq!(sales.average_length(), Some(Duration::from_secs(10)));
        assert_eq!(support.deleted, 0);
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
