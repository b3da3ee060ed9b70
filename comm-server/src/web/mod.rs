//! Web self-service: dialog scripts run for a customer in a browser, no agent.
//!
//! Owns the HTTP face of the `web` channel: JSON endpoints that start a session of a
//! script published for the web and step through it, the sessions kept in memory
//! between requests, and a small page that drives them. It answers the steps a
//! script asks of its host: actions (webhooks, e-mail, log) through the same
//! [`crate::script_actions`] runner as calls; no customer lookups or routing on the
//! web yet, so a session always reaches a question or its end.
//! Must not own the interpreter (`script_engine`), listening sockets or the
//! configuration: the server serves [`router`] on its listener.
//!
//! ```text
//!  GET  /api/scripts                      → {"scripts": [{id, title, description}]}
//!  POST /api/scripts/{id}/sessions        → 201 SessionReply
//!  GET  /api/sessions/{session}           → SessionReply (no new steps: for reconnects)
//!  POST /api/sessions/{session}/input     {"answer": "…"} → SessionReply
//!  GET  /  and  /self-service             → the HTML page
//!
//!  SessionReply = {"session", "script", "title", "steps": [Step…], "awaiting": Step | null,
//!                  "outcome": Outcome | null, "history": [HistoryRecord…]}
//!  errors       = {"error": "…"} with 400/404/405/409/413/415/422 (500 without detail)
//! ```
//!
//! Steps, outcomes and history records are `script_engine`'s own serde shapes.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use script_engine::{
    Channel, HistoryRecord, Input, Library, Outcome, Session, SessionContext, SessionError, Step,
};
use serde::{Deserialize, Serialize};

use crate::script_actions::ScriptActions;
use crate::time::Clock;

pub mod desk;
mod ops;
mod sessions;
#[cfg(test)]
mod tests;

pub use ops::{OpsState, ops_router};
pub use sessions::{DEFAULT_IDLE_EXPIRY, DEFAULT_MAX_SESSIONS, SessionLimits};
use sessions::{Entry, SessionStore};

/// The largest request body accepted, in bytes.
///
/// The largest legitimate body is one free-text answer: at most
/// `script_engine::DEFAULT_TEXT_MAX` (2,000) characters unless a script allows more,
/// up to 4 bytes each in UTF-8, plus JSON quoting. 16 KiB covers that with room and
/// stops a client from making the server buffer megabytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How many host steps (lookups, actions, routing, recordings) one request may
/// answer before the web host gives up on the session.
///
/// Unit: host replies per request. Each reply lets the interpreter run up to
/// `script_engine::MAX_OPS_PER_INPUT` operations, which catches loops with no step
/// at all; this catches a loop through a host step, such as a webhook whose
/// `on-error` jumps back to itself. Real scripts take a handful per answer.
pub const MAX_HOST_REPLIES: u32 = 256;

