//! One test (or a few) per element: what the interpreter asks the host to do,
//! and how it reacts to each kind of input.

use std::time::{Duration, SystemTime};

use script_engine::{
    Action, AnyAudio, Audio, Channel, HistoryEvent, Input, InputKind, Library, Outcome, Session,
    SessionContext, SessionError, Step, TransferTo, load_str,
};
use serde_json::{Value, json};

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn library(channels: &str, body: &str, extra: &[&str]) -> Library {
    let main =
        format!("<script version=\"1\" id=\"t\" channels=\"{channels}\">\n{body}\n</script>");
    let mut scripts = vec![
        load_str("t.xml", &main, &AnyAudio)
            .unwrap_or_else(|e| panic!("{e}"))
            .script,
    ];
    for (i, src) in extra.iter().enumerate() {
        let file = format!("extra{i}.xml");
        scripts.push(
            load_str(&file, src, &AnyAudio)
                .unwrap_or_else(|e| panic!("{e}"))
                .script,
        );
    }
    Library::new(scripts).unwrap_or_else(|e| panic!("{e}"))
}

struct Run {
    lib: Library,
    s: Session,
    clock: u64,
}

impl Run {
    fn new(channel: Channel, body: &str) -> (Run, Vec<Step>) {
        Run::with(
            channel,
            body,
            json!({"name": "Ada", "segment": "gold", "balance": 10}),
            &[],
        )
    }

    fn with(channel: Channel, body: &str, customer: Value, extra: &[&str]) -> (Run, Vec<Step>) {
        let channels = match channel {
            Channel::Voice => "voice",
            Channel::Agent => "agent",
            Channel::Web => "web",
        };
        let lib = library(channels, body, extra);
        let ctx = SessionContext {
            channel,
            customer,
            call: json!({"caller_id": "+15550100", "called": "800"}),
        };
        let s = Session::start(&lib, "t", ctx, t(0)).unwrap();
        let mut run = Run { lib, s, clock: 0 };
        let steps = run.drain();
        (run, steps)
    }

    fn drain(&mut self) -> Vec<Step> {
        std::iter::from_fn(|| self.s.poll_step()).collect()
    }

    fn input(&mut self, input: Input) -> Vec<Step> {
        self.clock += 1;
        self.s
            .handle_input(&self.lib, t(self.clock), input)
            .unwrap();
        self.drain()
    }

    fn answer(&mut self, a: &str) -> Vec<Step> {
        self.input(Input::Answer(a.into()))
    }

    fn history(&mut self) -> Vec<HistoryEvent> {
        std::iter::from_fn(|| self.s.poll_history())
            .map(|h| h.event)
            .collect()
    }
}

fn texts(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::Say { prompt, .. } => prompt.text.clone(),
            Step::Ask(q) | Step::Record(q) => format!("?{}#{}", q.prompt.text, q.attempt),
            Step::End { outcome, .. } => format!("end:{outcome}"),
            other => format!("{other:?}"),
        })
        .collect()
}

const YES_NO: &str = r#"<ask id="ok" input="yes-no"><prompt>OK?</prompt></ask>"#;

#[test]
fn say_renders_audio_text_say_as_and_silence() {
    let (_, steps) = Run::new(
        Channel::Voice,
        r#"<say audio="hi.wav" barge-in="false">Hi {{ customer.name }}, you have {{ customer.balance }}.
             <silence duration="250ms"/><number value="21"/><digits value="'0*#'"/></say>"#,
    );
    let Step::Say { step, prompt } = &steps[0] else {
        panic!("{steps:?}")
    };
    assert_eq!(step, "say@2");
    assert_eq!(prompt.text, "Hi Ada, you have 10.");
    assert!(!prompt.barge_in);
    let file = |f: &str| Audio::File(f.into());
    assert_eq!(
        prompt.audio,
        [
            file("hi.wav"),
            Audio::Silence { ms: 250 },
            file("numbers/20.wav"),
            file("numbers/1.wav"),
            file("digits/0.wav"),
            file("digits/star.wav"),
            file("digits/hash.wav")
        ]
    );
    assert!(matches!(&steps[1], Step::End { outcome, .. } if outcome == "completed"));
}

