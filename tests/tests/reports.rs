//! Operations and reports end to end: `/metrics` read by a Prometheus text parser moves
//! as calls are made, `/readyz` follows the drain, and the report computed from the
//! durable ACD event log counts the calls the test made through a queue.

use std::time::Duration;

use comm_server::reports::{self, Period, Settings};
use comm_server::sip::message::Method;
use e2e::{Rtp, Server, Ua, WAIT, base_config, carries, sdp_audio_addr, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACD: &str = r#"
[[queue]]
name = "support"
wrap-up = "2s"
ring-timeout = "5s"

[[agent]]
name = "bob"
queues = ["support"]

[[route]]
number = "800"
target = { queue = "support" }
"#;

/// One HTTP/1.1 GET; the status code and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

/// `/metrics`, parsed: the value of `name` with these labels (0 when absent).
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    async fn take(s: &Server) -> Scrape {
        let (status, body) = get(s.http, "/metrics").await;
        assert_eq!(status, 200);
        let lines = body.lines().map(|l| Ok(l.to_string()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("valid exposition"))
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus_parse::Value;
        let found =
            self.0.samples.iter().find(|s| {
                s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            });
        match found.map(|s| &s.value) {
            Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
            Some(other) => panic!("{name} is {other:?}"),
            None => panic!("{name} {labels:?} missing"),
        }
    }
}

/// Scrapes until `check` holds, or fails after [`WAIT`].
async fn until(s: &Server, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let scrape = Scrape::take(s).await;
        if check(&scrape) {
            return scrape;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers an agent's phone and makes the agent available (`*1`).
async fn agent(s: &Server, name: &str) -> (Ua, Rtp) {
    e2e::available_agent(s, name).await
}

/// A caller dials the queue and is answered by it (music while waiting).
async fn caller(s: &Server) -> (Ua, Rtp, std::net::SocketAddr, e2e::Dialog) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new("customer", "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite("800").await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "the queue answers the caller");
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    (ua, rtp, sdp_audio_addr(&ok.body).unwrap(), d)
}

/// The agent answers the next offer, the two talk, the caller hangs up.
async fn answered_call(s: &Server, bob: &mut Ua, bob_rtp: &mut Rtp) {
    let (mut customer, mut customer_rtp, to_server, mut d) = caller(s).await;
    let offer = bob.request(Method::Invite).await.unwrap();
    bob.reply(&offer, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    let to_server_from_bob = sdp_audio_addr(&offer.body).unwrap();
    let _ = customer_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await; // music tail
    carries(&mut customer_rtp, to_server, bob_rtp).await;
    carries(bob_rtp, to_server_from_bob, &customer_rtp).await;
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();
}

#[tokio::test]
async fn metrics_move_with_calls_and_readyz_follows_the_drain() {
    let mut s = Server::start(&base_config(&temp_dir(), ACD)).await.unwrap();
    assert_eq!(get(s.http, "/healthz").await, (200, "ok\n".into()));
    let deadline = tokio::time::Instant::now() + WAIT;
    while get(s.http, "/readyz").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = Scrape::take(&s).await;
    assert_eq!(before.value("comm_calls_total", &[]), 0.0);
    assert_eq!(
        before.value(
            "comm_acd_agents",
            &[("status", "logged_out"), ("state", "idle")]
        ),
        1.0
    );

    let (mut bob, mut bob_rtp) = agent(&s, "bob").await;
    until(&s, "bob available", |m| {
        m.value(
            "comm_acd_agents",
            &[("status", "available"), ("state", "idle")],
        ) == 1.0
    })
    .await;

    answered_call(&s, &mut bob, &mut bob_rtp).await;
    let after = until(&s, "the call counted and its RTP totalled", |m| {
        m.value("comm_calls_in_progress", &[]) == 0.0
            && m.value("comm_rtp_jitter_seconds_count", &[]) >= 2.0
    })
    .await;
    // *1 (its challenged first INVITE is not a call) and the queue call.
    assert_eq!(after.value("comm_calls_total", &[]), 2.0);
    assert!(after.value("comm_rtp_packets_received_total", &[]) > 0.0);
    assert!(after.value("comm_rtp_packets_sent_total", &[]) > 0.0);
    assert_eq!(after.value("comm_rtp_packets_lost_total", &[]), 0.0);
    // REGISTER, *1, the INVITE and BYEs were answered 200; the challenges were 401.
    assert!(after.value("comm_sip_responses_sent_total", &[("class", "2xx")]) >= 4.0);
    assert!(after.value("comm_sip_responses_sent_total", &[("class", "4xx")]) >= 1.0);

    // Bob wraps up for 2 s: a second caller waits, and the queue gauges show it.
    let (mut customer, _rtp, _to, mut d) = caller(&s).await;
    let waiting = until(&s, "a caller waiting", |m| {
        m.value("comm_acd_queue_waiting", &[("queue", "support")]) == 1.0
    })
    .await;
    assert_eq!(waiting.value("comm_calls_in_progress", &[]), 1.0);
    assert_eq!(
        waiting.value(
            "comm_acd_agents",
            &[("status", "available"), ("state", "wrap_up")]
        ),
        1.0
    );

    // Draining with the call in progress: not ready, still alive.
    s.begin_shutdown();
    let deadline = tokio::time::Instant::now() + WAIT;
    while get(s.http, "/readyz").await.0 != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready while draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(s.http, "/healthz").await.0, 200);
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    s.stopped().await.unwrap();
}

#[tokio::test]
async fn the_report_from_the_event_log_counts_the_calls_made_through_the_queue() {
    let s = Server::start(&base_config(&temp_dir(), ACD)).await.unwrap();
    let (mut bob, mut bob_rtp) = agent(&s, "bob").await;

    // Answered; then, while bob wraps up, a caller gives up; then answered again.
    answered_call(&s, &mut bob, &mut bob_rtp).await;
    let (mut quitter, _rtp, _to, mut d) = caller(&s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(quitter.bye(&mut d).await.unwrap().status, 200);
    answered_call(&s, &mut bob, &mut bob_rtp).await;

    // Stopping flushes the event log.
    let data_dir = s.data_dir.clone();
    s.stop().await.unwrap();
    let store = Server::reopen_store(&data_dir).await.unwrap();
    let records = store.acd_events_between(0, i64::MAX).await.unwrap();

    // By hour over the two hours around the calls: the intervals' rows add up to
    // the same three calls (one request, as the reports page's hourly chart makes).
    let hour = 3_600_000;
    let first = records.first().expect("events").at_ms / hour * hour;
    let query = comm_server::server::reports::ReportQuery {
        kind: comm_server::server::reports::Kind::Calls,
        period: Period {
            from_ms: first,
            to_ms: first + 2 * hour,
        },
        settings: Settings::default(),
        only: None,
        campaigns: Vec::new(),
        interval: Some(Duration::from_secs(3600)),
    };
    let (columns, rows) = comm_server::server::reports::compute(&store, &query)
        .await
        .unwrap();
    assert_eq!(columns[..2], ["interval_start", "queue"]);
    let offered = columns.iter().position(|c| c == "offered").unwrap();
    let total: u64 = rows
        .iter()
        .map(|r| match r[offered] {
            reports::format::Cell::Count(n) => n,
            ref other => panic!("offered is a count, not {other:?}"),
        })
        .sum();
    assert_eq!(total, 3, "{rows:?}");
    store.close().await;
    let events = reports::log::parse_all(&records).unwrap();
    let everything = Period {
        from_ms: 0,
        to_ms: i64::MAX,
    };
    let settings = Settings::default();

    let queues = reports::call_report(&events, everything, &settings);
    assert_eq!(queues.len(), 1, "{queues:?}");
    let support = &queues[0];
    assert_eq!(support.queue, "support");
    assert_eq!(support.offered, 3);
    assert_eq!(support.answered, 2);
    assert_eq!(support.abandoned, 1);
    assert_eq!(support.abandoned_short, 1, "gave up after about 300 ms");
    assert_eq!(support.overflowed, 0);
    assert_eq!(support.transferred, 0);
    assert_eq!(support.handled, 2);
    // Each answered within the 20 s threshold (the second once wrap-up ended).
    assert_eq!(support.answered_in_threshold, 2);
    assert_eq!(support.service_level(), Some(2.0 / 3.0));
    assert!(support.talk > Duration::ZERO);
    // The first call's wrap-up ran its 2 s; the last one's ended at shutdown, or not.
    assert!(support.wrap_ups >= 1);
    assert!(
        support.wrap_up >= Duration::from_millis(1900),
        "{support:?}"
    );

    let agents = reports::agent_report(&events, everything, &settings);
    let bob = agents.iter().find(|a| a.agent == "bob").expect("bob");
    assert_eq!(bob.answered, 2);
    assert_eq!(bob.not_answered, 0);
    assert_eq!(bob.handled, 2);
    assert_eq!(bob.talk, support.talk);
    assert!(bob.on_call >= bob.talk.saturating_sub(Duration::from_millis(50)));
    assert!(bob.logged_in > Duration::ZERO);
}
