//! Every `err` string of TrustBuilder's authentication API, and what each means for a login.
//!
//! Compared without regard to ASCII case and surrounding spaces (the vendor's documentation and
//! its own clients disagree on case, and `NOK:account unknown ` may carry a trailing space).

use std::borrow::Cow;

use crate::engine::backend::Refusal;

/// An `err` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TbStatus {
    /// `OK`.
    Ok,
    /// `NOK:WAITING`: the push is not answered yet.
    Waiting,
    /// `NOK:REFUSED`: the user refused the push.
    Refused,
    /// `NOK:TIMEOUT`: the push was not answered in time.
    Timeout,
    /// `NOK:no device found`: the code matches none of the user's devices (bad, replayed,
    /// expired).
    NoDeviceFound,
    /// `NOK:account unknown`: no such login in this service.
    AccountUnknown,
    /// `NOK:NOLOGIN`: the user is not activated or does not exist (push).
    NoLogin,
    /// `NOK:NoPush`: no device registered for push.
    NoPush,
    /// `NOK:NoMA`: no mobile application.
    NoMa,
    /// `NOK:SN`: a syntax error in our parameters.
    Syntax,
    /// `NOK:srv unknown`: the serviceId is wrong.
    ServiceUnknown,
    /// `NOK:access forbidden`: the serviceId is not ours (or our certificate is not its).
    AccessForbidden,
    /// `NOK` alone (checkPushResult): unknown or expired sessionId.
    Nok,
    /// Any other `NOK:*`, with its text as it came (trimmed).
    Other(String),
}

/// What a status means for the login, in the engine's classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    Success,
    /// A push not answered yet: poll again.
    Pending,
    /// The user refused the push.
    Denied,
    /// The push timed out.
    Expired,
    /// checkPushResult: the session is unknown or expired.
    SessionGone,
    /// The service's refusal about this user.
    Refusal(Refusal),
    /// Our serviceId, certificate or request is wrong: a misconfiguration, never an outage and
    /// never a reason to fail open.
    Misconfigured,
}

impl TbStatus {
    /// Reads an `err` value; `None` when it is neither `OK` nor `NOK` nor `NOK:*` (not this
    /// API's answer).
    pub fn parse(err: &str) -> Option<TbStatus> {
        let text = err.trim();
        let lower = text.to_ascii_lowercase();
        let Some(cause) = lower.strip_prefix("nok") else {
            return (lower == "ok").then_some(TbStatus::Ok);
        };
        let cause = match cause.strip_prefix(':') {
            Some(c) => c.trim(),
            None if cause.trim().is_empty() => return Some(TbStatus::Nok),
            None => return None,
        };
        Some(match cause {
            "waiting" => TbStatus::Waiting,
            "refused" => TbStatus::Refused,
            "timeout" => TbStatus::Timeout,
            "no device found" => TbStatus::NoDeviceFound,
            "account unknown" => TbStatus::AccountUnknown,
            "nologin" => TbStatus::NoLogin,
            "nopush" => TbStatus::NoPush,
            "noma" => TbStatus::NoMa,
            "sn" => TbStatus::Syntax,
            "srv unknown" => TbStatus::ServiceUnknown,
            "access forbidden" => TbStatus::AccessForbidden,
            "" => TbStatus::Nok,
            _ => TbStatus::Other(text.to_owned()),
        })
    }

    /// The status as the reference writes it (an unknown one as it came).
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            TbStatus::Other(text) => Cow::Borrowed(text),
            known => Cow::Borrowed(known.label()),
        }
    }

    /// A metrics label: the known statuses as the reference writes them, or `NOK:other` (peer
    /// text never becomes a label).
    pub fn label(&self) -> &'static str {
        match self {
            TbStatus::Ok => "OK",
            TbStatus::Waiting => "NOK:WAITING",
            TbStatus::Refused => "NOK:REFUSED",
            TbStatus::Timeout => "NOK:TIMEOUT",
            TbStatus::NoDeviceFound => "NOK:no device found",
            TbStatus::AccountUnknown => "NOK:account unknown",
            TbStatus::NoLogin => "NOK:NOLOGIN",
            TbStatus::NoPush => "NOK:NoPush",
            TbStatus::NoMa => "NOK:NoMA",
            TbStatus::Syntax => "NOK:SN",
            TbStatus::ServiceUnknown => "NOK:srv unknown",
            TbStatus::AccessForbidden => "NOK:access forbidden",
            TbStatus::Nok => "NOK",
            TbStatus::Other(_) => "NOK:other",
        }
    }

    /// What the status means for the login (the reference's table).
    pub fn meaning(&self) -> Meaning {
        match self {
            TbStatus::Ok => Meaning::Success,
            TbStatus::Waiting => Meaning::Pending,
            TbStatus::Refused => Meaning::Denied,
            TbStatus::Timeout => Meaning::Expired,
            TbStatus::Nok => Meaning::SessionGone,
            TbStatus::NoDeviceFound => Meaning::Refusal(Refusal::BadCode),
            TbStatus::AccountUnknown => Meaning::Refusal(Refusal::UnknownUser),
            TbStatus::NoLogin => Meaning::Refusal(Refusal::NoCredential),
            // The engine offers a code instead.
            TbStatus::NoPush | TbStatus::NoMa => Meaning::Refusal(Refusal::NoPushDevice),
            TbStatus::Syntax | TbStatus::ServiceUnknown | TbStatus::AccessForbidden => {
                Meaning::Misconfigured
            }
            // A locked account or tool (the cause goes to the log with the status).
            TbStatus::Other(cause) if cause.to_ascii_lowercase().contains("locked") => {
                Meaning::Refusal(Refusal::UserLocked)
            }
            // A refusal we cannot name: never a reason to fail open; the cause goes to the log.
            TbStatus::Other(_) => Meaning::Refusal(Refusal::Misconfigured),
        }
    }

    /// Our serviceId, certificate or request is wrong (never an outage).
    pub fn is_misconfiguration(&self) -> bool {
        self.meaning() == Meaning::Misconfigured
    }
}

