//! The conversation, free of FFI: what `pam_sm_authenticate` does once it has read the PAM items.
//! Driven through two small traits so unit tests can play both the user and the daemon.

use std::path::PathBuf;
use std::time::Duration;

use vip_ipc::{Answer, AuthenticateRequest, Client, ErrorKind, IpcError};
use vip_ipc::{Outcome, RejectReason};
use zeroize::Zeroizing;

use crate::args::{Args, FailMode, FirstPass};

/// The password sshd passes to PAM instead of what the client typed when the user is invalid
/// (or is root and root may not log in this way). It must never reach VIP.
pub const SSHD_FAKE_PASSWORD: &str = "\u{8}\n\r\u{7f}INCORRECT";

/// The PAM result, before it becomes a `PamResultCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    AuthErr,
    UserUnknown,
    Ignore,
    MaxTries,
    AuthInfoUnavail,
    ConvErr,
}

/// Syslog priorities used by the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

/// The user's side, as the PAM conversation presents it.
pub trait Conversation {
    /// Asks a question. `None` when the application could not ask (no terminal, EOF).
    fn prompt(&mut self, text: &str, echo: bool) -> Option<Zeroizing<String>>;
    /// Shows a message (PAM_TEXT_INFO); failures are ignored.
    fn info(&mut self, text: &str);
    /// Shows an error (PAM_ERROR_MSG); failures are ignored.
    fn error(&mut self, text: &str);
}

/// Why a round could not be completed.
#[derive(Debug)]
pub enum RoundError {
    /// connect() failed: nothing listens on the socket (fail mode applies on round one).
    Unreachable(IpcError),
    /// The daemon refused to talk to us (forbidden, wrong version, busy).
    Refused(IpcError),
    /// The round started but broke off.
    Failed(IpcError),
}

/// The daemon's side: one round per call.
pub trait Daemon {
    fn round(&mut self, req: &AuthenticateRequest) -> Result<Outcome, RoundError>;
}

/// The real daemon: one connection per round, so no connection waits while the user types.
pub struct SocketDaemon {
    pub path: PathBuf,
    pub timeout: Duration,
}

impl Daemon for SocketDaemon {
    fn round(&mut self, req: &AuthenticateRequest) -> Result<Outcome, RoundError> {
        let mut client = Client::connect(&self.path, self.timeout).map_err(connect_error)?;
        client.authenticate(req).map_err(|e| match e {
            IpcError::Server {
                kind: ErrorKind::Forbidden | ErrorKind::Busy,
                ..
            } => RoundError::Refused(e),
            _ => RoundError::Failed(e),
        })
    }
}

/// Why connecting failed. Only "nobody is there" (no socket, nobody listening) is
/// `Unreachable`, the one case fail_mode=open may act on: a socket we may not open (EACCES,
/// EPERM: `socket_group`) is a misconfiguration, and anything after connect() (a hello that
/// times out, a connection closed on us) is a daemon that exists. Neither ever fails open.
fn connect_error(e: IpcError) -> RoundError {
    match e {
        IpcError::Connect { ref source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            RoundError::Unreachable(e)
        }
        IpcError::Connect { .. } | IpcError::Server { .. } | IpcError::Version { .. } => {
            RoundError::Refused(e)
        }
        _ => RoundError::Failed(e),
    }
}

/// What PAM told us about the login.
pub struct Context {
    pub service: String,
    pub user: String,
    pub remote_host: Option<String>,
    pub tty: Option<String>,
    /// PAM_AUTHTOK, read only with `try_first_pass` / `use_first_pass`.
    pub authtok: Option<Zeroizing<String>>,
    /// PAM_SILENT: no info or error messages.
    pub silent: bool,
    /// pam_unix ran before us in this transaction and accepted the password.
    pub stack_password_checked: bool,
}

/// Whether `s` is sshd's placeholder for a refused user's password.
pub fn is_fake_password(s: &str) -> bool {
    s == SSHD_FAKE_PASSWORD
}

