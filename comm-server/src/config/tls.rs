//! `[tls]`: the certificate the HTTP and gRPC listeners serve (see [`crate::tls`]).

use std::path::PathBuf;

use serde::Deserialize;

use super::HumanDuration;

/// TLS for the agents' and supervisors' ports. Without this section both listen in
/// clear (fine on a LAN or behind a TLS-terminating proxy).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsSection {
    /// PEM certificate chain, the server's certificate first; relative to the working
    /// directory.
    pub certificate: toml::Spanned<PathBuf>,
    /// Its PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: toml::Spanned<PathBuf>,
    /// Serve the `[http]` port (pages, gRPC-web) over TLS. Default true.
    #[serde(default = "yes")]
    pub http: bool,
    /// Serve the `[grpc]` port over TLS. Default true.
    #[serde(default = "yes")]
    pub grpc: bool,
    /// A client that has not finished its handshake by then is dropped. Default "10s".
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: HumanDuration,
}

fn yes() -> bool {
    true
}

fn default_handshake_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

impl TlsSection {
    /// The acceptor for the listeners; the error names the file and what is wrong.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, crate::tls::TlsError> {
        crate::tls::acceptor(self.certificate.get_ref(), self.private_key.get_ref())
    }
}
