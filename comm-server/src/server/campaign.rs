//! The outbound campaign driver: one thin task per configured campaign, ticking every
//! [`TICK`], and one task per dial.
//!
//! Each tick the campaign task reads its state from the store (the CLI sets it), and
//! while running: asks the ACD for the campaign queue's floor, asks the pure
//! [`Pacer`] how many calls to place, takes that many due contacts, screens each one
//! ([`screen`]: do-not-call before every dial, attempts, calling hours in the
//! contact's zone) and dials the rest through the campaign's trunk. Every dial reports
//! its [`Outcome`]; the attempt is stored and [`RetryPolicy`] decides the next one.
//!
//! A dial is a small two-leg B2BUA of its own (the customer leg has no inbound INVITE,
//! so [`crate::call::Call`] does not fit): INVITE the customer through the trunk with
//! our anchored SDP; ring timeout → CANCEL (no answer); final status → outcome. Once
//! answered it joins the campaign queue as a top-priority [`ItemKind::CampaignCall`];
//! the ACD's offer rings the agent, whose answer bridges the media. No agent within
//! `connect-timeout`: the identification prompt plays, we hang up, and the call counts
//! as abandoned.
//!
//! ```text
//!   Dialling --2xx--> Waiting(agent) --agent 2xx--> Connected --BYE either--> done
//!      |                 '--connect timeout--> Identifying --prompt done--> done
//!      '--ring timeout (CANCEL) / 3xx-6xx--> done
//! ```

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::campaign_board::{self, Live};
use super::outbound::{OutLeg, Outbound};
use super::*;
use crate::acd::ItemKind;
use crate::campaigns::amd::{AmdParams, Verdict};
use crate::campaigns::screen::{Screen, screen, zone_of};
use crate::campaigns::settings::{AmdAction, Campaign};
use crate::campaigns::{AbandonWindow, DialMode, DoNotCall, Floor, Outcome, Pacer, Stats};
use crate::store::{CampaignAttempt, CampaignContact, CampaignState, StoreError};

/// How often a campaign looks at its state, its floor and its due contacts.
const TICK: Duration = Duration::from_millis(500);
/// Due contacts read per tick beyond the calls to place: some are screened out.
const SCREEN_SLACK: u32 = 20;
/// Play id of the identification prompt on an abandoned call.
const IDENTIFICATION: u64 = 1;
/// The prompt an abandoned call hears before we hang up.
const IDENTIFICATION_PROMPT: &str = "general/campaign-identification";
/// Said instead when the identification prompt is not installed.
const FALLBACK_PROMPT: &str = "general/goodbye";
/// Play id of the message an answering machine hears (`amd = "message"`).
const MACHINE_MESSAGE: u64 = 2;
/// How long past the detector's own limit we wait for its verdict: a far end that
/// sends no audio at all never lets it decide.
const AMD_GRACE: Duration = Duration::from_secs(1);
/// The rolling period of the abandonment rate (Ofcom counts per 24 hours).
const ABANDON_PERIOD: StdDuration = StdDuration::from_secs(24 * 3600);

/// What a dial tells its campaign when it is over.
struct DialResult {
    contact: i64,
    /// Attempts including this one.
    attempts: u32,
    customer: Option<i64>,
    e164: String,
    /// When the customer answered (Unix ms), if they did.
    answered_at_ms: Option<i64>,
    call_id: String,
    started_at_ms: i64,
    ended_at_ms: i64,
    outcome: Outcome,
    agent: Option<String>,
    /// The dial was a callback an agent booked.
    callback: bool,
    /// A preview the agent skipped: nothing was dialled.
    skipped: bool,
}

impl DialResult {
    /// A dial of `contact` starting now: failed until it says otherwise.
    fn new(contact: &CampaignContact, call_id: String, started_at_ms: i64) -> DialResult {
        DialResult {
            contact: contact.id,
            attempts: contact.attempts + 1,
            customer: contact.customer_id,
            e164: contact.e164.clone(),
            answered_at_ms: None,
            call_id,
            started_at_ms,
            ended_at_ms: started_at_ms,
            outcome: Outcome::Failed,
            agent: None,
            callback: contact.callback_at_ms.is_some(),
            skipped: false,
        }
    }
}

