//! Upstream RADIUS first factor: a PAP client asking an NPS / FreeRADIUS / RSA server for the
//! user's directory password. Its Access-Accept's reply attributes pass through (as
//! `pass_through` allows), its Access-Challenge is relayed, its Access-Reject refuses.
//!
//! One fresh UDP socket per request and server, connected to the server (an ephemeral port, so
//! datagrams from anywhere else are never delivered); the same packet is retransmitted on it
//! for each try (RFC 5080 §2.2.1: same Identifier and authenticator, so the server's duplicate
//! cache answers a retransmission). A reply that does not verify is dropped and the try keeps
//! waiting (Blast-RADIUS: a forged reply must never end a request early).

mod config;
mod packet;

pub use config::{AttributeName, UpstreamRadiusConfig};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::{
    BoxFuture, DirectoryUser, FirstFactor, FirstFactorError, Lookup, ProbeReport, RawAttribute,
    Verdict,
};
use crate::log_limit::OncePerSecond;
use crate::log_text::Escaped;
use crate::secret::Secret;
use config::{parse_server, read_secret, PassThrough};
use packet::{
    check_reply, hide_password, mac_key, Dropped, MacKey, Reply, Request, ATTR_NAS_IDENTIFIER,
    ATTR_REPLY_MESSAGE, ATTR_STATE, ATTR_USER_NAME, ATTR_USER_PASSWORD, CODE_ACCESS_ACCEPT,
    CODE_ACCESS_CHALLENGE, CODE_ACCESS_REJECT, CODE_ACCESS_REQUEST, CODE_STATUS_SERVER,
    MAX_ATTR_VALUE, MAX_PACKET_LEN, MAX_PASSWORD,
};

/// The prompt of an Access-Challenge without Reply-Message.
const DEFAULT_PROMPT: &str = "Enter the answer:";

/// One configured server.
struct Server {
    /// As configured (for messages).
    label: String,
    addr: SocketAddr,
    /// Tried last until then, after not answering.
    down_until: Mutex<Option<Instant>>,
    timeout_log: OncePerSecond,
    verify_log: OncePerSecond,
}

impl Server {
    fn is_down(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .map(|d| d.is_some_and(|t| t > now))
            .unwrap_or(false)
    }

    fn mark(&self, down_until: Option<Instant>) {
        if let Ok(mut d) = self.down_until.lock() {
            *d = down_until;
        }
    }
}

/// The upstream RADIUS first factor.
pub struct UpstreamRadius {
    servers: Vec<Server>,
    secret: Zeroizing<Vec<u8>>,
    key: MacKey,
    timeout: Duration,
    retries: u32,
    retry_after: Duration,
    nas_identifier: Vec<u8>,
    require_ma: bool,
    pass_through: PassThrough,
    slots: Semaphore,
    max_in_flight: usize,
}

