//! The SIP transaction layer (RFC 3261 §17, with RFC 6026's Accepted states) as a pure
//! state machine: bytes and `now` in; datagrams to send, transaction-user events and
//! the next deadline out. No sockets, no clock, no tasks.
//!
//! Owns: matching requests and responses to transactions, retransmissions and their
//! timers, 100 Trying, absorbing retransmitted requests, ACK for non-2xx finals, CANCEL
//! matching, retransmitting our 2xx until the ACK comes, and stateless answers to
//! malformed requests. Must not own: dialogs, routing, authentication (the transaction
//! user above decides those and answers every `Event::Request`).
//!
//! ```text
//!  server INVITE:  Proceeding --1xx--> Proceeding
//!                      |--2xx--> Accepted --ACK / 64*T1--> gone
//!                      '--300-699--> Completed --ACK--> Confirmed --T4--> gone
//!                                       '--64*T1 (no ACK)--> gone
//!  server other:   Trying --final--> Completed --64*T1--> gone
//!  client INVITE:  Calling --1xx--> Proceeding --2xx--> Accepted --64*T1--> gone
//!                      '--300-699 (send ACK)--> Completed --32s--> gone
//!  client other:   Trying --final--> Completed --T4--> gone; --64*T1--> Timeout
//! ```
//!
//! Over TCP nothing is retransmitted and the wait states end at once (§17.1.1.2).
//! Responses over UDP go back to the packet's source address and port (RFC 3581
//! behaviour applied always), which is what home agents behind NAT need.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::header::{self, BRANCH_COOKIE};
use super::message::{self, Headers, Message, Method, Request, Response};

/// RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// RTT estimate; default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses; 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network; 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// Timers B, F, H, J, L, M: 64·T1.
    fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// Where a message came from or goes to. For TCP the address names the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl Flow {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Flow::Udp(a) | Flow::Tcp(a) => *a,
        }
    }

    fn reliable(&self) -> bool {
        matches!(self, Flow::Tcp(_))
    }

    fn via_transport(&self) -> &'static str {
        match self {
            Flow::Udp(_) => "UDP",
            Flow::Tcp(_) => "TCP",
        }
    }
}

/// Bytes to send on a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub flow: Flow,
    pub bytes: Vec<u8>,
}

pub type TxId = u64;

/// What the transaction user must act on.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new request. The TU must answer it with [`Endpoint::respond`] (an INVITE has
    /// had its 100 Trying already).
    Request {
        tx: TxId,
        flow: Flow,
        request: Request,
    },
    /// An ACK for a 2xx (it has no transaction of its own, §17.1.1.3).
    Ack { flow: Flow, request: Request },
    /// A CANCEL matched this pending INVITE; the CANCEL got its 200. The TU should
    /// answer the INVITE with 487.
    Cancelled { tx: TxId },
    /// A response to one of our requests (including 2xx retransmissions, which the TU
    /// must ACK again).
    Response { tx: TxId, response: Response },
    /// Our request got no final answer in time (Timer B/F): treat as 408.
    Timeout { tx: TxId },
    /// A 2xx we sent was never acknowledged (64·T1): the dialog should end.
    AckTimeout { tx: TxId },
    /// A malformed or stray message; answered statelessly when it could be.
    Rejected { flow: Flow, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    /// RFC 3261 §17.2.3: branch, sent-by and method.
    Branch(String, String, Method),
    /// RFC 2543 peers: no magic cookie, match on the request's identity.
    Legacy(String, u32, String, String, Method),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Server: request received, no final yet. Client: request sent, nothing back.
    Trying,
    /// Provisional sent/received.
    Proceeding,
    /// 2xx to an INVITE; waiting for the ACK (server) or catching retransmits (client).
    Accepted,
    /// Non-2xx final; absorbing retransmissions.
    Completed,
    /// Server INVITE: ACK arrived, absorbing ACK retransmissions.
    Confirmed,
}

