//! gRPC services for remote agents and supervisors (issue 6).
//!
//! # What this crate owns
//! The `callcenter.agent.v1` and `callcenter.supervisor.v1` services: logins with
//! argon2 passwords and lockout, bearer-token sessions, the agent's resumable event
//! stream, the desktop lease, authorization (an agent acts only on their current
//! call; supervisor RPCs need the supervisor role), and the server plumbing around
//! them: gRPC-web for browsers, the standard health service, reflection, per-call
//! timeouts, a per-connection concurrency limit and per-client limits
//! ([`limits`]: requests per user, streams per user, logins per address).
//!
//! # What it must not own
//! SIP, media and the ACD. The server implements [`Backend`] and publishes its events
//! into the [`EventHub`]; `comm-server` depends on this crate, never the reverse.
//!
//! ```text
//!  desktop ──gRPC──► AgentApi ──► Backend (comm-server: ACD driver) ──┐
//!  desktop ◄─stream─ EventHub ◄─── publish_agent / publish_supervisor ◄┘
//!                       ▲
//!  lease task: Sessions (pure) ── ReportUnreachable ──► Backend::agent_unreachable
//! ```

mod agent;
mod backend;
mod hub;
pub mod limits;
pub mod log;
pub mod password;
pub mod sessions;
mod supervisor;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::{Request, Status};

pub use agent::AgentApi;
pub use backend::{
    Account, Backend, BackendError, CallControl, Status as AgentStatus, SupervisorAction,
    TransferTarget,
};
pub use callcenter_proto as proto;
pub use hub::EventHub;
pub use limits::LimitConfig;
pub use sessions::{Role, Session, SessionConfig};
pub use supervisor::SupervisorApi;

/// Default bound on one unary request (client `grpc-timeout` may ask for less).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of requests in flight on one HTTP/2 connection.
pub const DEFAULT_CONCURRENCY_PER_CONNECTION: usize = 64;

/// The gateway's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Sessions, lockout and lease.
    pub sessions: SessionConfig,
    /// See [`DEFAULT_REQUEST_TIMEOUT`]. Streams are not cut by it.
    pub request_timeout: Duration,
    /// See [`DEFAULT_CONCURRENCY_PER_CONNECTION`].
    pub concurrency_per_connection: usize,
    /// Per-client limits.
    pub limits: LimitConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            sessions: SessionConfig::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            concurrency_per_connection: DEFAULT_CONCURRENCY_PER_CONNECTION,
            limits: LimitConfig::default(),
        }
    }
}

/// The state both services share.
pub(crate) struct Shared<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) hub: Arc<EventHub>,
    sessions: Mutex<sessions::Sessions>,
    limits: Arc<Mutex<limits::Limits>>,
    /// Wakes the lease task when the sessions' next deadline may have moved.
    wake: Notify,
}

