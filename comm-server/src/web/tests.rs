//! The self-service endpoints through the router, as a browser would call them
//! (no sockets: `tower::ServiceExt::oneshot`), on the real `scripts/` directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Body;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use script_engine::{AnyAudio, check_files, load_str};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

/// A wall clock the test moves by hand.
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn unix_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// 2026-01-01T00:00:00Z, a plausible wall-clock time for history records.
const START_MS: i64 = 1_767_225_600_000;

fn shipped_scripts() -> Library {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scripts/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scripts in {}", dir.display());
    let checked = check_files(&paths, &AnyAudio);
    assert_eq!(checked.error_count(), 0, "{:#?}", checked.diagnostics);
    checked.library.expect("the shipped scripts load")
}

struct Web {
    app: Router,
    clock: Arc<TestClock>,
}

impl Web {
    fn new(library: Library) -> Web {
        Web::with_limits(library, SessionLimits::default())
    }

    fn with_limits(library: Library, limits: SessionLimits) -> Web {
        let clock = Arc::new(TestClock(AtomicI64::new(START_MS)));
        let state = WebState::with_limits(Arc::new(library), clock.clone(), limits);
        Web {
            app: router(state),
            clock,
        }
    }

    fn shipped() -> Web {
        Web::new(shipped_scripts())
    }

    fn advance(&self, ms: i64) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        if bytes.is_empty() {
            return (status, Value::Null);
        }
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        (status, serde_json::from_slice(&bytes).expect("a JSON body"))
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post(&self, uri: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(request).await
    }

    async fn start(&self, script: &str) -> Value {
        let (status, reply) = self
            .send(
                Request::post(format!("/api/scripts/{script}/sessions"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        reply
    }

    async fn answer(&self, token: &str, answer: &str) -> (StatusCode, Value) {
        let body = json!({ "answer": answer }).to_string();
        self.post(&format!("/api/sessions/{token}/input"), &body)
            .await
    }
}

fn token(reply: &Value) -> String {
    reply["session"]
        .as_str()
        .expect("a session token")
        .to_owned()
}

/// Each step as `type:step`, for comparing paths at a glance.
fn steps(reply: &Value) -> Vec<String> {
    reply["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["type"].as_str().unwrap(),
                s["step"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// One field of each element of a list in the reply.
fn kinds<'a>(reply: &'a Value, list: &str, field: &str) -> Vec<&'a str> {
    reply[list]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s[field].as_str().unwrap())
        .collect()
}

/// Each history record as `step:event`.
fn history(reply: &Value) -> Vec<String> {
    reply["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            format!(
                "{}:{}",
                h["step"].as_str().unwrap(),
                h["event"]["event"].as_str().unwrap()
            )
        })
        .collect()
}

fn error_of(reply: &Value) -> &str {
    reply["error"].as_str().expect("an error message")
}

#[tokio::test]
async fn lists_the_scripts_published_for_the_web() {
    let web = Web::shipped();
    let (status, reply) = web.get("/api/scripts").await;
    assert_eq!(status, StatusCode::OK);
    let scripts = reply["scripts"].as_array().unwrap();
    let ids: Vec<&str> = scripts.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"utility-outage"), "{ids:?}");
    assert!(ids.contains(&"bank-card"), "{ids:?}");
    // The retention script is for agents only.
    assert!(!ids.contains(&"retention"), "{ids:?}");
    // The PIN check is a part of the bank line (listed="no"): not offered, and a
    // session cannot start with it.
    assert!(!ids.contains(&"verify-pin"), "{ids:?}");
    let (status, reply) = web
        .send(
            Request::post("/api/scripts/verify-pin/sessions")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    let outage = scripts
        .iter()
        .find(|s| s["id"] == "utility-outage")
        .unwrap();
    assert_eq!(outage["title"], "Power outage line");
    assert!(outage["description"].is_string());
}

