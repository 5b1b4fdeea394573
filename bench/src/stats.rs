//! Counters, latency histograms and the report.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, 1 µs to 10 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 600_000_000, 3) {
        Ok(h) => h,
        Err(_) => unreachable!("static histogram bounds are valid"),
    }
}

/// Declares [`Tally`] and its `add` from one list of counter names, so a new counter cannot be
/// forgotten in the merge.
macro_rules! tally {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The plain counts of a run (serialized flat into the report).
        #[derive(Clone, Debug, Default, Serialize)]
        pub struct Tally {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Tally {
            pub fn add(&mut self, o: &Tally) {
                $(self.$name += o.$name;)*
            }
        }
    };
}

tally! {
    /// New exchanges put on the wire (first transmissions, repeats included).
    sent,
    retransmits,
    /// Exchanges that got a valid reply.
    answered,
    accept,
    reject,
    challenge,
    other_code,
    /// Exchanges given up after the last retransmit (or still open at the end).
    lost,
    /// Replies whose Response Authenticator or Message-Authenticator was wrong.
    bad_authenticator,
    /// Valid replies without a Message-Authenticator.
    missing_message_authenticator,
    /// Valid replies whose Message-Authenticator was not the first attribute.
    message_authenticator_not_first,
    /// Replies to an earlier use of the Identifier (after a timeout) or second replies.
    late_or_duplicate,
    /// Replies whose Identifier was not outstanding and matched nothing known.
    unmatched,
    malformed,
    /// Open loop: a scheduled request found no free Identifier on its socket.
    skipped_no_identifier,
    send_errors,
    recv_errors,
    /// Repeat mode: repeats answered with the same bytes as the first answer / other bytes.
    repeat_identical,
    repeat_different,
}

/// What one socket (or one PAM worker) counted.
#[derive(Clone, Debug)]
pub struct Counters {
    pub tally: Tally,
    pub latency: Histogram<u64>,
    pub repeat_latency: Histogram<u64>,
    /// Open loop: how late sends left against their schedule.
    pub send_lag: Histogram<u64>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            tally: Tally::default(),
            latency: new_histogram(),
            repeat_latency: new_histogram(),
            send_lag: new_histogram(),
        }
    }
}

impl Counters {
    pub fn merge(&mut self, o: &Counters) {
        self.tally.add(&o.tally);
        // Same bounds everywhere: adding cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.repeat_latency.add(&o.repeat_latency);
        let _ = self.send_lag.add(&o.send_lag);
    }

    pub fn record_latency_us(h: &mut Histogram<u64>, us: u64) {
        h.saturating_record(us.max(1));
    }
}

/// Latency summary in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency {
                count: 0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// CPU and memory of a process over the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcUsage {
    pub pid: String,
    /// utime + stime consumed during the run.
    pub cpu_seconds: Option<f64>,
    /// cpu_seconds / wall seconds (1.0 = one core busy).
    pub cpu_cores: Option<f64>,
    /// Peak RSS since the process started (VmHWM).
    pub peak_rss_kib: Option<u64>,
    pub rss_kib_end: Option<u64>,
}

/// The JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub mode: String,
    pub target: String,
    pub sockets: usize,
    pub target_rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub duration_s: f64,
    /// From the first send to the last reply (or the end of the drain).
    pub elapsed_s: f64,
    pub verify: bool,
    #[serde(flatten)]
    pub tally: Tally,
    /// answered / elapsed_s.
    pub throughput_per_s: f64,
    pub latency: Latency,
    pub repeat_latency: Option<Latency>,
    pub send_lag: Option<Latency>,
    pub server: Option<ProcUsage>,
    /// The server's upstream (vip-sim), when given: its CPU is taken from the same cores.
    pub upstream: Option<ProcUsage>,
    pub generator: ProcUsage,
}