#[test]
fn ask_digits_checks_length_and_strips_the_terminator() {
    let body = r##"<ask id="acct" input="digits" min-length="3" max-length="4" terminator="#" inter-digit="2s">
        <prompt>Enter</prompt><prompt>Enter again</prompt>
        <no-match>Bad</no-match></ask>
      <say>Got {{ answers.acct }}</say>"##;
    let (mut r, steps) = Run::new(Channel::Voice, body);
    let Step::Ask(q) = &steps[0] else { panic!() };
    assert_eq!(
        q.input,
        InputKind::Digits {
            min: 3,
            max: 4,
            terminator: Some('#')
        }
    );
    assert_eq!(q.inter_digit, Some(Duration::from_secs(2)));
    assert_eq!(texts(&r.answer("12#")), ["Bad", "?Enter again#2"]);
    assert_eq!(texts(&r.answer("12a4")), ["Bad", "?Enter again#3"]);
    assert_eq!(texts(&r.answer("0123#")), ["Got 0123", "end:completed"]);
    let h = r.history();
    assert_eq!(
        h[0],
        HistoryEvent::NoMatch {
            input: "12#".into()
        }
    );
    assert_eq!(
        h[2],
        HistoryEvent::Answer {
            value: json!("0123")
        }
    );
}

#[test]
fn no_input_escalates_and_exhausted_tries_run_on_failure() {
    let body = r#"<ask id="a" input="yes-no" tries="3">
        <prompt>One</prompt><prompt>Two</prompt>
        <no-input>Silence 1</no-input><no-input>Silence 2</no-input>
        <on-failure><say>Gave up</say><hangup outcome="no-answer"/></on-failure>
      </ask>
      <say>Not here</say>"#;
    let (mut r, steps) = Run::new(Channel::Voice, body);
    assert_eq!(texts(&steps), ["?One#1"]);
    assert_eq!(texts(&r.input(Input::NoInput)), ["Silence 1", "?Two#2"]);
    // An empty answer (just the terminator or nothing) counts as no input.
    assert_eq!(texts(&r.answer("")), ["Silence 2", "?Two#3"]);
    assert_eq!(
        texts(&r.input(Input::NoInput)),
        ["Gave up", "end:no-answer"]
    );
    assert!(r.history().contains(&HistoryEvent::Unanswered));
}

#[test]
fn ask_without_on_failure_continues_without_an_answer() {
    let body = r#"<ask id="a" input="yes-no" tries="1"><prompt>Q</prompt></ask>
      <if test="has(answers.a)"><say>answered</say></if><else><say>skipped</say></else>"#;
    let (mut r, _) = Run::new(Channel::Voice, body);
    assert_eq!(
        texts(&r.input(Input::NoInput)),
        ["skipped", "end:completed"]
    );
}

#[test]
fn valid_expression_turns_answers_into_no_match() {
    let body = r#"<ask id="n" input="number" min="1" max="100" valid="answer % 2 == 0">
        <prompt>Even number</prompt><no-match>Even, please</no-match></ask>
      <say>{{ answers.n }}</say>"#;
    let (mut r, _) = Run::new(Channel::Web, body);
    assert_eq!(texts(&r.answer("7")), ["Even, please", "?Even number#2"]);
    assert_eq!(texts(&r.answer("200")), ["Even, please", "?Even number#3"]);
    assert_eq!(texts(&r.answer("42")), ["42", "end:completed"]);
}

#[test]
fn choices_by_key_on_voice_and_by_value_or_label_on_screens() {
    let body = r#"<ask id="c" input="choice"><prompt>Pick</prompt>
        <choice key="1" value="red" label="Red"/><choice key="2" value="blue">Blue</choice></ask>
      <say>{{ answers.c }}</say>"#;
    let (mut r, steps) = Run::new(Channel::Voice, body);
    let Step::Ask(q) = &steps[0] else { panic!() };
    assert_eq!(q.choices[1].label, "Blue");
    assert_eq!(texts(&r.answer("red"))[0], "?Pick#2");
    assert_eq!(texts(&r.answer("2"))[0], "blue");
    let (mut r, _) = Run::new(Channel::Web, body);
    assert_eq!(texts(&r.answer("red"))[0], "red");
    let (mut r, _) = Run::new(Channel::Agent, body);
    assert_eq!(texts(&r.answer("BLUE"))[0], "blue");
}