/// The number a campaign's calls show: the campaign's, else the trunk's.
fn caller_id(campaign: &Campaign, trunk: &Trunk) -> String {
    campaign
        .caller_id
        .clone()
        .or_else(|| trunk.caller_id.clone())
        .unwrap_or_else(|| "anonymous".into())
}

/// Starts one task per `[[campaign]]`.
pub(super) fn spawn_campaigns(shared: &Arc<Shared>, cmd: &mpsc::UnboundedSender<Command>) {
    let campaigns = match shared.config.checked_campaigns() {
        Ok(c) => c,
        Err(e) => {
            // Checked at load: only a config built by hand gets here.
            tracing::error!(key = %e.key, message = %e.message, "campaigns not started");
            return;
        }
    };
    for campaign in campaigns {
        let Some(trunk) = shared.trunks.iter().find(|t| t.name == campaign.trunk) else {
            continue;
        };
        let agents: Vec<u64> = shared
            .config
            .agents
            .iter()
            .enumerate()
            .filter(|(_, a)| a.queues.contains(&campaign.queue))
            .map(|(i, _)| i as u64)
            .collect();
        let span = tracing::info_span!("campaign", name = %campaign.name);
        let task = CampaignTask {
            shared: shared.clone(),
            cmd: cmd.clone(),
            trunk: trunk.clone(),
            pacer: Pacer::new(campaign.mode),
            abandons: AbandonWindow::new(ABANDON_PERIOD),
            stats: Stats::default(),
            campaign,
            agents,
            in_flight: 0,
            agents_on: 0,
            last_state: None,
            refresh_at: None,
        };
        tokio::spawn(task.run().instrument(span));
    }
}

struct CampaignTask {
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Command>,
    campaign: Campaign,
    trunk: Trunk,
    /// Indices of the agents serving the campaign's queue.
    agents: Vec<u64>,
    pacer: Pacer,
    abandons: AbandonWindow,
    /// What the pacer knows of this campaign's calls so far.
    stats: Stats,
    in_flight: u32,
    /// Agents available or busy on the campaign's queue at the last tick.
    agents_on: u32,
    /// The run state at the last tick: a change refreshes the status at once.
    last_state: Option<CampaignState>,
    /// When the status is refreshed even without a change seen here.
    refresh_at: Option<std::time::Instant>,
}

