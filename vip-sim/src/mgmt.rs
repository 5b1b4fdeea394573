//! The Management service (user and credential administration, registration, temporary
//! security codes, PINs) and the Query calls that read what it manages
//! (getTemporaryPasswordAttributes, getCredentialInfo).
//!
//! Sources, in this order: the element order and occurs are those of VIP's XSD as its soap4r
//! mapping records them (`VIPUserServicesMappingRegistry`), with the later optional elements
//! the Python `SymantecServices` wrapper (seed 000) passes (`forcePinChange`, `trustedDevice`);
//! the behaviour is seed 000's notes; status codes are those of
//! `shared/reference/vip-user-services.md` and the Broadcom "Status codes and messages" page of
//! the VIP User Services Developer's Guide. Where none of them gives the code, the choice is
//! marked "simulator choice" below.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;

use super::{
    char_len_in, lock, now_unix, parse_bool, valid_otp, xsd_now, xsd_time, CredState, Inner, Op,
    State, UserState,
};
use crate::config::{
    valid_credential_id, valid_phone, CredentialConfig, CredentialStatus, CredentialType, Faults,
    PushConfig, UserConfig, UserStatus,
};
use crate::totp::{code_at_step, decode_base32, STEP_SECONDS};
use crate::xml::{Elem, Resp};

/// A temporary security code (seed 000, setTemporaryPassword).
pub(super) struct TempCode {
    pub(super) code: String,
    /// None: never expires (a configured `temporary_code`).
    pub(super) expires: Option<SystemTime>,
    pub(super) one_time: bool,
}

impl TempCode {
    /// A `temporary_code` from the configuration: no expiry, reusable (as before).
    pub(super) fn configured(code: String) -> TempCode {
        TempCode {
            code,
            expires: None,
            one_time: false,
        }
    }

    pub(super) fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// A registered phone number (RegisterRequest, or a configured user's phone).
pub(super) struct Registration {
    kind: CredentialType,
    /// The code sent by register, until addCredential uses it or it expires.
    pending: Option<(String, Instant)>,
    /// The last code sent to this number (never cleared; for tests).
    pub(super) last_code: Option<String>,
}

impl Registration {
    pub(super) fn configured(kind: CredentialType) -> Registration {
        Registration {
            kind,
            pending: None,
            last_code: None,
        }
    }
}

/// Seed 000: "expiration time (maximum of 30 days)", "default expiration period of 1 day".
const TEMP_MAX: Duration = Duration::from_secs(30 * 24 * 3600);
const TEMP_DEFAULT: Duration = Duration::from_secs(24 * 3600);

fn random_code() -> String {
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32))
}

fn bool_ok(el: &Elem, name: &str) -> bool {
    el.text_of(name).is_none_or(|v| parse_bool(v).is_some())
}

/// credentialId (4-100 of `[0-9A-Za-z,#.*]`) and credentialType (CredentialTypeEnum).
fn credential_ok(el: &Elem) -> bool {
    el.text_of("credentialId").is_some_and(valid_credential_id)
        && el
            .text_of("credentialType")
            .and_then(CredentialType::from_wire)
            .is_some()
}

fn friendly_name_ok(el: &Elem) -> bool {
    el.text_of("friendlyName")
        .is_none_or(|n| char_len_in(n, 1, 128))
}

fn delivery_ok(el: &Elem) -> bool {
    el.text_of("phoneNumber").is_some_and(valid_phone)
}

fn temp_attrs_ok(el: Option<&Elem>) -> bool {
    el.is_none_or(|a| {
        a.text_of("expirationTime")
            .is_none_or(|t| parse_xsd_datetime(t).is_some())
            && bool_ok(a, "oneTimeUseOnly")
    })
}

