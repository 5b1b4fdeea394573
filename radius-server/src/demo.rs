//! `vip-bridge demo`: a complete bridge in one process against an in-process VIP simulator
//! (or, with `--backend trustbuilder`, the TrustBuilder MFA simulator), on loopback, with deliberately PUBLIC demo secrets (TOTP secrets, RADIUS secret). Prints
//! what to paste to try it: radtest, radclient (the SMS challenge), pamtester (libpam-wrapper),
//! the current code, the otpauth:// URIs for an authenticator app. It runs with the daemon's
//! default log level, so its login lines are those `vip-bridge serve` writes.
//!
//! The simulator's admin API listens on TCP 127.0.0.1 at the RADIUS port number: that is how
//! `vip-bridge demo code USER --sms` (another process) finds the code the demo "texted".

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use vip_core::engine::Authenticate;
use vip_core::metrics::Metrics;

use crate::cli::{DemoArgs, DemoBackend, DemoCodeArgs, DEMO_PORT};
use crate::config;
use crate::daemon;
use crate::error::{Error, Result};

/// The RADIUS secret of the demo client (public: it is the demo).
pub const DEMO_RADIUS_SECRET: &str = "demo-secret";

/// alice's (simulated) SMS number.
const ALICE_PHONE: &str = "15555550100";

/// Demo users and their TOTP secrets. PUBLIC, fixed, for the demo only: never use them for
/// anything real.
pub const DEMO_USERS: [(&str, &str, &str); 3] = [
    (
        "alice",
        "JBSWY3DPEHPK3PXPALICE234",
        "code; push (her phone approves after 2 s); sms (to 15555550100)",
    ),
    (
        "bob",
        "JBSWY3DPEHPK3PXPBOBBOB23",
        "code; push (his phone denies after 1 s)",
    ),
    (
        "carol",
        "JBSWY3DPEHPK3PXPCAROL234",
        "code; push (her phone approves after 5 s)",
    ),
];

/// The demo user named `user` (case-insensitive): its canonical name and TOTP secret.
fn demo_user(user: &str) -> Result<(&'static str, &'static str)> {
    DEMO_USERS
        .iter()
        .find(|(u, _, _)| u.eq_ignore_ascii_case(user))
        .map(|(u, s, _)| (*u, *s))
        .ok_or_else(|| {
            Error::Demo(format!(
                "no demo user {user:?} (there are alice, bob and carol)"
            ))
        })
}

/// The demo TOTP secret of `user`.
pub fn secret_of(user: &str) -> Result<&'static str> {
    demo_user(user).map(|(_, s)| s)
}

/// `vip-bridge demo code USER`: the user's current code (RFC 6238, SHA-1, 30 s, 6 digits);
/// with `--sms`, the code the running demo last texted the user.
pub fn code(args: &DemoCodeArgs) -> Result<String> {
    if args.sms {
        return sms_code(&args.user, args.port);
    }
    let secret = secret_of(&args.user)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(vip_sim::totp::code(secret, now, 6))
}

/// The code the demo listening on `port` last "sent" to `user` by SMS: asked of its
/// simulator's admin API (`GET /sent-codes/USER`, plain HTTP on TCP 127.0.0.1:`port`).
pub fn sms_code(user: &str, port: u16) -> Result<String> {
    let (user, _) = demo_user(user)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = if port == DEMO_PORT {
        "vip-bridge demo".to_owned()
    } else {
        format!("vip-bridge demo --port {port}")
    };
    let not_there = |e: std::io::Error| {
        Error::Demo(format!(
            "no vip-bridge demo answers on TCP {addr} ({e}): start one with `{start}` (a demo \
             started with --port N needs `--port N` here too)"
        ))
    };
    let timeout = Duration::from_secs(5);
    let mut conn = TcpStream::connect_timeout(&addr, timeout).map_err(not_there)?;
    conn.set_read_timeout(Some(timeout)).map_err(not_there)?;
    conn.set_write_timeout(Some(timeout)).map_err(not_there)?;
    conn.write_all(
        format!("GET /sent-codes/{user} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .map_err(not_there)?;
    let mut answer = Vec::new();
    conn.take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(not_there)?;
    parse_sent_code(&answer).map_err(|why| match why {
        SentCode::NotSent => Error::Demo(format!(
            "the demo has sent {user} no code yet: a login with the password `sms` asks for one"
        )),
        SentCode::NotTheDemo => Error::Demo(format!(
            "what answers on TCP {addr} is not a vip-bridge demo (start one with `{start}`)"
        )),
    })
}

enum SentCode {
    NotSent,
    NotTheDemo,
}

/// The code in the simulator's answer to `GET /sent-codes/USER`: `200` with `{"code":"…"}`,
/// or `404` when nothing was sent.
fn parse_sent_code(answer: &[u8]) -> std::result::Result<String, SentCode> {
    let text = std::str::from_utf8(answer).map_err(|_| SentCode::NotTheDemo)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or(SentCode::NotTheDemo)?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .ok_or(SentCode::NotTheDemo)?;
    match status {
        "200" => {}
        "404" => return Err(SentCode::NotSent),
        _ => return Err(SentCode::NotTheDemo),
    }
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if a < b => &body[a..=b],
        _ => return Err(SentCode::NotTheDemo),
    };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| SentCode::NotTheDemo)?;
    match v.get("code").and_then(|c| c.as_str()) {
        Some(c) if (6..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(c.to_owned())
        }
        _ => Err(SentCode::NotTheDemo),
    }
}

