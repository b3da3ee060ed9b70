//! Operations endpoints beside the self-service API, on the same `[http]` listener:
//!
//! ```text
//!  GET /metrics  → Prometheus text exposition (crate::metrics)
//!  GET /healthz  → 200 "ok" while the process runs (liveness)
//!  GET /readyz   → 200 "ready" when the listeners serve and the database answers;
//!                  503 with the reason before start, while draining, or when the
//!                  database does not answer (readiness: take the node out of rotation)
//! ```

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::store::Store;

/// What the operations endpoints read.
#[derive(Clone, Debug)]
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    pub store: Store,
}

/// `/metrics`, `/healthz` and `/readyz`; merge into the web router.
pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn ready(State(state): State<OpsState>) -> (StatusCode, &'static str) {
    if !state.metrics.serving() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not serving: starting or draining\n",
        );
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database does not answer\n",
            )
        }
    }
}
