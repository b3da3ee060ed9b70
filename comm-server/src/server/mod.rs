//! The running server: sockets, tasks and clocks around the pure cores.
//!
//! Owns: the UDP socket and TCP connections (framing), the endpoint task (the one
//! place that feeds the SIP transaction core and dispatches its events), one task per
//! call driving a [`crate::call::Call`], the registrar tasks, CDR writing, and the
//! shutdown sequence: stop intake (INVITE/OPTIONS get 503 + Retry-After), let calls in
//! progress finish for the grace period, then hang up the rest and exit.
//! Must not own: protocol decisions (they are in `sip::endpoint`, `call`, `registrar`).
//!
//! ```text
//!  UDP/TCP readers --Inbound--> endpoint task --CallInput--> call task (one per call)
//!                               ^    |  \--spawn--> registrar task --Command-->+
//!                               |    '--send_to / conn writer                  |
//!                               +-------------------Command-------------------+
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::call::{Action, AnchoredMedia, Call, CallSettings, Destination, HungUpBy, Leg};
use crate::config::{Config, Target, Trunk};
use crate::ivr::{Ivr, IvrAction};
use crate::media::driver::{EngineConfig, EngineEvent, LegId, MediaEngine, PortRange};
use crate::media::prompt::{Prompt, PromptLibrary};
use crate::media::sdp::{self, LocalMedia, Negotiated};
use crate::media::session::{MediaAction, MediaCommand, SessionConfig};
use crate::registrar::{self, Registrar};
use crate::sip::endpoint::{Endpoint, Event, Flow, Timers, TxId};
use crate::sip::header;
use crate::sip::message::{self, Framing, Method, Request, Response};
use crate::store::{self, Cdr, Direction, EndReason, Store};
use crate::time::{Clock, SystemClock};
use script_engine::Library;
use std::sync::atomic::{AtomicU64, Ordering};

mod acd;
mod agent_script;
mod call_control;
mod call_task;
mod callback;
mod callback_call;
mod campaign;
mod campaign_board;
mod contact;
mod event_log;
pub mod gateway;
mod mwi;
mod outbound;
mod preview;
pub mod reports;
mod routing;
mod screen_pop;
mod script_routing;
mod startup;
mod supervision;
mod transport;
mod trunk;
mod voicemail;
mod voicemail_mail;
mod voicemail_work;

use acd::*;
use call_task::*;
use contact::*;
use event_log::EventLog;
use routing::*;
use script_routing::IvrOutcome;
use startup::*;
use transport::*;
use trunk::*;
use voicemail::*;
pub use voicemail::{Reconciled, VoicemailEvent, reconcile};

/// How long hung-up calls get to exchange their BYEs after the grace period.
const HANGUP_DRAIN: Duration = Duration::from_secs(5);
/// How long the exit waits for the ACD event log to write what it holds.
const EVENT_LOG_DRAIN: Duration = Duration::from_secs(5);
/// Bound on queued inbound packets; past it UDP datagrams are dropped (load shedding).
const INBOUND_QUEUE: usize = 8192;
/// A TCP connection that sends nothing for this long is closed (RFC 4475 §3.1.2.2:
/// a Content-Length larger than what arrives must not hold a connection forever).
const TCP_IDLE: Duration = Duration::from_secs(300);

/// Bound sockets, so tests can bind `127.0.0.1:0` and read the ports first.
pub struct Listeners {
    pub udp: Option<UdpSocket>,
    pub tcp: Option<TcpListener>,
    /// The web self-service page and API.
    pub http: Option<TcpListener>,
    /// The agent and supervisor gRPC API.
    pub grpc: Option<TcpListener>,
}

/// TLS for the HTTP and gRPC listeners, from `[tls]`.
#[derive(Clone)]
struct ListenerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    http: bool,
    grpc: bool,
}

