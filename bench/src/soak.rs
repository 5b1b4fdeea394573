//! The soak: a long open-loop run of mixed logins against vip-bridge, every reply verified,
//! every request accounted for, with the server's RSS and open file descriptors sampled.
//!
//! Kinds of login (their share set by [`Mix`]):
//! - `code`: the current TOTP code of the user; an Access-Accept is expected;
//! - `bad`: a six-digit code that is no code of the user within ±[`BAD_CODE_GUARD_STEPS`]
//!   steps (never accepted, never "out of sync"); an Access-Reject is expected;
//! - `push`: the push keyword (a blocking push the simulated phone approves); Access-Accept;
//! - `challenge`: two rounds from the challenge source address (a client whose policy has
//!   `mode = "challenge"`): the first gets an Access-Challenge with a State, the second sends
//!   the State with the TOTP code and gets an Access-Accept;
//! - `retransmit`: a code login whose packet is sent again, byte for byte, after its answer;
//!   the server must resend the byte-identical answer (from its response cache).
//!
//! Logins are started on a clock (`rate` per second in total, whatever the replies do). User
//! number `n mod user_count` serves login `n` whatever its kind, so a user is reused every
//! `user_count / rate` seconds: keep that above 30 s (one TOTP step) or a correct code meets
//! the replay protection of the previous one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::idalloc::IdAllocator;
use crate::radius::{self, RequestSpec, Secret, VerifyError};
use crate::stats::{new_histogram, Counters, Latency};

/// A bad code is none of the user's codes within this many 30 s steps either side of now
/// (the simulator's resync window is 20 steps: such a code would be "out of sync" there).
pub const BAD_CODE_GUARD_STEPS: i64 = 25;

/// The kinds of login.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Code,
    Bad,
    Push,
    Challenge,
    Retransmit,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Code,
        Kind::Bad,
        Kind::Push,
        Kind::Challenge,
        Kind::Retransmit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Code => "code",
            Kind::Bad => "bad",
            Kind::Push => "push",
            Kind::Challenge => "challenge",
            Kind::Retransmit => "retransmit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The code the final answer of this kind of login must carry.
    fn expected_final(self) -> u8 {
        match self {
            Kind::Bad => radius::ACCESS_REJECT,
            _ => radius::ACCESS_ACCEPT,
        }
    }
}

/// Shares of each kind, e.g. `code=70,bad=10,push=5,challenge=10,retransmit=5`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 5],
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            weights: [70, 10, 5, 10, 5],
        }
    }
}