#[test]
fn yes_no_answers() {
    for (answer, value) in [("1", true), ("2", false), ("yes", true), ("No", false)] {
        let (mut r, _) = Run::new(
            Channel::Web,
            &format!("{YES_NO}<say>{{{{ answers.ok }}}}</say>"),
        );
        assert_eq!(texts(&r.answer(answer))[0], value.to_string());
    }
}

#[test]
fn dates_by_channel() {
    let body = r#"<ask id="d" input="date"><prompt>When</prompt></ask><say>{{ answers.d }}</say>"#;
    let (mut r, _) = Run::new(Channel::Voice, body);
    assert_eq!(texts(&r.answer("29022024#"))[0], "2024-02-29");
    let (mut r, _) = Run::new(Channel::Voice, body);
    assert_eq!(texts(&r.answer("29022023"))[0], "?When#2");
    let (mut r, _) = Run::new(Channel::Web, body);
    assert_eq!(texts(&r.answer("2024-12-31"))[0], "2024-12-31");
    let (mut r, _) = Run::new(Channel::Web, body);
    assert_eq!(texts(&r.answer("31/12/2024"))[0], "?When#2");
}

#[test]
fn free_text_on_screens_with_a_length_cap() {
    let body = r#"<ask id="why" input="text" max-chars="5"><prompt>Why</prompt></ask><say>{{ answers.why }}</say>"#;
    let (mut r, steps) = Run::new(Channel::Agent, body);
    let Step::Ask(q) = &steps[0] else { panic!() };
    assert_eq!(q.input, InputKind::Text { max_chars: 5 });
    assert_eq!(texts(&r.answer("too long"))[0], "?Why#2");
    assert_eq!(texts(&r.answer("short"))[0], "short");
}

#[test]
fn menu_options_run_their_steps_then_continue_after_the_menu() {
    let body = r#"<menu id="m"><prompt>Menu</prompt>
        <option key="1" value="a" label="A"><say>in A</say></option>
        <option key="2" value="b" label="B"><say>in B</say><goto target="out"/></option>
        <on-failure><say>menu failed</say></on-failure>
      </menu>
      <say>after menu</say>
      <end id="out" outcome="done"/>"#;
    let (mut r, _) = Run::new(Channel::Voice, body);
    assert_eq!(texts(&r.answer("1")), ["in A", "after menu", "end:done"]);
    let (mut r, _) = Run::new(Channel::Voice, body);
    assert_eq!(texts(&r.answer("2")), ["in B", "end:done"]);
    let (mut r, _) = Run::new(Channel::Voice, body);
    r.answer("9");
    r.answer("9");
    assert_eq!(
        texts(&r.answer("9")),
        ["menu failed", "after menu", "end:done"]
    );
    assert_eq!(r.s.answers().unwrap().get("m"), None);
}

#[test]
fn if_else_if_else_chains() {
    let body = r#"<if test="customer.segment == 'silver'"><say>silver</say></if>
      <else-if test="customer.segment == 'gold'"><say>gold</say></else-if>
      <else><say>other</say></else>
      <say>after</say>"#;
    let (_, steps) = Run::new(Channel::Web, body);
    assert_eq!(texts(&steps), ["gold", "after", "end:completed"]);
}

#[test]
fn switch_matches_listed_values_or_falls_to_default() {
    let body = r#"<switch value="customer.segment">
        <case is="silver, gold"><say>metal</say></case>
        <case is="standard"><say>standard</say></case>
        <default><say>default</say></default>
      </switch>"#;
    let (_, steps) = Run::new(Channel::Web, body);
    assert_eq!(texts(&steps)[0], "metal");
    let (_, steps) = Run::with(Channel::Web, body, json!({"segment": "new"}), &[]);
    assert_eq!(texts(&steps)[0], "default");
    let no_default =
        r#"<switch value="1"><case is="2"><say>two</say></case></switch><say>next</say>"#;
    let (_, steps) = Run::new(Channel::Web, no_default);
    assert_eq!(texts(&steps)[0], "next");
}

#[test]
fn set_updates_variables_that_expressions_then_see() {
    let body = r#"<variables><var name="n" value="1"/><var name="label"/></variables>
      <set var="n" value="n * 10 + 2"/>
      <set var="label" value="'n=' + string(n)"/>
      <say>{{ label }}</say>"#;
    let (r, steps) = Run::new(Channel::Web, body);
    assert_eq!(texts(&steps)[0], "n=12");
    assert_eq!(r.s.variable("n"), Some(&json!(12)));
}

