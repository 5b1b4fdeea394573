//! Typed configuration of the auth core, and the loader every binary uses: errors name the
//! file, the line, the key and what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use std::collections::HashMap;

use crate::engine::{Engine, EngineConfig, EngineError, FirstFactorKind, LoginPolicy};
use crate::first_factor::{DirectoryConfig, FirstFactor};
use crate::metrics::Metrics;
use crate::trustbuilder::TrustBuilderConfig;
use crate::vip::VipConfig;

/// Which MFA service checks the second factor: `backend = "vip"` (the default) or
/// `backend = "trustbuilder"`, at the top of the file, before any section.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Vip,
    Trustbuilder,
}

impl BackendKind {
    /// The name the configuration, the logs and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Vip => "vip",
            BackendKind::Trustbuilder => "trustbuilder",
        }
    }
}

/// The sections of the config file the core reads. Binaries embed these in their own
/// top-level struct (`vip`, `engine`, `policies`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// The MFA service (`backend`): VIP's `[vip]` or TrustBuilder's `[trustbuilder]`.
    pub backend: BackendKind,
    pub vip: VipConfig,
    /// `[trustbuilder]`: required with `backend = "trustbuilder"`.
    pub trustbuilder: Option<TrustBuilderConfig>,
    pub engine: EngineConfig,
    /// Named login policies; RADIUS clients and PAM services refer to them by name.
    /// `default` always exists (built-in defaults unless configured).
    pub policies: BTreeMap<String, LoginPolicy>,
    /// First factors (`[directories.NAME]`: LDAP or upstream RADIUS) policies refer to.
    pub directories: BTreeMap<String, DirectoryConfig>,
    /// What several instances share (`[cluster]`): nothing (`memory`) or a Redis.
    pub cluster: crate::store::ClusterConfig,
    /// Where relative paths in `[directories]` start (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// A configuration problem: which file, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or a directory on its path) does not exist.
    #[error("{}: no such file; {MISSING_HINT}", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, or TOML that does not fit: `message` names the key and line where known.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// What to do when the configuration file is not there.
pub const MISSING_HINT: &str = "the vip-bridge package installs an example as \
     /etc/vip-bridge/vip-bridge.toml (from packaging/vip-bridge.toml in the source), \
     `vip-bridge demo --dir DIR` writes a complete working one to DIR/vip-bridge.toml, \
     or pass --config FILE (or set VIP_BRIDGE_CONFIG)";

