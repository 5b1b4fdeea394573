//! PAM logins through the daemon's Unix socket, without sshd: the per-login overhead of the
//! PAM door. Speaks the framing of `shared/src/ipc.rs` (4-byte big-endian length + JSON,
//! hello then authenticate), one connection per login as pam_vip.so does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::load::RunResult;
use crate::stats::Counters;
use crate::template::{PasswordCache, Template};

const MAX_FRAME: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct PamLoadConfig {
    pub socket: PathBuf,
    pub service: String,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    /// Deadline of one whole login.
    pub timeout: Duration,
    pub template: Template,
}

/// What the daemon said.
#[derive(Debug, PartialEq, Eq)]
pub enum PamOutcome {
    Accept,
    Reject,
    Challenge,
    /// A protocol-level error message (`{"type":"error"}`) or an unknown outcome.
    Other,
}

async fn write_frame(s: &mut UnixStream, v: &Value) -> anyhow::Result<()> {
    let body = serde_json::to_vec(v)?;
    let mut f = Vec::with_capacity(body.len() + 4);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(&body);
    s.write_all(&f).await?;
    Ok(())
}

async fn read_frame(s: &mut UnixStream) -> anyhow::Result<Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        anyhow::bail!("frame of {n} bytes");
    }
    let mut body = vec![0u8; n];
    s.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Classifies a `{"type":"outcome","outcome":...}` message.
pub fn classify(msg: &Value) -> PamOutcome {
    if msg.get("type").and_then(Value::as_str) != Some("outcome") {
        return PamOutcome::Other;
    }
    let o = msg.get("outcome");
    let name = match o {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(m)) => m.keys().next().map(String::as_str),
        _ => None,
    };
    match name {
        Some("Accept") => PamOutcome::Accept,
        Some("Reject") => PamOutcome::Reject,
        Some("Challenge") => PamOutcome::Challenge,
        _ => PamOutcome::Other,
    }
}

/// One login: connect, hello, authenticate, outcome.
pub async fn login(
    socket: &std::path::Path,
    service: &str,
    user: &str,
    answer: &str,
) -> anyhow::Result<PamOutcome> {
    let mut s = UnixStream::connect(socket).await?;
    write_frame(&mut s, &json!({"type": "hello", "version": 1})).await?;
    let hello = read_frame(&mut s).await?;
    if hello.get("type").and_then(Value::as_str) != Some("hello") {
        anyhow::bail!("no hello from the daemon: {hello}");
    }
    write_frame(
        &mut s,
        &json!({"type": "authenticate", "service": service, "user": user, "answer": answer}),
    )
    .await?;
    Ok(classify(&read_frame(&mut s).await?))
}

/// Runs `concurrency` login loops for `duration`.
pub async fn run(cfg: Arc<PamLoadConfig>) -> anyhow::Result<RunResult> {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..cfg.concurrency.max(1) {
        let cfg = cfg.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Counters::default();
            let mut pw = PasswordCache::default();
            let mut last = start;
            let end = start + cfg.duration;
            while Instant::now() < end {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if cfg.max_requests.is_some_and(|m| n >= m) {
                    break;
                }
                let user = cfg.template.user(n);
                let answer = String::from_utf8_lossy(pw.get(&cfg.template.password)).into_owned();
                let t0 = Instant::now();
                c.tally.sent += 1;
                let r = tokio::time::timeout(
                    cfg.timeout,
                    login(&cfg.socket, &cfg.service, &user, &answer),
                )
                .await;
                let now = Instant::now();
                match r {
                    Ok(Ok(o)) => {
                        c.tally.answered += 1;
                        last = now;
                        match o {
                            PamOutcome::Accept => c.tally.accept += 1,
                            PamOutcome::Reject => c.tally.reject += 1,
                            PamOutcome::Challenge => c.tally.challenge += 1,
                            PamOutcome::Other => c.tally.other_code += 1,
                        }
                        let us = now.saturating_duration_since(t0).as_micros() as u64;
                        Counters::record_latency_us(&mut c.latency, us);
                    }
                    Ok(Err(_)) => c.tally.send_errors += 1,
                    Err(_) => c.tally.lost += 1,
                }
            }
            (c, last)
        }));
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