impl std::fmt::Display for TbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `err` of the reference's table with its outcome, in the case the reference writes
    /// and in others.
    #[test]
    fn every_status_has_its_meaning() {
        use Meaning as M;
        let table: &[(&str, TbStatus, Meaning)] = &[
            ("OK", TbStatus::Ok, M::Success),
            ("NOK:WAITING", TbStatus::Waiting, M::Pending),
            ("NOK:REFUSED", TbStatus::Refused, M::Denied),
            ("NOK:TIMEOUT", TbStatus::Timeout, M::Expired),
            (
                "NOK:no device found",
                TbStatus::NoDeviceFound,
                M::Refusal(Refusal::BadCode),
            ),
            (
                "NOK:account unknown",
                TbStatus::AccountUnknown,
                M::Refusal(Refusal::UnknownUser),
            ),
            (
                "NOK:NOLOGIN",
                TbStatus::NoLogin,
                M::Refusal(Refusal::NoCredential),
            ),
            (
                "NOK:NoPush",
                TbStatus::NoPush,
                M::Refusal(Refusal::NoPushDevice),
            ),
            (
                "NOK:NoMA",
                TbStatus::NoMa,
                M::Refusal(Refusal::NoPushDevice),
            ),
            ("NOK:SN", TbStatus::Syntax, M::Misconfigured),
            (
                "NOK:srv unknown",
                TbStatus::ServiceUnknown,
                M::Misconfigured,
            ),
            (
                "NOK:access forbidden",
                TbStatus::AccessForbidden,
                M::Misconfigured,
            ),
            ("NOK", TbStatus::Nok, M::SessionGone),
        ];
        for (wire, status, meaning) in table {
            for variant in [
                wire.to_string(),
                wire.to_ascii_uppercase(),
                wire.to_ascii_lowercase(),
                format!("{wire} "),
                format!(" {wire}  "),
            ] {
                let parsed = TbStatus::parse(&variant);
                assert_eq!(parsed.as_ref(), Some(status), "{variant:?}");
                assert_eq!(status.meaning(), *meaning, "{variant:?}");
            }
            assert_eq!(status.as_str(), *wire);
            assert_eq!(status.label(), *wire);
        }
        assert_eq!(
            TbStatus::parse("NOK:account unknown "),
            Some(TbStatus::AccountUnknown)
        );
        assert_eq!(TbStatus::parse("NOK:NOPUSH"), Some(TbStatus::NoPush));
        assert_eq!(TbStatus::parse("NOK:NOMA"), Some(TbStatus::NoMa));
        assert_eq!(
            TbStatus::parse("nok: srv unknown"),
            Some(TbStatus::ServiceUnknown)
        );
    }

    #[test]
    fn misconfiguration_is_never_an_outage_nor_a_pass() {
        for s in ["NOK:SN", "NOK:srv unknown", "nok:ACCESS FORBIDDEN"] {
            let st = TbStatus::parse(s).unwrap_or(TbStatus::Ok);
            assert!(st.is_misconfiguration(), "{s}");
        }
        assert!(!TbStatus::Ok.is_misconfiguration());
    }

    #[test]
    fn unknown_statuses_keep_their_text() {
        let st = TbStatus::parse(" NOK:account locked ").unwrap_or(TbStatus::Ok);
        assert_eq!(st, TbStatus::Other("NOK:account locked".into()));
        assert_eq!(st.to_string(), "NOK:account locked");
        assert_eq!(st.label(), "NOK:other");
        // A locked account or tool is the user's lock, whatever the case.
        assert_eq!(st.meaning(), Meaning::Refusal(Refusal::UserLocked));
        let other = TbStatus::parse("NOK:quota exceeded").unwrap_or(TbStatus::Ok);
        assert_eq!(other, TbStatus::Other("NOK:quota exceeded".into()));
        assert_eq!(other.meaning(), Meaning::Refusal(Refusal::Misconfigured));
        for junk in ["", "YES", "NOKIA", "OK:1234", "<html>"] {
            assert_eq!(TbStatus::parse(junk), None, "{junk:?}");
        }
    }
}
