//! Module arguments, as written on the pam.d line.

use std::path::PathBuf;
use std::time::Duration;

/// Where the daemon listens unless `socket=` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vip-bridge/pam.sock";
/// Default `timeout=`: must cover a blocking push (the default `push_timeout` is 25 s).
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// Default `prompts=`: the longest dialogue is an enrollment (choose, credential ID, code, a
/// second code when VIP asks, and a retry or two).
pub const DEFAULT_PROMPTS: u32 = 8;

/// What to do when the daemon cannot be reached before the login started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// `PAM_AUTHINFO_UNAVAIL`: nobody gets in without the second factor.
    Closed,
    /// `PAM_SUCCESS` with a syslog warning.
    Open,
}

/// Where the first round's answer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstPass {
    /// Ask the user (the daemon supplies the prompt).
    Ask,
    /// Use PAM_AUTHTOK from an earlier module if there is one; ask if it is missing or refused.
    Try,
    /// Use PAM_AUTHTOK from an earlier module; fail if there is none.
    Use,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub socket: PathBuf,
    pub autopush: bool,
    pub prompts: u32,
    pub fail_mode: FailMode,
    pub first_pass: FirstPass,
    pub timeout: Duration,
    pub ignore_unknown_user: bool,
    pub debug: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            socket: PathBuf::from(DEFAULT_SOCKET),
            autopush: false,
            prompts: DEFAULT_PROMPTS,
            fail_mode: FailMode::Closed,
            first_pass: FirstPass::Ask,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            ignore_unknown_user: false,
            debug: false,
        }
    }
}

impl Args {
    /// Parses the arguments. Unknown or malformed ones are returned as warnings (and ignored):
    /// a typo must not lock everybody out, and it must not weaken anything either, so every
    /// default is the safe one.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> (Args, Vec<String>) {
        let mut a = Args::default();
        let mut warnings = Vec::new();
        for arg in args {
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            match (key, value) {
                ("socket", Some(v)) if v.starts_with('/') => a.socket = PathBuf::from(v),
                ("autopush", None) => a.autopush = true,
                ("prompts", Some(v)) => match v.parse::<u32>() {
                    Ok(n) if (1..=20).contains(&n) => a.prompts = n,
                    _ => warnings.push(format!("{arg}: expected 1 to 20; using {}", a.prompts)),
                },
                ("fail_mode" | "failmode", Some("closed" | "secure")) => {
                    a.fail_mode = FailMode::Closed
                }
                ("fail_mode" | "failmode", Some("open" | "safe")) => a.fail_mode = FailMode::Open,
                ("try_first_pass", None) => {
                    if a.first_pass != FirstPass::Use {
                        a.first_pass = FirstPass::Try
                    }
                }
                ("use_first_pass", None) => a.first_pass = FirstPass::Use,
                ("timeout", Some(v)) => match v.parse::<u64>() {
                    Ok(n) if (1..=600).contains(&n) => a.timeout = Duration::from_secs(n),
                    _ => warnings.push(format!(
                        "{arg}: expected 1 to 600 seconds; using {}",
                        a.timeout.as_secs()
                    )),
                },
                ("ignore_unknown_user", None) => a.ignore_unknown_user = true,
                ("debug", None) => a.debug = true,
                _ => warnings.push(format!("{arg}: unknown or malformed argument, ignored")),
            }
        }
        (a, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let (a, w) = Args::parse([]);
        assert!(w.is_empty());
        assert_eq!(a, Args::default());
        assert_eq!(a.fail_mode, FailMode::Closed);
        assert_eq!(a.prompts, 8);
        assert_eq!(a.timeout, Duration::from_secs(60));
        assert_eq!(a.socket, PathBuf::from("/run/vip-bridge/pam.sock"));
    }

    #[test]
    fn every_argument() {
        let (a, w) = Args::parse([
            "socket=/tmp/x.sock",
            "autopush",
            "prompts=5",
            "fail_mode=open",
            "try_first_pass",
            "timeout=30",
            "ignore_unknown_user",
            "debug",
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            a,
            Args {
                socket: "/tmp/x.sock".into(),
                autopush: true,
                prompts: 5,
                fail_mode: FailMode::Open,
                first_pass: FirstPass::Try,
                timeout: Duration::from_secs(30),
                ignore_unknown_user: true,
                debug: true,
            }
        );
        // use_first_pass wins over try_first_pass, in either order; pam_duo's spellings work.
        let (a, _) = Args::parse(["use_first_pass", "try_first_pass", "failmode=secure"]);
        assert_eq!(a.first_pass, FirstPass::Use);
        assert_eq!(a.fail_mode, FailMode::Closed);
        let (a, _) = Args::parse(["try_first_pass", "use_first_pass"]);
        assert_eq!(a.first_pass, FirstPass::Use);
    }

    #[test]
    fn bad_arguments_warn_and_keep_safe_defaults() {
        let (a, w) = Args::parse([
            "socket=relative",
            "prompts=0",
            "prompts=x",
            "fail_mode=maybe",
            "timeout=0",
            "timeout=9999",
            "autopush=yes",
            "frobnicate",
        ]);
        assert_eq!(a, Args::default());
        assert_eq!(w.len(), 8, "{w:?}");
        assert!(w.iter().any(|m| m.contains("frobnicate")));
    }
}
