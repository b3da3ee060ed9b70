//! The screen pop with an external CRM (issue 6): a caller the local store does not
//! know reaches the agent with the CRM's record, whether the CRM is an HTTP service
//! (an in-test axum server) or a table in another SQLite database; a CRM that hangs
//! neither stops the offer nor holds up another caller's.

use std::sync::{Arc, Mutex};

use agent_gateway::proto::agent::{self as pb, AgentEvent, CallOffered, agent_event::Kind};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use comm_server::sip::message::Method;
use comm_server::store::NewCustomer;
use e2e::desk::{agent_client, caller_as, login, next_call_event, set_status, stream};
use e2e::{Rtp, Server, Ua, base_config, temp_dir};
use serde_json::{Value as Json, json};
use tokio::sync::Notify;
use tonic::Streaming;

/// Grace is known only to the CRM, Ada to both; the CRM holds Hedy's request until
/// the test releases it.
const GRACE: &str = "+442079460958";
const ADA: &str = "+442079460001";
const HEDY: &str = "+442079460002";

/// A number the CRM was asked for, and the API key it came with.
type Asked = (String, Option<String>);

/// The in-test CRM: who asked for what, with which API key.
#[derive(Clone, Default)]
struct Crm {
    asked: Arc<Mutex<Vec<Asked>>>,
    release: Arc<Notify>,
}

async fn contacts(
    State(crm): State<Crm>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, axum::Json<Json>) {
    let phone = q.get("phone").cloned().unwrap_or_default();
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    crm.asked.lock().unwrap().push((phone.clone(), key));
    let person = |name: &str, id: &str| json!({"contact": {"name": name, "id": id, "account": "A-1906", "tier": "gold"}});
    match phone.as_str() {
        GRACE => (StatusCode::OK, axum::Json(person("Grace Hopper", "c-17"))),
        ADA => (StatusCode::OK, axum::Json(person("Ada (CRM)", "c-1"))),
        HEDY => {
            crm.release.notified().await;
            (StatusCode::OK, axum::Json(person("Hedy Lamarr", "c-3")))
        }
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({}))),
    }
}