impl Mix {
    /// Parses `kind=weight,...`; kinds not named get 0. Weights are relative (they need not
    /// add up to 100).
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut weights = [0u32; 5];
        let mut seen = [false; 5];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, w) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected kind=weight"))?;
            let kind = Kind::from_name(k.trim()).ok_or_else(|| {
                format!("unknown kind `{k}` (code, bad, push, challenge, retransmit)")
            })?;
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the weight is not a whole number"))?;
            if seen[kind.index()] {
                return Err(format!("`{k}` is given twice"));
            }
            seen[kind.index()] = true;
            weights[kind.index()] = w;
        }
        if weights.iter().map(|&w| u64::from(w)).sum::<u64>() == 0 {
            return Err("the mix needs at least one kind with a weight above 0".into());
        }
        Ok(Mix { weights })
    }

    pub fn weight(&self, k: Kind) -> u32 {
        self.weights[k.index()]
    }

    fn total(&self) -> u64 {
        self.weights.iter().map(|&w| u64::from(w)).sum()
    }

    /// The kind of login number `n`: a hash of (`seed`, `n`) picks it with the weights'
    /// probabilities, so kinds interleave and no user always gets the same kind.
    pub fn kind_of(&self, n: u64, seed: u64) -> Kind {
        let total = self.total().max(1);
        let mut x = splitmix64(seed ^ splitmix64(n)) % total;
        for k in Kind::ALL {
            let w = u64::from(self.weight(k));
            if x < w {
                return k;
            }
            x -= w;
        }
        Kind::Code
    }

    /// `code=70,bad=10,...` (every kind, in a fixed order).
    pub fn describe(&self) -> String {
        Kind::ALL
            .iter()
            .map(|k| format!("{}={}", k.name(), self.weight(*k)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Debug)]
pub struct SoakConfig {
    pub server: SocketAddr,
    pub secret: Secret,
    /// Source address of the challenge logins (the client with the challenge policy).
    pub challenge_source: IpAddr,
    /// Sockets for code, bad, push and retransmit logins (bound to the loopback or any address).
    pub sockets: usize,
    /// Sockets for challenge logins (bound to `challenge_source`).
    pub challenge_sockets: usize,
    /// Logins started per second, in total.
    pub rate: f64,
    pub logins: u64,
    pub mix: Mix,
    pub seed: u64,
    /// `user{n}`: `{n}` is `user_start + n % user_count`.
    pub user_pattern: String,
    pub user_start: u64,
    pub user_count: u64,
    /// The users' TOTP key (raw bytes) and code length.
    pub totp_key: Vec<u8>,
    pub digits: u32,
    /// What a push login types.
    pub push_password: Vec<u8>,
    /// What the first round of a challenge login types (the policy ignores it).
    pub menu_password: Vec<u8>,
    pub nas_identifier: Vec<u8>,
    /// Retransmit timeout of every request but pushes.
    pub timeout: Duration,
    /// Retransmit timeout of a push login's request (the push takes the phone's delay plus up
    /// to one poll interval).
    pub push_timeout: Duration,
    /// Timeout retransmits before a request counts as unanswered.
    pub retries: u32,
    /// How many times a retransmit login's packet is sent again after its answer.
    pub repeats: u32,
    pub socket_buffer: usize,
}

impl SoakConfig {
    /// The user of login `n`.
    pub fn user(&self, n: u64) -> String {
        let k = self.user_start + n % self.user_count.max(1);
        self.user_pattern.replace("{n}", &k.to_string())
    }
}

/// Shared progress, read by the sampler while the run goes.
#[derive(Debug, Default)]
pub struct Progress {
    /// Logins handed to a socket.
    pub scheduled: AtomicU64,
    /// Logins finished: the last answer came, or a request of theirs went unanswered.
    pub done: AtomicU64,
    /// Requests that got no answer after every retransmit.
    pub lost: AtomicU64,
    /// Logins whose answer was not the expected one.
    pub unexpected: AtomicU64,
}

/// What one kind of login counted.
#[derive(Clone, Debug)]
pub struct KindCounters {
    /// Logins started.
    pub started: u64,
    /// Logins finished (answered, or given up).
    pub finished: u64,
    /// Logins whose final answer was the expected one.
    pub expected: u64,
    /// Logins answered otherwise (wrong code, or no State on a challenge).
    pub unexpected: u64,
    /// Logins with a request that got no answer.
    pub lost: u64,
    /// From the first send to the final answer (both rounds of a challenge login).
    pub latency: Histogram<u64>,
}

impl Default for KindCounters {
    fn default() -> Self {
        KindCounters {
            started: 0,
            finished: 0,
            expected: 0,
            unexpected: 0,
            lost: 0,
            latency: new_histogram(),
        }
    }
}

impl KindCounters {
    fn merge(&mut self, o: &KindCounters) {
        self.started += o.started;
        self.finished += o.finished;
        self.expected += o.expected;
        self.unexpected += o.unexpected;
        self.lost += o.lost;
        let _ = self.latency.add(&o.latency);
    }
}

/// Everything a run counted.
#[derive(Clone, Debug, Default)]
pub struct SoakCounters {
    /// Per request: sent (repeats and second rounds included), answered by code, lost,
    /// authenticator failures, repeats identical or not; `latency` is per request, `send_lag`
    /// how late logins started against the clock.
    pub requests: Counters,
    pub kinds: [KindCounters; 5],
    /// The first few unexpected answers, described.
    pub unexpected_samples: Vec<String>,
}

const MAX_SAMPLES: usize = 20;

impl SoakCounters {
    fn merge(&mut self, o: &SoakCounters) {
        self.requests.merge(&o.requests);
        for (a, b) in self.kinds.iter_mut().zip(o.kinds.iter()) {
            a.merge(b);
        }
        for s in &o.unexpected_samples {
            if self.unexpected_samples.len() < MAX_SAMPLES {
                self.unexpected_samples.push(s.clone());
            }
        }
    }
}

#[derive(Debug)]
pub struct SoakResult {
    pub counters: SoakCounters,
    /// From the start of the clock to the last answer.
    pub elapsed: Duration,
    /// From the start of the clock to the last login handed out.
    pub schedule_span: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    First,
    /// The second round of a challenge login.
    Second,
}

#[derive(Clone, Debug)]
struct Job {
    n: u64,
    kind: Kind,
    stage: Stage,
    scheduled: Instant,
    /// When the login's first request went out (for the second round).
    login_started: Option<Instant>,
    state: Option<Vec<u8>>,
}

struct Slot {
    job: Job,
    auth: [u8; 16],
    bytes: Vec<u8>,
    sent_at: Instant,
    login_started: Instant,
    timeout: Duration,
    tries: u32,
    repeats_left: u32,
    repeating: bool,
    first_reply: Option<Vec<u8>>,
}

/// TOTP codes of the current step, and the set a bad code must avoid, cached per step.
#[derive(Default)]
struct Codes {
    step: Option<i64>,
    current: String,
    avoid: HashSet<String>,
}

impl Codes {
    fn refresh(&mut self, key: &[u8], digits: u32) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let step = (now / 30) as i64;
        if self.step == Some(step) {
            return;
        }
        self.step = Some(step);
        self.current = vip_sim::totp::code_at_step(key, step, digits);
        self.avoid = (step - BAD_CODE_GUARD_STEPS..=step + BAD_CODE_GUARD_STEPS + 1)
            .map(|s| vip_sim::totp::code_at_step(key, s, digits))
            .collect();
    }

    fn good(&mut self, key: &[u8], digits: u32) -> Vec<u8> {
        self.refresh(key, digits);
        self.current.clone().into_bytes()
    }

    /// A wrong code of `digits` digits, chosen from `n`.
    fn bad(&mut self, key: &[u8], digits: u32, n: u64) -> Vec<u8> {
        self.refresh(key, digits);
        let modulus = 10u64.pow(digits.clamp(6, 10));
        let mut x = splitmix64(n ^ 0xBAD0_C0DE);
        loop {
            let c = format!("{:0width$}", x % modulus, width = digits as usize);
            if !self.avoid.contains(&c) {
                return c.into_bytes();
            }
            x = splitmix64(x);
        }
    }
}