#[test]
fn lookup_found_replaces_the_customer_and_not_found_runs_its_block() {
    let body = r#"<lookup by="caller-id"><not-found><say>unknown caller</say></not-found></lookup>
      <say>hello {{ customer.name }}</say>"#;
    let (mut r, steps) = Run::with(Channel::Voice, body, Value::Null, &[]);
    assert!(
        matches!(&steps[0], Step::Lookup { field, value, .. } if field == "phone" && value == "+15550100")
    );
    assert_eq!(
        texts(&r.input(Input::Customer(Some(json!({"name": "Bo"})))))[0],
        "hello Bo"
    );
    assert_eq!(r.history()[0], HistoryEvent::Lookup { found: true });
    let (mut r, _) = Run::with(Channel::Voice, body, Value::Null, &[]);
    let steps = r.input(Input::Customer(None));
    assert_eq!(texts(&steps)[0], "unknown caller");
    // The script then fails on `customer.name`: a runtime error ends the session.
    assert!(matches!(r.s.outcome(), Some(Outcome::Failed { .. })));
}

#[test]
fn lookup_by_field_and_answer() {
    let body = r#"<ask id="acct" input="digits" min-length="2" max-length="2"><prompt>Acct</prompt></ask>
      <lookup field="account" value="answers.acct"/>"#;
    let (mut r, _) = Run::new(Channel::Voice, body);
    let steps = r.answer("42");
    assert!(
        matches!(&steps[0], Step::Lookup { field, value, .. } if field == "account" && value == "42")
    );
}

#[test]
fn webhook_results_map_into_variables_and_errors_run_on_error() {
    let src = r#"<variables><var name="ticket" value="''"/></variables>
      <webhook id="hook" url="https://h/x?c={{ call.caller_id }}" method="PUT" timeout="2s">
        <body>{"who": {{ customer.name }}, "n": {{ customer.balance + 1 }}, "fixed": [1, 2]}</body>
        <result var="ticket" value="response.body.id"/>
        <on-error><say>hook failed</say></on-error>
      </webhook>
      <say>ticket {{ ticket }}</say>"#;
    let (mut r, steps) = Run::new(Channel::Web, src);
    let Step::RunAction {
        step,
        action:
            Action::Webhook {
                url,
                method,
                body,
                timeout,
            },
    } = &steps[0]
    else {
        panic!("{steps:?}")
    };
    assert_eq!(step, "hook");
    assert_eq!(
        (url.as_str(), method.as_str()),
        ("https://h/x?c=+15550100", "PUT")
    );
    assert_eq!(
        body.clone().unwrap(),
        json!({"who": "Ada", "n": 11, "fixed": [1, 2]})
    );
    assert_eq!(*timeout, Duration::from_secs(2));
    assert_eq!(
        texts(&r.input(Input::ActionDone(json!({"body": {"id": "T-9"}}))))[0],
        "ticket T-9"
    );
    assert!(matches!(
        &r.history()[0],
        HistoryEvent::Action { ok: true, .. }
    ));

    let (mut r, _) = Run::new(Channel::Web, src);
    assert_eq!(
        texts(&r.input(Input::ActionFailed("timeout".into())))[..2],
        ["hook failed", "ticket "]
    );
    assert!(
        matches!(&r.history()[0], HistoryEvent::Action { ok: false, detail, .. } if detail == "timeout")
    );
}

#[test]
fn email_update_customer_and_log_actions() {
    let body = r#"<email to="{{ customer.name }}@example.com" subject="Hi {{ customer.name }}">
          Line one
          Line two
        </email>
      <update-customer><field name="segment" value="'platinum'"/></update-customer>
      <log level="warn">segment now {{ customer.segment }}</log>"#;
    let (mut r, steps) = Run::new(Channel::Agent, body);
    assert_eq!(
        steps[0],
        Step::RunAction {
            step: "email@2".into(),
            action: Action::Email {
                to: "Ada@example.com".into(),
                subject: "Hi Ada".into(),
                body: "Line one\nLine two".into()
            }
        }
    );
    let steps = r.input(Input::ActionDone(Value::Null));
    assert!(
        matches!(&steps[0], Step::RunAction { action: Action::UpdateCustomer { fields }, .. }
        if fields["segment"] == "platinum")
    );
    let steps = r.input(Input::ActionDone(Value::Null));
    assert!(
        matches!(&steps[0], Step::RunAction { action: Action::Log { level, message }, .. }
        if level == "warn" && message == "segment now platinum")
    );
}

