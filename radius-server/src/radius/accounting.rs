//! RADIUS accounting (RFC 2866): the Request Authenticator check, the Accounting-Response, and
//! what is kept of the requests: a log line each, counters per client and status, and a bounded
//! table of active sessions (for the gauge only; nothing else is stored). The receive loop is in
//! the server module, which shares the client table and drop warnings with the auth port.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use tracing::{info, warn};
use vip_core::log_limit::OncePerSecond;
use vip_core::log_text::Escaped;

use crate::radius::packet::{self as pkt, MacKey, ReplyAttr};
use crate::radius::stats::Stats;

pub const CODE_ACCOUNTING_REQUEST: u8 = 4;
pub const CODE_ACCOUNTING_RESPONSE: u8 = 5;

const ATTR_FRAMED_IP_ADDRESS: u8 = 8;
const ATTR_ACCT_STATUS_TYPE: u8 = 40;
const ATTR_ACCT_SESSION_ID: u8 = 44;
const ATTR_ACCT_SESSION_TIME: u8 = 46;
const ATTR_ACCT_TERMINATE_CAUSE: u8 = 49;

/// Active sessions kept at most, all clients together; more are counted, not stored.
pub const MAX_SESSIONS: usize = 100_000;
/// A session with neither Stop nor Interim-Update for this long is forgotten.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How often the table is swept for forgotten sessions (at most).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// RFC 2866 §3: the Request Authenticator is MD5(Code + Identifier + Length + 16 zero octets +
/// request attributes + shared secret). Compared in constant time.
pub fn verify_request_authenticator(packet: &[u8], secret: &[u8]) -> bool {
    let (Some(head), Some(received), Some(attrs)) =
        (packet.get(..4), packet.get(4..20), packet.get(20..))
    else {
        return false;
    };
    let mut md5 = Md5::new();
    md5.update(head);
    md5.update([0u8; 16]);
    md5.update(attrs);
    md5.update(secret);
    bool::from(md5.finalize().as_slice().ct_eq(received))
}

/// Message-Authenticator of an Accounting-Request: HMAC-MD5 over the packet with the
/// authenticator field and the attribute's value zeroed (RFC 5080 §2.2.4 / FreeRADIUS: the
/// Request Authenticator is computed after it, so it cannot be part of it).
pub fn verify_message_authenticator(key: &MacKey, packet: &[u8], ma_offset: usize) -> bool {
    let mut copy = packet.to_vec();
    match copy.get_mut(4..20) {
        Some(auth) => auth.fill(0),
        None => return false,
    }
    pkt::verify_message_authenticator(key, &copy, ma_offset)
}

/// The Accounting-Response (RFC 2866 §4.2) with the request's Proxy-States in order. A request
/// that carried a Message-Authenticator gets one back, first, computed (as FreeRADIUS checks
/// it) over the reply with a zero authenticator field; then the Response Authenticator is
/// MD5(Code + ID + Length + RequestAuth + attributes + secret) (§3).
pub fn build_response(
    identifier: u8,
    request_authenticator: &[u8; 16],
    proxy_states: &[&[u8]],
    with_message_authenticator: bool,
    key: &MacKey,
    secret: &[u8],
) -> Option<Vec<u8>> {
    let zero = [0u8; 16];
    let mut attrs: Vec<ReplyAttr<'_>> = Vec::with_capacity(proxy_states.len() + 1);
    if with_message_authenticator {
        attrs.push((pkt::ATTR_MESSAGE_AUTHENTICATOR, &zero));
    }
    attrs.extend(proxy_states.iter().map(|v| (pkt::ATTR_PROXY_STATE, *v)));
    let len = pkt::HEADER_LEN + pkt::attrs_len(&attrs);
    if len > pkt::MAX_PACKET_LEN || attrs.iter().any(|(_, v)| v.len() > pkt::MAX_ATTR_VALUE) {
        return None;
    }
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&[CODE_ACCOUNTING_RESPONSE, identifier]);
    p.extend_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
    p.extend_from_slice(&zero);
    for (t, v) in &attrs {
        p.push(*t);
        p.push(u8::try_from(v.len() + 2).ok()?);
        p.extend_from_slice(v);
    }
    if with_message_authenticator {
        use hmac::Mac;
        let mut mac = key.clone();
        mac.update(&p);
        let value = pkt::HEADER_LEN + 2..pkt::HEADER_LEN + pkt::MA_ATTR_LEN;
        p.get_mut(value)?
            .copy_from_slice(&mac.finalize().into_bytes());
    }
    p[4..pkt::HEADER_LEN].copy_from_slice(request_authenticator);
    let mut md5 = Md5::new();
    md5.update(&p);
    md5.update(secret);
    p[4..pkt::HEADER_LEN].copy_from_slice(&md5.finalize());
    Some(p)
}

