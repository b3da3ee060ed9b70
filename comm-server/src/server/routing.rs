//! Where a new call goes: the route table, registered users (with proxy
//! authentication), and trunks (authenticated users only, never hairpinned).

use super::*;

/// Where a new call goes, and how it is labelled in the CDR.
pub(super) struct Resolution {
    pub(super) destination: Destination,
    pub(super) direction: Direction,
    pub(super) route: String,
    /// Prompts to play once answered, then hang up.
    pub(super) play: Option<Vec<Prompt>>,
    /// A dialog script to run once answered.
    pub(super) ivr: Option<String>,
    /// An ACD queue to wait in once answered.
    pub(super) queue: Option<String>,
    /// A mailbox to leave a message in, or to listen to, once answered.
    pub(super) voicemail: Option<VoicemailRoute>,
}

pub(super) async fn resolve(
    shared: &Shared,
    flow: Flow,
    req: &Request,
) -> Result<Resolution, Response> {
    let number = header::uri_user(&req.uri).unwrap_or_default();
    let from_trunk = shared
        .trunks
        .iter()
        .find(|t| t.inbound_sources.contains(&flow.addr().ip()));
    let reject = |status: u16, route: &str, direction| Resolution {
        destination: Destination::Reject { status },
        direction,
        route: route.to_string(),
        play: None,
        ivr: None,
        queue: None,
        voicemail: None,
    };
    let dial_user = |user: String, direction: Direction| async move {
        match shared.registrar.locate(&user).await {
            Ok(Some((flow, uri))) => Resolution {
                destination: Destination::Dial {
                    flow,
                    uri,
                    label: user.clone(),
                    credentials: None,
                    media: None,
                },
                direction,
                route: format!("user:{user}"),
                play: None,
                ivr: None,
                queue: None,
                voicemail: None,
            },
            Ok(None) => reject(480, &format!("user:{user}"), direction),
            Err(e) => {
                tracing::error!(error = %e, "binding lookup failed");
                reject(500, &format!("user:{user}"), direction)
            }
        }
    };
    if number == VOICEMAIL_FEATURE_CODE {
        // Owners listen from their own phone: the mailbox they own, after the PIN.
        let who = shared.registrar.authenticate(req, true).await?;
        let mailbox = shared
            .config
            .mailboxes
            .iter()
            .find(|m| m.owner.as_deref() == Some(who.user.as_str()))
            .map(|m| m.name.get_ref().clone());
        return Ok(match mailbox {
            Some(m) => answer_for_voicemail(
                format!("voicemail-retrieval:{m}"),
                Direction::Internal,
                VoicemailRoute::Retrieval(m),
            ),
            None => reject(404, &format!("feature:{number}"), Direction::Internal),
        });
    }
    if let Some(status) = feature_code(&number) {
        // Agents set their status from any phone: *1 available, *2 break, *0 log out.
        let who = shared.registrar.authenticate(req, true).await?;
        let _ = shared.acd.send(AcdRequest::Status {
            agent: who.user,
            status,
        });
        return Ok(Resolution {
            destination: Destination::AutoAnswer {
                sdp: Vec::new(),
                hangup_after: Some(Duration::from_millis(500)),
            },
            direction: Direction::Internal,
            route: format!("feature:{number}"),
            play: None,
            ivr: None,
            queue: None,
            voicemail: None,
        });
    }
    if let Some(target) = shared.config.route(&number) {
        return Ok(match target {
            Target::AutoAnswer(a) => Resolution {
                destination: Destination::AutoAnswer {
                    sdp: Vec::new(), // our answer, once media is anchored
                    hangup_after: a.hangup_after.map(|d| d.0),
                },
                direction: Direction::Inbound,
                route: format!("auto-answer:{number}"),
                play: None,
                ivr: None,
                queue: None,
                voicemail: None,
            },
            Target::Prompt(names) => match shared.prompts.sequence(names) {
                Ok(prompts) => Resolution {
                    destination: Destination::AutoAnswer {
                        sdp: Vec::new(),
                        hangup_after: None,
                    },
                    direction: Direction::Inbound,
                    route: format!("prompt:{number}"),
                    play: Some(prompts),
                    ivr: None,
                    queue: None,
                    voicemail: None,
                },
                Err(e) => {
                    tracing::error!(error = %e, "prompt route cannot play");
                    reject(500, &format!("prompt:{number}"), Direction::Inbound)
                }
            },
            Target::User(u) => dial_user(u.clone(), Direction::Inbound).await,
            // A direct line to an agent rings the agent's phone (agents are users).
            Target::Agent(a) => dial_user(a.clone(), Direction::Inbound).await,
            Target::Queue(q) | Target::QueueWithSkills(q, _) => Resolution {
                destination: Destination::AutoAnswer {
                    sdp: Vec::new(),
                    hangup_after: None,
                },
                direction: Direction::Inbound,
                route: format!("queue:{q}"),
                play: None,
                ivr: None,
                queue: Some(q.clone()),
                voicemail: None,
            },
            Target::Script(file) => match script_for(&shared.scripts, file) {
                Some(id) => Resolution {
                    destination: Destination::AutoAnswer {
                        sdp: Vec::new(),
                        hangup_after: None,
                    },
                    direction: Direction::Inbound,
                    route: format!("script:{file}"),
                    play: None,
                    ivr: Some(id),
                    queue: None,
                    voicemail: None,
                },
                None => reject(500, &format!("script:{file}"), Direction::Inbound),
            },
            Target::Mailbox(m) => answer_for_voicemail(
                format!("mailbox:{m}"),
                Direction::Inbound,
                VoicemailRoute::Deposit(m.clone()),
            ),
            Target::VoicemailRetrieval(m) => answer_for_voicemail(
                format!("voicemail-retrieval:{m}"),
                Direction::Inbound,
                VoicemailRoute::Retrieval(m.clone()),
            ),
        });
    }
    let is_user = matches!(shared.store.sip_account(&number).await, Ok(Some(_)));
    if is_user {
        if from_trunk.is_none() {
            shared.registrar.authenticate(req, true).await?;
        }
        return Ok(dial_user(number, Direction::Internal).await);
    }
    if let Some(trunk) = shared
        .trunks
        .iter()
        .find(|t| t.prefixes.iter().any(|p| number.starts_with(p.as_str())))
    {
        if from_trunk.is_some() {
            // Never hairpin a trunk call back out (toll fraud).
            return Ok(reject(
                403,
                &format!("trunk:{}", trunk.name),
                Direction::Outbound,
            ));
        }
        shared.registrar.authenticate(req, true).await?;
        return Ok(Resolution {
            destination: Destination::Dial {
                flow: Flow::Udp(trunk.address),
                uri: format!("sip:{number}@{}", trunk.address),
                label: trunk.name.clone(),
                credentials: trunk.credentials(),
                media: None,
            },
            direction: Direction::Outbound,
            route: format!("trunk:{}", trunk.name),
            play: None,
            ivr: None,
            queue: None,
            voicemail: None,
        });
    }
    Ok(reject(404, "none", Direction::Inbound))
}

/// The feature code that reaches the caller's own mailbox.
pub(super) const VOICEMAIL_FEATURE_CODE: &str = "*98";

fn answer_for_voicemail(route: String, direction: Direction, vm: VoicemailRoute) -> Resolution {
    Resolution {
        destination: Destination::AutoAnswer {
            sdp: Vec::new(),
            hangup_after: None,
        },
        direction,
        route,
        play: None,
        ivr: None,
        queue: None,
        voicemail: Some(vm),
    }
}

impl Resolution {
    pub(super) fn destination_label(&self) -> String {
        match &self.destination {
            Destination::Dial { label, .. } => label.clone(),
            Destination::AutoAnswer { .. } => "auto-answer".into(),
            Destination::Reject { status } => format!("reject:{status}"),
        }
    }
}

/// The agent status a feature code sets.
fn feature_code(number: &str) -> Option<crate::acd::AgentStatus> {
    use crate::acd::AgentStatus;
    match number {
        "*1" => Some(AgentStatus::Available),
        "*2" => Some(AgentStatus::OnBreak {
            reason: "break".into(),
        }),
        "*0" => Some(AgentStatus::LoggedOut),
        _ => None,
    }
}