#[test]
fn enqueue_voicemail_and_transfer_end_on_success_and_fall_through_on_failure() {
    let body = r#"<enqueue queue="sales" priority="customer.segment == 'gold' ? 9 : 1" audio="hold.wav">Hold on
        <skill name="sales" min-level="3"/><skill name="french"/></enqueue>
      <voicemail mailbox="mb-{{ customer.segment }}"/>
      <transfer number="+4930{{ call.called }}"/>
      <transfer agent="1001"/>
      <transfer queue="overflow"/>"#;
    let (mut r, steps) = Run::new(Channel::Voice, body);
    let Step::Enqueue {
        queue,
        priority,
        skills,
        prompt,
        ..
    } = &steps[0]
    else {
        panic!()
    };
    assert_eq!((queue.as_str(), *priority, skills.len()), ("sales", 9, 2));
    assert_eq!(skills[1].min_level, 1);
    assert_eq!(prompt.as_ref().unwrap().text, "Hold on");
    let steps = r.input(Input::RouteFailed("closed".into()));
    assert!(matches!(&steps[0], Step::Voicemail { mailbox, .. } if mailbox == "mb-gold"));
    let steps = r.input(Input::RouteFailed("full".into()));
    assert!(
        matches!(&steps[0], Step::Transfer { to: TransferTo::Number, target, .. } if target == "+4930800")
    );
    let steps = r.input(Input::RouteFailed("busy".into()));
    assert!(matches!(
        &steps[0],
        Step::Transfer {
            to: TransferTo::Agent,
            ..
        }
    ));
    let steps = r.input(Input::RouteFailed("busy".into()));
    assert!(
        matches!(&steps[0], Step::Transfer { to: TransferTo::Queue, target, .. } if target == "overflow")
    );
    assert!(r.input(Input::Routed).is_empty());
    assert!(matches!(r.s.outcome(), Some(Outcome::Routed { .. })));
}

#[test]
fn record_waits_for_a_recording() {
    let body = r#"<record id="msg" max-duration="30s" beep="false"><prompt audio="speak.wav">Speak</prompt></record>
      <say>saved {{ answers.msg }}</say>"#;
    let (mut r, steps) = Run::new(Channel::Voice, body);
    let Step::Record(q) = &steps[0] else { panic!() };
    assert_eq!(
        q.input,
        InputKind::Recording {
            max_duration: Duration::from_secs(30),
            beep: false
        }
    );
    let err =
        r.s.handle_input(&r.lib, t(1), Input::Answer("1".into()))
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the session is waiting for a recording, not an answer"
    );
    assert_eq!(
        texts(&r.input(Input::Recorded("rec-77".into())))[0],
        "saved rec-77"
    );
}

