//! Voicemail on calls: drives the pure [`crate::voicemail`] dialogs, and owns their
//! files, their index rows and message-waiting NOTIFYs (RFC 3842).
//!
//! Files live under `data-dir/voicemail/`: `.tmp/` holds recordings in progress (the
//! media engine writes `<id>.wav.part` and renames it to `<id>.wav` when complete),
//! `<mailbox>/<id>.wav` the messages. A message is kept in this order: complete file
//! in `.tmp/`, renamed into the mailbox directory, then the index row inserted, then
//! the owner notified. [`reconcile`] at start-up repairs whatever a crash interrupted:
//! `.tmp/` is emptied, rows without files are deleted, valid files without rows are
//! listed (their name says when and from whom), unreadable ones removed.

use super::*;
use crate::store::VoicemailMessage;
use crate::voicemail::{
    Audio, Deposit, DepositAction, DepositSettings, Retrieval, RetrievalAction, message_id,
    parse_message_id, retrieval::Listing,
};
use std::path::{Path, PathBuf};

/// Voicemail play ids are offset by this (above the IVR's).
pub(super) const VOICEMAIL_PLAY_BASE: u64 = 1_000_000_000;
/// How long a finished call waits for its message file to be completed.
pub(super) const RECORDING_FLUSH: Duration = Duration::from_secs(5);
/// The subdirectory of recordings in progress.
const TEMP: &str = ".tmp";

/// What happened in a mailbox, for whoever listens (voicemail tasks in
/// `voicemail_work.rs`, email notification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoicemailEvent {
    /// A message is stored and listed.
    MessageLeft {
        mailbox: String,
        id: String,
        caller: String,
        duration_ms: i64,
    },
}

pub(super) fn voicemail_root(data_dir: &Path) -> PathBuf {
    data_dir.join("voicemail")
}

/// What start-up found and repaired.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Rows whose file was missing: deleted.
    pub rows_removed: usize,
    /// Complete files without a row: listed.
    pub files_listed: usize,
    /// Files that were not readable messages, and recordings in progress: removed.
    pub files_removed: usize,
}

/// Makes the index match the files (see the module docs). Runs before calls are taken.
pub async fn reconcile(store: &Store, data_dir: &Path, now_ms: i64) -> anyhow::Result<Reconciled> {
    let root = voicemail_root(data_dir);
    let mut done = Reconciled::default();
    let temp = root.join(TEMP);
    if temp.is_dir() {
        for entry in std::fs::read_dir(&temp).with_context(|| temp.display().to_string())? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(&path).with_context(|| path.display().to_string())?;
                done.files_removed += 1;
            }
        }
    }
    std::fs::create_dir_all(&temp).with_context(|| temp.display().to_string())?;
    let rows = store.all_voicemails().await?;
    for row in &rows {
        if !data_dir.join(&row.file).is_file() {
            tracing::warn!(id = %row.id, file = %row.file, "voicemail row without its file: removed");
            store.delete_voicemail(&row.id, now_ms).await?;
            done.rows_removed += 1;
        }
    }
    let listed: std::collections::HashSet<&str> = rows.iter().map(|r| r.file.as_str()).collect();
    for mailbox in std::fs::read_dir(&root).with_context(|| root.display().to_string())? {
        let dir = mailbox?.path();
        let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if !dir.is_dir() || name == TEMP {
            continue;
        }
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let relative = format!("voicemail/{name}/{file_name}");
            if listed.contains(relative.as_str()) || !path.is_file() {
                continue;
            }
            let parsed = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|_| path.extension().is_some_and(|e| e == "wav"))
                .and_then(|id| parse_message_id(id).map(|p| (id.to_string(), p)));
            let message = parsed.and_then(|(id, (created_at_ms, caller))| {
                Some(VoicemailMessage {
                    duration_ms: wav_duration(&path)?.as_millis() as i64,
                    id,
                    mailbox: name.clone(),
                    caller,
                    created_at_ms,
                    heard: false,
                    file: relative.clone(),
                })
            });
            match message {
                Some(m) => {
                    tracing::warn!(file = %relative, "voicemail file without its row: listed");
                    store.insert_voicemail(&m).await?;
                    done.files_listed += 1;
                }
                None => {
                    tracing::warn!(file = %relative, "not a readable voicemail message: removed");
                    std::fs::remove_file(&path).with_context(|| path.display().to_string())?;
                    done.files_removed += 1;
                }
            }
        }
    }
    Ok(done)
}

/// The length of a complete 8 kHz WAV; `None` when it does not read as one.
fn wav_duration(path: &Path) -> Option<Duration> {
    let reader = hound::WavReader::open(path).ok()?;
    let rate = reader.spec().sample_rate;
    (rate > 0).then(|| Duration::from_millis(u64::from(reader.duration()) * 1000 / u64::from(rate)))
}