/// What each demo user can do against the TrustBuilder simulator (no SMS there).
const TRUSTBUILDER_ABILITIES: [&str; 3] = [
    "code; push (her app approves after 2 s)",
    "code; push (his app refuses after 1 s)",
    "code; push (her app approves after 5 s)",
];

/// The service id of the demo's TrustBuilder account.
const DEMO_SERVICE_ID: u64 = 4242;

fn otpauth_uri(user: &str, secret: &str) -> String {
    format!("otpauth://totp/vip-bridge-demo:{user}?secret={secret}&issuer=vip-bridge-demo&algorithm=SHA1&digits=6&period=30")
}

/// The simulator: admin API on TCP `admin_port` (0: any). The account does not require Number
/// Challenge, so the RADIUS client's blocking pushes work (a blocking push cannot show the
/// number; on an account that requires it VIP refuses such pushes with 7008).
fn sim_toml(certs: &vip_sim::certs::CertPaths, admin_port: u16) -> String {
    let mut s = format!(
        "[server]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\n\
         [tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\n[policy]\nnumber_challenge = false\n\n",
        certs.server_cert, certs.server_key, certs.ca_cert
    );
    for (i, (user, secret, _)) in DEMO_USERS.iter().enumerate() {
        let push = match *user {
            "alice" => "{ action = \"approve\", delay_ms = 2000 }",
            "bob" => "{ action = \"deny\", delay_ms = 1000 }",
            _ => "{ action = \"approve\", delay_ms = 5000 }",
        };
        let phones = if *user == "alice" {
            format!("sms_phones = [\"{ALICE_PHONE}\"]\n")
        } else {
            String::new()
        };
        s.push_str(&format!(
            "[[users]]\nid = \"{user}\"\n{phones}push = {push}\n\n[[users.credentials]]\n\
             id = \"VSMT{:08}\"\ntotp_secret = \"{secret}\"\npush = true\nfriendly_name = \"{user}'s phone\"\n\n",
            i + 1
        ));
    }
    s
}

/// The TrustBuilder simulator with the same users, each with a mobile app (the same public
/// TOTP secrets, so `demo code USER` works for both) that answers pushes like their VIP phone.
fn tb_sim_toml(certs: &vip_sim::certs::CertPaths, admin_port: u16) -> String {
    let mut s = format!(
        "[server]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\n\
         [tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\n[service]\nid = {DEMO_SERVICE_ID}\n\n",
        certs.server_cert, certs.server_key, certs.ca_cert
    );
    for (i, (user, secret, _)) in DEMO_USERS.iter().enumerate() {
        let push = match *user {
            "alice" => "{ action = \"approve\", after = \"2s\" }",
            "bob" => "{ action = \"refuse\", after = \"1s\" }",
            _ => "{ action = \"approve\", after = \"5s\" }",
        };
        let seed = vip_sim::totp::decode_base32(secret)
            .map(hex::encode)
            .unwrap_or_default();
        s.push_str(&format!(
            "[[users]]\nlogin = \"{user}\"\n\n[[users.tools]]\nkind = \"ma\"\nid = {}\n\
             name = \"{user}'s phone\"\nalias = \"demo{:04}\"\nseed = \"{seed}\"\n\
             push_enabled = true\npush = {push}\n\n",
            i + 1,
            i + 1
        ));
    }
    s
}

