//! `VipClient`: one typed async method per VIP operation.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::Instrument;
use url::Url;

use super::config::VipConfig;
use super::error::VipError;
use super::management::{self as mgmt, *};
use super::ops::{self, *};
use super::status::Status;
use super::transport::{parse_url, Transport};
use crate::metrics::Metrics;
use crate::request_id::RequestIds;

/// The VIP User Services client. Cheap to clone (an `Arc` inside); make one per process so
/// every call shares the connection pool and the in-flight bound.
#[derive(Clone)]
pub struct VipClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    ids: RequestIds,
    auth_url: Url,
    query_url: Url,
    management_url: Url,
    metrics: OnceLock<Arc<Metrics>>,
}

impl std::fmt::Debug for VipClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VipClient")
            .field("auth_url", &self.inner.auth_url.as_str())
            .field("query_url", &self.inner.query_url.as_str())
            .field("management_url", &self.inner.management_url.as_str())
            .finish_non_exhaustive()
    }
}

impl VipClient {
    /// Checks the URLs, loads the client certificate (PEM or PKCS#12) and the CA roots, and
    /// builds the pooled HTTPS client. Does not connect.
    pub fn new(cfg: &VipConfig) -> Result<VipClient, VipError> {
        let auth_url = parse_url("auth_url", &cfg.auth_url)?;
        let query_url = parse_url("query_url", &cfg.query_url)?;
        let management_url = parse_url("management_url", &cfg.management_url)?;
        let ids = RequestIds::new(&cfg.request_id_prefix)
            .map_err(|e| VipError::config(format!("vip.request_id_prefix: {e}"), None))?;
        let transport = Transport::new(cfg)?;
        Ok(VipClient {
            inner: Arc::new(Inner {
                transport,
                ids,
                auth_url,
                query_url,
                management_url,
                metrics: OnceLock::new(),
            }),
        })
    }