/// The facets of the management requests (600B); the structure is `schema`'s.
pub(super) fn validate(op: Op, el: &Elem) -> bool {
    let pin_ok = |name: &str| el.text_of(name).is_none_or(|p| char_len_in(p, 4, 128));
    match op {
        Op::CreateUser => bool_ok(el, "forcePinChange"),
        Op::UpdateUser => {
            el.text_of("newUserId")
                .is_none_or(|u| char_len_in(u, 1, 128))
                // Seed 000: "New status of user: ACTIVE or DISABLED".
                && el
                    .text_of("newUserStatus")
                    .is_none_or(|s| matches!(s, "ACTIVE" | "DISABLED"))
                && pin_ok("oldPin")
                && pin_ok("newPin")
                && bool_ok(el, "forcePinChange")
        }
        Op::AddCredential => el.child("credentialDetail").is_some_and(|d| {
            credential_ok(d) && friendly_name_ok(d) && bool_ok(d, "trustedDevice")
        }),
        Op::RemoveCredential => credential_ok(el) && bool_ok(el, "trustedDevice"),
        Op::UpdateCredential => credential_ok(el) && friendly_name_ok(el),
        Op::GetCredentialInfo => credential_ok(el) && bool_ok(el, "includePushAttributes"),
        Op::Register => {
            // The XSD's choice: exactly one delivery info.
            let n = [
                "smsDeliveryInfo",
                "voiceDeliveryInfo",
                "serviceOtpDeliveryInfo",
            ]
            .iter()
            .filter(|n| el.child(n).is_some())
            .count();
            n == 1
                && el
                    .child("smsDeliveryInfo")
                    .or(el.child("voiceDeliveryInfo"))
                    .is_none_or(delivery_ok)
        }
        Op::SetTemporaryPassword => {
            let sms = el.child("smsDeliveryInfo");
            let voice = el.child("voiceDeliveryInfo");
            // Seed 000: "either empty or 6 numeric characters".
            el.text_of("temporaryPassword").is_none_or(|p| {
                p.is_empty() || (p.len() == 6 && p.bytes().all(|b| b.is_ascii_digit()))
            }) && temp_attrs_ok(el.child("temporaryPasswordAttributes"))
                && !(sms.is_some() && voice.is_some())
                && sms.or(voice).is_none_or(delivery_ok)
        }
        Op::SetTemporaryPasswordAttributes => {
            temp_attrs_ok(el.child("temporaryPasswordAttributes"))
        }
        _ => true,
    }
}

/// xsd:dateTime `YYYY-MM-DDThh:mm:ss[.f+][Z|±hh:mm]` (no zone: GMT, as seed 000 says the
/// expiration is given in).
pub(super) fn parse_xsd_datetime(s: &str) -> Option<SystemTime> {
    let s = s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let year: i32 = d.next()?.parse().ok()?;
    let month: u8 = d.next()?.parse().ok()?;
    let day: u8 = d.next()?.parse().ok()?;
    // Split the zone off.
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0i64)
    } else if rest.len() > 6
        && matches!(rest.as_bytes()[rest.len() - 6], b'+' | b'-')
        && rest.as_bytes()[rest.len() - 3] == b':'
    {
        let (c, z) = rest.split_at(rest.len() - 6);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let h: i64 = z.get(1..3)?.parse().ok()?;
        let m: i64 = z.get(4..6)?.parse().ok()?;
        if h > 14 || m > 59 {
            return None;
        }
        (c, sign * (h * 3600 + m * 60))
    } else {
        (rest, 0)
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    if frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let mut t = hms.split(':');
    let (h, mi, sec) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() || [h, mi, sec].iter().any(|p| p.len() != 2) {
        return None;
    }
    let (h, mi, sec): (u8, u8, u8) = (h.parse().ok()?, mi.parse().ok()?, sec.parse().ok()?);
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let clock = time::Time::from_hms(h, mi, sec).ok()?;
    let unix = time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp()
        - offset_secs;
    let unix = u64::try_from(unix).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(unix))
}

fn system_to_xsd(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let odt = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    xsd_time(odt)
}

fn new_user_state(cfg: UserConfig) -> UserState {
    UserState {
        cfg,
        creds: Vec::new(),
        bad_count: 0,
        sent: Vec::new(),
        last_sent: None,
        last_authn: Default::default(),
        injected: Default::default(),
        temp: None,
        phone_names: Default::default(),
    }
}

/// Checks the code(s) a user typed from a token being added, as authentication does: one
/// code inside the window, or two consecutive codes anywhere in the resync window (which
/// teaches the token's drift). A single code only the resync window matches is 604A.
fn check_token(
    policy: &crate::config::Policy,
    c: &mut CredState,
    otp: &str,
    otp2: Option<&str>,
) -> Result<(), &'static str> {
    if !valid_otp(otp) || otp2.is_some_and(|o| !valid_otp(o)) {
        return Err("6009");
    }
    let Some(key) = c.key.clone() else {
        return Err("6009");
    };
    let digits = c.cfg.digits;
    let now_step = (now_unix() / STEP_SECONDS) as i64;
    let w = i64::from(policy.totp_window_steps);
    let r = i64::from(policy.resync_window_steps).max(w);
    let base = now_step + c.learned;
    match otp2 {
        None => {
            for d in -w..=w {
                if code_at_step(&key, base + d, digits) == otp {
                    c.last_step = Some(base + d);
                    return Ok(());
                }
            }
            if (-r..=r).any(|d| code_at_step(&key, base + d, digits) == otp) {
                return Err("604A");
            }
        }
        Some(otp2) => {
            for d in -r..=r {
                let step = base + d;
                if code_at_step(&key, step, digits) == otp
                    && code_at_step(&key, step + 1, digits) == otp2
                {
                    c.last_step = Some(step + 1);
                    c.learned = step + 1 - now_step;
                    return Ok(());
                }
            }
        }
    }
    Err("6009")
}

