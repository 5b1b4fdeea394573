//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

#[derive(Debug, Parser)]
#[command(
    name = "vip-bridge",
    version,
    about = "RADIUS and PAM second-factor bridge to Symantec VIP",
    long_about = "RADIUS and PAM second-factor bridge to Symantec VIP User Services.\n\n\
                  New here? Run `vip-bridge demo`: a complete bridge against a built-in VIP \
                  simulator, with the commands to try it printed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: RADIUS listeners and, when configured, the PAM socket and metrics.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, env = "VIP_BRIDGE_CONFIG")]
        config: PathBuf,
        /// Once every listener is up, write
        /// `{"radius":["ADDR",...],"pam":"PATH"|null,"metrics":"ADDR"|null}` here.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Validate the configuration, warn about readable secret files, and (unless --offline)
    /// ask VIP for its clock over the configured mutual TLS. Exits 0 when everything is good.
    CheckConfig {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, env = "VIP_BRIDGE_CONFIG")]
        config: PathBuf,
        /// Do not contact VIP (missing certificate and key files are then only warnings).
        #[arg(long)]
        offline: bool,
    },
    /// One login through the real engine with the configured VIP account; prints the outcome,
    /// VIP requestIds and timings. Exit status: 0 accept, 1 reject, 2 challenge left unanswered.
    TestAuth(TestAuthArgs),
    /// A complete bridge in one process against a built-in VIP simulator, to try it out.
    /// (Builds from source have it: cargo feature `demo`, on by default. The Debian package
    /// is built without it and says so.)
    Demo(DemoArgs),
    /// Write the man pages (roff): vip-bridge(1) and one per command into DIR, or
    /// vip-bridge(1) on stdout without DIR.
    #[command(hide = true)]
    Man {
        /// The directory to write every page into (created if missing).
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("factor").args(["code", "push", "sms", "voice"]))]
pub struct TestAuthArgs {
    /// The configuration file.
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, env = "VIP_BRIDGE_CONFIG")]
    pub config: PathBuf,
    /// The VIP user id.
    pub user: String,
    /// What the user types: a security code, PIN + code, or a keyword. Omit for an empty
    /// password (and see --push / --sms / --voice).
    pub code: Option<String>,
    /// Send a push (types the policy's first push keyword).
    #[arg(long)]
    pub push: bool,
    /// Send a code by SMS (types the policy's first SMS keyword).
    #[arg(long)]
    pub sms: bool,
    /// Send a code by phone call (types the policy's first voice keyword).
    #[arg(long)]
    pub voice: bool,
    /// The login policy (`[policies.NAME]`) to use.
    #[arg(long, default_value = "default")]
    pub policy: String,
    /// For a policy with a first factor: a file holding the directory password (one line;
    /// `-` reads it from stdin). It is combined with the code or keyword the way the policy
    /// reads them (`password,code`, `passwordCODE`, or the password then the menu).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub action: Option<DemoCommand>,
    /// RADIUS port (UDP) on 127.0.0.1; 0 picks a free one. The demo's simulator answers
    /// `demo code USER --sms` on the same port number over TCP.
    #[arg(long, default_value_t = DEMO_PORT)]
    pub port: u16,
    /// Keep certificates, configuration and the PAM socket here instead of a temporary
    /// directory (created if missing; not removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Print a demo user's current security code (from the public demo TOTP secret), or with
    /// --sms the code a running demo last texted the user.
    Code {
        // Named `user` because that is what the caller matches on; it carries the options too.
        #[command(flatten)]
        user: DemoCodeArgs,
    },
}

/// `vip-bridge demo code USER [--sms [--port N]]`.
#[derive(Debug, Args)]
pub struct DemoCodeArgs {
    /// alice, bob or carol.
    pub user: String,
    /// Print the code the running demo's simulator last "sent" to the user by SMS (after a
    /// login typed `sms`), asked of that demo process, instead of the token's current code.
    #[arg(long)]
    pub sms: bool,
    /// With --sms: the --port the demo runs with (its simulator answers on that TCP port).
    #[arg(long, default_value_t = DEMO_PORT, requires = "sms")]
    pub port: u16,
}

/// The demo's default RADIUS port (UDP), also the TCP port `demo code --sms` asks.
pub const DEMO_PORT: u16 = 18120;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_defaults_to_etc() {
        let cli = Cli::try_parse_from(["vip-bridge", "serve"]).unwrap();
        match cli.command {
            Command::Serve { config, ready_file } => {
                assert_eq!(config, PathBuf::from(DEFAULT_CONFIG_PATH));
                assert!(ready_file.is_none());
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "vip-bridge",
            "serve",
            "--config",
            "x.toml",
            "--ready-file",
            "r",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Serve { .. }));
    }

    #[test]
    fn check_config_offline() {
        let cli = Cli::try_parse_from(["vip-bridge", "check-config", "--offline"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::CheckConfig { offline: true, .. }
        ));
    }

    #[test]
    fn test_auth_factors_are_exclusive() {
        let cli = Cli::try_parse_from(["vip-bridge", "test-auth", "alice", "--push"]).unwrap();
        match cli.command {
            Command::TestAuth(a) => assert!(a.push && a.code.is_none() && a.policy == "default"),
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["vip-bridge", "test-auth", "alice", "123456", "--push"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["vip-bridge", "test-auth", "alice", "--sms", "--voice"]).is_err()
        );
    }

    #[test]
    fn demo_and_demo_code() {
        let cli = Cli::try_parse_from(["vip-bridge", "demo", "--port", "0"]).unwrap();
        match cli.command {
            Command::Demo(d) => assert!(d.port == 0 && d.action.is_none()),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["vip-bridge", "demo", "code", "alice"]).unwrap();
        match cli.command {
            Command::Demo(DemoArgs {
                action: Some(DemoCommand::Code { user }),
                ..
            }) => assert!(user.user == "alice" && !user.sms && user.port == DEMO_PORT),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "vip-bridge",
            "demo",
            "code",
            "alice",
            "--sms",
            "--port",
            "18777",
        ])
        .unwrap();
        match cli.command {
            Command::Demo(DemoArgs {
                action: Some(DemoCommand::Code { user }),
                ..
            }) => assert!(user.user == "alice" && user.sms && user.port == 18777),
            other => panic!("{other:?}"),
        }
        // --port only means something with --sms; `demo --port` before a subcommand is refused.
        assert!(
            Cli::try_parse_from(["vip-bridge", "demo", "code", "alice", "--port", "1"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["vip-bridge", "demo", "--port", "1", "code", "alice"]).is_err()
        );
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
