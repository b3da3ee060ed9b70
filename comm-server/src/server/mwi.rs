//! Message-waiting subscriptions: RFC 3842 `message-summary` over RFC 6665 SUBSCRIBE
//! and NOTIFY, for phones that ask rather than wait for unsolicited NOTIFYs.
//!
//! Owns: answering SUBSCRIBE (from the authenticated owner of the mailbox only), the
//! subscription dialogs, their expiry, and the NOTIFYs: one at once, one on every
//! change to a watched mailbox (new, heard, deleted), a final `terminated` one on
//! unsubscribe (`Expires: 0`) or expiry; and the unsolicited NOTIFYs to the owner's
//! registered phones on every change. Must not own the counts (the store) or what
//! changes them (`voicemail.rs`, agents over gRPC).
//!
//! Subscriptions live in memory only: after a restart phones re-subscribe when their
//! refresh fails with 481, as RFC 6665 §4.1.2.2 has them do. NOTIFY responses are not
//! read, so a subscriber that went away is dropped when its subscription expires.
//!
//! ```text
//!  SUBSCRIBE (auth, owner) ──► 200 + NOTIFY active;expires=N ──► Active
//!  Active ── mailbox changes ──► NOTIFY active;expires=left
//!  Active ── SUBSCRIBE refresh ──► 200 + NOTIFY active;expires=N
//!  Active ── SUBSCRIBE Expires: 0 ──► 200 + NOTIFY terminated ──► gone
//!  Active ── no refresh by expiry ──► NOTIFY terminated;reason=timeout ──► gone
//! ```
//!
//! The Request-URI names what is watched: a mailbox (`sip:sales@host`) its owner may
//! watch, or the subscriber's own address (`sip:bob@host`) for every mailbox they own,
//! counted together. Someone else's mailbox is 403, no such mailbox 404, another event
//! package 489 (RFC 6665 §8.3.1), a too-short expiry 423.

use super::*;
use crate::voicemail::message_summary;

/// The event package, RFC 3842 §3.
pub(super) const EVENT: &str = "message-summary";
/// RFC 3842 §3.4 (and RFC 6665 §4.2.1.1): one hour when the SUBSCRIBE names none.
pub(super) const DEFAULT_EXPIRES: u64 = 3600;

/// What reaches the subscription task.
pub(super) enum MwiInput {
    /// A SUBSCRIBE, new or in a subscription's dialog.
    Subscribe {
        tx: TxId,
        flow: Flow,
        request: Box<Request>,
    },
    /// A mailbox's counts may have changed.
    Changed { mailbox: String },
}

/// One subscription: an RFC 6665 dialog we NOTIFY in.
#[derive(Debug, Clone)]
struct Subscription {
    /// The authenticated subscriber, owner of every watched mailbox.
    user: String,
    mailboxes: Vec<String>,
    /// The `Message-Account` of the summaries.
    account: String,
    flow: Flow,
    /// The subscriber's Contact: the NOTIFYs' Request-URI.
    target: String,
    /// Our side of the dialog (the SUBSCRIBE's To with our tag): NOTIFY's From.
    local: String,
    /// Their side (the SUBSCRIBE's From): NOTIFY's To.
    remote: String,
    call_id: String,
    cseq: u32,
    expires_at: Instant,
}

/// What a SUBSCRIBE came to, before any I/O.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    BadEvent,
    TooBrief,
    NoDialog,
    NotOwner,
    NoMailbox,
    NoContact,
}

impl Refusal {
    fn response(&self, req: &Request, min_expires: u64) -> Response {
        let (status, reason) = match self {
            Refusal::BadEvent => (489, "Bad Event"),
            Refusal::TooBrief => (423, "Interval Too Brief"),
            Refusal::NoDialog => (481, "Subscription Does Not Exist"),
            Refusal::NotOwner => (403, "Not The Mailbox Owner"),
            Refusal::NoMailbox => (404, "No Such Mailbox"),
            Refusal::NoContact => (400, "SUBSCRIBE Needs A Contact"),
        };
        let mut r = message::response_to(&req.headers, status, Some(&crate::sip::random_token()));
        r.reason = reason.into();
        match self {
            Refusal::BadEvent => r.headers.push("Allow-Events", EVENT),
            Refusal::TooBrief => r.headers.push("Min-Expires", min_expires.to_string()),
            _ => {}
        }
        r
    }
}