impl State {
    pub(super) fn run_mgmt(&self, op: Op, rid: &str, el: &Elem) -> String {
        match op {
            Op::CreateUser => self.create_user(rid, el),
            Op::UpdateUser => self.update_user(rid, el),
            Op::DeleteUser => self.delete_user(rid, el),
            Op::AddCredential => self.add_credential(rid, el),
            Op::RemoveCredential => self.remove_credential(rid, el),
            Op::UpdateCredential => self.update_credential(rid, el),
            Op::Register => self.register(rid, el),
            Op::SetTemporaryPassword => self.set_temp(rid, el),
            Op::ClearTemporaryPassword => self.clear_temp(rid, el),
            Op::SetTemporaryPasswordAttributes => self.set_temp_attrs(rid, el),
            Op::ClearUserPin => self.clear_pin(rid, el),
            Op::GetTemporaryPasswordAttributes => self.get_temp_attrs(rid, el),
            Op::GetCredentialInfo => self.credential_info(rid, el),
            _ => Self::status_only(op, rid, "6005"),
        }
    }

    fn ok(op: Op, rid: &str) -> String {
        Self::status_only(op, rid, "0000")
    }

    fn key_of(el: &Elem) -> String {
        el.text_of("userId").unwrap_or("").to_lowercase()
    }

    fn create_user(&self, rid: &str, el: &Elem) -> String {
        let op = Op::CreateUser;
        let id = el.text_of("userId").unwrap_or("");
        let pin = el.text_of("pin");
        // Reference: 6021 "PIN not enabled for this account".
        if pin.is_some() && !self.policy.pin_enabled {
            return Self::status_only(op, rid, "6021");
        }
        let force = el
            .text_of("forcePinChange")
            .and_then(parse_bool)
            .unwrap_or(false);
        let mut inner = lock(&self.inner);
        let key = id.to_lowercase();
        // Broadcom status table: 6002 "User already exists".
        if inner.users.contains_key(&key) {
            return Self::status_only(op, rid, "6002");
        }
        if inner.users.len() >= 100_000 {
            return Self::status_only(op, rid, "6005");
        }
        let cfg = UserConfig {
            id: id.to_string(),
            // Seed 000: "By default users are created as Enabled".
            status: UserStatus::Active,
            pin: pin.map(str::to_string),
            // forcePinChange: "Force the PIN to expire after first use"; modelled as a PIN
            // that answers isPinExpired=true.
            pin_expired: pin.is_some() && force,
            temporary_code: None,
            sms_phones: Vec::new(),
            voice_phones: Vec::new(),
            created: xsd_now(),
            push: PushConfig::default(),
            faults: Faults::default(),
            credentials: Vec::new(),
        };
        inner.users.insert(key, new_user_state(cfg));
        drop(inner);
        Self::ok(op, rid)
    }

