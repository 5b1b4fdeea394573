//! VIP as the engine's [`Backend`]: maps VIP operations and status codes onto the engine's
//! vocabulary. The only place where a VIP status code turns into a decision.

use std::sync::Arc;

use crate::engine::backend::{
    transaction_key, Answer, Backend, BackendError, BackendInfo, BoxFuture, Channel, CodeCheck,
    CodeKind, NewCredential, PushStart, PushState, PushTicket, Refusal, UserFactors, Verified,
};
use crate::secret::Secret;

use super::error::FailureClass;
use super::health::HealthMonitor;
use super::management::{AddCredential, CreateUser, CredentialType, UpdateUser};
use super::{
    AuthenticateUser, DetailCode, OtpAuthResponse, OtpDelivery, PollStatus, PushRequest, Status,
    UserStatus, VipClient, VipError,
};

/// The engine's view of a [`VipClient`], with the health monitor that fail-open consults.
#[derive(Clone)]
pub struct VipBackend {
    client: VipClient,
    health: Arc<HealthMonitor>,
}

impl VipBackend {
    /// Wraps the client and starts its health monitor (every `health_check_interval`).
    pub fn new(client: VipClient, health_check_interval: std::time::Duration) -> Self {
        let health = HealthMonitor::start(client.clone(), health_check_interval);
        VipBackend { client, health }
    }

    pub fn client(&self) -> &VipClient {
        &self.client
    }

    pub fn health(&self) -> &HealthMonitor {
        &self.health
    }

    /// Classifies a call's result, noting every answer VIP gave for the health monitor.
    fn answer<T, U>(
        &self,
        r: Result<T, VipError>,
        id: impl Fn(&T) -> String,
        f: impl FnOnce(T) -> Result<U, BackendError>,
    ) -> Answer<U> {
        match r {
            Ok(v) => {
                self.health.answered();
                (Some(id(&v)), f(v))
            }
            Err(e) => {
                if e.class() == FailureClass::Answered {
                    self.health.answered();
                }
                let (rid, err) = classify(e);
                (rid, Err(err))
            }
        }
    }
}

/// A VIP status that is not a success, in the engine's words. `None`: not a refusal about the
/// user (6005, an outage).
fn refusal(status: Status) -> Option<Refusal> {
    Some(match status {
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
        Status::InvalidPhoneNumber => Refusal::InvalidPhone,
        Status::OutOfSync => Refusal::OutOfSync,
        // Only enrollment calls see these.
        Status::CredentialAlreadyBound | Status::AlreadyRegistered => Refusal::AlreadyInUse,
        Status::InternalError => return None,
        // Our account, certificate or request; a success code where an error was expected
        // (0000 on a push, 6040 elsewhere), management-only codes (6002, 6010, 6026, ...)
        // and codes we do not know are not VIP's decision about this user either: reject,
        // never fail open.
        _ => Refusal::Misconfigured,
    })
}