/// What the self-service endpoints share: the scripts, the open sessions and the clock.
#[derive(Clone)]
pub struct WebState {
    scripts: Arc<Library>,
    sessions: Arc<Mutex<SessionStore>>,
    clock: Arc<dyn Clock>,
    /// Runs script actions; by default without e-mail or a customer store.
    actions: ScriptActions,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("sessions", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl WebState {
    /// Sessions run `scripts` (those that list the `web` channel); `clock` stamps
    /// history records and times idle sessions out.
    pub fn new(scripts: Arc<Library>, clock: Arc<dyn Clock>) -> WebState {
        WebState::with_limits(scripts, clock, SessionLimits::default())
    }

    pub fn with_limits(
        scripts: Arc<Library>,
        clock: Arc<dyn Clock>,
        limits: SessionLimits,
    ) -> WebState {
        WebState {
            scripts,
            sessions: Arc::new(Mutex::new(SessionStore::new(limits))),
            actions: ScriptActions::new(None, None, clock.clone()),
            clock,
        }
    }

    /// Runs script actions with `actions` (the server's, shared with calls).
    pub fn with_actions(mut self, actions: ScriptActions) -> WebState {
        self.actions = actions;
        self
    }

    /// The store, even if a thread panicked while holding it: every change to it is
    /// a single insert or remove, so it is never left half-written.
    fn lock(&self) -> MutexGuard<'_, SessionStore> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> i64 {
        self.clock.unix_ms()
    }
}

/// Wall-clock milliseconds as the `SystemTime` sessions take (before 1970 clamps to 1970).
fn system_time(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The self-service routes on `state`; serve them with `axum::serve` on any listener.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/self-service", get(page))
        .route("/api/scripts", get(list_scripts))
        .route("/api/scripts/{id}/sessions", post(start_session))
        .route("/api/sessions/{session}", get(show_session))
        .route("/api/sessions/{session}/input", post(answer))
        .fallback(|| async { WebError::NoRoute })
        .method_not_allowed_fallback(|| async { WebError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Everything a request can fail with; [`IntoResponse`] below is the one place that
/// turns these into statuses.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No script with that id, or one that does not run on the web (agent scripts
    /// are not advertised, so they get the same answer).
    #[error("no self-service script `{0}`")]
    UnknownScript(String),
    #[error("no such session; it may have expired, please start again")]
    UnknownSession,
    #[error("the session has finished")]
    Finished,
    #[error("the session is not waiting for an answer")]
    NotAwaiting,
    /// The body was not the JSON the endpoint takes (or too large, or not JSON).
    #[error("{message}")]
    BadRequest { status: StatusCode, message: String },
    #[error("no such page")]
    NoRoute,
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// The interpreter refused the host: a bug here, not the visitor's doing.
    #[error("the script could not go on")]
    Script(#[source] SessionError),
}

impl From<JsonRejection> for WebError {
    fn from(r: JsonRejection) -> Self {
        WebError::BadRequest {
            status: r.status(),
            message: r.body_text(),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = match &self {
            WebError::UnknownScript(_) | WebError::UnknownSession | WebError::NoRoute => {
                StatusCode::NOT_FOUND
            }
            WebError::Finished | WebError::NotAwaiting => StatusCode::CONFLICT,
            WebError::BadRequest { status, .. } => *status,
            WebError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            WebError::Script(e) => {
                tracing::error!(error = %e, "web session refused the host");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        // `Display` never includes the source, so a 500 says nothing of the internals.
        let body = serde_json::json!({ "error": self.to_string() });
        (status, Json(body)).into_response()
    }
}

// ---- scripts ----

#[derive(Debug, Serialize)]
struct ScriptList<'a> {
    scripts: Vec<ScriptInfo<'a>>,
}

#[derive(Debug, Serialize)]
struct ScriptInfo<'a> {
    id: &'a str,
    title: &'a str,
    description: &'a str,
}

async fn list_scripts(State(state): State<WebState>) -> Response {
    let scripts = state
        .scripts
        .scripts()
        .filter(|s| s.channels().contains(&Channel::Web) && s.listed())
        .map(|s| ScriptInfo {
            id: s.id(),
            title: s.title(),
            description: s.description(),
        })
        .collect();
    Json(ScriptList { scripts }).into_response()
}

// ---- sessions ----

/// What every session endpoint answers.
#[derive(Debug, Serialize)]
struct SessionReply {
    /// The token for the next requests: whoever holds it holds the session.
    session: String,
    script: String,
    /// The script's title, for a page that reconnects.
    title: String,
    /// What the session did since the last request, in order; empty on `GET`.
    steps: Vec<Step>,
    /// The open question, or `null` once the session has ended.
    awaiting: Option<Step>,
    outcome: Option<Outcome>,
    /// The contact-history records this request produced.
    history: Vec<HistoryRecord>,
}

impl SessionReply {
    fn new(
        library: &Library,
        token: String,
        entry: &Entry,
        steps: Vec<Step>,
        history: Vec<HistoryRecord>,
    ) -> Self {
        let outcome = entry.outcome().cloned();
        SessionReply {
            session: token,
            script: entry.script.clone(),
            title: library
                .script(&entry.script)
                .map_or_else(String::new, |s| s.title().to_owned()),
            steps,
            awaiting: match outcome {
                Some(_) => None,
                None => entry.session.awaiting().cloned(),
            },
            outcome,
            history,
        }
    }

    fn into_response(self, status: StatusCode) -> Response {
        // A reply names the session's token: no cache may keep it.
        (status, [(header::CACHE_CONTROL, "no-store")], Json(self)).into_response()
    }
}

async fn start_session(
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let script = state
        .scripts
        .script(&id)
        .filter(|s| s.channels().contains(&Channel::Web) && s.listed())
        .ok_or_else(|| WebError::UnknownScript(id.clone()))?;
    let now_ms = state.now_ms();
    let now = system_time(now_ms);
    // The web knows nothing of the visitor yet: no caller ID, no customer record.
    // `caller_id` is present but null so scripts that look up by it find nobody
    // instead of failing on a missing field.
    let context = SessionContext {
        channel: Channel::Web,
        customer: serde_json::Value::Null,
        call: serde_json::json!({ "channel": "web", "caller_id": null }),
    };
    let session =
        Session::start(&state.scripts, script.id(), context, now).map_err(|e| match e {
            SessionError::UnknownScript(_) | SessionError::ChannelNotSupported(..) => {
                WebError::UnknownScript(id.clone())
            }
            other => WebError::Script(other),
        })?;
    let entry = Entry::new(sessions::new_interaction(), script.id().to_owned(), session);
    tracing::info!(interaction = %entry.interaction, script = %entry.script, "web session started");
    let token = state.lock().insert(now_ms, entry);
    let (steps, history) = drive(&state, &token, now).await?;
    let mut store = state.lock();
    let Some(entry) = store.get_mut(state.now_ms(), &token) else {
        // Just inserted under the same lock; only a zero capacity could lose it.
        return Err(WebError::UnknownSession);
    };
    Ok(
        SessionReply::new(&state.scripts, token, entry, steps, history)
            .into_response(StatusCode::CREATED),
    )
}

async fn show_session(
    State(state): State<WebState>,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let now_ms = state.now_ms();
    let mut store = state.lock();
    let entry = store
        .get_mut(now_ms, &token)
        .ok_or(WebError::UnknownSession)?;
    Ok(
        SessionReply::new(&state.scripts, token, entry, Vec::new(), Vec::new())
            .into_response(StatusCode::OK),
    )
}

/// `POST /api/sessions/{session}/input`. Unknown fields are refused so a typo
/// (`"anwser"`) gets a message instead of being read as an empty answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    answer: String,
}

async fn answer(
    State(state): State<WebState>,
    Path(token): Path<String>,
    body: Result<Json<AnswerBody>, JsonRejection>,
) -> Result<Response, WebError> {
    let now_ms = state.now_ms();
    let now = system_time(now_ms);
    // The store stays locked while the answer runs: the interpreter is plain
    // computation with a bounded number of operations, and the lock keeps two
    // tabs from answering the same question at once.
    {
        let mut store = state.lock();
        let entry = store
            .get_mut(now_ms, &token)
            .ok_or(WebError::UnknownSession)?;
        take_answer(&state.scripts, entry, now, body)?;
    }
    let (steps, history) = drive(&state, &token, now).await?;
    let mut store = state.lock();
    let entry = store
        .get_mut(state.now_ms(), &token)
        .ok_or(WebError::UnknownSession)?;
    Ok(
        SessionReply::new(&state.scripts, token, entry, steps, history)
            .into_response(StatusCode::OK),
    )
}

/// Checks that `entry` waits for the visitor and gives it the answer.
fn take_answer(
    library: &Library,
    entry: &mut Entry,
    now: SystemTime,
    body: Result<Json<AnswerBody>, JsonRejection>,
) -> Result<(), WebError> {
    // The session is checked before the body, so a stale tab learns that its
    // session is gone or over whatever it sent.
    if entry.outcome().is_some() {
        return Err(WebError::Finished);
    }
    if !matches!(entry.session.awaiting(), Some(Step::Ask(_))) {
        return Err(WebError::NotAwaiting);
    }
    let Json(AnswerBody { answer }) = body?;
    match entry
        .session
        .handle_input(library, now, Input::Answer(answer))
    {
        Ok(()) => Ok(()),
        Err(SessionError::Finished) => Err(WebError::Finished),
        Err(SessionError::Unexpected { .. }) => Err(WebError::NotAwaiting),
        Err(other) => Err(WebError::Script(other)),
    }
}

// ---- the web host ----

/// Takes the session's steps and answers every one that needs the host, until
/// the session waits for the visitor or has ended. Returns the steps in order
/// (host steps included, so a page can say what could not be done) and the
/// history records, which are also logged for the contact history.
///
/// The store is not locked while an action runs (a webhook takes seconds); the
/// session meanwhile awaits a host step, so another request for it is refused with
/// `NotAwaiting`, and a reply is given only if the session still awaits that step.
async fn drive(
    state: &WebState,
    token: &str,
    now: SystemTime,
) -> Result<(Vec<Step>, Vec<HistoryRecord>), WebError> {
    let mut steps = Vec::new();
    let mut history = Vec::new();
    let mut replies = 0u32;
    let mut interaction = String::new();
    loop {
        let pending = {
            let mut store = state.lock();
            let entry = store
                .get_mut(state.now_ms(), token)
                .ok_or(WebError::UnknownSession)?;
            interaction.clone_from(&entry.interaction);
            steps.extend(std::iter::from_fn(|| entry.session.poll_step()));
            history.extend(std::iter::from_fn(|| entry.session.poll_history()));
            if entry.session.outcome().is_some() {
                None
            } else {
                entry.session.awaiting().filter(|s| needs_host(s)).cloned()
            }
        };
        let Some(step) = pending else {
            break;
        };
        // The web visitor is not a known customer yet: no id for updates.
        let input = host_reply(&state.actions, &step, None, "the web").await;
        let mut store = state.lock();
        let entry = store
            .get_mut(state.now_ms(), token)
            .ok_or(WebError::UnknownSession)?;
        if entry.session.awaiting() != Some(&step) {
            break;
        }
        replies += 1;
        let refused = if replies > MAX_HOST_REPLIES {
            Some(format!(
                "the script took more than {MAX_HOST_REPLIES} steps without asking anything"
            ))
        } else {
            entry
                .session
                .handle_input(&state.scripts, now, input)
                .err()
                .map(|e| e.to_string())
        };
        if let Some(message) = refused {
            tracing::error!(interaction = %entry.interaction, script = %entry.script, %message, "web session stopped");
            entry.stopped = Some(Outcome::Failed { message });
            break;
        }
    }
    for record in &history {
        log_history(&interaction, record);
    }
    Ok((steps, history))
}

/// Whether the host (rather than the person at the screen, or nobody) answers
/// `step`. Shared with the agent desktop's scripts (`server/agent_script.rs`).
pub(crate) fn needs_host(step: &Step) -> bool {
    !matches!(step, Step::Say { .. } | Step::Ask(_) | Step::End { .. })
}

/// What a screen host (`host`: the web page, an agent's desktop) replies to a step
/// that [`needs_host`]. Actions run through the same runner as on calls, for
/// `customer` when the host knows who it is; lookups and routing are not wired to
/// screens yet, so those get the replies a call gets when nothing is found or
/// possible.
pub(crate) async fn host_reply(
    actions: &ScriptActions,
    step: &Step,
    customer: Option<i64>,
    host: &str,
) -> Input {
    match step {
        Step::Lookup { field, .. } => {
            tracing::info!(%field, "customer lookup: not available on {host}");
            Input::Customer(None)
        }
        Step::RunAction { action, .. } => actions.run(action, customer).await,
        Step::Enqueue { step, .. } | Step::Voicemail { step, .. } | Step::Transfer { step, .. } => {
            tracing::warn!(%step, "routing is not available on {host}");
            Input::RouteFailed(format!("not available on {host}"))
        }
        // A browser has no microphone path to us yet: the visitor said nothing.
        Step::Record(_) => Input::NoInput,
        Step::Say { .. } | Step::Ask(_) | Step::End { .. } => Input::NoInput,
    }
}

/// Until the contact-history store exists (issue 6), records go to the log.
fn log_history(interaction: &str, record: &HistoryRecord) {
    let event = serde_json::to_string(&record.event).unwrap_or_default();
    let at_ms = record
        .at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    tracing::info!(
        %interaction,
        script = %record.script,
        step = %record.step,
        %event,
        at_ms,
        "contact history"
    );
}

// ---- the page ----

/// The self-service page: plain HTML with its CSS and script inline.
const PAGE: &str = include_str!("page.html");

async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Inline style and script are the page's own; it loads nothing else and
            // talks only to this server.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        Html(PAGE),
    )
        .into_response()
}