impl CampaignTask {
    async fn run(mut self) {
        let store = &self.shared.store;
        let name = self.campaign.name.clone();
        if let Err(e) = store
            .ensure_campaign(&name, self.shared.clock.unix_ms())
            .await
        {
            tracing::error!(error = %e, "campaign not recorded; not dialling");
            return;
        }
        // A server stopped mid-call left these in progress: due again now.
        match store.release_campaign_contacts(&name).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(contacts = n, "released contacts left in progress"),
            Err(e) => tracing::warn!(error = %e, "could not release contacts"),
        }
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The SIP driver owns the command channel: once it is gone, so is the server.
        while !self.cmd.is_closed() {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.tick(&done_tx).await {
                        tracing::warn!(error = %e, "campaign tick failed");
                    }
                }
                Some(result) = done_rx.recv() => self.finished(result).await,
            }
        }
    }

    async fn tick(&mut self, done: &mpsc::UnboundedSender<DialResult>) -> Result<(), StoreError> {
        let state = self
            .shared
            .store
            .campaign_state(&self.campaign.name)
            .await?;
        let (reply, floor) = oneshot::channel();
        let _ = self.shared.acd.send(AcdRequest::CampaignFloor {
            agents: self.agents.clone(),
            reply,
        });
        let Ok((ready, busy)) = floor.await else {
            return Ok(());
        };
        // Draining (SIGTERM): no new dials; calls in progress finish.
        if self.shared.metrics.serving() && state == Some(CampaignState::Running) {
            self.dial_due(ready, busy, done).await?;
        }
        self.agents_on = ready + busy;
        let changed = self.set_live() || state != self.last_state;
        self.last_state = state;
        if changed || self.refresh_at.is_none_or(|at| at <= now()) {
            self.refresh_status().await;
        }
        Ok(())
    }

    /// Tells the board the agents on the campaign (as of the last tick) and the calls
    /// in progress now; true if that changed.
    fn set_live(&self) -> bool {
        let live = Live::new(self.agents_on, self.in_flight);
        self.shared
            .campaign_board
            .set_live(&self.campaign.name, live)
    }

    /// Computes the campaign's status and hands it to the board, which publishes it
    /// to supervisors if it changed.
    async fn refresh_status(&mut self) {
        self.refresh_at = Some(now() + campaign_board::REFRESH);
        let live = self.shared.campaign_board.live(&self.campaign.name);
        match super::supervision::campaign_view(&self.shared.store, &self.campaign, live).await {
            Ok(view) => self.shared.campaign_board.update(view),
            // Tried again at the next refresh.
            Err(e) => tracing::debug!(error = %e, "campaign status not refreshed"),
        }
    }

    /// Places the calls the pacer asks for with `ready` and `busy` agents.
    async fn dial_due(
        &mut self,
        ready: u32,
        busy: u32,
        done: &mpsc::UnboundedSender<DialResult>,
    ) -> Result<(), StoreError> {
        let store = &self.shared.store;
        let name = &self.campaign.name;
        let floor = Floor {
            ready,
            busy,
            dialling: self.in_flight,
            answered_waiting: 0,
        };
        self.abandons.expire(now());
        self.stats.abandon_rate = self.abandons.rate();
        self.stats.answered_in_window = self.abandons.answered();
        let mut dials = match self.campaign.mode {
            // One contact offered per free agent: the ACD holds each agent it offers
            // one to (reserved), so the next floor no longer counts them.
            DialMode::Preview => floor.ready,
            _ => self.pacer.dials(&floor, &self.stats),
        };
        if dials == 0 {
            return Ok(());
        }
        let now_ms = self.shared.clock.unix_ms();
        let at = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
        let lists = store.do_not_call_lists(name).await?;
        let dnc = DoNotCall::new(lists.global, lists.campaign);
        for contact in store
            .due_campaign_contacts(name, now_ms, dials + SCREEN_SLACK)
            .await?
        {
            if dials == 0 {
                break;
            }
            let zone = zone_of(contact.time_zone.as_deref(), self.campaign.time_zone);
            // A callback the agent booked with the customer is kept whatever the
            // attempts so far; hours and do-not-call still apply.
            let max_attempts = match contact.callback_at_ms {
                Some(_) => u32::MAX,
                None => self.campaign.retry.max_attempts,
            };
            let verdict = screen(
                &contact.e164,
                contact.attempts,
                max_attempts,
                zone,
                at,
                &dnc,
                &self.campaign.calling_hours,
            );
            match verdict {
                Screen::Dial => {}
                Screen::Barred(list) => {
                    tracing::info!(contact = contact.id, ?list, "on a do-not-call list");
                    store
                        .reschedule_campaign_contact(contact.id, None, Some("do-not-call"))
                        .await?;
                    continue;
                }
                Screen::Exhausted => {
                    store
                        .reschedule_campaign_contact(contact.id, None, None)
                        .await?;
                    continue;
                }
                Screen::ClosedUntil(next) => {
                    let next = next.map(|t| t.timestamp_millis());
                    let why = next.is_none().then_some("outside-calling-hours");
                    store
                        .reschedule_campaign_contact(contact.id, next, why)
                        .await?;
                    continue;
                }
            }
            if !store.claim_campaign_contact(contact.id).await? {
                continue;
            }
            dials -= 1;
            self.in_flight += 1;
            if self.campaign.mode == DialMode::Preview {
                self.preview(contact, done.clone());
            } else {
                self.dial(contact, done.clone());
            }
        }
        Ok(())
    }

    fn dial(&self, contact: CampaignContact, done: mpsc::UnboundedSender<DialResult>) {
        let call_id = crate::sip::random_token();
        let span = tracing::info_span!("campaign call", call_id = %call_id, contact = contact.id);
        let dial = Dial {
            out: Outbound {
                shared: self.shared.clone(),
                cmd: self.cmd.clone(),
            },
            campaign: self.campaign.clone(),
            trunk: self.trunk.clone(),
            call_id,
        };
        tokio::spawn(
            async move {
                let result = dial.run(contact).await;
                let _ = done.send(result);
            }
            .instrument(span),
        );
    }

    /// Offers a contact to an agent, who dials or skips it (see `preview.rs`); the
    /// result comes back like a dial's.
    fn preview(&self, contact: CampaignContact, done: mpsc::UnboundedSender<DialResult>) {
        let out = Outbound {
            shared: self.shared.clone(),
            cmd: self.cmd.clone(),
        };
        let call_id = crate::sip::random_token();
        let span =
            tracing::info_span!("campaign preview", call_id = %call_id, contact = contact.id);
        let mut result = DialResult::new(&contact, call_id.clone(), out.shared.clock.unix_ms());
        let queue = self.campaign.queue.clone();
        let (trunk, caller_id) = (self.trunk.clone(), caller_id(&self.campaign, &self.trunk));
        tokio::spawn(
            async move {
                let (inbox, _unused) = mpsc::unbounded_channel();
                let Some(uid) = out.register(inbox).await else {
                    let _ = done.send(result);
                    return;
                };
                let (report, mut ended) = mpsc::unbounded_channel();
                let _ =
                    out.shared
                        .acd
                        .send(AcdRequest::EnqueuePreview(super::preview::NewPreview {
                            item: uid,
                            queue,
                            e164: contact.e164.clone(),
                            customer: contact.customer_id,
                            dial: super::preview::PreviewDial {
                                report,
                                call_id,
                                trunk,
                                caller_id,
                            },
                        }));
                match ended.recv().await {
                    Some(super::preview::PreviewEnd::Dialled {
                        outcome,
                        answered_at_ms,
                        agent,
                    }) => {
                        result.outcome = outcome;
                        result.answered_at_ms = answered_at_ms;
                        result.agent = Some(agent);
                    }
                    Some(super::preview::PreviewEnd::Skipped) => result.skipped = true,
                    // Refused by the queue, or dropped by a stopping ACD: a failed
                    // attempt, retried as one.
                    Some(super::preview::PreviewEnd::NotOffered) | None => {}
                }
                result.ended_at_ms = out.shared.clock.unix_ms();
                let _ = out.cmd.send(Command::CallEnded { uid });
                let _ = done.send(result);
            }
            .instrument(span),
        );
    }

    async fn finished(&mut self, r: DialResult) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if r.skipped {
            tracing::info!("preview skipped: the contact is closed");
            let closed = self
                .shared
                .store
                .reschedule_campaign_contact(r.contact, None, Some("skipped"))
                .await;
            if let Err(e) = closed {
                tracing::warn!(error = %e, "skipped contact not closed");
            }
            self.set_live();
            self.refresh_status().await;
            return;
        }
        tracing::info!(outcome = r.outcome.as_str(), agent = ?r.agent, "campaign call ended");
        match r.outcome {
            Outcome::Answered => self.abandons.record(now(), false),
            Outcome::Abandoned => self.abandons.record(now(), true),
            _ => {}
        }
        self.measure(&r);
        self.record(r).await;
        self.set_live();
        self.refresh_status().await;
    }

    async fn record(&self, r: DialResult) {
        let store = &self.shared.store;
        let attempts = r.attempts;
        let at = DateTime::<Utc>::from_timestamp_millis(r.ended_at_ms).unwrap_or_default();
        let retry_at = match self.campaign.retry.next(r.outcome, attempts, at) {
            crate::campaigns::compliance::Next::RetryAt(t) => Some(t.timestamp_millis()),
            crate::campaigns::compliance::Next::Done => None,
        };
        let attempt = CampaignAttempt {
            contact_id: r.contact,
            call_id: Some(r.call_id),
            started_at_ms: r.started_at_ms,
            ended_at_ms: r.ended_at_ms,
            outcome: r.outcome.as_str().to_owned(),
            agent: r.agent,
            disposition: None,
        };
        if let Err(e) = store.finish_campaign_attempt(&attempt, retry_at).await {
            tracing::error!(error = %e, "campaign attempt not recorded");
        }
        // The customer's history shows the attempt (the agent's screen pop reads it).
        let history = crate::store::Contact {
            customer_id: r.customer,
            phone: Some(r.e164),
            kind: crate::store::ContactKind::Campaign,
            direction: Some(Direction::Outbound),
            started_at_ms: attempt.started_at_ms,
            ended_at_ms: Some(attempt.ended_at_ms),
            queue: Some(self.campaign.queue.clone()),
            agent: attempt.agent.clone(),
            outcome: Some(attempt.outcome.clone()),
            call_id: attempt.call_id.clone(),
            details: serde_json::json!({
                "campaign": self.campaign.name,
                "attempt": attempts,
                "callback": r.callback,
            }),
        };
        if let Err(e) = store.add_history(&history).await {
            tracing::warn!(error = %e, "campaign attempt not in the contact history");
        }
    }

    /// Rolling figures for the pacer: answer rate and time to answer over recent
    /// dials, handle time over recent connected calls (exponential averages, so old
    /// figures fade without a window to keep).
    fn measure(&mut self, r: &DialResult) {
        const WEIGHT: f64 = 0.1;
        let blend = |old: f64, new: f64| old + WEIGHT * (new - old);
        let answered = matches!(r.outcome, Outcome::Answered | Outcome::Abandoned);
        self.stats.answer_rate = blend(self.stats.answer_rate, f64::from(u8::from(answered)));
        if let Some(at) = r.answered_at_ms {
            let ring = (at - r.started_at_ms).max(0) as f64 / 1000.0;
            let talk = (r.ended_at_ms - at).max(0) as f64 / 1000.0;
            self.stats.time_to_answer =
                StdDuration::from_secs_f64(blend(self.stats.time_to_answer.as_secs_f64(), ring));
            if r.outcome == Outcome::Answered {
                self.stats.handle_time =
                    StdDuration::from_secs_f64(blend(self.stats.handle_time.as_secs_f64(), talk));
            }
        }
        self.abandons.expire(now());
        self.stats.abandon_rate = self.abandons.rate();
        self.stats.answered_in_window = self.abandons.answered();
        self.pacer.observe(&self.stats);
    }
}

