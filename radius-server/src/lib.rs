//! `vip-bridge`: the daemon that puts Symantec VIP second-factor checks behind RADIUS and PAM.
//!
//! - [`cli`]: the command line;
//! - [`config`]: the configuration file, validated;
//! - [`daemon`]: start-up, listeners, signals, shutdown;
//! - [`radius`]: the RADIUS front door;
//! - [`metrics_http`]: the `[metrics]` endpoint and the RADIUS counters as metrics;
//! - [`pam_door`]: the PAM front door (Unix socket for pam_vip.so);
//! - [`tools`]: `check-config` and `test-auth`; [`demo`]: `vip-bridge demo`;
//! - [`admin`]: `vip-bridge admin`, the help desk's commands against VIP's Management service;
//! - [`manpages`]: the man pages, rendered from the command line;
//! - [`error`]: the crate's error type.

// Tests may unwrap; the crate itself may not (workspace lint).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod manpages;
pub mod metrics_http;
pub mod pam_door;
pub mod radius;
pub mod tools;

pub use error::{Error, Result};
