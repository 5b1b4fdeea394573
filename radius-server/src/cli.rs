//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

#[derive(Debug, Parser)]
#[command(
    name = "vip-bridge",
    version,
    about = "RADIUS and PAM second-factor bridge to Symantec VIP (or TrustBuilder MFA)",
    long_about = "RADIUS and PAM second-factor bridge to Symantec VIP User Services, or to \
                  TrustBuilder MFA with backend = \"trustbuilder\".\n\n\
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
    /// ask the MFA service over the configured mutual TLS (VIP: its clock; TrustBuilder: its
    /// authentication and provisioning APIs with the service id). Exits 0 when everything is good.
    CheckConfig {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, env = "VIP_BRIDGE_CONFIG")]
        config: PathBuf,
        /// Do not contact the MFA service (missing certificate and key files are then only
        /// warnings).
        #[arg(long)]
        offline: bool,
    },
    /// One login through the real engine with the configured VIP or TrustBuilder account;
    /// prints the outcome, VIP requestIds (TrustBuilder has none) and timings. Exit status:
    /// 0 accept, 1 reject, 2 challenge left unanswered.
    TestAuth(TestAuthArgs),
    /// A complete bridge in one process against a built-in VIP simulator, to try it out.
    /// (Builds from source have it: cargo feature `demo`, on by default. The Debian package
    /// is built without it and says so.)
    Demo(DemoArgs),
    /// The help desk's commands against the configured MFA service, with the same
    /// configuration file: VIP's Management and Query services (users, credentials, temporary
    /// security codes, PINs, phones, a CSV import; VIP's requestId printed for every call) or,
    /// with backend = "trustbuilder", TrustBuilder's provisioning API (logins, activation
    /// codes, tools). Exit status: 0 done, 1 failed or refused, 3 not found (user, login,
    /// credential, tool or binding).
    Admin(AdminArgs),
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
    /// The simulated MFA service: Symantec VIP, or TrustBuilder MFA (backend = "trustbuilder").
    #[arg(long, value_enum, default_value_t = DemoBackend::Vip)]
    pub backend: DemoBackend,
    /// RADIUS port (UDP) on 127.0.0.1; 0 picks a free one. The demo's simulator answers
    /// `demo code USER --sms` on the same port number over TCP.
    #[arg(long, default_value_t = DEMO_PORT)]
    pub port: u16,
    /// Keep certificates, configuration and the PAM socket here instead of a temporary
    /// directory (created if missing; not removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `vip-bridge demo --backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoBackend {
    #[default]
    Vip,
    Trustbuilder,
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

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The configuration file (`backend`, and its `[vip]` or `[trustbuilder]` section: URLs,
    /// client certificate).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, env = "VIP_BRIDGE_CONFIG", global = true)]
    pub config: PathBuf,
    /// One JSON object on stdout instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The commands. Each works with the backend the configuration names (`backend`); the ones
/// only one backend has say so in their help and are refused, exit status 1, with the other.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Users (VIP users, TrustBuilder logins): show, create, update, delete; TrustBuilder also
    /// list, restore, send-activation, activate-code, new-code, reset-password.
    #[command(subcommand)]
    User(UserCommand),
    /// A user's credentials (TrustBuilder: tools): list, add (VIP), remove, rename.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Temporary security codes, for a user who lost their phone or token (VIP only).
    #[command(subcommand, name = "temp-code")]
    TempCode(TempCodeCommand),
    /// PINs: clear (VIP), unlock (TrustBuilder).
    #[command(subcommand)]
    Pin(PinCommand),
    /// Phone numbers for SMS codes (VIP only).
    #[command(subcommand)]
    Sms(PhoneCommand),
    /// Phone numbers for voice-call codes (VIP only).
    #[command(subcommand)]
    Voice(PhoneCommand),
    /// VIP's clock and ours (getServerTime): checks the account and certificate too (VIP only;
    /// see `check`).
    ServerTime,
    /// Whether the MFA service answers with this configuration's account and certificate: VIP
    /// getServerTime (as `server-time`); TrustBuilder its authentication API and a loginSearch
    /// on the provisioning API.
    Check,
    /// Create every user listed in a CSV file (a header line naming `user_id`). Safe to run
    /// again: users VIP already has are counted, not failed. Exit status 1 when a row failed or
    /// was malformed (the other rows are still sent). VIP only.
    Import(ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// VIP: the user's status, credentials, PIN and temporary-code state (getUserInfo).
    /// TrustBuilder: the login's status, role, names, mail, activation state and tools
    /// (loginSearch + loginQuery; an activation code is never shown here).
    Show { user: String },
    /// One page of the service's logins (loginsQuery; TrustBuilder only).
    List {
        /// The first login of the page (0: the first).
        #[arg(long, default_value_t = 0)]
        offset: i64,
        /// Logins per page.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        /// Sort by login name, name or mail (default: TrustBuilder's order).
        #[arg(long, value_enum)]
        sort: Option<SortArg>,
        /// Descending (with --sort).
        #[arg(long, requires = "sort")]
        desc: bool,
    },
    /// Create the user (enabled). TrustBuilder: loginCreate, and the activation code printed
    /// once (or mailed, --activation mail).
    Create {
        user: String,
        /// A file holding the user's first PIN (one line; `-` reads stdin).
        #[arg(long, value_name = "FILE", help_heading = "VIP")]
        pin_file: Option<PathBuf>,
        /// The PIN must be changed at its first use (with --pin-file).
        #[arg(long, requires = "pin_file", help_heading = "VIP")]
        force_pin_change: bool,
        #[command(flatten)]
        details: LoginDetailsArgs,
        /// How the activation code is issued: `code` valid at once for 30 minutes (printed),
        /// `inactive` valid 3 weeks once `user activate-code` switches it on (printed), `mail`
        /// an activation link mailed to --mail (valid 3 weeks). Default: code.
        #[arg(long, value_enum, help_heading = "TrustBuilder")]
        activation: Option<ActivationArg>,
    },
    /// Change the user's id, status or PIN (VIP), or the login's name, status, names, mail or
    /// phone (TrustBuilder: the fields not given are kept).
    Update {
        user: String,
        /// A new user id (TrustBuilder: login name).
        #[arg(long, value_name = "ID", visible_alias = "new-login")]
        new_id: Option<String>,
        /// Enable or disable the user (`blocked` is `disabled`, TrustBuilder's word).
        #[arg(long, value_enum)]
        status: Option<UserStatusArg>,
        /// A file holding the new PIN (one line; `-` reads stdin).
        #[arg(long, value_name = "FILE", help_heading = "VIP")]
        pin_file: Option<PathBuf>,
        /// The new PIN must be changed at its first use (with --pin-file).
        #[arg(long, requires = "pin_file", help_heading = "VIP")]
        force_pin_change: bool,
        #[command(flatten)]
        details: LoginDetailsArgs,
    },
    /// Delete the user and their credential bindings (TrustBuilder: loginDelete).
    Delete {
        user: String,
        /// Required: deleting cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// A restore code for a login that lost or blocked every device (loginRestore), printed
    /// once; using it deletes the login's other tools. TrustBuilder only.
    Restore { user: String },
    /// Mail the login its activation (or unlock) link (loginSendByMail). TrustBuilder only.
    SendActivation { user: String },
    /// Switch an inactive activation code (`user create --activation inactive`) on, and print
    /// it once (loginActivateCode). TrustBuilder only.
    ActivateCode { user: String },
    /// An activation code for one more device of the login (loginAddDevice), printed once.
    /// TrustBuilder only.
    NewCode { user: String },
    /// A recovery code to reset the login's password or PIN from a device blocked by wrong
    /// entries (loginResetPwdExtended, valid 15 minutes), printed once. TrustBuilder only.
    ResetPassword { user: String },
}

/// A TrustBuilder login's personal fields (loginCreate, loginUpdate).
#[derive(Debug, Default, Args)]
pub struct LoginDetailsArgs {
    /// The login's mail address.
    #[arg(long, help_heading = "TrustBuilder")]
    pub mail: Option<String>,
    /// The login's first name.
    #[arg(long, help_heading = "TrustBuilder")]
    pub firstname: Option<String>,
    /// The login's (last) name.
    #[arg(long, help_heading = "TrustBuilder")]
    pub name: Option<String>,
    /// The login's phone number.
    #[arg(long, help_heading = "TrustBuilder")]
    pub phone: Option<String>,
}

impl LoginDetailsArgs {
    /// The options given, by name (`--mail`...), for a backend that has none of them.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--mail", self.mail.is_some()),
            ("--firstname", self.firstname.is_some()),
            ("--name", self.name.is_some()),
            ("--phone", self.phone.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, given)| given.then_some(n))
        .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UserStatusArg {
    Active,
    Disabled,
    /// TrustBuilder's word for disabled.
    Blocked,
}

/// `user list --sort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortArg {
    Login,
    Name,
    Mail,
}

/// `user create --activation` (loginCreate's codetype).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ActivationArg {
    /// codetype 0: valid at once, for 30 minutes.
    Code,
    /// codetype 1: valid 3 weeks, once switched on by `user activate-code`.
    Inactive,
    /// codetype 2: a link mailed to --mail (loginSendByMail), valid 3 weeks.
    Mail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialTypeArg {
    /// A VIP Access app or hardware token (STANDARD_OTP).
    Token,
    /// A phone number for SMS codes (SMS_OTP).
    Sms,
    /// A phone number for voice-call codes (VOICE_OTP).
    Voice,
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// The user's credentials and their state (TrustBuilder: the login's tools, loginQuery).
    List { user: String },
    /// Bind a credential to the user, proven by a code from it (a second, consecutive code
    /// when VIP finds the token out of sync). VIP only.
    Add {
        user: String,
        /// The credential id (a token's serial such as VSMT12345678, or a phone number).
        credential: String,
        #[arg(long = "type", value_enum, default_value = "token")]
        kind: CredentialTypeArg,
        /// A security code the credential shows now (or that was sent to the phone).
        #[arg(long)]
        code: String,
        /// The next code, for a token out of sync.
        #[arg(long)]
        code2: Option<String>,
        /// A name the user recognises it by.
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a credential from the user (TrustBuilder: a tool, loginDeleteTool).
    Remove {
        user: String,
        /// VIP: the credential id. TrustBuilder: the tool id `credential list` shows (`ma:501`
        /// where two kinds of tool share the number).
        credential: String,
        /// VIP's credential type (default token).
        #[arg(long = "type", value_enum, help_heading = "VIP")]
        kind: Option<CredentialTypeArg>,
    },
    /// Give a credential a new name (TrustBuilder: a tool, loginUpdateTool).
    Rename {
        user: String,
        /// VIP: the credential id. TrustBuilder: the tool id `credential list` shows.
        credential: String,
        name: String,
        /// VIP's credential type (default token).
        #[arg(long = "type", value_enum, help_heading = "VIP")]
        kind: Option<CredentialTypeArg>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TempCodeCommand {
    /// Set a temporary security code: VIP generates one (printed once) unless --code-file
    /// gives it; valid for --expires (at most 30 days, VIP's default 1 day), once with
    /// --one-time; sent by SMS or voice call with --sms / --voice.
    Set {
        user: String,
        /// A file holding the 6-digit code to set (`-` reads stdin).
        #[arg(long, value_name = "FILE")]
        code_file: Option<PathBuf>,
        /// How long it is valid, e.g. 8h or 3d (at most 30d).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
        /// Valid for one login only.
        #[arg(long)]
        one_time: bool,
        /// Text it to this phone number.
        #[arg(long, value_name = "PHONE", conflicts_with = "voice")]
        sms: Option<String>,
        /// Read it out on a call to this phone number.
        #[arg(long, value_name = "PHONE")]
        voice: Option<String>,
    },
    /// Remove the user's temporary security code.
    Clear { user: String },
    /// Whether the user has one, until when, and whether it is one-time.
    Show { user: String },
}

#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// Remove the user's PIN (VIP only).
    Clear { user: String },
    /// Reset the login's PIN / password error counter, once until it next logs in
    /// (loginResetPINErrorCounter). TrustBuilder only.
    Unlock { user: String },
}

#[derive(Debug, Subcommand)]
pub enum PhoneCommand {
    /// Register a phone number with VIP (it receives a code to bind with `credential add`).
    Register { phone: String },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CSV file (`-` reads stdin).
    pub file: PathBuf,
    /// Check the file and say what would be sent, without contacting VIP.
    #[arg(long)]
    pub dry_run: bool,
    /// VIP calls at once (at most `vip.max_in_flight`).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
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
    fn admin_force_pin_change_needs_a_pin() {
        assert!(Cli::try_parse_from([
            "vip-bridge",
            "admin",
            "user",
            "create",
            "bob",
            "--force-pin-change"
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "vip-bridge",
            "admin",
            "--json",
            "user",
            "update",
            "bob",
            "--pin-file",
            "-",
            "--force-pin-change",
        ])
        .unwrap();
        match cli.command {
            Command::Admin(a) => assert!(a.json),
            other => panic!("{other:?}"),
        }
        // --config and --json are accepted after the subcommand too.
        assert!(Cli::try_parse_from(["vip-bridge", "admin", "server-time", "--json"]).is_ok());
    }

    #[test]
    fn admin_trustbuilder_commands() {
        let cli = Cli::try_parse_from([
            "vip-bridge",
            "admin",
            "user",
            "update",
            "bob",
            "--new-login",
            "rob",
            "--status",
            "blocked",
            "--mail",
            "r@example.com",
        ])
        .unwrap();
        match cli.command {
            Command::Admin(AdminArgs {
                command:
                    AdminCommand::User(UserCommand::Update {
                        new_id,
                        status,
                        details,
                        ..
                    }),
                ..
            }) => {
                assert_eq!(new_id.as_deref(), Some("rob"));
                assert_eq!(status, Some(UserStatusArg::Blocked));
                assert_eq!(details.given(), vec!["--mail"]);
            }
            other => panic!("{other:?}"),
        }
        // --desc sorts: it needs --sort; a page is 1 to 1000 logins.
        assert!(Cli::try_parse_from(["vip-bridge", "admin", "user", "list", "--desc"]).is_err());
        assert!(
            Cli::try_parse_from(["vip-bridge", "admin", "user", "list", "--limit", "0"]).is_err()
        );
        assert!(Cli::try_parse_from([
            "vip-bridge",
            "admin",
            "user",
            "list",
            "--sort",
            "mail",
            "--desc",
            "--offset",
            "5"
        ])
        .is_ok());
        for args in [
            &["user", "restore", "a"][..],
            &["user", "send-activation", "a"],
            &["user", "activate-code", "a"],
            &["user", "new-code", "a"],
            &["user", "reset-password", "a"],
            &["pin", "unlock", "a"],
            &["check"],
            &["credential", "remove", "a", "ma:501"],
            &["user", "create", "a", "--activation", "inactive"],
        ] {
            let argv = ["vip-bridge", "admin"].iter().chain(args.iter());
            assert!(Cli::try_parse_from(argv).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