fn bind_addr(server: &SocketAddr, source: Option<IpAddr>) -> SocketAddr {
    if let Some(ip) = source {
        return SocketAddr::new(ip, 0);
    }
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(ip) if ip.is_loopback() => SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

async fn open_socket(cfg: &SoakConfig, source: Option<IpAddr>) -> anyhow::Result<UdpSocket> {
    let local = bind_addr(&cfg.server, source);
    let s = crate::load::udp_socket(local, cfg.socket_buffer, false)
        .map_err(|e| anyhow::anyhow!("binding {local}: {e}"))?;
    s.set_nonblocking(true)?;
    let s = UdpSocket::from_std(s)?;
    s.connect(cfg.server).await?;
    Ok(s)
}

/// Runs the soak. `progress` is updated as logins finish.
pub async fn run(cfg: Arc<SoakConfig>, progress: Arc<Progress>) -> anyhow::Result<SoakResult> {
    if !cfg.rate.is_finite() || cfg.rate <= 0.0 {
        anyhow::bail!("rate must be positive");
    }
    if cfg.sockets == 0 {
        anyhow::bail!("need at least one socket");
    }
    let challenges = cfg.mix.weight(Kind::Challenge) > 0;
    if challenges && cfg.challenge_sockets == 0 {
        anyhow::bail!("challenge logins need at least one challenge socket");
    }
    if !cfg.user_pattern.contains("{n}") {
        anyhow::bail!("the user pattern needs {{n}}: every login of a user uses up its TOTP step");
    }
    let mut main = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..cfg.sockets {
        let sock = open_socket(&cfg, None).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        main.push(tx);
        tasks.push(tokio::spawn(socket_task(
            sock,
            cfg.clone(),
            rx,
            progress.clone(),
        )));
    }
    let mut chall = Vec::new();
    if challenges {
        for _ in 0..cfg.challenge_sockets {
            let sock = open_socket(&cfg, Some(cfg.challenge_source)).await?;
            let (tx, rx) = mpsc::unbounded_channel();
            chall.push(tx);
            tasks.push(tokio::spawn(socket_task(
                sock,
                cfg.clone(),
                rx,
                progress.clone(),
            )));
        }
    }
    let start = Instant::now() + Duration::from_millis(5);
    let schedule_span = schedule(&cfg, start, main, chall, &progress).await;
    let mut total = SoakCounters::default();
    let mut last = start;
    for t in tasks {
        let (c, l) = t.await?;
        total.merge(&c);
        last = last.max(l);
    }
    Ok(SoakResult {
        counters: total,
        elapsed: last.saturating_duration_since(start),
        schedule_span,
    })
}

/// Hands login n to a socket at `start + n / rate`; returns when every login is handed out
/// (dropping the senders, which tells the sockets to finish).
async fn schedule(
    cfg: &SoakConfig,
    start: Instant,
    main: Vec<mpsc::UnboundedSender<Job>>,
    chall: Vec<mpsc::UnboundedSender<Job>>,
    progress: &Progress,
) -> Duration {
    let mut n = 0u64;
    let (mut rr_main, mut rr_chall) = (0usize, 0usize);
    let due = |n: u64| start + Duration::from_secs_f64(n as f64 / cfg.rate);
    while n < cfg.logins {
        tokio::time::sleep_until(due(n)).await;
        let now = Instant::now();
        while n < cfg.logins && due(n) <= now {
            let kind = cfg.mix.kind_of(n, cfg.seed);
            let job = Job {
                n,
                kind,
                stage: Stage::First,
                scheduled: due(n),
                login_started: None,
                state: None,
            };
            let tx = if kind == Kind::Challenge {
                rr_chall += 1;
                &chall[rr_chall % chall.len()]
            } else {
                rr_main += 1;
                &main[rr_main % main.len()]
            };
            // A socket task only ends after its sender is dropped: sending cannot fail.
            let _ = tx.send(job);
            progress.scheduled.fetch_add(1, Ordering::Relaxed);
            n += 1;
        }
    }
    Instant::now().saturating_duration_since(start)
}

struct SocketState {
    cfg: Arc<SoakConfig>,
    sock: UdpSocket,
    ids: IdAllocator,
    slots: Vec<Option<Slot>>,
    generation: [u32; 256],
    prev_auth: [Option<[u8; 16]>; 256],
    deadlines: BinaryHeap<Reverse<(Instant, u8, u32)>>,
    /// Jobs waiting for a free Identifier (second rounds go first).
    pending: VecDeque<Job>,
    rng: StdRng,
    codes: Codes,
    progress: Arc<Progress>,
    c: SoakCounters,
    last_reply: Option<Instant>,
}

impl SocketState {
    fn push_deadline(&mut self, id: u8, at: Instant) {
        let g = &mut self.generation[id as usize];
        *g = g.wrapping_add(1);
        self.deadlines.push(Reverse((at, id, *g)));
    }

    fn free(&mut self, id: u8) {
        if let Some(slot) = self.slots[id as usize].take() {
            self.prev_auth[id as usize] = Some(slot.auth);
        }
        self.ids.free(id);
    }

    /// Counts the final answer of a login.
    fn outcome(&mut self, kind: Kind, ok: bool, latency_us: u64) {
        let k = &mut self.c.kinds[kind.index()];
        if ok {
            k.expected += 1;
        } else {
            k.unexpected += 1;
            self.progress.unexpected.fetch_add(1, Ordering::Relaxed);
        }
        Counters::record_latency_us(&mut k.latency, latency_us);
    }

    /// A login has nothing more to send or wait for.
    fn finish_login(&mut self, kind: Kind) {
        self.c.kinds[kind.index()].finished += 1;
        self.progress.done.fetch_add(1, Ordering::Relaxed);
    }

    fn note_unexpected(&mut self, what: String) {
        if self.c.unexpected_samples.len() < MAX_SAMPLES {
            self.c.unexpected_samples.push(what);
        }
    }

    /// Sends the job's request with a new Identifier; false (job kept) when none is free.
    async fn start(&mut self, job: Job) -> Result<(), Job> {
        let Some(id) = self.ids.alloc() else {
            return Err(job);
        };
        let mut auth = [0u8; 16];
        self.rng.fill_bytes(&mut auth);
        let cfg = self.cfg.clone();
        let user = cfg.user(job.n);
        let password = match (job.kind, job.stage) {
            (Kind::Bad, _) => self.codes.bad(&cfg.totp_key, cfg.digits, job.n),
            (Kind::Push, _) => cfg.push_password.clone(),
            (Kind::Challenge, Stage::First) => cfg.menu_password.clone(),
            _ => self.codes.good(&cfg.totp_key, cfg.digits),
        };
        let spec = RequestSpec {
            user: user.as_bytes(),
            password: &password,
            state: job.state.as_deref(),
            nas_identifier: (!cfg.nas_identifier.is_empty()).then_some(&cfg.nas_identifier[..]),
            nas_ip: Some([127, 0, 0, 1]),
            message_authenticator: true,
        };
        let mut bytes = Vec::with_capacity(128);
        if let Err(e) = radius::build_access_request(&mut bytes, id, &auth, &cfg.secret, &spec) {
            // Cannot happen with the generator's own short attributes; counted, never silent.
            self.c.requests.tally.send_errors += 1;
            self.ids.free(id);
            self.note_unexpected(format!(
                "{}: cannot build the request: {e}",
                job.kind.name()
            ));
            self.c.kinds[job.kind.index()].lost += 1;
            self.finish_login(job.kind);
            return Ok(());
        }
        let now = Instant::now();
        if job.stage == Stage::First {
            self.c.kinds[job.kind.index()].started += 1;
            let lag = now.saturating_duration_since(job.scheduled).as_micros() as u64;
            Counters::record_latency_us(&mut self.c.requests.send_lag, lag);
        }
        if self.sock.send(&bytes).await.is_err() {
            // Retransmitted on its timeout like a datagram the network lost.
            self.c.requests.tally.send_errors += 1;
        }
        self.c.requests.tally.sent += 1;
        let timeout = if job.kind == Kind::Push {
            cfg.push_timeout
        } else {
            cfg.timeout
        };
        let login_started = job.login_started.unwrap_or(now);
        let repeats_left = if job.kind == Kind::Retransmit {
            cfg.repeats
        } else {
            0
        };
        self.slots[id as usize] = Some(Slot {
            job,
            auth,
            bytes,
            sent_at: now,
            login_started,
            timeout,
            tries: 0,
            repeats_left,
            repeating: false,
            first_reply: None,
        });
        self.push_deadline(id, now + timeout);
        Ok(())
    }

    async fn resend(&mut self, id: u8) {
        let Some(slot) = self.slots[id as usize].as_ref() else {
            return;
        };
        if self.sock.send(&slot.bytes).await.is_err() {
            self.c.requests.tally.send_errors += 1;
        }
    }

    async fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((dl, id, g))) = self.deadlines.peek() {
            if dl > now {
                break;
            }
            self.deadlines.pop();
            if self.generation[id as usize] != g {
                continue;
            }
            let Some(slot) = self.slots[id as usize].as_mut() else {
                continue;
            };
            if slot.tries < self.cfg.retries {
                slot.tries += 1;
                let timeout = slot.timeout;
                self.c.requests.tally.retransmits += 1;
                self.resend(id).await;
                self.push_deadline(id, now + timeout);
            } else {
                let kind = slot.job.kind;
                let what = format!(
                    "{} login {} ({}): no answer after {} retransmits",
                    kind.name(),
                    slot.job.n,
                    if slot.repeating {
                        "repeat"
                    } else if slot.job.stage == Stage::Second {
                        "second round"
                    } else {
                        "first request"
                    },
                    self.cfg.retries
                );
                self.c.requests.tally.lost += 1;
                self.c.kinds[kind.index()].lost += 1;
                self.progress.lost.fetch_add(1, Ordering::Relaxed);
                self.note_unexpected(what);
                self.free(id);
                self.finish_login(kind);
            }
        }
    }

    fn is_late(&self, d: &[u8], id: u8) -> bool {
        match &self.prev_auth[id as usize] {
            Some(prev) => radius::verify_reply(d, id, prev, &self.cfg.secret).is_ok(),
            None => false,
        }
    }

    async fn on_reply(&mut self, d: &[u8], now: Instant) {
        if d.len() < 20 {
            self.c.requests.tally.malformed += 1;
            return;
        }
        let id = d[1];
        let Some(slot) = self.slots[id as usize].as_ref() else {
            if self.is_late(d, id) {
                self.c.requests.tally.late_or_duplicate += 1;
            } else {
                self.c.requests.tally.unmatched += 1;
            }
            return;
        };
        let t = &mut self.c.requests.tally;
        let code = match radius::verify_reply(d, id, &slot.auth, &self.cfg.secret) {
            Ok(info) => {
                if !info.has_message_authenticator {
                    t.missing_message_authenticator += 1;
                } else if !info.message_authenticator_first {
                    t.message_authenticator_not_first += 1;
                }
                info.code
            }
            Err(VerifyError::Malformed) => {
                t.malformed += 1;
                return;
            }
            Err(_) => {
                if self.is_late(d, id) {
                    self.c.requests.tally.late_or_duplicate += 1;
                } else {
                    self.c.requests.tally.bad_authenticator += 1;
                }
                return;
            }
        };
        self.last_reply = Some(now);
        let t = &mut self.c.requests.tally;
        t.answered += 1;
        match code {
            radius::ACCESS_ACCEPT => t.accept += 1,
            radius::ACCESS_REJECT => t.reject += 1,
            radius::ACCESS_CHALLENGE => t.challenge += 1,
            _ => t.other_code += 1,
        }
        let Some(slot) = self.slots[id as usize].as_mut() else {
            return;
        };
        let us = now.saturating_duration_since(slot.sent_at).as_micros() as u64;
        if slot.repeating {
            Counters::record_latency_us(&mut self.c.requests.repeat_latency, us);
            if slot.first_reply.as_deref() == Some(d) {
                self.c.requests.tally.repeat_identical += 1;
            } else {
                self.c.requests.tally.repeat_different += 1;
                let what = format!(
                    "retransmit login {}: the answer to the repeat differs from the first answer",
                    slot.job.n
                );
                self.note_unexpected(what);
            }
            self.next_repeat_or_done(id, now).await;
            return;
        }
        Counters::record_latency_us(&mut self.c.requests.latency, us);
        let kind = slot.job.kind;
        let n = slot.job.n;
        let stage = slot.job.stage;
        let repeats_left = slot.repeats_left;
        let login_us = now
            .saturating_duration_since(slot.login_started)
            .as_micros() as u64;
        if kind == Kind::Challenge && stage == Stage::First {
            let state = (code == radius::ACCESS_CHALLENGE)
                .then(|| radius::find_attr(d, radius::ATTR_STATE))
                .flatten()
                .map(<[u8]>::to_vec);
            match state {
                Some(state) => {
                    let mut next = slot.job.clone();
                    next.stage = Stage::Second;
                    next.login_started = Some(slot.login_started);
                    next.state = Some(state);
                    self.free(id);
                    // Second rounds go before new logins waiting for an Identifier.
                    self.pending.push_front(next);
                }
                None => {
                    let what = describe_unexpected(kind, n, "first round", code, d);
                    self.note_unexpected(what);
                    self.free(id);
                    self.outcome(kind, false, login_us);
                    self.finish_login(kind);
                }
            }
            return;
        }
        let ok = code == kind.expected_final();
        if !ok {
            let round = if stage == Stage::Second {
                "second round"
            } else {
                "answer"
            };
            let what = describe_unexpected(kind, n, round, code, d);
            self.note_unexpected(what);
        }
        self.outcome(kind, ok, login_us);
        if repeats_left > 0 {
            if let Some(slot) = self.slots[id as usize].as_mut() {
                slot.first_reply = Some(d.to_vec());
                slot.repeating = true;
            }
            self.next_repeat_or_done(id, now).await;
        } else {
            self.free(id);
            self.finish_login(kind);
        }
    }

    /// After an answer of a retransmit login: send the packet again, or finish.
    async fn next_repeat_or_done(&mut self, id: u8, now: Instant) {
        let Some(slot) = self.slots[id as usize].as_mut() else {
            return;
        };
        if slot.repeats_left == 0 {
            let kind = slot.job.kind;
            self.free(id);
            self.finish_login(kind);
            return;
        }
        slot.repeats_left -= 1;
        slot.tries = 0;
        slot.sent_at = now;
        let timeout = slot.timeout;
        self.c.requests.tally.sent += 1;
        self.resend(id).await;
        self.push_deadline(id, now + timeout);
    }
}

