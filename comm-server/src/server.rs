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

/// How long hung-up calls get to exchange their BYEs after the grace period.
const HANGUP_DRAIN: Duration = Duration::from_secs(5);
/// Bound on queued inbound packets; past it UDP datagrams are dropped (load shedding).
const INBOUND_QUEUE: usize = 8192;
/// A TCP connection that sends nothing for this long is closed (RFC 4475 §3.1.2.2:
/// a Content-Length larger than what arrives must not hold a connection forever).
const TCP_IDLE: Duration = Duration::from_secs(300);

/// Bound sockets, so tests can bind `127.0.0.1:0` and read the ports first.
pub struct Listeners {
    pub udp: Option<UdpSocket>,
    pub tcp: Option<TcpListener>,
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
        Ok(Listeners { udp, tcp })
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|s| s.local_addr().ok())
    }
}

/// The server, built from a config without binding anything.
pub struct App {
    config: Arc<Config>,
    store: Store,
    clock: Arc<dyn Clock>,
    prompts: Arc<PromptLibrary>,
    scripts: Arc<Library>,
}

impl App {
    /// Opens storage (running migrations) and syncs the configured SIP accounts.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        App::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let url = match &config.storage.url {
            Some(u) => u.clone(),
            None => {
                std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
                    format!(
                        "creating data directory {}",
                        config.server.data_dir.display()
                    )
                })?;
                format!(
                    "sqlite://{}",
                    config.server.data_dir.join("comm-server.db").display()
                )
            }
        };
        let store = Store::open(&url).await?;
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
        let prompts = load_prompts(&config)?;
        let scripts = load_scripts(&config, &prompts)?;
        Ok(App {
            config: Arc::new(config),
            store,
            clock,
            prompts: Arc::new(prompts),
            scripts: Arc::new(scripts),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
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
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
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
        });
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
        driver.run(inbound_rx, cmd_rx, media_events, shutdown).await;
        self.store.close().await;
        Ok(())
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
}

/// Loads the prompt set; a missing directory is an empty set, a broken file is an
/// error naming it, and a prompt route naming a missing prompt stops start-up.
fn load_prompts(config: &Config) -> anyhow::Result<PromptLibrary> {
    let dir = &config.server.sounds_dir;
    let prompts = if dir.is_dir() {
        PromptLibrary::load_dir(dir)
            .with_context(|| format!("loading prompts from {}", dir.display()))?
    } else {
        tracing::warn!(dir = %dir.display(), "sounds directory not found; no prompts loaded");
        PromptLibrary::default()
    };
    for route in &config.routes {
        if let Target::Prompt(names) = route.target.get_ref() {
            for n in names {
                prompts.prompt(n).with_context(|| {
                    format!(
                        "route {:?}: prompt {n:?} is not in {}",
                        route.number.get_ref(),
                        dir.display()
                    )
                })?;
            }
        }
    }
    Ok(prompts)
}

/// Loads every dialog script in the scripts directory, checking the audio each names
/// against the prompt set. Any error stops start-up with its file:line:column, and so
/// does a `script` route naming a file that is not there.
fn load_scripts(config: &Config, prompts: &PromptLibrary) -> anyhow::Result<Library> {
    let dir = &config.server.scripts_dir;
    let mut paths: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    let audio = |name: &str| {
        prompts
            .prompt(name.strip_suffix(".wav").unwrap_or(name))
            .is_ok()
    };
    let checked = script_engine::check_files(&paths, &audio);
    for d in &checked.diagnostics {
        tracing::warn!("{d}");
    }
    let Some(library) = checked.library else {
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        anyhow::bail!(
            "dialog scripts in {} have errors:\n{}",
            dir.display(),
            errors.join("\n")
        );
    };
    for route in &config.routes {
        if let Target::Script(file) = route.target.get_ref()
            && script_for(&library, file).is_none()
        {
            anyhow::bail!(
                "route {:?}: no script {file:?} in {}",
                route.number.get_ref(),
                dir.display()
            );
        }
    }
    Ok(library)
}

/// The id of the script loaded from `file` (a name in the scripts directory).
fn script_for(library: &Library, file: &str) -> Option<String> {
    library
        .scripts()
        .find(|s| {
            std::path::Path::new(s.file())
                .file_name()
                .is_some_and(|n| n == file)
        })
        .map(|s| s.id().to_string())
}

