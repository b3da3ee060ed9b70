//! The campaign report: what the dialler did for one outbound campaign in a period.
//!
//! Computed from the stored attempts (one row per dial, with its outcome, agent and
//! disposition), not the ACD log: an attempt that never reached the ACD (busy, no
//! answer, do-not-call screened out later) is still an attempt.
//!
//! # Definitions
//! An attempt counts in the period in which it was placed (`from <= started < to`).
//! * **attempts**: dials placed; **contacts dialled**: distinct contacts among them;
//! * **reached**: distinct contacts with at least one answered attempt (a person
//!   talked to an agent);
//! * one column per [`Outcome`](crate::campaigns::Outcome): answered, abandoned,
//!   machine, busy, no answer, invalid number, rejected, failed;
//! * **abandonment rate** = abandoned ÷ (answered + abandoned): the share of live
//!   people who answered and found no agent, the figure regulators cap (Ofcom and the
//!   FTC both count it over live answers); `None` when nobody answered;
//! * **contact rate** = reached ÷ contacts dialled;
//! * **talk**: mean duration of the answered attempts, from dial to hang-up;
//! * **dispositions**: how the agents closed the answered calls, per code.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Period;

/// One stored attempt, as the report needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub contact: i64,
    pub started_ms: i64,
    pub ended_ms: i64,
    /// [`crate::campaigns::Outcome::as_str`].
    pub outcome: String,
    pub agent: Option<String>,
    pub disposition: Option<String>,
}

/// The figures of one campaign over a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CampaignFigures {
    pub campaign: String,
    pub attempts: u64,
    pub contacts_dialled: u64,
    pub reached: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub machine: u64,
    pub busy: u64,
    pub no_answer: u64,
    pub invalid_number: u64,
    pub rejected: u64,
    pub failed: u64,
    /// Outcomes this build does not know (a newer server wrote them).
    pub other: u64,
    pub talk: Option<Duration>,
    pub dispositions: BTreeMap<String, u64>,
}

impl CampaignFigures {
    pub fn abandonment_rate(&self) -> Option<f64> {
        let live = self.answered + self.abandoned;
        (live > 0).then(|| self.abandoned as f64 / live as f64)
    }

    pub fn contact_rate(&self) -> Option<f64> {
        (self.contacts_dialled > 0).then(|| self.reached as f64 / self.contacts_dialled as f64)
    }
}

/// The figures of `campaign` from its attempts (any order).
pub fn campaign_report(campaign: &str, attempts: &[Attempt], period: Period) -> CampaignFigures {
    let mut f = CampaignFigures {
        campaign: campaign.to_owned(),
        ..CampaignFigures::default()
    };
    let mut dialled = BTreeSet::new();
    let mut reached = BTreeSet::new();
    let mut talk_ms: i64 = 0;
    for a in attempts.iter().filter(|a| period.contains(a.started_ms)) {
        f.attempts += 1;
        dialled.insert(a.contact);
        let slot = match a.outcome.as_str() {
            "answered" => {
                reached.insert(a.contact);
                talk_ms += (a.ended_ms - a.started_ms).max(0);
                if let Some(d) = a.disposition.as_deref().filter(|d| !d.is_empty()) {
                    *f.dispositions.entry(d.to_owned()).or_default() += 1;
                }
                &mut f.answered
            }
            "abandoned" => &mut f.abandoned,
            "machine" => &mut f.machine,
            "busy" => &mut f.busy,
            "no-answer" => &mut f.no_answer,
            "invalid-number" => &mut f.invalid_number,
            "rejected" => &mut f.rejected,
            "failed" => &mut f.failed,
            _ => &mut f.other,
        };
        *slot += 1;
    }
    f.contacts_dialled = dialled.len() as u64;
    f.reached = reached.len() as u64;
    f.talk = (f.answered > 0)
        .then(|| Duration::from_millis(u64::try_from(talk_ms).unwrap_or(0) / f.answered));
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::Outcome;

    fn attempt(contact: i64, started_ms: i64, secs: i64, outcome: &str) -> Attempt {
        Attempt {
            contact,
            started_ms,
            ended_ms: started_ms + secs * 1000,
            outcome: outcome.into(),
            agent: None,
            disposition: None,
        }
    }

    #[test]
    fn outcome_names_match_what_the_dialler_stores() {
        let all = [
            (Outcome::Answered, "answered"),
            (Outcome::Abandoned, "abandoned"),
            (Outcome::Machine, "machine"),
            (Outcome::Busy, "busy"),
            (Outcome::NoAnswer, "no-answer"),
            (Outcome::InvalidNumber, "invalid-number"),
            (Outcome::Rejected, "rejected"),
            (Outcome::Failed, "failed"),
        ];
        for (outcome, text) in all {
            assert_eq!(outcome.as_str(), text);
            let f = campaign_report("c", &[attempt(1, 0, 1, text)], Period::whole());
            assert_eq!(f.other, 0, "{text} is counted in its own column");
        }
    }

    #[test]
    fn hand_checked_figures() {
        let mut a = vec![
            // Contact 1: busy, then answered (90 s, sale).
            attempt(1, 1_000, 5, "busy"),
            attempt(1, 60_000, 90, "answered"),
            // Contact 2: no answer twice.
            attempt(2, 2_000, 30, "no-answer"),
            attempt(2, 70_000, 30, "no-answer"),
            // Contact 3: answered, no agent free.
            attempt(3, 3_000, 4, "abandoned"),
            // Contact 4: answered (30 s, no sale), then a machine on a later call.
            attempt(4, 4_000, 30, "answered"),
            attempt(4, 80_000, 10, "machine"),
            // Outside the period: not counted.
            attempt(5, 200_000, 60, "answered"),
        ];
        a[1].disposition = Some("sale".into());
        a[5].disposition = Some("no-sale".into());
        let f = campaign_report(
            "renewals",
            &a,
            Period {
                from_ms: 0,
                to_ms: 100_000,
            },
        );
        assert_eq!(f.attempts, 7);
        assert_eq!(f.contacts_dialled, 4);
        assert_eq!(f.reached, 2);
        assert_eq!((f.answered, f.abandoned, f.machine), (2, 1, 1));
        assert_eq!((f.busy, f.no_answer, f.failed, f.other), (1, 2, 0, 0));
        assert_eq!(f.abandonment_rate(), Some(1.0 / 3.0));
        assert_eq!(f.contact_rate(), Some(0.5));
        assert_eq!(f.talk, Some(Duration::from_secs(60)));
        assert_eq!(
            f.dispositions,
            BTreeMap::from([("no-sale".into(), 1), ("sale".into(), 1)])
        );
    }

    #[test]
    fn nothing_dialled_has_no_rates() {
        let f = campaign_report("c", &[], Period::whole());
        assert_eq!(f.attempts, 0);
        assert_eq!(f.abandonment_rate(), None);
        assert_eq!(f.contact_rate(), None);
        assert_eq!(f.talk, None);
    }
}