/// The MFA section of the demo's configuration: `[vip]`, or `backend` + `[trustbuilder]`.
fn backend_toml(backend: DemoBackend, base_url: &str, certs: &vip_sim::certs::CertPaths) -> String {
    match backend {
        DemoBackend::Vip => format!(
            r#"[vip]
auth_url = "{base_url}/vipuserservices/AuthenticationService_1_10"
query_url = "{base_url}/vipuserservices/QueryService_1_10"
management_url = "{base_url}/vipuserservices/ManagementService_1_10"
cert_file = {cert:?}
key_file = {key:?}
ca_file = {ca:?}
timeout = "5s"
request_id_prefix = "demo"
"#,
            cert = certs.client_cert,
            key = certs.client_key,
            ca = certs.ca_cert,
        ),
        DemoBackend::Trustbuilder => format!(
            r#"backend = "trustbuilder"

[trustbuilder]
service_id = {DEMO_SERVICE_ID}
api_url = "{base_url}"
pkcs12_file = {p12:?}
pkcs12_password_file = {p12_password:?}
ca_file = {ca:?}
timeout = "5s"
"#,
            p12 = certs.client_p12,
            p12_password = certs.p12_password_file,
            ca = certs.ca_cert,
        ),
    }
}

fn bridge_toml(
    backend: DemoBackend,
    base_url: &str,
    certs: &vip_sim::certs::CertPaths,
    port: u16,
    dir: &Path,
) -> String {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    format!(
        r#"# Written by `vip-bridge demo`: a working configuration against the built-in simulator.
{mfa}
[engine]
poll_interval = "1s"
# Seals the State of multi-round logins (SMS, push-then-Enter); written by the demo.
state_key_file = {state_key:?}

# RADIUS (radtest, VPNs): blocking push, answered within radtest's patience.
[policies.default]
push_timeout = "20s"

# PAM (pamtester, ssh): a menu, push-then-Enter (with the number when the VIP account
# requires Number Challenge; the demo's simulated account does not).
[policies.pam]
mode = "challenge"
push_mode = "challenge"
number_challenge = true
push_timeout = "60s"

[radius]
listen = ["127.0.0.1:{port}"]

[[radius.clients]]
name = "demo"
address = "127.0.0.0/8"
secret = "{secret}"
# require_message_authenticator is true (the default): radtest and radclient send it.

[pam]
socket = {sock:?}
allowed_uids = [{uid}]
default_policy = "pam"

[metrics]
listen = "127.0.0.1:0"

[log]
# The daemon's default: one "login round finished" line per login, user included.
level = "info"
"#,
        mfa = backend_toml(backend, base_url, certs),
        state_key = dir.join("state.key"),
        secret = DEMO_RADIUS_SECRET,
        sock = dir.join("pam.sock"),
    )
}

/// Writes a fresh State key (`openssl rand -hex 32`, mode 0600) unless `path` already holds
/// one (a kept `--dir`).
fn write_state_key(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let key: [u8; 32] = rand::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
}

/// The system's library directories: Debian's multiarch ones (`/usr/lib/<triple>`, whatever
/// the architecture), then `/usr/lib`.
fn library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains("-linux-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.push(PathBuf::from("/usr/lib"));
    dirs
}

/// Where pam_vip.so is: next to this binary (a cargo build), or installed (the package puts it
/// in the multiarch security directory).
fn pam_module(exe_dir: Option<&Path>) -> Option<PathBuf> {
    let mut c: Vec<PathBuf> = library_dirs()
        .into_iter()
        .map(|d| d.join("security/pam_vip.so"))
        .collect();
    if let Some(d) = exe_dir {
        c.insert(0, d.join("libpam_vip.so"));
    }
    c.into_iter().find(|p| p.is_file())
}

fn pam_wrapper() -> Option<PathBuf> {
    library_dirs()
        .into_iter()
        .map(|d| d.join("libpam_wrapper.so"))
        .find(|p| p.exists())
}

fn local_user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .map(|t| t.lines().any(|l| l.split(':').next() == Some(name)))
        .unwrap_or(false)
}

