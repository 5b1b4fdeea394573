//! The RADIUS server loop: one receive task per listening socket, cheap checks inline
//! (client, lengths, Message-Authenticator, duplicates, Status-Server), then one tokio task
//! per admitted login, bounded by semaphores. No lock is held across an await.
//!
//! Admission: `max_in_flight` permits for every request plus a reserved share (a quarter,
//! at least one) that only requests carrying a live State (a continuing login) may use, so a
//! flood of first rounds cannot starve users who are half-way through a login. When no permit
//! is free the request is dropped and counted; the NAS retransmits.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use radius::core::packet::Packet;
use radius::core::{rfc2865, rfc2866, rfc2869, rfc3162};
use tokio::net::UdpSocket;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn, Instrument};
use vip_core::engine::{
    AuthRequest, Authenticate, ClientInfo, FrontDoor, Outcome, Reject, RejectReason,
};
use vip_core::log_limit::{OncePerSecond, OncePerSecondPerKey};
use vip_core::log_text::Escaped;
use vip_core::secret::Secret;

use crate::config::RadiusSettings;
use crate::error::{Error, Result};
use crate::radius::accounting::{self, Accounting, Event};
use crate::radius::clients::{Client, ClientTable};
use crate::radius::dedup::{Dedup, Key, Seen};
use crate::radius::packet::{self as pkt, RawInfo, ReplyAttr};
use crate::radius::stats::Stats;

/// RFC 2865 says 4096 octets at most; a longer datagram is cut here and fails the checks.
const RECV_BUFFER: usize = 4096;
/// Datagrams read per wake-up at most, so one busy socket cannot keep its task from yielding.
const RECV_BATCH: usize = 64;
/// Backstop lifetime of an in-progress duplicate entry (longer than any push timeout).
const IN_PROGRESS_TTL: Duration = Duration::from_secs(11 * 60);
/// Longest user-facing text we put in a reply (Reply-Message values are split at 253 octets;
/// the request's Proxy-States may leave room for less: see `fitted_reply`).
const MAX_MESSAGE: usize = 2048;

struct Shared {
    clients: ClientTable,
    dedup: Dedup,
    auth: Arc<dyn Authenticate>,
    stats: Arc<Stats>,
    general: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
    general_permits: u32,
    reserved_permits: u32,
    /// Under a flood, one overload warning a second, not one a packet.
    overload_warning: vip_core::log_limit::OncePerSecond,
    /// Requests that prove nothing (no Message-Authenticator, no User-Password).
    unverifiable_warning: vip_core::log_limit::OncePerSecond,
    /// Replies that do not fit a packet with the request's Proxy-States.
    unfit_warning: vip_core::log_limit::OncePerSecond,
    /// One limiter for every unknown source: a stranger choosing source addresses must not
    /// choose how many limiters we keep (the line names the address of the packet it shows).
    unknown_client_warning: OncePerSecond,
    /// One limiter per configured client and [`DropCause`]: bounded by the client table.
    drop_warnings: OncePerSecondPerKey,
    /// Accounting counters and active sessions (RFC 2866).
    accounting: Arc<Accounting>,
    /// With `[cluster]`: the response cache shared with the other instances, and how long a
    /// reply stays in it (`response_cache_ttl`).
    shared_replies: Option<(Arc<vip_core::store::SharedStore>, Duration)>,
}

impl Shared {
    /// `Some(suppressed)` when the warning for `client` and `cause` may be printed now.
    fn drop_warning(&self, client: &Client, cause: DropCause) -> Option<u64> {
        self.drop_warnings
            .pass(client.position() * DropCause::COUNT + cause as usize)
    }
}

/// Why a request from a known client was dropped unanswered: each has its own warning line
/// (and limiter), since each has a different fix. The counters are in [`Stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DropCause {
    Malformed,
    UnsupportedCode,
    BadMessageAuthenticator,
    MissingMessageAuthenticator,
    StatusServerWithoutMessageAuthenticator,
    ProxyStateWithoutMessageAuthenticator,
    Undecodable,
    BadAccountingAuthenticator,
}

impl DropCause {
    const COUNT: usize = 8;
}

/// What a listening socket serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Port {
    /// Access-Request and Status-Server (RFC 2865, RFC 5997).
    Auth,
    /// Accounting-Request (RFC 2866).
    Accounting,
}

/// `client NAME (SOURCE-IP)` at the start of a drop warning.
struct ClientAt<'a>(&'a Client, IpAddr);

impl fmt::Display for ClientAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client {} ({})",
            Escaped(&self.0.name),
            self.1.to_canonical()
        )
    }
}

