//! One suite of checks, run against every backend: a fresh in-memory SQLite, a fresh
//! SQLite file, and PostgreSQL when `COMM_TEST_POSTGRES_URL` is set (each PostgreSQL test
//! gets its own schema, so tests can run in parallel on one database).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;

const NOW_MS: i64 = 1_800_000_000_000;

fn account(username: &str) -> SipAccount {
    SipAccount {
        username: username.into(),
        realm: "cc.example".into(),
        ha1_md5: format!("md5-of-{username}"),
        ha1_sha256: format!("sha256-of-{username}"),
        display_name: Some(format!("{username} display")),
        enabled: true,
    }
}

fn binding(aor: &str, contact: &str, expires_at_ms: i64) -> Binding {
    Binding {
        aor: aor.into(),
        contact: contact.into(),
        source: "192.0.2.10:5060".parse().unwrap(),
        transport: Transport::Udp,
        call_id: format!("reg-{aor}"),
        cseq: 1,
        expires_at_ms,
        q: None,
        instance_id: None,
    }
}

fn cdr(call_id: &str, started_at_ms: i64) -> Cdr {
    Cdr {
        call_id: call_id.into(),
        direction: Direction::Internal,
        caller: "alice".into(),
        callee: "bob".into(),
        route: "bob".into(),
        started_at_ms,
        answered_at_ms: Some(started_at_ms + 2_000),
        ended_at_ms: started_at_ms + 60_000,
        hung_up_by: HungUpBy::Callee,
        end_reason: EndReason::Answered,
        sip_status: 200,
        legs_json: r#"[{"leg":"caller"},{"leg":"callee"}]"#.into(),
        media_quality_json: Some(r#"{"loss":0.0}"#.into()),
    }
}

fn acd_event(at_ms: i64, kind: &str, agent: Option<&str>) -> AcdEventRecord {
    AcdEventRecord {
        at_ms,
        kind: kind.into(),
        item: Some(7),
        queue: Some("support".into()),
        agent: agent.map(Into::into),
        details_json: format!(r#"{{"{kind}":{{}}}}"#),
    }
}

async fn acd_events_keep_their_order_and_period(store: &Store) {
    // Two events in the same millisecond keep the order they were written in.
    let batch = vec![
        acd_event(NOW_MS, "ServerStarted", None),
        acd_event(NOW_MS + 10, "Enqueued", None),
        acd_event(NOW_MS + 10, "Offered", Some("bob")),
        acd_event(NOW_MS + 20, "Answered", Some("bob")),
    ];
    store.insert_acd_events(&batch).await.unwrap();
    store.insert_acd_events(&[]).await.unwrap();
    let late = acd_event(NOW_MS + 30, "ServerStarted", None);
    store
        .insert_acd_events(std::slice::from_ref(&late))
        .await
        .unwrap();
    assert_eq!(
        store.acd_events_between(NOW_MS, NOW_MS + 31).await.unwrap(),
        [batch.clone(), vec![late]].concat()
    );
    // Half-open: `to` excluded.
    assert_eq!(
        store
            .acd_events_between(NOW_MS + 10, NOW_MS + 20)
            .await
            .unwrap(),
        batch[1..3].to_vec()
    );
    assert_eq!(
        store
            .last_acd_event_before("ServerStarted", NOW_MS + 29)
            .await
            .unwrap(),
        Some(NOW_MS)
    );
    assert_eq!(
        store
            .last_acd_event_before("ServerStarted", NOW_MS + 30)
            .await
            .unwrap(),
        Some(NOW_MS + 30)
    );
    assert_eq!(
        store
            .last_acd_event_before("ServerStarted", NOW_MS - 1)
            .await
            .unwrap(),
        None
    );
    store.ping().await.unwrap();
}

fn voicemail(id: &str, mailbox: &str, created_at_ms: i64) -> VoicemailMessage {
    VoicemailMessage {
        id: id.into(),
        mailbox: mailbox.into(),
        caller: "+15551234".into(),
        duration_ms: 4_200,
        created_at_ms,
        heard: false,
        file: format!("voicemail/{mailbox}/{id}.wav"),
    }
}

async fn voicemail_retention_reads_only_older_messages_of_the_mailbox(store: &Store) {
    for m in [
        voicemail("old", "support", NOW_MS - 1),
        voicemail("older", "support", NOW_MS - 10),
        voicemail("edge", "support", NOW_MS),
        voicemail("other-box", "sales", NOW_MS - 10),
    ] {
        store.insert_voicemail(&m).await.unwrap();
    }
    let ids = |v: Vec<VoicemailMessage>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .voicemails_left_before("support", NOW_MS)
            .await
            .unwrap()),
        vec!["older", "old"]
    );
    assert_eq!(
        ids(store
            .voicemails_left_before("support", NOW_MS - 10)
            .await
            .unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(store.voicemails_left_before("sales", NOW_MS).await.unwrap()),
        vec!["other-box"]
    );
}

async fn voicemail_tasks_are_handled_once(store: &Store) {
    for m in [
        voicemail("a", "support", NOW_MS),
        voicemail("b", "support", NOW_MS + 10),
        voicemail("c", "sales", NOW_MS),
    ] {
        store.insert_voicemail(&m).await.unwrap();
    }
    let ids = |v: Vec<VoicemailMessage>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.unhandled_voicemails("support").await.unwrap()),
        vec!["a", "b"]
    );
    assert_eq!(store.voicemail_handling("a").await.unwrap(), None);
    let handled = VoicemailHandling {
        agent: "agent1".into(),
        at_ms: NOW_MS + 60_000,
        outcome: "called-back".into(),
    };
    store.mark_voicemail_handled("a", &handled).await.unwrap();
    assert_eq!(
        store.voicemail_handling("a").await.unwrap(),
        Some(handled.clone())
    );
    assert_eq!(
        ids(store.unhandled_voicemails("support").await.unwrap()),
        vec!["b"]
    );
    // The first disposition wins; unknown ids are refused.
    let second = VoicemailHandling {
        agent: "agent2".into(),
        ..handled.clone()
    };
    assert!(matches!(
        store.mark_voicemail_handled("a", &second).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.voicemail_handling("a").await.unwrap(), Some(handled));
    assert!(matches!(
        store.mark_voicemail_handled("nope", &second).await,
        Err(StoreError::NotFound { .. })
    ));
    // Handling does not touch the owner's new/old counts.
    assert_eq!(store.voicemail_counts("support").await.unwrap(), (2, 0));
    // The report reads messages left in a period with their handling.
    let left = store.voicemails_between(NOW_MS, NOW_MS + 10).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|l| (
                l.message.id.as_str(),
                l.handling.as_ref().map(|h| h.agent.as_str())
            ))
            .collect::<Vec<_>>(),
        vec![("a", Some("agent1")), ("c", None)]
    );
    // A deleted message leaves the mailbox but stays in the report, with when.
    assert!(store.delete_voicemail("c", NOW_MS + 99).await.unwrap());
    assert!(
        store
            .unhandled_voicemails("sales")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.voicemails("sales").await.unwrap().is_empty());
    let left = store.voicemails_between(NOW_MS, NOW_MS + 10).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|l| (l.message.id.as_str(), l.deleted_at_ms))
            .collect::<Vec<_>>(),
        vec![("a", None), ("c", Some(NOW_MS + 99))]
    );
}

