//! Simulator state and the VIP operations.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;

use crate::config::{
    is_status_code, CredentialConfig, CredentialStatus, CredentialType, Faults, Policy, PushAction,
    PushConfig, UserConfig, UserStatus, WRONG_NS,
};
use crate::totp::{code_at_step, decode_base32, STEP_SECONDS};
use crate::xml::{Elem, Resp};
use crate::{CounterSet, Counters};

#[path = "mgmt.rs"]
mod mgmt;

/// The operations the simulator implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    AuthenticateUser,
    CheckOtp,
    AuthenticateUserWithPush,
    PollPushStatus,
    GetUserInfo,
    GetServerTime,
    SendOtp,
    CreateUser,
    UpdateUser,
    DeleteUser,
    AddCredential,
    RemoveCredential,
    UpdateCredential,
    Register,
    SetTemporaryPassword,
    ClearTemporaryPassword,
    SetTemporaryPasswordAttributes,
    ClearUserPin,
    GetTemporaryPasswordAttributes,
    GetCredentialInfo,
}

/// The three SOAP services (URL paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Authentication,
    Query,
    Management,
}

impl Service {
    /// From the path component before `_1_N`.
    pub fn from_name(s: &str) -> Option<Service> {
        match s {
            "AuthenticationService" => Some(Service::Authentication),
            "QueryService" => Some(Service::Query),
            "ManagementService" => Some(Service::Management),
            _ => None,
        }
    }
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 20] = [
        Op::AuthenticateUser,
        Op::CheckOtp,
        Op::AuthenticateUserWithPush,
        Op::PollPushStatus,
        Op::GetUserInfo,
        Op::GetServerTime,
        Op::SendOtp,
        Op::CreateUser,
        Op::UpdateUser,
        Op::DeleteUser,
        Op::AddCredential,
        Op::RemoveCredential,
        Op::UpdateCredential,
        Op::Register,
        Op::SetTemporaryPassword,
        Op::ClearTemporaryPassword,
        Op::SetTemporaryPasswordAttributes,
        Op::ClearUserPin,
        Op::GetTemporaryPasswordAttributes,
        Op::GetCredentialInfo,
    ];

    /// From the counter name (`checkOtp`).
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.name() == name)
    }

    /// From the body element's local name (`CheckOtpRequest`).
    pub fn from_element(local: &str) -> Option<Op> {
        Some(match local {
            "AuthenticateUserRequest" => Op::AuthenticateUser,
            "CheckOtpRequest" => Op::CheckOtp,
            "AuthenticateUserWithPushRequest" => Op::AuthenticateUserWithPush,
            "PollPushStatusRequest" => Op::PollPushStatus,
            "GetUserInfoRequest" => Op::GetUserInfo,
            "GetServerTimeRequest" => Op::GetServerTime,
            "SendOtpRequest" => Op::SendOtp,
            "CreateUserRequest" => Op::CreateUser,
            "UpdateUserRequest" => Op::UpdateUser,
            "DeleteUserRequest" => Op::DeleteUser,
            "AddCredentialRequest" => Op::AddCredential,
            "RemoveCredentialRequest" => Op::RemoveCredential,
            "UpdateCredentialRequest" => Op::UpdateCredential,
            "RegisterRequest" => Op::Register,
            "SetTemporaryPasswordRequest" => Op::SetTemporaryPassword,
            "ClearTemporaryPasswordRequest" => Op::ClearTemporaryPassword,
            "SetTemporaryPasswordAttributesRequest" => Op::SetTemporaryPasswordAttributes,
            "ClearUserPinRequest" => Op::ClearUserPin,
            "GetTemporaryPasswordAttributesRequest" => Op::GetTemporaryPasswordAttributes,
            "GetCredentialInfoRequest" => Op::GetCredentialInfo,
            _ => return None,
        })
    }

    /// The counter name: the operation's name (`checkOtp`).
    pub fn name(self) -> &'static str {
        match self {
            Op::AuthenticateUser => "authenticateUser",
            Op::CheckOtp => "checkOtp",
            Op::AuthenticateUserWithPush => "authenticateUserWithPush",
            Op::PollPushStatus => "pollPushStatus",
            Op::GetUserInfo => "getUserInfo",
            Op::GetServerTime => "getServerTime",
            Op::SendOtp => "sendOtp",
            Op::CreateUser => "createUser",
            Op::UpdateUser => "updateUser",
            Op::DeleteUser => "deleteUser",
            Op::AddCredential => "addCredential",
            Op::RemoveCredential => "removeCredential",
            Op::UpdateCredential => "updateCredential",
            Op::Register => "register",
            Op::SetTemporaryPassword => "setTemporaryPassword",
            Op::ClearTemporaryPassword => "clearTemporaryPassword",
            Op::SetTemporaryPasswordAttributes => "setTemporaryPasswordAttributes",
            Op::ClearUserPin => "clearUserPin",
            Op::GetTemporaryPasswordAttributes => "getTemporaryPasswordAttributes",
            Op::GetCredentialInfo => "getCredentialInfo",
        }
    }

    /// The service that implements it.
    pub fn service(self) -> Service {
        match self {
            Op::AuthenticateUser | Op::CheckOtp | Op::AuthenticateUserWithPush => {
                Service::Authentication
            }
            Op::PollPushStatus
            | Op::GetUserInfo
            | Op::GetServerTime
            | Op::GetTemporaryPasswordAttributes
            | Op::GetCredentialInfo => Service::Query,
            Op::SendOtp
            | Op::CreateUser
            | Op::UpdateUser
            | Op::DeleteUser
            | Op::AddCredential
            | Op::RemoveCredential
            | Op::UpdateCredential
            | Op::Register
            | Op::SetTemporaryPassword
            | Op::ClearTemporaryPassword
            | Op::SetTemporaryPasswordAttributes
            | Op::ClearUserPin => Service::Management,
        }
    }

    /// The response element's name.
    pub fn response(self) -> &'static str {
        match self {
            Op::AuthenticateUser => "AuthenticateUserResponse",
            Op::CheckOtp => "CheckOtpResponse",
            Op::AuthenticateUserWithPush => "AuthenticateUserWithPushResponse",
            Op::PollPushStatus => "PollPushStatusResponse",
            Op::GetUserInfo => "GetUserInfoResponse",
            Op::GetServerTime => "GetServerTimeResponse",
            Op::SendOtp => "SendOtpResponse",
            Op::CreateUser => "CreateUserResponse",
            Op::UpdateUser => "UpdateUserResponse",
            Op::DeleteUser => "DeleteUserResponse",
            Op::AddCredential => "AddCredentialResponse",
            Op::RemoveCredential => "RemoveCredentialResponse",
            Op::UpdateCredential => "UpdateCredentialResponse",
            Op::Register => "RegisterResponse",
            Op::SetTemporaryPassword => "SetTemporaryPasswordResponse",
            Op::ClearTemporaryPassword => "ClearTemporaryPasswordResponse",
            Op::SetTemporaryPasswordAttributes => "SetTemporaryPasswordAttributesResponse",
            Op::ClearUserPin => "ClearUserPinResponse",
            Op::GetTemporaryPasswordAttributes => "GetTemporaryPasswordAttributesResponse",
            Op::GetCredentialInfo => "GetCredentialInfoResponse",
        }
    }
}

