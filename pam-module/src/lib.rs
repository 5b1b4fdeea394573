//! `pam_vip.so`: a thin PAM client of the vip-bridge daemon.
//!
//! The module reads its arguments and the PAM items, talks to the daemon over its Unix socket
//! (blocking, with timeouts: no async runtime, no threads, so it is safe in sshd's forked
//! children) and renders the daemon's answers as conversation messages. It holds no VIP key.
//!
//! Every entry point runs inside `catch_unwind`: a panic becomes `PAM_SYSTEM_ERR` and never
//! crosses into the application. Logs go to syslog (LOG_AUTHPRIV) and never contain what the
//! user typed. See README.md for the pam.d lines and the arguments.

pub mod args;
pub mod flow;

use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pam::constants::{
    PamFlag, PamResultCode, PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_SILENT,
    PAM_TEXT_INFO,
};
use pam::conv::Conv;
use pam::items::{AuthTok, RHost, Service, Tty};
use pam::module::{PamHandle, PamHooks};
use zeroize::Zeroizing;

use crate::args::{Args, FirstPass};
use crate::flow::{Context, Conversation, Level, SocketDaemon, Verdict};

struct PamVip;
pam::pam_hooks!(PamVip);

impl PamHooks for PamVip {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded("auth", || sm_authenticate(pamh, &args, flags))
    }

    fn sm_setcred(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }
}

/// Runs `f`, turning a panic into `PAM_SYSTEM_ERR` (fail closed) with a log line.
fn guarded(what: &str, f: impl FnOnce() -> PamResultCode) -> PamResultCode {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(code) => code,
        Err(_) => {
            // Formatting the payload could itself panic; say only that it happened.
            let _ = catch_unwind(|| {
                syslog(
                    Level::Err,
                    &format!("pam_vip({what}): internal error; refusing"),
                )
            });
            PamResultCode::PAM_SYSTEM_ERR
        }
    }
}

fn sm_authenticate(pamh: &mut PamHandle, raw_args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let service = item_string::<Service>(pamh).unwrap_or_else(|| "unknown".to_owned());
    let prefix = format!("pam_vip({service}:auth)");
    let log = |level: Level, msg: &str| syslog(level, &format!("{prefix}: {msg}"));

    let (args, warnings) =
        Args::parse(raw_args.iter().map(|a| a.to_str().unwrap_or("<non-UTF-8>")));
    for w in &warnings {
        log(Level::Err, w);
    }

    let user = match pamh.get_user(None) {
        Ok(u) if !u.is_empty() => u,
        Ok(_) => {
            log(Level::Err, "empty user name");
            return PamResultCode::PAM_USER_UNKNOWN;
        }
        Err(code) => {
            log(Level::Err, &format!("cannot get the user name ({code:?})"));
            return code;
        }
    };
    // sshd runs PAM even for users that do not exist. They never reach the daemon (nor VIP).
    if !local_user_exists(&user) {
        log(
            Level::Notice,
            &format!("no local user {user:?}; VIP not contacted"),
        );
        return PamResultCode::PAM_USER_UNKNOWN;
    }

    let authtok = match args.first_pass {
        FirstPass::Ask => None,
        FirstPass::Try | FirstPass::Use => match pamh.get_item::<AuthTok>() {
            Ok(Some(tok)) => {
                let bytes = tok.to_owned_secret();
                match bytes.as_str() {
                    Ok(s) => Some(Zeroizing::new(s.to_owned())),
                    Err(_) => {
                        log(
                            Level::Notice,
                            &format!("{user}: PAM_AUTHTOK is not UTF-8; ignored"),
                        );
                        None
                    }
                }
            }
            _ => None,
        },
    };
    let ctx = Context {
        service,
        user,
        remote_host: item_string::<RHost>(pamh),
        tty: item_string::<Tty>(pamh),
        authtok,
        silent: flags & PAM_SILENT != 0,
        stack_password_checked: pam_unix_passed(pamh),
    };
    if args.debug {
        log(
            Level::Debug,
            &format!(
                "start: user={} rhost={} tty={} socket={}",
                ctx.user,
                ctx.remote_host.as_deref().unwrap_or("-"),
                ctx.tty.as_deref().unwrap_or("-"),
                args.socket.display()
            ),
        );
    }

    let conv = match pamh.get_item::<Conv<'_>>() {
        Ok(Some(c)) => c,
        Ok(None) | Err(_) => {
            log(Level::Err, "the application gave no conversation function");
            return PamResultCode::PAM_CONV_ERR;
        }
    };
    let mut conv = PamConversation(conv);
    let mut daemon = SocketDaemon {
        path: args.socket.clone(),
        timeout: args.timeout,
    };
    let verdict = flow::authenticate(&args, &ctx, &mut conv, &mut daemon, &mut |l, m| {
        if l != Level::Debug || args.debug {
            log(l, m)
        }
    });
    to_pam(verdict)
}

/// Whether pam_unix ran earlier in this transaction and accepted the password. pam_unix
/// records its result as an `int` under `unix_setcred_return` (for its own setcred), set on
/// every outcome, so PAM_SUCCESS there means the password was right, whatever the stack's
/// control flags. Only this lets the daemon offer in-band enrollment under PAM.
fn pam_unix_passed(pamh: &PamHandle) -> bool {
    // SAFETY: pam_unix stores a malloc'd `int` under this key (pam_unix_auth.c, AUTH_RETURN);
    // no other module uses the name.
    match unsafe { pamh.get_data::<libc::c_int>("unix_setcred_return") } {
        Ok(rc) => *rc == PamResultCode::PAM_SUCCESS as libc::c_int,
        Err(_) => false,
    }
}

