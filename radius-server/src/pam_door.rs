//! The PAM front door: the Unix socket `pam_vip.so` talks to.
//!
//! One connection carries one or more rounds of the [`vip_core::ipc`] protocol. For each round
//! the door checks who is asking (`SO_PEERCRED`: root, the daemon's own uid, and the configured
//! `allowed_uids` / `allowed_gids` only), picks the login policy for the PAM service (like a
//! RADIUS client picks its own), turns the request into an [`AuthRequest`] and sends the engine's
//! [`Outcome`] back. Connections are bounded (`max_connections`), every read has a deadline
//! (`read_timeout`), every decision has one (`request_timeout`), and so does the connection as a
//! whole (`connection_timeout`).
//!
//! A first round with nothing typed gets a prompt for the code from the door itself when the
//! policy would otherwise refuse an empty password (`mode = "code"` or `"pin_otp"` with
//! `empty_password = "reject"`): PAM, unlike a NAS, can ask. Such a Challenge has an empty
//! State; the module sends the answer as a fresh first round.
//!
//! Never logged: answers, State values.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};
use tracing::{debug, info, info_span, warn, Instrument};
use vip_core::config::{ConfigError, CoreConfig};
use vip_core::engine::{
    AuthRequest, Authenticate, Challenge, ClientInfo, EmptyPassword, FrontDoor, LoginPolicy,
    Outcome, PasswordMode,
};
use vip_core::ipc::{
    self, AuthenticateRequest, ClientMessage, ErrorKind, IpcError, ServerMessage, MAX_ANSWER,
};
use vip_core::log_text::Escaped;

/// Where the socket lives unless configured.
pub const DEFAULT_SOCKET: &str = "/run/vip-bridge/pam.sock";

/// How long in-flight rounds may finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Longest service, user, host or tty name accepted.
const MAX_NAME: usize = 256;
/// Longest State accepted (the engine's tokens are at most 253 bytes).
const MAX_STATE: usize = 1024;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// `[pam]` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PamConfig {
    /// The Unix socket pam_vip.so connects to. Created mode 0666; access is decided by peer
    /// credentials, not by file mode.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Uids besides root (and the daemon's own) that may use the socket, e.g. a screen locker's.
    /// Such a peer may ask about any user: list only trusted programs' uids.
    #[serde(default)]
    pub allowed_uids: Vec<u32>,
    /// Primary gids whose processes may use the socket.
    #[serde(default)]
    pub allowed_gids: Vec<u32>,
    /// Per PAM service (`sshd`, `sudo`, ...): which login policy applies.
    #[serde(default)]
    pub services: BTreeMap<String, PamService>,
    /// The policy for services not listed in `services` (`default` unless set).
    #[serde(default)]
    pub default_policy: Option<String>,
    /// Deadline for each frame from the module (hello, request), and for each reply write.
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Deadline for one decision; must exceed the `push_timeout` of every policy PAM uses.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Deadline for a whole connection.
    #[serde(default = "default_connection_timeout", with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// Connections served at once; further ones are told `busy` and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The first prompt when nothing was typed yet (see the module docs); built from the
    /// policy's keywords unless set.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// `[pam.services.<name>]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PamService {
    pub policy: String,
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_connection_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_max_connections() -> usize {
    256
}

impl Default for PamConfig {
    fn default() -> Self {
        PamConfig {
            socket: default_socket(),
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            services: BTreeMap::new(),
            default_policy: None,
            read_timeout: default_read_timeout(),
            request_timeout: default_request_timeout(),
            connection_timeout: default_connection_timeout(),
            max_connections: default_max_connections(),
            prompt: None,
        }
    }
}

impl PamConfig {
    fn default_policy_name(&self) -> &str {
        self.default_policy.as_deref().unwrap_or("default")
    }

    /// The policy name for `service`: its own, else `default_policy`, else `default`.
    pub fn policy_name(&self, service: &str) -> &str {
        self.services
            .get(service)
            .map(|s| s.policy.as_str())
            .unwrap_or(self.default_policy_name())
    }
}

