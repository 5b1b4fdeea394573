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
        };
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

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(a) => cmd_run(a),
        Command::Echo(a) => cmd_echo(a),
        Command::Pam(a) => cmd_pam(a),
    }
}
