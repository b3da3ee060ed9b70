//! Every file in `scripts/` loads, the scripts fit together as one library, and
//! every audio file they name is in `scripts/audio-files.txt`, the list the
//! sound set is recorded from.

use std::collections::BTreeSet;
use std::path::PathBuf;

use script_engine::{AnyAudio, Severity, check_files};

fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

fn script_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scripts_dir())
        .expect("scripts/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    files
}

fn audio_list() -> BTreeSet<String> {
    std::fs::read_to_string(scripts_dir().join("audio-files.txt"))
        .expect("scripts/audio-files.txt exists")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_shipped_script_loads_without_errors_or_warnings() {
    let files = script_files();
    assert!(
        files.len() >= 4,
        "expected the sample scripts, found {files:?}"
    );
    let list = audio_list();
    let known = |name: &str| list.contains(name);
    let checked = check_files(&files, &known);
    for d in &checked.diagnostics {
        eprintln!("{d}");
    }
    assert!(checked.diagnostics.is_empty(), "scripts/ must be clean");
    let library = checked.library.expect("the scripts fit together");
    for id in ["bank-card", "verify-pin", "utility-outage", "retention"] {
        assert!(library.script(id).is_some(), "{id} is loaded");
    }
    let bank = library.script("bank-card").unwrap();
    assert_eq!(bank.title(), "Bank card line");
    assert!(bank.description().starts_with("Card services"));
}

#[test]
fn the_audio_list_has_no_unused_names() {
    let checked = check_files(&script_files(), &AnyAudio);
    assert!(
        checked
            .diagnostics
            .iter()
            .all(|d| d.severity == Severity::Warning)
    );
    let used: BTreeSet<String> = checked
        .library
        .expect("loads")
        .scripts()
        .flat_map(|s| s.audio_files().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let listed = audio_list();
    let unused: Vec<&String> = listed.difference(&used).collect();
    let missing: Vec<&String> = used.difference(&listed).collect();
    assert!(
        unused.is_empty() && missing.is_empty(),
        "unused {unused:?}, missing {missing:?}"
    );
}
