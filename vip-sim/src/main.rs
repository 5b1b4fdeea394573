//! `vip-sim`: run the VIP User Services simulator, or generate its test certificates.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

// The simulator stands in for a remote service but shares the benchmark machine's cores with
// vip-bridge: keep its allocation cost low.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A faithful Symantec VIP User Services simulator (SOAP over mutual TLS).
#[derive(Debug, Parser)]
#[command(name = "vip-sim", version, about)]
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

/// Errors are one line on stderr, `vip-sim: what: why`, and exit status 1 (never a Rust
/// `Debug` dump or a backtrace, whatever `RUST_BACKTRACE` says).
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vip-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    if let Some(Command::GenCerts { dir }) = cli.command {
        let paths = vip_sim::certs::generate(&dir)
            .with_context(|| format!("generating certificates in {}", dir.display()))?;
        eprint!("{}", paths.summary());
        eprintln!("The PKCS#12 passphrase follows on stdout (it is also in client.p12.password).");
        println!("{}", paths.p12_password);
        return Ok(());
    }
    let Some(path) = cli.config else {
        anyhow::bail!("--config FILE is required (or use the gen-certs subcommand); see --help");
    };
    let mut cfg = vip_sim::SimConfig::load(&path)?;
    if let Some(l) = cli.listen {
        cfg.server.listen = l;
    }
    if let Some(a) = cli.admin_listen {
        cfg.server.admin_listen = Some(a);
    }
    let sim = vip_sim::Sim::start(cfg).await?;
    let line = serde_json::json!({
        "listen": sim.addr().to_string(),
        "admin": sim.admin_addr().map(|a| a.to_string()),
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    wait_for_signal().await?;
    sim.shutdown().await;
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