#[derive(Debug)]
struct Transaction {
    server: bool,
    method: Method,
    flow: Flow,
    state: State,
    /// The request's header fields (server: to build responses; client: ACK/CANCEL).
    request: Request,
    /// Last message we sent in this transaction, for retransmission.
    last_sent: Option<Vec<u8>>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// When this state ends (timeout or cleanup).
    ends_at: Option<Instant>,
    /// Client INVITE: a CANCEL was asked for before any provisional came back.
    cancel_pending: bool,
    server_key: Option<ServerKey>,
    client_key: Option<(String, Method)>,
    accepted_key: Option<(String, u32)>,
}

impl Transaction {
    /// A server transaction for a request just received (§17.2).
    fn server(request: Request, flow: Flow, key: ServerKey, t1: Duration) -> Transaction {
        Transaction {
            server: true,
            method: request.method.clone(),
            flow,
            state: State::Trying,
            request,
            last_sent: None,
            retransmit_at: None,
            interval: t1,
            ends_at: None,
            cancel_pending: false,
            server_key: Some(key),
            client_key: None,
            accepted_key: None,
        }
    }

    /// A client transaction whose request `bytes` go out now (§17.1): Timer A/E over
    /// UDP, Timer B/F everywhere.
    fn client(
        request: Request,
        flow: Flow,
        branch: String,
        bytes: Vec<u8>,
        now: Instant,
        timers: Timers,
    ) -> Transaction {
        Transaction {
            server: false,
            method: request.method.clone(),
            flow,
            state: State::Trying,
            client_key: Some((branch, request.method.clone())),
            request,
            last_sent: Some(bytes),
            retransmit_at: (!flow.reliable()).then(|| now + timers.t1),
            interval: timers.t1,
            ends_at: Some(now + timers.transaction_timeout()),
            cancel_pending: false,
            server_key: None,
            accepted_key: None,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match (self.retransmit_at, self.ends_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The transaction layer of one SIP endpoint.
#[derive(Debug)]
pub struct Endpoint {
    timers: Timers,
    /// Our own `host:port` for Via, per transport.
    udp_sent_by: String,
    tcp_sent_by: String,
    txs: HashMap<TxId, Transaction>,
    server_index: HashMap<ServerKey, TxId>,
    client_index: HashMap<(String, Method), TxId>,
    /// Our 2xx answers awaiting their ACK, by (Call-ID, CSeq number).
    accepted_index: HashMap<(String, u32), TxId>,
    deadlines: BTreeSet<(Instant, TxId)>,
    next_id: TxId,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Endpoint {
    pub fn new(timers: Timers, udp_sent_by: String, tcp_sent_by: String) -> Endpoint {
        Endpoint {
            timers,
            udp_sent_by,
            tcp_sent_by,
            txs: HashMap::new(),
            server_index: HashMap::new(),
            client_index: HashMap::new(),
            accepted_index: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Live transactions, for metrics and memory figures.
    pub fn transaction_count(&self) -> usize {
        self.txs.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    fn send(&mut self, flow: Flow, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit { flow, bytes });
    }

    fn schedule(&mut self, id: TxId) {
        if let Some(d) = self.txs.get(&id).and_then(Transaction::deadline) {
            self.deadlines.insert((d, id));
        }
    }

    fn insert(&mut self, tx: Transaction) -> TxId {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(k) = &tx.server_key {
            self.server_index.insert(k.clone(), id);
        }
        if let Some(k) = &tx.client_key {
            self.client_index.insert(k.clone(), id);
        }
        self.txs.insert(id, tx);
        self.schedule(id);
        id
    }

    fn remove(&mut self, id: TxId) {
        if let Some(tx) = self.txs.remove(&id) {
            if let Some(k) = tx.server_key {
                self.server_index.remove(&k);
            }
            if let Some(k) = tx.client_key {
                self.client_index.remove(&k);
            }
            if let Some(k) = tx.accepted_key {
                self.accepted_index.remove(&k);
            }
        }
    }

    /// Feeds one datagram, or one framed message from a stream.
    pub fn handle_message(&mut self, now: Instant, flow: Flow, bytes: &[u8]) {
        match message::parse(bytes) {
            Ok(Message::Request(req)) => self.handle_request(now, flow, req),
            Ok(Message::Response(resp)) => self.handle_response(now, resp),
            Err(rejection) => {
                if let Some(mut answer) = rejection.answer(&super::random_token()) {
                    stamp_received(&mut answer.headers, flow);
                    self.send(flow, answer.to_bytes());
                }
                self.events.push_back(Event::Rejected {
                    flow,
                    reason: rejection.to_string(),
                });
            }
        }
    }

    fn server_key(req: &Request) -> Option<ServerKey> {
        let via = header::top_via(&req.headers)?;
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        match via.branch() {
            Some(b) if b.starts_with(BRANCH_COOKIE) => {
                Some(ServerKey::Branch(b.to_string(), via.sent_by, method))
            }
            _ => {
                let from_tag = header::NameAddr::parse(req.headers.get("From")?)
                    .ok()?
                    .tag()
                    .unwrap_or_default()
                    .to_string();
                Some(ServerKey::Legacy(
                    req.call_id().to_string(),
                    req.cseq().seq,
                    from_tag,
                    via.sent_by,
                    method,
                ))
            }
        }
    }

    fn handle_request(&mut self, now: Instant, flow: Flow, mut req: Request) {
        stamp_received(&mut req.headers, flow);
        let Some(key) = Self::server_key(&req) else {
            self.events.push_back(Event::Rejected {
                flow,
                reason: "request without a usable Via".into(),
            });
            return;
        };
        if let Some(&id) = self.server_index.get(&key) {
            self.absorb(now, id, &req);
            return;
        }
        match req.method {
            Method::Ack => {
                let k = (req.call_id().to_string(), req.cseq().seq);
                if let Some(id) = self.accepted_index.remove(&k) {
                    self.remove(id);
                }
                self.events.push_back(Event::Ack { flow, request: req });
                return;
            }
            Method::Cancel => {
                self.handle_cancel(now, flow, key, req);
                return;
            }
            _ => {}
        }
        let invite = req.method == Method::Invite;
        let tx = Transaction::server(req.clone(), flow, key, self.timers.t1);
        let id = self.insert(tx);
        if invite {
            // RFC 3261 §17.2.1: 100 Trying at once, so the caller stops retransmitting.
            let trying = message::response_to(&req.headers, 100, None);
            self.respond(now, id, trying);
        }
        self.events.push_back(Event::Request {
            tx: id,
            flow,
            request: req,
        });
    }

    /// A retransmitted request, or the ACK of a non-2xx final.
    fn absorb(&mut self, now: Instant, id: TxId, req: &Request) {
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        if req.method == Method::Ack {
            if tx.state == State::Completed {
                tx.state = State::Confirmed;
                tx.retransmit_at = None;
                tx.ends_at = Some(if tx.flow.reliable() {
                    now
                } else {
                    now + self.timers.t4
                });
                self.schedule(id);
            }
            return;
        }
        if let Some(bytes) = tx.last_sent.clone() {
            let flow = tx.flow;
            self.send(flow, bytes);
        }
    }

    fn handle_cancel(&mut self, now: Instant, flow: Flow, key: ServerKey, req: Request) {
        let invite_key = match &key {
            ServerKey::Branch(b, s, _) => ServerKey::Branch(b.clone(), s.clone(), Method::Invite),
            ServerKey::Legacy(c, n, f, s, _) => {
                ServerKey::Legacy(c.clone(), *n, f.clone(), s.clone(), Method::Invite)
            }
        };
        let target = self.server_index.get(&invite_key).copied();
        let status = if target.is_some() { 200 } else { 481 };
        let tx = Transaction::server(req.clone(), flow, key, self.timers.t1);
        let id = self.insert(tx);
        let resp = message::response_to(&req.headers, status, Some(&super::random_token()));
        self.respond(now, id, resp);
        if let Some(invite) = target
            && self
                .txs
                .get(&invite)
                .is_some_and(|t| matches!(t.state, State::Trying | State::Proceeding))
        {
            self.events.push_back(Event::Cancelled { tx: invite });
        }
    }

    /// Sends a response in a server transaction. Ignored for unknown or finished
    /// transactions (the TU may race a CANCEL or a timeout).
    pub fn respond(&mut self, now: Instant, id: TxId, resp: Response) {
        let t = self.timers;
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        if !tx.server || !matches!(tx.state, State::Trying | State::Proceeding) {
            return;
        }
        let bytes = resp.to_bytes();
        let flow = tx.flow;
        tx.last_sent = Some(bytes.clone());
        let reliable = flow.reliable();
        match (resp.status, tx.method == Method::Invite) {
            (100..=199, _) => tx.state = State::Proceeding,
            (200..=299, true) => {
                // §13.3.1.4 / RFC 6026: retransmit the 2xx until the ACK arrives.
                tx.state = State::Accepted;
                tx.retransmit_at = (!reliable).then(|| now + t.t1);
                tx.interval = t.t1;
                tx.ends_at = Some(now + t.transaction_timeout());
                let k = (tx.request.call_id().to_string(), tx.request.cseq().seq);
                tx.accepted_key = Some(k.clone());
                self.accepted_index.insert(k, id);
            }
            (_, true) => {
                tx.state = State::Completed;
                tx.retransmit_at = (!reliable).then(|| now + t.t1);
                tx.interval = t.t1;
                tx.ends_at = Some(now + t.transaction_timeout());
            }
            (_, false) => {
                tx.state = State::Completed;
                tx.ends_at = Some(if reliable {
                    now
                } else {
                    now + t.transaction_timeout()
                });
            }
        }
        self.send(flow, bytes);
        self.schedule(id);
    }

    fn top_via(&self, flow: Flow) -> String {
        let sent_by = match flow {
            Flow::Udp(_) => &self.udp_sent_by,
            Flow::Tcp(_) => &self.tcp_sent_by,
        };
        format!(
            "SIP/2.0/{} {};branch={}{};rport",
            flow.via_transport(),
            sent_by,
            BRANCH_COOKIE,
            super::random_token()
        )
    }

    /// Starts a client transaction. The endpoint puts its own Via on top.
    pub fn send_request(&mut self, now: Instant, flow: Flow, mut req: Request) -> TxId {
        let via = self.top_via(flow);
        let branch = header::Via::parse(&via)
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        req.headers.remove("Via");
        req.headers.push_front("Via", via);
        let bytes = req.to_bytes();
        let t = self.timers;
        let tx = Transaction::client(req, flow, branch, bytes.clone(), now, t);
        let id = self.insert(tx);
        self.send(flow, bytes);
        id
    }

    /// Sends an ACK for a 2xx, outside any transaction (§13.2.2.4).
    pub fn send_ack(&mut self, flow: Flow, mut ack: Request) {
        let via = self.top_via(flow);
        ack.headers.remove("Via");
        ack.headers.push_front("Via", via);
        self.send(flow, ack.to_bytes());
    }

    /// Cancels a pending INVITE (§9.1). Sent once a provisional has arrived.
    pub fn cancel(&mut self, now: Instant, id: TxId) {
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        if tx.server || tx.method != Method::Invite {
            return;
        }
        match tx.state {
            State::Trying => tx.cancel_pending = true,
            State::Proceeding => {
                let cancel = cancel_for(&tx.request);
                let flow = tx.flow;
                self.send_cancel(now, flow, cancel);
            }
            _ => {}
        }
    }

    fn send_cancel(&mut self, now: Instant, flow: Flow, cancel: Request) {
        // CANCEL keeps the INVITE's branch (§9.1), so it is built with its Via.
        let bytes = cancel.to_bytes();
        let branch = header::top_via(&cancel.headers)
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let t = self.timers;
        let tx = Transaction::client(cancel, flow, branch, bytes.clone(), now, t);
        self.insert(tx);
        self.send(flow, bytes);
    }

    fn handle_response(&mut self, now: Instant, resp: Response) {
        let Some(via) = header::top_via(&resp.headers) else {
            return;
        };
        let (Some(branch), Some(cseq)) = (via.branch(), resp.cseq()) else {
            return;
        };
        let Some(&id) = self
            .client_index
            .get(&(branch.to_string(), cseq.method.clone()))
        else {
            // A stray response (RFC 4475 §3.1.1.12 and friends): dropped.
            return;
        };
        let t = self.timers;
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        let invite = tx.method == Method::Invite;
        let reliable = tx.flow.reliable();
        let flow = tx.flow;
        match (tx.state, resp.status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                tx.state = State::Proceeding;
                if invite {
                    // No more INVITE retransmissions once a provisional came (Timer A).
                    tx.retransmit_at = None;
                    if std::mem::take(&mut tx.cancel_pending) {
                        let cancel = cancel_for(&tx.request);
                        self.send_cancel(now, flow, cancel);
                    }
                } else {
                    tx.interval = t.t2;
                }
                if resp.status > 100 {
                    self.events.push_back(Event::Response {
                        tx: id,
                        response: resp,
                    });
                }
            }
            (State::Trying | State::Proceeding, 200..=299) if invite => {
                tx.state = State::Accepted;
                tx.retransmit_at = None;
                tx.ends_at = Some(now + t.transaction_timeout());
                self.events.push_back(Event::Response {
                    tx: id,
                    response: resp,
                });
            }
            (State::Accepted, 200..=299) => {
                self.events.push_back(Event::Response {
                    tx: id,
                    response: resp,
                });
            }
            (State::Trying | State::Proceeding, _) => {
                tx.state = State::Completed;
                tx.retransmit_at = None;
                tx.ends_at = Some(match (reliable, invite) {
                    (true, _) => now,
                    (false, true) => now + Duration::from_secs(32),
                    (false, false) => now + t.t4,
                });
                if invite {
                    let ack = ack_for_failure(&tx.request, &resp);
                    tx.last_sent = Some(ack.clone());
                    self.send(flow, ack);
                }
                self.events.push_back(Event::Response {
                    tx: id,
                    response: resp,
                });
            }
            (State::Completed, 300..) if invite => {
                if let Some(ack) = tx.last_sent.clone() {
                    self.send(flow, ack);
                }
            }
            _ => {}
        }
        self.schedule(id);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(tx) = self.txs.get(&id) else {
                continue;
            };
            if tx.deadline() != Some(at) {
                continue; // superseded
            }
            self.fire(now, id);
        }
    }

    fn fire(&mut self, now: Instant, id: TxId) {
        let t = self.timers;
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        if tx.ends_at.is_some_and(|e| e <= now) {
            let event = match (tx.server, tx.state) {
                (false, State::Trying | State::Proceeding) => Some(Event::Timeout { tx: id }),
                (true, State::Accepted) => Some(Event::AckTimeout { tx: id }),
                _ => None,
            };
            self.events.extend(event);
            self.remove(id);
            return;
        }
        if tx.retransmit_at.is_some_and(|r| r <= now) {
            // Timers A/E/G and 2xx retransmission double up to T2 (INVITE client: no cap).
            let cap = if !tx.server && tx.method == Method::Invite {
                Duration::MAX
            } else {
                t.t2
            };
            tx.interval = (tx.interval * 2).min(cap);
            tx.retransmit_at = Some(now + tx.interval);
            if let Some(bytes) = tx.last_sent.clone() {
                let flow = tx.flow;
                self.send(flow, bytes);
            }
        }
        self.schedule(id);
    }
}

/// Adds `received`/`rport` to the top Via of a request from `flow` (RFC 3261 §18.2.1,
/// RFC 3581), so the sender learns its public address.
fn stamp_received(headers: &mut Headers, flow: Flow) {
    let Some(first) = headers.get("Via").map(str::to_string) else {
        return;
    };
    let (top, rest) = match first.find(',') {
        Some(i) if !first[..i].contains('"') => (&first[..i], Some(&first[i..])),
        _ => (first.as_str(), None),
    };
    if top.contains("received=") {
        return;
    }
    let addr = flow.addr();
    let mut stamped = format!("{};received={}", top.trim_end(), addr.ip());
    if let Some(i) = stamped.find(";rport") {
        let after = &stamped[i + 6..];
        if after.is_empty() || after.starts_with(';') {
            stamped.insert_str(i + 6, &format!("={}", addr.port()));
        }
    }
    headers.replace_first("Via", format!("{stamped}{}", rest.unwrap_or_default()));
}

/// The CANCEL for an INVITE we sent (§9.1): same Request-URI, Call-ID, From, To,
/// Route, top Via and CSeq number.
fn cancel_for(invite: &Request) -> Request {
    let mut headers = Headers::default();
    if let Some(v) = invite.headers.get("Via") {
        headers.push("Via", v);
    }
    for name in ["Max-Forwards", "From", "To", "Call-ID", "Route"] {
        for v in invite.headers.all(name) {
            headers.push(name, v);
        }
    }
    headers.push("CSeq", format!("{} CANCEL", invite.cseq().seq));
    Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        headers,
        body: Vec::new(),
    }
}

/// The ACK for a non-2xx final (§17.1.1.3): To from the response, the rest from the
/// INVITE, same branch.
fn ack_for_failure(invite: &Request, resp: &Response) -> Vec<u8> {
    let mut headers = Headers::default();
    if let Some(v) = invite.headers.get("Via") {
        headers.push("Via", v);
    }
    for name in ["Max-Forwards", "From"] {
        if let Some(v) = invite.headers.get(name) {
            headers.push(name, v);
        }
    }
    if let Some(to) = resp.headers.get("To") {
        headers.push("To", to);
    }
    headers.push("Call-ID", invite.call_id());
    headers.push("CSeq", format!("{} ACK", invite.cseq().seq));
    for v in invite.headers.all("Route") {
        headers.push("Route", v);
    }
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Vec::new(),
    }
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        Endpoint::new(
            Timers::default(),
            "127.0.0.1:5060".into(),
            "127.0.0.1:5060".into(),
        )
    }
    const PEER: &str = "127.0.0.1:5062";
    fn flow() -> Flow {
        Flow::Udp(PEER.parse().unwrap())
    }

    fn invite(branch: &str) -> String {
        format!(
            "INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch={branch};rport\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:100@h>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\r\n"
        )
    }

    fn drain(ep: &mut Endpoint) -> Vec<String> {
        std::iter::from_fn(|| ep.poll_transmit())
            .map(|t| String::from_utf8(t.bytes).unwrap())
            .collect()
    }

    #[test]
    fn invite_gets_trying_and_retransmission_is_absorbed() {
        let mut e = ep();
        let now = crate::time::base_instant();
        e.handle_message(now, flow(), invite("z9hG4bKa").as_bytes());
        let sent = drain(&mut e);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].starts_with("SIP/2.0 100 Trying"));
        assert!(sent[0].contains("rport=5062"), "{}", sent[0]);
        assert!(matches!(e.poll_event(), Some(Event::Request { .. })));
        e.handle_message(now, flow(), invite("z9hG4bKa").as_bytes());
        assert_eq!(
            drain(&mut e).len(),
            1,
            "retransmit answered with last response"
        );
        assert!(e.poll_event().is_none(), "no second Request event");
    }