/// Whether a Challenge waits for the user to confirm something elsewhere (a push, a number
/// challenge) with Enter. Such prompts are also sent as PAM_TEXT_INFO.
pub fn is_enter_prompt(prompt: &str) -> bool {
    let p = prompt.to_ascii_lowercase();
    p.contains("press enter") || p.contains("hit enter") || p.contains("press return")
}

/// Runs the whole conversation.
pub fn authenticate(
    args: &Args,
    ctx: &Context,
    conv: &mut dyn Conversation,
    daemon: &mut dyn Daemon,
    log: &mut dyn FnMut(Level, &str),
) -> Verdict {
    let user = ctx.user.as_str();
    let error = |conv: &mut dyn Conversation, text: &str| {
        if !ctx.silent && !text.is_empty() {
            conv.error(text);
        }
    };

    // The first answer: an earlier module's password, the push keyword, or nothing.
    let mut from_first_pass = false;
    let mut answer: Option<Zeroizing<String>> = match (args.first_pass, &ctx.authtok) {
        (FirstPass::Try | FirstPass::Use, Some(tok)) if !tok.is_empty() => {
            from_first_pass = true;
            Some(tok.clone())
        }
        (FirstPass::Use, _) => {
            log(
                Level::Err,
                &format!("use_first_pass: no password from an earlier module for {user}"),
            );
            return Verdict::AuthErr;
        }
        _ if args.autopush => Some(Zeroizing::new("push".to_owned())),
        _ => None,
    };
    let mut state: Option<Vec<u8>> = None;
    let mut prompts_shown = 0u32;
    let mut rounds_done = 0u32;

    loop {
        if answer.as_deref().is_some_and(|a| is_fake_password(a)) {
            log(
                Level::Notice,
                &format!(
                    "refusing {user}: the application passed sshd's placeholder password \
                     (invalid user, or root login not permitted); VIP was not contacted"
                ),
            );
            return Verdict::AuthErr;
        }
        let req = AuthenticateRequest {
            service: ctx.service.clone(),
            user: user.to_owned(),
            remote_host: ctx.remote_host.clone(),
            tty: ctx.tty.clone(),
            // Moved, not copied: the Zeroizing buffer is emptied and the Answer owns the text.
            answer: answer
                .take()
                .map(|mut a| Answer::new(std::mem::take(&mut *a))),
            state: state.take(),
            stack_password_checked: ctx.stack_password_checked,
        };
        let result = daemon.round(&req);
        drop(req);
        let outcome = match result {
            Ok(o) => o,
            Err(RoundError::Unreachable(e)) if rounds_done == 0 => {
                return match args.fail_mode {
                    FailMode::Closed => {
                        log(
                            Level::Err,
                            &format!("vip-bridge daemon unreachable ({e}); refusing {user} (fail_mode=closed)"),
                        );
                        error(conv, "Two-factor sign-in is unavailable. Try again later.");
                        Verdict::AuthInfoUnavail
                    }
                    FailMode::Open => {
                        log(
                            Level::Warning,
                            &format!(
                                "vip-bridge daemon unreachable ({e}); letting {user} in WITHOUT a \
                                 second factor (fail_mode=open)"
                            ),
                        );
                        Verdict::Success
                    }
                };
            }
            Err(RoundError::Unreachable(e) | RoundError::Refused(e) | RoundError::Failed(e)) => {
                log(
                    Level::Err,
                    &format!("vip-bridge daemon: {e}; refusing {user}"),
                );
                error(conv, "Two-factor sign-in is unavailable. Try again later.");
                return Verdict::AuthInfoUnavail;
            }
        };
        rounds_done += 1;
        match outcome {
            Outcome::Accept(a) => {
                if a.failed_open {
                    log(
                        Level::Warning,
                        &format!("{user} let in without a second factor: VIP unreachable, policy fails open"),
                    );
                } else {
                    log(
                        Level::Info,
                        &format!("{user} authenticated ({})", a.factor.as_str()),
                    );
                }
                return Verdict::Success;
            }
            Outcome::Reject(r) => {
                if from_first_pass
                    && args.first_pass == FirstPass::Try
                    && matches!(r.reason, RejectReason::BadCode | RejectReason::BadInput)
                {
                    // The earlier module's password was not a code: ask instead.
                    if args.debug {
                        log(
                            Level::Debug,
                            &format!("{user}: first pass refused ({}); asking", r.reason.as_str()),
                        );
                    }
                    from_first_pass = false;
                    continue;
                }
                log(
                    Level::Notice,
                    &format!("{user} refused: {}", r.reason.as_str()),
                );
                error(conv, &r.message);
                return match r.reason {
                    RejectReason::UnknownUser if args.ignore_unknown_user => Verdict::Ignore,
                    RejectReason::UnknownUser => Verdict::UserUnknown,
                    RejectReason::Throttled => Verdict::MaxTries,
                    RejectReason::Unavailable | RejectReason::Misconfigured => {
                        Verdict::AuthInfoUnavail
                    }
                    _ => Verdict::AuthErr,
                };
            }
            Outcome::Challenge(c) => {
                from_first_pass = false;
                prompts_shown += 1;
                if prompts_shown > args.prompts {
                    log(
                        Level::Notice,
                        &format!("{user} refused: more than prompts={} rounds", args.prompts),
                    );
                    error(conv, "Too many prompts. Start again.");
                    return Verdict::MaxTries;
                }
                if args.debug {
                    log(
                        Level::Debug,
                        &format!("{user}: challenge {prompts_shown} (echo={})", c.echo),
                    );
                }
                if is_enter_prompt(&c.prompt) && !ctx.silent {
                    // Some OpenSSH versions do not show info messages during
                    // keyboard-interactive; the prompt below repeats the text.
                    conv.info(&c.prompt);
                }
                match conv.prompt(&prompt_text(&c.prompt), c.echo) {
                    Some(a) => answer = Some(a),
                    None => {
                        log(
                            Level::Notice,
                            &format!("{user}: the application could not ask the question"),
                        );
                        return Verdict::ConvErr;
                    }
                }
                state = (!c.state.is_empty()).then_some(c.state);
            }
        }
    }
}