/// A voicemail dialog on a call.
pub(super) enum VoicemailCall {
    Deposit {
        mailbox: String,
        caller: String,
        deposit: Deposit,
        /// The message id, once recording started.
        id: Option<String>,
    },
    Retrieval {
        mailbox: String,
        retrieval: Retrieval,
        /// Message id to its file, relative to the data directory.
        files: HashMap<String, String>,
        /// A caller's number the owner asked to call back, for the call task to dial.
        call_back: Option<String>,
    },
}

/// Where a route sends the call in voicemail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum VoicemailRoute {
    Deposit(String),
    Retrieval(String),
}

impl VoicemailCall {
    pub(super) async fn start(
        shared: &Shared,
        route: &VoicemailRoute,
        invite: &Request,
    ) -> Option<VoicemailCall> {
        match route {
            VoicemailRoute::Deposit(name) => {
                let m = shared.config.mailbox(name)?;
                let settings = DepositSettings {
                    greeting: m.greeting.clone(),
                    max_message: m.max_message.0,
                    min_message: m.min_message.0,
                    silence_level: m.silence_level,
                    silence_end: m.silence_end.0,
                    review: m.review,
                };
                Some(VoicemailCall::Deposit {
                    mailbox: name.clone(),
                    caller: invite
                        .headers
                        .get("From")
                        .and_then(registrar::user_of)
                        .unwrap_or_default(),
                    deposit: Deposit::new(settings),
                    id: None,
                })
            }
            VoicemailRoute::Retrieval(name) => {
                let m = shared.config.mailbox(name)?;
                let messages = match shared.store.voicemails(name).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(error = %e, "mailbox not readable");
                        return None;
                    }
                };
                let listings = messages
                    .iter()
                    .map(|m| Listing {
                        id: m.id.clone(),
                        caller: m.caller.clone(),
                        created_at_ms: m.created_at_ms,
                        heard: m.heard,
                    })
                    .collect();
                Some(VoicemailCall::Retrieval {
                    mailbox: name.clone(),
                    retrieval: Retrieval::new(&m.pin, listings, shared.config.server.zone()),
                    files: messages.into_iter().map(|m| (m.id, m.file)).collect(),
                    call_back: None,
                })
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            VoicemailCall::Deposit { deposit, .. } => deposit.poll_timeout(),
            VoicemailCall::Retrieval { retrieval, .. } => retrieval.poll_timeout(),
        }
        .map(Instant::from_std)
    }

    pub(super) fn handle_playback_finished(&mut self, id: u64) {
        match self {
            VoicemailCall::Deposit { deposit, .. } => deposit.handle_playback_finished(now(), id),
            VoicemailCall::Retrieval { retrieval, .. } => {
                retrieval.handle_playback_finished(now(), id)
            }
        }
    }

    pub(super) fn handle_digit(&mut self, digit: char) {
        match self {
            VoicemailCall::Deposit { deposit, .. } => deposit.handle_digit(now(), digit),
            VoicemailCall::Retrieval { retrieval, .. } => retrieval.handle_digit(now(), digit),
        }
    }

    pub(super) fn handle_timeout(&mut self) {
        match self {
            VoicemailCall::Deposit { deposit, .. } => deposit.handle_timeout(now()),
            VoicemailCall::Retrieval { retrieval, .. } => retrieval.handle_timeout(now()),
        }
    }

    pub(super) fn handle_silence(&mut self) {
        if let VoicemailCall::Deposit { deposit, .. } = self {
            deposit.handle_silence(now());
        }
    }

    pub(super) fn handle_caller_gone(&mut self) {
        match self {
            VoicemailCall::Deposit { deposit, .. } => deposit.handle_caller_gone(now()),
            VoicemailCall::Retrieval { retrieval, .. } => retrieval.handle_caller_gone(now()),
        }
    }

    /// The number the owner asked to call back, once.
    pub(super) fn take_call_back(&mut self) -> Option<String> {
        match self {
            VoicemailCall::Retrieval { call_back, .. } => call_back.take(),
            VoicemailCall::Deposit { .. } => None,
        }
    }

    /// The call back could not be placed or was not answered: back to the menu.
    pub(super) fn handle_call_back_failed(&mut self) {
        if let VoicemailCall::Retrieval { retrieval, .. } = self {
            retrieval.handle_call_back_failed(now());
        }
    }

    /// True when a recording's result is still to come.
    pub(super) fn awaits_recording(&self) -> bool {
        matches!(self, VoicemailCall::Deposit { deposit, .. } if deposit.awaits_recording())
    }

    /// The recording finished: its length, read back from the completed file.
    pub(super) fn handle_recorded(&mut self, result: &Result<PathBuf, String>) {
        if let VoicemailCall::Deposit { deposit, .. } = self {
            let length = match result {
                Ok(path) => wav_duration(path),
                Err(e) => {
                    tracing::warn!(error = %e, "voicemail recording failed");
                    None
                }
            };
            deposit.handle_recorded(now(), length);
        }
    }
}

