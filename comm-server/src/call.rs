//! One B2BUA call (RFC 3261 §12-§15 on each side) as a pure state machine.
//!
//! Owns: the caller leg (we are its UAS), the callee leg (we are its UAC), relaying
//! provisional/final answers, offer/answer bodies, CANCEL before answer, BYE from either
//! side, re-INVITE (hold/unhold) relayed across, the ring timeout, and the summary that
//! becomes the CDR. Must not own: transactions (the endpoint), routing decisions or
//! storage (the driver resolves the destination before the call starts), sockets, clocks.
//!
//! ```text
//!   Routing --dest--> Calling --18x--> Ringing --2xx (ACK callee, 200 caller)--> Answered
//!      |                 |  '--ring timeout / CANCEL--> Cancelling --487--> Ended
//!      |                 '--3xx-6xx (relayed)--> Ended
//!      '--auto-answer--> Answered --ACK--> Confirmed --BYE either side--> Ending --> Ended
//! ```
//!
//! Requests the call sends carry a call-local `handle`; the driver maps it to the
//! endpoint's transaction and feeds responses (and timeouts, as 408) back by handle.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::sip::endpoint::{Flow, TxId};
use crate::sip::header::{self, NameAddr};
use crate::sip::message::{self, Headers, Method, Request, Response};

/// Which side of the B2BUA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    Caller,
    Callee,
}

impl Leg {
    fn other(self) -> Leg {
        match self {
            Leg::Caller => Leg::Callee,
            Leg::Callee => Leg::Caller,
        }
    }
}

/// Where the callee leg goes, resolved by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Dial this URI over this flow (a registered binding, a trunk).
    Dial {
        flow: Flow,
        uri: String,
        label: String,
        /// Credentials for the callee's digest challenge (trunks only).
        credentials: Option<TrunkCredentials>,
        /// Media anchored in the server: the body offered to the callee and the answer
        /// given to the caller. `None`: bodies are relayed end to end.
        media: Option<AnchoredMedia>,
    },
    /// Answer on the caller leg with this SDP body and hang up after a while.
    AutoAnswer {
        sdp: Vec<u8>,
        hangup_after: Option<Duration>,
    },
    /// Refuse with this status.
    Reject { status: u16 },
}

/// SDP bodies of a call whose media runs through the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredMedia {
    /// Our offer to the callee.
    pub offer: Vec<u8>,
    /// Our answer to the caller.
    pub answer: Vec<u8>,
}

/// What we may answer a trunk's challenge with. Sent only when the challenge's realm
/// is the configured one, so a peer cannot phish the trunk password.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkCredentials {
    pub username: String,
    pub password: String,
    /// The trunk's realm; `None` accepts the realm the trunk itself challenges with.
    pub realm: Option<String>,
}

impl TrunkCredentials {
    /// The credentials header (name, value) answering a 401/407 from the trunk, for a
    /// `method` to `uri`: only for a challenge in our realm (RFC 3261 §22.2), `None`
    /// otherwise, so a peer cannot phish the trunk password.
    pub fn authorize(
        &self,
        resp: &Response,
        method: &str,
        uri: &str,
    ) -> Option<(&'static str, String)> {
        let (ask, answer) = if resp.status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let challenge = resp
            .headers
            .all(ask)
            .filter_map(crate::sip::digest::Challenge::parse)
            .find(|c| self.realm.as_ref().is_none_or(|r| *r == c.realm))?;
        Some((
            answer,
            challenge.answer(&self.username, &self.password, method, uri, 1),
        ))
    }
}

impl std::fmt::Debug for TrunkCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkCredentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// Who ended the call, for the CDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HungUpBy {
    Caller,
    Callee,
    System,
}

impl HungUpBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HungUpBy::Caller => "caller",
            HungUpBy::Callee => "callee",
            HungUpBy::System => "system",
        }
    }
}

/// How the call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub answered_at: Option<Instant>,
    pub ended_at: Instant,
    pub hung_up_by: HungUpBy,
    /// `answered`, `cancelled`, `busy`, `no-answer`, `rejected`, `failed`, `shutdown`...
    pub result: String,
    /// Final status given to the caller.
    pub status: u16,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer a request in a server transaction.
    Respond { tx: TxId, response: Response },
    /// Start a client transaction; its responses come back with this handle.
    Send {
        handle: u64,
        leg: Leg,
        flow: Flow,
        request: Request,
    },
    /// ACK a 2xx (no transaction).
    Ack { flow: Flow, request: Request },
    /// CANCEL the INVITE sent with this handle.
    Cancel { handle: u64 },
    /// The callee leg's Call-ID, so the driver routes its in-dialog requests here.
    Bind { call_id: String },
    /// The callee answered with this SDP (anchored calls): start its media.
    CalleeAnswered { body: Vec<u8> },
    /// A late dial ([`Call::dial`]) failed or timed out (408); the caller stays on.
    DialFailed { status: u16 },
    /// A re-offer on an anchored call (hold, unhold, new address): the driver answers
    /// it from its own media state and responds in `tx`.
    Reoffer {
        leg: Leg,
        tx: TxId,
        request: Box<Request>,
    },
    /// The final answer to our own re-offer ([`Call::reoffer_callee`]); a 2xx is
    /// already ACKed and `body` is the peer's SDP answer.
    ReofferAnswered {
        leg: Leg,
        status: u16,
        body: Vec<u8>,
    },
    /// The call is over; write the CDR and stop.
    Ended(Summary),
}

/// Our side of one dialog.
#[derive(Debug, Clone)]
struct Dialog {
    flow: Flow,
    call_id: String,
    /// Our From (callee leg) / To (caller leg) with our tag.
    local: String,
    /// The peer's name-addr with its tag (empty tag until known on the callee leg).
    remote: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    confirmed: bool,
    /// We sent or received a BYE; no further requests.
    closing: bool,
}

