//! `vip-bridge`: thin edge: parse the command line, run, print errors as one line, exit 1.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use vip_bridge::cli::{Cli, Command, DemoCommand};
use vip_bridge::tools::{TestAuthEnd, Typed};

// Every login allocates small, short-lived buffers on several threads (packet, SOAP body,
// parsed answer); mimalloc's per-thread free lists make that cheaper than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            // Our errors already carry their causes in their messages (file, key, problem).
            eprintln!("vip-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vip-bridge")
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, ready_file } => {
            runtime()?.block_on(vip_bridge::daemon::run(&config, ready_file.as_deref()))?;
        }
        Command::CheckConfig { config, offline } => {
            let report = runtime()?.block_on(vip_bridge::tools::check_config(&config, offline))?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            for l in &report.lines {
                println!("{l}");
            }
        }
        Command::TestAuth(a) => {
            let typed = match (a.code, a.push, a.sms, a.voice) {
                (Some(c), ..) => Typed::Code(c),
                (None, true, ..) => Typed::Push,
                (None, _, true, _) => Typed::Sms,
                (None, _, _, true) => Typed::Voice,
                _ => Typed::Nothing,
            };
            let end = runtime()?.block_on(vip_bridge::tools::test_auth(
                &a.config,
                &a.user,
                typed,
                &a.policy,
                &mut std::io::stdout(),
            ))?;
            return Ok(match end {
                TestAuthEnd::Accept => ExitCode::SUCCESS,
                TestAuthEnd::Reject => ExitCode::from(1),
                TestAuthEnd::Challenge => ExitCode::from(2),
            });
        }
        Command::Demo(d) => match &d.action {
            Some(DemoCommand::Code { user }) => println!("{}", vip_bridge::demo::code(user)?),
            None => runtime()?.block_on(vip_bridge::demo::run(&d))?,
        },
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
