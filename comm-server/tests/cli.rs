//! The real `comm-server` binary's checking commands, run from the repository root
//! as an operator would: every file shipped in `deploy/` and `scripts/` checks
//! clean, and broken ones fail with the file, line (and column) of the problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `comm-server ARGS` in the repository root.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comm-server"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the comm-server binary runs")
}

/// stdout and stderr together, for messages and for showing a failure.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn files_in(dir: &str, ext: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("comm-server-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_shipped_config_checks_with_what_it_references() {
    let configs = files_in("deploy", "toml");
    assert!(!configs.is_empty());
    for config in &configs {
        let out = run(&["check-config", config]);
        let text = said(&out);
        assert!(out.status.success(), "{config}:\n{text}");
        assert!(
            text.contains(" 0 error(s)") && text.ends_with("config OK\n"),
            "{text}"
        );
    }
    // The embedded demo config is deploy/comm-server.toml, resolved the same way.
    let out = run(&["check-config"]);
    assert!(out.status.success(), "{}", said(&out));
}

#[test]
fn every_shipped_script_checks_against_the_shipped_sounds() {
    let scripts = files_in("scripts", "xml");
    assert!(scripts.len() >= 4, "{scripts:?}");
    let mut args = vec!["check-script", "--sounds", "sounds"];
    args.extend(scripts.iter().map(String::as_str));
    let out = run(&args);
    let text = said(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "{} file(s): 0 error(s), 0 warning(s)",
            scripts.len()
        )),
        "{text}"
    );
    // --sounds defaults to the config's default sounds dir, `sounds`.
    args.drain(1..3);
    assert!(run(&args).status.success());
}

#[test]
fn a_config_with_an_unknown_key_fails_at_its_line_and_column() {
    let dir = Scratch::new("unknown-key");
    let config = dir.write(
        "bad.toml",
        "[server]\nscripts-dir = \"scripts\"\n\n[sip]\nrelam = \"x\"\n",
    );
    let out = run(&["check-config", &config]);
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("{config}:5:1: ")), "{text}");
    assert!(text.contains("unknown field `relam`"), "{text}");
}

/// What `scripts/bank-card.xml` routes to: the cards queue, an agent with the cards
/// skill and the cards mailbox (check-config checks scripts' names too).
const BANK_CARD_NEEDS: &str = "[[user]]\nname = \"bob\"\npassword = \"p\"\n\n\
    [[queue]]\nname = \"cards\"\n\n\
    [[agent]]\nname = \"bob\"\nqueues = [\"cards\"]\nskills = { cards = 3 }\n\n\
    [[mailbox]]\nname = \"cards\"\npin = \"1\"\n";

#[test]
fn a_route_to_a_missing_script_fails_at_the_route() {
    let dir = Scratch::new("missing-script");
    let sounds = root().join("sounds").display().to_string();
    let scripts = root().join("scripts").display().to_string();
    let config = dir.write(
        "bad.toml",
        &format!(
            "[server]\nscripts-dir = {scripts:?}\nsounds-dir = {sounds:?}\n\n\
             [[route]]\nnumber = \"700\"\ntarget = {{ script = \"bank-card\" }}\n\n\
             [[route]]\nnumber = \"701\"\ntarget = {{ script = \"no-such-line.xml\" }}\n\n\
             {BANK_CARD_NEEDS}"
        ),
    );
    let out = run(&["check-config", &config]);
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    // Exactly one problem: the second route, at its line; bank-card is fine.
    assert!(text.contains("1 error(s)"), "{text}");
    assert!(
        text.contains(&format!(
            "{config}:11: route[1].target.script: no script {scripts}/no-such-line.xml in scripts-dir"
        )),
        "{text}"
    );
}

#[test]
fn a_broken_script_fails_at_its_line_and_column() {
    let dir = Scratch::new("broken-script");
    let script = dir.write(
        "broken.xml",
        "<script version=\"1\" id=\"broken\" channels=\"voice\">\n  <say audio=\"general/welcome.wav\">Hi.</say>\n  <goto target=\"nowhere\"/>\n</script>\n",
    );
    let out = run(&["check-script", &script]);
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("{script}:3:9: error: ")), "{text}");
    // Column 9: the `target` attribute that names no step.
    assert!(text.contains("no element has id `nowhere`"), "{text}");
    assert!(text.contains("1 file(s): 1 error(s)"), "{text}");

    // A config routing to it reports the script's own position and the route's line.
    std::fs::create_dir(dir.0.join("scripts")).unwrap();
    std::fs::rename(&script, dir.0.join("scripts/broken.xml")).unwrap();
    let sounds = root().join("sounds").display().to_string();
    let scripts = dir.0.join("scripts").display().to_string();
    let config = dir.write(
        "c.toml",
        &format!(
            "[server]\nscripts-dir = {scripts:?}\nsounds-dir = {sounds:?}\n\n\
             [[route]]\nnumber = \"9\"\ntarget = {{ script = \"broken\" }}\n"
        ),
    );
    let out = run(&["check-config", &config]);
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{scripts}/broken.xml:3:9: error: ")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{config}:7: route[0].target.script: {scripts}/broken.xml does not load"
        )),
        "{text}"
    );
}

