//! `cargo run -p script-engine --example check -- [--sounds DIR] [--audio] FILE...`:
//! what `comm-server check-script` prints, for use before the CLI is wired up.
//! `--sounds DIR` checks audio files against a sound-set folder (otherwise any
//! name is accepted); `--audio` lists every audio file the scripts name.

use std::path::PathBuf;

use script_engine::{AnyAudio, AudioFiles, check_files};

fn main() {
    let mut files = Vec::new();
    let mut sounds: Option<PathBuf> = None;
    let mut list_audio = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--audio" => list_audio = true,
            "--sounds" => sounds = args.next().map(PathBuf::from),
            _ => files.push(arg),
        }
    }
    // The resolver is where the host's I/O lives; the loader only asks it.
    let in_folder = |name: &str| sounds.as_ref().is_some_and(|dir| dir.join(name).is_file());
    let audio: &dyn AudioFiles = if sounds.is_some() {
        &in_folder
    } else {
        &AnyAudio
    };
    let checked = check_files(&files, audio);
    for d in &checked.diagnostics {
        println!("{d}");
    }
    if list_audio && let Some(library) = &checked.library {
        let mut names: Vec<&str> = library.scripts().flat_map(|s| s.audio_files()).collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            println!("{n}");
        }
    }
    println!(
        "{} file(s): {} error(s), {} warning(s)",
        files.len(),
        checked.error_count(),
        checked.warning_count()
    );
    if checked.error_count() > 0 {
        std::process::exit(1);
    }
}
