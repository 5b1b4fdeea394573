//! `check-config` and `test-auth`: the operator's tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;
use vip_core::config::{BackendKind, BuildError};
use vip_core::engine::{AuthRequest, Authenticate, ClientInfo, FrontDoor, Outcome};
use vip_core::secret::Secret;
use vip_core::trustbuilder::{TrustBuilderClient, TrustBuilderConfig};
use vip_core::vip::{VipClient, VipConfig};

use crate::config::{self, Config};
use crate::error::{Error, Result};

/// What `check-config` found: `warnings` are printed; errors end it with `Err`.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    /// Problems that make the check fail, found after the file was read (a directory none of
    /// whose servers answers): printed with everything else, then the command exits 1.
    pub errors: Vec<String>,
}

/// Host names of production VIP (the pilot hosts start with `pilot-`).
pub(crate) fn is_production(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or("")
        .to_ascii_lowercase();
    host.ends_with(".symantec.com") && !host.starts_with("pilot-")
}

/// `check-config`: validates the file (every section), warns about files others can read,
/// refuses a production VIP URL without a client certificate, and unless `offline` asks VIP
/// for its time over the configured mutual TLS.
pub async fn check_config(path: &Path, offline: bool) -> Result<Report> {
    let loaded = config::load(path)?;
    // What `serve` would refuse, `check-config` refuses too (the unit's pre-start check).
    crate::daemon::preflight(&loaded)?;
    // The raw file again, for the file names the validated form no longer keeps.
    let raw: Config = vip_core::config::load_toml(path)?;
    let mut r = Report::default();
    let vip = &loaded.core.vip;
    let on_vip = loaded.core.backend == BackendKind::Vip;
    r.warnings.extend(loaded.core.warnings());
    if on_vip
        && (loaded
            .core
            .policies
            .values()
            .any(|p| p.push_mode == vip_core::engine::PushMode::Blocking)
            || !loaded.core.policies.contains_key("default"))
    {
        // VIP has no call that tells whether the account requires Number Challenge, so
        // this cannot be checked online; say where it would bite.
        r.lines.push(
            "push: policies with push_mode = \"blocking\" cannot show a number challenge; if the VIP account has \"Require Number Challenge\" on, their pushes fail (use push_mode = \"challenge\")".into(),
        );
    }

    if on_vip && vip.cert_file.is_none() && vip.pkcs12_file.is_none() {
        r.warnings
            .push("vip: no client certificate configured (only a test VIP accepts that)".into());
    }
    if loaded.core.engine.state_key_file.is_none() {
        r.warnings.push(
            "engine.state_key_file is not set: a random State key per process; a login cannot \
             continue on another instance or after a restart (create one: openssl rand -hex 32)"
                .into(),
        );
    }

    // Files the configuration names: (key, path, secret?)
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut files: Vec<(String, PathBuf, bool)> = Vec::new();
    let mut add = |key: &str, p: &Option<PathBuf>, secret: bool| {
        if let Some(p) = p {
            files.push((key.to_owned(), p.clone(), secret));
        }
    };
    if on_vip {
        add("vip.cert_file", &vip.cert_file, false);
        add("vip.key_file", &vip.key_file, true);
        add("vip.pkcs12_file", &vip.pkcs12_file, true);
        add("vip.pkcs12_password_file", &vip.pkcs12_password_file, true);
        add("vip.ca_file", &vip.ca_file, false);
    }
    if let Some(tb) = &loaded.core.trustbuilder {
        add("trustbuilder.cert_file", &tb.cert_file, false);
        add("trustbuilder.key_file", &tb.key_file, true);
        add("trustbuilder.pkcs12_file", &tb.pkcs12_file, true);
        add(
            "trustbuilder.pkcs12_password_file",
            &tb.pkcs12_password_file,
            true,
        );
        add("trustbuilder.ca_file", &tb.ca_file, false);
    }
    add(
        "engine.state_key_file",
        &loaded.core.engine.state_key_file,
        true,
    );
    if let Some(radius) = &raw.radius {
        for (i, c) in radius.clients.iter().enumerate() {
            if let Some(f) = &c.secret_file {
                files.push((
                    format!("radius.clients[{i}].secret_file"),
                    base.join(f),
                    true,
                ));
            }
        }
        // The secrets as loaded (inline or from secret_file); names are unique by then.
        let loaded_clients = loaded.radius.as_ref().map(|r| &r.clients);
        for (i, c) in radius.clients.iter().enumerate() {
            let Some(client) = loaded_clients.and_then(|t| t.iter().find(|l| l.name == c.name))
            else {
                continue;
            };
            if short_secret(client.secret()) {
                let key = if c.secret_file.is_some() {
                    "secret_file"
                } else {
                    "secret"
                };
                r.warnings.push(format!(
                    "radius.clients[{i}].{key} (client {:?}): the shared secret is shorter than \
                     {MIN_SECRET_CHARS} characters: one captured request lets an attacker \
                     guess it offline; use a long random one (openssl rand -base64 24)",
                    c.name
                ));
            }
        }
        for (i, c) in radius.clients.iter().enumerate() {
            if let Some(w) =
                vpn_without_message_authenticator(&c.name, c.require_message_authenticator)
            {
                r.warnings
                    .push(format!("radius.clients[{i}] (client {:?}): {w}", c.name));
            }
        }
        if radius.clients.iter().any(|c| c.secret.is_some()) {
            // Inline secrets make the configuration file itself a secret.
            r.lines
                .push("radius: inline client secrets: the configuration file is secret".into());
        }
    }
    if on_vip && vip.pkcs12_password.is_some() {
        r.lines
            .push("vip: inline pkcs12_password: the configuration file is secret".into());
    }
    if let Some(w) = readable_by_others(path) {
        r.warnings.push(format!("{}: {w}", path.display()));
    }
    for (key, file, secret) in &files {
        match std::fs::metadata(file) {
            // The VIP and State key files were read by the preflight: a RADIUS secret file
            // that vanished since is all this can be.
            Err(e) => r
                .warnings
                .push(format!("{key} = {}: cannot read: {e}", file.display())),
            Ok(_) if *secret => {
                if let Some(w) = readable_by_others(file) {
                    r.warnings.push(format!("{key} = {}: {w}", file.display()));
                }
            }
            Ok(_) => {}
        }
    }
    if !offline {
        match &loaded.core.trustbuilder {
            Some(tb) if !on_vip => r.lines.extend(trustbuilder_reachable(tb).await?),
            _ => r.lines.push(server_time(vip).await?),
        }
        probe_directories(&loaded.core, &mut r).await?;
        probe_store(&loaded.core.cluster, &loaded.core.base_dir, &mut r).await;
    }
    let clients = loaded.radius.as_ref().map(|r| r.clients.len()).unwrap_or(0);
    r.lines.insert(
        0,
        format!(
            "{}: {} ({} RADIUS client(s), PAM door {}, metrics {})",
            path.display(),
            if r.errors.is_empty() { "OK" } else { "FAILED" },
            clients,
            if loaded.pam.is_some() { "on" } else { "off" },
            loaded
                .metrics
                .map(|a| a.to_string())
                .unwrap_or_else(|| "off".into()),
        ),
    );
    Ok(r)
}