/// The outage line on the web: nobody is found by caller ID, so the visitor gives
/// a postcode and house number; the status webhook is not available here, so the
/// script's `on-error` sends the visitor to an agent, then voicemail, neither of
/// which the web can do, and the script says goodbye.
#[tokio::test]
async fn the_outage_script_runs_to_its_end() {
    let web = Web::shipped();
    let started = web.start("utility-outage").await;
    let t = token(&started);
    assert_eq!(started["script"], "utility-outage");
    assert_eq!(started["title"], "Power outage line");
    assert_eq!(
        steps(&started),
        ["say:welcome", "lookup:by-phone", "ask:postcode_entry"]
    );
    assert_eq!(
        started["steps"][0]["prompt"]["text"],
        "You have reached the Example Energy outage line."
    );
    assert_eq!(history(&started), ["by-phone:lookup"]);
    assert_eq!(started["history"][0]["event"]["found"], false);
    assert_eq!(started["history"][0]["at_ms"], START_MS);
    let q = &started["awaiting"];
    assert_eq!(q["type"], "ask");
    assert_eq!(q["step"], "postcode_entry");
    assert_eq!(
        q["input"],
        json!({"kind": "digits", "min": 5, "max": 5, "terminator": null})
    );
    assert_eq!(started["outcome"], Value::Null);

    // Too short: the script's no-match message, and the question again.
    web.advance(5_000);
    let (status, retry) = web.answer(&t, "12").await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(steps(&retry), ["say:postcode_entry", "ask:postcode_entry"]);
    assert_eq!(
        retry["steps"][0]["prompt"]["text"],
        "A postcode has five digits."
    );
    assert_eq!(retry["awaiting"]["attempt"], 2);
    assert_eq!(history(&retry), ["postcode_entry:no_match"]);

    let (status, house) = web.answer(&t, "12345").await;
    assert_eq!(status, StatusCode::OK, "{house}");
    assert_eq!(steps(&house), ["ask:house_entry"]);
    assert_eq!(house["awaiting"]["input"]["kind"], "number");
    assert_eq!(history(&house), ["postcode_entry:answer"]);
    assert_eq!(house["history"][0]["event"]["value"], "12345");
    assert_eq!(house["history"][0]["at_ms"], START_MS + 5_000);

    let (status, end) = web.answer(&t, "12").await;
    assert_eq!(status, StatusCode::OK, "{end}");
    // Elements without an id are named by their position in the file; compare kinds.
    assert_eq!(
        kinds(&end, "steps", "type"),
        ["run_action", "enqueue", "voicemail", "end"]
    );
    assert_eq!(steps(&end)[..2], ["run_action:check", "enqueue:to-agent"]);
    assert_eq!(
        end["steps"][0]["action"]["url"],
        "https://outages.example.net/api/status?postcode=12345&house=12"
    );
    assert_eq!(end["steps"][1]["queue"], "outages");
    assert_eq!(end["steps"][3]["prompt"]["text"], "Goodbye.");
    let events: Vec<&str> = end["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["answer", "action", "routed", "routed", "ended"]);
    assert_eq!(
        end["history"][2]["event"]["detail"],
        "not available on the web"
    );
    assert_eq!(
        history(&end)[..3],
        ["house_entry:answer", "check:action", "to-agent:routed"]
    );
    assert_eq!(end["history"][1]["event"]["ok"], false);
    // The same runner as calls': it refuses https rather than send it in clear.
    let detail = end["history"][1]["event"]["detail"].as_str().unwrap();
    assert!(detail.contains("https is not supported"), "{detail}");
    assert_eq!(end["awaiting"], Value::Null);
    assert_eq!(
        end["outcome"],
        json!({"kind": "ended", "outcome": "hangup"})
    );

    // Over: another answer is a conflict, and the state still shows the outcome.
    let (status, again) = web.answer(&t, "1").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_of(&again), "the session has finished");
    let (status, shown) = web.get(&format!("/api/sessions/{t}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["outcome"], end["outcome"]);
}

#[tokio::test]
async fn a_session_survives_being_fetched_again_mid_way() {
    let web = Web::shipped();
    let t = token(&web.start("utility-outage").await);
    let (status, _) = web.answer(&t, "12345").await;
    assert_eq!(status, StatusCode::OK);

    // A reload: the open question again, nothing new happened, nothing recorded twice.
    for _ in 0..2 {
        let (status, shown) = web.get(&format!("/api/sessions/{t}")).await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(shown["session"], t.as_str());
        assert_eq!(shown["awaiting"]["step"], "house_entry");
        assert_eq!(
            shown["awaiting"]["prompt"]["text"],
            "Please enter the house number, then press hash."
        );
        assert_eq!(shown["steps"], json!([]));
        assert_eq!(shown["history"], json!([]));
        assert_eq!(shown["outcome"], Value::Null);
    }

    let (status, end) = web.answer(&t, "7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history(&end)[0], "house_entry:answer");
    assert_eq!(end["history"][0]["event"]["value"], 7);
}

#[tokio::test]
async fn unknown_scripts_and_agent_scripts_are_not_found() {
    let web = Web::shipped();
    for id in ["no-such-script", "retention"] {
        let (status, reply) = web
            .send(
                Request::post(format!("/api/scripts/{id}/sessions"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_of(&reply), format!("no self-service script `{id}`"));
    }
}

#[tokio::test]
async fn unknown_sessions_are_not_found() {
    let web = Web::shipped();
    let missing = "0123456789abcdef0123456789abcdef";
    let (status, reply) = web.get(&format!("/api/sessions/{missing}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&reply).contains("no such session"));
    let (status, reply) = web.answer(missing, "1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&reply).contains("no such session"));
}

#[tokio::test]
async fn bad_bodies_get_a_status_and_a_message() {
    let web = Web::shipped();
    let t = token(&web.start("utility-outage").await);
    let uri = format!("/api/sessions/{t}/input");

    let (status, reply) = web.post(&uri, "{\"answer\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&reply).contains("EOF"), "{reply}");

    let (status, reply) = web.post(&uri, r#"{"anwser": "12345"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&reply).contains("anwser"), "{reply}");

    let (status, reply) = web.post(&uri, r#"{"answer": 12345}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&reply).contains("invalid type"), "{reply}");

    let plain = Request::post(&uri)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("12345"))
        .unwrap();
    let (status, reply) = web.send(plain).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error_of(&reply).contains("application/json"), "{reply}");

    let huge = json!({ "answer": "1".repeat(MAX_BODY_BYTES) }).to_string();
    let (status, reply) = web.post(&uri, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!error_of(&reply).is_empty());

    // None of that touched the session: the question is still open at attempt 1.
    let (status, shown) = web.get(&format!("/api/sessions/{t}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["awaiting"]["step"], "postcode_entry");
    assert_eq!(shown["awaiting"]["attempt"], 1);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let web = Web::shipped();
    let (status, reply) = web.get("/api/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&reply), "no such page");
    let (status, reply) = web.post("/api/scripts", "{}").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_of(&reply), "method not allowed here");
    let delete = Request::builder()
        .method(Method::DELETE)
        .uri("/api/sessions/abc")
        .body(Body::empty())
        .unwrap();
    assert_eq!(web.send(delete).await.0, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let web = Web::shipped();
    let t = token(&web.start("utility-outage").await);
    let idle = i64::try_from(DEFAULT_IDLE_EXPIRY.as_millis()).unwrap();
    web.advance(idle);
    let (status, _) = web.get(&format!("/api/sessions/{t}")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "exactly the expiry is still in time"
    );
    web.advance(idle + 1);
    let (status, reply) = web.answer(&t, "12345").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&reply).contains("expired"));
}

#[tokio::test]
async fn a_full_store_drops_the_longest_idle_session() {
    let limits = SessionLimits {
        max_sessions: 2,
        idle_expiry: DEFAULT_IDLE_EXPIRY,
    };
    let web = Web::with_limits(shipped_scripts(), limits);
    let first = token(&web.start("utility-outage").await);
    web.advance(1_000);
    let second = token(&web.start("utility-outage").await);
    web.advance(1_000);
    let third = token(&web.start("utility-outage").await);
    assert_eq!(
        web.get(&format!("/api/sessions/{first}")).await.0,
        StatusCode::NOT_FOUND
    );
    for t in [second, third] {
        assert_eq!(
            web.get(&format!("/api/sessions/{t}")).await.0,
            StatusCode::OK
        );
    }
}

fn library_of(xml: &str) -> Library {
    Library::new([load_str("t.xml", xml, &AnyAudio)
        .expect("a valid script")
        .script])
    .expect("a library")
}

/// Every step that needs the host gets a reply, so the visitor is never left
/// waiting on something the web cannot do.
#[tokio::test]
async fn the_web_host_answers_logs_recordings_and_routing() {
    let web = Web::new(library_of(
        r#"<script version="1" id="host" title="Host steps" channels="web">
          <log id="note">Visitor arrived</log>
          <record id="message"><prompt>Describe the problem.</prompt></record>
          <transfer id="out" number="+15550100">One moment.</transfer>
          <ask id="name" input="text"><prompt>Your name?</prompt></ask>
          <end outcome="done">Thanks {{ answers.name }}.</end>
        </script>"#,
    ));
    let started = web.start("host").await;
    let log = started["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["step"] == "note")
        .expect("the log action is in the history");
    assert_eq!(log["event"]["ok"], true);
    assert!(history(&started).contains(&"message:unanswered".to_owned()));
    assert!(history(&started).contains(&"out:routed".to_owned()));
    assert_eq!(started["awaiting"]["step"], "name");
    assert_eq!(started["awaiting"]["input"]["kind"], "text");

    let (status, end) = web.answer(&token(&started), "Ada").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(end["steps"][0]["prompt"]["text"], "Thanks Ada.");
    assert_eq!(end["outcome"], json!({"kind": "ended", "outcome": "done"}));
}

#[tokio::test]
async fn a_script_looping_through_the_host_is_stopped_not_hung() {
    let web = Web::new(library_of(
        r#"<script version="1" id="loop" channels="web">
          <webhook id="w" method="GET" url="https://example.net/status">
            <on-error><goto target="w"/></on-error>
          </webhook>
        </script>"#,
    ));
    let started = web.start("loop").await;
    assert_eq!(started["outcome"]["kind"], "failed");
    assert!(
        started["outcome"]["message"]
            .as_str()
            .unwrap()
            .contains("without asking anything")
    );
    assert_eq!(started["awaiting"], Value::Null);
    let (status, _) = web.answer(&token(&started), "hello").await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn sensitive_answers_are_withheld_from_the_history() {
    let web = Web::new(library_of(
        r#"<script version="1" id="pin" channels="web">
          <ask id="pin" input="digits" min-length="4" max-length="4" sensitive="true">
            <prompt>PIN?</prompt>
          </ask>
        </script>"#,
    ));
    let started = web.start("pin").await;
    assert_eq!(started["awaiting"]["sensitive"], true);
    let (_, end) = web.answer(&token(&started), "1234").await;
    assert_eq!(end["history"][0]["event"]["value"], script_engine::WITHHELD);
    assert!(!end.to_string().contains("1234"));
}

#[tokio::test]
async fn the_page_is_served_and_uses_the_endpoints() {
    let web = Web::shipped();
    for path in ["/", "/self-service"] {
        let response = web
            .app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(html.starts_with("<!doctype html>"));
        for needle in [
            "/api/scripts",
            "/sessions/",
            "/input",
            "<meta name=\"viewport\"",
            "aria-live",
        ] {
            assert!(html.contains(needle), "the page lacks {needle}");
        }
        // No external assets: everything the page needs is inline.
        assert!(!html.contains("src=\"http"), "external script or image");
        assert!(!html.contains("<link"), "external stylesheet");
    }
}
