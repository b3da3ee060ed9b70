//! TLS for the HTTP and gRPC listeners: home agents reach the desktop page and the
//! gateway over the internet, so their logins and customer records must not cross it
//! in clear.
//!
//! # What this module owns
//! Loading a PEM certificate chain and private key into a rustls server config (with
//! errors that name the file and what is wrong with it), and turning a TCP listener
//! into a stream of finished TLS connections: handshakes run in their own tasks with
//! a deadline and a bound on how many run at once, so a client that connects and
//! says nothing (or speaks plain HTTP) delays nobody else.
//!
//! # What it must not own
//! What is served over the connections (axum and tonic do that), and SIP over TLS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once, per listener; more wait for a slot.
const MAX_HANDSHAKES: usize = 256;
/// Finished connections not yet taken by the server.
const READY_QUEUE: usize = 64;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS certificate {cert} and key {key} do not go together: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
}

/// A server config from a PEM certificate chain (the server's certificate first) and
/// its PEM private key (PKCS#8, PKCS#1 or SEC1). Offers HTTP/2 and HTTP/1.1 by ALPN,
/// so gRPC, gRPC-web and browsers all work on the same port.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_name = cert.display().to_string();
    let key_name = key.display().to_string();
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Certificate {
            path: cert_name.clone(),
            reason: pem_reason(&e),
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: cert_name.clone(),
            reason: pem_reason(&e),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: cert_name,
            reason: "no \"BEGIN CERTIFICATE\" block in the file".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key_name.clone(),
        reason: pem_reason(&e),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch {
            cert: cert_name.clone(),
            key: key_name.clone(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Mismatch {
            cert: cert_name,
            key: key_name,
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => format!("cannot read it: {io}"),
        Error::NoItemsFound => "no PEM block of the expected kind in the file".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// Accepts TCP connections on `listener`, shakes hands in their own tasks (each
/// within `handshake_timeout`) and yields the finished ones. A failed handshake is
/// logged at debug level and forgotten.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
) -> TlsListener {
    let local = listener.local_addr().ok();
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let task = tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "tls accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                    Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                }
            });
        }
    });
    TlsListener {
        ready: rx,
        local,
        accept_task: task,
    }
}

/// Finished TLS connections of one listener; serve it with `axum::serve`, or hand it
/// to tonic's `serve_with_incoming` as a stream.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: Option<SocketAddr>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// The connections as the stream tonic's `serve_with_incoming` takes.
impl tokio_stream::Stream for TlsListener {
    type Item = Result<TlsStream<TcpStream>, std::io::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.get_mut()
            .ready
            .poll_recv(cx)
            .map(|c| c.map(|(tls, _)| Ok(tls)))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task is gone only when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.local
            .ok_or_else(|| std::io::Error::other("the listener has no local address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tls")
            .join(name)
    }

    #[test]
    fn the_test_certificate_and_key_load() {
        acceptor(&fixture("localhost.crt"), &fixture("localhost.key")).unwrap();
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let missing = fixture("nope.crt");
        let e = acceptor(&missing, &fixture("localhost.key"))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.starts_with("TLS certificate "), "{e}");
        assert!(e.contains("nope.crt: cannot read it"), "{e}");

        // A key where the certificate should be, and the other way round.
        let e = acceptor(&fixture("localhost.key"), &fixture("localhost.key"))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("no \"BEGIN CERTIFICATE\" block"), "{e}");
        let e = acceptor(&fixture("localhost.crt"), &fixture("localhost.crt"))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.starts_with("TLS private key "), "{e}");

        // A key that is not the certificate's.
        let e = acceptor(&fixture("localhost.crt"), &fixture("other.key"))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("do not go together"), "{e}");
    }
}