async fn voicemail_index_lists_marks_and_deletes(store: &Store) {
    assert_eq!(store.voicemails("sales").await.unwrap(), vec![]);
    assert_eq!(store.voicemail_counts("sales").await.unwrap(), (0, 0));
    let later = voicemail("b", "sales", NOW_MS + 10);
    let earlier = voicemail("a", "sales", NOW_MS);
    let other = voicemail("c", "support", NOW_MS);
    for m in [&later, &earlier, &other] {
        store.insert_voicemail(m).await.unwrap();
    }
    // A second insert of the same id is refused and changes nothing.
    let again = VoicemailMessage {
        caller: "someone else".into(),
        ..earlier.clone()
    };
    assert!(matches!(
        store.insert_voicemail(&again).await,
        Err(StoreError::Duplicate {
            record: Record::VoicemailMessage,
            ..
        })
    ));
    assert_eq!(
        store.voicemails("sales").await.unwrap(),
        vec![earlier.clone(), later.clone()],
        "one mailbox, oldest first"
    );
    assert_eq!(store.voicemail_counts("sales").await.unwrap(), (2, 0));

    store.mark_voicemail_heard("a").await.unwrap();
    assert_eq!(store.voicemail_counts("sales").await.unwrap(), (1, 1));
    assert!(store.voicemails("sales").await.unwrap()[0].heard);
    assert!(matches!(
        store.mark_voicemail_heard("nope").await,
        Err(StoreError::NotFound { .. })
    ));

    assert!(store.delete_voicemail("b", NOW_MS + 20).await.unwrap());
    assert!(!store.delete_voicemail("b", NOW_MS + 30).await.unwrap());
    assert_eq!(store.voicemail_counts("sales").await.unwrap(), (0, 1));
    let all: Vec<String> = store
        .all_voicemails()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(all, vec!["a", "c"]);
}