#[test]
fn audio_missing_from_the_sound_set_is_an_error_unless_any_audio() {
    let dir = Scratch::new("audio");
    let script = dir.write(
        "new-line.xml",
        "<script version=\"1\" id=\"new-line\" channels=\"voice\">\n  <say audio=\"general/not-recorded-yet.wav\">Hi.</say>\n</script>\n",
    );
    let out = run(&["check-script", "--sounds", "sounds", &script]);
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("{script}:2:")), "{text}");
    assert!(text.contains("general/not-recorded-yet.wav"), "{text}");

    let out = run(&["check-script", "--any-audio", &script]);
    assert!(out.status.success(), "{}", said(&out));

    let out = run(&["check-script", "--sounds", "no-such-dir", &script]);
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("--sounds no-such-dir"), "{text}");
}

/// Writes an ACD event log the way the server does, for the report commands.
fn write_event_log(dir: &Scratch) {
    use comm_server::acd::{AgentId, AgentState, AgentStatus, Event, ItemId, ItemKind, QueueId};
    use comm_server::reports::log;
    use std::time::Duration;
    // 2026-11-01 00:00 UTC, plus seconds.
    let t = |s: i64| 1_793_491_200_000 + s * 1000;
    let (queues, agents) = (["support".to_string()], ["ann".to_string()]);
    let (q, ann, s) = (QueueId(0), AgentId(0), Duration::from_secs);
    let enqueued = |n| Event::Enqueued {
        item: ItemId(n),
        queue: q,
        kind: ItemKind::InboundCall,
        priority: 0,
    };
    let events = [
        (
            t(-60),
            Event::StatusChanged {
                agent: ann,
                from: AgentStatus::LoggedOut,
                to: AgentStatus::Available,
            },
        ),
        (t(10), enqueued(1)),
        (
            t(14),
            Event::Answered {
                item: ItemId(1),
                agent: ann,
                waited: s(4),
            },
        ),
        (
            t(14),
            Event::StateChanged {
                agent: ann,
                from: AgentState::Idle,
                to: AgentState::OnCall(ItemId(1)),
            },
        ),
        (
            t(74),
            Event::CallEnded {
                item: ItemId(1),
                agent: ann,
                talk: s(60),
            },
        ),
        (
            t(74),
            Event::StateChanged {
                agent: ann,
                from: AgentState::OnCall(ItemId(1)),
                to: AgentState::Idle,
            },
        ),
        (t(100), enqueued(2)),
        (
            t(140),
            Event::Abandoned {
                item: ItemId(2),
                queue: q,
                waited: s(40),
                callback: false,
            },
        ),
        // The next day: outside the period.
        (t(86_400), enqueued(3)),
    ];
    let mut records = vec![log::server_started(t(-120))];
    records.extend(
        events
            .iter()
            .map(|(at, e)| log::record(*at, e, &queues, &agents)),
    );
    let url = format!("sqlite://{}", dir.0.join("comm-server.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = comm_server::store::Store::open(&url).await.unwrap();
        store.insert_acd_events(&records).await.unwrap();
        store.close().await;
    });
}

#[test]
fn report_prints_a_days_queue_and_agent_figures_from_the_event_log() {
    let dir = Scratch::new("report");
    write_event_log(&dir);
    let data_dir = dir.0.display().to_string();
    let day = [
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
        "--data-dir",
        &data_dir,
    ];

    let out = run(&[&["report", "calls"][..], &day, &["--format", "csv"]].concat());
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "queue,offered,answered,abandoned,abandoned_short,overflowed,transferred,asa_s,service_level,handled,aht_s,avg_talk_s,avg_wrap_up_s,vm_tasks,vm_tasks_handled,avg_vm_task_s\n\
         support,2,1,1,0,0,0,4.000,0.500,1,60.000,60.000,,0,0,\n"
    );

    // By hour: the same two calls, each row prefixed with its hour.
    let out = run(&[
        &["report", "calls"][..],
        &day,
        &["--interval", "1h", "--format", "csv"],
    ]
    .concat());
    assert!(out.status.success(), "{}", said(&out));
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("interval_start,queue,offered,"),
        "{csv}"
    );
    let offered: u64 = lines
        .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(offered, 2, "{csv}");
    let out = run(&[&["report", "calls"][..], &day, &["--interval", "1s"]].concat());
    assert!(!out.status.success());
    assert!(
        said(&out).contains("more than 1000 intervals of 1 s"),
        "{}",
        said(&out)
    );

    let out = run(&[
        &["report", "agents"][..],
        &day,
        &["--agent", "ann", "--format", "json"],
    ]
    .concat());
    assert!(out.status.success(), "{}", said(&out));
    let json = String::from_utf8_lossy(&out.stdout);
    for field in [
        r#""agent": "ann""#,
        r#""answered": 1"#,
        r#""logged_in_s": 86400.0"#,
        r#""on_call_s": 60.0"#,
        r#""aht_s": 60.0"#,
    ] {
        assert!(json.contains(field), "{field} in {json}");
    }

    // A queue filter that matches nothing prints the header and says so.
    let out = run(&[&["report", "calls"][..], &day, &["--queue", "sales"]].concat());
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).ends_with("(no activity in the period)\n"),
        "{}",
        said(&out)
    );
}

