//! One typed request and response per VIP operation: validation, rendering (request body)
//! and parsing (response body). Pure functions, no I/O, so every byte is golden-testable.

use std::time::Duration;

use super::error::VipError;
use super::soap::{self, Element, Writer};
use super::status::{DetailCode, PollStatus, Status};
use crate::engine::backend::transaction_key;
use crate::request_id::is_valid_request_id;

pub(crate) const OP_AUTHENTICATE_USER: &str = "authenticateUser";
pub(crate) const OP_CHECK_OTP: &str = "checkOtp";
pub(crate) const OP_PUSH: &str = "authenticateUserWithPush";
pub(crate) const OP_POLL: &str = "pollPushStatus";
pub(crate) const OP_USER_INFO: &str = "getUserInfo";
pub(crate) const OP_SEND_OTP: &str = "sendOtp";
pub(crate) const OP_SERVER_TIME: &str = "getServerTime";

/// At most this many transaction ids in one pollPushStatus.
pub const MAX_POLL_IDS: usize = 20;

// ---------------------------------------------------------------- public types

/// authenticateUser: a security code, optionally with the user's VIP PIN.
#[derive(Clone, Debug, Default)]
pub struct AuthenticateUser<'a> {
    pub user_id: &'a str,
    pub otp: &'a str,
    /// The next code, for out-of-sync (604A) recovery.
    pub otp2: Option<&'a str>,
    pub pin: Option<&'a str>,
    /// `authContext` `authLevel.level`, 1..=10.
    pub auth_level: Option<u8>,
}

/// Success of authenticateUser / checkOtp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtpAuthResponse {
    pub request_id: String,
    pub credential_id: Option<String>,
    pub credential_type: Option<String>,
    pub authn_id: Option<String>,
    /// `isPinExpired` (authenticateUser): the PIN was right but has expired.
    pub pin_expired: Option<bool>,
    /// `pinExpirationTime`, as VIP sent it.
    pub pin_expiration_time: Option<String>,
}

/// authenticateUserWithPush.
#[derive(Clone, Debug, Default)]
pub struct PushRequest<'a> {
    pub user_id: &'a str,
    pub pin: Option<&'a str>,
    /// `display.message.title`
    pub title: Option<&'a str>,
    /// `display.message.text`
    pub text: Option<&'a str>,
    /// `display.message.profile`
    pub profile: Option<&'a str>,
    /// `request.timeout`, sent in whole seconds (at least 1).
    pub timeout: Option<Duration>,
    /// Sends `supportNumberChallenge=true` when set (only where the number can be shown).
    pub number_challenge: bool,
    /// Further `requestParameters` (e.g. `enforceLocalAuth`), sent after ours.
    pub extra_request_params: Vec<(String, String)>,
    pub auth_level: Option<u8>,
}

/// Success (6040) of authenticateUserWithPush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushResponse {
    pub request_id: String,
    pub transaction_id: String,
    pub pin_expired: Option<bool>,
    pub pin_expiration_time: Option<String>,
    pub push_details: Vec<PushDetail>,
    /// The two-digit number to show the user when VIP asks for a number challenge.
    pub numbers_challenge_value: Option<String>,
}

impl PushResponse {
    /// False when VIP listed the user's push credentials and reached none of them
    /// (every `pushSent` false): nobody will ever answer this push.
    pub fn reached_a_device(&self) -> bool {
        self.push_details.is_empty() || self.push_details.iter().any(|d| d.sent)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushDetail {
    pub credential_id: String,
    pub sent: bool,
}

/// One transaction of a pollPushStatus answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionStatus {
    pub transaction_id: String,
    pub status: PollStatus,
    pub status_message: String,
    pub detail: Option<DetailCode>,
    pub detail_message: Option<String>,
    /// As VIP sent it (captured answers say 1970-01-01T00:00:00.000Z).
    pub authn_time: Option<String>,
    pub credential_id: Option<String>,
    pub credential_type: Option<String>,
    pub pin_expired: Option<bool>,
}

/// Success of getUserInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub request_id: String,
    pub user_id: Option<String>,
    pub user_status: Option<UserStatus>,
    pub credentials: Vec<CredentialBinding>,
    pub is_pin_set: Option<bool>,
    pub pin_expiration_time: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Disabled,
    Locked,
    Other(String),
}

