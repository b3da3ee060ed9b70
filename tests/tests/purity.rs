//! The house rule (../shared/STYLE.md, habit 1): decisions are pure state machines.
//! The cores below may not reach for tokio, sockets or an ambient clock; drivers do.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `path` (or the file itself).
fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            out.extend(sources(&e.path()));
        }
    }
    // Test files may read a clock for a base instant; they are not cores.
    out.retain(|p| {
        p.extension().is_some_and(|x| x == "rs") && p.file_name().is_some_and(|n| n != "tests.rs")
    });
    out
}

const CORES: &[&str] = &[
    "comm-server/src/sip/message.rs",
    "comm-server/src/sip/header.rs",
    "comm-server/src/sip/endpoint.rs",
    "comm-server/src/sip/digest.rs",
    "comm-server/src/call.rs",
    "comm-server/src/acd",
    "comm-server/src/campaigns",
    "comm-server/src/reports",
    "comm-server/src/media/dtmf.rs",
    "comm-server/src/media/g711.rs",
    "comm-server/src/media/jitter.rs",
    "comm-server/src/media/prompt.rs",
    "comm-server/src/media/rtcp.rs",
    "comm-server/src/media/rtp.rs",
    "comm-server/src/media/sdp.rs",
    "comm-server/src/media/session.rs",
    "comm-server/src/voicemail",
    "script-engine/src",
    "agent-gateway/src/sessions",
    "agent-gateway/src/log",
];

const FORBIDDEN: &[&str] = &[
    "tokio::",
    "std::net::UdpSocket",
    "std::net::TcpStream",
    "Instant::now",
    "SystemTime::now",
];

#[test]
fn pure_cores_import_no_io_and_read_no_clock() {
    let mut offences = Vec::new();
    let mut checked = 0;
    for core in CORES {
        for file in sources(&root().join(core)) {
            checked += 1;
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for f in FORBIDDEN {
                    if line.contains(f) {
                        offences.push(format!("{}:{}: {f}", file.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(checked >= 5, "the core files moved; update CORES");
    assert!(
        offences.is_empty(),
        "pure cores reach for I/O or the clock:\n{}",
        offences.join("\n")
    );
}
