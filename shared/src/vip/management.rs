//! VIP's Management service (users, credentials, PINs, temporary security codes) and the
//! Query calls an admin tool needs beside it (getCredentialInfo,
//! getTemporaryPasswordAttributes). Like `ops`: one pure render/parse pair per operation,
//! validation before anything is sent, typed responses.
//!
//! Element names, order and cardinality follow VIP's XSD as mapped by soap4r (the old
//! `schemas.verisign.com` copy of the same schema), with the fields later versions added at
//! the positions Broadcom's VIP User Services Developer's Guide lists them (`forcePinChange`
//! after the PIN fields, `trustedDevice` after `friendlyName` in `credentialDetail`,
//! `includePushAttributes` after `credentialType`). Every payload element is in
//! [`super::soap::VIP_NS`].
//!
//! PINs, security codes and temporary security codes are never put in an error message, and
//! the request types print them as `<redacted>`; codes VIP sends back are [`Secret`]s.

use std::fmt;
use std::time::Duration;

use super::error::VipError;
use super::ops::{
    bad, check_otp, check_pin, check_request_id, check_text, check_user, checked, is_phone_number,
    optional_bool, required, OtpDelivery, UserStatus,
};
use super::soap::{self, Element, Writer};
use super::status::Status;
use crate::secret::Secret;

pub(crate) const OP_CREATE_USER: &str = "createUser";
pub(crate) const OP_UPDATE_USER: &str = "updateUser";
pub(crate) const OP_DELETE_USER: &str = "deleteUser";
pub(crate) const OP_CLEAR_USER_PIN: &str = "clearUserPin";
pub(crate) const OP_ADD_CREDENTIAL: &str = "addCredential";
pub(crate) const OP_REMOVE_CREDENTIAL: &str = "removeCredential";
pub(crate) const OP_UPDATE_CREDENTIAL: &str = "updateCredential";
pub(crate) const OP_REGISTER: &str = "register";
pub(crate) const OP_SET_TEMP_PASSWORD: &str = "setTemporaryPassword";
pub(crate) const OP_CLEAR_TEMP_PASSWORD: &str = "clearTemporaryPassword";
pub(crate) const OP_SET_TEMP_PASSWORD_ATTRS: &str = "setTemporaryPasswordAttributes";
pub(crate) const OP_GET_TEMP_PASSWORD_ATTRS: &str = "getTemporaryPasswordAttributes";
pub(crate) const OP_GET_CREDENTIAL_INFO: &str = "getCredentialInfo";

/// A temporary security code lives at most this long (seed 000: "maximum of 30 days").
pub const MAX_TEMPORARY_PASSWORD_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

const REDACTED: &str = "<redacted>";

// ---------------------------------------------------------------- public types

/// `CredentialTypeEnum`. The XSD lists STANDARD_OTP, CERTIFICATE, SMS_OTP, VOICE_OTP and
/// SERVICE_OTP; the 1.10 guide adds EMAIL_OTP, BIOMETRIC and SECURITY_KEY. A type we do not
/// know survives parsing as `Other` but is never sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CredentialType {
    StandardOtp,
    Certificate,
    SmsOtp,
    VoiceOtp,
    ServiceOtp,
    EmailOtp,
    Biometric,
    SecurityKey,
    Other(String),
}

impl CredentialType {
    const KNOWN: [(CredentialType, &'static str); 8] = [
        (CredentialType::StandardOtp, "STANDARD_OTP"),
        (CredentialType::Certificate, "CERTIFICATE"),
        (CredentialType::SmsOtp, "SMS_OTP"),
        (CredentialType::VoiceOtp, "VOICE_OTP"),
        (CredentialType::ServiceOtp, "SERVICE_OTP"),
        (CredentialType::EmailOtp, "EMAIL_OTP"),
        (CredentialType::Biometric, "BIOMETRIC"),
        (CredentialType::SecurityKey, "SECURITY_KEY"),
    ];

    /// The wire form (`STANDARD_OTP`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            CredentialType::Other(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(t, _)| t == known)
                .map(|(_, s)| *s)
                .unwrap_or(""),
        }
    }

    /// Parses VIP's text (trimmed, any case); unknown names become `Other`.
    pub fn parse(s: &str) -> CredentialType {
        let s = s.trim();
        Self::KNOWN
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(s))
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| CredentialType::Other(s.to_owned()))
    }
}

impl fmt::Display for CredentialType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `UserStatusEnum` values updateUser may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewUserStatus {
    Active,
    Disabled,
}

impl NewUserStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            NewUserStatus::Active => "ACTIVE",
            NewUserStatus::Disabled => "DISABLED",
        }
    }
}

/// The success of an operation whose answer carries nothing but its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    pub request_id: String,
}

/// createUser: a user, optionally with a PIN (4..=128 characters, VIP's PIN policy decides
/// the rest).
#[derive(Clone, Default)]
pub struct CreateUser<'a> {
    pub user_id: &'a str,
    pub pin: Option<&'a str>,
    /// `forcePinChange`: the PIN expires on first use (only with a PIN).
    pub force_pin_change: Option<bool>,
}

impl fmt::Debug for CreateUser<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateUser")
            .field("user_id", &self.user_id)
            .field("pin", &self.pin.map(|_| REDACTED))
            .field("force_pin_change", &self.force_pin_change)
            .finish()
    }
}

/// updateUser: any of a new user id, a new status, a new PIN (with the old one, or alone as
/// an administrator's reset) and `forcePinChange`. Absent fields are not changed.
#[derive(Clone, Default)]
pub struct UpdateUser<'a> {
    pub user_id: &'a str,
    pub new_user_id: Option<&'a str>,
    pub new_status: Option<NewUserStatus>,
    /// Only with `new_pin` (VIP refuses an old PIN alone).
    pub old_pin: Option<&'a str>,
    pub new_pin: Option<&'a str>,
    /// Only with `new_pin` (the guide: "The newPin attribute is required if forcePinChange is
    /// present").
    pub force_pin_change: Option<bool>,
}

impl fmt::Debug for UpdateUser<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateUser")
            .field("user_id", &self.user_id)
            .field("new_user_id", &self.new_user_id)
            .field("new_status", &self.new_status)
            .field("old_pin", &self.old_pin.map(|_| REDACTED))
            .field("new_pin", &self.new_pin.map(|_| REDACTED))
            .field("force_pin_change", &self.force_pin_change)
            .finish()
    }
}

/// addCredential: binds a credential to a user; `otp` (and `otp2`) prove possession.
#[derive(Clone)]
pub struct AddCredential<'a> {
    pub user_id: &'a str,
    /// 4..=100 of `[0-9A-Za-z,#.*]` (for SMS/voice credentials: the registered phone number).
    pub credential_id: &'a str,
    pub credential_type: CredentialType,
    pub friendly_name: Option<&'a str>,
    /// `trustedDevice`: the credential is a Trusted Device (never for mobile credentials).
    pub trusted_device: Option<bool>,
    /// `otpAuthData.otp`; `None` sends no `otpAuthData` (the guide marks it optional).
    pub otp: Option<&'a str>,
    /// `otpAuthData.otp2`, only with `otp`.
    pub otp2: Option<&'a str>,
}

impl fmt::Debug for AddCredential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddCredential")
            .field("user_id", &self.user_id)
            .field("credential_id", &self.credential_id)
            .field("credential_type", &self.credential_type)
            .field("friendly_name", &self.friendly_name)
            .field("trusted_device", &self.trusted_device)
            .field("otp", &self.otp.map(|_| REDACTED))
            .field("otp2", &self.otp2.map(|_| REDACTED))
            .finish()
    }
}

/// `temporaryPasswordAttributes`. Absent fields are left to VIP (its default lifetime is one
/// day; `oneTimeUseOnly` defaults to false).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TempPasswordAttributes {
    /// Sent as `expirationTime` = now + this, in UTC; 1 s ..= 30 days.
    pub expires_in: Option<Duration>,
    pub one_time_use_only: Option<bool>,
}

impl TempPasswordAttributes {
    fn is_empty(&self) -> bool {
        self.expires_in.is_none() && self.one_time_use_only.is_none()
    }
}

/// setTemporaryPassword: a temporary security code for a user, given (6 digits) or generated
/// by VIP (`code: None`), optionally also sent to the user by SMS or voice.
#[derive(Clone, Default)]
pub struct SetTemporaryPassword<'a> {
    pub user_id: &'a str,
    /// `temporaryPassword`: exactly 6 digits; `None`: VIP generates one and answers with it.
    pub code: Option<&'a str>,
    pub attributes: TempPasswordAttributes,
    /// `smsDeliveryInfo` / `voiceDeliveryInfo`.
    pub delivery: Option<OtpDelivery>,
}

