//! The script engine is a pure core (STYLE.md habit 1): no async runtime, no
//! sockets, no clock reads, and file reads only in the `load_file` convenience.

use std::path::PathBuf;

#[test]
fn the_crate_does_no_io_and_reads_no_clock() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for banned in [
            "tokio",
            "std::net",
            "Instant::now",
            "SystemTime::now",
            "std::thread",
            "std::process",
        ] {
            assert!(!text.contains(banned), "{name} mentions `{banned}`");
        }
        let fs_uses = text.matches("std::fs::").count();
        let allowed = usize::from(name == "parse.rs");
        assert!(fs_uses <= allowed, "{name} reads files");
        checked += 1;
    }
    assert!(checked >= 8);
}