/// Checks `[pam]` against the core configuration; `path` names the file in errors.
pub fn validate(cfg: &PamConfig, core: &CoreConfig, path: &Path) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        key: format!("pam.{key}"),
        message,
    };
    let sock = cfg.socket.as_os_str().len();
    if !cfg.socket.is_absolute() {
        return Err(invalid(
            "socket",
            format!("{}: must be an absolute path", cfg.socket.display()),
        ));
    }
    if sock > MAX_SOCKET_PATH {
        return Err(invalid(
            "socket",
            format!(
                "{}: {sock} bytes; a Unix socket path may have at most {MAX_SOCKET_PATH}",
                cfg.socket.display()
            ),
        ));
    }
    if cfg.max_connections == 0 {
        return Err(invalid("max_connections", "must be at least 1".into()));
    }
    for (key, d) in [
        ("read_timeout", cfg.read_timeout),
        ("request_timeout", cfg.request_timeout),
        ("connection_timeout", cfg.connection_timeout),
    ] {
        if d.is_zero() {
            return Err(invalid(key, "must be longer than 0s".into()));
        }
    }
    if cfg.connection_timeout < cfg.request_timeout {
        return Err(invalid(
            "connection_timeout",
            format!(
                "{} is shorter than request_timeout ({})",
                humantime_serde::re::humantime::format_duration(cfg.connection_timeout),
                humantime_serde::re::humantime::format_duration(cfg.request_timeout)
            ),
        ));
    }
    // Every policy PAM can reach must exist and its blocking push must fit the request deadline.
    let mut used: Vec<(String, &str)> = vec![("default_policy".into(), cfg.default_policy_name())];
    for (name, svc) in &cfg.services {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                &format!("services.{name:?}"),
                "a PAM service name is one word".into(),
            ));
        }
        used.push((format!("services.{name}.policy"), svc.policy.as_str()));
    }
    for (key, policy_name) in used {
        let Some(policy) = core.policy(policy_name) else {
            let known: Vec<&str> = core.policies.keys().map(String::as_str).collect();
            return Err(invalid(
                &key,
                format!(
                    "no policy called {policy_name:?} (defined: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        if policy.push_timeout >= cfg.request_timeout {
            return Err(invalid(
                "request_timeout",
                format!(
                    "{} does not exceed push_timeout ({}) of policy {policy_name:?} ({key}); \
                     a blocking push would be cut off",
                    humantime_serde::re::humantime::format_duration(cfg.request_timeout),
                    humantime_serde::re::humantime::format_duration(policy.push_timeout)
                ),
            ));
        }
    }
    if let Some(p) = &cfg.prompt {
        if p.trim().is_empty() || p.len() > 1024 {
            return Err(invalid("prompt", "must be 1 to 1024 characters".into()));
        }
    }
    Ok(())
}

/// Serves the PAM socket until `shutdown` turns true, then removes the socket.
pub async fn serve(
    cfg: PamConfig,
    core: Arc<CoreConfig>,
    auth: Arc<dyn Authenticate>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let door = Arc::new(Door::new(cfg, &core)?);
    let (listener, inode) = bind(&door.cfg.socket)?;
    info!(
        socket = %door.cfg.socket.display(),
        max_connections = door.cfg.max_connections,
        "PAM socket listening"
    );
    let slots = Arc::new(Semaphore::new(door.cfg.max_connections));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            // A dropped sender also means stop.
            _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    while tasks.try_join_next().is_some() {}
                    let permit = slots.clone().try_acquire_owned().ok();
                    tasks.spawn(connection(door.clone(), auth.clone(), stream, permit));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "PAM socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    remove_if_ours(&door.cfg.socket, inode);
    while tasks.try_join_next().is_some() {}
    let pending = tasks.len();
    if pending > 0 {
        debug!(pending, "waiting for PAM rounds in flight");
        let drained = timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                aborted = tasks.len(),
                "PAM rounds still running at shutdown were cut off"
            );
            tasks.abort_all();
        }
    }
    info!("PAM socket closed");
    Ok(())
}

/// The door's ready-to-use configuration.
struct Door {
    cfg: PamConfig,
    default_policy: Arc<LoginPolicy>,
    policies: HashMap<String, Arc<LoginPolicy>>,
    own_uid: Option<u32>,
}