fn describe_unexpected(kind: Kind, n: u64, round: &str, code: u8, d: &[u8]) -> String {
    let name = match code {
        radius::ACCESS_ACCEPT => "Access-Accept",
        radius::ACCESS_REJECT => "Access-Reject",
        radius::ACCESS_CHALLENGE => "Access-Challenge",
        _ => "another code",
    };
    let msg = radius::find_attr(d, radius::ATTR_REPLY_MESSAGE)
        .map(|m| String::from_utf8_lossy(m).replace('\n', " "))
        .unwrap_or_default();
    format!(
        "{} login {n} ({round}): {name} (code {code}) \"{msg}\"",
        kind.name()
    )
}

async fn socket_task(
    sock: UdpSocket,
    cfg: Arc<SoakConfig>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    progress: Arc<Progress>,
) -> (SoakCounters, Instant) {
    let mut st = SocketState {
        sock,
        ids: IdAllocator::new(256),
        slots: (0..256).map(|_| None).collect(),
        generation: [0; 256],
        prev_auth: [None; 256],
        deadlines: BinaryHeap::with_capacity(512),
        pending: VecDeque::new(),
        rng: StdRng::from_entropy(),
        codes: Codes::default(),
        progress,
        c: SoakCounters::default(),
        last_reply: None,
        cfg,
    };
    let started = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let mut open = true;
    loop {
        for _ in 0..256 {
            match st.sock.try_recv(&mut buf) {
                Ok(n) => {
                    let now = Instant::now();
                    st.on_reply(&buf[..n], now).await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    st.c.requests.tally.recv_errors += 1;
                    break;
                }
            }
        }
        st.expire(Instant::now()).await;
        while let Some(job) = st.pending.pop_front() {
            if let Err(job) = st.start(job).await {
                st.pending.push_front(job);
                break;
            }
        }
        if !open && st.pending.is_empty() && st.ids.in_use() == 0 {
            break;
        }
        let wake = st.deadlines.peek().map(|Reverse((dl, _, _))| *dl);
        tokio::select! {
            r = st.sock.readable() => {
                if r.is_err() {
                    st.c.requests.tally.recv_errors += 1;
                }
            }
            job = rx.recv(), if open => match job {
                Some(job) => {
                    st.pending.push_back(job);
                    // Take every job already queued before looking at the socket again.
                    while let Ok(job) = rx.try_recv() {
                        st.pending.push_back(job);
                    }
                }
                None => open = false,
            },
            _ = sleep_until_opt(wake) => {}
        }
    }
    let last = st.last_reply.unwrap_or(started);
    (st.c, last)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// ------------------------------------------------------------------------------------------
// Sampling the server: RSS and open file descriptors
// ------------------------------------------------------------------------------------------

/// One sample of the server.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t_s: f64,
    /// Logins finished by then.
    pub done: u64,
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
    /// Of `fds`, TCP connections to the upstream's port (the pool of connections to VIP).
    pub upstream_conns: Option<u64>,
    /// The upstream's (vip-sim's) RSS, when watched.
    pub upstream_rss_kib: Option<u64>,
}

