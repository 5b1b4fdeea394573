//! `[directories.NAME] kind = "radius"`: its keys and defaults, the `pass_through` name
//! table, server entries and the shared secret.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::log_text::Escaped;
use crate::secret::Secret;

/// The longest `secret_file` read.
const MAX_SECRET_FILE: u64 = 4096;

/// `[directories.NAME]` with `kind = "radius"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamRadiusConfig {
    /// `host:port` or `host` (port 1812), tried in order.
    pub servers: Vec<String>,
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// One try's wait for a reply.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retransmissions per server (tries = 1 + retries).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long a server that did not answer is tried last.
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    #[serde(default = "default_nas_identifier")]
    pub nas_identifier: String,
    #[serde(default = "default_true")]
    pub require_message_authenticator: bool,
    /// Reply attributes of the upstream's Access-Accept passed into ours: names, numbers,
    /// or `["all"]`.
    #[serde(default = "default_pass_through")]
    pub pass_through: Vec<AttributeName>,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

/// A `pass_through` entry: a name (`"Class"`, `"26"`, `"all"`) or a number.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum AttributeName {
    Number(i64),
    Name(String),
}

fn default_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_retries() -> u32 {
    1
}
fn default_retry_after() -> Duration {
    Duration::from_secs(30)
}
fn default_nas_identifier() -> String {
    "vip-bridge".into()
}
fn default_true() -> bool {
    true
}
fn default_max_in_flight() -> usize {
    256
}
fn default_pass_through() -> Vec<AttributeName> {
    [
        "Class",
        "Filter-Id",
        "Framed-IP-Address",
        "Framed-IP-Netmask",
        "Framed-Route",
        "Framed-Pool",
        "Session-Timeout",
        "Idle-Timeout",
        "Vendor-Specific",
    ]
    .into_iter()
    .map(|n| AttributeName::Name(n.into()))
    .collect()
}

/// Reply attributes a `pass_through` may name (RFC 2865 §5, RFC 2868 tunnels, RFC 2869,
/// RFC 3162, RFC 6911).
const REPLY_ATTRIBUTES: &[(&str, u8)] = &[
    ("Service-Type", 6),
    ("Framed-Protocol", 7),
    ("Framed-IP-Address", 8),
    ("Framed-IP-Netmask", 9),
    ("Framed-Routing", 10),
    ("Filter-Id", 11),
    ("Framed-MTU", 12),
    ("Framed-Compression", 13),
    ("Login-IP-Host", 14),
    ("Login-Service", 15),
    ("Login-TCP-Port", 16),
    ("Callback-Number", 19),
    ("Callback-Id", 20),
    ("Framed-Route", 22),
    ("Framed-IPX-Network", 23),
    ("Class", 25),
    ("Vendor-Specific", 26),
    ("Session-Timeout", 27),
    ("Idle-Timeout", 28),
    ("Termination-Action", 29),
    ("Login-LAT-Service", 34),
    ("Login-LAT-Node", 35),
    ("Login-LAT-Group", 36),
    ("Framed-AppleTalk-Link", 37),
    ("Framed-AppleTalk-Network", 38),
    ("Framed-AppleTalk-Zone", 39),
    ("Port-Limit", 62),
    ("Login-LAT-Port", 63),
    ("Tunnel-Type", 64),
    ("Tunnel-Medium-Type", 65),
    ("Tunnel-Private-Group-Id", 81),
    ("Acct-Interim-Interval", 85),
    ("Framed-Pool", 88),
    ("Framed-Interface-Id", 96),
    ("Framed-IPv6-Prefix", 97),
    ("Login-IPv6-Host", 98),
    ("Framed-IPv6-Route", 99),
    ("Framed-IPv6-Pool", 100),
    ("Framed-IPv6-Address", 168),
    ("DNS-Server-IPv6-Address", 169),
];

/// Attributes vip-bridge owns in its own replies: never passed through.
const OWNED: &[(u8, &str)] = &[
    (1, "User-Name"),
    (2, "User-Password"),
    (3, "CHAP-Password"),
    (18, "Reply-Message"),
    (24, "State"),
    (33, "Proxy-State"),
    (79, "EAP-Message"),
    (80, "Message-Authenticator"),
];

fn owned(kind: u8) -> Option<&'static str> {
    OWNED.iter().find(|(k, _)| *k == kind).map(|(_, n)| *n)
}

/// Which attribute types pass: a 256-entry table.
#[derive(Clone)]
pub(super) struct PassThrough([bool; 256]);

impl PassThrough {
    pub(super) fn parse(names: &[AttributeName]) -> Result<PassThrough, String> {
        let mut table = [false; 256];
        let all = names
            .iter()
            .any(|n| matches!(n, AttributeName::Name(s) if s.eq_ignore_ascii_case("all")));
        if all {
            if names.len() != 1 {
                return Err("pass_through: \"all\" stands alone".into());
            }
            for (k, slot) in table.iter_mut().enumerate() {
                *slot = owned(k as u8).is_none() && k != 0;
            }
            return Ok(PassThrough(table));
        }
        for name in names {
            let kind = match name {
                AttributeName::Number(n) => u8::try_from(*n)
                    .ok()
                    .filter(|k| *k != 0)
                    .ok_or_else(|| format!("pass_through: {n} is not an attribute type (1-255)"))?,
                AttributeName::Name(s) => match s.trim().parse::<u8>() {
                    Ok(k) if k != 0 => k,
                    _ => REPLY_ATTRIBUTES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(s.trim()))
                        .map(|(_, k)| *k)
                        .ok_or_else(|| {
                            let known: Vec<&str> = REPLY_ATTRIBUTES.iter().map(|(n, _)| *n).collect();
                            format!(
                                "pass_through: unknown attribute {:?}; known names: {}, or a number (\"26\" or 26), or [\"all\"]",
                                Escaped(s).to_string(),
                                known.join(", ")
                            )
                        })?,
                },
            };
            if let Some(n) = owned(kind) {
                return Err(format!(
                    "pass_through: {n} ({kind}) cannot pass through: vip-bridge writes its own"
                ));
            }
            table[kind as usize] = true;
        }
        Ok(PassThrough(table))
    }

    pub(super) fn passes(&self, kind: u8) -> bool {
        self.0[kind as usize]
    }
}