    #[test]
    fn two_hundred_is_retransmitted_until_ack() {
        let mut e = ep();
        let t0 = crate::time::base_instant();
        e.handle_message(t0, flow(), invite("z9hG4bKb").as_bytes());
        let Some(Event::Request { tx, request, .. }) = e.poll_event() else {
            panic!()
        };
        drain(&mut e);
        e.respond(
            t0,
            tx,
            message::response_to(&request.headers, 200, Some("tt")),
        );
        assert_eq!(drain(&mut e).len(), 1);
        assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        e.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(drain(&mut e).len(), 1);
        let ack = invite("z9hG4bKc")
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK");
        e.handle_message(t0 + Duration::from_millis(600), flow(), ack.as_bytes());
        assert!(matches!(e.poll_event(), Some(Event::Ack { .. })));
        assert_eq!(e.transaction_count(), 0);
    }

    #[test]
    fn cancel_matches_pending_invite() {
        let mut e = ep();
        let now = crate::time::base_instant();
        e.handle_message(now, flow(), invite("z9hG4bKd").as_bytes());
        let Some(Event::Request { tx, .. }) = e.poll_event() else {
            panic!()
        };
        drain(&mut e);
        let cancel = invite("z9hG4bKd")
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL");
        e.handle_message(now, flow(), cancel.as_bytes());
        let sent = drain(&mut e);
        assert!(sent[0].starts_with("SIP/2.0 200"));
        assert!(matches!(e.poll_event(), Some(Event::Cancelled { tx: t }) if t == tx));
        let stray = invite("z9hG4bKzz")
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL");
        e.handle_message(now, flow(), stray.as_bytes());
        assert!(drain(&mut e)[0].starts_with("SIP/2.0 481"));
    }