/// Why the engine could not be built from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("VIP client: {0}")]
    Vip(#[from] crate::vip::VipError),
    #[error("TrustBuilder client: {0}")]
    TrustBuilder(#[from] crate::trustbuilder::TbError),
    #[error("directories.{name}: {message}")]
    Directory { name: String, message: String },
    /// `[cluster]`: the message names the key.
    #[error("{0}")]
    Store(String),
}

impl CoreConfig {
    /// The engine, its VIP client and its directories, as configured.
    pub fn build_engine(&self) -> Result<Arc<Engine>, BuildError> {
        self.engine_recording(None)
    }

    /// [`build_engine`](Self::build_engine), with the engine and its VIP client recording into
    /// `metrics`.
    pub fn build_engine_with_metrics(
        &self,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Engine>, BuildError> {
        self.engine_recording(Some(metrics))
    }

    fn engine_recording(&self, metrics: Option<Arc<Metrics>>) -> Result<Arc<Engine>, BuildError> {
        let backend: Arc<dyn crate::engine::backend::Backend> = match self.backend {
            BackendKind::Vip => {
                let client = crate::vip::VipClient::new(&self.vip)?;
                if let Some(m) = &metrics {
                    client.set_metrics(m.clone());
                }
                Arc::new(crate::vip::VipBackend::new(
                    client,
                    self.vip.health_check_interval,
                ))
            }
            BackendKind::Trustbuilder => {
                let tb = self.trustbuilder_section()?;
                let client = crate::trustbuilder::TrustBuilderClient::new(tb)?;
                if let Some(m) = &metrics {
                    client.set_metrics(m.clone());
                }
                Arc::new(crate::trustbuilder::TrustBuilderBackend::new(
                    client,
                    tb.health_check_interval,
                ))
            }
        };
        let engine =
            Engine::with_parts(&self.engine, backend, self.directories()?, &self.policies)?;
        if let Some(store) = crate::store::SharedStore::start(&self.cluster, &self.base_dir)
            .map_err(BuildError::Store)?
        {
            if let Some(m) = &metrics {
                store.set_metrics(m.clone());
            }
            engine.set_store(store);
        }
        if let Some(m) = metrics {
            engine.set_metrics(m);
        }
        Ok(engine)
    }

    /// Everything building the engine would refuse (the VIP client's URLs, certificate, key and
    /// CA files, the State key, the poll interval, the throttles, the directories' files),
    /// checked without starting anything or calling anyone. `check-config` and `serve` both run
    /// it, so a pre-start check catches what the daemon would refuse.
    pub fn check_engine(&self) -> Result<(), BuildError> {
        Engine::check(&self.engine)?;
        match self.backend {
            BackendKind::Vip => {
                crate::vip::VipClient::new(&self.vip)?;
            }
            BackendKind::Trustbuilder => {
                crate::trustbuilder::TrustBuilderClient::new(self.trustbuilder_section()?)?;
            }
        }
        self.directories()?;
        crate::store::SharedStore::check(&self.cluster, &self.base_dir)
            .map_err(BuildError::Store)?;
        Ok(())
    }

    /// `[trustbuilder]`, which `backend = "trustbuilder"` requires (`validate` says so first).
    fn trustbuilder_section(&self) -> Result<&TrustBuilderConfig, BuildError> {
        self.trustbuilder.as_ref().ok_or_else(|| {
            BuildError::TrustBuilder(crate::trustbuilder::TbError::config(MISSING_TRUSTBUILDER))
        })
    }

    /// The first factors `[directories]` describes (files read, nothing contacted).
    pub fn directories(&self) -> Result<HashMap<String, Arc<dyn FirstFactor>>, BuildError> {
        self.directories
            .iter()
            .map(|(name, d)| {
                d.build(&self.base_dir)
                    .map(|built| (name.clone(), built))
                    .map_err(|message| BuildError::Directory {
                        name: name.clone(),
                        message,
                    })
            })
            .collect()
    }

    /// The policy called `name`; `default` falls back to the built-in defaults.
    pub fn policy(&self, name: &str) -> Option<Arc<LoginPolicy>> {
        match self.policies.get(name) {
            Some(p) => Some(Arc::new(p.clone())),
            None if name == "default" => Some(Arc::new(LoginPolicy::default())),
            None => None,
        }
    }

    /// What the configuration gives up, one line each, naming the key: logged as warnings
    /// when the daemon starts and printed by `check-config`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.backend == BackendKind::Vip {
            // VIP's lockout count; TrustBuilder does not document one.
            out.extend(self.engine.throttle.codes_per_user_warning());
        }
        if self.backend == BackendKind::Vip && self.trustbuilder.is_some() {
            out.push("[trustbuilder] is configured but backend is \"vip\" (the default): it is not used; set backend = \"trustbuilder\" at the top of the file to use it".to_owned());
        }
        if self.cluster.store == crate::store::StoreKind::Redis
            && self.engine.state_key_file.is_none()
        {
            out.push("cluster.store = \"redis\" without engine.state_key_file: each instance seals States with a random key of its own, so a login cannot continue on another instance; give every instance the same key file (openssl rand -hex 32 > /etc/vip-bridge/state.key)".to_owned());
        }
        for (name, p) in &self.policies {
            for w in p.warnings() {
                out.push(format!("policies.{name}: {w}"));
            }
        }
        out
    }

    /// Checks what serde cannot; `path` is only used in messages.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        for (key, value, (min, max)) in self.durations() {
            check_duration(path, &key, value, min, max)?;
        }
        if self.backend == BackendKind::Trustbuilder {
            let Some(tb) = &self.trustbuilder else {
                return Err(ConfigError::Parse {
                    path: path.to_owned(),
                    message: MISSING_TRUSTBUILDER.to_owned(),
                });
            };
            tb.validate().map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            for (name, p) in &self.policies {
                if p.mode == crate::engine::PasswordMode::PinOtp {
                    return Err(ConfigError::Invalid {
                        path: path.to_owned(),
                        key: format!("policies.{name}.mode"),
                        message: "\"pin_otp\" sends a VIP PIN with the code; TrustBuilder's PIN is entered in its app: use mode = \"code\" or \"challenge\" with backend = \"trustbuilder\"".to_owned(),
                    });
                }
                if p.enrollment != crate::engine::Enrollment::Off {
                    return Err(ConfigError::Invalid {
                        path: path.to_owned(),
                        key: format!("policies.{name}.enrollment"),
                        message: "in-band enrollment uses VIP's Management API; with backend = \"trustbuilder\" set it to \"off\" (enroll TrustBuilder users with their activation code or `vip-bridge admin`)".to_owned(),
                    });
                }
            }
        }
        for (name, p) in &self.policies {
            let invalid = |message| ConfigError::Invalid {
                path: path.to_owned(),
                key: format!("policies.{name}"),
                message,
            };
            p.validate().map_err(invalid)?;
            self.check_directory_use(p).map_err(invalid)?;
        }
        Ok(())
    }

    /// The directory references of policy `p`: its first factor's, its user-name mapping's
    /// (an LDAP attribute), and its group policies'.
    fn check_directory_use(&self, p: &LoginPolicy) -> Result<(), String> {
        let kinds = || self.directories.iter().map(|(n, d)| (n.as_str(), d.kind()));
        let dir = p.directory.as_deref();
        if p.first_factor != FirstFactorKind::None {
            crate::first_factor::pick(kinds(), p.first_factor.as_str(), dir)
                .map_err(|m| format!("first_factor = {:?}: {m}", p.first_factor.as_str()))?;
        }
        if let Some(attribute) = &p.user_name.vip_user_attribute {
            if p.first_factor == FirstFactorKind::Radius {
                return Err(format!("user_name.vip_user_attribute = {attribute:?}: an upstream RADIUS server has no attributes to read; use an ldap directory or a vip_user template"));
            }
            crate::first_factor::pick(kinds(), "ldap", dir)
                .map_err(|m| format!("user_name.vip_user_attribute = {attribute:?}: {m}"))?;
        }
        for gp in &p.group_policies {
            let Some(target) = self.policies.get(&gp.policy) else {
                return Err(format!(
                    "group_policies: group {:?} names policy {:?}, which is not configured",
                    gp.group, gp.policy
                ));
            };
            if target.first_factor != FirstFactorKind::None
                || target.mode == crate::engine::PasswordMode::PinOtp
            {
                return Err(format!("group_policies: policy {:?} (for group {:?}) must be a second-factor policy: no first_factor, and mode \"code\" or \"challenge\"", gp.policy, gp.group));
            }
        }
        Ok(())
    }

    /// Every duration key of `[vip]` and `[engine]` with its value and allowed range.
    /// (`policies.*.push_timeout` is bounded by `LoginPolicy::validate`.)
    fn durations(&self) -> Vec<(String, Duration, (Duration, Duration))> {
        let vip = &self.vip;
        let engine = &self.engine;
        let throttle = &engine.throttle;
        let mut out = vec![
            ("vip.timeout".to_owned(), vip.timeout, bounds::VIP_TIMEOUT),
            (
                "vip.health_check_interval".to_owned(),
                vip.health_check_interval,
                bounds::HEALTH_CHECK_INTERVAL,
            ),
            (
                "engine.state_ttl".to_owned(),
                engine.state_ttl,
                bounds::STATE_TTL,
            ),
            (
                "engine.poll_interval".to_owned(),
                engine.poll_interval,
                bounds::POLL_INTERVAL,
            ),
            (
                "engine.user_info_ttl".to_owned(),
                engine.user_info_ttl,
                bounds::USER_INFO_TTL,
            ),
        ];
        if let Some(tb) = &self.trustbuilder {
            out.push((
                "trustbuilder.timeout".to_owned(),
                tb.timeout,
                bounds::VIP_TIMEOUT,
            ));
            out.push((
                "trustbuilder.health_check_interval".to_owned(),
                tb.health_check_interval,
                bounds::HEALTH_CHECK_INTERVAL,
            ));
        }
        for (name, limit) in [
            ("push_per_user", throttle.push_per_user),
            ("codes_per_user", throttle.codes_per_user),
            ("requests_per_client", throttle.requests_per_client),
            (
                "password_failures_per_user",
                throttle.password_failures_per_user,
            ),
            ("enrollment_per_user", throttle.enrollment_per_user),
        ] {
            out.push((
                format!("engine.throttle.{name}.per"),
                limit.per,
                bounds::THROTTLE_PER,
            ));
        }
        out
    }
}