/// Does what the dialog asks until it waits for something. `_cmd` is no longer used
/// (message-waiting NOTIFYs go through `mwi.rs`); it stays so the call task's many
/// call sites need no change while other work is merged.
pub(super) async fn drive_voicemail(
    shared: &Shared,
    vm: &mut VoicemailCall,
    media: &CallMedia,
    call: &mut Call,
    _cmd: &mpsc::UnboundedSender<Command>,
) {
    let data_dir = shared.config.server.data_dir.clone();
    loop {
        match vm {
            VoicemailCall::Deposit {
                mailbox,
                caller,
                deposit,
                id,
            } => {
                let Some(action) = deposit.poll_action() else {
                    return;
                };
                match action {
                    DepositAction::Play { id: play, audio } => {
                        // Review plays the take back from the temporary directory.
                        let take = |_: &str| {
                            id.as_ref().map(|id| {
                                voicemail_root(&data_dir)
                                    .join(TEMP)
                                    .join(format!("{id}.wav"))
                            })
                        };
                        media.play(VOICEMAIL_PLAY_BASE + play, prompts(shared, &audio, take))
                    }
                    DepositAction::StartRecording {
                        silence_level,
                        silence_end,
                    } => {
                        let new_id =
                            message_id(shared.clock.unix_ms(), &crate::sip::random_token(), caller);
                        let path = voicemail_root(&data_dir)
                            .join(TEMP)
                            .join(format!("{new_id}.wav"));
                        match media.record(path).await {
                            Ok(()) => {
                                media.command_caller(MediaCommand::DetectSilence {
                                    level: silence_level,
                                    after: silence_end,
                                });
                                *id = Some(new_id);
                                deposit.handle_recording_started(now());
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "voicemail recording did not start");
                                deposit.handle_recording_failed(now());
                            }
                        }
                    }
                    DepositAction::StopRecording => media.stop_recording(),
                    DepositAction::Store { duration } => {
                        if let Some(id) = id.take() {
                            store_message(shared, mailbox, caller, &id, duration).await;
                        }
                    }
                    DepositAction::Discard => {
                        if let Some(id) = id.take() {
                            let temp = voicemail_root(&data_dir)
                                .join(TEMP)
                                .join(format!("{id}.wav"));
                            // Absent when the recording failed; nothing else to do then.
                            let _ = std::fs::remove_file(temp);
                            tracing::info!(%id, "voicemail take discarded (too short or re-recorded)");
                        }
                    }
                    DepositAction::HangUp => call.hang_up_all(now(), "answered"),
                }
            }
            VoicemailCall::Retrieval {
                mailbox,
                retrieval,
                files,
                call_back,
            } => {
                let Some(action) = retrieval.poll_action() else {
                    return;
                };
                match action {
                    RetrievalAction::Play { id, audio } => {
                        let file = |m: &str| files.get(m).map(|f| data_dir.join(f));
                        media.play(VOICEMAIL_PLAY_BASE + id, prompts(shared, &audio, file))
                    }
                    RetrievalAction::StopPlayback => media.stop(),
                    RetrievalAction::MarkHeard(id) => {
                        if let Err(e) = shared.store.mark_voicemail_heard(&id).await {
                            tracing::warn!(error = %e, "voicemail message not marked heard");
                        }
                        notify_mwi(shared, mailbox).await;
                    }
                    RetrievalAction::Delete(id) => {
                        if let Some(f) = files.remove(&id) {
                            remove_message(shared, &id, &f).await;
                        }
                        notify_mwi(shared, mailbox).await;
                    }
                    RetrievalAction::CallBack(number) => *call_back = Some(number),
                    RetrievalAction::HangUp => call.hang_up_all(now(), "answered"),
                }
            }
        }
    }
}

/// The prompts (and message files) to play; missing ones are skipped with a warning.
/// `file` finds a message's file by id, or the take under review given "".
fn prompts(
    shared: &Shared,
    audio: &[Audio],
    file: impl Fn(&str) -> Option<PathBuf>,
) -> Vec<Prompt> {
    audio
        .iter()
        .filter_map(|a| {
            let loaded = match a {
                Audio::Prompt(name) => shared.prompts.prompt(name).map_err(|e| e.to_string()),
                Audio::Message(id) => match file(id) {
                    Some(path) => Prompt::load(&path, id).map_err(|e| e.to_string()),
                    None => Err(format!("no file for message {id}")),
                },
                Audio::Recording => match file("") {
                    Some(path) => Prompt::load(&path, "take").map_err(|e| e.to_string()),
                    None => Err("no take to play back".to_string()),
                },
            };
            loaded
                .map_err(|e| tracing::warn!(error = %e, "voicemail audio missing"))
                .ok()
        })
        .collect()
}

