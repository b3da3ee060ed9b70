//! The `[[campaign]]` config section and its checked form.
//!
//! ```toml
//! [[campaign]]
//! name = "renewals"
//! queue = "sales"                     # whose agents take the answered calls
//! trunk = "carrier"                   # a [[trunk]] the calls go out through
//! caller-id = "+442079460000"         # default: the trunk's
//! mode = "progressive"                # preview | progressive | predictive
//! calling-hours = "mon-fri 09:00-20:00"
//! time-zone = "Europe/London"         # for contacts without their own
//! max-attempts = 3
//! retry-busy = "10m"
//! abandon-cap = 0.03                  # predictive: abandoned / answered
//! ring-timeout = "25s"
//! connect-timeout = "2s"              # answered, no agent within this: abandoned
//! script = "renewal-offer"            # shown to the agent with the screen pop
//! amd = "message"                     # off | hang-up | message
//! amd-message = "campaign/renewals-message"
//! ```
//!
//! Checked at load: the queue and trunk exist, the mode, hours and zone parse, names
//! are unique; errors name the file and line. Pure: no I/O.

use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use super::{CallingHours, DialMode, PredictiveParams, RetryPolicy};
use crate::config::HumanDuration;

/// Default ring time before a dial counts as no-answer: long enough for a mobile to be
/// fished out of a pocket (~6 rings), short of most voicemail pick-ups.
pub const DEFAULT_CAMPAIGN_RING: Duration = Duration::from_secs(25);
/// Default time an answered call may wait for an agent before it is abandoned (the
/// UK's Ofcom counts a call as abandoned after 2 seconds of silence).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default calling hours: weekdays, inside what most regulators allow.
pub const DEFAULT_CALLING_HOURS: &str = "mon-fri 09:00-20:00";

/// An outbound campaign as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CampaignSection {
    pub name: toml::Spanned<String>,
    /// A `[[queue]]`: its agents take the answered calls.
    pub queue: toml::Spanned<String>,
    /// A `[[trunk]]` the calls go out through.
    pub trunk: toml::Spanned<String>,
    /// The number shown to contacts; default the trunk's caller id.
    #[serde(default)]
    pub caller_id: Option<String>,
    /// preview, progressive (default) or predictive.
    #[serde(default)]
    pub mode: Option<toml::Spanned<String>>,
    /// When contacts may be called, in their own zone. Default "mon-fri 09:00-20:00".
    #[serde(default)]
    pub calling_hours: Option<toml::Spanned<String>>,
    /// IANA zone for contacts without one. Default "UTC".
    #[serde(default)]
    pub time_zone: Option<toml::Spanned<String>>,
    /// Attempts per contact, the first included. Default 3.
    #[serde(default)]
    pub max_attempts: Option<toml::Spanned<u32>>,
    /// Waits before the next attempt after each outcome; defaults as
    /// [`RetryPolicy::default`] (busy 10m, no answer 1h, failed 30m, machine 4h,
    /// abandoned 1h).
    #[serde(default)]
    pub retry_busy: Option<HumanDuration>,
    #[serde(default)]
    pub retry_no_answer: Option<HumanDuration>,
    #[serde(default)]
    pub retry_failed: Option<HumanDuration>,
    #[serde(default)]
    pub retry_machine: Option<HumanDuration>,
    #[serde(default)]
    pub retry_abandoned: Option<HumanDuration>,
    /// Predictive: the abandonment cap, 0..=1. Default 0.03 (3%).
    #[serde(default)]
    pub abandon_cap: Option<toml::Spanned<f64>>,
    /// How long a dial rings before it counts as no-answer. Default "25s".
    #[serde(default)]
    pub ring_timeout: Option<HumanDuration>,
    /// How long an answered call waits for an agent before it is abandoned. Default "2s".
    #[serde(default)]
    pub connect_timeout: Option<HumanDuration>,
    /// A script name the agent's desktop shows with the contact.
    #[serde(default)]
    pub script: Option<String>,
    /// Answering-machine detection on answered calls: off (default), hang-up or
    /// message.
    #[serde(default)]
    pub amd: Option<toml::Spanned<String>>,
    /// With `amd = "message"`: the prompt a machine hears before we hang up.
    #[serde(default)]
    pub amd_message: Option<toml::Spanned<String>>,
}

