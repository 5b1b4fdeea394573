//! Keyed rate limits (governor): push starts per user, code attempts per user, requests per client.

use std::time::Duration;

use serde::Deserialize;

/// `count` events per `per` window, e.g. `{ count = 3, per = "5m" }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub count: u32,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Pushes started per user (stops push bombing). VIP itself locks push after >5 an hour.
    pub push_per_user: RateLimit,
    /// Security-code attempts per user. Refills steadily, so an attacker cannot lock a real user
    /// out of code entry for longer than one refill interval.
    pub codes_per_user: RateLimit,
    /// Requests per RADIUS client / PAM service.
    pub requests_per_client: RateLimit,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            push_per_user: RateLimit { count: 3, per: Duration::from_secs(300) },
            codes_per_user: RateLimit { count: 10, per: Duration::from_secs(300) },
            requests_per_client: RateLimit { count: 2000, per: Duration::from_secs(1) },
        }
    }
}
