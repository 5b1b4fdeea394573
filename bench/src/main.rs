//! `vip-load`: drives a RADIUS server (or the PAM socket) and reports throughput and latency.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use vip_bench::load::{LoadConfig, Mode};
use vip_bench::radius::Secret;
use vip_bench::stats::{ProcSampler, Report, ReportBase};
use vip_bench::template::{PasswordSource, Template};

#[derive(Debug, Parser)]
#[command(
    name = "vip-load",
    version,
    about = "RADIUS load generator and baselines for vip-bridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive a RADIUS server with signed Access-Requests; JSON on stdout, a summary on stderr.
    Run(RunArgs),
    /// Answer every datagram with an Access-Accept of the same size (the machine's limit).
    /// Prints {"listen":"ADDR"} on stdout once bound.
    Echo(EchoArgs),
    /// PAM logins through the daemon's Unix socket (one connection per login).
    Pam(PamArgs),
    /// A long open-loop run of mixed logins (codes, bad codes, pushes, challenges,
    /// retransmits) with the server's RSS and open fds sampled; exits 1 when a request went
    /// unanswered, an answer was wrong, or memory or fds grew after the warm-up.
    Soak(SoakArgs),
}

#[derive(Debug, Args)]
struct TemplateArgs {
    /// User-Name pattern; `{n}` is replaced by user_start + (request number mod user_count).
    #[arg(long, default_value = "user{n}")]
    user: String,
    #[arg(long, default_value_t = 0)]
    user_start: u64,
    #[arg(long, default_value_t = 1_000_000)]
    user_count: u64,
    /// A fixed User-Password.
    #[arg(long, conflicts_with = "totp_secret")]
    password: Option<String>,
    /// Compute User-Password as the current TOTP code (RFC 6238, SHA1, 30 s) of this base32 secret.
    #[arg(long)]
    totp_secret: Option<String>,
    #[arg(long, default_value_t = 6)]
    totp_digits: u32,
    /// Put this before every User-Password (fixed or TOTP), e.g. `pw,` for a policy with an
    /// LDAP first factor: `password,code`.
    #[arg(long, default_value = "")]
    password_prefix: String,
    /// A State attribute (hex) to send with every request.
    #[arg(long)]
    state: Option<String>,
    #[arg(long, default_value = "vip-load")]
    nas_identifier: String,
}

impl TemplateArgs {
    fn template(&self) -> anyhow::Result<Template> {
        let password = match (&self.password, &self.totp_secret) {
            (_, Some(s)) => PasswordSource::Totp {
                key: vip_bench::totp::decode_base32(s)
                    .filter(|k| !k.is_empty())
                    .context("--totp-secret is not base32")?,
                digits: self.totp_digits,
            },
            (Some(p), None) => PasswordSource::Fixed(p.clone().into_bytes()),
            (None, None) => PasswordSource::Fixed(b"123456".to_vec()),
        }
        .with_prefix(self.password_prefix.as_bytes());
        let state = match &self.state {
            Some(h) => Some(hex::decode(h).context("--state is not hex")?),
            None => None,
        };
        Ok(Template {
            user_pattern: self.user.clone(),
            user_start: self.user_start,
            user_count: self.user_count.max(1),
            password,
            state,
            nas_identifier: (!self.nas_identifier.is_empty())
                .then(|| self.nas_identifier.clone().into_bytes()),
        })
    }
}

#[derive(Debug, Args)]
struct Output {
    /// A name for this run in the report.
    #[arg(long, default_value = "run")]
    label: String,
    /// Also write the JSON report (pretty) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The server's pid: report its CPU time over the run and its peak RSS (VmHWM).
    #[arg(long)]
    server_pid: Option<String>,
    /// The pid of the server's upstream (vip-sim): report its CPU time and peak RSS too.
    #[arg(long)]
    upstream_pid: Option<String>,
    /// Runtime worker threads (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The RADIUS server, e.g. 127.0.0.1:1812.
    #[arg(long)]
    server: SocketAddr,
    /// The shared secret.
    #[arg(long, env = "VIP_LOAD_SECRET")]
    secret: String,
    /// UDP sockets (each has its own 256 Identifiers).
    #[arg(long, default_value_t = 16)]
    sockets: usize,
    /// Open loop: requests per second in total, scheduled on a clock.
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: exchanges kept outstanding (default 64 when --rate is not given).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Seconds during which new requests start.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Start at most this many requests.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Retransmit timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Retransmits before an exchange counts as lost.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// After the duration, wait this long for outstanding replies (default: timeout x (retries+1) + 200 ms).
    #[arg(long)]
    drain_ms: Option<u64>,
    /// Send each request this many more times, after each answer, with the same Identifier and
    /// authenticator (retransmits a server answers from its cache).
    #[arg(long, default_value_t = 0)]
    repeat: u32,
    /// Do not sign requests with Message-Authenticator.
    #[arg(long)]
    no_message_authenticator: bool,
    /// Do not verify replies (for the bare echo server).
    #[arg(long)]
    no_verify: bool,
    /// Identifiers per socket (1-256).
    #[arg(long, default_value_t = 256)]
    ids_per_socket: usize,
    /// Socket buffer size in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    socket_buffer: usize,
    #[command(flatten)]
    template: TemplateArgs,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
struct EchoArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Sign replies properly with this secret (then the generator can verify them).
    #[arg(long)]
    secret: Option<String>,
}

