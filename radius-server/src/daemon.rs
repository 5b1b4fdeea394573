//! Start-up and shutdown: load the configuration, start logging, build the engine, bind the
//! RADIUS listeners and the PAM door, write the ready file, and on SIGTERM/SIGINT stop
//! accepting and let in-flight logins finish (up to `radius.shutdown_timeout`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use vip_core::engine::Authenticate;
use vip_core::metrics::Metrics;

use crate::config::{self, Loaded, LogConfig, LogFormat};
use crate::error::{Error, Result};
use crate::metrics_http::{self, AccountingCollector, RadiusCollector};
use crate::pam_door;
use crate::radius::{RadiusServer, Stats};

/// `vip-bridge serve`: runs until SIGTERM or SIGINT, then exits cleanly.
pub async fn run(config_path: &Path, ready_file: Option<&Path>) -> Result<()> {
    let cfg = config::load(config_path)?;
    preflight(&cfg)?;
    init_logging(&cfg.log)?;
    let mut registry = new_registry();
    let engine = cfg
        .core
        .build_engine_with_metrics(Metrics::new(&mut registry))?;
    let auth: Arc<dyn Authenticate> = engine;
    let shutdown = Arc::new(watch::channel(false).0);
    spawn_signal_handler(shutdown.clone())?;
    serve(
        cfg,
        auth,
        registry,
        ready_file.map(Path::to_path_buf),
        shutdown,
    )
    .await
}

/// Everything `serve` would refuse before it binds a socket, beyond what loading the file
/// checks: a configuration that serves nothing, and whatever building the engine refuses (the
/// VIP certificate, key and CA files, the State key...). `check-config` runs exactly this too,
/// so the packaged unit's pre-start check fails where `serve` would.
pub fn preflight(cfg: &Loaded) -> Result<()> {
    let radius_clients = cfg.radius.as_ref().map(|r| r.clients.len());
    if cfg.pam.is_none() && radius_clients.unwrap_or(0) == 0 {
        let what = match radius_clients {
            Some(_) => "[radius] has no [[radius.clients]] and there is no [pam] section",
            None => "there is neither a [radius] nor a [pam] section",
        };
        return Err(Error::Check(format!(
            "{}: the configuration serves nothing: {what}; add a [[radius.clients]] entry \
             (a VPN, firewall or Wi-Fi controller: name, address, secret_file) and/or a [pam] \
             section (SSH, sudo: see /usr/share/doc/vip-bridge/pam-module/README.md)",
            cfg.path.display()
        )));
    }
    let vip = &cfg.core.vip;
    let on_vip = cfg.core.backend == vip_core::config::BackendKind::Vip;
    if on_vip && vip.cert_file.is_none() && vip.pkcs12_file.is_none() {
        if let Some(url) = [&vip.auth_url, &vip.query_url, &vip.management_url]
            .into_iter()
            .find(|u| crate::tools::is_production(u))
        {
            return Err(Error::Check(format!(
                "{}: vip: production VIP ({url}) requires a client certificate: set \
                 vip.cert_file + vip.key_file, or vip.pkcs12_file (see \"The VIP certificate\" \
                 in the README)",
                cfg.path.display()
            )));
        }
    }
    cfg.core.check_engine()?;
    Ok(())
}

/// The registry every metric goes into; names are prefixed `vip_bridge_`.
pub fn new_registry() -> Registry {
    Registry::with_prefix("vip_bridge")
}

/// Starts logging as configured; `RUST_LOG`, when set, overrides `log.level`.
pub fn init_logging(log: &LogConfig) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(&log.level),
    }
    .map_err(|e| Error::Logging(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| Error::Logging(e.to_string()))
}

pub fn spawn_signal_handler(shutdown: Arc<watch::Sender<bool>>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|source| Error::Signal {
        signal: "SIGTERM",
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| Error::Signal {
        signal: "SIGINT",
        source,
    })?;
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = which, "shutting down");
        shutdown.send_replace(true);
    });
    Ok(())
}

