//! One task per call: resolves the destination, anchors the media, runs the pure
//! [`crate::call::Call`] and the IVR, and writes the CDR exactly once when it ends.

use super::*;

/// Play id of a prompt route's announcement.
pub(super) const ROUTE_PROMPT: u64 = 1;
/// Play id of a queue position announcement.
pub(super) const ANNOUNCEMENT: u64 = 2;
/// IVR play ids are offset by this, so they never collide with the route prompt.
pub(super) const IVR_PLAY_BASE: u64 = 1_000;

pub(super) fn wall_now(shared: &Shared) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(shared.clock.unix_ms().max(0) as u64)
}

/// The prompts for a script's audio; unknown names were refused at load time.
pub(super) fn ivr_prompts(shared: &Shared, audio: &[script_engine::Audio]) -> Vec<Prompt> {
    audio
        .iter()
        .filter_map(|a| match a {
            script_engine::Audio::File(f) => shared
                .prompts
                .prompt(f.strip_suffix(".wav").unwrap_or(f))
                .ok(),
            script_engine::Audio::Silence { ms } => {
                Some(Prompt::from_samples("silence", vec![0; (*ms as usize) * 8]))
            }
        })
        .collect()
}

/// Does what the IVR asks, answering at once what needs no waiting. What the call
/// must do next (queue, mailbox, transfer, recording) is returned.
pub(super) async fn drive_ivr(
    shared: &Shared,
    ivr: &mut Ivr,
    media: &CallMedia,
    call: &mut Call,
    contact: &mut CallContact,
) -> Option<IvrOutcome> {
    let mut next = None;
    while let Some(action) = ivr.poll_action() {
        let now_wall = wall_now(shared);
        match action {
            IvrAction::Play { id, audio } => {
                media.play(IVR_PLAY_BASE + id, ivr_prompts(shared, &audio))
            }
            IvrAction::StopPlayback => media.stop(),
            IvrAction::Lookup { field, value } => {
                let found = contact.lookup(shared, &field, &value).await;
                tracing::info!(%field, found = found.is_some(), "script customer lookup");
                ivr.handle_host_reply(wall_now(shared), script_engine::Input::Customer(found));
            }
            IvrAction::RunAction(action) => {
                // The same runner as the web host's (`crate::script_actions`).
                let customer = contact.customer.as_ref().map(|c| c.id);
                let reply = shared.actions.run(&action, customer).await;
                if matches!(reply, script_engine::Input::ActionFailed(_)) {
                    shared.metrics.script_action_failed();
                }
                ivr.handle_host_reply(wall_now(shared), reply);
            }
            IvrAction::Route(step) => match script_routing::route(shared, step).await {
                // The session waits while the phone rings (`transferred` or RouteFailed).
                Ok(IvrOutcome::Transfer(dial)) => next = Some(IvrOutcome::Transfer(dial)),
                Ok(routed) => {
                    // The session ends once routed; the call carries on elsewhere.
                    next = Some(routed);
                    ivr.handle_host_reply(now_wall, script_engine::Input::Routed);
                }
                Err(why) => {
                    tracing::warn!(%why, "script routing target not available");
                    shared.metrics.script_action_failed();
                    ivr.handle_host_reply(now_wall, script_engine::Input::RouteFailed(why));
                }
            },
            IvrAction::Record(q) => next = Some(IvrOutcome::Record(q)),
            IvrAction::History(h) => {
                tracing::info!(record = ?h, "script history");
                contact.note(&h);
            }
            IvrAction::HangUp { outcome }
                if matches!(
                    next,
                    Some(IvrOutcome::Enqueue(_) | IvrOutcome::Voicemail(_))
                ) =>
            {
                tracing::info!(%outcome, "script handed the call over");
            }
            IvrAction::HangUp { outcome } => {
                tracing::info!(%outcome, "script ended");
                call.hang_up_all(now(), "answered");
            }
        }
    }
    next
}

/// A recording in progress on the caller's leg.
pub(super) struct Recording {
    /// It stops here at the latest (the script's max-duration).
    until: Instant,
}

