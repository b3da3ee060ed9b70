//! Random and mutated input never panics the loader, and a loaded script never
//! panics the interpreter whatever the host feeds it. Scripts come from
//! authors and uploads: a bad one must be an error, never a crash.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use script_engine::{AnyAudio, Channel, Input, Library, Session, SessionContext, load_str};
use serde_json::json;

fn samples() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    out.sort();
    out
}

/// Fragments that are likely to reach deep into the loader when spliced in.
const SNIPPETS: &[&str] = &[
    "<",
    ">",
    "/>",
    "</",
    "\"",
    "'",
    "&",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "{{",
    "}}",
    "(",
    ")",
    "[",
    "]",
    "!",
    "?",
    ":",
    "-",
    "<if test=\"",
    "<goto target=\"",
    "<say>",
    "</say>",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<ask id=\"x\" input=\"digits\">",
    "answers.",
    "customer.",
    " id=\"a\"",
    "size(",
    ".all(x, ",
    "\u{1F600}",
    "\u{0}",
    "\r\n",
    "<?xml version=\"1.0\"?>",
    "<!DOCTYPE x [",
    "</script>",
    "<script version=\"1\" id=\"z\">",
    "9999999999999999999999",
    "1s",
    "-1",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, snippet: usize },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..40usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..SNIPPETS.len())
            .prop_map(|(at, snippet)| Mutation::Insert { at, snippet }),
        (any::<usize>(), 1..200usize).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn boundary(s: &str, at: usize) -> usize {
    let mut at = at % (s.len() + 1);
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(mut s: String, m: &Mutation) -> String {
    match *m {
        Mutation::Delete { at, len } => {
            let a = boundary(&s, at);
            let b = boundary(&s, (a + len).min(s.len()));
            s.replace_range(a..b.max(a), "");
        }
        Mutation::Insert { at, snippet } => {
            let a = boundary(&s, at);
            s.insert_str(a, SNIPPETS[snippet]);
        }
        Mutation::Duplicate { at, len } => {
            let a = boundary(&s, at);
            let b = boundary(&s, (a + len).min(s.len())).max(a);
            let piece = s[a..b].to_owned();
            s.insert_str(b, &piece);
        }
        Mutation::Truncate { at } => {
            let a = boundary(&s, at);
            s.truncate(a);
        }
    }
    s
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        "[0-9#*]{0,10}".prop_map(Input::Answer),
        "[a-zA-Z0-9 -]{0,12}".prop_map(Input::Answer),
        Just(Input::NoInput),
        Just(Input::Customer(None)),
        Just(Input::Customer(Some(
            json!({"pin": "1234", "segment": "gold", "balance": 3})
        ))),
        Just(Input::ActionDone(
            json!({"status": 200, "body": {"reference": 1, "known": true}})
        )),
        Just(Input::ActionFailed("boom".into())),
        Just(Input::Recorded("r1".into())),
        Just(Input::Routed),
        Just(Input::RouteFailed("closed".into())),
    ]
}

