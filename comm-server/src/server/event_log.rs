//! The ACD event log writer: the ACD task hands each event over without waiting, and
//! this task writes them to the store in batches.
//!
//! The ACD loop must never wait on the database, so the hand-over is `try_send` on a
//! bounded channel: when the database falls behind by [`EVENT_LOG_CAPACITY`] events,
//! further events are dropped, counted (`comm_acd_events_dropped_total`) and logged,
//! rather than memory growing without bound. A failed batch is logged and dropped too:
//! retrying would hold up every later event behind a database that is down.
//!
//! The task ends when every handle is gone (the ACD task ended), after writing what it
//! still holds; the server waits for it, bounded, before closing the store.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::store::{AcdEventRecord, Store};

/// Events waiting to be written before new ones are dropped: a minute of a busy
/// center's events (agents change state several times per call), a few MB at most.
pub(super) const EVENT_LOG_CAPACITY: usize = 16_384;
/// Most events per transaction.
const BATCH: usize = 500;
/// Longest an event waits for its batch to fill before it is written anyway: short
/// enough that a report run just after a call sees it.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A handle on the writer; cloning is cheap.
#[derive(Clone)]
pub(super) struct EventLog {
    tx: mpsc::Sender<AcdEventRecord>,
    metrics: Arc<Metrics>,
}

impl EventLog {
    /// Starts the writer task.
    pub(super) fn spawn(store: Store, metrics: Arc<Metrics>) -> (EventLog, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(EVENT_LOG_CAPACITY);
        let task = tokio::spawn(write_batches(store, rx));
        (EventLog { tx, metrics }, task)
    }

    /// Queues one event for writing; never waits.
    pub(super) fn write(&self, record: AcdEventRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(record)) => {
                self.metrics.acd_event_dropped();
                tracing::warn!(kind = %record.kind, "ACD event log is behind; event dropped");
            }
            Err(TrySendError::Closed(record)) => {
                tracing::warn!(kind = %record.kind, "ACD event log writer has stopped; event dropped");
            }
        }
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<AcdEventRecord>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut open = true;
    while open {
        match rx.recv().await {
            Some(first) => batch.push(first),
            None => break,
        }
        let deadline = Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(r) => batch.push(r),
                    None => {
                        open = false;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if let Err(e) = store.insert_acd_events(&batch).await {
            tracing::error!(error = %e, events = batch.len(), "ACD events not written");
        }
        batch.clear();
    }
}