impl Dialog {
    /// A request in this dialog with CSeq number `cseq` (RFC 3261 §12.2.1.1).
    fn build(&self, method: Method, cseq: u32) -> Request {
        let mut h = Headers::default();
        for r in &self.route_set {
            h.push("Route", r.clone());
        }
        h.push("Max-Forwards", "70");
        h.push("From", self.local.clone());
        h.push("To", self.remote.clone());
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{cseq} {method}"));
        Request {
            method,
            uri: target_uri(&self.remote_target),
            headers: h,
            body: Vec::new(),
        }
    }

    /// The next request of ours in this dialog, with an optional body.
    fn request(&mut self, method: Method, body: Option<(&str, &[u8])>) -> Request {
        self.local_cseq += 1;
        let mut req = self.build(method, self.local_cseq);
        if let Some((ct, b)) = body {
            req.headers.push("Content-Type", ct);
            req.body = b.to_vec();
        }
        req
    }

    /// The ACK for a 2xx to our INVITE with CSeq number `cseq` (§13.2.2.4).
    fn ack(&self, cseq: u32) -> Request {
        self.build(Method::Ack, cseq)
    }
}

/// The URI to send requests to: a Contact with any `?headers` removed, so a stored
/// binding can never inject header fields (RFC 4475 §3.3.14).
fn target_uri(contact: &str) -> header::Uri {
    let clean = contact.split('?').next().unwrap_or(contact);
    header::parse_request_uri(clean)
        .or_else(|_| header::parse_request_uri("sip:invalid.invalid"))
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Calling,
    Ringing,
    Cancelling,
    Answered,
    Ending,
    Ended,
}

/// Settings the call needs from the server.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// Our Contact URI per flow kind (`sip:host:port;transport=...`).
    pub contact_udp: String,
    pub contact_tcp: String,
    pub ring_timeout: Duration,
    /// A final answer to our BYE may take this long before the leg counts as gone.
    pub bye_timeout: Duration,
}

impl CallSettings {
    fn contact(&self, flow: Flow) -> String {
        match flow {
            Flow::Udp(_) => format!("<{}>", self.contact_udp),
            Flow::Tcp(_) => format!("<{}>", self.contact_tcp),
        }
    }
}

/// A relayed in-dialog request waiting for the other side's answer.
#[derive(Debug, Clone)]
struct Relay {
    from_leg: Leg,
    tx: TxId,
    method: Method,
    /// The relayed request's header fields, to answer it.
    headers: Headers,
}

#[derive(Debug)]
pub struct Call {
    settings: CallSettings,
    phase: Phase,
    invite_tx: TxId,
    invite_headers: Headers,
    caller: Dialog,
    callee: Option<Dialog>,
    /// Handle of the callee INVITE.
    invite_handle: Option<u64>,
    /// The callee INVITE as sent, to repeat it with credentials.
    callee_invite: Option<Request>,
    credentials: Option<TrunkCredentials>,
    /// Media runs through the server; `answer` goes to the caller on 2xx.
    anchored: Option<AnchoredMedia>,
    /// We answered one challenge already; a second one means the credentials are wrong.
    challenged: bool,
    /// The callee leg was dialled after the caller was answered and is not answered yet.
    late_dial: bool,
    /// Late dials we gave up on, until their final answer arrives.
    stale_invites: HashMap<u64, Dialog>,
    next_handle: u64,
    relays: HashMap<u64, Relay>,
    /// Handles of re-INVITEs of our own (hold from the agent's desktop), per leg.
    reoffers: HashMap<u64, Leg>,
    /// Handles of BYEs we sent, per leg.
    byes: HashMap<u64, Leg>,
    ring_deadline: Option<Instant>,
    hangup_deadline: Option<Instant>,
    bye_deadline: Option<Instant>,
    answered_at: Option<Instant>,
    hung_up_by: Option<HungUpBy>,
    result: Option<String>,
    caller_status: u16,
    actions: VecDeque<Action>,
}