    fn update_user(&self, rid: &str, el: &Elem) -> String {
        let op = Op::UpdateUser;
        let key = Self::key_of(el);
        let old_pin = el.text_of("oldPin");
        let new_pin = el.text_of("newPin");
        let force = el.text_of("forcePinChange").and_then(parse_bool);
        let mut guard = lock(&self.inner);
        let inner: &mut Inner = &mut guard;
        let Some(user) = inner.users.get(&key) else {
            return Self::status_only(op, rid, "6003");
        };
        if (new_pin.is_some() || old_pin.is_some()) && !self.policy.pin_enabled {
            return Self::status_only(op, rid, "6021");
        }
        // Seed 000: an oldPin without a newPin is an error (simulator choice: 601F "Invalid
        // user PIN"), and so is an oldPin that is not the user's PIN.
        if let Some(old) = old_pin {
            if new_pin.is_none() || user.cfg.pin.as_deref() != Some(old) {
                return Self::status_only(op, rid, "601F");
            }
        }
        let new_id = el.text_of("newUserId").map(str::to_string);
        let new_key = new_id.as_deref().map(str::to_lowercase);
        if let Some(nk) = &new_key {
            if *nk != key && inner.users.contains_key(nk) {
                return Self::status_only(op, rid, "6002");
            }
        }
        let Some(mut user) = inner.users.remove(&key) else {
            return Self::status_only(op, rid, "6003");
        };
        match el.text_of("newUserStatus") {
            Some("ACTIVE") => user.cfg.status = UserStatus::Active,
            Some("DISABLED") => user.cfg.status = UserStatus::Disabled,
            _ => {}
        }
        if let Some(p) = new_pin {
            user.cfg.pin = Some(p.to_string());
            user.cfg.pin_expired = force.unwrap_or(false);
        } else if let Some(f) = force {
            user.cfg.pin_expired = f && user.cfg.pin.is_some();
        }
        let final_key = match (new_id, new_key) {
            (Some(id), Some(nk)) => {
                user.cfg.id = id;
                for t in inner.txns.values_mut() {
                    if t.user == key {
                        t.user = nk.clone();
                    }
                }
                nk
            }
            _ => key,
        };
        inner.users.insert(final_key, user);
        drop(guard);
        Self::ok(op, rid)
    }

    fn delete_user(&self, rid: &str, el: &Elem) -> String {
        let op = Op::DeleteUser;
        let key = Self::key_of(el);
        let mut inner = lock(&self.inner);
        let Some(user) = inner.users.remove(&key) else {
            return Self::status_only(op, rid, "6003");
        };
        // Its bindings go with it; tokens nobody else holds go back to the inventory.
        inner.txns.retain(|_, t| t.user != key);
        for c in user.creds {
            Self::release_token(&mut inner, c);
        }
        drop(inner);
        Self::ok(op, rid)
    }

    /// Seed 000 (removeCredential): a credential no other user holds is deactivated; the
    /// simulator puts a token with a secret back among the unbound `[[tokens]]` so that it
    /// can be added again.
    fn release_token(inner: &mut Inner, c: CredState) {
        let held = inner
            .users
            .values()
            .any(|u| u.creds.iter().any(|x| x.cfg.id == c.cfg.id));
        if held || c.cfg.kind != CredentialType::StandardOtp {
            return;
        }
        if let Some(secret) = c.cfg.totp_secret {
            inner.tokens.insert(
                c.cfg.id.clone(),
                crate::config::TokenConfig {
                    id: c.cfg.id,
                    secret,
                    drift_steps: c.cfg.drift_steps,
                    digits: c.cfg.digits,
                },
            );
        }
    }