/// The envelope's statusMessage for a status code (VIP's wording where it is known).
pub(crate) fn message(code: &str) -> &'static str {
    match code.to_ascii_uppercase().as_str() {
        "0000" => "Success",
        "6001" => "Invalid account.",
        "6002" => "User already exists.",
        "6003" => "User does not exist.",
        "6004" => "Credential ID is not valid.",
        "6005" => "Internal error.",
        "6006" => "Invalid credential type.",
        "6007" => "No binding exists between user and credential.",
        "6008" => "User does not have any enabled credential for the given credential type.",
        "6009" => "Authentication failed.",
        "600A" => "Credential type not supported.",
        "600B" => "Schema validation failed.",
        "600D" => "Operation not allowed in current state of credential.",
        "600E" => "Client certificate is revoked.",
        // Seed 000 (removeCredential note): the code when remembered-device deletion is
        // admin-only; the wording is the simulator's.
        "6010" => "Operation not allowed.",
        // Simulator choices (the status table found does not show these rows; see mgmt.rs).
        "6011" => "Credential is already bound to the user.",
        "6026" => "Phone number is already registered.",
        "6015" => "Invalid phone number",
        "601B" => "Operation not allowed in current user status.",
        "601F" => "Invalid user PIN.",
        "6020" => "PIN does not meet policy.",
        "6021" => "PIN not enabled for this account.",
        "6040" => "Mobile push request sent",
        "604A" => "OTP out of sync",
        _ => "Unknown error.",
    }
}

/// Poll status messages (simulator wording; the codes are VIP's).
fn txn_message(code: &str) -> &'static str {
    match code.to_ascii_uppercase().as_str() {
        "7000" => "Mobile push request approved by user",
        "7001" => "Mobile push request in progress",
        "7002" => "Mobile push request denied by user",
        "7003" => "Mobile push request changed",
        "7004" => "Mobile push request expired",
        "7005" => "Mobile push request not found",
        "7006" => "Mobile push request not completed",
        "7008" => "Could not authenticate with the requested parameters",
        _ => "Unknown",
    }
}

/// Poll detail messages (simulator wording; the codes are VIP's).
fn detail_message(code: &str) -> &'static str {
    match code.to_ascii_uppercase().as_str() {
        "7120" => "Local authentication cancelled by the user",
        "7121" => "Local authentication failed",
        "7122" => "Local authentication not supported on the device",
        "7123" => "Local authentication not configured on the device",
        "7124" => "Local authentication not performed",
        "7125" => "Local authentication failed on the device",
        "7140" => "Numbers challenge pending",
        "7141" => "Numbers challenge failed",
        _ => "Unknown",
    }
}

/// Poll statuses that keep a transaction pending (anything else is final, reported once).
fn txn_pending(code: &str) -> bool {
    matches!(code, "7001" | "7006")
}

struct CredState {
    cfg: CredentialConfig,
    key: Option<Vec<u8>>,
    status: CredentialStatus,
    /// Learned clock offset of the token, in steps.
    learned: i64,
    /// Highest step accepted so far (replay protection).
    last_step: Option<i64>,
}

struct SentCode {
    code: String,
    kind: CredentialType,
    phone: String,
    expires: Instant,
}

/// The last successful authentication with one binding, for getUserInfo (1.10).
struct LastAuthn {
    id: String,
    time: String,
}