/// Open file descriptors of a process (entries of /proc/PID/fd).
pub fn fd_count(pid: &str) -> Option<u64> {
    let dir = std::fs::read_dir(Path::new("/proc").join(pid).join("fd")).ok()?;
    Some(dir.count() as u64)
}

/// Open file descriptors of a process, and how many of them are TCP sockets whose remote
/// port is `port` (any state), from /proc/PID/fd and /proc/PID/net/tcp{,6}.
pub fn fds_and_conns_to(pid: &str, port: u16) -> Option<(u64, u64)> {
    let base = Path::new("/proc").join(pid);
    let mut total = 0u64;
    let mut sockets = HashSet::new();
    for e in std::fs::read_dir(base.join("fd")).ok()?.flatten() {
        total += 1;
        if let Ok(link) = std::fs::read_link(e.path()) {
            let link = link.to_string_lossy();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
            {
                sockets.insert(inode.to_owned());
            }
        }
    }
    let mut conns = 0u64;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(base.join("net").join(table)) else {
            continue;
        };
        conns += text
            .lines()
            .skip(1)
            .filter(|l| tcp_line_matches(l, port, &sockets))
            .count() as u64;
    }
    Some((total, conns))
}

/// A /proc/net/tcp line: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn tcp_line_matches(line: &str, port: u16, inodes: &HashSet<String>) -> bool {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (Some(rem), Some(inode)) = (f.get(2), f.get(9)) else {
        return false;
    };
    let rem_port = rem
        .rsplit_once(':')
        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
    rem_port == Some(port) && inodes.contains(*inode)
}

/// When the warm-up ends: after `logins` logins finished and `secs` seconds passed.
#[derive(Clone, Copy, Debug)]
pub struct Warmup {
    pub logins: u64,
    pub secs: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Samples {
    /// Every `interval` seconds, plus the warm-up and end samples.
    pub series: Vec<Sample>,
    pub warm: Option<Sample>,
    pub end: Option<Sample>,
}

/// What [`Sampler`] watches, and how often.
#[derive(Clone, Debug)]
pub struct Watch {
    /// The server.
    pub pid: String,
    /// The server's upstream (vip-sim): its RSS is sampled too.
    pub upstream: Option<String>,
    /// The upstream's TCP port: the server's connections to it are counted apart.
    pub upstream_port: Option<u16>,
    pub interval: Duration,
    pub warmup: Warmup,
    /// Logins in the run (for the progress line).
    pub total: u64,
    /// Print a progress line on stderr this often (None: never).
    pub progress_every: Option<Duration>,
}

/// Samples the server (and its upstream) on a thread of its own until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Samples>,
}