/// The first `name` on `path_var` (as a shell would find it).
fn find_in_path(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A word for a POSIX shell: as is when it is plain, else in single quotes.
fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// How to run this program in the printed commands: `vip-bridge` when the shell finds this
/// very file under that name on `path_var`, else its full path (a source build:
/// target/debug/vip-bridge, target/release/vip-bridge).
fn command_for(exe: Option<&Path>, path_var: Option<&OsStr>) -> String {
    let Some(exe) = exe else {
        return "vip-bridge".into();
    };
    let same = |p: &Path| match (std::fs::canonicalize(p), std::fs::canonicalize(exe)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if find_in_path("vip-bridge", path_var).is_some_and(|p| same(&p)) {
        return "vip-bridge".into();
    }
    sh_quote(&exe.display().to_string())
}

/// This executable (Linux names a replaced one "PATH (deleted)").
fn current_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let shown = exe.to_string_lossy();
    match shown.strip_suffix(" (deleted)") {
        Some(p) => Some(PathBuf::from(p)),
        None => Some(exe),
    }
}

/// The demo's simulator: VIP's or TrustBuilder's.
enum DemoSim {
    Vip(vip_sim::Sim),
    Trustbuilder(vip_sim::TbSim),
}

impl DemoSim {
    async fn start(
        backend: DemoBackend,
        certs: &vip_sim::certs::CertPaths,
        port: u16,
    ) -> std::result::Result<DemoSim, String> {
        let e = |e: vip_sim::SimError| e.to_string();
        Ok(match backend {
            DemoBackend::Vip => {
                let cfg = vip_sim::SimConfig::from_toml_str(&sim_toml(certs, port))
                    .map_err(|e| format!("simulator configuration: {e}"))?;
                DemoSim::Vip(vip_sim::Sim::start(cfg).await.map_err(e)?)
            }
            DemoBackend::Trustbuilder => {
                let cfg = vip_sim::TbSimConfig::from_toml_str(&tb_sim_toml(certs, port))
                    .map_err(|e| format!("simulator configuration: {e}"))?;
                DemoSim::Trustbuilder(vip_sim::TbSim::start(cfg).await.map_err(e)?)
            }
        })
    }

    fn base_url(&self) -> String {
        match self {
            DemoSim::Vip(s) => s.base_url(),
            DemoSim::Trustbuilder(s) => s.base_url(),
        }
    }

    fn admin_addr(&self) -> Option<SocketAddr> {
        match self {
            DemoSim::Vip(s) => s.admin_addr(),
            DemoSim::Trustbuilder(s) => s.admin_addr(),
        }
    }

    /// The code last "texted" to `user` (VIP only: TrustBuilder sends no SMS).
    fn last_sent_code(&self, user: &str) -> Option<String> {
        match self {
            DemoSim::Vip(s) => s.last_sent_code(user),
            DemoSim::Trustbuilder(_) => None,
        }
    }

    async fn shutdown(self) {
        match self {
            DemoSim::Vip(s) => s.shutdown().await,
            DemoSim::Trustbuilder(s) => s.shutdown().await,
        }
    }
}

/// Starts the simulator with its admin API on TCP `port`, or (port 0) on a port number whose
/// UDP twin on 127.0.0.1 is free for RADIUS. Returns it and that port.
async fn start_sim(
    backend: DemoBackend,
    certs: &vip_sim::certs::CertPaths,
    port: u16,
) -> Result<(DemoSim, u16)> {
    for _ in 0..20 {
        let sim = DemoSim::start(backend, certs, port).await.map_err(|e| {
            Error::Demo(format!(
                "starting the simulator: {e} (the demo uses TCP and UDP port {port} on \
                 127.0.0.1; choose another with --port, 0 for any)"
            ))
        })?;
        let admin = sim.admin_addr().map(|a| a.port()).unwrap_or(0);
        if port != 0 {
            return Ok((sim, port));
        }
        if admin != 0 && std::net::UdpSocket::bind(("127.0.0.1", admin)).is_ok() {
            return Ok((sim, admin));
        }
        sim.shutdown().await;
    }
    Err(Error::Demo(
        "found no port free for both TCP and UDP on 127.0.0.1".into(),
    ))
}

/// `vip-bridge demo`: runs until SIGINT / SIGTERM.
pub async fn run(args: &DemoArgs) -> Result<()> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| Error::Io { what, source }
    };
    // The directory: given (kept), or temporary (removed at the end).
    let (dir, _temp) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(io("creating the demo directory"))?;
            let d = std::fs::canonicalize(d).map_err(io("finding the demo directory"))?;
            (d, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("vip-bridge-demo-")
                .tempdir()
                .map_err(io("creating a temporary directory"))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let certs = vip_sim::certs::generate(&dir.join("certs"))
        .map_err(|e| Error::Demo(format!("generating certificates: {e}")))?;
    write_state_key(&dir.join("state.key")).map_err(io("writing the demo's State key"))?;
    let (sim, port) = start_sim(args.backend, &certs, args.port).await?;

    let config_path = dir.join("vip-bridge.toml");
    std::fs::write(
        &config_path,
        bridge_toml(args.backend, &sim.base_url(), &certs, port, &dir),
    )
    .map_err(io("writing the demo configuration"))?;
    let cfg = match config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            sim.shutdown().await;
            return Err(e);
        }
    };
    daemon::init_logging(&cfg.log)?;
    let mut registry = daemon::new_registry();
    let engine = cfg
        .core
        .build_engine_with_metrics(Metrics::new(&mut registry))?;
    let auth: Arc<dyn Authenticate> = engine;
    let shutdown = Arc::new(watch::channel(false).0);
    daemon::spawn_signal_handler(shutdown.clone())?;
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let mut task = tokio::spawn(daemon::serve(
        cfg,
        auth,
        registry,
        Some(ready.clone()),
        shutdown.clone(),
    ));

    // Wait for the ready file (or an early failure, e.g. the port is taken).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let ready_doc = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                break v;
            }
        }
        if task.is_finished() || tokio::time::Instant::now() > deadline {
            shutdown.send_replace(true);
            let r = (&mut task).await;
            sim.shutdown().await;
            return match r {
                Ok(Err(e)) => Err(e),
                _ => Err(Error::Demo("the bridge did not start".into())),
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let radius = ready_doc["radius"][0].as_str().unwrap_or("").to_owned();
    let metrics = ready_doc["metrics"].as_str().unwrap_or("").to_owned();
    let exe = current_exe();
    let place = Place {
        backend: args.backend,
        dir: &dir,
        radius: &radius,
        port,
        metrics: &metrics,
        exe: exe.as_deref(),
        cmd: command_for(exe.as_deref(), std::env::var_os("PATH").as_deref()),
    };
    print_instructions(&place);

    // Serve; meanwhile show every code the simulator "texts" to alice (the only demo user
    // with a phone number): this terminal is her phone.
    let mut last = sim.last_sent_code("alice");
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let joined = loop {
        tokio::select! {
            r = &mut task => break r,
            _ = tick.tick() => {
                let now = sim.last_sent_code("alice");
                if now != last {
                    if let Some(code) = &now {
                        println!(
                            "[demo phone] SMS to alice ({ALICE_PHONE}): your security code is {code}   \
                             (also: {} demo code alice --sms{})",
                            place.cmd,
                            place.port_arg()
                        );
                        let _ = std::io::stdout().flush();
                    }
                    last = now;
                }
            }
        }
    };
    let result = match joined {
        Ok(r) => r,
        Err(e) => Err(Error::Demo(format!("the bridge task failed: {e}"))),
    };
    sim.shutdown().await;
    println!("vip-bridge demo stopped.");
    result
}

/// Where the running demo is, for the printed text.
struct Place<'a> {
    backend: DemoBackend,
    dir: &'a Path,
    /// The RADIUS address, `127.0.0.1:PORT`.
    radius: &'a str,
    port: u16,
    metrics: &'a str,
    exe: Option<&'a Path>,
    /// How to run this program (see [`command_for`]).
    cmd: String,
}

