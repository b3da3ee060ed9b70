//! Media engine benchmarks: figures, not timed tests.
//!
//! Reproduce (on an otherwise idle core; `nice` keeps the shared machine usable):
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-media nice -n 10 cargo bench -p comm-server --bench media
//! ```
//!
//! 1. Prompt playback: CPU per 20 ms frame (session tick + G.711 encode + RTP build +
//!    a real `sendto` on loopback), the session count that fits in one core, then a
//!    real-time run on a 5 ms ticker with sessions spread over 4 phases, counting
//!    frames sent more than 5 ms after they were due (the target is < 0.1 %).
//! 2. Bridged calls: CPU per relayed packet (`recvfrom` + validation + relay +
//!    transcoding when the legs differ + `sendto`), and the calls per core that leaves.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use comm_server::media::driver::{EngineConfig, MediaEngine};
use comm_server::media::g711::Codec;
use comm_server::media::prompt::Prompt;
use comm_server::media::rtp::RtpPacket;
use comm_server::media::sdp::{Direction, Negotiated};
use comm_server::media::session::{MediaCommand, MediaSession, SessionConfig};

/// Benchmarks measure real elapsed time; this is their one clock read.
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

const FRAME: Duration = Duration::from_millis(20);

fn negotiated(codec: Codec, remote: SocketAddr) -> Negotiated {
    Negotiated {
        remote: Some(remote),
        codec,
        payload_type: codec.payload_type(),
        telephone_event: Some(101),
        remote_ptime: None,
        direction: Direction::SendRecv,
    }
}

fn music() -> Prompt {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds/music/hold.wav");
    Prompt::load(&path, "music/hold").expect("sounds/music/hold.wav loads")
}

fn sockets() -> (UdpSocket, UdpSocket) {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.set_nonblocking(true).unwrap();
    (sender, sink)
}

fn playback_sessions(
    n: usize,
    epoch: Instant,
    phases: u32,
    sink: SocketAddr,
    codec: Codec,
) -> Vec<MediaSession> {
    let prompt = music();
    (0..n)
        .map(|i| {
            let mut config =
                SessionConfig::new(&negotiated(codec, sink), i as u32, i as u16, i as u32 * 7);
            // Spread sessions over the phases of the shared ticker.
            config.pacing_epoch = Some(epoch + FRAME / phases * (i as u32 % phases));
            // Nobody sends to these sessions; keep dead-media detection out of the way.
            config.media_timeout = Duration::from_secs(3600);
            let now = config.pacing_epoch.unwrap();
            let mut s = MediaSession::new(now, config);
            s.handle_command(now, MediaCommand::LoopMusic(prompt.clone()));
            s
        })
        .collect()
}

/// CPU per playback frame, with and without the `sendto`.
fn playback_cost(n: usize, ticks: u32, send: bool) -> Duration {
    let (sender, sink) = sockets();
    let t0 = clock();
    let mut sessions = playback_sessions(n, t0, 1, sink.local_addr().unwrap(), Codec::Pcmu);
    let start = clock();
    let mut frames = 0u64;
    for k in 0..ticks {
        let now = t0 + FRAME * k;
        for s in &mut sessions {
            s.handle_tick(now);
            while let Some(t) = s.poll_transmit() {
                if send {
                    let _ = sender.send_to(&t.payload, t.destination);
                }
                frames += 1;
            }
        }
    }
    start.elapsed() / frames.max(1) as u32
}

/// Real time: a 5 ms ticker, sessions on `phases` phases of the 20 ms grid.
/// Returns (late fraction, frames sent, worst batch time).
fn playback_realtime(n: usize, seconds: u32, phases: u32) -> (f64, u64, Duration) {
    let (sender, sink) = sockets();
    let epoch = clock() + Duration::from_millis(50);
    let mut sessions = playback_sessions(n, epoch, phases, sink.local_addr().unwrap(), Codec::Pcmu);
    let period = FRAME / phases;
    let mut worst = Duration::ZERO;
    for tick in 0..(seconds * 1000 / period.as_millis() as u32) {
        let due = epoch + period * tick;
        let now = clock();
        if due > now {
            std::thread::sleep(due - now);
        }
        let batch_start = clock();
        let phase = (tick % phases) as usize;
        for s in sessions.iter_mut().skip(phase).step_by(phases as usize) {
            s.handle_tick(clock());
            while let Some(t) = s.poll_transmit() {
                let _ = sender.send_to(&t.payload, t.destination);
            }
        }
        worst = worst.max(batch_start.elapsed());
    }
    let (late, sent) = sessions.iter().fold((0, 0), |(l, s), x| {
        (l + x.quality().late_frames, s + x.quality().packets_sent)
    });
    // `late_frames` also counts frames skipped after a stall, so divide by frames due
    // over the time the run really took (an overloaded run overruns `seconds`).
    let due = n as u64 * (clock() - epoch).as_millis() as u64 / 20;
    (late as f64 / due.max(sent).max(1) as f64, sent, worst)
}