/// The subscriptions, by (Call-ID, our tag).
pub(super) struct Subscriptions {
    config: Arc<Config>,
    /// Wall-clock time, for the owner's bindings' expiry.
    clock: Arc<dyn Clock>,
    store: Store,
    registrar: Arc<Registrar>,
    cmd: mpsc::UnboundedSender<Command>,
    /// `host:port` for our Contact and the accounts' URIs.
    host: String,
    min_expires: u64,
    max_expires: u64,
    active: HashMap<(String, String), Subscription>,
    /// NOTIFYs to send once the SUBSCRIBE's answer is out: (dialog, state).
    pending: Vec<(Subscription, String)>,
}

/// Starts the subscription task; the driver feeds it SUBSCRIBEs, voicemail its changes.
pub(super) fn spawn_mwi(
    config: Arc<Config>,
    store: Store,
    clock: Arc<dyn Clock>,
    cmd: mpsc::UnboundedSender<Command>,
    contact: &str,
    registrar: Arc<Registrar>,
) -> mpsc::UnboundedSender<MwiInput> {
    let (tx, rx) = mpsc::unbounded_channel();
    let subs = Subscriptions {
        clock,
        min_expires: config.sip.min_expires.0.as_secs(),
        max_expires: config.sip.max_expires.0.as_secs(),
        config,
        store,
        registrar,
        cmd,
        host: contact.split('@').nth(1).unwrap_or("127.0.0.1").to_string(),
        active: HashMap::new(),
        pending: Vec::new(),
    };
    tokio::spawn(subs.run(rx));
    tx
}

fn event_of(req: &Request) -> Option<&str> {
    req.headers
        .get("Event")
        .and_then(|e| e.split(';').next())
        .map(str::trim)
}

