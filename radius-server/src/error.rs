//! The crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

use vip_core::config::{BuildError, ConfigError};
use vip_core::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad configuration: the message names the file, the key and the problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the auth engine: {0}")]
    Engine(#[from] BuildError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the ready file {path}: {source}")]
    ReadyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
    #[error("bad log settings: {0}")]
    Logging(String),
    #[error("the PAM door stopped: {0}")]
    PamDoor(std::io::Error),
    /// `check-config` / `test-auth` found a problem (the message says which).
    #[error("{0}")]
    Check(String),
    /// VIP's errors name VIP (or the `vip.*` key) themselves.
    #[error(transparent)]
    Vip(#[from] vip_core::vip::VipError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("demo: {0}")]
    Demo(String),
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        Error::Engine(BuildError::Engine(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_errors_are_not_prefixed_twice() {
        let e = Error::from(vip_core::vip::VipError::Unreachable {
            url: "https://vip.example/q".into(),
            cause: "connection refused".into(),
            request_id: String::new(),
        });
        assert_eq!(
            e.to_string(),
            "VIP unreachable at https://vip.example/q: connection refused"
        );
    }
}
