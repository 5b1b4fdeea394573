//! The PAM front door: the Unix socket `pam_vip.so` talks to.
//!
//! One connection carries one or more rounds of the [`vip_ipc`] protocol. Who may connect
//! is decided twice. The file system first: the socket is mode 0660, owned by the daemon and
//! `socket_group`, so only root, the daemon and that group's members can connect at all. Then
//! the peer's credentials (`SO_PEERCRED`), read before the connection holds anything: root, the
//! daemon's own uid and the configured `allowed_uids` / `allowed_gids` only; anyone else is told
//! `forbidden` and closed at once. An allowed connection then takes a slot of its uid
//! (`max_connections_per_uid`; root, which runs every sshd and sudo login, is not capped per
//! uid) and one of `max_connections`; without one it is told `busy` and closed at once. So one
//! local uid can hold at most a handful of the daemon's descriptors, and never root's slots.
//!
//! For each round the door picks the login policy for the PAM service (like a RADIUS client
//! picks its own), turns the request into an [`AuthRequest`] and sends the engine's [`Outcome`]
//! back. Every read has a deadline (`read_timeout`), every decision has one (`request_timeout`),
//! and so does the connection as a whole (`connection_timeout`).
//!
//! A first round with nothing typed gets a prompt for the code from the door itself when the
//! policy would otherwise refuse an empty password (`mode = "code"` or `"pin_otp"` with
//! `empty_password = "reject"`): PAM, unlike a NAS, can ask. Such a Challenge has an empty
//! State; the module sends the answer as a fresh first round.
//!
//! Every warning a peer can cause (refused, busy, broken or idle connections, timeouts) is
//! rate-limited: one line a second per cause, with the count of the lines held back. Never
//! logged: answers, State values; names from the peer only escaped.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
use vip_core::log_limit::OncePerSecond;
use vip_core::log_text::Escaped;
use vip_core::secret::Secret;
use vip_ipc::{
    self as ipc, AuthenticateRequest, ClientMessage, ErrorKind, IpcError, ServerMessage, MAX_ANSWER,
};

/// Where the socket lives unless configured.
pub const DEFAULT_SOCKET: &str = "/run/vip-bridge/pam.sock";

/// Where `socket_group` names are looked up.
const GROUP_FILE: &str = "/etc/group";
/// The socket's mode: the owner (the daemon) and `socket_group`; root passes anyway.
const SOCKET_MODE: u32 = 0o660;
/// The mode of directories the door creates for its socket.
const DIR_MODE: u32 = 0o750;
/// How long in-flight rounds may finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Longest service, user, host or tty name accepted.
const MAX_NAME: usize = 256;
/// Longest State accepted (the engine's tokens are at most 253 bytes).
const MAX_STATE: usize = 1024;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// First pause after accept() ran out of descriptors or memory; doubled while it keeps failing.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest such pause.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Pause after any other accept() failure (so that nothing can make the loop spin).
const ACCEPT_PAUSE_OTHER: Duration = Duration::from_millis(10);

/// `[pam]` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PamConfig {
    /// The Unix socket pam_vip.so connects to: mode 0660, owned by the daemon's uid and
    /// `socket_group`. Directories the door creates for it are 0750 with the same group.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The socket's group (a name from /etc/group, or a number): its members may connect; the
    /// peer-credential check below still applies to them. Unset: the daemon's own group. The
    /// daemon must be a member (systemd: `SupplementaryGroups=`). Root needs no group.
    #[serde(default)]
    pub socket_group: Option<GroupSpec>,
    /// Uids besides root (and the daemon's own) that may use the socket, e.g. a screen locker's.
    /// Such a peer may ask about any user: list only trusted programs' uids. It must also be
    /// able to reach the socket (a member of `socket_group`).
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
    /// Connections one uid may have open at once (waiting for its hello or being served);
    /// further ones are told `busy` and closed at once. Root is not counted here (every sshd
    /// and sudo login is root's); `max_connections` bounds it.
    #[serde(default = "default_max_connections_per_uid")]
    pub max_connections_per_uid: usize,
    /// The first prompt when nothing was typed yet (see the module docs); built from the
    /// policy's keywords unless set.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// `socket_group`: a group name or a gid (`socket_group = "vip-pam"` or `socket_group = 990`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum GroupSpec {
    Id(u32),
    Name(String),
}

impl GroupSpec {
    /// The gid: a number as it is, a name from /etc/group (not from LDAP or other NSS sources:
    /// give those by number).
    pub fn resolve(&self) -> Result<u32, String> {
        self.resolve_in(Path::new(GROUP_FILE))
    }

    fn resolve_in(&self, group_file: &Path) -> Result<u32, String> {
        let name = match self {
            GroupSpec::Id(gid) => return Ok(*gid),
            GroupSpec::Name(name) => name,
        };
        if let Ok(gid) = name.parse::<u32>() {
            return Ok(gid);
        }
        let text = std::fs::read_to_string(group_file)
            .map_err(|e| format!("cannot read {}: {e}", group_file.display()))?;
        gid_of(name, &text).ok_or_else(|| {
            format!(
                "no group called {name:?} in {} (a group from LDAP or another NSS source: \
                 give its number)",
                group_file.display()
            )
        })
    }
}