/// Monotonic now for the sessions core (tokio's clock, so paused-clock tests work).
pub(crate) fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl<B: Backend> Shared<B> {
    pub(crate) fn sessions(&self) -> MutexGuard<'_, sessions::Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the sessions and wakes the lease task.
    pub(crate) fn with_sessions<T>(&self, f: impl FnOnce(&mut sessions::Sessions) -> T) -> T {
        let out = f(&mut self.sessions());
        self.wake.notify_one();
        out
    }

    /// The session of the request's `authorization: Bearer <token>`, in `role`.
    pub(crate) fn authorize<T>(&self, request: &Request<T>, role: Role) -> Result<Session, Status> {
        let token = bearer(request)?;
        let session = self
            .sessions()
            .authenticate(now(), token)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("the session token is unknown or expired"))?;
        if session.role != role {
            return Err(Status::permission_denied(match role {
                Role::Supervisor => "this needs a supervisor session",
                Role::Agent => "this needs an agent session",
            }));
        }
        lock(&self.limits)
            .request(now(), role, &session.login)
            .map_err(|s| slow_down(&format!("too many requests from {}", session.login), s))?;
        Ok(session)
    }

    /// Holds one of the user's stream slots until the returned guard drops.
    pub(crate) fn open_stream(&self, session: &Session) -> Result<StreamSlot, Status> {
        if !lock(&self.limits).open_stream(session.role, &session.login) {
            return Err(Status::resource_exhausted(format!(
                "{} already has as many streams open as allowed; close one first",
                session.login
            )));
        }
        Ok(StreamSlot {
            limits: self.limits.clone(),
            role: session.role,
            login: session.login.clone(),
        })
    }

    /// Checks a password and opens a session; every failure looks the same to the
    /// client except a lockout, which says so (it reveals nothing: unknown names lock
    /// too).
    pub(crate) async fn login(
        &self,
        role: Role,
        login: &str,
        password: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<(String, Duration), Status> {
        if let Some(ip) = from {
            lock(&self.limits)
                .login(now(), ip)
                .map_err(|s| slow_down(&format!("too many login attempts from {ip}"), s))?;
        }
        if let Err(lock) = self.sessions().check_lockout(now(), role, login) {
            return Err(locked(lock.until));
        }
        let account = self.backend.account(role, login);
        let hash = account.map(|a| a.password_hash);
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || password::verify_or_dummy(&password, hash))
            .await
            .unwrap_or(false);
        if !ok {
            let lock = self.with_sessions(|s| s.handle_login_failed(now(), role, login));
            tracing::info!(%login, ?role, locked = lock.is_some(), "login failed");
            return Err(match lock {
                Some(l) => locked(l.until),
                None => Status::unauthenticated("wrong name or password"),
            });
        }
        let token = password::token();
        let ttl = self.sessions().config().session_ttl;
        self.with_sessions(|s| s.handle_login(now(), role, login, token.clone()));
        tracing::info!(%login, ?role, "logged in");
        Ok((token, ttl))
    }

    pub(crate) fn logout<T>(&self, request: &Request<T>) -> Result<Option<Session>, Status> {
        let token = bearer(request)?;
        Ok(self.with_sessions(|s| s.handle_logout(token)))
    }
}

/// A stream slot of one user (see [`limits::Limits::open_stream`]), given back on drop.
pub(crate) struct StreamSlot {
    limits: Arc<Mutex<limits::Limits>>,
    role: Role,
    login: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        lock(&self.limits).close_stream(self.role, &self.login);
    }
}

fn lock(limits: &Mutex<limits::Limits>) -> MutexGuard<'_, limits::Limits> {
    limits.lock().unwrap_or_else(|e| e.into_inner())
}

fn slow_down(what: &str, s: limits::SlowDown) -> Status {
    let ms = s.retry_after.as_millis().max(1);
    Status::resource_exhausted(format!("{what}: slow down, retry in {ms} ms"))
}

fn locked(until: std::time::Instant) -> Status {
    let secs = until.saturating_duration_since(now()).as_secs().max(1);
    Status::unauthenticated(format!(
        "too many failed logins: locked, try again in {secs} s"
    ))
}

fn bearer<T>(request: &Request<T>) -> Result<&str, Status> {
    let value = request
        .metadata()
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Status::unauthenticated("`authorization` must be `Bearer <token>`"))
}

/// The one place backend refusals become gRPC statuses.
pub(crate) fn status_of(e: BackendError) -> Status {
    match e {
        BackendError::NotFound(m) => Status::not_found(m),
        BackendError::FailedPrecondition(m) => Status::failed_precondition(m),
        BackendError::InvalidArgument(m) => Status::invalid_argument(m),
        BackendError::Unimplemented(m) => Status::unimplemented(m),
        BackendError::Unavailable(m) => Status::unavailable(m),
    }
}

/// The gateway: both services over one shared state. Cheap to clone.
pub struct Gateway<B> {
    shared: Arc<Shared<B>>,
    config: GatewayConfig,
}

impl<B> Clone for Gateway<B> {
    fn clone(&self) -> Self {
        Gateway {
            shared: self.shared.clone(),
            config: self.config,
        }
    }
}

impl<B: Backend> Gateway<B> {
    /// A gateway over `backend`, relaying what the server publishes into `hub`.
    pub fn new(backend: Arc<B>, hub: Arc<EventHub>, config: GatewayConfig) -> Gateway<B> {
        Gateway {
            shared: Arc::new(Shared {
                backend,
                hub,
                sessions: Mutex::new(sessions::Sessions::new(config.sessions)),
                limits: Arc::new(Mutex::new(limits::Limits::new(config.limits))),
                wake: Notify::new(),
            }),
            config,
        }
    }

    /// The agent service.
    pub fn agent_service(&self) -> AgentApi<B> {
        AgentApi::new(self.shared.clone())
    }