struct UserState {
    cfg: UserConfig,
    creds: Vec<CredState>,
    bad_count: u32,
    sent: Vec<SentCode>,
    last_sent: Option<String>,
    /// By credential id (or phone number for SMS/voice codes).
    last_authn: HashMap<String, LastAuthn>,
    /// In-band statuses injected so far from this user's `faults.status`, by operation.
    injected: HashMap<&'static str, u32>,
    /// The temporary security code (config `temporary_code` or setTemporaryPassword).
    temp: Option<mgmt::TempCode>,
    /// friendlyName of SMS / voice bindings (by phone number), set by addCredential or
    /// updateCredential.
    phone_names: HashMap<String, String>,
}

struct Txn {
    user: String,
    created: Instant,
    timeout: Duration,
    number: Option<u8>,
    /// The account requires a number challenge this push could not do: every poll is 7008.
    refused: bool,
    push: PushConfig,
    cred_id: String,
    cred_type: CredentialType,
}

struct Inner {
    users: HashMap<String, UserState>,
    txns: HashMap<String, Txn>,
    /// Unbound STANDARD_OTP tokens (`[[tokens]]`), by credential id.
    tokens: HashMap<String, crate::config::TokenConfig>,
    /// Registered phone numbers (RegisterRequest, or a configured user's phones).
    phones: HashMap<String, mgmt::Registration>,
}

/// The global faults and how often their `status` entries were injected.
struct GlobalFaults {
    faults: Faults,
    injected: HashMap<&'static str, u32>,
}