/// Pings the shared store (`[cluster] store = "redis"`): its role and the round trip. Not
/// reachable is an error when `when_unavailable = "reject"` (every login would be refused),
/// else a warning (logins go on with per-instance limits).
async fn probe_store(cluster: &vip_core::store::ClusterConfig, base_dir: &Path, r: &mut Report) {
    use vip_core::store::{SharedStore, WhenUnavailable};
    let store = match SharedStore::start(cluster, base_dir) {
        Ok(Some(store)) => store,
        Ok(None) => return,
        Err(e) => {
            r.errors.push(e);
            return;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let answer = loop {
        match store.ping().await {
            Ok(ok) => break Ok(ok),
            Err(e) if Instant::now() >= deadline => break Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let shown = cluster.redis.urls.join(", ");
    match answer {
        Ok((role, rtt)) => r.lines.push(format!(
            "cluster: Redis {shown}{}: {role}, round trip {:.2} ms",
            cluster
                .redis
                .sentinel_master
                .as_deref()
                .map(|m| format!(" (Sentinel master {m:?})"))
                .unwrap_or_default(),
            rtt.as_secs_f64() * 1000.0
        )),
        Err(e) if cluster.when_unavailable == WhenUnavailable::Reject => r.errors.push(format!(
            "cluster: Redis {shown}: {e}; with when_unavailable = \"reject\" every login would be refused"
        )),
        Err(e) => r.warnings.push(format!(
            "cluster: Redis {shown}: {e}; logins would go on with this instance's own memory (when_unavailable = \"memory\")"
        )),
    }
}

/// Asks every server of every `[directories.NAME]` once (LDAP: connect, TLS, service bind,
/// a search; upstream RADIUS: Status-Server). A directory none of whose servers answers is an
/// error (its logins would all be refused); one dead server of several is a warning.
async fn probe_directories(core: &vip_core::config::CoreConfig, r: &mut Report) -> Result<()> {
    let directories = core.directories()?;
    let mut names: Vec<&String> = directories.keys().collect();
    names.sort();
    for name in names {
        let directory = &directories[name];
        let reports = directory.probe().await;
        let ok = reports.iter().filter(|p| p.result.is_ok()).count();
        for p in &reports {
            match &p.result {
                Ok(what) => r.lines.push(format!(
                    "directories.{name} ({}): {}: {what}",
                    directory.kind(),
                    p.server
                )),
                Err(why) => r.warnings.push(format!(
                    "directories.{name} ({}): {}: {why}",
                    directory.kind(),
                    p.server
                )),
            }
        }
        if ok == 0 {
            r.errors.push(format!(
                "directories.{name}: no server answered ({}); every login of the policies using it would be refused",
                reports
                    .iter()
                    .filter_map(|p| p.result.as_ref().err().map(|e| format!("{}: {e}", p.server)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    Ok(())
}

/// VPN servers whose RADIUS client never sends Message-Authenticator (tried with Debian 12's
/// packages): a client block named after one that still requires it drops every request.
const VPNS_WITHOUT_MESSAGE_AUTHENTICATOR: [(&str, &str); 3] = [
    ("ocserv", "ocserv (its radcli library)"),
    ("openconnect", "ocserv (its radcli library)"),
    ("openvpn", "OpenVPN's radiusplugin"),
];

/// The warning for a client named like one of [`VPNS_WITHOUT_MESSAGE_AUTHENTICATOR`] that
/// requires Message-Authenticator.
fn vpn_without_message_authenticator(name: &str, requires: bool) -> Option<String> {
    if !requires {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    VPNS_WITHOUT_MESSAGE_AUTHENTICATOR
        .iter()
        .find(|(word, _)| lower.contains(word))
        .map(|(_, what)| {
            format!(
                "{what} sends no Message-Authenticator, and this client requires it: every \
                 request would be dropped; set require_message_authenticator = false for it \
                 (if this client is that VPN server)"
            )
        })
}

/// Shared secrets shorter than this (in characters) are warned about: RFC 2865 §3 asks for at
/// least 16 octets, and a captured request lets an attacker try short ones offline.
const MIN_SECRET_CHARS: usize = 16;

fn short_secret(secret: &[u8]) -> bool {
    let chars = match std::str::from_utf8(secret) {
        Ok(s) => s.chars().count(),
        Err(_) => secret.len(),
    };
    chars < MIN_SECRET_CHARS
}

/// TrustBuilder's two APIs over the configured mutual TLS, with `trustbuilder.service_id`:
/// the authentication API (a checkPushResult for a session nobody has: a service that knows
/// our serviceId answers a bare `NOK`) and the provisioning API the credential menu reads (a
/// loginSearch for a login nobody has). A line each.
async fn trustbuilder_reachable(tb: &TrustBuilderConfig) -> Result<Vec<String>> {
    let client = TrustBuilderClient::new(tb).map_err(BuildError::from)?;
    let failed = |api: &str, e: vip_core::trustbuilder::TbError| {
        use vip_core::trustbuilder::TbStatus;
        match e.status() {
            Some(TbStatus::ServiceUnknown | TbStatus::AccessForbidden) => Error::Check(format!(
                "trustbuilder.service_id = {}: TrustBuilder's {api} does not know this service \
                 for our certificate ({e}); copy the service's number from the administration \
                 console, and check that the \"Web services API access\" certificate was \
                 issued for that service",
                tb.service_id
            )),
            _ => Error::Check(format!("trustbuilder: {api}: {e}")),
        }
    };
    let started = Instant::now();
    client
        .probe()
        .await
        .map_err(|e| failed("authentication API", e))?;
    let rest_ms = started.elapsed().as_millis();
    let started = Instant::now();
    client
        .login_search("vip-bridge-check-config")
        .await
        .map_err(|e| failed("provisioning API", e))?;
    Ok(vec![
        format!(
            "TrustBuilder reachable: authentication API OK in {rest_ms} ms (service {})",
            tb.service_id
        ),
        format!(
            "TrustBuilder provisioning API (loginSearch) OK in {} ms",
            started.elapsed().as_millis()
        ),
    ])
}

/// `getServerTime` over the configured mutual TLS: a line with the requestId and clock skew.
async fn server_time(vip: &VipConfig) -> Result<String> {
    let client = VipClient::new(vip)?;
    let started = Instant::now();
    let t = client.get_server_time().await?;
    let ms = started.elapsed().as_millis();
    let skew = match t.skew {
        Some(0) => "clocks agree".to_owned(),
        Some(s) if s > 0 => format!("VIP's clock is {s} s ahead of ours"),
        Some(s) => format!("VIP's clock is {} s behind ours", -s),
        None => format!("cannot read VIP's timestamp {:?}", t.timestamp),
    };
    let mut line = format!(
        "VIP reachable: getServerTime OK in {ms} ms (requestId {}), {skew}",
        t.request_id
    );
    if t.skew.is_some_and(|s| s.abs() > 30) {
        let _ = write!(
            line,
            "; WARNING: more than 30 s apart: fix NTP on this host (logs and push timeouts \
             are measured here)"
        );
    }
    Ok(line)
}

/// Why a file's mode lets other users read it (`None` when it does not). Group read is fine
/// for root's group and the service's group `vip-bridge`.
fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).ok()?;
    let mode = md.mode() & 0o777;
    if mode & 0o004 != 0 {
        return Some(format!(
            "mode {mode:04o}: readable by every user; chmod o-rwx it"
        ));
    }
    if mode & 0o040 != 0 && md.gid() != 0 {
        let group = group_name(md.gid());
        if group.as_deref() != Some("vip-bridge") {
            return Some(format!(
                "mode {mode:04o}: readable by group {}; chmod g-rwx it or chgrp vip-bridge",
                group.unwrap_or_else(|| md.gid().to_string())
            ));
        }
    }
    None
}

fn group_name(gid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _pw = f.next()?;
        (f.next()?.parse::<u32>().ok()? == gid).then(|| name.to_owned())
    })
}

// ------------------------------------------------------------------------------ test-auth

/// What the user types in `test-auth`.
#[derive(Debug)]
pub enum Typed {
    Code(String),
    Push,
    Sms,
    Voice,
    Nothing,
}

/// How `test-auth` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestAuthEnd {
    Accept,
    Reject,
    /// A Challenge that was not answered (stdin is not a terminal).
    Challenge,
}

/// The `login round finished` events of the engine, captured as field maps.
#[derive(Clone, Default)]
struct Rounds(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber> Layer<S> for Rounds {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() == "vip_bridge::login" {
            let mut map = BTreeMap::new();
            event.record(&mut Fields(&mut map));
            if let Ok(mut v) = self.0.lock() {
                v.push(map);
            }
        }
    }
}

/// `test-auth`: one login (all its rounds) through the real engine from the configuration.
/// Prints to `out`; logs (warnings) go to stderr.
pub async fn test_auth(
    path: &Path,
    user: &str,
    typed: Typed,
    policy_name: &str,
    password_file: Option<&Path>,
    out: &mut dyn Write,
) -> Result<TestAuthEnd> {
    let cfg = config::load(path)?;
    let rounds = Rounds::default();
    let filter = tracing_subscriber::EnvFilter::try_new(
        std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
    )
    .map_err(|e| Error::Logging(e.to_string()))?;
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter),
        )
        .with(rounds.clone());
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| Error::Logging(e.to_string()))?;

    let policy = cfg.core.policy(policy_name).ok_or_else(|| {
        Error::Check(format!(
            "{}: no policy named {policy_name:?}",
            cfg.path.display()
        ))
    })?;
    let first = |words: &[String], fallback: &str| {
        words
            .first()
            .cloned()
            .unwrap_or_else(|| fallback.to_owned())
    };
    let keyword = match typed {
        Typed::Push => Some(first(&policy.push_keywords, "push")),
        Typed::Sms => Some(first(&policy.sms_keywords, "sms")),
        Typed::Voice => Some(first(&policy.voice_keywords, "voice")),
        Typed::Code(_) | Typed::Nothing => None,
    };
    // A policy with mode = "challenge" answers the first round with its factor menu whatever
    // was typed: --push / --sms / --voice then pick that factor from the menu, as a user would.
    let mut menu_answer = keyword
        .clone()
        .filter(|_| policy.mode == vip_core::engine::PasswordMode::Challenge);
    let mut secret = match &typed {
        Typed::Code(c) => Some(Secret::new(c.as_str())),
        Typed::Nothing => None,
        Typed::Push | Typed::Sms | Typed::Voice => keyword.clone().map(Secret::new),
    };
    if policy.first_factor != vip_core::engine::FirstFactorKind::None {
        // Both factors in what the user types, the way this policy reads them.
        let Some(file) = password_file else {
            return Err(Error::Check(format!(
                "policy {policy_name:?} checks a directory password first (first_factor = {:?}): give it with --password-file FILE (- reads it from stdin)",
                policy.first_factor.as_str()
            )));
        };
        let password = read_password(file)?;
        let second = match &typed {
            Typed::Code(c) => Some((c.clone(), true)),
            _ => keyword.clone().map(|k| (k, false)),
        };
        let second = second.as_ref().map(|(s, code)| (s.as_str(), *code));
        let (first_round, answer) = combine_factors(&policy, password.expose(), second)
            .map_err(|m| Error::Check(format!("policy {policy_name:?}: {m}")))?;
        secret = Some(first_round);
        menu_answer = answer;
    } else if password_file.is_some() {
        return Err(Error::Check(format!(
            "policy {policy_name:?} has no first factor (first_factor = \"none\"): --password-file is not used"
        )));
    }
    let engine = cfg.core.build_engine()?;
    let io = |source| Error::Io {
        what: "writing the output".into(),
        source,
    };
    let mut state = None;
    let started = Instant::now();
    for round in 1.. {
        let req = AuthRequest {
            user: user.to_owned(),
            secret: secret.take(),
            state: state.take(),
            client: ClientInfo {
                front_door: FrontDoor::Radius,
                name: "test-auth".into(),
                peer: None,
                nas_identifier: None,
                remote: None,
                tty: None,
                session: None,
            },
            policy: policy.clone(),
            stack_password_checked: false,
        };
        let t = Instant::now();
        let outcome = engine.authenticate(req).await;
        let ms = t.elapsed().as_millis();
        let info = rounds
            .0
            .lock()
            .ok()
            .and_then(|v| v.last().cloned())
            .unwrap_or_default();
        let field = |k: &str| info.get(k).map(String::as_str).unwrap_or("").to_owned();
        let ids = field("request_ids");
        writeln!(
            out,
            "round {round}: {} in {ms} ms (factor {}, VIP status {}, requestIds {})",
            outcome.kind(),
            or_dash(&field("factor")),
            or_dash(&field("vip_status")),
            or_dash(&ids),
        )
        .map_err(io)?;
        match outcome {
            Outcome::Accept(a) => {
                writeln!(
                    out,
                    "ACCEPT{} (credential {}, authnId {}); total {} ms",
                    if a.failed_open {
                        " -- FAILED OPEN, no second factor"
                    } else {
                        ""
                    },
                    a.credential_id.as_deref().unwrap_or("-"),
                    a.authn_id.as_deref().unwrap_or("-"),
                    started.elapsed().as_millis()
                )
                .map_err(io)?;
                if !a.reply_attributes.is_empty() {
                    let kinds: Vec<String> = a
                        .reply_attributes
                        .iter()
                        .map(|r| r.kind.to_string())
                        .collect();
                    writeln!(
                        out,
                        "reply attributes passed through from the upstream: {} (types {})",
                        kinds.len(),
                        kinds.join(", ")
                    )
                    .map_err(io)?;
                }
                return Ok(TestAuthEnd::Accept);
            }
            Outcome::Reject(r) => {
                writeln!(
                    out,
                    "REJECT: {} ({}); total {} ms",
                    r.message,
                    r.reason.as_str(),
                    started.elapsed().as_millis()
                )
                .map_err(io)?;
                return Ok(TestAuthEnd::Reject);
            }
            Outcome::Challenge(c) => {
                writeln!(out, "CHALLENGE: {}", c.prompt).map_err(io)?;
                if let Some(word) = menu_answer.take() {
                    writeln!(out, "> {word}   (answering the menu)").map_err(io)?;
                    secret = Some(Secret::new(word));
                    state = Some(c.state);
                    continue;
                }
                if !std::io::stdin().is_terminal() {
                    writeln!(
                        out,
                        "(stdin is not a terminal: not answering; run it in a terminal to answer)"
                    )
                    .map_err(io)?;
                    return Ok(TestAuthEnd::Challenge);
                }
                write!(out, "> ").map_err(io)?;
                out.flush().map_err(io)?;
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|source| Error::Io {
                        what: "reading the answer".into(),
                        source,
                    })?;
                let answer = line.trim_end_matches(['\r', '\n']);
                secret = Some(Secret::new(answer));
                line.clear();
                state = Some(c.state);
            }
        }
    }
    Ok(TestAuthEnd::Reject)
}

/// The directory password from `file` (`-`: one line of stdin), without its line end.
fn read_password(file: &Path) -> Result<Secret> {
    read_secret_line(file, "password")
}

/// One secret line (a password, PIN or code: `what`) from `file` (`-`: one line of stdin),
/// without its line end; never empty.
pub(crate) fn read_secret_line(file: &Path, what: &str) -> Result<Secret> {
    let mut line = zeroize::Zeroizing::new(String::new());
    let doing = format!("reading the {what} from {}", file.display());
    if file == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|source| Error::Io {
                what: doing,
                source,
            })?;
    } else {
        use std::io::Read;
        std::fs::File::open(file)
            .and_then(|f| f.take(4096).read_to_string(&mut line))
            .map_err(|source| Error::Io {
                what: doing,
                source,
            })?;
    }
    let secret = line.lines().next().unwrap_or("");
    if secret.is_empty() {
        return Err(Error::Check(format!(
            "{}: the {what} is empty",
            file.display()
        )));
    }
    Ok(Secret::new(secret))
}