impl Subscriptions {
    async fn run(mut self, mut inputs: mpsc::UnboundedReceiver<MwiInput>) {
        loop {
            let next = self.active.values().map(|s| s.expires_at).min();
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(MwiInput::Subscribe { tx, flow, request }) => {
                        let response = self.subscribe(flow, &request).await;
                        let _ = self.cmd.send(Command::Respond { tx, response });
                        // The NOTIFY follows the 200 (RFC 6665 §4.2.1.2).
                        self.flush().await;
                    }
                    Some(MwiInput::Changed { mailbox }) => self.changed(&mailbox).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.expire(Instant::now()).await;
                }
            }
        }
    }

    /// Handles one SUBSCRIBE; always returns the final answer. The NOTIFY it calls for
    /// is queued in `pending` and sent by [`Subscriptions::flush`] after the answer.
    async fn subscribe(&mut self, flow: Flow, req: &Request) -> Response {
        if !event_of(req).is_some_and(|e| e.eq_ignore_ascii_case(EVENT)) {
            return Refusal::BadEvent.response(req, self.min_expires);
        }
        let identity = match self.registrar.authenticate(req, false).await {
            Ok(i) => i,
            Err(challenge) => return challenge,
        };
        let expires = match req.headers.get("Expires").map(str::trim) {
            None => DEFAULT_EXPIRES,
            Some(v) => match v.parse::<u64>() {
                Ok(e) => e,
                Err(_) => {
                    let mut r = message::response_to(&req.headers, 400, None);
                    r.reason = "Expires Must Be A Number Of Seconds".into();
                    return r;
                }
            },
        };
        if expires != 0 && expires < self.min_expires {
            return Refusal::TooBrief.response(req, self.min_expires);
        }
        let expires = expires.min(self.max_expires);
        let now = Instant::now();
        let to = req.headers.get("To").unwrap_or_default();
        let ours = header::NameAddr::parse(to)
            .ok()
            .and_then(|n| n.tag().map(str::to_string));
        if let Some(tag) = ours {
            // A refresh or an unsubscribe (RFC 6665 §4.1.2.2, §4.1.2.3).
            let key = (req.call_id().to_string(), tag);
            let Some(sub) = self.active.get_mut(&key) else {
                return Refusal::NoDialog.response(req, self.min_expires);
            };
            if sub.user != identity.user {
                return Refusal::NotOwner.response(req, self.min_expires);
            }
            sub.flow = flow;
            let mut ok = message::response_to(&req.headers, 200, None);
            ok.headers.push("Expires", expires.to_string());
            if expires == 0 {
                let sub = self.active.remove(&key).expect("found above");
                self.pending.push((sub, "terminated".into()));
            } else {
                sub.expires_at = now + Duration::from_secs(expires);
                let sub = sub.clone();
                self.pending
                    .push((sub, format!("active;expires={expires}")));
            }
            return ok;
        }
        let watched = header::uri_user(&req.uri).unwrap_or_default();
        let (mailboxes, account) = match self.config.mailbox(&watched) {
            Some(m) if m.owner.as_deref() == Some(identity.user.as_str()) => {
                (vec![watched.clone()], watched.clone())
            }
            Some(_) => return Refusal::NotOwner.response(req, self.min_expires),
            None => {
                let owned: Vec<String> = self
                    .config
                    .mailboxes
                    .iter()
                    .filter(|m| m.owner.as_deref() == Some(identity.user.as_str()))
                    .map(|m| m.name.get_ref().clone())
                    .collect();
                if watched != identity.user || owned.is_empty() {
                    return Refusal::NoMailbox.response(req, self.min_expires);
                }
                (owned, watched.clone())
            }
        };
        let Some(target) = req
            .headers
            .get("Contact")
            .and_then(|c| header::NameAddr::parse(c).ok())
            .map(|n| n.uri)
        else {
            return Refusal::NoContact.response(req, self.min_expires);
        };
        let tag = crate::sip::random_token();
        let mut ok = message::response_to(&req.headers, 200, Some(&tag));
        ok.headers.push("Expires", expires.to_string());
        ok.headers
            .push("Contact", format!("<sip:comm-server@{}>", self.host));
        let sub = Subscription {
            user: identity.user,
            mailboxes,
            account: format!("sip:{account}@{}", self.host),
            flow,
            target,
            local: format!("{to};tag={tag}"),
            remote: req.headers.get("From").unwrap_or_default().to_string(),
            call_id: req.call_id().to_string(),
            cseq: 0,
            expires_at: now + Duration::from_secs(expires),
        };
        tracing::info!(user = %sub.user, mailboxes = ?sub.mailboxes, expires, "message-summary subscription");
        if expires == 0 {
            // A fetch: one summary, no subscription (RFC 6665 §4.4.3).
            self.pending.push((sub, "terminated".into()));
        } else {
            self.active.insert((sub.call_id.clone(), tag), sub.clone());
            self.pending
                .push((sub, format!("active;expires={expires}")));
        }
        ok
    }

    async fn changed(&mut self, mailbox: &str) {
        self.unsolicited(mailbox).await;
        let now = Instant::now();
        let subs: Vec<Subscription> = self
            .active
            .values()
            .filter(|s| s.mailboxes.iter().any(|m| m == mailbox))
            .cloned()
            .collect();
        for sub in subs {
            let left = sub.expires_at.saturating_duration_since(now).as_secs();
            self.pending.push((sub, format!("active;expires={left}")));
        }
        self.flush().await;
    }

    /// Subscriptions past their expiry end with a final NOTIFY (RFC 6665 §4.2.2).
    async fn expire(&mut self, now: Instant) {
        let gone: Vec<(String, String)> = self
            .active
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(sub) = self.active.remove(&key) {
                tracing::info!(user = %sub.user, "message-summary subscription expired");
                self.pending.push((sub, "terminated;reason=timeout".into()));
            }
        }
        self.flush().await;
    }

    /// Sends the queued NOTIFYs with the current counts, each with the next CSeq of its
    /// dialog.
    async fn flush(&mut self) {
        for (sub, state) in std::mem::take(&mut self.pending) {
            let (mut new, mut old) = (0, 0);
            for m in &sub.mailboxes {
                match self.store.voicemail_counts(m).await {
                    Ok((n, o)) => {
                        new += n;
                        old += o;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, mailbox = %m, "message-summary counts unreadable");
                    }
                }
            }
            let key = (sub.call_id.clone(), local_tag(&sub.local));
            let cseq = match self.active.get_mut(&key) {
                Some(live) => {
                    live.cseq += 1;
                    live.cseq
                }
                None => sub.cseq + 1,
            };
            let Ok(uri) = header::parse_request_uri(&sub.target) else {
                tracing::warn!(target = %sub.target, "no message-summary NOTIFY: contact unusable");
                continue;
            };
            let mut h = message::Headers::default();
            h.push("Max-Forwards", "70");
            h.push("From", sub.local.clone());
            h.push("To", sub.remote.clone());
            h.push("Call-ID", sub.call_id.clone());
            h.push("CSeq", format!("{cseq} NOTIFY"));
            h.push("Contact", format!("<sip:comm-server@{}>", self.host));
            h.push("Event", EVENT);
            h.push("Subscription-State", state);
            h.push("Content-Type", "application/simple-message-summary");
            let request = Request {
                method: Method::Notify,
                uri,
                headers: h,
                body: message_summary(&sub.account, new, old).into_bytes(),
            };
            let _ = self.cmd.send(Command::Notify {
                flow: sub.flow,
                request,
            });
        }
    }
}