/// Serves with an already built authenticator until `shutdown` is set (or the PAM door fails).
/// `registry` holds the engine's metrics (if any); the RADIUS counters are added to it, and it
/// is served on `[metrics] listen` when configured.
pub async fn serve(
    cfg: Loaded,
    auth: Arc<dyn Authenticate>,
    mut registry: Registry,
    ready_file: Option<PathBuf>,
    shutdown: Arc<watch::Sender<bool>>,
) -> Result<()> {
    let Loaded {
        path,
        core,
        radius,
        pam,
        metrics,
        log: _,
        shutdown_timeout,
    } = cfg;
    info!(config = %path.display(), "starting");
    for w in core.warnings() {
        warn!("{w}");
    }
    let stats = Arc::new(Stats::default());
    registry.register_collector(Box::new(RadiusCollector(stats.clone())));
    let radius = match radius {
        Some(settings) => {
            for c in settings.clients.iter() {
                if !c.require_message_authenticator {
                    warn!(
                        client = %c.name,
                        address = %c.net,
                        "require_message_authenticator = false: this client's requests are \
                         accepted without Message-Authenticator (Blast-RADIUS, CVE-2024-3596); \
                         upgrade the client and turn this back on"
                    );
                }
            }
            if settings.clients.is_empty() {
                warn!("[radius] has no clients: every request will be dropped");
            }
            Some(RadiusServer::bind(settings, auth.clone(), stats.clone()).await?)
        }
        None => None,
    };
    let radius_addrs = radius.as_ref().map(|r| r.local_addrs()).unwrap_or_default();
    let accounting_addrs = radius
        .as_ref()
        .map(|r| r.accounting_addrs())
        .unwrap_or_default();
    if let Some(r) = &radius {
        registry.register_collector(Box::new(AccountingCollector(r.accounting())));
    }
    let metrics_listener = match metrics {
        Some(addr) => Some(metrics_http::bind(addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let metrics_task = metrics_listener.map(|l| {
        tokio::spawn(metrics_http::serve(
            l,
            Arc::new(registry),
            shutdown.subscribe(),
        ))
    });

    let core = Arc::new(core);
    let pam_socket = pam.as_ref().map(|p| p.socket.clone());
    let (listening_tx, listening) = tokio::sync::oneshot::channel();
    let mut pam_task: Option<JoinHandle<std::io::Result<()>>> = pam.map(|p| {
        tokio::spawn(pam_door::serve(
            p,
            core.clone(),
            auth.clone(),
            shutdown.subscribe(),
            Some(listening_tx),
        ))
    });
    // Ready means the socket accepts connections, not that a (perhaps stale) file exists. A
    // door that fails to bind drops the sender: no ready file, and its error ends the daemon
    // below.
    let pam_listening = match pam_task {
        Some(_) => matches!(
            tokio::time::timeout(Duration::from_secs(10), listening).await,
            Ok(Ok(()))
        ),
        None => true,
    };

    let radius_task = radius.map(|r| tokio::spawn(r.run(shutdown.subscribe(), shutdown_timeout)));

    if pam_listening {
        if let Some(file) = &ready_file {
            write_ready_file(
                file,
                &radius_addrs,
                &accounting_addrs,
                pam_socket.as_deref(),
                metrics_addr,
            )?;
        }
        let or_off = |s: String| if s.is_empty() { "off".to_owned() } else { s };
        let joined = |a: &[std::net::SocketAddr]| {
            a.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        info!(
            radius = %or_off(joined(&radius_addrs)),
            accounting = %or_off(joined(&accounting_addrs)),
            pam = %or_off(pam_socket.as_deref().map(|p| p.display().to_string()).unwrap_or_default()),
            metrics = %or_off(metrics_addr.map(|a| a.to_string()).unwrap_or_default()),
            "ready"
        );
    }

    // Run until told to stop, or until the PAM door stops on its own (an error).
    let mut rx = shutdown.subscribe();
    let mut failure = None;
    // Biased: when shutdown is set, the PAM door also returns at once; that is the normal end,
    // not a failure, so the shutdown branch must win.
    tokio::select! {
        biased;
        _ = rx.wait_for(|stop| *stop) => {}
        r = wait_task(&mut pam_task) => {
            pam_task = None;
            match r {
                // The door also returns when shutdown was just set: a normal end.
                Ok(Ok(())) if *shutdown.borrow() => {}
                r => {
                    let e = match r {
                        Ok(Ok(())) => std::io::Error::other("it exited before shutdown"),
                        Ok(Err(e)) => e,
                        Err(join) => std::io::Error::other(join.to_string()),
                    };
                    error!(error = %e, "the PAM door stopped; shutting down");
                    failure = Some(Error::PamDoor(e));
                }
            }
        }
    }
    shutdown.send_replace(true);

    let deadline = tokio::time::Instant::now() + shutdown_timeout + Duration::from_secs(1);
    if let Some(t) = radius_task {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            warn!("RADIUS did not stop in time");
        }
    }
    if let Some(t) = pam_task {
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "the PAM door stopped with an error"),
            Ok(Err(e)) => warn!(error = %e, "the PAM door task failed"),
            Err(_) => warn!("the PAM door did not stop in time"),
        }
    }
    if let Some(t) = metrics_task {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            warn!("the metrics endpoint did not stop in time");
        }
    }
    let counters: Vec<String> = stats
        .snapshot()
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    info!(counters = %counters.join(" "), "stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn wait_task<T>(
    task: &mut Option<JoinHandle<T>>,
) -> std::result::Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// Writes the ready file atomically (temporary file, then rename).
fn write_ready_file(
    file: &Path,
    radius: &[std::net::SocketAddr],
    accounting: &[std::net::SocketAddr],
    pam: Option<&Path>,
    metrics: Option<std::net::SocketAddr>,
) -> Result<()> {
    let doc = serde_json::json!({
        "radius": radius.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "accounting": accounting.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "pam": pam.map(|p| p.display().to_string()),
        "metrics": metrics.map(|a| a.to_string()),
    });
    let tmp = file.with_extension("tmp");
    let err = |source| Error::ReadyFile {
        path: file.to_owned(),
        source,
    };
    std::fs::write(&tmp, format!("{doc}\n")).map_err(err)?;
    std::fs::rename(&tmp, file).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_file_format() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ready.json");
        write_ready_file(
            &f,
            &[
                "127.0.0.1:1812".parse().unwrap(),
                "[::1]:1813".parse().unwrap(),
            ],
            &["127.0.0.1:1814".parse().unwrap()],
            None,
            None,
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(v["radius"][0], "127.0.0.1:1812");
        assert_eq!(v["radius"][1], "[::1]:1813");
        assert_eq!(v["accounting"][0], "127.0.0.1:1814");
        assert!(v["pam"].is_null());
        assert!(v["metrics"].is_null());
        write_ready_file(
            &f,
            &[],
            &[],
            Some(Path::new("/run/x.sock")),
            Some("127.0.0.1:9812".parse().unwrap()),
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(v["pam"], "/run/x.sock");
        assert_eq!(v["accounting"], serde_json::json!([]));
        assert_eq!(v["metrics"], "127.0.0.1:9812");
    }
}