/// What `backend = "trustbuilder"` without its section gets told.
const MISSING_TRUSTBUILDER: &str = "backend = \"trustbuilder\" needs a [trustbuilder] section: service_id (the number from TrustBuilder's administration console) and the \"Web services API access\" certificate (pkcs12_file + pkcs12_password_file, or cert_file + key_file)";

/// The allowed range (inclusive) of each duration key, checked when the file is loaded so an
/// absurd value is a configuration error naming the key, never an overflow at run time.
pub mod bounds {
    use std::time::Duration;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// `vip.timeout`: one VIP call, connect to last byte.
    pub const VIP_TIMEOUT: (Duration, Duration) = (ms(100), s(5 * 60));
    /// `vip.health_check_interval`.
    pub const HEALTH_CHECK_INTERVAL: (Duration, Duration) = (s(1), s(3600));
    /// `engine.state_ttl`: how long a Challenge stays answerable.
    pub const STATE_TTL: (Duration, Duration) = (s(10), s(3600));
    /// `engine.poll_interval`: between pollPushStatus calls (push_timeout is 5s to 10m).
    pub const POLL_INTERVAL: (Duration, Duration) = (ms(100), s(60));
    /// `engine.user_info_ttl`: 0s caches nothing.
    pub const USER_INFO_TTL: (Duration, Duration) = (Duration::ZERO, s(3600));
    /// `engine.throttle.*.per`: the window of a rate limit.
    pub const THROTTLE_PER: (Duration, Duration) = (s(1), s(24 * 3600));
}

