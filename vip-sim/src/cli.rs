//! The command line both simulator binaries share (`vip-sim`, `tb-sim`): `--config FILE
//! [--listen ADDR] [--admin-listen ADDR]`, the JSON ready line, SIGTERM/SIGINT, `gen-certs`,
//! and one-line errors. Not a stable API.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::ServerConfig;

#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration (see vip-sim/README.md). Serves until SIGTERM / SIGINT and prints
    /// one JSON line `{"listen":"ADDR","admin":"ADDR"|null}` once bound.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Overrides server.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Overrides server.admin_listen (loopback only).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes ca.pem, server.pem, server.key, client.pem, client.key, client.p12 and
    /// client.p12.password into DIR. Lists on stderr each file, what it is and the config key
    /// that takes it, with the CA's fingerprint and the validity; prints only the PKCS#12
    /// password on stdout (for scripts).
    GenCerts {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
}

/// The command-line overrides of `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Overrides {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
}

impl Overrides {
    /// Applies `--listen` / `--admin-listen` to a loaded `[server]`.
    pub fn apply(&self, s: &mut ServerConfig) {
        if let Some(l) = self.listen {
            s.listen = l;
        }
        if let Some(a) = self.admin_listen {
            s.admin_listen = Some(a);
        }
    }
}

/// A started simulator: its addresses and how to stop it.
pub struct Started {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub stop: Pin<Box<dyn Future<Output = ()>>>,
}

/// Runs a simulator binary: parses the command line (`name`, `about` for --help), runs
/// gen-certs or `start(config, overrides)`, prints the ready line, waits for a signal, stops.
/// Errors are one line on stderr, `NAME: what: why`, and exit status 1.
pub fn main<F, Fut>(name: &'static str, about: &'static str, start: F) -> ExitCode
where
    F: FnOnce(PathBuf, Overrides) -> Fut,
    Fut: Future<Output = anyhow::Result<Started>>,
{
    match run(name, about, start) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run<F, Fut>(name: &'static str, about: &'static str, start: F) -> anyhow::Result<()>
where
    F: FnOnce(PathBuf, Overrides) -> Fut,
    Fut: Future<Output = anyhow::Result<Started>>,
{
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let matches = Cli::command().name(name).about(about).get_matches();
    let cli = Cli::from_arg_matches(&matches).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(Command::GenCerts { dir }) = cli.command {
        let paths = crate::certs::generate(&dir)
            .with_context(|| format!("generating certificates in {}", dir.display()))?;
        eprint!("{}", paths.summary());
        eprintln!("The PKCS#12 passphrase follows on stdout (it is also in client.p12.password).");
        println!("{}", paths.p12_password);
        return Ok(());
    }
    let Some(path) = cli.config else {
        anyhow::bail!("--config FILE is required (or use the gen-certs subcommand); see --help");
    };
    let overrides = Overrides {
        listen: cli.listen,
        admin_listen: cli.admin_listen,
    };
    let started = start(path, overrides).await?;
    let line = serde_json::json!({
        "listen": started.listen.to_string(),
        "admin": started.admin.map(|a| a.to_string()),
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    wait_for_signal().await?;
    started.stop.await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}