/// The gid of `name` in /etc/group text (`name:x:gid:members`).
fn gid_of(name: &str, group_file: &str) -> Option<u32> {
    group_file.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.trim().parse().ok()
    })
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
fn default_max_connections_per_uid() -> usize {
    8
}

impl Default for PamConfig {
    fn default() -> Self {
        PamConfig {
            socket: default_socket(),
            socket_group: None,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            services: BTreeMap::new(),
            default_policy: None,
            read_timeout: default_read_timeout(),
            request_timeout: default_request_timeout(),
            connection_timeout: default_connection_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_uid: default_max_connections_per_uid(),
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
    if let Some(group) = &cfg.socket_group {
        group.resolve().map_err(|e| invalid("socket_group", e))?;
    }
    if cfg.max_connections == 0 {
        return Err(invalid("max_connections", "must be at least 1".into()));
    }
    if cfg.max_connections_per_uid == 0 {
        return Err(invalid(
            "max_connections_per_uid",
            "must be at least 1".into(),
        ));
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
        if policy.first_factor != vip_core::engine::FirstFactorKind::None {
            return Err(invalid(
                &key,
                format!(
                    "policy {policy_name:?} has first_factor = {:?}, but under PAM the stack is the first factor: put pam_unix or pam_sss before pam_vip.so (see packaging/pam.d/) and give PAM services a policy without first_factor (user_name mapping still applies)",
                    policy.first_factor.as_str()
                ),
            ));
        }
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

/// Serves the PAM socket until `shutdown` turns true, then removes the socket. `listening`
/// fires once the socket accepts connections (after a crash the old socket file exists before
/// that: its path is no sign of readiness).
pub async fn serve(
    cfg: PamConfig,
    core: Arc<CoreConfig>,
    auth: Arc<dyn Authenticate>,
    shutdown: watch::Receiver<bool>,
    listening: Option<tokio::sync::oneshot::Sender<()>>,
) -> io::Result<()> {
    let door = Arc::new(Door::new(cfg, &core)?);
    serve_door(door, auth, shutdown, listening).await
}

async fn serve_door(
    door: Arc<Door>,
    auth: Arc<dyn Authenticate>,
    mut shutdown: watch::Receiver<bool>,
    listening: Option<tokio::sync::oneshot::Sender<()>>,
) -> io::Result<()> {
    let (listener, inode) = bind(&door.cfg.socket, door.socket_gid)?;
    if let Some(tx) = listening {
        let _ = tx.send(());
    }
    info!(
        socket = %door.cfg.socket.display(),
        max_connections = door.cfg.max_connections,
        max_connections_per_uid = door.cfg.max_connections_per_uid,
        "PAM socket listening"
    );
    let mut tasks = JoinSet::new();
    let mut failed_in_a_row = 0u32;
    loop {
        let pause = tokio::select! {
            // A dropped sender also means stop.
            _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    failed_in_a_row = 0;
                    while tasks.try_join_next().is_some() {}
                    // Credentials first, slots second: a refused peer holds nothing, not even
                    // for the time it takes to say why.
                    if let Some((stream, peer, admitted)) = door.admit_stream(stream) {
                        tasks.spawn(connection(door.clone(), auth.clone(), stream, peer, admitted));
                    }
                    continue;
                }
                Err(e) => {
                    failed_in_a_row = failed_in_a_row.saturating_add(1);
                    door.accept_failed(&e, failed_in_a_row)
                }
            },
        };
        // EMFILE and friends: the pending connection stays queued and accept() would fail again
        // at once; back off instead of spinning (still answering shutdown).
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => break,
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

/// One rate limiter per kind of warning a peer can cause.
#[derive(Default)]
struct LogLimits {
    no_credentials: OncePerSecond,
    forbidden: OncePerSecond,
    busy: OncePerSecond,
    busy_uid: OncePerSecond,
    accept: OncePerSecond,
    handshake: OncePerSecond,
    no_hello: OncePerSecond,
    unreadable: OncePerSecond,
    idle: OncePerSecond,
    bad_request: OncePerSecond,
    round_timeout: OncePerSecond,
    connection_timeout: OncePerSecond,
}

/// Who is on the other end (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug)]
struct Peer {
    uid: u32,
    gid: u32,
    pid: Option<i32>,
}

/// Why a connection is turned away before it holds anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Not root, not the daemon, not an allowed uid / gid.
    Forbidden,
    /// Its uid already has `max_connections_per_uid` connections.
    BusyUid,
    /// `max_connections` are open.
    Busy,
}

/// What an admitted connection holds until it ends.
#[derive(Debug)]
struct Admitted {
    _slot: OwnedSemaphorePermit,
    _uid: Option<UidSlot>,
}

/// One of a uid's `max_connections_per_uid`; given back when dropped.
#[derive(Debug)]
struct UidSlot {
    per_uid: Arc<Mutex<HashMap<u32, usize>>>,
    uid: u32,
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut map = self.per_uid.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.uid);
            }
        }
    }
}