#[test]
fn goto_loops_and_a_loop_that_never_asks_is_stopped() {
    let body = r#"<variables><var name="i" value="0"/></variables>
      <set id="top" var="i" value="i + 1"/>
      <if test="i &lt; 3"><goto target="top"/></if>
      <say>i={{ i }}</say>"#;
    let (_, steps) = Run::new(Channel::Web, body);
    assert_eq!(texts(&steps)[0], "i=3");
    let (r, steps) = Run::new(Channel::Web, r#"<say id="a">x</say><goto target="a"/>"#);
    assert!(matches!(steps.last(), Some(Step::End { outcome, .. }) if outcome == "error"));
    assert!(
        matches!(r.s.outcome(), Some(Outcome::Failed { message }) if message.contains("goto loop"))
    );
}

#[test]
fn call_passes_arguments_and_returns_a_value() {
    let callee = r#"<script version="1" id="double" channels="web">
        <variables><var name="x" value="0"/><var name="unused" value="5"/></variables>
        <ask id="q" input="yes-no"><prompt>Double {{ x }}?</prompt></ask>
        <if test="answers.q"><return value="x * 2"/></if>
      </script>"#;
    let body = r#"<variables><var name="r" value="0"/></variables>
      <ask id="q" input="number"><prompt>n</prompt></ask>
      <call script="double" result="r"><arg name="x" value="answers.q"/></call>
      <say>r={{ r }} q={{ answers.q }}</say>"#;
    let (mut r, _) = Run::with(Channel::Web, body, json!({}), &[callee]);
    assert_eq!(texts(&r.answer("21")), ["?Double 21?#1"]);
    assert_eq!(texts(&r.answer("yes"))[0], "r=42 q=21");
    // Falling off the end of a called script returns null.
    let (mut r, _) = Run::with(Channel::Web, body, json!({}), &[callee]);
    r.answer("21");
    assert_eq!(texts(&r.answer("no"))[0], "r= q=21");
}

#[test]
fn hangup_and_end_with_prompts_and_the_implicit_end() {
    let (r, steps) = Run::new(Channel::Voice, r#"<hangup audio="bye.wav">Bye</hangup>"#);
    let Step::End {
        outcome, prompt, ..
    } = &steps[0]
    else {
        panic!()
    };
    assert_eq!(
        (outcome.as_str(), prompt.as_ref().unwrap().text.as_str()),
        ("hangup", "Bye")
    );
    assert_eq!(
        r.s.outcome(),
        Some(&Outcome::Ended {
            outcome: "hangup".into()
        })
    );
    let (_, steps) = Run::new(Channel::Web, r#"<end outcome="sold"/>"#);
    assert!(matches!(&steps[0], Step::End { outcome, prompt: None, .. } if outcome == "sold"));
    let (_, steps) = Run::new(Channel::Web, r#"<say>only</say>"#);
    assert_eq!(texts(&steps), ["only", "end:completed"]);
}

#[test]
fn runtime_errors_go_to_on_error_once() {
    let src = r#"<script version="1" id="t" on-error="oops">
        <say>{{ customer.missing }}</say>
        <end outcome="never"/>
        <say id="oops">sorry</say>
        <say>{{ customer.missing_too }}</say>
      </script>"#;
    let lib = Library::new([load_str("t.xml", src, &AnyAudio).unwrap().script]).unwrap();
    let ctx = SessionContext {
        channel: Channel::Web,
        customer: json!({}),
        call: json!({}),
    };
    let mut s = Session::start(&lib, "t", ctx, t(0)).unwrap();
    let steps: Vec<Step> = std::iter::from_fn(|| s.poll_step()).collect();
    assert_eq!(texts(&steps), ["sorry", "end:error"]);
    let errors = std::iter::from_fn(|| s.poll_history())
        .filter(|h| matches!(h.event, HistoryEvent::ScriptError { .. }))
        .count();
    assert_eq!(errors, 2);
}

#[test]
fn timeouts_start_when_the_prompt_has_played() {
    let (mut r, _) = Run::new(
        Channel::Web,
        r#"<ask id="a" input="yes-no" timeout="10s" tries="2"><prompt>Q</prompt><no-input>Hello?</no-input></ask>"#,
    );
    assert_eq!(r.s.poll_timeout(), None);
    r.s.handle_prompt_played(t(100));
    assert_eq!(r.s.poll_timeout(), Some(t(110)));
    r.s.handle_timeout(&r.lib, t(105)).unwrap();
    assert!(r.drain().is_empty(), "not yet");
    r.s.handle_timeout(&r.lib, t(110)).unwrap();
    assert_eq!(texts(&r.drain()), ["Hello?", "?Q#2"]);
    assert_eq!(
        r.s.poll_timeout(),
        None,
        "the new prompt has not played yet"
    );
}

#[test]
fn inputs_that_do_not_fit_are_rejected() {
    let (mut r, _) = Run::new(Channel::Web, YES_NO);
    let err = r.s.handle_input(&r.lib, t(1), Input::Routed).unwrap_err();
    assert_eq!(
        err,
        SessionError::Unexpected {
            expected: "an answer",
            got: "a routing result"
        }
    );
    r.answer("yes");
    assert_eq!(
        r.s.handle_input(&r.lib, t(2), Input::NoInput),
        Err(SessionError::Finished)
    );
}

#[test]
fn sessions_refuse_edited_scripts_and_other_channels() {
    let (r, _) = Run::new(Channel::Web, YES_NO);
    let saved = serde_json::to_value(&r.s).unwrap();
    let edited = library("web", &format!("{YES_NO}<say>new</say>"), &[]);
    let mut s: Session = serde_json::from_value(saved).unwrap();
    assert_eq!(
        s.handle_input(&edited, t(1), Input::Answer("yes".into())),
        Err(SessionError::ScriptChanged("t".into()))
    );
    let ctx = SessionContext {
        channel: Channel::Voice,
        customer: json!({}),
        call: json!({}),
    };
    assert_eq!(
        Session::start(&edited, "t", ctx.clone(), t(0)).unwrap_err(),
        SessionError::ChannelNotSupported("t".into(), Channel::Voice)
    );
    assert_eq!(
        Session::start(&edited, "nope", ctx, t(0)).unwrap_err(),
        SessionError::UnknownScript("nope".into())
    );
}

#[test]
fn every_answer_and_action_is_in_the_history_with_the_callers_time() {
    let body = r#"<ask id="a" input="yes-no"><prompt>Q</prompt></ask><log>done</log>"#;
    let (mut r, _) = Run::new(Channel::Web, body);
    r.answer("yes");
    r.input(Input::ActionDone(Value::Null));
    let records: Vec<_> = std::iter::from_fn(|| r.s.poll_history()).collect();
    assert_eq!(records.len(), 3);
    assert_eq!((records[0].step.as_str(), records[0].at), ("a", t(1)));
    assert_eq!(
        records[0].event,
        HistoryEvent::Answer { value: json!(true) }
    );
    assert!(matches!(
        &records[1].event,
        HistoryEvent::Action { ok: true, .. }
    ));
    assert_eq!(records[1].at, t(2));
    assert_eq!(
        records[2].event,
        HistoryEvent::Ended {
            outcome: "completed".into()
        }
    );
    let json = serde_json::to_value(&records[0]).unwrap();
    assert_eq!(json["event"]["event"], "answer");
    assert_eq!(json["at_ms"], 1_800_000_001_000u64);
    let back: script_engine::HistoryRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, records[0]);
}

#[test]
fn a_webhook_reply_without_the_expected_fields_counts_as_failed() {
    let src = r#"<variables><var name="ticket"/></variables>
      <webhook url="https://h/x"><result var="ticket" value="response.body.id"/>
        <on-error><say>bad reply</say></on-error></webhook>
      <say>ticket {{ ticket }}</say>"#;
    let (mut r, _) = Run::new(Channel::Web, src);
    let steps = r.input(Input::ActionDone(json!({"status": 200, "body": {}})));
    assert_eq!(texts(&steps)[0], "bad reply");
    assert!(
        matches!(&r.history()[0], HistoryEvent::Action { ok: false, detail, .. }
        if detail.as_str().unwrap().starts_with("unexpected reply"))
    );
}

#[test]
fn a_damaged_saved_session_is_an_error_not_a_panic() {
    let (r, _) = Run::new(Channel::Web, YES_NO);
    let mut saved = serde_json::to_value(&r.s).unwrap();
    saved["frames"] = json!([]);
    let mut s: Session = serde_json::from_value(saved.clone()).unwrap();
    assert_eq!(
        s.handle_input(&r.lib, t(1), Input::NoInput),
        Err(SessionError::Damaged)
    );
    saved = serde_json::to_value(&r.s).unwrap();
    saved["frames"][0]["pc"] = json!(999);
    let mut s: Session = serde_json::from_value(saved).unwrap();
    s.handle_input(&r.lib, t(1), Input::Answer("yes".into()))
        .unwrap();
    assert!(matches!(s.outcome(), Some(Outcome::Failed { .. })));
}

#[test]
fn steps_have_a_plain_json_shape_for_web_and_agent_clients() {
    let (_, steps) = Run::new(
        Channel::Web,
        r#"<ask id="n" input="digits" min-length="2" max-length="3" inter-digit="2s"><prompt>N</prompt></ask>"#,
    );
    let json = serde_json::to_value(&steps[0]).unwrap();
    assert_eq!(json["type"], "ask");
    assert_eq!(json["step"], "n");
    assert_eq!(
        json["input"],
        json!({"kind": "digits", "min": 2, "max": 3, "terminator": null})
    );
    assert_eq!(json["timeout_ms"], 5000);
    assert_eq!(json["inter_digit_ms"], 2000);
    assert_eq!(json["prompt"]["text"], "N");
    let back: Step = serde_json::from_value(json).unwrap();
    assert_eq!(back, steps[0]);
    let input: Input = serde_json::from_value(json!({"type": "answer", "value": "12"})).unwrap();
    assert_eq!(input, Input::Answer("12".into()));
}