/// `Err` naming the file and `key` unless `min <= value <= max`.
pub fn check_duration(
    path: &Path,
    key: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        message: format!(
            "{}: must be between {} and {}",
            humantime::format_duration(value),
            humantime::format_duration(min),
            humantime::format_duration(max)
        ),
    })
}

/// Configuration files larger than this are refused.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Reads and parses a TOML file into `T`. Errors name the file, and the key and line where
/// the problem is (see [`parse_toml`]).
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let read = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => ConfigError::Missing {
            path: path.to_owned(),
        },
        _ => ConfigError::Read {
            path: path.to_owned(),
            source,
        },
    };
    let raw = crate::files::read_at_most(path, MAX_CONFIG_BYTES).map_err(read)?;
    let text = std::str::from_utf8(&raw).map_err(|e| {
        read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8: {e}"),
        ))
    })?;
    parse_toml(path, text)
}

/// Parses TOML text; `path` names the source in errors.
///
/// A value of the wrong type or form is reported as `KEY (line N): PROBLEM`, with the dotted
/// key (`engine.throttle.codes_per_user.per`, `radius.clients[1].secret`) found from the
/// error's position; a bad duration also says how to write one. Syntax errors keep toml's own
/// message (line, column and the offending text).
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: describe_toml_error(text, &e),
    })
}