/// One campaign call: customer leg, then (once answered) the agent leg.
struct Dial {
    out: Outbound,
    campaign: Campaign,
    trunk: Trunk,
    call_id: String,
}

impl Dial {
    async fn run(self, contact: CampaignContact) -> DialResult {
        let started_at_ms = self.out.shared.clock.unix_ms();
        let mut result = DialResult::new(&contact, self.call_id.clone(), started_at_ms);
        let (inbox_tx, mut inbox) = mpsc::unbounded_channel();
        let Some(uid) = self.out.register(inbox_tx.clone()).await else {
            return result;
        };
        let outcome = self
            .converse(uid, &contact, inbox_tx, &mut inbox, &mut result)
            .await;
        result.outcome = outcome;
        result.ended_at_ms = self.out.shared.clock.unix_ms();
        let _ = self.out.cmd.send(Command::CallEnded { uid });
        result
    }

    async fn converse(
        &self,
        uid: u64,
        contact: &CampaignContact,
        inbox_tx: mpsc::UnboundedSender<CallInput>,
        inbox: &mut mpsc::UnboundedReceiver<CallInput>,
        result: &mut DialResult,
    ) -> Outcome {
        let caller_id = caller_id(&self.campaign, &self.trunk);
        let Some((customer, offer)) = self
            .out
            .open_trunk_leg(
                uid,
                self.call_id.clone(),
                &self.trunk,
                &caller_id,
                &contact.e164,
                1,
            )
            .await
        else {
            return Outcome::Failed;
        };
        let mut customer = Some(customer);
        let mut agent_leg: Option<OutLeg> = None;
        let mut agent_id: Option<u64> = None;
        if let Some(c) = customer.as_mut() {
            self.out.invite(uid, c, &offer);
        }
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        let mut ring_deadline = Some(Instant::now() + self.campaign.ring_timeout);
        let mut connect_deadline: Option<Instant> = None;
        // Answering-machine detection running: its verdict is due by then.
        let mut amd_deadline: Option<Instant> = None;
        let mut machine = false;
        let mut rang_out = false;
        let mut enqueued = false;
        let mut connected = false;
        let mut next_handle = 10u64;
        let outcome = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(ring_deadline.unwrap_or(far)), if ring_deadline.is_some() => {
                    ring_deadline = None;
                    rang_out = true;
                    let _ = self.out.cmd.send(Command::Cancel { uid, handle: 1 });
                }
                _ = tokio::time::sleep_until(amd_deadline.unwrap_or(far)), if amd_deadline.is_some() => {
                    // No verdict from silence or a lost stream: a person, to be safe.
                    amd_deadline = None;
                    tracing::info!("no machine verdict in time: treated as a person");
                    connect_deadline = Some(self.enqueue(uid, contact, &inbox_tx));
                    enqueued = true;
                }
                _ = tokio::time::sleep_until(connect_deadline.unwrap_or(far)), if connect_deadline.is_some() => {
                    connect_deadline = None;
                    tracing::info!("no agent in time: abandoned");
                    if let Some(agent) = agent_id.take() {
                        let _ = self.out.cmd.send(Command::Cancel { uid, handle: 2 });
                        let _ = self.out.shared.acd.send(AcdRequest::OfferFailed { item: uid, agent });
                    }
                    if enqueued {
                        let _ = self.out.shared.acd.send(AcdRequest::Ended { item: uid });
                        enqueued = false;
                    }
                    let prompt = self
                        .out.shared
                        .prompts
                        .prompt(IDENTIFICATION_PROMPT)
                        .or_else(|_| self.out.shared.prompts.prompt(FALLBACK_PROMPT));
                    match (prompt, customer.as_ref().and_then(|c| c.media.as_ref())) {
                        (Ok(p), Some((leg, _))) => {
                            let _ = self.out.shared.engine.command(*leg, MediaCommand::Play {
                                id: IDENTIFICATION,
                                prompts: vec![p],
                                barge_in: false,
                            });
                        }
                        _ => {
                            if let Some(c) = customer.as_mut() {
                                next_handle += 1;
                                self.out.bye(uid, c, next_handle);
                            }
                            break Outcome::Abandoned;
                        }
                    }
                }
                input = inbox.recv() => match input {
                    None | Some(CallInput::HangUp) => {
                        for leg in [customer.as_mut(), agent_leg.as_mut()].into_iter().flatten() {
                            if leg.answered {
                                next_handle += 1;
                                self.out.bye(uid, leg, next_handle);
                            }
                        }
                        break if connected { Outcome::Answered } else { Outcome::Failed };
                    }
                    Some(CallInput::Media(MediaAction::MachineDetection(verdict))) if amd_deadline.is_some() => {
                        amd_deadline = None;
                        tracing::info!(?verdict, "answering-machine detection");
                        if verdict != Verdict::Machine {
                            connect_deadline = Some(self.enqueue(uid, contact, &inbox_tx));
                            enqueued = true;
                            continue;
                        }
                        machine = true;
                        let Some(c) = customer.as_mut() else { break Outcome::Machine };
                        if !self.play_machine_message(c) {
                            next_handle += 1;
                            self.out.bye(uid, c, next_handle);
                            break Outcome::Machine;
                        }
                    }
                    Some(CallInput::Media(MediaAction::PlaybackFinished { id: MACHINE_MESSAGE, .. })) => {
                        if let Some(c) = customer.as_mut() {
                            next_handle += 1;
                            self.out.bye(uid, c, next_handle);
                        }
                        break Outcome::Machine;
                    }
                    Some(CallInput::Media(MediaAction::PlaybackFinished { id: IDENTIFICATION, .. })) => {
                        if let Some(c) = customer.as_mut() {
                            next_handle += 1;
                            self.out.bye(uid, c, next_handle);
                        }
                        break Outcome::Abandoned;
                    }
                    Some(CallInput::Response { handle: 1, response }) => {
                        if response.status < 200 {
                            continue;
                        }
                        ring_deadline = None;
                        let Some(c) = customer.as_mut() else { continue };
                        if !(200..300).contains(&response.status) {
                            break Outcome::from_final_status(response.status, rang_out);
                        }
                        c.established(&response);
                        self.out.ack(c);
                        if !self.out.start_media(c, &response.body) {
                            next_handle += 1;
                            self.out.bye(uid, c, next_handle);
                            break Outcome::Failed;
                        }
                        result.answered_at_ms = Some(self.out.shared.clock.unix_ms());
                        if self.campaign.amd != AmdAction::Off
                            && let Some((leg, _)) = c.media.as_ref()
                        {
                            tracing::info!("customer answered; listening for a machine");
                            let params = AmdParams::default();
                            let _ = self.out.shared.engine.command(*leg, MediaCommand::DetectMachine(params));
                            amd_deadline = Some(Instant::now() + params.max_analysis + AMD_GRACE);
                            continue;
                        }
                        tracing::info!("customer answered; queueing for an agent");
                        connect_deadline = Some(self.enqueue(uid, contact, &inbox_tx));
                        enqueued = true;
                    }
                    Some(CallInput::Response { handle: 2, response }) => {
                        if response.status < 200 {
                            continue;
                        }
                        let Some(agent) = agent_id else { continue };
                        let Some(a) = agent_leg.as_mut() else { continue };
                        if !(200..300).contains(&response.status) {
                            agent_id = None;
                            if let Some((id, _)) = agent_leg.take().and_then(|a| a.media) {
                                let _ = self.out.shared.engine.close(id).await;
                            }
                            let _ = self.out.shared.acd.send(AcdRequest::OfferFailed { item: uid, agent });
                            continue;
                        }
                        a.established(&response);
                        self.out.ack(a);
                        let bridged = self.out.start_media(a, &response.body)
                            && customer.as_ref().is_some_and(|c| self.out.bridge(c, a));
                        let _ = self.out.shared.acd.send(AcdRequest::OfferAnswered { item: uid, agent });
                        connect_deadline = None;
                        connected = true;
                        result.agent = self.out.shared.config.agents.get(agent as usize).map(|a| a.name.get_ref().clone());
                        tracing::info!(bridged, agent = ?result.agent, "agent connected");
                    }
                    Some(CallInput::Response { .. }) => {}
                    Some(CallInput::Request { tx, request, .. }) => {
                        let from_customer = customer.as_ref().is_some_and(|c| c.call_id == request.call_id());
                        match request.method {
                            Method::Bye => {
                                self.out.respond(tx, &request, 200);
                                let other = if from_customer { agent_leg.as_mut() } else { customer.as_mut() };
                                if let Some(o) = other.filter(|o| o.answered) {
                                    next_handle += 1;
                                    self.out.bye(uid, o, next_handle);
                                }
                                if !from_customer && !connected {
                                    // The agent hung up before we knew: treat as a failed offer.
                                    continue;
                                }
                                break if connected {
                                    Outcome::Answered
                                } else if machine {
                                    Outcome::Machine
                                } else {
                                    Outcome::Abandoned
                                };
                            }
                            // No re-offers on campaign calls yet (hold, codec changes): the
                            // session stays as it is (RFC 3261 §14.2).
                            Method::Invite | Method::Update => self.out.respond(tx, &request, 488),
                            _ => self.out.respond(tx, &request, 200),
                        }
                    }
                    Some(CallInput::Queue(command)) => match command {
                        QueueCommand::Offer { agent, flow, uri, ring_timeout: _ } if agent_id.is_none() && !connected => {
                            let name = self.out.shared.config.agents.get(agent as usize).map(|a| a.name.get_ref().clone()).unwrap_or_default();
                            let opened = self
                                .out
                                .open_leg(uid, crate::sip::random_token(), flow, &contact.e164.replace('+', ""), uri, 2)
                                .await;
                            match opened {
                                Some((mut leg, offer)) => {
                                    tracing::info!(agent = %name, "offering the campaign call");
                                    self.out.invite(uid, &mut leg, &offer);
                                    agent_leg = Some(leg);
                                    agent_id = Some(agent);
                                }
                                None => {
                                    let _ = self.out.shared.acd.send(AcdRequest::OfferFailed { item: uid, agent });
                                }
                            }
                        }
                        QueueCommand::Offer { agent, .. } => {
                            let _ = self.out.shared.acd.send(AcdRequest::OfferFailed { item: uid, agent });
                        }
                        QueueCommand::CancelOffer => {
                            let _ = self.out.cmd.send(Command::Cancel { uid, handle: 2 });
                        }
                        // A campaign call sends the queue no keys, so it never leaves by
                        // the exit key or books a callback; if the queue says so anyway,
                        // it ends like an overflow.
                        QueueCommand::Overflow | QueueCommand::HangUp | QueueCommand::Leave(_) => {
                            for leg in [customer.as_mut(), agent_leg.as_mut()].into_iter().flatten() {
                                if leg.answered {
                                    next_handle += 1;
                                    self.out.bye(uid, leg, next_handle);
                                }
                            }
                            break if connected { Outcome::Answered } else { Outcome::Abandoned };
                        }
                        QueueCommand::Music | QueueCommand::Announce { .. } | QueueCommand::CallbackBooked => {}
                    },
                    Some(_) => {}
                }
            }
        };
        if enqueued {
            let _ = self.out.shared.acd.send(AcdRequest::Ended { item: uid });
        }
        self.out.close([&customer, &agent_leg]).await;
        outcome
    }
}

