//! Prometheus metrics of the auth core: logins, rejects, fail-opens, throttles, pending pushes
//! and VIP calls. One [`Metrics`] per process, shared as `Arc<Metrics>`, registered into a
//! `prometheus_client` [`Registry`]; the engine and the VIP client record into it when given one
//! (`Engine::with_metrics`, `VipClient::set_metrics`). Labels carry no user names, codes or
//! other per-login data: only small fixed sets (front door, factor, reason, operation, status).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub front_door: &'static str,
    pub factor: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

/// A call to the MFA service, whichever it is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MfaCallLabels {
    /// `vip`, `trustbuilder` (the `backend` setting).
    pub backend: &'static str,
    pub operation: &'static str,
    /// The service's status (VIP's code, TrustBuilder's `OK` / `NOK:...`), or `unreachable`,
    /// `protocol`, `tls_refused`...
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VipCallLabels {
    pub operation: &'static str,
    /// VIP's status code (`0000`, `6009`...), or `unreachable`, `protocol`, `tls_refused`,
    /// `bad_request` (refused before sending), `config`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectoryCallLabels {
    /// The configured name (`[directories.NAME]`).
    pub directory: String,
    /// `verify` (a password) or `lookup` (a user-name mapping).
    pub operation: &'static str,
    /// `passed`, `refused`, `challenge`, `found`, `not_found`, `outage`, `misconfigured`,
    /// `overloaded`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialChangeLabels {
    /// `credential_added`, `credential_reset` or `pin_changed`.
    pub event: &'static str,
    /// `token`, `sms`, `voice` or `pin`.
    pub credential: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreCallLabels {
    /// `spend_nonce`, or the throttle's name (`push_per_user`, ...).
    pub operation: &'static str,
    /// `ok` or `unavailable`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// `memory` (this instance decided) or `reject` (the login was refused).
    pub to: &'static str,
}

type Source = Box<dyn Fn() -> i64 + Send + Sync>;

/// A gauge read from a function at scrape time (0 until a source is set).
#[derive(Default)]
struct SourcedGauge {
    name: &'static str,
    help: &'static str,
    source: OnceLock<Source>,
}

impl std::fmt::Debug for SourcedGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourcedGauge")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector for SourcedGauge {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let value = self.source.get().map(|f| f()).unwrap_or(0);
        let gauge = ConstGauge::new(value);
        let metric = encoder.encode_descriptor(self.name, self.help, None, gauge.metric_type())?;
        gauge.encode(metric)
    }
}