    /// Records every call's duration and status, and the calls in flight, into `metrics`
    /// from now on (the first call wins; shared by every clone).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        self.inner.transport.set_metrics(metrics.clone());
        let _ = self.inner.metrics.set(metrics);
    }

    /// A fresh VIP requestId from this client's generator.
    pub fn next_request_id(&self) -> String {
        self.inner.ids.next()
    }

    /// Renders, sends and parses one call inside a `vip_call{op, request_id}` span.
    /// Logs the outcome and duration, never the body (it carries codes and PINs).
    ///
    /// VIP's 6005 ("internal error", which VIP asks clients to retry) is retried once, with a
    /// fresh requestId, for the operations that are safe to repeat (`retry_6005`); a second
    /// 6005 is returned as it is and counts as an outage.
    async fn call<T>(
        &self,
        op: &'static str,
        url: &Url,
        retry_6005: bool,
        render: impl Fn(&str) -> Result<String, VipError>,
        parse: impl Fn(&[u8], &str) -> Result<T, VipError>,
    ) -> Result<T, VipError> {
        let first = self.call_once(op, url, false, &render, &parse).await;
        match first {
            Err(VipError::Rejected {
                status: Status::InternalError,
                request_id,
                ..
            }) if retry_6005 => {
                tracing::warn!(
                    op,
                    request_id = %request_id,
                    "VIP answered 6005 (internal error); retrying once"
                );
                self.call_once(op, url, false, &render, &parse).await
            }
            other => other,
        }
    }

    async fn call_once<T>(
        &self,
        op: &'static str,
        url: &Url,
        reserved: bool,
        render: &impl Fn(&str) -> Result<String, VipError>,
        parse: &impl Fn(&[u8], &str) -> Result<T, VipError>,
    ) -> Result<T, VipError> {
        let rid = self.inner.ids.next();
        let span = tracing::debug_span!("vip_call", op, request_id = %rid);
        async move {
            let start = Instant::now();
            let result = match render(&rid) {
                Ok(body) => match self.inner.transport.post(url, body, reserved).await {
                    Ok(answer) => parse(&answer, &rid).map_err(|e| e.at_url(url.as_str())),
                    Err(e) => Err(e),
                }
                .map_err(|e| e.sent_as(&rid)),
                Err(e) => Err(e),
            };
            if let Some(m) = self.inner.metrics.get() {
                m.vip_call(op, metric_status(op, &result), start.elapsed());
            }
            let elapsed_ms = start.elapsed().as_millis() as u64;
            match &result {
                Ok(_) => tracing::debug!(status = "success", elapsed_ms, "VIP call done"),
                Err(e) => {
                    let status = e.status().map(|s| s.code_str());
                    tracing::debug!(status = status.as_deref().unwrap_or("-"), elapsed_ms, error = %e, "VIP call failed");
                }
            }
            result
        }
        .instrument(span)
        .await
    }

    pub async fn authenticate_user(
        &self,
        req: &AuthenticateUser<'_>,
    ) -> Result<OtpAuthResponse, VipError> {
        self.call(
            ops::OP_AUTHENTICATE_USER,
            &self.inner.auth_url,
            true,
            |rid| render_authenticate_user(rid, req),
            parse_authenticate_user,
        )
        .await
    }

    /// checkOtp: only for a code that sendOtp just delivered (it validates even a locked
    /// credential and ignores temporary codes, so logins use [`VipClient::authenticate_user`]).
    pub async fn check_otp(
        &self,
        user_id: &str,
        otp: &str,
        otp2: Option<&str>,
        auth_level: Option<u8>,
    ) -> Result<OtpAuthResponse, VipError> {
        self.call(
            ops::OP_CHECK_OTP,
            &self.inner.auth_url,
            true,
            |rid| render_check_otp(rid, user_id, otp, otp2, auth_level),
            parse_check_otp,
        )
        .await
    }

    /// Succeeds on VIP's 6040 (push sent) with the transactionId to poll.
    pub async fn authenticate_user_with_push(
        &self,
        req: &PushRequest<'_>,
    ) -> Result<PushResponse, VipError> {
        self.call(
            ops::OP_PUSH,
            &self.inner.auth_url,
            // A second push is not a harmless repeat.
            false,
            |rid| render_authenticate_user_with_push(rid, req),
            parse_authenticate_user_with_push,
        )
        .await
    }

    /// Polls 1..=20 push transactions (Query service).
    pub async fn poll_push_status(
        &self,
        transaction_ids: &[&str],
    ) -> Result<PollResponse, VipError> {
        self.call(
            ops::OP_POLL,
            &self.inner.query_url,
            true,
            |rid| render_poll_push_status(rid, transaction_ids),
            |body, rid| {
                parse_poll_push_status(body, rid, transaction_ids).map(|transactions| {
                    PollResponse {
                        request_id: rid.to_owned(),
                        transactions,
                    }
                })
            },
        )
        .await
    }

    pub async fn get_user_info(
        &self,
        user_id: &str,
        include_push_attributes: bool,
    ) -> Result<UserInfo, VipError> {
        self.call(
            ops::OP_USER_INFO,
            &self.inner.query_url,
            true,
            |rid| render_get_user_info(rid, user_id, include_push_attributes),
            parse_get_user_info,
        )
        .await
    }

    /// Sends a security code by SMS or voice (Management service).
    pub async fn send_otp(
        &self,
        user_id: &str,
        delivery: &OtpDelivery,
    ) -> Result<SendOtpResponse, VipError> {
        self.call(
            ops::OP_SEND_OTP,
            &self.inner.management_url,
            // A second text or call costs money and confuses the user.
            false,
            |rid| render_send_otp(rid, user_id, delivery),
            parse_send_otp,
        )
        .await
    }

    /// The health probe: getServerTime on a slot of its own (a flood of logins holding every
    /// in-flight slot must not make VIP look down), not retried.
    pub(crate) async fn probe_server_time(&self) -> Result<ServerTime, VipError> {
        self.call_once(
            ops::OP_SERVER_TIME,
            &self.inner.query_url,
            true,
            &render_get_server_time,
            &|body: &[u8], rid: &str| parse_get_server_time(body, rid, unix_now()),
        )
        .await
    }

    /// VIP's clock; `skew` is VIP minus us in seconds.
    pub async fn get_server_time(&self) -> Result<ServerTime, VipError> {
        self.call(
            ops::OP_SERVER_TIME,
            &self.inner.query_url,
            true,
            render_get_server_time,
            |body, rid| parse_get_server_time(body, rid, unix_now()),
        )
        .await
    }
}

