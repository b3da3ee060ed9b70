//! The end-to-end harness: start the real server on free loopback ports, and a SIP
//! test user agent that registers with digest, places and answers calls, cancels and
//! hangs up, all over real UDP.
//!
//! The UA reuses the server's message parser and digest client (interop with software
//! nobody here wrote, baresip and sipsak, is checked by `.ci/run`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use comm_server::config::Config;
use comm_server::media::g711::Codec;
use comm_server::server::{App, Listeners};
use comm_server::sip::digest::Challenge;
use comm_server::sip::message::{self, Headers, Message, Method, Request, Response};
use comm_server::sip::{header, random_token};
use comm_server::store::Store;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod desk;

/// How long a test waits for one expected message.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running server.
pub struct Server {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The web self-service page and API.
    pub http: SocketAddr,
    /// The agent and supervisor gRPC API.
    pub grpc: SocketAddr,
    pub data_dir: PathBuf,
    pub store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// A fresh, empty data directory under the system temp dir.
pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("comm-e2e-{}", random_token()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The config used by most tests: two users, an auto-answer route, a user route.
pub fn base_config(data_dir: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[server]
data-dir = "{}"
sounds-dir = "{}/../sounds"
scripts-dir = "{}/../scripts"
shutdown-grace = "3s"

[media]
bind = "127.0.0.1"
rtp-ports = "auto"

[sip]
realm = "test"
ring-timeout = "3s"

[[user]]
name = "alice"
password = "alice-pw"

[[user]]
name = "bob"
password = "bob-pw"

[[route]]
number = "500"
target = {{ auto-answer = {{}} }}

[[route]]
number = "1002"
target = {{ user = "bob" }}
{extra}
"#,
        data_dir.display(),
        env!("CARGO_MANIFEST_DIR"),
        env!("CARGO_MANIFEST_DIR"),
    )
}

impl Server {
    /// Starts the server with this config on `127.0.0.1:0` for UDP and TCP.
    pub async fn start(config: &str) -> anyhow::Result<Server> {
        if let Ok(filter) = std::env::var("COMM_TEST_LOG") {
            // Opt-in server logs for a failing test: COMM_TEST_LOG=debug cargo test ...
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let cfg = Config::parse(config, "test.toml")?;
        let data_dir = cfg.server.data_dir.clone();
        let listeners = Listeners::bind(
            Some(([127, 0, 0, 1], 0).into()),
            Some(([127, 0, 0, 1], 0).into()),
        )
        .await?;
        let listeners = listeners
            .with_http(Some(([127, 0, 0, 1], 0).into()))
            .await?
            .with_grpc(Some(([127, 0, 0, 1], 0).into()))
            .await?;
        let udp = listeners.udp_addr().context("udp")?;
        let http = listeners.http_addr().context("http")?;
        let tcp = listeners.tcp_addr().context("tcp")?;
        let grpc = listeners.grpc_addr().context("grpc")?;
        let app = App::build(cfg).await?;
        let store = app.store().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(listeners, async move {
            let _ = rx.await;
        }));
        Ok(Server {
            udp,
            tcp,
            http,
            grpc,
            data_dir,
            store,
            shutdown: Some(tx),
            task,
        })
    }

    /// Starts draining (as SIGTERM does).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server to exit.
    pub async fn stopped(self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(60), self.task).await??
    }

    /// The server's database, opened anew (the server closes its pool on exit).
    pub async fn reopen_store(data_dir: &std::path::Path) -> anyhow::Result<Store> {
        Ok(Store::open(&format!(
            "sqlite://{}",
            data_dir.join("comm-server.db").display()
        ))
        .await?)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        self.stopped().await
    }
}

/// One side of a dialog, as the UA keeps it.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local: String,
    pub remote: String,
    pub target: String,
    pub cseq: u32,
}

/// A test SIP user agent on its own UDP socket.
pub struct Ua {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub user: String,
    pub password: String,
    pub addr: SocketAddr,
    /// The RTP port our SDP names (an [`Rtp`] socket's port, when the test has one).
    pub media_port: u16,
    cseq: u32,
    pending: Vec<Message>,
    /// Final responses we sent, by (top Via branch, method): a retransmitted request
    /// gets the same answer again and is not handed to the test (RFC 3261 §17.2).
    answered: std::sync::Mutex<std::collections::HashMap<(String, Method), Vec<u8>>>,
}