async fn accounts_round_trip(store: &Store) {
    assert_eq!(store.sip_account("alice").await.unwrap(), None);
    store.upsert_sip_account(&account("bob")).await.unwrap();
    store.upsert_sip_account(&account("alice")).await.unwrap();
    assert_eq!(
        store.sip_account("alice").await.unwrap(),
        Some(account("alice"))
    );

    // Upsert replaces every field, including clearing the display name.
    let changed = SipAccount {
        realm: "other.example".into(),
        ha1_md5: "new-md5".into(),
        ha1_sha256: "new-sha".into(),
        display_name: None,
        enabled: false,
        ..account("alice")
    };
    store.upsert_sip_account(&changed).await.unwrap();
    assert_eq!(
        store.sip_account("alice").await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(
        store.sip_accounts().await.unwrap(),
        vec![changed, account("bob")]
    );

    store.delete_sip_account("alice").await.unwrap();
    assert_eq!(store.sip_account("alice").await.unwrap(), None);
    let again = store.delete_sip_account("alice").await.unwrap_err();
    assert!(
        matches!(&again, StoreError::NotFound { record: Record::SipAccount, key } if key == "alice"),
        "{again:?}"
    );
    assert_eq!(store.sip_accounts().await.unwrap(), vec![account("bob")]);
}

async fn bindings_expire_and_order_by_q(store: &Store) {
    let desk = Binding {
        q: QValue::from_millis(500),
        ..binding("alice", "sip:alice@192.0.2.10:5060", NOW_MS + 60_000)
    };
    let mobile = Binding {
        source: "[2001:db8::7]:5070".parse::<SocketAddr>().unwrap(),
        transport: Transport::Tcp,
        cseq: 7,
        instance_id: Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>".into()),
        ..binding(
            "alice",
            "sip:alice@[2001:db8::7]:5070;transport=tcp",
            NOW_MS + 30_000,
        )
    };
    let stale = binding("alice", "sip:alice@198.51.100.1", NOW_MS - 1);
    let bob = binding("bob", "sip:bob@192.0.2.20", NOW_MS + 3_600_000);
    for b in [&desk, &mobile, &stale, &bob] {
        store.save_binding(b).await.unwrap();
    }

    // No q counts as 1.0, so the mobile binding outranks q=0.5; the stale one is hidden.
    assert_eq!(
        store.bindings("alice", NOW_MS).await.unwrap(),
        vec![mobile.clone(), desk.clone()]
    );
    assert_eq!(
        store.active_bindings(NOW_MS).await.unwrap(),
        vec![desk.clone(), mobile.clone(), bob.clone()]
    );
    // Expiry is exclusive: at the expiry instant the binding is gone.
    assert_eq!(
        store.bindings("alice", NOW_MS + 30_000).await.unwrap(),
        vec![desk.clone()]
    );

    // A refresh replaces the binding in place rather than adding one.
    let refreshed = Binding {
        cseq: 8,
        expires_at_ms: NOW_MS + 90_000,
        q: Some(QValue::MAX),
        ..desk.clone()
    };
    store.save_binding(&refreshed).await.unwrap();
    assert_eq!(
        store.bindings("alice", NOW_MS).await.unwrap(),
        vec![refreshed.clone(), mobile.clone()]
    );

    assert_eq!(store.purge_expired(NOW_MS).await.unwrap(), 1);
    assert_eq!(store.purge_expired(NOW_MS).await.unwrap(), 0);

    assert!(
        store
            .remove_binding("alice", &mobile.contact)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_binding("alice", &mobile.contact)
            .await
            .unwrap()
    );
    assert_eq!(store.remove_all_bindings("alice").await.unwrap(), 1);
    assert_eq!(store.remove_all_bindings("alice").await.unwrap(), 0);
    assert_eq!(store.active_bindings(NOW_MS).await.unwrap(), vec![bob]);
}

async fn cdr_is_written_once(store: &Store) {
    let first = cdr("call-1@cc", NOW_MS);
    store.insert_cdr(&first).await.unwrap();

    let retry = Cdr {
        end_reason: EndReason::Failed,
        sip_status: 500,
        ..first.clone()
    };
    let err = store.insert_cdr(&retry).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Duplicate { record: Record::Cdr, key } if key == "call-1@cc"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), r#"CDR "call-1@cc" already exists"#);
    assert_eq!(store.cdr("call-1@cc").await.unwrap(), Some(first.clone()));
    assert_eq!(store.cdr("missing").await.unwrap(), None);
}

async fn cdrs_between_is_half_open(store: &Store) {
    let unanswered = Cdr {
        direction: Direction::Inbound,
        answered_at_ms: None,
        hung_up_by: HungUpBy::Caller,
        end_reason: EndReason::Cancelled,
        sip_status: 487,
        media_quality_json: None,
        ..cdr("call-b", NOW_MS + 1_000)
    };
    let before = cdr("call-a", NOW_MS - 1);
    let first = cdr("call-c", NOW_MS);
    let at_end = cdr("call-d", NOW_MS + 2_000);
    for c in [&unanswered, &before, &first, &at_end] {
        store.insert_cdr(c).await.unwrap();
    }
    assert_eq!(
        store.cdrs_between(NOW_MS, NOW_MS + 2_000).await.unwrap(),
        vec![first, unanswered]
    );
    assert_eq!(
        store
            .cdrs_between(NOW_MS + 5_000, NOW_MS + 9_000)
            .await
            .unwrap(),
        vec![]
    );
}

/// Racing writers of the same call's CDR (say, a retried flush overlapping the first):
/// exactly one wins, the rest get `Duplicate`.
async fn racing_cdr_writes_store_one(store: &Store) {
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let record = Cdr {
                sip_status: 200 + i,
                ..cdr("race@cc", NOW_MS)
            };
            tokio::spawn(async move { store.insert_cdr(&record).await })
        })
        .collect();
    let mut written = 0;
    for writer in writers {
        match writer.await.unwrap() {
            Ok(()) => written += 1,
            Err(StoreError::Duplicate { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(written, 1);
    assert_eq!(
        store.cdrs_between(NOW_MS, NOW_MS + 1).await.unwrap().len(),
        1
    );
}

/// A row the enum does not know (hand-edited, or from a newer server) is reported, not
/// silently mapped to something else.
async fn unknown_stored_values_are_errors(store: &Store) {
    let insert =
        "INSERT INTO bindings (aor, contact, source, transport, call_id, cseq, expires_at_ms)
                  VALUES ('carol', 'sip:carol@192.0.2.30', '192.0.2.30:5060', 'sctp', 'x', 1, $1)";
    with_pool!(store, pool => sqlx::query(insert).bind(NOW_MS + 1).execute(pool).await.map(|_| ()).unwrap());
    let err = store.bindings("carol", NOW_MS).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { column: "bindings.transport", value } if value == "sctp"),
        "{err:?}"
    );
}

/// Clones share the pool: what one writes, another reads (for `sqlite::memory:` this
/// means the single connection is shared, not a new empty database per clone).
async fn clones_share_the_database(store: &Store) {
    let other = store.clone();
    other.upsert_sip_account(&account("dave")).await.unwrap();
    assert_eq!(
        store.sip_account("dave").await.unwrap(),
        Some(account("dave"))
    );
}

fn new_customer(name: &str, phones: &[&str]) -> NewCustomer {
    NewCustomer {
        name: name.into(),
        phones: phones.iter().map(|p| p.to_string()).collect(),
        ..NewCustomer::default()
    }
}

async fn customers_are_found_by_every_key(store: &Store) {
    assert_eq!(
        store.customer_by_phone("+442079460958").await.unwrap(),
        None
    );
    let ada = NewCustomer {
        external_ref: Some("crm-1".into()),
        account: Some("ACC-42".into()),
        email: Some("ada@example.com".into()),
        attributes: serde_json::json!({"tier": "gold", "balance": 12.5})
            .as_object()
            .unwrap()
            .clone(),
        ..new_customer("Ada Lovelace", &["+442079460958", "+447700900123"])
    };
    let done = store.upsert_customer(&ada, NOW_MS).await.unwrap();
    assert!(done.created);
    let found = store
        .customer_by_phone("+447700900123")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, done.id);
    assert_eq!(found.name, "Ada Lovelace");
    assert_eq!(found.phones, vec!["+442079460958", "+447700900123"]);
    assert_eq!(found.attributes["tier"], "gold");
    assert_eq!((found.created_at_ms, found.updated_at_ms), (NOW_MS, NOW_MS));
    for key in [
        CustomerKey::Id(done.id),
        CustomerKey::Account("ACC-42".into()),
        CustomerKey::Email("ada@example.com".into()),
        CustomerKey::ExternalRef("crm-1".into()),
    ] {
        assert_eq!(
            store.customer(&key).await.unwrap(),
            Some(found.clone()),
            "{key:?}"
        );
    }
    assert_eq!(store.customer_by_account("ACC-0").await.unwrap(), None);
    assert_eq!(store.customer_by_id(done.id + 100).await.unwrap(), None);

    // What scripts see as `customer.*`.
    let json = found.to_json();
    assert_eq!(json["name"], "Ada Lovelace");
    assert_eq!(json["phone"], "+442079460958");
    assert_eq!(json["balance"], 12.5);
    assert_eq!(json["id"], done.id);
}

