//! The RADIUS load generator: many UDP sockets, an Identifier allocator per socket, open loop
//! (requests on a clock) or closed loop (fixed concurrency), retransmits, verification.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::idalloc::IdAllocator;
use crate::radius::{self, RequestSpec, Secret, VerifyError};
use crate::stats::Counters;
use crate::template::{PasswordCache, Template};

/// How requests are paced.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `rate` requests per second in total, on a clock, whatever the replies do.
    Open { rate: f64 },
    /// `concurrency` exchanges outstanding at all times (spread over the sockets).
    Closed { concurrency: usize },
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub server: SocketAddr,
    pub secret: Secret,
    pub sockets: usize,
    pub mode: Mode,
    /// How long new requests are started.
    pub duration: Duration,
    /// Stop starting requests after this many (over all sockets).
    pub max_requests: Option<u64>,
    /// Retransmit timeout.
    pub timeout: Duration,
    /// Retransmits before an exchange counts as lost.
    pub retries: u32,
    /// After `duration`, how long to wait for outstanding replies.
    pub drain: Duration,
    pub template: Template,
    /// Send each request this many more times (same Identifier and authenticator), each after
    /// the previous answer: retransmits the server should answer from its cache.
    pub repeat: u32,
    /// Sign requests with Message-Authenticator.
    pub message_authenticator: bool,
    /// Verify reply authenticators (off for the bare echo server).
    pub verify: bool,
    /// Identifiers per socket (1–256).
    pub ids_per_socket: usize,
    /// Socket send/receive buffer size in bytes (0 = system default).
    pub socket_buffer: usize,
}

struct Slot {
    auth: [u8; 16],
    bytes: Vec<u8>,
    first_sent: Instant,
    tries: u32,
    repeats_left: u32,
    is_repeat: bool,
    first_reply: Option<Vec<u8>>,
}

/// Result of a run: merged counters and the time from start to the last reply.
#[derive(Debug)]
pub struct RunResult {
    pub counters: Counters,
    pub elapsed: Duration,
}

