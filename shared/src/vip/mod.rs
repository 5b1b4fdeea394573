//! The VIP User Services client: the only place that knows VIP's wire format.
//!
//! - `soap`: envelopes out, namespace-checked parsing in;
//! - `ops`: one typed request/response per operation (pure render/parse functions);
//! - `management`: the same for the Management service and the Query calls beside it;
//! - `status`: every status, poll-status and detail code as an enum;
//! - `transport`: VIP over the shared HTTPS transport ([`crate::https`]: mutual TLS, kept-alive
//!   connections, deadlines, bounded in-flight calls, error classes);
//! - `health`: is VIP down? (the check fail-open waits on);
//! - `error`: [`VipError`] and its [`FailureClass`].

mod backend;
mod client;
mod config;
mod error;
mod health;
mod management;
mod ops;
mod soap;
mod status;
mod transport;

pub use backend::VipBackend;
pub use client::VipClient;
pub use config::{VipConfig, DEFAULT_AUTH_URL, DEFAULT_MANAGEMENT_URL, DEFAULT_QUERY_URL};
pub use error::{FailureClass, VipError};
pub use health::{Health, HealthMonitor};
pub use management::{
    Acknowledged, AddCredential, CreateUser, CredentialInfo, CredentialType, NewUserStatus,
    RegisterResponse, SetTemporaryPassword, SetTemporaryPasswordResponse, TempPasswordAttributes,
    TempPasswordInfo, UpdateUser, UserBinding, MAX_TEMPORARY_PASSWORD_LIFETIME,
};
pub use ops::{
    AuthenticateUser, CredentialBinding, OtpAuthResponse, OtpDelivery, PollResponse, PushDetail,
    PushRequest, PushResponse, SendOtpResponse, ServerTime, TransactionStatus, UserInfo,
    UserStatus, MAX_POLL_IDS,
};
pub use soap::VIP_NS;
pub use status::{DetailCode, PollStatus, Status};

/// Request rendering and response parsing without I/O, for golden tests and tools.
/// `request_id` is passed in so bodies are deterministic. Not a stable API.
#[doc(hidden)]
pub mod wire {
    pub use super::management::{
        parse_add_credential, parse_clear_temporary_password, parse_clear_user_pin,
        parse_create_user, parse_delete_user, parse_get_credential_info,
        parse_get_temporary_password_attributes, parse_register, parse_remove_credential,
        parse_set_temporary_password, parse_set_temporary_password_attributes,
        parse_update_credential, parse_update_user, render_add_credential,
        render_clear_temporary_password, render_clear_user_pin, render_create_user,
        render_delete_user, render_get_credential_info, render_get_temporary_password_attributes,
        render_register, render_remove_credential, render_set_temporary_password,
        render_set_temporary_password_attributes, render_update_credential, render_update_user,
    };
    pub use super::ops::{
        parse_authenticate_user, parse_authenticate_user_with_push, parse_check_otp,
        parse_get_server_time, parse_get_user_info, parse_poll_push_status, parse_send_otp,
        render_authenticate_user, render_authenticate_user_with_push, render_check_otp,
        render_get_server_time, render_get_user_info, render_poll_push_status, render_send_otp,
    };
}