/// Bound RADIUS sockets, ready to run.
pub struct RadiusServer {
    sockets: Vec<(Arc<UdpSocket>, SocketAddr)>,
    accounting_sockets: Vec<(Arc<UdpSocket>, SocketAddr)>,
    shared: Arc<Shared>,
}

impl RadiusServer {
    /// Binds every listen address. Fails (naming the address) if any cannot be bound.
    pub async fn bind(
        settings: RadiusSettings,
        auth: Arc<dyn Authenticate>,
        stats: Arc<Stats>,
    ) -> Result<RadiusServer> {
        let bind_all = |addrs: &[SocketAddr]| -> Result<Vec<(Arc<UdpSocket>, SocketAddr)>> {
            let mut sockets = Vec::with_capacity(addrs.len());
            for addr in addrs {
                let err = |source| Error::Bind {
                    addr: *addr,
                    source,
                };
                let sock = bind_udp(*addr, settings.receive_buffer).map_err(err)?;
                let local = sock.local_addr().map_err(err)?;
                sockets.push((Arc::new(sock), local));
            }
            Ok(sockets)
        };
        let sockets = bind_all(&settings.listen)?;
        let accounting_sockets = bind_all(&settings.accounting_listen)?;
        let accounting = Arc::new(Accounting::new(
            settings.clients.iter().map(|c| c.name.clone()).collect(),
        ));
        let general_permits = u32::try_from(settings.max_in_flight).unwrap_or(u32::MAX / 2);
        let reserved_permits = (general_permits / 4).max(1);
        let drop_warnings = OncePerSecondPerKey::new(settings.clients.len() * DropCause::COUNT);
        let shared = Arc::new(Shared {
            clients: settings.clients,
            dedup: Dedup::new(
                settings.response_cache_size,
                settings.response_cache_ttl,
                IN_PROGRESS_TTL,
            ),
            auth: auth.clone(),
            stats,
            general: Arc::new(Semaphore::new(general_permits as usize)),
            reserved: Arc::new(Semaphore::new(reserved_permits as usize)),
            overload_warning: vip_core::log_limit::OncePerSecond::new(),
            unverifiable_warning: vip_core::log_limit::OncePerSecond::new(),
            unfit_warning: vip_core::log_limit::OncePerSecond::new(),
            unknown_client_warning: OncePerSecond::new(),
            drop_warnings,
            general_permits,
            reserved_permits,
            accounting,
            shared_replies: auth
                .shared_store()
                .map(|s| (s, settings.response_cache_ttl)),
        });
        Ok(RadiusServer {
            sockets,
            accounting_sockets,
            shared,
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(_, a)| *a).collect()
    }

    /// The accounting addresses actually bound (empty: accounting off).
    pub fn accounting_addrs(&self) -> Vec<SocketAddr> {
        self.accounting_sockets.iter().map(|(_, a)| *a).collect()
    }

    /// The accounting counters and sessions, for the metrics.
    pub fn accounting(&self) -> Arc<Accounting> {
        self.shared.accounting.clone()
    }

    /// Serves until `shutdown` turns true, then stops receiving and waits up to `drain` for
    /// in-flight logins to be answered.
    pub async fn run(self, shutdown: watch::Receiver<bool>, drain: Duration) {
        let mut loops = tokio::task::JoinSet::new();
        let all = self.sockets.iter().map(|s| (s, Port::Auth)).chain(
            self.accounting_sockets
                .iter()
                .map(|s| (s, Port::Accounting)),
        );
        for ((sock, local), port) in all {
            match port {
                Port::Auth => info!(addr = %local, "listening"),
                Port::Accounting => info!(addr = %local, "listening (accounting)"),
            }
            loops.spawn(recv_loop(
                self.shared.clone(),
                sock.clone(),
                *local,
                port,
                shutdown.clone(),
            ));
        }
        while loops.join_next().await.is_some() {}
        let in_flight = self.shared.general_permits as usize
            - self.shared.general.available_permits()
            + self.shared.reserved_permits as usize
            - self.shared.reserved.available_permits();
        if in_flight > 0 {
            info!(in_flight, "stopped receiving; waiting for in-flight logins");
        }
        let general = self.shared.general.clone();
        let reserved = self.shared.reserved.clone();
        let (g, r) = (self.shared.general_permits, self.shared.reserved_permits);
        let all_done = async move {
            let a = general.acquire_many_owned(g).await;
            let b = reserved.acquire_many_owned(r).await;
            (a, b)
        };
        if tokio::time::timeout(drain, all_done).await.is_err() {
            warn!(
                timeout = ?drain,
                "in-flight logins did not finish before the shutdown timeout; abandoning them"
            );
        }
    }
}

/// Binds a UDP socket with a large receive buffer, so a burst of requests waits in the kernel
/// instead of being dropped there.
fn bind_udp(addr: SocketAddr, receive_buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = sock.set_recv_buffer_size(receive_buffer) {
        warn!(%addr, error = %e, "cannot set the UDP receive buffer");
    }
    // Linux reports twice the usable size it granted; less than asked means rmem_max capped it.
    let granted = sock.recv_buffer_size().unwrap_or(0) / 2;
    if granted < receive_buffer {
        warn!(
            %addr,
            asked = receive_buffer,
            granted,
            "the kernel capped the UDP receive buffer (raise net.core.rmem_max): bursts may be dropped"
        );
    }
    sock.bind(&addr.into())?;
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(sock.into())
}

async fn recv_loop(
    shared: Arc<Shared>,
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    port: Port,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            r = sock.readable() => {
                if let Err(e) = r {
                    debug!(error = %e, addr = %local, "recv error");
                    continue;
                }
                // Everything that queued while we were away, up to a batch, before looking
                // at the shutdown signal again.
                for _ in 0..RECV_BATCH {
                    match sock.try_recv_from(&mut buf) {
                        Ok((n, peer)) => match port {
                            Port::Auth => handle_datagram(&shared, &sock, local, &buf[..n], peer),
                            Port::Accounting => {
                                handle_accounting(&shared, &sock, local, &buf[..n], peer)
                            }
                        },
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            // ICMP errors surface here on some systems; never fatal for a UDP
                            // server.
                            debug!(error = %e, addr = %local, "recv error");
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// The checks both ports make first: a known client, then sound lengths. `None` when the
/// datagram was dropped (counted and warned about here).
fn admit<'a>(
    shared: &'a Shared,
    datagram: &'a [u8],
    peer: SocketAddr,
) -> Option<(&'a Arc<Client>, RawInfo, &'a [u8])> {
    let stats = &shared.stats;
    Stats::inc(&stats.received);
    // Every drop is a warning (rate-limited): a NAS whose requests vanish only says
    // "no reply", so the line must name the likely reason and the fix. No line quotes the
    // packet's bytes.
    let Some(client) = shared.clients.lookup(peer.ip()) else {
        Stats::inc(&stats.dropped_unknown_client);
        if let Some(suppressed) = shared.unknown_client_warning.pass() {
            let ip = peer.ip().to_canonical();
            warn!(
                suppressed,
                "unknown client {ip}: add it to [[radius.clients]] (address = \"{ip}\")"
            );
        }
        return None;
    };
    match pkt::check(datagram) {
        Ok((info, packet)) => Some((client, info, packet)),
        Err(why) => {
            Stats::inc(&stats.dropped_malformed);
            if let Some(suppressed) = shared.drop_warning(client, DropCause::Malformed) {
                warn!(
                    suppressed,
                    "{}: malformed request dropped: {}; check what sends to this port from \
                     that address",
                    ClientAt(client, peer.ip()),
                    why.describe()
                );
            }
            None
        }
    }
}

/// An Accounting-Request (RFC 2866): verified, recorded, answered at once. Synchronous.
fn handle_accounting(
    shared: &Arc<Shared>,
    sock: &Arc<UdpSocket>,
    local: SocketAddr,
    datagram: &[u8],
    peer: SocketAddr,
) {
    let stats = &shared.stats;
    let Some((client, info, packet)) = admit(shared, datagram, peer) else {
        return;
    };
    let at = ClientAt(client, peer.ip());
    if info.code != accounting::CODE_ACCOUNTING_REQUEST {
        Stats::inc(&stats.dropped_unsupported_code);
        if let Some(suppressed) = shared.drop_warning(client, DropCause::UnsupportedCode) {
            warn!(
                suppressed,
                "{at}: request with code {} dropped: this is the accounting port (it serves \
                 Accounting-Request only); check which port the NAS sends it to",
                info.code
            );
        }
        return;
    }
    // RFC 2866 §3: the Request Authenticator proves the secret; nothing is answered without it.
    if !accounting::verify_request_authenticator(packet, client.secret()) {
        Stats::inc(&stats.dropped_bad_accounting_authenticator);
        if let Some(suppressed) = shared.drop_warning(client, DropCause::BadAccountingAuthenticator)
        {
            warn!(
                suppressed,
                "{at}: Accounting-Request authenticator does not verify: wrong shared secret? \
                 Set the same secret at the NAS and in this client's [[radius.clients]] entry"
            );
        }
        return;
    }
    // Not required on accounting, but one that is present must verify (RFC 3579 §3.2).
    if let Some(off) = info.message_authenticator {
        if !accounting::verify_message_authenticator(&client.mac, packet, off) {
            Stats::inc(&stats.dropped_bad_message_authenticator);
            if let Some(suppressed) =
                shared.drop_warning(client, DropCause::BadMessageAuthenticator)
            {
                warn!(
                    suppressed,
                    "{at}: Message-Authenticator does not verify: wrong shared secret? \
                     Set the same secret at the NAS and in this client's [[radius.clients]] entry"
                );
            }
            return;
        }
    }
    // RFC 5080 §2.2.2: a retransmit gets the same answer and is not recorded twice.
    let key = Key {
        client: peer,
        local,
        identifier: info.identifier,
    };
    match shared.dedup.begin(key, &info.authenticator) {
        Seen::New => {}
        Seen::InProgress => {
            Stats::inc(&stats.dropped_duplicate_in_progress);
            return;
        }
        Seen::Answered(reply) => {
            Stats::inc(&stats.duplicates_answered_from_cache);
            debug!(%peer, client = %client.name, id = info.identifier,
                "duplicate of an answered Accounting-Request: cached reply resent");
            send_now(stats, sock, &reply, peer);
            return;
        }
    }
    let proxies = if info.has_proxy_state {
        pkt::proxy_states(packet)
    } else {
        Vec::new()
    };
    let Some(reply) = accounting::build_response(
        info.identifier,
        &info.authenticator,
        &proxies,
        info.message_authenticator.is_some(),
        &client.mac,
        client.secret(),
    ) else {
        shared.dedup.abandon(key, &info.authenticator);
        Stats::inc(&stats.send_errors);
        return;
    };
    shared
        .accounting
        .record(client.position(), &Event::parse(packet));
    let reply = Bytes::from(reply);
    shared.dedup.finish(key, &info.authenticator, reply.clone());
    Stats::inc(&stats.accounting_response);
    send_now(stats, sock, &reply, peer);
}

/// Everything done before a login task is spawned. Synchronous: cheap checks only.
fn handle_datagram(
    shared: &Arc<Shared>,
    sock: &Arc<UdpSocket>,
    local: SocketAddr,
    datagram: &[u8],
    peer: SocketAddr,
) {
    let stats = &shared.stats;
    let Some((client, info, packet)) = admit(shared, datagram, peer) else {
        return;
    };
    let at = ClientAt(client, peer.ip());
    if let Some(what) = pkt::unsupported_code(info.code) {
        Stats::inc(&stats.dropped_unsupported_code);
        if let Some(suppressed) = shared.drop_warning(client, DropCause::UnsupportedCode) {
            warn!(
                suppressed,
                "{at}: request with code {} dropped: {what}", info.code
            );
        }
        return;
    }
    match info.message_authenticator {
        Some(off) if !pkt::verify_message_authenticator(&client.mac, packet, off) => {
            Stats::inc(&stats.dropped_bad_message_authenticator);
            if let Some(suppressed) =
                shared.drop_warning(client, DropCause::BadMessageAuthenticator)
            {
                warn!(
                    suppressed,
                    "{at}: Message-Authenticator does not verify: wrong shared secret? \
                     Set the same secret at the NAS and in this client's [[radius.clients]] entry"
                );
            }
            return;
        }
        Some(_) => {}
        None if info.code == pkt::CODE_STATUS_SERVER => {
            Stats::inc(&stats.dropped_missing_message_authenticator);
            if let Some(suppressed) =
                shared.drop_warning(client, DropCause::StatusServerWithoutMessageAuthenticator)
            {
                warn!(
                    suppressed,
                    "{at}: Status-Server without Message-Authenticator dropped: RFC 5997 requires \
                     it, whatever require_message_authenticator says; turn Message-Authenticator \
                     on for the NAS's server checks"
                );
            }
            return;
        }
        None if client.require_message_authenticator => {
            Stats::inc(&stats.dropped_missing_message_authenticator);
            if let Some(suppressed) =
                shared.drop_warning(client, DropCause::MissingMessageAuthenticator)
            {
                warn!(
                    suppressed,
                    "{at}: request without Message-Authenticator dropped: turn \
                     Message-Authenticator on at the NAS; a NAS or proxy that cannot send it \
                     (radsecproxy 1.9 forwarding a NAS that sends none, ocserv/radcli, OpenVPN \
                     radiusplugin) needs require_message_authenticator = false for this client"
                );
            }
            return;
        }
        None if info.has_proxy_state => {
            Stats::inc(&stats.dropped_proxy_state_without_message_authenticator);
            if let Some(suppressed) =
                shared.drop_warning(client, DropCause::ProxyStateWithoutMessageAuthenticator)
            {
                warn!(
                    suppressed,
                    "{at}: request with Proxy-State but without Message-Authenticator dropped: \
                     a proxied request must be signed even when require_message_authenticator \
                     = false; turn Message-Authenticator on at the proxy"
                );
            }
            return;
        }
        None => {}
    }

    if info.code == pkt::CODE_STATUS_SERVER {
        // RFC 5997: answered at once, never waiting on VIP, and never cached.
        Stats::inc(&stats.status_server);
        match build_reply(client, &info, packet, pkt::CODE_ACCESS_ACCEPT, &[]) {
            Some(reply) => send_now(stats, sock, &reply, peer),
            None => Stats::inc(&stats.send_errors),
        }
        return;
    }

    let key = Key {
        client: peer,
        local,
        identifier: info.identifier,
    };
    match shared.dedup.begin(key, &info.authenticator) {
        Seen::New => {}
        Seen::InProgress => {
            Stats::inc(&stats.dropped_duplicate_in_progress);
            debug!(%peer, client = %client.name, id = info.identifier,
                "duplicate of a request in progress: dropped");
            return;
        }
        Seen::Answered(reply) => {
            Stats::inc(&stats.duplicates_answered_from_cache);
            debug!(%peer, client = %client.name, id = info.identifier,
                "duplicate of an answered request: cached reply resent");
            send_now(stats, sock, &reply, peer);
            return;
        }
    }

    let permit = match shared.general.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            // Full. Continuing logins (a live State) may use the reserved share.
            let live = info
                .state(packet)
                .is_some_and(|s| shared.auth.state_is_live(s));
            match live.then(|| shared.reserved.clone().try_acquire_owned()) {
                Some(Ok(p)) => {
                    Stats::inc(&stats.admitted_reserved);
                    p
                }
                _ => {
                    Stats::inc(&stats.dropped_overload);
                    shared.dedup.abandon(key, &info.authenticator);
                    if shared.overload_warning.allow() {
                        warn!(%peer, client = %client.name,
                            "dropping requests: too many in flight (radius.max_in_flight); counted in vip_bridge_radius_dropped_total");
                    }
                    return;
                }
            }
        }
    };

    let guard = InFlight {
        shared: shared.clone(),
        key,
        authenticator: info.authenticator,
        answered: false,
        _permit: permit,
    };
    let span = tracing::info_span!(
        "radius",
        client = %client.name,
        id = info.identifier,
        user = tracing::field::Empty,
    );
    let task = process(
        guard,
        client.clone(),
        sock.clone(),
        peer,
        info,
        packet.to_vec(),
    );
    tokio::spawn(task.instrument(span));
}

/// Holds a concurrency permit and the duplicate-cache entry of one request. If the request
/// ends without an answer (error, panic, shutdown) the entry is removed so the NAS's next
/// retransmit is processed instead of being dropped as "in progress" forever.
struct InFlight {
    shared: Arc<Shared>,
    key: Key,
    authenticator: [u8; 16],
    answered: bool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.dedup.abandon(self.key, &self.authenticator);
        }
    }
}

