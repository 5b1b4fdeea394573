//! VIP status, poll-status and detail codes as enums.
//!
//! Codes are 4 hex digits on the wire (`hexBinary`); they are parsed case-insensitively and
//! codes we do not know survive as `Other(..)` so nothing is lost.

use std::fmt;

/// Parses a 4-hex-digit code (`6009`, `600b`, `600B`). Surrounding whitespace is ignored.
pub(crate) fn parse_hex_code(s: &str) -> Option<u16> {
    let s = s.trim();
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

/// The `status` of a VIP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0000
    Success,
    /// 6040: the success code of authenticateUserWithPush.
    PushSent,
    /// 6001
    InvalidAccount,
    /// 6002
    UserExists,
    /// 6003
    UserNotFound,
    /// 6004
    InvalidCredentialId,
    /// 6005 (VIP suggests a retry)
    InternalError,
    /// 6006
    InvalidCredentialType,
    /// 6007
    NoBinding,
    /// 6008
    NoEnabledCredential,
    /// 6009
    AuthenticationFailed,
    /// 600A
    CredentialTypeNotSupported,
    /// 600B: our request did not validate against VIP's schema.
    SchemaValidationFailed,
    /// 600D
    CredentialStateNotAllowed,
    /// 600E
    CertificateRevoked,
    /// 6010: "Operation not allowed": the account's policy leaves this to VIP Manager
    /// (removeCredential while Remembered Device deletion is "Admin Only": seed 000).
    OperationNotAllowed,
    /// 6011: addCredential of a credential the user already holds (management only).
    CredentialAlreadyBound,
    /// 6015
    InvalidPhoneNumber,
    /// 601B
    UserStatusNotAllowed,
    /// 601F
    InvalidPin,
    /// 6020
    PinPolicy,
    /// 6021
    PinNotEnabled,
    /// 6026: register of an SMS / voice phone number that is already registered
    /// (management only).
    AlreadyRegistered,
    /// 604A
    OutOfSync,
    /// Any other code, as its numeric value.
    Other(u16),
}

impl Status {
    pub fn from_code(code: u16) -> Status {
        match code {
            0x0000 => Status::Success,
            0x6040 => Status::PushSent,
            0x6001 => Status::InvalidAccount,
            0x6002 => Status::UserExists,
            0x6003 => Status::UserNotFound,
            0x6004 => Status::InvalidCredentialId,
            0x6005 => Status::InternalError,
            0x6006 => Status::InvalidCredentialType,
            0x6007 => Status::NoBinding,
            0x6008 => Status::NoEnabledCredential,
            0x6009 => Status::AuthenticationFailed,
            0x600A => Status::CredentialTypeNotSupported,
            0x600B => Status::SchemaValidationFailed,
            0x600D => Status::CredentialStateNotAllowed,
            0x600E => Status::CertificateRevoked,
            0x6010 => Status::OperationNotAllowed,
            0x6011 => Status::CredentialAlreadyBound,
            0x6015 => Status::InvalidPhoneNumber,
            0x601B => Status::UserStatusNotAllowed,
            0x601F => Status::InvalidPin,
            0x6020 => Status::PinPolicy,
            0x6021 => Status::PinNotEnabled,
            0x6026 => Status::AlreadyRegistered,
            0x604A => Status::OutOfSync,
            other => Status::Other(other),
        }
    }

    /// Parses the wire form (4 hex digits, any case); `None` if it is not a code.
    pub fn parse(s: &str) -> Option<Status> {
        parse_hex_code(s).map(Status::from_code)
    }

    pub fn code(&self) -> u16 {
        match self {
            Status::Success => 0x0000,
            Status::PushSent => 0x6040,
            Status::InvalidAccount => 0x6001,
            Status::UserExists => 0x6002,
            Status::UserNotFound => 0x6003,
            Status::InvalidCredentialId => 0x6004,
            Status::InternalError => 0x6005,
            Status::InvalidCredentialType => 0x6006,
            Status::NoBinding => 0x6007,
            Status::NoEnabledCredential => 0x6008,
            Status::AuthenticationFailed => 0x6009,
            Status::CredentialTypeNotSupported => 0x600A,
            Status::SchemaValidationFailed => 0x600B,
            Status::CredentialStateNotAllowed => 0x600D,
            Status::CertificateRevoked => 0x600E,
            Status::OperationNotAllowed => 0x6010,
            Status::CredentialAlreadyBound => 0x6011,
            Status::InvalidPhoneNumber => 0x6015,
            Status::UserStatusNotAllowed => 0x601B,
            Status::InvalidPin => 0x601F,
            Status::PinPolicy => 0x6020,
            Status::PinNotEnabled => 0x6021,
            Status::AlreadyRegistered => 0x6026,
            Status::OutOfSync => 0x604A,
            Status::Other(c) => *c,
        }
    }