/// The real driver on one core (a current-thread runtime): `n` legs looping music
/// to a loopback sink for `seconds`. Returns (late fraction, frames sent).
fn driver_playback(n: u64, seconds: u64) -> (f64, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (engine, _events, _task) =
            MediaEngine::spawn(EngineConfig::new([127, 0, 0, 1].into(), None));
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let music = music();
        for leg in 0..n {
            engine.open(leg).await.unwrap();
            let mut config = SessionConfig::new(
                &negotiated(Codec::Pcmu, sink.local_addr().unwrap()),
                leg as u32,
                0,
                0,
            );
            config.media_timeout = Duration::from_secs(3600);
            engine.start(leg, config).unwrap();
            engine
                .command(leg, MediaCommand::LoopMusic(music.clone()))
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (mut late, mut sent) = (0, 0);
        for leg in 0..n {
            let q = engine.close(leg).await.unwrap();
            late += q.late_frames;
            sent += q.packets_sent;
        }
        (late as f64 / sent.max(1) as f64, sent)
    })
}

/// A bridged call: two sessions, and the phones' packets for both directions.
struct Call {
    caller: MediaSession,
    agent: MediaSession,
}

/// CPU per relayed packet through real sockets, `calls` bridged calls.
fn relay_cost(calls: usize, caller_codec: Codec, agent_codec: Codec, rounds: u32) -> Duration {
    let phones = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (out, sink) = sockets();
    server.set_nonblocking(true).unwrap();
    let phones_addr = phones.local_addr().unwrap();
    let t0 = clock();
    let mut table: Vec<Call> = (0..calls)
        .map(|_| {
            let mut caller = MediaSession::new(
                t0,
                SessionConfig::new(&negotiated(caller_codec, phones_addr), 1, 1, 1),
            );
            let mut agent = MediaSession::new(
                t0,
                SessionConfig::new(
                    &negotiated(agent_codec, sink.local_addr().unwrap()),
                    2,
                    2,
                    2,
                ),
            );
            caller.handle_command(t0, MediaCommand::Bridge);
            agent.handle_command(t0, MediaCommand::Bridge);
            Call { caller, agent }
        })
        .collect();
    let mut payloads = [Vec::new(), Vec::new()];
    caller_codec.encode(&[1000; 160], &mut payloads[0]);
    agent_codec.encode(&[-1000; 160], &mut payloads[1]);
    let mut datagram = Vec::with_capacity(200);
    let mut buf = [0u8; 1500];
    let mut busy = Duration::ZERO;
    let mut relayed = 0u64;
    // Batches small enough for the default socket receive buffer.
    let batch = 100usize;
    for round in 0..rounds {
        let now = t0 + FRAME * round;
        for chunk_start in (0..calls * 2).step_by(batch) {
            let chunk = chunk_start..(chunk_start + batch).min(calls * 2);
            for leg in chunk.clone() {
                // SSRC = leg index: the "phone" of each leg.
                datagram.clear();
                RtpPacket {
                    marker: false,
                    payload_type: [caller_codec, agent_codec][leg % 2].payload_type(),
                    sequence: round as u16,
                    timestamp: round * 160,
                    ssrc: leg as u32,
                    payload: &payloads[leg % 2],
                }
                .write(&mut datagram);
                phones
                    .send_to(&datagram, server.local_addr().unwrap())
                    .unwrap();
            }
            let start = clock();
            for _ in chunk {
                let Ok((len, from)) = server.recv_from(&mut buf) else {
                    break;
                };
                let Ok(p) = RtpPacket::parse(&buf[..len]) else {
                    continue;
                };
                let leg = p.ssrc as usize;
                let call = &mut table[leg / 2];
                let (rx, tx) = if leg.is_multiple_of(2) {
                    (&mut call.caller, &mut call.agent)
                } else {
                    (&mut call.agent, &mut call.caller)
                };
                rx.handle_rtp(now, from, &buf[..len]);
                while let Some(f) = rx.poll_frame() {
                    tx.handle_peer_frame(now, f);
                }
                while let Some(t) = tx.poll_transmit() {
                    let _ = out.send_to(&t.payload, t.destination);
                    relayed += 1;
                }
                while rx.poll_action().is_some() {}
            }
            busy += start.elapsed();
        }
    }
    busy / relayed.max(1) as u32
}