#[derive(Debug, Args)]
struct PamArgs {
    /// The daemon's PAM socket.
    #[arg(long)]
    socket: PathBuf,
    /// PAM service name (selects the policy).
    #[arg(long, default_value = "sshd")]
    service: String,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long)]
    max_requests: Option<u64>,
    /// Deadline of one login in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    #[command(flatten)]
    template: TemplateArgs,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
struct SoakArgs {
    /// The RADIUS server, e.g. 127.0.0.1:1812.
    #[arg(long)]
    server: SocketAddr,
    /// The shared secret (of both clients).
    #[arg(long, env = "VIP_LOAD_SECRET")]
    secret: String,
    /// Shares of each kind of login (relative weights).
    #[arg(
        long,
        default_value = "code=70,bad=10,push=5,challenge=10,retransmit=5"
    )]
    mix: String,
    /// Logins started per second, on a clock.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Logins in all.
    #[arg(long, default_value_t = 1_000_000)]
    logins: u64,
    /// Seed of the kind of each login (the same seed gives the same sequence).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// User-Name pattern; `{n}` is user_start + (login number mod user_count). A user is
    /// reused every user_count / rate seconds: keep that above 30 s (one TOTP step).
    #[arg(long, default_value = "user{n}")]
    user: String,
    #[arg(long, default_value_t = 0)]
    user_start: u64,
    #[arg(long, default_value_t = 100_000)]
    user_count: u64,
    /// The users' TOTP secret (base32; every user shares it).
    #[arg(long)]
    totp_secret: String,
    #[arg(long, default_value_t = 6)]
    totp_digits: u32,
    /// Put this before every User-Password (fixed or TOTP), e.g. `pw,` for a policy with an
    /// LDAP first factor: `password,code`.
    #[arg(long, default_value = "")]
    password_prefix: String,
    /// What a push login types.
    #[arg(long, default_value = "push")]
    push_password: String,
    /// What the first round of a challenge login types (the challenge policy ignores it).
    #[arg(long, default_value = "menu")]
    menu_password: String,
    /// Source address of challenge logins: a RADIUS client whose policy has mode = "challenge".
    #[arg(long, default_value = "127.0.0.2")]
    challenge_source: std::net::IpAddr,
    /// Sockets for the other logins (each has 256 Identifiers).
    #[arg(long, default_value_t = 8)]
    sockets: usize,
    /// Sockets for challenge logins.
    #[arg(long, default_value_t = 2)]
    challenge_sockets: usize,
    /// Retransmit timeout in milliseconds (all but pushes).
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Retransmit timeout of push logins in milliseconds (phone delay + poll interval + margin).
    #[arg(long, default_value_t = 30_000)]
    push_timeout_ms: u64,
    /// Timeout retransmits before a request counts as unanswered.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Times a retransmit login's packet is sent again after its answer.
    #[arg(long, default_value_t = 1)]
    repeats: u32,
    #[arg(long, default_value_t = 4 << 20)]
    socket_buffer: usize,
    #[arg(long, default_value = "vip-load")]
    nas_identifier: String,
    /// The server's pid: sample its RSS (VmRSS) and open fds. Without it nothing is checked
    /// but the answers.
    #[arg(long)]
    server_pid: Option<String>,
    /// The upstream's (vip-sim's) pid: its RSS is sampled too (reported, not checked).
    #[arg(long)]
    upstream_pid: Option<String>,
    /// The upstream's (vip-sim's) TCP port: the server's connections to it (its pool of
    /// connections to VIP, which grows and shrinks with the load) are counted apart from its
    /// other fds.
    #[arg(long)]
    upstream_port: Option<u16>,
    /// The most connections to the upstream the server may hold at the end (vip.max_in_flight
    /// + 1 for the health check); the peak during the run is reported, not checked.
    #[arg(long)]
    upstream_conn_limit: Option<u64>,
    /// Seconds between samples.
    #[arg(long, default_value_t = 2.0)]
    sample_secs: f64,
    /// The warm-up ends when this share of the logins (per cent) has finished ...
    #[arg(long, default_value_t = 5.0)]
    warmup_pct: f64,
    /// ... and at least this many seconds have passed.
    #[arg(long, default_value_t = 0.0)]
    warmup_secs: f64,
    /// RSS at the end at most this much above RSS after the warm-up, in per cent.
    #[arg(long, default_value_t = 10.0)]
    rss_tolerance_pct: f64,
    /// Open fds at the end at most this many above the count after the warm-up (with
    /// --upstream-port: fds other than connections to the upstream; and those connections at
    /// the end at most --upstream-conn-limit + this many).
    #[arg(long, default_value_t = 8)]
    fd_slack: u64,
    /// A progress line on stderr every this many seconds (0: none).
    #[arg(long, default_value_t = 10.0)]
    progress_secs: f64,
    /// A name for this run in the report.
    #[arg(long, default_value = "soak")]
    label: String,
    /// Also write the JSON report (pretty, with every sample) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    Ok(rt)
}