fn bind_addr(server: &SocketAddr) -> SocketAddr {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(ip) if ip.is_loopback() => SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

/// A UDP socket with the requested buffer sizes, bound for `server`.
pub fn udp_socket(
    local: SocketAddr,
    buffer: usize,
    reuse: bool,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    if buffer > 0 {
        // Best effort: the kernel caps these at net.core.{r,w}mem_max.
        let _ = s.set_recv_buffer_size(buffer);
        let _ = s.set_send_buffer_size(buffer);
    }
    if reuse {
        s.set_reuse_address(true)?;
    }
    s.bind(&local.into())?;
    Ok(s.into())
}

/// Runs the load and returns the merged counters.
pub async fn run(cfg: Arc<LoadConfig>) -> anyhow::Result<RunResult> {
    if cfg.sockets == 0 {
        anyhow::bail!("need at least one socket");
    }
    let ids = cfg.ids_per_socket.clamp(1, 256);
    if let Mode::Closed { concurrency } = cfg.mode {
        if concurrency == 0 {
            anyhow::bail!("concurrency must be at least 1");
        }
        if concurrency > ids * cfg.sockets {
            anyhow::bail!(
                "concurrency {concurrency} needs more Identifiers than {} sockets x {ids}: raise --sockets",
                cfg.sockets
            );
        }
    }
    if let Mode::Open { rate } = cfg.mode {
        if !rate.is_finite() || rate <= 0.0 {
            anyhow::bail!("rate must be positive");
        }
    }
    let mut socks = Vec::with_capacity(cfg.sockets);
    for _ in 0..cfg.sockets {
        let s = udp_socket(bind_addr(&cfg.server), cfg.socket_buffer, false)?;
        s.set_nonblocking(true)?;
        let s = UdpSocket::from_std(s)?;
        s.connect(cfg.server).await?;
        socks.push(s);
    }
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(5);
    let mut tasks = Vec::with_capacity(cfg.sockets);
    for (i, s) in socks.into_iter().enumerate() {
        let share = match cfg.mode {
            Mode::Closed { concurrency } => {
                concurrency / cfg.sockets + usize::from(i < concurrency % cfg.sockets)
            }
            Mode::Open { .. } => 0,
        };
        tasks.push(tokio::spawn(socket_task(
            i,
            s,
            cfg.clone(),
            counter.clone(),
            start,
            share,
        )));
    }
    let mut total = Counters::default();
    let mut last = start;
    for t in tasks {
        let (c, l) = t.await?;
        total.merge(&c);
        last = last.max(l);
    }
    Ok(RunResult {
        counters: total,
        elapsed: last.saturating_duration_since(start),
    })
}

struct SocketState {
    cfg: Arc<LoadConfig>,
    sock: UdpSocket,
    ids: IdAllocator,
    slots: Vec<Option<Slot>>,
    generation: [u32; 256],
    prev_auth: [Option<[u8; 16]>; 256],
    deadlines: VecDeque<(Instant, u8, u32)>,
    counter: Arc<AtomicU64>,
    exhausted: bool,
    rng: StdRng,
    pw: PasswordCache,
    c: Counters,
    last_reply: Option<Instant>,
}

impl SocketState {
    fn push_deadline(&mut self, id: u8, now: Instant) {
        let g = &mut self.generation[id as usize];
        *g = g.wrapping_add(1);
        self.deadlines.push_back((now + self.cfg.timeout, id, *g));
    }

    fn finish(&mut self, id: u8) {
        if let Some(slot) = self.slots[id as usize].take() {
            self.prev_auth[id as usize] = Some(slot.auth);
        }
        self.ids.free(id);
    }

    /// Starts a new exchange; false when none could be started.
    async fn start_request(&mut self) -> bool {
        if self.exhausted || self.ids.available() == 0 {
            return false;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        if self.cfg.max_requests.is_some_and(|m| n >= m) {
            self.exhausted = true;
            return false;
        }
        let Some(id) = self.ids.alloc() else {
            return false;
        };
        let mut auth = [0u8; 16];
        self.rng.fill_bytes(&mut auth);
        let t = &self.cfg.template;
        let user = t.user(n);
        let password = self.pw.get(&t.password).to_vec();
        let spec = RequestSpec {
            user: user.as_bytes(),
            password: &password,
            state: t.state.as_deref(),
            nas_identifier: t.nas_identifier.as_deref(),
            nas_ip: Some([127, 0, 0, 1]),
            message_authenticator: self.cfg.message_authenticator,
        };
        let mut bytes = Vec::with_capacity(128);
        if radius::build_access_request(&mut bytes, id, &auth, &self.cfg.secret, &spec).is_err() {
            self.c.tally.send_errors += 1;
            self.ids.free(id);
            return false;
        }
        let now = Instant::now();
        if self.sock.send(&bytes).await.is_err() {
            self.c.tally.send_errors += 1;
            self.ids.free(id);
            return true;
        }
        self.c.tally.sent += 1;
        self.slots[id as usize] = Some(Slot {
            auth,
            bytes,
            first_sent: now,
            tries: 0,
            repeats_left: self.cfg.repeat,
            is_repeat: false,
            first_reply: None,
        });
        self.push_deadline(id, now);
        true
    }

    async fn resend(&mut self, id: u8) {
        let Some(slot) = self.slots[id as usize].as_ref() else {
            return;
        };
        if self.sock.send(&slot.bytes).await.is_err() {
            self.c.tally.send_errors += 1;
        }
    }

    async fn expire(&mut self, now: Instant) {
        while let Some(&(dl, id, g)) = self.deadlines.front() {
            if dl > now {
                break;
            }
            self.deadlines.pop_front();
            if self.generation[id as usize] != g {
                continue;
            }
            let Some(slot) = self.slots[id as usize].as_mut() else {
                continue;
            };
            if slot.tries < self.cfg.retries {
                slot.tries += 1;
                self.c.tally.retransmits += 1;
                self.resend(id).await;
                self.push_deadline(id, now);
            } else {
                self.c.tally.lost += 1;
                self.finish(id);
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
            self.c.tally.malformed += 1;
            return;
        }
        let id = d[1];
        let Some(slot) = self.slots[id as usize].as_ref() else {
            if !self.cfg.verify || self.is_late(d, id) {
                self.c.tally.late_or_duplicate += 1;
            } else {
                self.c.tally.unmatched += 1;
            }
            return;
        };
        let code = if self.cfg.verify {
            match radius::verify_reply(d, id, &slot.auth, &self.cfg.secret) {
                Ok(info) => {
                    if !info.has_message_authenticator {
                        self.c.tally.missing_message_authenticator += 1;
                    } else if !info.message_authenticator_first {
                        self.c.tally.message_authenticator_not_first += 1;
                    }
                    info.code
                }
                Err(VerifyError::Malformed) => {
                    self.c.tally.malformed += 1;
                    return;
                }
                Err(_) => {
                    if self.is_late(d, id) {
                        self.c.tally.late_or_duplicate += 1;
                    } else {
                        self.c.tally.bad_authenticator += 1;
                    }
                    return;
                }
            }
        } else {
            d[0]
        };
        self.last_reply = Some(now);
        self.c.tally.answered += 1;
        match code {
            radius::ACCESS_ACCEPT => self.c.tally.accept += 1,
            radius::ACCESS_REJECT => self.c.tally.reject += 1,
            radius::ACCESS_CHALLENGE => self.c.tally.challenge += 1,
            _ => self.c.tally.other_code += 1,
        }
        let Some(slot) = self.slots[id as usize].as_mut() else {
            return;
        };
        let us = now.saturating_duration_since(slot.first_sent).as_micros() as u64;
        if slot.is_repeat {
            Counters::record_latency_us(&mut self.c.repeat_latency, us);
            let same = slot.first_reply.as_deref().map(|f| f == d);
            match same {
                Some(true) => self.c.tally.repeat_identical += 1,
                _ => self.c.tally.repeat_different += 1,
            }
        } else {
            Counters::record_latency_us(&mut self.c.latency, us);
        }
        if slot.repeats_left > 0 {
            slot.repeats_left -= 1;
            if slot.first_reply.is_none() {
                slot.first_reply = Some(d.to_vec());
            }
            slot.is_repeat = true;
            slot.tries = 0;
            slot.first_sent = now;
            self.c.tally.sent += 1;
            self.resend(id).await;
            self.push_deadline(id, now);
        } else {
            self.finish(id);
        }
    }
}

async fn socket_task(
    index: usize,
    sock: UdpSocket,
    cfg: Arc<LoadConfig>,
    counter: Arc<AtomicU64>,
    start: Instant,
    closed_share: usize,
) -> (Counters, Instant) {
    let end = start + cfg.duration;
    let hard_end = end + cfg.drain;
    let interval = match cfg.mode {
        Mode::Open { rate } => Some(Duration::from_secs_f64(cfg.sockets as f64 / rate)),
        Mode::Closed { .. } => None,
    };
    let mut next_send = match interval {
        Some(iv) => start + iv.mul_f64(index as f64 / cfg.sockets as f64),
        None => start,
    };
    let mut st = SocketState {
        sock,
        ids: IdAllocator::new(cfg.ids_per_socket),
        slots: (0..256).map(|_| None).collect(),
        generation: [0; 256],
        prev_auth: [None; 256],
        deadlines: VecDeque::with_capacity(512),
        counter,
        exhausted: false,
        rng: StdRng::from_entropy(),
        pw: PasswordCache::default(),
        c: Counters::default(),
        last_reply: None,
        cfg,
    };
    // Closed-loop sockets with no share of the concurrency only listen.
    if matches!(st.cfg.mode, Mode::Closed { .. }) && closed_share == 0 {
        return (st.c, start);
    }
    tokio::time::sleep_until(start).await;
    let mut buf = vec![0u8; 65_536];
    loop {
        for _ in 0..256 {
            match st.sock.try_recv(&mut buf) {
                Ok(n) => {
                    let now = Instant::now();
                    st.on_reply(&buf[..n], now).await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    st.c.tally.recv_errors += 1;
                    break;
                }
            }
        }
        let now = Instant::now();
        st.expire(now).await;
        let sending = now < end && !st.exhausted;
        if sending {
            match interval {
                Some(iv) => {
                    let mut k = 0;
                    while next_send <= now && k < 256 && !st.exhausted {
                        let lag = now.saturating_duration_since(next_send).as_micros() as u64;
                        Counters::record_latency_us(&mut st.c.send_lag, lag);
                        if st.ids.available() == 0 {
                            st.c.tally.skipped_no_identifier += 1;
                        } else {
                            st.start_request().await;
                        }
                        next_send += iv;
                        k += 1;
                    }
                }
                None => while st.ids.in_use() < closed_share && st.start_request().await {},
            }
        }
        let now = Instant::now();
        let sending = now < end && !st.exhausted;
        if !sending && st.ids.in_use() == 0 {
            break;
        }
        if now >= hard_end {
            st.c.tally.lost += st.ids.in_use() as u64;
            break;
        }
        let mut wake = hard_end;
        if sending {
            wake = wake.min(end);
            if interval.is_some() {
                wake = wake.min(next_send);
            }
        }
        if let Some(&(dl, _, _)) = st.deadlines.front() {
            wake = wake.min(dl);
        }
        tokio::select! {
            r = st.sock.readable() => {
                if r.is_err() {
                    st.c.tally.recv_errors += 1;
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    let last = st.last_reply.unwrap_or(start);
    (st.c, last)
}
