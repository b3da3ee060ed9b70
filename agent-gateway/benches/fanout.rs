//! Offer-to-desktop latency with 1,000 agents and 100 supervisors connected (issue 6).
//!
//! A gateway on loopback with a stub backend; 1,000 agent clients (one HTTP/2
//! connection each, as 1,000 desktops would have) log in and hold their event stream,
//! 100 supervisor clients hold the status stream. The bench publishes into the
//! [`EventHub`] exactly what the ACD driver publishes when it offers a call (one
//! `CallOffered` to the agent, one `AgentView` to every supervisor) and measures, at
//! each client, the time from `publish_agent` to the event arriving (the publish
//! instant rides in the call id; clients and server share the process clock).
//!
//! Two loads: every agent offered a call at once (a burst, the worst case), and offers
//! paced at 200 per second (a busy floor). Run: `cargo bench -p agent-gateway`.

use std::sync::Arc;
use std::time::Duration;

use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
use agent_gateway::proto::agent::{
    CallOffered, LoginRequest, ScreenPop, StreamEventsRequest, agent_event::Kind,
};
use agent_gateway::proto::supervisor::supervisor_service_client::SupervisorServiceClient;
use agent_gateway::proto::supervisor::{
    self as sv, AgentView, StreamStatusRequest, status_update::Kind as Update,
};
use agent_gateway::{
    Account, AgentStatus, Backend, BackendError, CallControl, EventHub, Gateway, GatewayConfig,
    Role, SupervisorAction,
};
use argon2::password_hash::PasswordHasher;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Request;
use tonic::transport::Channel;

const AGENTS: usize = 1_000;
const SUPERVISORS: usize = 100;

struct Stub {
    hash: String,
}

impl Backend for Stub {
    fn account(&self, role: Role, login: &str) -> Option<Account> {
        Some(Account {
            login: login.to_string(),
            role,
            password_hash: self.hash.clone(),
        })
    }
    fn unix_ms(&self) -> i64 {
        0
    }
    async fn status(&self, _: &str) -> Result<AgentStatus, BackendError> {
        Ok(AgentStatus::Available)
    }
    async fn set_status(&self, _: &str, _: AgentStatus) -> Result<(), BackendError> {
        Ok(())
    }
    async fn agent_unreachable(&self, _: &str) {}
    async fn call_control(&self, _: &str, _: &str, _: CallControl) -> Result<(), BackendError> {
        Ok(())
    }
    async fn disposition(&self, _: &str, _: &str, _: &str, _: &str) -> Result<(), BackendError> {
        Ok(())
    }
    async fn snapshot(&self) -> Result<sv::Snapshot, BackendError> {
        Ok(sv::Snapshot::default())
    }
    async fn supervise(&self, _: &str, _: &str, _: SupervisorAction) -> Result<(), BackendError> {
        Ok(())
    }
}