    fn add_credential(&self, rid: &str, el: &Elem) -> String {
        let op = Op::AddCredential;
        let key = Self::key_of(el);
        let Some(detail) = el.child("credentialDetail") else {
            return Self::status_only(op, rid, "600B");
        };
        let id = detail.text_of("credentialId").unwrap_or("");
        let Some(kind) = detail
            .text_of("credentialType")
            .and_then(CredentialType::from_wire)
        else {
            return Self::status_only(op, rid, "600B");
        };
        let friendly = detail.text_of("friendlyName").map(str::to_string);
        let (otp, otp2) = match el.child("otpAuthData") {
            Some(d) => (d.text_of("otp"), d.text_of("otp2")),
            None => (None, None),
        };
        let mut guard = lock(&self.inner);
        let inner: &mut Inner = &mut guard;
        if !inner.users.contains_key(&key) {
            return Self::status_only(op, rid, "6003");
        }
        match kind {
            CredentialType::StandardOtp => {
                // The token: unbound in the inventory, or bound to other users (VIP lets
                // users share a credential: seed 000, removeCredential note).
                let token = inner.tokens.get(id).cloned().or_else(|| {
                    inner.users.values().find_map(|u| {
                        u.creds.iter().find(|c| c.cfg.id == id).and_then(|c| {
                            c.cfg
                                .totp_secret
                                .clone()
                                .map(|secret| crate::config::TokenConfig {
                                    id: c.cfg.id.clone(),
                                    secret,
                                    drift_steps: c.cfg.drift_steps,
                                    digits: c.cfg.digits,
                                })
                        })
                    })
                });
                // Broadcom status table: 6004 "Credential ID is not valid" (cannot be found).
                let Some(token) = token else {
                    return Self::status_only(op, rid, "6004");
                };
                let Some(user) = inner.users.get_mut(&key) else {
                    return Self::status_only(op, rid, "6003");
                };
                // Simulator choice: 6011 for a credential this user already holds.
                if user.creds.iter().any(|c| c.cfg.id == id) {
                    return Self::status_only(op, rid, "6011");
                }
                let mut c = CredState {
                    cfg: CredentialConfig {
                        id: token.id.clone(),
                        kind,
                        totp_secret: Some(token.secret.clone()),
                        status: CredentialStatus::Enabled,
                        push: false,
                        drift_steps: token.drift_steps,
                        digits: token.digits,
                        friendly_name: friendly,
                        number_challenge_capable: true,
                    },
                    key: decode_base32(&token.secret),
                    status: CredentialStatus::Enabled,
                    learned: 0,
                    last_step: None,
                };
                // Reference: 6009 for a wrong code, 604A for one that needs a second.
                let Some(otp) = otp else {
                    return Self::status_resp(op, rid, "6009", None);
                };
                if let Err(code) = check_token(&self.policy, &mut c, otp, otp2) {
                    return Self::status_resp(op, rid, code, None);
                }
                user.creds.push(c);
                inner.tokens.remove(id);
            }
            CredentialType::SmsOtp | CredentialType::VoiceOtp => {
                // Seed 000: SMS and voice credentials must be registered first; the
                // credentialId is the phone number and the code the one register sent.
                let registered = inner.phones.get(id).is_some_and(|r| r.kind == kind);
                if !registered {
                    return Self::status_only(op, rid, "6004");
                }
                let Some(user) = inner.users.get_mut(&key) else {
                    return Self::status_only(op, rid, "6003");
                };
                let list = if kind == CredentialType::SmsOtp {
                    &user.cfg.sms_phones
                } else {
                    &user.cfg.voice_phones
                };
                if list.iter().any(|p| p == id) {
                    return Self::status_only(op, rid, "6011");
                }
                let now = Instant::now();
                let Some(reg) = inner.phones.get_mut(id) else {
                    return Self::status_only(op, rid, "6004");
                };
                let good = match (&reg.pending, otp, otp2) {
                    (Some((code, exp)), Some(o), None) => *exp > now && code == o,
                    _ => false,
                };
                if !good {
                    return Self::status_resp(op, rid, "6009", None);
                }
                reg.pending = None;
                if kind == CredentialType::SmsOtp {
                    user.cfg.sms_phones.push(id.to_string());
                } else {
                    user.cfg.voice_phones.push(id.to_string());
                }
                if let Some(n) = friendly {
                    user.phone_names.insert(id.to_string(), n);
                }
            }
            // Broadcom status table: 600A "Credential type not supported" by the operation.
            _ => return Self::status_only(op, rid, "600A"),
        }
        drop(guard);
        Self::ok(op, rid)
    }

    fn remove_credential(&self, rid: &str, el: &Elem) -> String {
        let op = Op::RemoveCredential;
        let key = Self::key_of(el);
        let id = el.text_of("credentialId").unwrap_or("");
        let kind = el
            .text_of("credentialType")
            .and_then(CredentialType::from_wire);
        let mut guard = lock(&self.inner);
        let inner: &mut Inner = &mut guard;
        let Some(user) = inner.users.get_mut(&key) else {
            return Self::status_only(op, rid, "6003");
        };
        let cred_at = user
            .creds
            .iter()
            .position(|c| c.cfg.id == id && Some(c.cfg.kind) == kind);
        let phones = match kind {
            Some(CredentialType::SmsOtp) => Some(&mut user.cfg.sms_phones),
            Some(CredentialType::VoiceOtp) => Some(&mut user.cfg.voice_phones),
            _ => None,
        };
        let phone_at = phones.as_ref().and_then(|l| l.iter().position(|p| p == id));
        // Broadcom status table: 6007 "No binding exists between user and credential".
        if cred_at.is_none() && phone_at.is_none() {
            return Self::status_only(op, rid, "6007");
        }
        // Seed 000: with remembered-device deletion set to Admin Only, 6010.
        if self.policy.credential_removal_admin_only {
            return Self::status_only(op, rid, "6010");
        }
        if let (Some(i), Some(l)) = (phone_at, phones) {
            l.remove(i);
            user.phone_names.remove(id);
        }
        user.last_authn.remove(id);
        if let Some(i) = cred_at {
            let c = user.creds.remove(i);
            Self::release_token(inner, c);
        }
        drop(guard);
        Self::ok(op, rid)
    }