async fn upserts_merge_by_phone_or_external_ref(store: &Store) {
    let first = store
        .upsert_customer(&new_customer("Bo", &["+15550000001"]), NOW_MS)
        .await
        .unwrap();
    // Same phone, a new phone, an account and an attribute: merged, not duplicated.
    let again = NewCustomer {
        account: Some("B-1".into()),
        attributes: serde_json::json!({"vip": true})
            .as_object()
            .unwrap()
            .clone(),
        ..new_customer("", &["+15550000002", "+15550000001"])
    };
    let merged = store.upsert_customer(&again, NOW_MS + 1).await.unwrap();
    assert_eq!(
        merged,
        Upserted {
            id: first.id,
            created: false
        }
    );
    let bo = store.customer_by_id(first.id).await.unwrap().unwrap();
    assert_eq!(bo.name, "Bo", "an empty name keeps the stored one");
    assert_eq!(bo.account.as_deref(), Some("B-1"));
    assert_eq!(bo.phones, vec!["+15550000001", "+15550000002"]);
    assert_eq!(bo.attributes["vip"], true);
    assert_eq!(bo.updated_at_ms, NOW_MS + 1);

    // By external reference, with a phone no one has yet.
    let crm = NewCustomer {
        external_ref: Some("crm-9".into()),
        ..new_customer("Cy", &[])
    };
    let cy = store.upsert_customer(&crm, NOW_MS).await.unwrap();
    let renamed = NewCustomer {
        external_ref: Some("crm-9".into()),
        ..new_customer("Cy Young", &["+15550000003"])
    };
    assert_eq!(
        store.upsert_customer(&renamed, NOW_MS).await.unwrap(),
        Upserted {
            id: cy.id,
            created: false
        }
    );
    let cy_now = store
        .customer_by_phone("+15550000003")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((cy_now.id, cy_now.name.as_str()), (cy.id, "Cy Young"));

    // A phone of Bo's given for Cy: refused, and Cy is left as it was.
    let steal = NewCustomer {
        external_ref: Some("crm-9".into()),
        email: Some("cy@example.com".into()),
        ..new_customer("Cy", &["+15550000009", "+15550000002"])
    };
    let err = store.upsert_customer(&steal, NOW_MS + 5).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::PhoneTaken { phone, owner } if phone == "+15550000002" && *owner == first.id),
        "{err:?}"
    );
    assert_eq!(store.customer_by_id(cy.id).await.unwrap(), Some(cy_now));
    assert_eq!(store.customer_by_phone("+15550000009").await.unwrap(), None);
}

async fn import_is_all_or_nothing(store: &Store) {
    let owner = NewCustomer {
        external_ref: Some("o".into()),
        ..new_customer("Owner", &["+15550000100"])
    };
    let owner = store.upsert_customer(&owner, NOW_MS).await.unwrap();
    let batch = vec![
        new_customer("A", &["+15550000101"]),
        NewCustomer {
            external_ref: Some("x".into()),
            ..new_customer("B", &["+15550000102"])
        },
        // Claims the owner's phone under another external reference: fails.
        NewCustomer {
            external_ref: Some("y".into()),
            ..new_customer("C", &["+15550000103", "+15550000100"])
        },
    ];
    let mut seen = Vec::new();
    let failure = store
        .import_customers(&batch, NOW_MS, &mut |n| seen.push(n))
        .await
        .unwrap_err();
    assert_eq!(failure.index, Some(2));
    assert_eq!(
        failure.to_string(),
        format!(
            "record 3: phone +15550000100 already belongs to customer {}",
            owner.id
        )
    );
    assert_eq!(seen, vec![1, 2]);
    for phone in ["+15550000101", "+15550000102", "+15550000103"] {
        assert_eq!(
            store.customer_by_phone(phone).await.unwrap(),
            None,
            "{phone}"
        );
    }

    let good = &batch[..2];
    let summary = store
        .import_customers(good, NOW_MS, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            created: 2,
            updated: 0
        }
    );
    let summary = store
        .import_customers(good, NOW_MS + 1, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            created: 0,
            updated: 2
        }
    );
}