fn bearer<T>(token: &str, m: T) -> Request<T> {
    let mut r = Request::new(m);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

/// Nanoseconds since `base`, carried in ids.
fn stamp(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

fn latency(base: Instant, id: &str) -> Option<Duration> {
    let sent: u64 = id.rsplit(':').next()?.parse().ok()?;
    Some(base.elapsed().saturating_sub(Duration::from_nanos(sent)))
}

fn percentiles(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    println!(
        "{name:<44} n={:>6}  p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        v.len(),
        at(0.50),
        at(0.99),
        v[v.len() - 1]
    );
}

#[tokio::main]
async fn main() {
    // A cheap argon2 hash: 1,100 logins are not what is measured here.
    let params = argon2::Params::new(8, 1, 1, None).expect("params");
    let cheap = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let hash = cheap.hash_password(b"pw").expect("hash").to_string();
    let hub = Arc::new(EventHub::default());
    let gateway = Gateway::new(
        Arc::new(Stub { hash }),
        hub.clone(),
        GatewayConfig {
            // 1,100 clients log in from one loopback address; that is the setup,
            // not what is measured.
            limits: agent_gateway::LimitConfig {
                logins_per_minute: 0,
                ..agent_gateway::LimitConfig::default()
            },
            ..GatewayConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    let base = Instant::now();

    let (agent_tx, mut agent_rx) = mpsc::unbounded_channel::<Duration>();
    let (sup_tx, mut sup_rx) = mpsc::unbounded_channel::<Duration>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let connect_start = Instant::now();
    // Desktops log in over minutes, not in one instant: at most 50 connecting at once
    // (1,100 simultaneous handshakes overflow loopback's accept backlog).
    let gate = Arc::new(tokio::sync::Semaphore::new(50));
    for i in 0..AGENTS {
        let (tx, ready, gate) = (agent_tx.clone(), ready_tx.clone(), gate.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("gate");
            let channel = Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect");
            let mut c = AgentServiceClient::new(channel);
            let token = c
                .login(LoginRequest {
                    agent_id: format!("agent-{i}"),
                    password: "pw".into(),
                })
                .await
                .expect("login")
                .into_inner()
                .token;
            let mut events = c
                .stream_events(bearer(&token, StreamEventsRequest { resume_after: None }))
                .await
                .expect("stream")
                .into_inner();
            drop(permit);
            let _ = ready.send(());
            while let Ok(Some(e)) = events.message().await {
                if let Some(Kind::CallOffered(o)) = e.kind
                    && let Some(d) = latency(base, &o.call_id)
                {
                    let _ = tx.send(d);
                }
            }
        });
    }
    for i in 0..SUPERVISORS {
        let (tx, ready, gate) = (sup_tx.clone(), ready_tx.clone(), gate.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("gate");
            let channel = Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect");
            let mut c = SupervisorServiceClient::new(channel);
            let token = c
                .login(sv::LoginRequest {
                    supervisor_id: format!("sup-{i}"),
                    password: "pw".into(),
                })
                .await
                .expect("login")
                .into_inner()
                .token;
            let mut updates = c
                .stream_status(bearer(&token, StreamStatusRequest {}))
                .await
                .expect("stream")
                .into_inner();
            drop(permit);
            let _ = ready.send(());
            while let Ok(Some(u)) = updates.message().await {
                if let Some(Update::Agent(a)) = u.kind
                    && let Some(d) = latency(base, &a.current_call_id)
                {
                    let _ = tx.send(d);
                }
            }
        });
    }
    for n in 0..AGENTS + SUPERVISORS {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(())) => {}
            _ => panic!("only {n} of {} clients connected", AGENTS + SUPERVISORS),
        }
    }
    println!(
        "{AGENTS} agent and {SUPERVISORS} supervisor streams open in {:.2?}",
        connect_start.elapsed()
    );

    let offer = |hub: &EventHub, round: usize, i: usize| {
        let call_id = format!("{round}-{i}:{}", stamp(base));
        hub.publish_agent(
            &format!("agent-{i}"),
            0,
            Kind::CallOffered(CallOffered {
                call_id: call_id.clone(),
                screen_pop: Some(ScreenPop {
                    caller_number: "+442079460958".into(),
                    queue: "support".into(),
                    ..ScreenPop::default()
                }),
                ring_timeout_ms: 20_000,
                preview: false,
            }),
        );
        hub.publish_supervisor(sv::StatusUpdate {
            at_unix_ms: 0,
            kind: Some(Update::Agent(AgentView {
                agent_id: format!("agent-{i}"),
                current_call_id: call_id,
                ..AgentView::default()
            })),
        });
    };
    let collect = async |rx: &mut mpsc::UnboundedReceiver<Duration>, n: usize| {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(d)) => v.push(d),
                _ => break,
            }
        }
        v
    };

    // Burst: every agent offered a call at the same moment, three times.
    let mut agents_burst = Vec::new();
    let mut sups_burst = Vec::new();
    for round in 0..3 {
        for i in 0..AGENTS {
            offer(&hub, round, i);
        }
        agents_burst.extend(collect(&mut agent_rx, AGENTS).await);
        sups_burst.extend(collect(&mut sup_rx, AGENTS * SUPERVISORS).await);
    }
    // Paced: 200 offers a second for 10 seconds, round-robin over the agents.
    let paced_offers = 2_000;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let (agents_paced, sups_paced) = {
        let agents = collect(&mut agent_rx, paced_offers);
        let sups = collect(&mut sup_rx, paced_offers * SUPERVISORS);
        let publish = async {
            for n in 0..paced_offers {
                tick.tick().await;
                offer(&hub, 10 + n / AGENTS, n % AGENTS);
            }
        };
        let ((), a, s) = tokio::join!(publish, agents, sups);
        (a, s)
    };

    println!(
        "offer -> event at the client (loopback, one process, {} cores):",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    percentiles("burst: 1,000 offers at once, agent stream", agents_burst);
    percentiles("burst: the same to 100 supervisor streams", sups_burst);
    percentiles("paced: 200 offers/s, agent stream", agents_paced);
    percentiles("paced: the same to 100 supervisor streams", sups_paced);
}