/// The door's ready-to-use configuration and its shared state.
struct Door {
    cfg: PamConfig,
    default_policy: Arc<LoginPolicy>,
    policies: HashMap<String, Arc<LoginPolicy>>,
    /// Always allowed and never capped per uid: root (sshd, sudo). `None` only in tests, which
    /// cannot otherwise play a stranger when they run as root.
    root: Option<u32>,
    /// The daemon's own uid: always allowed.
    own_uid: Option<u32>,
    /// The socket's group (`socket_group`), when configured.
    socket_gid: Option<u32>,
    /// `max_connections`.
    slots: Arc<Semaphore>,
    /// Open connections per uid (root's are not counted).
    per_uid: Arc<Mutex<HashMap<u32, usize>>>,
    /// Every accept() failure since start.
    accept_failures: AtomicU64,
    logs: LogLimits,
    /// The refusals, encoded once: a flood costs no allocation per connection.
    forbidden_frame: Vec<u8>,
    busy_frame: Vec<u8>,
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
        let socket_gid = cfg
            .socket_group
            .as_ref()
            .map(|g| {
                g.resolve().map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("pam.socket_group: {e}"),
                    )
                })
            })
            .transpose()?;
        // /proc/self belongs to the effective uid: the daemon's own uid, without libc.
        let own_uid = std::fs::metadata("/proc/self").ok().map(|m| m.uid());
        let frame = |kind, message: &str| {
            let msg = ServerMessage::Error {
                kind,
                message: message.into(),
            };
            ipc::encode(&msg)
                .map(|f| f.to_vec())
                .map_err(|e| io::Error::other(e.to_string()))
        };
        Ok(Door {
            slots: Arc::new(Semaphore::new(cfg.max_connections)),
            per_uid: Arc::default(),
            accept_failures: AtomicU64::new(0),
            logs: LogLimits::default(),
            forbidden_frame: frame(
                ErrorKind::Forbidden,
                "this uid may not use the vip-bridge PAM socket",
            )?,
            busy_frame: frame(ErrorKind::Busy, "too many connections; try again")?,
            cfg,
            default_policy,
            policies,
            root: Some(0),
            own_uid,
            socket_gid,
        })
    }

    fn policy(&self, service: &str) -> &Arc<LoginPolicy> {
        self.policies.get(service).unwrap_or(&self.default_policy)
    }

    fn peer_allowed(&self, uid: u32, gid: u32) -> bool {
        Some(uid) == self.root
            || Some(uid) == self.own_uid
            || self.cfg.allowed_uids.contains(&uid)
            || self.cfg.allowed_gids.contains(&gid)
    }

    /// The peer check, then a slot of the peer's uid, then one of `max_connections`: a refused
    /// peer holds nothing, and a refusal for one cap gives back what the other gave.
    fn admit(&self, uid: u32, gid: u32) -> Result<Admitted, Refusal> {
        if !self.peer_allowed(uid, gid) {
            return Err(Refusal::Forbidden);
        }
        let uid_slot = if Some(uid) == self.root {
            None
        } else {
            let mut map = self.per_uid.lock().unwrap_or_else(PoisonError::into_inner);
            let open = map.entry(uid).or_insert(0);
            if *open >= self.cfg.max_connections_per_uid {
                return Err(Refusal::BusyUid);
            }
            *open += 1;
            Some(UidSlot {
                per_uid: self.per_uid.clone(),
                uid,
            })
        };
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)?;
        Ok(Admitted {
            _slot: slot,
            _uid: uid_slot,
        })
    }

    /// Reads the peer's credentials and admits the connection, or says why not (rate-limited
    /// log line) and closes it at once.
    fn admit_stream(&self, stream: UnixStream) -> Option<(UnixStream, Peer, Admitted)> {
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                if let Some(suppressed) = self.logs.no_credentials.pass() {
                    warn!(
                        suppressed,
                        error = %e,
                        "PAM connection without peer credentials; closed"
                    );
                }
                return None;
            }
        };
        let peer = Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        };
        let refusal = match self.admit(peer.uid, peer.gid) {
            Ok(admitted) => return Some((stream, peer, admitted)),
            Err(r) => r,
        };
        let (uid, gid, pid) = (peer.uid, peer.gid, peer.pid);
        let frame = match refusal {
            Refusal::Forbidden => {
                if let Some(suppressed) = self.logs.forbidden.pass() {
                    warn!(
                        suppressed,
                        uid,
                        gid,
                        pid,
                        "refused a PAM connection: the peer is not root and not in \
                         pam.allowed_uids / allowed_gids"
                    );
                }
                &self.forbidden_frame
            }
            Refusal::BusyUid => {
                if let Some(suppressed) = self.logs.busy_uid.pass() {
                    warn!(
                        suppressed,
                        uid,
                        pid,
                        max = self.cfg.max_connections_per_uid,
                        "PAM connection refused: this uid has pam.max_connections_per_uid \
                         connections open"
                    );
                }
                &self.busy_frame
            }
            Refusal::Busy => {
                if let Some(suppressed) = self.logs.busy.pass() {
                    warn!(
                        suppressed,
                        uid,
                        pid,
                        max = self.cfg.max_connections,
                        "PAM connection refused: too many connections (pam.max_connections)"
                    );
                }
                &self.busy_frame
            }
        };
        refuse_now(stream, frame);
        None
    }

    /// Counts and logs (rate-limited) a failed accept(); returns how long to pause before the
    /// next one. Out of descriptors or memory, the pause grows with `in_a_row` failures.
    fn accept_failed(&self, e: &io::Error, in_a_row: u32) -> Duration {
        let failures = self.accept_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
        );
        let pause = if exhausted {
            ACCEPT_BACKOFF_MIN
                .saturating_mul(1 << in_a_row.saturating_sub(1).min(16))
                .min(ACCEPT_BACKOFF_MAX)
        } else {
            ACCEPT_PAUSE_OTHER
        };
        if let Some(suppressed) = self.logs.accept.pass() {
            warn!(
                suppressed,
                failures,
                error = %e,
                pause = %humantime_serde::re::humantime::format_duration(pause),
                "PAM socket accept failed; backing off (out of file descriptors? see \
                 LimitNOFILE= and pam.max_connections)"
            );
        }
        pause
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
            if let Some(suppressed) = self.logs.bad_request.pass() {
                warn!(suppressed, problem = why, "malformed PAM request");
            }
            return ServerMessage::Error {
                kind: ErrorKind::BadRequest,
                message: why.into(),
            };
        }
        let policy = self.policy(&req.service).clone();
        let fresh = req.state.as_ref().is_none_or(|s| s.is_empty());
        let ask_first = fresh && req.answer.is_none() && wants_typed_first(&policy);
        // pam_unix passed and the policy enrolls: the engine first says whether this user is
        // offered enrollment instead of the code prompt.
        let may_offer = ask_first
            && req.stack_password_checked
            && policy.enrollment != vip_core::engine::Enrollment::Off;
        let first_prompt_text = ask_first.then(|| {
            self.cfg
                .prompt
                .clone()
                .unwrap_or_else(|| first_prompt(&policy))
        });
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
            secret: req.answer.take().map(|a| Secret::from(a.into_inner())),
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
            stack_password_checked: req.stack_password_checked,
        };
        if let Some(prompt) = first_prompt_text {
            if may_offer {
                if let Some(offer) = auth.enrollment_offer(auth_req).await {
                    debug!(outcome = offer.kind(), "enrollment offered");
                    return ServerMessage::Outcome {
                        outcome: offer.into(),
                    };
                }
            }
            debug!("asking for the code");
            return ServerMessage::Outcome {
                outcome: ipc::Outcome::Challenge(Challenge {
                    prompt,
                    echo: false,
                    state: Vec::new(),
                }),
            };
        }
        let outcome = auth.authenticate(auth_req).await;
        match &outcome {
            Outcome::Reject(r) => {
                debug!(outcome = "reject", reason = r.reason.as_str(), "answered")
            }
            other => debug!(outcome = other.kind(), "answered"),
        }
        ServerMessage::Outcome {
            outcome: outcome.into(),
        }
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

