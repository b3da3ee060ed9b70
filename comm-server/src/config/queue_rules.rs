//! The `[[queue]]` rules (maximum wait and length, join and leave rules, exit key,
//! callback key, overflow targets), agents' skills and routes' required skills: their
//! types and load-time checks. Each becomes the ACD core's own type when the ACD starts
//! (`server/acd.rs`); here they are only parsed and checked.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use serde::Deserialize;

use super::{AutoAnswer, Config, ConfigError, References, Target};

/// Where a caller goes on leaving a queue without an agent (overflow or exit key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum QueueExit {
    /// Another `[[queue]]`: the caller waits there (a new wait, new position).
    Queue(String),
    /// A `[[mailbox]]`: the caller leaves a message.
    Mailbox(String),
    /// A dialog script in scripts-dir.
    Script(String),
    /// The goodbye: the call ends.
    HangUp,
}

/// Whether callers may join a queue nobody can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JoinSetting {
    #[default]
    Always,
    IfAgentsLoggedIn,
    IfAgentsAvailable,
}

/// What waiting callers do when the last agent logs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmptySetting {
    #[default]
    Stay,
    Leave,
}

/// A route target as written: a table with exactly one target key, and `skills` only
/// beside `queue`. Checked into [`Target`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawTarget {
    user: Option<String>,
    script: Option<String>,
    queue: Option<String>,
    agent: Option<String>,
    mailbox: Option<String>,
    voicemail_retrieval: Option<String>,
    prompt: Option<Vec<String>>,
    auto_answer: Option<AutoAnswer>,
    skills: Option<BTreeMap<String, u8>>,
}

impl TryFrom<RawTarget> for Target {
    type Error = String;
    fn try_from(raw: RawTarget) -> Result<Target, String> {
        let mut found = Vec::new();
        if let Some(v) = raw.user {
            found.push(Target::User(v));
        }
        if let Some(v) = raw.script {
            found.push(Target::Script(v));
        }
        if let Some(v) = raw.agent {
            found.push(Target::Agent(v));
        }
        if let Some(v) = raw.mailbox {
            found.push(Target::Mailbox(v));
        }
        if let Some(v) = raw.voicemail_retrieval {
            found.push(Target::VoicemailRetrieval(v));
        }
        if let Some(v) = raw.prompt {
            found.push(Target::Prompt(v));
        }
        if let Some(v) = raw.auto_answer {
            found.push(Target::AutoAnswer(v));
        }
        match (raw.queue, raw.skills) {
            (Some(q), None) => found.push(Target::Queue(q)),
            (Some(q), Some(skills)) => {
                if let Some((name, level)) = skills.iter().find(|(_, l)| !(1..=5).contains(*l)) {
                    return Err(format!("skill {name:?} level {level} is outside 1..=5"));
                }
                found.push(Target::QueueWithSkills(q, skills));
            }
            (None, Some(_)) => return Err("skills are only for a queue target".into()),
            (None, None) => {}
        }
        if found.len() != 1 {
            return Err("give exactly one of user, script, queue, agent, mailbox, \
                 voicemail-retrieval, prompt, auto-answer"
                .into());
        }
        Ok(found.remove(0))
    }
}

/// Keys a caller can press on a telephone keypad (RFC 4733 events 0-11).
fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

