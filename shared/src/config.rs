//! Typed configuration of the auth core, and the loader every binary uses: errors name the
//! file, the line, the key and what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::engine::{EngineConfig, LoginPolicy};
use crate::vip::VipConfig;

/// The sections of the config file the core reads. Binaries embed these in their own
/// top-level struct (`vip`, `engine`, `policies`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    pub vip: VipConfig,
    pub engine: EngineConfig,
    /// Named login policies; RADIUS clients and PAM services refer to them by name.
    /// `default` always exists (built-in defaults unless configured).
    pub policies: BTreeMap<String, LoginPolicy>,
}

/// A configuration problem: which file, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl CoreConfig {
    /// The policy called `name`; `default` falls back to the built-in defaults.
    pub fn policy(&self, name: &str) -> Option<Arc<LoginPolicy>> {
        match self.policies.get(name) {
            Some(p) => Some(Arc::new(p.clone())),
            None if name == "default" => Some(Arc::new(LoginPolicy::default())),
            None => None,
        }
    }

    /// What the configuration gives up, one line each, naming the key: logged as warnings
    /// when the daemon starts and printed by `check-config`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, p) in &self.policies {
            for w in p.warnings() {
                out.push(format!("policies.{name}: {w}"));
            }
        }
        out
    }

    /// Checks what serde cannot; `path` is only used in messages.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        for (key, value, (min, max)) in self.durations() {
            check_duration(path, &key, value, min, max)?;
        }
        for (name, p) in &self.policies {
            p.validate().map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                key: format!("policies.{name}"),
                message,
            })?;
        }
        Ok(())
    }

    /// Every duration key of `[vip]` and `[engine]` with its value and allowed range.
    /// (`policies.*.push_timeout` is bounded by `LoginPolicy::validate`.)
    fn durations(&self) -> Vec<(String, Duration, (Duration, Duration))> {
        let vip = &self.vip;
        let engine = &self.engine;
        let throttle = &engine.throttle;
        let mut out = vec![
            ("vip.timeout".to_owned(), vip.timeout, bounds::VIP_TIMEOUT),
            (
                "vip.health_check_interval".to_owned(),
                vip.health_check_interval,
                bounds::HEALTH_CHECK_INTERVAL,
            ),
            (
                "engine.state_ttl".to_owned(),
                engine.state_ttl,
                bounds::STATE_TTL,
            ),
            (
                "engine.poll_interval".to_owned(),
                engine.poll_interval,
                bounds::POLL_INTERVAL,
            ),
            (
                "engine.user_info_ttl".to_owned(),
                engine.user_info_ttl,
                bounds::USER_INFO_TTL,
            ),
        ];
        for (name, limit) in [
            ("push_per_user", throttle.push_per_user),
            ("codes_per_user", throttle.codes_per_user),
            ("requests_per_client", throttle.requests_per_client),
        ] {
            out.push((
                format!("engine.throttle.{name}.per"),
                limit.per,
                bounds::THROTTLE_PER,
            ));
        }
        out
    }
}

/// The allowed range (inclusive) of each duration key, checked when the file is loaded so an
/// absurd value is a configuration error naming the key, never an overflow at run time.
pub mod bounds {
    use std::time::Duration;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// `vip.timeout`: one VIP call, connect to last byte.
    pub const VIP_TIMEOUT: (Duration, Duration) = (ms(100), s(5 * 60));
    /// `vip.health_check_interval`.
    pub const HEALTH_CHECK_INTERVAL: (Duration, Duration) = (s(1), s(3600));
    /// `engine.state_ttl`: how long a Challenge stays answerable.
    pub const STATE_TTL: (Duration, Duration) = (s(10), s(3600));
    /// `engine.poll_interval`: between pollPushStatus calls (push_timeout is 5s to 10m).
    pub const POLL_INTERVAL: (Duration, Duration) = (ms(100), s(60));
    /// `engine.user_info_ttl`: 0s caches nothing.
    pub const USER_INFO_TTL: (Duration, Duration) = (Duration::ZERO, s(3600));
    /// `engine.throttle.*.per`: the window of a rate limit.
    pub const THROTTLE_PER: (Duration, Duration) = (s(1), s(24 * 3600));
}

