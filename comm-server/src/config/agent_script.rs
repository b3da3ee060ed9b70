//! A queue's `agent-script`: the agent-guided script (talk track) the screen pop
//! names for the agents of that queue. Checked at load time like a route's script,
//! except that it must run on the `agent` channel.

use std::path::Path;

use script_engine::Channel;

use super::{Config, ConfigError, References};

impl Config {
    /// Every `agent-script` that does not name a loaded script for agents.
    pub(super) fn agent_script_errors(&self, dir: &Path, refs: &References) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (i, q) in self.queues.iter().enumerate() {
            let Some(name) = &q.agent_script else {
                continue;
            };
            if let Err(message) = agent_script(name.get_ref(), dir, refs) {
                errors.push(self.span_error(
                    name.span(),
                    &format!("queue[{i}].agent-script"),
                    message,
                ));
            }
        }
        errors
    }
}

fn agent_script(name: &str, dir: &Path, refs: &References) -> Result<(), String> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!(
            "{name:?}: give a file name in scripts-dir, e.g. \"retention.xml\""
        ));
    }
    let file = if Path::new(name).extension().is_some() {
        dir.join(name)
    } else {
        dir.join(format!("{name}.xml"))
    };
    let shown = file.display().to_string();
    let script = refs
        .scripts
        .as_ref()
        .and_then(|l| l.scripts().find(|s| s.file() == shown))
        .ok_or_else(|| format!("no script {shown} that loads in scripts-dir"))?;
    if !script.channels().contains(&Channel::Agent) {
        return Err(format!(
            "script `{}` in {shown} does not list the agent channel, so agents cannot follow it",
            script.id()
        ));
    }
    Ok(())
}