/// Serves one admitted connection: hello, rounds until the module hangs up.
async fn connection(
    door: Arc<Door>,
    auth: Arc<dyn Authenticate>,
    mut stream: UnixStream,
    peer: Peer,
    _admitted: Admitted,
) {
    let deadline = Instant::now() + door.cfg.connection_timeout;
    let served = timeout_at(deadline, rounds(&door, &*auth, &mut stream, peer)).await;
    if served.is_err() {
        if let Some(suppressed) = door.logs.connection_timeout.pass() {
            warn!(
                suppressed,
                uid = peer.uid,
                pid = peer.pid,
                "PAM connection reached connection_timeout; closed"
            );
        }
    }
}

async fn rounds(door: &Door, auth: &dyn Authenticate, stream: &mut UnixStream, peer: Peer) {
    let cfg = &door.cfg;
    let Peer { uid, pid, .. } = peer;
    match timeout(cfg.read_timeout, ipc::server_handshake(stream)).await {
        Ok(Ok(())) => {}
        Ok(Err(IpcError::Closed)) => return,
        Ok(Err(e)) => {
            // IpcError never carries the peer's text (see ipc::Malformation).
            if let Some(suppressed) = door.logs.handshake.pass() {
                warn!(suppressed, uid, pid, error = %e, "PAM handshake failed");
            }
            return;
        }
        Err(_) => {
            if let Some(suppressed) = door.logs.no_hello.pass() {
                warn!(
                    suppressed,
                    uid, pid, "PAM client sent no hello in time; closed"
                );
            }
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
                if let Some(suppressed) = door.logs.idle.pass() {
                    warn!(suppressed, uid, pid, "PAM connection idle; closed");
                }
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Ok(Some(m))) => m,
            Ok(Err(e)) => {
                if let Some(suppressed) = door.logs.unreadable.pass() {
                    warn!(suppressed, uid, pid, error = %e, "unreadable PAM request");
                }
                send(stream, cfg, &ipc::error_message(ErrorKind::BadRequest, &e)).await;
                return;
            }
        };
        let req = match msg {
            ClientMessage::Authenticate(r) => r,
            ClientMessage::Hello { .. } => {
                let e = IpcError::Unexpected("a second hello");
                if let Some(suppressed) = door.logs.unreadable.pass() {
                    warn!(suppressed, uid, pid, error = %e, "unreadable PAM request");
                }
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
                    if let Some(suppressed) = door.logs.round_timeout.pass() {
                        warn!(
                            suppressed,
                            timeout = %humantime_serde::re::humantime::format_duration(cfg.request_timeout),
                            "PAM round not decided in time"
                        );
                    }
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

/// Tells a refused client why and closes, without waiting for anything: the frame goes into
/// the socket's buffer if it fits at once (it always does on a fresh connection) and the
/// module reads it even after the close, before its hello or after it.
fn refuse_now(stream: UnixStream, frame: &[u8]) {
    if let Ok(mut stream) = stream.into_std() {
        // Non-blocking; a peer that is already gone is no concern of ours.
        let _ = stream.write(frame);
    }
}

/// Creates the missing directories up to the socket (0750, group `gid` when given), replaces a
/// stale socket, binds, and gives the socket to `gid` with mode 0660: only root, the daemon and
/// the group can connect at all (peer credentials then decide per connection). Returns the
/// socket's inode so that shutdown removes only our own socket.
fn bind(path: &Path, gid: Option<u32>) -> io::Result<(UnixListener, u64)> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(parent, gid)?;
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
    // Until the mode below is set the socket has bind()'s umask mode: no wider than the
    // daemon's umask allows (systemd's UMask=0077: the daemon alone).
    let listener = UnixListener::bind(path).map_err(with_path)?;
    let restrict = || -> io::Result<u64> {
        if let Some(gid) = gid {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{}: cannot give the socket to pam.socket_group (gid {gid}): {e}; the \
                         daemon must be a member of that group (systemd: SupplementaryGroups=)",
                        path.display()
                    ),
                )
            })?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(with_path)?;
        Ok(std::fs::symlink_metadata(path).map_err(with_path)?.ino())
    };
    match restrict() {
        Ok(inode) => Ok((listener, inode)),
        Err(e) => {
            drop(listener);
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

/// Creates `dir` and its missing parents, each 0750 with group `gid` when given. Directories
/// that exist are left as they are (a systemd RuntimeDirectory has the unit's mode and group).
fn create_dirs(dir: &Path, gid: Option<u32>) -> io::Result<()> {
    let cannot = |d: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{}: cannot create: {e}", d.display()))
    };
    let mut missing = Vec::new();
    let mut d = Some(dir);
    while let Some(cur) = d.filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::symlink_metadata(cur) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(cur),
            Err(e) => return Err(cannot(cur, e)),
        }
        d = cur.parent();
    }
    for cur in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(cur) {
            Ok(()) => {}
            // Someone else made it meanwhile: theirs, left alone.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(cannot(cur, e)),
        }
        if let Some(gid) = gid {
            std::os::unix::fs::chown(cur, None, Some(gid)).map_err(|e| cannot(cur, e))?;
        }
        // The umask may have narrowed the mode (UMask=0077): the group must be able to pass.
        std::fs::set_permissions(cur, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| cannot(cur, e))?;
    }
    Ok(())
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
    use vip_ipc::{Answer, Client};

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
                        reply_attributes: Vec::new(),
                    }),
                    (Some(s), _) if s == "123456" => Outcome::Accept(Accept {
                        factor: Factor::Code,
                        credential_id: Some("VSMT0001".into()),
                        credential_type: None,
                        authn_id: None,
                        failed_open: false,
                        reply_attributes: Vec::new(),
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
        door: Arc<Door>,
    }

    async fn start(cfg: PamConfig, fake: Fake) -> Running {
        start_with(cfg, fake, |_| {}).await
    }

    /// Like [`start`], with the door adjusted first (e.g. `root = None` so that a test running
    /// as root can play a stranger).
    async fn start_with(cfg: PamConfig, fake: Fake, adjust: impl FnOnce(&mut Door)) -> Running {
        let (stop, rx) = watch::channel(false);
        let fake = Arc::new(fake);
        let socket = cfg.socket.clone();
        let mut door = Door::new(cfg, &core()).unwrap();
        adjust(&mut door);
        let door = Arc::new(door);
        let task = tokio::spawn(serve_door(door.clone(), fake.clone(), rx, None));
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
            door,
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
            stack_password_checked: false,
        }
    }

    /// Runs blocking client rounds on a blocking thread.
    async fn rounds_blocking(
        socket: &Path,
        reqs: Vec<AuthenticateRequest>,
    ) -> Vec<Result<ipc::Outcome, IpcError>> {
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
        assert_eq!(mode, 0o660);
        let out = rounds_blocking(
            &run.socket,
            vec![req("sshd", "alice", Some("123456"), None)],
        )
        .await;
        assert!(
            matches!(&out[0], Ok(ipc::Outcome::Accept(a)) if a.factor == Factor::Code),
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
            Ok(ipc::Outcome::Challenge(c)) => {
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
        assert!(matches!(&out[0], Ok(ipc::Outcome::Reject(_))));
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
        assert!(matches!(&out[0], Ok(ipc::Outcome::Challenge(c)) if c.state == b"sealed"));
        assert!(matches!(&out[1], Ok(ipc::Outcome::Accept(a)) if a.factor == Factor::Push));
        assert!(matches!(&out[2], Ok(ipc::Outcome::Accept(a)) if a.factor == Factor::Code));
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
        // The held connection owns the one slot before the next one arrives (under load the
        // door may not have taken it yet, and the newcomer would win the slot).
        for _ in 0..500 {
            if run.door.slots.available_permits() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(run.door.slots.available_permits(), 0);
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
        // The slot comes back once the first client hangs up (allow a loaded machine 5 s).
        let mut ok = false;
        for _ in 0..250 {
            let out =
                rounds_blocking(&run.socket, vec![req("sshd", "a", Some("123456"), None)]).await;
            if matches!(&out[..], [Ok(ipc::Outcome::Accept(_))]) {
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
        let err = serve(
            c.clone(),
            Arc::new(core()),
            Arc::new(Fake::default()),
            rx,
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        run.stop().await;
        // A regular file is never removed.
        std::fs::write(&c.socket, "precious").unwrap();
        let (_tx, rx) = watch::channel(false);
        let err = serve(
            c.clone(),
            Arc::new(core()),
            Arc::new(Fake::default()),
            rx,
            None,
        )
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
        assert_eq!(c.max_connections_per_uid, 8);
        assert_eq!(c.socket_group, None);
        let empty: PamConfig = toml::from_str("").unwrap();
        assert_eq!(empty.socket, Path::new(DEFAULT_SOCKET));
        let c: PamConfig =
            toml::from_str("socket_group = \"vip-pam\"\nmax_connections_per_uid = 3").unwrap();
        assert_eq!(c.socket_group, Some(GroupSpec::Name("vip-pam".into())));
        assert_eq!(c.max_connections_per_uid, 3);
        let c: PamConfig = toml::from_str("socket_group = 990").unwrap();
        assert_eq!(c.socket_group, Some(GroupSpec::Id(990)));
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
        c.max_connections_per_uid = 0;
        check(c, "pam.max_connections_per_uid", "at least 1");
        let mut c = ok.clone();
        c.socket_group = Some(GroupSpec::Name("no-such-group-vb".into()));
        check(
            c,
            "pam.socket_group",
            "no group called \"no-such-group-vb\"",
        );
        let mut c = ok.clone();
        c.socket_group = Some(GroupSpec::Name("0".into()));
        validate(&c, &core(), path).unwrap();
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

    fn own_uid() -> u32 {
        std::fs::metadata("/proc/self").unwrap().uid()
    }

    /// A door that plays a machine where the test process is nobody special.
    fn as_stranger(d: &mut Door) {
        d.root = None;
        d.own_uid = None;
    }

    /// Connects without saying anything and waits (at most `wait`) for what the daemon does:
    /// `Ok(Some(kind))` a refusal and close, `Ok(None)` a close without a word, `Err` nothing
    /// happened in time (the connection is held).
    fn silent_connect(
        socket: &Path,
        wait: Duration,
    ) -> (
        std::os::unix::net::UnixStream,
        Result<Option<ErrorKind>, ()>,
    ) {
        let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        let what = match ipc::read_message_blocking::<_, ServerMessage>(&mut s) {
            Ok(ServerMessage::Error { kind, .. }) => {
                // ... and then the end of the stream, not a held connection.
                match ipc::read_frame_blocking(&mut s) {
                    Err(IpcError::Timeout) => Err(()),
                    _ => Ok(Some(kind)),
                }
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(IpcError::Timeout) => Err(()),
            Err(_) => Ok(None),
        };
        (s, what)
    }

    #[test]
    fn credentials_are_checked_before_any_slot() {
        let mut c = cfg(Path::new("/tmp"));
        c.max_connections = 2;
        c.allowed_uids = vec![1000];
        let mut door = Door::new(c, &core()).unwrap();
        door.own_uid = Some(999);
        let held = door.admit(1000, 1000).unwrap();
        for _ in 0..1000 {
            assert_eq!(door.admit(2000, 2000).unwrap_err(), Refusal::Forbidden);
        }
        // A thousand strangers took nothing: the last slot is still there.
        assert_eq!(door.slots.available_permits(), 1);
        assert_eq!(door.per_uid.lock().unwrap().get(&2000), None);
        let second = door.admit(0, 0).unwrap();
        // Full now: a stranger is still told "forbidden", not "busy".
        assert_eq!(door.admit(2000, 2000).unwrap_err(), Refusal::Forbidden);
        assert_eq!(door.admit(1000, 1000).unwrap_err(), Refusal::Busy);
        // The failed global slot gave its uid slot back.
        assert_eq!(door.per_uid.lock().unwrap().get(&1000), Some(&1));
        drop((held, second));
        assert_eq!(door.slots.available_permits(), 2);
        assert!(door.per_uid.lock().unwrap().is_empty());
    }

    #[test]
    fn one_uid_cannot_take_root_s_slots() {
        let mut c = cfg(Path::new("/tmp"));
        c.max_connections = 32;
        c.allowed_uids = vec![1000, 1001];
        let door = Door::new(c, &core()).unwrap();
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(door.admit(1000, 1000).unwrap());
        }
        for _ in 0..100 {
            assert_eq!(door.admit(1000, 1000).unwrap_err(), Refusal::BusyUid);
        }
        assert_eq!(door.slots.available_permits(), 24);
        // Another allowed uid has its own eight; root (sshd, sudo) is not capped per uid.
        held.push(door.admit(1001, 1001).unwrap());
        let root: Vec<_> = (0..23).map(|_| door.admit(0, 0).unwrap()).collect();
        assert_eq!(door.admit(0, 0).unwrap_err(), Refusal::Busy);
        drop(root);
        held.truncate(2);
        assert!(door.admit(1000, 1000).is_ok());
    }

    #[tokio::test]
    async fn forbidden_peers_are_closed_at_once_and_hold_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.max_connections = 1;
        c.read_timeout = Duration::from_secs(5);
        let run = start_with(c, Fake::default(), as_stranger).await;
        let sock = run.socket.clone();
        let door = run.door.clone();
        let (held, slots_meanwhile) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut held = Vec::new();
            for _ in 0..50 {
                // Never sends a hello: the old door waited a second for it, holding a slot.
                let (s, what) = silent_connect(&sock, Duration::from_secs(3));
                assert_eq!(what, Ok(Some(ErrorKind::Forbidden)));
                held.push(s);
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            let slots = door.slots.available_permits();
            (held, slots)
        })
        .await
        .unwrap();
        assert_eq!(slots_meanwhile, 1, "a forbidden peer holds a slot");
        assert!(run.door.per_uid.lock().unwrap().is_empty());
        // The module's own client still reads the reason.
        let out = rounds_blocking(&run.socket, vec![]).await;
        assert!(
            matches!(
                &out[..],
                [Err(IpcError::Server {
                    kind: ErrorKind::Forbidden,
                    ..
                })]
            ),
            "{out:?}"
        );
        assert!(run.fake.seen.lock().unwrap().is_empty());
        drop(held);
        run.stop().await;
    }

    #[tokio::test]
    async fn a_uid_over_its_cap_is_told_busy_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let me = own_uid();
        let mut c = cfg(dir.path());
        c.allowed_uids = vec![me];
        c.max_connections = 8;
        c.max_connections_per_uid = 2;
        c.read_timeout = Duration::from_secs(5);
        let run = start_with(c.clone(), Fake::default(), as_stranger).await;
        let sock = run.socket.clone();
        let door = run.door.clone();
        let idle = tokio::task::spawn_blocking(move || {
            let idle: Vec<_> = (0..2)
                .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
                .collect();
            // Until the door has counted both (a loaded machine may take seconds to accept).
            let counted = (0..1000).any(|_| {
                let both = door.per_uid.lock().unwrap().get(&me) == Some(&2);
                if !both {
                    std::thread::sleep(Duration::from_millis(10));
                }
                both
            });
            assert!(
                counted,
                "the door did not count the two idle connections in 10 s"
            );
            for _ in 0..20 {
                // "At once" on an idle machine; 10 s only so a loaded one cannot fail it.
                let (_s, what) = silent_connect(&sock, Duration::from_secs(10));
                assert_eq!(what, Ok(Some(ErrorKind::Busy)));
            }
            idle
        })
        .await
        .unwrap();
        // Only the two idle ones hold slots; a real round of this uid waits for one of them.
        assert_eq!(run.door.slots.available_permits(), 6);
        let out = rounds_blocking(&run.socket, vec![req("sshd", "a", Some("123456"), None)]).await;
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
        drop(idle);
        let mut ok = false;
        for _ in 0..250 {
            let out =
                rounds_blocking(&run.socket, vec![req("sshd", "a", Some("123456"), None)]).await;
            if matches!(&out[..], [Ok(ipc::Outcome::Accept(_))]) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "the uid's slots never came back");
        run.stop().await;

        // Root is not capped per uid: six idle connections, and its round is still served.
        let run = start_with(c, Fake::default(), |d| {
            d.root = Some(me);
            d.own_uid = None;
        })
        .await;
        let sock = run.socket.clone();
        let idle = tokio::task::spawn_blocking(move || {
            (0..6)
                .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        let out = rounds_blocking(&run.socket, vec![req("sshd", "a", Some("123456"), None)]).await;
        assert!(matches!(&out[..], [Ok(ipc::Outcome::Accept(_))]), "{out:?}");
        assert!(run.door.per_uid.lock().unwrap().is_empty());
        drop(idle);
        run.stop().await;
    }

    #[test]
    fn accept_failures_back_off_are_counted_and_logged_once_a_second() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let door = Door::new(cfg(Path::new("/tmp")), &core()).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            let emfile = io::Error::from_raw_os_error(libc::EMFILE);
            let pauses: Vec<Duration> = (1..=8).map(|n| door.accept_failed(&emfile, n)).collect();
            assert_eq!(pauses[0], ACCEPT_BACKOFF_MIN);
            assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
            assert_eq!(pauses[7], ACCEPT_BACKOFF_MAX);
            assert_eq!(door.accept_failed(&emfile, u32::MAX), ACCEPT_BACKOFF_MAX);
            for e in [libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
                assert!(door.accept_failed(&io::Error::from_raw_os_error(e), 1) > Duration::ZERO);
            }
            // Anything else still pauses: nothing can make the loop spin.
            let other = io::Error::from_raw_os_error(libc::ECONNABORTED);
            assert_eq!(door.accept_failed(&other, 1), ACCEPT_PAUSE_OTHER);
            for n in 0..1000 {
                door.accept_failed(&emfile, n);
            }
            std::thread::sleep(Duration::from_millis(1100));
            door.accept_failed(&emfile, 1);
        });
        assert_eq!(
            door.accept_failures.load(Ordering::Relaxed),
            1 + 8 + 1 + 3 + 1 + 1000
        );
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("PAM socket accept failed"))
            .collect();
        assert!((2..=3).contains(&lines.len()), "{text}");
        let held_back: u64 = lines.iter().map(|l| suppressed_of(l)).sum();
        assert_eq!(held_back + lines.len() as u64, 1014, "{text}");
        assert!(lines.last().unwrap().contains("failures=1014"), "{text}");
    }

    fn suppressed_of(line: &str) -> u64 {
        let at = line.find("suppressed=").expect("a suppressed count") + "suppressed=".len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn floods_from_a_peer_are_logged_once_a_second_with_a_count() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();

        let dir = tempfile::tempdir().unwrap();
        let run = start_with(cfg(dir.path()), Fake::default(), as_stranger).await;
        let sock = run.socket.clone();
        // Two bursts in two different seconds: the second one's line counts the first's rest.
        tokio::task::spawn_blocking(move || {
            for burst in 0..2 {
                if burst == 1 {
                    std::thread::sleep(Duration::from_millis(1100));
                }
                for _ in 0..150 {
                    let (_s, what) = silent_connect(&sock, Duration::from_secs(3));
                    assert_eq!(what, Ok(Some(ErrorKind::Forbidden)));
                }
            }
        })
        .await
        .unwrap();
        run.stop().await;

        // An allowed peer that sends nonsense, first with a line-forging user name.
        let run = start(cfg(dir.path()), Fake::default()).await;
        let forged = req(
            "sshd\nINFO accepted",
            "mallory\n2026 INFO login ok",
            None,
            None,
        );
        let mut bad = vec![forged];
        bad.extend(std::iter::repeat_n(req("sshd", "", Some("1"), None), 200));
        rounds_blocking(&run.socket, bad).await;
        run.stop().await;

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let refused: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("refused a PAM connection"))
            .collect();
        // 300 refusals (and the start-up probe): a line or three, not 300.
        assert!((2..=4).contains(&refused.len()), "{text}");
        assert!(refused.iter().any(|l| suppressed_of(l) >= 100), "{text}");
        let malformed = text
            .lines()
            .filter(|l| l.contains("malformed PAM request"))
            .count();
        assert!((1..=3).contains(&malformed), "{text}");
        assert!(
            text.contains("user=mallory\\u{a}2026 INFO login ok"),
            "{text}"
        );
        assert!(!text.contains("\nINFO accepted"), "{text}");
        assert!(!text.contains("\n2026 INFO login ok"), "{text}");
    }

    #[tokio::test]
    async fn socket_is_0660_with_the_configured_group_in_0750_directories() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        std::fs::write(&probe, "").unwrap();
        let own_gid = std::fs::metadata(&probe).unwrap().gid();
        // Root may give the socket any group; anyone else one of their own.
        let gid = if own_uid() == 0 { 4242 } else { own_gid };
        let mut c = cfg(dir.path());
        c.socket_group = Some(GroupSpec::Id(gid));
        let run = start(c, Fake::default()).await;
        let md = std::fs::metadata(&run.socket).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o660);
        assert_eq!(md.gid(), gid);
        for d in ["run", "run/vip"] {
            let md = std::fs::metadata(dir.path().join(d)).unwrap();
            assert_eq!(md.permissions().mode() & 0o777, 0o750, "{d}");
            assert_eq!(md.gid(), gid, "{d}");
        }
        // The directory that was there already is left alone.
        assert_eq!(std::fs::metadata(dir.path()).unwrap().gid(), own_gid);
        let out = rounds_blocking(&run.socket, vec![req("sshd", "a", Some("123456"), None)]).await;
        assert!(matches!(&out[..], [Ok(ipc::Outcome::Accept(_))]), "{out:?}");
        run.stop().await;
    }

    #[test]
    fn socket_group_names_resolve_from_the_group_file() {
        let text = "root:x:0:\nvip:x:5:\nvip-pam:x:990:alice,bob\nbroken\n";
        assert_eq!(gid_of("vip-pam", text), Some(990));
        assert_eq!(gid_of("vip", text), Some(5));
        assert_eq!(gid_of("vip-p", text), None);
        assert_eq!(gid_of("broken", text), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("group");
        std::fs::write(&file, text).unwrap();
        let name = |n: &str| GroupSpec::Name(n.into());
        assert_eq!(name("vip-pam").resolve_in(&file), Ok(990));
        assert_eq!(name("77").resolve_in(&file), Ok(77));
        assert_eq!(GroupSpec::Id(12).resolve_in(&file), Ok(12));
        let err = name("nope").resolve_in(&file).unwrap_err();
        assert!(err.contains("no group called \"nope\""), "{err}");
    }

    #[test]
    fn the_packaged_pam_example_names_the_defaults() {
        let text = include_str!("../../packaging/vip-bridge.toml");
        let section: String = text
            .lines()
            .skip_while(|l| *l != "# [pam]")
            .skip(1)
            .take_while(|l| l.starts_with("# ") || *l == "#")
            .map(|l| l.trim_start_matches('#').trim_start())
            .map(|l| format!("{l}\n"))
            .collect();
        let c: PamConfig = toml::from_str(&section).unwrap_or_else(|e| panic!("{section}: {e}"));
        let d = PamConfig::default();
        assert_eq!(c.socket_group, Some(GroupSpec::Name("vip-bridge".into())));
        assert_eq!(c.max_connections_per_uid, d.max_connections_per_uid);
        assert_eq!(c.max_connections, d.max_connections);
        assert_eq!(c.read_timeout, d.read_timeout);
        assert_eq!(c.socket, d.socket);
    }
}
