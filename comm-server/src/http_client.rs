//! Outgoing HTTP for dialog-script webhooks: one JSON request, one JSON reply.
//!
//! Owns the client (hyper-util's pooled legacy client over hyper, already in the tree
//! through axum), the per-request timeout, a cap on the reply's size and turning the
//! reply into `{ "status", "body" }`. Must not own what a script does with the reply
//! ([`crate::script_actions`]) or any retry policy: a script's `on-error` decides.
//!
//! Plain `http://` only: `https://` needs a TLS stack this build does not carry, and is
//! refused with [`HttpError::HttpsUnsupported`] rather than sent in clear text.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;

/// The largest reply body read, in bytes. A webhook reply feeds a few script variables;
/// 1 MiB is generous for that and stops a misbehaving service from filling memory.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How long a connection may take to open, at most; the request's own timeout (the
/// script's `timeout`, default 5 s) bounds the whole exchange.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0:?} is not an http:// URL")]
    BadUrl(String),
    #[error("{0:?}: https is not supported by this build; use an http:// URL (a local TLS proxy)")]
    HttpsUnsupported(String),
    #[error("{0:?} is not an HTTP method")]
    BadMethod(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("reply larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("reply status {0}")]
    Status(u16),
}

/// The reply, as scripts see it in `response`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    /// The body parsed as JSON; a body that is not JSON is given as a string, an
    /// empty one as `null`.
    pub body: Json,
}

impl HttpReply {
    pub fn to_json(&self) -> Json {
        serde_json::json!({ "status": self.status, "body": self.body })
    }
}

/// A pooled client; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends `body` as JSON and reads a JSON reply. Transport errors, a timeout and a
    /// status outside 2xx are errors (scripts treat them alike: `on-error`).
    pub async fn send_json(
        &self,
        method: &str,
        url: &str,
        body: Option<&Json>,
        timeout: Duration,
    ) -> Result<HttpReply, HttpError> {
        self.exchange(method, url, &[], body, timeout).await
    }

    /// A GET with extra headers (an API key), read as [`HttpClient::send_json`] does.
    pub async fn get_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<HttpReply, HttpError> {
        self.exchange("GET", url, headers, None, timeout).await
    }

    async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Json>,
        timeout: Duration,
    ) -> Result<HttpReply, HttpError> {
        let uri: hyper::Uri = url.parse().map_err(|_| HttpError::BadUrl(url.into()))?;
        match uri.scheme_str() {
            Some("http") if uri.host().is_some() => {}
            Some("https") => return Err(HttpError::HttpsUnsupported(url.into())),
            _ => return Err(HttpError::BadUrl(url.into())),
        }
        let method = hyper::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpError::BadMethod(method.into()))?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "comm-server");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let payload = match body {
            Some(json) => {
                request = request.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Transport(error_chain(&e)))?;
            let status = response.status().as_u16();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        HttpError::TooLarge
                    } else {
                        HttpError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok::<_, HttpError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(timeout))??;
        if !(200..300).contains(&status) {
            return Err(HttpError::Status(status));
        }
        let body = if bytes.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(HttpReply { status, body })
    }
}

/// The error and its causes on one line (hyper's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    async fn serve(router: axum::Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    #[tokio::test]
    async fn posts_json_and_reads_the_json_reply() {
        let addr = serve(axum::Router::new().route(
            "/echo",
            post(|axum::Json(v): axum::Json<Json>| async move {
                axum::Json(serde_json::json!({ "got": v }))
            }),
        ))
        .await;
        let reply = HttpClient::new()
            .send_json(
                "POST",
                &format!("http://{addr}/echo"),
                Some(&serde_json::json!({"a": 1})),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, serde_json::json!({"got": {"a": 1}}));
    }

    #[tokio::test]
    async fn non_2xx_too_large_slow_and_https_are_errors() {
        let addr = serve(
            axum::Router::new()
                .route(
                    "/missing",
                    post(|| async { (axum::http::StatusCode::NOT_FOUND, "no") }),
                )
                .route(
                    "/big",
                    post(|| async { "x".repeat(MAX_RESPONSE_BYTES + 1) }),
                )
                .route(
                    "/slow",
                    post(|| async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        "late"
                    }),
                ),
        )
        .await;
        let c = HttpClient::new();
        let send = |path: &str, timeout| {
            let url = format!("http://{addr}{path}");
            let c = c.clone();
            async move { c.send_json("POST", &url, None, timeout).await }
        };
        let second = Duration::from_secs(1);
        assert!(matches!(
            send("/missing", second).await,
            Err(HttpError::Status(404))
        ));
        assert!(matches!(
            send("/big", Duration::from_secs(10)).await,
            Err(HttpError::TooLarge)
        ));
        assert!(matches!(
            send("/slow", Duration::from_millis(200)).await,
            Err(HttpError::Timeout(_))
        ));
        let e = c
            .send_json("GET", "https://example.net/x", None, second)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::HttpsUnsupported(_)), "{e}");
        assert!(e.to_string().contains("https is not supported"), "{e}");
        assert!(matches!(
            c.send_json("GET", "ftp://x/", None, second).await,
            Err(HttpError::BadUrl(_))
        ));
    }
}