/// The address our SDP names: configured, else the SIP public host when it is an IP,
/// else the media bind address, else the SIP listen IP (127.0.0.1 for unspecified).
fn media_ip(cfg: &Config, sip: Option<SocketAddr>) -> std::net::IpAddr {
    if let Some(ip) = cfg.media.public_ip {
        return ip;
    }
    if let Some(ip) = cfg.sip.public_host.as_ref().and_then(|h| h.parse().ok()) {
        return ip;
    }
    if !cfg.media.bind.is_unspecified() {
        return cfg.media.bind;
    }
    match sip.map(|a| a.ip()) {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => std::net::IpAddr::from([127, 0, 0, 1]),
    }
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
    /// A recording of this call finished (or failed).
    Recorded(Result<std::path::PathBuf, String>),
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
            Command::MediaLeg { uid, leg } => {
                self.legs.insert(leg, uid);
            }
            Command::CallEnded { uid } => {
                self.legs.retain(|_, u| *u != uid);
                if let Some(slot) = self.calls.remove(&uid) {
                    for id in slot.call_ids {
                        self.dialogs.remove(&id);
                    }
                }
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
                inbox: inbox_tx,
                call_ids: vec![call_id.clone()],
            },
        );
        let span = tracing::info_span!("call", call_id = %call_id);
        let shared = self.shared.clone();
        let cmd = self.cmd_tx.clone();
        tokio::spawn(run_call(shared, uid, tx, flow, req, inbox_rx, cmd).instrument(span));
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

/// Where a new call goes, and how it is labelled in the CDR.
struct Resolution {
    destination: Destination,
    direction: Direction,
    route: String,
    /// Prompts to play once answered, then hang up.
    play: Option<Vec<Prompt>>,
    /// A dialog script to run once answered.
    ivr: Option<String>,
}

async fn resolve(shared: &Shared, flow: Flow, req: &Request) -> Result<Resolution, Response> {
    let number = header::uri_user(&req.uri).unwrap_or_default();
    let from_trunk = shared
        .trunks
        .iter()
        .find(|t| t.inbound_sources.contains(&flow.addr().ip()));
    let reject = |status: u16, route: &str, direction| Resolution {
        destination: Destination::Reject { status },
        direction,
        route: route.to_string(),
        play: None,
        ivr: None,
    };
    let dial_user = |user: String, direction: Direction| async move {
        match shared.registrar.locate(&user).await {
            Ok(Some((flow, uri))) => Resolution {
                destination: Destination::Dial {
                    flow,
                    uri,
                    label: user.clone(),
                    credentials: None,
                    media: None,
                },
                direction,
                route: format!("user:{user}"),
                play: None,
                ivr: None,
            },
            Ok(None) => reject(480, &format!("user:{user}"), direction),
            Err(e) => {
                tracing::error!(error = %e, "binding lookup failed");
                reject(500, &format!("user:{user}"), direction)
            }
        }
    };
    if let Some(target) = shared.config.route(&number) {
        return Ok(match target {
            Target::AutoAnswer(a) => Resolution {
                destination: Destination::AutoAnswer {
                    sdp: Vec::new(), // our answer, once media is anchored
                    hangup_after: a.hangup_after.map(|d| d.0),
                },
                direction: Direction::Inbound,
                route: format!("auto-answer:{number}"),
                play: None,
                ivr: None,
            },
            Target::Prompt(names) => match shared.prompts.sequence(names) {
                Ok(prompts) => Resolution {
                    destination: Destination::AutoAnswer {
                        sdp: Vec::new(),
                        hangup_after: None,
                    },
                    direction: Direction::Inbound,
                    route: format!("prompt:{number}"),
                    play: Some(prompts),
                    ivr: None,
                },
                Err(e) => {
                    tracing::error!(error = %e, "prompt route cannot play");
                    reject(500, &format!("prompt:{number}"), Direction::Inbound)
                }
            },
            Target::User(u) => dial_user(u.clone(), Direction::Inbound).await,
            Target::Script(file) => match script_for(&shared.scripts, file) {
                Some(id) => Resolution {
                    destination: Destination::AutoAnswer {
                        sdp: Vec::new(),
                        hangup_after: None,
                    },
                    direction: Direction::Inbound,
                    route: format!("script:{file}"),
                    play: None,
                    ivr: Some(id),
                },
                None => reject(500, &format!("script:{file}"), Direction::Inbound),
            },
            other => {
                // Scripts, queues, agents and mailboxes arrive with the IVR, ACD and
                // voicemail work; until then such routes say "temporarily unavailable".
                tracing::warn!(?other, "route target not available yet");
                reject(480, &format!("{other:?}"), Direction::Inbound)
            }
        });
    }
    let is_user = matches!(shared.store.sip_account(&number).await, Ok(Some(_)));
    if is_user {
        if from_trunk.is_none() {
            shared.registrar.authenticate(req, true).await?;
        }
        return Ok(dial_user(number, Direction::Internal).await);
    }
    if let Some(trunk) = shared
        .trunks
        .iter()
        .find(|t| t.prefixes.iter().any(|p| number.starts_with(p.as_str())))
    {
        if from_trunk.is_some() {
            // Never hairpin a trunk call back out (toll fraud).
            return Ok(reject(
                403,
                &format!("trunk:{}", trunk.name),
                Direction::Outbound,
            ));
        }
        shared.registrar.authenticate(req, true).await?;
        return Ok(Resolution {
            destination: Destination::Dial {
                flow: Flow::Udp(trunk.address),
                uri: format!("sip:{number}@{}", trunk.address),
                label: trunk.name.clone(),
                credentials: trunk.credentials(),
                media: None,
            },
            direction: Direction::Outbound,
            route: format!("trunk:{}", trunk.name),
            play: None,
            ivr: None,
        });
    }
    Ok(reject(404, "none", Direction::Inbound))
}

