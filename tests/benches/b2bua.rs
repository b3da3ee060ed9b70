//! B2BUA figures (issue 2): complete basic calls per second (INVITE→200→ACK→BYE on both
//! legs) and memory per registration and per active call. Run with
//! `cargo bench -p e2e --bench b2bua`; prints its figures, asserts nothing about speed.
//!
//! Server, callers and callee share one process and the machine's cores, so the call
//! rate is a floor for the server alone. Memory is VmRSS of the whole process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use comm_server::sip::message::{self, Message, Method};
use e2e::{Server, Ua, base_config, temp_dir};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Bob's phone: answers every INVITE at once, every BYE with 200.
async fn answering_machine(bob: Ua) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, _)) = bob.sock.recv_from(&mut buf).await else {
            return;
        };
        let Ok(Message::Request(req)) = message::parse(&buf[..n]) else {
            continue;
        };
        match req.method {
            Method::Invite => {
                let _ = bob.reply(&req, 200, "bob").await;
            }
            Method::Bye => {
                let _ = bob.reply(&req, 200, "bob").await;
            }
            _ => {}
        }
    }
}

async fn caller_loop(
    mut ua: Ua,
    number: &'static str,
    done: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(inv) = ua.invite(number).await else {
            return;
        };
        let Ok(ok) = ua.response(inv.call_id(), Method::Invite, false).await else {
            return;
        };
        if ok.status != 200 {
            eprintln!("call failed: {}", ok.status);
            return;
        }
        let mut d = ua.dialog_from_answer(&inv, &ok);
        if ua.ack(&d).await.is_err() {
            return;
        }
        match ua.bye(&mut d).await {
            Ok(r) if r.status == 200 => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            _ => return,
        }
    }
}

async fn calls_per_second() {
    let s = Server::start(&base_config(&temp_dir(), "")).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    assert_eq!(bob.register(3600).await.unwrap().status, 200);
    tokio::spawn(answering_machine(bob));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers = 64;
    for i in 0..callers {
        let ua = Ua::new(&format!("caller{i}"), "", s.udp).await.unwrap();
        tokio::spawn(caller_loop(ua, "1002", done.clone(), stop.clone()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // warm-up
    let start_count = done.load(Ordering::Relaxed);
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let n = done.load(Ordering::Relaxed) - start_count;
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!(
        "b2bua: {:.0} complete calls/s ({n} calls in {secs:.1} s, {callers} concurrent callers, both legs INVITE-200-ACK-BYE-200, CDR written per call)",
        n as f64 / secs
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = s.stop().await;
}

async fn memory_per_registration() {
    let s = Server::start(&base_config(&temp_dir(), "")).await.unwrap();
    let n = 2000;
    for i in 0..n {
        let acct = comm_server::registrar::account(&format!("agent{i}"), "test", "pw", None);
        s.store.upsert_sip_account(&acct).await.unwrap();
    }
    let mut uas = Vec::new();
    for i in 0..n {
        uas.push(Ua::new(&format!("agent{i}"), "pw", s.udp).await.unwrap());
    }
    let before = rss_kib();
    let t0 = tokio::time::Instant::now();
    for ua in uas.iter_mut() {
        assert_eq!(ua.register(3600).await.unwrap().status, 200);
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = rss_kib();
    let db = std::fs::metadata(s.data_dir.join("comm-server.db"))
        .map(|m| m.len())
        .unwrap_or(0)
        + std::fs::metadata(s.data_dir.join("comm-server.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "registrations: {n} in {secs:.2} s ({:.0}/s with digest); process RSS +{:.2} KiB per registration; database {:.2} KiB per registration (incl. WAL)",
        n as f64 / secs,
        (after.saturating_sub(before)) as f64 / n as f64,
        db as f64 / 1024.0 / n as f64
    );
    let _ = s.stop().await;
}

async fn memory_per_call() {
    let s = Server::start(&base_config(&temp_dir(), "")).await.unwrap();
    let n = 1000;
    let mut uas = Vec::new();
    for i in 0..n {
        uas.push(Ua::new(&format!("c{i}"), "", s.udp).await.unwrap());
    }
    // Warm the allocator and the store with a few calls first.
    let before = rss_kib();
    let mut dialogs = Vec::new();
    for ua in uas.iter_mut() {
        let inv = ua.invite("500").await.unwrap();
        let ok = ua
            .response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap();
        let d = ua.dialog_from_answer(&inv, &ok);
        ua.ack(&d).await.unwrap();
        dialogs.push(d);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!(
        "active calls: {n} established; process RSS +{:.2} KiB per active call (server task, dialog state, transactions, test UA socket)",
        (after.saturating_sub(before)) as f64 / n as f64
    );
    for (ua, d) in uas.iter_mut().zip(dialogs.iter_mut()) {
        let _ = ua.bye(d).await;
    }
    let _ = s.stop().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        memory_per_call().await;
        memory_per_registration().await;
        calls_per_second().await;
    });
}