/// The message of a toml error, with the key, line and, for durations, an example.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let problem = e.message().trim_end();
    let located = e
        .span()
        .and_then(|span| locate::key_at(text, &span).map(|key| (key, span)));
    let Some((key, span)) = located else {
        // A syntax error (or no position): toml's own message shows the line and the text.
        let mut out = e.to_string().trim_end().to_owned();
        if is_duration_error(problem) {
            out.push_str(&duration_hint(None));
        }
        return out;
    };
    let line = text
        .get(..span.start)
        .map(|before| before.matches('\n').count() + 1)
        .unwrap_or(1);
    let mut out = format!("{key} (line {line}): {problem}");
    if is_duration_error(problem) {
        out.push_str(&duration_hint(Some(&key)));
    }
    out
}

/// Whether serde's message is humantime_serde refusing a value ("expected a duration").
fn is_duration_error(problem: &str) -> bool {
    problem.contains("expected a duration")
}

/// How to write a duration, with the key's own name in the example when known.
fn duration_hint(key: Option<&str>) -> String {
    let example = match key.and_then(|k| k.rsplit('.').next()) {
        Some(leaf) if !leaf.is_empty() && !leaf.contains(['[', '"']) => {
            format!("{leaf} = \"5s\"")
        }
        _ => "\"5s\"".to_owned(),
    };
    format!(
        "; a duration is a quoted number with a unit, e.g. {example}, \"250ms\", \"2m\" or \"1h 30m\""
    )
}

/// Finds the key a toml error points at: the document is parsed again into a tree of keys
/// with the byte span of each value, and the innermost value around the error's span names it.
mod locate {
    use std::fmt;
    use std::ops::Range;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    // toml's (serde_spanned's) protocol for asking a value for its position: a struct of this
    // name with these fields. Should a toml upgrade change it, values come back without a span
    // and errors lose their key, nothing else (a unit test notices).
    const SPANNED: &str = "$__serde_spanned_private_Spanned";
    const START: &str = "$__serde_spanned_private_start";
    const END: &str = "$__serde_spanned_private_end";
    const VALUE: &str = "$__serde_spanned_private_value";
    const FIELDS: &[&str] = &[START, END, VALUE];

    /// A value, its span when toml knows it, and what is inside.
    #[derive(Default)]
    struct Located {
        span: Option<Range<usize>>,
        children: Vec<(Step, Located)>,
    }

    enum Step {
        Key(String),
        Index(usize),
    }

    /// The dotted key (with `[i]` for array elements) of the innermost value whose span holds
    /// `at`; `None` when no value does (a syntax error, or the root table itself).
    pub(super) fn key_at(text: &str, at: &Range<usize>) -> Option<String> {
        let root: Located = toml::from_str(text).ok()?;
        let mut best: Option<(usize, Vec<&Step>)> = None;
        let mut path = Vec::new();
        search(&root, at, &mut path, &mut best);
        best.map(|(_, steps)| render(&steps))
    }

    fn search<'a>(
        node: &'a Located,
        at: &Range<usize>,
        path: &mut Vec<&'a Step>,
        best: &mut Option<(usize, Vec<&'a Step>)>,
    ) {
        for (step, child) in &node.children {
            path.push(step);
            if let Some(span) = &child.span {
                if span.start <= at.start && at.end <= span.end {
                    let width = span.end - span.start;
                    // Innermost wins; on a tie the deeper path (a key inside an empty table).
                    if best
                        .as_ref()
                        .is_none_or(|(w, p)| width < *w || (width == *w && path.len() > p.len()))
                    {
                        *best = Some((width, path.clone()));
                    }
                }
            }
            // Implicit tables (`[a.b]` without `[a]`) have no span: always look inside.
            search(child, at, path, best);
            path.pop();
        }
    }