/// `Err` naming the file and `key` unless `min <= value <= max`.
pub fn check_duration(
    path: &Path,
    key: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        message: format!(
            "{}: must be between {} and {}",
            humantime::format_duration(value),
            humantime::format_duration(min),
            humantime::format_duration(max)
        ),
    })
}

/// Reads a whole file of at most `max` bytes into a zeroizing buffer; a longer one (or
/// `/dev/zero` named by mistake) is an error, not an allocation without end.
pub fn read_at_most(path: &Path, max: usize) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(max.min(64 * 1024) + 1));
    file.take(max as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {max} bytes"),
        ));
    }
    Ok(buf)
}

/// Configuration files larger than this are refused.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Reads and parses a TOML file into `T`. toml's own messages carry the line, column and key.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let raw = read_at_most(path, MAX_CONFIG_BYTES).map_err(read)?;
    let text = std::str::from_utf8(&raw).map_err(|e| {
        read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8: {e}"),
        ))
    })?;
    parse_toml(path, text)
}

/// Parses TOML text; `path` names the source in errors.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_up_to_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![b'x'; 100]).unwrap();
        assert_eq!(read_at_most(&p, 100).unwrap().len(), 100);
        assert!(read_at_most(&p, 99).is_err());
        // A device that never ends is refused, not read until memory runs out.
        let e = read_at_most(Path::new("/dev/zero"), 4096).unwrap_err();
        assert!(e.to_string().contains("longer than 4096"), "{e}");
    }

    #[test]
    fn check_duration_is_inclusive_and_names_file_key_and_range() {
        let p = Path::new("/etc/x.toml");
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(3600));
        assert!(check_duration(p, "k", min, min, max).is_ok());
        assert!(check_duration(p, "k", max, min, max).is_ok());
        let e = check_duration(p, "a.b", max + Duration::from_nanos(1), min, max)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/x.toml: a.b: "), "{e}");
        assert!(e.ends_with("must be between 1s and 1h"), "{e}");
        assert!(check_duration(p, "k", Duration::ZERO, min, max).is_err());
    }

    #[test]
    fn every_core_duration_is_bounded() {
        // About 3 × 10^16 s: `Instant + d` would panic.
        let absurd = Duration::from_secs(31_557_600 * 1_000_000_000);
        let p = Path::new("c.toml");
        CoreConfig::default().validate(p).unwrap();
        type Set = fn(&mut CoreConfig, Duration);
        let cases: Vec<(&str, Set)> = vec![
            ("vip.timeout", |c, d| c.vip.timeout = d),
            ("vip.health_check_interval", |c, d| {
                c.vip.health_check_interval = d
            }),
            ("engine.state_ttl", |c, d| c.engine.state_ttl = d),
            ("engine.poll_interval", |c, d| c.engine.poll_interval = d),
            ("engine.user_info_ttl", |c, d| c.engine.user_info_ttl = d),
            ("engine.throttle.push_per_user.per", |c, d| {
                c.engine.throttle.push_per_user.per = d
            }),
            ("engine.throttle.codes_per_user.per", |c, d| {
                c.engine.throttle.codes_per_user.per = d
            }),
            ("engine.throttle.requests_per_client.per", |c, d| {
                c.engine.throttle.requests_per_client.per = d
            }),
        ];
        assert_eq!(cases.len(), CoreConfig::default().durations().len());
        for (key, set) in cases {
            let mut c = CoreConfig::default();
            set(&mut c, absurd);
            let e = c.validate(p).unwrap_err().to_string();
            assert!(e.starts_with(&format!("c.toml: {key}: ")), "{e}");
            assert!(e.contains("must be between"), "{e}");
            if key != "engine.user_info_ttl" {
                let mut c = CoreConfig::default();
                set(&mut c, Duration::ZERO);
                let e = c.validate(p).unwrap_err().to_string();
                assert!(e.starts_with(&format!("c.toml: {key}: ")), "{e}");
            }
        }
    }
}
