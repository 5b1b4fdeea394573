//! In-band enrollment, token reset and the expired-PIN change: the PingFederate VIP adapter's
//! states (seed 002) as sealed [`Step`]s of the login dialogue, so they work over a RADIUS
//! Access-Challenge and a PAM conversation alike.
//!
//! | seed 002 state / action                         | here                                   |
//! |-------------------------------------------------|----------------------------------------|
//! | `VIP_ENROLLMENT` → `addVIPCredential`           | [`EnrollStep::Choose`]                 |
//! | `VIP_CREDENTIAL_REQUIRED` → `submitVIPCredential` | [`EnrollStep::TokenId`], `TokenCode` (a second code: `TokenNextCode`) |
//! | `VIP_SMS/VOICE_CREDENTIAL_REQUIRED`             | [`EnrollStep::Phone`] (register: a code is sent) |
//! | `*_VERIFICATION_REQUIRED` → `validateSecurityCode` | [`EnrollStep::PhoneCode`] (addCredential with it) |
//! | `VIP_CREDENTIAL_RESET_REQUIRED` → `resetVIPCredential` | [`Step::ResetCode`], then `NextCode` (two consecutive codes) |
//!
//! Enrollment is offered only when the policy turns it on, the first factor passed in this
//! login (the directory password, or pam_unix before pam_vip.so), and VIP knows no usable
//! credential for the user: a password thief must not be able to add their own phone to an
//! account that has one. Every step that reaches VIP is throttled per user
//! (`engine.throttle.enrollment_per_user`); a wrong answer asks again (within that limit)
//! rather than ending the login. Every credential added or reset and every PIN changed is an
//! audit line (target `vip_bridge::audit`) and counts in `credential_changes_total`.

use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::backend::{BackendError, Channel, NewCredential, Refusal};
use super::{
    is_code, mask, reject, Accept, Engine, EnrollKind, Enrollment, Factor, Login, Outcome,
    RejectReason, MSG_CODE_FORMAT,
};
use crate::challenge::{EnrollStep, Step};
use crate::log_text::{escaped, Escaped};
use crate::secret::Secret;
use crate::throttle::Limit;

/// Enrollment steps wait longer than a code: the user may have to install an app first.
const MIN_ENROLL_TTL: Duration = Duration::from_secs(300);

/// Credential IDs the prompt accepts: VIP's are 4 letters and 8 digits; longer ones would not
/// fit a State beside a code.
const MAX_CREDENTIAL_ID: usize = 32;

impl Engine {
    fn enroll_ttl(&self) -> Duration {
        self.cfg.state_ttl.max(MIN_ENROLL_TTL)
    }

    /// After the first factor passed: `Some` when the user has no usable credential and is
    /// offered enrollment (or refused on the way), `None` to go on to the second factor.
    pub(super) async fn offer_enrollment(&self, login: &mut Login<'_>) -> Option<Outcome> {
        if !login.may_enroll() {
            return None;
        }
        match self.user_factors(login).await {
            Ok(f) if f.any() => None,
            Ok(_) => Some(self.enroll_start(login)),
            Err(BackendError::Refused {
                refusal: Refusal::UnknownUser,
                status,
                ..
            }) => {
                // Created when the first credential is added, not now: a login abandoned
                // here leaves nothing behind at VIP.
                login.status = Some(status);
                Some(self.enroll_start(login))
            }
            Err(e) => Some(self.failed(login, e, true).await),
        }
    }

    fn enroll_start(&self, login: &mut Login<'_>) -> Outcome {
        login.factor = Factor::None;
        if let Some(suppressed) = self.refusal_log.pass() {
            info!(vip_user = %Escaped(&login.vip_user), suppressed, "the user has no usable VIP credential: offering enrollment");
        }
        let kinds = allowed(&login.policy.enrollment_credentials);
        match kinds.as_slice() {
            [only] => self.enroll_ask(login, *only, MSG_NO_FACTOR_YET),
            _ => self.enroll_menu(login, ""),
        }
    }

    fn enroll_menu(&self, login: &mut Login<'_>, lead: &str) -> Outcome {
        let lines: Vec<&str> = allowed(&login.policy.enrollment_credentials)
            .into_iter()
            .map(|k| match k {
                EnrollKind::Token => "  token - the VIP Access app or a VIP hardware token",
                EnrollKind::Sms => "  sms   - a mobile phone that gets text messages",
                EnrollKind::Voice => "  voice - a phone that takes calls",
            })
            .collect();
        let prompt = format!(
            "{lead}{MSG_NO_FACTOR_YET}\n{}\nType one of these words:",
            lines.join("\n")
        );
        let ttl = self.enroll_ttl();
        self.challenge(login, &Step::Enroll(EnrollStep::Choose), ttl, &prompt, true)
    }

