//! The auth engine: one front-door-agnostic decision from what the user typed to an
//! [`Outcome`].

mod config;
mod model;
pub mod policy;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use config::EngineConfig;
pub use model::{
    Accept, AuthRequest, Challenge, ClientInfo, Factor, FrontDoor, Outcome, Reject, RejectReason,
};
pub use policy::{EmptyPassword, FailMode, LoginPolicy, OtpOperation, PasswordMode, PushMode};

use crate::config::CoreConfig;

/// What a front door calls. Implemented by [`Engine`]; front doors hold an
/// `Arc<dyn Authenticate>` so their own unit tests can drive them without VIP.
pub trait Authenticate: Send + Sync + 'static {
    /// Decide one round of a login. Never fails: every problem becomes a `Reject` (or an
    /// `Accept { failed_open: true }` when the policy fails open).
    fn authenticate(&self, req: AuthRequest) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>>;

    /// Whether `state` opens as a live State this engine issued (without consuming it). Front
    /// doors use it to serve continuing logins first under load.
    fn state_is_live(&self, state: &[u8]) -> bool;
}

/// Errors building the engine (bad key file, bad VIP client configuration).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine not implemented yet")]
    NotReady,
}

/// The engine. Cheap to share: hold it in an `Arc`.
pub struct Engine {
    _private: (),
}

impl Engine {
    /// Builds the engine and its VIP client from the core configuration.
    pub fn new(_core: &CoreConfig) -> Result<Arc<Engine>, EngineError> {
        Err(EngineError::NotReady)
    }
}

impl Authenticate for Engine {
    fn authenticate(&self, _req: AuthRequest) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        Box::pin(async {
            Outcome::Reject(Reject {
                reason: RejectReason::Unavailable,
                message: "not implemented".into(),
            })
        })
    }

    fn state_is_live(&self, _state: &[u8]) -> bool {
        false
    }
}