fn emit(report: &Report, out: Option<&PathBuf>) -> anyhow::Result<()> {
    eprintln!("{}", report.human());
    let line = serde_json::to_string(report)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    if let Some(p) = out {
        std::fs::write(p, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn duration(secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs).context("bad --duration")
}

fn cmd_run(a: RunArgs) -> anyhow::Result<()> {
    let mode = match (a.rate, a.concurrency) {
        (Some(rate), _) => Mode::Open { rate },
        (None, c) => Mode::Closed {
            concurrency: c.unwrap_or(64),
        },
    };
    let timeout = Duration::from_millis(a.timeout_ms.max(1));
    let drain = match a.drain_ms {
        Some(ms) => Duration::from_millis(ms),
        None => timeout * (a.retries + 1) + Duration::from_millis(200),
    };
    let cfg = Arc::new(LoadConfig {
        server: a.server,
        secret: Secret::new(a.secret.as_bytes()),
        sockets: a.sockets,
        mode,
        duration: duration(a.duration)?,
        max_requests: a.max_requests,
        timeout,
        retries: a.retries,
        drain,
        template: a.template.template()?,
        repeat: a.repeat,
        message_authenticator: !a.no_message_authenticator,
        verify: !a.no_verify,
        ids_per_socket: a.ids_per_socket,
        socket_buffer: a.socket_buffer,
    });
    let server = a.output.server_pid.as_deref().map(ProcSampler::start);
    let upstream = a.output.upstream_pid.as_deref().map(ProcSampler::start);
    let me = ProcSampler::start("self");
    let t0 = std::time::Instant::now();
    let result = runtime(a.output.threads)?.block_on(vip_bench::load::run(cfg.clone()))?;
    let wall = t0.elapsed().as_secs_f64();
    let base = ReportBase {
        label: a.output.label.clone(),
        mode: match mode {
            Mode::Open { .. } => "open".into(),
            Mode::Closed { .. } => "closed".into(),
        },
        target: a.server.to_string(),
        sockets: a.sockets,
        target_rate: a.rate,
        concurrency: match mode {
            Mode::Closed { concurrency } => Some(concurrency),
            Mode::Open { .. } => None,
        },
        duration_s: a.duration,
        elapsed_s: result.elapsed.as_secs_f64(),
        verify: !a.no_verify,
        server: server.map(|s| s.finish(wall)),
        upstream: upstream.map(|s| s.finish(wall)),
        generator: me.finish(wall),
    };
    emit(
        &Report::from_counters(&result.counters, base),
        a.output.out.as_ref(),
    )
}

fn cmd_echo(a: EchoArgs) -> anyhow::Result<()> {
    let secret = a.secret.as_deref().map(|s| Secret::new(s.as_bytes()));
    let server = vip_bench::echo::EchoServer::start(a.listen, a.threads, secret)
        .with_context(|| format!("binding {}", a.listen))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}",
            serde_json::json!({"listen": server.addr().to_string()})
        )?;
        out.flush()?;
    }
    server.wait();
    Ok(())
}

