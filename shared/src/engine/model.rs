//! The engine's vocabulary: what a front door asks ([`AuthRequest`]) and what it gets back
//! ([`Outcome`]). Front doors translate to and from these; they never see VIP's wire format.

use std::net::IpAddr;
use std::sync::Arc;

use crate::engine::policy::LoginPolicy;
use crate::secret::Secret;

/// Which front door a login came through. The engine's decision does not depend on it; it is
/// recorded in logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontDoor {
    Radius,
    Pam,
}

impl FrontDoor {
    pub fn as_str(self) -> &'static str {
        match self {
            FrontDoor::Radius => "radius",
            FrontDoor::Pam => "pam",
        }
    }
}

/// Who is asking on the user's behalf.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub front_door: FrontDoor,
    /// The configured name of the RADIUS client, or the PAM service (`sshd`, `sudo`).
    pub name: String,
    /// The NAS address (RADIUS source / NAS-IP-Address); `None` for PAM.
    pub peer: Option<IpAddr>,
    /// NAS-Identifier, when the NAS sends one.
    pub nas_identifier: Option<String>,
    /// Calling-Station-Id (RADIUS) or PAM_RHOST: where the user comes from.
    pub remote: Option<String>,
    /// PAM_TTY, when known.
    pub tty: Option<String>,
    /// What identifies this login session at its client, when the front door can tell: the
    /// NAS's session attributes (NAS-Port, Calling-Station-Id, ...) or the PAM process, tty and
    /// remote host. Two requests join one push only when this is present and equal; `None`
    /// never joins anything.
    pub session: Option<String>,
}

/// One round of a login.
#[derive(Debug)]
pub struct AuthRequest {
    /// The user name as typed (VIP look-ups are case-insensitive).
    pub user: String,
    /// What the user typed, if anything. `None` and an empty secret are distinct only to the
    /// front door; the engine treats both as "nothing typed".
    pub secret: Option<Secret>,
    /// The sealed State of a previous round (RADIUS State attribute / PAM conversation).
    pub state: Option<Vec<u8>>,
    pub client: ClientInfo,
    /// The password mode and options chosen for this client / PAM service.
    pub policy: Arc<LoginPolicy>,
    /// PAM only: pam_unix, earlier in this PAM transaction, accepted the user's password (the
    /// first factor in-band enrollment needs). Always false for RADIUS.
    pub stack_password_checked: bool,
}

pub use vip_ipc::{Challenge, Factor, Reject, RejectReason};

/// The single answer to one round.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Accept(Accept),
    Reject(Reject),
    Challenge(Challenge),
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Accept {
    pub factor: Factor,
    pub credential_id: Option<String>,
    pub credential_type: Option<String>,
    /// VIP's authnId for this authentication, for audit trails.
    pub authn_id: Option<String>,
    /// True when the login was let through without a second factor because VIP could not be
    /// reached and the policy fails open.
    pub failed_open: bool,
    /// The upstream RADIUS server's reply attributes (first factor), for the Access-Accept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_attributes: Vec<crate::first_factor::RawAttribute>,
}

impl Outcome {
    /// `accept`, `reject` or `challenge`: for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Accept(_) => "accept",
            Outcome::Reject(_) => "reject",
            Outcome::Challenge(_) => "challenge",
        }
    }
}

/// The decision as the PAM socket carries it (no RADIUS reply attributes: a PAM policy has no
/// upstream RADIUS server).
impl From<Outcome> for vip_ipc::Outcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Accept(a) => vip_ipc::Outcome::Accept(vip_ipc::Accept {
                factor: a.factor,
                credential_id: a.credential_id,
                credential_type: a.credential_type,
                authn_id: a.authn_id,
                failed_open: a.failed_open,
            }),
            Outcome::Reject(r) => vip_ipc::Outcome::Reject(r),
            Outcome::Challenge(c) => vip_ipc::Outcome::Challenge(c),
        }
    }
}