impl Report {
    pub fn from_counters(c: &Counters, base: ReportBase) -> Report {
        let throughput = if base.elapsed_s > 0.0 {
            c.tally.answered as f64 / base.elapsed_s
        } else {
            0.0
        };
        Report {
            label: base.label,
            mode: base.mode,
            target: base.target,
            sockets: base.sockets,
            target_rate: base.target_rate,
            concurrency: base.concurrency,
            duration_s: base.duration_s,
            elapsed_s: base.elapsed_s,
            verify: base.verify,
            tally: c.tally.clone(),
            throughput_per_s: throughput,
            latency: Latency::of(&c.latency),
            repeat_latency: (!c.repeat_latency.is_empty()).then(|| Latency::of(&c.repeat_latency)),
            send_lag: (!c.send_lag.is_empty()).then(|| Latency::of(&c.send_lag)),
            server: base.server,
            upstream: base.upstream,
            generator: base.generator,
        }
    }

    /// One human-readable line.
    pub fn human(&self) -> String {
        let l = &self.latency;
        let mut s = format!(
            "[{}] sent={} answered={} (accept={} reject={} challenge={} other={}) lost={} retrans={} bad_auth={} no_ma={} late={} skipped={} | {:.1}/s over {:.2}s | ms p50={:.3} p90={:.3} p99={:.3} p999={:.3} max={:.3}",
            self.label,
            self.tally.sent,
            self.tally.answered,
            self.tally.accept,
            self.tally.reject,
            self.tally.challenge,
            self.tally.other_code,
            self.tally.lost,
            self.tally.retransmits,
            self.tally.bad_authenticator,
            self.tally.missing_message_authenticator,
            self.tally.late_or_duplicate,
            self.tally.skipped_no_identifier,
            self.throughput_per_s,
            self.elapsed_s,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms
        );
        if let Some(r) = &self.repeat_latency {
            s.push_str(&format!(
                " | repeats p50={:.3} p99={:.3} identical={} different={}",
                r.p50_ms, r.p99_ms, self.tally.repeat_identical, self.tally.repeat_different
            ));
        }
        if let Some(p) = &self.server {
            s.push_str(&format!(
                " | server cpu={} ({} cores) peak_rss={}",
                p.cpu_seconds
                    .map(|v| format!("{v:.2}s"))
                    .unwrap_or_else(|| "?".into()),
                p.cpu_cores
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "?".into()),
                p.peak_rss_kib
                    .map(|v| format!("{:.1}MiB", v as f64 / 1024.0))
                    .unwrap_or_else(|| "?".into()),
            ));
        }
        s
    }
}

/// The non-counter parts of a report.
#[derive(Clone, Debug, Default)]
pub struct ReportBase {
    pub label: String,
    pub mode: String,
    pub target: String,
    pub sockets: usize,
    pub target_rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub duration_s: f64,
    pub elapsed_s: f64,
    pub verify: bool,
    pub server: Option<ProcUsage>,
    pub upstream: Option<ProcUsage>,
    pub generator: ProcUsage,
}

/// Samples a process before the run and turns it into [`ProcUsage`] after.
#[derive(Debug)]
pub struct ProcSampler {
    pid: String,
    cpu0: Option<f64>,
}

impl ProcSampler {
    pub fn start(pid: &str) -> ProcSampler {
        ProcSampler {
            pid: pid.to_string(),
            cpu0: crate::procstat::cpu_seconds(pid),
        }
    }

    pub fn finish(&self, wall_s: f64) -> ProcUsage {
        let cpu1 = crate::procstat::cpu_seconds(&self.pid);
        let cpu = match (self.cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        ProcUsage {
            pid: self.pid.clone(),
            cpu_seconds: cpu,
            cpu_cores: cpu.filter(|_| wall_s > 0.0).map(|c| c / wall_s),
            peak_rss_kib: crate::procstat::status_kb(&self.pid, "VmHWM"),
            rss_kib_end: crate::procstat::status_kb(&self.pid, "VmRSS"),
        }
    }
}