fn cmd_pam(a: PamArgs) -> anyhow::Result<()> {
    let cfg = Arc::new(vip_bench::pam::PamLoadConfig {
        socket: a.socket.clone(),
        service: a.service.clone(),
        concurrency: a.concurrency,
        duration: duration(a.duration)?,
        max_requests: a.max_requests,
        timeout: Duration::from_millis(a.timeout_ms.max(1)),
        template: a.template.template()?,
    });
    let server = a.output.server_pid.as_deref().map(ProcSampler::start);
    let upstream = a.output.upstream_pid.as_deref().map(ProcSampler::start);
    let me = ProcSampler::start("self");
    let t0 = std::time::Instant::now();
    let result = runtime(a.output.threads)?.block_on(vip_bench::pam::run(cfg))?;
    let wall = t0.elapsed().as_secs_f64();
    let base = ReportBase {
        label: a.output.label.clone(),
        mode: "pam-closed".into(),
        target: a.socket.display().to_string(),
        sockets: a.concurrency,
        target_rate: None,
        concurrency: Some(a.concurrency),
        duration_s: a.duration,
        elapsed_s: result.elapsed.as_secs_f64(),
        verify: false,
        server: server.map(|s| s.finish(wall)),
        upstream: upstream.map(|s| s.finish(wall)),
        generator: me.finish(wall),
    };
    emit(
        &Report::from_counters(&result.counters, base),
        a.output.out.as_ref(),
    )
}

fn cmd_soak(a: SoakArgs) -> anyhow::Result<()> {
    use vip_bench::soak::{self, Limits, Mix, Progress, ReportInputs, SoakConfig, Warmup};
    let mix = Mix::parse(&a.mix).map_err(|e| anyhow::anyhow!("--mix: {e}"))?;
    let key = vip_bench::totp::decode_base32(&a.totp_secret)
        .filter(|k| !k.is_empty())
        .context("--totp-secret is not base32")?;
    if a.logins == 0 {
        anyhow::bail!("--logins must be at least 1");
    }
    let cfg = Arc::new(SoakConfig {
        server: a.server,
        secret: Secret::new(a.secret.as_bytes()),
        challenge_source: a.challenge_source,
        sockets: a.sockets,
        challenge_sockets: a.challenge_sockets,
        rate: a.rate,
        logins: a.logins,
        mix: mix.clone(),
        seed: a.seed,
        user_pattern: a.user.clone(),
        user_start: a.user_start,
        user_count: a.user_count.max(1),
        totp_key: key,
        digits: a.totp_digits,
        push_password: a.push_password.clone().into_bytes(),
        menu_password: a.menu_password.clone().into_bytes(),
        nas_identifier: a.nas_identifier.clone().into_bytes(),
        timeout: Duration::from_millis(a.timeout_ms.max(1)),
        push_timeout: Duration::from_millis(a.push_timeout_ms.max(1)),
        retries: a.retries,
        repeats: a.repeats,
        socket_buffer: a.socket_buffer,
    });
    let warmup = Warmup {
        logins: ((a.logins as f64) * a.warmup_pct.clamp(0.0, 100.0) / 100.0).ceil() as u64,
        secs: a.warmup_secs.max(0.0),
    };
    let limits = Limits {
        rss_tolerance_pct: a.rss_tolerance_pct,
        fd_slack: a.fd_slack,
        upstream_conn_limit: a.upstream_conn_limit,
    };
    let progress = Arc::new(Progress::default());
    let sampler = a.server_pid.as_ref().map(|pid| {
        soak::Sampler::start(
            soak::Watch {
                pid: pid.clone(),
                upstream: a.upstream_pid.clone(),
                upstream_port: a.upstream_port,
                interval: Duration::from_secs_f64(a.sample_secs.max(0.1)),
                warmup,
                total: a.logins,
                progress_every: (a.progress_secs > 0.0)
                    .then(|| Duration::from_secs_f64(a.progress_secs)),
            },
            progress.clone(),
        )
    });
    let server = a.server_pid.as_deref().map(ProcSampler::start);
    let upstream = a.upstream_pid.as_deref().map(ProcSampler::start);
    let me = ProcSampler::start("self");
    let t0 = std::time::Instant::now();
    let result = runtime(1)?.block_on(soak::run(cfg.clone(), progress))?;
    let wall = t0.elapsed().as_secs_f64();
    let samples = sampler.map(soak::Sampler::finish).unwrap_or_default();
    let report = soak::SoakReport::build(
        &cfg,
        &result,
        ReportInputs {
            label: a.label.clone(),
            mix,
            samples,
            warmup,
            limits,
            server: server.map(|s| s.finish(wall)),
            upstream: upstream.map(|s| s.finish(wall)),
            generator: me.finish(wall),
        },
    );
    eprintln!("{}", report.human());
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
        stdout.flush()?;
    }
    if let Some(p) = &a.out {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if !report.passed {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect();
        anyhow::bail!("soak failed: {}", failed.join(", "));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(a) => cmd_run(a),
        Command::Echo(a) => cmd_echo(a),
        Command::Pam(a) => cmd_pam(a),
        Command::Soak(a) => cmd_soak(a),
    }
}