impl fmt::Debug for SetTemporaryPassword<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetTemporaryPassword")
            .field("user_id", &self.user_id)
            .field("code", &self.code.map(|_| REDACTED))
            .field("attributes", &self.attributes)
            .field("delivery", &self.delivery)
            .finish()
    }
}

/// Success of setTemporaryPassword.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetTemporaryPasswordResponse {
    pub request_id: String,
    /// `temporaryPassword`: the code VIP set (VIP answers with it by default).
    pub code: Option<Secret>,
}

/// Success of register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterResponse {
    pub request_id: String,
    /// `otp`, which the XSD lets register return.
    pub otp: Option<Secret>,
}

/// Success of getTemporaryPasswordAttributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TempPasswordInfo {
    pub request_id: String,
    /// Whether VIP sent `tempPwdAttributes` at all.
    pub present: bool,
    /// `expirationTime`, as VIP sent it.
    pub expiration_time: Option<String>,
    /// `expirationTime` in Unix seconds, when it is a dateTime we can read.
    pub expires_at: Option<i64>,
    pub one_time_use_only: Option<bool>,
}

/// Success of getCredentialInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialInfo {
    pub request_id: String,
    pub credential_id: Option<String>,
    pub credential_type: Option<CredentialType>,
    pub credential_status: Option<String>,
    pub num_bindings: Option<u32>,
    pub users: Vec<UserBinding>,
    /// `pushAttributes` Key/Value pairs, in order (only with `include_push_attributes`).
    pub push_attributes: Vec<(String, String)>,
}

/// One `userBindingDetail` of getCredentialInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserBinding {
    pub user_id: String,
    pub user_status: Option<UserStatus>,
    pub bind_status: Option<String>,
    pub friendly_name: Option<String>,
    pub last_bind_time: Option<String>,
    pub last_authn_time: Option<String>,
    pub last_authn_id: Option<String>,
}

// ---------------------------------------------------------------- validation

/// `credentialId`: 4..=100 of `[0-9A-Za-z,#.*]`.
pub(crate) fn is_credential_id(s: &str) -> bool {
    (4..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b",#.*".contains(&b))
}

fn check_credential(
    op: &'static str,
    rid: &str,
    id: &str,
    kind: &CredentialType,
) -> Result<(), VipError> {
    if !is_credential_id(id) {
        return Err(bad(
            op,
            rid,
            format!(
                "credentialId {:?} is not 4..=100 of [0-9A-Za-z,#.*]",
                soap::truncate(id, 24)
            ),
        ));
    }
    if let CredentialType::Other(t) = kind {
        return Err(bad(
            op,
            rid,
            format!("unknown credentialType {:?}", soap::truncate(t, 24)),
        ));
    }
    Ok(())
}

fn check_friendly_name(op: &'static str, rid: &str, name: &str) -> Result<(), VipError> {
    // Length bound: an inference (VIP publishes none); keeps names printable in VIP Manager.
    check_text(op, rid, "friendlyName", name, 1, 128)?;
    if name.trim().is_empty() {
        return Err(bad(op, rid, "friendlyName is blank"));
    }
    Ok(())
}

fn check_phone(op: &'static str, rid: &str, phone: &str) -> Result<(), VipError> {
    if is_phone_number(phone) {
        Ok(())
    } else {
        Err(bad(
            op,
            rid,
            "phone number must match [0-9]{5,20}(x[0-9,#.*]{1,20})?",
        ))
    }
}

/// A temporary security code is exactly six digits (seed 000; the code itself is never
/// named in the error).
fn check_temporary_code(op: &'static str, rid: &str, code: &str) -> Result<(), VipError> {
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(bad(op, rid, "temporary security code must be 6 digits"))
    }
}