/// Starts recording what the caller says, after the beep if the script asks for one.
pub(super) async fn start_recording(
    shared: &Shared,
    media: &CallMedia,
    call_id: &str,
    n: u32,
    q: &script_engine::Question,
) -> Result<Recording, String> {
    let script_engine::InputKind::Recording { max_duration, beep } = q.input else {
        return Err("not a recording question".into());
    };
    if beep && let Ok(tone) = shared.prompts.prompt("tones/beep") {
        media.play(0, vec![tone]);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dir = shared.config.server.data_dir.join("recordings");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let safe: String = call_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let path = dir.join(format!("{safe}-{n}.wav"));
    media.record(path).await?;
    Ok(Recording {
        until: Instant::now() + max_duration,
    })
}

/// The media legs of one call and what they were negotiated with.
pub(super) struct CallMedia {
    engine: MediaEngine,
    timeout: Duration,
    music: Option<Prompt>,
    caller: Option<(LegId, LocalMedia)>,
    callee: Option<(LegId, LocalMedia)>,
}

impl CallMedia {
    fn new(shared: &Shared) -> CallMedia {
        CallMedia {
            engine: shared.engine.clone(),
            timeout: shared.config.media.media_timeout.0,
            music: shared.prompts.prompt("music/hold").ok(),
            caller: None,
            callee: None,
        }
    }

    async fn open(
        &self,
        shared: &Shared,
        uid: u64,
        cmd: &mpsc::UnboundedSender<Command>,
    ) -> Result<(LegId, LocalMedia), u16> {
        let leg = shared.next_leg.fetch_add(1, Ordering::Relaxed);
        let _ = cmd.send(Command::MediaLeg { uid, leg });
        let addr = self.engine.open(leg).await.map_err(|e| {
            tracing::warn!(error = %e, "no media leg");
            e.sip_status()
        })?;
        Ok((leg, LocalMedia::new(shared.media_ip, addr.port())))
    }

    fn start(&self, leg: LegId, negotiated: &Negotiated) {
        let mut config =
            SessionConfig::new(negotiated, rand::random(), rand::random(), rand::random());
        config.media_timeout = self.timeout;
        if let Err(e) = self.engine.start(leg, config) {
            tracing::warn!(error = %e, "media leg did not start");
        }
    }

    /// Puts the call's media through the server: answers the caller's offer now (the
    /// engine transcodes, so the answer does not depend on the callee) and prepares our
    /// offer to the callee. Errors are the status to refuse the INVITE with.
    async fn anchor(
        &mut self,
        shared: &Shared,
        uid: u64,
        cmd: &mpsc::UnboundedSender<Command>,
        invite: &Request,
        destination: Destination,
    ) -> Result<Destination, u16> {
        if matches!(destination, Destination::Reject { .. }) {
            return Ok(destination);
        }
        if invite.body.is_empty() {
            // Offerless INVITEs (RFC 3261 §13.2.1 late offer) are not supported yet.
            return Err(488);
        }
        let (leg_a, mut local_a) = self.open(shared, uid, cmd).await?;
        let (negotiated, answer) = sdp::answer(&invite.body, &local_a).map_err(|e| {
            tracing::info!(error = %e, "caller's SDP refused");
            e.sip_status()
        })?;
        local_a.session_version += 1;
        self.start(leg_a, &negotiated);
        self.caller = Some((leg_a, local_a));
        Ok(match destination {
            Destination::AutoAnswer { hangup_after, .. } => Destination::AutoAnswer {
                sdp: answer,
                hangup_after,
            },
            Destination::Dial {
                flow,
                uri,
                label,
                credentials,
                ..
            } => {
                let (leg_b, local_b) = self.open(shared, uid, cmd).await?;
                let offer = sdp::offer(&local_b);
                self.callee = Some((leg_b, local_b));
                Destination::Dial {
                    flow,
                    uri,
                    label,
                    credentials,
                    media: Some(AnchoredMedia { offer, answer }),
                }
            }
            other => other,
        })
    }

    /// Starts the callee leg from its answer and bridges the two; false when the answer
    /// is unusable.
    fn callee_answered(&self, body: &[u8]) -> bool {
        let (Some((a, _)), Some((b, local_b))) = (&self.caller, &self.callee) else {
            return false;
        };
        match sdp::parse_answer(body, local_b) {
            Ok(negotiated) => {
                self.start(*b, &negotiated);
                self.engine.bridge(*a, *b).is_ok()
            }
            Err(e) => {
                tracing::warn!(error = %e, "callee's SDP answer unusable");
                false
            }
        }
    }

    /// Answers a re-offer from one leg (RFC 3264 §8). Hold is handled here: the other
    /// side hears music while this leg does not want our audio, the bridge otherwise.
    fn reoffer(&mut self, leg: Leg, offer: &[u8]) -> Result<Vec<u8>, u16> {
        let (this, other) = match leg {
            Leg::Caller => (&mut self.caller, &self.callee),
            Leg::Callee => (&mut self.callee, &self.caller),
        };
        let Some((id, local)) = this.as_mut() else {
            return Err(488);
        };
        let (negotiated, answer) = sdp::answer(offer, local).map_err(|e| e.sip_status())?;
        local.session_version += 1;
        let held = !negotiated.direction.has_send();
        let _ = self.engine.command(*id, MediaCommand::Update(negotiated));
        if let Some((other_id, _)) = other {
            let command = match (&self.music, held) {
                (Some(music), true) => MediaCommand::LoopMusic(music.clone()),
                (None, true) => MediaCommand::Stop,
                (_, false) => MediaCommand::Bridge,
            };
            let _ = self.engine.command(*other_id, command);
        }
        Ok(answer)
    }

    pub(super) async fn record(&self, path: std::path::PathBuf) -> Result<(), String> {
        let Some((leg, _)) = &self.caller else {
            return Err("no media".into());
        };
        self.engine
            .record(*leg, path, crate::media::recording::RecordSides::Received)
            .await
            .map_err(|e| e.to_string())
    }

    pub(super) fn stop_recording(&self) {
        if let Some((leg, _)) = &self.caller {
            let _ = self.engine.command(*leg, MediaCommand::StopRecording);
        }
    }

    /// Sends a command to the caller's leg.
    pub(super) fn command_caller(&self, command: MediaCommand) {
        if let Some((leg, _)) = &self.caller {
            let _ = self.engine.command(*leg, command);
        }
    }

    /// Music on hold for the caller (silence when no music is installed).
    pub(super) fn music(&self) {
        if let Some((leg, _)) = &self.caller {
            let command = match &self.music {
                Some(m) => MediaCommand::LoopMusic(m.clone()),
                None => MediaCommand::Stop,
            };
            let _ = self.engine.command(*leg, command);
        }
    }

    /// Hold from the agent's desktop (`on`) or back to talking: music for the caller
    /// and silence toward the agent, or the bridge again. Our re-offer for the agent's
    /// leg (`a=sendonly` on hold, RFC 3264 §8.4); None without an agent leg.
    pub(super) fn hold_callee(&mut self, on: bool) -> Option<Vec<u8>> {
        let (Some((a, _)), Some((b, local_b))) = (&self.caller, self.callee.as_mut()) else {
            return None;
        };
        local_b.direction = if on {
            sdp::Direction::SendOnly
        } else {
            sdp::Direction::SendRecv
        };
        local_b.session_version += 1;
        let offer = sdp::offer(local_b);
        let (to_caller, to_agent) = match (on, &self.music) {
            (true, Some(m)) => (MediaCommand::LoopMusic(m.clone()), MediaCommand::Stop),
            (true, None) => (MediaCommand::Stop, MediaCommand::Stop),
            (false, _) => (MediaCommand::Bridge, MediaCommand::Bridge),
        };
        let _ = self.engine.command(*a, to_caller);
        let _ = self.engine.command(*b, to_agent);
        Some(offer)
    }

    /// The answer to our own re-offer on a leg: its media follows the new direction
    /// (a held phone need not send us RTP, so it does not time out).
    pub(super) fn reoffer_answered(&self, leg: Leg, body: &[u8]) {
        let Some((id, local)) = (match leg {
            Leg::Caller => &self.caller,
            Leg::Callee => &self.callee,
        }) else {
            return;
        };
        match sdp::parse_answer(body, local) {
            Ok(n) => {
                let _ = self.engine.command(*id, MediaCommand::Update(n));
            }
            Err(e) => tracing::warn!(error = %e, "answer to our re-offer unusable"),
        }
    }

    /// Opens a callee leg for a late dial; our SDP offer for it.
    pub(super) async fn open_callee(
        &mut self,
        shared: &Shared,
        uid: u64,
        cmd: &mpsc::UnboundedSender<Command>,
    ) -> Result<Vec<u8>, u16> {
        self.drop_callee().await;
        let (leg, local) = self.open(shared, uid, cmd).await?;
        let offer = sdp::offer(&local);
        self.callee = Some((leg, local));
        Ok(offer)
    }

    /// Closes the callee leg (an offer that was not answered).
    pub(super) async fn drop_callee(&mut self) {
        if let Some((leg, _)) = self.callee.take() {
            let _ = self.engine.close(leg).await;
        }
    }

    pub(super) fn stop(&self) {
        if let Some((leg, _)) = &self.caller {
            let _ = self.engine.command(*leg, MediaCommand::Stop);
        }
    }

    pub(super) fn play(&self, id: u64, prompts: Vec<Prompt>) {
        if let Some((leg, _)) = &self.caller {
            let _ = self.engine.command(
                *leg,
                MediaCommand::Play {
                    id,
                    prompts,
                    barge_in: false,
                },
            );
        }
    }

    /// Closes every leg; the quality figures for the CDR as JSON.
    async fn close(&self, metrics: &crate::metrics::Metrics) -> Option<String> {
        let mut legs = serde_json::Map::new();
        for (name, leg) in [("caller", &self.caller), ("callee", &self.callee)] {
            if let Some((id, _)) = leg
                && let Some(q) = self.engine.close(*id).await
            {
                metrics.rtp_stream_ended(
                    q.packets_received,
                    q.packets_sent,
                    // RFC 3550 loss goes negative with duplicates; none were lost then.
                    q.packets_lost.max(0) as u64,
                    q.jitter_ms,
                );
                legs.insert(
                    name.into(),
                    serde_json::json!({
                        "packets_received": q.packets_received,
                        "packets_lost": q.packets_lost,
                        "jitter_ms": q.jitter_ms,
                        "packets_sent": q.packets_sent,
                        "packets_rejected": q.packets_rejected,
                        "late_frames": q.late_frames,
                        "remote_fraction_lost": q.remote_fraction_lost,
                        "remote_jitter_ms": q.remote_jitter_ms,
                        "round_trip_ms": q.round_trip_ms,
                    }),
                );
            }
        }
        (!legs.is_empty()).then(|| serde_json::Value::Object(legs).to_string())
    }
}

pub(super) async fn run_call(
    shared: Arc<Shared>,
    uid: u64,
    tx: TxId,
    flow: Flow,
    invite: Request,
    (me, mut inbox): (
        mpsc::UnboundedSender<CallInput>,
        mpsc::UnboundedReceiver<CallInput>,
    ),
    cmd: mpsc::UnboundedSender<Command>,
) {
    let started_ms = shared.clock.unix_ms();
    let started = Instant::now();
    let resolution = match resolve(&shared, flow, &invite).await {
        Ok(r) => r,
        Err(challenge) => {
            let _ = cmd.send(Command::Respond {
                tx,
                response: challenge,
            });
            let _ = cmd.send(Command::CallEnded { uid });
            return;
        }
    };
    shared.metrics.call_accepted();
    tracing::info!(route = %resolution.route, "call started");
    // Who is calling, before the IVR or a queue sees the call (issue 4).
    let mut contact = match resolution.direction {
        Direction::Inbound | Direction::Outbound => {
            CallContact::identify(&shared, &invite, resolution.direction).await
        }
        Direction::Internal => CallContact::default(),
    };
    let mut media = CallMedia::new(&shared);
    let destination = media
        .anchor(&shared, uid, &cmd, &invite, resolution.destination.clone())
        .await
        .unwrap_or_else(|status| Destination::Reject { status });
    let mut call = Call::new(
        now(),
        shared.settings.clone(),
        tx,
        flow,
        &invite,
        destination,
    );
    if let Some(prompts) = resolution.play.clone()
        && call.is_answered()
    {
        media.play(ROUTE_PROMPT, prompts);
    }
    let mut queue = resolution.queue.clone().filter(|_| call.is_answered());
    let mut pending_enqueue: Option<callback::PendingEnqueue> = None;
    let mut offered_agent: Option<u64> = None;
    let mut answered_agent: Option<u64> = None;
    if let Some(q) = &queue {
        media.music();
        let _ = shared.acd.send(AcdRequest::Enqueue {
            item: uid,
            queue: q.clone(),
            priority: 0,
            caller: invite.headers.get("From").and_then(registrar::user_of),
            customer: contact.customer.as_ref().map(|c| c.id),
            skills: callback::route_skills(&shared, &invite),
            inbox: me.clone(),
        });
    }
    let mut ivr_next: Option<IvrOutcome> = None;
    // A script's `<transfer>` is ringing its target.
    let mut transfer: Option<script_routing::TransferDial> = None;
    let mut recording: Option<Recording> = None;
    let mut recordings = 0u32;
    let mut ivr = match (&resolution.ivr, call.is_answered()) {
        (Some(script), true) => {
            let context = script_engine::SessionContext {
                channel: script_engine::Channel::Voice,
                customer: contact.customer_json(),
                call: serde_json::json!({
                    "caller": invite.headers.get("From").and_then(registrar::user_of),
                    "caller_id": contact.caller_id(),
                    "dialed": header::uri_user(&invite.uri),
                    "call_id": invite.call_id(),
                }),
            };
            match Ivr::start(shared.scripts.clone(), script, context, wall_now(&shared)) {
                Ok(mut i) => {
                    ivr_next = drive_ivr(&shared, &mut i, &media, &mut call, &mut contact).await;
                    Some(i)
                }
                Err(e) => {
                    tracing::error!(error = %e, "script did not start");
                    call.hang_up_all(now(), "failed");
                    None
                }
            }
        }
        _ => None,
    };
    let mut vm = match (&resolution.voicemail, call.is_answered()) {
        (Some(route), true) => match VoicemailCall::start(&shared, route, &invite).await {
            Some(mut v) => {
                drive_voicemail(&shared, &mut v, &media, &mut call, &cmd).await;
                Some(v)
            }
            None => {
                call.hang_up_all(now(), "failed");
                None
            }
        },
        _ => None,
    };
    let mut callee_call_id = None;
    // Hold and transfers from the agent's desktop.
    let mut desk = super::call_control::DeskState::default();
    loop {
        if let Some(v) = vm.as_mut()
            && let Some(number) = v.take_call_back()
        {
            // The mailbox owner calls a message's caller back: dialled as a script's
            // transfer to a number, through the trunk.
            match script_routing::number_via_trunk(&shared, &number) {
                Ok(dial) => ivr_next = Some(IvrOutcome::Transfer(dial)),
                Err(e) => {
                    tracing::info!(error = %e, "voicemail call-back not placed");
                    v.handle_call_back_failed();
                    drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                }
            }
        }
        match ivr_next.take() {
            Some(IvrOutcome::Enqueue(e)) => pending_enqueue = Some(e),
            Some(IvrOutcome::Voicemail(m)) => {
                // A script sent the caller to a mailbox: the deposit takes the call.
                ivr = None;
                media.stop();
                vm = VoicemailCall::start(&shared, &VoicemailRoute::Deposit(m), &invite).await;
                match vm.as_mut() {
                    Some(v) => drive_voicemail(&shared, v, &media, &mut call, &cmd).await,
                    None => call.hang_up_all(now(), "failed"),
                }
            }
            Some(IvrOutcome::Transfer(dial)) => {
                let dialled = match media.open_callee(&shared, uid, &cmd).await {
                    Ok(offer) => call.dial_trunk(
                        now(),
                        dial.flow,
                        &dial.uri,
                        offer,
                        shared.config.sip.ring_timeout.0,
                        dial.credentials.clone(),
                    ),
                    Err(_) => false,
                };
                if dialled {
                    tracing::info!(to = %dial.label, "script transfers the call");
                    media.music();
                    transfer = Some(dial);
                } else if let Some(i) = ivr.as_mut() {
                    let why = script_engine::Input::RouteFailed("could not be dialled".into());
                    i.handle_host_reply(wall_now(&shared), why);
                    ivr_next = drive_ivr(&shared, i, &media, &mut call, &mut contact).await;
                    continue;
                } else if let Some(v) = vm.as_mut() {
                    v.handle_call_back_failed();
                    drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                }
            }
            Some(IvrOutcome::Record(q)) => {
                if let Some(i) = ivr.as_mut() {
                    recordings += 1;
                    match start_recording(&shared, &media, invite.call_id(), recordings, &q).await {
                        Ok(r) => recording = Some(r),
                        Err(e) => {
                            tracing::warn!(error = %e, "recording did not start");
                            i.handle_host_reply(wall_now(&shared), script_engine::Input::NoInput);
                            ivr_next = drive_ivr(&shared, i, &media, &mut call, &mut contact).await;
                            continue;
                        }
                    }
                }
            }
            None => {}
        }
        if let Some((q, priority, skills)) = pending_enqueue.take() {
            // A script handed the caller to a queue: from here it is a queue call.
            ivr = None;
            media.music();
            super::call_control::send_ivr_answers(&shared, uid, &contact.answers);
            let _ = shared.acd.send(AcdRequest::Enqueue {
                item: uid,
                queue: q.clone(),
                priority,
                caller: invite.headers.get("From").and_then(registrar::user_of),
                customer: contact.customer.as_ref().map(|c| c.id),
                skills,
                inbox: me.clone(),
            });
            queue = Some(q);
        }
        while let Some(action) = call.poll_action() {
            match action {
                Action::Respond { tx, response } => {
                    let _ = cmd.send(Command::Respond { tx, response });
                }
                Action::Send {
                    handle,
                    flow,
                    request,
                    ..
                } => {
                    let _ = cmd.send(Command::Send {
                        uid,
                        handle,
                        flow,
                        request,
                    });
                }
                Action::Ack { flow, request } => {
                    let _ = cmd.send(Command::Ack { flow, request });
                }
                Action::Cancel { handle } => {
                    let _ = cmd.send(Command::Cancel { uid, handle });
                }
                Action::Bind { call_id } => {
                    callee_call_id = Some(call_id.clone());
                    let _ = cmd.send(Command::Bind { uid, call_id });
                }
                Action::DialFailed { status } => {
                    tracing::info!(status, "agent did not answer");
                    media.drop_callee().await;
                    if let Some(agent) = offered_agent.take() {
                        let _ = shared
                            .acd
                            .send(AcdRequest::OfferFailed { item: uid, agent });
                        media.music();
                    } else if desk.dialled_out {
                        // A transfer to a number failed: no agent is coming back.
                        call.hang_up_all(now(), "failed");
                    }
                    if let Some(dial) = transfer.take() {
                        let why = script_routing::dial_failure(status);
                        tracing::info!(to = %dial.label, %why, "transfer failed");
                        media.stop();
                        if let Some(i) = ivr.as_mut() {
                            // The script's fallback (the next element) takes the caller.
                            i.handle_host_reply(
                                wall_now(&shared),
                                script_engine::Input::RouteFailed(why),
                            );
                            ivr_next = drive_ivr(&shared, i, &media, &mut call, &mut contact).await;
                        } else if let Some(v) = vm.as_mut() {
                            v.handle_call_back_failed();
                            drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                        }
                    }
                }
                Action::CalleeAnswered { body } => {
                    if !media.callee_answered(&body) {
                        call.hang_up_all(now(), "failed");
                    } else if let Some(dial) = transfer.take() {
                        answered_agent = dial.agent;
                        if let Some(i) = ivr.take() {
                            script_routing::transferred(&shared, i, &mut contact);
                        }
                        // A voicemail call-back: the owner now talks to the caller.
                        vm = None;
                    } else if let Some(agent) = offered_agent {
                        answered_agent = Some(agent);
                        let _ = shared
                            .acd
                            .send(AcdRequest::OfferAnswered { item: uid, agent });
                    }
                }
                Action::ReofferAnswered { leg, status, body } => {
                    if status < 300 {
                        media.reoffer_answered(leg, &body);
                    } else {
                        tracing::info!(status, "the agent's phone refused our re-offer");
                    }
                }
                Action::Reoffer { leg, tx, request } => {
                    let response = match media.reoffer(leg, &request.body) {
                        Ok(answer) => {
                            let mut ok = message::response_to(&request.headers, 200, None);
                            ok.headers.push("Contact", call.contact_for(leg));
                            ok.headers.push("Content-Type", "application/sdp");
                            ok.body = answer;
                            ok
                        }
                        Err(status) => message::response_to(&request.headers, status, None),
                    };
                    let _ = cmd.send(Command::Respond { tx, response });
                }
                Action::Ended(summary) => {
                    if let Some(v) = vm.as_mut() {
                        v.handle_caller_gone();
                        drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                    }
                    if queue.is_some() {
                        let _ = shared.acd.send(AcdRequest::Ended { item: uid });
                    }
                    let media_quality_json = media.close(&shared.metrics).await;
                    let ms = |t: std::time::Instant| {
                        started_ms + (t - started.into_std()).as_millis() as i64
                    };
                    let cdr = Cdr {
                        call_id: invite.call_id().to_string(),
                        direction: resolution.direction,
                        caller: invite.headers.get("From").and_then(registrar::user_of).unwrap_or_default(),
                        callee: header::uri_user(&invite.uri).unwrap_or_default(),
                        route: resolution.route.clone(),
                        started_at_ms: started_ms,
                        answered_at_ms: summary.answered_at.map(ms),
                        ended_at_ms: ms(summary.ended_at),
                        hung_up_by: match summary.hung_up_by {
                            HungUpBy::Caller => store::HungUpBy::Caller,
                            HungUpBy::Callee => store::HungUpBy::Callee,
                            HungUpBy::System => store::HungUpBy::System,
                        },
                        end_reason: end_reason(&summary.result),
                        sip_status: summary.status,
                        legs_json: serde_json::json!([
                            {"leg": "caller", "call_id": invite.call_id(), "peer": flow.addr().to_string()},
                            {"leg": "callee", "call_id": callee_call_id, "target": format!("{:?}", resolution.destination_label())},
                        ])
                        .to_string(),
                        media_quality_json,
                    };
                    if let Err(e) = shared.store.insert_cdr(&cdr).await {
                        tracing::error!(error = %e, "CDR not written");
                    }
                    if cdr.direction != Direction::Internal {
                        let agent = answered_agent
                            .and_then(|a| shared.config.agents.get(a as usize))
                            .map(|a| a.name.get_ref().as_str());
                        let entry = contact.entry(
                            invite.call_id(),
                            cdr.direction,
                            &cdr.route,
                            queue.as_deref(),
                            agent,
                            resolution.ivr.as_deref(),
                            &summary,
                            (cdr.started_at_ms, cdr.answered_at_ms, cdr.ended_at_ms),
                        );
                        if let Err(e) = shared.store.add_history(&entry).await {
                            tracing::error!(error = %e, "contact history not written");
                        }
                    }
                    tracing::info!(result = %summary.result, status = summary.status, "call ended");
                }
            }
        }
        if call.is_ended() {
            break;
        }
        // The IVR keeps wall-clock deadlines (its sessions can be saved); convert.
        let ivr_deadline = ivr.as_ref().and_then(Ivr::poll_timeout).map(|t| {
            Instant::now()
                + t.duration_since(wall_now(&shared))
                    .unwrap_or(Duration::ZERO)
        });
        let deadline = [
            call.poll_timeout().map(Instant::from_std),
            ivr_deadline,
            recording.as_ref().map(|r| r.until),
            vm.as_ref().and_then(VoicemailCall::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            input = inbox.recv() => {
                let now = now();
                match input {
                    Some(CallInput::Request { leg, tx, request }) => call.handle_request(now, leg, tx, &request),
                    Some(CallInput::Ack { leg }) => call.handle_ack(now, leg),
                    Some(CallInput::Cancelled) => call.handle_cancelled(now),
                    Some(CallInput::Response { handle, response }) => call.handle_response(now, handle, &response),
                    Some(CallInput::AckTimeout) => call.handle_ack_timeout(now),
                    Some(CallInput::HangUp) => call.hang_up_all(now, "shutdown"),
                    Some(CallInput::Queue(command)) => match command {
                        QueueCommand::Music => media.music(),
                        QueueCommand::Announce { position, estimated_wait, callback_key } => {
                            let mut names = crate::media::prompt::caller_position_prompts(position as u32);
                            if let Some(wait) = estimated_wait {
                                names.extend(crate::media::prompt::estimated_wait_prompts(callback::whole_minutes(wait)));
                            }
                            names.extend(callback_key.map(callback::callback_offer_prompts).unwrap_or_default());
                            match shared.prompts.sequence(&names) {
                                Ok(prompts) => media.play(ANNOUNCEMENT, prompts),
                                Err(e) => tracing::warn!(error = %e, "position prompts missing"),
                            }
                        }
                        QueueCommand::Offer { agent, flow, uri, ring_timeout } => {
                            let dialled = match media.open_callee(&shared, uid, &cmd).await {
                                Ok(offer) => call.dial(now, flow, &uri, offer, ring_timeout),
                                Err(_) => false,
                            };
                            if dialled {
                                offered_agent = Some(agent);
                            } else {
                                let _ = shared.acd.send(AcdRequest::OfferFailed { item: uid, agent });
                            }
                        }
                        QueueCommand::CancelOffer => call.cancel_dial(now),
                        QueueCommand::Overflow | QueueCommand::Leave(crate::config::QueueExit::HangUp) => call.hang_up_all(now, "overflow"),
                        QueueCommand::Leave(crate::config::QueueExit::Queue(q)) => {
                            pending_enqueue = Some((q, 0, Vec::new()));
                        }
                        QueueCommand::Leave(crate::config::QueueExit::Mailbox(m)) => {
                            queue = None;
                            media.stop();
                            vm = VoicemailCall::start(&shared, &VoicemailRoute::Deposit(m), &invite).await;
                            match vm.as_mut() {
                                Some(v) => drive_voicemail(&shared, v, &media, &mut call, &cmd).await,
                                None => call.hang_up_all(now, "failed"),
                            }
                        }
                        QueueCommand::Leave(crate::config::QueueExit::Script(file)) => {
                            queue = None;
                            media.stop();
                            ivr = callback::start_script(&shared, &file, &invite, &contact);
                            match ivr.as_mut() {
                                Some(i) => ivr_next = drive_ivr(&shared, i, &media, &mut call, &mut contact).await,
                                None => call.hang_up_all(now, "failed"),
                            }
                        }
                        QueueCommand::CallbackBooked => {
                            queue = None;
                            match shared.prompts.sequence(&[callback::CALLBACK_BOOKED.to_string()]) {
                                Ok(prompts) => media.play(ROUTE_PROMPT, prompts),
                                Err(_) => call.hang_up_all(now, "answered"),
                            }
                        }
                        QueueCommand::HangUp => call.hang_up_all(now, "answered"),
                    },
                    Some(CallInput::Recorded(result)) if vm.is_some() => {
                        if let Some(v) = vm.as_mut() {
                            v.handle_recorded(&result);
                            drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                        }
                    }
                    Some(CallInput::Recorded(result)) => {
                        recording = None;
                        if let Some(i) = ivr.as_mut() {
                            let input = match result {
                                Ok(path) => script_engine::Input::Recorded(path.display().to_string()),
                                Err(e) => {
                                    tracing::warn!(error = %e, "recording failed");
                                    script_engine::Input::NoInput
                                }
                            };
                            i.handle_host_reply(wall_now(&shared), input);
                            ivr_next = drive_ivr(&shared, i, &media, &mut call, &mut contact).await;
                        }
                    }
                    Some(CallInput::Media(action)) => match action {
                        MediaAction::PlaybackFinished { id: ROUTE_PROMPT, .. } => call.hang_up_all(now, "answered"),
                        MediaAction::PlaybackFinished { id: ANNOUNCEMENT, interrupted: false } => media.music(),
                        MediaAction::PlaybackFinished { id, .. } if id > VOICEMAIL_PLAY_BASE => {
                            if let Some(v) = vm.as_mut() {
                                v.handle_playback_finished(id - VOICEMAIL_PLAY_BASE);
                                drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                            }
                        }
                        MediaAction::Silence { .. } => {
                            if let Some(v) = vm.as_mut() {
                                v.handle_silence();
                                drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                            }
                        }
                        MediaAction::PlaybackFinished { id, .. } if id > IVR_PLAY_BASE => {
                            if let Some(i) = ivr.as_mut() {
                                i.handle_playback_finished(wall_now(&shared), id - IVR_PLAY_BASE);
                                ivr_next = drive_ivr(&shared, i, &media, &mut call, &mut contact).await;
                            }
                        }
                        MediaAction::MediaTimeout { silent_for } => {
                            tracing::info!(?silent_for, "no RTP: hanging up");
                            call.hang_up_all(now, "media-timeout");
                        }
                        MediaAction::DigitReceived { digit, .. } => {
                            tracing::info!(%digit, "digit received");
                            if let Some(v) = vm.as_mut() {
                                v.handle_digit(digit);
                                drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                            } else if let Some(r) = recording.as_mut() {
                                // '#' ends a recording; other keys are part of it.
                                if digit == '#' {
                                    r.until = Instant::now() + Duration::from_secs(3600);
                                    media.stop_recording();
                                }
                            } else if let Some(i) = ivr.as_mut() {
                                i.handle_digit(wall_now(&shared), digit);
                                ivr_next = drive_ivr(&shared, i, &media, &mut call, &mut contact).await;
                            } else if queue.is_some() {
                                let _ = shared.acd.send(AcdRequest::Key { item: uid, digit });
                            }
                        }
                        other => tracing::debug!(?other, "media"),
                    },
                    Some(CallInput::Control { command, reply }) => {
                        let release = !matches!(command, super::call_control::ControlCommand::Hold | super::call_control::ControlCommand::Unhold);
                        let r = super::call_control::apply((&shared, uid, &cmd), now, command, &mut call, &mut media, &mut desk).await;
                        if r.is_ok() && release {
                            offered_agent = None;
                        }
                        let _ = reply.send(r);
                    }
                    None => call.hang_up_all(now, "failed"),
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if deadline.is_some() => {
                call.handle_timeout(now());
                if let Some(v) = vm.as_mut() {
                    v.handle_timeout();
                    drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                }
                if let Some(r) = recording.as_mut()
                    && r.until <= Instant::now()
                {
                    r.until = Instant::now() + Duration::from_secs(3600);
                    media.stop_recording();
                }
                if let Some(i) = ivr.as_mut() {
                    i.handle_timeout(wall_now(&shared));
                    ivr_next = drive_ivr(&shared, i, &media, &mut call, &mut contact).await;
                }
            }
        }
    }
    if let Some(v) = vm.as_mut()
        && v.awaits_recording()
    {
        // The caller hung up while recording: closing the leg completed the file,
        // which is still a message. Its result arrives before the leg is forgotten.
        let flush = tokio::time::sleep(RECORDING_FLUSH);
        tokio::pin!(flush);
        loop {
            tokio::select! {
                input = inbox.recv() => match input {
                    Some(CallInput::Recorded(result)) => {
                        v.handle_recorded(&result);
                        drive_voicemail(&shared, v, &media, &mut call, &cmd).await;
                        break;
                    }
                    Some(_) => continue,
                    None => break,
                },
                _ = &mut flush => {
                    tracing::warn!("voicemail recording did not complete");
                    break;
                }
            }
        }
    }
    let _ = cmd.send(Command::CallEnded { uid });
}

pub(super) fn end_reason(result: &str) -> EndReason {
    match result {
        "answered" => EndReason::Answered,
        "cancelled" => EndReason::Cancelled,
        "busy" => EndReason::Busy,
        "no-answer" => EndReason::NoAnswer,
        "rejected" => EndReason::Rejected,
        "shutdown" => EndReason::Shutdown,
        "media-timeout" => EndReason::MediaTimeout,
        _ => EndReason::Failed,
    }
}