#[test]
fn report_refuses_bad_dates_formats_and_a_missing_database() {
    let dir = Scratch::new("report-bad");
    let data_dir = dir.0.display().to_string();
    let out = run(&[
        "report",
        "calls",
        "--from",
        "2026-11-31",
        "--to",
        "2026-12-01",
        "--data-dir",
        &data_dir,
    ]);
    assert!(!out.status.success());
    assert!(
        said(&out).contains("--from: \"2026-11-31\" is not a UTC date"),
        "{}",
        said(&out)
    );

    let out = run(&[
        "report",
        "calls",
        "--from",
        "2026-11-02",
        "--to",
        "2026-11-01",
        "--data-dir",
        &data_dir,
    ]);
    assert!(
        said(&out).contains("--from 2026-11-02 is not before --to 2026-11-01"),
        "{}",
        said(&out)
    );

    let out = run(&[
        "report",
        "calls",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
        "--format",
        "xml",
        "--data-dir",
        &data_dir,
    ]);
    assert!(
        said(&out).contains("--format: unknown format \"xml\""),
        "{}",
        said(&out)
    );

    let out = run(&[
        "report",
        "agents",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
        "--data-dir",
        &data_dir,
    ]);
    assert!(!out.status.success());
    assert!(said(&out).contains("no database at "), "{}", said(&out));
}

/// A config for `import customers`: UK numbers, the database in `dir`.
fn customers_config(dir: &Scratch) -> String {
    dir.write("comm.toml", "[customers]\ndefault-country-code = \"44\"\n")
}

fn stored_customers(dir: &Scratch) -> Vec<comm_server::store::Customer> {
    let url = format!("sqlite://{}", dir.0.join("data/comm-server.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = comm_server::store::Store::open(&url).await.unwrap();
        let mut found = Vec::new();
        for id in 1..=10 {
            if let Some(c) = store.customer_by_id(id).await.unwrap() {
                found.push(c);
            }
        }
        store.close().await;
        found
    })
}

#[test]
fn importing_customers_merges_duplicates_and_reports_counts() {
    let dir = Scratch::new("import-good");
    let config = customers_config(&dir);
    let csv = dir.write(
        "customers.csv",
        "name,phone,account,email,external_ref,tier\n\
         Ada Lovelace,020 7946 0958;+44 7700 900123,ACC-1,ada@example.com,crm-1,gold\n\
         \"Babbage, Charles\",0044 20 7946 0000,ACC-2,,crm-2,\n\
         Ada L.,+442079460958,,,,platinum\n",
    );
    let data = dir.0.join("data").display().to_string();
    let args = [
        "import",
        "customers",
        &csv,
        "--config",
        &config,
        "--data-dir",
        &data,
    ];
    let out = run(&args);
    let text = said(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{csv}: 3 row(s), 2 customer(s): 2 created, 0 updated\n")
    );
    let customers = stored_customers(&dir);
    assert_eq!(customers.len(), 2, "{customers:?}");
    let ada = &customers[0];
    assert_eq!(ada.name, "Ada L.");
    assert_eq!(ada.phones, vec!["+442079460958", "+447700900123"]);
    assert_eq!(ada.account.as_deref(), Some("ACC-1"));
    assert_eq!(ada.attributes["tier"], "platinum");
    assert_eq!(customers[1].name, "Babbage, Charles");

    // The same file again updates the same customers.
    let out = run(&args);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("0 created, 2 updated"),
        "{}",
        said(&out)
    );
    assert_eq!(stored_customers(&dir).len(), 2);
}

#[test]
fn a_bad_customer_file_lists_every_bad_row_and_writes_nothing() {
    let dir = Scratch::new("import-bad");
    let config = customers_config(&dir);
    let data = dir.0.join("data").display().to_string();
    let good = dir.write("good.csv", "name,phone\nAda,020 7946 0958\n");
    let out = run(&[
        "import",
        "customers",
        &good,
        "--config",
        &config,
        "--data-dir",
        &data,
    ]);
    assert!(out.status.success(), "{}", said(&out));

    let bad = dir.write(
        "bad.csv",
        "name,phone,email\n\
         Ada Renamed,020 7946 0958,ada@example.com\n\
         Bo,abc,\n\
         Cy,+44 20 7946 0001,not-an-address\n\
         ,+44 20 7946 0002,\n",
    );
    let out = run(&[
        "import",
        "customers",
        &bad,
        "--config",
        &config,
        "--data-dir",
        &data,
    ]);
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    for line in [
        "3 problem(s), nothing imported",
        "row 3: phone \"abc\": not a phone number: 'a' is not a digit",
        "row 4: email \"not-an-address\": not an e-mail address",
        "row 5: name: empty; every customer needs a name",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let customers = stored_customers(&dir);
    assert_eq!(customers.len(), 1);
    assert_eq!(
        customers[0].name, "Ada",
        "the good row of the bad file was not written"
    );
}
