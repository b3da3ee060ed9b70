//! SIP signalling (RFC 3261) behind our own types.
//!
//! The rest of the server speaks [`Request`], [`Response`] and the typed views in
//! [`header`]; rsipstack (pinned with `=`) is used only inside this module, for URI and
//! header grammar. The sockets are in `crate::server`. Layers, bottom up:
//!
//! ```text
//!   message   (framing, start line, header fields)        -- pure
//!   endpoint  (RFC 3261 §17 transactions, timers)         -- pure state machine
//!   digest    (RFC 7616/8760 challenges and credentials)  -- pure
//! ```

pub mod digest;
pub mod endpoint;
pub mod header;
pub mod message;

pub use header::{CSeq, Contact, NameAddr, Uri, Via};
pub use message::{Headers, Message, Method, Rejection, Request, Response};

/// Methods this server implements, for `Allow` (RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE, SUBSCRIBE";

/// A fresh random token for tags, branches and Call-IDs (64 bits, hex).
pub fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}