impl Sampler {
    pub fn start(watch: Watch, progress: Arc<Progress>) -> Sampler {
        let Watch {
            pid,
            upstream,
            upstream_port,
            interval,
            warmup,
            total,
            progress_every,
        } = watch;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let take = |done: u64| {
                let (fds, upstream_conns) = match upstream_port {
                    Some(port) => match fds_and_conns_to(&pid, port) {
                        Some((f, c)) => (Some(f), Some(c)),
                        None => (None, None),
                    },
                    None => (fd_count(&pid), None),
                };
                Sample {
                    t_s: t0.elapsed().as_secs_f64(),
                    done,
                    rss_kib: crate::procstat::status_kb(&pid, "VmRSS"),
                    fds,
                    upstream_conns,
                    upstream_rss_kib: upstream
                        .as_deref()
                        .and_then(|u| crate::procstat::status_kb(u, "VmRSS")),
                }
            };
            let mut out = Samples::default();
            let first = take(progress.done.load(Ordering::Relaxed));
            out.series.push(first);
            let mut next_sample = t0 + interval;
            let mut next_progress = progress_every.map(|p| t0 + p);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let now = std::time::Instant::now();
                let done = progress.done.load(Ordering::Relaxed);
                if out.warm.is_none()
                    && done >= warmup.logins
                    && t0.elapsed().as_secs_f64() >= warmup.secs
                {
                    let s = take(done);
                    out.warm = Some(s);
                    out.series.push(s);
                    if progress_every.is_some() {
                        eprintln!(
                            "[soak] warm-up over at {:.0}s ({} logins): RSS {} fds {}{}",
                            s.t_s,
                            done,
                            kib(s.rss_kib),
                            opt(s.fds),
                            conns_note(s.upstream_conns)
                        );
                    }
                }
                if now >= next_sample {
                    out.series.push(take(done));
                    next_sample += interval;
                }
                if let Some(at) = next_progress.filter(|at| now >= *at) {
                    let s = out.series.last().copied().unwrap_or(first);
                    eprintln!(
                        "[soak] {:.0}s: {} of {} logins done, {} unanswered, {} unexpected; server RSS {} fds {}{}",
                        t0.elapsed().as_secs_f64(),
                        done,
                        total,
                        progress.lost.load(Ordering::Relaxed),
                        progress.unexpected.load(Ordering::Relaxed),
                        kib(s.rss_kib),
                        opt(s.fds),
                        conns_note(s.upstream_conns)
                    );
                    next_progress = progress_every.map(|p| at + p);
                }
            }
            let end = take(progress.done.load(Ordering::Relaxed));
            out.series.push(end);
            out.end = Some(end);
            out
        });
        Sampler { stop, handle }
    }

    /// Takes the end sample and returns every sample.
    pub fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

