//! The web self-service API over a real socket (the router itself is tested in
//! `comm-server/src/web/tests.rs`): the server serves it beside SIP.

use e2e::{Server, base_config, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn the_server_serves_the_self_service_api_and_page() {
    let s = Server::start(&base_config(&temp_dir(), "")).await.unwrap();
    let list = http(
        s.http,
        "GET /api/scripts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(list.starts_with("HTTP/1.1 200"), "{list}");
    assert!(
        list.contains("utility-outage"),
        "the web-enabled sample script is listed"
    );
    let body = "{}";
    let start = http(
        s.http,
        &format!("POST /api/scripts/utility-outage/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert!(start.starts_with("HTTP/1.1 201"), "{start}");
    assert!(
        start.contains("\"awaiting\""),
        "a session starts and asks its first question"
    );
    let page = http(
        s.http,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("<html"),
        "the page is served"
    );
    s.stop().await.unwrap();
}
