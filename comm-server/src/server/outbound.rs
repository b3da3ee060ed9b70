//! Calls the server places itself: one UAC leg per party (RFC 3261 §12.1.2), each with
//! its own media leg anchored in our engine. The campaign driver ([`super::campaign`])
//! and queued callbacks ([`super::callback_call`]) build their two-leg calls from these
//! pieces; each keeps its own small state machine, this file only speaks SIP and media.
//!
//! It must not own policy: which number, which trunk, what an outcome means and whom
//! to tell are the callers' business.

use super::*;

/// One UAC leg: our dialog with the customer or with the agent (RFC 3261 §12.1.2).
pub(super) struct OutLeg {
    pub(super) flow: Flow,
    pub(super) call_id: String,
    pub(super) local: String,
    pub(super) remote: String,
    pub(super) target: String,
    pub(super) cseq: u32,
    pub(super) invite_cseq: u32,
    pub(super) invite_handle: u64,
    pub(super) media: Option<(LegId, LocalMedia)>,
    pub(super) answered: bool,
}

impl OutLeg {
    pub(super) fn request(&mut self, method: Method, body: Option<&[u8]>) -> Request {
        if method != Method::Ack {
            self.cseq += 1;
        }
        let cseq = if method == Method::Ack {
            self.invite_cseq
        } else {
            self.cseq
        };
        let mut h = message::Headers::default();
        h.push("Max-Forwards", "70");
        h.push("From", self.local.clone());
        h.push("To", self.remote.clone());
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{cseq} {method}"));
        let mut body_out = Vec::new();
        if let Some(b) = body {
            h.push("Content-Type", "application/sdp");
            body_out = b.to_vec();
        }
        let target = self.target.split('?').next().unwrap_or(&self.target);
        Request {
            method,
            uri: header::parse_request_uri(target)
                .or_else(|_| header::parse_request_uri("sip:invalid.invalid"))
                .unwrap_or_default(),
            headers: h,
            body: body_out,
        }
    }

    /// Learns the peer's tag and target from a 2xx (§12.1.2).
    pub(super) fn established(&mut self, resp: &Response) {
        if let Some(to) = resp.headers.get("To") {
            self.remote = to.to_owned();
        }
        if let Some(target) = crate::call::contact_uri(&resp.headers) {
            self.target = target;
        }
        self.answered = true;
    }
}

/// What every dialled leg needs: the server's shared state and the SIP driver.
#[derive(Clone)]
pub(super) struct Outbound {
    pub(super) shared: Arc<Shared>,
    pub(super) cmd: mpsc::UnboundedSender<Command>,
}

impl Outbound {
    /// Asks the SIP driver for a call uid whose responses, in-dialog requests and media
    /// events go to `inbox`; `None` when the server is stopping.
    pub(super) async fn register(&self, inbox: mpsc::UnboundedSender<CallInput>) -> Option<u64> {
        let (reply, uid) = tokio::sync::oneshot::channel();
        let _ = self.cmd.send(Command::OutboundCall { inbox, reply });
        uid.await.ok()
    }

    /// Opens the customer's leg through a trunk: `sip:<e164>@<trunk>`, from our caller ID.
    pub(super) async fn open_trunk_leg(
        &self,
        uid: u64,
        call_id: String,
        trunk: &Trunk,
        caller_id: &str,
        e164: &str,
        handle: u64,
    ) -> Option<(OutLeg, Vec<u8>)> {
        let target = format!("sip:{e164}@{}", trunk.address);
        self.open_leg(
            uid,
            call_id,
            Flow::Udp(trunk.address),
            caller_id,
            target,
            handle,
        )
        .await
    }

    /// Bridges the media of two answered legs.
    pub(super) fn bridge(&self, a: &OutLeg, b: &OutLeg) -> bool {
        match (a.media.as_ref(), b.media.as_ref()) {
            (Some((x, _)), Some((y, _))) => self.shared.engine.bridge(*x, *y).is_ok(),
            _ => false,
        }
    }

    pub(super) async fn open_leg(
        &self,
        uid: u64,
        call_id: String,
        flow: Flow,
        from_user: &str,
        target: String,
        handle: u64,
    ) -> Option<(OutLeg, Vec<u8>)> {
        let leg = self.shared.next_leg.fetch_add(1, Ordering::Relaxed);
        let _ = self.cmd.send(Command::MediaLeg { uid, leg });
        let addr = match self.shared.engine.open(leg).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "no media leg");
                return None;
            }
        };
        let local_media = LocalMedia::new(self.shared.media_ip, addr.port());
        let offer = sdp::offer(&local_media);
        let host = self.shared.settings.contact_udp.split('@').nth(1)?;
        let host = host.split(';').next().unwrap_or(host);
        let _ = self.cmd.send(Command::Bind {
            uid,
            call_id: call_id.clone(),
        });
        Some((
            OutLeg {
                flow,
                call_id,
                local: format!(
                    "<sip:{from_user}@{host}>;tag={}",
                    crate::sip::random_token()
                ),
                remote: format!("<{target}>"),
                target,
                cseq: 0,
                invite_cseq: 0,
                invite_handle: handle,
                media: Some((leg, local_media)),
                answered: false,
            },
            offer,
        ))
    }

    pub(super) fn invite(&self, uid: u64, leg: &mut OutLeg, offer: &[u8]) {
        let mut req = leg.request(Method::Invite, Some(offer));
        leg.invite_cseq = leg.cseq;
        req.headers
            .push("Contact", format!("<{}>", self.shared.settings.contact_udp));
        req.headers.push("Allow", crate::sip::ALLOW);
        let _ = self.cmd.send(Command::Send {
            uid,
            handle: leg.invite_handle,
            flow: leg.flow,
            request: req,
        });
    }

    pub(super) fn start_media(&self, leg: &OutLeg, body: &[u8]) -> bool {
        let Some((id, local)) = &leg.media else {
            return false;
        };
        match sdp::parse_answer(body, local) {
            Ok(negotiated) => {
                let mut config =
                    SessionConfig::new(&negotiated, rand::random(), rand::random(), rand::random());
                config.media_timeout = self.shared.config.media.media_timeout.0;
                self.shared.engine.start(*id, config).is_ok()
            }
            Err(e) => {
                tracing::warn!(error = %e, "SDP answer unusable");
                false
            }
        }
    }

    pub(super) fn ack(&self, leg: &mut OutLeg) {
        let request = leg.request(Method::Ack, None);
        let _ = self.cmd.send(Command::Ack {
            flow: leg.flow,
            request,
        });
    }

    pub(super) fn bye(&self, uid: u64, leg: &mut OutLeg, handle: u64) {
        let request = leg.request(Method::Bye, None);
        let _ = self.cmd.send(Command::Send {
            uid,
            handle,
            flow: leg.flow,
            request,
        });
    }

    pub(super) fn respond(&self, tx: TxId, req: &Request, status: u16) {
        let response = message::response_to(&req.headers, status, None);
        let _ = self.cmd.send(Command::Respond { tx, response });
    }

    /// Releases the legs' media.
    pub(super) async fn close(&self, legs: [&Option<OutLeg>; 2]) {
        for leg in legs.into_iter().flatten() {
            if let Some((id, _)) = &leg.media {
                let _ = self.shared.engine.close(*id).await;
            }
        }
    }
}