fn kib(v: Option<u64>) -> String {
    v.map(|k| format!("{:.1}MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

fn conns_note(c: Option<u64>) -> String {
    c.map(|c| format!(" ({c} to VIP)")).unwrap_or_default()
}

fn opt(v: Option<u64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "?".into())
}

// ------------------------------------------------------------------------------------------
// The report
// ------------------------------------------------------------------------------------------

/// What the run must meet.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Limits {
    /// RSS at the end at most this much above RSS after the warm-up, in per cent.
    pub rss_tolerance_pct: f64,
    /// Open file descriptors at the end at most this many above the count after the warm-up
    /// (not counting connections to the upstream when its port is known); connections to the
    /// upstream at the end at most `upstream_conn_limit` + this many.
    pub fd_slack: u64,
    /// The most connections the server's pool to the upstream may hold (vip.max_in_flight and
    /// the health check's own slot).
    pub upstream_conn_limit: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KindReport {
    pub kind: &'static str,
    pub weight: u32,
    pub logins: u64,
    pub expected: u64,
    pub unexpected: u64,
    pub unanswered: u64,
    pub latency: Latency,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub label: String,
    pub target: String,
    pub mix: String,
    pub logins: u64,
    pub target_rate: f64,
    /// Logins finished / seconds from the first send to the last answer.
    pub achieved_rate: f64,
    /// Logins handed out / seconds the clock ran (the offered rate the generator kept).
    pub offered_rate: f64,
    pub elapsed_s: f64,
    pub kinds: Vec<KindReport>,
    /// Logins whose answer was not the expected one, and requests never answered.
    pub unexpected: u64,
    pub unanswered_requests: u64,
    #[serde(flatten)]
    pub requests: crate::stats::Tally,
    pub request_latency: Latency,
    pub repeat_latency: Option<Latency>,
    pub send_lag: Latency,
    pub unexpected_samples: Vec<String>,
    pub warmup_logins: u64,
    pub warmup_secs: f64,
    pub rss_warm_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub rss_max_after_warm_kib: Option<u64>,
    /// Least-squares slope of RSS over logins after the warm-up, KiB per 100,000 logins.
    pub rss_slope_kib_per_100k: Option<f64>,
    pub fds_warm: Option<u64>,
    pub fds_end: Option<u64>,
    pub fds_max_after_warm: Option<u64>,
    /// Of the fds, connections to the upstream (when its port was given).
    pub upstream_conns_warm: Option<u64>,
    pub upstream_conns_end: Option<u64>,
    pub upstream_conns_max: Option<u64>,
    pub limits: Limits,
    pub server: Option<crate::stats::ProcUsage>,
    pub upstream: Option<crate::stats::ProcUsage>,
    pub generator: crate::stats::ProcUsage,
    pub samples: Samples,
    pub checks: Vec<Check>,
    pub passed: bool,
}

/// Inputs of [`SoakReport::build`] besides the counters.
pub struct ReportInputs {
    pub label: String,
    pub mix: Mix,
    pub samples: Samples,
    pub warmup: Warmup,
    pub limits: Limits,
    pub server: Option<crate::stats::ProcUsage>,
    pub upstream: Option<crate::stats::ProcUsage>,
    pub generator: crate::stats::ProcUsage,
}

impl SoakReport {
    pub fn build(cfg: &SoakConfig, r: &SoakResult, inp: ReportInputs) -> SoakReport {
        let c = &r.counters;
        let t = &c.requests.tally;
        let kinds: Vec<KindReport> = Kind::ALL
            .iter()
            .map(|k| {
                let kc = &c.kinds[k.index()];
                KindReport {
                    kind: k.name(),
                    weight: inp.mix.weight(*k),
                    logins: kc.started,
                    expected: kc.expected,
                    unexpected: kc.unexpected,
                    unanswered: kc.lost,
                    latency: Latency::of(&kc.latency),
                }
            })
            .collect();
        let finished: u64 = c.kinds.iter().map(|k| k.finished).sum();
        let unexpected: u64 = kinds.iter().map(|k| k.unexpected).sum();
        let elapsed_s = r.elapsed.as_secs_f64();
        let span = r.schedule_span.as_secs_f64();
        let started: u64 = kinds.iter().map(|k| k.logins).sum();
        let s = &inp.samples;
        let warm = s.warm;
        let end = s.end;
        let after: Vec<&Sample> = match warm {
            Some(w) => s.series.iter().filter(|x| x.t_s >= w.t_s).collect(),
            None => Vec::new(),
        };
        let rss_max = after.iter().filter_map(|x| x.rss_kib).max();
        let fds_max = after.iter().filter_map(|x| x.fds).max();
        let conns_max = s.series.iter().filter_map(|x| x.upstream_conns).max();
        let slope = slope_per_100k(&after);
        let mut checks = Vec::new();
        let mut check = |name: &'static str, ok: bool, detail: String| {
            checks.push(Check { name, ok, detail });
        };
        check(
            "every login finished",
            started == cfg.logins && finished == cfg.logins,
            format!("{started} started, {finished} finished of {}", cfg.logins),
        );
        check(
            "no unanswered request",
            t.lost == 0,
            format!(
                "{} unanswered after {} retransmits each ({} timeout retransmits in all)",
                t.lost, cfg.retries, t.retransmits
            ),
        );
        let auth_bad = t.bad_authenticator
            + t.missing_message_authenticator
            + t.message_authenticator_not_first
            + t.malformed
            + t.unmatched;
        check(
            "every reply verified",
            auth_bad == 0,
            format!(
                "{} bad authenticator, {} without Message-Authenticator, {} with it not first, {} malformed, {} unmatched",
                t.bad_authenticator,
                t.missing_message_authenticator,
                t.message_authenticator_not_first,
                t.malformed,
                t.unmatched
            ),
        );
        check(
            "every answer as expected",
            unexpected == 0,
            format!("{unexpected} logins answered otherwise than expected"),
        );
        check(
            "retransmits answered byte-identically",
            t.repeat_different == 0
                && t.repeat_identical == c.kinds[Kind::Retransmit.index()].expected_repeats(cfg),
            format!(
                "{} identical, {} different",
                t.repeat_identical, t.repeat_different
            ),
        );
        match (warm.and_then(|w| w.rss_kib), end.and_then(|e| e.rss_kib)) {
            (Some(w), Some(e)) => {
                let limit = w as f64 * (1.0 + inp.limits.rss_tolerance_pct / 100.0);
                check(
                    "flat memory",
                    (e as f64) <= limit,
                    format!(
                        "RSS after warm-up {w} KiB, at the end {e} KiB ({:+.1}%, limit +{}%)",
                        (e as f64 / w as f64 - 1.0) * 100.0,
                        inp.limits.rss_tolerance_pct
                    ),
                );
            }
            _ => check(
                "flat memory",
                false,
                "no RSS sample after the warm-up and at the end (server gone, or the run shorter than the warm-up)".into(),
            ),
        }
        let slack = inp.limits.fd_slack;
        match (warm, end) {
            (Some(w), Some(e)) => match (w.fds, e.fds, w.upstream_conns, e.upstream_conns) {
                (Some(wf), Some(ef), Some(wc), Some(ec)) => {
                    let (wo, eo) = (wf.saturating_sub(wc), ef.saturating_sub(ec));
                    let max = conns_max.unwrap_or(ec);
                    // The pool grows with the load's peaks and shrinks again (idle
                    // connections close): its size at the end is bounded, its peaks reported.
                    let pool_ok = inp
                        .limits
                        .upstream_conn_limit
                        .is_none_or(|l| ec <= l + slack);
                    check(
                        "flat file descriptors",
                        eo <= wo + slack && pool_ok,
                        format!(
                            "fds other than connections to VIP: {wo} after warm-up, {eo} at the end (limit +{slack}); connections to VIP: {wc} after warm-up, {ec} at the end (limit {}), {max} at most during the run",
                            inp.limits
                                .upstream_conn_limit
                                .map(|l| format!("{l} + {slack}"))
                                .unwrap_or_else(|| "none".into())
                        ),
                    );
                }
                (Some(wf), Some(ef), _, _) => check(
                    "flat file descriptors",
                    ef <= wf + slack,
                    format!("{wf} after warm-up, {ef} at the end (limit +{slack})"),
                ),
                _ => check(
                    "flat file descriptors",
                    false,
                    "no fd sample after the warm-up and at the end".into(),
                ),
            },
            _ => check(
                "flat file descriptors",
                false,
                "no fd sample after the warm-up and at the end".into(),
            ),
        }
        let passed = checks.iter().all(|c| c.ok);
        SoakReport {
            label: inp.label,
            target: cfg.server.to_string(),
            mix: inp.mix.describe(),
            logins: cfg.logins,
            target_rate: cfg.rate,
            achieved_rate: if elapsed_s > 0.0 {
                finished as f64 / elapsed_s
            } else {
                0.0
            },
            offered_rate: if span > 0.0 {
                started as f64 / span
            } else {
                0.0
            },
            elapsed_s,
            kinds,
            unexpected,
            unanswered_requests: t.lost,
            requests: t.clone(),
            request_latency: Latency::of(&c.requests.latency),
            repeat_latency: (!c.requests.repeat_latency.is_empty())
                .then(|| Latency::of(&c.requests.repeat_latency)),
            send_lag: Latency::of(&c.requests.send_lag),
            unexpected_samples: c.unexpected_samples.clone(),
            warmup_logins: inp.warmup.logins,
            warmup_secs: inp.warmup.secs,
            rss_warm_kib: warm.and_then(|w| w.rss_kib),
            rss_end_kib: end.and_then(|e| e.rss_kib),
            rss_max_after_warm_kib: rss_max,
            rss_slope_kib_per_100k: slope,
            fds_warm: warm.and_then(|w| w.fds),
            fds_end: end.and_then(|e| e.fds),
            fds_max_after_warm: fds_max,
            upstream_conns_warm: warm.and_then(|w| w.upstream_conns),
            upstream_conns_end: end.and_then(|e| e.upstream_conns),
            upstream_conns_max: conns_max,
            limits: inp.limits,
            server: inp.server,
            upstream: inp.upstream,
            generator: inp.generator,
            samples: inp.samples,
            checks,
            passed,
        }
    }

    /// A few human lines.
    pub fn human(&self) -> String {
        let mut s = format!(
            "[{}] {} logins ({}) at {:.0}/s offered, {:.0}/s achieved, {:.1}s | unanswered {} unexpected {} | requests sent {} answered {} retrans {} | login ms:",
            self.label,
            self.logins,
            self.mix,
            self.offered_rate,
            self.achieved_rate,
            self.elapsed_s,
            self.unanswered_requests,
            self.unexpected,
            self.requests.sent,
            self.requests.answered,
            self.requests.retransmits,
        );
        for k in &self.kinds {
            if k.logins > 0 {
                s.push_str(&format!(
                    " {}={} (p50 {:.2} p99 {:.2})",
                    k.kind, k.logins, k.latency.p50_ms, k.latency.p99_ms
                ));
            }
        }
        s.push_str(&format!(
            "\n[{}] server RSS warm {} end {} max {} | fds warm {}{} end {}{} max {}",
            self.label,
            kib(self.rss_warm_kib),
            kib(self.rss_end_kib),
            kib(self.rss_max_after_warm_kib),
            opt(self.fds_warm),
            conns_note(self.upstream_conns_warm),
            opt(self.fds_end),
            conns_note(self.upstream_conns_end),
            opt(self.fds_max_after_warm),
        ));
        for c in &self.checks {
            s.push_str(&format!(
                "\n[{}] {} {}: {}",
                self.label,
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        for u in self.unexpected_samples.iter().take(10) {
            s.push_str(&format!("\n[{}]   {u}", self.label));
        }
        s
    }
}

impl KindCounters {
    /// Repeats a run's retransmit logins should have had answered.
    fn expected_repeats(&self, cfg: &SoakConfig) -> u64 {
        (self.expected + self.unexpected) * u64::from(cfg.repeats)
    }
}

/// Slope of RSS (KiB) over finished logins, per 100,000 logins.
fn slope_per_100k(samples: &[&Sample]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.done as f64, s.rss_kib? as f64)))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx * 100_000.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_refuses() {
        let m = Mix::parse("code=70, bad=10,push=5,challenge=10,retransmit=5").unwrap();
        assert_eq!(m, Mix::default());
        assert_eq!(
            m.describe(),
            "code=70,bad=10,push=5,challenge=10,retransmit=5"
        );
        let m = Mix::parse("push=1").unwrap();
        assert_eq!(m.weight(Kind::Code), 0);
        assert_eq!(m.kind_of(12345, 1), Kind::Push);
        assert!(Mix::parse("code=0").is_err());
        assert!(Mix::parse("codes=1").is_err());
        assert!(Mix::parse("code=x").is_err());
        assert!(Mix::parse("code").is_err());
        assert!(Mix::parse("code=1,code=2").is_err());
    }

    #[test]
    fn kinds_follow_the_weights() {
        let m = Mix::default();
        let mut counts = [0u64; 5];
        for n in 0..100_000 {
            counts[m.kind_of(n, 7).index()] += 1;
        }
        for (k, c) in Kind::ALL.iter().zip(counts) {
            let want = f64::from(m.weight(*k)) * 1000.0;
            assert!(
                (c as f64 - want).abs() < want * 0.05 + 50.0,
                "{}: {c} vs {want}",
                k.name()
            );
        }
        // A user (n mod 1000) does not always get the same kind.
        let kinds: HashSet<Kind> = (0..50).map(|i| m.kind_of(42 + i * 1000, 7)).collect();
        assert!(kinds.len() > 1);
    }

    #[test]
    fn bad_codes_are_never_codes_near_now() {
        let key = b"12345678901234567890".to_vec();
        let mut c = Codes::default();
        let good = c.good(&key, 6);
        for n in 0..2000 {
            let b = c.bad(&key, 6, n);
            assert_eq!(b.len(), 6);
            assert!(b.iter().all(u8::is_ascii_digit));
            assert_ne!(b, good);
            assert!(!c.avoid.contains(std::str::from_utf8(&b).unwrap()));
        }
        // 52 codes of a million: a collision between two steps is possible, rarely.
        assert!(c.avoid.len() as i64 >= 2 * BAD_CODE_GUARD_STEPS);
    }

    #[test]
    fn proc_net_tcp_lines() {
        let inodes: HashSet<String> = ["4242".to_owned()].into_iter().collect();
        let l = "  12: 0100007F:E3AE 0100007F:858B 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1";
        assert!(tcp_line_matches(l, 0x858B, &inodes));
        assert!(!tcp_line_matches(l, 0x858C, &inodes));
        let other = l.replace(" 4242 ", " 4243 ");
        assert!(!tcp_line_matches(&other, 0x858B, &inodes));
        assert!(!tcp_line_matches("garbage", 1, &inodes));
    }

    #[test]
    fn counts_own_connections() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let _c1 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _c2 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (total, conns) = fds_and_conns_to("self", port).unwrap();
        assert_eq!(conns, 2);
        assert!(total >= 5);
    }

    #[test]
    fn slope() {
        let s: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t_s: i as f64,
                done: i * 10_000,
                rss_kib: Some(1000 + i * 50),
                fds: Some(10),
                upstream_conns: None,
                upstream_rss_kib: None,
            })
            .collect();
        let refs: Vec<&Sample> = s.iter().collect();
        let v = slope_per_100k(&refs).unwrap();
        assert!((v - 500.0).abs() < 1e-6, "{v}");
    }
}