impl Door {
    fn new(cfg: PamConfig, core: &CoreConfig) -> io::Result<Door> {
        let missing = |name: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("[pam]: no policy called {name:?}"),
            )
        };
        let default_name = cfg.default_policy_name().to_owned();
        let default_policy = core
            .policy(&default_name)
            .ok_or_else(|| missing(&default_name))?;
        let mut policies = HashMap::new();
        for (service, svc) in &cfg.services {
            let p = core
                .policy(&svc.policy)
                .ok_or_else(|| missing(&svc.policy))?;
            policies.insert(service.clone(), p);
        }
        // /proc/self belongs to the effective uid: the daemon's own uid, without libc.
        let own_uid = std::fs::metadata("/proc/self").ok().map(|m| m.uid());
        Ok(Door {
            cfg,
            default_policy,
            policies,
            own_uid,
        })
    }

    fn policy(&self, service: &str) -> &Arc<LoginPolicy> {
        self.policies.get(service).unwrap_or(&self.default_policy)
    }

    fn peer_allowed(&self, uid: u32, gid: u32) -> bool {
        uid == 0
            || Some(uid) == self.own_uid
            || self.cfg.allowed_uids.contains(&uid)
            || self.cfg.allowed_gids.contains(&gid)
    }

    /// One round: the door's own first prompt, or the engine's decision.
    /// `pid`: the PAM application's process (SO_PEERCRED), part of what identifies the login
    /// session together with its tty and remote host.
    async fn decide(
        &self,
        auth: &dyn Authenticate,
        req: AuthenticateRequest,
        pid: Option<i32>,
    ) -> ServerMessage {
        if let Err(why) = check_request(&req) {
            warn!(problem = why, "malformed PAM request");
            return ServerMessage::Error {
                kind: ErrorKind::BadRequest,
                message: why.into(),
            };
        }
        let policy = self.policy(&req.service).clone();
        let fresh = req.state.as_ref().is_none_or(|s| s.is_empty());
        if fresh && req.answer.is_none() && wants_typed_first(&policy) {
            debug!("asking for the code");
            return ServerMessage::Outcome {
                outcome: Outcome::Challenge(Challenge {
                    prompt: self
                        .cfg
                        .prompt
                        .clone()
                        .unwrap_or_else(|| first_prompt(&policy)),
                    echo: false,
                    state: Vec::new(),
                }),
            };
        }
        let mut req = req;
        let remote = req.remote_host.take().filter(|s| !s.is_empty());
        let tty = req.tty.take().filter(|s| !s.is_empty());
        let session = pid.map(|pid| {
            format!(
                "{pid}\u{0}{}\u{0}{}",
                tty.as_deref().unwrap_or(""),
                remote.as_deref().unwrap_or("")
            )
        });
        let auth_req = AuthRequest {
            user: std::mem::take(&mut req.user),
            secret: req.answer.take().map(ipc::Answer::into_secret),
            state: req.state.take().filter(|s| !s.is_empty()),
            client: ClientInfo {
                front_door: FrontDoor::Pam,
                name: std::mem::take(&mut req.service),
                peer: None,
                nas_identifier: None,
                remote,
                tty,
                session,
            },
            policy,
        };
        let outcome = auth.authenticate(auth_req).await;
        match &outcome {
            Outcome::Reject(r) => {
                debug!(outcome = "reject", reason = r.reason.as_str(), "answered")
            }
            other => debug!(outcome = other.kind(), "answered"),
        }
        ServerMessage::Outcome { outcome }
    }
}

/// Whether the engine would refuse a first round with nothing typed, so the door should ask.
fn wants_typed_first(policy: &LoginPolicy) -> bool {
    policy.mode != PasswordMode::Challenge && policy.empty_password == EmptyPassword::Reject
}

/// "Enter your security code (or type push, sms or voice):", from the policy's keywords.
fn first_prompt(policy: &LoginPolicy) -> String {
    let what = match policy.mode {
        PasswordMode::PinOtp => "your PIN followed by your security code",
        _ => "your security code",
    };
    let words: Vec<&str> = [
        &policy.push_keywords,
        &policy.sms_keywords,
        &policy.voice_keywords,
    ]
    .into_iter()
    .filter_map(|w| w.first().map(|s| s.trim()))
    .collect();
    match words.as_slice() {
        [] => format!("Enter {what}:"),
        [one] => format!("Enter {what} (or type {one}):"),
        [init @ .., last] => format!("Enter {what} (or type {}, or {last}):", init.join(", ")),
    }
}

fn check_request(req: &AuthenticateRequest) -> Result<(), &'static str> {
    let bad_name = |s: &str| s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control);
    if bad_name(&req.service) {
        return Err("the PAM service name is empty, too long or has control characters");
    }
    if bad_name(&req.user) {
        return Err("the user name is empty, too long or has control characters");
    }
    for v in [&req.remote_host, &req.tty].into_iter().flatten() {
        if v.len() > MAX_NAME || v.chars().any(char::is_control) {
            return Err("remote_host or tty is too long or has control characters");
        }
    }
    if req.answer.as_ref().is_some_and(|a| a.len() > MAX_ANSWER) {
        return Err("the answer is too long");
    }
    if req.state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        return Err("the State is too long");
    }
    Ok(())
}