impl UserStatus {
    pub fn parse(s: &str) -> UserStatus {
        let s = s.trim();
        if s.eq_ignore_ascii_case("ACTIVE") {
            UserStatus::Active
        } else if s.eq_ignore_ascii_case("DISABLED") {
            UserStatus::Disabled
        } else if s.eq_ignore_ascii_case("LOCKED") {
            UserStatus::Locked
        } else {
            UserStatus::Other(s.to_owned())
        }
    }
}

/// One `credentialBindingDetail` of getUserInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialBinding {
    pub credential_id: String,
    pub credential_type: String,
    pub credential_status: Option<String>,
    pub friendly_name: Option<String>,
    pub bind_status: Option<String>,
    /// `lastAuthnTime` / `lastAuthnId` of the binding (1.10 services), as VIP sent them.
    pub last_authn_time: Option<String>,
    pub last_authn_id: Option<String>,
    /// `pushAttributes` Key/Value pairs, in order (only with `include_push_attributes`).
    pub push_attributes: Vec<(String, String)>,
}

impl CredentialBinding {
    fn push_attr(&self, key: &str) -> Option<&str> {
        self.push_attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim())
    }

    /// Whether this credential can receive a push. From `pushAttributes` (inferred key names:
    /// an explicit `PUSH_ENABLED` wins; otherwise a non-empty `PUSH_PLATFORM` means a
    /// registered push device). Disabled credentials never count.
    pub fn is_push_capable(&self) -> bool {
        if !self.is_enabled() {
            return false;
        }
        if let Some(v) = self.push_attr("PUSH_ENABLED") {
            return v.eq_ignore_ascii_case("true") || v == "1";
        }
        self.push_attr("PUSH_PLATFORM")
            .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("NONE"))
    }

    /// `credentialStatus` (or, when absent, `bindStatus`) is ENABLED, and the binding is not
    /// disabled.
    pub fn is_enabled(&self) -> bool {
        let enabled = |s: &Option<String>| {
            s.as_deref()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("ENABLED"))
        };
        let binding_ok = self
            .bind_status
            .as_deref()
            .is_none_or(|v| v.trim().eq_ignore_ascii_case("ENABLED"));
        match &self.credential_status {
            Some(_) => enabled(&self.credential_status) && binding_ok,
            None => enabled(&self.bind_status),
        }
    }
}

/// Where sendOtp delivers the code. `phone_number`: `[0-9]{5,20}(x[0-9,#.*]{1,20})?`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OtpDelivery {
    Sms { phone_number: String },
    Voice { phone_number: String },
}

/// Success of pollPushStatus: the call's requestId and one status per transaction asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollResponse {
    pub request_id: String,
    pub transactions: Vec<TransactionStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOtpResponse {
    pub request_id: String,
}

/// Success of getServerTime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTime {
    pub request_id: String,
    /// As VIP sent it.
    pub timestamp: String,
    /// VIP's clock minus ours, in whole seconds (positive: VIP is ahead), measured when the
    /// answer was parsed; `None` when `timestamp` is not an RFC 3339 / xs:dateTime we can read.
    pub skew: Option<i64>,
}

// ---------------------------------------------------------------- validation

pub(crate) fn bad(op: &'static str, request_id: &str, message: impl Into<String>) -> VipError {
    VipError::BadRequest {
        operation: op,
        request_id: String::new(),
        message: format!("{} (requestId {request_id} not sent)", message.into()),
    }
}

pub(crate) fn check_request_id(op: &'static str, rid: &str) -> Result<(), VipError> {
    if is_valid_request_id(rid) {
        Ok(())
    } else {
        Err(bad(op, rid, "requestId must be 4..=40 of [0-9A-Za-z_]"))
    }
}

