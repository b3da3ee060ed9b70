//! `cargo run -p script-engine --example check -- FILE...`: what
//! `comm-server check-script` prints, for use before the CLI is wired up.
//! With `--audio`, also lists every audio file the scripts name.

use script_engine::{AnyAudio, check_files};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let list_audio = args.iter().any(|a| a == "--audio");
    args.retain(|a| a != "--audio");
    let checked = check_files(&args, &AnyAudio);
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
        args.len(),
        checked.error_count(),
        checked.warning_count()
    );
    if checked.error_count() > 0 {
        std::process::exit(1);
    }
}