/// Splits a VIP error into the request id and the engine's error class.
fn classify(e: VipError) -> (Option<String>, BackendError) {
    let request_id = e.request_id().map(str::to_owned);
    let err = match e {
        VipError::Rejected {
            status, message, ..
        } => match refusal(status) {
            Some(refusal) => BackendError::Refused {
                refusal,
                status: status.code_str(),
                message,
            },
            // 6005 twice (the client retried once where that is safe): VIP is failing.
            None => BackendError::Outage(format!(
                "VIP internal error ({}): {message}",
                status.code_str()
            )),
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
        e => match e.class() {
            FailureClass::Outage => BackendError::Outage(e.to_string()),
            FailureClass::Overload => BackendError::Overloaded(e.to_string()),
            FailureClass::Misconfigured | FailureClass::Answered => {
                BackendError::Misconfigured(e.to_string())
            }
        },
    };
    (request_id, err)
}

fn delivery(channel: Channel, number: &str) -> OtpDelivery {
    match channel {
        Channel::Sms => OtpDelivery::Sms {
            phone_number: number.to_owned(),
        },
        Channel::Voice => OtpDelivery::Voice {
            phone_number: number.to_owned(),
        },
    }
}

/// A poll answer for one transaction, in the engine's words.
fn push_state(t: super::TransactionStatus) -> PushState {
    match t.status {
        PollStatus::Approved => PushState::Approved(Verified {
            credential_id: t.credential_id,
            credential_type: t.credential_type,
            authn_id: None,
            pin_expired: t.pin_expired.unwrap_or(false),
        }),
        s if s.is_pending() => PushState::Pending,
        _ if t.detail == Some(DetailCode::NumbersChallengeFailed) => {
            PushState::NumberChallengeFailed
        }
        PollStatus::Denied => PushState::Denied,
        PollStatus::Expired => PushState::Expired,
        PollStatus::CouldNotAuthenticate if t.detail.is_none() => PushState::RefusedAsAsked,
        s => PushState::Failed(format!(
            "poll status {:04X} ({}){}: {}",
            s.code(),
            s.meaning(),
            t.detail
                .as_ref()
                .map(|d| format!(" detail {d}"))
                .unwrap_or_default(),
            t.status_message
        )),
    }
}

fn verified(r: OtpAuthResponse) -> Result<Verified, BackendError> {
    Ok(Verified {
        credential_id: r.credential_id,
        credential_type: r.credential_type,
        authn_id: r.authn_id,
        pin_expired: r.pin_expired.unwrap_or(false),
    })
}

/// VIP, as the engine names it.
static VIP_INFO: BackendInfo = BackendInfo {
    name: "VIP",
    section: "vip",
    check: "vip.auth_url / query_url / management_url, the client certificate and the account",
    phone_codes: true,
};

impl Backend for VipBackend {
    fn info(&self) -> &'static BackendInfo {
        &VIP_INFO
    }

    fn verify_code<'a>(&'a self, check: &'a CodeCheck) -> BoxFuture<'a, Answer<Verified>> {
        Box::pin(async move {
            let next = check.next_code.as_ref().map(|s| s.expose());
            let bare = match check.kind {
                CodeKind::Login => false,
                CodeKind::Delivered | CodeKind::LoginBareCheck => check.pin.is_none(),
            };
            let r = if bare {
                self.client
                    .check_otp(&check.user, check.code.expose(), next, check.auth_level)
                    .await
            } else {
                let req = AuthenticateUser {
                    user_id: &check.user,
                    otp: check.code.expose(),
                    otp2: next,
                    pin: check.pin.as_ref().map(|s| s.expose()),
                    auth_level: check.auth_level,
                };
                self.client.authenticate_user(&req).await
            };
            self.answer(r, |v| v.request_id.clone(), verified)
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
            self.answer(
                r,
                |v| v.request_id.clone(),
                |v| {
                    if !v.reached_a_device() {
                        return Err(BackendError::Refused {
                            refusal: Refusal::NoPushDevice,
                            status: "6040".into(),
                            message: format!(
                                "pushSent=false for every one of {} push credential(s)",
                                v.push_details.len()
                            ),
                        });
                    }
                    Ok(PushTicket {
                        transaction_id: v.transaction_id,
                        number: v.numbers_challenge_value,
                    })
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
            self.answer(
                r,
                |v| v.request_id.clone(),
                |answer| {
                    Ok(answer
                        .transactions
                        .into_iter()
                        .map(|t| (transaction_key(&t.transaction_id), push_state(t)))
                        .collect())
                },
            )
        })
    }

    fn user_factors<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Answer<UserFactors>> {
        Box::pin(async move {
            let r = self.client.get_user_info(user, true).await;
            self.answer(
                r,
                |v| v.request_id.clone(),
                |info| {
                    if matches!(
                        info.user_status,
                        Some(UserStatus::Disabled | UserStatus::Locked)
                    ) {
                        return Err(BackendError::Refused {
                            refusal: Refusal::UserLocked,
                            status: "0000".into(),
                            message: "user is locked or disabled".into(),
                        });
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
                    Ok(f)
                },
            )
        })
    }

    fn send_code<'a>(
        &'a self,
        user: &'a str,
        channel: Channel,
        number: &'a str,
    ) -> BoxFuture<'a, Answer<()>> {
        Box::pin(async move {
            let r = self.client.send_otp(user, &delivery(channel, number)).await;
            self.answer(r, |v| v.request_id.clone(), |_| Ok(()))
        })
    }

    fn create_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Answer<bool>> {
        Box::pin(async move {
            let req = CreateUser {
                user_id: user,
                ..CreateUser::default()
            };
            match self.client.create_user(&req).await {
                // Someone created the user in between: what we wanted.
                Err(VipError::Rejected {
                    status: Status::UserExists,
                    request_id,
                    ..
                }) => {
                    self.health.answered();
                    (Some(request_id), Ok(false))
                }
                r => self.answer(r, |v| v.request_id.clone(), |_| Ok(true)),
            }
        })
    }

    fn delete_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Answer<()>> {
        Box::pin(async move {
            let r = self.client.delete_user(user).await;
            self.answer(r, |v| v.request_id.clone(), |_| Ok(()))
        })
    }

    fn register_phone<'a>(
        &'a self,
        channel: Channel,
        number: &'a str,
    ) -> BoxFuture<'a, Answer<()>> {
        Box::pin(async move {
            let r = self.client.register(&delivery(channel, number)).await;
            // A code VIP may return in the answer is never used: only the phone's counts.
            self.answer(r, |v| v.request_id.clone(), |_| Ok(()))
        })
    }

    fn add_credential<'a>(
        &'a self,
        user: &'a str,
        credential: &'a NewCredential,
    ) -> BoxFuture<'a, Answer<()>> {
        Box::pin(async move {
            let req = match credential {
                NewCredential::Token {
                    credential_id,
                    code,
                    next_code,
                } => AddCredential {
                    user_id: user,
                    credential_id,
                    credential_type: CredentialType::StandardOtp,
                    friendly_name: None,
                    trusted_device: None,
                    otp: Some(code.expose()),
                    otp2: next_code.as_ref().map(Secret::expose),
                },
                NewCredential::Phone {
                    channel,
                    number,
                    code,
                } => AddCredential {
                    user_id: user,
                    credential_id: number,
                    credential_type: match channel {
                        Channel::Sms => CredentialType::SmsOtp,
                        Channel::Voice => CredentialType::VoiceOtp,
                    },
                    friendly_name: None,
                    trusted_device: None,
                    otp: Some(code.expose()),
                    otp2: None,
                },
            };
            let r = self.client.add_credential(&req).await;
            self.answer(r, |v| v.request_id.clone(), |_| Ok(()))
        })
    }

    fn change_pin<'a>(&'a self, user: &'a str, new_pin: &'a Secret) -> BoxFuture<'a, Answer<()>> {
        Box::pin(async move {
            let req = UpdateUser {
                user_id: user,
                new_pin: Some(new_pin.expose()),
                ..UpdateUser::default()
            };
            let r = self.client.update_user(&req).await;
            self.answer(r, |v| v.request_id.clone(), |_| Ok(()))
        })
    }

    fn outage_confirmed(&self) -> BoxFuture<'_, bool> {
        Box::pin(self.health.outage_confirmed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vip::{DetailCode, TransactionStatus};

    fn rejected(code: u16) -> VipError {
        VipError::Rejected {
            operation: "authenticateUser",
            status: Status::from_code(code),
            message: "m".into(),
            detail: None,
            request_id: "rid_0001".into(),
        }
    }

    /// What the engine is told for an error.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Refused(Refusal),
        Outage,
        Misconfigured,
        Overloaded,
    }

    fn seen(e: VipError) -> Seen {
        match classify(e).1 {
            BackendError::Refused { refusal, .. } => Seen::Refused(refusal),
            BackendError::Outage(_) => Seen::Outage,
            BackendError::Misconfigured(_) => Seen::Misconfigured,
            BackendError::Overloaded(_) => Seen::Overloaded,
        }
    }

    /// Every status code in the reference (and the success codes where an error was
    /// expected), with what the engine must make of it. Only 6005 (already retried once by the
    /// client) is an outage.
    #[test]
    fn every_status_code_has_its_outcome() {
        use Refusal::*;
        let table: &[(u16, Seen)] = &[
            (0x0000, Seen::Refused(Misconfigured)),
            (0x6040, Seen::Refused(Misconfigured)),
            (0x6001, Seen::Refused(Misconfigured)),
            (0x6002, Seen::Refused(Misconfigured)),
            (0x6003, Seen::Refused(UnknownUser)),
            (0x6004, Seen::Refused(NoCredential)),
            (0x6005, Seen::Outage),
            (0x6006, Seen::Refused(NoCredential)),
            (0x6007, Seen::Refused(NoCredential)),
            (0x6008, Seen::Refused(NoCredential)),
            (0x6009, Seen::Refused(BadCode)),
            (0x600A, Seen::Refused(NoCredential)),
            (0x600B, Seen::Refused(Misconfigured)),
            (0x600D, Seen::Refused(CredentialLocked)),
            (0x600E, Seen::Refused(Misconfigured)),
            (0x6015, Seen::Refused(InvalidPhone)),
            (0x601B, Seen::Refused(UserLocked)),
            (0x601F, Seen::Refused(BadPin)),
            (0x6020, Seen::Refused(BadPin)),
            (0x6021, Seen::Refused(Misconfigured)),
            (0x604A, Seen::Refused(OutOfSync)),
            // A code nobody documented: never an outage, never a pass.
            (0x6ABC, Seen::Refused(Misconfigured)),
        ];
        for (code, want) in table {
            assert_eq!(&seen(rejected(*code)), want, "status {code:04X}");
        }
    }

    #[test]
    fn every_failure_class_has_its_outcome() {
        let url = || "https://vip.example/x".to_owned();
        let table = [
            (
                VipError::Unreachable {
                    request_id: String::new(),
                    url: url(),
                    cause: "connection refused".into(),
                },
                Seen::Outage,
            ),
            (
                VipError::Overloaded {
                    url: url(),
                    waited_ms: 10,
                    limit: 1,
                },
                Seen::Overloaded,
            ),
            (
                VipError::Exhausted {
                    request_id: String::new(),
                    url: url(),
                    cause: "Too many open files (os error 24)".into(),
                },
                Seen::Overloaded,
            ),
            (
                VipError::Protocol {
                    request_id: String::new(),
                    url: url(),
                    cause: "HTTP 404".into(),
                },
                Seen::Misconfigured,
            ),
            (
                VipError::TlsRefused {
                    request_id: String::new(),
                    url: url(),
                    cause: "certificate unknown".into(),
                },
                Seen::Misconfigured,
            ),
            (
                VipError::Config {
                    what: "x".into(),
                    path: None,
                },
                Seen::Misconfigured,
            ),
            (
                VipError::BadRequest {
                    operation: "checkOtp",
                    request_id: String::new(),
                    message: "refused before sending".into(),
                },
                Seen::Misconfigured,
            ),
            (
                VipError::BadRequest {
                    operation: "checkOtp",
                    request_id: "rid_0001".into(),
                    message: "600B".into(),
                },
                Seen::Refused(Refusal::Misconfigured),
            ),
        ];
        for (e, want) in table {
            let shown = e.to_string();
            assert_eq!(seen(e), want, "{shown}");
        }
    }

    fn txn(code: u16, detail: Option<&str>) -> TransactionStatus {
        TransactionStatus {
            transaction_id: "abcd1234abcd1234".into(),
            status: PollStatus::from_code(code),
            status_message: "m".into(),
            detail: detail.map(DetailCode::parse),
            detail_message: None,
            authn_time: None,
            credential_id: Some("VSMT00000001".into()),
            credential_type: Some("STANDARD_OTP".into()),
            pin_expired: None,
        }
    }

    #[test]
    fn every_poll_status_has_its_push_state() {
        let approved = PushState::Approved(Verified {
            credential_id: Some("VSMT00000001".into()),
            credential_type: Some("STANDARD_OTP".into()),
            authn_id: None,
            pin_expired: false,
        });
        let failed = |s: &PushState| matches!(s, PushState::Failed(_));
        assert_eq!(push_state(txn(0x7000, None)), approved);
        assert_eq!(push_state(txn(0x7001, None)), PushState::Pending);
        assert_eq!(push_state(txn(0x7001, Some("7140"))), PushState::Pending);
        assert_eq!(push_state(txn(0x7002, None)), PushState::Denied);
        assert!(failed(&push_state(txn(0x7003, None))));
        assert_eq!(push_state(txn(0x7004, None)), PushState::Expired);
        assert!(failed(&push_state(txn(0x7005, None))));
        assert_eq!(push_state(txn(0x7006, None)), PushState::Pending);
        assert_eq!(push_state(txn(0x7008, None)), PushState::RefusedAsAsked);
        assert_eq!(
            push_state(txn(0x7008, Some("7141"))),
            PushState::NumberChallengeFailed
        );
        for local_auth in ["7120", "7121", "7122", "7123", "7124", "7125"] {
            let s = push_state(txn(0x7008, Some(local_auth)));
            assert!(failed(&s), "{local_auth}: {s:?}");
            let PushState::Failed(why) = s else { continue };
            assert!(why.contains(local_auth), "{why}");
        }
        assert!(failed(&push_state(txn(0x7007, None))));
    }
}
