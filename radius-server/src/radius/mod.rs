//! The RADIUS front door: raw packet checks and reply building ([`packet`]), the client table
//! ([`clients`]), accounting ([`accounting`]), duplicate detection and the response cache ([`dedup`]), counters ([`stats`])
//! and the server loop ([`server`]).

pub mod accounting;
pub mod clients;
pub mod dedup;
pub mod packet;
pub mod server;
pub mod stats;

pub use server::RadiusServer;
pub use stats::Stats;