impl UpstreamRadius {
    pub fn new(cfg: &UpstreamRadiusConfig, base: &Path) -> Result<UpstreamRadius, String> {
        if cfg.servers.is_empty() {
            return Err("servers: name at least one upstream RADIUS server".into());
        }
        let servers = cfg
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(Server {
                    label: s.trim().to_string(),
                    addr: parse_server(i, s)?,
                    down_until: Mutex::new(None),
                    timeout_log: OncePerSecond::new(),
                    verify_log: OncePerSecond::new(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let secret = read_secret(cfg, base)?;
        if cfg.timeout.is_zero() {
            return Err("timeout must be above 0".into());
        }
        if cfg.retries > 10 {
            return Err("retries: at most 10".into());
        }
        if cfg.max_in_flight == 0 || cfg.max_in_flight > Semaphore::MAX_PERMITS {
            return Err("max_in_flight must be at least 1".into());
        }
        if cfg.nas_identifier.is_empty() || cfg.nas_identifier.len() > MAX_ATTR_VALUE {
            return Err("nas_identifier must be 1 to 253 bytes".into());
        }
        let pass_through = PassThrough::parse(&cfg.pass_through)?;
        Ok(UpstreamRadius {
            key: mac_key(&secret),
            secret,
            servers,
            timeout: cfg.timeout,
            retries: cfg.retries,
            retry_after: cfg.retry_after,
            nas_identifier: cfg.nas_identifier.as_bytes().to_vec(),
            require_ma: cfg.require_message_authenticator,
            pass_through,
            slots: Semaphore::new(cfg.max_in_flight),
            max_in_flight: cfg.max_in_flight,
        })
    }

    /// Servers in the order to try: those up in configured order, then those down.
    fn order(&self) -> Vec<&Server> {
        let now = Instant::now();
        let (up, down): (Vec<&Server>, Vec<&Server>) =
            self.servers.iter().partition(|s| !s.is_down(now));
        up.into_iter().chain(down).collect()
    }

    async fn verify_inner(
        &self,
        who: Lookup<'_>,
        password: &Secret,
        upstream_state: Option<&[u8]>,
    ) -> Result<Verdict, FirstFactorError> {
        let pw = password.expose().as_bytes();
        if pw.is_empty() {
            return Ok(Verdict::Refused {
                why: "empty password (not sent upstream)".into(),
            });
        }
        if pw.len() > MAX_PASSWORD {
            return Ok(Verdict::Refused {
                why: format!(
                    "password longer than {MAX_PASSWORD} bytes (RFC 2865 limit; not sent upstream)"
                ),
            });
        }
        if who.login.is_empty() || who.login.len() > MAX_ATTR_VALUE {
            return Ok(Verdict::Refused {
                why: "user name empty or longer than 253 bytes (not sent upstream)".into(),
            });
        }
        if let Some(state) = upstream_state {
            if state.is_empty() || state.len() > MAX_ATTR_VALUE {
                return Ok(Verdict::Refused {
                    why: "upstream State of a bad length (not sent upstream)".into(),
                });
            }
        }
        let _slot = self.slot().await?;
        let mut failures = Vec::new();
        let mut only_unverifiable = true;
        for server in self.order() {
            let mut authenticator = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut authenticator);
            let identifier = (rand::rngs::OsRng.next_u32() & 0xff) as u8;
            let mut req = Request::new(CODE_ACCESS_REQUEST, identifier, &authenticator);
            req.attr(ATTR_USER_NAME, who.login.as_bytes());
            let hidden = Zeroizing::new(hide_password(pw, &self.secret, &authenticator));
            req.attr(ATTR_USER_PASSWORD, &hidden);
            req.attr(ATTR_NAS_IDENTIFIER, &self.nas_identifier);
            if let Some(state) = upstream_state {
                req.attr(ATTR_STATE, state);
            }
            let bytes = Zeroizing::new(req.finish(&self.key));
            match self
                .exchange(server, &bytes, identifier, &authenticator, 1 + self.retries)
                .await
            {
                Ok(reply) => return self.interpret(server, reply),
                Err(f) => {
                    only_unverifiable &= f.only_unverifiable();
                    failures.push(f.describe(server, self));
                }
            }
        }
        Err(self.failed(failures, only_unverifiable))
    }

    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, FirstFactorError> {
        match tokio::time::timeout(self.timeout, self.slots.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(FirstFactorError::Overloaded(format!(
                "{} requests to the upstream RADIUS servers in flight (max_in_flight) for longer than timeout = {}",
                self.max_in_flight,
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    fn failed(&self, failures: Vec<String>, only_unverifiable: bool) -> FirstFactorError {
        if only_unverifiable {
            FirstFactorError::Misconfigured(failures.join("; "))
        } else {
            FirstFactorError::Outage(format!(
                "no upstream RADIUS server answered: {}",
                failures.join("; ")
            ))
        }
    }

    /// Sends `bytes` to `server` up to `tries` times, each waiting `timeout` for a reply that
    /// verifies; marks the server down (or up) accordingly.
    async fn exchange(
        &self,
        server: &Server,
        bytes: &[u8],
        identifier: u8,
        authenticator: &[u8; 16],
        tries: u32,
    ) -> Result<Reply, TryFailure> {
        let mut failure = TryFailure::default();
        let socket = match connect(server.addr).await {
            Ok(s) => s,
            Err(e) => {
                failure.io = Some(e.to_string());
                return Err(failure);
            }
        };
        let mut buf = vec![0u8; MAX_PACKET_LEN + 1];
        'tries: for _ in 0..tries {
            if let Err(e) = socket.send(bytes).await {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    failure.refused = true;
                    break 'tries;
                }
                failure.io = Some(e.to_string());
                continue;
            }
            let deadline = tokio::time::Instant::now() + self.timeout;
            loop {
                match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                    Err(_) => {
                        failure.timeouts += 1;
                        break;
                    }
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        failure.refused = true;
                        break 'tries;
                    }
                    Ok(Err(e)) => {
                        failure.io = Some(e.to_string());
                        break;
                    }
                    Ok(Ok(n)) => {
                        let datagram = buf.get(..n).unwrap_or_default();
                        match check_reply(
                            datagram,
                            identifier,
                            authenticator,
                            &self.secret,
                            &self.key,
                            self.require_ma,
                        ) {
                            Ok(reply) => {
                                server.mark(None);
                                return Ok(reply);
                            }
                            Err(why) => {
                                if let Some(n) = server.verify_log.pass() {
                                    tracing::warn!(
                                        server = %server.label,
                                        "upstream RADIUS: dropped {} ({n} more suppressed)",
                                        why.describe()
                                    );
                                }
                                failure.unverifiable = Some(why);
                            }
                        }
                    }
                }
            }
        }
        // Tried last for retry_after, whether silent, unreachable or unverifiable.
        server.mark(Some(Instant::now() + self.retry_after));
        if let Some(n) = server.timeout_log.pass() {
            tracing::warn!(
                server = %server.label,
                "upstream RADIUS server did not answer: {} ({n} more suppressed)",
                failure.describe(server, self)
            );
        }
        Err(failure)
    }

    fn interpret(&self, server: &Server, reply: Reply) -> Result<Verdict, FirstFactorError> {
        match reply.code {
            CODE_ACCESS_ACCEPT => Ok(Verdict::Passed(DirectoryUser {
                reply_attributes: reply
                    .attributes
                    .into_iter()
                    .filter(|(k, _)| self.pass_through.passes(*k))
                    .map(|(kind, value)| RawAttribute { kind, value })
                    .collect(),
                ..Default::default()
            })),
            CODE_ACCESS_REJECT => {
                let msg = messages(&reply, " ");
                let why = if msg.is_empty() {
                    format!(
                        "upstream RADIUS server {} rejected the password",
                        server.label
                    )
                } else {
                    format!(
                        "upstream RADIUS server {} rejected the password: Reply-Message \"{}\"",
                        server.label,
                        Escaped(&truncate(&msg, 200))
                    )
                };
                Ok(Verdict::Refused { why })
            }
            CODE_ACCESS_CHALLENGE => {
                let Some(state) = reply.values(ATTR_STATE).next() else {
                    return Err(FirstFactorError::Misconfigured(format!(
                        "upstream RADIUS server {} sent an Access-Challenge without State",
                        server.label
                    )));
                };
                let prompt = messages(&reply, "\n");
                Ok(Verdict::Challenge {
                    prompt: if prompt.is_empty() {
                        DEFAULT_PROMPT.into()
                    } else {
                        prompt
                    },
                    state: state.to_vec(),
                })
            }
            code => Err(FirstFactorError::Misconfigured(format!(
                "upstream RADIUS server {} answered an Access-Request with code {code}",
                server.label
            ))),
        }
    }

    async fn probe_one(&self, server: &Server) -> ProbeReport {
        let mut authenticator = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut authenticator);
        let identifier = (rand::rngs::OsRng.next_u32() & 0xff) as u8;
        let mut req = Request::new(CODE_STATUS_SERVER, identifier, &authenticator);
        req.attr(ATTR_NAS_IDENTIFIER, &self.nas_identifier);
        let bytes = req.finish(&self.key);
        let started = Instant::now();
        let result = match self
            .exchange(server, &bytes, identifier, &authenticator, 1)
            .await
        {
            Ok(reply) if matches!(reply.code, CODE_ACCESS_ACCEPT | CODE_ACCESS_REJECT) => {
                Ok(format!(
                    "answered Status-Server in {} ms",
                    started.elapsed().as_millis()
                ))
            }
            Ok(reply) => Err(format!(
                "answered Status-Server with code {} (expected Access-Accept)",
                reply.code
            )),
            Err(f) if f.only_unverifiable() => Err(f.describe(server, self)),
            Err(f) => Err(format!(
                "{}: is the server up, is this host a client there with this secret, does it \
                 accept Status-Server (FreeRADIUS: status_server = yes; NPS does not support it)",
                f.describe(server, self)
            )),
        };
        ProbeReport {
            server: server.label.clone(),
            result,
        }
    }
}

/// Reply-Message values joined by `sep` (lossy UTF-8).
fn messages(reply: &Reply, sep: &str) -> String {
    reply
        .values(ATTR_REPLY_MESSAGE)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect::<Vec<_>>()
        .join(sep)
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// How one server's tries ended without a verified reply.
#[derive(Default)]
struct TryFailure {
    timeouts: u32,
    refused: bool,
    io: Option<String>,
    /// The last reply dropped (only unverifiable replies if `timeouts` ended every try).
    unverifiable: Option<Dropped>,
}

impl TryFailure {
    /// Every try ended in its timeout after replies that did not verify.
    fn only_unverifiable(&self) -> bool {
        self.unverifiable.is_some() && !self.refused && self.io.is_none()
    }

    fn describe(&self, server: &Server, up: &UpstreamRadius) -> String {
        if let Some(why) = self.unverifiable {
            if self.only_unverifiable() {
                return match why {
                    Dropped::MissingMessageAuthenticator => format!(
                        "replies from {} carry no Message-Authenticator: make the server send one \
                         (FreeRADIUS < 3.2.5: update reply {{ Message-Authenticator := 0x00 }}), \
                         or set require_message_authenticator = false",
                        server.label
                    ),
                    _ => format!(
                        "replies from {} do not verify with the shared secret: check secret / secret_file",
                        server.label
                    ),
                };
            }
        }
        if self.refused {
            format!(
                "{}: port unreachable (ICMP: nothing listens there)",
                server.label
            )
        } else if let Some(e) = &self.io {
            format!("{}: {e}", server.label)
        } else {
            format!(
                "{}: no answer to {} tries of {} (the server is down, or drops us: is this host \
                 a client there with this shared secret?)",
                server.label,
                self.timeouts,
                humantime::format_duration(up.timeout)
            )
        }
    }
}

impl FirstFactor for UpstreamRadius {
    fn kind(&self) -> &'static str {
        "radius"
    }

    fn verify<'a>(
        &'a self,
        who: Lookup<'a>,
        password: &'a Secret,
        upstream_state: Option<&'a [u8]>,
    ) -> BoxFuture<'a, Result<Verdict, FirstFactorError>> {
        Box::pin(self.verify_inner(who, password, upstream_state))
    }