/// Acct-Status-Type (RFC 2866 §5.1), as counted: the label of the requests counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
    /// Absent, or a value this bridge does not track (answered all the same).
    Other,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Start,
        Status::Stop,
        Status::InterimUpdate,
        Status::AccountingOn,
        Status::AccountingOff,
        Status::Other,
    ];

    fn from_value(v: Option<u32>) -> Status {
        match v {
            Some(1) => Status::Start,
            Some(2) => Status::Stop,
            Some(3) => Status::InterimUpdate,
            Some(7) => Status::AccountingOn,
            Some(8) => Status::AccountingOff,
            _ => Status::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Start => "Start",
            Status::Stop => "Stop",
            Status::InterimUpdate => "Interim-Update",
            Status::AccountingOn => "Accounting-On",
            Status::AccountingOff => "Accounting-Off",
            Status::Other => "Other",
        }
    }
}

/// Acct-Terminate-Cause names (RFC 2866 §5.10).
fn terminate_cause(v: u32) -> String {
    const NAMES: [&str; 18] = [
        "User-Request",
        "Lost-Carrier",
        "Lost-Service",
        "Idle-Timeout",
        "Session-Timeout",
        "Admin-Reset",
        "Admin-Reboot",
        "Port-Error",
        "NAS-Error",
        "NAS-Request",
        "NAS-Reboot",
        "Port-Unneeded",
        "Port-Preempted",
        "Port-Suspended",
        "Service-Unavailable",
        "Callback",
        "User-Error",
        "Host-Request",
    ];
    usize::try_from(v)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| v.to_string(), |n| (*n).to_owned())
}

/// What an Accounting-Request says that is logged and counted.
#[derive(Debug, Default)]
pub struct Event {
    pub status_value: Option<u32>,
    pub user: Option<String>,
    pub session_id: Option<String>,
    pub framed_ip: Option<std::net::Ipv4Addr>,
    pub session_time: Option<u32>,
    pub terminate_cause: Option<u32>,
}

impl Event {
    /// Reads the attributes of a checked packet; values of the wrong size count as absent.
    pub fn parse(packet: &[u8]) -> Event {
        let mut e = Event::default();
        let int = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes);
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        for (_, t, v) in pkt::attributes(packet).unwrap_or_default() {
            match t {
                pkt::ATTR_USER_NAME if e.user.is_none() => e.user = Some(text(v)),
                ATTR_ACCT_STATUS_TYPE if e.status_value.is_none() => e.status_value = int(v),
                ATTR_ACCT_SESSION_ID if e.session_id.is_none() => e.session_id = Some(text(v)),
                ATTR_FRAMED_IP_ADDRESS if e.framed_ip.is_none() => {
                    e.framed_ip = <[u8; 4]>::try_from(v).ok().map(Into::into)
                }
                ATTR_ACCT_SESSION_TIME if e.session_time.is_none() => e.session_time = int(v),
                ATTR_ACCT_TERMINATE_CAUSE if e.terminate_cause.is_none() => {
                    e.terminate_cause = int(v)
                }
                _ => {}
            }
        }
        e
    }

    pub fn status(&self) -> Status {
        Status::from_value(self.status_value)
    }
}

#[derive(Default)]
struct Table {
    /// Per client (by table position): Acct-Session-Id → last Start / Interim-Update.
    by_client: Vec<HashMap<String, Instant>>,
    total: usize,
    last_sweep: Option<Instant>,
}

impl Table {
    fn sweep(&mut self, now: Instant, max_age: Duration) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let mut total = 0;
        for m in &mut self.by_client {
            m.retain(|_, seen| now.saturating_duration_since(*seen) < max_age);
            total += m.len();
        }
        self.total = total;
    }
}

/// Accounting counters and the active-session table, shared by the listeners and the metrics.
pub struct Accounting {
    /// Client names by table position (metric labels).
    names: Vec<String>,
    /// Requests by client position × [`Status::ALL`] index.
    requests: Box<[AtomicU64]>,
    table: Mutex<Table>,
    cap: usize,
    max_age: Duration,
    full_warning: OncePerSecond,
    /// Starts not stored because the table was full.
    pub not_stored: AtomicU64,
}

impl Accounting {
    /// For the clients named, in table order.
    pub fn new(names: Vec<String>) -> Accounting {
        Accounting::with_limits(names, MAX_SESSIONS, SESSION_MAX_AGE)
    }