impl Dial {
    /// Queues the answered customer for the campaign's agents; returns when the wait
    /// for one ends (abandoned).
    fn enqueue(
        &self,
        uid: u64,
        contact: &CampaignContact,
        inbox: &mpsc::UnboundedSender<CallInput>,
    ) -> Instant {
        let _ = self.out.shared.acd.send(AcdRequest::EnqueueCampaign {
            item: uid,
            call_id: self.call_id.clone(),
            queue: self.campaign.queue.clone(),
            caller: Some(contact.e164.clone()),
            customer: contact.customer_id,
            inbox: inbox.clone(),
        });
        Instant::now() + self.campaign.connect_timeout
    }

    /// Plays the campaign's message to a machine; false when there is none to play
    /// (`amd = "hang-up"`, or the prompt is missing): hang up instead.
    fn play_machine_message(&self, customer: &OutLeg) -> bool {
        let AmdAction::Message(name) = &self.campaign.amd else {
            return false;
        };
        let (Ok(prompt), Some((leg, _))) = (
            self.out.shared.prompts.prompt(name),
            customer.media.as_ref(),
        ) else {
            tracing::warn!(prompt = %name, "machine message not played");
            return false;
        };
        self.out
            .shared
            .engine
            .command(
                *leg,
                MediaCommand::Play {
                    id: MACHINE_MESSAGE,
                    prompts: vec![prompt],
                    barge_in: false,
                },
            )
            .is_ok()
    }
}