/// Serves one connection: peer check, slot, hello, rounds until the module hangs up.
async fn connection(
    door: Arc<Door>,
    auth: Arc<dyn Authenticate>,
    mut stream: UnixStream,
    slot: Option<OwnedSemaphorePermit>,
) {
    let cfg = &door.cfg;
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "PAM connection without peer credentials; closed");
            return;
        }
    };
    let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
    if !door.peer_allowed(uid, gid) {
        warn!(
            uid,
            gid,
            pid,
            "refused a PAM connection: the peer is not root and not in pam.allowed_uids / allowed_gids"
        );
        refuse(
            &mut stream,
            cfg,
            ErrorKind::Forbidden,
            "this uid may not use the vip-bridge PAM socket",
        )
        .await;
        return;
    }
    let Some(_slot) = slot else {
        warn!(
            uid,
            pid,
            max = cfg.max_connections,
            "PAM connection refused: too many connections"
        );
        refuse(
            &mut stream,
            cfg,
            ErrorKind::Busy,
            "too many connections; try again",
        )
        .await;
        return;
    };
    let deadline = Instant::now() + cfg.connection_timeout;
    let served = timeout_at(deadline, rounds(&door, &*auth, &mut stream, uid, pid)).await;
    if served.is_err() {
        debug!(
            uid,
            pid, "PAM connection reached connection_timeout; closed"
        );
    }
}

async fn rounds(
    door: &Door,
    auth: &dyn Authenticate,
    stream: &mut UnixStream,
    uid: u32,
    pid: Option<i32>,
) {
    let cfg = &door.cfg;
    match timeout(cfg.read_timeout, ipc::server_handshake(stream)).await {
        Ok(Ok(())) => {}
        Ok(Err(IpcError::Closed)) => return,
        Ok(Err(e)) => {
            warn!(uid, pid, error = %e, "PAM handshake failed");
            return;
        }
        Err(_) => {
            debug!(uid, pid, "PAM client sent no hello in time");
            return;
        }
    }
    loop {
        let msg = match timeout(
            cfg.read_timeout,
            ipc::read_message::<_, ClientMessage>(stream),
        )
        .await
        {
            Err(_) => {
                debug!(uid, pid, "PAM connection idle; closed");
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Ok(Some(m))) => m,
            Ok(Err(e)) => {
                warn!(uid, pid, error = %e, "unreadable PAM request");
                send(stream, cfg, &ipc::error_message(ErrorKind::BadRequest, &e)).await;
                return;
            }
        };
        let req = match msg {
            ClientMessage::Authenticate(r) => r,
            ClientMessage::Hello { .. } => {
                let e = IpcError::Unexpected("a second hello");
                send(stream, cfg, &ipc::error_message(ErrorKind::BadRequest, &e)).await;
                return;
            }
        };
        let span = info_span!(
            "pam",
            service = %Escaped(&req.service),
            user = %Escaped(&req.user),
            uid,
            pid = pid.unwrap_or(0),
        );
        let reply = async {
            match timeout(cfg.request_timeout, door.decide(auth, req, pid)).await {
                Ok(reply) => reply,
                Err(_) => {
                    warn!(
                        timeout = %humantime_serde::re::humantime::format_duration(cfg.request_timeout),
                        "PAM round not decided in time"
                    );
                    ServerMessage::Error {
                        kind: ErrorKind::Timeout,
                        message: "the daemon did not decide in time".into(),
                    }
                }
            }
        }
        .instrument(span)
        .await;
        if !send(stream, cfg, &reply).await {
            return;
        }
    }
}

/// Writes one message within `read_timeout`; false when the module is gone.
async fn send(stream: &mut UnixStream, cfg: &PamConfig, msg: &ServerMessage) -> bool {
    match timeout(cfg.read_timeout, ipc::write_message(stream, msg)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            debug!(error = %e, "PAM client went away before the answer");
            false
        }
        Err(_) => {
            debug!("PAM client did not read the answer in time");
            false
        }
    }
}

/// Tells a refused client why. Its hello is read first, so that it is not writing into a closed
/// socket (it would see EPIPE instead of our reason).
async fn refuse(stream: &mut UnixStream, cfg: &PamConfig, kind: ErrorKind, message: &str) {
    let limit = Duration::from_secs(1).min(cfg.read_timeout);
    let _ = timeout(limit, ipc::read_frame(stream)).await;
    let msg = ServerMessage::Error {
        kind,
        message: message.into(),
    };
    let _ = timeout(limit, ipc::write_message(stream, &msg)).await;
}