fn to_pam(v: Verdict) -> PamResultCode {
    match v {
        Verdict::Success => PamResultCode::PAM_SUCCESS,
        Verdict::AuthErr => PamResultCode::PAM_AUTH_ERR,
        Verdict::UserUnknown => PamResultCode::PAM_USER_UNKNOWN,
        Verdict::Ignore => PamResultCode::PAM_IGNORE,
        Verdict::MaxTries => PamResultCode::PAM_MAXTRIES,
        Verdict::AuthInfoUnavail => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        Verdict::ConvErr => PamResultCode::PAM_CONV_ERR,
    }
}

/// A string item (PAM_SERVICE, PAM_RHOST, PAM_TTY), copied; `None` when unset or empty.
fn item_string<'a, T>(pamh: &'a PamHandle) -> Option<String>
where
    T: pam::items::Item<'a> + std::ops::Deref<Target = &'a CStr>,
{
    match pamh.get_item::<T>() {
        Ok(Some(v)) => {
            let s = v.to_string_lossy().into_owned();
            (!s.is_empty()).then_some(s)
        }
        _ => None,
    }
}

/// The application's conversation function.
struct PamConversation<'a>(Conv<'a>);

impl Conversation for PamConversation<'_> {
    fn prompt(&mut self, text: &str, echo: bool) -> Option<Zeroizing<String>> {
        let style = if echo {
            PAM_PROMPT_ECHO_ON
        } else {
            PAM_PROMPT_ECHO_OFF
        };
        match self.0.send(style, &sanitize(text)) {
            Ok(Some(bytes)) => match bytes.as_str() {
                Ok(s) => Some(Zeroizing::new(s.to_owned())),
                // Not text: cannot be a code or keyword; the daemon would refuse it anyway.
                Err(_) => Some(Zeroizing::new(String::new())),
            },
            // Some applications answer "nothing" with a null response.
            Ok(None) => Some(Zeroizing::new(String::new())),
            Err(_) => None,
        }
    }

    fn info(&mut self, text: &str) {
        let _ = self.0.send(PAM_TEXT_INFO, &sanitize(text));
    }

    fn error(&mut self, text: &str) {
        let _ = self.0.send(PAM_ERROR_MSG, &sanitize(text));
    }
}

/// Drops NULs and other control characters except newlines (the text comes from the daemon).
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|&c| c == '\n' || !c.is_control())
        .collect()
}

/// `getpwnam_r`: whether the system knows `user` (files, LDAP, sssd, ...).
fn local_user_exists(user: &str) -> bool {
    let Ok(name) = CString::new(user) else {
        return false;
    };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    loop {
        // SAFETY: all pointers are valid for the call; `pwd` and `buf` outlive it and `result`
        // points into them only when the call succeeds; we read nothing but the null check.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1024 * 1024 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return rc == 0 && !result.is_null();
    }
}

/// Writes one line to syslog, facility LOG_AUTHPRIV. `openlog` is deliberately not called: it
/// would change the host application's (sshd's, sudo's) own ident.
fn syslog(level: Level, msg: &str) {
    let prio = match level {
        Level::Err => libc::LOG_ERR,
        Level::Warning => libc::LOG_WARNING,
        Level::Notice => libc::LOG_NOTICE,
        Level::Info => libc::LOG_INFO,
        Level::Debug => libc::LOG_DEBUG,
    };
    let clean: String = msg
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if let Ok(c) = CString::new(clean) {
        // SAFETY: a constant "%s" format with one valid NUL-terminated string argument.
        unsafe { libc::syslog(libc::LOG_AUTHPRIV | prio, c"%s".as_ptr(), c.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_system_err() {
        let code = guarded("test", || panic!("boom"));
        assert_eq!(code, PamResultCode::PAM_SYSTEM_ERR);
        assert_eq!(
            guarded("test", || PamResultCode::PAM_SUCCESS),
            PamResultCode::PAM_SUCCESS
        );
    }

    #[test]
    fn local_users() {
        assert!(local_user_exists("root"));
        assert!(!local_user_exists("no-such-user-vb-7q"));
        assert!(!local_user_exists("bad\0name"));
        assert!(!local_user_exists(flow::SSHD_FAKE_PASSWORD));
    }

    #[test]
    fn verdicts_map_to_pam_codes() {
        assert_eq!(to_pam(Verdict::Success), PamResultCode::PAM_SUCCESS);
        assert_eq!(to_pam(Verdict::AuthErr), PamResultCode::PAM_AUTH_ERR);
        assert_eq!(
            to_pam(Verdict::UserUnknown),
            PamResultCode::PAM_USER_UNKNOWN
        );
        assert_eq!(to_pam(Verdict::Ignore), PamResultCode::PAM_IGNORE);
        assert_eq!(to_pam(Verdict::MaxTries), PamResultCode::PAM_MAXTRIES);
        assert_eq!(
            to_pam(Verdict::AuthInfoUnavail),
            PamResultCode::PAM_AUTHINFO_UNAVAIL
        );
        assert_eq!(to_pam(Verdict::ConvErr), PamResultCode::PAM_CONV_ERR);
    }

    #[test]
    fn sanitize_keeps_newlines_only() {
        assert_eq!(sanitize("a\0b\nc\x1b[31m"), "ab\nc[31m");
    }
}
