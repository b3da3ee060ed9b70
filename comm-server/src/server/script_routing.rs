//! Where a dialog script sends its call: `<enqueue>`, `<voicemail>` and `<transfer>`
//! (to a queue, an agent's phone or a number through a trunk).
//!
//! Owns: checking a routing step against the config and the registrar, and telling
//! the call task what to do next ([`IvrOutcome`]). Must not own: the call, its media or
//! its timers; the call task (`call_task.rs`) carries the outcome out.
//!
//! ```text
//!   Route(step) --unknown target--> RouteFailed(reason): the script carries on
//!       |--queue / mailbox--> Routed at once, session over --> Enqueue | Voicemail
//!       '--agent / number--> Transfer: the script waits while the phone rings
//!             --callee answers--> Routed, bridged
//!             '--busy / no answer / trunk refuses--> RouteFailed("busy" ...)
//! ```

use super::*;
use crate::call::TrunkCredentials;
use script_engine::{Step, TransferTo};

/// What the call task does after the IVR asked for something it cannot do alone.
#[derive(Debug)]
pub(super) enum IvrOutcome {
    /// The caller waits in a queue (the session is over).
    Enqueue(callback::PendingEnqueue),
    /// The caller leaves a message in this mailbox (the session is over).
    Voicemail(String),
    /// Ring someone; the session waits for `Routed` (answered) or `RouteFailed`.
    Transfer(TransferDial),
    /// Record the caller; the session waits for the recording.
    Record(script_engine::Question),
}

/// A party to ring for a script's `<transfer>`.
#[derive(Debug, Clone)]
pub(super) struct TransferDial {
    pub(super) flow: Flow,
    pub(super) uri: String,
    /// Who is rung, for logs: the agent's name or the number.
    pub(super) label: String,
    /// For a trunk's challenge (its own realm only).
    pub(super) credentials: Option<TrunkCredentials>,
    /// The agent's place in the config, for the CDR and contact history.
    pub(super) agent: Option<u64>,
}

/// Checks a script's routing step; `Err` is the reason the script hears in
/// `RouteFailed` (it then carries on with its fallback).
pub(super) async fn route(shared: &Shared, step: Step) -> Result<IvrOutcome, String> {
    match step {
        Step::Enqueue {
            queue,
            priority,
            skills,
            ..
        } => {
            known_queue(shared, &queue)?;
            let skills = skills.into_iter().map(|s| (s.skill, s.min_level)).collect();
            Ok(IvrOutcome::Enqueue((
                queue,
                priority.clamp(0, 255) as u8,
                skills,
            )))
        }
        Step::Voicemail { mailbox, .. } => match shared.config.mailbox(&mailbox) {
            Some(_) => Ok(IvrOutcome::Voicemail(mailbox)),
            None => Err(format!("no mailbox named \"{mailbox}\"")),
        },
        Step::Transfer {
            to: TransferTo::Queue,
            target,
            ..
        } => {
            known_queue(shared, &target)?;
            Ok(IvrOutcome::Enqueue((target, 0, Vec::new())))
        }
        Step::Transfer {
            to: TransferTo::Agent,
            target,
            ..
        } => agent_phone(shared, &target).await.map(IvrOutcome::Transfer),
        Step::Transfer {
            to: TransferTo::Number,
            target,
            ..
        } => number_via_trunk(shared, &target).map(IvrOutcome::Transfer),
        other => Err(format!("not a routing step: {other:?}")),
    }
}

fn known_queue(shared: &Shared, queue: &str) -> Result<(), String> {
    if shared
        .config
        .queues
        .iter()
        .any(|q| q.name.get_ref() == queue)
    {
        Ok(())
    } else {
        Err(format!("no queue named \"{queue}\""))
    }
}

/// The phone an agent is registered from (agents are SIP users).
async fn agent_phone(shared: &Shared, agent: &str) -> Result<TransferDial, String> {
    let Some(index) = shared
        .config
        .agents
        .iter()
        .position(|a| a.name.get_ref() == agent)
    else {
        return Err(format!("no agent named \"{agent}\""));
    };
    match shared.registrar.locate(agent).await {
        Ok(Some((flow, uri))) => Ok(TransferDial {
            flow,
            uri,
            label: agent.to_string(),
            credentials: None,
            agent: Some(index as u64),
        }),
        Ok(None) => Err(format!("agent \"{agent}\" has no registered phone")),
        Err(e) => {
            tracing::error!(error = %e, "binding lookup failed");
            Err("the agent's phone could not be looked up".into())
        }
    }
}

/// A number (E.164 under `[customers]`) through the first trunk whose prefixes match
/// it, as the campaigns dial; also the desktop's blind transfer to a number.
pub(super) fn number_via_trunk(shared: &Shared, number: &str) -> Result<TransferDial, String> {
    let plan = shared.config.customers.dial_plan().unwrap_or_default();
    let e164 = crate::phone::normalise(number, &plan)
        .map_err(|e| format!("\"{number}\" is not a phone number: {e}"))?;
    let trunk = shared
        .trunks
        .iter()
        .find(|t| {
            t.prefixes
                .iter()
                .any(|p| e164.as_str().starts_with(p.as_str()) || number.starts_with(p.as_str()))
        })
        .ok_or_else(|| format!("no trunk dials {}", e164.as_str()))?;
    Ok(TransferDial {
        flow: Flow::Udp(trunk.address),
        uri: format!("sip:{}@{}", e164.as_str(), trunk.address),
        label: e164.into_string(),
        credentials: trunk.credentials(),
        agent: None,
    })
}

/// Why a transfer's dial failed, in the words the script's history records.
pub(super) fn dial_failure(status: u16) -> String {
    match status {
        486 | 600 => "busy".into(),
        408 | 480 | 487 => "no answer".into(),
        s => format!("failed ({s})"),
    }
}

/// The transferee answered: the script's session is over (its history is kept) and
/// the call is a plain two-party call from here.
pub(super) fn transferred(shared: &Shared, mut ivr: Ivr, contact: &mut CallContact) {
    ivr.handle_host_reply(call_task::wall_now(shared), script_engine::Input::Routed);
    while let Some(action) = ivr.poll_action() {
        if let IvrAction::History(h) = action {
            contact.note(&h);
        }
    }
}