/// What a user of `policy` types in the first round for `password` and the second factor
/// (a code or keyword with whether it is a code, or nothing), and what they answer the menu
/// with afterwards.
fn combine_factors(
    policy: &vip_core::engine::LoginPolicy,
    password: &str,
    second: Option<(&str, bool)>,
) -> std::result::Result<(Secret, Option<String>), String> {
    use vip_core::engine::{PasswordFormat, PasswordMode};
    if policy.mode == PasswordMode::Challenge {
        return Ok((Secret::new(password), second.map(|(s, _)| s.to_owned())));
    }
    match (policy.password_format, second) {
        (_, None) => Ok((Secret::new(password), None)),
        (PasswordFormat::Delimited, Some((s, _))) => {
            Ok((Secret::new(format!("{password}{}{s}", policy.delimiter)), None))
        }
        (PasswordFormat::Appended, Some((s, true))) => {
            Ok((Secret::new(format!("{password}{s}")), None))
        }
        (PasswordFormat::Appended, Some(_)) => Err(
            "password_format = \"appended\" takes a security code after the password, not a keyword: give a code, or nothing to be asked".into(),
        ),
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpns_that_send_no_message_authenticator_are_named() {
        for name in ["ocserv", "vpn-OpenVPN-1", "openconnect-gw"] {
            let w = vpn_without_message_authenticator(name, true).unwrap();
            assert!(w.contains("require_message_authenticator = false"), "{w}");
            assert_eq!(vpn_without_message_authenticator(name, false), None);
        }
        assert_eq!(vpn_without_message_authenticator("fortigate", true), None);
    }

    #[test]
    fn production_hosts() {
        assert!(is_production(vip_core::vip::DEFAULT_AUTH_URL));
        assert!(!is_production(
            "https://pilot-userservices-auth.vip.symantec.com/vipuserservices/x"
        ));
        assert!(!is_production("https://127.0.0.1:4443/vipuserservices/x"));
    }

    #[tokio::test]
    async fn short_client_secrets_are_warned_about_by_name_never_shown() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let private =
            |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let short_file = dir.path().join("short.secret");
        std::fs::write(&short_file, "fifteen-chars-x\n").unwrap();
        private(&short_file);
        let long_file = dir.path().join("long.secret");
        std::fs::write(&long_file, "sixteen-chars-xy\n").unwrap();
        private(&long_file);
        let cfg = dir.path().join("vb.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"
[vip]
auth_url = "https://127.0.0.1:1/a"
query_url = "https://127.0.0.1:1/q"
management_url = "https://127.0.0.1:1/m"

[[radius.clients]]
name = "inline-short"
address = "10.0.0.1"
secret = "hunter2"

[[radius.clients]]
name = "file-short"
address = "10.0.0.2"
secret_file = "{}"

[[radius.clients]]
name = "file-long"
address = "10.0.0.3"
secret_file = "{}"

[[radius.clients]]
name = "inline-long"
address = "10.0.0.4"
secret = "0123456789abcdef"

[[radius.clients]]
name = "accents-short"
address = "10.0.0.5"
secret = "ééééééééééééééé"

[[radius.clients]]
name = "accents-long"
address = "10.0.0.6"
secret = "éééééééééééééééé"
"#,
                short_file.display(),
                long_file.display()
            ),
        )
        .unwrap();
        private(&cfg);
        let r = check_config(&cfg, true).await.unwrap();
        let short: Vec<&String> = r
            .warnings
            .iter()
            .filter(|w| w.contains("shorter than 16 characters"))
            .collect();
        assert_eq!(short.len(), 3, "{:#?}", r.warnings);
        assert!(short[0].starts_with("radius.clients[0].secret (client \"inline-short\")"));
        assert!(short[1].starts_with("radius.clients[1].secret_file (client \"file-short\")"));
        assert!(short[2].starts_with("radius.clients[4].secret (client \"accents-short\")"));
        let everything = format!("{:?}", r);
        for secret in [
            "hunter2",
            "fifteen-chars-x",
            "sixteen-chars-xy",
            "0123456789abcdef",
            "ééé",
        ] {
            assert!(
                !everything.contains(secret),
                "{secret} printed: {everything}"
            );
        }
    }

    /// A private config at `dir/vb.toml` with `body`; returns its path.
    fn write_private(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    const PAM_ON: &str = "[pam]\nsocket = \"/run/vip-bridge-test/pam.sock\"\n";

    /// What `serve` refuses before binding, `check-config` refuses too, offline or not: the
    /// packaged unit's pre-start check must fail where the daemon would.
    #[tokio::test]
    async fn check_config_refuses_what_serve_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let certs = vip_sim::certs::generate(&d.join("certs")).unwrap();
        let test_vip = format!(
            "[vip]\nauth_url = \"https://127.0.0.1:1/a\"\nquery_url = \"https://127.0.0.1:1/q\"\n\
             management_url = \"https://127.0.0.1:1/m\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             ca_file = \"{}\"\n",
            certs.client_cert.display(),
            certs.client_key.display(),
            certs.ca_cert.display()
        );
        let key = write_private(d, "state.key", &"00".repeat(32), 0o600);
        let bad_key = write_private(d, "bad.key", "not hex", 0o600);
        let engine = |k: &Path| format!("[engine]\nstate_key_file = \"{}\"\n", k.display());
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "nothing served",
                format!("{test_vip}{}", engine(&key)),
                "serves nothing",
            ),
            (
                "radius without clients",
                format!("{test_vip}{}[radius]\nlisten = [\"127.0.0.1:0\"]\n", engine(&key)),
                "has no [[radius.clients]]",
            ),
            (
                "production VIP without a certificate",
                format!("{}{PAM_ON}", engine(&key)),
                "requires a client certificate",
            ),
            (
                "missing certificate files",
                format!(
                    "[vip]\nauth_url = \"https://127.0.0.1:1/a\"\nquery_url = \"https://127.0.0.1:1/q\"\n\
                     management_url = \"https://127.0.0.1:1/m\"\ncert_file = \"/nonexistent/c.pem\"\n\
                     key_file = \"/nonexistent/k.pem\"\n{}{PAM_ON}",
                    engine(&key)
                ),
                "/nonexistent/c.pem",
            ),
            (
                "missing State key",
                format!("{test_vip}{}{PAM_ON}", engine(&d.join("absent.key"))),
                "engine.state_key_file",
            ),
            (
                "malformed State key",
                format!("{test_vip}{}{PAM_ON}", engine(&bad_key)),
                "64 hexadecimal characters",
            ),
        ];
        for (what, body, expect) in cases {
            let cfg = write_private(d, "vb.toml", &body, 0o600);
            let offline = check_config(&cfg, true).await;
            let e = offline
                .expect_err(&format!("{what}: check-config --offline accepted it"))
                .to_string();
            assert!(e.contains(expect), "{what}: {e}");
            let serve = config::load(&cfg).and_then(|l| crate::daemon::preflight(&l));
            let e2 = serve
                .expect_err(&format!("{what}: serve's preflight accepted it"))
                .to_string();
            assert_eq!(e, e2, "{what}: check-config and serve disagree");
        }

        // The same with everything in place: OK offline, warnings only for modes.
        let cfg = write_private(
            d,
            "vb.toml",
            &format!("{test_vip}{}{PAM_ON}", engine(&key)),
            0o644,
        );
        let r = check_config(&cfg, true).await.unwrap();
        assert!(r.lines[0].contains("OK"), "{r:?}");
        let all = r.warnings.join("\n");
        assert!(
            all.contains(&format!("{}: mode 0644", cfg.display())),
            "{all}"
        );
        let cfg = write_private(
            d,
            "vb.toml",
            &format!("{test_vip}{}{PAM_ON}", engine(&key)),
            0o600,
        );
        let r = check_config(&cfg, true).await.unwrap();
        assert!(!r.warnings.iter().any(|w| w.contains("readable")), "{r:?}");
    }

    #[tokio::test]
    async fn readable_key_files_are_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let certs = vip_sim::certs::generate(&d.join("certs")).unwrap();
        let key = write_private(d, "state.key", &"00".repeat(32), 0o644);
        std::fs::set_permissions(&certs.client_key, std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let cfg = write_private(
            d,
            "vb.toml",
            &format!(
                "[vip]\nauth_url = \"https://127.0.0.1:1/a\"\nquery_url = \"https://127.0.0.1:1/q\"\n\
                 management_url = \"https://127.0.0.1:1/m\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
                 [engine]\nstate_key_file = \"{}\"\n{PAM_ON}",
                certs.client_cert.display(),
                certs.client_key.display(),
                key.display()
            ),
            0o600,
        );
        let r = check_config(&cfg, true).await.unwrap();
        let all = r.warnings.join("\n");
        assert!(
            all.contains("engine.state_key_file") && all.contains("readable by every user"),
            "{all}"
        );
        assert!(all.contains("vip.key_file"), "{all}");
        // Online, the unreachable VIP (port 1) is an error.
        assert!(check_config(&cfg, false).await.is_err());
    }
}