impl Listeners {
    pub async fn bind(
        udp: Option<SocketAddr>,
        tcp: Option<SocketAddr>,
    ) -> std::io::Result<Listeners> {
        let udp = match udp {
            Some(a) => Some(UdpSocket::bind(a).await?),
            None => None,
        };
        let tcp = match tcp {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        Ok(Listeners {
            udp,
            tcp,
            http: None,
            grpc: None,
        })
    }

    /// Also listen for HTTP (web self-service).
    pub async fn with_http(mut self, addr: Option<SocketAddr>) -> std::io::Result<Listeners> {
        self.http = match addr {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        Ok(self)
    }

    /// Also listen for gRPC (agent desktops and supervisors).
    pub async fn with_grpc(mut self, addr: Option<SocketAddr>) -> std::io::Result<Listeners> {
        self.grpc = match addr {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        Ok(self)
    }

    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|s| s.local_addr().ok())
    }
}

/// Opens the configured database (SQLite in the data directory unless `[storage] url`
/// says otherwise), creating the data directory and running migrations. The server and
/// offline commands (`import customers`) open it the same way.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    if config.storage.url.is_none() {
        std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
            format!(
                "creating data directory {}",
                config.server.data_dir.display()
            )
        })?;
    }
    Ok(Store::open(&database_url(config)).await?)
}

/// The server, built from a config without binding anything.
pub struct App {
    config: Arc<Config>,
    store: Store,
    clock: Arc<dyn Clock>,
    prompts: Arc<PromptLibrary>,
    scripts: Arc<Library>,
    metrics: Arc<crate::metrics::Metrics>,
    voicemail_events: tokio::sync::broadcast::Sender<VoicemailEvent>,
    /// Fills the screen pop's customer record and history (default: nobody found).
    customer_lookup: gateway::CustomerLookup,
    /// How long an offer's desktop event waits for the lookup.
    lookup_bound: Duration,
    /// Script actions (webhooks, e-mail, customer updates) for calls and the web.
    actions: crate::script_actions::ScriptActions,
}

/// Voicemail events kept for a slow listener before it misses some.
const VOICEMAIL_EVENTS: usize = 256;