async fn callbacks_are_their_own_kind_of_contact(store: &Store) {
    let callback = Contact {
        kind: ContactKind::Callback,
        direction: Some(Direction::Outbound),
        details: serde_json::json!({"item": 7, "trunk": "pstn"}),
        ..contact(None, "+442079460958", NOW_MS, "busy")
    };
    let id = store.add_history(&callback).await.unwrap();
    assert_eq!(
        store.history_for_phone("+442079460958", 10).await.unwrap(),
        vec![HistoryEntry {
            id,
            contact: callback
        }]
    );
}

fn contact(customer_id: Option<i64>, phone: &str, started_at_ms: i64, outcome: &str) -> Contact {
    Contact {
        customer_id,
        phone: Some(phone.into()),
        kind: ContactKind::Call,
        direction: Some(Direction::Inbound),
        started_at_ms,
        ended_at_ms: Some(started_at_ms + 30_000),
        queue: Some("sales".into()),
        agent: Some("alice".into()),
        outcome: Some(outcome.into()),
        call_id: Some(format!("call-{started_at_ms}")),
        details: serde_json::json!({"answers": {"menu": "1"}}),
    }
}

async fn history_is_newest_first_and_feeds_the_screen_pop(store: &Store) {
    let ada = store
        .upsert_customer(&new_customer("Ada", &["+442079460958"]), NOW_MS)
        .await
        .unwrap();
    let older = contact(Some(ada.id), "+442079460958", NOW_MS, "answered");
    let newer = Contact {
        kind: ContactKind::Voicemail,
        direction: None,
        ended_at_ms: None,
        queue: None,
        agent: None,
        ..contact(Some(ada.id), "+442079460958", NOW_MS + 1_000, "voicemail")
    };
    let stranger = contact(None, "+15550001111", NOW_MS, "abandoned");
    let id_older = store.add_history(&older).await.unwrap();
    let id_newer = store.add_history(&newer).await.unwrap();
    let id_stranger = store.add_history(&stranger).await.unwrap();
    assert!(id_older != id_newer && id_newer != id_stranger);

    let history = store.history_for_customer(ada.id, 10).await.unwrap();
    assert_eq!(
        history,
        vec![
            HistoryEntry {
                id: id_newer,
                contact: newer.clone()
            },
            HistoryEntry {
                id: id_older,
                contact: older.clone()
            },
        ]
    );
    assert_eq!(
        store.history_for_customer(ada.id, 1).await.unwrap().len(),
        1
    );
    assert_eq!(
        store.history_for_phone("+15550001111", 10).await.unwrap(),
        vec![HistoryEntry {
            id: id_stranger,
            contact: stranger.clone()
        }]
    );

    // Reports read one kind over a period, oldest first; the end is excluded.
    let calls = store
        .history_between(ContactKind::Call, NOW_MS, NOW_MS + 1)
        .await
        .unwrap();
    assert_eq!(
        calls.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![id_older, id_stranger]
    );
    assert!(
        store
            .history_between(ContactKind::Call, NOW_MS + 1, NOW_MS + 10_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .history_between(ContactKind::Voicemail, 0, i64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect::<Vec<_>>(),
        vec![id_newer]
    );

    let pop = store.screen_pop_data("+442079460958", 1).await.unwrap();
    assert_eq!(pop.customer.map(|c| c.id), Some(ada.id));
    assert_eq!(
        pop.history.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![id_newer]
    );
    let pop = store.screen_pop_data("+15550001111", 5).await.unwrap();
    assert_eq!(pop.customer, None);
    assert_eq!(pop.history.len(), 1);
}

async fn corrupt_customer_rows_are_errors(store: &Store) {
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO customers (name, attributes_json, created_at_ms, updated_at_ms) VALUES ('Zed', '[1]', 1, 1)"
    ).execute(pool).await.map(|_| ()).unwrap());
    let err = store
        .customer(&CustomerKey::Account("none".into()))
        .await
        .unwrap();
    assert_eq!(err, None);
    let zed: (i64,) = with_pool!(store, pool => sqlx::query_as("SELECT id FROM customers WHERE name = 'Zed'")
        .fetch_one(pool).await.unwrap());
    let err = store.customer_by_id(zed.0).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { column: "customers.attributes_json", value } if value == "[1]"),
        "{err:?}"
    );
}

fn campaign_contact(e164: &str, name: &str) -> NewCampaignContact {
    let mut attributes = serde_json::Map::new();
    attributes.insert("plan".into(), "gold".into());
    NewCampaignContact {
        e164: e164.into(),
        name: name.into(),
        time_zone: Some("Europe/London".into()),
        attributes,
    }
}

async fn campaign_state_is_recorded_and_changed(store: &Store) {
    assert_eq!(store.campaign_state("renewals").await.unwrap(), None);
    store.ensure_campaign("renewals", NOW_MS).await.unwrap();
    assert_eq!(
        store.campaign_state("renewals").await.unwrap(),
        Some(CampaignState::Draft)
    );
    store
        .set_campaign_state("renewals", CampaignState::Running, NOW_MS + 1)
        .await
        .unwrap();
    // Recording a known campaign again leaves its state alone.
    store.ensure_campaign("renewals", NOW_MS + 2).await.unwrap();
    assert_eq!(
        store.campaign_state("renewals").await.unwrap(),
        Some(CampaignState::Running)
    );
    store
        .set_campaign_state("other", CampaignState::Paused, NOW_MS)
        .await
        .unwrap();
    assert_eq!(
        store.campaign_state("other").await.unwrap(),
        Some(CampaignState::Paused)
    );
}

