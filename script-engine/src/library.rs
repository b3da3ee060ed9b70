//! A set of loaded scripts that may call each other.
//!
//! Owns the checks that span files: unique script ids, `<call>` targets that
//! exist, and arguments the callee declares. It also gives `comm-server
//! check-script FILE...` one function ([`check_files`]) that loads, checks and
//! returns every diagnostic to print.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::{Diagnostic, LoadError, Severity};
use crate::model::Script;
use crate::parse::{self, AudioFiles};

/// Scripts by id, checked together. Sessions run against a library.
#[derive(Debug, Default)]
pub struct Library {
    scripts: BTreeMap<String, Script>,
}

impl Library {
    /// Checks the scripts against each other. Every problem is reported, at the
    /// `<call>` or `<script>` it concerns.
    pub fn new(scripts: impl IntoIterator<Item = Script>) -> Result<Library, LoadError> {
        let mut map: BTreeMap<String, Script> = BTreeMap::new();
        let mut diagnostics = Vec::new();
        for script in scripts {
            if let Some(first) = map.get(&script.id) {
                diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    file: script.file.clone(),
                    pos: crate::diag::Pos { line: 1, column: 1 },
                    message: format!("script id `{}` is also used by {}", script.id, first.file),
                });
                continue;
            }
            map.insert(script.id.clone(), script);
        }
        // Calls are checked once all ids are known: scripts may call each other in
        // any order, and the called one may be in a file loaded later.
        for script in map.values() {
            for call in &script.calls {
                let error = |message: String| Diagnostic {
                    severity: Severity::Error,
                    file: script.file.clone(),
                    pos: call.pos,
                    message,
                };
                let Some(callee) = map.get(&call.script) else {
                    diagnostics.push(error(format!(
                        "<call> names script `{}`, which is not loaded",
                        call.script
                    )));
                    continue;
                };
                for arg in &call.args {
                    if !callee.vars.iter().any(|v| &v.name == arg) {
                        diagnostics.push(error(format!(
                            "<arg name=\"{arg}\">: script `{}` declares no variable `{arg}`",
                            callee.id
                        )));
                    }
                }
            }
        }
        if diagnostics.is_empty() {
            Ok(Library { scripts: map })
        } else {
            Err(LoadError { diagnostics })
        }
    }

    pub fn script(&self, id: &str) -> Option<&Script> {
        self.scripts.get(id)
    }

    pub fn scripts(&self) -> impl Iterator<Item = &Script> {
        self.scripts.values()
    }
}

/// What checking a set of files found.
#[derive(Debug)]
pub struct Checked {
    /// The library, when every file loaded and they fit together.
    pub library: Option<Library>,
    /// Every error and warning, file by file, in order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }
}

/// Loads every file, checks them together and returns all findings: what
/// `comm-server check-script FILE...` prints (one line each, via `Display`).
pub fn check_files<P: AsRef<Path>>(paths: &[P], audio: &dyn AudioFiles) -> Checked {
    let mut diagnostics = Vec::new();
    let mut scripts = Vec::new();
    let mut failed = false;
    for path in paths {
        match parse::load_file(path, audio) {
            Ok(loaded) => {
                diagnostics.extend(loaded.warnings);
                scripts.push(loaded.script);
            }
            Err(e) => {
                failed = true;
                diagnostics.extend(e.diagnostics);
            }
        }
    }
    if failed {
        return Checked {
            library: None,
            diagnostics,
        };
    }
    match Library::new(scripts) {
        Ok(library) => Checked {
            library: Some(library),
            diagnostics,
        },
        Err(e) => {
            diagnostics.extend(e.diagnostics);
            Checked {
                library: None,
                diagnostics,
            }
        }
    }
}