impl App {
    /// Opens storage (running migrations) and syncs the configured SIP accounts.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        App::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let store = open_store(&config).await?;
        for u in &config.users {
            let account = match &u.password {
                Some(pw) => registrar::account(
                    u.name.get_ref(),
                    &config.sip.realm,
                    pw,
                    u.display_name.clone(),
                ),
                None => store::SipAccount {
                    username: u.name.get_ref().clone(),
                    realm: config.sip.realm.clone(),
                    ha1_md5: u.ha1_md5.clone().unwrap_or_default(),
                    ha1_sha256: u.ha1_sha256.clone().unwrap_or_default(),
                    display_name: u.display_name.clone(),
                    enabled: true,
                },
            };
            store.upsert_sip_account(&account).await?;
        }
        let (prompts, scripts) = load_references(&config)?;
        let repaired = reconcile(&store, &config.server.data_dir, clock.unix_ms()).await?;
        if repaired != Reconciled::default() {
            tracing::warn!(?repaired, "voicemail index reconciled with the files");
        }
        let plan = config
            .customers
            .dial_plan()
            .map_err(|e| anyhow::anyhow!("[customers]: {e}"))?;
        let metrics: Arc<crate::metrics::Metrics> = Arc::default();
        let directory = crate::crm::Directory::new(
            &config.customers,
            plan.clone(),
            store.clone(),
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("[customers]: {e}"))?;
        let lookup_bound = directory.bound();
        let customer_lookup = screen_pop::directory_lookup(
            Arc::new(directory),
            plan,
            config.customers.screen_pop_history,
        );
        let mailer = match &config.smtp {
            Some(smtp) => Some(crate::mail::Mailer::new(smtp)?),
            None => None,
        };
        let actions =
            crate::script_actions::ScriptActions::new(mailer, Some(store.clone()), clock.clone());
        Ok(App {
            config: Arc::new(config),
            store,
            clock,
            prompts: Arc::new(prompts),
            scripts: Arc::new(scripts),
            metrics,
            voicemail_events: tokio::sync::broadcast::channel(VOICEMAIL_EVENTS).0,
            customer_lookup,
            lookup_bound,
            actions,
        })
    }

    /// Where offers' screen pops find the caller's customer record and history; an
    /// offer's desktop event waits for it at most [`gateway::DEFAULT_LOOKUP_BOUND`].
    pub fn set_customer_lookup(&mut self, lookup: gateway::CustomerLookup) {
        self.customer_lookup = lookup;
        self.lookup_bound = gateway::DEFAULT_LOOKUP_BOUND;
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The live figures served at `/metrics`.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Messages left in mailboxes, as they are stored (hook for callbacks and email).
    pub fn voicemail_events(&self) -> tokio::sync::broadcast::Receiver<VoicemailEvent> {
        self.voicemail_events.subscribe()
    }

    /// The prompts loaded from the sounds directory.
    pub fn prompts(&self) -> &PromptLibrary {
        &self.prompts
    }

    /// Serves until `shutdown` resolves, then drains (see the module docs).
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let cfg = self.config.clone();
        let host = |addr: Option<SocketAddr>| -> String {
            let ip = match (&cfg.sip.public_host, addr) {
                (Some(h), _) => return format!("{h}:{}", addr.map_or(5060, |a| a.port())),
                (None, Some(a)) if a.ip().is_unspecified() => "127.0.0.1".to_string(),
                (None, Some(a)) => a.ip().to_string(),
                (None, None) => "127.0.0.1".to_string(),
            };
            let ip = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip
            };
            format!("{ip}:{}", addr.map_or(5060, |a| a.port()))
        };
        let udp_host = host(listeners.udp_addr());
        let tcp_host = host(listeners.tcp_addr().or(listeners.udp_addr()));
        let settings = CallSettings {
            contact_udp: format!("sip:comm-server@{udp_host}"),
            contact_tcp: format!("sip:comm-server@{tcp_host};transport=tcp"),
            ring_timeout: cfg.sip.ring_timeout.0,
            bye_timeout: Duration::from_secs(32),
        };
        let algorithms = cfg
            .sip
            .digest_algorithms
            .iter()
            .map(|a| match a {
                crate::config::DigestAlgorithm::Md5 => crate::sip::digest::Algorithm::Md5,
                crate::config::DigestAlgorithm::Sha256 => crate::sip::digest::Algorithm::Sha256,
            })
            .collect();
        let registrar = Arc::new(Registrar::new(
            cfg.sip.realm.clone(),
            algorithms,
            cfg.sip.min_expires.0,
            cfg.sip.max_expires.0,
            self.store.clone(),
            self.clock.clone(),
        ));
        let media_ip = media_ip(&cfg, listeners.udp_addr());
        let ports = cfg
            .media
            .port_range()
            .map_err(|e| anyhow::anyhow!("media.rtp-ports: {e}"))?
            .map(|(first, last)| PortRange { first, last });
        let mut engine_config = EngineConfig::new(cfg.media.bind, ports);
        engine_config.clock = self.clock.clone();
        let (engine, media_events, _media_task) = MediaEngine::spawn(engine_config);
        let (event_log, event_log_task) = EventLog::spawn(self.store.clone(), self.metrics.clone());
        let hub = Arc::new(agent_gateway::EventHub::default());
        let campaign_names: Vec<String> = cfg
            .checked_campaigns()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        let campaign_board = Arc::new(campaign_board::CampaignBoard::new(
            hub.clone(),
            self.clock.clone(),
            &campaign_names,
        ));
        let mut desk = gateway::Desk::new(
            hub.clone(),
            self.clock.clone(),
            self.customer_lookup.clone(),
            self.lookup_bound,
        );
        desk.set_zone(cfg.server.zone());
        desk.set_agent_scripts(call_control::agent_scripts(&cfg, &self.scripts));
        let acd = spawn_acd(
            &cfg,
            registrar.clone(),
            event_log,
            self.clock.clone(),
            self.metrics.clone(),
            desk,
        )?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let mwi = mwi::spawn_mwi(
            cfg.clone(),
            self.store.clone(),
            self.clock.clone(),
            cmd_tx.clone(),
            &settings.contact_udp,
            registrar.clone(),
        );
        let (http_stop, http_stopped) = tokio::sync::watch::channel(false);
        let tls = match &cfg.tls {
            Some(t) => Some(ListenerTls {
                acceptor: t.acceptor()?,
                handshake_timeout: t.handshake_timeout.0,
                http: t.http,
                grpc: t.grpc,
            }),
            None => None,
        };
        // One gateway for both listeners: the gRPC port for native clients, and the
        // page listener so the desktop and wallboard pages speak gRPC-web same-origin.
        let has_grpc = listeners.grpc.is_some();
        let gw = (has_grpc || listeners.http.is_some()).then(|| {
            let backend = gateway::ServerBackend::new(
                &cfg,
                acd.clone(),
                self.clock.clone(),
                self.store.clone(),
                campaign_board.clone(),
            )
            .with_agent_scripts(self.scripts.clone(), self.actions.clone())
            .with_voicemail(voicemail_work::AgentVoicemail::new(
                &cfg,
                self.store.clone(),
                acd.clone(),
                mwi.clone(),
                self.clock.clone(),
            ));
            let g = &cfg.grpc;
            let config = agent_gateway::GatewayConfig {
                sessions: agent_gateway::SessionConfig {
                    lease: g.lease.0,
                    lockout_after: g.lockout_after,
                    lockout_for: g.lockout_for.0,
                    session_ttl: g.session_ttl.0,
                },
                request_timeout: g.request_timeout.0,
                limits: g.limits(),
                ..agent_gateway::GatewayConfig::default()
            };
            agent_gateway::Gateway::new(Arc::new(backend), hub, config)
        });
        // `serve` runs the lease task itself; without a gRPC port someone else must.
        let mut leases = None;
        if let (Some(listener), Some(gw)) = (listeners.grpc, gw.clone()) {
            let mut stopped = http_stopped.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                let served = match tls.filter(|t| t.grpc) {
                    Some(t) => {
                        let tls = crate::tls::incoming(listener, t.acceptor, t.handshake_timeout);
                        gw.serve_incoming(tls, shutdown).await
                    }
                    None => gw.serve(listener, shutdown).await,
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "grpc server failed");
                }
            });
        }
        if let Some(listener) = listeners.http {
            let web = crate::web::router(
                crate::web::WebState::new(self.scripts.clone(), self.clock.clone())
                    .with_actions(self.actions.clone()),
            )
            .merge(crate::web::ops_router(crate::web::OpsState {
                metrics: self.metrics.clone(),
                store: self.store.clone(),
            }));
            let web = match &gw {
                Some(gw) => {
                    if !has_grpc {
                        leases = Some(tokio::spawn(gw.clone().run_leases()));
                    }
                    crate::web::desk::with_desk(web, gw.web_routes())
                }
                None => web,
            };
            let mut stopped = http_stopped.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                let served = match tls.filter(|t| t.http) {
                    Some(t) => {
                        let tls = crate::tls::incoming(listener, t.acceptor, t.handshake_timeout);
                        axum::serve(tls, web).with_graceful_shutdown(shutdown).await
                    }
                    None => {
                        axum::serve(listener, web)
                            .with_graceful_shutdown(shutdown)
                            .await
                    }
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "http server failed");
                }
            });
        }
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let udp = listeners.udp.map(Arc::new);
        if let Some(sock) = udp.clone() {
            tokio::spawn(read_udp(sock, inbound_tx.clone()));
        }
        if let Some(l) = listeners.tcp {
            tokio::spawn(accept_tcp(l, inbound_tx.clone()));
        }
        let shared = Arc::new(Shared {
            trunks: cfg.trunks(),
            config: cfg.clone(),
            registrar,
            store: self.store.clone(),
            clock: self.clock.clone(),
            settings,
            engine,
            prompts: self.prompts.clone(),
            scripts: self.scripts.clone(),
            media_ip,
            next_leg: AtomicU64::new(1),
            acd,
            metrics: self.metrics.clone(),
            voicemail_events: self.voicemail_events.clone(),
            actions: self.actions.clone(),
            mwi,
            campaign_board,
        });
        voicemail_work::spawn_voicemail_work(
            cfg.clone(),
            self.store.clone(),
            shared.acd.clone(),
            self.voicemail_events(),
        );
        if let Some(mailer) = self.actions.mailer() {
            tokio::spawn(voicemail_mail::notify(
                self.voicemail_events(),
                cfg.clone(),
                mailer.clone(),
            ));
        }
        let driver = Driver {
            endpoint: Endpoint::new(Timers::default(), udp_host, tcp_host),
            udp,
            tcp_conns: HashMap::new(),
            inbound_tx,
            cmd_tx,
            shared,
            calls: HashMap::new(),
            clients: HashMap::new(),
            dialogs: HashMap::new(),
            invite_owner: HashMap::new(),
            client_txs: HashMap::new(),
            handles: HashMap::new(),
            legs: HashMap::new(),
            next_uid: 1,
            draining: false,
        };
        self.metrics.set_serving(true);
        campaign::spawn_campaigns(&driver.shared, &driver.cmd_tx);
        callback_call::spawn_dialler(&driver.shared, &driver.cmd_tx);
        voicemail::spawn_retention(&driver.shared);
        driver.run(inbound_rx, cmd_rx, media_events, shutdown).await;
        let _ = http_stop.send(true);
        if let Some(leases) = leases {
            leases.abort();
        }
        // The ACD task ends with the last call; its log writer then flushes and stops.
        if tokio::time::timeout(EVENT_LOG_DRAIN, event_log_task)
            .await
            .is_err()
        {
            tracing::warn!("ACD event log still busy at exit; its last events may be lost");
        }
        self.store.close().await;
        Ok(())
    }
}

