//! Script actions on real calls: a caller the caller ID identified presses a key and
//! the script e-mails them (through an in-test SMTP sink) or updates their customer
//! record (read back from the store after the call).

use std::path::Path;
use std::time::Duration;

use comm_server::media::dtmf::{self, TelephoneEvent};
use comm_server::media::rtp::RtpPacket;
use comm_server::sip::message::Method;
use comm_server::store::{CustomerKey, NewCustomer, Store};
use e2e::{Rtp, Server, Ua, base_config, sdp_audio_addr, temp_dir};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Key 1 e-mails the caller; key 2 records that they took the offer.
const ACTIONS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<script version="1" id="actions" title="Actions test" channels="voice">
  <menu id="main" timeout="10s" tries="2">
    <prompt audio="general/press-1-or-2.wav">Press 1 for an e-mail, 2 for the offer.</prompt>
    <option key="1" value="mail" label="Mail me">
      <email id="mail" to="{{ customer.email }}" subject="Your call, {{ customer.name }}">
        Dear {{ customer.name }},

        you asked for account {{ customer.account }} by e-mail.
      </email>
    </option>
    <option key="2" value="offer" label="Offer">
      <update-customer id="offer">
        <field name="retention_offer" value="'accepted'"/>
        <field name="email" value="'ada@analytical.example'"/>
      </update-customer>
    </option>
  </menu>
  <hangup outcome="done" audio="general/goodbye.wav">Goodbye.</hangup>
</script>
"#;

fn config(dir: &Path, smtp_port: u16) -> String {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("actions.xml"), ACTIONS).unwrap();
    let extra = format!(
        r#"
[customers]
default-country-code = "44"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
from = "Call center <noreply@example.com>"

[[route]]
number = "910"
target = {{ script = "actions.xml" }}
"#
    );
    base_config(dir, &extra).replace(
        &format!(
            "scripts-dir = \"{}/../scripts\"",
            env!("CARGO_MANIFEST_DIR")
        ),
        &format!("scripts-dir = \"{}\"", scripts.display()),
    )
}

async fn add_ada(store: &Store) -> i64 {
    let ada = NewCustomer {
        name: "Ada Lovelace".into(),
        account: Some("42".into()),
        email: Some("ada@example.com".into()),
        phones: vec!["+442079460958".into()],
        ..NewCustomer::default()
    };
    store.upsert_customer(&ada, 1_000).await.unwrap().id
}

/// One message as an SMTP relay received it.
#[derive(Debug, Default)]
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
}

/// A one-message SMTP relay: just enough of RFC 5321 for one client session.
async fn smtp_sink(listener: TcpListener) -> Received {
    let (sock, _) = listener.accept().await.unwrap();
    let (read, mut write) = sock.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut got = Received::default();
    write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 sink\r\n",
            "MAIL" => {
                got.mail_from = line;
                b"250 OK\r\n"
            }
            "RCPT" => {
                got.rcpt_to.push(line);
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await.unwrap();
                while let Some(l) = lines.next_line().await.unwrap() {
                    if l == "." {
                        break;
                    }
                    got.data.push_str(&l);
                    got.data.push('\n');
                }
                b"250 queued\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await.unwrap();
                return got;
            }
            _ => b"502 not here\r\n",
        };
        write.write_all(reply).await.unwrap();
    }
    got
}

/// Calls 910 as Ada's number and presses `key` once the menu plays; waits for the
/// server to hang up after its goodbye.
async fn call_and_press(s: &Server, key: char) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new("02079460958", "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite("910").await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    let to = sdp_audio_addr(&ok.body).unwrap();
    let mut seq = 1u16;
    let mut ts = 160u32;
    let mut send = async |pt: u8, marker: bool, at: u32, payload: &[u8]| {
        let mut out = Vec::new();
        RtpPacket {
            marker,
            payload_type: pt,
            sequence: seq,
            timestamp: at,
            ssrc: 0xac71,
            payload,
        }
        .write(&mut out);
        rtp.sock.send_to(&out, to).await.unwrap();
        seq = seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let silence = e2e::pcmu(&[0; 160]);
    for _ in 0..5 {
        send(0, false, ts, &silence).await; // latch (RFC 3550 probation)
        ts += 160;
    }
    let event = dtmf::digit_event(key).unwrap();
    for (ev, marker) in dtmf::event_packets(
        event,
        dtmf::DEFAULT_DIGIT_DURATION,
        dtmf::DEFAULT_VOLUME,
        160,
    ) {
        let ev: TelephoneEvent = ev;
        send(101, marker, ts, &ev.to_bytes()).await;
    }
    let bye = tokio::time::timeout(Duration::from_secs(20), ua.request(Method::Bye))
        .await
        .expect("the script ends the call")
        .unwrap();
    ua.reply(&bye, 200, "t").await.unwrap();
}

#[tokio::test]
async fn an_email_action_on_a_call_reaches_the_relay_with_recipient_subject_and_body() {
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = relay.local_addr().unwrap().port();
    let sink = tokio::spawn(smtp_sink(relay));
    let s = Server::start(&config(&temp_dir(), port)).await.unwrap();
    add_ada(&s.store).await;

    call_and_press(&s, '1').await;
    let got = tokio::time::timeout(Duration::from_secs(10), sink)
        .await
        .expect("the relay was used")
        .unwrap();
    assert!(got.mail_from.contains("<noreply@example.com>"), "{got:?}");
    assert_eq!(got.rcpt_to, vec!["RCPT TO:<ada@example.com>".to_string()]);
    assert!(
        got.data.contains("Subject: Your call, Ada Lovelace\n"),
        "{}",
        got.data
    );
    assert!(got.data.contains("To: ada@example.com"), "{}", got.data);
    let body = got
        .data
        .split("\n\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("\n\n");
    assert!(body.contains("Dear Ada Lovelace,"), "{body}");
    assert!(
        body.contains("you asked for account 42 by e-mail."),
        "{body}"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_update_customer_action_on_a_call_changes_the_stored_record() {
    // No relay is listening: the update needs none.
    let s = Server::start(&config(&temp_dir(), 9)).await.unwrap();
    let id = add_ada(&s.store).await;

    call_and_press(&s, '2').await;
    let ada = s
        .store
        .customer(&CustomerKey::Id(id))
        .await
        .unwrap()
        .expect("Ada is still there");
    assert_eq!(
        ada.attributes.get("retention_offer"),
        Some(&serde_json::json!("accepted"))
    );
    assert_eq!(ada.email.as_deref(), Some("ada@analytical.example"));
    assert_eq!(ada.name, "Ada Lovelace", "fields not named are kept");
    assert_eq!(ada.phones, vec!["+442079460958".to_string()]);
    s.stop().await.unwrap();
}