/// The server-transaction key of a request: its top Via branch and method.
fn transaction_key(req: &Request) -> Option<(String, Method)> {
    let via = header::top_via(&req.headers)?;
    Some((via.branch()?.to_string(), req.method.clone()))
}

impl Ua {
    pub async fn new(user: &str, password: &str, server: SocketAddr) -> anyhow::Result<Ua> {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = sock.local_addr()?;
        Ok(Ua {
            sock,
            server,
            user: user.into(),
            password: password.into(),
            addr,
            media_port: addr.port() + 2,
            cseq: 0,
            pending: Vec::new(),
            answered: Default::default(),
        })
    }

    pub fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.addr)
    }

    fn via(&self) -> String {
        format!(
            "SIP/2.0/UDP {};branch=z9hG4bK{};rport",
            self.addr,
            random_token()
        )
    }

    pub async fn send_bytes(&self, bytes: &[u8]) -> anyhow::Result<()> {
        self.sock.send_to(bytes, self.server).await?;
        Ok(())
    }

    pub async fn send_request(&self, req: &Request) -> anyhow::Result<()> {
        self.send_bytes(&req.to_bytes()).await
    }

    pub async fn send_response(&self, resp: &Response) -> anyhow::Result<()> {
        self.send_bytes(&resp.to_bytes()).await
    }

    /// The next message matching `pred`, keeping others for later calls.
    pub async fn recv_matching(
        &mut self,
        what: &str,
        pred: impl Fn(&Message) -> bool,
    ) -> anyhow::Result<Message> {
        if let Some(i) = self.pending.iter().position(&pred) {
            return Ok(self.pending.remove(i));
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf))
                .await
                .with_context(|| format!("{} timed out waiting for {what}", self.user))??;
            let Ok(msg) = message::parse(&buf[..n]) else {
                bail!("{} got an unparseable message", self.user);
            };
            if self.absorb_retransmission(&msg).await? {
                continue;
            }
            if pred(&msg) {
                return Ok(msg);
            }
            self.pending.push(msg);
        }
    }

    /// If `msg` retransmits a request we already answered, answers it again (as a
    /// server transaction does) and returns true.
    async fn absorb_retransmission(&self, msg: &Message) -> anyhow::Result<bool> {
        let Message::Request(req) = msg else {
            return Ok(false);
        };
        let answer = transaction_key(req).and_then(|key| {
            let answered = self.answered.lock().expect("answered lock");
            answered.get(&key).cloned()
        });
        match answer {
            Some(bytes) => {
                self.send_bytes(&bytes).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Nothing new arrives for `d` (besides what is already queued, and
    /// retransmissions of requests already answered).
    pub async fn expect_silence(&mut self, d: Duration) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 65535];
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await {
                Err(_) => return Ok(()),
                Ok(r) => {
                    let (n, _) = r?;
                    if let Ok(msg) = message::parse(&buf[..n])
                        && self.absorb_retransmission(&msg).await?
                    {
                        continue;
                    }
                    bail!("unexpected message: {}", String::from_utf8_lossy(&buf[..n]))
                }
            }
        }
    }

    /// A final (or, with `provisional`, any non-100) response for this Call-ID and method.
    pub async fn response(
        &mut self,
        call_id: &str,
        method: Method,
        provisional: bool,
    ) -> anyhow::Result<Response> {
        let cid = call_id.to_string();
        let msg = self
            .recv_matching(&format!("{method} response"), move |m| match m {
                Message::Response(r) => {
                    r.call_id() == cid
                        && r.cseq().is_some_and(|c| c.method == method)
                        && (r.status >= 200 || provisional && r.status > 100)
                }
                _ => false,
            })
            .await?;
        let Message::Response(r) = msg else {
            unreachable!()
        };
        Ok(r)
    }

    pub async fn request(&mut self, method: Method) -> anyhow::Result<Request> {
        let m = method.clone();
        let msg = self
            .recv_matching(
                &format!("{method} request"),
                move |msg| matches!(msg, Message::Request(r) if r.method == m),
            )
            .await?;
        let Message::Request(r) = msg else {
            unreachable!()
        };
        Ok(r)
    }

    fn base_request(
        &mut self,
        method: Method,
        uri: &str,
        call_id: &str,
        from: &str,
        to: &str,
    ) -> Request {
        self.cseq += 1;
        let mut h = Headers::default();
        h.push("Via", self.via());
        h.push("Max-Forwards", "70");
        h.push("From", from);
        h.push("To", to);
        h.push("Call-ID", call_id);
        h.push("CSeq", format!("{} {method}", self.cseq));
        h.push("Contact", self.contact());
        Request {
            method,
            uri: header::parse_request_uri(uri).expect("test URI"),
            headers: h,
            body: Vec::new(),
        }
    }

    /// REGISTER, answering one digest challenge; returns the final response.
    pub async fn register(&mut self, expires: u32) -> anyhow::Result<Response> {
        let user = self.user.clone();
        self.register_as(&user, expires).await
    }

    /// REGISTER the address-of-record of `aor_user` with our own credentials.
    pub async fn register_as(&mut self, aor_user: &str, expires: u32) -> anyhow::Result<Response> {
        let call_id = random_token();
        let aor = format!("<sip:{aor_user}@{}>", self.server.ip());
        let from = format!("{aor};tag={}", random_token());
        let uri = format!("sip:{}", self.server);
        let mut req = self.base_request(Method::Register, &uri, &call_id, &from, &aor);
        req.headers.push("Expires", expires.to_string());
        self.send_request(&req).await?;
        let resp = self.response(&call_id, Method::Register, false).await?;
        if resp.status != 401 {
            return Ok(resp);
        }
        let ch = resp
            .headers
            .all("WWW-Authenticate")
            .filter_map(Challenge::parse)
            .next()
            .context("no usable challenge")?;
        let mut again = self.base_request(Method::Register, &uri, &call_id, &from, &aor);
        again.headers.push("Expires", expires.to_string());
        again.headers.push(
            "Authorization",
            ch.answer(&self.user, &self.password, "REGISTER", &uri, 1),
        );
        self.send_request(&again).await?;
        self.response(&call_id, Method::Register, false).await
    }

    /// Sends an INVITE (with a G.711 offer) to `number` without credentials.
    pub async fn invite(&mut self, number: &str) -> anyhow::Result<Request> {
        let (uri, call_id, from, to) = self.new_call(number);
        let req = self.invite_request(&uri, &call_id, &from, &to, None);
        self.send_request(&req).await?;
        Ok(req)
    }

    /// Sends an INVITE, expects the server's 407 challenge and answers it with our
    /// credentials. Returns the INVITE as sent last.
    pub async fn invite_auth(&mut self, number: &str) -> anyhow::Result<Request> {
        let first = self.invite(number).await?;
        let (call_id, from, to) = (
            first.call_id().to_string(),
            first.headers.get("From").unwrap_or_default().to_string(),
            first.headers.get("To").unwrap_or_default().to_string(),
        );
        let uri = first.uri.to_string();
        let challenge = self.response(&call_id, Method::Invite, false).await?;
        if challenge.status != 407 {
            bail!("expected 407, got {}", challenge.status);
        }
        let ch = challenge
            .headers
            .all("Proxy-Authenticate")
            .filter_map(Challenge::parse)
            .next()
            .context("no usable proxy challenge")?;
        let auth = ch.answer(&self.user, &self.password, "INVITE", &uri, 1);
        let req = self.invite_request(&uri, &call_id, &from, &to, Some(auth));
        self.send_request(&req).await?;
        Ok(req)
    }

    fn new_call(&self, number: &str) -> (String, String, String, String) {
        let uri = format!("sip:{number}@{}", self.server);
        let from = format!("<sip:{}@{}>;tag={}", self.user, self.addr, random_token());
        let to = format!("<{uri}>");
        (uri, random_token(), from, to)
    }

    fn invite_request(
        &mut self,
        uri: &str,
        call_id: &str,
        from: &str,
        to: &str,
        auth: Option<String>,
    ) -> Request {
        let mut req = self.base_request(Method::Invite, uri, call_id, from, to);
        if let Some(a) = auth {
            req.headers.push("Proxy-Authorization", a);
        }
        req.headers.push("Content-Type", "application/sdp");
        req.body = offer_sdp(self.media_port).into_bytes();
        req
    }

    /// The dialog a 2xx to our INVITE creates.
    pub fn dialog_from_answer(&self, invite: &Request, ok: &Response) -> Dialog {
        Dialog {
            call_id: invite.call_id().to_string(),
            local: invite.headers.get("From").unwrap_or_default().to_string(),
            remote: ok.headers.get("To").unwrap_or_default().to_string(),
            target: contact_of(&ok.headers).unwrap_or_else(|| format!("sip:{}", self.server)),
            cseq: invite.cseq().seq,
        }
    }

    /// A request inside dialog `d` with CSeq number `cseq` (RFC 3261 §12.2.1.1).
    fn dialog_request(&self, d: &Dialog, method: Method, cseq: u32) -> anyhow::Result<Request> {
        let mut h = Headers::default();
        h.push("Via", self.via());
        h.push("Max-Forwards", "70");
        h.push("From", d.local.clone());
        h.push("To", d.remote.clone());
        h.push("Call-ID", d.call_id.clone());
        h.push("CSeq", format!("{cseq} {method}"));
        Ok(Request {
            method,
            uri: header::parse_request_uri(&d.target)?,
            headers: h,
            body: Vec::new(),
        })
    }

    /// ACKs a 2xx (same CSeq number as its INVITE).
    pub async fn ack(&mut self, d: &Dialog) -> anyhow::Result<()> {
        let ack = self.dialog_request(d, Method::Ack, d.cseq)?;
        self.send_request(&ack).await
    }

    /// Sends BYE in the dialog and waits for its final answer.
    pub async fn bye(&mut self, d: &mut Dialog) -> anyhow::Result<Response> {
        d.cseq += 1;
        let bye = self.dialog_request(d, Method::Bye, d.cseq)?;
        self.send_request(&bye).await?;
        self.response(&d.call_id, Method::Bye, false).await
    }

    /// Sends a request inside a dialog (re-INVITE, INFO...); returns it as sent.
    pub async fn send_in_dialog(
        &mut self,
        d: &mut Dialog,
        method: Method,
        sdp: Option<String>,
    ) -> anyhow::Result<Request> {
        d.cseq += 1;
        let mut req = self.dialog_request(d, method, d.cseq)?;
        req.headers.push("Contact", self.contact());
        if let Some(body) = sdp {
            req.headers.push("Content-Type", "application/sdp");
            req.body = body.into_bytes();
        }
        self.send_request(&req).await?;
        Ok(req)
    }

    /// CANCELs an INVITE we sent (same branch, §9.1).
    pub async fn cancel(&mut self, invite: &Request) -> anyhow::Result<Response> {
        let mut h = Headers::default();
        for name in ["Via", "Max-Forwards", "From", "To", "Call-ID"] {
            if let Some(v) = invite.headers.get(name) {
                h.push(name, v);
            }
        }
        h.push("CSeq", format!("{} CANCEL", invite.cseq().seq));
        self.send_request(&Request {
            method: Method::Cancel,
            uri: invite.uri.clone(),
            headers: h,
            body: Vec::new(),
        })
        .await?;
        self.response(invite.call_id(), Method::Cancel, false).await
    }

    /// Answers a request (a To tag is added); a 2xx to INVITE carries an SDP answer.
    pub async fn reply(
        &self,
        req: &Request,
        status: u16,
        to_tag: &str,
    ) -> anyhow::Result<Response> {
        self.reply_with_sdp(req, status, to_tag, &offer_sdp(self.media_port))
            .await
    }

    /// As [`Ua::reply`], but a 2xx to INVITE carries `sdp` as its answer (to accept
    /// fewer codecs than offered, say).
    pub async fn reply_with_sdp(
        &self,
        req: &Request,
        status: u16,
        to_tag: &str,
        sdp: &str,
    ) -> anyhow::Result<Response> {
        let mut r = message::response_to(&req.headers, status, Some(to_tag));
        if req.method == Method::Invite && (101..300).contains(&status) {
            r.headers.push("Contact", self.contact());
        }
        if req.method == Method::Invite && (200..300).contains(&status) {
            r.headers.push("Content-Type", "application/sdp");
            r.body = sdp.as_bytes().to_vec();
        }
        self.send_response(&r).await?;
        if status >= 200
            && let Some(key) = transaction_key(req)
        {
            let mut answered = self.answered.lock().expect("answered lock");
            answered.insert(key, r.to_bytes());
        }
        Ok(r)
    }

    /// The dialog an incoming INVITE we answered with `ok` creates (we are the callee).
    pub fn dialog_as_callee(&self, invite: &Request, ok: &Response) -> Dialog {
        Dialog {
            call_id: invite.call_id().to_string(),
            local: ok.headers.get("To").unwrap_or_default().to_string(),
            remote: invite.headers.get("From").unwrap_or_default().to_string(),
            target: contact_of(&invite.headers).unwrap_or_else(|| format!("sip:{}", self.server)),
            cseq: 100,
        }
    }

    /// Answers an OPTIONS probe round trip to the server; returns the status.
    pub async fn options(&mut self) -> anyhow::Result<u16> {
        let call_id = random_token();
        let from = format!("<sip:{}@{}>;tag={}", self.user, self.addr, random_token());
        let uri = format!("sip:{}", self.server);
        let req = self.base_request(Method::Options, &uri, &call_id, &from, &format!("<{uri}>"));
        self.send_request(&req).await?;
        Ok(self
            .response(&call_id, Method::Options, false)
            .await?
            .status)
    }
}