/// Moves a complete recording into its mailbox, lists it, tells the owner's phones.
async fn store_message(shared: &Shared, mailbox: &str, caller: &str, id: &str, duration: Duration) {
    let data_dir = &shared.config.server.data_dir;
    let root = voicemail_root(data_dir);
    let temp = root.join(TEMP).join(format!("{id}.wav"));
    let dir = root.join(mailbox);
    let target = dir.join(format!("{id}.wav"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(&temp, &target)) {
        tracing::error!(error = %e, file = %target.display(), "voicemail message not moved into its mailbox");
        return;
    }
    let message = VoicemailMessage {
        id: id.to_string(),
        mailbox: mailbox.to_string(),
        caller: parse_message_id(id).map(|(_, c)| c).unwrap_or_default(),
        duration_ms: duration.as_millis() as i64,
        created_at_ms: parse_message_id(id).map_or(0, |(t, _)| t),
        heard: false,
        file: format!("voicemail/{mailbox}/{id}.wav"),
    };
    if let Err(e) = shared.store.insert_voicemail(&message).await {
        // The file is in place: the next start-up lists it.
        tracing::error!(error = %e, "voicemail message not listed");
        return;
    }
    tracing::info!(%mailbox, %id, %caller, duration_ms = message.duration_ms, "voicemail left");
    let _ = shared.voicemail_events.send(VoicemailEvent::MessageLeft {
        mailbox: mailbox.to_string(),
        id: id.to_string(),
        caller: message.caller,
        duration_ms: message.duration_ms,
    });
    notify_mwi(shared, mailbox).await;
}

/// Deletes a message: its task leaves the queue, then the row, then the file (`file`
/// relative to the data directory). Row first: a crash between the two leaves a file
/// that start-up lists again, never a row without its audio. The caller tells MWI.
async fn remove_message(shared: &Shared, id: &str, file: &str) {
    let _ = shared.acd.send(AcdRequest::Voicemail(
        super::voicemail_work::VoicemailRequest::Deleted {
            message: id.to_string(),
        },
    ));
    match shared
        .store
        .delete_voicemail(id, shared.clock.unix_ms())
        .await
    {
        Ok(_) => {
            let path = shared.config.server.data_dir.join(file);
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(error = %e, %file, "voicemail file not removed");
            }
        }
        Err(e) => tracing::warn!(error = %e, %id, "voicemail message not deleted"),
    }
}

/// How often mailboxes with a `retention-days` are swept for expired messages.
pub(super) const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

/// Sweeps at start and every [`RETENTION_SWEEP`] while the server runs (the task ends
/// once `shared` is gone). "Now" is the injected clock's.
pub(super) fn spawn_retention(shared: &Arc<Shared>) {
    if shared
        .config
        .mailboxes
        .iter()
        .all(|m| m.retention_days.is_none())
    {
        return;
    }
    let shared = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RETENTION_SWEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            sweep_expired(&shared).await;
        }
    });
}

/// Deletes every message older than its mailbox's retention (file and row, its task
/// withdrawn) and updates the mailbox's message-waiting state.
pub(super) async fn sweep_expired(shared: &Shared) {
    let now_ms = shared.clock.unix_ms();
    for m in &shared.config.mailboxes {
        let Some(days) = m.retention_days else {
            continue;
        };
        let mailbox = m.name.get_ref();
        let cutoff = crate::voicemail::retention_cutoff(now_ms, days);
        let expired = match shared.store.voicemails_left_before(mailbox, cutoff).await {
            Ok(expired) => expired,
            Err(e) => {
                tracing::warn!(error = %e, %mailbox, "voicemail retention: mailbox not readable");
                continue;
            }
        };
        if expired.is_empty() {
            continue;
        }
        for message in &expired {
            remove_message(shared, &message.id, &message.file).await;
        }
        tracing::info!(%mailbox, removed = expired.len(), retention_days = days,
            "voicemail retention: expired messages deleted");
        notify_mwi(shared, mailbox).await;
    }
}

/// The mailbox's counts changed: the owner's phones and subscriptions hear of it
/// (`mwi.rs` sends the NOTIFYs).
pub(super) async fn notify_mwi(shared: &Shared, mailbox: &str) {
    let _ = shared.mwi.send(super::mwi::MwiInput::Changed {
        mailbox: mailbox.to_string(),
    });
}