impl Subscriptions {
    /// An unsolicited RFC 3842 NOTIFY with the mailbox's counts to every registered
    /// contact of its owner, for phones that never subscribe.
    async fn unsolicited(&self, mailbox: &str) {
        let Some(owner) = self.config.mailbox(mailbox).and_then(|m| m.owner.clone()) else {
            return;
        };
        let (new, old) = match self.store.voicemail_counts(mailbox).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no message-waiting NOTIFY: counts unreadable");
                return;
            }
        };
        let bindings = match self.store.bindings(&owner, self.clock.unix_ms()).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no message-waiting NOTIFY: bindings unreadable");
                return;
            }
        };
        let host = &self.host;
        let account = format!("sip:{mailbox}@{host}");
        for b in bindings {
            let Ok(uri) = header::parse_request_uri(&b.contact) else {
                tracing::warn!(contact = %b.contact, "no message-waiting NOTIFY: contact unusable");
                continue;
            };
            let flow = match b.transport {
                store::Transport::Udp => Flow::Udp(b.source),
                store::Transport::Tcp => Flow::Tcp(b.source),
            };
            let mut h = message::Headers::default();
            h.push("Max-Forwards", "70");
            h.push(
                "From",
                format!("<{account}>;tag={}", crate::sip::random_token()),
            );
            h.push("To", format!("<sip:{owner}@{host}>"));
            h.push("Call-ID", crate::sip::random_token());
            h.push("CSeq", "1 NOTIFY");
            h.push("Contact", format!("<{account}>"));
            h.push("Event", EVENT);
            h.push("Subscription-State", "active");
            h.push("Content-Type", "application/simple-message-summary");
            let request = Request {
                method: Method::Notify,
                uri,
                headers: h,
                body: message_summary(&account, new, old).into_bytes(),
            };
            let _ = self.cmd.send(Command::Notify { flow, request });
        }
    }
}

fn local_tag(local: &str) -> String {
    header::NameAddr::parse(local)
        .ok()
        .and_then(|n| n.tag().map(str::to_string))
        .unwrap_or_default()
}