fn contact_of(h: &Headers) -> Option<String> {
    match header::Contact::parse_list(h.get("Contact")?)
        .ok()?
        .into_iter()
        .next()?
    {
        header::Contact::Address(a) => Some(a.uri),
        header::Contact::Wildcard => None,
    }
}

/// A G.711 audio offer with telephone-event.
pub fn offer_sdp(port: u16) -> String {
    format!(
        "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    )
}

/// An SDP body with exactly these G.711 codecs and no telephone-event, in this order
/// of preference: a phone that speaks only PCMA answers `g711_sdp(port, &[Codec::Pcma])`.
pub fn g711_sdp(port: u16, codecs: &[Codec]) -> String {
    let types: Vec<String> = codecs
        .iter()
        .map(|c| c.payload_type().to_string())
        .collect();
    let rtpmaps: String = codecs
        .iter()
        .map(|c| {
            format!(
                "a=rtpmap:{} {}/8000\r\n",
                c.payload_type(),
                c.encoding_name()
            )
        })
        .collect();
    format!(
        "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {}\r\n{rtpmaps}a=sendrecv\r\n",
        types.join(" ")
    )
}

/// Where an SDP body asks for audio: its `c=` address and `m=audio` port.
pub fn sdp_audio_addr(body: &[u8]) -> Option<SocketAddr> {
    let text = String::from_utf8_lossy(body);
    let ip = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?;
    format!("{ip}:{port}").parse().ok()
}

/// A test RTP endpoint: sends G.711 frames, collects what arrives.
pub struct Rtp {
    pub sock: UdpSocket,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

/// One received RTP packet.
#[derive(Debug, Clone)]
pub struct RtpFrame {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

impl Rtp {
    pub async fn bind() -> anyhow::Result<Rtp> {
        Ok(Rtp {
            sock: UdpSocket::bind("127.0.0.1:0").await?,
            seq: rand::random(),
            ts: rand::random(),
            ssrc: rand::random(),
        })
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Sends one 20 ms frame.
    pub async fn send(
        &mut self,
        to: SocketAddr,
        payload_type: u8,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let packet = comm_server::media::rtp::RtpPacket {
            marker: false,
            payload_type,
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
            payload,
        };
        let mut out = Vec::new();
        packet.write(&mut out);
        self.sock.send_to(&out, to).await?;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        Ok(())
    }

    /// The RTP timestamp the next [`Rtp::send`] frame carries.
    pub fn timestamp(&self) -> u32 {
        self.ts
    }

    /// Sends one packet with this marker and timestamp (the packets of one RFC 4733
    /// event all carry the event's start). The sequence number advances; the frame
    /// clock [`Rtp::send`] uses does not.
    pub async fn send_at(
        &mut self,
        to: SocketAddr,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let packet = comm_server::media::rtp::RtpPacket {
            marker,
            payload_type,
            sequence: self.seq,
            timestamp,
            ssrc: self.ssrc,
            payload,
        };
        let mut out = Vec::new();
        packet.write(&mut out);
        self.sock.send_to(&out, to).await?;
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    /// Everything that arrives until `quiet` passes with nothing, or `max` in all.
    pub async fn collect(&self, quiet: Duration, max: Duration) -> Vec<RtpFrame> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        let end = tokio::time::Instant::now() + max;
        loop {
            let wait = quiet.min(end.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => {
                    if let Ok(p) = comm_server::media::rtp::RtpPacket::parse(&buf[..n]) {
                        out.push(RtpFrame {
                            payload_type: p.payload_type,
                            sequence: p.sequence,
                            timestamp: p.timestamp,
                            payload: p.payload.to_vec(),
                        });
                    }
                }
                _ => return out,
            }
            if tokio::time::Instant::now() >= end {
                return out;
            }
        }
    }
}

/// 50 distinct PCMU frames: a rising tone, so every frame differs.
pub fn talk() -> Vec<Vec<u8>> {
    (0..50)
        .map(|k| {
            let f = 300.0 + 20.0 * k as f64;
            let samples: Vec<i16> = (0..160)
                .map(|i| {
                    (8000.0 * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as i16
                })
                .collect();
            pcmu(&samples)
        })
        .collect()
}

/// Sends `frames` every 20 ms while collecting on the other side; checks what arrived
/// is the sent frames, bit-exact and in order (the first ones may be spent on RFC 3550
/// probation).
pub async fn carries(from: &mut Rtp, to: SocketAddr, at: &Rtp) {
    let frames = talk();
    let sender = async {
        for f in &frames {
            from.send(to, 0, f).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (_, mut got) = tokio::join!(
        sender,
        at.collect(Duration::from_millis(400), Duration::from_secs(5))
    );
    got.retain(|f| frames.contains(&f.payload));
    assert!(
        got.len() >= 45,
        "only {} of 50 frames arrived intact",
        got.len()
    );
    let first = frames.iter().position(|f| *f == got[0].payload).unwrap();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g.payload,
            frames[first + i],
            "frame {i} in order and bit-exact"
        );
    }
}

/// PCMU bytes for linear samples.
pub fn pcmu(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    comm_server::media::g711::Codec::Pcmu.encode(samples, &mut out);
    out
}

/// Registers `name`'s phone (password `NAME-pw`, with an RTP socket) and makes the
/// agent available by dialling `*1`; returns the phone and its RTP socket.
pub async fn available_agent(s: &Server, name: &str) -> (Ua, Rtp) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new(name, &format!("{name}-pw"), s.udp).await.unwrap();
    ua.media_port = rtp.port();
    assert_eq!(ua.register(600).await.unwrap().status, 200);
    let inv = ua.invite_auth("*1").await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "*1 is answered");
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    let bye = ua.request(Method::Bye).await.unwrap();
    ua.reply(&bye, 200, "fc").await.unwrap();
    (ua, rtp)
}

/// A gRPC request carrying a session's bearer token (`authorization` metadata).
pub fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a token is ASCII"),
    );
    r
}

/// A free loopback UDP address, for a `[[trunk]]` whose carrier a test plays with
/// [`carrier_at`] once the server is up.
pub async fn free_udp_addr() -> SocketAddr {
    let reserve = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    reserve.local_addr().unwrap()
}

/// A UA playing the carrier behind a `[[trunk]]` at `addr` (from [`free_udp_addr`]).
pub async fn carrier_at(addr: SocketAddr, server: SocketAddr) -> Ua {
    let mut carrier = Ua::new("carrier", "", server).await.unwrap();
    carrier.sock = UdpSocket::bind(addr).await.unwrap();
    carrier.addr = addr;
    carrier
}
