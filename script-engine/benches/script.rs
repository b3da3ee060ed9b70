//! `cargo bench -p script-engine`: load-and-validate time for a generated
//! script of 1,000 step elements, and interpreter time per step, printed as
//! plain figures (no harness: the numbers go into the issue's closing note).

// A benchmark measures wall time; the ban on ambient clocks is for the cores.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant, SystemTime};

use script_engine::{AnyAudio, Channel, Input, Library, Session, SessionContext, load_str};
use serde_json::json;

/// One block is six step elements: ask, if, set, else, set, say.
const ELEMENTS_PER_BLOCK: usize = 6;

fn generated(elements: usize) -> (String, usize) {
    let blocks = elements.div_ceil(ELEMENTS_PER_BLOCK);
    let mut s = String::from(
        "<script version=\"1\" id=\"big\" channels=\"voice web\">\n  <variables><var name=\"total\" value=\"0\"/></variables>\n",
    );
    for i in 0..blocks {
        s.push_str(&format!(
            r##"  <ask id="q{i}" input="digits" min-length="1" max-length="4" terminator="#">
    <prompt audio="prompt-{i}.wav">Question {i}</prompt>
    <no-match audio="invalid.wav">Not valid</no-match>
  </ask>
  <if test="answers.q{i} == '1' &amp;&amp; total &lt; 1000000">
    <set var="total" value="total + 1"/>
  </if>
  <else>
    <set var="total" value="total + int(answers.q{i})"/>
  </else>
  <say audio="step.wav">Step {i}, total {{{{ total }}}}</say>
"##
        ));
    }
    s.push_str("  <hangup/>\n</script>\n");
    (s, blocks)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let (source, blocks) = generated(1_000);
    let elements = blocks * ELEMENTS_PER_BLOCK;

    // Load + validate, including the audio check through a resolver.
    let known = |name: &str| name.ends_with(".wav");
    let mut loads = Vec::new();
    let mut ops = 0;
    for _ in 0..30 {
        let start = Instant::now();
        let loaded = load_str("big.xml", &source, &known).expect("generated script loads");
        loads.push(start.elapsed());
        ops = loaded.script.len();
    }
    println!(
        "load+validate: {elements} elements ({} KiB, {ops} operations): median {:.2} ms over {} runs",
        source.len() / 1024,
        median(loads.clone()).as_secs_f64() * 1e3,
        loads.len()
    );

    // Interpreter: answer every question; each answer runs if/set/say and the next ask.
    let script = load_str("big.xml", &source, &AnyAudio).unwrap().script;
    let library = Library::new([script]).unwrap();
    let now = SystemTime::UNIX_EPOCH;
    let mut per_input = Vec::new();
    let mut inputs = 0u32;
    let mut steps_out = 0u32;
    for round in 0..5 {
        let ctx = SessionContext {
            channel: Channel::Voice,
            customer: json!({"name": "Ada", "segment": "gold", "balance": 12.5}),
            call: json!({"caller_id": "+15550100"}),
        };
        let mut session = Session::start(&library, "big", ctx, now).unwrap();
        while session.poll_step().is_some() {}
        let start = Instant::now();
        for i in 0..blocks {
            let answer = if (i + round) % 2 == 0 { "1#" } else { "42#" };
            session
                .handle_input(&library, now, Input::Answer(answer.into()))
                .unwrap();
            while session.poll_step().is_some() {
                steps_out += 1;
            }
            while session.poll_history().is_some() {}
            inputs += 1;
        }
        per_input.push(start.elapsed() / u32::try_from(blocks).unwrap());
        assert!(session.outcome().is_some(), "the session reaches the end");
    }
    let per_input = median(per_input);
    // Each input runs: answer check, branch, set, jump, say, ask = about 5 operations.
    println!(
        "interpreter: {inputs} inputs, {steps_out} steps out: median {:.1} µs per input (answer + if + set + say + next ask), ≈{:.1} µs per operation",
        per_input.as_secs_f64() * 1e6,
        per_input.as_secs_f64() * 1e6 / 5.0
    );

    // Save and restore, as a web or agent reconnect does.
    let ctx = SessionContext {
        channel: Channel::Web,
        customer: json!({"name": "Ada"}),
        call: json!({}),
    };
    let session = Session::start(&library, "big", ctx, now).unwrap();
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..1000 {
        let saved = serde_json::to_string(&session).unwrap();
        bytes = saved.len();
        let _: Session = serde_json::from_str(&saved).unwrap();
    }
    println!(
        "session save+restore (JSON, {bytes} bytes): {:.1} µs",
        start.elapsed().as_secs_f64() * 1e6 / 1000.0
    );
}
