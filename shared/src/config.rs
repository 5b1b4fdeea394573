//! Typed configuration of the auth core, and the loader every binary uses: errors name the
//! file, the line, the key and what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        let interval = self.vip.health_check_interval;
        if interval < std::time::Duration::from_secs(1)
            || interval > std::time::Duration::from_secs(3600)
        {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "vip.health_check_interval".into(),
                message: format!(
                    "{}: must be between 1s and 1h",
                    humantime::format_duration(interval)
                ),
            });
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
}

/// Reads and parses a TOML file into `T`. toml's own messages carry the line, column and key.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_toml(path, &text)
}

/// Parses TOML text; `path` names the source in errors.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}
