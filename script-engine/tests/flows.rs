//! Whole conversations through the shipped scripts, driven the way a host
//! drives a session: feed an input, drain the steps, check what was asked.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use script_engine::{
    Action, Audio, Channel, HistoryEvent, Input, InputKind, Library, Outcome, Session,
    SessionContext, Step, check_files,
};
use serde_json::{Value, json};

fn library() -> Library {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let files: Vec<PathBuf> = [
        "bank-card.xml",
        "verify-pin.xml",
        "utility-outage.xml",
        "retention.xml",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    let checked = check_files(&files, &script_engine::AnyAudio);
    checked.library.expect("sample scripts load")
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn drain(s: &mut Session) -> Vec<Step> {
    std::iter::from_fn(|| s.poll_step()).collect()
}

fn audio_of(step: &Step) -> Vec<String> {
    let prompt = match step {
        Step::Say { prompt, .. } => Some(prompt),
        Step::Ask(q) | Step::Record(q) => Some(&q.prompt),
        Step::End { prompt, .. } | Step::Enqueue { prompt, .. } => prompt.as_ref(),
        _ => None,
    };
    prompt
        .map(|p| {
            p.audio
                .iter()
                .filter_map(|a| match a {
                    Audio::File(f) => Some(f.clone()),
                    Audio::Silence { .. } => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn customer() -> Value {
    json!({
        "account_number": "12345678",
        "pin": "4321",
        "name": "Ada Lovelace",
        "balance": 1234.5,
        "segment": "premium",
        "card_last4": "9876"
    })
}

fn start_bank() -> (Library, Session) {
    let lib = library();
    let ctx = SessionContext {
        channel: Channel::Voice,
        customer: Value::Null,
        call: json!({"caller_id": "+4930123456", "channel": "voice"}),
    };
    let s = Session::start(&lib, "bank-card", ctx, t(0)).expect("starts");
    (lib, s)
}

/// Account number and the right PIN: returns the steps of the main menu.
fn identify(lib: &Library, s: &mut Session) -> Vec<Step> {
    let steps = drain(s);
    assert_eq!(audio_of(&steps[0]), ["bank/welcome.wav"]);
    assert!(matches!(&steps[1], Step::Ask(q) if q.step == "account"
        && q.input == InputKind::Digits { min: 8, max: 8, terminator: Some('#') }));
    s.handle_input(lib, t(5), Input::Answer("12345678#".into()))
        .unwrap();
    let steps = drain(s);
    assert!(
        matches!(&steps[..], [Step::Lookup { field, value, .. }] if field == "account_number" && value == "12345678")
    );
    s.handle_input(lib, t(6), Input::Customer(Some(customer())))
        .unwrap();
    let steps = drain(s);
    assert!(
        matches!(&steps[..], [Step::Ask(q)] if q.step == "pin"),
        "{steps:?}"
    );
    s.handle_input(lib, t(9), Input::Answer("4321#".into()))
        .unwrap();
    drain(s)
}

#[test]
fn bank_balance_then_agent_with_premium_priority() {
    let (lib, mut s) = start_bank();
    let steps = identify(&lib, &mut s);
    assert!(matches!(&steps[..], [Step::Ask(q)] if q.step == "main" && q.choices.len() == 3));
    assert_eq!(audio_of(&steps[0]), ["bank/main-menu.wav"]);

    s.handle_input(&lib, t(12), Input::Answer("1".into()))
        .unwrap();
    let steps = drain(&mut s);
    assert_eq!(
        audio_of(&steps[0]),
        [
            "bank/your-balance-is.wav",
            "numbers/1.wav",
            "numbers/thousand.wav",
            "numbers/2.wav",
            "numbers/hundred.wav",
            "numbers/30.wav",
            "numbers/4.wav",
            "currency/eur.wav",
            "numbers/and.wav",
            "numbers/50.wav",
            "currency/eur-cents.wav"
        ]
    );
    let Step::Say { prompt, .. } = &steps[0] else {
        panic!()
    };
    assert_eq!(prompt.text, "Your balance is 1234.5 EUR.");
    assert!(matches!(&steps[1], Step::Ask(q) if q.step == "anything_else"));

    s.handle_input(&lib, t(15), Input::Answer("1".into()))
        .unwrap();
    assert!(matches!(&drain(&mut s)[..], [Step::Ask(q)] if q.step == "main"));
    s.handle_input(&lib, t(17), Input::Answer("0".into()))
        .unwrap();
    let steps = drain(&mut s);
    let [
        Step::Enqueue {
            queue,
            priority,
            skills,
            ..
        },
    ] = &steps[..]
    else {
        panic!("{steps:?}")
    };
    assert_eq!((queue.as_str(), *priority), ("cards", 8));
    assert_eq!(
        (skills[0].skill.as_str(), skills[0].min_level),
        ("cards", 2)
    );
    s.handle_input(&lib, t(18), Input::Routed).unwrap();
    assert!(matches!(s.outcome(), Some(Outcome::Routed { step }) if step == "to-agent"));

    let history: Vec<_> = std::iter::from_fn(|| s.poll_history()).collect();
    let answers: Vec<(&str, &Value)> = history
        .iter()
        .filter_map(|h| match &h.event {
            HistoryEvent::Answer { value } => Some((h.step.as_str(), value)),
            _ => None,
        })
        .collect();
    assert_eq!(answers[0], ("account", &json!("12345678")));
    // The PIN is compared by the script but never written to the contact history.
    assert_eq!(answers[1], ("pin", &json!(script_engine::WITHHELD)));
    assert_eq!(answers[2], ("main", &json!("balance")));
    assert_eq!(history.last().unwrap().at, t(18));
}

#[test]
fn bank_wrong_pin_three_times_ends_politely() {
    let (lib, mut s) = start_bank();
    drain(&mut s);
    s.handle_input(&lib, t(1), Input::Answer("12345678".into()))
        .unwrap();
    drain(&mut s);
    s.handle_input(&lib, t(2), Input::Customer(Some(customer())))
        .unwrap();
    drain(&mut s);
    for attempt in 0..2 {
        s.handle_input(&lib, t(3 + attempt), Input::Answer("0000#".into()))
            .unwrap();
        let steps = drain(&mut s);
        assert_eq!(
            audio_of(&steps[0]),
            ["bank/wrong-pin.wav"],
            "{steps:?} {:?}",
            s.outcome()
        );
        assert!(matches!(&steps[1], Step::Ask(q) if q.step == "pin"));
    }
    s.handle_input(&lib, t(9), Input::Answer("1111#".into()))
        .unwrap();
    let steps = drain(&mut s);
    let [
        Step::End {
            outcome,
            prompt: Some(p),
            ..
        },
    ] = &steps[..]
    else {
        panic!("{steps:?}")
    };
    assert_eq!(outcome, "pin-failed");
    assert_eq!(p.audio, [Audio::File("bank/pin-locked.wav".into())]);
    assert!(p.text.starts_with("For your security"));
    assert!(matches!(s.outcome(), Some(Outcome::Ended { outcome }) if outcome == "pin-failed"));
    assert!(s.handle_input(&lib, t(10), Input::NoInput).is_err());
    let history =
        serde_json::to_string(&std::iter::from_fn(|| s.poll_history()).collect::<Vec<_>>())
            .unwrap();
    assert!(
        !history.contains("\"0000\"") && !history.contains("\"1111\""),
        "PINs leaked: {history}"
    );
    assert_eq!(history.matches(script_engine::WITHHELD).count(), 3);
}

#[test]
fn bank_block_card_calls_the_webhook_and_reads_the_reference() {
    let (lib, mut s) = start_bank();
    identify(&lib, &mut s);
    s.handle_input(&lib, t(20), Input::Answer("2".into()))
        .unwrap();
    let steps = drain(&mut s);
    assert_eq!(
        audio_of(&steps[0]),
        [
            "bank/block-confirm.wav",
            "digits/9.wav",
            "digits/8.wav",
            "digits/7.wav",
            "digits/6.wav",
            "general/yes-or-no.wav"
        ]
    );
    s.handle_input(&lib, t(21), Input::Answer("1".into()))
        .unwrap();
    let steps = drain(&mut s);
    let [
        Step::RunAction {
            action: Action::Webhook {
                url, method, body, ..
            },
            ..
        },
    ] = &steps[..]
    else {
        panic!("{steps:?}")
    };
    assert_eq!(
        (url.as_str(), method.as_str()),
        ("https://cards.example.net/api/cards/block", "POST")
    );
    assert_eq!(body.as_ref().unwrap()["card"], json!("9876"));
    s.handle_input(
        &lib,
        t(22),
        Input::ActionDone(json!({"status": 200, "body": {"reference": 4711}})),
    )
    .unwrap();
    let steps = drain(&mut s);
    assert_eq!(
        audio_of(&steps[0]),
        [
            "bank/card-blocked.wav",
            "digits/4.wav",
            "digits/7.wav",
            "digits/1.wav",
            "digits/1.wav"
        ]
    );
    assert!(
        matches!(&steps[1], Step::RunAction { action: Action::Log { message, .. }, .. }
        if message == "Card 9876 blocked by caller, reference 4711")
    );
}

#[test]
fn bank_queue_closed_falls_back_to_voicemail() {
    let (lib, mut s) = start_bank();
    identify(&lib, &mut s);
    s.handle_input(&lib, t(20), Input::Answer("0".into()))
        .unwrap();
    drain(&mut s);
    s.handle_input(&lib, t(21), Input::RouteFailed("queue closed".into()))
        .unwrap();
    let steps = drain(&mut s);
    assert!(matches!(&steps[..], [Step::Voicemail { mailbox, .. }] if mailbox == "cards"));
}

#[test]
fn bank_session_survives_serialization_mid_question() {
    let (lib, mut s) = start_bank();
    drain(&mut s);
    let saved = serde_json::to_string(&s).unwrap();
    let mut restored: Session = serde_json::from_str(&saved).unwrap();
    assert_eq!(restored, s);
    assert!(matches!(restored.awaiting(), Some(Step::Ask(q)) if q.step == "account"));
    restored
        .handle_input(&lib, t(1), Input::Answer("12345678".into()))
        .unwrap();
    assert!(matches!(&drain(&mut restored)[..], [Step::Lookup { .. }]));
}

#[test]
fn outage_web_flow_reports_and_books_a_callback() {
    let lib = library();
    let ctx = SessionContext {
        channel: Channel::Web,
        customer: Value::Null,
        call: json!({"caller_id": "", "channel": "web"}),
    };
    let mut s = Session::start(&lib, "utility-outage", ctx, t(0)).unwrap();
    let steps = drain(&mut s);
    assert!(matches!(&steps[1], Step::Lookup { field, .. } if field == "phone"));
    s.handle_input(&lib, t(1), Input::Customer(None)).unwrap();
    assert!(matches!(&drain(&mut s)[..], [Step::Ask(q)] if q.step == "postcode_entry"));
    s.handle_input(&lib, t(2), Input::Answer("10115".into()))
        .unwrap();
    drain(&mut s);
    s.handle_input(&lib, t(3), Input::Answer("12".into()))
        .unwrap();
    let steps = drain(&mut s);
    assert!(
        matches!(&steps[..], [Step::RunAction { action: Action::Webhook { url, .. }, .. }]
        if url == "https://outages.example.net/api/status?postcode=10115&house=12"),
        "{steps:?}"
    );
    s.handle_input(
        &lib,
        t(4),
        Input::ActionDone(json!({"status": 200, "body": {"known": false}})),
    )
    .unwrap();
    let steps = drain(&mut s);
    let [
        Step::RunAction {
            action: Action::Webhook {
                body: Some(body), ..
            },
            ..
        },
    ] = &steps[..]
    else {
        panic!("{steps:?}")
    };
    assert_eq!(body["postcode"], json!("10115"));
    s.handle_input(
        &lib,
        t(5),
        Input::ActionDone(json!({"body": {"ticket": "A17"}})),
    )
    .unwrap();
    let steps = drain(&mut s);
    let Step::Say { prompt, .. } = &steps[0] else {
        panic!()
    };
    assert!(prompt.text.ends_with("Your reference is A17."));
    s.handle_input(&lib, t(6), Input::Answer("yes".into()))
        .unwrap();
    drain(&mut s);
    s.handle_input(&lib, t(7), Input::ActionDone(json!({"status": 201})))
        .unwrap();
    let steps = drain(&mut s);
    assert!(matches!(steps.last(), Some(Step::End { outcome, .. }) if outcome == "reported"));
}

/// A known outage: the estimate is spoken in minutes when the status service
/// gives one, and left out (not "about zero minutes") when it does not.
#[test]
fn outage_known_speaks_the_estimate_only_when_there_is_one() {
    let lib = library();
    let known = |status: Value| {
        let ctx = SessionContext {
            channel: Channel::Voice,
            customer: Value::Null,
            call: json!({"caller_id": "+4930123456", "channel": "voice"}),
        };
        let mut s = Session::start(&lib, "utility-outage", ctx, t(0)).unwrap();
        drain(&mut s);
        let customer = json!({"phone": "+4930123456", "street": "Main Street", "house": "12", "postcode": "10115"});
        s.handle_input(&lib, t(1), Input::Customer(Some(customer)))
            .unwrap();
        drain(&mut s);
        s.handle_input(
            &lib,
            t(2),
            Input::ActionDone(json!({"status": 200, "body": status})),
        )
        .unwrap();
        let steps = drain(&mut s);
        (audio_of(&steps[0]), steps)
    };
    let (audio, steps) = known(json!({"known": true, "eta_minutes": 45}));
    assert_eq!(
        audio,
        [
            "utility/known-outage.wav",
            "numbers/40.wav",
            "numbers/5.wav",
            "general/minutes.wav"
        ],
        "{steps:?}"
    );
    let (audio, steps) = known(json!({"known": true}));
    assert_eq!(audio, ["utility/known-outage-no-eta.wav"], "{steps:?}");
    assert!(matches!(&steps[1], Step::Ask(q) if q.step == "callback"));
}

#[test]
fn retention_branches_on_segment_and_updates_the_customer() {
    let lib = library();
    let ctx = SessionContext {
        channel: Channel::Agent,
        customer: json!({"name": "Grace", "since": "2019", "segment": "silver", "tenure_years": 5, "email": "g@example.com"}),
        call: json!({}),
    };
    let mut s = Session::start(&lib, "retention", ctx, t(0)).unwrap();
    let steps = drain(&mut s);
    let Step::Say { prompt, .. } = &steps[0] else {
        panic!()
    };
    assert_eq!(
        prompt.text,
        "Greet Grace by name. Customer since 2019, segment silver."
    );
    s.handle_input(&lib, t(1), Input::Answer("price".into()))
        .unwrap();
    let steps = drain(&mut s);
    let Step::Say { prompt, .. } = &steps[0] else {
        panic!()
    };
    assert_eq!(prompt.text, "Offer a 20% discount for 12 months.");
    s.handle_input(&lib, t(2), Input::Answer("Accepted".into()))
        .unwrap();
    let steps = drain(&mut s);
    assert!(matches!(
        &steps[..],
        [Step::RunAction {
            action: Action::UpdateCustomer { .. },
            ..
        }]
    ));
    s.handle_input(&lib, t(3), Input::ActionDone(Value::Null))
        .unwrap();
    assert_eq!(s.customer()["discount_percent"], json!(20));
    let steps = drain(&mut s);
    let [
        Step::RunAction {
            action: Action::Email { to, body, .. },
            ..
        },
    ] = &steps[..]
    else {
        panic!()
    };
    assert_eq!(to, "g@example.com");
    assert!(body.contains("Your 20% discount"));
    assert!(body.starts_with("Dear Grace,\n\nthank you"));
    s.handle_input(&lib, t(4), Input::ActionDone(Value::Null))
        .unwrap();
    assert!(matches!(s.outcome(), Some(Outcome::Ended { outcome }) if outcome == "retained"));
}
