//! Dialog scripts checked against the config: every queue, mailbox, agent and skill a
//! script routes to (`<enqueue>`, `<voicemail>`, `<transfer>`) by a literal name must
//! exist here. Scripts that calls run (a `{ script = ... }` route, a queue's overflow
//! or exit script, and whatever they `<call>`) make it an error, with the script's
//! file, line and column and the unknown name; the other scripts in the directory (for
//! the web, or not yet routed) only get a warning.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use script_engine::{Diagnostic, Library, RouteNameKind, Severity};

use super::{Config, QueueExit, Target};

impl Config {
    /// Diagnostics for names the scripts in `library` route to and the config lacks.
    pub(super) fn script_route_names(&self, dir: &Path, library: &Library) -> Vec<Diagnostic> {
        let on_calls = self.scripts_on_calls(dir, library);
        let mut out = Vec::new();
        for script in library.scripts() {
            let severity = if on_calls.contains(script.id()) {
                Severity::Error
            } else {
                Severity::Warning
            };
            for r in script.route_names() {
                if !self.has(r.kind, &r.name) {
                    out.push(Diagnostic {
                        severity,
                        file: script.file().to_string(),
                        pos: r.pos,
                        message: format!(
                            "routes to the {kind} \"{name}\", but the config has no {what}",
                            kind = r.kind.as_str(),
                            name = r.name,
                            what = match r.kind {
                                RouteNameKind::Queue => "[[queue]] by that name",
                                RouteNameKind::Mailbox => "[[mailbox]] by that name",
                                RouteNameKind::Agent => "[[agent]] by that name",
                                RouteNameKind::Skill => "[[agent]] with that skill",
                            }
                        ),
                    });
                }
            }
        }
        out
    }

    fn has(&self, kind: RouteNameKind, name: &str) -> bool {
        match kind {
            RouteNameKind::Queue => self.queues.iter().any(|q| q.name.get_ref() == name),
            RouteNameKind::Mailbox => self.mailbox(name).is_some(),
            RouteNameKind::Agent => self.agents.iter().any(|a| a.name.get_ref() == name),
            RouteNameKind::Skill => self.agents.iter().any(|a| a.skills.contains_key(name)),
        }
    }

    /// The ids of the scripts calls can run: those routes and queues name, and every
    /// script they `<call>`, transitively.
    fn scripts_on_calls(&self, dir: &Path, library: &Library) -> HashSet<String> {
        let queue_scripts = self.queues.iter().flat_map(|q| {
            [&q.overflow, &q.exit_target]
                .into_iter()
                .flatten()
                .filter_map(|e| match e.get_ref() {
                    QueueExit::Script(name) => Some(name.as_str()),
                    _ => None,
                })
        });
        let route_scripts = self.routes.iter().filter_map(|r| match r.target.get_ref() {
            Target::Script(name) => Some(name.as_str()),
            _ => None,
        });
        let mut todo: Vec<String> = route_scripts
            .chain(queue_scripts)
            .filter_map(|name| {
                let file = if Path::new(name).extension().is_some() {
                    dir.join(name)
                } else {
                    dir.join(format!("{name}.xml"))
                };
                let shown = file.display().to_string();
                library
                    .scripts()
                    .find(|s| s.file() == shown)
                    .map(|s| s.id().to_string())
            })
            .collect();
        let mut seen = BTreeSet::new();
        while let Some(id) = todo.pop() {
            if let Some(script) = library.script(&id)
                && seen.insert(id.clone())
            {
                todo.extend(script.called_scripts().map(str::to_string));
            }
        }
        seen.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::{Path, PathBuf};

    const ROUTING: &str = r#"<script version="1" id="routing" channels="voice">
  <enqueue queue="cards" priority="5"><skill name="cards"/></enqueue>
  <voicemail mailbox="cards"/>
  <transfer agent="carol"/>
  <transfer queue="overflow"/>
  <voicemail mailbox="box-{{ call.caller }}"/>
  <transfer number="+4930123456"/>
  <hangup/>
</script>
"#;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Checks `config` with ROUTING as the only script.
    fn check(name: &str, config: &str) -> (Dir, Vec<String>, Vec<String>) {
        let dir = std::env::temp_dir().join(format!(
            "comm-server-script-names-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        std::fs::write(dir.join("scripts/routing.xml"), ROUTING).unwrap();
        let sounds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds");
        let src = format!(
            "[server]\nscripts-dir = \"scripts\"\nsounds-dir = {:?}\n\n\
             [[user]]\nname = \"bob\"\npassword = \"p\"\n\n{config}",
            sounds.display().to_string()
        );
        let refs = Config::parse(&src, "t.toml")
            .unwrap()
            .check_references(&dir);
        let errors = refs.errors.iter().map(ToString::to_string).collect();
        let warnings = refs.warnings.iter().map(ToString::to_string).collect();
        (Dir(dir), errors, warnings)
    }

    #[test]
    fn names_a_routed_script_uses_must_exist_with_file_line_and_name() {
        let (dir, errors, warnings) = check(
            "missing",
            "[[route]]\nnumber = \"1\"\ntarget = { script = \"routing\" }\n",
        );
        let file = dir.0.join("scripts/routing.xml").display().to_string();
        assert!(warnings.is_empty(), "{warnings:#?}");
        let want = [
            (2, "queue \"cards\""),
            (2, "skill \"cards\""),
            (3, "mailbox \"cards\""),
            (4, "agent \"carol\""),
            (5, "queue \"overflow\""),
        ];
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
        for (e, (line, what)) in errors.iter().zip(want) {
            assert!(
                e.starts_with(&format!("{file}:{line}:"))
                    && e.contains("error:")
                    && e.contains(&format!("routes to the {what}")),
                "{e} (wanted line {line}, {what})"
            );
        }
    }

    #[test]
    fn names_that_exist_pass_and_unrouted_scripts_only_warn() {
        let complete = "[[queue]]\nname = \"cards\"\n\n[[queue]]\nname = \"overflow\"\n\n\
             [[user]]\nname = \"carol\"\npassword = \"p\"\n\n\
             [[agent]]\nname = \"carol\"\nqueues = [\"cards\"]\nskills = { cards = 2 }\n\n\
             [[mailbox]]\nname = \"cards\"\npin = \"1\"\n\n";
        let (_dir, errors, warnings) = check(
            "complete",
            &format!("{complete}[[route]]\nnumber = \"1\"\ntarget = {{ script = \"routing\" }}\n"),
        );
        assert!(errors.is_empty(), "{errors:#?}");
        assert!(warnings.is_empty(), "{warnings:#?}");

        let (_dir, errors, warnings) = check("unrouted", "");
        assert!(errors.is_empty(), "no call runs it: {errors:#?}");
        assert_eq!(warnings.len(), 5, "{warnings:#?}");
        assert!(warnings.iter().all(|w| w.contains("warning:")));
    }
}