/// What a campaign does with a call an answering machine picked up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AmdAction {
    /// No detection: every answered call goes to an agent.
    #[default]
    Off,
    /// Detect; a machine is hung up on.
    HangUp,
    /// Detect; a machine hears this prompt, then we hang up.
    Message(String),
}

/// A checked campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub name: String,
    pub queue: String,
    pub trunk: String,
    pub caller_id: Option<String>,
    pub mode: DialMode,
    pub calling_hours: CallingHours,
    pub time_zone: Tz,
    pub retry: RetryPolicy,
    pub ring_timeout: Duration,
    pub connect_timeout: Duration,
    pub script: Option<String>,
    pub amd: AmdAction,
}

/// What is wrong with a campaign section: the byte span it is about, the key, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingError {
    pub span: std::ops::Range<usize>,
    pub key: String,
    pub message: String,
}

impl CampaignSection {
    /// The checked campaign; `index` names it in errors (`campaign[0].mode`), `queues`
    /// and `trunks` are the configured names.
    pub fn check(
        &self,
        index: usize,
        queues: &[&str],
        trunks: &[&str],
    ) -> Result<Campaign, SettingError> {
        let error = |span: std::ops::Range<usize>, key: &str, message: String| SettingError {
            span,
            key: format!("campaign[{index}].{key}"),
            message,
        };
        let name = self.name.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(error(
                self.name.span(),
                "name",
                "use letters, digits and - _ .".into(),
            ));
        }
        if !queues.contains(&self.queue.get_ref().as_str()) {
            return Err(error(
                self.queue.span(),
                "queue",
                format!("no [[queue]] named {:?}", self.queue.get_ref()),
            ));
        }
        if !trunks.contains(&self.trunk.get_ref().as_str()) {
            return Err(error(
                self.trunk.span(),
                "trunk",
                format!("no [[trunk]] named {:?}", self.trunk.get_ref()),
            ));
        }
        let mut predictive = PredictiveParams::default();
        if let Some(cap) = &self.abandon_cap {
            if !(0.0..=1.0).contains(cap.get_ref()) {
                return Err(error(
                    cap.span(),
                    "abandon-cap",
                    format!("{} is not a fraction between 0 and 1", cap.get_ref()),
                ));
            }
            predictive.abandon_cap = *cap.get_ref();
        }
        let mode = match &self.mode {
            None => DialMode::Progressive,
            Some(m) => match m.get_ref().as_str() {
                "preview" => DialMode::Preview,
                "progressive" => DialMode::Progressive,
                "predictive" => DialMode::Predictive(predictive),
                other => {
                    return Err(error(
                        m.span(),
                        "mode",
                        format!("unknown mode {other:?}: use preview, progressive or predictive"),
                    ));
                }
            },
        };
        let calling_hours = match &self.calling_hours {
            None => DEFAULT_CALLING_HOURS.parse().unwrap_or_default(),
            Some(h) => h
                .get_ref()
                .parse()
                .map_err(|e: super::compliance::CallingHoursError| {
                    error(h.span(), "calling-hours", e.to_string())
                })?,
        };
        let time_zone = match &self.time_zone {
            None => Tz::UTC,
            Some(z) => z.get_ref().parse().map_err(|_| {
                error(
                    z.span(),
                    "time-zone",
                    format!(
                        "{:?} is not an IANA time zone (e.g. \"Europe/London\")",
                        z.get_ref()
                    ),
                )
            })?,
        };
        let defaults = RetryPolicy::default();
        let max_attempts = match &self.max_attempts {
            None => defaults.max_attempts,
            Some(n) if *n.get_ref() == 0 => {
                return Err(error(n.span(), "max-attempts", "must be at least 1".into()));
            }
            Some(n) => *n.get_ref(),
        };
        let or = |d: Option<HumanDuration>, default| d.map_or(default, |d| d.0);
        let retry = RetryPolicy {
            max_attempts,
            busy: or(self.retry_busy, defaults.busy),
            no_answer: or(self.retry_no_answer, defaults.no_answer),
            failed: or(self.retry_failed, defaults.failed),
            machine: self.retry_machine.map(|d| d.0).or(defaults.machine),
            abandoned: or(self.retry_abandoned, defaults.abandoned),
        };
        let amd = match (
            self.amd.as_ref().map(|a| a.get_ref().as_str()),
            &self.amd_message,
        ) {
            (None | Some("off"), None) => AmdAction::Off,
            (Some("hang-up"), None) => AmdAction::HangUp,
            (Some("message"), Some(m)) if !m.get_ref().trim().is_empty() => {
                AmdAction::Message(m.get_ref().trim().to_owned())
            }
            (Some("message"), _) => {
                let span = self.amd.as_ref().map(|a| a.span()).unwrap_or_default();
                return Err(error(
                    span,
                    "amd-message",
                    "amd = \"message\" needs the prompt to play: amd-message = \"NAME\"".into(),
                ));
            }
            (Some("off" | "hang-up") | None, Some(m)) => {
                return Err(error(
                    m.span(),
                    "amd-message",
                    "only used with amd = \"message\"".into(),
                ));
            }
            (Some(other), _) => {
                let span = self.amd.as_ref().map(|a| a.span()).unwrap_or_default();
                return Err(error(
                    span,
                    "amd",
                    format!("unknown action {other:?}: use off, hang-up or message"),
                ));
            }
        };
        Ok(Campaign {
            name: name.clone(),
            queue: self.queue.get_ref().clone(),
            trunk: self.trunk.get_ref().clone(),
            caller_id: self.caller_id.clone(),
            mode,
            calling_hours,
            time_zone,
            retry,
            ring_timeout: or(self.ring_timeout, DEFAULT_CAMPAIGN_RING),
            connect_timeout: or(self.connect_timeout, DEFAULT_CONNECT_TIMEOUT),
            script: self.script.clone(),
            amd,
        })
    }
}

