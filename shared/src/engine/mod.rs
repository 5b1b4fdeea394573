//! The auth engine: one front-door-agnostic decision from what the user typed to an
//! [`Outcome`].

mod model;
pub mod policy;

use std::future::Future;
use std::pin::Pin;

pub use model::{
    Accept, AuthRequest, Challenge, ClientInfo, Factor, FrontDoor, Outcome, Reject, RejectReason,
};
pub use policy::{EmptyPassword, FailMode, LoginPolicy, OtpOperation, PasswordMode, PushMode};

/// What a front door calls. Implemented by the engine; front doors hold an
/// `Arc<dyn Authenticate>` so their own tests can drive them without VIP.
pub trait Authenticate: Send + Sync + 'static {
    /// Decide one round of a login. Never fails: every problem becomes a `Reject` (or an
    /// `Accept { failed_open: true }` when the policy fails open).
    fn authenticate(&self, req: AuthRequest) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>>;

    /// Whether `state` opens as a live State this engine issued (without consuming it). Front
    /// doors use it to serve continuing logins first under load.
    fn state_is_live(&self, state: &[u8]) -> bool;
}