    /// The first question for `kind`: a credential ID or a phone number (shown as typed).
    fn enroll_ask(&self, login: &mut Login<'_>, kind: EnrollKind, lead: &str) -> Outcome {
        let (step, question) = match kind {
            EnrollKind::Token => (
                EnrollStep::TokenId,
                "Enter the credential ID shown in VIP Access or on the back of your token (like VSST12345678):",
            ),
            EnrollKind::Sms => (
                EnrollStep::Phone { voice: false },
                "Enter your mobile number with its country code, digits only (like 15551234567). A code will be sent to it by text message:",
            ),
            EnrollKind::Voice => (
                EnrollStep::Phone { voice: true },
                "Enter your phone number with its country code, digits only (like 15551234567). You will get a call with a code:",
            ),
        };
        let prompt = lead_with(lead, question);
        let ttl = self.enroll_ttl();
        self.challenge(login, &Step::Enroll(step), ttl, &prompt, true)
    }

    fn enroll_again(&self, login: &mut Login<'_>, step: EnrollStep, prompt: &str) -> Outcome {
        let ttl = self.enroll_ttl();
        let echo = matches!(step, EnrollStep::TokenId | EnrollStep::Phone { .. });
        self.challenge(login, &Step::Enroll(step), ttl, prompt, echo)
    }