async fn campaign_contacts_import_link_customers_and_merge(store: &Store) {
    let known = store
        .upsert_customer(
            &NewCustomer {
                name: "Known Person".into(),
                phones: vec!["+442079460001".into()],
                ..NewCustomer::default()
            },
            NOW_MS,
        )
        .await
        .unwrap();
    let mut seen = vec![];
    let summary = store
        .import_campaign_contacts(
            "renewals",
            &[
                campaign_contact("+442079460001", "Known"),
                campaign_contact("+442079460002", "New Person"),
            ],
            NOW_MS,
            &mut |n| seen.push(n),
        )
        .await
        .unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            created: 2,
            updated: 0
        }
    );
    assert_eq!(seen, vec![1, 2]);
    let contacts = store.campaign_contacts("renewals").await.unwrap();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].customer_id, Some(known.id));
    assert_eq!(contacts[0].state, ContactState::Pending);
    assert_eq!(contacts[0].attempts, 0);
    assert_eq!(contacts[0].next_attempt_at_ms, NOW_MS);
    assert_eq!(contacts[0].time_zone.as_deref(), Some("Europe/London"));
    assert_eq!(contacts[0].attributes["plan"], "gold");
    // The unknown number became a customer.
    let created = store
        .customer_by_phone("+442079460002")
        .await
        .unwrap()
        .expect("customer created for the new number");
    assert_eq!(contacts[1].customer_id, Some(created.id));
    assert_eq!(created.name, "New Person");
    assert_eq!(
        store.campaign_state("renewals").await.unwrap(),
        Some(CampaignState::Draft)
    );

    // Importing again updates in place and keeps the attempts.
    assert!(store.claim_campaign_contact(contacts[1].id).await.unwrap());
    let summary = store
        .import_campaign_contacts(
            "renewals",
            &[campaign_contact("+442079460002", "Renamed")],
            NOW_MS + 5,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            created: 0,
            updated: 1
        }
    );
    let again = store.campaign_contacts("renewals").await.unwrap();
    assert_eq!(again[1].name, "Renamed");
    assert_eq!(again[1].attempts, 1);
    assert_eq!(again[1].state, ContactState::InProgress);
}

async fn campaign_contact_import_is_all_or_nothing(store: &Store) {
    // The second row's number belongs to a customer whose stored record does not
    // parse: the import stops there, names the row, and writes nothing.
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO customers (name, attributes_json, created_at_ms, updated_at_ms) VALUES ('Zed', '[1]', 1, 1)"
    ).execute(pool).await.map(|_| ()).unwrap());
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO customer_phones (customer_id, e164) SELECT id, '+442079460011' FROM customers WHERE name = 'Zed'"
    ).execute(pool).await.map(|_| ()).unwrap());
    let failure = store
        .import_campaign_contacts(
            "renewals",
            &[
                campaign_contact("+442079460010", "Fine"),
                campaign_contact("+442079460011", "Broken"),
            ],
            NOW_MS,
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(failure.index, Some(1));
    assert!(failure.to_string().starts_with("record 2: "), "{failure}");
    assert!(
        store
            .campaign_contacts("renewals")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.customer_by_phone("+442079460010").await.unwrap(),
        None
    );
    assert_eq!(store.campaign_state("renewals").await.unwrap(), None);
}

