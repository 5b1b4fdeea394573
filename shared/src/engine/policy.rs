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

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginPolicy {
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
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
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
        }
    }
}

impl LoginPolicy {
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
        ] {
            if words.iter().any(|w| w.trim().is_empty()) {
                return Err(format!("{key}: keywords may not be empty"));
            }
        }
        if self.push_title.chars().count() > 250 || self.push_text.chars().count() > 250 {
            return Err("push_title / push_text: VIP allows at most 250 characters".into());
        }
        Ok(())
    }
}