fn send_now(stats: &Stats, sock: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(e) = sock.try_send_to(reply, peer) {
        Stats::inc(&stats.send_errors);
        debug!(%peer, error = %e, "reply not sent");
    }
}

/// What the request says, decoded with the `radius` crate.
#[doc(hidden)] // pub for fuzzing
pub struct Decoded {
    user: Option<String>,
    password: Option<Secret>,
    /// The User-Password attribute had a value: hidden with the shared secret, so it says the
    /// sender knows it. An empty attribute (radcli's Enter) or none proves nothing.
    password_hidden: bool,
    has_chap: bool,
    state: Option<Vec<u8>>,
    nas_ip: Option<IpAddr>,
    nas_identifier: Option<String>,
    calling_station: Option<String>,
    /// NAS-Port, NAS-Port-Id, Acct-Session-Id: what tells one login session from another.
    nas_port: Option<u32>,
    nas_port_id: Option<String>,
    acct_session_id: Option<String>,
}

impl Decoded {
    /// The login session at the NAS, when the NAS says which one it is: the source, the
    /// NAS-Identifier and whatever of NAS-Port / NAS-Port-Id / Calling-Station-Id /
    /// Acct-Session-Id it sends. `None` (no session attribute at all) joins nothing.
    fn session(&self, source: IpAddr) -> Option<String> {
        if self.nas_port.is_none()
            && self.nas_port_id.is_none()
            && self.calling_station.is_none()
            && self.acct_session_id.is_none()
        {
            return None;
        }
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        Some(format!(
            "{source}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            opt(&self.nas_identifier),
            self.nas_port.map(|p| p.to_string()).unwrap_or_default(),
            opt(&self.nas_port_id),
            opt(&self.calling_station),
            opt(&self.acct_session_id),
        ))
    }
}