impl Config {
    /// The queue rules, skills and their targets, against the queues and mailboxes.
    pub(super) fn check_queue_rules(
        &self,
        invalid: &dyn Fn(Range<usize>, &str, String) -> ConfigError,
        queues: &HashSet<String>,
        mailboxes: &HashSet<String>,
    ) -> Result<(), ConfigError> {
        for (i, q) in self.queues.iter().enumerate() {
            for (key, exit) in [("overflow", &q.overflow), ("exit-target", &q.exit_target)] {
                let Some(exit) = exit else { continue };
                let message = match exit.get_ref() {
                    QueueExit::Queue(name) if name == q.name.get_ref() => {
                        Some(format!("{name:?} is this queue itself"))
                    }
                    QueueExit::Queue(name) if !queues.contains(name) => {
                        Some(format!("no [[queue]] named {name:?}"))
                    }
                    QueueExit::Mailbox(name) if !mailboxes.contains(name) => {
                        Some(format!("no [[mailbox]] named {name:?}"))
                    }
                    _ => None,
                };
                if let Some(message) = message {
                    return Err(invalid(exit.span(), &format!("queue[{i}].{key}"), message));
                }
            }
            if let Some(n) = &q.max_length
                && *n.get_ref() == 0
            {
                return Err(invalid(
                    n.span(),
                    &format!("queue[{i}].max-length"),
                    "0 would refuse every caller; leave it out for no limit".into(),
                ));
            }
            for (key, k) in [("exit-key", &q.exit_key), ("callback-key", &q.callback_key)] {
                if let Some(k) = k
                    && !is_dtmf(*k.get_ref())
                {
                    return Err(invalid(
                        k.span(),
                        &format!("queue[{i}].{key}"),
                        format!("{:?} is not a keypad key (0-9, *, #)", k.get_ref()),
                    ));
                }
            }
            if let (Some(e), Some(c)) = (&q.exit_key, &q.callback_key)
                && e.get_ref() == c.get_ref()
            {
                return Err(invalid(
                    c.span(),
                    &format!("queue[{i}].callback-key"),
                    format!("{:?} is already the exit-key", c.get_ref()),
                ));
            }
            match (&q.exit_key, &q.exit_target) {
                (Some(k), None) => {
                    return Err(invalid(
                        k.span(),
                        &format!("queue[{i}].exit-target"),
                        "exit-key needs an exit-target".into(),
                    ));
                }
                (None, Some(t)) => {
                    return Err(invalid(
                        t.span(),
                        &format!("queue[{i}].exit-key"),
                        "exit-target needs an exit-key".into(),
                    ));
                }
                _ => {}
            }
        }
        for (i, a) in self.agents.iter().enumerate() {
            if let Some((name, level)) = a.skills.iter().find(|(_, l)| !(1..=5).contains(*l)) {
                return Err(invalid(
                    a.name.span(),
                    &format!("agent[{i}].skills.{name}"),
                    format!("level {level} is outside 1..=5"),
                ));
            }
        }
        Ok(())
    }