/// The database the config names: `[storage] url`, or `comm-server.db` in the data
/// directory.
pub fn database_url(config: &Config) -> String {
    match &config.storage.url {
        Some(u) => u.clone(),
        None => format!(
            "sqlite://{}",
            config.server.data_dir.join("comm-server.db").display()
        ),
    }
}

struct Shared {
    config: Arc<Config>,
    trunks: Vec<Trunk>,
    registrar: Arc<Registrar>,
    store: Store,
    clock: Arc<dyn Clock>,
    settings: CallSettings,
    engine: MediaEngine,
    prompts: Arc<PromptLibrary>,
    scripts: Arc<Library>,
    /// Address written into our SDP.
    media_ip: std::net::IpAddr,
    next_leg: AtomicU64,
    acd: mpsc::UnboundedSender<AcdRequest>,
    metrics: Arc<crate::metrics::Metrics>,
    voicemail_events: tokio::sync::broadcast::Sender<VoicemailEvent>,
    actions: crate::script_actions::ScriptActions,
    /// Message-waiting subscriptions (see `mwi.rs`).
    mwi: mpsc::UnboundedSender<mwi::MwiInput>,
    /// The campaigns' live status for supervisors (see `campaign_board.rs`).
    campaign_board: Arc<campaign_board::CampaignBoard>,
}