/// Play id of a prompt route's announcement.
const ROUTE_PROMPT: u64 = 1;
/// IVR play ids are offset by this, so they never collide with the route prompt.
const IVR_PLAY_BASE: u64 = 1_000;

fn wall_now(shared: &Shared) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(shared.clock.unix_ms().max(0) as u64)
}

/// The prompts for a script's audio; unknown names were refused at load time.
fn ivr_prompts(shared: &Shared, audio: &[script_engine::Audio]) -> Vec<Prompt> {
    audio
        .iter()
        .filter_map(|a| match a {
            script_engine::Audio::File(f) => shared
                .prompts
                .prompt(f.strip_suffix(".wav").unwrap_or(f))
                .ok(),
            script_engine::Audio::Silence { ms } => {
                Some(Prompt::from_samples("silence", vec![0; (*ms as usize) * 8]))
            }
        })
        .collect()
}

/// Does what the IVR asks, answering at once what the server cannot do yet. A
/// recording request is returned: starting one is asynchronous.
fn drive_ivr(
    shared: &Shared,
    ivr: &mut Ivr,
    media: &CallMedia,
    call: &mut Call,
) -> Option<script_engine::Question> {
    let mut record = None;
    while let Some(action) = ivr.poll_action() {
        let now_wall = wall_now(shared);
        match action {
            IvrAction::Play { id, audio } => {
                media.play(IVR_PLAY_BASE + id, ivr_prompts(shared, &audio))
            }
            IvrAction::StopPlayback => media.stop(),
            IvrAction::Lookup { field, .. } => {
                // Customer records arrive with the agent gateway work (issue 6).
                tracing::info!(%field, "customer lookup: no customer store yet");
                ivr.handle_host_reply(now_wall, script_engine::Input::Customer(None));
            }
            IvrAction::RunAction(script_engine::Action::Log { level, message }) => {
                tracing::info!(%level, %message, "script log");
                ivr.handle_host_reply(
                    now_wall,
                    script_engine::Input::ActionDone(serde_json::json!({})),
                );
            }
            IvrAction::RunAction(other) => {
                tracing::warn!(?other, "script action not available yet");
                ivr.handle_host_reply(
                    now_wall,
                    script_engine::Input::ActionFailed("not available on this server yet".into()),
                );
            }
            IvrAction::Route(step) => {
                tracing::warn!(?step, "routing from scripts is not wired yet");
                ivr.handle_host_reply(
                    now_wall,
                    script_engine::Input::RouteFailed("not available yet".into()),
                );
            }
            IvrAction::Record(q) => record = Some(q),
            IvrAction::History(h) => tracing::info!(record = ?h, "script history"),
            IvrAction::HangUp { outcome } => {
                tracing::info!(%outcome, "script ended");
                call.hang_up_all(now(), "answered");
            }
        }
    }
    record
}

/// A recording in progress on the caller's leg.
struct Recording {
    /// It stops here at the latest (the script's max-duration).
    until: Instant,
}