/// Shared simulator state.
pub(crate) struct State {
    policy: Policy,
    inner: Mutex<Inner>,
    global_faults: Mutex<GlobalFaults>,
    pub(crate) counters: CounterSet,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// UTC xsd:dateTime with milliseconds.
pub(crate) fn xsd_now() -> String {
    xsd_time(time::OffsetDateTime::now_utc())
}

fn xsd_time(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn random_hex(n: usize, upper: bool) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| {
            let v: u8 = rng.gen_range(0..16);
            let c = char::from_digit(u32::from(v), 16).unwrap_or('0');
            if upper {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn valid_request_id(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn valid_txn_id(s: &str) -> bool {
    (4..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn valid_otp(s: &str) -> bool {
    (6..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn char_len_in(s: &str, min: usize, max: usize) -> bool {
    let n = s.chars().count();
    n >= min && n <= max
}

/// xsd:boolean (its white space facet is "collapse", so surrounding blanks are allowed).
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `{Key, Value}` lists: Key 1–125, Value 0–250 characters.
fn valid_kvs<'a>(items: impl Iterator<Item = &'a Elem>) -> bool {
    items.into_iter().all(|kv| {
        kv.text_of("Key").is_some_and(|k| char_len_in(k, 1, 125))
            && kv.text_of("Value").is_none_or(|v| char_len_in(v, 0, 250))
    })
}

fn valid_auth_context(op: &Elem) -> bool {
    match op.child("authContext") {
        None => true,
        Some(ac) => valid_kvs(ac.all("params")),
    }
}

/// Schema validation (600B): the structure (see `schema`), then the facets of the values.
/// The format of otp values is not a schema matter (VIP answers 6009).
fn validate(op: Op, el: &Elem) -> bool {
    if !crate::schema::structure_ok(op, el) {
        return false;
    }
    if !el.text_of("requestId").is_some_and(valid_request_id) {
        return false;
    }
    if let Some(u) = el.text_of("userId") {
        if !char_len_in(u, 1, 128) {
            return false;
        }
    }
    if let Some(pin) = el.text_of("pin") {
        if !char_len_in(pin, 4, 128) {
            return false;
        }
    }
    if !valid_auth_context(el) {
        return false;
    }
    match op {
        Op::AuthenticateUserWithPush => el.child("pushAuthData").is_some_and(|d| {
            valid_kvs(d.all("displayParameters")) && valid_kvs(d.all("requestParameters"))
        }),
        Op::PollPushStatus => el.all("transactionId").all(|i| valid_txn_id(&i.text)),
        Op::GetUserInfo => ["iaInfo", "includePushAttributes", "includeTokenInfo"]
            .iter()
            .all(|n| el.text_of(n).is_none_or(|v| parse_bool(v).is_some())),
        Op::SendOtp => {
            let sms = el.child("smsDeliveryInfo");
            let voice = el.child("voiceDeliveryInfo");
            // The XSD's choice: one delivery info at most.
            if sms.is_some() && voice.is_some() {
                return false;
            }
            sms.or(voice).is_none_or(|d| {
                d.text_of("phoneNumber")
                    .is_some_and(crate::config::valid_phone)
            })
        }
        Op::AuthenticateUser | Op::CheckOtp | Op::GetServerTime => true,
        _ => mgmt::validate(op, el),
    }
}

/// The first version of the API (`_1_N`, N >= 10) that has numbersChallengeValue and
/// bindingDetail lastAuthnTime / lastAuthnId.
const V1_10: u32 = 10;

/// The outcome of the PIN rules: `Some(expired)` when a right PIN was sent.
type PinCheck = Result<Option<bool>, &'static str>;

/// isPinExpired / pinExpirationTime after a right PIN: in the past when it has expired.
fn pin_fields(r: &mut Resp, pin: Option<bool>) {
    if let Some(expired) = pin {
        let now = time::OffsetDateTime::now_utc();
        let at = if expired {
            now - time::Duration::days(1)
        } else {
            now + time::Duration::days(90)
        };
        r.field("isPinExpired", if expired { "true" } else { "false" });
        r.field("pinExpirationTime", &xsd_time(at));
    }
}

enum Verdict {
    Ok {
        cred_id: Option<String>,
        cred_type: Option<CredentialType>,
    },
    Status(&'static str),
}

impl State {
    pub(crate) fn new(
        policy: Policy,
        faults: Faults,
        users: &[UserConfig],
        tokens: &[crate::config::TokenConfig],
    ) -> State {
        let mut phones = HashMap::new();
        for u in users {
            for (list, kind) in [
                (&u.sms_phones, CredentialType::SmsOtp),
                (&u.voice_phones, CredentialType::VoiceOtp),
            ] {
                for p in list {
                    phones.insert(p.clone(), mgmt::Registration::configured(kind));
                }
            }
        }
        let tokens = tokens.iter().map(|t| (t.id.clone(), t.clone())).collect();
        let users = users
            .iter()
            .map(|u| {
                let creds = u
                    .credentials
                    .iter()
                    .map(|c| CredState {
                        cfg: c.clone(),
                        key: c.totp_secret.as_deref().and_then(decode_base32),
                        status: c.status,
                        learned: 0,
                        last_step: None,
                    })
                    .collect();
                (
                    u.id.to_lowercase(),
                    UserState {
                        cfg: u.clone(),
                        creds,
                        bad_count: 0,
                        sent: Vec::new(),
                        last_sent: None,
                        last_authn: HashMap::new(),
                        injected: HashMap::new(),
                        temp: u.temporary_code.clone().map(mgmt::TempCode::configured),
                        phone_names: HashMap::new(),
                    },
                )
            })
            .collect();
        State {
            policy,
            inner: Mutex::new(Inner {
                users,
                txns: HashMap::new(),
                tokens,
                phones,
            }),
            global_faults: Mutex::new(GlobalFaults {
                faults,
                injected: HashMap::new(),
            }),
            counters: CounterSet::default(),
        }
    }

    pub(crate) fn count_call(&self, op: Op, el: &Elem) {
        self.counters.call(op.name());
        let level = el
            .child("authContext")
            .into_iter()
            .flat_map(|ac| ac.all("params"))
            .find(|kv| kv.text_of("Key") == Some("authLevel.level"))
            .and_then(|kv| kv.text_of("Value"));
        if let Some(level) = level {
            self.counters.auth_level(op.name(), level);
        }
    }

    pub(crate) fn counters(&self) -> Counters {
        self.counters.snapshot()
    }

    pub(crate) fn reset_counters(&self) {
        self.counters.reset()
    }

    pub(crate) fn global_faults(&self) -> Faults {
        lock(&self.global_faults).faults.clone()
    }

    /// Replaces the global faults (and restarts their `status_times` counts).
    pub(crate) fn set_global_faults(&self, f: Faults) {
        *lock(&self.global_faults) = GlobalFaults {
            faults: f,
            injected: HashMap::new(),
        };
    }

    /// Sets a user's faults (restarting their `status_times` counts); false if the user does
    /// not exist.
    pub(crate) fn set_user_faults(&self, user: &str, f: Faults) -> bool {
        match lock(&self.inner).users.get_mut(&user.to_lowercase()) {
            Some(u) => {
                u.cfg.faults = f;
                u.injected.clear();
                true
            }
            None => false,
        }
    }

    /// The (lower-cased) user a request is about: its userId, or for a poll the user of the
    /// first known transaction.
    fn user_key(inner: &Inner, op: Op, el: &Elem) -> Option<String> {
        match op {
            Op::PollPushStatus => el
                .all("transactionId")
                .find_map(|t| inner.txns.get(&t.text))
                .map(|t| t.user.clone()),
            _ => el.text_of("userId").map(str::to_lowercase),
        }
    }

    /// Global faults merged with those of the user the request is about.
    pub(crate) fn faults_for(&self, op: Op, el: &Elem) -> Faults {
        let global = self.global_faults();
        let inner = lock(&self.inner);
        match Self::user_key(&inner, op, el).and_then(|k| inner.users.get(&k)) {
            Some(u) => global.merge(&u.cfg.faults),
            None => global,
        }
    }

    /// The in-band status to inject for this request, if any, counting it. The user's entry
    /// for the operation wins over the global one; each scope counts against its own
    /// `status_times`, per operation.
    fn take_injected_status(&self, op: Op, el: &Elem) -> Option<String> {
        let name = op.name();
        let take = |f: &Faults, counts: &mut HashMap<&'static str, u32>| {
            let code = f.status.get(name)?;
            // Set through the Rust API without validation: ignore what VIP could never send.
            if !is_status_code(code) {
                return None;
            }
            let n = counts.entry(name).or_insert(0);
            if f.status_times > 0 && *n >= f.status_times {
                return None;
            }
            *n += 1;
            Some(code.clone())
        };
        {
            let mut inner = lock(&self.inner);
            let key = Self::user_key(&inner, op, el);
            if let Some(u) = key.and_then(|k| inner.users.get_mut(&k)) {
                if u.cfg.faults.status.contains_key(name) {
                    let UserState { cfg, injected, .. } = u;
                    return take(&cfg.faults, injected);
                }
            }
        }
        let mut g = lock(&self.global_faults);
        let GlobalFaults { faults, injected } = &mut *g;
        take(faults, injected)
    }

    /// A well-formed success answer in the wrong namespace (the operation does not run).
    pub(crate) fn wrong_namespace_doc(&self, op: Op, el: &Elem) -> String {
        let code = match op {
            Op::AuthenticateUserWithPush => self.policy.push_success_status.code(),
            _ => "0000",
        };
        let rid = el.text_of("requestId").unwrap_or("");
        Resp::new_in(WRONG_NS, op.response(), rid, code, message(code), None).finish()
    }

    pub(crate) fn last_sent_code(&self, user: &str) -> Option<String> {
        lock(&self.inner)
            .users
            .get(&user.to_lowercase())
            .and_then(|u| u.last_sent.clone())
    }

    pub(crate) fn current_code(&self, user: &str) -> Option<String> {
        let inner = lock(&self.inner);
        let u = inner.users.get(&user.to_lowercase())?;
        let c = u
            .creds
            .iter()
            .find(|c| c.cfg.kind == CredentialType::StandardOtp && c.key.is_some())?;
        let key = c.key.as_deref()?;
        let step = (now_unix() / STEP_SECONDS) as i64 + c.cfg.drift_steps;
        Some(code_at_step(key, step, c.cfg.digits))
    }

    /// Runs an operation of API version 1.`version` and returns the response document.
    pub(crate) fn run(&self, op: Op, el: &Elem, version: u32) -> String {
        // Echo what was sent when it is text at all, even if it failed validation.
        let rid = el
            .child("requestId")
            .filter(|r| r.children.is_empty())
            .map_or("", |r| r.text.as_str());
        if !validate(op, el) {
            return Self::status_only(op, rid, "600B");
        }
        if let Some(code) = self.take_injected_status(op, el) {
            return Self::status_only(op, rid, &code);
        }
        match op {
            Op::AuthenticateUser | Op::CheckOtp => self.otp_op(op, rid, el),
            Op::AuthenticateUserWithPush => self.push(rid, el, version),
            Op::PollPushStatus => self.poll(rid, el),
            Op::GetUserInfo => self.user_info(rid, el, version),
            Op::GetServerTime => {
                let mut r = Resp::new(op.response(), rid, "0000", "Success", None);
                r.field("timestamp", &xsd_now());
                r.finish()
            }
            Op::SendOtp => self.send_otp(rid, el),
            _ => self.run_mgmt(op, rid, el),
        }
    }

    fn status_only(op: Op, rid: &str, code: &str) -> String {
        Self::status_resp(op, rid, code, None)
    }

    /// A response without the operation's own fields but the PIN ones.
    fn status_resp(op: Op, rid: &str, code: &str, pin: Option<bool>) -> String {
        let detail = (code == "6009").then_some(("49B5", "Failed with an invalid OTP"));
        let mut r = Resp::new(op.response(), rid, code, message(code), detail);
        pin_fields(&mut r, pin);
        r.finish()
    }

    /// The PIN rules of authenticateUser and authenticateUserWithPush.
    fn check_pin(&self, user: &UserState, sent: Option<&str>) -> PinCheck {
        if !self.policy.pin_enabled {
            // The account has no PINs: sending one is an error, a configured one is moot.
            return match sent {
                Some(_) => Err("6021"),
                None => Ok(None),
            };
        }
        match (sent, user.cfg.pin.as_deref()) {
            (None, None) => Ok(None),
            (Some(s), Some(want)) if s == want => Ok(Some(user.cfg.pin_expired)),
            // Missing, unexpected or wrong.
            _ => Err("601F"),
        }
    }

    fn otp_op(&self, op: Op, rid: &str, el: &Elem) -> String {
        let user_id = el.text_of("userId").unwrap_or("");
        let (otp, otp2) = match el.child("otpAuthData") {
            Some(d) => (d.text_of("otp").unwrap_or(""), d.text_of("otp2")),
            None => ("", None),
        };
        let mut inner = lock(&self.inner);
        let Some(user) = inner.users.get_mut(&user_id.to_lowercase()) else {
            return Self::status_only(op, rid, "6003");
        };
        if user.cfg.status != UserStatus::Active {
            return Self::status_only(op, rid, "601B");
        }
        // checkOtp has no pin (the schema refuses one); its user's PIN is not asked.
        let pin = if op == Op::AuthenticateUser {
            match self.check_pin(user, el.text_of("pin")) {
                Ok(p) => p,
                Err(code) => return Self::status_only(op, rid, code),
            }
        } else {
            None
        };
        let verdict = self.verify(
            user,
            otp,
            otp2,
            op == Op::CheckOtp,
            op == Op::AuthenticateUser,
        );
        let (cred_id, cred_type) = match verdict {
            Verdict::Status(code) => {
                drop(inner);
                return Self::status_resp(op, rid, code, pin);
            }
            Verdict::Ok { cred_id, cred_type } => (cred_id, cred_type),
        };
        // Seed 000 (setTemporaryPassword note): authenticating with a code from a real
        // credential clears the temporary security code.
        if cred_id.is_some() {
            user.temp = None;
        }
        let authn_id = random_hex(16, true);
        if let Some(id) = &cred_id {
            user.last_authn.insert(
                id.clone(),
                LastAuthn {
                    id: authn_id.clone(),
                    time: xsd_now(),
                },
            );
        }
        drop(inner);
        let mut r = Resp::new(op.response(), rid, "0000", "Success", None);
        if let Some(id) = cred_id {
            r.field("credentialId", &id);
        }
        if let Some(t) = cred_type {
            r.field("credentialType", t.as_str());
        }
        r.field("authnId", &authn_id);
        pin_fields(&mut r, pin);
        r.finish()
    }

    fn fail(&self, user: &mut UserState) -> Verdict {
        user.bad_count = user.bad_count.saturating_add(1);
        let limit = self.policy.lockout_after;
        if limit > 0 && user.bad_count >= limit {
            for c in &mut user.creds {
                if c.key.is_some() && c.status == CredentialStatus::Enabled {
                    c.status = CredentialStatus::Locked;
                }
            }
        }
        Verdict::Status("6009")
    }

    fn verify(
        &self,
        user: &mut UserState,
        otp: &str,
        otp2: Option<&str>,
        allow_locked: bool,
        allow_temp: bool,
    ) -> Verdict {
        if !valid_otp(otp) || otp2.is_some_and(|o| !valid_otp(o)) {
            return self.fail(user);
        }
        if allow_temp && otp2.is_none() {
            // Seed 000 (setTemporaryPassword): valid until its expiration time, and gone
            // after one use when oneTimeUseOnly.
            let now = SystemTime::now();
            if user.temp.as_ref().is_some_and(|t| t.expired(now)) {
                user.temp = None;
            }
            if let Some(t) = user.temp.as_ref().filter(|t| t.code == otp) {
                if t.one_time {
                    user.temp = None;
                }
                user.bad_count = 0;
                return Verdict::Ok {
                    cred_id: None,
                    cred_type: None,
                };
            }
        }
        let now = Instant::now();
        user.sent.retain(|s| s.expires > now);
        if otp2.is_none() {
            if let Some(i) = user.sent.iter().position(|s| s.code == otp) {
                let s = user.sent.remove(i);
                user.bad_count = 0;
                return Verdict::Ok {
                    cred_id: Some(s.phone),
                    cred_type: Some(s.kind),
                };
            }
        }
        let has_otp_creds = user.creds.iter().any(|c| c.key.is_some());
        if !has_otp_creds {
            if user.cfg.sms_phones.is_empty() && user.cfg.voice_phones.is_empty() {
                return Verdict::Status("6008");
            }
            return self.fail(user);
        }
        let usable = |c: &CredState| {
            c.key.is_some()
                && (c.status == CredentialStatus::Enabled
                    || (allow_locked && c.status == CredentialStatus::Locked))
        };
        if !user.creds.iter().any(usable) {
            return Verdict::Status("600D");
        }
        let now_step = (now_unix() / STEP_SECONDS) as i64;
        let w = i64::from(self.policy.totp_window_steps);
        let r = i64::from(self.policy.resync_window_steps).max(w);
        let mut out_of_sync = false;
        for c in user.creds.iter_mut() {
            if !usable(c) {
                continue;
            }
            let Some(key) = c.key.clone() else {
                continue;
            };
            let key = key.as_slice();
            let digits = c.cfg.digits;
            let base = now_step + c.learned;
            let last = c.last_step;
            let fresh = |step: i64| last.is_none_or(|l| step > l);
            match otp2 {
                None => {
                    for d in -w..=w {
                        let step = base + d;
                        if fresh(step) && code_at_step(key, step, digits) == otp {
                            c.last_step = Some(step);
                            user.bad_count = 0;
                            return Verdict::Ok {
                                cred_id: Some(c.cfg.id.clone()),
                                cred_type: Some(c.cfg.kind),
                            };
                        }
                    }
                    for d in (-r..=r).filter(|d| d.abs() > w) {
                        let step = base + d;
                        if fresh(step) && code_at_step(key, step, digits) == otp {
                            out_of_sync = true;
                        }
                    }
                }
                Some(otp2) => {
                    for d in -r..=r {
                        let step = base + d;
                        if fresh(step)
                            && code_at_step(key, step, digits) == otp
                            && code_at_step(key, step + 1, digits) == otp2
                        {
                            c.last_step = Some(step + 1);
                            c.learned = step + 1 - now_step;
                            user.bad_count = 0;
                            return Verdict::Ok {
                                cred_id: Some(c.cfg.id.clone()),
                                cred_type: Some(c.cfg.kind),
                            };
                        }
                    }
                }
            }
        }
        if out_of_sync {
            return Verdict::Status("604A");
        }
        self.fail(user)
    }

    fn push(&self, rid: &str, el: &Elem, version: u32) -> String {
        let op = Op::AuthenticateUserWithPush;
        let user_id = el.text_of("userId").unwrap_or("");
        let key = user_id.to_lowercase();
        let mut timeout = self.policy.push_timeout_secs;
        let mut asks_number = false;
        if let Some(d) = el.child("pushAuthData") {
            for p in d.all("requestParameters") {
                let v = p.text_of("Value").unwrap_or("");
                match p.text_of("Key").unwrap_or("") {
                    "request.timeout" => {
                        if let Ok(t) = v.parse::<u64>() {
                            timeout = t;
                        }
                    }
                    "supportNumberChallenge" => asks_number = v == "true",
                    _ => {}
                }
            }
        }
        let mut inner = lock(&self.inner);
        let Some(user) = inner.users.get(&key) else {
            return Self::status_only(op, rid, "6003");
        };
        if user.cfg.status != UserStatus::Active {
            return Self::status_only(op, rid, "601B");
        }
        let pin = match self.check_pin(user, el.text_of("pin")) {
            Ok(p) => p,
            Err(code) => return Self::status_only(op, rid, code),
        };
        let creds: Vec<(String, CredentialType, bool)> = user
            .creds
            .iter()
            .filter(|c| c.cfg.push && c.status == CredentialStatus::Enabled)
            .map(|c| (c.cfg.id.clone(), c.cfg.kind, c.cfg.number_challenge_capable))
            .collect();
        let Some(first) = creds.first().cloned() else {
            return Self::status_resp(op, rid, "6008", pin);
        };
        // Seed 004: with "Require Number Challenge" a push that does not ask for it, or that
        // goes where no number can be shown (before 1.10) or typed (an incapable device),
        // is still sent but fails.
        let mut number = None;
        let mut refused = false;
        let mut approver = first;
        if self.policy.number_challenge {
            let capable = creds.iter().find(|c| c.2).cloned();
            match capable {
                Some(c) if asks_number && version >= V1_10 => {
                    approver = c;
                    number = Some(
                        user.cfg
                            .push
                            .number
                            .unwrap_or_else(|| rand::thread_rng().gen_range(10..=99)),
                    );
                }
                _ => refused = true,
            }
        }
        let push_cfg = user.cfg.push.clone();
        let now = Instant::now();
        inner
            .txns
            .retain(|_, t| now.duration_since(t.created) < t.timeout + Duration::from_secs(600));
        if inner.txns.len() >= 200_000 {
            return Self::status_only(op, rid, "6005");
        }
        let txn_id = random_hex(16, false);
        let sent = if push_cfg.device_unreachable {
            "false"
        } else {
            "true"
        };
        inner.txns.insert(
            txn_id.clone(),
            Txn {
                user: key,
                created: now,
                timeout: Duration::from_secs(timeout),
                number,
                refused,
                push: push_cfg,
                cred_id: approver.0,
                cred_type: approver.1,
            },
        );
        drop(inner);
        let code = self.policy.push_success_status.code();
        let mut r = Resp::new(op.response(), rid, code, message(code), None);
        r.field("transactionId", &txn_id);
        pin_fields(&mut r, pin);
        for (id, _, _) in &creds {
            r.open("pushDetail");
            r.field("pushCredentialId", id);
            r.field("pushSent", sent);
            r.close("pushDetail");
        }
        if let Some(n) = number {
            r.field("numbersChallengeValue", &n.to_string());
        }
        r.finish()
    }

    fn poll(&self, rid: &str, el: &Elem) -> String {
        let mut r = Resp::new(Op::PollPushStatus.response(), rid, "0000", "Success", None);
        // Cloned before taking `inner`: the two locks are never held together.
        let global = self.global_faults();
        let mut inner = lock(&self.inner);
        let now = Instant::now();
        for id_el in el.all("transactionId") {
            let id = id_el.text.as_str();
            let mut code: String;
            let mut detail: Option<String> = None;
            let mut cred = None;
            match inner.txns.get(id) {
                None => code = "7005".to_string(),
                Some(t) => {
                    let elapsed = now.duration_since(t.created);
                    let answers_at = Duration::from_millis(t.push.delay_ms);
                    let never = t.push.action == PushAction::Never
                        || t.push.device_unreachable
                        || answers_at >= t.timeout;
                    let pending_detail = t.number.map(|_| "7140".to_string());
                    let (c, d, approved) = if t.refused {
                        ("7008", None, false)
                    } else if never && elapsed >= t.timeout {
                        ("7004", None, false)
                    } else if never || elapsed < answers_at {
                        ("7001", pending_detail, false)
                    } else {
                        match t.push.action {
                            PushAction::Deny => ("7002", None, false),
                            _ if t.number.is_some() && t.push.wrong_number => {
                                ("7008", Some("7141".to_string()), false)
                            }
                            _ => ("7000", None, true),
                        }
                    };
                    code = c.to_string();
                    detail = d;
                    let faults = match inner.users.get(&t.user) {
                        Some(u) => global.merge(&u.cfg.faults),
                        None => global.clone(),
                    };
                    // Unvalidated (Rust API) values VIP could never send are ignored.
                    if let Some(s) = faults.transaction_status.filter(|s| is_status_code(s)) {
                        code = s;
                        detail = None;
                    }
                    if let Some(d) = faults.transaction_detail.filter(|d| is_status_code(d)) {
                        detail = Some(d);
                    }
                    if code == "7000" {
                        cred = Some((t.cred_id.clone(), t.cred_type));
                    }
                    // Only the phone's own approval is a login worth remembering.
                    if approved && code == "7000" {
                        let (user, cred_id) = (t.user.clone(), t.cred_id.clone());
                        if let Some(u) = inner.users.get_mut(&user) {
                            u.last_authn.insert(
                                cred_id,
                                LastAuthn {
                                    id: random_hex(16, true),
                                    time: xsd_now(),
                                },
                            );
                        }
                    }
                }
            }
            if !txn_pending(&code) {
                inner.txns.remove(id);
            }
            r.open("transactionStatus");
            r.field("transactionId", id);
            r.field("status", &code);
            r.field("statusMessage", txn_message(&code));
            if let Some(d) = &detail {
                r.field("detail", d);
                r.field("detailMessage", detail_message(d));
            }
            // Captured approved/denied answers carry the epoch as authnTime.
            if matches!(code.as_str(), "7000" | "7002") {
                r.field("authnTime", "1970-01-01T00:00:00.000Z");
            }
            if let Some((cid, ctype)) = cred {
                r.field("credentialId", &cid);
                r.field("credentialType", ctype.as_str());
            }
            r.close("transactionStatus");
        }
        drop(inner);
        r.finish()
    }

    fn user_info(&self, rid: &str, el: &Elem, version: u32) -> String {
        let op = Op::GetUserInfo;
        // The XSD default of includePushAttributes is true.
        let include_push = el
            .text_of("includePushAttributes")
            .and_then(parse_bool)
            .unwrap_or(true);
        let inner = lock(&self.inner);
        let Some(user) = inner
            .users
            .get(&el.text_of("userId").unwrap_or("").to_lowercase())
        else {
            return Self::status_only(op, rid, "6003");
        };
        let mut r = Resp::new(op.response(), rid, "0000", "Success", None);
        r.field("userId", &user.cfg.id);
        r.field("userCreationTime", &user.cfg.created);
        r.field("userStatus", user.cfg.status.as_str());
        let n = user.creds.len() + user.cfg.sms_phones.len() + user.cfg.voice_phones.len();
        r.field("numBindings", &n.to_string());
        let binding = |r: &mut Resp, id: &str, kind: &str, status: &str, name: &str| {
            r.field("credentialId", id);
            r.field("credentialType", kind);
            r.field("credentialStatus", status);
            r.open("bindingDetail");
            r.field("bindStatus", "ENABLED");
            r.field("friendlyName", name);
            r.field("lastBindTime", &user.cfg.created);
            // 1.10 added these; older endpoints never send them.
            if version >= V1_10 {
                if let Some(a) = user.last_authn.get(id) {
                    r.field("lastAuthnTime", &a.time);
                    r.field("lastAuthnId", &a.id);
                }
            }
            r.close("bindingDetail");
        };
        for c in &user.creds {
            r.open("credentialBindingDetail");
            let name = c
                .cfg
                .friendly_name
                .clone()
                .unwrap_or_else(|| c.cfg.id.clone());
            binding(
                &mut r,
                &c.cfg.id,
                c.cfg.kind.as_str(),
                c.status.as_str(),
                &name,
            );
            if include_push && c.cfg.push {
                r.kv("pushAttributes", "PUSH_PLATFORM", "IOS");
                r.kv("pushAttributes", "PUSH_ENABLED", "true");
            }
            r.close("credentialBindingDetail");
        }
        for (phones, kind) in [
            (&user.cfg.sms_phones, CredentialType::SmsOtp),
            (&user.cfg.voice_phones, CredentialType::VoiceOtp),
        ] {
            for p in phones {
                r.open("credentialBindingDetail");
                let name = user.phone_names.get(p).map_or(p.as_str(), String::as_str);
                binding(&mut r, p, kind.as_str(), "ENABLED", name);
                r.close("credentialBindingDetail");
            }
        }
        r.field(
            "isPinSet",
            if user.cfg.pin.is_some() {
                "true"
            } else {
                "false"
            },
        );
        r.field(
            "isTempPasswordSet",
            if user
                .temp
                .as_ref()
                .is_some_and(|t| !t.expired(SystemTime::now()))
            {
                "true"
            } else {
                "false"
            },
        );
        r.finish()
    }

    fn send_otp(&self, rid: &str, el: &Elem) -> String {
        let op = Op::SendOtp;
        let mut inner = lock(&self.inner);
        let Some(user) = inner
            .users
            .get_mut(&el.text_of("userId").unwrap_or("").to_lowercase())
        else {
            return Self::status_only(op, rid, "6003");
        };
        if user.cfg.status != UserStatus::Active {
            return Self::status_only(op, rid, "601B");
        }
        let (kind, phones, asked) = if let Some(d) = el.child("voiceDeliveryInfo") {
            (
                CredentialType::VoiceOtp,
                &user.cfg.voice_phones,
                d.text_of("phoneNumber"),
            )
        } else if let Some(d) = el.child("smsDeliveryInfo") {
            (
                CredentialType::SmsOtp,
                &user.cfg.sms_phones,
                d.text_of("phoneNumber"),
            )
        } else {
            (CredentialType::SmsOtp, &user.cfg.sms_phones, None)
        };
        if phones.is_empty() {
            return Self::status_only(op, rid, "6008");
        }
        let phone = match asked {
            Some(p) if phones.iter().any(|x| x == p) => p.to_string(),
            Some(_) => return Self::status_only(op, rid, "6015"),
            None => phones[0].clone(),
        };
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32));
        let now = Instant::now();
        user.sent.retain(|s| s.expires > now);
        if user.sent.len() >= 16 {
            user.sent.remove(0);
        }
        user.sent.push(SentCode {
            code: code.clone(),
            kind,
            phone: phone.clone(),
            expires: now + Duration::from_secs(self.policy.sent_code_ttl_secs),
        });
        user.last_sent = Some(code.clone());
        if let Some(r) = inner.phones.get_mut(&phone) {
            r.last_code = Some(code);
        }
        drop(inner);
        Resp::new(op.response(), rid, "0000", "Success", None).finish()
    }
}
