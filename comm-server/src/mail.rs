//! Outgoing e-mail over SMTP: dialog scripts' `<email>` actions and new-voicemail
//! notifications (the message's WAV attached).
//!
//! Owns the `[smtp]` configuration section, building the MIME message and one SMTP
//! exchange per message (lettre's tokio transport). Must not own when mail is sent:
//! [`crate::script_actions`] and the voicemail notifier in `server` decide that.
//!
//! Plain SMTP only: `starttls = true` is refused when the config loads because this
//! build carries no TLS stack, rather than sending credentials in clear text.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::config::HumanDuration;

/// Default SMTP port: 25, the relay port a local MTA (mail transfer agent) listens on.
pub const DEFAULT_SMTP_PORT: u16 = 25;
/// Default time for one whole SMTP exchange.
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// `[smtp]`: where e-mail goes. Without this section e-mail actions fail (and run the
/// script's `on-error`) and mailboxes' `email` addresses get nothing.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmtpSection {
    /// The relay's host name or address.
    pub host: String,
    /// Default 25.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The sender, `"Call center <noreply@example.com>"` or a bare address.
    pub from: String,
    /// Upgrade the connection with STARTTLS (RFC 3207). Default false; true is
    /// refused by this build (no TLS stack) so credentials never go out in clear.
    #[serde(default)]
    pub starttls: bool,
    /// SMTP AUTH user name; with `password`, or neither.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// How long one message may take to hand over. Default "10s".
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_port() -> u16 {
    DEFAULT_SMTP_PORT
}
fn default_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_SMTP_TIMEOUT)
}

impl std::fmt::Debug for SmtpSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl SmtpSection {
    /// What is wrong with the section, checked when the config loads.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.starttls {
            return Some((
                "starttls",
                "this build has no TLS support; use a local relay on plain SMTP".into(),
            ));
        }
        if self.from.parse::<Mailbox>().is_err() {
            return Some(("from", format!("{:?} is not an e-mail address", self.from)));
        }
        if self.username.is_some() != self.password.is_some() {
            return Some((
                "username",
                "give both username and password, or neither".into(),
            ));
        }
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("no [smtp] section: e-mail is not configured")]
    NotConfigured,
    #[error("{0:?} is not an e-mail address")]
    BadAddress(String),
    #[error("message not built: {0}")]
    Build(String),
    #[error("SMTP: {0}")]
    Smtp(String),
}

/// A file attached to a message.
#[derive(Debug, Clone)]
pub struct MailAttachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Sends mail through the configured relay; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(smtp: &SmtpSection) -> Result<Mailer, MailError> {
        if let Some((key, message)) = smtp.problem() {
            return Err(MailError::Build(format!("smtp.{key}: {message}")));
        }
        let from = smtp
            .from
            .parse()
            .map_err(|_| MailError::BadAddress(smtp.from.clone()))?;
        // Plain SMTP on purpose: see the module docs (STARTTLS is refused at load).
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(smtp.timeout.0));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one plain-text message, with attachments if any.
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        attachments: &[MailAttachment],
    ) -> Result<(), MailError> {
        let to: Mailbox = to
            .trim()
            .parse()
            .map_err(|_| MailError::BadAddress(to.into()))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject);
        let message = if attachments.is_empty() {
            builder
                .header(ContentType::TEXT_PLAIN)
                .body(body.to_owned())
        } else {
            let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(body.to_owned()));
            for a in attachments {
                let kind = ContentType::parse(&a.content_type)
                    .map_err(|e| MailError::Build(format!("{}: {e}", a.content_type)))?;
                parts = parts
                    .singlepart(Attachment::new(a.filename.clone()).body(a.bytes.clone(), kind));
            }
            builder.multipart(parts)
        }
        .map_err(|e| MailError::Build(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| MailError::Smtp(e.to_string()))?;
        Ok(())
    }
}