/// Checks every section: each on its own, then that names are unique.
pub fn check_all(
    sections: &[CampaignSection],
    queues: &[&str],
    trunks: &[&str],
) -> Result<Vec<Campaign>, SettingError> {
    let mut out: Vec<Campaign> = Vec::with_capacity(sections.len());
    for (i, section) in sections.iter().enumerate() {
        let campaign = section.check(i, queues, trunks)?;
        if out.iter().any(|c| c.name == campaign.name) {
            return Err(SettingError {
                span: section.name.span(),
                key: format!("campaign[{i}].name"),
                message: format!("duplicate campaign {:?}", campaign.name),
            });
        }
        out.push(campaign);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "[[queue]]\nname = \"sales\"\n\n[[trunk]]\nname = \"carrier\"\naddress = \"192.0.2.1:5060\"\n\n";

    fn error(campaign: &str) -> String {
        Config::parse(&format!("{BASE}{campaign}"), "t.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_and_every_knob_load() {
        let cfg = Config::parse(
            &format!(
                "{BASE}[[campaign]]\nname = \"a\"\nqueue = \"sales\"\ntrunk = \"carrier\"\n\n\
                 [[campaign]]\nname = \"b\"\nqueue = \"sales\"\ntrunk = \"carrier\"\n\
                 caller-id = \"+442079460000\"\nmode = \"predictive\"\nabandon-cap = 0.02\n\
                 calling-hours = \"sat 10:00-12:00\"\ntime-zone = \"Europe/London\"\n\
                 max-attempts = 5\nretry-busy = \"1s\"\nretry-no-answer = \"2s\"\n\
                 ring-timeout = \"10s\"\nconnect-timeout = \"1s\"\nscript = \"offer\"\n\
                 amd = \"message\"\namd-message = \"campaign/sorry\"\n"
            ),
            "t.toml",
        )
        .unwrap();
        let campaigns = cfg.checked_campaigns().unwrap();
        let a = &campaigns[0];
        assert_eq!(a.mode, DialMode::Progressive);
        assert_eq!(a.calling_hours, DEFAULT_CALLING_HOURS.parse().unwrap());
        assert_eq!(a.time_zone, Tz::UTC);
        assert_eq!(a.retry, RetryPolicy::default());
        assert_eq!(a.ring_timeout, DEFAULT_CAMPAIGN_RING);
        assert_eq!(a.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(a.amd, AmdAction::Off);
        let b = &campaigns[1];
        assert_eq!(b.amd, AmdAction::Message("campaign/sorry".into()));
        assert!(
            matches!(b.mode, DialMode::Predictive(p) if p.abandon_cap == 0.02),
            "{:?}",
            b.mode
        );
        assert_eq!(b.time_zone, chrono_tz::Europe::London);
        assert_eq!(b.retry.max_attempts, 5);
        assert_eq!(b.retry.busy, Duration::from_secs(1));
        assert_eq!(b.retry.no_answer, Duration::from_secs(2));
        assert_eq!(b.ring_timeout, Duration::from_secs(10));
        assert_eq!(b.connect_timeout, Duration::from_secs(1));
        assert_eq!(b.caller_id.as_deref(), Some("+442079460000"));
        assert_eq!(b.script.as_deref(), Some("offer"));
    }

    #[test]
    fn bad_settings_name_their_line() {
        let head = "[[campaign]]\nname = \"a\"\n";
        assert_eq!(
            error(&format!("{head}queue = \"nope\"\ntrunk = \"carrier\"\n")),
            "t.toml:10: campaign[0].queue: no [[queue]] named \"nope\""
        );
        assert_eq!(
            error(&format!("{head}queue = \"sales\"\ntrunk = \"nope\"\n")),
            "t.toml:11: campaign[0].trunk: no [[trunk]] named \"nope\""
        );
        let ok = format!("{head}queue = \"sales\"\ntrunk = \"carrier\"\n");
        assert_eq!(
            error(&format!("{ok}mode = \"psychic\"\n")),
            "t.toml:12: campaign[0].mode: unknown mode \"psychic\": use preview, progressive or predictive"
        );
        assert_eq!(
            error(&format!("{ok}calling-hours = \"mon-fri 20:00-09:00\"\n")),
            "t.toml:12: campaign[0].calling-hours: calling hours \"mon-fri 20:00-09:00\": the window must end after it starts"
        );
        assert!(
            error(&format!("{ok}time-zone = \"Mars/Olympus\"\n"))
                .starts_with("t.toml:12: campaign[0].time-zone: \"Mars/Olympus\" is not an IANA"),
        );
        assert_eq!(
            error(&format!("{ok}max-attempts = 0\n")),
            "t.toml:12: campaign[0].max-attempts: must be at least 1"
        );
        assert_eq!(
            error(&format!("{ok}amd = \"guess\"\n")),
            "t.toml:12: campaign[0].amd: unknown action \"guess\": use off, hang-up or message"
        );
        assert_eq!(
            error(&format!("{ok}amd = \"message\"\n")),
            "t.toml:12: campaign[0].amd-message: amd = \"message\" needs the prompt to play: amd-message = \"NAME\""
        );
        assert_eq!(
            error(&format!("{ok}amd = \"hang-up\"\namd-message = \"x\"\n")),
            "t.toml:13: campaign[0].amd-message: only used with amd = \"message\""
        );
        assert_eq!(
            error(&format!("{ok}abandon-cap = 3.0\n")),
            "t.toml:12: campaign[0].abandon-cap: 3 is not a fraction between 0 and 1"
        );
        assert_eq!(
            error(&format!("{ok}\n{ok}")),
            "t.toml:14: campaign[1].name: duplicate campaign \"a\""
        );
        assert!(error(&format!("{ok}dial-faster = true\n")).contains("unknown field"));
    }
}