    pub fn with_limits(names: Vec<String>, cap: usize, max_age: Duration) -> Accounting {
        let n = names.len();
        Accounting {
            requests: (0..n * Status::ALL.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            table: Mutex::new(Table {
                by_client: (0..n).map(|_| HashMap::new()).collect(),
                ..Table::default()
            }),
            names,
            cap,
            max_age,
            full_warning: OncePerSecond::new(),
            not_stored: AtomicU64::new(0),
        }
    }

    /// Counts, updates the session table and writes the log line for one verified request
    /// (not for retransmits answered from the cache).
    pub fn record(&self, client: usize, event: &Event) {
        self.record_at(client, event, Instant::now());
    }

    fn record_at(&self, client: usize, event: &Event, now: Instant) {
        let status = event.status();
        let Some(name) = self.names.get(client) else {
            return;
        };
        if let Some(c) = Status::ALL
            .iter()
            .position(|s| *s == status)
            .and_then(|i| self.requests.get(client * Status::ALL.len() + i))
        {
            Stats::inc(c);
        }
        let stored = self.update(client, status, event.session_id.as_deref(), now);
        if !stored {
            Stats::inc(&self.not_stored);
            if let Some(suppressed) = self.full_warning.pass() {
                warn!(
                    suppressed,
                    max = self.cap,
                    "accounting: the active-session table is full; a Start was counted but its \
                     session not stored (the sessions gauge is low until Stops come in)"
                );
            }
        }
        let name = Escaped(name);
        let user = event.user.as_deref().map(Escaped);
        let session_id = event.session_id.as_deref().map(Escaped);
        let status_name = match status {
            Status::Other => event
                .status_value
                .map_or_else(|| "none".to_owned(), |v| v.to_string()),
            s => s.as_str().to_owned(),
        };
        if status == Status::Stop {
            info!(
                client = %name,
                status = %status_name,
                user = user.as_ref().map(tracing::field::display),
                session_id = session_id.as_ref().map(tracing::field::display),
                framed_ip = event.framed_ip.map(tracing::field::display),
                session_time = event.session_time,
                terminate_cause = event.terminate_cause.map(terminate_cause),
                "accounting"
            );
        } else {
            info!(
                client = %name,
                status = %status_name,
                user = user.as_ref().map(tracing::field::display),
                session_id = session_id.as_ref().map(tracing::field::display),
                framed_ip = event.framed_ip.map(tracing::field::display),
                "accounting"
            );
        }
    }

    /// Applies one request to the table; false when a session should have been stored but the
    /// table is full.
    fn update(&self, client: usize, status: Status, session: Option<&str>, now: Instant) -> bool {
        let Ok(mut t) = self.table.lock() else {
            return true;
        };
        t.sweep(now, self.max_age);
        let Table {
            by_client, total, ..
        } = &mut *t;
        let Some(map) = by_client.get_mut(client) else {
            return true;
        };
        match (status, session) {
            (Status::Start | Status::InterimUpdate, Some(id)) => {
                if let Some(seen) = map.get_mut(id) {
                    *seen = now;
                } else if *total >= self.cap {
                    return false;
                } else {
                    map.insert(id.to_owned(), now);
                    *total += 1;
                }
            }
            (Status::Stop, Some(id)) => {
                *total = total.saturating_sub(usize::from(map.remove(id).is_some()));
            }
            // RFC 2866 §5.1: the NAS (re)started or stops: none of its sessions is active.
            (Status::AccountingOn | Status::AccountingOff, _) => {
                *total = total.saturating_sub(map.len());
                *map = HashMap::new();
            }
            _ => {}
        }
        true
    }

    /// `(client, status, count)` of every counter.
    pub fn requests(&self) -> Vec<(&str, &'static str, u64)> {
        let mut out = Vec::with_capacity(self.requests.len());
        for (c, name) in self.names.iter().enumerate() {
            for (i, s) in Status::ALL.iter().enumerate() {
                let v = self
                    .requests
                    .get(c * Status::ALL.len() + i)
                    .map_or(0, Stats::get);
                out.push((name.as_str(), s.as_str(), v));
            }
        }
        out
    }

    /// `(client, active sessions)` per client, sessions past their age forgotten first.
    pub fn sessions(&self) -> Vec<(&str, u64)> {
        let counts: Vec<usize> = match self.table.lock() {
            Ok(mut t) => {
                t.sweep(Instant::now(), self.max_age);
                t.by_client.iter().map(HashMap::len).collect()
            }
            Err(_) => Vec::new(),
        };
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), counts.get(i).map_or(0, |c| *c as u64)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
