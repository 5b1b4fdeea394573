//! Kept-alive HTTP/1.1 connections to an MFA service's hosts (hyper's connection API over
//! tokio-rustls).
//!
//! Why not a general HTTP client: every login is one request to one of a few fixed URLs, so
//! per-request URL re-parsing, redirect and proxy layers are pure cost (they were a tenth of the
//! bridge's CPU per login). And a general client opens a new connection for every request that
//! finds none idle, so a cold start under load began with one TLS handshake per waiting login
//! (up to `<section>.max_in_flight` at once), a stall every login queued behind. Here at most
//! [`MAX_CONNECTING`] connections are being opened at a time; other requests wait for the first
//! connection to come back or open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use url::Url;

/// Connections being opened at once, per process. A handshake costs a few hundred µs of CPU on
/// each side; this many keep the cores for the logins while a pool fills up.
pub(crate) const MAX_CONNECTING: usize = 4;

/// How long an idle connection is kept (VIP closes idle connections after about a minute).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// TCP keep-alive on every connection, so a silently dropped one is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

pub(crate) type Sender = SendRequest<Full<Bytes>>;

/// A connection taken from the pool for one request; give it back with [`Pool::put`].
pub(crate) struct Conn {
    pub(crate) sender: Sender,
    pub(crate) key: HostKey,
    /// It served a request before: a failure to send on it may be the server having closed
    /// it while idle, and the request is retried once on a new connection.
    pub(crate) reused: bool,
}

/// Which host and port a connection goes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HostKey {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl HostKey {
    pub(crate) fn of(url: &Url) -> Option<HostKey> {
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Some(HostKey {
            host,
            port: url.port_or_known_default()?,
        })
    }
}

/// Why a connection could not be opened.
pub(crate) enum ConnectError {
    /// TCP connect or the TLS handshake failed (the error keeps rustls's in its chain).
    Io(std::io::Error),
    /// The HTTP/1.1 handshake failed.
    Http(hyper::Error),
    /// The URL has no host (checked at load; kept so nothing panics).
    NoHost,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

pub(crate) struct Pool {
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<HashMap<HostKey, Vec<Idle>>>,
    max_idle_per_host: usize,
    connecting: Semaphore,
    /// Signalled when a connection is given back or a new one is ready.
    returned: Notify,
}

impl Pool {
    pub(crate) fn new(tls: Arc<rustls::ClientConfig>, max_idle_per_host: usize) -> Pool {
        Pool {
            tls: tokio_rustls::TlsConnector::from(tls),
            idle: Mutex::new(HashMap::new()),
            max_idle_per_host,
            connecting: Semaphore::new(MAX_CONNECTING),
            returned: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HostKey, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection to `key` that is still open, if any.
    fn take_idle(&self, key: &HostKey) -> Option<Sender> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        while let Some(c) = list.pop() {
            if !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT {
                return Some(c.sender);
            }
        }
        None
    }

    /// An open connection to `url`'s host: an idle one, else a new one once fewer than
    /// [`MAX_CONNECTING`] are being opened, else whichever comes first.
    pub(crate) async fn get(&self, url: &Url) -> Result<Conn, ConnectError> {
        let key = HostKey::of(url).ok_or(ConnectError::NoHost)?;
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(mut sender) = self.take_idle(&key) {
                // An HTTP/1.1 connection is ready again once the previous answer was read;
                // an error here means it closed meanwhile: take another.
                if sender.ready().await.is_ok() {
                    return Ok(Conn {
                        sender,
                        key,
                        reused: true,
                    });
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = &mut returned => continue,
                permit = self.connecting.acquire() => {
                    let Ok(_permit) = permit else { return Err(ConnectError::NoHost) };
                    // Someone may have given one back while we waited for the permit.
                    if let Some(mut sender) = self.take_idle(&key) {
                        if sender.ready().await.is_ok() {
                            return Ok(Conn { sender, key, reused: true });
                        }
                    }
                    let sender = self.connect(&key).await?;
                    return Ok(Conn { sender, key, reused: false });
                }
            }
        }
    }

    /// A new connection to `key` (not pooled until given back).
    pub(crate) async fn connect(&self, key: &HostKey) -> Result<Sender, ConnectError> {
        let name = ServerName::try_from(key.host.clone()).map_err(|_| ConnectError::NoHost)?;
        let tcp = tokio::net::TcpStream::connect((key.host.as_str(), key.port))
            .await
            .map_err(ConnectError::Io)?;
        // Requests are written in one go and answers awaited: Nagle only adds delay.
        tcp.set_nodelay(true).map_err(ConnectError::Io)?;
        socket2::SockRef::from(&tcp)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE))
            .map_err(ConnectError::Io)?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(ConnectError::Io)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(ConnectError::Http)?;
        // The connection's I/O runs on its own task and ends when the server closes it or the
        // last sender is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Gives a connection back after its answer was read in full.
    pub(crate) fn put(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        {
            let mut idle = self.lock();
            let list = idle.entry(conn.key).or_default();
            if list.len() >= self.max_idle_per_host {
                return;
            }
            list.push(Idle {
                sender: conn.sender,
                since: Instant::now(),
            });
        }
        self.returned.notify_one();
    }
}
