//! New-voicemail e-mail: a mailbox with an `email` address gets each new message, its
//! recording attached, through the `[smtp]` relay.
//!
//! A listener on [`App::voicemail_events`] like any other: it runs apart from the call
//! that left the message, so a slow or failing relay never holds up a caller. A message
//! that cannot be mailed is logged; it stays in the mailbox either way.

use super::*;
use crate::mail::{MailAttachment, Mailer};

/// Mails every message left in a mailbox that has an `email` address, until the
/// server's event channel closes.
pub(super) async fn notify(
    mut events: tokio::sync::broadcast::Receiver<VoicemailEvent>,
    config: Arc<Config>,
    mailer: Mailer,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "voicemail e-mail fell behind; some messages not mailed"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let VoicemailEvent::MessageLeft {
            mailbox,
            id,
            caller,
            duration_ms,
        } = event;
        let Some(to) = config.mailbox(&mailbox).and_then(|m| m.email.clone()) else {
            continue;
        };
        let file = voicemail_root(&config.server.data_dir)
            .join(&mailbox)
            .join(format!("{id}.wav"));
        let bytes = match tokio::fs::read(&file).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, file = %file.display(), "voicemail e-mail: recording unreadable");
                continue;
            }
        };
        let caller = if caller.is_empty() {
            "an unknown caller"
        } else {
            caller.as_str()
        };
        let subject = format!("New voicemail in {mailbox} from {caller}");
        let body = format!(
            "A new message was left in the mailbox {mailbox}.\n\nFrom: {caller}\nLength: {} s\n\nThe recording is attached.\n",
            (duration_ms + 500) / 1000
        );
        let attachment = MailAttachment {
            filename: format!("{id}.wav"),
            content_type: "audio/wav".into(),
            bytes,
        };
        match mailer.send(&to, &subject, &body, &[attachment]).await {
            Ok(()) => tracing::info!(%mailbox, %id, "voicemail e-mailed"),
            Err(e) => tracing::error!(error = %e, %mailbox, %id, "voicemail e-mail not sent"),
        }
    }
}
