//! Per-client / per-PAM-service login policy: how what the user typed is read, and which
//! factors it may start. Chosen by the front door from its configuration and carried in every
//! [`AuthRequest`](super::AuthRequest).

use std::time::Duration;

use serde::Deserialize;

/// How the password field is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordMode {
    /// The password is a security code or a factor keyword (`push`, `sms`, `voice`).
    #[default]
    Code,
    /// The password is the user's VIP PIN followed by the security code (authenticateUser with pin).
    PinOtp,
    /// The first request only opens a menu (push / sms / voice / type a code); the answer continues.
    Challenge,
}

/// Which VIP operation verifies a security code the user types to log in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtpOperation {
    /// authenticateUser: honours VIP's lockout, an administrator's lock, help-desk temporary
    /// security codes and authentication levels. The default.
    #[default]
    AuthenticateUser,
    /// checkOtp: VIP validates the code "even if the credential is locked" and ignores
    /// temporary security codes. Meant for codes sendOtp delivered (the bridge uses it for
    /// those whatever this says); for logins it is warned about at start-up.
    CheckOtp,
}

/// What an empty password means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptyPassword {
    /// Refuse it (the safe default: a NAS may send an empty password by mistake).
    #[default]
    Reject,
    /// Send a push ("leave the code blank to get a push").
    Push,
    /// Open the factor menu, as in `challenge` mode.
    Menu,
}

/// How a push is waited for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushMode {
    /// Poll inside the request and answer Accept/Reject before `push_timeout`; the NAS timeout
    /// must be longer (typically 30–60 s).
    #[default]
    Blocking,
    /// Answer at once with a Challenge ("approve on your phone, then press Enter"), poll in the
    /// background, and finish on the next round.
    Challenge,
}

/// What happens when VIP cannot be reached before any second-factor step began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    #[default]
    Closed,
    /// Let the login through without a second factor. Logged as a warning and counted each time.
    Open,
}

/// Which first factor a login checks before the second (`first_factor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstFactorKind {
    /// The second factor only (the NAS or the PAM stack checked the password, or none is used).
    #[default]
    None,
    /// The directory password, by LDAP / Active Directory (`[directories.NAME]` of kind ldap).
    Ldap,
    /// The directory password, by an upstream RADIUS server (`[directories.NAME]` of kind radius).
    Radius,
}

impl FirstFactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FirstFactorKind::None => "none",
            FirstFactorKind::Ldap => "ldap",
            FirstFactorKind::Radius => "radius",
        }
    }
}

/// With a first factor in `code` mode: how the password and the second factor share the
/// password field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordFormat {
    /// `password<delimiter>code` or `password<delimiter>push` (split on the last delimiter).
    /// When what follows the last delimiter is not a code or keyword, the whole field is the
    /// password and the second factor is asked for in an Access-Challenge.
    #[default]
    Delimited,
    /// `passwordCODE`: the last `code_length` characters are the code.
    Appended,
}

/// Whether a user with no usable credential may set one up during a login (`enrollment`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enrollment {
    /// Never: such a user is refused (the help desk enrolls them with `vip-bridge admin`).
    #[default]
    Off,
    /// Once the first factor passed (the directory password of `first_factor`, or pam_unix
    /// before pam_vip.so), a user VIP knows no usable credential for is offered enrollment.
    /// Never offered to a user who already has one: a password thief must not add a phone.
    AfterFirstFactor,
}

/// A kind of credential a user may add during a login (`enrollment_credentials`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollKind {
    /// A VIP Access app or hardware token: its credential ID, then a code (addCredential).
    Token,
    /// A mobile number: VIP texts a code, the user types it (register, then addCredential).
    Sms,
    /// A phone number: VIP calls with a code.
    Voice,
}

impl EnrollKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollKind::Token => "token",
            EnrollKind::Sms => "sms",
            EnrollKind::Voice => "voice",
        }
    }
}

/// A group whose members get another policy's second factor (`[[policies.X.group_policies]]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    /// The group's DN (compared case-insensitively).
    pub group: String,
    /// The policy whose second-factor settings apply to its members.
    pub policy: String,
}

/// How the name the NAS or PAM sends becomes the directory's login name and VIP's user id
/// (`[policies.X.user_name]`). Applied in this order: strip the domain, strip the realm,
/// lower-case; the result is the login name; VIP's user id is `vip_user_attribute` of the
/// directory entry when set, else `vip_user` with `{user}` replaced by the login name.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct UserNameMapping {
    /// `CORP\alice` → `alice`.
    pub strip_domain: bool,
    /// `alice@corp.example` → `alice`.
    pub strip_realm: bool,
    pub lowercase: bool,
    /// VIP's user id, from the login name: `{user}` (the default) or e.g. `{user}@corp.example`.
    pub vip_user: String,
    /// Take VIP's user id from this attribute of the user's directory entry (e.g. `mail`,
    /// `userPrincipalName`); needs `directory` (an LDAP one).
    pub vip_user_attribute: Option<String>,
}

