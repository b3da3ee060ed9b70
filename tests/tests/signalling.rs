//! Black-box signalling tests: the real server on loopback, real SIP over UDP.

use std::time::Duration;

use comm_server::sip::message::{Message, Method};
use comm_server::store::{EndReason, HungUpBy};
use e2e::{Server, Ua, base_config, temp_dir};

async fn server() -> Server {
    Server::start(&base_config(&temp_dir(), ""))
        .await
        .expect("server starts")
}

/// Polls for the CDR of a call (written when the call task ends).
async fn cdr(s: &Server, call_id: &str) -> comm_server::store::Cdr {
    for _ in 0..100 {
        if let Some(c) = s.store.cdr(call_id).await.unwrap() {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no CDR for {call_id}");
}

#[tokio::test]
async fn register_ok_and_failures_look_identical() {
    let s = server().await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let ok = alice.register(600).await.unwrap();
    assert_eq!(ok.status, 200);
    let contact = ok.headers.get("Contact").unwrap();
    assert!(
        contact.contains(&alice.addr.to_string()) && contact.contains("expires=600"),
        "{contact}"
    );

    let mut wrong = Ua::new("alice", "not-her-password", s.udp).await.unwrap();
    let mut nobody = Ua::new("mallory", "whatever", s.udp).await.unwrap();
    let a = wrong.register(600).await.unwrap();
    let b = nobody.register(600).await.unwrap();
    assert_eq!((a.status, b.status), (401, 401));
    let shape = |r: &comm_server::sip::Response| {
        let names: Vec<String> = r.headers.iter().map(|(n, _)| n.to_string()).collect();
        let challenges: Vec<String> = r
            .headers
            .all("WWW-Authenticate")
            .map(|v| {
                v.split("nonce=").next().unwrap().to_string() + &v[v.find(", algorithm").unwrap()..]
            })
            .collect();
        (names, challenges, r.reason.clone())
    };
    assert_eq!(
        shape(&a),
        shape(&b),
        "unknown user and wrong password must be indistinguishable"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn sha256_only_sites_authenticate_with_sha256() {
    let dir = temp_dir();
    let cfg = base_config(&dir, "").replace(
        "realm = \"test\"",
        "realm = \"test\"\ndigest-algorithms = [\"SHA-256\"]",
    );
    let s = Server::start(&cfg).await.unwrap();
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let ok = alice.register(600).await.unwrap();
    assert_eq!(ok.status, 200);
    let mut wrong = Ua::new("alice", "nope", s.udp).await.unwrap();
    assert_eq!(wrong.register(600).await.unwrap().status, 401);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn user_cannot_register_someone_elses_aor() {
    let s = server().await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let r = alice.register_as("bob", 600).await.unwrap();
    assert_eq!(
        r.status, 403,
        "alice authenticates fine but may not bind bob's AOR"
    );
    let mut caller = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let inv = caller.invite("1002").await.unwrap();
    let r = caller
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(r.status, 480, "no binding was stored for bob");
    s.stop().await.unwrap();
}

/// Alice calls bob through the B2BUA; returns both dialogs once confirmed.
async fn connect(
    s: &Server,
    alice: &mut Ua,
    bob: &mut Ua,
    number: &str,
) -> (e2e::Dialog, e2e::Dialog, String) {
    assert_eq!(alice.register(600).await.unwrap().status, 200);
    assert_eq!(bob.register(600).await.unwrap().status, 200);
    let invite = if number == "bob" {
        alice.invite_auth(number).await.unwrap()
    } else {
        alice.invite(number).await.unwrap()
    };
    let incoming = bob.request(Method::Invite).await.unwrap();
    assert_ne!(
        incoming.call_id(),
        invite.call_id(),
        "B2BUA uses its own Call-ID"
    );
    assert!(!incoming.body.is_empty(), "offer relayed");
    bob.reply(&incoming, 180, "bobtag").await.unwrap();
    let ringing = alice
        .response(invite.call_id(), Method::Invite, true)
        .await
        .unwrap();
    assert_eq!(ringing.status, 180);
    let ok = bob.reply(&incoming, 200, "bobtag").await.unwrap();
    let answered = alice
        .response(invite.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(answered.status, 200);
    assert!(String::from_utf8_lossy(&answered.body).contains("m=audio"));
    let a = alice.dialog_from_answer(&invite, &answered);
    alice.ack(&a).await.unwrap();
    let ack = bob.request(Method::Ack).await.unwrap();
    assert_eq!(ack.call_id(), incoming.call_id());
    let b = bob.dialog_as_callee(&incoming, &ok);
    let _ = s;
    (a, b, invite.call_id().to_string())
}

#[tokio::test]
async fn call_between_registered_users_caller_hangs_up() {
    let s = server().await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    let (mut a, _b, call_id) = connect(&s, &mut alice, &mut bob, "bob").await;
    assert_eq!(alice.bye(&mut a).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();
    let c = cdr(&s, &call_id).await;
    assert_eq!(c.end_reason, EndReason::Answered);
    assert_eq!(c.hung_up_by, HungUpBy::Caller);
    assert!(c.answered_at_ms.is_some());
    assert_eq!(c.callee, "bob");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn call_through_a_route_callee_hangs_up() {
    let s = server().await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    let (_a, mut b, call_id) = connect(&s, &mut alice, &mut bob, "1002").await;
    assert_eq!(bob.bye(&mut b).await.unwrap().status, 200);
    let bye = alice.request(Method::Bye).await.unwrap();
    alice.reply(&bye, 200, "x").await.unwrap();
    let c = cdr(&s, &call_id).await;
    assert_eq!(c.hung_up_by, HungUpBy::Callee);
    assert_eq!(c.route, "user:bob");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn cancel_before_answer_reaches_the_callee() {
    let s = server().await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    alice.register(600).await.unwrap();
    bob.register(600).await.unwrap();
    let invite = alice.invite_auth("bob").await.unwrap();
    let incoming = bob.request(Method::Invite).await.unwrap();
    bob.reply(&incoming, 180, "bt").await.unwrap();
    assert_eq!(
        alice
            .response(invite.call_id(), Method::Invite, true)
            .await
            .unwrap()
            .status,
        180
    );
    assert_eq!(alice.cancel(&invite).await.unwrap().status, 200);
    assert_eq!(
        alice
            .response(invite.call_id(), Method::Invite, false)
            .await
            .unwrap()
            .status,
        487
    );
    let cancel = bob.request(Method::Cancel).await.unwrap();
    bob.reply(&cancel, 200, "bt").await.unwrap();
    bob.reply(&incoming, 487, "bt").await.unwrap();
    let c = cdr(&s, invite.call_id()).await;
    assert_eq!(c.end_reason, EndReason::Cancelled);
    assert_eq!(c.hung_up_by, HungUpBy::Caller);
    assert_eq!(c.answered_at_ms, None);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_number_is_404_and_unregistered_user_is_480() {
    let s = server().await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let inv = alice.invite("no-such-number").await.unwrap();
    assert_eq!(
        alice
            .response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap()
            .status,
        404
    );
    let inv = alice.invite("1002").await.unwrap(); // bob never registered
    assert_eq!(
        alice
            .response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap()
            .status,
        480
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn anonymous_callers_are_challenged_before_reaching_users() {
    let s = server().await;
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    bob.register(600).await.unwrap();
    let mut stranger = Ua::new("mallory", "guess", s.udp).await.unwrap();
    let err = stranger.invite_auth("bob").await.unwrap();
    let r = stranger
        .response(err.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(
        r.status, 407,
        "a wrong password is challenged again, never connected"
    );
    bob.expect_silence(Duration::from_millis(300))
        .await
        .unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn unsupported_and_unknown_methods() {
    let s = server().await;
    let ua = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let mut ua = ua;
    for (method, status) in [("MESSAGE", 405), ("FROBNICATE", 501)] {
        let raw = format!(
            "{method} sip:500@{0} SIP/2.0\r\nVia: SIP/2.0/UDP {1};branch=z9hG4bK{method}\r\nFrom: <sip:a@{1}>;tag=1\r\nTo: <sip:500@{0}>\r\nCall-ID: m-{method}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            s.udp, ua.addr
        );
        ua.send_bytes(raw.as_bytes()).await.unwrap();
        let cid = format!("m-{method}");
        let msg = ua
            .recv_matching(
                "answer",
                move |m| matches!(m, Message::Response(r) if r.call_id() == cid),
            )
            .await
            .unwrap();
        let Message::Response(r) = msg else {
            unreachable!()
        };
        assert_eq!(r.status, status, "{method}");
        assert!(r.headers.get("Allow").unwrap().contains("INVITE"));
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_input_gets_400_or_is_dropped_and_the_server_keeps_serving() {
    let s = server().await;
    let mut ua = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let garbage: [&[u8]; 4] = [
        b"\x00\x01\x02 not sip at all",
        b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKq\r\n\r\n",
        &[0xff; 1500],
        b"SIP/2.0 200 OK\r\n\r\n",
    ];
    for g in garbage {
        ua.send_bytes(g).await.unwrap();
    }
    let raw = format!(
        "OPTIONS sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP {1};branch=z9hG4bKcl\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: cl\r\nCSeq: 1 OPTIONS\r\nContent-Length: 9999\r\n\r\nshort",
        s.udp, ua.addr
    );
    ua.send_bytes(raw.as_bytes()).await.unwrap();
    let r = ua.response("cl", Method::Options, false).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(ua.options().await.unwrap(), 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_call_survives_the_start_of_shutdown_while_new_calls_get_503() {
    let mut s = server().await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let inv = alice.invite("500").await.unwrap();
    let ok = alice
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let mut d = alice.dialog_from_answer(&inv, &ok);
    alice.ack(&d).await.unwrap();

    s.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut other = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    let inv2 = other.invite("500").await.unwrap();
    let busy = other
        .response(inv2.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(busy.status, 503);
    assert!(busy.headers.get("Retry-After").is_some());
    assert_eq!(other.options().await.unwrap(), 503);

    // The call in progress still works: its BYE is answered and its CDR written.
    assert_eq!(alice.bye(&mut d).await.unwrap().status, 200);
    let dir = s.data_dir.clone();
    s.stopped().await.unwrap();
    let store = Server::reopen_store(&dir).await.unwrap();
    let c = store
        .cdr(inv.call_id())
        .await
        .unwrap()
        .expect("CDR flushed before exit");
    assert_eq!(c.end_reason, EndReason::Answered);
    assert_eq!(c.hung_up_by, HungUpBy::Caller);
}

#[tokio::test]
async fn grace_period_ends_remaining_calls() {
    let mut s = server().await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let inv = alice.invite("500").await.unwrap();
    let ok = alice
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    let d = alice.dialog_from_answer(&inv, &ok);
    alice.ack(&d).await.unwrap();
    s.begin_shutdown();
    let bye = alice.request(Method::Bye).await.unwrap(); // after the 3 s grace
    alice.reply(&bye, 200, "t").await.unwrap();
    let dir = s.data_dir.clone();
    s.stopped().await.unwrap();
    let store = Server::reopen_store(&dir).await.unwrap();
    let c = store.cdr(inv.call_id()).await.unwrap().unwrap();
    assert_eq!(c.end_reason, EndReason::Shutdown);
    assert_eq!(c.hung_up_by, HungUpBy::System);
}

#[tokio::test]
async fn restart_keeps_registrations() {
    let dir = temp_dir();
    let s = Server::start(&base_config(&dir, "")).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    assert_eq!(bob.register(600).await.unwrap().status, 200);
    s.stop().await.unwrap();

    let s = Server::start(&base_config(&dir, "")).await.unwrap();
    bob.server = s.udp;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let inv = alice.invite_auth("bob").await.unwrap();
    let incoming = bob.request(Method::Invite).await.unwrap();
    bob.reply(&incoming, 486, "bt").await.unwrap();
    assert_eq!(
        alice
            .response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap()
            .status,
        486
    );
    let c = cdr(&s, inv.call_id()).await;
    assert_eq!(c.end_reason, EndReason::Busy);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn outbound_calls_go_through_the_trunk_only_for_authenticated_users() {
    let dir = temp_dir();
    let carrier = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let carrier_addr = carrier.local_addr().unwrap();
    drop(carrier);
    let trunk = format!(
        "[[trunk]]\nname = \"carrier\"\naddress = \"{carrier_addr}\"\ninbound-sources = [\"127.0.0.2\"]\nprefixes = [\"0\"]\n"
    );
    let s = Server::start(&base_config(&dir, &trunk)).await.unwrap();
    let mut carrier = Ua::new("carrier", "", s.udp).await.unwrap();
    // Rebind the carrier UA on the trunk's address.
    carrier.sock = tokio::net::UdpSocket::bind(carrier_addr).await.unwrap();
    carrier.addr = carrier_addr;

    let mut anon = Ua::new("mallory", "x", s.udp).await.unwrap();
    let inv = anon.invite_auth("0123456789").await.unwrap();
    assert_eq!(
        anon.response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap()
            .status,
        407,
        "wrong credentials are challenged again"
    );
    carrier
        .expect_silence(Duration::from_millis(300))
        .await
        .unwrap();

    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let inv = alice.invite_auth("0123456789").await.unwrap();
    let out = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(
        comm_server::sip::header::uri_user(&out.uri).as_deref(),
        Some("0123456789")
    );
    carrier.reply(&out, 603, "ct").await.unwrap();
    assert_eq!(
        alice
            .response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap()
            .status,
        603
    );
    let c = cdr(&s, inv.call_id()).await;
    assert_eq!(c.direction, comm_server::store::Direction::Outbound);
    assert_eq!(c.route, "trunk:carrier");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn ring_timeout_cancels_the_callee_and_tells_the_caller() {
    let s = server().await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    bob.register(600).await.unwrap();
    let inv = alice.invite("1002").await.unwrap();
    let incoming = bob.request(Method::Invite).await.unwrap();
    bob.reply(&incoming, 180, "bt").await.unwrap();
    let r = alice
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap(); // after 3 s
    assert_eq!(r.status, 480);
    let cancel = bob.request(Method::Cancel).await.unwrap();
    bob.reply(&cancel, 200, "bt").await.unwrap();
    bob.reply(&incoming, 487, "bt").await.unwrap();
    let c = cdr(&s, inv.call_id()).await;
    assert_eq!(c.end_reason, EndReason::NoAnswer);
    s.stop().await.unwrap();
}

mod trunk {
    use super::*;
    use comm_server::sip::digest::{self, Algorithm, Credentials};
    use comm_server::sip::message::Request;

    const REALM: &str = "carrier.example";

    /// Challenges `req` as the carrier would.
    async fn challenge(carrier: &Ua, req: &Request, status: u16, realm: &str) {
        let mut r = comm_server::sip::message::response_to(&req.headers, status, Some("ct"));
        let name = if status == 401 {
            "WWW-Authenticate"
        } else {
            "Proxy-Authenticate"
        };
        r.headers.push(
            name,
            digest::challenge(Algorithm::Md5, realm, "carrier-nonce", false),
        );
        carrier.send_response(&r).await.unwrap();
    }

    fn verify(req: &Request, header: &str) {
        let creds = Credentials::parse(req.headers.get(header).expect("credentials sent")).unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.realm.as_str()),
            ("acct", REALM)
        );
        let ha1 = digest::ha1(Algorithm::Md5, "acct", REALM, "trunk-secret");
        assert!(
            creds.verify(req.method.as_str(), &ha1),
            "digest verifies at the carrier"
        );
    }

    #[tokio::test]
    async fn registers_to_the_trunk_and_answers_its_challenges_only_for_its_realm() {
        let dir = temp_dir();
        let carrier_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let carrier_addr = carrier_sock.local_addr().unwrap();
        let trunk = format!(
            "[[trunk]]\nname = \"carrier\"\naddress = \"{carrier_addr}\"\ninbound-sources = [\"127.0.0.2\"]\nprefixes = [\"0\"]\nusername = \"acct\"\npassword = \"trunk-secret\"\nrealm = \"{REALM}\"\nregister = true\n"
        );
        let s = Server::start(&base_config(&dir, &trunk)).await.unwrap();
        let mut carrier = Ua::new("carrier", "", s.udp).await.unwrap();
        carrier.sock = carrier_sock;
        carrier.addr = carrier_addr;

        // Registration: challenged once, then accepted.
        let reg = carrier.request(Method::Register).await.unwrap();
        assert!(reg.headers.get("Authorization").is_none());
        challenge(&carrier, &reg, 401, REALM).await;
        let reg = carrier.request(Method::Register).await.unwrap();
        verify(&reg, "Authorization");
        let mut ok = comm_server::sip::message::response_to(&reg.headers, 200, Some("ct"));
        ok.headers.push(
            "Contact",
            format!("{};expires=3600", reg.headers.get("Contact").unwrap()),
        );
        carrier.send_response(&ok).await.unwrap();

        // An outbound call: the carrier's proxy challenge is answered for its realm.
        let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
        let inv = alice.invite_auth("0555").await.unwrap();
        let out = carrier.request(Method::Invite).await.unwrap();
        assert!(out.headers.get("Proxy-Authorization").is_none());
        challenge(&carrier, &out, 407, REALM).await;
        let out2 = carrier.request(Method::Invite).await.unwrap();
        assert_eq!(out2.call_id(), out.call_id());
        assert!(out2.cseq().seq > out.cseq().seq);
        verify(&out2, "Proxy-Authorization");
        carrier.reply(&out2, 200, "ct").await.unwrap();
        let answered = alice
            .response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap();
        assert_eq!(answered.status, 200);
        let mut d = alice.dialog_from_answer(&inv, &answered);
        alice.ack(&d).await.unwrap();
        assert_eq!(alice.bye(&mut d).await.unwrap().status, 200);
        let bye = carrier.request(Method::Bye).await.unwrap();
        carrier.reply(&bye, 200, "ct").await.unwrap();

        // A challenge from another realm gets no credentials, and the caller never
        // sees a challenge it could answer for the trunk.
        let inv = alice.invite_auth("0666").await.unwrap();
        let out = carrier.request(Method::Invite).await.unwrap();
        challenge(&carrier, &out, 407, "phisher.example").await;
        let r = alice
            .response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap();
        assert_eq!(r.status, 403);
        let again = carrier
            .recv_matching(
                "a second INVITE",
                |m| matches!(m, Message::Request(r) if r.method == Method::Invite),
            )
            .await;
        assert!(
            again.is_err(),
            "no INVITE with credentials for a foreign realm"
        );
        s.stop().await.unwrap();
    }
}

/// Runs only when `COMM_TEST_POSTGRES_URL` names a database (`.ci/run` starts one).
#[tokio::test]
async fn postgres_storage_keeps_registrations_and_cdrs() {
    let Ok(url) = std::env::var("COMM_TEST_POSTGRES_URL") else {
        eprintln!("note: COMM_TEST_POSTGRES_URL not set; PostgreSQL end-to-end test skipped");
        return;
    };
    let dir = temp_dir();
    let cfg = base_config(&dir, &format!("\n[storage]\nurl = \"{url}\"\n"));
    let s = Server::start(&cfg).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    assert_eq!(bob.register(600).await.unwrap().status, 200);
    s.stop().await.unwrap();

    let s = Server::start(&cfg).await.unwrap();
    bob.server = s.udp;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let inv = alice.invite("1002").await.unwrap();
    let incoming = bob.request(Method::Invite).await.unwrap();
    bob.reply(&incoming, 486, "bt").await.unwrap();
    assert_eq!(
        alice
            .response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap()
            .status,
        486
    );
    let c = cdr(&s, inv.call_id()).await;
    assert_eq!(c.end_reason, EndReason::Busy);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_direct_line_to_an_agent_rings_the_agents_phone() {
    let s = Server::start(&base_config(
        &temp_dir(),
        "[[route]]\nnumber = \"1102\"\ntarget = { agent = \"bob\" }\n",
    ))
    .await
    .unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    bob.register(600).await.unwrap();
    let mut caller = Ua::new("customer", "", s.udp).await.unwrap();
    let inv = caller.invite("1102").await.unwrap();
    let incoming = bob.request(Method::Invite).await.unwrap();
    bob.reply(&incoming, 486, "bt").await.unwrap();
    assert_eq!(
        caller
            .response(inv.call_id(), Method::Invite, false)
            .await
            .unwrap()
            .status,
        486
    );
    s.stop().await.unwrap();
}