enum Inbound {
    Packet {
        flow: Flow,
        bytes: Vec<u8>,
    },
    TcpOpened {
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    TcpClosed {
        peer: SocketAddr,
    },
}

enum Command {
    Respond {
        tx: TxId,
        response: Response,
    },
    Send {
        uid: u64,
        handle: u64,
        flow: Flow,
        request: Request,
    },
    Ack {
        flow: Flow,
        request: Request,
    },
    Cancel {
        uid: u64,
        handle: u64,
    },
    Bind {
        uid: u64,
        call_id: String,
    },
    /// Route this media leg's events to the call.
    MediaLeg {
        uid: u64,
        leg: LegId,
    },
    CallEnded {
        uid: u64,
    },
    /// A request outside any call whose answer nobody waits for (message-waiting
    /// NOTIFY): the transaction retransmits it, its response is dropped.
    Notify {
        flow: Flow,
        request: Request,
    },
    /// A call we originate (a campaign dial): give it a uid and route its responses,
    /// in-dialog requests and media events to `inbox`, like an inbound call's.
    OutboundCall {
        inbox: mpsc::UnboundedSender<CallInput>,
        reply: tokio::sync::oneshot::Sender<u64>,
    },
}

enum CallInput {
    Request {
        leg: Leg,
        tx: TxId,
        request: Request,
    },
    Ack {
        leg: Leg,
    },
    Cancelled,
    Response {
        handle: u64,
        response: Response,
    },
    AckTimeout,
    HangUp,
    Media(MediaAction),
    /// The ACD's instructions for a waiting caller.
    Queue(QueueCommand),
    /// A recording of this call finished (or failed).
    Recorded(Result<std::path::PathBuf, String>),
    /// Hold, unhold or transfer from the agent's desktop (see `call_control.rs`).
    Control {
        command: call_control::ControlCommand,
        reply: call_control::ControlReply,
    },
}

struct CallSlot {
    inbox: mpsc::UnboundedSender<CallInput>,
    call_ids: Vec<String>,
}

struct Driver {
    endpoint: Endpoint,
    udp: Option<Arc<UdpSocket>>,
    tcp_conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    inbound_tx: mpsc::Sender<Inbound>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    calls: HashMap<u64, CallSlot>,
    /// Tasks that send requests but are not calls (trunk registrations).
    clients: HashMap<u64, mpsc::UnboundedSender<CallInput>>,
    dialogs: HashMap<String, (u64, Leg)>,
    invite_owner: HashMap<TxId, u64>,
    client_txs: HashMap<TxId, (u64, u64)>,
    handles: HashMap<(u64, u64), TxId>,
    /// Which call owns a media leg.
    legs: HashMap<LegId, u64>,
    next_uid: u64,
    draining: bool,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut media_events: mpsc::UnboundedReceiver<EngineEvent>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        self.start_trunk_registrations();
        let mut grace_end: Option<Instant> = None;
        let mut hard_end: Option<Instant> = None;
        loop {
            if self.draining && self.calls.is_empty() {
                break;
            }
            let timeout = self.endpoint.poll_timeout().map(Instant::from_std);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                Some(msg) = inbound.recv() => self.handle_inbound(msg),
                Some(cmd) = commands.recv() => self.handle_command(cmd),
                Some(ev) = media_events.recv() => {
                    match ev {
                        EngineEvent::Action { leg, action } => {
                            if let Some(&uid) = self.legs.get(&leg) {
                                self.to_call(uid, CallInput::Media(action));
                            }
                        }
                        EngineEvent::RecordingFinished { leg, result } => {
                            if let Some(&uid) = self.legs.get(&leg) {
                                self.to_call(uid, CallInput::Recorded(result.map_err(|e| e.to_string())));
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(timeout.unwrap_or(far)), if timeout.is_some() => {
                    self.endpoint.handle_timeout(now());
                }
                _ = &mut shutdown, if !self.draining => {
                    tracing::info!(calls = self.calls.len(), "draining: new calls get 503");
                    self.draining = true;
                    self.shared.metrics.set_serving(false);
                    grace_end = Some(Instant::now() + self.shared.config.server.shutdown_grace.0);
                }
                _ = tokio::time::sleep_until(grace_end.unwrap_or(far)), if grace_end.is_some() => {
                    tracing::info!(calls = self.calls.len(), "grace period over: hanging up");
                    grace_end = None;
                    hard_end = Some(Instant::now() + HANGUP_DRAIN);
                    for slot in self.calls.values() {
                        let _ = slot.inbox.send(CallInput::HangUp);
                    }
                }
                _ = tokio::time::sleep_until(hard_end.unwrap_or(far)), if hard_end.is_some() => break,
            }
            self.flush().await;
        }
        self.flush().await;
    }

    /// Sends what the endpoint queued and dispatches its events, until both are empty
    /// (answering an event can queue more to send).
    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.endpoint.poll_transmit() {
                progressed = true;
                self.shared.metrics.sip_sent(&t.bytes);
                match t.flow {
                    Flow::Udp(addr) => {
                        if let Some(s) = &self.udp
                            && let Err(e) = s.send_to(&t.bytes, addr).await
                        {
                            tracing::debug!(%addr, error = %e, "udp send failed");
                        }
                    }
                    Flow::Tcp(addr) => self.send_tcp(addr, t.bytes),
                }
            }
            while let Some(ev) = self.endpoint.poll_event() {
                progressed = true;
                self.handle_event(ev);
            }
            if !progressed {
                return;
            }
        }
    }