pub(crate) fn check_user(op: &'static str, rid: &str, user_id: &str) -> Result<(), VipError> {
    let n = user_id.chars().count();
    if !(1..=128).contains(&n) {
        return Err(bad(
            op,
            rid,
            format!("userId must be 1..=128 characters, got {n}"),
        ));
    }
    if !soap::is_xml_text(user_id) || user_id.trim().is_empty() {
        return Err(bad(
            op,
            rid,
            "userId contains characters XML cannot carry or is blank",
        ));
    }
    Ok(())
}

pub(crate) fn check_otp(
    op: &'static str,
    rid: &str,
    what: &str,
    otp: &str,
) -> Result<(), VipError> {
    // Never include the code itself in the message.
    if !(6..=10).contains(&otp.len()) || !otp.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad(
            op,
            rid,
            format!("{what} must be 6..=10 of [0-9A-Za-z]"),
        ));
    }
    Ok(())
}

pub(crate) fn check_pin(op: &'static str, rid: &str, pin: &str) -> Result<(), VipError> {
    let n = pin.chars().count();
    if !(4..=128).contains(&n) || !soap::is_xml_text(pin) {
        return Err(bad(op, rid, "pin must be 4..=128 characters"));
    }
    Ok(())
}

fn check_auth_level(op: &'static str, rid: &str, level: Option<u8>) -> Result<(), VipError> {
    match level {
        Some(l) if !(1..=10).contains(&l) => {
            Err(bad(op, rid, format!("auth_level must be 1..=10, got {l}")))
        }
        _ => Ok(()),
    }
}

pub(crate) fn check_text(
    op: &'static str,
    rid: &str,
    what: &str,
    s: &str,
    min: usize,
    max: usize,
) -> Result<(), VipError> {
    let n = s.chars().count();
    if !(min..=max).contains(&n) || !soap::is_xml_text(s) {
        return Err(bad(
            op,
            rid,
            format!("{what} must be {min}..={max} XML characters, got {n}"),
        ));
    }
    Ok(())
}