fn check_lifetime(op: &'static str, rid: &str, d: Duration) -> Result<(), VipError> {
    if d.as_secs() == 0 {
        return Err(bad(
            op,
            rid,
            "temporary security code lifetime must be at least 1 second",
        ));
    }
    if d > MAX_TEMPORARY_PASSWORD_LIFETIME {
        return Err(bad(
            op,
            rid,
            format!(
                "temporary security code lifetime must be at most 30 days, got {} s",
                d.as_secs()
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- rendering

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// xs:dateTime in UTC, whole seconds: `2026-11-30T04:00:00Z`.
pub(crate) fn format_datetime(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm), the inverse of ops::parse_datetime.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn temp_password_attributes(w: &mut Writer, attrs: &TempPasswordAttributes, now_unix: i64) {
    w.open("temporaryPasswordAttributes");
    if let Some(d) = attrs.expires_in {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        w.leaf(
            "expirationTime",
            &format_datetime(now_unix.saturating_add(secs)),
        );
    }
    if let Some(o) = attrs.one_time_use_only {
        w.leaf("oneTimeUseOnly", bool_text(o));
    }
    w.close();
}

fn delivery_info(w: &mut Writer, delivery: &OtpDelivery) {
    let (element, phone) = match delivery {
        OtpDelivery::Sms { phone_number } => ("smsDeliveryInfo", phone_number),
        OtpDelivery::Voice { phone_number } => ("voiceDeliveryInfo", phone_number),
    };
    w.open(element);
    w.leaf("phoneNumber", phone);
    w.close();
}

fn delivery_phone(delivery: &OtpDelivery) -> &str {
    match delivery {
        OtpDelivery::Sms { phone_number } | OtpDelivery::Voice { phone_number } => phone_number,
    }
}

/// A request of requestId and userId alone.
fn render_user_only(
    request: &'static str,
    op: &'static str,
    rid: &str,
    user_id: &str,
) -> Result<String, VipError> {
    check_request_id(op, rid)?;
    check_user(op, rid, user_id)?;
    let mut w = Writer::new(request);
    w.leaf("requestId", rid);
    w.leaf("userId", user_id);
    Ok(w.finish())
}

/// `CreateUserRequest`: requestId, userId, pin?, forcePinChange?.
pub fn render_create_user(rid: &str, req: &CreateUser<'_>) -> Result<String, VipError> {
    let op = OP_CREATE_USER;
    check_request_id(op, rid)?;
    check_user(op, rid, req.user_id)?;
    if let Some(p) = req.pin {
        check_pin(op, rid, p)?;
    } else if req.force_pin_change.is_some() {
        return Err(bad(op, rid, "forcePinChange needs a pin"));
    }
    let mut w = Writer::new("CreateUserRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", req.user_id);
    if let Some(p) = req.pin {
        w.leaf("pin", p);
    }
    if let Some(f) = req.force_pin_change {
        w.leaf("forcePinChange", bool_text(f));
    }
    Ok(w.finish())
}

/// `UpdateUserRequest`: requestId, userId, newUserId?, newUserStatus?, oldPin?, newPin?,
/// forcePinChange?.
pub fn render_update_user(rid: &str, req: &UpdateUser<'_>) -> Result<String, VipError> {
    let op = OP_UPDATE_USER;
    check_request_id(op, rid)?;
    check_user(op, rid, req.user_id)?;
    if let Some(n) = req.new_user_id {
        check_user(op, rid, n).map_err(|_| {
            bad(
                op,
                rid,
                "newUserId must be 1..=128 XML characters and not blank",
            )
        })?;
    }
    if let Some(p) = req.old_pin {
        check_pin(op, rid, p).map_err(|_| bad(op, rid, "oldPin must be 4..=128 characters"))?;
    }
    if let Some(p) = req.new_pin {
        check_pin(op, rid, p).map_err(|_| bad(op, rid, "newPin must be 4..=128 characters"))?;
    }
    if req.new_pin.is_none() {
        if req.old_pin.is_some() {
            return Err(bad(op, rid, "oldPin without newPin"));
        }
        if req.force_pin_change.is_some() {
            return Err(bad(op, rid, "forcePinChange needs newPin"));
        }
    }
    if req.new_user_id.is_none() && req.new_status.is_none() && req.new_pin.is_none() {
        return Err(bad(op, rid, "nothing to update"));
    }
    let mut w = Writer::new("UpdateUserRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", req.user_id);
    if let Some(n) = req.new_user_id {
        w.leaf("newUserId", n);
    }
    if let Some(s) = req.new_status {
        w.leaf("newUserStatus", s.as_str());
    }
    if let Some(p) = req.old_pin {
        w.leaf("oldPin", p);
    }
    if let Some(p) = req.new_pin {
        w.leaf("newPin", p);
    }
    if let Some(f) = req.force_pin_change {
        w.leaf("forcePinChange", bool_text(f));
    }
    Ok(w.finish())
}

/// `DeleteUserRequest`: requestId, userId.
pub fn render_delete_user(rid: &str, user_id: &str) -> Result<String, VipError> {
    render_user_only("DeleteUserRequest", OP_DELETE_USER, rid, user_id)
}

/// `ClearUserPinRequest`: requestId, userId.
pub fn render_clear_user_pin(rid: &str, user_id: &str) -> Result<String, VipError> {
    render_user_only("ClearUserPinRequest", OP_CLEAR_USER_PIN, rid, user_id)
}

/// `AddCredentialRequest`: requestId, userId,
/// credentialDetail{credentialId, credentialType, friendlyName?, trustedDevice?},
/// otpAuthData?{otp, otp2?}.
pub fn render_add_credential(rid: &str, req: &AddCredential<'_>) -> Result<String, VipError> {
    let op = OP_ADD_CREDENTIAL;
    check_request_id(op, rid)?;
    check_user(op, rid, req.user_id)?;
    check_credential(op, rid, req.credential_id, &req.credential_type)?;
    if let Some(n) = req.friendly_name {
        check_friendly_name(op, rid, n)?;
    }
    match (req.otp, req.otp2) {
        (Some(o), o2) => {
            check_otp(op, rid, "otp", o)?;
            if let Some(o2) = o2 {
                check_otp(op, rid, "otp2", o2)?;
            }
        }
        (None, Some(_)) => return Err(bad(op, rid, "otp2 without otp")),
        (None, None) => {}
    }
    let mut w = Writer::new("AddCredentialRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", req.user_id);
    w.open("credentialDetail");
    w.leaf("credentialId", req.credential_id);
    w.leaf("credentialType", req.credential_type.as_str());
    if let Some(n) = req.friendly_name {
        w.leaf("friendlyName", n);
    }
    if let Some(t) = req.trusted_device {
        w.leaf("trustedDevice", bool_text(t));
    }
    w.close();
    if let Some(o) = req.otp {
        w.open("otpAuthData");
        w.leaf("otp", o);
        if let Some(o2) = req.otp2 {
            w.leaf("otp2", o2);
        }
        w.close();
    }
    Ok(w.finish())
}

/// `RemoveCredentialRequest`: requestId, userId, credentialId, credentialType.
pub fn render_remove_credential(
    rid: &str,
    user_id: &str,
    credential_id: &str,
    credential_type: &CredentialType,
) -> Result<String, VipError> {
    let op = OP_REMOVE_CREDENTIAL;
    check_request_id(op, rid)?;
    check_user(op, rid, user_id)?;
    check_credential(op, rid, credential_id, credential_type)?;
    let mut w = Writer::new("RemoveCredentialRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", user_id);
    w.leaf("credentialId", credential_id);
    w.leaf("credentialType", credential_type.as_str());
    Ok(w.finish())
}

/// `UpdateCredentialRequest`: requestId, userId, credentialId, credentialType, friendlyName.
pub fn render_update_credential(
    rid: &str,
    user_id: &str,
    credential_id: &str,
    credential_type: &CredentialType,
    friendly_name: &str,
) -> Result<String, VipError> {
    let op = OP_UPDATE_CREDENTIAL;
    check_request_id(op, rid)?;
    check_user(op, rid, user_id)?;
    check_credential(op, rid, credential_id, credential_type)?;
    check_friendly_name(op, rid, friendly_name)?;
    let mut w = Writer::new("UpdateCredentialRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", user_id);
    w.leaf("credentialId", credential_id);
    w.leaf("credentialType", credential_type.as_str());
    w.leaf("friendlyName", friendly_name);
    Ok(w.finish())
}

/// `RegisterRequest`: requestId, smsDeliveryInfo{phoneNumber} | voiceDeliveryInfo{phoneNumber}
/// (no userId: the phone becomes a credential that addCredential then binds).
pub fn render_register(rid: &str, delivery: &OtpDelivery) -> Result<String, VipError> {
    let op = OP_REGISTER;
    check_request_id(op, rid)?;
    check_phone(op, rid, delivery_phone(delivery))?;
    let mut w = Writer::new("RegisterRequest");
    w.leaf("requestId", rid);
    delivery_info(&mut w, delivery);
    Ok(w.finish())
}

/// `SetTemporaryPasswordRequest`: requestId, userId, temporaryPassword?,
/// temporaryPasswordAttributes?{expirationTime?, oneTimeUseOnly?},
/// (smsDeliveryInfo{phoneNumber} | voiceDeliveryInfo{phoneNumber})?.
/// `now_unix`: our clock, for `expirationTime`.
pub fn render_set_temporary_password(
    rid: &str,
    req: &SetTemporaryPassword<'_>,
    now_unix: i64,
) -> Result<String, VipError> {
    let op = OP_SET_TEMP_PASSWORD;
    check_request_id(op, rid)?;
    check_user(op, rid, req.user_id)?;
    if let Some(c) = req.code {
        check_temporary_code(op, rid, c)?;
    }
    if let Some(d) = req.attributes.expires_in {
        check_lifetime(op, rid, d)?;
    }
    if let Some(d) = &req.delivery {
        check_phone(op, rid, delivery_phone(d))?;
    }
    let mut w = Writer::new("SetTemporaryPasswordRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", req.user_id);
    if let Some(c) = req.code {
        w.leaf("temporaryPassword", c);
    }
    if !req.attributes.is_empty() {
        temp_password_attributes(&mut w, &req.attributes, now_unix);
    }
    if let Some(d) = &req.delivery {
        delivery_info(&mut w, d);
    }
    Ok(w.finish())
}

/// `ClearTemporaryPasswordRequest`: requestId, userId.
pub fn render_clear_temporary_password(rid: &str, user_id: &str) -> Result<String, VipError> {
    render_user_only(
        "ClearTemporaryPasswordRequest",
        OP_CLEAR_TEMP_PASSWORD,
        rid,
        user_id,
    )
}

/// `SetTemporaryPasswordAttributesRequest`: requestId, userId,
/// temporaryPasswordAttributes{expirationTime?, oneTimeUseOnly?} (the element is required;
/// an empty one is refused here as nothing to set).
pub fn render_set_temporary_password_attributes(
    rid: &str,
    user_id: &str,
    attributes: &TempPasswordAttributes,
    now_unix: i64,
) -> Result<String, VipError> {
    let op = OP_SET_TEMP_PASSWORD_ATTRS;
    check_request_id(op, rid)?;
    check_user(op, rid, user_id)?;
    if attributes.is_empty() {
        return Err(bad(
            op,
            rid,
            "nothing to set (no expiration, no oneTimeUseOnly)",
        ));
    }
    if let Some(d) = attributes.expires_in {
        check_lifetime(op, rid, d)?;
    }
    let mut w = Writer::new("SetTemporaryPasswordAttributesRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", user_id);
    temp_password_attributes(&mut w, attributes, now_unix);
    Ok(w.finish())
}

/// `GetTemporaryPasswordAttributesRequest` (Query service): requestId, userId.
pub fn render_get_temporary_password_attributes(
    rid: &str,
    user_id: &str,
) -> Result<String, VipError> {
    render_user_only(
        "GetTemporaryPasswordAttributesRequest",
        OP_GET_TEMP_PASSWORD_ATTRS,
        rid,
        user_id,
    )
}

/// `GetCredentialInfoRequest` (Query service): requestId, credentialId, credentialType,
/// includePushAttributes? (sent only when true: the guide says absent means no).
pub fn render_get_credential_info(
    rid: &str,
    credential_id: &str,
    credential_type: &CredentialType,
    include_push_attributes: bool,
) -> Result<String, VipError> {
    let op = OP_GET_CREDENTIAL_INFO;
    check_request_id(op, rid)?;
    check_credential(op, rid, credential_id, credential_type)?;
    let mut w = Writer::new("GetCredentialInfoRequest");
    w.leaf("requestId", rid);
    w.leaf("credentialId", credential_id);
    w.leaf("credentialType", credential_type.as_str());
    if include_push_attributes {
        w.leaf("includePushAttributes", "true");
    }
    Ok(w.finish())
}

// ---------------------------------------------------------------- parsing

fn ack(body: &[u8], response: &str, op: &'static str, rid: &str) -> Result<Acknowledged, VipError> {
    checked(body, response, op, rid, &[Status::Success])?;
    Ok(Acknowledged {
        request_id: rid.to_owned(),
    })
}

pub fn parse_create_user(body: &[u8], rid: &str) -> Result<Acknowledged, VipError> {
    ack(body, "CreateUserResponse", OP_CREATE_USER, rid)
}

pub fn parse_update_user(body: &[u8], rid: &str) -> Result<Acknowledged, VipError> {
    ack(body, "UpdateUserResponse", OP_UPDATE_USER, rid)
}

pub fn parse_delete_user(body: &[u8], rid: &str) -> Result<Acknowledged, VipError> {
    ack(body, "DeleteUserResponse", OP_DELETE_USER, rid)
}

pub fn parse_clear_user_pin(body: &[u8], rid: &str) -> Result<Acknowledged, VipError> {
    ack(body, "ClearUserPinResponse", OP_CLEAR_USER_PIN, rid)
}

pub fn parse_add_credential(body: &[u8], rid: &str) -> Result<Acknowledged, VipError> {
    ack(body, "AddCredentialResponse", OP_ADD_CREDENTIAL, rid)
}

pub fn parse_remove_credential(body: &[u8], rid: &str) -> Result<Acknowledged, VipError> {
    ack(body, "RemoveCredentialResponse", OP_REMOVE_CREDENTIAL, rid)
}

pub fn parse_update_credential(body: &[u8], rid: &str) -> Result<Acknowledged, VipError> {
    ack(body, "UpdateCredentialResponse", OP_UPDATE_CREDENTIAL, rid)
}

pub fn parse_clear_temporary_password(body: &[u8], rid: &str) -> Result<Acknowledged, VipError> {
    ack(
        body,
        "ClearTemporaryPasswordResponse",
        OP_CLEAR_TEMP_PASSWORD,
        rid,
    )
}

pub fn parse_set_temporary_password_attributes(
    body: &[u8],
    rid: &str,
) -> Result<Acknowledged, VipError> {
    ack(
        body,
        "SetTemporaryPasswordAttributesResponse",
        OP_SET_TEMP_PASSWORD_ATTRS,
        rid,
    )
}

/// `RegisterResponse`: the base fields, then `otp?`.
pub fn parse_register(body: &[u8], rid: &str) -> Result<RegisterResponse, VipError> {
    let el = checked(
        body,
        "RegisterResponse",
        OP_REGISTER,
        rid,
        &[Status::Success],
    )?;
    Ok(RegisterResponse {
        request_id: rid.to_owned(),
        otp: el.vip_text("otp").map(Secret::new),
    })
}

/// `SetTemporaryPasswordResponse`: the base fields, then `temporaryPassword?`.
pub fn parse_set_temporary_password(
    body: &[u8],
    rid: &str,
) -> Result<SetTemporaryPasswordResponse, VipError> {
    let el = checked(
        body,
        "SetTemporaryPasswordResponse",
        OP_SET_TEMP_PASSWORD,
        rid,
        &[Status::Success],
    )?;
    Ok(SetTemporaryPasswordResponse {
        request_id: rid.to_owned(),
        code: el.vip_text("temporaryPassword").map(Secret::new),
    })
}

/// `GetTemporaryPasswordAttributesResponse`: the base fields, then
/// `tempPwdAttributes?{expirationTime?, oneTimeUseOnly?}`.
pub fn parse_get_temporary_password_attributes(
    body: &[u8],
    rid: &str,
) -> Result<TempPasswordInfo, VipError> {
    let el = checked(
        body,
        "GetTemporaryPasswordAttributesResponse",
        OP_GET_TEMP_PASSWORD_ATTRS,
        rid,
        &[Status::Success],
    )?;
    let attrs = el.vip_child("tempPwdAttributes");
    let expiration_time = attrs.and_then(|a| a.vip_text("expirationTime"));
    let one_time_use_only = match attrs {
        Some(a) => optional_bool(a, "oneTimeUseOnly")?,
        None => None,
    };
    Ok(TempPasswordInfo {
        request_id: rid.to_owned(),
        present: attrs.is_some(),
        expires_at: expiration_time
            .as_deref()
            .and_then(super::ops::parse_datetime),
        expiration_time,
        one_time_use_only,
    })
}

fn user_binding(u: &Element) -> Result<UserBinding, VipError> {
    let binding = u.vip_child("bindingDetail");
    let text = |name: &str| binding.and_then(|b| b.vip_text(name));
    Ok(UserBinding {
        user_id: required(u, "userBindingDetail", "userId")?,
        user_status: u.vip_text("userStatus").map(|s| UserStatus::parse(&s)),
        bind_status: text("bindStatus"),
        friendly_name: text("friendlyName"),
        last_bind_time: text("lastBindTime"),
        last_authn_time: text("lastAuthnTime"),
        last_authn_id: text("lastAuthnId"),
    })
}

/// `GetCredentialInfoResponse`: the base fields, then credentialId?, credentialType?,
/// credentialStatus?, numBindings?, userBindingDetail*{userId, userStatus,
/// bindingDetail{bindStatus, friendlyName?, lastBindTime, lastAuthnTime?, lastAuthnId?}},
/// pushAttributes*{Key, Value} (parsed by name, so later additions do not matter).
pub fn parse_get_credential_info(body: &[u8], rid: &str) -> Result<CredentialInfo, VipError> {
    let response = "GetCredentialInfoResponse";
    let el = checked(
        body,
        response,
        OP_GET_CREDENTIAL_INFO,
        rid,
        &[Status::Success],
    )?;
    let num_bindings = match el.vip_text("numBindings") {
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            VipError::protocol(format!(
                "{response} numBindings {:?} is not a count",
                soap::truncate(&n, 16)
            ))
        })?),
        None => None,
    };
    let mut users = Vec::new();
    for u in el.vip_children("userBindingDetail") {
        users.push(user_binding(u)?);
    }
    let mut push_attributes = Vec::new();
    for p in el.vip_children("pushAttributes") {
        let key = required(p, "pushAttributes", "Key")?;
        push_attributes.push((key, p.vip_text("Value").unwrap_or_default()));
    }
    Ok(CredentialInfo {
        request_id: rid.to_owned(),
        credential_id: el.vip_text("credentialId"),
        credential_type: el
            .vip_text("credentialType")
            .map(|t| CredentialType::parse(&t)),
        credential_status: el.vip_text("credentialStatus"),
        num_bindings,
        users,
        push_attributes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::vip::soap::{SOAP_NS, VIP_NS};
    use crate::vip::FailureClass;

    const RID: &str = "rid_0001";
    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:vip=\"https://schemas.symantec.com/vip/2011/04/vipuserservices\"><soapenv:Header/><soapenv:Body>";
    const TAIL: &str = "</soapenv:Body></soapenv:Envelope>";
    const NASTY: &str = "Zoë <&>\"' 山田";
    const NASTY_ESCAPED: &str = "Zoë &lt;&amp;&gt;&quot;&apos; 山田";
    // 2026-11-30T04:00:00Z
    const NOW: i64 = 1_796_011_200;

    fn golden(inner: &str) -> String {
        format!("{HEAD}{inner}{TAIL}")
    }

    fn is_bad_request(e: &VipError) -> bool {
        matches!(e, VipError::BadRequest { request_id, .. } if request_id.is_empty())
    }

    /// A response as the real service sends it: `S:` envelope, default namespace on the
    /// payload element.
    fn response(name: &str, status: &str, message: &str, extra: &str) -> Vec<u8> {
        format!(
            "<?xml version='1.0' encoding='UTF-8'?><S:Envelope xmlns:S=\"{SOAP_NS}\"><S:Body><{name} xmlns=\"{VIP_NS}\"><requestId>{RID}</requestId><status>{status}</status><statusMessage>{message}</statusMessage>{extra}</{name}></S:Body></S:Envelope>"
        )
        .into_bytes()
    }

    #[test]
    fn datetime_round_trips() {
        assert_eq!(format_datetime(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_datetime(NOW), "2026-11-30T04:00:00Z");
        assert_eq!(format_datetime(1_709_208_000), "2024-02-29T12:00:00Z");
        for t in [0, 951_782_400, 1_709_208_000, NOW, 4_102_444_799, -1] {
            assert_eq!(
                super::super::ops::parse_datetime(&format_datetime(t)),
                Some(t)
            );
        }
    }

    #[test]
    fn credential_types() {
        assert_eq!(CredentialType::StandardOtp.as_str(), "STANDARD_OTP");
        assert_eq!(CredentialType::SecurityKey.as_str(), "SECURITY_KEY");
        for (t, s) in CredentialType::KNOWN {
            assert_eq!(CredentialType::parse(s), t);
            assert_eq!(CredentialType::parse(&s.to_lowercase()), t);
            assert_eq!(t.to_string(), s);
        }
        assert_eq!(
            CredentialType::parse(" FIDO "),
            CredentialType::Other("FIDO".into())
        );
    }

    #[test]
    fn credential_ids() {
        assert!(is_credential_id("VSMT12345678"));
        assert!(is_credential_id("15551234567"));
        assert!(is_credential_id("a,#.*"));
        assert!(is_credential_id(&"A".repeat(100)));
        assert!(!is_credential_id("abc"));
        assert!(!is_credential_id(&"A".repeat(101)));
        assert!(!is_credential_id("VSMT 1234"));
        assert!(!is_credential_id("VSMT-1234"));
        assert!(!is_credential_id("VSMT<1234"));
        assert!(!is_credential_id("ВСМТ1234"));
    }

    // ------------------------------------------------------------ golden bodies

    #[test]
    fn golden_create_user() {
        let body = render_create_user(
            RID,
            &CreateUser {
                user_id: NASTY,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            body,
            golden(&format!(
                "<vip:CreateUserRequest><vip:requestId>{RID}</vip:requestId><vip:userId>{NASTY_ESCAPED}</vip:userId></vip:CreateUserRequest>"
            ))
        );
        let body = render_create_user(
            RID,
            &CreateUser {
                user_id: "alice",
                pin: Some("12<4"),
                force_pin_change: Some(true),
            },
        )
        .unwrap();
        assert_eq!(
            body,
            golden("<vip:CreateUserRequest><vip:requestId>rid_0001</vip:requestId><vip:userId>alice</vip:userId><vip:pin>12&lt;4</vip:pin><vip:forcePinChange>true</vip:forcePinChange></vip:CreateUserRequest>")
        );
    }

    #[test]
    fn golden_update_user() {
        let body = render_update_user(
            RID,
            &UpdateUser {
                user_id: NASTY,
                new_user_id: Some("a&b"),
                new_status: Some(NewUserStatus::Disabled),
                old_pin: Some("1111"),
                new_pin: Some("2222"),
                force_pin_change: Some(false),
            },
        )
        .unwrap();
        assert_eq!(
            body,
            golden(&format!(
                "<vip:UpdateUserRequest><vip:requestId>{RID}</vip:requestId><vip:userId>{NASTY_ESCAPED}</vip:userId><vip:newUserId>a&amp;b</vip:newUserId><vip:newUserStatus>DISABLED</vip:newUserStatus><vip:oldPin>1111</vip:oldPin><vip:newPin>2222</vip:newPin><vip:forcePinChange>false</vip:forcePinChange></vip:UpdateUserRequest>"
            ))
        );
        let body = render_update_user(
            RID,
            &UpdateUser {
                user_id: "alice",
                new_status: Some(NewUserStatus::Active),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            body,
            golden("<vip:UpdateUserRequest><vip:requestId>rid_0001</vip:requestId><vip:userId>alice</vip:userId><vip:newUserStatus>ACTIVE</vip:newUserStatus></vip:UpdateUserRequest>")
        );
    }

    #[test]
    fn golden_user_only_requests() {
        for (body, name) in [
            (render_delete_user(RID, NASTY), "DeleteUserRequest"),
            (render_clear_user_pin(RID, NASTY), "ClearUserPinRequest"),
            (
                render_clear_temporary_password(RID, NASTY),
                "ClearTemporaryPasswordRequest",
            ),
            (
                render_get_temporary_password_attributes(RID, NASTY),
                "GetTemporaryPasswordAttributesRequest",
            ),
        ] {
            assert_eq!(
                body.unwrap(),
                golden(&format!(
                    "<vip:{name}><vip:requestId>{RID}</vip:requestId><vip:userId>{NASTY_ESCAPED}</vip:userId></vip:{name}>"
                ))
            );
        }
    }

    #[test]
    fn golden_add_credential() {
        let body = render_add_credential(
            RID,
            &AddCredential {
                user_id: NASTY,
                credential_id: "VSMT12345678",
                credential_type: CredentialType::StandardOtp,
                friendly_name: Some("Zoë's <phone>"),
                trusted_device: Some(false),
                otp: Some("123456"),
                otp2: Some("654321"),
            },
        )
        .unwrap();
        assert_eq!(
            body,
            golden(&format!(
                "<vip:AddCredentialRequest><vip:requestId>{RID}</vip:requestId><vip:userId>{NASTY_ESCAPED}</vip:userId><vip:credentialDetail><vip:credentialId>VSMT12345678</vip:credentialId><vip:credentialType>STANDARD_OTP</vip:credentialType><vip:friendlyName>Zoë&apos;s &lt;phone&gt;</vip:friendlyName><vip:trustedDevice>false</vip:trustedDevice></vip:credentialDetail><vip:otpAuthData><vip:otp>123456</vip:otp><vip:otp2>654321</vip:otp2></vip:otpAuthData></vip:AddCredentialRequest>"
            ))
        );
        // Optional elements omitted.
        let body = render_add_credential(
            RID,
            &AddCredential {
                user_id: "alice",
                credential_id: "15551234567",
                credential_type: CredentialType::SmsOtp,
                friendly_name: None,
                trusted_device: None,
                otp: Some("123456"),
                otp2: None,
            },
        )
        .unwrap();
        assert_eq!(
            body,
            golden("<vip:AddCredentialRequest><vip:requestId>rid_0001</vip:requestId><vip:userId>alice</vip:userId><vip:credentialDetail><vip:credentialId>15551234567</vip:credentialId><vip:credentialType>SMS_OTP</vip:credentialType></vip:credentialDetail><vip:otpAuthData><vip:otp>123456</vip:otp></vip:otpAuthData></vip:AddCredentialRequest>")
        );
    }

    #[test]
    fn golden_remove_and_update_credential() {
        assert_eq!(
            render_remove_credential(RID, NASTY, "VSMT12345678", &CredentialType::StandardOtp)
                .unwrap(),
            golden(&format!(
                "<vip:RemoveCredentialRequest><vip:requestId>{RID}</vip:requestId><vip:userId>{NASTY_ESCAPED}</vip:userId><vip:credentialId>VSMT12345678</vip:credentialId><vip:credentialType>STANDARD_OTP</vip:credentialType></vip:RemoveCredentialRequest>"
            ))
        );
        assert_eq!(
            render_update_credential(
                RID,
                NASTY,
                "15557654321",
                &CredentialType::VoiceOtp,
                "desk & \"home\""
            )
            .unwrap(),
            golden(&format!(
                "<vip:UpdateCredentialRequest><vip:requestId>{RID}</vip:requestId><vip:userId>{NASTY_ESCAPED}</vip:userId><vip:credentialId>15557654321</vip:credentialId><vip:credentialType>VOICE_OTP</vip:credentialType><vip:friendlyName>desk &amp; &quot;home&quot;</vip:friendlyName></vip:UpdateCredentialRequest>"
            ))
        );
    }

    #[test]
    fn golden_register() {
        assert_eq!(
            render_register(
                RID,
                &OtpDelivery::Sms {
                    phone_number: "15551234567".into()
                }
            )
            .unwrap(),
            golden("<vip:RegisterRequest><vip:requestId>rid_0001</vip:requestId><vip:smsDeliveryInfo><vip:phoneNumber>15551234567</vip:phoneNumber></vip:smsDeliveryInfo></vip:RegisterRequest>")
        );
        assert_eq!(
            render_register(
                RID,
                &OtpDelivery::Voice {
                    phone_number: "488555444x,1112".into()
                }
            )
            .unwrap(),
            golden("<vip:RegisterRequest><vip:requestId>rid_0001</vip:requestId><vip:voiceDeliveryInfo><vip:phoneNumber>488555444x,1112</vip:phoneNumber></vip:voiceDeliveryInfo></vip:RegisterRequest>")
        );
    }

    #[test]
    fn golden_set_temporary_password() {
        // Generated by VIP: nothing but the user.
        let body = render_set_temporary_password(
            RID,
            &SetTemporaryPassword {
                user_id: NASTY,
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
        assert_eq!(
            body,
            golden(&format!(
                "<vip:SetTemporaryPasswordRequest><vip:requestId>{RID}</vip:requestId><vip:userId>{NASTY_ESCAPED}</vip:userId></vip:SetTemporaryPasswordRequest>"
            ))
        );
        // Everything.
        let body = render_set_temporary_password(
            RID,
            &SetTemporaryPassword {
                user_id: "alice",
                code: Some("135790"),
                attributes: TempPasswordAttributes {
                    expires_in: Some(Duration::from_secs(3600)),
                    one_time_use_only: Some(true),
                },
                delivery: Some(OtpDelivery::Voice {
                    phone_number: "15557654321".into(),
                }),
            },
            NOW,
        )
        .unwrap();
        assert_eq!(
            body,
            golden("<vip:SetTemporaryPasswordRequest><vip:requestId>rid_0001</vip:requestId><vip:userId>alice</vip:userId><vip:temporaryPassword>135790</vip:temporaryPassword><vip:temporaryPasswordAttributes><vip:expirationTime>2026-11-30T05:00:00Z</vip:expirationTime><vip:oneTimeUseOnly>true</vip:oneTimeUseOnly></vip:temporaryPasswordAttributes><vip:voiceDeliveryInfo><vip:phoneNumber>15557654321</vip:phoneNumber></vip:voiceDeliveryInfo></vip:SetTemporaryPasswordRequest>")
        );
        // One attribute only, SMS delivery.
        let body = render_set_temporary_password(
            RID,
            &SetTemporaryPassword {
                user_id: "alice",
                code: None,
                attributes: TempPasswordAttributes {
                    expires_in: None,
                    one_time_use_only: Some(false),
                },
                delivery: Some(OtpDelivery::Sms {
                    phone_number: "15551234567".into(),
                }),
            },
            NOW,
        )
        .unwrap();
        assert_eq!(
            body,
            golden("<vip:SetTemporaryPasswordRequest><vip:requestId>rid_0001</vip:requestId><vip:userId>alice</vip:userId><vip:temporaryPasswordAttributes><vip:oneTimeUseOnly>false</vip:oneTimeUseOnly></vip:temporaryPasswordAttributes><vip:smsDeliveryInfo><vip:phoneNumber>15551234567</vip:phoneNumber></vip:smsDeliveryInfo></vip:SetTemporaryPasswordRequest>")
        );
    }

    #[test]
    fn golden_set_temporary_password_attributes() {
        let body = render_set_temporary_password_attributes(
            RID,
            NASTY,
            &TempPasswordAttributes {
                expires_in: Some(MAX_TEMPORARY_PASSWORD_LIFETIME),
                one_time_use_only: None,
            },
            NOW,
        )
        .unwrap();
        assert_eq!(
            body,
            golden(&format!(
                "<vip:SetTemporaryPasswordAttributesRequest><vip:requestId>{RID}</vip:requestId><vip:userId>{NASTY_ESCAPED}</vip:userId><vip:temporaryPasswordAttributes><vip:expirationTime>2026-12-30T04:00:00Z</vip:expirationTime></vip:temporaryPasswordAttributes></vip:SetTemporaryPasswordAttributesRequest>"
            ))
        );
    }

    #[test]
    fn golden_get_credential_info() {
        assert_eq!(
            render_get_credential_info(RID, "VSMT12345678", &CredentialType::StandardOtp, false)
                .unwrap(),
            golden("<vip:GetCredentialInfoRequest><vip:requestId>rid_0001</vip:requestId><vip:credentialId>VSMT12345678</vip:credentialId><vip:credentialType>STANDARD_OTP</vip:credentialType></vip:GetCredentialInfoRequest>")
        );
        assert_eq!(
            render_get_credential_info(RID, "VSMT12345678", &CredentialType::StandardOtp, true)
                .unwrap(),
            golden("<vip:GetCredentialInfoRequest><vip:requestId>rid_0001</vip:requestId><vip:credentialId>VSMT12345678</vip:credentialId><vip:credentialType>STANDARD_OTP</vip:credentialType><vip:includePushAttributes>true</vip:includePushAttributes></vip:GetCredentialInfoRequest>")
        );
    }

    // ------------------------------------------------------------ validation

    #[test]
    fn validation_refuses_before_sending() {
        let add = AddCredential {
            user_id: "alice",
            credential_id: "VSMT12345678",
            credential_type: CredentialType::StandardOtp,
            friendly_name: None,
            trusted_device: None,
            otp: Some("123456"),
            otp2: None,
        };
        assert!(render_add_credential(RID, &add).is_ok());
        let mut bad_adds = Vec::new();
        for id in [
            "abc",
            "VSMT 12345678",
            "VSMT-1234",
            "VSMT_1234",
            "<VSMT1234>",
        ] {
            bad_adds.push(AddCredential {
                credential_id: id,
                ..add.clone()
            });
        }
        let long_id = "A".repeat(101);
        bad_adds.push(AddCredential {
            credential_id: &long_id,
            ..add.clone()
        });
        bad_adds.push(AddCredential {
            credential_type: CredentialType::Other("FIDO".into()),
            ..add.clone()
        });
        bad_adds.push(AddCredential {
            otp: Some("12345"),
            ..add.clone()
        });
        bad_adds.push(AddCredential {
            otp: None,
            otp2: Some("123456"),
            ..add.clone()
        });
        bad_adds.push(AddCredential {
            friendly_name: Some(""),
            ..add.clone()
        });
        bad_adds.push(AddCredential {
            friendly_name: Some("  "),
            ..add.clone()
        });
        bad_adds.push(AddCredential {
            user_id: "",
            ..add.clone()
        });
        for req in &bad_adds {
            let e = render_add_credential(RID, req).unwrap_err();
            assert!(is_bad_request(&e), "{req:?}: {e}");
            assert_eq!(e.class(), FailureClass::Misconfigured);
        }
        assert!(render_add_credential("bad-rid", &add).is_err());

        // Phone numbers (register, delivery).
        for phone in ["1234", "+15551234567", "1555 1234567", "15551234567x", ""] {
            let sms = OtpDelivery::Sms {
                phone_number: phone.into(),
            };
            assert!(
                is_bad_request(&render_register(RID, &sms).unwrap_err()),
                "{phone}"
            );
            let req = SetTemporaryPassword {
                user_id: "alice",
                delivery: Some(sms),
                ..Default::default()
            };
            assert!(is_bad_request(
                &render_set_temporary_password(RID, &req, NOW).unwrap_err()
            ));
        }

        // Temporary codes: exactly 6 digits.
        for code in ["12345", "1234567", "12345a", "１２３４５６", ""] {
            let req = SetTemporaryPassword {
                user_id: "alice",
                code: Some(code),
                ..Default::default()
            };
            assert!(
                is_bad_request(&render_set_temporary_password(RID, &req, NOW).unwrap_err()),
                "{code}"
            );
        }

        // Lifetimes: 1 s ..= 30 days.
        for (d, ok) in [
            (Duration::from_secs(1), true),
            (MAX_TEMPORARY_PASSWORD_LIFETIME, true),
            (Duration::from_millis(500), false),
            (
                MAX_TEMPORARY_PASSWORD_LIFETIME + Duration::from_secs(1),
                false,
            ),
            (Duration::from_secs(31 * 86_400), false),
        ] {
            let attributes = TempPasswordAttributes {
                expires_in: Some(d),
                one_time_use_only: None,
            };
            let req = SetTemporaryPassword {
                user_id: "alice",
                attributes,
                ..Default::default()
            };
            assert_eq!(
                render_set_temporary_password(RID, &req, NOW).is_ok(),
                ok,
                "{d:?}"
            );
            assert_eq!(
                render_set_temporary_password_attributes(RID, "alice", &attributes, NOW).is_ok(),
                ok,
                "{d:?}"
            );
        }
        assert!(is_bad_request(
            &render_set_temporary_password_attributes(
                RID,
                "alice",
                &TempPasswordAttributes::default(),
                NOW
            )
            .unwrap_err()
        ));

        // PINs: 4..=128 characters.
        let long_pin = "p".repeat(129);
        for pin in ["123", "", long_pin.as_str(), "12\u{0}4"] {
            let e = render_create_user(
                RID,
                &CreateUser {
                    user_id: "alice",
                    pin: Some(pin),
                    force_pin_change: None,
                },
            )
            .unwrap_err();
            assert!(is_bad_request(&e));
            let e = render_update_user(
                RID,
                &UpdateUser {
                    user_id: "alice",
                    new_pin: Some(pin),
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert!(is_bad_request(&e));
            let e = render_update_user(
                RID,
                &UpdateUser {
                    user_id: "alice",
                    old_pin: Some(pin),
                    new_pin: Some("1234"),
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert!(is_bad_request(&e));
        }
        assert!(render_create_user(
            RID,
            &CreateUser {
                user_id: "alice",
                pin: Some(&"p".repeat(128)),
                force_pin_change: None,
            }
        )
        .is_ok());

        // updateUser combinations VIP refuses, and an empty update.
        for req in [
            UpdateUser {
                user_id: "alice",
                ..Default::default()
            },
            UpdateUser {
                user_id: "alice",
                old_pin: Some("1234"),
                ..Default::default()
            },
            UpdateUser {
                user_id: "alice",
                force_pin_change: Some(true),
                new_status: Some(NewUserStatus::Active),
                ..Default::default()
            },
            UpdateUser {
                user_id: "alice",
                new_user_id: Some(""),
                ..Default::default()
            },
        ] {
            let e = render_update_user(RID, &req).unwrap_err();
            assert!(is_bad_request(&e), "{req:?}");
        }
        assert!(is_bad_request(
            &render_create_user(
                RID,
                &CreateUser {
                    user_id: "alice",
                    pin: None,
                    force_pin_change: Some(true),
                }
            )
            .unwrap_err()
        ));

        // User ids everywhere.
        let long_user = "é".repeat(129);
        for user in ["", " ", long_user.as_str(), "a\u{1b}b"] {
            assert!(render_delete_user(RID, user).is_err());
            assert!(render_clear_user_pin(RID, user).is_err());
            assert!(render_clear_temporary_password(RID, user).is_err());
            assert!(render_get_temporary_password_attributes(RID, user).is_err());
            assert!(
                render_remove_credential(RID, user, "VSMT1234", &CredentialType::StandardOtp)
                    .is_err()
            );
        }
        assert!(render_update_credential(
            RID,
            "alice",
            "VSMT1234",
            &CredentialType::StandardOtp,
            ""
        )
        .is_err());
        assert!(render_get_credential_info(RID, "x", &CredentialType::StandardOtp, false).is_err());
    }

    #[test]
    fn secrets_never_in_errors_or_debug() {
        // Errors: a bad otp, a bad PIN, a bad temporary code do not echo themselves, nor do
        // the good secrets beside them.
        let e = render_add_credential(
            RID,
            &AddCredential {
                user_id: "alice",
                credential_id: "VSMT12345678",
                credential_type: CredentialType::StandardOtp,
                friendly_name: None,
                trusted_device: None,
                otp: Some("98765!"),
                otp2: None,
            },
        )
        .unwrap_err();
        assert!(!e.to_string().contains("98765"), "{e}");
        assert!(!format!("{e:?}").contains("98765"));
        let e = render_update_user(
            RID,
            &UpdateUser {
                user_id: "alice",
                old_pin: Some("s3cr3t-old"),
                new_pin: Some("x"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{e}");
        let e = render_set_temporary_password(
            RID,
            &SetTemporaryPassword {
                user_id: "alice",
                code: Some("24680x"),
                ..Default::default()
            },
            NOW,
        )
        .unwrap_err();
        assert!(!format!("{e} {e:?}").contains("24680"), "{e}");

        // Debug of the requests.
        let dbg = format!(
            "{:?} {:?} {:?} {:?}",
            CreateUser {
                user_id: "alice",
                pin: Some("pin-one-1"),
                force_pin_change: Some(true)
            },
            UpdateUser {
                user_id: "alice",
                old_pin: Some("pin-two-2"),
                new_pin: Some("pin-three-3"),
                ..Default::default()
            },
            AddCredential {
                user_id: "alice",
                credential_id: "VSMT12345678",
                credential_type: CredentialType::StandardOtp,
                friendly_name: None,
                trusted_device: None,
                otp: Some("111333"),
                otp2: Some("222444"),
            },
            SetTemporaryPassword {
                user_id: "alice",
                code: Some("555777"),
                ..Default::default()
            },
        );
        for secret in [
            "pin-one-1",
            "pin-two-2",
            "pin-three-3",
            "111333",
            "222444",
            "555777",
        ] {
            assert!(!dbg.contains(secret), "{secret} in {dbg}");
        }
        assert!(dbg.contains("alice") && dbg.contains("<redacted>"));

        // Debug of the answers that carry codes.
        let r = parse_set_temporary_password(
            &response(
                "SetTemporaryPasswordResponse",
                "0000",
                "Success",
                "<temporaryPassword>864209</temporaryPassword>",
            ),
            RID,
        )
        .unwrap();
        assert_eq!(r.code.as_ref().map(|c| c.expose()), Some("864209"));
        assert!(!format!("{r:?}").contains("864209"));
        let r = parse_register(
            &response("RegisterResponse", "0000", "Success", "<otp>975310</otp>"),
            RID,
        )
        .unwrap();
        assert_eq!(r.otp.as_ref().map(|c| c.expose()), Some("975310"));
        assert!(!format!("{r:?}").contains("975310"));
    }

    // ------------------------------------------------------------ parsing

    type AckParser = fn(&[u8], &str) -> Result<Acknowledged, VipError>;

    const ACKS: [(&str, &str, AckParser); 9] = [
        ("CreateUserResponse", "createUser", parse_create_user),
        ("UpdateUserResponse", "updateUser", parse_update_user),
        ("DeleteUserResponse", "deleteUser", parse_delete_user),
        ("ClearUserPinResponse", "clearUserPin", parse_clear_user_pin),
        (
            "AddCredentialResponse",
            "addCredential",
            parse_add_credential,
        ),
        (
            "RemoveCredentialResponse",
            "removeCredential",
            parse_remove_credential,
        ),
        (
            "UpdateCredentialResponse",
            "updateCredential",
            parse_update_credential,
        ),
        (
            "ClearTemporaryPasswordResponse",
            "clearTemporaryPassword",
            parse_clear_temporary_password,
        ),
        (
            "SetTemporaryPasswordAttributesResponse",
            "setTemporaryPasswordAttributes",
            parse_set_temporary_password_attributes,
        ),
    ];

    #[test]
    fn acknowledgements_parse_success_and_every_status() {
        let statuses = [
            ("6001", Status::InvalidAccount, "Invalid account."),
            ("6002", Status::UserExists, "User already exists."),
            ("6003", Status::UserNotFound, "User does not exist."),
            (
                "6004",
                Status::InvalidCredentialId,
                "Credential ID is not valid.",
            ),
            ("6005", Status::InternalError, "Internal error."),
            (
                "6006",
                Status::InvalidCredentialType,
                "Invalid credential type.",
            ),
            (
                "6007",
                Status::NoBinding,
                "No binding exists between user and credential.",
            ),
            (
                "6009",
                Status::AuthenticationFailed,
                "Authentication failed.",
            ),
            (
                "600A",
                Status::CredentialTypeNotSupported,
                "Credential type not supported.",
            ),
            (
                "600D",
                Status::CredentialStateNotAllowed,
                "Operation not allowed in current state of credential.",
            ),
            (
                "6010",
                Status::OperationNotAllowed,
                "Operation not allowed.",
            ),
            (
                "6011",
                Status::CredentialAlreadyBound,
                "Credential is already bound to the user.",
            ),
            ("6015", Status::InvalidPhoneNumber, "Invalid phone number"),
            (
                "601b",
                Status::UserStatusNotAllowed,
                "Operation not allowed in current user status.",
            ),
            ("601F", Status::InvalidPin, "Invalid user PIN."),
            ("6020", Status::PinPolicy, "PIN does not meet policy."),
            (
                "6021",
                Status::PinNotEnabled,
                "PIN not enabled for this account.",
            ),
            (
                "6026",
                Status::AlreadyRegistered,
                "Phone number is already registered.",
            ),
        ];
        for (response_name, op, parse) in ACKS {
            let ok = parse(&response(response_name, "0000", "Success", ""), RID).unwrap();
            assert_eq!(ok.request_id, RID);
            for (code, status, message) in statuses {
                let e = parse(&response(response_name, code, message, ""), RID).unwrap_err();
                match &e {
                    VipError::Rejected {
                        operation,
                        status: s,
                        message: m,
                        request_id,
                        ..
                    } => {
                        assert_eq!(*operation, op);
                        assert_eq!(*s, status);
                        assert_eq!(m, message);
                        assert_eq!(request_id, RID);
                    }
                    other => panic!("{op} {code}: {other}"),
                }
                // A refusal is VIP's answer, never an outage.
                assert_eq!(e.class(), FailureClass::Answered, "{op} {code}");
                assert!(!e.is_unreachable());
                assert_eq!(
                    e.is_not_found(),
                    matches!(code, "6003" | "6004" | "6007"),
                    "{op} {code}"
                );
            }
            // 600B is our bug, reported as a bad request VIP saw.
            let e = parse(
                &response(response_name, "600B", "Schema validation failed.", ""),
                RID,
            )
            .unwrap_err();
            assert!(matches!(e, VipError::BadRequest { ref request_id, .. } if request_id == RID));
            assert_eq!(e.status(), Some(Status::SchemaValidationFailed));
            assert!(!e.is_not_found());
        }
    }

    #[test]
    fn not_found_is_only_vips_answer() {
        let e =
            parse_delete_user(&response("DeleteUserResponse", "6003", "x", ""), RID).unwrap_err();
        assert!(e.is_not_found());
        // Our own refusal, an outage, a protocol error: never "not found".
        assert!(!render_delete_user(RID, "").unwrap_err().is_not_found());
        let outage = VipError::Unreachable {
            url: "https://vip.example".into(),
            cause: "connection refused".into(),
            request_id: RID.into(),
        };
        assert!(!outage.is_not_found());
        assert!(!VipError::protocol("garbage").is_not_found());
    }

    #[test]
    fn wrong_namespace_element_or_request_id_refused() {
        let wrong_ns = format!(
            "<S:Envelope xmlns:S=\"{SOAP_NS}\"><S:Body><CreateUserResponse xmlns=\"http://schemas.verisign.com/vip/2011/04/vipuserservices\"><requestId>{RID}</requestId><status>0000</status><statusMessage>Success</statusMessage></CreateUserResponse></S:Body></S:Envelope>"
        );
        let e = parse_create_user(wrong_ns.as_bytes(), RID).unwrap_err();
        assert!(matches!(e, VipError::Protocol { .. }), "{e}");
        assert!(e.to_string().contains("wrong namespace"), "{e}");
        let unqualified = format!(
            "<S:Envelope xmlns:S=\"{SOAP_NS}\"><S:Body><GetCredentialInfoResponse><requestId>{RID}</requestId><status>0000</status><statusMessage>Success</statusMessage></GetCredentialInfoResponse></S:Body></S:Envelope>"
        );
        assert!(matches!(
            parse_get_credential_info(unqualified.as_bytes(), RID),
            Err(VipError::Protocol { .. })
        ));
        // Another operation's answer.
        let e = parse_delete_user(&response("CreateUserResponse", "0000", "Success", ""), RID)
            .unwrap_err();
        assert!(matches!(e, VipError::Protocol { .. }));
        // Another request's answer.
        let e = parse_create_user(
            &response("CreateUserResponse", "0000", "Success", ""),
            "rid_9",
        )
        .unwrap_err();
        assert!(matches!(e, VipError::Protocol { .. }));
        // A bad status.
        let e = parse_create_user(&response("CreateUserResponse", "ok", "Success", ""), RID)
            .unwrap_err();
        assert!(matches!(e, VipError::Protocol { .. }));
    }

    #[test]
    fn parse_register_and_set_temporary_password_statuses() {
        let r = parse_register(&response("RegisterResponse", "0000", "Success", ""), RID).unwrap();
        assert_eq!(r.otp, None);
        let e = parse_register(
            &response("RegisterResponse", "6026", "Already registered.", ""),
            RID,
        )
        .unwrap_err();
        assert_eq!(e.status(), Some(Status::AlreadyRegistered));
        assert_eq!(e.class(), FailureClass::Answered);
        let e = parse_register(
            &response("RegisterResponse", "6015", "Invalid phone number", ""),
            RID,
        )
        .unwrap_err();
        assert_eq!(e.status(), Some(Status::InvalidPhoneNumber));
        let r = parse_set_temporary_password(
            &response("SetTemporaryPasswordResponse", "0000", "Success", ""),
            RID,
        )
        .unwrap();
        assert_eq!(r.code, None);
        for (code, status) in [
            ("6003", Status::UserNotFound),
            ("601B", Status::UserStatusNotAllowed),
        ] {
            let e = parse_set_temporary_password(
                &response("SetTemporaryPasswordResponse", code, "x", ""),
                RID,
            )
            .unwrap_err();
            assert_eq!(e.status(), Some(status));
        }
    }

    #[test]
    fn parse_temporary_password_attributes() {
        let r = parse_get_temporary_password_attributes(
            &response(
                "GetTemporaryPasswordAttributesResponse",
                "0000",
                "Success",
                "<tempPwdAttributes><expirationTime>2026-12-01T04:00:00.000Z</expirationTime><oneTimeUseOnly>true</oneTimeUseOnly></tempPwdAttributes>",
            ),
            RID,
        )
        .unwrap();
        assert!(r.present);
        assert_eq!(
            r.expiration_time.as_deref(),
            Some("2026-12-01T04:00:00.000Z")
        );
        assert_eq!(r.expires_at, Some(NOW + 86_400));
        assert_eq!(r.one_time_use_only, Some(true));
        let r = parse_get_temporary_password_attributes(
            &response(
                "GetTemporaryPasswordAttributesResponse",
                "0000",
                "Success",
                "",
            ),
            RID,
        )
        .unwrap();
        assert!(!r.present);
        assert_eq!(r.expires_at, None);
        let e = parse_get_temporary_password_attributes(
            &response(
                "GetTemporaryPasswordAttributesResponse",
                "0000",
                "Success",
                "<tempPwdAttributes><oneTimeUseOnly>maybe</oneTimeUseOnly></tempPwdAttributes>",
            ),
            RID,
        )
        .unwrap_err();
        assert!(matches!(e, VipError::Protocol { .. }));
        let e = parse_get_temporary_password_attributes(
            &response(
                "GetTemporaryPasswordAttributesResponse",
                "6003",
                "User does not exist.",
                "",
            ),
            RID,
        )
        .unwrap_err();
        assert!(e.is_not_found());
    }

    #[test]
    fn parse_credential_info() {
        let r = parse_get_credential_info(
            &response(
                "GetCredentialInfoResponse",
                "0000",
                "Success",
                "<credentialId>VSMT12345678</credentialId><credentialType>STANDARD_OTP</credentialType><credentialStatus>ENABLED</credentialStatus><numBindings>2</numBindings>\
                 <userBindingDetail><userId>Zoë &lt;&amp;&gt;</userId><userStatus>ACTIVE</userStatus><bindingDetail><bindStatus>ENABLED</bindStatus><friendlyName>phone</friendlyName><lastBindTime>2026-01-01T00:00:00.000Z</lastBindTime><lastAuthnTime>2026-11-01T00:00:00.000Z</lastAuthnTime><lastAuthnId>0123456789ABCDEF</lastAuthnId></bindingDetail></userBindingDetail>\
                 <userBindingDetail><userId>bob</userId><userStatus>LOCKED</userStatus><bindingDetail><bindStatus>DISABLED</bindStatus><lastBindTime>2026-01-02T00:00:00.000Z</lastBindTime></bindingDetail></userBindingDetail>\
                 <pushAttributes><Key>PUSH_PLATFORM</Key><Value>IOS</Value></pushAttributes>",
            ),
            RID,
        )
        .unwrap();
        assert_eq!(r.credential_id.as_deref(), Some("VSMT12345678"));
        assert_eq!(r.credential_type, Some(CredentialType::StandardOtp));
        assert_eq!(r.credential_status.as_deref(), Some("ENABLED"));
        assert_eq!(r.num_bindings, Some(2));
        assert_eq!(r.users.len(), 2);
        assert_eq!(r.users[0].user_id, "Zoë <&>");
        assert_eq!(r.users[0].user_status, Some(UserStatus::Active));
        assert_eq!(r.users[0].bind_status.as_deref(), Some("ENABLED"));
        assert_eq!(r.users[0].friendly_name.as_deref(), Some("phone"));
        assert_eq!(
            r.users[0].last_authn_id.as_deref(),
            Some("0123456789ABCDEF")
        );
        assert_eq!(r.users[1].user_status, Some(UserStatus::Locked));
        assert_eq!(r.users[1].friendly_name, None);
        assert_eq!(
            r.push_attributes,
            vec![("PUSH_PLATFORM".into(), "IOS".into())]
        );

        let bad_count = parse_get_credential_info(
            &response(
                "GetCredentialInfoResponse",
                "0000",
                "Success",
                "<numBindings>-1</numBindings>",
            ),
            RID,
        )
        .unwrap_err();
        assert!(matches!(bad_count, VipError::Protocol { .. }));
        let no_user = parse_get_credential_info(
            &response(
                "GetCredentialInfoResponse",
                "0000",
                "Success",
                "<userBindingDetail><userStatus>ACTIVE</userStatus></userBindingDetail>",
            ),
            RID,
        )
        .unwrap_err();
        assert!(matches!(no_user, VipError::Protocol { .. }));
        for (code, status) in [
            ("6004", Status::InvalidCredentialId),
            ("6006", Status::InvalidCredentialType),
        ] {
            let e = parse_get_credential_info(
                &response("GetCredentialInfoResponse", code, "x", ""),
                RID,
            )
            .unwrap_err();
            assert_eq!(e.status(), Some(status));
            assert_eq!(e.class(), FailureClass::Answered);
        }
    }
}
