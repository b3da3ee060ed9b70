//! The desktop and wallboard pages on the server's HTTP listener, and the gateway
//! mounted beside them: the same services a native client reaches on the gRPC port.

use agent_gateway::proto::agent::LoginRequest;
use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
use e2e::{Server, base_config, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    out
}

fn config() -> String {
    let hash = agent_gateway::password::hash("bob-pw").unwrap();
    base_config(
        &temp_dir(),
        &format!(
            "[[queue]]\nname = \"support\"\n\n[[agent]]\nname = \"bob\"\nqueues = [\"support\"]\npassword-hash = \"{hash}\"\n"
        ),
    )
}

#[tokio::test]
async fn the_desktop_and_wallboard_pages_and_their_script_are_served() {
    let s = Server::start(&config()).await.unwrap();
    for (path, marker) in [
        ("/agent", "Agent desktop"),
        ("/wallboard", "Wallboard"),
        ("/reports", "<title>Reports</title>"),
    ] {
        let r = http(
            s.http,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
        assert!(
            r.contains("script-src 'self'"),
            "{path} allows its own script: {r}"
        );
        assert!(r.contains(marker), "{path}");
        assert!(r.contains("/static/grpcweb.js"), "{path} loads the client");
    }
    let js = http(
        s.http,
        "GET /static/grpcweb.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(js.starts_with("HTTP/1.1 200"), "{js}");
    assert!(
        js.to_ascii_lowercase()
            .contains("content-type: text/javascript"),
        "{js}"
    );
    // Mounting the gateway leaves every other path with the page router's 404.
    let missing = http(
        s.http,
        "GET /callcenter.agent.v1.Nope/X HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_agent_service_answers_on_the_page_listener_too() {
    let s = Server::start(&config()).await.unwrap();
    let mut c = AgentServiceClient::connect(format!("http://{}", s.http))
        .await
        .unwrap();
    let wrong = c
        .login(LoginRequest {
            agent_id: "bob".into(),
            password: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let ok = c
        .login(LoginRequest {
            agent_id: "bob".into(),
            password: "bob-pw".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ok.token.is_empty());
    s.stop().await.unwrap();
}