    /// VIP could not find what the request named: the user (6003), the credential (6004:
    /// "The credential ID cannot be found"), or the binding between them (6007). An admin tool
    /// tells these from every other refusal.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Status::UserNotFound | Status::InvalidCredentialId | Status::NoBinding
        )
    }

    /// The wire form, 4 upper-case hex digits.
    pub fn code_str(&self) -> String {
        format!("{:04X}", self.code())
    }

    pub fn meaning(&self) -> &'static str {
        match self {
            Status::Success => "Success",
            Status::PushSent => "Mobile push request sent",
            Status::InvalidAccount => "Invalid account",
            Status::UserExists => "User already exists",
            Status::UserNotFound => "User does not exist",
            Status::InvalidCredentialId => "Credential ID is not valid",
            Status::InternalError => "Internal error",
            Status::InvalidCredentialType => "Invalid credential type",
            Status::NoBinding => "No binding exists between user and credential",
            Status::NoEnabledCredential => {
                "User does not have any enabled credential for the given credential type"
            }
            Status::AuthenticationFailed => "Authentication failed",
            Status::CredentialTypeNotSupported => "Credential type not supported",
            Status::SchemaValidationFailed => "Schema validation failed",
            Status::CredentialStateNotAllowed => {
                "Operation not allowed in current state of credential"
            }
            Status::CertificateRevoked => "Client certificate is revoked",
            Status::OperationNotAllowed => "Operation not allowed",
            Status::CredentialAlreadyBound => "Credential is already bound to the user",
            Status::InvalidPhoneNumber => "Invalid phone number",
            Status::UserStatusNotAllowed => "Operation not allowed in current user status",
            Status::InvalidPin => "Invalid user PIN",
            Status::PinPolicy => "PIN does not meet policy",
            Status::PinNotEnabled => "PIN not enabled for this account",
            Status::AlreadyRegistered => "Phone number is already registered",
            Status::OutOfSync => "OTP out of sync",
            Status::Other(_) => "Unknown status code",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X} ({})", self.code(), self.meaning())
    }
}

/// The `status` of one transaction in a pollPushStatus answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PollStatus {
    /// 7000
    Approved,
    /// 7001
    InProgress,
    /// 7002
    Denied,
    /// 7003
    Changed,
    /// 7004
    Expired,
    /// 7005 (also for used or expired transaction ids)
    NotFound,
    /// 7006
    NotCompleted,
    /// 7008
    CouldNotAuthenticate,
    Other(u16),
}

impl PollStatus {
    pub fn from_code(code: u16) -> PollStatus {
        match code {
            0x7000 => PollStatus::Approved,
            0x7001 => PollStatus::InProgress,
            0x7002 => PollStatus::Denied,
            0x7003 => PollStatus::Changed,
            0x7004 => PollStatus::Expired,
            0x7005 => PollStatus::NotFound,
            0x7006 => PollStatus::NotCompleted,
            0x7008 => PollStatus::CouldNotAuthenticate,
            other => PollStatus::Other(other),
        }
    }

    pub fn parse(s: &str) -> Option<PollStatus> {
        parse_hex_code(s).map(PollStatus::from_code)
    }

    pub fn code(&self) -> u16 {
        match self {
            PollStatus::Approved => 0x7000,
            PollStatus::InProgress => 0x7001,
            PollStatus::Denied => 0x7002,
            PollStatus::Changed => 0x7003,
            PollStatus::Expired => 0x7004,
            PollStatus::NotFound => 0x7005,
            PollStatus::NotCompleted => 0x7006,
            PollStatus::CouldNotAuthenticate => 0x7008,
            PollStatus::Other(c) => *c,
        }
    }

    /// The user has not answered yet: keep polling.
    pub fn is_pending(&self) -> bool {
        matches!(self, PollStatus::InProgress | PollStatus::NotCompleted)
    }

    pub fn meaning(&self) -> &'static str {
        match self {
            PollStatus::Approved => "approved by user",
            PollStatus::InProgress => "in progress",
            PollStatus::Denied => "denied by user",
            PollStatus::Changed => "changed",
            PollStatus::Expired => "expired",
            PollStatus::NotFound => "not found",
            PollStatus::NotCompleted => "not completed",
            PollStatus::CouldNotAuthenticate => {
                "could not authenticate with the requested parameters"
            }
            PollStatus::Other(_) => "unknown poll status",
        }
    }
}

impl fmt::Display for PollStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X} ({})", self.code(), self.meaning())
    }
}

/// The `detail` code of a response or of a polled transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DetailCode {
    /// 7140: the user has not typed the number yet.
    NumbersChallengePending,
    /// 7141: the user typed the wrong number.
    NumbersChallengeFailed,
    /// 49B5: "Failed with an invalid OTP".
    InvalidOtp,
    /// 7120..=7125: on-device local authentication cancelled / failed / unsupported /
    /// not configured / not performed.
    LocalAuth(u16),
    /// Anything else, exactly as VIP sent it.
    Other(String),
}