/// The core's metrics. Names below are without the registry's prefix (the daemon uses
/// `vip_bridge`, so `logins` is exported as `vip_bridge_logins_total`).
#[derive(Debug)]
pub struct Metrics {
    /// `logins_total{front_door, factor, outcome}`: finished login rounds.
    pub logins: Family<LoginLabels, Counter>,
    /// `rejects_total{reason}`.
    pub rejects: Family<ReasonLabels, Counter>,
    /// `fail_opens_total`: logins let through without a second factor (fail_mode = "open").
    pub fail_opens: Counter,
    /// `throttled_total{limit}`.
    pub throttled: Family<LimitLabels, Counter>,
    /// `vip_calls_in_flight`: VIP calls on the wire now.
    pub vip_in_flight: Gauge,
    /// `vip_call_duration_seconds{operation, status}`.
    pub vip_call_duration: Family<VipCallLabels, Histogram>,
    /// `mfa_calls_in_flight{backend}`: calls to the MFA service (VIP or TrustBuilder) on the
    /// wire now.
    pub mfa_in_flight: Family<BackendLabels, Gauge>,
    /// `mfa_call_duration_seconds{backend, operation, status}`: every MFA service call; VIP's
    /// are also in `vip_call_duration_seconds`, as before.
    pub mfa_call_duration: Family<MfaCallLabels, Histogram>,
    /// `directory_call_duration_seconds{directory, operation, result}`: first-factor calls.
    pub directory_call_duration: Family<DirectoryCallLabels, Histogram>,
    /// `credential_changes_total{event, credential}`: credentials added or reset and PINs
    /// changed during logins (each also an audit line).
    pub credential_changes: Family<CredentialChangeLabels, Counter>,
    /// `store_call_duration_seconds{operation, result}`: calls to the shared store (Redis).
    pub store_call_duration: Family<StoreCallLabels, Histogram>,
    /// `store_fallbacks_total{to}`: store calls that got no answer, by what decided instead.
    pub store_fallbacks: Family<FallbackLabels, Counter>,
    /// `pending_pushes`: pushes being sent or polled (read from the engine at scrape time).
    pending_pushes: Arc<SourcedGauge>,
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn new(registry: &mut Registry) -> Arc<Metrics> {
        let m = Metrics {
            logins: Family::default(),
            rejects: Family::default(),
            fail_opens: Counter::default(),
            throttled: Family::default(),
            vip_in_flight: Gauge::default(),
            vip_call_duration: Family::new_with_constructor(|| {
                // 5 ms .. ~41 s
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            mfa_in_flight: Family::default(),
            mfa_call_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            directory_call_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            credential_changes: Family::default(),
            store_call_duration: Family::new_with_constructor(|| {
                // 50 µs .. ~0.4 s
                Histogram::new(exponential_buckets(0.00005, 2.0, 14))
            }),
            store_fallbacks: Family::default(),
            pending_pushes: Arc::new(SourcedGauge {
                name: "pending_pushes",
                help: "Pushes being sent or polled",
                source: OnceLock::new(),
            }),
        };
        registry.register(
            "logins",
            "Finished login rounds by front door, factor and outcome (accept, reject, challenge)",
            m.logins.clone(),
        );
        registry.register("rejects", "Rejects by reason", m.rejects.clone());
        registry.register(
            "fail_opens",
            "Logins let through WITHOUT a second factor because VIP was unreachable (fail_mode = \"open\")",
            m.fail_opens.clone(),
        );
        registry.register(
            "throttled",
            "Requests refused by a throttle, by limit",
            m.throttled.clone(),
        );
        registry.register(
            "vip_calls_in_flight",
            "VIP calls on the wire now",
            m.vip_in_flight.clone(),
        );
        registry.register(
            "vip_call_duration_seconds",
            "Duration of VIP calls by operation and status (VIP code, or unreachable / protocol / tls_refused)",
            m.vip_call_duration.clone(),
        );
        registry.register(
            "mfa_calls_in_flight",
            "Calls to the MFA service (backend: vip, trustbuilder) on the wire now",
            m.mfa_in_flight.clone(),
        );
        registry.register(
            "mfa_call_duration_seconds",
            "Duration of calls to the MFA service by backend (vip, trustbuilder), operation and status (the service's own, or unreachable / protocol / tls_refused)",
            m.mfa_call_duration.clone(),
        );
        registry.register(
            "directory_call_duration_seconds",
            "Duration of first-factor calls (LDAP, upstream RADIUS) by directory, operation and result",
            m.directory_call_duration.clone(),
        );
        registry.register(
            "credential_changes",
            "Credentials added or reset and PINs changed during logins (in-band enrollment), by event and credential kind",
            m.credential_changes.clone(),
        );
        registry.register(
            "store_call_duration_seconds",
            "Duration of calls to the shared store (Redis, [cluster]) by operation and result (ok, unavailable)",
            m.store_call_duration.clone(),
        );
        registry.register(
            "store_fallbacks",
            "Shared-store calls that got no answer in time, by what decided instead (memory: this instance; reject: the login was refused)",
            m.store_fallbacks.clone(),
        );
        registry.register_collector(Box::new(m.pending_pushes.clone()));
        Arc::new(m)
    }

    pub fn login(&self, front_door: &'static str, factor: &'static str, outcome: &'static str) {
        self.logins
            .get_or_create(&LoginLabels {
                front_door,
                factor,
                outcome,
            })
            .inc();
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejects.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn fail_open(&self) {
        self.fail_opens.inc();
    }

    pub fn credential_change(&self, event: &'static str, credential: &'static str) {
        self.credential_changes
            .get_or_create(&CredentialChangeLabels { event, credential })
            .inc();
    }

    pub fn store_call(&self, operation: &'static str, result: &'static str, elapsed: Duration) {
        self.store_call_duration
            .get_or_create(&StoreCallLabels { operation, result })
            .observe(elapsed.as_secs_f64());
    }

    pub fn store_fallback(&self, to: &'static str) {
        self.store_fallbacks
            .get_or_create(&FallbackLabels { to })
            .inc();
    }

    pub fn throttle(&self, limit: &'static str) {
        self.throttled.get_or_create(&LimitLabels { limit }).inc();
    }

    /// A VIP call: in `vip_call_duration_seconds` and `mfa_call_duration_seconds`.
    pub fn vip_call(&self, operation: &'static str, status: String, elapsed: Duration) {
        self.mfa_call("vip", operation, status.clone(), elapsed);
        self.vip_call_duration
            .get_or_create(&VipCallLabels { operation, status })
            .observe(elapsed.as_secs_f64());
    }

    /// A call to the MFA service `backend` (`mfa_call_duration_seconds`).
    pub fn mfa_call(
        &self,
        backend: &'static str,
        operation: &'static str,
        status: String,
        elapsed: Duration,
    ) {
        self.mfa_call_duration
            .get_or_create(&MfaCallLabels {
                backend,
                operation,
                status,
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn directory_call(
        &self,
        directory: &str,
        operation: &'static str,
        result: &'static str,
        elapsed: Duration,
    ) {
        self.directory_call_duration
            .get_or_create(&DirectoryCallLabels {
                directory: directory.to_owned(),
                operation,
                result,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one call to the MFA service `backend` in flight until the guard is dropped
    /// (VIP's also in `vip_calls_in_flight`).
    pub fn call_in_flight(self: &Arc<Self>, backend: &'static str) -> InFlight {
        if backend == "vip" {
            self.vip_in_flight.inc();
        }
        self.mfa_in_flight
            .get_or_create(&BackendLabels { backend })
            .inc();
        InFlight(self.clone(), backend)
    }

    /// Where `pending_pushes` reads its value; the first source set wins.
    pub fn set_pending_pushes_source(&self, f: impl Fn() -> i64 + Send + Sync + 'static) {
        let _ = self.pending_pushes.source.set(Box::new(f));
    }
}

/// Decrements the in-flight gauges when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>, &'static str);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.1 == "vip" {
            self.0.vip_in_flight.dec();
        }
        self.0
            .mfa_in_flight
            .get_or_create(&BackendLabels { backend: self.1 })
            .dec();
    }
}

/// Renders `registry` in the text exposition format (OpenMetrics 1.0).
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn series_are_exported_with_their_labels() {
        let mut reg = Registry::with_prefix("vip_bridge");
        let m = Metrics::new(&mut reg);
        m.login("radius", "code", "accept");
        m.login("radius", "code", "accept");
        m.reject("bad_code");
        m.throttle("codes_per_user");
        m.fail_open();
        m.vip_call("checkOtp", "0000".into(), Duration::from_millis(12));
        m.directory_call("corp", "verify", "refused", Duration::from_millis(3));
        m.mfa_call(
            "trustbuilder",
            "authenticateExtended",
            "NOK:no device found".into(),
            Duration::from_millis(9),
        );
        let guard = m.call_in_flight("vip");
        let tb_guard = m.call_in_flight("trustbuilder");
        m.set_pending_pushes_source(|| 3);
        let text = encode(&reg).unwrap();
        assert!(
            text.contains(
                r#"vip_bridge_logins_total{front_door="radius",factor="code",outcome="accept"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"vip_bridge_rejects_total{reason="bad_code"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vip_bridge_throttled_total{limit="codes_per_user"} 1"#),
            "{text}"
        );
        assert!(text.contains("vip_bridge_fail_opens_total 1"), "{text}");
        assert!(text.contains("vip_bridge_vip_calls_in_flight 1"), "{text}");
        assert!(
            text.contains(r#"vip_bridge_mfa_calls_in_flight{backend="trustbuilder"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vip_bridge_mfa_calls_in_flight{backend="vip"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"vip_bridge_mfa_call_duration_seconds_count{backend="trustbuilder",operation="authenticateExtended",status="NOK:no device found"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"vip_bridge_mfa_call_duration_seconds_count{backend="vip",operation="checkOtp",status="0000"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("vip_bridge_pending_pushes 3"), "{text}");
        assert!(
            text.contains(
                r#"vip_bridge_vip_call_duration_seconds_count{operation="checkOtp",status="0000"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"vip_bridge_directory_call_duration_seconds_count{directory="corp",operation="verify",result="refused"} 1"#
            ),
            "{text}"
        );
        drop(guard);
        drop(tb_guard);
        let text = encode(&reg).unwrap();
        assert!(
            text.contains(r#"vip_bridge_mfa_calls_in_flight{backend="trustbuilder"} 0"#),
            "{text}"
        );
        assert!(text.contains("vip_bridge_vip_calls_in_flight 0"), "{text}");
    }
}
