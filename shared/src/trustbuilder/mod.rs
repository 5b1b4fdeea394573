//! The TrustBuilder MFA (formerly inWebo) client: the only place that knows TrustBuilder's wire
//! format. A second MFA backend beside [`crate::vip`], over the same HTTPS transport
//! ([`crate::https`]: mutual TLS with the "Web services API access" certificate, kept-alive
//! connections, deadlines, bounded in-flight calls, the same failure classes).
//!
//! - `config`: [`TrustBuilderConfig`] (`[trustbuilder]`);
//! - `rest`: the authentication API (`GET {api_url}/FS?action=...`, JSON or XML answers):
//!   authenticateExtended, pushAuthenticate, checkPushResult;
//! - `provisioning`: the ConsoleAdmin SOAP API (seed 003): loginSearch / loginQuery for the
//!   credential menu, and the administration operations;
//! - `status`: every `err` string as [`TbStatus`], and what each means for a login;
//! - `client`: [`TrustBuilderClient`], one async method per call;
//! - `backend`: [`TrustBuilderBackend`], the engine's `Backend`;
//! - `error`: [`TbError`] and its [`FailureClass`](crate::https::FailureClass).
//!
//! Failure classes: HTTP 5xx (but a SOAP `Client` fault), connect failure and timeout are an
//! outage; TLS refusal, 4xx, unparseable answers and `NOK:SN` / `NOK:srv unknown` /
//! `NOK:access forbidden` are misconfiguration (never an outage, never fail-open). TrustBuilder
//! has no request ids: logs name the push's sessionId, never a code.

mod backend;
mod client;
mod config;
mod error;
mod provisioning;
mod rest;
mod status;
mod xml;

pub use backend::TrustBuilderBackend;
pub use client::TrustBuilderClient;
pub use config::{TrustBuilderConfig, DEFAULT_API_URL};
pub use error::TbError;
pub use provisioning::{
    CodeType, Created, LoginAttributes, LoginDetails, LoginEntry, LoginFields, LoginList, Tool,
    ToolKind, OP_LOGIN_ACTIVATE_CODE, OP_LOGIN_ADD_DEVICE, OP_LOGIN_DELETE,
    OP_LOGIN_RESET_PIN_ERROR_COUNTER, OP_LOGIN_RESET_PWD, OP_LOGIN_RESET_PWD_EXTENDED,
    OP_LOGIN_RESTORE, OP_LOGIN_SEND_BY_MAIL,
};
pub use rest::{Device, RestAnswer};
pub use status::{Meaning, TbStatus};
pub use xml::CONSOLE_NS;

/// Request rendering and response parsing without I/O, for golden tests and tools. Not a
/// stable API.
#[doc(hidden)]
pub mod wire {
    pub use super::provisioning::{
        parse_code, parse_login_create, parse_login_query, parse_login_search, parse_logins_query,
        parse_ok, parse_string_return, render_login_code_op, render_login_create,
        render_login_delete_tool, render_login_op, render_login_query, render_login_search,
        render_login_update, render_login_update_tool, render_logins_query,
    };
    pub use super::rest::{
        encode, parse_answer, render_authenticate_extended, render_check_push_result,
        render_push_authenticate,
    };
}
