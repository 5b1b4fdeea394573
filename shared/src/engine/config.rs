//! Engine-wide settings (`[engine]` in the config file).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::throttle::ThrottleConfig;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// File holding the 32-byte State sealing key (64 hex characters). Instances that share it can
    /// continue each other's logins. Without it a random key is made at start (no fail-over).
    pub state_key_file: Option<PathBuf>,
    /// How long a Challenge (code, menu, SMS) stays answerable.
    #[serde(with = "humantime_serde")]
    pub state_ttl: Duration,
    /// Interval between pollPushStatus calls for one pending push.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long getUserInfo answers are cached (challenge menus, SMS/voice numbers).
    #[serde(with = "humantime_serde")]
    pub user_info_ttl: Duration,
    /// Rate limits (`[engine.throttle]`). The code limit defaults to 5 per 10 minutes because
    /// VIP locks a credential after 10 consecutive bad codes: a stranger's burst must stay
    /// below that, and a sustained attack is slowed to one code per 2 minutes and counted in
    /// the throttle metric (see [`ThrottleConfig::codes_per_user`]).
    pub throttle: ThrottleConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            state_key_file: None,
            state_ttl: Duration::from_secs(180),
            poll_interval: Duration::from_secs(3),
            user_info_ttl: Duration::from_secs(60),
            throttle: ThrottleConfig::default(),
        }
    }
}
