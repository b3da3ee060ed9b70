//! Any bytes: the loader returns a script or diagnostics, never panics. When a
//! script loads, a short session on each of its channels must not panic either,
//! whatever the host answers.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use script_engine::{AnyAudio, Input, Library, Session, SessionContext, load_str};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(loaded) = load_str("fuzz.xml", source, &AnyAudio) else { return };
    let id = loaded.script.id().to_owned();
    let channels = loaded.script.channels().to_vec();
    let Ok(library) = Library::new([loaded.script]) else { return };
    let inputs = [
        Input::Answer("1".into()),
        Input::NoInput,
        Input::Customer(None),
        Input::ActionFailed("x".into()),
        Input::RouteFailed("x".into()),
        Input::Answer("12345678#".into()),
    ];
    for channel in channels {
        let context = SessionContext {
            channel,
            customer: serde_json::json!({}),
            call: serde_json::json!({}),
        };
        let Ok(mut session) = Session::start(&library, &id, context, SystemTime::UNIX_EPOCH) else {
            continue;
        };
        for input in inputs.iter().cycle().take(24) {
            while session.poll_step().is_some() {}
            let _ = session.handle_input(&library, SystemTime::UNIX_EPOCH, input.clone());
        }
    }
});
