//! Outbound campaigns: the pure parts first.
//!
//! - [`pacing`]: how many calls to place now (preview, progressive, predictive);
//! - [`compliance`]: do-not-call lists, calling hours in the contact's time zone, the
//!   rolling abandonment rate, retry rules;
//! - [`progress`]: what became of a dial, from the SIP final response;
//! - [`amd`]: answering-machine detection on the first seconds of audio;
//! - [`sim`]: a working day of a campaign, simulated with the real pacer;
//! - [`screen`]: may this contact be dialled now (do-not-call, attempts, hours);
//! - [`settings`]: the `[[campaign]]` config section, checked.
//!
//! The campaign driver (contact lists in the store, placing calls through a trunk,
//! answered calls as ACD work items) is built on these.

pub mod amd;
pub mod compliance;
pub mod pacing;
pub mod progress;
pub mod screen;
pub mod settings;
pub mod sim;

pub use compliance::{AbandonWindow, CallingHours, DoNotCall, RetryPolicy};
pub use pacing::{DialMode, Floor, Pacer, PredictiveParams, Stats};
pub use progress::Outcome;