    fn update_credential(&self, rid: &str, el: &Elem) -> String {
        let op = Op::UpdateCredential;
        let key = Self::key_of(el);
        let id = el.text_of("credentialId").unwrap_or("");
        let kind = el
            .text_of("credentialType")
            .and_then(CredentialType::from_wire);
        let name = el.text_of("friendlyName").unwrap_or("").to_string();
        let mut inner = lock(&self.inner);
        let Some(user) = inner.users.get_mut(&key) else {
            return Self::status_only(op, rid, "6003");
        };
        if let Some(c) = user
            .creds
            .iter_mut()
            .find(|c| c.cfg.id == id && Some(c.cfg.kind) == kind)
        {
            c.cfg.friendly_name = Some(name);
        } else {
            let bound = match kind {
                Some(CredentialType::SmsOtp) => user.cfg.sms_phones.iter().any(|p| p == id),
                Some(CredentialType::VoiceOtp) => user.cfg.voice_phones.iter().any(|p| p == id),
                _ => false,
            };
            if !bound {
                return Self::status_only(op, rid, "6007");
            }
            user.phone_names.insert(id.to_string(), name);
        }
        drop(inner);
        Self::ok(op, rid)
    }

    fn register(&self, rid: &str, el: &Elem) -> String {
        let op = Op::Register;
        let (kind, d) = if let Some(d) = el.child("smsDeliveryInfo") {
            (CredentialType::SmsOtp, d)
        } else if let Some(d) = el.child("voiceDeliveryInfo") {
            (CredentialType::VoiceOtp, d)
        } else {
            // serviceOtpDeliveryInfo: "DEPRECATED" (seed 000); not modelled.
            return Self::status_only(op, rid, "600A");
        };
        let phone = d.text_of("phoneNumber").unwrap_or("").to_string();
        let mut inner = lock(&self.inner);
        // Simulator choice (the brief's reading; the status row was not found): 6026.
        if inner.phones.contains_key(&phone) {
            return Self::status_only(op, rid, "6026");
        }
        if inner.phones.len() >= 100_000 {
            return Self::status_only(op, rid, "6005");
        }
        let code = random_code();
        let expires = Instant::now() + Duration::from_secs(self.policy.sent_code_ttl_secs);
        inner.phones.insert(
            phone,
            Registration {
                kind,
                pending: Some((code.clone(), expires)),
                last_code: Some(code),
            },
        );
        drop(inner);
        // RegisterResponse has an optional `otp`; the code goes to the phone only.
        Self::ok(op, rid)
    }

