//! Keeping our registrations at trunks alive (RFC 3261 §10.2).

use super::*;

/// How long to wait before registering again after a trunk refused or did not answer.
pub(super) const TRUNK_RETRY: Duration = Duration::from_secs(30);
/// The registration interval we ask trunks for.
pub(super) const TRUNK_EXPIRES_S: u64 = 3600;

/// Keeps one registration to a trunk alive (RFC 3261 §10.2), answering one digest
/// challenge from the trunk's realm per attempt and refreshing at half the expiry.
pub(super) async fn register_to_trunk(
    trunk: Trunk,
    our_contact: String,
    uid: u64,
    mut inbox: mpsc::UnboundedReceiver<CallInput>,
    cmd: mpsc::UnboundedSender<Command>,
) {
    let Some(creds) = trunk.credentials() else {
        return;
    };
    let aor = format!("sip:{}@{}", creds.username, trunk.address);
    let host = our_contact.split('@').nth(1).unwrap_or("127.0.0.1");
    let contact = format!("<sip:{}@{host}>", creds.username);
    let call_id = crate::sip::random_token();
    let from = format!("<{aor}>;tag={}", crate::sip::random_token());
    let (mut cseq, mut handle) = (0u32, 0u64);
    let mut backoff = TRUNK_RETRY;
    loop {
        let mut authorization: Option<(&'static str, String)> = None;
        let result = loop {
            cseq += 1;
            handle += 1;
            let mut h = message::Headers::default();
            h.push("Max-Forwards", "70");
            h.push("From", from.clone());
            h.push("To", format!("<{aor}>"));
            h.push("Call-ID", call_id.clone());
            h.push("CSeq", format!("{cseq} REGISTER"));
            h.push("Contact", contact.clone());
            h.push("Expires", TRUNK_EXPIRES_S.to_string());
            if let Some((name, value)) = &authorization {
                h.push(*name, value.clone());
            }
            let Ok(uri) = header::parse_request_uri(&format!("sip:{}", trunk.address)) else {
                return;
            };
            let request = Request {
                method: Method::Register,
                uri,
                headers: h,
                body: Vec::new(),
            };
            if cmd
                .send(Command::Send {
                    uid,
                    handle,
                    flow: Flow::Udp(trunk.address),
                    request,
                })
                .is_err()
            {
                return;
            }
            let resp = loop {
                match inbox.recv().await {
                    Some(CallInput::Response {
                        handle: h,
                        response,
                    }) if h == handle && response.is_final() => break response,
                    Some(_) => continue,
                    None => return,
                }
            };
            match resp.status {
                200..=299 => break Ok(granted_expiry(&resp).unwrap_or(TRUNK_EXPIRES_S)),
                401 | 407 if authorization.is_none() => {
                    let uri = format!("sip:{}", trunk.address);
                    match creds.authorize(&resp, "REGISTER", &uri) {
                        Some(header) => authorization = Some(header),
                        None => {
                            break Err(
                                "challenge from a realm we hold no credentials for".to_string()
                            );
                        }
                    }
                }
                status => break Err(format!("{status} {}", resp.reason)),
            }
        };
        let wait = match result {
            Ok(expires) => {
                tracing::info!(expires, "registered to trunk");
                backoff = TRUNK_RETRY;
                Duration::from_secs((expires / 2).max(30))
            }
            Err(why) => {
                tracing::warn!(%why, retry_in = ?backoff, "trunk registration failed");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(600));
                w
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The expiry a registrar granted: our Contact's `expires`, else the Expires header.
pub(super) fn granted_expiry(resp: &Response) -> Option<u64> {
    resp.headers
        .all("Contact")
        .filter_map(|c| header::Contact::parse_list(c).ok())
        .flatten()
        .find_map(|c| match c {
            header::Contact::Address(a) => a.param("expires").and_then(|e| e.parse().ok()),
            header::Contact::Wildcard => None,
        })
        .or_else(|| {
            resp.headers
                .get("Expires")
                .and_then(|e| e.trim().parse().ok())
        })
}