    /// A round answering an enrollment step.
    pub(super) async fn continue_enrollment(
        &self,
        login: &mut Login<'_>,
        step: EnrollStep,
    ) -> Outcome {
        // The step's State proves enrollment was offered to this user here; the policy must
        // still allow it (it may have changed since).
        if login.policy.enrollment == Enrollment::Off {
            return self.bad_state(&"an enrollment step for a policy without enrollment");
        }
        let answer = login
            .req
            .secret
            .as_ref()
            .map(|s| s.expose().trim().to_owned())
            .unwrap_or_default();
        match step {
            EnrollStep::Choose => {
                let kinds = allowed(&login.policy.enrollment_credentials);
                match kinds
                    .iter()
                    .find(|k| k.as_str().eq_ignore_ascii_case(&answer))
                {
                    Some(kind) => self.enroll_ask(login, *kind, ""),
                    None => self.enroll_menu(login, "Type one of the words listed.\n"),
                }
            }
            EnrollStep::TokenId => {
                let id: String = answer
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != '-')
                    .collect::<String>()
                    .to_ascii_uppercase();
                if !is_credential_id(&id) {
                    return self.enroll_ask(
                        login,
                        EnrollKind::Token,
                        "That is not a credential ID (4 letters and 8 digits).",
                    );
                }
                let prompt = format!("Enter the security code VIP Access shows for {id}:");
                self.enroll_again(login, EnrollStep::TokenCode { credential_id: id }, &prompt)
            }
            EnrollStep::TokenCode { credential_id } => {
                let Some(code) = as_code(&answer) else {
                    let prompt = format!("{MSG_NOT_A_CODE}\nEnter the security code VIP Access shows for {credential_id}:");
                    return self.enroll_again(
                        login,
                        EnrollStep::TokenCode { credential_id },
                        &prompt,
                    );
                };
                let credential = NewCredential::Token {
                    credential_id,
                    code,
                    next_code: None,
                };
                self.enroll_add(login, credential).await
            }
            EnrollStep::TokenNextCode {
                credential_id,
                first_code,
            } => {
                let Some(next) = as_code(&answer) else {
                    return self.enroll_again(
                        login,
                        EnrollStep::TokenNextCode {
                            credential_id,
                            first_code,
                        },
                        &format!("{MSG_NOT_A_CODE}\n{MSG_ENROLL_NEXT_CODE}"),
                    );
                };
                let credential = NewCredential::Token {
                    credential_id,
                    code: first_code,
                    next_code: Some(next),
                };
                self.enroll_add(login, credential).await
            }
            EnrollStep::Phone { voice } => {
                let kind = if voice {
                    EnrollKind::Voice
                } else {
                    EnrollKind::Sms
                };
                let Some(number) = phone_number(&answer) else {
                    return self.enroll_ask(login, kind, "That is not a phone number.");
                };
                self.enroll_register(login, kind, number).await
            }
            EnrollStep::PhoneCode { voice, phone } => {
                let Some(code) = as_code(&answer) else {
                    let prompt = format!("{MSG_NOT_A_CODE}\nEnter the code sent to {phone}:");
                    return self.enroll_again(
                        login,
                        EnrollStep::PhoneCode { voice, phone },
                        &prompt,
                    );
                };
                let channel = if voice { Channel::Voice } else { Channel::Sms };
                let credential = NewCredential::Phone {
                    channel,
                    number: phone,
                    code,
                };
                self.enroll_add(login, credential).await
            }
        }
    }

    /// Registers `number` at VIP, which sends it a code, then asks for that code.
    async fn enroll_register(
        &self,
        login: &mut Login<'_>,
        kind: EnrollKind,
        number: String,
    ) -> Outcome {
        if let Err(refused) = self.admit(Limit::Enrollment, &login.user_key).await {
            return refused;
        }
        let channel = if kind == EnrollKind::Voice {
            Channel::Voice
        } else {
            Channel::Sms
        };
        login.factor = factor_of(kind);
        let (request_id, result) = self.backend.register_phone(channel, &number).await;
        login.note(request_id);
        match result {
            Ok(()) => {
                let how = if channel == Channel::Voice {
                    "You are being called with a code at"
                } else {
                    "A code was sent by text message to"
                };
                let prompt = format!("{how} {number}. Enter it:");
                let step = EnrollStep::PhoneCode {
                    voice: channel == Channel::Voice,
                    phone: number,
                };
                self.enroll_again(login, step, &prompt)
            }
            Err(BackendError::Refused {
                refusal: Refusal::AlreadyInUse,
                status,
                ..
            }) => {
                login.status = Some(status);
                self.enroll_ask(login, kind, "That number is already registered with VIP: enter another one, or contact your help desk.")
            }
            Err(BackendError::Refused {
                refusal: Refusal::InvalidPhone,
                status,
                ..
            }) => {
                login.status = Some(status);
                self.enroll_ask(login, kind, "VIP cannot send codes to that number.")
            }
            Err(e) => self.failed(login, e, false).await,
        }
    }

    /// Binds `credential` to the user (creating the user at VIP first when it does not exist
    /// yet) and accepts the login: the code just proved the user holds it.
    async fn enroll_add(&self, login: &mut Login<'_>, credential: NewCredential) -> Outcome {
        if let Err(refused) = self.admit(Limit::Enrollment, &login.user_key).await {
            return refused;
        }
        let kind = match &credential {
            NewCredential::Token { .. } => EnrollKind::Token,
            NewCredential::Phone {
                channel: Channel::Sms,
                ..
            } => EnrollKind::Sms,
            NewCredential::Phone { .. } => EnrollKind::Voice,
        };
        login.factor = factor_of(kind);
        let user = login.vip_user.clone();
        let (request_id, mut result) = self.backend.add_credential(&user, &credential).await;
        login.note(request_id);
        if let Err(BackendError::Refused {
            refusal: Refusal::UnknownUser,
            ..
        }) = &result
        {
            // VIP checks the code only for a user it knows: create the user, add the
            // credential, and delete the user again when the credential is refused, so only
            // a proven credential leaves a user behind.
            let (request_id, created) = self.backend.create_user(&user).await;
            login.note(request_id.clone());
            let created = match created {
                Ok(created) => created,
                Err(e) => return self.failed(login, e, false).await,
            };
            let (request_id, retried) = self.backend.add_credential(&user, &credential).await;
            login.note(request_id);
            result = retried;
            if created && result.is_ok() {
                self.user_event(
                    login,
                    "user_created",
                    "created the user at VIP with their first credential",
                );
            } else if created {
                let (request_id, deleted) = self.backend.delete_user(&user).await;
                login.note(request_id);
                if let Err(e) = deleted {
                    // Rare (VIP refused the credential, then the deletion): say so loudly.
                    if self.misconfigured_log.allow() {
                        tracing::error!(vip_user = %Escaped(&user), problem = %e, "created a VIP user for an enrollment whose credential was refused, and could not delete it again: remove it with `vip-bridge admin user delete`");
                    }
                    self.user_event(login, "user_created", "created the user at VIP; their first credential was refused and deleting the user failed");
                }
            }
        }
        let (id, shown) = match &credential {
            NewCredential::Token { credential_id, .. } => {
                (credential_id.clone(), credential_id.clone())
            }
            NewCredential::Phone { number, .. } => (number.clone(), mask(number)),
        };
        match result {
            Ok(()) => {
                // The next login must see the new credential.
                self.factors.forget(&user).await;
                self.credential_changed(login, "credential_added", kind.as_str(), &shown);
                Outcome::Accept(Accept {
                    factor: login.factor,
                    credential_id: Some(id),
                    credential_type: Some(
                        match kind {
                            EnrollKind::Token => "STANDARD_OTP",
                            EnrollKind::Sms => "SMS_OTP",
                            EnrollKind::Voice => "VOICE_OTP",
                        }
                        .to_owned(),
                    ),
                    authn_id: None,
                    failed_open: false,
                    reply_attributes: login.reply_attributes.to_vec(),
                })
            }
            Err(BackendError::Refused {
                refusal, status, ..
            }) if refusal != Refusal::Misconfigured => {
                login.status = Some(status);
                self.enroll_refused(login, credential, refusal)
            }
            Err(e) => self.failed(login, e, false).await,
        }
    }

    /// What to ask after VIP refused to add a credential.
    fn enroll_refused(
        &self,
        login: &mut Login<'_>,
        credential: NewCredential,
        refusal: Refusal,
    ) -> Outcome {
        match (credential, refusal) {
            (
                NewCredential::Token {
                    credential_id,
                    code,
                    next_code: None,
                },
                Refusal::OutOfSync,
            ) => self.enroll_again(
                login,
                EnrollStep::TokenNextCode {
                    credential_id,
                    first_code: code,
                },
                MSG_ENROLL_NEXT_CODE,
            ),
            (NewCredential::Token { credential_id, .. }, Refusal::BadCode | Refusal::OutOfSync) => {
                let prompt = format!(
                    "That code was not right. Wait for a new code, then enter the code VIP Access shows for {credential_id}:"
                );
                self.enroll_again(login, EnrollStep::TokenCode { credential_id }, &prompt)
            }
            (NewCredential::Token { credential_id, .. }, Refusal::NoCredential) => {
                let lead =
                    format!("VIP does not know the credential ID {credential_id}: check it.");
                self.enroll_ask(login, EnrollKind::Token, &lead)
            }
            (
                NewCredential::Phone {
                    channel, number, ..
                },
                Refusal::BadCode,
            ) => {
                let prompt = format!("That code was not right. Enter the code sent to {number}:");
                let step = EnrollStep::PhoneCode {
                    voice: channel == Channel::Voice,
                    phone: number,
                };
                self.enroll_again(login, step, &prompt)
            }
            (
                NewCredential::Phone { channel, .. },
                Refusal::NoCredential | Refusal::InvalidPhone,
            ) => {
                let kind = if channel == Channel::Voice {
                    EnrollKind::Voice
                } else {
                    EnrollKind::Sms
                };
                self.enroll_ask(login, kind, "That code has expired or the number is no longer registered: enter the number again.")
            }
            (_, Refusal::AlreadyInUse) => {
                if let Some(suppressed) = self.refusal_log.pass() {
                    warn!(vip_user = %Escaped(&login.vip_user), suppressed, "enrollment refused: VIP says the credential is already bound (6011)");
                }
                reject(RejectReason::NoCredential, MSG_ALREADY_BOUND)
            }
            (_, Refusal::UserLocked | Refusal::CredentialLocked) => {
                reject(RejectReason::UserLocked, MSG_ENROLL_LOCKED)
            }
            (_, refusal) => {
                if self.misconfigured_log.allow() {
                    tracing::error!(refusal = ?refusal, "VIP refused to add a credential for a reason enrollment does not expect: check the VIP account's settings");
                }
                reject(RejectReason::Misconfigured, MSG_ENROLL_FAILED)
            }
        }
    }

    /// The user typed a reset keyword: ask for two consecutive codes of their token.
    pub(super) fn reset_start(&self, login: &mut Login<'_>) -> Outcome {
        if !login.may_enroll() {
            return reject(RejectReason::BadInput, MSG_CODE_FORMAT);
        }
        login.factor = Factor::Code;
        let ttl = self.cfg.state_ttl;
        self.challenge(login, &Step::ResetCode, ttl, MSG_RESET_FIRST, false)
    }

    /// The first of the two codes of a reset; the second goes to VIP with it (`NextCode`).
    pub(super) fn continue_reset(&self, login: &mut Login<'_>) -> Outcome {
        if login.policy.enrollment == Enrollment::Off {
            return self.bad_state(&"a reset step for a policy without enrollment");
        }
        login.factor = Factor::Code;
        let typed = login
            .req
            .secret
            .as_ref()
            .map(|s| s.expose().trim().to_owned())
            .unwrap_or_default();
        let Some(first_code) = as_code(&typed) else {
            return reject(RejectReason::BadInput, MSG_CODE_FORMAT);
        };
        let step = Step::NextCode {
            first_code,
            pin: None,
        };
        let ttl = self.cfg.state_ttl;
        self.challenge(login, &step, ttl, MSG_RESET_NEXT, false)
    }

    /// VIP accepted the PIN and code but the PIN has expired: ask for a new one.
    pub(super) fn pin_change_start(&self, login: &mut Login<'_>) -> Outcome {
        if let Some(suppressed) = self.refusal_log.pass() {
            info!(vip_user = %Escaped(&login.vip_user), suppressed, "the user's VIP PIN has expired: asking for a new one");
        }
        let ttl = self.enroll_ttl();
        self.challenge(login, &Step::NewPin, ttl, MSG_NEW_PIN, false)
    }

    /// A round answering [`Step::NewPin`] (`confirm` is `None`) or [`Step::ConfirmPin`].
    pub(super) async fn continue_pin_change(
        &self,
        login: &mut Login<'_>,
        confirm: Option<[u8; 16]>,
    ) -> Outcome {
        if !login.policy.change_expired_pin {
            return self.bad_state(&"a PIN change step for a policy without change_expired_pin");
        }
        login.factor = Factor::PinCode;
        let pin = login
            .req
            .secret
            .as_ref()
            .map(|s| Secret::new(s.expose().trim()))
            .unwrap_or_default();
        let ttl = self.enroll_ttl();
        let Some(digest) = confirm else {
            let n = pin.expose().chars().count();
            if !(4..=128).contains(&n) || pin.expose().chars().any(char::is_control) {
                let prompt = format!("The PIN must be 4 to 128 characters.\n{MSG_NEW_PIN}");
                return self.challenge(login, &Step::NewPin, ttl, &prompt, false);
            }
            let step = Step::ConfirmPin {
                digest: pin_digest(&pin),
            };
            return self.challenge(login, &step, ttl, "Enter the new PIN again:", false);
        };
        if !bool::from(pin_digest(&pin).ct_eq(&digest)) {
            let prompt = format!("The two PINs differ.\n{MSG_NEW_PIN}");
            return self.challenge(login, &Step::NewPin, ttl, &prompt, false);
        }
        if let Err(refused) = self.admit(Limit::Enrollment, &login.user_key).await {
            return refused;
        }
        let (request_id, result) = self.backend.change_pin(&login.vip_user, &pin).await;
        login.note(request_id);
        match result {
            Ok(()) => {
                self.credential_changed(login, "pin_changed", "pin", "");
                Outcome::Accept(Accept {
                    factor: Factor::PinCode,
                    credential_id: None,
                    credential_type: None,
                    authn_id: None,
                    failed_open: false,
                    reply_attributes: login.reply_attributes.to_vec(),
                })
            }
            Err(BackendError::Refused {
                refusal: Refusal::BadPin,
                status,
                ..
            }) => {
                login.status = Some(status);
                let prompt = format!(
                    "VIP refused that PIN: it does not meet the PIN policy.\n{MSG_NEW_PIN}"
                );
                self.challenge(login, &Step::NewPin, ttl, &prompt, false)
            }
            Err(e) => self.failed(login, e, false).await,
        }
    }

    /// Audit line for a user created at VIP by an enrollment.
    fn user_event(&self, login: &Login<'_>, event: &'static str, what: &str) {
        info!(
            target: "vip_bridge::audit",
            event,
            vip_user = %Escaped(&login.vip_user),
            request_ids = %login.request_ids.join(","),
            client = %Escaped(&login.req.client.name),
            "{what}"
        );
    }

    /// Audit line and metric for a credential added or reset, or a PIN changed. `shown`: the
    /// credential ID, or a phone number's last digits.
    pub(super) fn credential_changed(
        &self,
        login: &Login<'_>,
        event: &'static str,
        credential: &'static str,
        shown: &str,
    ) {
        if let Some(m) = self.metrics.get() {
            m.credential_change(event, credential);
        }
        info!(
            target: "vip_bridge::audit",
            event,
            credential,
            credential_id = %Escaped(shown),
            vip_user = %Escaped(&login.vip_user),
            request_ids = %login.request_ids.join(","),
            client = %Escaped(&login.req.client.name),
            remote = %escaped(login.req.client.remote.as_deref()),
            first_factor = login.first_factor_source(),
            "credential change during a login"
        );
    }
}

