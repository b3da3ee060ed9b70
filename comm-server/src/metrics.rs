//! Live counters and gauges for Prometheus, rendered in its text exposition format
//! (version 0.0.4) at `/metrics`.
//!
//! Owns the figures and their names; must not own how they are collected: drivers
//! bump the atomics (the SIP endpoint driver, call tasks, the ACD driver), and nothing
//! here reads a clock. A handful of atomics and one snapshot under a mutex rather than
//! the `prometheus-client` crate: the set of series is small and fixed, the format is
//! a few lines, and the ACD figures are a snapshot the ACD task replaces whole after
//! each input, which a registry of independent gauges would tear.
//!
//! Rates are the scraper's business: calls per second is `rate(comm_calls_total[1m])`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Agent statuses, as metric labels.
pub const STATUSES: [&str; 3] = ["logged_out", "available", "on_break"];
/// Agent states, as metric labels.
pub const STATES: [&str; 6] = [
    "idle", "resting", "ringing", "reserved", "on_call", "wrap_up",
];

/// The ACD's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcdSnapshot {
    /// Per queue: name, callers waiting, longest wait in seconds.
    pub queues: Vec<(String, u64, f64)>,
    /// Agents per `[status][state]`, indexed as [`STATUSES`] and [`STATES`].
    pub agents: [[u64; 6]; 3],
}

/// Every live figure the server exposes. Shared as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    calls_in_progress: AtomicU64,
    calls_total: AtomicU64,
    /// SIP responses sent, by class 1xx..6xx (index 0..6).
    sip_responses: [AtomicU64; 6],
    rtp_packets_received: AtomicU64,
    rtp_packets_sent: AtomicU64,
    rtp_packets_lost: AtomicU64,
    /// Sum of ended streams' interarrival jitter, microseconds, and how many streams.
    rtp_jitter_us_sum: AtomicU64,
    rtp_streams: AtomicU64,
    script_actions_failed: AtomicU64,
    acd_events_dropped: AtomicU64,
    crm_lookups_failed: AtomicU64,
    acd: Mutex<AcdSnapshot>,
    /// Listeners are serving and intake is open (false before start and while draining).
    serving: AtomicBool,
}

impl Metrics {
    /// A call task started; `in_progress` is the count now. It is not a call yet: an
    /// INVITE answered with a challenge never becomes one ([`Metrics::call_accepted`]).
    pub fn call_started(&self, in_progress: usize) {
        self.set_calls_in_progress(in_progress);
    }

