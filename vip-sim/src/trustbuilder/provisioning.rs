//! The provisioning SOAP API (seed 003): `POST /v2/services/ConsoleAdmin`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::state::TbState;
use crate::server::{respond, Limits, ResetConnection, Resp};

/// The endpoint's path.
pub(crate) const PATH: &str = "/v2/services/ConsoleAdmin";

pub(crate) async fn handle(
    _req: Request<Incoming>,
    _st: &TbState,
    _limits: Limits,
) -> Result<Resp, ResetConnection> {
    Ok(respond(StatusCode::NOT_FOUND, "text/plain", "not yet\n"))
}