impl Default for UserNameMapping {
    fn default() -> Self {
        UserNameMapping {
            strip_domain: false,
            strip_realm: false,
            lowercase: false,
            vip_user: "{user}".into(),
            vip_user_attribute: None,
        }
    }
}

impl UserNameMapping {
    /// The login name for `typed` (already trimmed).
    pub fn login_name(&self, typed: &str) -> String {
        let mut name = typed;
        if self.strip_domain {
            if let Some((_, rest)) = name.split_once('\\') {
                name = rest;
            }
        }
        if self.strip_realm {
            if let Some((rest, _)) = name.rsplit_once('@') {
                name = rest;
            }
        }
        if self.lowercase {
            name.to_lowercase()
        } else {
            name.to_owned()
        }
    }

    /// VIP's user id from the template.
    pub fn vip_user(&self, login: &str) -> String {
        self.vip_user.replace("{user}", login)
    }

    fn is_identity(&self) -> bool {
        *self == UserNameMapping::default()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginPolicy {
    /// The first factor checked before the second: `none` (default), `ldap` or `radius`.
    pub first_factor: FirstFactorKind,
    /// Which `[directories.NAME]` to ask (for the first factor or `vip_user_attribute`); may be
    /// left out when exactly one directory of the needed kind is configured.
    pub directory: Option<String>,
    /// With a first factor in `code` mode: `delimited` (default) or `appended`.
    pub password_format: PasswordFormat,
    /// The delimiter of `delimited` (default `,`).
    pub delimiter: String,
    /// With a first factor: only members of one of these groups (DNs) may log in. Empty: anyone
    /// the directory accepts.
    pub required_groups: Vec<String>,
    /// With a first factor: the first group listed that the user belongs to picks another
    /// policy's second-factor settings.
    pub group_policies: Vec<GroupPolicy>,
    pub user_name: UserNameMapping,
    pub mode: PasswordMode,
    pub otp_operation: OtpOperation,
    /// Length of the security code at the end of a `pin_otp` password (VIP codes are 6 by default).
    pub code_length: usize,
    /// Words (case-insensitive) that mean "send me a push".
    pub push_keywords: Vec<String>,
    /// Words that mean "text me a code".
    pub sms_keywords: Vec<String>,
    /// Words that mean "call me with a code".
    pub voice_keywords: Vec<String>,
    pub empty_password: EmptyPassword,
    pub push_mode: PushMode,
    /// Our deadline for a push: blocking mode answers Reject (push_timeout) when it passes.
    /// Must fit inside the front door's own timeout.
    #[serde(with = "humantime_serde")]
    pub push_timeout: Duration,
    /// Ask VIP for a number challenge on pushes when the answer can be shown (challenge push mode).
    pub number_challenge: bool,
    pub fail_mode: FailMode,
    /// VIP authentication level (`authLevel.level`, 1–10), sent when set.
    pub auth_level: Option<u8>,
    /// Title and text of the push notification.
    pub push_title: String,
    pub push_text: String,
    /// Tell users more: "you are not enrolled" for an unknown user (instead of the same words
    /// as a wrong code), and the last digits of their phone numbers in menus and prompts
    /// (before any secret was checked). Off by default: both let a stranger learn who has an
    /// account and which numbers.
    pub helpful_messages: bool,
    /// In-band enrollment: `off` (default) or `after_first_factor`.
    pub enrollment: Enrollment,
    /// What a user may add during a login (default: token, sms, voice).
    pub enrollment_credentials: Vec<EnrollKind>,
    /// Words that mean "my token is out of sync: let me reset it with two consecutive codes"
    /// (answered where a code is asked for; needs `enrollment`).
    pub reset_keywords: Vec<String>,
    /// When VIP says the user's PIN has expired (the PIN and code were right), ask for a new
    /// one in the login and set it (updateUser), instead of refusing. Off by default.
    pub change_expired_pin: bool,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            first_factor: FirstFactorKind::None,
            directory: None,
            password_format: PasswordFormat::Delimited,
            delimiter: ",".into(),
            required_groups: Vec::new(),
            group_policies: Vec::new(),
            user_name: UserNameMapping::default(),
            mode: PasswordMode::Code,
            otp_operation: OtpOperation::AuthenticateUser,
            code_length: 6,
            push_keywords: vec!["push".into()],
            sms_keywords: vec!["sms".into()],
            voice_keywords: vec!["voice".into(), "phone".into()],
            empty_password: EmptyPassword::Reject,
            push_mode: PushMode::Blocking,
            push_timeout: Duration::from_secs(25),
            number_challenge: true,
            fail_mode: FailMode::Closed,
            auth_level: None,
            push_title: "Sign-in request".into(),
            push_text: "Approve to sign in".into(),
            helpful_messages: false,
            enrollment: Enrollment::Off,
            enrollment_credentials: vec![EnrollKind::Token, EnrollKind::Sms, EnrollKind::Voice],
            reset_keywords: vec!["reset".into()],
            change_expired_pin: false,
        }
    }
}