/// CPU per relayed packet in the session cores alone (no syscalls).
fn relay_core_cost(
    caller_codec: Codec,
    agent_codec: Codec,
    packets: u32,
    inband: bool,
) -> Duration {
    let t0 = clock();
    let phone: SocketAddr = "192.0.2.1:5004".parse().unwrap();
    let agent_phone: SocketAddr = "192.0.2.2:5004".parse().unwrap();
    let mut config = SessionConfig::new(&negotiated(caller_codec, phone), 1, 1, 1);
    config.inband_dtmf = inband;
    let mut caller = MediaSession::new(t0, config);
    let mut agent = MediaSession::new(
        t0,
        SessionConfig::new(&negotiated(agent_codec, agent_phone), 2, 2, 2),
    );
    caller.handle_command(t0, MediaCommand::Bridge);
    agent.handle_command(t0, MediaCommand::Bridge);
    let mut payload = Vec::new();
    caller_codec.encode(&[1000; 160], &mut payload);
    let mut datagram = Vec::with_capacity(200);
    let start = clock();
    let mut bytes = 0usize;
    for i in 0..packets {
        let now = t0 + FRAME * i;
        datagram.clear();
        RtpPacket {
            marker: false,
            payload_type: caller_codec.payload_type(),
            sequence: i as u16,
            timestamp: i * 160,
            ssrc: 9,
            payload: &payload,
        }
        .write(&mut datagram);
        caller.handle_rtp(now, phone, &datagram);
        while let Some(f) = caller.poll_frame() {
            agent.handle_peer_frame(now, f);
        }
        while let Some(t) = agent.poll_transmit() {
            bytes += t.payload.len();
        }
        while caller.poll_action().is_some() {}
    }
    assert!(bytes > 0);
    start.elapsed() / packets
}

fn main() {
    println!("media benchmarks (one thread = one core)\n");
    // `cargo bench --bench media -- <section>` runs one of: cost, realtime, driver, bridge.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |section: &str| only.as_deref().is_none_or(|o| o == section);

    // Always measured: the realtime section sizes its runs from it.
    let core_only = playback_cost(2000, 250, false);
    let with_send = playback_cost(2000, 250, true);
    let per_core = FRAME.as_nanos() / with_send.as_nanos().max(1);
    println!("playback: {core_only:?} per frame in the session core, {with_send:?} with sendto");
    println!(
        "playback: CPU bound of {per_core} concurrent playback calls per core (20 ms / cost per frame)\n"
    );

    if run("realtime") {
        for phases in [1u32, 4] {
            let mut best = 0;
            for n in [250usize, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000] {
                if n as u128 > per_core * 12 / 10 {
                    break;
                }
                let (late, sent, worst) = playback_realtime(n, 3, phases);
                println!(
                    "playback realtime: {n:>5} calls, {phases} phase(s): {sent} frames, {:.3}% late > 5 ms, worst batch {worst:?}",
                    late * 100.0
                );
                if late < 0.001 {
                    best = n;
                }
            }
            println!(
                "playback realtime: {best} calls with < 0.1% frames late ({phases} phase(s) of a {} ms ticker)\n",
                20 / phases
            );
        }
    }

    if run("driver") {
        let mut best = 0;
        for n in [250u64, 500, 1000, 1500, 2000, 2500, 3000, 4000] {
            let (late, sent) = driver_playback(n, 4);
            println!(
                "driver playback: {n:>5} legs on one core: {sent} frames, {:.3}% late > 5 ms",
                late * 100.0
            );
            if late < 0.001 {
                best = n;
            } else if late > 0.05 {
                break;
            }
        }
        println!(
            "driver playback: {best} concurrent playback calls per core with < 0.1% of frames late\n"
        );
    }

    if run("bridge") {
        for (a, b, label) in [
            (Codec::Pcmu, Codec::Pcmu, "same codec"),
            (Codec::Pcmu, Codec::Pcma, "PCMU<->PCMA transcoded"),
        ] {
            let per_packet = relay_cost(500, a, b, 50);
            // Each bridged call relays 2 x 50 packets per second.
            let calls_per_core = 1_000_000_000u128 / (per_packet.as_nanos().max(1) * 100);
            let plain = relay_core_cost(a, b, 200_000, false);
            let inband = relay_core_cost(a, b, 200_000, true);
            println!(
                "bridge ({label}): {plain:?} per relayed packet in the session cores ({inband:?} with in-band DTMF detection)"
            );
            println!(
                "bridge ({label}): {per_packet:?} per relayed packet incl. recvfrom+sendto -> {calls_per_core} bridged calls per core"
            );
        }
    }
}