/// The Management service (users, credentials, PINs, temporary security codes) and the Query
/// calls an admin tool needs beside it. None of the Management calls is retried on 6005: a
/// change VIP may have made must not be made twice behind the caller's back.
impl VipClient {
    /// createUser (Management). 6002: the user exists.
    pub async fn create_user(&self, req: &CreateUser<'_>) -> Result<Acknowledged, VipError> {
        self.call(
            mgmt::OP_CREATE_USER,
            &self.inner.management_url,
            false,
            |rid| render_create_user(rid, req),
            parse_create_user,
        )
        .await
    }

    /// updateUser (Management): new user id, status ACTIVE/DISABLED, PIN change or reset,
    /// forcePinChange.
    pub async fn update_user(&self, req: &UpdateUser<'_>) -> Result<Acknowledged, VipError> {
        self.call(
            mgmt::OP_UPDATE_USER,
            &self.inner.management_url,
            false,
            |rid| render_update_user(rid, req),
            parse_update_user,
        )
        .await
    }

    /// deleteUser (Management): the user and every binding.
    pub async fn delete_user(&self, user_id: &str) -> Result<Acknowledged, VipError> {
        self.call(
            mgmt::OP_DELETE_USER,
            &self.inner.management_url,
            false,
            |rid| render_delete_user(rid, user_id),
            parse_delete_user,
        )
        .await
    }

    /// clearUserPin (Management).
    pub async fn clear_user_pin(&self, user_id: &str) -> Result<Acknowledged, VipError> {
        self.call(
            mgmt::OP_CLEAR_USER_PIN,
            &self.inner.management_url,
            false,
            |rid| render_clear_user_pin(rid, user_id),
            parse_clear_user_pin,
        )
        .await
    }

    /// addCredential (Management): binds a credential, with security codes as proof.
    pub async fn add_credential(&self, req: &AddCredential<'_>) -> Result<Acknowledged, VipError> {
        self.call(
            mgmt::OP_ADD_CREDENTIAL,
            &self.inner.management_url,
            false,
            |rid| render_add_credential(rid, req),
            parse_add_credential,
        )
        .await
    }

    /// removeCredential (Management). 6007: not bound to this user; 6010: the account's
    /// policy leaves it to VIP Manager.
    pub async fn remove_credential(
        &self,
        user_id: &str,
        credential_id: &str,
        credential_type: &CredentialType,
    ) -> Result<Acknowledged, VipError> {
        self.call(
            mgmt::OP_REMOVE_CREDENTIAL,
            &self.inner.management_url,
            false,
            |rid| render_remove_credential(rid, user_id, credential_id, credential_type),
            parse_remove_credential,
        )
        .await
    }

    /// updateCredential (Management): the binding's friendly name.
    pub async fn update_credential(
        &self,
        user_id: &str,
        credential_id: &str,
        credential_type: &CredentialType,
        friendly_name: &str,
    ) -> Result<Acknowledged, VipError> {
        self.call(
            mgmt::OP_UPDATE_CREDENTIAL,
            &self.inner.management_url,
            false,
            |rid| {
                render_update_credential(
                    rid,
                    user_id,
                    credential_id,
                    credential_type,
                    friendly_name,
                )
            },
            parse_update_credential,
        )
        .await
    }

