//! The shipped sound set covers the shipped scripts: every audio file a script in
//! `scripts/` may play, say-as words included, is a WAV under `sounds/` in the
//! format the media engine plays as-is (8 kHz, mono, 16-bit PCM). The loader is
//! given the real folder as its resolver, the way the server checks scripts.

use std::path::{Path, PathBuf};

use script_engine::check_files;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("scripts"))
        .expect("scripts/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    files
}

/// `(channels, sample rate, bits per sample)` of a PCM WAV, or why it is not one.
fn wav_format(path: &Path) -> Result<(u16, u32, u16), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32_at(at + 4) as usize;
        if &bytes[at..at + 4] == b"fmt " && at + 24 <= bytes.len() {
            let format = u16_at(at + 8);
            if format != 1 {
                return Err(format!("format tag {format}, not PCM"));
            }
            return Ok((u16_at(at + 10), u32_at(at + 12), u16_at(at + 22)));
        }
        // Chunks are padded to an even length.
        at += 8 + size + size % 2;
    }
    Err("no fmt chunk".into())
}

#[test]
fn every_audio_file_the_scripts_name_is_in_sounds() {
    let sounds = root().join("sounds");
    let in_sounds = |name: &str| sounds.join(name).is_file();
    let checked = check_files(&script_files(), &in_sounds);
    let errors: Vec<String> = checked
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "missing from sounds/: {errors:#?}");

    let library = checked.library.expect("the scripts load");
    let mut names: Vec<&str> = library.scripts().flat_map(|s| s.audio_files()).collect();
    names.sort_unstable();
    names.dedup();
    assert!(
        names.len() > 80,
        "expected the sample scripts' audio, got {names:?}"
    );
    for name in names {
        let format = wav_format(&sounds.join(name));
        assert_eq!(format, Ok((1, 8000, 16)), "sounds/{name}");
    }
}