async fn serve_crm() -> (Crm, std::net::SocketAddr) {
    let crm = Crm::default();
    let app = axum::Router::new()
        .route("/contacts", axum::routing::get(contacts))
        .with_state(crm.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (crm, addr)
}

/// Agents bob and alice (passwords `NAME-pw`) serve "support" on 800; `customers`
/// is the `[customers.*]` part.
fn config(customers: &str) -> String {
    let hash = |pw: &str| agent_gateway::password::hash(pw).unwrap();
    let extra = format!(
        r#"
[customers]
default-country-code = "44"
{customers}

[[queue]]
name = "support"
wrap-up = "30s"
ring-timeout = "15s"

[[agent]]
name = "bob"
queues = ["support"]
password-hash = "{}"

[[agent]]
name = "alice"
queues = ["support"]
password-hash = "{}"

[[route]]
number = "800"
target = {{ queue = "support" }}
"#,
        hash("bob-pw"),
        hash("alice-pw"),
    );
    base_config(&temp_dir(), &extra)
}

fn http_crm(addr: std::net::SocketAddr, timeout: &str) -> String {
    format!(
        r#"
[customers.http]
url = "http://{addr}/contacts?phone={{e164}}"
timeout = "{timeout}"
headers = {{ X-Api-Key = "k-123" }}
fields = {{ name = "/contact/name", id = "/contact/id", account = "/contact/account", attributes = {{ tier = "/contact/tier" }} }}
"#
    )
}

/// An available agent: its phone, and its desktop's event stream.
async fn agent(s: &Server, name: &str) -> (Ua, Streaming<AgentEvent>) {
    let rtp = Rtp::bind().await.unwrap();
    let mut phone = Ua::new(name, &format!("{name}-pw"), s.udp).await.unwrap();
    phone.media_port = rtp.port();
    assert_eq!(phone.register(600).await.unwrap().status, 200);
    let mut c = agent_client(s).await;
    let token = login(&mut c, name, &format!("{name}-pw")).await;
    let events = stream(&mut c, &token, None).await;
    set_status(&mut c, &token, pb::AgentStatus::Available).await;
    (phone, events)
}

async fn offer(events: &mut Streaming<AgentEvent>) -> CallOffered {
    match next_call_event(events).await.kind {
        Some(Kind::CallOffered(offer)) => offer,
        other => panic!("expected an offer, got {other:?}"),
    }
}

fn popped_name(offer: &CallOffered) -> Option<String> {
    let pop = offer.screen_pop.as_ref().expect("a screen pop");
    pop.customer.as_ref().map(|c| c.name.clone())
}

async fn add_ada(s: &Server) {
    s.store
        .upsert_customer(
            &NewCustomer {
                name: "Ada Lovelace".into(),
                phones: vec![ADA.into()],
                ..NewCustomer::default()
            },
            1_000,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_caller_only_the_crm_knows_pops_with_the_crms_record_and_local_ones_skip_it() {
    let (crm, addr) = serve_crm().await;
    let s = Server::start(&config(&http_crm(addr, "2s"))).await.unwrap();
    add_ada(&s).await;
    let (_bob, mut events) = agent(&s, "bob").await;

    // The caller ID arrives in national form; the CRM is asked in E.164.
    let (_grace, _d) = caller_as(&s, "02079460958", "800").await;
    let offered = offer(&mut events).await;
    let pop = offered.screen_pop.unwrap();
    let card = pop.customer.expect("the CRM's record");
    assert_eq!(card.name, "Grace Hopper");
    assert_eq!(card.id, "crm:c-17");
    assert_eq!(card.account, "A-1906");
    assert_eq!(card.attributes["tier"], "gold");
    assert_eq!(card.phone_numbers, [GRACE]);
    assert_eq!(
        crm.asked.lock().unwrap().as_slice(),
        [(GRACE.to_string(), Some("k-123".to_string()))]
    );

    // Ada is in the local store: local-first shows that record and asks no CRM.
    let (_alice, mut alice_events) = agent(&s, "alice").await;
    let (_ada, _d2) = caller_as(&s, "02079460001", "800").await;
    let offered = offer(&mut alice_events).await;
    assert_eq!(popped_name(&offered).as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        crm.asked.lock().unwrap().len(),
        1,
        "the CRM was not asked for Ada"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn with_crm_first_the_crms_name_wins_over_the_local_record() {
    let (_crm, addr) = serve_crm().await;
    // `lookup-order` belongs to [customers], before the subtable.
    let customers = format!("lookup-order = \"crm-first\"\n{}", http_crm(addr, "2s"));
    let s = Server::start(&config(&customers)).await.unwrap();
    add_ada(&s).await;
    let (_bob, mut events) = agent(&s, "bob").await;
    let (_ada, _d) = caller_as(&s, "02079460001", "800").await;
    let offered = offer(&mut events).await;
    let card = offered.screen_pop.unwrap().customer.unwrap();
    assert_eq!(card.name, "Ada (CRM)");
    assert_ne!(card.id, "crm:c-1", "the local record's id is kept");
    assert_eq!(card.attributes["tier"], "gold");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_crm_that_hangs_past_its_timeout_still_lets_the_offer_through() {
    let (crm, addr) = serve_crm().await;
    let s = Server::start(&config(&http_crm(addr, "300ms")))
        .await
        .unwrap();
    let (mut bob, mut events) = agent(&s, "bob").await;
    let (_hedy, _d) = caller_as(&s, "02079460002", "800").await;
    bob.request(Method::Invite).await.unwrap();
    let offered = offer(&mut events).await;
    let pop = offered.screen_pop.as_ref().unwrap();
    assert_eq!(pop.caller_number, "02079460002");
    assert_eq!(pop.customer, None, "the CRM never answered");
    assert_eq!(crm.asked.lock().unwrap().len(), 1);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_crm_lookup_does_not_hold_up_another_callers_offer() {
    let (crm, addr) = serve_crm().await;
    // Far longer than the test waits for anything: only the release ends Hedy's lookup.
    let s = Server::start(&config(&http_crm(addr, "60s")))
        .await
        .unwrap();
    let (mut bob, mut bob_events) = agent(&s, "bob").await;
    let (_hedy, _d) = caller_as(&s, "02079460002", "800").await;
    // Bob's phone rings for Hedy while the CRM still holds her lookup.
    bob.request(Method::Invite).await.unwrap();

    let (_alice, mut alice_events) = agent(&s, "alice").await;
    let (_grace, _d2) = caller_as(&s, "02079460958", "800").await;
    let grace = offer(&mut alice_events).await;
    assert_eq!(popped_name(&grace).as_deref(), Some("Grace Hopper"));
    assert!(
        crm.asked.lock().unwrap().iter().any(|(p, _)| p == HEDY),
        "Hedy's lookup is under way"
    );

    // Released, Hedy's pop reaches bob's desktop with her record.
    crm.release.notify_one();
    let hedy = offer(&mut bob_events).await;
    assert_eq!(popped_name(&hedy).as_deref(), Some("Hedy Lamarr"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_caller_in_a_foreign_crm_table_pops_with_its_row() {
    use sqlx::Connection as _;
    let dir = temp_dir();
    let db = dir.join("crm.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", db.display()))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE crm_contacts (tel TEXT, full_name TEXT, acct INTEGER, region TEXT)",
        "INSERT INTO crm_contacts VALUES ('02079460958', 'Grace Hopper', 1906, 'north')",
        "INSERT INTO crm_contacts VALUES ('+442079460001', 'Ada Lovelace', 1815, NULL)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let customers = format!(
        r#"
[customers.sql]
url = "sqlite://{}"
table = "crm_contacts"
phone-column = "tel"
name-column = "full_name"
account-column = "acct"
attribute-columns = ["region"]
"#,
        db.display()
    );
    let s = Server::start(&config(&customers)).await.unwrap();
    let (_bob, mut events) = agent(&s, "bob").await;
    // Stored in national form, called from an international one.
    let (_grace, _d) = caller_as(&s, "00442079460958", "800").await;
    let offered = offer(&mut events).await;
    let card = offered
        .screen_pop
        .unwrap()
        .customer
        .expect("the table's row");
    assert_eq!(card.name, "Grace Hopper");
    assert_eq!(card.account, "1906");
    assert_eq!(card.attributes["region"], "north");
    assert_eq!(card.id, "crm:", "no id column mapped");
    s.stop().await.unwrap();
}