/// The kinds a policy allows, each once, in the order given.
fn allowed(kinds: &[EnrollKind]) -> Vec<EnrollKind> {
    let mut out: Vec<EnrollKind> = Vec::with_capacity(3);
    for k in kinds {
        if !out.contains(k) {
            out.push(*k);
        }
    }
    out
}

fn factor_of(kind: EnrollKind) -> Factor {
    match kind {
        EnrollKind::Token => Factor::Code,
        EnrollKind::Sms => Factor::Sms,
        EnrollKind::Voice => Factor::Voice,
    }
}

fn lead_with(lead: &str, question: &str) -> String {
    if lead.is_empty() {
        question.to_owned()
    } else {
        format!("{lead}\n{question}")
    }
}

/// A security code as typed ("123 456" as printed on a token).
fn as_code(typed: &str) -> Option<Secret> {
    let code = Secret::new(
        typed
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>(),
    );
    is_code(&code).then_some(code)
}

fn is_credential_id(id: &str) -> bool {
    (4..=MAX_CREDENTIAL_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `+1 (555) 123-4567` → `15551234567`; VIP takes 5 to 20 digits.
fn phone_number(typed: &str) -> Option<String> {
    let t = typed.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.chars()
        .any(|c| !(c.is_ascii_digit() || " -().".contains(c)))
    {
        return None;
    }
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    (5..=20).contains(&digits.len()).then_some(digits)
}

fn pin_digest(pin: &Secret) -> [u8; 16] {
    let d = Sha256::digest(pin.expose().as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

const MSG_NO_FACTOR_YET: &str = "You have no second factor yet. Set one up now:";
const MSG_NOT_A_CODE: &str = "That is not a security code.";
const MSG_ENROLL_NEXT_CODE: &str =
    "VIP needs a second code to set up this token. Wait for the next code and enter it:";
const MSG_ALREADY_BOUND: &str =
    "That credential is already registered to an account. Contact your help desk.";
const MSG_ENROLL_LOCKED: &str =
    "Your two-factor account is locked or disabled. Contact your help desk.";
const MSG_ENROLL_FAILED: &str = "Your credential could not be set up. Contact your help desk.";
const MSG_RESET_FIRST: &str = "To reset your token, enter the security code it shows now:";
const MSG_RESET_NEXT: &str = "Wait for the next code, then enter it:";
const MSG_NEW_PIN: &str = "Your VIP PIN has expired. Choose a new PIN (4 to 128 characters):";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_as_people_type_them() {
        assert_eq!(phone_number("+1 (555) 123-4567").unwrap(), "15551234567");
        assert_eq!(phone_number("4930 1234.567").unwrap(), "49301234567");
        assert!(phone_number("1234").is_none(), "too short");
        assert!(phone_number(&"1".repeat(21)).is_none(), "too long");
        assert!(phone_number("555-CALL-NOW").is_none());
        assert!(phone_number("").is_none());
    }

    #[test]
    fn credential_ids_and_codes() {
        assert!(is_credential_id("VSST12345678"));
        assert!(!is_credential_id("VSS"));
        assert!(!is_credential_id(&"V".repeat(33)));
        assert!(!is_credential_id("VSST-1234"));
        assert_eq!(as_code("123 456").unwrap().expose(), "123456");
        assert!(as_code("12345").is_none());
    }

    #[test]
    fn kinds_are_offered_once_in_order() {
        use EnrollKind::*;
        assert_eq!(allowed(&[Sms, Token, Sms]), vec![Sms, Token]);
    }

    #[test]
    fn pin_digests_differ() {
        assert_ne!(pin_digest(&"1234".into()), pin_digest(&"1235".into()));
        assert_eq!(pin_digest(&"1234".into()), pin_digest(&"1234".into()));
    }
}
