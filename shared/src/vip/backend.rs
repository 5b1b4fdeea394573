//! VIP as the engine's [`Backend`]: maps VIP operations and status codes onto the engine's
//! vocabulary. The only place where a VIP status code turns into a decision.

use crate::engine::backend::{
    Answer, Backend, BackendError, BoxFuture, Channel, CodeCheck, PushStart, PushState, PushTicket,
    Refusal, UserFactors, Verified,
};

use super::{
    AuthenticateUser, DetailCode, OtpAuthResponse, OtpDelivery, PollStatus, PushRequest, Status,
    UserStatus, VipClient, VipError,
};

/// The engine's view of a [`VipClient`].
#[derive(Clone)]
pub struct VipBackend {
    client: VipClient,
}

impl VipBackend {
    pub fn new(client: VipClient) -> Self {
        VipBackend { client }
    }

    pub fn client(&self) -> &VipClient {
        &self.client
    }
}

fn refusal(status: Status) -> Refusal {
    match status {
        Status::AuthenticationFailed => Refusal::BadCode,
        Status::InvalidPin | Status::PinPolicy => Refusal::BadPin,
        Status::UserNotFound => Refusal::UnknownUser,
        Status::UserStatusNotAllowed => Refusal::UserLocked,
        Status::CredentialStateNotAllowed => Refusal::CredentialLocked,
        Status::NoEnabledCredential
        | Status::NoBinding
        | Status::InvalidCredentialId
        | Status::InvalidCredentialType
        | Status::CredentialTypeNotSupported => Refusal::NoCredential,
        Status::OutOfSync => Refusal::OutOfSync,
        Status::InvalidAccount
        | Status::CertificateRevoked
        | Status::SchemaValidationFailed
        | Status::PinNotEnabled => Refusal::Misconfigured,
        _ => Refusal::ServiceError,
    }
}

/// Splits a VIP error into the request id and the engine's error class.
fn classify(e: VipError) -> (Option<String>, BackendError) {
    let request_id = e.request_id().map(str::to_owned);
    let err = match e {
        // 6005 is VIP failing internally: nothing was decided, so fail mode applies.
        VipError::Rejected {
            status: Status::InternalError,
            message,
            ..
        } => BackendError::Unavailable(format!("VIP internal error (6005): {message}")),
        VipError::Rejected {
            status, message, ..
        } => BackendError::Refused {
            refusal: refusal(status),
            status: status.code_str(),
            message,
        },
        VipError::BadRequest {
            message,
            request_id,
            ..
        } if !request_id.is_empty() => BackendError::Refused {
            refusal: Refusal::Misconfigured,
            status: Status::SchemaValidationFailed.code_str(),
            message,
        },
        VipError::BadRequest { message, .. } => BackendError::Local(message),
        // A reference fact: VIP errors come in-band; a Fault, non-200 or garbage means the
        // service (or something in front of it) is broken, which is "unavailable".
        e @ (VipError::Unreachable { .. } | VipError::Protocol { .. }) => {
            BackendError::Unavailable(e.to_string())
        }
        e @ (VipError::Config { .. } | VipError::TlsRefused { .. }) => {
            BackendError::Local(e.to_string())
        }
    };
    (request_id, err)
}

fn verified(r: OtpAuthResponse) -> Verified {
    Verified {
        credential_id: r.credential_id,
        credential_type: r.credential_type,
        authn_id: r.authn_id,
    }
}

fn answer<T, U>(
    r: Result<T, VipError>,
    id: impl Fn(&T) -> String,
    f: impl FnOnce(T) -> U,
) -> Answer<U> {
    match r {
        Ok(v) => (Some(id(&v)), Ok(f(v))),
        Err(e) => {
            let (rid, err) = classify(e);
            (rid, Err(err))
        }
    }
}

impl Backend for VipBackend {
    fn verify_code<'a>(&'a self, check: &'a CodeCheck) -> BoxFuture<'a, Answer<Verified>> {
        Box::pin(async move {
            let next = check.next_code.as_ref().map(|s| s.expose());
            let r = if check.full_authentication {
                let req = AuthenticateUser {
                    user_id: &check.user,
                    otp: check.code.expose(),
                    otp2: next,
                    pin: check.pin.as_ref().map(|s| s.expose()),
                    auth_level: check.auth_level,
                };
                self.client.authenticate_user(&req).await
            } else {
                self.client
                    .check_otp(&check.user, check.code.expose(), next)
                    .await
            };
            answer(r, |v| v.request_id.clone(), verified)
        })
    }

