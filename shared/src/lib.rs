//! `vip-core`: the auth core shared by vip-bridge's front doors (RADIUS, PAM).
//!
//! One module per concern (see DESIGN.md):
//! - [`vip`]: the VIP User Services client (the only place that knows VIP's wire format);
//! - [`engine`]: the decision, from what the user typed to Accept, Reject or Challenge;
//! - [`first_factor`]: the directory password before the second factor (LDAP / Active
//!   Directory, an upstream RADIUS server), each the only place its wire format lives;
//! - [`challenge`]: sealed, expiring, single-use State tokens;
//! - [`request_id`]: VIP requestId generation;
//! - [`throttle`]: governor limiters and the lockout guard used by the engine;
//! - [`metrics`]: Prometheus metrics of logins and VIP calls;
//! - [`log_limit`], [`log_text`]: log lines a stranger can trigger, rate-limited and escaped;
//! - [`config`]: typed configuration of the core (it composes the engine's, the VIP
//!   client's and the directories' sections, and builds the engine from them);
//! - [`files`]: bounded, zeroizing reads of the files a configuration names;
//! - [`secret`]: a zeroizing, never-printed string for passwords, codes and PINs.

pub mod challenge;
pub mod config;
pub mod engine;
pub mod files;
pub mod first_factor;
pub mod https;
pub mod log_limit;
pub mod log_text;
pub mod metrics;
pub mod request_id;
pub mod secret;
pub mod store;
pub mod throttle;
pub mod trustbuilder;
pub mod vip;