/// Runs a session with arbitrary inputs; errors are fine, panics are not.
fn drive(lib: &Library, id: &str, channel: Channel, inputs: &[Input]) {
    let ctx = SessionContext {
        channel,
        customer: json!({"segment": "gold"}),
        call: json!({"caller_id": "1"}),
    };
    let Ok(mut s) = Session::start(lib, id, ctx, t(0)) else {
        return;
    };
    for (i, input) in inputs.iter().enumerate() {
        while s.poll_step().is_some() {}
        while s.poll_history().is_some() {}
        let now = t(i as u64 + 1);
        s.handle_prompt_played(now);
        let _ = s.handle_input(lib, now, input.clone());
        let _ = s.handle_timeout(lib, now + Duration::from_secs(60));
        let saved = serde_json::to_string(&s).unwrap();
        s = serde_json::from_str(&saved).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(source in "\\PC{0,400}") {
        let _ = load_str("fuzz.xml", &source, &AnyAudio);
    }

    #[test]
    fn arbitrary_expressions_never_panic(expr in "[a-z_.()\\[\\]{}!?:<>=&|+*/%'\"0-9 ,-]{0,80}") {
        let src = format!(
            "<script version=\"1\" id=\"t\"><if test=\"{}\"><say>x</say></if></script>",
            expr.replace('&', "&amp;").replace('<', "&lt;").replace('"', "&quot;")
        );
        let _ = load_str("fuzz.xml", &src, &AnyAudio);
    }

    #[test]
    fn mutated_samples_never_panic_the_loader_or_the_interpreter(
        which in 0..4usize,
        mutations in proptest::collection::vec(mutation(), 1..6),
        inputs in proptest::collection::vec(input(), 0..12),
    ) {
        let samples = samples();
        let mut source = samples[which % samples.len()].clone();
        for m in &mutations {
            source = apply(source, m);
        }
        if let Ok(loaded) = load_str("fuzz.xml", &source, &AnyAudio) {
            let id = loaded.script.id().to_owned();
            let channels = loaded.script.channels().to_vec();
            // A lone script that calls another cannot form a library; that is an error, not a panic.
            if let Ok(lib) = Library::new([loaded.script]) {
                for channel in channels {
                    drive(&lib, &id, channel, &inputs);
                }
            }
        }
    }

    #[test]
    fn sample_sessions_never_panic_on_any_input(
        inputs in proptest::collection::vec(input(), 0..30),
        which in 0..3usize,
    ) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        let files: Vec<PathBuf> = ["bank-card.xml", "verify-pin.xml", "utility-outage.xml", "retention.xml"]
            .iter().map(|f| dir.join(f)).collect();
        let lib = script_engine::check_files(&files, &AnyAudio).library.unwrap();
        let (id, channel) = [("bank-card", Channel::Voice), ("utility-outage", Channel::Web), ("retention", Channel::Agent)][which];
        drive(&lib, id, channel, &inputs);
    }
}

#[test]
fn pathological_expressions_are_rejected_without_overflowing_the_stack() {
    let cases = [
        format!("{}1", "-".repeat(400)),
        format!("{}true", "!".repeat(400)),
        format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        "true ? 1 : ".repeat(40) + "1",
        "1 + ".repeat(120) + "1",
        "a.".repeat(200) + "b",
        format!("{}1", "1 == ".repeat(100)),
    ];
    for expr in cases {
        let src = format!(
            "<script version=\"1\" id=\"t\"><variables><var name=\"a\"/></variables><if test=\"{}\"><say>x</say></if></script>",
            expr.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('"', "&quot;")
        );
        // Some of these are legal and some are not; none may crash.
        let _ = load_str("deep.xml", &src, &AnyAudio);
    }
}

/// Replaces every number in a JSON tree, in visiting order, with the next value.
fn poke(v: &mut serde_json::Value, values: &mut impl Iterator<Item = u64>) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(x) = values.next() {
                *n = x.into();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| poke(i, values)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|i| poke(i, values)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A host that keeps sessions client-side could be sent anything back: tampered
    /// positions, counters and deadlines must give errors, not panics.
    #[test]
    fn tampered_saved_sessions_never_panic(
        values in proptest::collection::vec(prop_oneof![Just(0u64), Just(u64::MAX), Just(u64::from(u32::MAX)), 0..50u64], 1..40),
        inputs in proptest::collection::vec(input(), 1..6),
    ) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        let files: Vec<PathBuf> = ["bank-card.xml", "verify-pin.xml"].iter().map(|f| dir.join(f)).collect();
        let lib = script_engine::check_files(&files, &AnyAudio).library.unwrap();
        let ctx = SessionContext { channel: Channel::Voice, customer: json!({}), call: json!({}) };
        let s = Session::start(&lib, "bank-card", ctx, t(0)).unwrap();
        let mut saved = serde_json::to_value(&s).unwrap();
        poke(&mut saved, &mut values.into_iter());
        if let Ok(mut s) = serde_json::from_value::<Session>(saved) {
            for (i, input) in inputs.into_iter().enumerate() {
                s.handle_prompt_played(t(i as u64));
                let _ = s.poll_timeout();
                let _ = s.handle_timeout(&lib, SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)));
                let _ = s.handle_input(&lib, t(i as u64), input);
                while s.poll_step().is_some() {}
            }
        }
    }
}