impl Place<'_> {
    /// ` --port N` when the demo does not run on the default port.
    fn port_arg(&self) -> String {
        if self.port == DEMO_PORT {
            String::new()
        } else {
            format!(" --port {}", self.port)
        }
    }
}

fn print_instructions(p: &Place<'_>) {
    let cmd = &p.cmd;
    let radius = p.radius;
    let s = DEMO_RADIUS_SECRET;
    let sock = p.dir.join("pam.sock");
    let mut out = String::new();
    let mut line = |l: &str| {
        out.push_str(l);
        out.push('\n');
    };
    // A machine-readable line first (tests and scripts read it).
    line(&format!(
        "VIP_BRIDGE_DEMO {}",
        serde_json::json!({
            "radius": radius,
            "pam": sock.display().to_string(),
            "metrics": p.metrics,
            "dir": p.dir.display().to_string(),
            "radius_secret": s,
            "sim_admin": format!("127.0.0.1:{}", p.port),
        })
    ));
    line("");
    let service = match p.backend {
        DemoBackend::Vip => "a VIP simulator",
        DemoBackend::Trustbuilder => "a TrustBuilder MFA simulator (backend = \"trustbuilder\")",
    };
    line(&format!(
        "vip-bridge demo is running: {service}, the engine, RADIUS on {radius} (client 127.0.0.0/8, \
         secret {s}), PAM on {}.",
        sock.display()
    ));
    line(&format!(
        "Configuration it runs with: {}",
        p.dir.join("vip-bridge.toml").display()
    ));
    line(match p.backend {
        DemoBackend::Vip => "Its log (stderr) has one \"login round finished\" line per login: user, outcome, reason, VIP's request_ids.",
        DemoBackend::Trustbuilder => "Its log (stderr) has one \"login round finished\" line per login: user, outcome, reason.",
    });
    line("");
    line("Demo users (PUBLIC demo TOTP secrets: add them to an authenticator app if you like):");
    for (i, (user, secret, what)) in DEMO_USERS.into_iter().enumerate() {
        let what = match p.backend {
            DemoBackend::Vip => what,
            DemoBackend::Trustbuilder => TRUSTBUILDER_ABILITIES[i],
        };
        line(&format!("  {user:<6} {what}"));
        line(&format!("         {}", otpauth_uri(user, secret)));
    }
    line("");
    line("A demo user's current code (from the public secret; works without this process):");
    line(&format!("  {cmd} demo code alice"));
    line("");
    let missing = |prog: &str| find_in_path(prog, std::env::var_os("PATH").as_deref()).is_none();
    line(&format!(
        "RADIUS, in another terminal (radtest and radclient from freeradius-utils{}; both send \
         Message-Authenticator, which this demo requires):",
        if missing("radtest") || missing("radclient") {
            ": apt-get install freeradius-utils"
        } else {
            ""
        }
    ));
    line(&format!(
        "  radtest alice \"$({cmd} demo code alice)\" {radius} 0 {s}   # Access-Accept"
    ));
    line(&format!(
        "  radtest alice push {radius} 0 {s}   # Access-Accept after 2 s: alice's phone approves"
    ));
    line(&format!(
        "  radtest bob push {radius} 0 {s}     # Access-Reject after 1 s: bob's phone denies"
    ));
    line("");
    if p.backend == DemoBackend::Vip {
        sms_instructions(&mut line, p);
    }
    let exe_dir = p.exe.and_then(Path::parent);
    match (pam_module(exe_dir), pam_wrapper(), missing("pamtester")) {
        (Some(module), Some(wrapper), false) => {
            let pam_dir = p.dir.join("pam.d");
            let service = "vip-demo";
            let text = format!(
                "auth required {} socket={} timeout=60\naccount required pam_permit.so\nsession required pam_permit.so\n",
                module.display(),
                sock.display()
            );
            // `other` is what PAM falls back to; without it libpam-wrapper logs an error line.
            let other = "auth required pam_deny.so\naccount required pam_deny.so\n\
                         password required pam_deny.so\nsession required pam_deny.so\n";
            let wrote = std::fs::create_dir_all(&pam_dir)
                .and_then(|_| std::fs::write(pam_dir.join(service), text))
                .and_then(|_| std::fs::write(pam_dir.join("other"), other));
            if wrote.is_ok() {
                line("PAM (pamtester; libpam-wrapper reads the service from the demo's directory, /etc/pam.d is not");
                line("touched): carol gets a menu; type push (or just press Enter), wait until her phone approves");
                line("(5 s), then press Enter. PAM_SILENT: pam_vip.so also sends every \"press Enter\" prompt as an");
                line("info message (some OpenSSH versions hide the prompt); without it pamtester shows both.");
                if !local_user_exists("carol") {
                    let sudo = if is_root() { "" } else { "sudo " };
                    line(&format!(
                        "  (pam_vip.so serves local accounts only; create one first:  {sudo}useradd -M -s /usr/sbin/nologin carol)"
                    ));
                }
                line(&format!(
                    "  LD_PRELOAD={} PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR={} pamtester {service} carol 'authenticate(PAM_SILENT)'",
                    sh_quote(&wrapper.display().to_string()),
                    sh_quote(&pam_dir.display().to_string())
                ));
                line("");
            }
        }
        (module, wrapper, no_pamtester) => {
            let mut need = Vec::new();
            if no_pamtester || wrapper.is_none() {
                need.push("apt-get install pamtester libpam-wrapper".to_owned());
            }
            if module.is_none() {
                let release = exe_dir
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == "release");
                need.push(format!(
                    "cargo build{} -p pam_vip",
                    if release { " --release" } else { "" }
                ));
            }
            line(&format!(
                "PAM: for a pamtester line here, first: {}; then restart the demo.",
                need.join(", and ")
            ));
            line("");
        }
    }
    if !p.metrics.is_empty() {
        line(&format!("Metrics:  curl -s http://{}/metrics", p.metrics));
        line("");
    }
    line("Ctrl-C stops it.");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// The SMS challenge with radclient (VIP's simulator texts alice).