    fn start_push<'a>(&'a self, push: &'a PushStart) -> BoxFuture<'a, Answer<PushTicket>> {
        Box::pin(async move {
            let req = PushRequest {
                user_id: &push.user,
                pin: None,
                title: Some(&push.title),
                text: Some(&push.text),
                profile: push.profile.as_deref(),
                timeout: Some(push.timeout),
                number_challenge: push.number_challenge,
                extra_request_params: Vec::new(),
                auth_level: push.auth_level,
            };
            let r = self.client.authenticate_user_with_push(&req).await;
            answer(
                r,
                |v| v.request_id.clone(),
                |v| PushTicket {
                    transaction_id: v.transaction_id,
                    number: v.numbers_challenge_value,
                },
            )
        })
    }

    fn poll_pushes<'a>(
        &'a self,
        transaction_ids: &'a [String],
    ) -> BoxFuture<'a, Answer<Vec<(String, PushState)>>> {
        Box::pin(async move {
            let ids: Vec<&str> = transaction_ids.iter().map(String::as_str).collect();
            let r = self.client.poll_push_status(&ids).await;
            match r {
                Ok(answer) => (
                    Some(answer.request_id),
                    Ok(answer
                        .transactions
                        .into_iter()
                        .map(|t| {
                            let state = match t.status {
                                PollStatus::Approved => PushState::Approved(Verified {
                                    credential_id: t.credential_id,
                                    credential_type: t.credential_type,
                                    authn_id: None,
                                }),
                                s if s.is_pending() => PushState::Pending,
                                _ if t.detail == Some(DetailCode::NumbersChallengeFailed) => {
                                    PushState::NumberChallengeFailed
                                }
                                PollStatus::Denied => PushState::Denied,
                                PollStatus::Expired => PushState::Expired,
                                s => PushState::Failed(format!(
                                    "poll status {:04X}: {}",
                                    s.code(),
                                    t.status_message
                                )),
                            };
                            (t.transaction_id, state)
                        })
                        .collect()),
                ),
                Err(e) => {
                    let (rid, err) = classify(e);
                    (rid, Err(err))
                }
            }
        })
    }

    fn user_factors<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Answer<UserFactors>> {
        Box::pin(async move {
            let r = self.client.get_user_info(user, true).await;
            match r {
                Ok(info) => {
                    if matches!(
                        info.user_status,
                        Some(UserStatus::Disabled | UserStatus::Locked)
                    ) {
                        return (
                            Some(info.request_id),
                            Err(BackendError::Refused {
                                refusal: Refusal::UserLocked,
                                status: "0000".into(),
                                message: "user is locked or disabled".into(),
                            }),
                        );
                    }
                    let mut f = UserFactors::default();
                    for c in info.credentials.iter().filter(|c| c.is_enabled()) {
                        match c.credential_type.as_str() {
                            "SMS_OTP" => f.sms_numbers.push(c.credential_id.clone()),
                            "VOICE_OTP" => f.voice_numbers.push(c.credential_id.clone()),
                            "STANDARD_OTP" | "SERVICE_OTP" => {
                                f.code = true;
                                f.push |= c.is_push_capable();
                            }
                            _ => f.push |= c.is_push_capable(),
                        }
                    }
                    (Some(info.request_id), Ok(f))
                }
                Err(e) => {
                    let (rid, err) = classify(e);
                    (rid, Err(err))
                }
            }
        })
    }

    fn send_code<'a>(
        &'a self,
        user: &'a str,
        channel: Channel,
        number: &'a str,
    ) -> BoxFuture<'a, Answer<()>> {
        Box::pin(async move {
            let delivery = match channel {
                Channel::Sms => OtpDelivery::Sms {
                    phone_number: number.to_owned(),
                },
                Channel::Voice => OtpDelivery::Voice {
                    phone_number: number.to_owned(),
                },
            };
            let r = self.client.send_otp(user, &delivery).await;
            answer(r, |v| v.request_id.clone(), |_| ())
        })
    }
}
