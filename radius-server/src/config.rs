//! The daemon's configuration file: the core sections (`vip`, `engine`, `policies`), the
//! RADIUS front door (`radius`), the PAM door (`pam`), metrics (`metrics`) and logging (`log`). Loading validates
//! everything serde cannot and returns ready-to-use values; every error names the file, the
//! key and the problem.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vip_core::config::{ConfigError, CoreConfig};
use vip_core::engine::{EngineConfig, LoginPolicy};
use vip_core::first_factor::DirectoryConfig;
use vip_core::secret::Secret;
use vip_core::vip::VipConfig;

use crate::error::Result;
use crate::pam_door::{self, PamConfig};
use crate::radius::clients::{parse_address, Client, ClientTable};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/vip-bridge/vip-bridge.toml";

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The MFA service: `"vip"` (default) or `"trustbuilder"`.
    #[serde(default)]
    pub backend: vip_core::config::BackendKind,
    #[serde(default)]
    pub vip: VipConfig,
    /// TrustBuilder MFA, with `backend = "trustbuilder"`.
    #[serde(default)]
    pub trustbuilder: Option<vip_core::trustbuilder::TrustBuilderConfig>,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub policies: BTreeMap<String, LoginPolicy>,
    /// First factors (LDAP / Active Directory, upstream RADIUS) that policies name.
    #[serde(default)]
    pub directories: BTreeMap<String, DirectoryConfig>,
    /// What several instances share (spent States, throttles): nothing, or a Redis.
    #[serde(default)]
    pub cluster: vip_core::store::ClusterConfig,
    /// The RADIUS front door; absent means no RADIUS listener (a PAM-only host).
    #[serde(default)]
    pub radius: Option<RadiusConfig>,
    /// The PAM door; absent means no PAM socket.
    #[serde(default)]
    pub pam: Option<PamConfig>,
    /// The Prometheus endpoint; absent means none.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[metrics]`: serve `GET /metrics` over plain HTTP.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// TCP address of the endpoint, e.g. `127.0.0.1:9812` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` (the endpoint has no authentication and no TLS).
    #[serde(default)]
    pub allow_remote: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, `vip_bridge=debug,info`... `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RadiusConfig {
    /// UDP addresses to listen on (IPv4 and IPv6; port 0 picks a free port).
    pub listen: Vec<SocketAddr>,
    /// UDP addresses for Accounting-Request (RFC 2866). Absent: every `listen` address with
    /// the port + 1 (port 0 stays 0); empty: accounting off.
    pub accounting_listen: Option<Vec<SocketAddr>>,
    /// How long answers are kept to resend on retransmits (RFC 5080: 5 to 30 s).
    #[serde(with = "humantime_serde")]
    pub response_cache_ttl: Duration,
    /// Requests processed at once; more are dropped (the NAS retransmits). A quarter on top is
    /// reserved for continuing logins (requests carrying a live State).
    pub max_in_flight: usize,
    /// Entries of the duplicate / response cache.
    pub response_cache_size: u64,
    /// Kernel receive buffer per listening socket, in bytes (SO_RCVBUF). The default 208 KiB
    /// holds only ~700 requests, so a login storm would be dropped by the kernel before
    /// vip-bridge sees it. Capped by net.core.rmem_max (a warning says so).
    pub receive_buffer: usize,
    /// On SIGTERM/SIGINT, how long in-flight logins may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub clients: Vec<ClientConfig>,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        RadiusConfig {
            listen: vec![
                SocketAddr::from(([127, 0, 0, 1], 1812)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 1812)),
            ],
            accounting_listen: None,
            response_cache_ttl: Duration::from_secs(15),
            max_in_flight: 4096,
            response_cache_size: 65_536,
            receive_buffer: 4 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(10),
            clients: Vec::new(),
        }
    }
}

fn default_policy() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub name: String,
    /// An IP address or a CIDR.
    pub address: String,
    pub secret: Option<Secret>,
    /// A file holding the secret (one trailing newline stripped).
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_policy")]
    pub policy: String,
    #[serde(default = "yes")]
    pub require_message_authenticator: bool,
}

/// The RADIUS front door, validated.
#[derive(Debug)]
pub struct RadiusSettings {
    pub listen: Vec<SocketAddr>,
    /// Empty: accounting off.
    pub accounting_listen: Vec<SocketAddr>,
    pub response_cache_ttl: Duration,
    pub response_cache_size: u64,
    pub max_in_flight: usize,
    pub receive_buffer: usize,
    pub clients: ClientTable,
}

/// A validated configuration.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub core: CoreConfig,
    pub radius: Option<RadiusSettings>,
    pub pam: Option<PamConfig>,
    /// Where to serve `GET /metrics`, when configured.
    pub metrics: Option<SocketAddr>,
    pub log: LogConfig,
    pub shutdown_timeout: Duration,
}

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Loaded> {
    let config: Config = vip_core::config::load_toml(path)?;
    resolve(path, config)
}

/// Parses and validates `text`; `path` names the source in errors and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Loaded> {
    let config: Config = vip_core::config::parse_toml(path, text)?;
    resolve(path, config)
}

fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        key: key.into(),
        message: message.into(),
    }
}

fn resolve(path: &Path, config: Config) -> Result<Loaded> {
    let Config {
        backend,
        vip,
        trustbuilder,
        engine,
        policies,
        directories,
        cluster,
        radius,
        pam,
        metrics,
        log,
    } = config;
    let core = CoreConfig {
        backend,
        vip,
        trustbuilder,
        engine,
        policies,
        directories,
        cluster,
        base_dir: path.parent().map(Path::to_owned).unwrap_or_default(),
    };
    core.validate(path)?;
    check_durations(path, radius.as_ref(), pam.as_ref())?;
    if let Some(pam) = &pam {
        pam_door::validate(pam, &core, path)?;
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.level) {
        return Err(invalid(path, "log.level", format!("{:?}: {e}", log.level)).into());
    }
    let shutdown_timeout = radius
        .as_ref()
        .map(|r| r.shutdown_timeout)
        .unwrap_or(Duration::from_secs(10));
    let radius = match radius {
        Some(r) => Some(resolve_radius(path, &core, r)?),
        None => None,
    };
    let metrics = match metrics {
        Some(m) if !m.listen.ip().is_loopback() && !m.allow_remote => {
            return Err(invalid(
                path,
                "metrics.listen",
                format!(
                    "{} is not a loopback address: the endpoint has no authentication; \
                     set metrics.allow_remote = true to serve it there anyway",
                    m.listen
                ),
            )
            .into())
        }
        Some(m) => Some(m.listen),
        None => None,
    };
    Ok(Loaded {
        path: path.to_owned(),
        core,
        radius,
        pam,
        metrics,
        log,
        shutdown_timeout,
    })
}

/// Whether `net` lies inside an address range reserved for documentation (RFC 5737's
/// TEST-NETs, RFC 3849's 2001:db8::/32): no NAS sends from there, so such a client is the
/// packaged example's placeholder left unfilled.
fn is_documentation_net(net: &ipnet::IpNet) -> bool {
    [
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",
    ]
    .iter()
    .filter_map(|d| d.parse::<ipnet::IpNet>().ok())
    .any(|d| d.contains(net))
}

/// The allowed range (inclusive) of the daemon's own duration keys; the core's are in
/// [`vip_core::config::bounds`]. `[metrics]` and `[log]` have none.
pub mod bounds {
    use std::time::Duration;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// `radius.response_cache_ttl`: RFC 5080 §2.2.2 says 5 to 30 seconds.
    pub const RESPONSE_CACHE_TTL: (Duration, Duration) = (s(5), s(30));
    /// `radius.shutdown_timeout`: 0s abandons in-flight logins at once.
    pub const SHUTDOWN_TIMEOUT: (Duration, Duration) = (Duration::ZERO, s(10 * 60));
    /// `pam.read_timeout`: one frame from the module, one reply write.
    pub const PAM_READ_TIMEOUT: (Duration, Duration) = (ms(100), s(5 * 60));
    /// `pam.request_timeout`: one decision; it must also exceed every PAM policy's
    /// push_timeout (at most 10m).
    pub const PAM_REQUEST_TIMEOUT: (Duration, Duration) = (s(1), s(15 * 60));
    /// `pam.connection_timeout`: a whole connection (at least request_timeout).
    pub const PAM_CONNECTION_TIMEOUT: (Duration, Duration) = (s(1), s(3600));
}

/// Bounds every duration key of `[radius]` and `[pam]` (before any other check of theirs, so
/// an absurd value is reported as itself), naming the file, the key and the allowed range.
fn check_durations(
    path: &Path,
    radius: Option<&RadiusConfig>,
    pam: Option<&PamConfig>,
) -> std::result::Result<(), ConfigError> {
    let mut keys: Vec<(&str, Duration, (Duration, Duration))> = Vec::new();
    if let Some(r) = radius {
        keys.push((
            "radius.response_cache_ttl",
            r.response_cache_ttl,
            bounds::RESPONSE_CACHE_TTL,
        ));
        keys.push((
            "radius.shutdown_timeout",
            r.shutdown_timeout,
            bounds::SHUTDOWN_TIMEOUT,
        ));
    }
    if let Some(p) = pam {
        keys.push(("pam.read_timeout", p.read_timeout, bounds::PAM_READ_TIMEOUT));
        keys.push((
            "pam.request_timeout",
            p.request_timeout,
            bounds::PAM_REQUEST_TIMEOUT,
        ));
        keys.push((
            "pam.connection_timeout",
            p.connection_timeout,
            bounds::PAM_CONNECTION_TIMEOUT,
        ));
    }
    for (key, value, (min, max)) in keys {
        vip_core::config::check_duration(path, key, value, min, max)?;
    }
    Ok(())
}

fn resolve_radius(path: &Path, core: &CoreConfig, r: RadiusConfig) -> Result<RadiusSettings> {
    if r.listen.is_empty() {
        return Err(invalid(path, "radius.listen", "give at least one address").into());
    }
    let accounting_listen = accounting_addresses(path, &r.listen, r.accounting_listen)?;
    let ttl = r.response_cache_ttl;
    if !(65_536..=268_435_456).contains(&r.receive_buffer) {
        return Err(invalid(
            path,
            "radius.receive_buffer",
            "must be between 65536 and 268435456 bytes",
        )
        .into());
    }
    if r.max_in_flight == 0 || r.max_in_flight > 100_000 {
        return Err(invalid(path, "radius.max_in_flight", "must be between 1 and 100000").into());
    }
    if r.response_cache_size < 16 {
        return Err(invalid(path, "radius.response_cache_size", "must be at least 16").into());
    }
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut clients = Vec::with_capacity(r.clients.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut nets = HashMap::new();
    for (i, c) in r.clients.into_iter().enumerate() {
        let key = |field: &str| format!("radius.clients[{i}].{field} (client {:?})", c.name);
        if c.name.trim().is_empty() {
            return Err(invalid(
                path,
                format!("radius.clients[{i}].name"),
                "may not be empty",
            )
            .into());
        }
        if let Some(j) = names.insert(c.name.clone(), i) {
            return Err(invalid(
                path,
                key("name"),
                format!("the same name as radius.clients[{j}]"),
            )
            .into());
        }
        let net = parse_address(&c.address).map_err(|m| invalid(path, key("address"), m))?;
        if is_documentation_net(&net) {
            return Err(invalid(
                path,
                key("address"),
                format!(
                    "{net} is a documentation address (RFC 5737 / RFC 3849), the packaged \
                     placeholder: put the address or CIDR your NAS sends its requests from"
                ),
            )
            .into());
        }
        if let Some((j, other)) = nets.insert(net, (i, c.name.clone())) {
            return Err(invalid(
                path,
                key("address"),
                format!("{net} is also the address of radius.clients[{j}] ({other:?}); each network may appear once"),
            )
            .into());
        }
        let secret = match (c.secret.clone(), &c.secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    path,
                    key("secret"),
                    "give either secret or secret_file, not both",
                )
                .into())
            }
            (None, None) => {
                return Err(
                    invalid(path, key("secret"), "missing: give secret or secret_file").into(),
                )
            }
            (Some(s), None) => {
                if s.is_empty() {
                    return Err(invalid(path, key("secret"), "may not be empty").into());
                }
                s
            }
            (None, Some(file)) => {
                let file = base.join(file);
                let s = read_secret_file(&file).map_err(|m| {
                    invalid(path, key("secret_file"), format!("{}: {m}", file.display()))
                })?;
                if s.is_empty() {
                    return Err(invalid(
                        path,
                        key("secret_file"),
                        format!("{}: the secret is empty", file.display()),
                    )
                    .into());
                }
                s
            }
        };
        let policy = core.policy(&c.policy).ok_or_else(|| {
            let known: Vec<&str> = core.policies.keys().map(String::as_str).collect();
            invalid(
                path,
                key("policy"),
                format!(
                    "no policy named {:?} (known: default{}{})",
                    c.policy,
                    if known.is_empty() { "" } else { ", " },
                    known.join(", ")
                ),
            )
        })?;
        if policy.enrollment != vip_core::engine::Enrollment::Off
            && policy.first_factor == vip_core::engine::FirstFactorKind::None
        {
            return Err(invalid(
                path,
                key("policy"),
                format!(
                    "policy {:?} has enrollment = \"after_first_factor\" but no first_factor: over RADIUS only the bridge's own password check (first_factor = \"ldap\" or \"radius\") proves the first factor, and enrollment is never offered without it; add first_factor, or use a policy without enrollment for this client",
                    c.policy
                ),
            )
            .into());
        }
        clients.push(Client::new(
            c.name,
            net,
            secret,
            c.policy,
            policy,
            c.require_message_authenticator,
        ));
    }
    Ok(RadiusSettings {
        listen: r.listen,
        accounting_listen,
        response_cache_ttl: ttl,
        response_cache_size: r.response_cache_size,
        max_in_flight: r.max_in_flight,
        receive_buffer: r.receive_buffer,
        clients: ClientTable::new(clients),
    })
}

/// `radius.accounting_listen`, resolved: as given, or by default each `listen` address with the
/// port + 1 (RFC 2866's 1813 next to 1812; port 0, any free port, stays 0).
fn accounting_addresses(
    path: &Path,
    listen: &[SocketAddr],
    given: Option<Vec<SocketAddr>>,
) -> Result<Vec<SocketAddr>> {
    let addrs = match given {
        Some(a) => a,
        None => listen
            .iter()
            .map(|a| {
                let port = match a.port() {
                    0 => Some(0),
                    p => p.checked_add(1),
                };
                port.map(|p| SocketAddr::new(a.ip(), p)).ok_or_else(|| {
                    invalid(
                        path,
                        "radius.accounting_listen",
                        format!(
                            "the default (each radius.listen port + 1) does not exist for {a}; \
                             set it, or accounting_listen = [] for no accounting"
                        ),
                    )
                })
            })
            .collect::<std::result::Result<_, _>>()?,
    };
    if let Some(a) = addrs.iter().find(|a| a.port() != 0 && listen.contains(a)) {
        return Err(invalid(
            path,
            "radius.accounting_listen",
            format!("{a} is also in radius.listen: accounting needs its own port"),
        )
        .into());
    }
    Ok(addrs)
}

/// The longest secret file read: far above any RADIUS secret, it stops a misnamed file
/// (`/dev/zero`, a log) from being read whole into memory.
const MAX_SECRET_FILE: usize = 4096;

/// Reads a secret file: UTF-8, one trailing newline (`\n` or `\r\n`) stripped.
fn read_secret_file(file: &Path) -> std::result::Result<Secret, String> {
    use std::io::Read;
    // Sized once for the longest file plus one octet: never reallocated, so no copy of the
    // secret is left behind.
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(MAX_SECRET_FILE + 1));
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_SECRET_FILE as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_SECRET_FILE {
        return Err(format!("longer than {MAX_SECRET_FILE} bytes: not a secret"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn parse_err(text: &str) -> String {
        match parse(Path::new("/etc/vb.toml"), text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(Error::Config(e)) => e.to_string(),
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }

    const CLIENT: &str = "[[radius.clients]]\nname = \"vpn\"\naddress = \"10.0.0.1\"\n";

    #[test]
    fn a_full_config_loads() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("s");
        std::fs::write(&secret_file, "from-file\n").unwrap();
        let text = format!(
            r#"
[policies.challenge]
mode = "challenge"

[radius]
listen = ["127.0.0.1:0", "[::1]:0"]
response_cache_ttl = "20s"
max_in_flight = 8

[[radius.clients]]
name = "vpn"
address = "10.0.0.0/8"
secret = "inline"
policy = "challenge"

[[radius.clients]]
name = "legacy"
address = "127.0.0.1"
secret_file = "{}"
require_message_authenticator = false

[log]
format = "json"
level = "debug"
"#,
            secret_file.display()
        );
        let cfg = parse(&dir.path().join("vb.toml"), &text).unwrap();
        let r = cfg.radius.unwrap();
        assert_eq!(r.listen.len(), 2);
        // Port 0 stays 0 in the default accounting addresses.
        assert_eq!(
            r.accounting_listen,
            vec![
                "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
                "[::1]:0".parse().unwrap()
            ]
        );
        assert_eq!(r.response_cache_ttl, Duration::from_secs(20));
        assert_eq!(r.max_in_flight, 8);
        assert_eq!(cfg.log.format, LogFormat::Json);
        let legacy = r.clients.lookup("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(legacy.secret(), b"from-file");
        assert!(!legacy.require_message_authenticator);
        let vpn = r.clients.lookup("10.9.9.9".parse().unwrap()).unwrap();
        assert_eq!(vpn.secret(), b"inline");
        assert!(vpn.require_message_authenticator);
        assert_eq!(vpn.policy.mode, vip_core::engine::PasswordMode::Challenge);
    }

    #[test]
    fn defaults() {
        let cfg = parse(Path::new("x.toml"), &format!("{CLIENT}secret = \"s\"\n")).unwrap();
        let r = cfg.radius.unwrap();
        assert_eq!(r.response_cache_ttl, Duration::from_secs(15));
        assert_eq!(r.listen.len(), 2);
        assert_eq!(
            r.accounting_listen,
            vec![
                "127.0.0.1:1813".parse::<SocketAddr>().unwrap(),
                "[::1]:1813".parse().unwrap()
            ]
        );
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(cfg.log.format, LogFormat::Text);
        assert!(parse(Path::new("x.toml"), "").unwrap().radius.is_none());
    }

    #[test]
    fn accounting_listen_default_off_and_given() {
        let radius = |keys: &str| {
            parse(
                Path::new("x.toml"),
                &format!("[radius]\n{keys}\n{CLIENT}secret = \"s\"\n"),
            )
            .unwrap()
            .radius
            .unwrap()
            .accounting_listen
        };
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            radius("listen = [\"0.0.0.0:11812\"]"),
            vec![a("0.0.0.0:11813")]
        );
        assert!(radius("accounting_listen = []").is_empty());
        assert_eq!(
            radius("accounting_listen = [\"127.0.0.1:1646\"]"),
            vec![a("127.0.0.1:1646")]
        );
        let e = parse_err(&format!(
            "[radius]\nlisten = [\"127.0.0.1:65535\"]\n{CLIENT}secret = \"s\"\n"
        ));
        assert!(e.contains("radius.accounting_listen"), "{e}");
        let e = parse_err(&format!(
            "[radius]\nlisten = [\"127.0.0.1:1812\"]\naccounting_listen = [\"127.0.0.1:1812\"]\n\
             {CLIENT}secret = \"s\"\n"
        ));
        assert!(
            e.contains("radius.accounting_listen") && e.contains("own port"),
            "{e}"
        );
    }

    #[test]
    fn documentation_addresses_are_the_unfilled_placeholder() {
        for addr in ["192.0.2.1", "198.51.100.0/25", "203.0.113.7", "2001:db8::1"] {
            let e = parse_err(&format!(
                "[[radius.clients]]\nname = \"vpn\"\naddress = \"{addr}\"\nsecret = \"s\"\n"
            ));
            assert!(
                e.contains("radius.clients[0].address") && e.contains("placeholder"),
                "{addr}: {e}"
            );
        }
        // A network that only contains a documentation range is a real (if wide) choice.
        for addr in ["192.0.0.0/16", "0.0.0.0/0", "2001::/16"] {
            parse(
                Path::new("x.toml"),
                &format!(
                    "[[radius.clients]]\nname = \"vpn\"\naddress = \"{addr}\"\nsecret = \"s\"\n"
                ),
            )
            .unwrap();
        }
    }

    #[test]
    fn enrollment_over_radius_needs_the_bridges_own_first_factor() {
        let e = parse_err(&format!(
            "{CLIENT}secret = \"s\"\npolicy = \"enroll\"\n[policies.enroll]\nenrollment = \"after_first_factor\"\n"
        ));
        assert!(
            e.starts_with("/etc/vb.toml: radius.clients[0].policy"),
            "{e}"
        );
        assert!(e.contains("no first_factor"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e = parse_err(&format!("{CLIENT}secret = \"s\"\npolicy = \"nope\"\n"));
        assert!(
            e.starts_with("/etc/vb.toml: radius.clients[0].policy"),
            "{e}"
        );
        assert!(e.contains("\"nope\""), "{e}");

        let e = parse_err(&format!("{CLIENT}secret = \"s\"\nsecret_file = \"/x\"\n"));
        assert!(
            e.contains("radius.clients[0].secret") && e.contains("not both"),
            "{e}"
        );

        let e = parse_err(CLIENT);
        assert!(
            e.contains("radius.clients[0].secret") && e.contains("missing"),
            "{e}"
        );

        let e = parse_err(&format!("{CLIENT}secret = \"\"\n"));
        assert!(
            e.contains("radius.clients[0].secret") && e.contains("empty"),
            "{e}"
        );

        let e = parse_err(&format!("{CLIENT}secret_file = \"/nonexistent/secret\"\n"));
        assert!(
            e.contains("radius.clients[0].secret_file") && e.contains("cannot read"),
            "{e}"
        );

        let e = parse_err(
            "[[radius.clients]]\nname = \"a\"\naddress = \"10.0.0.1/8\"\nsecret = \"s\"\n",
        );
        assert!(
            e.contains("radius.clients[0].address") && e.contains("host bits"),
            "{e}"
        );

        let e = parse_err(
            "[[radius.clients]]\nname = \"a\"\naddress = \"nas.example\"\nsecret = \"s\"\n",
        );
        assert!(e.contains("radius.clients[0].address"), "{e}");

        let e = parse_err(
            "[[radius.clients]]\nname = \"a\"\naddress = \"10.0.0.0/8\"\nsecret = \"s\"\n\
             [[radius.clients]]\nname = \"b\"\naddress = \"10.0.0.0/8\"\nsecret = \"t\"\n",
        );
        assert!(
            e.contains("radius.clients[1].address") && e.contains("radius.clients[0]"),
            "{e}"
        );

        let e = parse_err(&format!(
            "[radius]\nresponse_cache_ttl = \"2s\"\n{CLIENT}secret = \"s\"\n"
        ));
        assert!(
            e.contains("radius.response_cache_ttl") && e.contains("5s and 30s"),
            "{e}"
        );

        let e = parse_err("[radius]\nmax_in_flight = 0\n");
        assert!(e.contains("radius.max_in_flight"), "{e}");

        let e = parse_err("[radius]\nlisten = []\n");
        assert!(e.contains("radius.listen"), "{e}");

        let e = parse_err("[radius]\nlisten = [\"localhost\"]\n");
        assert!(
            e.starts_with("/etc/vb.toml:") && e.contains("listen"),
            "{e}"
        );

        let e = parse_err("[radius]\nbogus = 1\n");
        assert!(e.contains("bogus"), "{e}");

        let e = parse_err("nonsense = true\n");
        assert!(e.contains("nonsense"), "{e}");

        let e = parse_err("[log]\nformat = \"xml\"\n");
        assert!(e.contains("xml"), "{e}");

        let e = parse_err("[log]\nlevel = \"=nope=\"\n");
        assert!(e.contains("log.level"), "{e}");
    }

    #[test]
    fn secret_file_trailing_newline_is_stripped_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "abc\r\n").unwrap();
        assert_eq!(read_secret_file(&f).unwrap().expose(), "abc");
        std::fs::write(&f, "abc\n\n").unwrap();
        assert_eq!(read_secret_file(&f).unwrap().expose(), "abc\n");
        std::fs::write(&f, "abc").unwrap();
        assert_eq!(read_secret_file(&f).unwrap().expose(), "abc");
        std::fs::write(&f, "\n").unwrap();
        let e = parse_err(&format!("{CLIENT}secret_file = \"{}\"\n", f.display()));
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn secret_file_is_read_up_to_a_bound() {
        // Found by fuzz/ (config_load): `secret_file = "/dev/zero"` read without end.
        let e = parse_err(&format!("{CLIENT}secret_file = \"/dev/zero\"\n"));
        assert!(
            e.contains("radius.clients[0].secret_file") && e.contains("longer than 4096"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "x".repeat(MAX_SECRET_FILE)).unwrap();
        assert_eq!(
            read_secret_file(&f).unwrap().expose().len(),
            MAX_SECRET_FILE
        );
        std::fs::write(&f, "x".repeat(MAX_SECRET_FILE + 1)).unwrap();
        assert!(read_secret_file(&f).is_err());
    }

    #[test]
    fn metrics_listen_must_be_loopback_unless_allowed() {
        let cfg = parse(
            Path::new("x.toml"),
            "[metrics]\nlisten = \"127.0.0.1:9812\"\n",
        )
        .unwrap();
        assert_eq!(cfg.metrics, Some("127.0.0.1:9812".parse().unwrap()));
        assert!(parse(Path::new("x.toml"), "").unwrap().metrics.is_none());
        let e = parse_err("[metrics]\nlisten = \"0.0.0.0:9812\"\n");
        assert!(
            e.contains("metrics.listen") && e.contains("allow_remote"),
            "{e}"
        );
        let cfg = parse(
            Path::new("x.toml"),
            "[metrics]\nlisten = \"[::]:9812\"\nallow_remote = true\n",
        )
        .unwrap();
        assert_eq!(cfg.metrics, Some("[::]:9812".parse().unwrap()));
        let e = parse_err("[metrics]\nlisten = \"127.0.0.1:9812\"\nbogus = 1\n");
        assert!(e.contains("bogus"), "{e}");
    }

    /// A duration key: section header, the line with `{}` for the value, the key as errors
    /// name it, its bounds.
    type DurationKey = (
        &'static str,
        &'static str,
        &'static str,
        (Duration, Duration),
    );

    /// Every duration key of every section.
    fn duration_keys() -> Vec<DurationKey> {
        use vip_core::config::bounds as core;
        vec![
            (
                "[vip]",
                "timeout = \"{}\"",
                "vip.timeout",
                core::VIP_TIMEOUT,
            ),
            (
                "[vip]",
                "health_check_interval = \"{}\"",
                "vip.health_check_interval",
                core::HEALTH_CHECK_INTERVAL,
            ),
            (
                "[engine]",
                "state_ttl = \"{}\"",
                "engine.state_ttl",
                core::STATE_TTL,
            ),
            (
                "[engine]",
                "poll_interval = \"{}\"",
                "engine.poll_interval",
                core::POLL_INTERVAL,
            ),
            (
                "[engine]",
                "user_info_ttl = \"{}\"",
                "engine.user_info_ttl",
                core::USER_INFO_TTL,
            ),
            (
                "[engine.throttle]",
                "push_per_user = { count = 3, per = \"{}\" }",
                "engine.throttle.push_per_user.per",
                core::THROTTLE_PER,
            ),
            (
                "[engine.throttle]",
                "codes_per_user = { count = 10, per = \"{}\" }",
                "engine.throttle.codes_per_user.per",
                core::THROTTLE_PER,
            ),
            (
                "[engine.throttle]",
                "requests_per_client = { count = 2000, per = \"{}\" }",
                "engine.throttle.requests_per_client.per",
                core::THROTTLE_PER,
            ),
            (
                "[radius]",
                "response_cache_ttl = \"{}\"",
                "radius.response_cache_ttl",
                bounds::RESPONSE_CACHE_TTL,
            ),
            (
                "[radius]",
                "shutdown_timeout = \"{}\"",
                "radius.shutdown_timeout",
                bounds::SHUTDOWN_TIMEOUT,
            ),
            (
                "[pam]",
                "read_timeout = \"{}\"",
                "pam.read_timeout",
                bounds::PAM_READ_TIMEOUT,
            ),
            (
                "[pam]",
                "request_timeout = \"{}\"",
                "pam.request_timeout",
                bounds::PAM_REQUEST_TIMEOUT,
            ),
            (
                "[pam]",
                "connection_timeout = \"{}\"",
                "pam.connection_timeout",
                bounds::PAM_CONNECTION_TIMEOUT,
            ),
        ]
    }

    /// A duration that overflows `Instant` arithmetic (about 3 × 10^16 s).
    const ABSURD: &str = "1000000000y";

    #[test]
    fn every_duration_key_is_bounded() {
        let fmt = humantime_serde::re::humantime::format_duration;
        for (section, line, key, (min, max)) in duration_keys() {
            let mut values = vec![ABSURD.to_owned()];
            // One step past the top, and zero (or one step under the bottom) where zero is
            // meaningless.
            values.push(fmt(max + Duration::from_millis(1)).to_string());
            if !min.is_zero() {
                values.push("0s".into());
                values.push(fmt(min - Duration::from_millis(1)).to_string());
            }
            for value in values {
                let text = format!("{section}\n{}\n", line.replace("{}", &value));
                let e = parse_err(&text);
                assert!(
                    e.starts_with(&format!("/etc/vb.toml: {key}: ")),
                    "{text}: {e}"
                );
                assert!(
                    e.contains(&format!("must be between {} and {}", fmt(min), fmt(max))),
                    "{text}: {e}"
                );
            }
        }
    }

    #[test]
    fn every_section_at_its_defaults_and_the_packaged_example_load() {
        parse(
            Path::new("x.toml"),
            "[vip]
[engine]
[radius]
[pam]
",
        )
        .unwrap();
        // The packaged example is refused until its NAS placeholder is filled in; then it
        // loads (its secret file lives where the package generates it: here, a temp dir).
        let packaged = include_str!("../../packaging/vip-bridge.toml");
        let e = parse(Path::new("vip-bridge.toml"), packaged)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("radius.clients[0].address") && e.contains("placeholder"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vpn.secret"), "a-long-generated-secret\n").unwrap();
        let filled = packaged
            .replace("address = \"192.0.2.1\"", "address = \"10.1.2.3\"")
            .replace("/etc/vip-bridge/", &format!("{}/", dir.path().display()));
        let cfg = parse(&dir.path().join("vip-bridge.toml"), &filled).unwrap();
        let r = cfg.radius.unwrap();
        assert_eq!(r.listen.len(), 2);
        assert_eq!(
            r.clients
                .lookup("10.1.2.3".parse().unwrap())
                .unwrap()
                .secret(),
            b"a-long-generated-secret"
        );
        // The bounds themselves are allowed.
        let ok = |text: &str| {
            if let Err(e) = parse(Path::new("x.toml"), text) {
                panic!("{text}: {e}");
            }
        };
        ok("[radius]
response_cache_ttl = \"5s\"
shutdown_timeout = \"0s\"
");
        ok("[radius]
response_cache_ttl = \"30s\"
shutdown_timeout = \"10m\"
");
        ok("[engine]
user_info_ttl = \"0s\"
state_ttl = \"1h\"
poll_interval = \"1m\"
");
        ok("[pam]
read_timeout = \"5m\"
request_timeout = \"15m\"
connection_timeout = \"1h\"
");
    }

    #[test]
    fn duplicate_client_names_are_refused() {
        let e = parse_err(
            "[[radius.clients]]\nname = \"a\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\n\
             [[radius.clients]]\nname = \"a\"\naddress = \"10.0.0.2\"\nsecret = \"t\"\n",
        );
        assert!(e.contains("radius.clients[1].name"), "{e}");
    }
}
