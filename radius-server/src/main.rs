//! `vip-bridge`: thin edge: parse the command line, run, print errors as one line, exit 1.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use vip_bridge::cli::{Cli, Command};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our errors already carry their causes in their messages (file, key, problem).
            eprintln!("vip-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, ready_file } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("vip-bridge")
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(vip_bridge::daemon::run(&config, ready_file.as_deref()))?;
        }
        Command::CheckConfig { config } => {
            let loaded = vip_bridge::config::load(&config)?;
            let clients = loaded.radius.as_ref().map(|r| r.clients.len()).unwrap_or(0);
            println!(
                "{}: OK ({} RADIUS client(s), PAM door {})",
                config.display(),
                clients,
                if loaded.pam.is_some() { "on" } else { "off" }
            );
        }
    }
    Ok(())
}