async fn due_contacts_claim_and_retry(store: &Store) {
    store
        .import_campaign_contacts(
            "renewals",
            &[
                campaign_contact("+442079460001", "A"),
                campaign_contact("+442079460002", "B"),
                campaign_contact("+442079460003", "C"),
            ],
            NOW_MS,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(
        store
            .due_campaign_contacts("renewals", NOW_MS - 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .due_campaign_contacts("renewals", NOW_MS, 2)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|c| c.e164.as_str()).collect::<Vec<_>>(),
        ["+442079460001", "+442079460002"]
    );
    assert!(store.claim_campaign_contact(due[0].id).await.unwrap());
    assert!(
        !store.claim_campaign_contact(due[0].id).await.unwrap(),
        "claimed once"
    );
    assert!(store.claim_campaign_contact(due[1].id).await.unwrap());

    // A busy line comes back later; an answered call is done.
    let busy = CampaignAttempt {
        contact_id: due[0].id,
        call_id: Some("call-1".into()),
        started_at_ms: NOW_MS,
        ended_at_ms: NOW_MS + 1_000,
        outcome: "busy".into(),
        agent: None,
        disposition: None,
    };
    store
        .finish_campaign_attempt(&busy, Some(NOW_MS + 60_000))
        .await
        .unwrap();
    let answered = CampaignAttempt {
        contact_id: due[1].id,
        call_id: Some("call-2".into()),
        started_at_ms: NOW_MS + 10,
        ended_at_ms: NOW_MS + 90_000,
        outcome: "answered".into(),
        agent: Some("alice".into()),
        disposition: Some("sale".into()),
    };
    store
        .finish_campaign_attempt(&answered, None)
        .await
        .unwrap();
    let due = store
        .due_campaign_contacts("renewals", NOW_MS + 1, 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|c| c.e164.as_str()).collect::<Vec<_>>(),
        ["+442079460003"]
    );
    let due = store
        .due_campaign_contacts("renewals", NOW_MS + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|c| c.e164.as_str()).collect::<Vec<_>>(),
        ["+442079460003", "+442079460001"],
        "soonest first"
    );
    assert_eq!(due[1].attempts, 1);
    assert_eq!(due[1].last_outcome.as_deref(), Some("busy"));
    assert_eq!(
        store.campaign_attempts("renewals").await.unwrap(),
        vec![busy, answered]
    );
    let all = store.campaign_contacts("renewals").await.unwrap();
    assert_eq!(all[1].state, ContactState::Done);

    // Barred without an attempt: done, no attempt row.
    store
        .reschedule_campaign_contact(all[2].id, None, Some("do-not-call"))
        .await
        .unwrap();
    let all = store.campaign_contacts("renewals").await.unwrap();
    assert_eq!(all[2].state, ContactState::Done);
    assert_eq!(all[2].last_outcome.as_deref(), Some("do-not-call"));
    assert_eq!(store.campaign_attempts("renewals").await.unwrap().len(), 2);
    // The agent's disposition lands on the attempt named by its Call-ID.
    assert!(
        store
            .set_campaign_attempt_disposition("call-1", "callback-later")
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_campaign_attempt_disposition("no-such-call", "sale")
            .await
            .unwrap()
    );
    assert_eq!(
        store.campaign_attempts("renewals").await.unwrap()[0]
            .disposition
            .as_deref(),
        Some("callback-later")
    );
    // The supervisor's progress counts: 3 contacts, 2 done, 1 due again; one busy and
    // one answered attempt.
    let progress = store.campaign_progress("renewals").await.unwrap();
    assert_eq!(
        progress.contacts,
        BTreeMap::from([("done".to_string(), 2), ("pending".to_string(), 1)])
    );
    assert_eq!(
        progress.attempts,
        BTreeMap::from([("answered".to_string(), 1), ("busy".to_string(), 1)])
    );
    assert_eq!(
        store.campaign_progress("nothing").await.unwrap(),
        CampaignProgress::default()
    );

    // A contact left in progress by a stopped server is released.
    assert!(store.claim_campaign_contact(all[0].id).await.unwrap());
    assert_eq!(
        store.release_campaign_contacts("renewals").await.unwrap(),
        1
    );
    assert_eq!(
        store.campaign_contacts("renewals").await.unwrap()[0].state,
        ContactState::Pending
    );
    assert!(matches!(
        store
            .finish_campaign_attempt(
                &CampaignAttempt {
                    contact_id: 999,
                    ..busy_clone()
                },
                None
            )
            .await,
        Err(StoreError::NotFound {
            record: Record::CampaignContact,
            ..
        })
    ));

    // An agent books a callback on the attempt "call-1": its contact is due again
    // then, marked as a callback until it is dialled.
    let at = NOW_MS + 3_600_000;
    assert!(store.book_campaign_callback("call-1", at).await.unwrap());
    assert!(
        !store
            .book_campaign_callback("no-such-call", at)
            .await
            .unwrap()
    );
    let booked = store
        .due_campaign_contacts("renewals", at, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.callback_at_ms.is_some())
        .expect("the booked contact is due at its time");
    assert_eq!(
        (
            booked.state,
            booked.next_attempt_at_ms,
            booked.callback_at_ms
        ),
        (ContactState::Pending, at, Some(at))
    );
    assert!(store.claim_campaign_contact(booked.id).await.unwrap());
    let claimed = store.campaign_contacts("renewals").await.unwrap();
    let claimed = claimed.iter().find(|c| c.id == booked.id).unwrap();
    assert_eq!(claimed.callback_at_ms, None, "dialled: the booking is used");
}

fn busy_clone() -> CampaignAttempt {
    CampaignAttempt {
        contact_id: 0,
        call_id: None,
        started_at_ms: NOW_MS,
        ended_at_ms: NOW_MS,
        outcome: "busy".into(),
        agent: None,
        disposition: None,
    }
}

async fn do_not_call_lists_are_global_or_per_campaign(store: &Store) {
    store.ensure_campaign("renewals", NOW_MS).await.unwrap();
    store.ensure_campaign("other", NOW_MS).await.unwrap();
    store
        .add_do_not_call("+442079460001", None, NOW_MS)
        .await
        .unwrap();
    store
        .add_do_not_call("+442079460001", None, NOW_MS)
        .await
        .unwrap();
    store
        .add_do_not_call("+442079460002", Some("renewals"), NOW_MS)
        .await
        .unwrap();
    store
        .add_do_not_call("+442079460003", Some("other"), NOW_MS)
        .await
        .unwrap();
    assert_eq!(
        store.do_not_call_lists("renewals").await.unwrap(),
        DoNotCallLists {
            global: vec!["+442079460001".into()],
            campaign: vec!["+442079460002".into()],
        }
    );
}

/// Writes one of everything, for the restart tests to read back.
async fn write_before_restart(store: &Store) {
    store.upsert_sip_account(&account("alice")).await.unwrap();
    store
        .save_binding(&binding("alice", "sip:alice@192.0.2.10", NOW_MS + 60_000))
        .await
        .unwrap();
    store.insert_cdr(&cdr("call-1@cc", NOW_MS)).await.unwrap();
}

