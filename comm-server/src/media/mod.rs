//! The media engine: everything a call leg hears, says and presses.
//!
//! Owns RTP and RTCP (RFC 3550) per call leg, G.711 audio, RFC 4733 and in-band
//! DTMF, SDP offer/answer for audio, prompt playback, music on hold, bridging two
//! legs and recording. It does not own SIP dialogs or call routing: the B2BUA decides *what*
//! a leg should hear and tells the leg's [`session::MediaSession`] by command.
//!
//! Every module here except [`driver`] (and [`recording`]'s file writer, and prompt
//! loading at startup) is pure: no sockets, no tasks, no clock reads. Time comes in
//! as `now`, packets come in as bytes, and packets go out through `poll_transmit()`;
//! the [`driver`] owns the UDP sockets and the one shared ticker (see `STYLE.md`,
//! habits 1-3). Addresses use `core::net` so the pure modules never import `std::net`.
//!
//! ```text
//!   UDP socket --bytes--> MediaSession::handle_rtp --+--> poll_action  (digits, timeouts)
//!   20 ms tick ---------> MediaSession::handle_tick  +--> poll_transmit (RTP to the peer)
//!   B2BUA commands -----> MediaSession::handle_command--> poll_frame   (bridged audio
//!                                                          to the other leg)
//! ```

pub mod driver;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod prompt;
pub mod recording;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod session;

/// G.711 and RFC 4733 telephone events run at 8 kHz (RFC 3551 section 4.5.14).
pub const SAMPLE_RATE: u32 = 8_000;

/// Default packetisation time: 20 ms, what every SIP phone and trunk sends by default.
pub const FRAME_DURATION: std::time::Duration = std::time::Duration::from_millis(20);

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// An arbitrary origin for tests' virtual time: only differences from it matter, so
/// this is the one ambient clock read the media tests allow themselves.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn test_epoch() -> std::time::Instant {
    std::time::Instant::now()
}

#[cfg(test)]
mod purity {
    /// STYLE.md habit 1: the media cores import no async runtime and no sockets. Only
    /// the driver may; `core::net` addresses are plain values and allowed.
    #[test]
    fn cores_import_no_tokio_and_no_std_net() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/media");
        for core in [
            "dtmf",
            "g711",
            "jitter",
            "prompt",
            "recording",
            "rtp",
            "sdp",
            "session",
        ] {
            let source = std::fs::read_to_string(dir.join(format!("{core}.rs"))).unwrap();
            for banned in ["tokio::", "std::net", "Instant::now", "SystemTime"] {
                assert!(!source.contains(banned), "media::{core} mentions {banned}");
            }
        }
    }
}
