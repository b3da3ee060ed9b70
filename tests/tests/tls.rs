//! `[tls]`: the desktop page and the gRPC gateway over TLS, for agents at home.
//!
//! The certificate is the test-only one in `tests/fixtures/tls/` (for localhost,
//! signed by a throwaway test CA); clients trust that CA as their only root.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_gateway::proto::agent::LoginRequest;
use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
use e2e::{Server, base_config, temp_dir};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name)
}

async fn tls_server() -> Server {
    let extra = format!(
        r#"
[tls]
certificate = "{}"
private-key = "{}"
handshake-timeout = "1s"
"#,
        fixture("localhost.crt").display(),
        fixture("localhost.key").display()
    );
    Server::start(&base_config(&temp_dir(), &extra))
        .await
        .unwrap()
}

/// A client that trusts only the test certificate.
fn connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// GET `path` over HTTPS/1.1; the status line and body.
async fn https_get(addr: std::net::SocketAddr, path: &str) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector().connect(name, tcp).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_string(&mut reply))
        .await
        .expect("no reply over TLS")
        .ok();
    reply
}

async fn grpc_channel(addr: std::net::SocketAddr) -> Channel {
    let pem = std::fs::read(fixture("ca.crt")).unwrap();
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_page_and_the_gateway_answer_over_tls_and_plain_clients_get_nothing() {
    let s = tls_server().await;

    // The desktop page and the health check, over HTTPS.
    let page = https_get(s.http, "/agent").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<html"), "{page}");
    let health = https_get(s.http, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // gRPC over TLS (HTTP/2 by ALPN): the login answers, and a wrong password is
    // refused as it is in clear.
    let mut agent = AgentServiceClient::new(grpc_channel(s.grpc).await);
    let e = agent
        .login(LoginRequest {
            agent_id: "bob".into(),
            password: "wrong".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");

    // A plain HTTP request on the TLS port gets no page: the handshake fails and
    // the connection is closed.
    let mut plain = TcpStream::connect(s.http).await.unwrap();
    plain
        .write_all(b"GET /agent HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("<html"),
        "a page went out in clear"
    );

    // A client that connects and says nothing does not hold the door: others are
    // served meanwhile, and it is dropped after the handshake timeout (1 s here).
    let mut silent = TcpStream::connect(s.http).await.unwrap();
    let again = https_get(s.http, "/healthz").await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent client was not dropped: {closed:?}"
    );
    s.stop().await.unwrap();
}

#[test]
fn a_config_whose_key_is_not_the_certificates_names_the_key_line() {
    let text = base_config(
        &temp_dir(),
        &format!(
            "\n[tls]\ncertificate = \"{}\"\nprivate-key = \"{}\"\n",
            fixture("localhost.crt").display(),
            fixture("other.key").display()
        ),
    );
    let e = comm_server::config::Config::parse(&text, "site.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("site.toml:"), "{e}");
    assert!(e.contains("tls.certificate"), "{e}");
    assert!(e.contains("do not go together"), "{e}");

    let text = base_config(
        &temp_dir(),
        "\n[tls]\ncertificate = \"/nonexistent/site.crt\"\nprivate-key = \"/nonexistent/site.key\"\n",
    );
    let e = comm_server::config::Config::parse(&text, "site.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/site.crt: cannot read it"), "{e}");
}
