//! The script engine is a pure core (STYLE.md habit 1): no async runtime, no
//! sockets, no clock reads, and file reads only in the `load_file` convenience.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_crate_does_no_io_and_reads_no_clock() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for path in files {
        // Doc comments may name what the crate avoids; code may not use it.
        let code: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let name = path.strip_prefix(&src).unwrap().display().to_string();
        for banned in [
            "tokio",
            "std::net",
            "Instant::now",
            "SystemTime::now",
            "std::thread",
            "std::process",
        ] {
            assert!(!code.contains(banned), "{name} mentions `{banned}`");
        }
        let allowed = usize::from(name == "parse/mod.rs");
        assert!(
            code.matches("std::fs::").count() <= allowed,
            "{name} reads files"
        );
    }
}

#[test]
fn a_library_can_be_shared_across_tasks_and_a_session_moved_between_them() {
    fn shareable<T: Send + Sync>() {}
    shareable::<script_engine::Library>();
    shareable::<script_engine::Session>();
}