/// Creates the parent directory, replaces a stale socket, binds, and opens the mode to 0666
/// (access is decided per connection by peer credentials). Returns the socket's inode so that
/// shutdown removes only our own socket.
fn bind(path: &Path) -> io::Result<(UnixListener, u64)> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{}: cannot create: {e}", parent.display()),
                )
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another process is serving this socket", path.display()),
                ));
            }
            debug!(socket = %path.display(), "removing a stale PAM socket");
            std::fs::remove_file(path).map_err(with_path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{}: exists and is not a socket; not removing it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_path(e)),
    }
    let listener = UnixListener::bind(path).map_err(with_path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(with_path)?;
    let inode = std::fs::symlink_metadata(path).map_err(with_path)?.ino();
    Ok((listener, inode))
}

fn remove_if_ours(path: &Path, inode: u64) {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() && md.ino() == inode => {
            if let Err(e) = std::fs::remove_file(path) {
                warn!(socket = %path.display(), error = %e, "cannot remove the PAM socket");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;
    use vip_core::engine::{Accept, Factor, Reject, RejectReason};
    use vip_core::ipc::{Answer, Client};

    /// What the fake engine saw (secrets exposed here only to assert on them).
    #[derive(Debug, Clone)]
    struct Seen {
        user: String,
        service: String,
        secret: Option<String>,
        state: Option<Vec<u8>>,
        remote: Option<String>,
        tty: Option<String>,
        policy_title: String,
        front_door: FrontDoor,
    }

    #[derive(Default)]
    struct Fake {
        seen: Mutex<Vec<Seen>>,
        delay: Duration,
    }

    impl Authenticate for Fake {
        fn authenticate(
            &self,
            req: AuthRequest,
        ) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
            self.seen.lock().unwrap().push(Seen {
                user: req.user.clone(),
                service: req.client.name.clone(),
                secret: req.secret.as_ref().map(|s| s.expose().to_owned()),
                state: req.state.clone(),
                remote: req.client.remote.clone(),
                tty: req.client.tty.clone(),
                policy_title: req.policy.push_title.clone(),
                front_door: req.client.front_door,
            });
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                match (
                    req.secret.as_ref().map(|s| s.expose().to_owned()),
                    req.state,
                ) {
                    (Some(s), None) if s == "push" => Outcome::Challenge(Challenge {
                        prompt: "Approve it, then press Enter here:".into(),
                        echo: false,
                        state: b"sealed".to_vec(),
                    }),
                    (_, Some(st)) if st == b"sealed" => Outcome::Accept(Accept {
                        factor: Factor::Push,
                        credential_id: None,
                        credential_type: None,
                        authn_id: None,
                        failed_open: false,
                    }),
                    (Some(s), _) if s == "123456" => Outcome::Accept(Accept {
                        factor: Factor::Code,
                        credential_id: Some("VSMT0001".into()),
                        credential_type: None,
                        authn_id: None,
                        failed_open: false,
                    }),
                    _ => Outcome::Reject(Reject {
                        reason: RejectReason::BadCode,
                        message: "Wrong security code.".into(),
                    }),
                }
            })
        }

        fn state_is_live(&self, _state: &[u8]) -> bool {
            false
        }
    }

    fn core() -> CoreConfig {
        let mut core = CoreConfig::default();
        core.policies.insert(
            "ssh".into(),
            LoginPolicy {
                push_title: "ssh-policy".into(),
                ..LoginPolicy::default()
            },
        );
        core.policies.insert(
            "pushy".into(),
            LoginPolicy {
                push_title: "pushy-policy".into(),
                empty_password: EmptyPassword::Push,
                ..LoginPolicy::default()
            },
        );
        core
    }

    fn cfg(dir: &Path) -> PamConfig {
        let mut services = BTreeMap::new();
        services.insert(
            "sshd".to_owned(),
            PamService {
                policy: "ssh".into(),
            },
        );
        services.insert(
            "gdm".to_owned(),
            PamService {
                policy: "pushy".into(),
            },
        );
        PamConfig {
            socket: dir.join("run/vip/pam.sock"),
            services,
            read_timeout: Duration::from_secs(2),
            ..PamConfig::default()
        }
    }

    struct Running {
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<io::Result<()>>,
        socket: PathBuf,
        fake: Arc<Fake>,
    }

    async fn start(cfg: PamConfig, fake: Fake) -> Running {
        let (stop, rx) = watch::channel(false);
        let fake = Arc::new(fake);
        let socket = cfg.socket.clone();
        let task = tokio::spawn(serve(cfg, Arc::new(core()), fake.clone(), rx));
        // Wait until the socket answers (a stale file may already be there).
        let mut up = false;
        for _ in 0..200 {
            if UnixStream::connect(&socket).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(up, "socket never came up");
        Running {
            stop,
            task,
            socket,
            fake,
        }
    }

    impl Running {
        async fn stop(self) {
            self.stop.send_replace(true);
            self.task.await.unwrap().unwrap();
            assert!(!self.socket.exists(), "socket left behind");
        }
    }

    fn req(
        service: &str,
        user: &str,
        answer: Option<&str>,
        state: Option<&[u8]>,
    ) -> AuthenticateRequest {
        AuthenticateRequest {
            service: service.into(),
            user: user.into(),
            remote_host: Some("192.0.2.9".into()),
            tty: Some("ssh".into()),
            answer: answer.map(Answer::new),
            state: state.map(<[u8]>::to_vec),
        }
    }

    /// Runs blocking client rounds on a blocking thread.
    async fn rounds_blocking(
        socket: &Path,
        reqs: Vec<AuthenticateRequest>,
    ) -> Vec<Result<Outcome, IpcError>> {
        let socket = socket.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut c = match Client::connect(&socket, Duration::from_secs(5)) {
                Ok(c) => c,
                Err(e) => return vec![Err(e)],
            };
            reqs.iter().map(|r| c.authenticate(r)).collect()
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn code_round_reaches_the_engine_with_the_service_policy() {
        let dir = tempfile::tempdir().unwrap();
        let run = start(cfg(dir.path()), Fake::default()).await;
        let mode = std::fs::metadata(&run.socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
        let out = rounds_blocking(
            &run.socket,
            vec![req("sshd", "alice", Some("123456"), None)],
        )
        .await;
        assert!(
            matches!(&out[0], Ok(Outcome::Accept(a)) if a.factor == Factor::Code),
            "{out:?}"
        );
        let seen = run.fake.seen.lock().unwrap()[0].clone();
        assert_eq!(seen.user, "alice");
        assert_eq!(seen.service, "sshd");
        assert_eq!(seen.secret.as_deref(), Some("123456"));
        assert_eq!(seen.state, None);
        assert_eq!(seen.remote.as_deref(), Some("192.0.2.9"));
        assert_eq!(seen.tty.as_deref(), Some("ssh"));
        assert_eq!(seen.policy_title, "ssh-policy");
        assert_eq!(seen.front_door, FrontDoor::Pam);
        run.stop().await;
    }

    #[tokio::test]
    async fn unlisted_service_gets_the_default_policy() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        let run = start(c.clone(), Fake::default()).await;
        rounds_blocking(&run.socket, vec![req("login", "bob", Some("000000"), None)]).await;
        assert_eq!(
            run.fake.seen.lock().unwrap()[0].policy_title,
            "Sign-in request"
        );
        run.stop().await;

        c.default_policy = Some("pushy".into());
        let run = start(c, Fake::default()).await;
        rounds_blocking(&run.socket, vec![req("login", "bob", Some("000000"), None)]).await;
        assert_eq!(
            run.fake.seen.lock().unwrap()[0].policy_title,
            "pushy-policy"
        );
        run.stop().await;
    }

    #[tokio::test]
    async fn first_round_without_answer_is_asked_by_the_door() {
        let dir = tempfile::tempdir().unwrap();
        let run = start(cfg(dir.path()), Fake::default()).await;
        let out = rounds_blocking(&run.socket, vec![req("sshd", "alice", None, None)]).await;
        match &out[0] {
            Ok(Outcome::Challenge(c)) => {
                assert!(c.state.is_empty());
                assert!(!c.echo);
                assert_eq!(
                    c.prompt,
                    "Enter your security code (or type push, sms, or voice):"
                );
            }
            other => panic!("expected the door's prompt, got {other:?}"),
        }
        assert!(
            run.fake.seen.lock().unwrap().is_empty(),
            "the engine was called"
        );
        // A policy where nothing typed means push goes straight to the engine.
        let out = rounds_blocking(&run.socket, vec![req("gdm", "alice", None, None)]).await;
        assert!(matches!(&out[0], Ok(Outcome::Reject(_))));
        assert_eq!(run.fake.seen.lock().unwrap()[0].secret, None);
        run.stop().await;
    }

    #[tokio::test]
    async fn challenge_state_round_trips_and_empty_state_is_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let run = start(cfg(dir.path()), Fake::default()).await;
        let out = rounds_blocking(
            &run.socket,
            vec![
                req("sshd", "alice", Some("push"), None),
                req("sshd", "alice", Some(""), Some(b"sealed")),
                req("sshd", "alice", Some("123456"), Some(b"")),
            ],
        )
        .await;
        assert!(matches!(&out[0], Ok(Outcome::Challenge(c)) if c.state == b"sealed"));
        assert!(matches!(&out[1], Ok(Outcome::Accept(a)) if a.factor == Factor::Push));
        assert!(matches!(&out[2], Ok(Outcome::Accept(a)) if a.factor == Factor::Code));
        let seen = run.fake.seen.lock().unwrap().clone();
        assert_eq!(seen[1].state.as_deref(), Some(&b"sealed"[..]));
        assert_eq!(seen[2].state, None);
        run.stop().await;
    }

    #[tokio::test]
    async fn malformed_requests_are_refused_without_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let run = start(cfg(dir.path()), Fake::default()).await;
        let long = "9".repeat(MAX_ANSWER + 1);
        for r in [
            req("sshd", "", Some("123456"), None),
            req("", "alice", Some("123456"), None),
            req("sshd", "al\nice", Some("123456"), None),
            req("sshd", "alice", Some(&long), None),
            req("sshd", "alice", Some("1"), Some(&[0u8; MAX_STATE + 1])),
        ] {
            let out = rounds_blocking(&run.socket, vec![r]).await;
            assert!(
                matches!(
                    &out[0],
                    Err(IpcError::Server {
                        kind: ErrorKind::BadRequest,
                        ..
                    })
                ),
                "{out:?}"
            );
        }
        assert!(run.fake.seen.lock().unwrap().is_empty());
        run.stop().await;
    }

    #[tokio::test]
    async fn slow_decisions_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.request_timeout = Duration::from_millis(200);
        let run = start(
            c,
            Fake {
                delay: Duration::from_secs(5),
                ..Fake::default()
            },
        )
        .await;
        let out = rounds_blocking(
            &run.socket,
            vec![req("sshd", "alice", Some("123456"), None)],
        )
        .await;
        assert!(
            matches!(
                &out[0],
                Err(IpcError::Server {
                    kind: ErrorKind::Timeout,
                    ..
                })
            ),
            "{out:?}"
        );
        run.stop().await;
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_told_busy() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.max_connections = 1;
        let run = start(c, Fake::default()).await;
        let sock = run.socket.clone();
        let held = tokio::task::spawn_blocking(move || {
            Client::connect(&sock, Duration::from_secs(5)).unwrap()
        })
        .await
        .unwrap();
        let out = rounds_blocking(&run.socket, vec![]).await;
        assert!(
            matches!(
                &out[..],
                [Err(IpcError::Server {
                    kind: ErrorKind::Busy,
                    ..
                })]
            ),
            "{out:?}"
        );
        drop(held);
        // The slot comes back once the first client hangs up.
        let mut ok = false;
        for _ in 0..50 {
            let out =
                rounds_blocking(&run.socket, vec![req("sshd", "a", Some("123456"), None)]).await;
            if matches!(&out[..], [Ok(Outcome::Accept(_))]) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "slot never freed");
        run.stop().await;
    }

    #[tokio::test]
    async fn idle_clients_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.read_timeout = Duration::from_millis(200);
        let run = start(c, Fake::default()).await;
        let sock = run.socket.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut c = Client::connect(&sock, Duration::from_secs(5)).unwrap();
            std::thread::sleep(Duration::from_millis(600));
            c.authenticate(&req("sshd", "alice", Some("123456"), None))
        })
        .await
        .unwrap();
        assert!(out.is_err(), "{out:?}");
        run.stop().await;
    }

    #[tokio::test]
    async fn socket_setup_replaces_stale_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        std::fs::create_dir_all(c.socket.parent().unwrap()).unwrap();
        // A stale socket (nobody listening) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&c.socket).unwrap());
        let run = start(c.clone(), Fake::default()).await;
        // A live one is not.
        let (_tx, rx) = watch::channel(false);
        let err = serve(c.clone(), Arc::new(core()), Arc::new(Fake::default()), rx)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        run.stop().await;
        // A regular file is never removed.
        std::fs::write(&c.socket, "precious").unwrap();
        let (_tx, rx) = watch::channel(false);
        let err = serve(c.clone(), Arc::new(core()), Arc::new(Fake::default()), rx)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&c.socket).unwrap(), "precious");
    }

    #[test]
    fn peer_credentials_decide_access() {
        let mut c = cfg(Path::new("/tmp"));
        c.allowed_uids = vec![1001];
        c.allowed_gids = vec![42];
        let mut door = Door::new(c, &core()).unwrap();
        door.own_uid = Some(999);
        assert!(door.peer_allowed(0, 0));
        assert!(door.peer_allowed(999, 5));
        assert!(door.peer_allowed(1001, 1001));
        assert!(door.peer_allowed(2000, 42));
        assert!(!door.peer_allowed(2000, 2000));
        assert!(!door.peer_allowed(65534, 65534));
    }

    #[test]
    fn config_parses_with_defaults() {
        let c: PamConfig = toml::from_str(
            r#"
            socket = "/run/vip-bridge/pam.sock"
            allowed_gids = [5]
            request_timeout = "45s"
            [services.sshd]
            policy = "ssh"
            "#,
        )
        .unwrap();
        assert_eq!(c.policy_name("sshd"), "ssh");
        assert_eq!(c.policy_name("sudo"), "default");
        assert_eq!(c.request_timeout, Duration::from_secs(45));
        assert_eq!(c.max_connections, 256);
        let empty: PamConfig = toml::from_str("").unwrap();
        assert_eq!(empty.socket, Path::new(DEFAULT_SOCKET));
        assert!(toml::from_str::<PamConfig>("sockets = \"/x\"").is_err());
        assert!(toml::from_str::<PamConfig>("[services.sshd]\npolicy = \"a\"\nextra = 1").is_err());
    }

    #[test]
    fn validate_names_the_key() {
        let path = Path::new("/etc/vip-bridge/vip-bridge.toml");
        let ok = cfg(Path::new("/run"));
        validate(&ok, &core(), path).unwrap();

        let check = |c: PamConfig, key: &str, words: &str| {
            let err = validate(&c, &core(), path).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(words), "{err}");
            assert!(err.contains("vip-bridge.toml"), "{err}");
        };
        let mut c = ok.clone();
        c.services.insert(
            "sudo".into(),
            PamService {
                policy: "nope".into(),
            },
        );
        check(c, "pam.services.sudo.policy", "no policy called \"nope\"");
        let mut c = ok.clone();
        c.default_policy = Some("missing".into());
        check(c, "pam.default_policy", "missing");
        let mut c = ok.clone();
        c.socket = "relative.sock".into();
        check(c, "pam.socket", "absolute");
        let mut c = ok.clone();
        c.socket = PathBuf::from(format!("/{}", "s".repeat(120)));
        check(c, "pam.socket", "at most");
        let mut c = ok.clone();
        c.request_timeout = Duration::from_secs(20);
        check(c, "pam.request_timeout", "push_timeout");
        let mut c = ok.clone();
        c.max_connections = 0;
        check(c, "pam.max_connections", "at least 1");
        let mut c = ok.clone();
        c.connection_timeout = Duration::from_secs(30);
        check(c, "pam.connection_timeout", "request_timeout");
        let mut c = ok;
        c.services.insert(
            "bad name".into(),
            PamService {
                policy: "ssh".into(),
            },
        );
        check(c, "pam.services", "one word");
    }

    #[test]
    fn first_prompt_follows_the_policy() {
        let p = LoginPolicy {
            mode: PasswordMode::PinOtp,
            ..LoginPolicy::default()
        };
        assert!(first_prompt(&p).starts_with("Enter your PIN followed by your security code"));
        let p = LoginPolicy {
            push_keywords: vec!["approve".into()],
            sms_keywords: vec![],
            voice_keywords: vec![],
            ..LoginPolicy::default()
        };
        assert_eq!(
            first_prompt(&p),
            "Enter your security code (or type approve):"
        );
        assert!(!wants_typed_first(&LoginPolicy {
            mode: PasswordMode::Challenge,
            ..LoginPolicy::default()
        }));
        assert!(!wants_typed_first(&LoginPolicy {
            empty_password: EmptyPassword::Menu,
            ..LoginPolicy::default()
        }));
    }

    /// Captures every log line of a test (current-thread runtime: spawned tasks log here too).
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn logs_name_the_round_but_never_answers_or_states() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // Callsites first hit by concurrent tests (no subscriber) must be re-asked.
        tracing::callsite::rebuild_interest_cache();

        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.request_timeout = Duration::from_millis(300);
        let run = start(
            c,
            Fake {
                delay: Duration::from_millis(500),
                ..Fake::default()
            },
        )
        .await;
        // The blocking client runs on another thread; the daemon's tasks log on this one.
        rounds_blocking(
            &run.socket,
            vec![
                req("sshd", "alice", Some("735911"), Some(b"SEALEDSTATE")),
                req("sshd", "alice", Some("735911"), None),
            ],
        )
        .await;
        run.stop().await;
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("pam{service=sshd user=alice"), "{text}");
        assert!(text.contains("not decided in time"), "{text}");
        assert!(!text.contains("735911"), "{text}");
        assert!(!text.contains("SEALEDSTATE"), "{text}");
        assert!(!text.contains(&ipc_b64(b"SEALEDSTATE")), "{text}");
    }

    fn ipc_b64(b: &[u8]) -> String {
        let frame = ipc::encode(&req("s", "u", None, Some(b))).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&frame[4..]).unwrap();
        v["state"].as_str().unwrap().to_owned()
    }
}
