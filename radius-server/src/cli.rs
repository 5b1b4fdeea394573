//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

#[derive(Debug, Parser)]
#[command(
    name = "vip-bridge",
    version,
    about = "RADIUS and PAM second-factor bridge to Symantec VIP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: RADIUS listeners and, when configured, the PAM socket.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, env = "VIP_BRIDGE_CONFIG")]
        config: PathBuf,
        /// Once every listener is up, write `{"radius":["ADDR",...],"pam":"PATH"|null}` here.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Load and validate the configuration, then exit (0 when it is good).
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, env = "VIP_BRIDGE_CONFIG")]
        config: PathBuf,
    },
}

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
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
