//! Unit tests of the session state machine (lockout, tokens, lease).

use super::*;

/// Any instant will do: the state machine only compares them.
#[allow(clippy::disallowed_methods)]
fn t() -> Instant {
    Instant::now()
}

fn config() -> SessionConfig {
    SessionConfig {
        lease: Duration::from_secs(60),
        lockout_after: 3,
        lockout_for: Duration::from_secs(300),
        session_ttl: Duration::from_secs(3600),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_name_locks_after_n_consecutive_failures_and_unlocks_after_the_period() {
    let t0 = t();
    let mut s = Sessions::new(config());
    assert_eq!(s.handle_login_failed(t0, Role::Agent, "alice"), None);
    assert_eq!(s.handle_login_failed(t0, Role::Agent, "alice"), None);
    assert!(s.check_lockout(t0, Role::Agent, "alice").is_ok());
    let lock = s.handle_login_failed(t0 + secs(1), Role::Agent, "alice");
    assert_eq!(
        lock,
        Some(LockedOut {
            until: t0 + secs(301)
        })
    );
    assert!(
        s.check_lockout(t0 + secs(300), Role::Agent, "alice")
            .is_err()
    );
    assert!(
        s.check_lockout(t0 + secs(301), Role::Agent, "alice")
            .is_ok()
    );
    // Other names and the other role are not affected.
    assert!(s.check_lockout(t0, Role::Agent, "bob").is_ok());
    assert!(s.check_lockout(t0, Role::Supervisor, "alice").is_ok());
    // After the lock, the count starts again from zero.
    assert_eq!(
        s.handle_login_failed(t0 + secs(302), Role::Agent, "alice"),
        None
    );
}

#[test]
fn a_success_resets_the_failure_count() {
    let t0 = t();
    let mut s = Sessions::new(config());
    s.handle_login_failed(t0, Role::Agent, "alice");
    s.handle_login_failed(t0, Role::Agent, "alice");
    s.handle_login(t0, Role::Agent, "alice", "tok".into());
    s.handle_login_failed(t0, Role::Agent, "alice");
    s.handle_login_failed(t0, Role::Agent, "alice");
    assert!(s.check_lockout(t0, Role::Agent, "alice").is_ok());
}

#[test]
fn failure_counts_of_unknown_names_are_forgotten() {
    let t0 = t();
    let mut s = Sessions::new(config());
    for i in 0..100 {
        s.handle_login_failed(t0, Role::Agent, &format!("guess{i}"));
    }
    assert_eq!(s.poll_timeout(), Some(t0 + secs(300)));
    s.handle_timeout(t0 + secs(300));
    assert!(s.failures.is_empty());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn tokens_authenticate_until_they_expire_or_log_out() {
    let t0 = t();
    let mut s = Sessions::new(config());
    s.handle_login(t0, Role::Supervisor, "sue", "t1".into());
    let got = s.authenticate(t0 + secs(10), "t1").cloned();
    assert_eq!(
        got.map(|g| (g.login, g.role)),
        Some(("sue".into(), Role::Supervisor))
    );
    assert!(s.authenticate(t0, "nope").is_none());
    assert!(s.authenticate(t0 + secs(3600), "t1").is_none());
    s.handle_login(t0, Role::Agent, "alice", "t2".into());
    assert!(s.handle_logout("t2").is_some());
    assert!(s.authenticate(t0, "t2").is_none());
    assert!(s.handle_logout("t2").is_none());
}

#[test]
fn an_agent_without_a_stream_for_a_lease_is_reported_once() {
    let t0 = t();
    let mut s = Sessions::new(config());
    s.handle_login(t0, Role::Agent, "alice", "t".into());
    assert_eq!(s.poll_timeout(), Some(t0 + secs(60)));
    s.handle_timeout(t0 + secs(59));
    assert_eq!(s.poll_action(), None);
    s.handle_timeout(t0 + secs(60));
    assert_eq!(
        s.poll_action(),
        Some(SessionAction::ReportUnreachable("alice".into()))
    );
    s.handle_timeout(t0 + secs(600));
    assert_eq!(s.poll_action(), None, "reported once");
}

#[test]
fn an_open_stream_holds_the_lease_and_closing_the_last_one_restarts_it() {
    let t0 = t();
    let mut s = Sessions::new(config());
    s.handle_login(t0, Role::Agent, "alice", "t".into());
    s.handle_stream_opened(t0 + secs(5), "alice");
    s.handle_stream_opened(t0 + secs(6), "alice");
    assert_eq!(s.poll_timeout(), Some(t0 + secs(3600)), "only the token");
    s.handle_timeout(t0 + secs(500));
    assert_eq!(s.poll_action(), None);
    s.handle_stream_closed(t0 + secs(500), "alice");
    s.handle_timeout(t0 + secs(700));
    assert_eq!(s.poll_action(), None, "one stream still open");
    s.handle_stream_closed(t0 + secs(700), "alice");
    assert_eq!(s.poll_timeout(), Some(t0 + secs(760)));
    // Resumed within the lease: nothing reported.
    s.handle_stream_opened(t0 + secs(730), "alice");
    s.handle_timeout(t0 + secs(800));
    assert_eq!(s.poll_action(), None);
}

#[test]
fn a_stream_reopened_after_the_report_rearms_the_lease() {
    let t0 = t();
    let mut s = Sessions::new(config());
    s.handle_login(t0, Role::Agent, "alice", "t".into());
    s.handle_timeout(t0 + secs(60));
    assert!(s.poll_action().is_some());
    s.handle_stream_opened(t0 + secs(100), "alice");
    s.handle_stream_closed(t0 + secs(110), "alice");
    s.handle_timeout(t0 + secs(170));
    assert_eq!(
        s.poll_action(),
        Some(SessionAction::ReportUnreachable("alice".into()))
    );
}

#[test]
fn logging_out_ends_the_lease_and_supervisors_have_none() {
    let t0 = t();
    let mut s = Sessions::new(config());
    s.handle_login(t0, Role::Agent, "alice", "t".into());
    s.handle_login(t0, Role::Supervisor, "sue", "u".into());
    s.handle_logout("t");
    s.handle_timeout(t0 + secs(120));
    assert_eq!(s.poll_action(), None);
}

#[test]
fn zero_disables_lockout() {
    let t0 = t();
    let mut s = Sessions::new(SessionConfig {
        lockout_after: 0,
        ..config()
    });
    for _ in 0..50 {
        assert_eq!(s.handle_login_failed(t0, Role::Agent, "alice"), None);
    }
    assert!(s.check_lockout(t0, Role::Agent, "alice").is_ok());
}