impl DetailCode {
    pub fn parse(s: &str) -> DetailCode {
        match parse_hex_code(s) {
            Some(0x7140) => DetailCode::NumbersChallengePending,
            Some(0x7141) => DetailCode::NumbersChallengeFailed,
            Some(0x49B5) => DetailCode::InvalidOtp,
            Some(c @ 0x7120..=0x7125) => DetailCode::LocalAuth(c),
            _ => DetailCode::Other(s.trim().to_owned()),
        }
    }
}

impl fmt::Display for DetailCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetailCode::NumbersChallengePending => f.write_str("7140"),
            DetailCode::NumbersChallengeFailed => f.write_str("7141"),
            DetailCode::InvalidOtp => f.write_str("49B5"),
            DetailCode::LocalAuth(c) => write!(f, "{c:04X}"),
            DetailCode::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_named_status_round_trips_and_parses_any_case() {
        for code in [
            0x0000u16, 0x6040, 0x6001, 0x6002, 0x6003, 0x6004, 0x6005, 0x6006, 0x6007, 0x6008,
            0x6009, 0x600A, 0x600B, 0x600D, 0x600E, 0x6010, 0x6011, 0x6015, 0x601B, 0x601F, 0x6020,
            0x6021, 0x6026, 0x604A,
        ] {
            let s = Status::from_code(code);
            assert!(!matches!(s, Status::Other(_)), "{code:04X} should be named");
            assert_eq!(s.code(), code);
            assert_eq!(Status::parse(&format!("{code:04x}")), Some(s));
            assert_eq!(Status::parse(&format!("{code:04X}")), Some(s));
        }
        assert_eq!(Status::parse("600b"), Some(Status::SchemaValidationFailed));
        assert_eq!(Status::parse(" 604a\n"), Some(Status::OutOfSync));
        assert_eq!(Status::parse("6abc"), Some(Status::Other(0x6abc)));
        assert_eq!(Status::Other(0x6abc).code_str(), "6ABC");
        assert_eq!(Status::parse("60"), None);
        assert_eq!(Status::parse("zzzz"), None);
        assert_eq!(Status::parse("+600"), None);
    }

    #[test]
    fn management_statuses() {
        assert_eq!(Status::parse("6010"), Some(Status::OperationNotAllowed));
        assert_eq!(Status::parse("6011"), Some(Status::CredentialAlreadyBound));
        assert_eq!(Status::parse("6026"), Some(Status::AlreadyRegistered));
        assert_eq!(
            Status::OperationNotAllowed.to_string(),
            "6010 (Operation not allowed)"
        );
        assert_eq!(
            Status::AlreadyRegistered.to_string(),
            "6026 (Phone number is already registered)"
        );
        assert_eq!(Status::parse("6002"), Some(Status::UserExists));
        assert_eq!(Status::parse("6007"), Some(Status::NoBinding));
        assert_eq!(Status::parse("601b"), Some(Status::UserStatusNotAllowed));
        assert_eq!(Status::Other(0x6abc).meaning(), "Unknown status code");
    }

    #[test]
    fn not_found_statuses() {
        for s in [
            Status::UserNotFound,
            Status::InvalidCredentialId,
            Status::NoBinding,
        ] {
            assert!(s.is_not_found(), "{s}");
        }
        for s in [
            Status::Success,
            Status::UserExists,
            Status::InternalError,
            Status::UserStatusNotAllowed,
            Status::OperationNotAllowed,
            Status::CredentialAlreadyBound,
            Status::AlreadyRegistered,
            Status::Other(0x6abc),
        ] {
            assert!(!s.is_not_found(), "{s}");
        }
    }

    #[test]
    fn poll_status_codes_and_pending() {
        for (code, pending) in [
            (0x7000u16, false),
            (0x7001, true),
            (0x7002, false),
            (0x7003, false),
            (0x7004, false),
            (0x7005, false),
            (0x7006, true),
            (0x7008, false),
        ] {
            let p = PollStatus::from_code(code);
            assert!(!matches!(p, PollStatus::Other(_)));
            assert_eq!(p.code(), code);
            assert_eq!(p.is_pending(), pending, "{code:04X}");
        }
        assert_eq!(PollStatus::parse("7007"), Some(PollStatus::Other(0x7007)));
    }

    #[test]
    fn detail_codes() {
        assert_eq!(DetailCode::parse("49b5"), DetailCode::InvalidOtp);
        assert_eq!(
            DetailCode::parse("7140"),
            DetailCode::NumbersChallengePending
        );
        assert_eq!(
            DetailCode::parse("7141"),
            DetailCode::NumbersChallengeFailed
        );
        assert_eq!(DetailCode::parse("7123"), DetailCode::LocalAuth(0x7123));
        assert_eq!(DetailCode::parse("7126"), DetailCode::Other("7126".into()));
        assert_eq!(
            DetailCode::parse("weird"),
            DetailCode::Other("weird".into())
        );
    }
}