impl LoginPolicy {
    /// Whether the user name is used as typed (no mapping configured).
    pub fn maps_user_names(&self) -> bool {
        !self.user_name.is_identity()
    }

    /// What this policy gives up, in words for a start-up warning (empty when nothing).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.otp_operation == OtpOperation::CheckOtp {
            out.push(
                "otp_operation = \"check_otp\": VIP's checkOtp accepts a code even when the credential is locked (by VIP's own lockout after repeated bad codes, or by an administrator), ignores help-desk temporary security codes, and does not enforce the user's PIN; remove the line to use authenticateUser (the default)".to_owned(),
            );
        }
        out
    }

    /// Checks values serde cannot: returns what is wrong in words that name the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(l) = self.auth_level {
            if !(1..=10).contains(&l) {
                return Err(format!("auth_level = {l}: VIP accepts 1 to 10"));
            }
        }
        if !(6..=10).contains(&self.code_length) {
            return Err(format!(
                "code_length = {}: VIP codes are 6 to 10 characters",
                self.code_length
            ));
        }
        if self.push_timeout < Duration::from_secs(5)
            || self.push_timeout > Duration::from_secs(600)
        {
            return Err(format!(
                "push_timeout = {}: must be between 5s and 10m",
                humantime::format_duration(self.push_timeout)
            ));
        }
        for (key, words) in [
            ("push_keywords", &self.push_keywords),
            ("sms_keywords", &self.sms_keywords),
            ("voice_keywords", &self.voice_keywords),
            ("reset_keywords", &self.reset_keywords),
        ] {
            if words.iter().any(|w| w.trim().is_empty()) {
                return Err(format!("{key}: keywords may not be empty"));
            }
        }
        if self.first_factor != FirstFactorKind::None && self.mode == PasswordMode::PinOtp {
            return Err(format!(
                "mode = \"pin_otp\" with first_factor = \"{}\": the directory password takes the PIN's place; use mode = \"code\" (password{}code in one field) or \"challenge\" (the password, then a challenge for the second factor)",
                self.first_factor.as_str(),
                self.delimiter
            ));
        }
        if self.delimiter.is_empty() || self.delimiter.chars().any(char::is_alphanumeric) {
            return Err(format!(
                "delimiter = {:?}: must be one or more characters that are not letters or digits (a code is letters and digits)",
                self.delimiter
            ));
        }
        if self.first_factor == FirstFactorKind::None
            && (!self.required_groups.is_empty() || !self.group_policies.is_empty())
        {
            return Err("required_groups / group_policies need a first factor (first_factor = \"ldap\"): group membership is learnt when the directory checks the password".into());
        }
        if !self.user_name.vip_user.contains("{user}") {
            return Err(format!(
                "user_name.vip_user = {:?}: must contain {{user}} (every user would share one VIP user id)",
                self.user_name.vip_user
            ));
        }
        if self.enrollment != Enrollment::Off && self.enrollment_credentials.is_empty() {
            return Err("enrollment_credentials is empty: list what a user may add (\"token\", \"sms\", \"voice\"), or set enrollment = \"off\"".into());
        }
        let mut words: Vec<String> = Vec::new();
        for w in self
            .push_keywords
            .iter()
            .chain(&self.sms_keywords)
            .chain(&self.voice_keywords)
            .chain(&self.reset_keywords)
        {
            let w = w.trim().to_lowercase();
            if words.contains(&w) {
                return Err(format!("keyword {w:?} is listed twice among push_keywords, sms_keywords, voice_keywords and reset_keywords"));
            }
            words.push(w);
        }
        if self.push_title.chars().count() > 250 || self.push_text.chars().count() > 250 {
            return Err("push_title / push_text: VIP allows at most 250 characters".into());
        }
        Ok(())
    }
}