    /// expirationTime: at most 30 days ahead, default 1 day (seed 000). A time in the past
    /// or beyond 30 days is refused with 600B (simulator choice: no status row found).
    fn expiry(attrs: Option<&Elem>) -> Result<SystemTime, &'static str> {
        let now = SystemTime::now();
        match attrs
            .and_then(|a| a.text_of("expirationTime"))
            .and_then(parse_xsd_datetime)
        {
            None => Ok(now + TEMP_DEFAULT),
            Some(t) if t <= now || t > now + TEMP_MAX + Duration::from_secs(60) => Err("600B"),
            Some(t) => Ok(t),
        }
    }

    fn set_temp(&self, rid: &str, el: &Elem) -> String {
        let op = Op::SetTemporaryPassword;
        let key = Self::key_of(el);
        let attrs = el.child("temporaryPasswordAttributes");
        let expires = match Self::expiry(attrs) {
            Ok(t) => t,
            Err(code) => return Self::status_only(op, rid, code),
        };
        let one_time = attrs
            .and_then(|a| a.text_of("oneTimeUseOnly"))
            .and_then(parse_bool)
            .unwrap_or(false);
        let code = match el.text_of("temporaryPassword") {
            Some(p) if !p.is_empty() => p.to_string(),
            // Seed 000: "If this field is left empty, a security code will be auto-generated".
            _ => random_code(),
        };
        let phone = el
            .child("smsDeliveryInfo")
            .or(el.child("voiceDeliveryInfo"))
            .and_then(|d| d.text_of("phoneNumber"));
        let mut guard = lock(&self.inner);
        let inner: &mut Inner = &mut guard;
        let Some(user) = inner.users.get_mut(&key) else {
            return Self::status_only(op, rid, "6003");
        };
        user.temp = Some(TempCode {
            code: code.clone(),
            expires: Some(expires),
            one_time,
        });
        if let Some(p) = phone {
            user.last_sent = Some(code.clone());
            if let Some(r) = inner.phones.get_mut(p) {
                r.last_code = Some(code.clone());
            }
        }
        drop(guard);
        let mut r = Resp::new(op.response(), rid, "0000", "Success", None);
        r.field("temporaryPassword", &code);
        r.finish()
    }

    fn clear_temp(&self, rid: &str, el: &Elem) -> String {
        let op = Op::ClearTemporaryPassword;
        let mut inner = lock(&self.inner);
        let Some(user) = inner.users.get_mut(&Self::key_of(el)) else {
            return Self::status_only(op, rid, "6003");
        };
        user.temp = None;
        drop(inner);
        Self::ok(op, rid)
    }

    fn set_temp_attrs(&self, rid: &str, el: &Elem) -> String {
        let op = Op::SetTemporaryPasswordAttributes;
        let attrs = el.child("temporaryPasswordAttributes");
        let expires = match Self::expiry(attrs) {
            Ok(t) => t,
            Err(code) => return Self::status_only(op, rid, code),
        };
        let one_time = attrs
            .and_then(|a| a.text_of("oneTimeUseOnly"))
            .and_then(parse_bool)
            .unwrap_or(false);
        let mut inner = lock(&self.inner);
        let Some(user) = inner.users.get_mut(&Self::key_of(el)) else {
            return Self::status_only(op, rid, "6003");
        };
        let now = SystemTime::now();
        match user.temp.as_mut().filter(|t| !t.expired(now)) {
            Some(t) => {
                t.expires = Some(expires);
                t.one_time = one_time;
            }
            // Simulator choice: no code set is 600D "Operation not allowed in current state".
            None => return Self::status_only(op, rid, "600D"),
        }
        drop(inner);
        Self::ok(op, rid)
    }

    fn clear_pin(&self, rid: &str, el: &Elem) -> String {
        let op = Op::ClearUserPin;
        let mut inner = lock(&self.inner);
        let Some(user) = inner.users.get_mut(&Self::key_of(el)) else {
            return Self::status_only(op, rid, "6003");
        };
        // Seed 000: a PIN "not enabled by the user PIN policy" is an error (reference: 6021).
        if !self.policy.pin_enabled {
            return Self::status_only(op, rid, "6021");
        }
        user.cfg.pin = None;
        user.cfg.pin_expired = false;
        drop(inner);
        Self::ok(op, rid)
    }

    fn get_temp_attrs(&self, rid: &str, el: &Elem) -> String {
        let op = Op::GetTemporaryPasswordAttributes;
        let inner = lock(&self.inner);
        let Some(user) = inner.users.get(&Self::key_of(el)) else {
            return Self::status_only(op, rid, "6003");
        };
        let now = SystemTime::now();
        let mut r = Resp::new(op.response(), rid, "0000", "Success", None);
        if let Some(t) = user.temp.as_ref().filter(|t| !t.expired(now)) {
            r.open("tempPwdAttributes");
            if let Some(e) = t.expires {
                r.field("expirationTime", &system_to_xsd(e));
            }
            r.field("oneTimeUseOnly", if t.one_time { "true" } else { "false" });
            r.close("tempPwdAttributes");
        }
        drop(inner);
        r.finish()
    }

    fn credential_info(&self, rid: &str, el: &Elem) -> String {
        let op = Op::GetCredentialInfo;
        let id = el.text_of("credentialId").unwrap_or("");
        let Some(kind) = el
            .text_of("credentialType")
            .and_then(CredentialType::from_wire)
        else {
            return Self::status_only(op, rid, "600B");
        };
        let inner = lock(&self.inner);
        // (userId, userStatus, friendlyName, lastBindTime, credentialStatus)
        let mut bindings: Vec<(String, &'static str, String, String, &'static str)> = Vec::new();
        let mut users: Vec<&UserState> = inner.users.values().collect();
        users.sort_by(|a, b| a.cfg.id.cmp(&b.cfg.id));
        for u in users {
            let bound = match kind {
                CredentialType::SmsOtp => u.cfg.sms_phones.iter().any(|p| p == id),
                CredentialType::VoiceOtp => u.cfg.voice_phones.iter().any(|p| p == id),
                _ => false,
            };
            if bound {
                let name = u.phone_names.get(id).cloned().unwrap_or_else(|| id.into());
                bindings.push((
                    u.cfg.id.clone(),
                    u.cfg.status.as_str(),
                    name,
                    u.cfg.created.clone(),
                    "ENABLED",
                ));
            }
            if let Some(c) = u
                .creds
                .iter()
                .find(|c| c.cfg.id == id && c.cfg.kind == kind)
            {
                let name = c.cfg.friendly_name.clone().unwrap_or_else(|| id.into());
                bindings.push((
                    u.cfg.id.clone(),
                    u.cfg.status.as_str(),
                    name,
                    u.cfg.created.clone(),
                    c.status.as_str(),
                ));
            }
        }
        let unbound = match kind {
            CredentialType::StandardOtp => inner.tokens.contains_key(id),
            CredentialType::SmsOtp | CredentialType::VoiceOtp => {
                inner.phones.get(id).is_some_and(|r| r.kind == kind)
            }
            _ => false,
        };
        if bindings.is_empty() && !unbound {
            return Self::status_only(op, rid, "6004");
        }
        let mut r = Resp::new(op.response(), rid, "0000", "Success", None);
        r.field("credentialId", id);
        r.field("credentialType", kind.as_str());
        // An unbound credential: simulator choice "NEW" (VIP's state before first use).
        let status = bindings.first().map_or("NEW", |b| b.4);
        r.field("credentialStatus", status);
        r.field("numBindings", &bindings.len().to_string());
        for (uid, ustatus, name, time, _) in &bindings {
            r.open("userBindingDetail");
            r.field("userId", uid);
            r.field("userStatus", ustatus);
            r.open("bindingDetail");
            r.field("bindStatus", "ENABLED");
            r.field("friendlyName", name);
            r.field("lastBindTime", time);
            r.close("bindingDetail");
            r.close("userBindingDetail");
        }
        drop(inner);
        r.finish()
    }

    // ---- readers for the `Sim` handle ----

    pub(crate) fn user_exists(&self, user: &str) -> bool {
        lock(&self.inner).users.contains_key(&user.to_lowercase())
    }

    pub(crate) fn credentials_of(&self, user: &str) -> Vec<(String, CredentialType)> {
        let inner = lock(&self.inner);
        let Some(u) = inner.users.get(&user.to_lowercase()) else {
            return Vec::new();
        };
        let mut out: Vec<(String, CredentialType)> = u
            .creds
            .iter()
            .map(|c| (c.cfg.id.clone(), c.cfg.kind))
            .collect();
        out.extend(
            u.cfg
                .sms_phones
                .iter()
                .map(|p| (p.clone(), CredentialType::SmsOtp)),
        );
        out.extend(
            u.cfg
                .voice_phones
                .iter()
                .map(|p| (p.clone(), CredentialType::VoiceOtp)),
        );
        out
    }

    pub(crate) fn last_sent_code_to(&self, phone: &str) -> Option<String> {
        lock(&self.inner)
            .phones
            .get(phone)
            .and_then(|r| r.last_code.clone())
    }

    pub(crate) fn token_code(&self, id: &str) -> Option<String> {
        let inner = lock(&self.inner);
        let (secret, drift, digits) = match inner.tokens.get(id) {
            Some(t) => (t.secret.clone(), t.drift_steps, t.digits),
            None => inner.users.values().find_map(|u| {
                u.creds.iter().find(|c| c.cfg.id == id).and_then(|c| {
                    c.cfg
                        .totp_secret
                        .clone()
                        .map(|s| (s, c.cfg.drift_steps, c.cfg.digits))
                })
            })?,
        };
        drop(inner);
        let key = decode_base32(&secret)?;
        let step = (now_unix() / STEP_SECONDS) as i64 + drift;
        Some(code_at_step(&key, step, digits))
    }

    pub(crate) fn temporary_code(&self, user: &str) -> Option<String> {
        let inner = lock(&self.inner);
        let now = SystemTime::now();
        inner
            .users
            .get(&user.to_lowercase())?
            .temp
            .as_ref()
            .filter(|t| !t.expired(now))
            .map(|t| t.code.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsd_datetimes() {
        let t = |s: &str| {
            parse_xsd_datetime(s)
                .map(|t| t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs())
        };
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("1970-01-01T01:00:00.250+01:00"), Some(0));
        assert_eq!(t("1970-01-02T00:00:00"), Some(86400));
        assert!(t(" 2030-06-01T00:00:00Z\n").is_some());
        for bad in [
            "",
            "2030-13-01T00:00:00Z",
            "2030-06-01",
            "2030-06-01T1:00:00Z",
            "x",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
        assert_eq!(system_to_xsd(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