/// Starts recording what the caller says, after the beep if the script asks for one.
async fn start_recording(
    shared: &Shared,
    media: &CallMedia,
    call_id: &str,
    n: u32,
    q: &script_engine::Question,
) -> Result<Recording, String> {
    let script_engine::InputKind::Recording { max_duration, beep } = q.input else {
        return Err("not a recording question".into());
    };
    if beep && let Ok(tone) = shared.prompts.prompt("tones/beep") {
        media.play(0, vec![tone]);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dir = shared.config.server.data_dir.join("recordings");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let safe: String = call_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let path = dir.join(format!("{safe}-{n}.wav"));
    media.record(path).await?;
    Ok(Recording {
        until: Instant::now() + max_duration,
    })
}

/// The media legs of one call and what they were negotiated with.
struct CallMedia {
    engine: MediaEngine,
    timeout: Duration,
    music: Option<Prompt>,
    caller: Option<(LegId, LocalMedia)>,
    callee: Option<(LegId, LocalMedia)>,
}

impl CallMedia {
    fn new(shared: &Shared) -> CallMedia {
        CallMedia {
            engine: shared.engine.clone(),
            timeout: shared.config.media.media_timeout.0,
            music: shared.prompts.prompt("music/hold").ok(),
            caller: None,
            callee: None,
        }
    }

    async fn open(
        &self,
        shared: &Shared,
        uid: u64,
        cmd: &mpsc::UnboundedSender<Command>,
    ) -> Result<(LegId, LocalMedia), u16> {
        let leg = shared.next_leg.fetch_add(1, Ordering::Relaxed);
        let _ = cmd.send(Command::MediaLeg { uid, leg });
        let addr = self.engine.open(leg).await.map_err(|e| {
            tracing::warn!(error = %e, "no media leg");
            e.sip_status()
        })?;
        Ok((leg, LocalMedia::new(shared.media_ip, addr.port())))
    }

    fn start(&self, leg: LegId, negotiated: &Negotiated) {
        let mut config =
            SessionConfig::new(negotiated, rand::random(), rand::random(), rand::random());
        config.media_timeout = self.timeout;
        if let Err(e) = self.engine.start(leg, config) {
            tracing::warn!(error = %e, "media leg did not start");
        }
    }

    /// Puts the call's media through the server: answers the caller's offer now (the
    /// engine transcodes, so the answer does not depend on the callee) and prepares our
    /// offer to the callee. Errors are the status to refuse the INVITE with.
    async fn anchor(
        &mut self,
        shared: &Shared,
        uid: u64,
        cmd: &mpsc::UnboundedSender<Command>,
        invite: &Request,
        destination: Destination,
    ) -> Result<Destination, u16> {
        if matches!(destination, Destination::Reject { .. }) {
            return Ok(destination);
        }
        if invite.body.is_empty() {
            // Offerless INVITEs (RFC 3261 §13.2.1 late offer) are not supported yet.
            return Err(488);
        }
        let (leg_a, mut local_a) = self.open(shared, uid, cmd).await?;
        let (negotiated, answer) = sdp::answer(&invite.body, &local_a).map_err(|e| {
            tracing::info!(error = %e, "caller's SDP refused");
            e.sip_status()
        })?;
        local_a.session_version += 1;
        self.start(leg_a, &negotiated);
        self.caller = Some((leg_a, local_a));
        Ok(match destination {
            Destination::AutoAnswer { hangup_after, .. } => Destination::AutoAnswer {
                sdp: answer,
                hangup_after,
            },
            Destination::Dial {
                flow,
                uri,
                label,
                credentials,
                ..
            } => {
                let (leg_b, local_b) = self.open(shared, uid, cmd).await?;
                let offer = sdp::offer(&local_b);
                self.callee = Some((leg_b, local_b));
                Destination::Dial {
                    flow,
                    uri,
                    label,
                    credentials,
                    media: Some(AnchoredMedia { offer, answer }),
                }
            }
            other => other,
        })
    }

    /// Starts the callee leg from its answer and bridges the two; false when the answer
    /// is unusable.
    fn callee_answered(&self, body: &[u8]) -> bool {
        let (Some((a, _)), Some((b, local_b))) = (&self.caller, &self.callee) else {
            return false;
        };
        match sdp::parse_answer(body, local_b) {
            Ok(negotiated) => {
                self.start(*b, &negotiated);
                self.engine.bridge(*a, *b).is_ok()
            }
            Err(e) => {
                tracing::warn!(error = %e, "callee's SDP answer unusable");
                false
            }
        }
    }

    /// Answers a re-offer from one leg (RFC 3264 §8). Hold is handled here: the other
    /// side hears music while this leg does not want our audio, the bridge otherwise.
    fn reoffer(&mut self, leg: Leg, offer: &[u8]) -> Result<Vec<u8>, u16> {
        let (this, other) = match leg {
            Leg::Caller => (&mut self.caller, &self.callee),
            Leg::Callee => (&mut self.callee, &self.caller),
        };
        let Some((id, local)) = this.as_mut() else {
            return Err(488);
        };
        let (negotiated, answer) = sdp::answer(offer, local).map_err(|e| e.sip_status())?;
        local.session_version += 1;
        let held = !negotiated.direction.has_send();
        let _ = self.engine.command(*id, MediaCommand::Update(negotiated));
        if let Some((other_id, _)) = other {
            let command = match (&self.music, held) {
                (Some(music), true) => MediaCommand::LoopMusic(music.clone()),
                (None, true) => MediaCommand::Stop,
                (_, false) => MediaCommand::Bridge,
            };
            let _ = self.engine.command(*other_id, command);
        }
        Ok(answer)
    }

    async fn record(&self, path: std::path::PathBuf) -> Result<(), String> {
        let Some((leg, _)) = &self.caller else {
            return Err("no media".into());
        };
        self.engine
            .record(*leg, path, crate::media::recording::RecordSides::Received)
            .await
            .map_err(|e| e.to_string())
    }

    fn stop_recording(&self) {
        if let Some((leg, _)) = &self.caller {
            let _ = self.engine.command(*leg, MediaCommand::StopRecording);
        }
    }

    fn stop(&self) {
        if let Some((leg, _)) = &self.caller {
            let _ = self.engine.command(*leg, MediaCommand::Stop);
        }
    }

    fn play(&self, id: u64, prompts: Vec<Prompt>) {
        if let Some((leg, _)) = &self.caller {
            let _ = self.engine.command(
                *leg,
                MediaCommand::Play {
                    id,
                    prompts,
                    barge_in: false,
                },
            );
        }
    }

    /// Closes every leg; the quality figures for the CDR as JSON.
    async fn close(&self) -> Option<String> {
        let mut legs = serde_json::Map::new();
        for (name, leg) in [("caller", &self.caller), ("callee", &self.callee)] {
            if let Some((id, _)) = leg
                && let Some(q) = self.engine.close(*id).await
            {
                legs.insert(
                    name.into(),
                    serde_json::json!({
                        "packets_received": q.packets_received,
                        "packets_lost": q.packets_lost,
                        "jitter_ms": q.jitter_ms,
                        "packets_sent": q.packets_sent,
                        "packets_rejected": q.packets_rejected,
                        "late_frames": q.late_frames,
                        "remote_fraction_lost": q.remote_fraction_lost,
                        "remote_jitter_ms": q.remote_jitter_ms,
                        "round_trip_ms": q.round_trip_ms,
                    }),
                );
            }
        }
        (!legs.is_empty()).then(|| serde_json::Value::Object(legs).to_string())
    }
}

async fn run_call(
    shared: Arc<Shared>,
    uid: u64,
    tx: TxId,
    flow: Flow,
    invite: Request,
    mut inbox: mpsc::UnboundedReceiver<CallInput>,
    cmd: mpsc::UnboundedSender<Command>,
) {
    let started_ms = shared.clock.unix_ms();
    let started = Instant::now();
    let resolution = match resolve(&shared, flow, &invite).await {
        Ok(r) => r,
        Err(challenge) => {
            let _ = cmd.send(Command::Respond {
                tx,
                response: challenge,
            });
            let _ = cmd.send(Command::CallEnded { uid });
            return;
        }
    };
    tracing::info!(route = %resolution.route, "call started");
    let mut media = CallMedia::new(&shared);
    let destination = media
        .anchor(&shared, uid, &cmd, &invite, resolution.destination.clone())
        .await
        .unwrap_or_else(|status| Destination::Reject { status });
    let mut call = Call::new(
        now(),
        shared.settings.clone(),
        tx,
        flow,
        &invite,
        destination,
    );
    if let Some(prompts) = resolution.play.clone()
        && call.is_answered()
    {
        media.play(ROUTE_PROMPT, prompts);
    }
    let mut pending_record: Option<script_engine::Question> = None;
    let mut recording: Option<Recording> = None;
    let mut recordings = 0u32;
    let mut ivr = match (&resolution.ivr, call.is_answered()) {
        (Some(script), true) => {
            let context = script_engine::SessionContext {
                channel: script_engine::Channel::Voice,
                customer: serde_json::json!({}),
                call: serde_json::json!({
                    "caller": invite.headers.get("From").and_then(registrar::user_of),
                    "dialed": header::uri_user(&invite.uri),
                    "call_id": invite.call_id(),
                }),
            };
            match Ivr::start(shared.scripts.clone(), script, context, wall_now(&shared)) {
                Ok(mut i) => {
                    pending_record = drive_ivr(&shared, &mut i, &media, &mut call);
                    Some(i)
                }
                Err(e) => {
                    tracing::error!(error = %e, "script did not start");
                    call.hang_up_all(now(), "failed");
                    None
                }
            }
        }
        _ => None,
    };
    let mut callee_call_id = None;
    loop {
        if let Some(q) = pending_record.take()
            && let Some(i) = ivr.as_mut()
        {
            recordings += 1;
            match start_recording(&shared, &media, invite.call_id(), recordings, &q).await {
                Ok(r) => recording = Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "recording did not start");
                    i.handle_host_reply(wall_now(&shared), script_engine::Input::NoInput);
                    pending_record = drive_ivr(&shared, i, &media, &mut call);
                    continue;
                }
            }
        }
        while let Some(action) = call.poll_action() {
            match action {
                Action::Respond { tx, response } => {
                    let _ = cmd.send(Command::Respond { tx, response });
                }
                Action::Send {
                    handle,
                    flow,
                    request,
                    ..
                } => {
                    let _ = cmd.send(Command::Send {
                        uid,
                        handle,
                        flow,
                        request,
                    });
                }
                Action::Ack { flow, request } => {
                    let _ = cmd.send(Command::Ack { flow, request });
                }
                Action::Cancel { handle } => {
                    let _ = cmd.send(Command::Cancel { uid, handle });
                }
                Action::Bind { call_id } => {
                    callee_call_id = Some(call_id.clone());
                    let _ = cmd.send(Command::Bind { uid, call_id });
                }
                Action::DialFailed { status } => {
                    // Late dials come from the ACD, which is not wired to calls yet.
                    tracing::info!(status, "dial failed");
                }
                Action::CalleeAnswered { body } => {
                    if !media.callee_answered(&body) {
                        call.hang_up_all(now(), "failed");
                    }
                }
                Action::Reoffer { leg, tx, request } => {
                    let response = match media.reoffer(leg, &request.body) {
                        Ok(answer) => {
                            let mut ok = message::response_to(&request.headers, 200, None);
                            ok.headers.push("Contact", call.contact_for(leg));
                            ok.headers.push("Content-Type", "application/sdp");
                            ok.body = answer;
                            ok
                        }
                        Err(status) => message::response_to(&request.headers, status, None),
                    };
                    let _ = cmd.send(Command::Respond { tx, response });
                }
                Action::Ended(summary) => {
                    let media_quality_json = media.close().await;
                    let ms = |t: std::time::Instant| {
                        started_ms + (t - started.into_std()).as_millis() as i64
                    };
                    let cdr = Cdr {
                        call_id: invite.call_id().to_string(),
                        direction: resolution.direction,
                        caller: invite.headers.get("From").and_then(registrar::user_of).unwrap_or_default(),
                        callee: header::uri_user(&invite.uri).unwrap_or_default(),
                        route: resolution.route.clone(),
                        started_at_ms: started_ms,
                        answered_at_ms: summary.answered_at.map(ms),
                        ended_at_ms: ms(summary.ended_at),
                        hung_up_by: match summary.hung_up_by {
                            HungUpBy::Caller => store::HungUpBy::Caller,
                            HungUpBy::Callee => store::HungUpBy::Callee,
                            HungUpBy::System => store::HungUpBy::System,
                        },
                        end_reason: end_reason(&summary.result),
                        sip_status: summary.status,
                        legs_json: serde_json::json!([
                            {"leg": "caller", "call_id": invite.call_id(), "peer": flow.addr().to_string()},
                            {"leg": "callee", "call_id": callee_call_id, "target": format!("{:?}", resolution.destination_label())},
                        ])
                        .to_string(),
                        media_quality_json,
                    };
                    if let Err(e) = shared.store.insert_cdr(&cdr).await {
                        tracing::error!(error = %e, "CDR not written");
                    }
                    tracing::info!(result = %summary.result, status = summary.status, "call ended");
                }
            }
        }
        if call.is_ended() {
            break;
        }
        // The IVR keeps wall-clock deadlines (its sessions can be saved); convert.
        let ivr_deadline = ivr.as_ref().and_then(Ivr::poll_timeout).map(|t| {
            Instant::now()
                + t.duration_since(wall_now(&shared))
                    .unwrap_or(Duration::ZERO)
        });
        let deadline = [
            call.poll_timeout().map(Instant::from_std),
            ivr_deadline,
            recording.as_ref().map(|r| r.until),
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            input = inbox.recv() => {
                let now = now();
                match input {
                    Some(CallInput::Request { leg, tx, request }) => call.handle_request(now, leg, tx, &request),
                    Some(CallInput::Ack { leg }) => call.handle_ack(now, leg),
                    Some(CallInput::Cancelled) => call.handle_cancelled(now),
                    Some(CallInput::Response { handle, response }) => call.handle_response(now, handle, &response),
                    Some(CallInput::AckTimeout) => call.handle_ack_timeout(now),
                    Some(CallInput::HangUp) => call.hang_up_all(now, "shutdown"),
                    Some(CallInput::Recorded(result)) => {
                        recording = None;
                        if let Some(i) = ivr.as_mut() {
                            let input = match result {
                                Ok(path) => script_engine::Input::Recorded(path.display().to_string()),
                                Err(e) => {
                                    tracing::warn!(error = %e, "recording failed");
                                    script_engine::Input::NoInput
                                }
                            };
                            i.handle_host_reply(wall_now(&shared), input);
                            pending_record = drive_ivr(&shared, i, &media, &mut call);
                        }
                    }
                    Some(CallInput::Media(action)) => match action {
                        MediaAction::PlaybackFinished { id: ROUTE_PROMPT, .. } => call.hang_up_all(now, "answered"),
                        MediaAction::PlaybackFinished { id, .. } if id > IVR_PLAY_BASE => {
                            if let Some(i) = ivr.as_mut() {
                                i.handle_playback_finished(wall_now(&shared), id - IVR_PLAY_BASE);
                                pending_record = drive_ivr(&shared, i, &media, &mut call);
                            }
                        }
                        MediaAction::MediaTimeout { silent_for } => {
                            tracing::info!(?silent_for, "no RTP: hanging up");
                            call.hang_up_all(now, "media-timeout");
                        }
                        MediaAction::DigitReceived { digit, .. } => {
                            tracing::info!(%digit, "digit received");
                            if let Some(r) = recording.as_mut() {
                                // '#' ends a recording; other keys are part of it.
                                if digit == '#' {
                                    r.until = Instant::now() + Duration::from_secs(3600);
                                    media.stop_recording();
                                }
                            } else if let Some(i) = ivr.as_mut() {
                                i.handle_digit(wall_now(&shared), digit);
                                pending_record = drive_ivr(&shared, i, &media, &mut call);
                            }
                        }
                        other => tracing::debug!(?other, "media"),
                    },
                    None => call.hang_up_all(now, "failed"),
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if deadline.is_some() => {
                call.handle_timeout(now());
                if let Some(r) = recording.as_mut()
                    && r.until <= Instant::now()
                {
                    r.until = Instant::now() + Duration::from_secs(3600);
                    media.stop_recording();
                }
                if let Some(i) = ivr.as_mut() {
                    i.handle_timeout(wall_now(&shared));
                    pending_record = drive_ivr(&shared, i, &media, &mut call);
                }
            }
        }
    }
    let _ = cmd.send(Command::CallEnded { uid });
}

impl Resolution {
    fn destination_label(&self) -> String {
        match &self.destination {
            Destination::Dial { label, .. } => label.clone(),
            Destination::AutoAnswer { .. } => "auto-answer".into(),
            Destination::Reject { status } => format!("reject:{status}"),
        }
    }
}

fn end_reason(result: &str) -> EndReason {
    match result {
        "answered" => EndReason::Answered,
        "cancelled" => EndReason::Cancelled,
        "busy" => EndReason::Busy,
        "no-answer" => EndReason::NoAnswer,
        "rejected" => EndReason::Rejected,
        "shutdown" => EndReason::Shutdown,
        "media-timeout" => EndReason::MediaTimeout,
        _ => EndReason::Failed,
    }
}

/// How long to wait before registering again after a trunk refused or did not answer.
const TRUNK_RETRY: Duration = Duration::from_secs(30);
/// The registration interval we ask trunks for.
const TRUNK_EXPIRES_S: u64 = 3600;

/// Keeps one registration to a trunk alive (RFC 3261 §10.2), answering one digest
/// challenge from the trunk's realm per attempt and refreshing at half the expiry.
async fn register_to_trunk(
    trunk: Trunk,
    our_contact: String,
    uid: u64,
    mut inbox: mpsc::UnboundedReceiver<CallInput>,
    cmd: mpsc::UnboundedSender<Command>,
) {
    let Some(creds) = trunk.credentials() else {
        return;
    };
    let aor = format!("sip:{}@{}", creds.username, trunk.address);
    let host = our_contact.split('@').nth(1).unwrap_or("127.0.0.1");
    let contact = format!("<sip:{}@{host}>", creds.username);
    let call_id = crate::sip::random_token();
    let from = format!("<{aor}>;tag={}", crate::sip::random_token());
    let (mut cseq, mut handle) = (0u32, 0u64);
    let mut backoff = TRUNK_RETRY;
    loop {
        let mut authorization: Option<(&'static str, String)> = None;
        let result = loop {
            cseq += 1;
            handle += 1;
            let mut h = message::Headers::default();
            h.push("Max-Forwards", "70");
            h.push("From", from.clone());
            h.push("To", format!("<{aor}>"));
            h.push("Call-ID", call_id.clone());
            h.push("CSeq", format!("{cseq} REGISTER"));
            h.push("Contact", contact.clone());
            h.push("Expires", TRUNK_EXPIRES_S.to_string());
            if let Some((name, value)) = &authorization {
                h.push(*name, value.clone());
            }
            let Ok(uri) = header::parse_request_uri(&format!("sip:{}", trunk.address)) else {
                return;
            };
            let request = Request {
                method: Method::Register,
                uri,
                headers: h,
                body: Vec::new(),
            };
            if cmd
                .send(Command::Send {
                    uid,
                    handle,
                    flow: Flow::Udp(trunk.address),
                    request,
                })
                .is_err()
            {
                return;
            }
            let resp = loop {
                match inbox.recv().await {
                    Some(CallInput::Response {
                        handle: h,
                        response,
                    }) if h == handle && response.is_final() => break response,
                    Some(_) => continue,
                    None => return,
                }
            };
            match resp.status {
                200..=299 => break Ok(granted_expiry(&resp).unwrap_or(TRUNK_EXPIRES_S)),
                401 | 407 if authorization.is_none() => {
                    let (ask, answer) = if resp.status == 401 {
                        ("WWW-Authenticate", "Authorization")
                    } else {
                        ("Proxy-Authenticate", "Proxy-Authorization")
                    };
                    let challenge = resp
                        .headers
                        .all(ask)
                        .filter_map(crate::sip::digest::Challenge::parse)
                        .find(|c| creds.realm.as_ref().is_none_or(|r| *r == c.realm));
                    let Some(ch) = challenge else {
                        break Err("challenge from a realm we hold no credentials for".to_string());
                    };
                    let uri = format!("sip:{}", trunk.address);
                    authorization = Some((
                        answer,
                        ch.answer(&creds.username, &creds.password, "REGISTER", &uri, 1),
                    ));
                }
                status => break Err(format!("{status} {}", resp.reason)),
            }
        };
        let wait = match result {
            Ok(expires) => {
                tracing::info!(expires, "registered to trunk");
                backoff = TRUNK_RETRY;
                Duration::from_secs((expires / 2).max(30))
            }
            Err(why) => {
                tracing::warn!(%why, retry_in = ?backoff, "trunk registration failed");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(600));
                w
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The expiry a registrar granted: our Contact's `expires`, else the Expires header.
fn granted_expiry(resp: &Response) -> Option<u64> {
    resp.headers
        .all("Contact")
        .filter_map(|c| header::Contact::parse_list(c).ok())
        .flatten()
        .find_map(|c| match c {
            header::Contact::Address(a) => a.param("expires").and_then(|e| e.parse().ok()),
            header::Contact::Wildcard => None,
        })
        .or_else(|| {
            resp.headers
                .get("Expires")
                .and_then(|e| e.trim().parse().ok())
        })
}

async fn read_udp(sock: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; message::MAX_MESSAGE_LEN];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let msg = Inbound::Packet {
                    flow: Flow::Udp(from),
                    bytes: buf[..n].to_vec(),
                };
                if inbound.try_send(msg).is_err() {
                    tracing::warn!("inbound queue full; datagram dropped");
                }
            }
            Err(e) => {
                // ICMP port unreachable surfaces here on some platforms; keep serving.
                tracing::debug!(error = %e, "udp receive error");
            }
        }
        if inbound.is_closed() {
            return;
        }
    }
}

async fn accept_tcp(listener: TcpListener, inbound: mpsc::Sender<Inbound>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                serve_tcp(stream, peer, inbound.clone());
            }
            Err(e) => tracing::warn!(error = %e, "tcp accept failed"),
        }
    }
}

/// Spawns the reader and writer of one TCP connection; returns the writer's queue.
fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
) -> mpsc::Sender<Vec<u8>> {
    let (mut rd, mut wr) = stream.into_split();
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let opened = wtx.clone();
    let inbound2 = inbound.clone();
    tokio::spawn(async move {
        let _ = inbound2
            .send(Inbound::TcpOpened {
                peer,
                writer: opened,
            })
            .await;
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 8192];
        loop {
            let n = match tokio::time::timeout(TCP_IDLE, rd.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                match message::frame_stream(&buf) {
                    Ok(Framing::Complete(len)) => {
                        let frame: Vec<u8> = buf.drain(..len).collect();
                        if frame.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            continue; // keep-alive
                        }
                        if inbound
                            .send(Inbound::Packet {
                                flow: Flow::Tcp(peer),
                                bytes: frame,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Framing::Incomplete) => break,
                    Err(r) => {
                        tracing::debug!(%peer, reason = %r, "closing tcp connection: framing error");
                        let _ = inbound.send(Inbound::TcpClosed { peer }).await;
                        return;
                    }
                }
            }
        }
        let _ = inbound.send(Inbound::TcpClosed { peer }).await;
    });
    wtx
}
