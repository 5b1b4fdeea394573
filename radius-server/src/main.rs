//! `vip-bridge`: thin edge: parse the command line, run, print errors as one line, exit 1.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use vip_bridge::cli::{Cli, Command};
use vip_bridge::tools::{TestAuthEnd, Typed};

// Every login allocates small, short-lived buffers on several threads (packet, SOAP body,
// parsed answer); mimalloc's per-thread free lists make that cheaper than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    plain_text_unless_terminal();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            // Our errors already carry their causes in their messages (file, key, problem).
            eprintln!("vip-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Colour codes only for a terminal: when stderr is a pipe, a file or the journal, set
/// `NO_COLOR` (<https://no-color.org>) before anything prints, so that every log layer any
/// subcommand installs (tracing-subscriber honours it) and clap write plain text. The daemon's
/// own logging decides the same way explicitly. `NO_COLOR` or `CLICOLOR_FORCE` already set by
/// the user win. Runs first in `main`, before any thread exists.
fn plain_text_unless_terminal() {
    let user_chose = ["NO_COLOR", "CLICOLOR_FORCE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    if !user_chose && !std::io::stderr().is_terminal() {
        std::env::set_var("NO_COLOR", "1");
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vip-bridge")
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
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
            if !report.errors.is_empty() {
                for e in &report.errors {
                    eprintln!("error: {e}");
                }
                return Ok(ExitCode::from(1));
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
                a.password_file.as_deref(),
                &mut std::io::stdout(),
            ))?;
            return Ok(match end {
                TestAuthEnd::Accept => ExitCode::SUCCESS,
                TestAuthEnd::Reject => ExitCode::from(1),
                TestAuthEnd::Challenge => ExitCode::from(2),
            });
        }
        Command::Admin(a) => {
            let code = runtime()?.block_on(vip_bridge::admin::run(a, &mut std::io::stdout()))?;
            return Ok(ExitCode::from(code));
        }
        #[cfg(feature = "demo")]
        Command::Demo(d) => match &d.action {
            Some(vip_bridge::cli::DemoCommand::Code { user }) => {
                println!("{}", vip_bridge::demo::code(user)?)
            }
            None => runtime()?.block_on(vip_bridge::demo::run(&d))?,
        },
        #[cfg(not(feature = "demo"))]
        Command::Demo(_) => {
            return Err(anyhow::anyhow!(
                "this vip-bridge was built without the demo (cargo feature `demo`, which the \
                 Debian package leaves out so a production daemon does not link the VIP \
                 simulator); try it from the source: cargo run --release -p vip-bridge -- demo"
            ))
        }
        Command::Man { dir: Some(dir) } => {
            for page in vip_bridge::manpages::write_all(&dir)? {
                println!("{}", page.display());
            }
        }
        Command::Man { dir: None } => {
            let pages = vip_bridge::manpages::render()?;
            if let Some((_, main_page)) = pages.first() {
                std::io::stdout()
                    .write_all(main_page)
                    .map_err(|e| anyhow::anyhow!("cannot write the man page: {e}"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
