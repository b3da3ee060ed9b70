//! Per-client limits on the gateway, over a real socket: a user past their request
//! rate, a desktop opening one stream too many, and an address trying too many
//! logins all get RESOURCE_EXHAUSTED with the time to wait, while everybody else is
//! served as usual.

use agent_gateway::proto::agent::{self as pb, LoginRequest, SetStatusRequest};
use e2e::desk::{agent_client, authed, login, stream};
use e2e::{Server, base_config, temp_dir};
use tonic::Code;

async fn server() -> Server {
    let hash = |pw: &str| agent_gateway::password::hash(pw).unwrap();
    let extra = format!(
        r#"
[grpc]
requests-per-second = 1
request-burst = 3
logins-per-minute = 4
streams-per-user = 1

[[queue]]
name = "support"

[[agent]]
name = "bob"
queues = ["support"]
password-hash = "{}"

[[agent]]
name = "alice"
queues = ["support"]
password-hash = "{}"
"#,
        hash("bob-pw"),
        hash("alice-pw"),
    );
    Server::start(&base_config(&temp_dir(), &extra))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_past_its_limits_is_told_to_slow_down_and_others_are_not() {
    let s = server().await;
    let mut c = agent_client(&s).await;
    let bob = login(&mut c, "bob", "bob-pw").await;
    let alice = login(&mut c, "alice", "alice-pw").await;

    // Requests: a burst of 3 passes, the 4th is refused with the wait; alice, on
    // the same connection, is not held back by bob.
    let available = || SetStatusRequest {
        status: pb::AgentStatus::Available.into(),
        break_reason: String::new(),
    };
    for _ in 0..3 {
        c.set_status(authed(&bob, available())).await.unwrap();
    }
    let e = c.set_status(authed(&bob, available())).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message()
            .contains("too many requests from bob: slow down, retry in"),
        "{e:?}"
    );
    c.set_status(authed(&alice, available())).await.unwrap();

    // Streams: alice's first event stream opens, a second is refused; once the first
    // is closed, a new one opens again.
    let first = stream(&mut c, &alice, None).await;
    let e = c
        .stream_events(authed(
            &alice,
            pb::StreamEventsRequest { resume_after: None },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("streams open"), "{e:?}");
    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        // The server notices the closed stream when its next write fails or the
        // client's reset arrives; give it a moment, within alice's request rate.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        match c
            .stream_events(authed(
                &alice,
                pb::StreamEventsRequest { resume_after: None },
            ))
            .await
        {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}"),
        }
    }
    assert!(
        reopened.is_some(),
        "the closed stream's slot never came back"
    );

    // Logins: 4 a minute from this address (two used above); wrong or right, the
    // 5th attempt is refused before the password is even checked.
    for _ in 0..2 {
        let e = c
            .login(LoginRequest {
                agent_id: "bob".into(),
                password: "wrong".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    }
    let e = c
        .login(LoginRequest {
            agent_id: "bob".into(),
            password: "bob-pw".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message()
            .contains("too many login attempts from 127.0.0.1"),
        "{e:?}"
    );
    s.stop().await.unwrap();
}