impl Call {
    /// Starts a call from the caller's INVITE, whose 100 Trying is already sent.
    pub fn new(
        now: Instant,
        settings: CallSettings,
        tx: TxId,
        flow: Flow,
        invite: &Request,
        destination: Destination,
    ) -> Call {
        let tag = crate::sip::random_token();
        let to = invite.headers.get("To").unwrap_or_default();
        let caller = Dialog {
            flow,
            call_id: invite.call_id().to_string(),
            local: format!("{to};tag={tag}"),
            remote: invite.headers.get("From").unwrap_or_default().to_string(),
            remote_target: contact_uri(&invite.headers).unwrap_or_default(),
            route_set: invite
                .headers
                .all("Record-Route")
                .map(str::to_string)
                .collect(),
            local_cseq: 0,
            confirmed: false,
            closing: false,
        };
        let mut call = Call {
            settings,
            phase: Phase::Calling,
            invite_tx: tx,
            invite_headers: invite.headers.clone(),
            caller,
            callee: None,
            invite_handle: None,
            callee_invite: None,
            credentials: None,
            anchored: None,
            challenged: false,
            late_dial: false,
            stale_invites: HashMap::new(),
            next_handle: 1,
            relays: HashMap::new(),
            reoffers: HashMap::new(),
            byes: HashMap::new(),
            ring_deadline: None,
            hangup_deadline: None,
            bye_deadline: None,
            answered_at: None,
            hung_up_by: None,
            result: None,
            caller_status: 0,
            actions: VecDeque::new(),
        };
        call.start(now, invite, destination);
        call
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.ring_deadline, self.hangup_deadline, self.bye_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Our Contact for a leg, for responses the driver builds.
    pub fn contact_for(&self, leg: Leg) -> String {
        let flow = self.dialog(leg).map_or(self.caller.flow, |d| d.flow);
        self.settings.contact(flow)
    }

    /// Whether the call got past the ringing stage (for shutdown figures).
    pub fn is_answered(&self) -> bool {
        self.answered_at.is_some()
    }

    fn handle(&mut self) -> u64 {
        self.next_handle += 1;
        self.next_handle
    }

    fn caller_response(&self, status: u16, body: Option<&[u8]>) -> Response {
        let tag = header::NameAddr::parse(&self.caller.local)
            .ok()
            .and_then(|n| n.tag().map(str::to_string));
        let mut r = message::response_to(&self.invite_headers, status, tag.as_deref());
        if (101..300).contains(&status) {
            r.headers
                .push("Contact", self.settings.contact(self.caller.flow));
        }
        if let Some(b) = body.filter(|b| !b.is_empty()) {
            r.headers.push("Content-Type", "application/sdp");
            r.body = b.to_vec();
        }
        r
    }

    fn start(&mut self, now: Instant, invite: &Request, destination: Destination) {
        match destination {
            Destination::Reject { status } => {
                let r = self.caller_response(status, None);
                self.respond_caller_final(now, r, "rejected", HungUpBy::System);
            }
            Destination::AutoAnswer { sdp, hangup_after } => {
                // Our own answer: re-offers on this call are answered by the driver.
                self.anchored = Some(AnchoredMedia {
                    offer: Vec::new(),
                    answer: sdp.clone(),
                });
                let r = self.caller_response(200, Some(&sdp));
                self.actions.push_back(Action::Respond {
                    tx: self.invite_tx,
                    response: r,
                });
                self.caller_status = 200;
                self.answered_at = Some(now);
                self.phase = Phase::Answered;
                self.hangup_deadline = hangup_after.map(|d| now + d);
            }
            Destination::Dial {
                flow,
                uri,
                label: _,
                credentials,
                media,
            } => {
                self.credentials = credentials;
                self.anchored = media;
                let body = match &self.anchored {
                    Some(m) => Some(("application/sdp".to_string(), m.offer.clone())),
                    None => (!invite.body.is_empty()).then(|| {
                        let ct = invite
                            .headers
                            .get("Content-Type")
                            .unwrap_or("application/sdp");
                        (ct.to_string(), invite.body.clone())
                    }),
                };
                self.send_callee_invite(now, flow, &uri, body, self.settings.ring_timeout);
            }
        }
    }

    /// Opens the callee leg: a new dialog (our own Call-ID and tag, the caller's
    /// identity in From) and its INVITE.
    fn send_callee_invite(
        &mut self,
        now: Instant,
        flow: Flow,
        uri: &str,
        body: Option<(String, Vec<u8>)>,
        ring_timeout: Duration,
    ) {
        let call_id = crate::sip::random_token();
        let from = NameAddr::parse(self.invite_headers.get("From").unwrap_or_default()).ok();
        let display = from.as_ref().and_then(|f| f.display.clone());
        let user = from
            .as_ref()
            .and_then(|f| f.user())
            .unwrap_or("anonymous".into());
        let host = self
            .settings
            .contact_udp
            .split('@')
            .nth(1)
            .unwrap_or("invalid");
        let host = host.split(';').next().unwrap_or(host);
        let tag = crate::sip::random_token();
        let local = match display {
            Some(d) => format!("\"{d}\" <sip:{user}@{host}>;tag={tag}"),
            None => format!("<sip:{user}@{host}>;tag={tag}"),
        };
        let clean_uri = uri.split('?').next().unwrap_or(uri).to_string();
        let mut dialog = Dialog {
            flow,
            call_id: call_id.clone(),
            local,
            remote: format!("<{clean_uri}>"),
            remote_target: clean_uri,
            route_set: Vec::new(),
            local_cseq: 0,
            confirmed: false,
            closing: false,
        };
        let mut req = dialog.request(
            Method::Invite,
            body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_slice())),
        );
        req.headers.push("Contact", self.settings.contact(flow));
        req.headers.push("Allow", crate::sip::ALLOW);
        self.callee = Some(dialog);
        self.callee_invite = Some(req.clone());
        self.challenged = false;
        let handle = self.handle();
        self.invite_handle = Some(handle);
        self.ring_deadline = Some(now + ring_timeout);
        self.actions.push_back(Action::Bind { call_id });
        self.actions.push_back(Action::Send {
            handle,
            leg: Leg::Callee,
            flow,
            request: req,
        });
    }

    /// Dials a callee for a call that is already answered (a queue offering the caller
    /// to an agent, a callback). Media is anchored: `offer` is our SDP for the new leg;
    /// the driver hears back through `CalleeAnswered` or `DialFailed`. Refused (false)
    /// unless the call is answered and has no callee leg.
    pub fn dial(
        &mut self,
        now: Instant,
        flow: Flow,
        uri: &str,
        offer: Vec<u8>,
        ring_timeout: Duration,
    ) -> bool {
        if self.phase != Phase::Answered || self.callee.as_ref().is_some_and(|d| !d.closing) {
            return false;
        }
        self.late_dial = true;
        self.credentials = None;
        self.send_callee_invite(
            now,
            flow,
            uri,
            Some(("application/sdp".into(), offer)),
            ring_timeout,
        );
        true
    }

    /// As [`Call::dial`], through a trunk that may challenge us: its credentials
    /// answer one challenge from its own realm (a blind transfer to a number).
    pub fn dial_trunk(
        &mut self,
        now: Instant,
        flow: Flow,
        uri: &str,
        offer: Vec<u8>,
        ring_timeout: Duration,
        credentials: Option<TrunkCredentials>,
    ) -> bool {
        let dialled = self.dial(now, flow, uri, offer, ring_timeout);
        if dialled {
            self.credentials = credentials;
            self.challenged = false;
        }
        dialled
    }

    /// Gives up a late dial that has not been answered (the offer was withdrawn).
    pub fn cancel_dial(&mut self, now: Instant) {
        if self.late_dial {
            self.abandon_late_dial(now, 487);
        }
    }

    /// Sends a re-offer of ours on the answered callee leg (RFC 3264 §8; hold from the
    /// agent's desktop is `a=sendonly`, RFC 3264 §8.4). The answer comes back as
    /// [`Action::ReofferAnswered`]. Refused (false) without a confirmed callee leg.
    pub fn reoffer_callee(&mut self, _now: Instant, offer: &[u8]) -> bool {
        if self.phase != Phase::Answered || self.late_dial {
            return false;
        }
        let Some(d) = self.callee.as_mut().filter(|d| d.confirmed && !d.closing) else {
            return false;
        };
        let flow = d.flow;
        let mut request = d.request(Method::Invite, Some(("application/sdp", offer)));
        request.headers.push("Contact", self.settings.contact(flow));
        let handle = self.handle();
        self.reoffers.insert(handle, Leg::Callee);
        self.actions.push_back(Action::Send {
            handle,
            leg: Leg::Callee,
            flow,
            request,
        });
        true
    }

    /// Lets the answered callee leg go while the caller stays on (a blind transfer: the
    /// agent's phone gets a BYE, the caller waits for whoever is dialled next). Answers
    /// to that BYE are not waited for. Refused (false) without an answered callee leg.
    pub fn release_callee(&mut self, _now: Instant) -> bool {
        if self.phase != Phase::Answered || self.late_dial {
            return false;
        }
        let Some(mut d) = self.callee.take() else {
            return false;
        };
        self.invite_handle = None;
        self.reoffers.retain(|_, leg| *leg != Leg::Callee);
        if d.closing || !d.confirmed {
            return true;
        }
        d.closing = true;
        let bye = d.request(Method::Bye, None);
        let handle = self.handle();
        self.actions.push_back(Action::Send {
            handle,
            leg: Leg::Callee,
            flow: d.flow,
            request: bye,
        });
        true
    }

    /// Cancels the ringing late dial and reports it failed. Its dialog is kept aside so
    /// a 200 that crosses our CANCEL is still ACKed and hung up (§9.1).
    fn abandon_late_dial(&mut self, _now: Instant, status: u16) {
        self.late_dial = false;
        self.ring_deadline = None;
        if let (Some(h), Some(d)) = (self.invite_handle.take(), self.callee.take()) {
            self.actions.push_back(Action::Cancel { handle: h });
            self.stale_invites.insert(h, d);
        }
        self.actions.push_back(Action::DialFailed { status });
    }

    fn respond_caller_final(&mut self, now: Instant, r: Response, result: &str, by: HungUpBy) {
        self.caller_status = r.status;
        self.actions.push_back(Action::Respond {
            tx: self.invite_tx,
            response: r,
        });
        self.result.get_or_insert_with(|| result.to_string());
        self.hung_up_by.get_or_insert(by);
        self.finish(now);
    }

    fn finish(&mut self, now: Instant) {
        if self.phase == Phase::Ended {
            return;
        }
        self.phase = Phase::Ended;
        self.ring_deadline = None;
        self.hangup_deadline = None;
        self.bye_deadline = None;
        self.actions.push_back(Action::Ended(Summary {
            answered_at: self.answered_at,
            ended_at: now,
            hung_up_by: self.hung_up_by.unwrap_or(HungUpBy::System),
            result: self.result.clone().unwrap_or_else(|| "failed".into()),
            status: self.caller_status,
        }));
    }

    /// The caller cancelled before answer (the endpoint already said 200 to CANCEL).
    pub fn handle_cancelled(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Calling | Phase::Ringing) {
            return;
        }
        self.hung_up_by = Some(HungUpBy::Caller);
        self.result = Some("cancelled".into());
        self.give_up_before_answer(now, 487);
    }

    /// Answers the caller's INVITE with a failure and withdraws the callee leg: the
    /// common end of CANCEL (487), ring timeout (480) and shutdown (503) before answer.
    fn give_up_before_answer(&mut self, now: Instant, status: u16) {
        let r = self.caller_response(status, None);
        self.caller_status = status;
        self.actions.push_back(Action::Respond {
            tx: self.invite_tx,
            response: r,
        });
        self.cancel_callee(now);
    }

    fn cancel_callee(&mut self, now: Instant) {
        self.ring_deadline = None;
        match self.invite_handle {
            Some(h) if self.callee.is_some() => {
                self.actions.push_back(Action::Cancel { handle: h });
                self.phase = Phase::Cancelling;
                // The callee's 487 (or a timeout) ends the call.
                self.bye_deadline = Some(now + self.settings.bye_timeout);
            }
            _ => self.finish(now),
        }
    }

    /// A request inside one of our dialogs.
    pub fn handle_request(&mut self, now: Instant, leg: Leg, tx: TxId, req: &Request) {
        match req.method {
            Method::Bye => {
                let ok = message::response_to(&req.headers, 200, None);
                self.actions.push_back(Action::Respond { tx, response: ok });
                self.dialog_mut(leg).closing = true;
                if self.phase == Phase::Ended {
                    return;
                }
                self.hung_up_by.get_or_insert(match leg {
                    Leg::Caller => HungUpBy::Caller,
                    Leg::Callee => HungUpBy::Callee,
                });
                if self.phase == Phase::Answered {
                    self.result.get_or_insert("answered".into());
                }
                self.hang_up(now, leg.other());
                self.maybe_finish(now);
            }
            Method::Options => {
                let ok = message::response_to(&req.headers, 200, None);
                self.actions.push_back(Action::Respond { tx, response: ok });
            }
            Method::Invite | Method::Update
                if self.phase == Phase::Answered && self.anchored.is_some() =>
            {
                if let Some(c) = contact_uri(&req.headers) {
                    self.dialog_mut(leg).remote_target = c;
                }
                self.actions.push_back(Action::Reoffer {
                    leg,
                    tx,
                    request: Box::new(req.clone()),
                });
            }
            Method::Invite | Method::Update | Method::Info
                if self.phase == Phase::Answered && self.dialog(leg.other()).is_some() =>
            {
                if req.method == Method::Invite {
                    // Target refresh (§12.2.2).
                    if let Some(c) = contact_uri(&req.headers) {
                        self.dialog_mut(leg).remote_target = c;
                    }
                }
                let ct = req
                    .headers
                    .get("Content-Type")
                    .unwrap_or("application/sdp")
                    .to_string();
                let other = leg.other();
                let Some(d) = self.dialog_mut_opt(other) else {
                    return;
                };
                let mut relayed = d.request(
                    req.method.clone(),
                    (!req.body.is_empty()).then_some((ct.as_str(), req.body.as_slice())),
                );
                let flow = d.flow;
                if req.method == Method::Invite {
                    relayed.headers.push("Contact", self.settings.contact(flow));
                }
                let handle = self.handle();
                self.relays.insert(
                    handle,
                    Relay {
                        from_leg: leg,
                        tx,
                        method: req.method.clone(),
                        headers: req.headers.clone(),
                    },
                );
                self.actions.push_back(Action::Send {
                    handle,
                    leg: other,
                    flow,
                    request: relayed,
                });
            }
            Method::Invite => {
                let r = message::response_to(&req.headers, 491, None);
                self.actions.push_back(Action::Respond { tx, response: r });
            }
            _ => {
                let mut r = message::response_to(&req.headers, 405, None);
                r.headers.push("Allow", crate::sip::ALLOW);
                self.actions.push_back(Action::Respond { tx, response: r });
            }
        }
    }

    /// The ACK for our 2xx on the caller leg.
    pub fn handle_ack(&mut self, _now: Instant, leg: Leg) {
        if let Some(d) = self.dialog_mut_opt(leg) {
            d.confirmed = true;
        }
    }

    /// Our 2xx to the caller was never acknowledged.
    pub fn handle_ack_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Answered {
            self.hung_up_by.get_or_insert(HungUpBy::System);
            self.result.get_or_insert("failed".into());
            self.hang_up(now, Leg::Caller);
            self.hang_up(now, Leg::Callee);
            self.maybe_finish(now);
        }
    }

    /// A response to a request we sent (a timeout arrives as a 408).
    pub fn handle_response(&mut self, now: Instant, handle: u64, resp: &Response) {
        if resp.is_final()
            && let Some(mut d) = self.stale_invites.remove(&handle)
        {
            if resp.status < 300 {
                // Answered after we gave up: confirm and end that leg at once.
                if let Some(to) = resp.headers.get("To") {
                    d.remote = to.to_string();
                }
                if let Some(c) = contact_uri(&resp.headers) {
                    d.remote_target = c;
                }
                let ack = d.ack(resp.cseq().map_or(1, |c| c.seq));
                self.actions.push_back(Action::Ack {
                    flow: d.flow,
                    request: ack,
                });
                let bye = d.request(Method::Bye, None);
                let h = self.handle();
                self.actions.push_back(Action::Send {
                    handle: h,
                    leg: Leg::Callee,
                    flow: d.flow,
                    request: bye,
                });
            }
            return;
        }
        if Some(handle) == self.invite_handle {
            self.handle_invite_response(now, resp);
        } else if let Some(leg) = self.byes.get(&handle).copied() {
            if resp.is_final() {
                self.byes.remove(&handle);
                if let Some(d) = self.dialog_mut_opt(leg) {
                    d.closing = true;
                }
                self.maybe_finish(now);
            }
        } else if resp.is_final()
            && let Some(leg) = self.reoffers.remove(&handle)
        {
            if resp.status < 300
                && let (Some(cseq), Some(d)) = (resp.cseq(), self.dialog_mut_opt(leg))
            {
                let ack = d.ack(cseq.seq);
                let flow = d.flow;
                self.actions.push_back(Action::Ack { flow, request: ack });
            }
            self.actions.push_back(Action::ReofferAnswered {
                leg,
                status: resp.status,
                body: resp.body.clone(),
            });
        } else if resp.is_final()
            && let Some(relay) = self.relays.remove(&handle)
        {
            let leg = relay.from_leg.other();
            if relay.method == Method::Invite
                && resp.status < 300
                && let (Some(cseq), Some(d)) = (resp.cseq(), self.dialog_mut_opt(leg))
            {
                let ack = d.ack(cseq.seq);
                let flow = d.flow;
                self.actions.push_back(Action::Ack { flow, request: ack });
            }
            // Answer the original request with the same status and body.
            let mut out = relayed_response(&relay.headers, resp);
            if relay.method == Method::Invite && resp.status < 300 {
                let flow = self.dialog(relay.from_leg).map(|d| d.flow);
                if let Some(flow) = flow {
                    out.headers.push("Contact", self.settings.contact(flow));
                }
            }
            self.actions.push_back(Action::Respond {
                tx: relay.tx,
                response: out,
            });
        }
    }

    fn handle_invite_response(&mut self, now: Instant, resp: &Response) {
        let status = resp.status;
        if (101..200).contains(&status) {
            if let Some(d) = self.callee.as_mut()
                && let Some(tag) = NameAddr::parse(resp.headers.get("To").unwrap_or_default())
                    .ok()
                    .and_then(|n| n.tag().map(str::to_string))
            {
                d.remote = with_tag(&d.remote, &tag);
            }
            if self.phase == Phase::Calling {
                self.phase = Phase::Ringing;
                let early = if self.anchored.is_some() {
                    &[][..]
                } else {
                    &resp.body[..]
                };
                let r = self.caller_response(status, Some(early));
                self.actions.push_back(Action::Respond {
                    tx: self.invite_tx,
                    response: r,
                });
            }
            return;
        }
        if status < 300 {
            // Callee answered: adopt its dialog state and ACK.
            let Some(d) = self.callee.as_mut() else {
                return;
            };
            if let Some(to) = resp.headers.get("To") {
                d.remote = to.to_string();
            }
            if let Some(c) = contact_uri(&resp.headers) {
                d.remote_target = c;
            }
            d.route_set = resp
                .headers
                .all("Record-Route")
                .map(str::to_string)
                .collect();
            d.route_set.reverse();
            d.confirmed = true;
            let ack = d.ack(resp.cseq().map_or(1, |c| c.seq));
            let flow = d.flow;
            self.actions.push_back(Action::Ack { flow, request: ack });
            match self.phase {
                Phase::Calling | Phase::Ringing => {
                    self.phase = Phase::Answered;
                    self.answered_at = Some(now);
                    self.ring_deadline = None;
                    self.caller_status = 200;
                    let body = match &self.anchored {
                        Some(m) => {
                            self.actions.push_back(Action::CalleeAnswered {
                                body: resp.body.clone(),
                            });
                            m.answer.clone()
                        }
                        None => resp.body.clone(),
                    };
                    let r = self.caller_response(200, Some(&body));
                    self.actions.push_back(Action::Respond {
                        tx: self.invite_tx,
                        response: r,
                    });
                }
                Phase::Answered if self.late_dial => {
                    self.late_dial = false;
                    self.ring_deadline = None;
                    self.actions.push_back(Action::CalleeAnswered {
                        body: resp.body.clone(),
                    });
                }
                Phase::Answered => {} // a 2xx retransmission: re-ACKed above
                _ => {
                    // Answered after we gave up (CANCEL race, §9.1): end that leg.
                    self.hang_up(now, Leg::Callee);
                    self.maybe_finish(now);
                }
            }
            return;
        }
        if matches!(status, 401 | 407)
            && (matches!(self.phase, Phase::Calling | Phase::Ringing) || self.late_dial)
            && self.answer_challenge(resp)
        {
            return;
        }
        // Failure.
        self.ring_deadline = None;
        if self.late_dial {
            self.late_dial = false;
            self.callee = None;
            self.invite_handle = None;
            self.actions.push_back(Action::DialFailed { status });
            return;
        }
        if let Some(d) = self.callee.as_mut() {
            d.closing = true;
        }
        match self.phase {
            Phase::Calling | Phase::Ringing => {
                let (relay, result) = match status {
                    486 | 600 => (486, "busy"),
                    408 | 480 => (480, "no-answer"),
                    487 => (487, "cancelled"),
                    403 | 603 => (603, "rejected"),
                    // Never pass a challenge on: the caller would answer it for the trunk.
                    401 | 407 => (403, "failed"),
                    404 | 484 => (404, "failed"),
                    _ => (status.max(400), "failed"),
                };
                let r = self.caller_response(relay, None);
                self.respond_caller_final(now, r, result, HungUpBy::Callee);
            }
            // The callee confirmed our CANCEL (487) or failed anyway: nothing is left.
            Phase::Cancelling => self.finish(now),
            _ => self.maybe_finish(now),
        }
    }

    /// Repeats the callee INVITE with credentials for a challenge from the trunk's own
    /// realm (RFC 3261 §22.2). Returns false when it may not or cannot.
    fn answer_challenge(&mut self, resp: &Response) -> bool {
        let (Some(creds), Some(invite), false) =
            (&self.credentials, &self.callee_invite, self.challenged)
        else {
            return false;
        };
        let Some((answer, value)) = creds.authorize(resp, "INVITE", &invite.uri.to_string()) else {
            tracing::warn!("trunk challenged with a realm we hold no credentials for");
            return false;
        };
        let mut again = invite.clone();
        let Some(d) = self.callee.as_mut() else {
            return false;
        };
        d.local_cseq += 1;
        again
            .headers
            .set("CSeq", format!("{} INVITE", d.local_cseq));
        again.headers.set(answer, value);
        let flow = d.flow;
        self.challenged = true;
        let handle = self.handle();
        self.invite_handle = Some(handle);
        self.actions.push_back(Action::Send {
            handle,
            leg: Leg::Callee,
            flow,
            request: again,
        });
        true
    }

    /// Timers: ring timeout, auto-answer hang-up, BYE/CANCEL answer timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.late_dial && self.ring_deadline.is_some_and(|t| t <= now) {
            self.abandon_late_dial(now, 408);
        }
        if self.ring_deadline.is_some_and(|t| t <= now) {
            self.ring_deadline = None;
            self.hung_up_by = Some(HungUpBy::System);
            self.result = Some("no-answer".into());
            self.give_up_before_answer(now, 480);
        }
        if self.hangup_deadline.is_some_and(|t| t <= now) {
            self.hangup_deadline = None;
            self.hung_up_by.get_or_insert(HungUpBy::System);
            self.result.get_or_insert("answered".into());
            self.hang_up(now, Leg::Caller);
            self.maybe_finish(now);
        }
        if self.bye_deadline.is_some_and(|t| t <= now) {
            self.bye_deadline = None;
            self.byes.clear();
            for d in [Some(&mut self.caller), self.callee.as_mut()]
                .into_iter()
                .flatten()
            {
                d.closing = true;
            }
            self.maybe_finish(now);
            self.finish(now);
        }
    }

    /// Ends the call from our side (shutdown grace over, administrative hang-up).
    pub fn hang_up_all(&mut self, now: Instant, result: &str) {
        self.hung_up_by.get_or_insert(HungUpBy::System);
        self.result.get_or_insert(result.to_string());
        match self.phase {
            Phase::Calling | Phase::Ringing => self.give_up_before_answer(now, 503),
            Phase::Answered => {
                self.hang_up(now, Leg::Caller);
                self.hang_up(now, Leg::Callee);
                self.maybe_finish(now);
            }
            _ => {}
        }
    }

    fn hang_up(&mut self, now: Instant, leg: Leg) {
        if leg == Leg::Callee && self.late_dial {
            self.abandon_late_dial(now, 487);
        }
        self.phase = match self.phase {
            Phase::Ended => Phase::Ended,
            _ => Phase::Ending,
        };
        let Some(d) = self.dialog_mut_opt(leg) else {
            return;
        };
        if d.closing || !matches!(leg, Leg::Caller) && !d.confirmed {
            d.closing = true;
            return;
        }
        d.closing = true;
        let bye = d.request(Method::Bye, None);
        let flow = d.flow;
        let handle = self.handle();
        self.byes.insert(handle, leg);
        self.bye_deadline = Some(now + self.settings.bye_timeout);
        self.actions.push_back(Action::Send {
            handle,
            leg,
            flow,
            request: bye,
        });
    }

    fn maybe_finish(&mut self, now: Instant) {
        if self.phase != Phase::Ended && self.byes.is_empty() && self.phase != Phase::Cancelling {
            let open = [Some(&self.caller), self.callee.as_ref()]
                .into_iter()
                .flatten()
                .any(|d| !d.closing);
            if !open || self.phase == Phase::Ending {
                self.finish(now);
            }
        }
    }

    fn dialog(&self, leg: Leg) -> Option<&Dialog> {
        match leg {
            Leg::Caller => Some(&self.caller),
            Leg::Callee => self.callee.as_ref(),
        }
    }

    fn dialog_mut_opt(&mut self, leg: Leg) -> Option<&mut Dialog> {
        match leg {
            Leg::Caller => Some(&mut self.caller),
            Leg::Callee => self.callee.as_mut(),
        }
    }

    fn dialog_mut(&mut self, leg: Leg) -> &mut Dialog {
        match leg {
            Leg::Callee if self.callee.is_some() => {
                self.callee.as_mut().unwrap_or(&mut self.caller)
            }
            _ => &mut self.caller,
        }
    }
}

