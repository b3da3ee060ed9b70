//! The call-center communication server: one process that every customer call passes
//! through. Protocol and policy live in pure state machines (no sockets, no clocks, no
//! tasks); thin async drivers own the I/O. See `../shared/STYLE.md` for the house style.

pub mod acd;
pub mod call;
pub mod campaigns;
pub mod config;
pub mod contact_csv;
pub mod crm;
pub mod customer_csv;
pub mod http_client;
pub mod ivr;
pub mod mail;
pub mod media;
pub mod metrics;
pub mod phone;
pub mod registrar;
pub mod reports;
pub mod script_actions;
pub mod server;
pub mod sip;
pub mod store;
pub mod time;
pub mod tls;
pub mod voicemail;
pub mod web;