pub(super) fn parse_server(i: usize, entry: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| format!("servers[{i}] = {:?}: {why}", Escaped(entry).to_string());
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(bad("empty"));
    }
    // A bare IPv6 literal, a bare IPv4 literal or host name: port 1812.
    if let Ok(ip) = entry.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 1812));
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let with_port = match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number in 1-65535"))?;
            (host.to_string(), port)
        }
        Some(_) => return Err(bad("write an IPv6 address with a port as [addr]:port")),
        None => (entry.to_string(), 1812),
    };
    let mut addrs = with_port
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot resolve the host name: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| bad("the host name resolves to no address"))
}

pub(super) fn read_secret(
    cfg: &UpstreamRadiusConfig,
    base: &Path,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let secret = match (&cfg.secret, &cfg.secret_file) {
        (Some(_), Some(_)) => return Err("set secret or secret_file, not both".into()),
        (None, None) => return Err("secret or secret_file is required".into()),
        (Some(s), None) => Zeroizing::new(s.expose().as_bytes().to_vec()),
        (None, Some(p)) => {
            use std::io::Read;
            let path = base.join(p);
            let shown = path.display();
            let f = std::fs::File::open(&path)
                .map_err(|e| format!("secret_file = {shown}: cannot read it: {e}"))?;
            let mut buf = Zeroizing::new(Vec::new());
            f.take(MAX_SECRET_FILE + 1)
                .read_to_end(&mut buf)
                .map_err(|e| format!("secret_file = {shown}: cannot read it: {e}"))?;
            if buf.len() as u64 > MAX_SECRET_FILE {
                return Err(format!(
                    "secret_file = {shown}: longer than {MAX_SECRET_FILE} bytes; it should hold the shared secret only"
                ));
            }
            let len = buf.len();
            if buf.ends_with(b"\r\n") {
                buf.truncate(len - 2);
            } else if buf.ends_with(b"\n") {
                buf.truncate(len - 1);
            }
            buf
        }
    };
    if secret.is_empty() {
        return Err("the shared secret is empty".into());
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> Result<UpstreamRadiusConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }
    #[test]
    fn pass_through_names_numbers_and_errors() {
        let p = |v: &[AttributeName]| PassThrough::parse(v);
        let n = |s: &str| AttributeName::Name(s.into());
        let ok = p(&[n("class"), n("26"), AttributeName::Number(64)]).expect("ok");
        assert!(ok.passes(25) && ok.passes(26) && ok.passes(64) && !ok.passes(11));
        let err = p(&[n("Clas")]).err().expect("unknown");
        assert!(err.contains("unknown attribute \"Clas\""), "{err}");
        assert!(
            err.contains("Filter-Id") && err.contains("Vendor-Specific"),
            "{err}"
        );
        let err = p(&[n("State")]).err().expect("owned by name is unknown");
        assert!(err.contains("unknown"), "{err}");
        let err = p(&[n("24")]).err().expect("State by number");
        assert!(err.contains("State (24) cannot pass through"), "{err}");
        let err = p(&[AttributeName::Number(80)]).err().expect("MA");
        assert!(err.contains("Message-Authenticator"), "{err}");
        assert!(p(&[AttributeName::Number(256)]).is_err());
        assert!(p(&[AttributeName::Number(0)]).is_err());
        assert!(p(&[n("all"), n("Class")]).is_err());
        let all = p(&[n("all")]).expect("all");
        for k in [1u8, 2, 3, 18, 24, 33, 79, 80] {
            assert!(!all.passes(k), "{k}");
        }
        assert!(all.passes(26) && all.passes(25) && all.passes(6) && all.passes(200));
        assert!(!p(&[]).expect("empty").passes(25));
    }

    #[test]
    fn server_entries_and_secrets() {
        assert_eq!(
            parse_server(0, "10.0.0.1:1645"),
            Ok("10.0.0.1:1645".parse().expect("a"))
        );
        assert_eq!(parse_server(0, "::1"), Ok("[::1]:1812".parse().expect("a")));
        assert_eq!(
            parse_server(0, "[::1]:18"),
            Ok("[::1]:18".parse().expect("a"))
        );
        assert!(parse_server(0, "localhost").is_ok());
        let e = parse_server(2, "10.0.0.1:x").expect_err("refused");
        assert!(e.starts_with("servers[2] = \"10.0.0.1:x\""), "{e}");
        assert!(parse_server(1, "no-such-host.invalid")
            .expect_err("refused")
            .contains("servers[1]"));
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("s"), "abc\n").expect("write");
        let c = cfg("servers = [\"127.0.0.1\"]\nsecret_file = \"s\"").expect("parses");
        assert_eq!(
            read_secret(&c, dir.path()).expect("reads").as_slice(),
            b"abc"
        );
        let both =
            cfg("servers = [\"127.0.0.1\"]\nsecret_file = \"s\"\nsecret = \"x\"").expect("p");
        assert!(read_secret(&both, dir.path()).is_err());
        std::fs::write(dir.path().join("big"), vec![b'a'; 5000]).expect("write");
        let big = cfg("servers = [\"127.0.0.1\"]\nsecret_file = \"big\"").expect("parses");
        assert!(read_secret(&big, dir.path()).is_err());
    }
}
