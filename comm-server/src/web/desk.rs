//! The agent desktop (`/agent`), the supervisor wallboard (`/wallboard`) and the
//! reports page (`/reports`).
//!
//! Owns the two pages and the small gRPC-web client they share (`/static/grpcweb.js`),
//! and mounts the gateway's gRPC-web routes next to them so the pages talk to the
//! API on their own origin: no CORS, no second port to open in a firewall.
//! Must not own the API itself (`agent_gateway`) nor the listener.
//!
//! ```text
//!  GET  /agent                  → desktop: login, status, screen pop, disposition
//!  GET  /wallboard              → wallboard: agents, queues, waiting calls, service level,
//!                                  campaigns (start, pause, resume, stop)
//!  GET  /reports                → historical reports: tables, charts, CSV, calls by hour
//!  GET  /static/grpcweb.js      → protobuf + gRPC-web codec the pages share
//!  POST /callcenter.agent.v1.AgentService/*            ┐ gRPC-web (and gRPC)
//!  POST /callcenter.supervisor.v1.SupervisorService/*  ┘ from `agent_gateway`
//! ```

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// The agent desktop: plain HTML with its CSS and script inline.
const AGENT_PAGE: &str = include_str!("agent.html");
/// The supervisor wallboard.
const WALLBOARD_PAGE: &str = include_str!("wallboard.html");
/// Historical reports with charts.
const REPORTS_PAGE: &str = include_str!("reports.html");
/// The gRPC-web client the pages load.
const GRPC_WEB_JS: &str = include_str!("grpcweb.js");

/// The pages loads only their own inline code and `/static/grpcweb.js`, and talk
/// only to this server. `media-src blob:` lets the desktop play a voicemail it
/// downloaded over gRPC-web (a blob URL the page made itself).
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
                   script-src 'self' 'unsafe-inline'; connect-src 'self'; media-src blob:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `web` with the desktop and wallboard pages and the gateway's gRPC-web `api`
/// (`agent_gateway::Gateway::web_routes`, which has no fallback of its own).
pub fn with_desk(web: Router, api: Router) -> Router {
    web.merge(api).merge(
        Router::new()
            .route("/agent", get(|| page(AGENT_PAGE)))
            .route("/wallboard", get(|| page(WALLBOARD_PAGE)))
            .route("/reports", get(|| page(REPORTS_PAGE)))
            .route("/static/grpcweb.js", get(script)),
    )
}

async fn page(html: &'static str) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        Html(html),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        GRPC_WEB_JS,
    )
        .into_response()
}