fn is_transaction_id(s: &str) -> bool {
    (4..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(crate) fn is_phone_number(s: &str) -> bool {
    let (digits, ext) = match s.split_once('x') {
        Some((d, e)) => (d, Some(e)),
        None => (s, None),
    };
    let digits_ok = (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    let ext_ok = ext.is_none_or(|e| {
        (1..=20).contains(&e.len())
            && e.bytes()
                .all(|b| b.is_ascii_digit() || b",#.*".contains(&b))
    });
    digits_ok && ext_ok
}

fn auth_context(w: &mut Writer, level: Option<u8>) {
    if let Some(l) = level {
        w.open("authContext");
        w.pair("params", "authLevel.level", &l.to_string());
        w.close();
    }
}

// ---------------------------------------------------------------- rendering

/// `AuthenticateUserRequest`: requestId, userId, pin?, otpAuthData{otp, otp2?}, authContext?.
pub fn render_authenticate_user(rid: &str, req: &AuthenticateUser<'_>) -> Result<String, VipError> {
    let op = OP_AUTHENTICATE_USER;
    check_request_id(op, rid)?;
    check_user(op, rid, req.user_id)?;
    check_otp(op, rid, "otp", req.otp)?;
    if let Some(o) = req.otp2 {
        check_otp(op, rid, "otp2", o)?;
    }
    if let Some(p) = req.pin {
        check_pin(op, rid, p)?;
    }
    check_auth_level(op, rid, req.auth_level)?;
    let mut w = Writer::new("AuthenticateUserRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", req.user_id);
    if let Some(p) = req.pin {
        w.leaf("pin", p);
    }
    w.open("otpAuthData");
    w.leaf("otp", req.otp);
    if let Some(o) = req.otp2 {
        w.leaf("otp2", o);
    }
    w.close();
    auth_context(&mut w, req.auth_level);
    Ok(w.finish())
}

/// `CheckOtpRequest`: requestId, userId, otpAuthData{otp, otp2?}, authContext?.
pub fn render_check_otp(
    rid: &str,
    user_id: &str,
    otp: &str,
    otp2: Option<&str>,
    auth_level: Option<u8>,
) -> Result<String, VipError> {
    let op = OP_CHECK_OTP;
    check_request_id(op, rid)?;
    check_user(op, rid, user_id)?;
    check_otp(op, rid, "otp", otp)?;
    if let Some(o) = otp2 {
        check_otp(op, rid, "otp2", o)?;
    }
    check_auth_level(op, rid, auth_level)?;
    let mut w = Writer::new("CheckOtpRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", user_id);
    w.open("otpAuthData");
    w.leaf("otp", otp);
    if let Some(o) = otp2 {
        w.leaf("otp2", o);
    }
    w.close();
    auth_context(&mut w, auth_level);
    Ok(w.finish())
}

/// `AuthenticateUserWithPushRequest`: requestId, userId, pin?,
/// pushAuthData{displayParameters*, requestParameters*}, authContext?.
pub fn render_authenticate_user_with_push(
    rid: &str,
    req: &PushRequest<'_>,
) -> Result<String, VipError> {
    let op = OP_PUSH;
    check_request_id(op, rid)?;
    check_user(op, rid, req.user_id)?;
    if let Some(p) = req.pin {
        check_pin(op, rid, p)?;
    }
    check_auth_level(op, rid, req.auth_level)?;
    let display: Vec<(&str, &str)> = [
        ("display.message.title", req.title),
        ("display.message.text", req.text),
        ("display.message.profile", req.profile),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    for (k, v) in &display {
        check_text(op, rid, k, v, 0, 250)?;
    }
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(t) = req.timeout {
        let secs = t.as_secs();
        if secs == 0 {
            return Err(bad(op, rid, "push timeout must be at least 1 second"));
        }
        params.push(("request.timeout".into(), secs.to_string()));
    }
    if req.number_challenge {
        params.push(("supportNumberChallenge".into(), "true".into()));
    }
    for (k, v) in &req.extra_request_params {
        check_text(op, rid, "request parameter key", k, 1, 125)?;
        check_text(op, rid, "request parameter value", v, 0, 250)?;
        if params.iter().any(|(p, _)| p == k) {
            return Err(bad(op, rid, format!("request parameter {k:?} given twice")));
        }
        params.push((k.clone(), v.clone()));
    }
    let mut w = Writer::new("AuthenticateUserWithPushRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", req.user_id);
    if let Some(p) = req.pin {
        w.leaf("pin", p);
    }
    w.open("pushAuthData");
    for (k, v) in &display {
        w.pair("displayParameters", k, v);
    }
    for (k, v) in &params {
        w.pair("requestParameters", k, v);
    }
    w.close();
    auth_context(&mut w, req.auth_level);
    Ok(w.finish())
}

/// `PollPushStatusRequest`: requestId, transactionId 1..=20.
pub fn render_poll_push_status(rid: &str, transaction_ids: &[&str]) -> Result<String, VipError> {
    let op = OP_POLL;
    check_request_id(op, rid)?;
    if transaction_ids.is_empty() || transaction_ids.len() > MAX_POLL_IDS {
        return Err(bad(
            op,
            rid,
            format!(
                "1..={MAX_POLL_IDS} transaction ids, got {}",
                transaction_ids.len()
            ),
        ));
    }
    if let Some(t) = transaction_ids.iter().find(|t| !is_transaction_id(t)) {
        return Err(bad(
            op,
            rid,
            format!(
                "transactionId {:?} is not 4..=16 of [0-9A-Za-z_]",
                soap::truncate(t, 40)
            ),
        ));
    }
    let mut w = Writer::new("PollPushStatusRequest");
    w.leaf("requestId", rid);
    for t in transaction_ids {
        w.leaf("transactionId", t);
    }
    Ok(w.finish())
}

/// `GetUserInfoRequest`: requestId, userId, includePushAttributes. Always sent: the XSD
/// default is `true`, so leaving it out does not mean "no".
pub fn render_get_user_info(
    rid: &str,
    user_id: &str,
    include_push_attributes: bool,
) -> Result<String, VipError> {
    let op = OP_USER_INFO;
    check_request_id(op, rid)?;
    check_user(op, rid, user_id)?;
    let mut w = Writer::new("GetUserInfoRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", user_id);
    w.leaf(
        "includePushAttributes",
        if include_push_attributes {
            "true"
        } else {
            "false"
        },
    );
    Ok(w.finish())
}

/// `SendOtpRequest`: requestId, userId, smsDeliveryInfo{phoneNumber} | voiceDeliveryInfo{phoneNumber}.
pub fn render_send_otp(
    rid: &str,
    user_id: &str,
    delivery: &OtpDelivery,
) -> Result<String, VipError> {
    let op = OP_SEND_OTP;
    check_request_id(op, rid)?;
    check_user(op, rid, user_id)?;
    let (element, phone) = match delivery {
        OtpDelivery::Sms { phone_number } => ("smsDeliveryInfo", phone_number),
        OtpDelivery::Voice { phone_number } => ("voiceDeliveryInfo", phone_number),
    };
    if !is_phone_number(phone) {
        return Err(bad(
            op,
            rid,
            "phone number must match [0-9]{5,20}(x[0-9,#.*]{1,20})?",
        ));
    }
    let mut w = Writer::new("SendOtpRequest");
    w.leaf("requestId", rid);
    w.leaf("userId", user_id);
    w.open(element);
    w.leaf("phoneNumber", phone);
    w.close();
    Ok(w.finish())
}

/// `GetServerTimeRequest`: requestId.
pub fn render_get_server_time(rid: &str) -> Result<String, VipError> {
    check_request_id(OP_SERVER_TIME, rid)?;
    let mut w = Writer::new("GetServerTimeRequest");
    w.leaf("requestId", rid);
    Ok(w.finish())
}

// ---------------------------------------------------------------- parsing

/// Parses the common head of a response and checks its status against the operation's
/// success code; returns the payload element when it is a success.
pub(crate) fn checked(
    body: &[u8],
    response: &str,
    op: &'static str,
    rid: &str,
    success: &[Status],
) -> Result<Element, VipError> {
    let el = soap::parse_response(body, response)?;
    let got = el
        .vip_text("requestId")
        .ok_or_else(|| VipError::protocol(format!("{response} without requestId")))?;
    if got != rid {
        return Err(VipError::protocol(format!(
            "{response} requestId mismatch: sent {rid}, got {:?}",
            soap::truncate(&got, 48)
        )));
    }
    let status_text = el
        .vip_text("status")
        .ok_or_else(|| VipError::protocol(format!("{response} without status")))?;
    let status = Status::parse(&status_text).ok_or_else(|| {
        VipError::protocol(format!(
            "{response} status {:?} is not a 4-digit hex code",
            soap::truncate(&status_text, 16)
        ))
    })?;
    if success.contains(&status) {
        return Ok(el);
    }
    let message = el.vip_text("statusMessage").unwrap_or_default();
    let detail = el.vip_text("detail");
    let detail_message = el.vip_text("detailMessage");
    let message = match detail_message {
        Some(d) => format!("{message}: {d}"),
        None => message,
    };
    let message = soap::truncate(&message, 300);
    if status == Status::SchemaValidationFailed {
        return Err(VipError::BadRequest {
            operation: op,
            request_id: rid.to_owned(),
            message: format!("VIP said 600B (schema validation failed): {message}"),
        });
    }
    Err(VipError::Rejected {
        operation: op,
        status,
        message,
        detail: detail.map(|d| soap::truncate(&d, 16)),
        request_id: rid.to_owned(),
    })
}

fn parse_otp_auth(
    body: &[u8],
    response: &str,
    op: &'static str,
    rid: &str,
) -> Result<OtpAuthResponse, VipError> {
    let el = checked(body, response, op, rid, &[Status::Success])?;
    Ok(OtpAuthResponse {
        request_id: rid.to_owned(),
        credential_id: el.vip_text("credentialId"),
        credential_type: el.vip_text("credentialType"),
        authn_id: el.vip_text("authnId"),
        pin_expired: optional_bool(&el, "isPinExpired")?,
        pin_expiration_time: el.vip_text("pinExpirationTime"),
    })
}

pub(crate) fn optional_bool(el: &Element, name: &str) -> Result<Option<bool>, VipError> {
    el.vip_text(name).map(|s| parse_bool(name, &s)).transpose()
}

pub fn parse_authenticate_user(body: &[u8], rid: &str) -> Result<OtpAuthResponse, VipError> {
    parse_otp_auth(body, "AuthenticateUserResponse", OP_AUTHENTICATE_USER, rid)
}

pub fn parse_check_otp(body: &[u8], rid: &str) -> Result<OtpAuthResponse, VipError> {
    parse_otp_auth(body, "CheckOtpResponse", OP_CHECK_OTP, rid)
}

pub(crate) fn parse_bool(what: &str, s: &str) -> Result<bool, VipError> {
    match s.trim() {
        t if t.eq_ignore_ascii_case("true") || t == "1" => Ok(true),
        t if t.eq_ignore_ascii_case("false") || t == "0" => Ok(false),
        t => Err(VipError::protocol(format!(
            "{what} is not a boolean: {:?}",
            soap::truncate(t, 16)
        ))),
    }
}

pub(crate) fn required(el: &Element, parent: &str, name: &str) -> Result<String, VipError> {
    el.vip_text(name)
        .ok_or_else(|| VipError::protocol(format!("{parent} without {name}")))
}

/// Success is 6040 (push sent), or 0000 as some answers say; both carry the transactionId.
pub fn parse_authenticate_user_with_push(body: &[u8], rid: &str) -> Result<PushResponse, VipError> {
    let response = "AuthenticateUserWithPushResponse";
    let el = checked(
        body,
        response,
        OP_PUSH,
        rid,
        &[Status::PushSent, Status::Success],
    )?;
    let transaction_id = required(&el, response, "transactionId")?;
    let mut push_details = Vec::new();
    for d in el.vip_children("pushDetail") {
        push_details.push(PushDetail {
            credential_id: required(d, "pushDetail", "pushCredentialId")?,
            sent: match d.vip_text("pushSent") {
                Some(s) => parse_bool("pushSent", &s)?,
                None => false,
            },
        });
    }
    // 1.10 adds numbersChallengeValue at an unpublished position: look on the response and,
    // failing that, inside pushDetail.
    let numbers_challenge_value = el.vip_text("numbersChallengeValue").or_else(|| {
        el.vip_children("pushDetail")
            .find_map(|d| d.vip_text("numbersChallengeValue"))
    });
    if !is_transaction_id(&transaction_id) {
        return Err(VipError::protocol(format!(
            "{response} transactionId {:?} is not 4..=16 of [0-9A-Za-z_]",
            soap::truncate(&transaction_id, 24)
        )));
    }
    Ok(PushResponse {
        request_id: rid.to_owned(),
        transaction_id,
        pin_expired: optional_bool(&el, "isPinExpired")?,
        pin_expiration_time: el.vip_text("pinExpirationTime"),
        push_details,
        numbers_challenge_value,
    })
}

/// The envelope status must be 0000; each transaction carries its own `PollStatus`.
/// Transactions we did not ask about (compared case-insensitively) are a protocol error.
pub fn parse_poll_push_status(
    body: &[u8],
    rid: &str,
    sent_ids: &[&str],
) -> Result<Vec<TransactionStatus>, VipError> {
    let response = "PollPushStatusResponse";
    let el = checked(body, response, OP_POLL, rid, &[Status::Success])?;
    let mut out = Vec::new();
    for t in el.vip_children("transactionStatus") {
        let transaction_id = required(t, "transactionStatus", "transactionId")?;
        let key = transaction_key(&transaction_id);
        if !sent_ids.iter().any(|s| transaction_key(s) == key) {
            return Err(VipError::protocol(format!(
                "pollPushStatus answered about transaction {:?} we did not ask about",
                soap::truncate(&transaction_id, 24)
            )));
        }
        let status_text = required(t, "transactionStatus", "status")?;
        let status = PollStatus::parse(&status_text).ok_or_else(|| {
            VipError::protocol(format!(
                "transaction status {:?} is not a 4-digit hex code",
                soap::truncate(&status_text, 16)
            ))
        })?;
        out.push(TransactionStatus {
            transaction_id,
            status,
            status_message: t.vip_text("statusMessage").unwrap_or_default(),
            detail: t.vip_text("detail").map(|d| DetailCode::parse(&d)),
            detail_message: t.vip_text("detailMessage"),
            authn_time: t.vip_text("authnTime"),
            credential_id: t.vip_text("credentialId"),
            credential_type: t.vip_text("credentialType"),
            pin_expired: optional_bool(t, "isPinExpired")?,
        });
    }
    Ok(out)
}

pub fn parse_get_user_info(body: &[u8], rid: &str) -> Result<UserInfo, VipError> {
    let response = "GetUserInfoResponse";
    let el = checked(body, response, OP_USER_INFO, rid, &[Status::Success])?;
    let mut credentials = Vec::new();
    for c in el.vip_children("credentialBindingDetail") {
        let binding = c.vip_child("bindingDetail");
        let mut push_attributes = Vec::new();
        for p in c.vip_children("pushAttributes") {
            let key = required(p, "pushAttributes", "Key")?;
            push_attributes.push((key, p.vip_text("Value").unwrap_or_default()));
        }
        credentials.push(CredentialBinding {
            credential_id: required(c, "credentialBindingDetail", "credentialId")?,
            credential_type: required(c, "credentialBindingDetail", "credentialType")?,
            credential_status: c.vip_text("credentialStatus"),
            friendly_name: binding.and_then(|b| b.vip_text("friendlyName")),
            bind_status: binding.and_then(|b| b.vip_text("bindStatus")),
            last_authn_time: binding.and_then(|b| b.vip_text("lastAuthnTime")),
            last_authn_id: binding.and_then(|b| b.vip_text("lastAuthnId")),
            push_attributes,
        });
    }
    let is_pin_set = match el.vip_text("isPinSet") {
        Some(s) => Some(parse_bool("isPinSet", &s)?),
        None => None,
    };
    Ok(UserInfo {
        request_id: rid.to_owned(),
        user_id: el.vip_text("userId"),
        user_status: el.vip_text("userStatus").map(|s| UserStatus::parse(&s)),
        credentials,
        is_pin_set,
        pin_expiration_time: el.vip_text("pinExpirationTime"),
    })
}

pub fn parse_send_otp(body: &[u8], rid: &str) -> Result<SendOtpResponse, VipError> {
    checked(
        body,
        "SendOtpResponse",
        OP_SEND_OTP,
        rid,
        &[Status::Success],
    )?;
    Ok(SendOtpResponse {
        request_id: rid.to_owned(),
    })
}

/// `now_unix`: our clock (Unix seconds) when the answer arrived, for `skew`.
pub fn parse_get_server_time(
    body: &[u8],
    rid: &str,
    now_unix: i64,
) -> Result<ServerTime, VipError> {
    let response = "GetServerTimeResponse";
    let el = checked(body, response, OP_SERVER_TIME, rid, &[Status::Success])?;
    let timestamp = required(&el, response, "timestamp")?;
    let skew = parse_datetime(&timestamp).map(|t| t - now_unix);
    Ok(ServerTime {
        request_id: rid.to_owned(),
        timestamp,
        skew,
    })
}

/// Unix seconds of an xs:dateTime / RFC 3339 value (`2024-05-01T10:00:00.123Z`,
/// `...+02:00`; no offset means UTC). `None` if it is not one.
pub(crate) fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_datetime("2024-02-29T12:00:00Z"), Some(1_709_208_000));
        assert_eq!(
            parse_datetime("2024-02-29T14:00:00+02:00"),
            Some(1_709_208_000)
        );
        assert_eq!(parse_datetime("2024-02-29T12:00:00"), Some(1_709_208_000));
        assert_eq!(
            parse_datetime("2024-02-29T12:00:00.5-00:30"),
            Some(1_709_209_800)
        );
        assert_eq!(parse_datetime("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_datetime("yesterday"), None);
        assert_eq!(parse_datetime("2024-02-29T12:00:00Zjunk"), None);
        assert_eq!(parse_datetime("２０２４-02-29T12:00:00Z"), None);
    }

    #[test]
    fn phone_numbers() {
        assert!(is_phone_number("15551234567"));
        assert!(is_phone_number("488555444x,1112"));
        assert!(!is_phone_number("1234"));
        assert!(!is_phone_number("+15551234567"));
        assert!(!is_phone_number("15551234567x"));
        assert!(!is_phone_number("15551234567xab"));
    }

    #[test]
    fn validation_refuses_before_sending() {
        let ok = AuthenticateUser {
            user_id: "alice",
            otp: "123456",
            ..Default::default()
        };
        assert!(render_authenticate_user("rid_0001", &ok).is_ok());
        for req in [
            AuthenticateUser {
                otp: "12345",
                ..ok.clone()
            },
            AuthenticateUser {
                otp: "12345678901",
                ..ok.clone()
            },
            AuthenticateUser {
                otp: "12345!",
                ..ok.clone()
            },
            AuthenticateUser {
                otp2: Some("1"),
                ..ok.clone()
            },
            AuthenticateUser {
                pin: Some("123"),
                ..ok.clone()
            },
            AuthenticateUser {
                auth_level: Some(0),
                ..ok.clone()
            },
            AuthenticateUser {
                auth_level: Some(11),
                ..ok.clone()
            },
            AuthenticateUser {
                user_id: "",
                ..ok.clone()
            },
            AuthenticateUser {
                user_id: "a\u{0}b",
                ..ok.clone()
            },
        ] {
            let e = render_authenticate_user("rid_0001", &req).unwrap_err();
            assert!(matches!(e, VipError::BadRequest { .. }), "{e}");
        }
        let long = "é".repeat(129);
        assert!(render_check_otp("rid_0001", &long, "123456", None, None).is_err());
        assert!(render_check_otp("rid_0001", &"é".repeat(128), "123456", None, None).is_ok());
        assert!(render_check_otp("bad-rid", "alice", "123456", None, None).is_err());
        let ids: Vec<&str> = (0..21).map(|_| "abcd1234abcd1234").collect();
        assert!(render_poll_push_status("rid_0001", &ids[..20]).is_ok());
        assert!(render_poll_push_status("rid_0001", &ids).is_err());
        assert!(render_poll_push_status("rid_0001", &[]).is_err());
        assert!(render_poll_push_status("rid_0001", &["<x>"]).is_err());
    }

    #[test]
    fn otp_never_appears_in_validation_errors() {
        let e = render_check_otp("rid_0001", "alice", "12345!", None, None).unwrap_err();
        assert!(!e.to_string().contains("12345!"));
        let e = render_authenticate_user(
            "rid_0001",
            &AuthenticateUser {
                user_id: "alice",
                otp: "123456",
                pin: Some("12"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(!e.to_string().contains("123456"));
    }

    #[test]
    fn push_capability() {
        let mut c = CredentialBinding {
            credential_id: "VSMT12345678".into(),
            credential_type: "STANDARD_OTP".into(),
            credential_status: Some("ENABLED".into()),
            friendly_name: None,
            bind_status: Some("ENABLED".into()),
            last_authn_time: None,
            last_authn_id: None,
            push_attributes: vec![("PUSH_PLATFORM".into(), "IOS".into())],
        };
        assert!(c.is_enabled());
        assert!(c.is_push_capable());
        c.push_attributes
            .push(("PUSH_ENABLED".into(), "false".into()));
        assert!(!c.is_push_capable());
        c.push_attributes.clear();
        assert!(!c.is_push_capable());
        c.push_attributes
            .push(("push_enabled".into(), "TRUE".into()));
        assert!(c.is_push_capable());
        c.credential_status = Some("DISABLED".into());
        assert!(!c.is_enabled());
        assert!(!c.is_push_capable());
        c.credential_status = None;
        assert!(c.is_enabled());
        c.bind_status = Some("DISABLED".into());
        assert!(!c.is_enabled());
    }
}