    /// register (Management): an SMS or voice phone as a credential (then bound with
    /// addCredential). 6026: already registered.
    pub async fn register(&self, phone: &OtpDelivery) -> Result<RegisterResponse, VipError> {
        self.call(
            mgmt::OP_REGISTER,
            &self.inner.management_url,
            false,
            |rid| render_register(rid, phone),
            parse_register,
        )
        .await
    }

    /// setTemporaryPassword (Management): the given 6-digit code or one VIP generates, for at
    /// most 30 days, optionally one-time and delivered by SMS or voice.
    pub async fn set_temporary_password(
        &self,
        req: &SetTemporaryPassword<'_>,
    ) -> Result<SetTemporaryPasswordResponse, VipError> {
        self.call(
            mgmt::OP_SET_TEMP_PASSWORD,
            &self.inner.management_url,
            false,
            |rid| render_set_temporary_password(rid, req, unix_now()),
            parse_set_temporary_password,
        )
        .await
    }

    /// clearTemporaryPassword (Management).
    pub async fn clear_temporary_password(&self, user_id: &str) -> Result<Acknowledged, VipError> {
        self.call(
            mgmt::OP_CLEAR_TEMP_PASSWORD,
            &self.inner.management_url,
            false,
            |rid| render_clear_temporary_password(rid, user_id),
            parse_clear_temporary_password,
        )
        .await
    }

    /// setTemporaryPasswordAttributes (Management): a new expiry and/or one-time flag for
    /// the code set earlier.
    pub async fn set_temporary_password_attributes(
        &self,
        user_id: &str,
        attributes: &TempPasswordAttributes,
    ) -> Result<Acknowledged, VipError> {
        self.call(
            mgmt::OP_SET_TEMP_PASSWORD_ATTRS,
            &self.inner.management_url,
            false,
            |rid| render_set_temporary_password_attributes(rid, user_id, attributes, unix_now()),
            parse_set_temporary_password_attributes,
        )
        .await
    }

    /// getTemporaryPasswordAttributes (Query).
    pub async fn get_temporary_password_attributes(
        &self,
        user_id: &str,
    ) -> Result<TempPasswordInfo, VipError> {
        self.call(
            mgmt::OP_GET_TEMP_PASSWORD_ATTRS,
            &self.inner.query_url,
            true,
            |rid| render_get_temporary_password_attributes(rid, user_id),
            parse_get_temporary_password_attributes,
        )
        .await
    }

    /// getCredentialInfo (Query): the credential and the users it is bound to.
    pub async fn get_credential_info(
        &self,
        credential_id: &str,
        credential_type: &CredentialType,
        include_push_attributes: bool,
    ) -> Result<CredentialInfo, VipError> {
        self.call(
            mgmt::OP_GET_CREDENTIAL_INFO,
            &self.inner.query_url,
            true,
            |rid| {
                render_get_credential_info(
                    rid,
                    credential_id,
                    credential_type,
                    include_push_attributes,
                )
            },
            parse_get_credential_info,
        )
        .await
    }
}

/// The `status` label of a finished call: VIP's code, or the class of failure.
fn metric_status<T>(op: &'static str, result: &Result<T, VipError>) -> String {
    match result {
        // A push is "sent" with 6040; every other success is 0000.
        Ok(_) if op == ops::OP_PUSH => "6040".into(),
        Ok(_) => "0000".into(),
        Err(e) => match e.status() {
            Some(s) => s.code_str(),
            None => match e {
                VipError::Unreachable { .. } => "unreachable".into(),
                VipError::Overloaded { .. } | VipError::Exhausted { .. } => "overloaded".into(),
                VipError::TlsRefused { .. } => "tls_refused".into(),
                VipError::Protocol { .. } => "protocol".into(),
                VipError::BadRequest { .. } => "bad_request".into(),
                VipError::Rejected { .. } | VipError::Config { .. } => "config".into(),
            },
        },
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