fn sms_instructions(line: &mut impl FnMut(&str), p: &Place<'_>) {
    let cmd = &p.cmd;
    let radius = p.radius;
    let s = DEMO_RADIUS_SECRET;
    line(
        "SMS: the password \"sms\" texts alice a code (this demo prints the text message here) and",
    );
    line("answers Access-Challenge with a State; the answer must carry that State and the code.");
    line("The first line keeps the State in $S, the second answers with the code the demo sent:");
    let ask = format!(
        "echo 'User-Name = \"alice\", User-Password = \"sms\", Message-Authenticator = 0x00' \
         | radclient -x {radius} auth {s}"
    );
    line(&format!(
        "  S=$({ask} | tee /dev/stderr | sed -n 's/^[[:space:]]*State = //p')"
    ));
    line(&format!(
        "  echo \"User-Name = \\\"alice\\\", User-Password = \\\"$({cmd} demo code alice --sms{})\\\", \
         State = $S, Message-Authenticator = 0x00\" | radclient -x {radius} auth {s}   # Access-Accept",
        p.port_arg()
    ));
    line("  (radclient says \"Expected Access-Accept got Access-Challenge\" for the first line: that is the challenge.)");
    line("");
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(user: &str) -> Result<String> {
        code(&DemoCodeArgs {
            user: user.into(),
            sms: false,
            port: DEMO_PORT,
        })
    }

    #[test]
    fn demo_secrets_decode_and_give_codes() {
        for (user, secret, _) in DEMO_USERS {
            assert!(vip_sim::totp::decode_base32(secret).is_some(), "{user}");
            let c = code_of(user).unwrap();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        assert!(code_of("mallory").is_err());
        assert_eq!(secret_of("ALICE").unwrap(), DEMO_USERS[0].1);
    }

    #[test]
    fn the_generated_configuration_loads() {
        let dir = tempfile::tempdir().unwrap();
        let certs = vip_sim::certs::generate(&dir.path().join("certs")).unwrap();
        write_state_key(&dir.path().join("state.key")).unwrap();
        let path = dir.path().join("vb.toml");
        std::fs::write(
            &path,
            bridge_toml(
                DemoBackend::Vip,
                "https://127.0.0.1:1",
                &certs,
                0,
                dir.path(),
            ),
        )
        .unwrap();
        let cfg = config::load(&path).unwrap();
        let r = cfg.radius.unwrap();
        let c = r.clients.lookup("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(c.secret(), DEMO_RADIUS_SECRET.as_bytes());
        // radtest and radclient send it: the demo keeps it required.
        assert!(c.require_message_authenticator);
        assert!(cfg.pam.is_some() && cfg.metrics.is_some());
        // The State key is set (no "random State key" warning) and loads.
        assert!(cfg.core.engine.state_key_file.is_some());
        cfg.core.check_engine().unwrap();
        // The daemon's default log level: the login lines carry the user (the `login` span).
        assert_eq!(cfg.log.level, "info");
        let sim = vip_sim::SimConfig::from_toml_str(&sim_toml(&certs, 0)).unwrap();
        assert!(!sim.policy.number_challenge);
        assert!(sim.server.admin_listen.is_some());
    }

    #[test]
    fn the_trustbuilder_configuration_loads_and_its_apps_show_the_demo_codes() {
        let dir = tempfile::tempdir().unwrap();
        let certs = vip_sim::certs::generate(&dir.path().join("certs")).unwrap();
        write_state_key(&dir.path().join("state.key")).unwrap();
        let path = dir.path().join("vb.toml");
        std::fs::write(
            &path,
            bridge_toml(
                DemoBackend::Trustbuilder,
                "https://127.0.0.1:1",
                &certs,
                0,
                dir.path(),
            ),
        )
        .unwrap();
        let cfg = config::load(&path).unwrap();
        assert_eq!(
            cfg.core.backend,
            vip_core::config::BackendKind::Trustbuilder
        );
        let tb = cfg.core.trustbuilder.as_ref().unwrap();
        assert_eq!(tb.service_id, DEMO_SERVICE_ID);
        cfg.core.check_engine().unwrap();
        let sim = vip_sim::TbSimConfig::from_toml_str(&tb_sim_toml(&certs, 0)).unwrap();
        assert_eq!(sim.users.len(), DEMO_USERS.len());
        // The app's seed is the demo secret: `demo code USER` shows what the app shows.
        for (u, (user, secret, _)) in sim.users.iter().zip(DEMO_USERS) {
            assert_eq!(u.login, user);
            let seed = u.tools[0].seed.as_deref().unwrap();
            assert_eq!(
                hex::decode(seed).unwrap(),
                vip_sim::totp::decode_base32(secret).unwrap()
            );
        }
    }

    #[test]
    fn the_state_key_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.key");
        write_state_key(&path).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(first.trim().len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write_state_key(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    }

    #[test]
    fn printed_commands_name_this_executable() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let exe = bin.join("vip-bridge");
        std::fs::write(&exe, b"").unwrap();
        let other = dir.path().join("elsewhere");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("vip-bridge"), b"").unwrap();
        let path = |dirs: &[&Path]| std::env::join_paths(dirs).unwrap();
        // Installed: the shell finds this very file as `vip-bridge`.
        assert_eq!(
            command_for(Some(&exe), Some(&path(&[Path::new("/nonexistent"), &bin]))),
            "vip-bridge"
        );
        // A source build not on PATH, or another vip-bridge first on PATH: the full path.
        let full = exe.display().to_string();
        assert_eq!(command_for(Some(&exe), Some(&path(&[&other]))), full);
        assert_eq!(command_for(Some(&exe), Some(&path(&[&other, &bin]))), full);
        assert_eq!(command_for(Some(&exe), None), full);
        assert_eq!(command_for(None, None), "vip-bridge");
        // A path a shell would split is quoted.
        assert_eq!(
            command_for(
                Some(Path::new("/home/me/my src/target/debug/vip-bridge")),
                None
            ),
            "'/home/me/my src/target/debug/vip-bridge'"
        );
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("/usr/bin/vip-bridge"), "/usr/bin/vip-bridge");
    }

    #[test]
    fn sent_code_answers() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n{\"code\":\"123456\"}";
        assert_eq!(parse_sent_code(ok).ok().as_deref(), Some("123456"));
        let none = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert!(matches!(parse_sent_code(none), Err(SentCode::NotSent)));
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n{\"code\":\"12\"}",
            b"HTTP/1.1 200 OK\r\n\r\n{\"code\":\"12345x\"}",
            b"HTTP/1.1 200 OK\r\n\r\n{\"code\":123456}",
            b"HTTP/1.1 200 OK\r\n\r\nnot json",
            b"HTTP/1.1 500 Oops\r\n\r\n{\"code\":\"123456\"}",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse_sent_code(bad), Err(SentCode::NotTheDemo)),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn sms_code_reads_the_running_simulator() {
        let dir = tempfile::tempdir().unwrap();
        let certs = vip_sim::certs::generate(&dir.path().join("certs")).unwrap();
        let (sim, port) = start_sim(DemoBackend::Vip, &certs, 0).await.unwrap();
        assert_eq!(sim.admin_addr().unwrap().port(), port);
        let ask = |user: &'static str| {
            tokio::task::spawn_blocking(move || sms_code(user, port).map_err(|e| e.to_string()))
        };
        let e = ask("alice").await.unwrap().unwrap_err();
        assert!(e.contains("no code yet"), "{e}");
        assert!(ask("mallory")
            .await
            .unwrap()
            .unwrap_err()
            .contains("mallory"));
        // A sendOtp as the bridge sends it, with the demo's own configuration.
        write_state_key(&dir.path().join("state.key")).unwrap();
        let path = dir.path().join("vb.toml");
        std::fs::write(
            &path,
            bridge_toml(DemoBackend::Vip, &sim.base_url(), &certs, 0, dir.path()),
        )
        .unwrap();
        let cfg = config::load(&path).unwrap();
        let client = vip_core::vip::VipClient::new(&cfg.core.vip).unwrap();
        let delivery = vip_core::vip::OtpDelivery::Sms {
            phone_number: ALICE_PHONE.into(),
        };
        client.send_otp("alice", &delivery).await.unwrap();
        let sent = sim.last_sent_code("alice").unwrap();
        assert_eq!(ask("ALICE").await.unwrap().unwrap(), sent);
        // bob has no phone: nothing was sent to him.
        assert!(ask("bob")
            .await
            .unwrap()
            .unwrap_err()
            .contains("no code yet"));
        // Another port: not the demo.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other_port = other.local_addr().unwrap().port();
        drop(other);
        let e = tokio::task::spawn_blocking(move || sms_code("alice", other_port))
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--port"), "{e}");
        sim.shutdown().await;
    }
}