/// Our answer to a relayed request, carrying the other side's status and body.
fn relayed_response(request: &Headers, resp: &Response) -> Response {
    let mut r = message::response_to(request, resp.status, None);
    r.reason = resp.reason.clone();
    if !resp.body.is_empty() {
        let ct = resp
            .headers
            .get("Content-Type")
            .unwrap_or("application/sdp");
        r.headers.push("Content-Type", ct);
        r.body = resp.body.clone();
    }
    r
}

fn with_tag(name_addr: &str, tag: &str) -> String {
    if header::has_tag(name_addr) {
        name_addr.to_string()
    } else {
        format!("{name_addr};tag={tag}")
    }
}

/// The first Contact URI of a message.
pub fn contact_uri(headers: &Headers) -> Option<String> {
    let list = header::Contact::parse_list(headers.get("Contact")?).ok()?;
    match list.into_iter().next()? {
        header::Contact::Address(a) => Some(a.uri),
        header::Contact::Wildcard => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{self, Message};

    fn settings() -> CallSettings {
        CallSettings {
            contact_udp: "sip:comm-server@127.0.0.1:5060".into(),
            contact_tcp: "sip:comm-server@127.0.0.1:5060;transport=tcp".into(),
            ring_timeout: Duration::from_secs(20),
            bye_timeout: Duration::from_secs(32),
        }
    }

    fn flow() -> Flow {
        Flow::Udp("127.0.0.1:5062".parse().unwrap())
    }

    /// A caller in a queue: the call is answered by the server (auto-answer).
    fn answered_call(now: Instant) -> Call {
        let invite = "INVITE sip:800@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKc\r\nFrom: \"Caller\" <sip:caller@127.0.0.1>;tag=ct\r\nTo: <sip:800@127.0.0.1>\r\nCall-ID: q1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:5062>\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Request(req)) = message::parse(invite.as_bytes()) else {
            panic!("test INVITE")
        };
        let dest = Destination::AutoAnswer {
            sdp: b"v=0\r\n".to_vec(),
            hangup_after: None,
        };
        let mut call = Call::new(now, settings(), 1, flow(), &req, dest);
        let actions: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
        assert!(matches!(&actions[0], Action::Respond { response, .. } if response.status == 200));
        call
    }

    /// Dials the agent; returns the INVITE's handle and request.
    fn dial(call: &mut Call, now: Instant) -> (u64, Request) {
        assert!(call.dial(
            now,
            flow(),
            "sip:agent@127.0.0.1:5070",
            b"v=0\r\n".to_vec(),
            Duration::from_secs(15)
        ));
        let actions: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
        match &actions[..] {
            [
                Action::Bind { .. },
                Action::Send {
                    handle, request, ..
                },
            ] => (*handle, request.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn answer(invite: &Request, status: u16) -> Response {
        let mut r = message::response_to(&invite.headers, status, Some("agenttag"));
        r.headers.push("Contact", "<sip:agent@127.0.0.1:5070>");
        r
    }

    #[test]
    fn a_failed_late_dial_keeps_the_caller_and_the_next_one_connects() {
        let t0 = crate::time::base_instant();
        let mut call2 = answered_call(t0);
        let (h, invite) = dial(&mut call2, t0);
        assert_eq!(invite.method, Method::Invite);
        assert_eq!(invite.body, b"v=0\r\n");
        call2.handle_response(t0, h, &answer(&invite, 180));
        assert!(
            call2.poll_action().is_none(),
            "the caller is already answered: no 180 relayed"
        );
        call2.handle_response(t0, h, &answer(&invite, 486));
        assert_eq!(
            call2.poll_action(),
            Some(Action::DialFailed { status: 486 })
        );
        assert!(!call2.is_ended(), "the caller stays on");

        let (h, invite) = dial(&mut call2, t0);
        call2.handle_response(t0, h, &answer(&invite, 200));
        let actions: Vec<_> = std::iter::from_fn(|| call2.poll_action()).collect();
        assert!(
            matches!(&actions[0], Action::Ack { request, .. } if request.method == Method::Ack)
        );
        assert!(matches!(&actions[1], Action::CalleeAnswered { .. }));
        assert!(
            !call2.dial(t0, flow(), "sip:other@h", vec![], Duration::from_secs(1)),
            "one callee at a time"
        );
    }

    #[test]
    fn ring_timeout_cancels_and_a_crossing_200_is_acked_and_hung_up() {
        let t0 = crate::time::base_instant();
        let mut call = answered_call(t0);
        let (h, invite) = dial(&mut call, t0);
        assert_eq!(call.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        call.handle_timeout(t0 + Duration::from_secs(15));
        let actions: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
        assert_eq!(
            actions,
            vec![
                Action::Cancel { handle: h },
                Action::DialFailed { status: 408 }
            ]
        );
        assert!(!call.is_ended());
        // The agent answered just as we cancelled.
        call.handle_response(t0 + Duration::from_secs(15), h, &answer(&invite, 200));
        let actions: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
        assert!(matches!(&actions[0], Action::Ack { .. }));
        assert!(
            matches!(&actions[1], Action::Send { request, .. } if request.method == Method::Bye)
        );
        assert!(
            !call.is_ended(),
            "the caller is still waiting for the next agent"
        );
    }

    #[test]
    fn the_caller_hanging_up_while_an_agent_rings_cancels_the_agent() {
        let t0 = crate::time::base_instant();
        let mut call = answered_call(t0);
        let (h, _invite) = dial(&mut call, t0);
        let bye = "BYE sip:comm-server@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKb\r\nFrom: <sip:caller@127.0.0.1>;tag=ct\r\nTo: <sip:800@127.0.0.1>;tag=x\r\nCall-ID: q1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Request(bye)) = message::parse(bye.as_bytes()) else {
            panic!()
        };
        call.handle_request(t0, Leg::Caller, 9, &bye);
        let actions: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
        assert!(
            actions.contains(&Action::Cancel { handle: h }),
            "{actions:?}"
        );
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Ended(s) if s.hung_up_by == HungUpBy::Caller))
        );
    }

    /// An answered call with an agent connected by a late dial.
    fn connected_call(t0: Instant) -> Call {
        let mut call = answered_call(t0);
        let (h, invite) = dial(&mut call, t0);
        call.handle_response(t0, h, &answer(&invite, 200));
        while call.poll_action().is_some() {}
        call
    }

    #[test]
    fn our_reoffer_goes_to_the_agent_in_its_dialog_and_its_2xx_is_acked() {
        let t0 = crate::time::base_instant();
        let mut call = connected_call(t0);
        assert!(call.reoffer_callee(t0, b"v=0\r\na=sendonly\r\n"));
        let (h, reinvite) = match call.poll_action() {
            Some(Action::Send {
                handle,
                leg: Leg::Callee,
                request,
                ..
            }) => (handle, request),
            other => panic!("expected the re-INVITE, got {other:?}"),
        };
        assert_eq!(reinvite.method, Method::Invite);
        assert_eq!(reinvite.body, b"v=0\r\na=sendonly\r\n");
        assert!(
            reinvite
                .headers
                .get("To")
                .is_some_and(|t| t.contains("tag=agenttag")),
            "in the agent's dialog (RFC 3261 §14.1)"
        );
        assert_eq!(reinvite.uri.to_string(), "sip:agent@127.0.0.1:5070");
        assert!(reinvite.headers.get("Contact").is_some());
        let mut ok = answer(&reinvite, 200);
        ok.body = b"v=0\r\na=recvonly\r\n".to_vec();
        call.handle_response(t0, h, &ok);
        let actions: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
        assert!(
            matches!(&actions[..], [
                Action::Ack { request, .. },
                Action::ReofferAnswered { leg: Leg::Callee, status: 200, body },
            ] if request.method == Method::Ack
                && request.headers.get("CSeq") == reinvite.headers.get("CSeq").map(|c| c.replace("INVITE", "ACK")).as_deref()
                && body == b"v=0\r\na=recvonly\r\n"),
            "{actions:?}"
        );
        assert!(!call.is_ended());
    }

    #[test]
    fn releasing_the_agent_byes_only_the_agent_and_the_next_one_can_be_dialled() {
        let t0 = crate::time::base_instant();
        let mut call = answered_call(t0);
        assert!(!call.release_callee(t0), "no agent leg to release yet");
        assert!(
            !call.reoffer_callee(t0, b"v=0\r\n"),
            "no agent leg to re-offer to"
        );
        let mut call = connected_call(t0);
        assert!(call.release_callee(t0));
        let actions: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
        let bye = match &actions[..] {
            [
                Action::Send {
                    handle,
                    leg: Leg::Callee,
                    request,
                    ..
                },
            ] if request.method == Method::Bye => (*handle, request.clone()),
            other => panic!("expected one BYE to the agent, got {other:?}"),
        };
        assert!(!call.is_ended(), "the caller stays on");
        assert_eq!(
            call.poll_timeout(),
            None,
            "no BYE timer that would end the call"
        );
        // The agent's 200 for the BYE changes nothing.
        call.handle_response(t0, bye.0, &answer(&bye.1, 200));
        assert!(call.poll_action().is_none());
        assert!(!call.is_ended());
        // The next agent is dialled and connects.
        let (h, invite) = dial(&mut call, t0);
        call.handle_response(t0, h, &answer(&invite, 200));
        let actions: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::CalleeAnswered { .. })),
            "{actions:?}"
        );
    }
}