    /// A call passed authentication and has a route (or is one we placed): what
    /// `comm_calls_total` counts.
    pub fn call_accepted(&self) {
        self.calls_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_calls_in_progress(&self, n: usize) {
        self.calls_in_progress.store(n as u64, Ordering::Relaxed);
    }

    /// Counts `bytes` if they are a SIP response (retransmissions included: they are
    /// sent too).
    pub fn sip_sent(&self, bytes: &[u8]) {
        if let Some(rest) = bytes.strip_prefix(b"SIP/2.0 ")
            && let Some(&digit) = rest.first()
            && (b'1'..=b'6').contains(&digit)
        {
            self.sip_responses[usize::from(digit - b'1')].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One RTP stream of an ended call: its totals and its jitter estimate.
    pub fn rtp_stream_ended(&self, received: u64, sent: u64, lost: u64, jitter_ms: f64) {
        self.rtp_packets_received
            .fetch_add(received, Ordering::Relaxed);
        self.rtp_packets_sent.fetch_add(sent, Ordering::Relaxed);
        self.rtp_packets_lost.fetch_add(lost, Ordering::Relaxed);
        let us = (jitter_ms.max(0.0) * 1000.0).round() as u64;
        self.rtp_jitter_us_sum.fetch_add(us, Ordering::Relaxed);
        self.rtp_streams.fetch_add(1, Ordering::Relaxed);
    }

    pub fn script_action_failed(&self) {
        self.script_actions_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// An external CRM lookup failed or timed out (see [`crate::crm`]).
    pub fn crm_lookup_failed(&self) {
        self.crm_lookups_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// An ACD event could not be queued for the durable log.
    pub fn acd_event_dropped(&self) {
        self.acd_events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_acd(&self, snapshot: AcdSnapshot) {
        if let Ok(mut acd) = self.acd.lock() {
            *acd = snapshot;
        }
    }

    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (suffix_labels, value) in samples {
                let _ = writeln!(out, "{name}{suffix_labels} {value}");
            }
        };
        let one = |v: u64| vec![(String::new(), v.to_string())];
        family(
            "comm_calls_in_progress",
            "gauge",
            "Calls the server is handling now.",
            &one(get(&self.calls_in_progress)),
        );
        family(
            "comm_calls_total",
            "counter",
            "Calls since the server started: inbound INVITEs past authentication (a challenged INVITE and its retry with credentials count once) and calls the server placed.",
            &one(get(&self.calls_total)),
        );
        let classes: Vec<(String, String)> = (0..6)
            .map(|i| {
                (
                    format!("{{class=\"{}xx\"}}", i + 1),
                    get(&self.sip_responses[i]).to_string(),
                )
            })
            .collect();
        family(
            "comm_sip_responses_sent_total",
            "counter",
            "SIP responses sent, retransmissions included, by status class.",
            &classes,
        );
        let acd = self.acd.lock().map(|a| a.clone()).unwrap_or_default();
        let label = |q: &str| {
            q.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let waiting: Vec<(String, String)> = acd
            .queues
            .iter()
            .map(|(q, n, _)| (format!("{{queue=\"{}\"}}", label(q)), n.to_string()))
            .collect();
        family(
            "comm_acd_queue_waiting",
            "gauge",
            "Callers waiting in the queue (not ringing an agent).",
            &waiting,
        );
        let longest: Vec<(String, String)> = acd
            .queues
            .iter()
            .map(|(q, _, w)| (format!("{{queue=\"{}\"}}", label(q)), format!("{w}")))
            .collect();
        family(
            "comm_acd_queue_longest_wait_seconds",
            "gauge",
            "How long the queue's oldest waiting caller has waited.",
            &longest,
        );
        let mut agents = Vec::new();
        for (s, status) in STATUSES.iter().enumerate() {
            for (t, state) in STATES.iter().enumerate() {
                agents.push((
                    format!("{{status=\"{status}\",state=\"{state}\"}}"),
                    acd.agents[s][t].to_string(),
                ));
            }
        }
        family(
            "comm_acd_agents",
            "gauge",
            "Agents by status (what they chose) and state (what the ACD is doing with them).",
            &agents,
        );
        family(
            "comm_acd_events_dropped_total",
            "counter",
            "ACD events not written to the durable log because its queue was full.",
            &one(get(&self.acd_events_dropped)),
        );
        family(
            "comm_rtp_packets_received_total",
            "counter",
            "RTP packets received on streams of ended calls.",
            &one(get(&self.rtp_packets_received)),
        );
        family(
            "comm_rtp_packets_sent_total",
            "counter",
            "RTP packets sent on streams of ended calls.",
            &one(get(&self.rtp_packets_sent)),
        );
        family(
            "comm_rtp_packets_lost_total",
            "counter",
            "RTP packets lost (RFC 3550 §6.4.1 cumulative loss) on streams of ended calls.",
            &one(get(&self.rtp_packets_lost)),
        );
        family(
            "comm_rtp_jitter_seconds",
            "summary",
            "Interarrival jitter (RFC 3550 §6.4.1) of ended calls' streams, at their end.",
            &[
                (
                    "_sum".into(),
                    format!("{}", get(&self.rtp_jitter_us_sum) as f64 / 1e6),
                ),
                ("_count".into(), get(&self.rtp_streams).to_string()),
            ],
        );
        family(
            "comm_script_actions_failed_total",
            "counter",
            "Dialog-script actions and routes the server could not carry out.",
            &one(get(&self.script_actions_failed)),
        );
        family(
            "comm_crm_lookups_failed_total",
            "counter",
            "External CRM lookups that failed or timed out; the screen pop went out without them.",
            &one(get(&self.crm_lookups_failed)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_type_and_labels() {
        let m = Metrics::default();
        m.call_started(1);
        m.call_started(2);
        m.call_accepted();
        m.call_accepted();
        m.set_calls_in_progress(1);
        m.sip_sent(b"SIP/2.0 200 OK\r\n");
        m.sip_sent(b"SIP/2.0 486 Busy Here\r\n");
        m.sip_sent(b"INVITE sip:x SIP/2.0\r\n");
        m.sip_sent(b"SIP/2.0 ");
        m.rtp_stream_ended(100, 90, 3, 2.5);
        m.rtp_stream_ended(10, 9, 0, 0.5);
        m.script_action_failed();
        let mut acd = AcdSnapshot {
            queues: vec![("sup\"port".into(), 2, 12.5)],
            ..AcdSnapshot::default()
        };
        acd.agents[1][0] = 3;
        m.set_acd(acd);
        let text = m.render();
        for line in [
            "# TYPE comm_calls_total counter",
            "comm_calls_total 2",
            "comm_calls_in_progress 1",
            "comm_sip_responses_sent_total{class=\"2xx\"} 1",
            "comm_sip_responses_sent_total{class=\"4xx\"} 1",
            "comm_sip_responses_sent_total{class=\"1xx\"} 0",
            "comm_acd_queue_waiting{queue=\"sup\\\"port\"} 2",
            "comm_acd_queue_longest_wait_seconds{queue=\"sup\\\"port\"} 12.5",
            "comm_acd_agents{status=\"available\",state=\"idle\"} 3",
            "comm_acd_agents{status=\"on_break\",state=\"wrap_up\"} 0",
            "comm_rtp_packets_received_total 110",
            "comm_rtp_packets_sent_total 99",
            "comm_rtp_packets_lost_total 3",
            "# TYPE comm_rtp_jitter_seconds summary",
            "comm_rtp_jitter_seconds_sum 0.003",
            "comm_rtp_jitter_seconds_count 2",
            "comm_script_actions_failed_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
    }
}