    /// Script overflow and exit targets that do not name a loadable script.
    pub(super) fn queue_script_errors(
        &self,
        dir: &std::path::Path,
        loaded: &[std::path::PathBuf],
        refs: &References,
    ) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (i, q) in self.queues.iter().enumerate() {
            for (key, exit) in [("overflow", &q.overflow), ("exit-target", &q.exit_target)] {
                if let Some(exit) = exit
                    && let QueueExit::Script(name) = exit.get_ref()
                    && let Err(message) = self.route_script(name, dir, loaded, refs)
                {
                    errors.push(self.span_error(
                        exit.span(),
                        &format!("queue[{i}].{key}.script"),
                        message,
                    ));
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = "[[user]]\nname = \"bob\"\npassword = \"p\"\n\n\
        [[mailbox]]\nname = \"box\"\npin = \"1\"\n\n\
        [[queue]]\nname = \"other\"\n\n";

    fn error(queue_keys: &str) -> String {
        let src = format!("{BASE}[[queue]]\nname = \"q\"\n{queue_keys}\n");
        Config::parse(&src, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn queue_rules_load_into_checked_types() {
        let src = format!(
            "{BASE}[[queue]]\nname = \"q\"\nmax-wait = \"2m\"\nmax-length = 10\n\
             overflow = {{ queue = \"other\" }}\njoin = \"if-agents-available\"\n\
             when-empty = \"leave\"\nexit-key = \"0\"\nexit-target = {{ mailbox = \"box\" }}\n\
             callback-key = \"*\"\n\n\
             [[agent]]\nname = \"bob\"\nqueues = [\"q\"]\nskills = {{ billing = 3 }}\n\n\
             [[route]]\nnumber = \"1\"\ntarget = {{ queue = \"q\", skills = {{ billing = 2 }} }}\n"
        );
        let cfg = Config::parse(&src, "t.toml").unwrap();
        let q = &cfg.queues[1];
        assert_eq!(q.max_wait.unwrap().0.as_secs(), 120);
        assert_eq!(
            q.overflow.as_ref().map(|t| t.get_ref().clone()),
            Some(QueueExit::Queue("other".into()))
        );
        assert_eq!(q.join, JoinSetting::IfAgentsAvailable);
        assert_eq!(q.when_empty, EmptySetting::Leave);
        assert_eq!(q.callback_key.as_ref().map(|k| *k.get_ref()), Some('*'));
        assert_eq!(cfg.agents[0].skills.get("billing"), Some(&3));
        assert_eq!(
            cfg.route("1"),
            Some(&Target::QueueWithSkills(
                "q".into(),
                [("billing".to_string(), 2)].into()
            ))
        );
        let plain = Config::parse(&format!("{BASE}overflow = \"hang-up\"\n"), "t.toml").unwrap();
        assert_eq!(
            plain.queues[0]
                .overflow
                .as_ref()
                .map(|t| t.get_ref().clone()),
            Some(QueueExit::HangUp)
        );
    }

    #[test]
    fn bad_queue_rules_name_their_line_and_key() {
        for (keys, want) in [
            (
                "overflow = { queue = \"nope\" }",
                "t.toml:14: queue[1].overflow: no [[queue]] named \"nope\"",
            ),
            (
                "overflow = { queue = \"q\" }",
                "queue[1].overflow: \"q\" is this queue itself",
            ),
            (
                "overflow = { mailbox = \"nope\" }",
                "queue[1].overflow: no [[mailbox]] named \"nope\"",
            ),
            (
                "exit-key = \"x\"\nexit-target = \"hang-up\"",
                "t.toml:14: queue[1].exit-key: 'x' is not a keypad key",
            ),
            (
                "exit-key = \"1\"",
                "queue[1].exit-target: exit-key needs an exit-target",
            ),
            (
                "exit-target = \"hang-up\"",
                "queue[1].exit-key: exit-target needs an exit-key",
            ),
            (
                "exit-key = \"1\"\nexit-target = \"hang-up\"\ncallback-key = \"1\"",
                "queue[1].callback-key: '1' is already the exit-key",
            ),
            (
                "max-length = 0",
                "queue[1].max-length: 0 would refuse every caller",
            ),
        ] {
            let msg = error(keys);
            assert!(msg.contains(want), "{keys}: {msg}");
        }
        for (keys, want) in [
            ("join = \"sometimes\"", "unknown variant `sometimes`"),
            ("when-empty = \"panic\"", "unknown variant `panic`"),
            ("exit-key = \"12\"", "line 14"),
        ] {
            let msg = error(keys);
            assert!(msg.contains(want), "{keys}: {msg}");
        }
    }

    #[test]
    fn bad_skills_are_refused() {
        let src = format!(
            "{BASE}[[agent]]\nname = \"bob\"\nqueues = [\"other\"]\nskills = {{ billing = 6 }}\n"
        );
        let msg = Config::parse(&src, "t.toml").unwrap_err().to_string();
        assert!(
            msg.contains("agent[0].skills.billing: level 6 is outside 1..=5"),
            "{msg}"
        );
        for (target, want) in [
            (
                "{ queue = \"other\", skills = { billing = 0 } }",
                "skill \"billing\" level 0 is outside 1..=5",
            ),
            (
                "{ user = \"bob\", skills = { billing = 2 } }",
                "skills are only for a queue target",
            ),
            (
                "{ user = \"bob\", queue = \"other\" }",
                "give exactly one of",
            ),
        ] {
            let src = format!("{BASE}[[route]]\nnumber = \"1\"\ntarget = {target}\n");
            let msg = Config::parse(&src, "t.toml").unwrap_err().to_string();
            assert!(
                msg.contains(want) && msg.contains("line 14"),
                "{target}: {msg}"
            );
        }
    }
}