/// A prompt as shown: ends with a space so the answer does not stick to the colon.
fn prompt_text(prompt: &str) -> String {
    let p = prompt.trim_end();
    format!("{p} ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use vip_ipc::{Accept, Challenge, Factor, Reject};

    #[derive(Default)]
    struct User {
        answers: VecDeque<&'static str>,
        shown: Vec<String>,
    }

    impl Conversation for User {
        fn prompt(&mut self, text: &str, echo: bool) -> Option<Zeroizing<String>> {
            self.shown.push(format!(
                "prompt[{}]:{text}",
                if echo { "on" } else { "off" }
            ));
            self.answers
                .pop_front()
                .map(|a| Zeroizing::new(a.to_owned()))
        }
        fn info(&mut self, text: &str) {
            self.shown.push(format!("info:{text}"));
        }
        fn error(&mut self, text: &str) {
            self.shown.push(format!("error:{text}"));
        }
    }

    /// A scripted daemon; records each request (answers exposed only here).
    #[derive(Default)]
    struct Script {
        replies: VecDeque<Result<Outcome, RoundError>>,
        seen: Vec<(Option<String>, Option<Vec<u8>>)>,
    }

    impl Daemon for Script {
        fn round(&mut self, req: &AuthenticateRequest) -> Result<Outcome, RoundError> {
            self.seen.push((
                req.answer.as_ref().map(|a| a.expose().to_owned()),
                req.state.clone(),
            ));
            self.replies.pop_front().expect("no more scripted replies")
        }
    }

    fn accept() -> Result<Outcome, RoundError> {
        Ok(Outcome::Accept(Accept {
            factor: Factor::Code,
            credential_id: None,
            credential_type: None,
            authn_id: None,
            failed_open: false,
        }))
    }
    fn reject(reason: RejectReason) -> Result<Outcome, RoundError> {
        Ok(Outcome::Reject(Reject {
            reason,
            message: format!("msg-{}", reason.as_str()),
        }))
    }
    fn challenge(prompt: &str, state: &[u8]) -> Result<Outcome, RoundError> {
        Ok(Outcome::Challenge(Challenge {
            prompt: prompt.into(),
            echo: false,
            state: state.to_vec(),
        }))
    }
    fn unreachable() -> Result<Outcome, RoundError> {
        Err(RoundError::Unreachable(IpcError::Connect {
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }))
    }

    #[test]
    fn only_nobody_listening_is_unreachable() {
        let connect = |kind| IpcError::Connect {
            path: "/run/vip-bridge/pam.sock".into(),
            source: std::io::Error::from(kind),
        };
        use std::io::ErrorKind::*;
        for kind in [NotFound, ConnectionRefused] {
            assert!(matches!(
                connect_error(connect(kind)),
                RoundError::Unreachable(_)
            ));
        }
        // No permission on the socket (socket_group): the admin's to fix, never fail-open.
        for kind in [PermissionDenied, TimedOut, Other] {
            assert!(
                matches!(connect_error(connect(kind)), RoundError::Refused(_)),
                "{kind:?}"
            );
        }
    }

    fn ctx() -> Context {
        Context {
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: Some("192.0.2.1".into()),
            tty: None,
            authtok: None,
            silent: false,
            stack_password_checked: false,
        }
    }

    struct Run {
        verdict: Verdict,
        user: User,
        daemon: Script,
        logs: Vec<(Level, String)>,
    }

    fn run(
        args: &Args,
        ctx: &Context,
        answers: &[&'static str],
        replies: Vec<Result<Outcome, RoundError>>,
    ) -> Run {
        let mut user = User {
            answers: answers.iter().copied().collect(),
            ..User::default()
        };
        let mut daemon = Script {
            replies: replies.into(),
            ..Script::default()
        };
        let mut logs = Vec::new();
        let verdict = authenticate(args, ctx, &mut user, &mut daemon, &mut |l, m| {
            logs.push((l, m.to_owned()))
        });
        Run {
            verdict,
            user,
            daemon,
            logs,
        }
    }

    const ASK: &str = "Enter your security code (or type push, sms, or voice):";

    #[test]
    fn code_login() {
        let r = run(
            &Args::default(),
            &ctx(),
            &["123456"],
            vec![challenge(ASK, b""), accept()],
        );
        assert_eq!(r.verdict, Verdict::Success);
        assert_eq!(
            r.daemon.seen,
            vec![(None, None), (Some("123456".into()), None)]
        );
        assert_eq!(r.user.shown, vec![format!("prompt[off]:{ASK} ")]);
    }

    #[test]
    fn bad_code_shows_the_message() {
        let r = run(
            &Args::default(),
            &ctx(),
            &["000000"],
            vec![challenge(ASK, b""), reject(RejectReason::BadCode)],
        );
        assert_eq!(r.verdict, Verdict::AuthErr);
        assert_eq!(r.user.shown.last().unwrap(), "error:msg-bad_code");
    }

    #[test]
    fn push_challenge_is_shown_as_info_and_prompt_and_state_returns() {
        let push = "A sign-in request was sent to your phone: enter the number 42 in VIP Access to approve it.\nThen press Enter here:";
        let r = run(
            &Args::default(),
            &ctx(),
            &["push", ""],
            vec![challenge(ASK, b""), challenge(push, b"S1"), accept()],
        );
        assert_eq!(r.verdict, Verdict::Success);
        assert_eq!(r.user.shown[1], format!("info:{push}"));
        assert_eq!(r.user.shown[2], format!("prompt[off]:{push} "));
        assert_eq!(
            r.daemon.seen[2],
            (Some(String::new()), Some(b"S1".to_vec()))
        );
    }

    #[test]
    fn silent_hides_info_and_errors_but_still_asks() {
        let mut c = ctx();
        c.silent = true;
        let r = run(
            &Args::default(),
            &c,
            &["push", ""],
            vec![
                challenge(ASK, b""),
                challenge("Approve, then press Enter", b"S"),
                reject(RejectReason::PushDenied),
            ],
        );
        assert_eq!(r.verdict, Verdict::AuthErr);
        assert!(
            r.user.shown.iter().all(|s| s.starts_with("prompt")),
            "{:?}",
            r.user.shown
        );
    }

    #[test]
    fn autopush_sends_push_first() {
        let args = Args {
            autopush: true,
            ..Args::default()
        };
        let r = run(&args, &ctx(), &[], vec![accept()]);
        assert_eq!(r.verdict, Verdict::Success);
        assert_eq!(r.daemon.seen, vec![(Some("push".into()), None)]);
        assert!(r.user.shown.is_empty());
    }

    #[test]
    fn too_many_rounds_is_maxtries() {
        let args = Args {
            prompts: 2,
            ..Args::default()
        };
        let r = run(
            &args,
            &ctx(),
            &["sms", "111111", "222222"],
            vec![
                challenge(ASK, b""),
                challenge("Enter it:", b"A"),
                challenge("Next code:", b"B"),
            ],
        );
        assert_eq!(r.verdict, Verdict::MaxTries);
        assert_eq!(r.daemon.seen.len(), 3);
        assert_eq!(
            r.user.shown.last().unwrap(),
            "error:Too many prompts. Start again."
        );
    }

    #[test]
    fn reject_reasons_map_to_pam_codes() {
        for (reason, ignore, want) in [
            (RejectReason::UnknownUser, false, Verdict::UserUnknown),
            (RejectReason::UnknownUser, true, Verdict::Ignore),
            (RejectReason::Throttled, false, Verdict::MaxTries),
            (RejectReason::Unavailable, false, Verdict::AuthInfoUnavail),
            (RejectReason::Misconfigured, false, Verdict::AuthInfoUnavail),
            (RejectReason::PushDenied, false, Verdict::AuthErr),
            (RejectReason::PushTimeout, false, Verdict::AuthErr),
            (RejectReason::UserLocked, false, Verdict::AuthErr),
            (RejectReason::BadState, false, Verdict::AuthErr),
        ] {
            let args = Args {
                ignore_unknown_user: ignore,
                autopush: true,
                ..Args::default()
            };
            let r = run(&args, &ctx(), &[], vec![reject(reason)]);
            assert_eq!(r.verdict, want, "{reason:?}");
        }
    }

    #[test]
    fn fail_mode_applies_only_before_the_first_round() {
        let r = run(&Args::default(), &ctx(), &[], vec![unreachable()]);
        assert_eq!(r.verdict, Verdict::AuthInfoUnavail);
        assert!(r
            .logs
            .iter()
            .any(|(l, m)| *l == Level::Err && m.contains("fail_mode=closed")));

        let open = Args {
            fail_mode: FailMode::Open,
            ..Args::default()
        };
        let r = run(&open, &ctx(), &[], vec![unreachable()]);
        assert_eq!(r.verdict, Verdict::Success);
        assert!(r
            .logs
            .iter()
            .any(|(l, m)| *l == Level::Warning && m.contains("WITHOUT")));

        // The daemon disappears after the first round: never fail open in the middle.
        let r = run(
            &open,
            &ctx(),
            &["123456"],
            vec![challenge(ASK, b""), unreachable()],
        );
        assert_eq!(r.verdict, Verdict::AuthInfoUnavail);

        // A daemon that refuses us is not "unreachable".
        let refused = Err(RoundError::Refused(IpcError::Server {
            kind: ErrorKind::Forbidden,
            message: "no".into(),
        }));
        let r = run(&open, &ctx(), &[], vec![refused]);
        assert_eq!(r.verdict, Verdict::AuthInfoUnavail);
    }

    #[test]
    fn sshd_fake_password_never_reaches_the_daemon() {
        // Typed in keyboard-interactive (sshd substitutes it for invalid users' answers).
        let r = run(
            &Args::default(),
            &ctx(),
            &[SSHD_FAKE_PASSWORD],
            vec![challenge(ASK, b"")],
        );
        assert_eq!(r.verdict, Verdict::AuthErr);
        assert_eq!(r.daemon.seen, vec![(None, None)]);
        // As PAM_AUTHTOK with try_first_pass: not even the first round is sent.
        let mut c = ctx();
        c.authtok = Some(Zeroizing::new(SSHD_FAKE_PASSWORD.to_owned()));
        let args = Args {
            first_pass: FirstPass::Try,
            ..Args::default()
        };
        let r = run(&args, &c, &[], vec![]);
        assert_eq!(r.verdict, Verdict::AuthErr);
        assert!(r.daemon.seen.is_empty());
        assert!(r.logs.iter().all(|(_, m)| !m.contains("INCORRECT")));
    }

    #[test]
    fn first_pass_modes() {
        let mut c = ctx();
        c.authtok = Some(Zeroizing::new("123456".to_owned()));
        let try_ = Args {
            first_pass: FirstPass::Try,
            ..Args::default()
        };
        let r = run(&try_, &c, &[], vec![accept()]);
        assert_eq!(r.verdict, Verdict::Success);
        assert_eq!(r.daemon.seen, vec![(Some("123456".into()), None)]);

        // try_first_pass: a refused first pass falls back to asking, silently.
        let r = run(
            &try_,
            &c,
            &["654321"],
            vec![
                reject(RejectReason::BadInput),
                challenge(ASK, b""),
                accept(),
            ],
        );
        assert_eq!(r.verdict, Verdict::Success);
        assert!(r.user.shown.iter().all(|s| !s.starts_with("error")));

        // use_first_pass: no fallback, and no password at all is a failure without contact.
        let use_ = Args {
            first_pass: FirstPass::Use,
            ..Args::default()
        };
        let r = run(&use_, &c, &[], vec![reject(RejectReason::BadCode)]);
        assert_eq!(r.verdict, Verdict::AuthErr);
        let r = run(&use_, &ctx(), &[], vec![]);
        assert_eq!(r.verdict, Verdict::AuthErr);
        assert!(r.daemon.seen.is_empty());
    }

    #[test]
    fn conversation_failure_is_conv_err() {
        let r = run(&Args::default(), &ctx(), &[], vec![challenge(ASK, b"")]);
        assert_eq!(r.verdict, Verdict::ConvErr);
    }

    #[test]
    fn logs_never_contain_answers() {
        let r = run(
            &Args {
                debug: true,
                ..Args::default()
            },
            &ctx(),
            &["918273"],
            vec![challenge(ASK, b""), reject(RejectReason::BadCode)],
        );
        assert!(!r.logs.is_empty());
        assert!(
            r.logs.iter().all(|(_, m)| !m.contains("918273")),
            "{:?}",
            r.logs
        );
    }

    #[test]
    fn enter_prompts_are_recognised() {
        assert!(is_enter_prompt(
            "Approve it, then press Enter here (or type a security code):"
        ));
        assert!(is_enter_prompt("...\nThen press Enter here:"));
        assert!(!is_enter_prompt("Enter your security code:"));
        assert!(!is_enter_prompt(
            "A security code was sent by text message to ***1234.\nEnter it:"
        ));
    }
}
