//! A scripted phone call for the browser tests (`tests/browser/run.sh`): the SIP side
//! of a scenario whose desktop side a page drives. Prints one line per step reached
//! (`registered`, `queued`, `connected`, `ended`, `waiting`, `left`) so the test can
//! follow.
//!
//! ```text
//! desk_call answer SIP_ADDR AGENT PASSWORD CALLER NUMBER
//!     registers AGENT's phone, calls NUMBER from CALLER, answers on the phone when
//!     the queue offers it, then waits for the hang-up (the page's button) on both.
//! desk_call wait SIP_ADDR CALLER NUMBER
//!     calls NUMBER from CALLER and stays on the line until killed.
//! desk_call message SIP_ADDR CALLER NUMBER
//!     calls NUMBER (a mailbox) from CALLER, talks through the greeting and for a few
//!     seconds after the beep, then hangs up: the message is kept.
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use comm_server::sip::message::{Method, Request};
use e2e::{Rtp, Ua};

/// How long a step may wait on the page (a person in the test clicking through).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a caller leaving a message talks: the 6.3 s greeting, the beep, then
/// about 3 s of message.
const MESSAGE_TALK: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["answer", sip, agent, password, caller, number] => {
            answer(
                sip.parse().context("SIP_ADDR")?,
                agent,
                password,
                caller,
                number,
            )
            .await
        }
        ["wait", sip, caller, number] => {
            wait(sip.parse().context("SIP_ADDR")?, caller, number).await
        }
        ["message", sip, caller, number] => {
            message(sip.parse().context("SIP_ADDR")?, caller, number).await
        }
        _ => bail!(
            "usage: desk_call answer SIP_ADDR AGENT PASSWORD CALLER NUMBER | wait SIP_ADDR CALLER NUMBER \
             | message SIP_ADDR CALLER NUMBER"
        ),
    }
}

fn step(name: &str) {
    println!("{name}");
}

/// A caller dials `number`; returns once the server answered (the queue picks up).
async fn dial(
    sip: SocketAddr,
    caller: &str,
    number: &str,
) -> anyhow::Result<(Ua, Rtp, e2e::Dialog, Option<SocketAddr>)> {
    let rtp = Rtp::bind().await?;
    let mut ua = Ua::new(caller, "", sip).await?;
    ua.media_port = rtp.port();
    let invite = ua.invite(number).await?;
    let ok = ua.response(invite.call_id(), Method::Invite, false).await?;
    if ok.status != 200 {
        bail!(
            "the call to {number} got {} instead of being answered",
            ok.status
        );
    }
    let d = ua.dialog_from_answer(&invite, &ok);
    ua.ack(&d).await?;
    Ok((ua, rtp, d, e2e::sdp_audio_addr(&ok.body)))
}

/// The next `method` request, waiting up to [`STEP_TIMEOUT`] (the UA's own wait is short).
async fn next_request(ua: &mut Ua, method: Method) -> anyhow::Result<Request> {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        match ua.request(method.clone()).await {
            Ok(r) => return Ok(r),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
    }
}

async fn answer(
    sip: SocketAddr,
    agent: &str,
    password: &str,
    caller: &str,
    number: &str,
) -> anyhow::Result<()> {
    let phone_rtp = Rtp::bind().await?;
    let mut phone = Ua::new(agent, password, sip).await?;
    phone.media_port = phone_rtp.port();
    let reg = phone.register(600).await?;
    if reg.status != 200 {
        bail!("{agent}'s phone could not register: {}", reg.status);
    }
    step("registered");
    let (mut customer, _rtp, _d, _) = dial(sip, caller, number).await?;
    step("queued");
    let invite = next_request(&mut phone, Method::Invite).await?;
    phone.reply(&invite, 200, "desk-phone").await?;
    phone.request(Method::Ack).await?;
    step("connected");
    let bye = next_request(&mut phone, Method::Bye).await?;
    phone.reply(&bye, 200, "desk-phone").await?;
    let bye = next_request(&mut customer, Method::Bye).await?;
    customer.reply(&bye, 200, "").await?;
    step("ended");
    Ok(())
}

async fn wait(sip: SocketAddr, caller: &str, number: &str) -> anyhow::Result<()> {
    let (_ua, _rtp, _d, _) = dial(sip, caller, number).await?;
    step("waiting");
    tokio::time::sleep(STEP_TIMEOUT).await;
    Ok(())
}

/// Talks (a rising tone) for [`MESSAGE_TALK`]: the greeting and beep, then the message.
async fn message(sip: SocketAddr, caller: &str, number: &str) -> anyhow::Result<()> {
    let (mut ua, mut rtp, mut d, to) = dial(sip, caller, number).await?;
    let to = to.context("the mailbox's answer has no audio address")?;
    let frames = e2e::talk();
    let mut next = tokio::time::Instant::now();
    for k in 0..MESSAGE_TALK.as_millis() / 20 {
        rtp.send(to, 0, &frames[k as usize % frames.len()]).await?;
        next += Duration::from_millis(20);
        tokio::time::sleep_until(next).await;
    }
    ua.bye(&mut d).await?;
    step("left");
    Ok(())
}