#[doc(hidden)] // pub for fuzzing
pub enum DecodeError {
    /// The packet cannot be read (should not happen after the raw checks).
    Malformed,
    /// Readable but not usable: answered with a Reject carrying this message.
    BadInput(&'static str),
}

#[doc(hidden)] // pub for fuzzing
pub fn decode(client: &Client, info: &RawInfo, packet: &[u8]) -> Result<Decoded, DecodeError> {
    // The crate stores the secret it is given; give it none. User-Password is decoded here,
    // from the raw bytes, so neither the secret nor the password is copied into the crate's
    // (unzeroized) buffers.
    let p = Packet::decode(packet, &[]).map_err(|_| DecodeError::Malformed)?;
    let user = match rfc2865::lookup_user_name(&p) {
        None => None,
        Some(Ok(u)) => Some(u),
        Some(Err(_)) => return Err(DecodeError::BadInput("The user name is not valid text.")),
    };
    let hidden = pkt::attributes(packet)
        .map_err(|_| DecodeError::Malformed)?
        .into_iter()
        .find(|(_, t, _)| *t == pkt::ATTR_USER_PASSWORD)
        .map(|(_, _, v)| v);
    let password_hidden = hidden.is_some_and(|h| !h.is_empty());
    let password = match hidden {
        None => None,
        Some(hidden) => {
            let plain = pkt::decode_user_password(hidden, client.secret(), &info.authenticator)
                .map_err(|_| DecodeError::Malformed)?;
            match std::str::from_utf8(&plain) {
                Ok(s) => Some(Secret::new(s)),
                Err(_) => return Err(DecodeError::BadInput("The password is not valid text.")),
            }
        }
    };
    let nas_ip = match rfc2865::lookup_nas_ip_address(&p) {
        Some(Ok(v4)) => Some(IpAddr::V4(v4)),
        _ => match rfc3162::lookup_nas_ipv6_address(&p) {
            Some(Ok(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        },
    };
    Ok(Decoded {
        user,
        password,
        password_hidden,
        has_chap: p.lookup(rfc2865::CHAP_PASSWORD_TYPE).is_some(),
        state: rfc2865::lookup_state(&p),
        nas_ip,
        nas_identifier: rfc2865::lookup_nas_identifier(&p).and_then(|r| r.ok()),
        calling_station: rfc2865::lookup_calling_station_id(&p).and_then(|r| r.ok()),
        nas_port: rfc2865::lookup_nas_port(&p).and_then(|r| r.ok()),
        nas_port_id: rfc2869::lookup_nas_port_id(&p).and_then(|r| r.ok()),
        acct_session_id: rfc2866::lookup_acct_session_id(&p).and_then(|r| r.ok()),
    })
}

fn local_reject(message: &str) -> Outcome {
    Outcome::Reject(Reject {
        reason: RejectReason::BadInput,
        message: message.into(),
    })
}

async fn process(
    mut guard: InFlight,
    client: Arc<Client>,
    sock: Arc<UdpSocket>,
    peer: SocketAddr,
    info: RawInfo,
    packet: Vec<u8>,
) {
    let stats = guard.shared.stats.clone();
    // A retransmit another instance answered (the NAS failed over after the reply was lost):
    // the same reply, not a second decision (a code is good once).
    let shared_id = guard
        .shared
        .shared_replies
        .as_ref()
        .map(|(store, ttl)| (store.clone(), *ttl, reply_id(&client, &info)));
    if let Some((store, _, id)) = &shared_id {
        if let Some(reply) = store.reply(id).await {
            Stats::inc(&stats.duplicates_answered_from_cache);
            debug!(%peer, client = %client.name, id = info.identifier,
                "retransmit answered by another instance: its reply resent");
            let reply = Bytes::from(reply);
            guard
                .shared
                .dedup
                .finish(guard.key, &guard.authenticator, reply.clone());
            guard.answered = true;
            send_now(&stats, &sock, &reply, peer);
            return;
        }
    }
    let outcome = match decode(&client, &info, &packet) {
        Err(DecodeError::Malformed) => {
            Stats::inc(&stats.dropped_malformed);
            if let Some(suppressed) = guard.shared.drop_warning(&client, DropCause::Undecodable) {
                warn!(
                    suppressed,
                    "{}: request dropped: its attributes cannot be decoded; check what \
                     sends to this port from that address",
                    ClientAt(&client, peer.ip())
                );
            }
            return;
        }
        // A password that is not text is answered with a Reject and no guess: garbage after
        // decoding may mean a wrong secret, or a NAS sending something other than the code.
        Err(DecodeError::BadInput(m)) => local_reject(m),
        Ok(mut d) => match d.user.take() {
            None => local_reject("A user name is required."),
            Some(user) => {
                tracing::Span::current().record("user", tracing::field::display(Escaped(&user)));
                if d.password.is_none() && d.has_chap {
                    local_reject("CHAP cannot carry a security code; configure PAP.")
                } else if !d.password_hidden
                    && info.message_authenticator.is_none()
                    && d.state.is_none()
                {
                    // Nothing in this request proves the shared secret (a client allowed to
                    // omit Message-Authenticator, and no User-Password value): anyone could
                    // have sent it, so it starts nothing (no push, no VIP call). A request
                    // with a State continues a login whose first round was proven: the engine
                    // opens the sealed, single-use State (bound to this user and client)
                    // before anything else, so an empty answer there ("press Enter") works.
                    Stats::inc(&stats.unverifiable);
                    if guard.shared.unverifiable_warning.allow() {
                        warn!(%peer, client = %client.name, "refused a request with neither Message-Authenticator nor a User-Password value (nor a State): nothing proves it came from the client (at most one such line per second)");
                    }
                    local_reject("A password is required.")
                } else {
                    let session = d.session(peer.ip());
                    let req = AuthRequest {
                        user,
                        secret: d.password,
                        state: d.state,
                        client: ClientInfo {
                            front_door: FrontDoor::Radius,
                            name: client.name.clone(),
                            peer: Some(d.nas_ip.unwrap_or(peer.ip())),
                            nas_identifier: d.nas_identifier,
                            remote: d.calling_station,
                            tty: None,
                            session,
                        },
                        policy: client.policy.clone(),
                        stack_password_checked: false,
                    };
                    guard.shared.auth.authenticate(req).await
                }
            }
        },
    };

    let prompt_value;
    let (code, message, tail): (u8, &str, Vec<ReplyAttr<'_>>) = match &outcome {
        Outcome::Accept(a) => {
            Stats::inc(&stats.access_accept);
            debug!(
                outcome = "accept",
                factor = a.factor.as_str(),
                failed_open = a.failed_open,
                reply_attributes = a.reply_attributes.len(),
                "answered"
            );
            // The upstream RADIUS server's attributes (first factor), as it sent them, so the
            // VPN's group policies keep working.
            let passed = a
                .reply_attributes
                .iter()
                .map(|r| (r.kind, &r.value[..]))
                .collect();
            (pkt::CODE_ACCESS_ACCEPT, "", passed)
        }
        Outcome::Reject(r) => {
            Stats::inc(&stats.access_reject);
            debug!(outcome = "reject", reason = r.reason.as_str(), "answered");
            (pkt::CODE_ACCESS_REJECT, r.message.as_str(), Vec::new())
        }
        Outcome::Challenge(c) => {
            Stats::inc(&stats.access_challenge);
            debug!(outcome = "challenge", echo = c.echo, "answered");
            prompt_value = u32::from(c.echo).to_be_bytes();
            (
                pkt::CODE_ACCESS_CHALLENGE,
                c.prompt.as_str(),
                vec![
                    (pkt::ATTR_STATE, &c.state[..]),
                    (pkt::ATTR_PROMPT, &prompt_value[..]),
                ],
            )
        }
    };
    let Some(reply) = answer(&guard.shared, &client, &info, &packet, code, message, &tail) else {
        tracing::error!(code, "reply could not be built; nothing sent");
        Stats::inc(&stats.send_errors);
        return;
    };
    let reply = Bytes::from(reply);
    guard
        .shared
        .dedup
        .finish(guard.key, &guard.authenticator, reply.clone());
    guard.answered = true;
    if let Err(e) = sock.send_to(&reply, peer).await {
        Stats::inc(&stats.send_errors);
        warn!(%peer, error = %e, "reply not sent");
    }
    if let Some((store, ttl, id)) = shared_id {
        store.remember_reply(&id, &reply, ttl).await;
    }
}

/// What names a request across instances: the client, the Identifier and the Request
/// Authenticator (16 random octets per request, RFC 2865 §3).
fn reply_id(client: &Client, info: &RawInfo) -> Vec<u8> {
    let mut id = Vec::with_capacity(client.name.len() + 18);
    id.extend_from_slice(client.name.as_bytes());
    id.push(0);
    id.push(info.identifier);
    id.extend_from_slice(&info.authenticator);
    id
}

/// Why the intended reply could not be sent as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unfit {
    /// The engine's State is empty or longer than one attribute.
    BadState,
    /// Message-Authenticator, State, Prompt and the Proxy-States alone exceed 4096 octets.
    TooLong,
}

impl Unfit {
    /// The log's words for it.
    fn as_str(self) -> &'static str {
        match self {
            Unfit::BadState => "the State is empty or longer than one attribute",
            Unfit::TooLong => "the fixed attributes and Proxy-States exceed 4096 octets",
        }
    }
}

/// The reply to send (and to cache): the intended one when it fits, with the Reply-Message
/// text shortened to the room the other attributes leave; else an Access-Reject without
/// Reply-Message, which always fits (it is never longer than the request: a request with
/// Proxy-State carries a Message-Authenticator too). `None` only if even that fails.
fn answer(
    shared: &Shared,
    client: &Client,
    info: &RawInfo,
    packet: &[u8],
    code: u8,
    message: &str,
    tail: &[ReplyAttr<'_>],
) -> Option<Vec<u8>> {
    let why = match fitted_reply(client, info, packet, code, message, tail) {
        Ok(reply) => return Some(reply),
        Err(why) => why,
    };
    if let Some(suppressed) = shared.unfit_warning.pass() {
        warn!(
            client = %client.name,
            code,
            problem = why.as_str(),
            proxy_states = pkt::proxy_states(packet).len(),
            suppressed,
            "the reply does not fit one RADIUS packet (4096 octets) with the request's \
             Proxy-States; answered with an Access-Reject without Reply-Message \
             ({suppressed} more suppressed)"
        );
    }
    build_reply(client, info, packet, pkt::CODE_ACCESS_REJECT, &[])
}

/// Message-Authenticator, as much of `message` as fits (Reply-Messages), `tail` (State,
/// Prompt), then every Proxy-State of the request in order, within 4096 octets.
fn fitted_reply(
    client: &Client,
    info: &RawInfo,
    packet: &[u8],
    code: u8,
    message: &str,
    tail: &[ReplyAttr<'_>],
) -> Result<Vec<u8>, Unfit> {
    if tail
        .iter()
        .any(|(t, v)| *t == pkt::ATTR_STATE && (v.is_empty() || v.len() > pkt::MAX_ATTR_VALUE))
    {
        return Err(Unfit::BadState);
    }
    let proxies: Vec<ReplyAttr<'_>> = if info.has_proxy_state {
        pkt::proxy_states(packet)
            .into_iter()
            .map(|v| (pkt::ATTR_PROXY_STATE, v))
            .collect()
    } else {
        Vec::new()
    };
    let fixed =
        pkt::HEADER_LEN + pkt::MA_ATTR_LEN + pkt::attrs_len(tail) + pkt::attrs_len(&proxies);
    let room = pkt::MAX_PACKET_LEN
        .checked_sub(fixed)
        .ok_or(Unfit::TooLong)?;
    let text = clip(message);
    let mut attrs: Vec<ReplyAttr<'_>> = pkt::split_reply_message_within(text, room)
        .into_iter()
        .map(|v| (pkt::ATTR_REPLY_MESSAGE, v))
        .collect();
    let kept: usize = attrs.iter().map(|(_, v)| v.len()).sum();
    if kept < text.len() {
        debug!(
            kept,
            of = text.len(),
            "Reply-Message shortened to fit the packet with the request's Proxy-States"
        );
    }
    attrs.extend_from_slice(tail);
    attrs.extend(proxies);
    pkt::build_response(
        code,
        info.identifier,
        &info.authenticator,
        &attrs,
        &client.mac,
        client.secret(),
    )
    .map_err(|_| Unfit::TooLong)
}

/// Caps user-facing text at [`MAX_MESSAGE`] octets, on a character boundary.
fn clip(text: &str) -> &str {
    if text.len() <= MAX_MESSAGE {
        return text;
    }
    let mut cut = MAX_MESSAGE;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Builds a reply: Message-Authenticator first, then `attrs`, then every Proxy-State of the
/// request in order.
#[doc(hidden)] // pub for fuzzing
pub fn build_reply(
    client: &Client,
    info: &RawInfo,
    packet: &[u8],
    code: u8,
    attrs: &[ReplyAttr<'_>],
) -> Option<Vec<u8>> {
    let mut all: Vec<ReplyAttr<'_>> = attrs.to_vec();
    if info.has_proxy_state {
        all.extend(
            pkt::proxy_states(packet)
                .into_iter()
                .map(|v| (pkt::ATTR_PROXY_STATE, v)),
        );
    }
    pkt::build_response(
        code,
        info.identifier,
        &info.authenticator,
        &all,
        &client.mac,
        client.secret(),
    )
    .ok()
}

#[cfg(test)]
mod tests;