/// Answers the campaign driver's floor question from the ACD's agents: `agents` are
/// the indices of the campaign queue's agents; (ready, busy).
pub(super) fn campaign_floor(acd: &crate::acd::Acd, agents: &[u64]) -> (u32, u32) {
    use crate::acd::{AgentId, AgentState, AgentStatus};
    let (mut ready, mut busy) = (0, 0);
    for &a in agents {
        let id = AgentId(a);
        match (acd.agent_status(id), acd.agent_state(id)) {
            (Some(AgentStatus::Available), Some(AgentState::Idle)) => ready += 1,
            (Some(AgentStatus::LoggedOut) | None, _) => {}
            (
                _,
                Some(
                    AgentState::OnCall(_)
                    | AgentState::WrapUp
                    | AgentState::Ringing(_)
                    | AgentState::Reserved(_),
                ),
            ) => busy += 1,
            _ => {}
        }
    }
    (ready, busy)
}

/// The ACD item for an answered campaign call: top priority, so a free agent gets it
/// before inbound callers.
pub(super) fn campaign_item_kind() -> ItemKind {
    ItemKind::CampaignCall { campaign: 0 }
}

/// Writes an agent's disposition onto the campaign attempt with this Call-ID, and
/// books the callback they set (if any) on its contact. The attempt row is stored
/// when the dial ends, which races with a quick disposition: a row not there yet is
/// looked for again, for a few seconds. The booking follows the attempt, so it
/// replaces whatever the retry rules decided when the dial ended.
pub(super) fn record_disposition(
    store: crate::store::Store,
    call_id: String,
    code: String,
    callback_at_ms: Option<i64>,
) {
    tokio::spawn(async move {
        for _ in 0..40 {
            match store
                .set_campaign_attempt_disposition(&call_id, &code)
                .await
            {
                Ok(true) => {
                    let Some(at) = callback_at_ms else { return };
                    match store.book_campaign_callback(&call_id, at).await {
                        Ok(_) => tracing::info!(%call_id, at, "campaign callback booked"),
                        Err(e) => tracing::warn!(error = %e, %call_id, "callback not booked"),
                    }
                    return;
                }
                Ok(false) => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(e) => {
                    tracing::warn!(error = %e, %call_id, "disposition not saved to the attempt");
                    return;
                }
            }
        }
        tracing::warn!(%call_id, "no campaign attempt to hold the disposition");
    });
}