async fn read_after_restart(store: &Store) {
    assert_eq!(
        store.sip_account("alice").await.unwrap(),
        Some(account("alice"))
    );
    assert_eq!(
        store.active_bindings(NOW_MS).await.unwrap(),
        vec![binding("alice", "sip:alice@192.0.2.10", NOW_MS + 60_000)]
    );
    assert_eq!(
        store.cdr("call-1@cc").await.unwrap(),
        Some(cdr("call-1@cc", NOW_MS))
    );
    // Still written once across the restart.
    assert!(matches!(
        store.insert_cdr(&cdr("call-1@cc", NOW_MS)).await,
        Err(StoreError::Duplicate { .. })
    ));
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("comm-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.0.join("comm.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const POSTGRES_URL_VAR: &str = "COMM_TEST_POSTGRES_URL";

/// The PostgreSQL URL for test `name`, on a fresh schema of its own; `None` (with a note)
/// when `COMM_TEST_POSTGRES_URL` is not set.
async fn postgres_url(name: &str) -> Option<String> {
    let Ok(url) = std::env::var(POSTGRES_URL_VAR) else {
        eprintln!("note: {POSTGRES_URL_VAR} is not set; skipping PostgreSQL store test {name}");
        return None;
    };
    let schema = format!("comm_test_{name}");
    let admin = PgPool::connect(&url).await.expect(POSTGRES_URL_VAR);
    for sql in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}options[search_path]={schema}"))
}

/// Runs each check on a fresh database of every backend, one `#[tokio::test]` apiece.
macro_rules! on_every_backend {
    ($($check:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $check() {
                    let store = super::Store::open("sqlite::memory:").await.unwrap();
                    super::$check(&store).await;
                }
            )+
        }

        mod sqlite_file {
            $(
                #[tokio::test]
                async fn $check() {
                    let dir = super::TempDir::new(stringify!($check));
                    let store = super::Store::open(&dir.sqlite_url()).await.unwrap();
                    super::$check(&store).await;
                    store.close().await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    let Some(url) = super::postgres_url(stringify!($check)).await else {
                        return;
                    };
                    let store = super::Store::open(&url).await.unwrap();
                    super::$check(&store).await;
                    store.close().await;
                }
            )+
        }
    };
}

on_every_backend!(
    accounts_round_trip,
    bindings_expire_and_order_by_q,
    cdr_is_written_once,
    cdrs_between_is_half_open,
    unknown_stored_values_are_errors,
    clones_share_the_database,
    racing_cdr_writes_store_one,
    acd_events_keep_their_order_and_period,
    voicemail_index_lists_marks_and_deletes,
    voicemail_tasks_are_handled_once,
    voicemail_retention_reads_only_older_messages_of_the_mailbox,
    customers_are_found_by_every_key,
    upserts_merge_by_phone_or_external_ref,
    import_is_all_or_nothing,
    history_is_newest_first_and_feeds_the_screen_pop,
    callbacks_are_their_own_kind_of_contact,
    corrupt_customer_rows_are_errors,
    campaign_state_is_recorded_and_changed,
    campaign_contacts_import_link_customers_and_merge,
    campaign_contact_import_is_all_or_nothing,
    due_contacts_claim_and_retry,
    do_not_call_lists_are_global_or_per_campaign,
);

#[tokio::test]
async fn sqlite_file_keeps_everything_across_a_restart() {
    let dir = TempDir::new("restart");
    let store = Store::open(&dir.sqlite_url()).await.unwrap();
    write_before_restart(&store).await;
    store.close().await;

    // Reopening runs the migrations again, which must find nothing to do.
    let store = Store::open(&dir.sqlite_url()).await.unwrap();
    read_after_restart(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_keeps_everything_across_a_restart() {
    let Some(url) = postgres_url("restart").await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    write_before_restart(&store).await;
    store.close().await;

    let store = Store::open(&url).await.unwrap();
    read_after_restart(&store).await;
    store.close().await;
}

#[tokio::test]
async fn edited_migration_history_is_a_migration_error() {
    let dir = TempDir::new("migrate");
    let store = Store::open(&dir.sqlite_url()).await.unwrap();
    with_pool!(store, pool => sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00'")
        .execute(pool)
        .await
        .map(|_| ())
        .unwrap());
    store.close().await;

    let err = Store::open(&dir.sqlite_url()).await.err().unwrap();
    assert!(matches!(err, StoreError::Migrate { .. }), "{err:?}");
    let path = dir.0.join("comm.db");
    assert_eq!(
        err.to_string(),
        format!("database migration failed for {}", path.display())
    );
}

#[tokio::test]
async fn database_errors_say_what_failed_but_show_no_sql() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    store.close().await;
    let err = store.sip_account("alice").await.unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "database error while reading a SIP account"
    );
}

#[tokio::test]
async fn unknown_scheme_is_a_bad_url_without_the_password() {
    let err = Store::open("mysql://root:hunter2@db/cc")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, StoreError::BadUrl { source: None, .. }),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("mysql://root:***@db/cc"), "{shown}");
}

#[tokio::test]
async fn missing_directory_names_the_path() {
    let dir = TempDir::new("missing-dir");
    let path = dir.0.join("no-such-dir").join("comm.db");
    let err = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot open database {}", path.display())
    );
}

#[tokio::test]
async fn unreachable_postgres_is_an_open_error_without_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = Store::open("postgres://cc:hunter2@127.0.0.1:1/cc")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot open database postgres://cc:***@127.0.0.1:1/cc"
    );
}

#[test]
fn redact_hides_passwords_only() {
    assert_eq!(redact("postgres://cc@db/cc"), "postgres://cc@db/cc");
    assert_eq!(
        redact("postgres://cc:pw@db:5432/cc"),
        "postgres://cc:***@db:5432/cc"
    );
    assert_eq!(
        redact("postgres://db/cc?user=cc&password=pw&sslmode=prefer"),
        "postgres://db/cc?user=cc&password=***&sslmode=prefer"
    );
    assert_eq!(redact("sqlite://data/comm.db"), "sqlite://data/comm.db");
}

#[test]
fn memory_urls_are_recognised() {
    assert!(is_sqlite_memory("sqlite::memory:"));
    assert!(is_sqlite_memory("sqlite://:memory:"));
    assert!(is_sqlite_memory("sqlite://x.db?mode=memory"));
    assert!(!is_sqlite_memory("sqlite://data/comm.db"));
    assert!(!is_sqlite_memory("sqlite://data/memory.db"));
}