    fn lookup<'a>(
        &'a self,
        _who: Lookup<'a>,
    ) -> BoxFuture<'a, Result<Option<DirectoryUser>, FirstFactorError>> {
        Box::pin(async {
            Err(FirstFactorError::Misconfigured(
                "an upstream RADIUS server cannot look users up: it only checks passwords; use an \
                 LDAP directory for login-name mapping or group look-ups"
                    .into(),
            ))
        })
    }

    fn probe(&self) -> BoxFuture<'_, Vec<ProbeReport>> {
        Box::pin(async {
            let mut out = Vec::with_capacity(self.servers.len());
            for server in &self.servers {
                out.push(self.probe_one(server).await);
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> Result<UpstreamRadiusConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = cfg("servers = [\"127.0.0.1\"]\nsecret = \"s\"").expect("parses");
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.retries, 1);
        assert_eq!(c.retry_after, Duration::from_secs(30));
        assert_eq!(c.nas_identifier, "vip-bridge");
        assert!(c.require_message_authenticator);
        assert_eq!(c.max_in_flight, 256);
        let up = UpstreamRadius::new(&c, Path::new("/")).expect("builds");
        assert_eq!(up.servers[0].addr, "127.0.0.1:1812".parse().expect("addr"));
        for k in [25u8, 11, 8, 9, 22, 88, 27, 28, 26] {
            assert!(up.pass_through.passes(k), "{k}");
        }
        assert!(!up.pass_through.passes(6));
        assert!(cfg("servers = []\nbogus = 1").is_err());
    }
}