    #[test]
    fn client_invite_times_out_with_doubling_retransmits() {
        let mut e = ep();
        let t0 = crate::time::base_instant();
        let Ok(Message::Request(req)) = message::parse(invite("z9hG4bKe").as_bytes()) else {
            panic!()
        };
        let id = e.send_request(t0, flow(), req);
        assert_eq!(drain(&mut e).len(), 1);
        let mut sends = 0;
        let mut now = t0;
        while let Some(next) = e.poll_timeout() {
            now = next;
            e.handle_timeout(now);
            sends += drain(&mut e).len();
        }
        assert_eq!(sends, 6, "Timer A fires at 0.5,1.5,3.5,7.5,15.5,31.5 s");
        assert_eq!(now - t0, Duration::from_secs(32));
        assert!(matches!(e.poll_event(), Some(Event::Timeout { tx }) if tx == id));
    }

    #[test]
    fn client_failure_is_acked_and_reported_once() {
        let mut e = ep();
        let t0 = crate::time::base_instant();
        let Ok(Message::Request(req)) = message::parse(invite("z9hG4bKf").as_bytes()) else {
            panic!()
        };
        e.send_request(t0, flow(), req);
        let sent = drain(&mut e).remove(0);
        let branch = sent
            .split("branch=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let resp = format!(
            "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:100@h>;tag=x\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        e.handle_message(t0, flow(), resp.as_bytes());
        assert!(drain(&mut e)[0].starts_with("ACK sip:100@127.0.0.1"));
        assert!(
            matches!(e.poll_event(), Some(Event::Response { response, .. }) if response.status == 486)
        );
        e.handle_message(t0, flow(), resp.as_bytes());
        assert_eq!(
            drain(&mut e).len(),
            1,
            "ACK resent for a retransmitted final"
        );
        assert!(e.poll_event().is_none());
    }

    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Whatever arrives, the endpoint answers or drops it and keeps its tables sane.
            #[test]
            fn on_mutated_requests(edits in proptest::collection::vec((0usize..260, any::<u8>()), 0..6), method in 0usize..4) {
                let base = invite("z9hG4bKp");
                let text = match method {
                    0 => base,
                    1 => base.replace("INVITE sip", "CANCEL sip").replace("1 INVITE", "1 CANCEL"),
                    2 => base.replace("INVITE sip", "ACK sip").replace("1 INVITE", "1 ACK"),
                    _ => base.replace("INVITE sip:100", "SIP/2.0 200 OK\r\nX: sip:100"),
                };
                let mut bytes = text.into_bytes();
                for (pos, b) in edits {
                    let i = pos % bytes.len();
                    bytes[i] = b;
                }
                let mut e = ep();
                let t0 = crate::time::base_instant();
                e.handle_message(t0, flow(), &bytes);
                e.handle_message(t0, flow(), &bytes);
                while e.poll_transmit().is_some() {}
                while let Some(ev) = e.poll_event() {
                    if let Event::Request { tx, request, .. } = ev {
                        e.respond(t0, tx, message::response_to(&request.headers, 486, Some("t")));
                    }
                }
                let mut now = t0;
                while let Some(t) = e.poll_timeout() {
                    prop_assert!(t >= now);
                    now = t;
                    e.handle_timeout(now);
                    while e.poll_transmit().is_some() {}
                    while e.poll_event().is_some() {}
                }
                prop_assert_eq!(e.transaction_count(), 0, "every transaction ends");
            }
        }
    }
}