    fn send_tcp(&mut self, addr: SocketAddr, bytes: Vec<u8>) {
        if let Some(w) = self.tcp_conns.get(&addr) {
            if w.try_send(bytes).is_err() {
                tracing::warn!(%addr, "tcp writer full or closed; message dropped");
            }
            return;
        }
        // No connection to that peer yet: open one (RFC 3261 §18.1.1).
        let inbound = self.inbound_tx.clone();
        tokio::spawn(async move {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let writer = serve_tcp(stream, addr, inbound);
                    let _ = writer.send(bytes).await;
                }
                Err(e) => tracing::debug!(%addr, error = %e, "tcp connect failed"),
            }
        });
    }

    fn handle_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Packet { flow, bytes } => self.endpoint.handle_message(now(), flow, &bytes),
            Inbound::TcpOpened { peer, writer } => {
                self.tcp_conns.insert(peer, writer);
            }
            Inbound::TcpClosed { peer } => {
                self.tcp_conns.remove(&peer);
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        let now = now();
        match cmd {
            Command::Respond { tx, response } => self.endpoint.respond(now, tx, response),
            Command::Send {
                uid,
                handle,
                flow,
                request,
            } => {
                let tx = self.endpoint.send_request(now, flow, request);
                self.client_txs.insert(tx, (uid, handle));
                self.handles.insert((uid, handle), tx);
            }
            Command::Ack { flow, request } => self.endpoint.send_ack(flow, request),
            Command::Cancel { uid, handle } => {
                if let Some(tx) = self.handles.get(&(uid, handle)) {
                    self.endpoint.cancel(now, *tx);
                }
            }
            Command::Bind { uid, call_id } => {
                self.dialogs.insert(call_id.clone(), (uid, Leg::Callee));
                if let Some(slot) = self.calls.get_mut(&uid) {
                    slot.call_ids.push(call_id);
                }
            }
            Command::Notify { flow, request } => {
                self.endpoint.send_request(now, flow, request);
            }
            Command::MediaLeg { uid, leg } => {
                self.legs.insert(leg, uid);
            }
            Command::OutboundCall { inbox, reply } => {
                let uid = self.next_uid;
                self.next_uid += 1;
                self.calls.insert(
                    uid,
                    CallSlot {
                        inbox,
                        call_ids: Vec::new(),
                    },
                );
                self.shared.metrics.call_started(self.calls.len());
                self.shared.metrics.call_accepted();
                let _ = reply.send(uid);
            }
            Command::CallEnded { uid } => {
                self.legs.retain(|_, u| *u != uid);
                if let Some(slot) = self.calls.remove(&uid) {
                    for id in slot.call_ids {
                        self.dialogs.remove(&id);
                    }
                }
                self.shared.metrics.set_calls_in_progress(self.calls.len());
                self.invite_owner.retain(|_, u| *u != uid);
                let stale: Vec<TxId> = self
                    .client_txs
                    .iter()
                    .filter(|(_, (u, _))| *u == uid)
                    .map(|(t, _)| *t)
                    .collect();
                for t in stale {
                    if let Some((u, h)) = self.client_txs.remove(&t) {
                        self.handles.remove(&(u, h));
                    }
                }
            }
        }
    }

    fn to_call(&self, uid: u64, input: CallInput) {
        if let Some(slot) = self.calls.get(&uid) {
            let _ = slot.inbox.send(input);
        } else if let Some(client) = self.clients.get(&uid) {
            let _ = client.send(input);
        }
    }

    fn start_trunk_registrations(&mut self) {
        for trunk in self.shared.trunks.iter().filter(|t| t.register) {
            let uid = self.next_uid;
            self.next_uid += 1;
            let (tx, rx) = mpsc::unbounded_channel();
            self.clients.insert(uid, tx);
            let span = tracing::info_span!("trunk", name = %trunk.name);
            let task = register_to_trunk(
                trunk.clone(),
                self.shared.settings.contact_udp.clone(),
                uid,
                rx,
                self.cmd_tx.clone(),
            );
            tokio::spawn(task.instrument(span));
        }
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Request { tx, flow, request } => self.handle_request(tx, flow, request),
            Event::Ack { request, .. } => {
                if let Some(&(uid, leg)) = self.dialogs.get(request.call_id()) {
                    self.to_call(uid, CallInput::Ack { leg });
                }
            }
            Event::Cancelled { tx } => {
                if let Some(&uid) = self.invite_owner.get(&tx) {
                    self.to_call(uid, CallInput::Cancelled);
                }
            }
            Event::Response { tx, response } => {
                if let Some(&(uid, handle)) = self.client_txs.get(&tx) {
                    self.to_call(uid, CallInput::Response { handle, response });
                }
            }
            Event::Timeout { tx } => {
                if let Some((uid, handle)) = self.client_txs.remove(&tx) {
                    self.handles.remove(&(uid, handle));
                    let mut response = Response {
                        status: 408,
                        reason: "Request Timeout".into(),
                        headers: message::Headers::default(),
                        body: Vec::new(),
                    };
                    response.headers.push("CSeq", "0 INVITE");
                    self.to_call(uid, CallInput::Response { handle, response });
                }
            }
            Event::AckTimeout { tx } => {
                if let Some(&uid) = self.invite_owner.get(&tx) {
                    self.to_call(uid, CallInput::AckTimeout);
                }
            }
            Event::Rejected { flow, reason } => {
                tracing::debug!(peer = %flow.addr(), %reason, "message rejected");
            }
        }
    }

    fn answer(&mut self, tx: TxId, req: &Request, status: u16) {
        let r = message::response_to(&req.headers, status, Some(&crate::sip::random_token()));
        self.endpoint.respond(now(), tx, r);
    }

    fn handle_request(&mut self, tx: TxId, flow: Flow, req: Request) {
        if let Some(r) = precheck(&req) {
            self.endpoint.respond(now(), tx, r);
            return;
        }
        if req.method == Method::Subscribe {
            // New or in a subscription's dialog: `mwi.rs` keeps those dialogs.
            let _ = self.shared.mwi.send(mwi::MwiInput::Subscribe {
                tx,
                flow,
                request: Box::new(req),
            });
            return;
        }
        let in_dialog = req.headers.get("To").is_some_and(header::has_tag);
        if in_dialog {
            match self.dialogs.get(req.call_id()) {
                Some(&(uid, leg)) => self.to_call(
                    uid,
                    CallInput::Request {
                        leg,
                        tx,
                        request: req,
                    },
                ),
                None if req.method == Method::Options => self.options(tx, &req),
                None => self.answer(tx, &req, 481),
            }
            return;
        }
        match req.method {
            Method::Invite if self.draining => {
                let mut r =
                    message::response_to(&req.headers, 503, Some(&crate::sip::random_token()));
                r.headers.push(
                    "Retry-After",
                    self.shared.config.sip.retry_after.0.as_secs().to_string(),
                );
                self.endpoint.respond(now(), tx, r);
            }
            Method::Invite => self.start_call(tx, flow, req),
            Method::Options => self.options(tx, &req),
            Method::Register => {
                let registrar = self.shared.registrar.clone();
                let cmd = self.cmd_tx.clone();
                tokio::spawn(async move {
                    let response = registrar.register(flow, &req).await;
                    let _ = cmd.send(Command::Respond { tx, response });
                });
            }
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.answer(tx, &req, 481)
            }
            _ => {
                let mut r =
                    message::response_to(&req.headers, 405, Some(&crate::sip::random_token()));
                r.headers.push("Allow", crate::sip::ALLOW);
                self.endpoint.respond(now(), tx, r);
            }
        }
    }

    fn options(&mut self, tx: TxId, req: &Request) {
        let status = if self.draining { 503 } else { 200 };
        let mut r = message::response_to(&req.headers, status, Some(&crate::sip::random_token()));
        if self.draining {
            r.headers.push(
                "Retry-After",
                self.shared.config.sip.retry_after.0.as_secs().to_string(),
            );
        }
        r.headers.push("Allow", crate::sip::ALLOW);
        r.headers.push("Accept", "application/sdp");
        self.endpoint.respond(now(), tx, r);
    }

    fn start_call(&mut self, tx: TxId, flow: Flow, req: Request) {
        let uid = self.next_uid;
        self.next_uid += 1;
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        let call_id = req.call_id().to_string();
        self.dialogs.insert(call_id.clone(), (uid, Leg::Caller));
        self.invite_owner.insert(tx, uid);
        self.calls.insert(
            uid,
            CallSlot {
                inbox: inbox_tx.clone(),
                call_ids: vec![call_id.clone()],
            },
        );
        self.shared.metrics.call_started(self.calls.len());
        let span = tracing::info_span!("call", call_id = %call_id);
        let shared = self.shared.clone();
        let cmd = self.cmd_tx.clone();
        tokio::spawn(
            run_call(shared, uid, tx, flow, req, (inbox_tx, inbox_rx), cmd).instrument(span),
        );
    }
}

