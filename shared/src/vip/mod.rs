//! The VIP User Services client: the only place that knows VIP's wire format.

mod config;

pub use config::{VipConfig, DEFAULT_AUTH_URL, DEFAULT_MANAGEMENT_URL, DEFAULT_QUERY_URL};