    fn render(steps: &[&Step]) -> String {
        let mut out = String::new();
        for step in steps {
            match step {
                Step::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        out.push_str(k);
                    } else {
                        out.push('"');
                        for c in k.chars() {
                            match c {
                                '"' => out.push_str("\\\""),
                                '\\' => out.push_str("\\\\"),
                                c if c.is_control() => out.push('?'),
                                c => out.push(c),
                            }
                        }
                        out.push('"');
                    }
                }
                Step::Index(i) => {
                    out.push_str(&format!("[{i}]"));
                }
            }
        }
        out
    }

    impl<'de> Deserialize<'de> for Located {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_struct(SPANNED, FIELDS, LocatedVisitor)
        }
    }

    /// The value inside a span: deserialised without asking for a span again.
    struct Inner(Located);

    impl<'de> Deserialize<'de> for Inner {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(LocatedVisitor).map(Inner)
        }
    }

    struct LocatedVisitor;

    impl<'de> Visitor<'de> for LocatedVisitor {
        type Value = Located;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any TOML value")
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Located, E> {
            Ok(Located::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Located, E> {
            Ok(Located::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Located, E> {
            Ok(Located::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Located, E> {
            Ok(Located::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Located, E> {
            Ok(Located::default())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located, A::Error> {
            let mut children = Vec::new();
            while let Some(v) = seq.next_element::<Located>()? {
                children.push((Step::Index(children.len()), v));
            }
            Ok(Located {
                span: None,
                children,
            })
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located, A::Error> {
            let mut children = Vec::new();
            let mut start = None;
            let mut end = None;
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    START => start = Some(map.next_value::<usize>()?),
                    END => end = Some(map.next_value::<usize>()?),
                    VALUE => {
                        let Inner(mut inner) = map.next_value::<Inner>()?;
                        if let (Some(s), Some(e)) = (start, end) {
                            inner.span = Some(s..e);
                        }
                        return Ok(inner);
                    }
                    _ => {
                        let v = map.next_value::<Located>()?;
                        children.push((Step::Key(key), v));
                    }
                }
            }
            Ok(Located {
                span: None,
                children,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        parse_toml::<CoreConfig>(Path::new("/etc/vb.toml"), text)
            .unwrap_err()
            .to_string()
    }

    fn validate_err(text: &str) -> String {
        let path = Path::new("/etc/vb.toml");
        parse_toml::<CoreConfig>(path, text)
            .unwrap()
            .validate(path)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_trustbuilder_backend_needs_its_section_and_no_enrollment() {
        let e = validate_err("backend = \"trustbuilder\"\n");
        assert!(
            e.starts_with("/etc/vb.toml: backend = \"trustbuilder\" needs a [trustbuilder] section: service_id"),
            "{e}"
        );
        let e = validate_err(
            "backend = \"trustbuilder\"\n[trustbuilder]\npkcs12_file = \"/etc/tb.p12\"\n",
        );
        assert!(e.contains("trustbuilder.service_id: required"), "{e}");
        let e = validate_err("backend = \"trustbuilder\"\n[trustbuilder]\nservice_id = 42\n");
        assert!(e.contains("trustbuilder.pkcs12_file: required"), "{e}");
        let e = validate_err(
            "backend = \"trustbuilder\"\n[trustbuilder]\nservice_id = 42\npkcs12_file = \"/etc/tb.p12\"\ntimeout = \"1h\"\n",
        );
        assert!(
            e.contains("trustbuilder.timeout: 1h: must be between"),
            "{e}"
        );
        let e = validate_err(
            "backend = \"trustbuilder\"\n[trustbuilder]\nservice_id = 42\npkcs12_file = \"/etc/tb.p12\"\n[directories.corp]\nkind = \"ldap\"\nurls = [\"ldap://127.0.0.1\"]\nbase_dn = \"dc=x\"\n[policies.vpn]\nfirst_factor = \"ldap\"\nenrollment = \"after_first_factor\"\n",
        );
        assert!(
            e.contains("policies.vpn.enrollment: in-band enrollment uses VIP's Management API"),
            "{e}"
        );
        let e = validate_err(
            "backend = \"trustbuilder\"\n[trustbuilder]\nservice_id = 42\npkcs12_file = \"/etc/tb.p12\"\n[policies.vpn]\nmode = \"pin_otp\"\n",
        );
        assert!(
            e.contains("policies.vpn.mode: \"pin_otp\" sends a VIP PIN"),
            "{e}"
        );
        let e = parse_err("backend = \"duo\"\n");
        assert!(e.contains("backend") && e.contains("trustbuilder"), "{e}");
        let path = Path::new("/etc/vb.toml");
        let ok: CoreConfig = parse_toml(
            path,
            "backend = \"trustbuilder\"\n[trustbuilder]\nservice_id = 42\npkcs12_file = \"/etc/tb.p12\"\n",
        )
        .unwrap();
        ok.validate(path).unwrap();
        assert_eq!(ok.backend, BackendKind::Trustbuilder);
        assert!(ok.warnings().iter().all(|w| !w.contains("[trustbuilder]")));
        let unused: CoreConfig = parse_toml(path, "[trustbuilder]\nservice_id = 42\n").unwrap();
        assert!(
            unused
                .warnings()
                .iter()
                .any(|w| w.starts_with("[trustbuilder] is configured but backend is \"vip\"")),
            "{:?}",
            unused.warnings()
        );
    }

    #[test]
    fn a_missing_file_says_so_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        for p in [dir.path().join("nope.toml"), dir.path().join("no/dir.toml")] {
            let e = load_toml::<CoreConfig>(&p).unwrap_err();
            assert!(matches!(e, ConfigError::Missing { .. }), "{e:?}");
            let e = e.to_string();
            assert!(
                e.starts_with(&format!("{}: no such file; ", p.display())),
                "{e}"
            );
            assert!(e.contains("/etc/vip-bridge/vip-bridge.toml"), "{e}");
            assert!(e.contains("vip-bridge demo --dir DIR"), "{e}");
            assert!(e.contains("--config FILE"), "{e}");
            assert!(!e.contains("os error"), "{e}");
        }
        // Other read errors keep the system's reason.
        let e = load_toml::<CoreConfig>(dir.path()).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    }

    #[test]
    fn a_bad_duration_names_the_key_and_line_and_shows_how_to_write_one() {
        for (text, key, line) in [
            ("[vip]\ntimeout = 5\n", "vip.timeout", 2),
            ("[vip]\ntimeout = \"5 secs please\"\n", "vip.timeout", 2),
            (
                "[vip]\n\n# c\nhealth_check_interval = \"30\"\n",
                "vip.health_check_interval",
                4,
            ),
            ("[engine]\nstate_ttl = 1.5\n", "engine.state_ttl", 2),
            // An implicit table ([engine] never written) and an inline table.
            (
                "[engine.throttle]\ncodes_per_user = { count = 3, per = 5 }\n",
                "engine.throttle.codes_per_user.per",
                2,
            ),
            (
                "engine.poll_interval = \"-1s\"\n",
                "engine.poll_interval",
                1,
            ),
            (
                "[policies.\"a b\"]\npush_timeout = \"1 fortnight\"\n",
                "policies.\"a b\".push_timeout",
                2,
            ),
        ] {
            let e = parse_err(text);
            assert!(
                e.starts_with(&format!("/etc/vb.toml: {key} (line {line}): ")),
                "{text}: {e}"
            );
            assert!(e.contains("expected a duration"), "{e}");
            let leaf = if key.ends_with("per") {
                "per"
            } else {
                key.rsplit('.').next().unwrap()
            };
            assert!(
                e.contains(&format!("e.g. {leaf} = \"5s\", \"250ms\", \"2m\"")),
                "{e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn other_type_errors_name_the_key_too_and_syntax_errors_keep_tomls_message() {
        let e = parse_err("[vip]\nmax_in_flight = \"many\"\n");
        assert!(
            e.starts_with("/etc/vb.toml: vip.max_in_flight (line 2): invalid type"),
            "{e}"
        );
        assert!(!e.contains("duration"), "{e}");
        let e = parse_err("[vip]\ntimeout = \n");
        assert!(e.contains("line 2"), "{e}");
        // A good file parses, durations included.
        parse_toml::<CoreConfig>(
            Path::new("x"),
            "[vip]\ntimeout = \"5 seconds\"\n[engine.throttle]\ncodes_per_user = { count = 3, per = \"2m\" }\n",
        )
        .unwrap();
    }

    #[test]
    fn keys_are_found_in_arrays_of_tables() {
        #[derive(Debug, Deserialize)]
        struct Doc {
            #[allow(dead_code)]
            clients: Vec<Client>,
        }
        #[derive(Debug, Deserialize)]
        struct Client {
            #[allow(dead_code)]
            #[serde(with = "humantime_serde")]
            wait: Duration,
        }
        let text = "[[clients]]\nwait = \"1s\"\n\n[[clients]]\nwait = true\n";
        let e = parse_toml::<Doc>(Path::new("d.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d.toml: clients[1].wait (line 5): "), "{e}");
    }

    #[test]
    fn a_code_limit_at_vips_lockout_is_a_warning() {
        assert!(CoreConfig::default().warnings().is_empty());
        let c: CoreConfig = parse_toml(
            Path::new("x"),
            "[engine.throttle]\ncodes_per_user = { count = 10, per = \"5m\" }\n",
        )
        .unwrap();
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("engine.throttle.codes_per_user.count = 10: VIP locks a credential after 10 consecutive bad codes by default: a stranger could lock users out"), "{w:?}");
    }

    #[test]
    fn check_duration_is_inclusive_and_names_file_key_and_range() {
        let p = Path::new("/etc/x.toml");
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(3600));
        assert!(check_duration(p, "k", min, min, max).is_ok());
        assert!(check_duration(p, "k", max, min, max).is_ok());
        let e = check_duration(p, "a.b", max + Duration::from_nanos(1), min, max)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/x.toml: a.b: "), "{e}");
        assert!(e.ends_with("must be between 1s and 1h"), "{e}");
        assert!(check_duration(p, "k", Duration::ZERO, min, max).is_err());
    }

    #[test]
    fn every_core_duration_is_bounded() {
        // About 3 × 10^16 s: `Instant + d` would panic.
        let absurd = Duration::from_secs(31_557_600 * 1_000_000_000);
        let p = Path::new("c.toml");
        CoreConfig::default().validate(p).unwrap();
        type Set = fn(&mut CoreConfig, Duration);
        let cases: Vec<(&str, Set)> = vec![
            ("vip.timeout", |c, d| c.vip.timeout = d),
            ("vip.health_check_interval", |c, d| {
                c.vip.health_check_interval = d
            }),
            ("engine.state_ttl", |c, d| c.engine.state_ttl = d),
            ("engine.poll_interval", |c, d| c.engine.poll_interval = d),
            ("engine.user_info_ttl", |c, d| c.engine.user_info_ttl = d),
            ("engine.throttle.push_per_user.per", |c, d| {
                c.engine.throttle.push_per_user.per = d
            }),
            ("engine.throttle.codes_per_user.per", |c, d| {
                c.engine.throttle.codes_per_user.per = d
            }),
            ("engine.throttle.requests_per_client.per", |c, d| {
                c.engine.throttle.requests_per_client.per = d
            }),
            ("engine.throttle.password_failures_per_user.per", |c, d| {
                c.engine.throttle.password_failures_per_user.per = d
            }),
            ("engine.throttle.enrollment_per_user.per", |c, d| {
                c.engine.throttle.enrollment_per_user.per = d
            }),
        ];
        assert_eq!(cases.len(), CoreConfig::default().durations().len());
        for (key, set) in cases {
            let mut c = CoreConfig::default();
            set(&mut c, absurd);
            let e = c.validate(p).unwrap_err().to_string();
            assert!(e.starts_with(&format!("c.toml: {key}: ")), "{e}");
            assert!(e.contains("must be between"), "{e}");
            if key != "engine.user_info_ttl" {
                let mut c = CoreConfig::default();
                set(&mut c, Duration::ZERO);
                let e = c.validate(p).unwrap_err().to_string();
                assert!(e.starts_with(&format!("c.toml: {key}: ")), "{e}");
            }
        }
    }

    #[test]
    fn a_shared_store_without_a_shared_state_key_is_warned_about() {
        let mut c = CoreConfig::default();
        c.cluster.store = crate::store::StoreKind::Redis;
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.contains("without engine.state_key_file")));
        c.engine.state_key_file = Some("/etc/vip-bridge/state.key".into());
        assert!(!c.warnings().iter().any(|w| w.contains("state_key_file")));
    }
}