    /// The supervisor service.
    pub fn supervisor_service(&self) -> SupervisorApi<B> {
        SupervisorApi::new(self.shared.clone())
    }

    /// Both services with gRPC-web, as routes another HTTP server mounts: the server's
    /// page listener serves them so the agent desktop and the wallboard reach the API
    /// from their own origin (no CORS). Native clients keep [`Gateway::serve`]'s port,
    /// which alone adds health, reflection, timeouts and the concurrency limit. Run
    /// [`Gateway::run_leases`] once per gateway however many listeners serve it.
    pub fn web_routes(&self) -> tonic::service::AxumRouter {
        use callcenter_proto::agent::agent_service_server::AgentServiceServer;
        use callcenter_proto::supervisor::supervisor_service_server::SupervisorServiceServer;
        use tonic::server::NamedService;
        use tower::Layer;

        // Only the two services' paths, and no fallback: the page router keeps its own
        // answer for every other path (`tonic::service::Routes` would bring a gRPC one).
        fn path<S: NamedService>(_: &S) -> String {
            format!("/{}/{{*method}}", S::NAME)
        }
        let web = tonic_web::GrpcWebLayer::new();
        let agent = web.layer(AgentServiceServer::new(self.agent_service()));
        let supervisor = web.layer(SupervisorServiceServer::new(self.supervisor_service()));
        tonic::service::AxumRouter::new()
            .route_service(&path(&agent), agent)
            .route_service(&path(&supervisor), supervisor)
    }

    /// The lease task: drives [`sessions::Sessions`]' timeouts and reports agents whose
    /// desktop is gone. Runs until the gateway's last clone is dropped... or forever;
    /// spawn it and abort it on shutdown.
    pub async fn run_leases(self) {
        loop {
            let (unreachable, deadline) = {
                let mut s = self.shared.sessions();
                s.handle_timeout(now());
                let mut out = Vec::new();
                while let Some(sessions::SessionAction::ReportUnreachable(agent)) = s.poll_action()
                {
                    out.push(agent);
                }
                (out, s.poll_timeout())
            };
            for agent in unreachable {
                tracing::info!(%agent, "desktop lease expired: agent made unavailable");
                self.shared.backend.agent_unreachable(&agent).await;
            }
            let wake = self.shared.wake.notified();
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(Instant::from_std(d)) => {}
                        _ = wake => {}
                    }
                }
                None => wake.await,
            }
        }
    }

    /// Serves both services, gRPC-web, health and reflection on `listener` until
    /// `shutdown` resolves (health turns NOT_SERVING first), with the lease task.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        self.serve_incoming(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
    }

    /// [`Gateway::serve`] on connections someone else accepts: TLS streams from the
    /// host's own acceptor, for one.
    pub async fn serve_incoming<S, IO, E>(
        self,
        incoming: S,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error>
    where
        S: tokio_stream::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: tonic::transport::server::Connected
            + tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + Unpin
            + Send
            + 'static,
        IO::ConnectInfo: Clone + Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        use callcenter_proto::agent::agent_service_server::AgentServiceServer;
        use callcenter_proto::supervisor::supervisor_service_server::SupervisorServiceServer;

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<AgentServiceServer<AgentApi<B>>>()
            .await;
        health
            .set_serving::<SupervisorServiceServer<SupervisorApi<B>>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(callcenter_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| {
                tracing::error!(error = %e, "reflection descriptors do not load");
            })
            .ok();
        let leases = tokio::spawn(self.clone().run_leases());
        let health_on_stop = health.clone();
        let shutdown = async move {
            shutdown.await;
            // Stop intake first: load balancers see NOT_SERVING while streams end.
            health_on_stop
                .set_not_serving::<AgentServiceServer<AgentApi<B>>>()
                .await;
            health_on_stop
                .set_not_serving::<SupervisorServiceServer<SupervisorApi<B>>>()
                .await;
        };
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .timeout(self.config.request_timeout)
            .concurrency_limit_per_connection(self.config.concurrency_per_connection)
            .layer(tonic_web::GrpcWebLayer::new())
            .add_service(health_service)
            .add_service(AgentServiceServer::new(self.agent_service()))
            .add_service(SupervisorServiceServer::new(self.supervisor_service()))
            .add_optional_service(reflection);
        let result = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        leases.abort();
        result
    }
}