/// Generic request checks of RFC 3261 §8.2.2-§8.2.3 (and RFC 4475 §3.3.5/§3.3.6/§3.3.15).
fn precheck(req: &Request) -> Option<Response> {
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return None;
    }
    let tag = crate::sip::random_token();
    let required: Vec<&str> = req
        .headers
        .all("Require")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if !required.is_empty() {
        let mut r = message::response_to(&req.headers, 420, Some(&tag));
        r.headers.push("Unsupported", required.join(", "));
        return Some(r);
    }
    if req.method == Method::Invite {
        if !req.body.is_empty() {
            let ct = req.headers.get("Content-Type").unwrap_or("application/sdp");
            if !ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/sdp")
            {
                let mut r = message::response_to(&req.headers, 415, Some(&tag));
                r.headers.push("Accept", "application/sdp");
                return Some(r);
            }
        }
        let accepts: Vec<String> = req
            .headers
            .all("Accept")
            .flat_map(|v| v.split(','))
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|t| !t.is_empty())
            .collect();
        if !accepts.is_empty()
            && !accepts
                .iter()
                .any(|a| a == "application/sdp" || a == "application/*" || a == "*/*")
        {
            let mut r = message::response_to(&req.headers, 406, Some(&tag));
            r.headers.push("Accept", "application/sdp");
            r.headers.push(
                "Warning",
                "399 comm-server \"only application/sdp is supported\"",
            );
            return Some(r);
        }
    }
    None
}
