//! HTTPS to an MFA service: HTTP/1.1 over rustls (TLS 1.2+, client certificate) on kept-alive
//! connections ([`super::connections`]), per-call deadline, bounded in-flight calls. Any HTTP
//! status is an answer here; the service client classes it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use tokio::sync::Semaphore;
use url::Url;

use super::connections::{Conn, ConnectError, Pool};
use super::tls::{explain_tls, find_rustls, tls_config, TlsFiles, TlsSetup};
use super::{Error, Service};
use crate::metrics::Metrics;

/// Larger answers are not an MFA service's answers (a VIP getUserInfo with many credentials is
/// a few KiB).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// How long the trust probe waits for the service's alert after its handshake. A server that
/// accepted our certificate says nothing and waits for a request; one that refused it sends
/// its alert within a round trip.
const PROBE_ALERT_WAIT: Duration = Duration::from_millis(1500);

/// One request: a GET, or a POST of a body with its content type (and an empty SOAPAction for
/// SOAP 1.1).
pub(crate) enum Outgoing {
    Get,
    Post {
        body: Bytes,
        content_type: &'static str,
        soap_action: bool,
    },
}

impl Outgoing {
    /// A SOAP 1.1 body (`text/xml`, `SOAPAction: ""`).
    pub(crate) fn soap(body: String) -> Outgoing {
        Outgoing::Post {
            body: Bytes::from(body),
            content_type: "text/xml; charset=utf-8",
            soap_action: true,
        }
    }
}

/// An answer read in full.
pub(crate) struct Reply {
    pub(crate) status: hyper::StatusCode,
    pub(crate) body: Vec<u8>,
}

/// The bounds of a transport: `<section>.timeout` and `<section>.max_in_flight`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) timeout: Duration,
    pub(crate) max_in_flight: usize,
}

pub(crate) struct Transport {
    service: &'static Service,
    pool: Pool,
    /// The same TLS setup as `pool`'s, for the trust probe (see [`Transport::probe_trust`]).
    tls: Arc<rustls::ClientConfig>,
    permits: Semaphore,
    /// One slot for the health probe, outside `permits`.
    reserved: Semaphore,
    max_in_flight: usize,
    timeout: Duration,
    metrics: OnceLock<Arc<Metrics>>,
    /// What a TLS failure is explained against (is a client certificate configured, which CA
    /// bundle trusts the service).
    tls_setup: TlsSetup,
}

impl Transport {
    pub(crate) fn new(
        service: &'static Service,
        files: &TlsFiles<'_>,
        limits: Limits,
    ) -> Result<Transport, Error> {
        let s = service.section;
        if limits.max_in_flight == 0 {
            return Err(Error::config(
                format!("{s}.max_in_flight must be at least 1"),
                None,
            ));
        }
        if limits.timeout.is_zero() {
            return Err(Error::config(
                format!("{s}.timeout must be more than zero"),
                None,
            ));
        }
        let tls = Arc::new(tls_config(service, files)?);
        Ok(Transport {
            service,
            // HTTP/1.1; keep-alive connections are pooled and reused.
            pool: Pool::new(tls.clone(), limits.max_in_flight),
            tls,
            permits: Semaphore::new(limits.max_in_flight),
            reserved: Semaphore::new(1),
            max_in_flight: limits.max_in_flight,
            timeout: limits.timeout,
            metrics: OnceLock::new(),
            tls_setup: TlsSetup::of(files),
        })
    }

    pub(crate) fn set_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Sends one request; returns the answer read in full, whatever its HTTP status.
    ///
    /// Two bounds, each `<section>.timeout`: the wait for a free in-flight slot, whose expiry
    /// is [`Error::Overloaded`] (nothing was sent: our capacity, not the service's), and then
    /// the exchange itself, whose expiry is an outage. Time spent queued here is never read as
    /// the service being slow. `reserved` calls (the health probe) use a slot of their own, so
    /// a flood of logins cannot make the service look down.
    pub(crate) async fn send(
        &self,
        url: &Url,
        req: Outgoing,
        reserved: bool,
    ) -> Result<Reply, Error> {
        let started = tokio::time::Instant::now();
        let slots = if reserved {
            &self.reserved
        } else {
            &self.permits
        };
        let Ok(permit) = tokio::time::timeout(self.timeout, slots.acquire()).await else {
            return Err(Error::Overloaded {
                url: url.to_string(),
                waited_ms: started.elapsed().as_millis() as u64,
                limit: self.max_in_flight,
            });
        };
        let _permit = permit.map_err(|_| Error::Unreachable {
            url: url.to_string(),
            cause: format!("the {} client is shutting down", self.service.name),
        })?;
        let _in_flight = self
            .metrics
            .get()
            .map(|m| m.call_in_flight(self.service.section));
        let deadline = tokio::time::Instant::now() + self.timeout;
        let result = match tokio::time::timeout_at(deadline, self.exchange(url, &req)).await {
            Ok(r) => r,
            Err(_) => {
                return Err(Error::Unreachable {
                    url: url.to_string(),
                    cause: format!(
                        "no answer within {}",
                        humantime::format_duration(self.timeout)
                    ),
                })
            }
        };
        match result {
            Err(Exchange::Broken(cause)) => {
                // A connection that broke may be the service refusing our certificate: with
                // TLS 1.3 the client finishes its handshake before the server checks the
                // certificate, and the server's alert can be lost when our request crosses it.
                // Ask once more, without sending anything, so a refusal is never taken for an
                // outage.
                let probe = tokio::time::timeout_at(deadline, self.probe_trust(url)).await;
                match probe {
                    Ok(Some(refused)) => Err(Error::TlsRefused {
                        url: url.to_string(),
                        cause: refused,
                    }),
                    _ => Err(Error::Unreachable {
                        url: url.to_string(),
                        cause,
                    }),
                }
            }
            Err(Exchange::Failed(e)) => Err(e),
            Ok(reply) => Ok(reply),
        }
    }

    async fn exchange(&self, url: &Url, req: &Outgoing) -> Result<Reply, Exchange> {
        let mut conn = self
            .pool
            .get(url)
            .await
            .map_err(|e| self.connect_failed(url, e))?;
        let resp = match conn.sender.try_send_request(request(url, req)?).await {
            Ok(resp) => resp,
            // Not sent at all on a connection that served before: the server closed it while
            // it was idle. Once more on a new one (a request that was sent is never repeated:
            // the service would see the code twice).
            Err(e) if conn.reused && e.message().is_some() => {
                let sender = self
                    .pool
                    .connect(&conn.key)
                    .await
                    .map_err(|e| self.connect_failed(url, e))?;
                conn = Conn {
                    sender,
                    key: conn.key,
                    reused: false,
                };
                conn.sender
                    .send_request(request(url, req)?)
                    .await
                    .map_err(|e| self.broken(url, &e, ""))?
            }
            Err(e) => return Err(self.broken(url, e.error(), "")),
        };
        let (head, mut incoming) = resp.into_parts();
        let status = head.status;
        let mut buf = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| self.broken(url, &e, "reading the answer: "))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Exchange::Failed(Error::Protocol {
                    url: url.to_string(),
                    cause: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                }));
            }
            buf.extend_from_slice(&chunk);
        }
        // Read in full: the connection can serve the next call.
        self.pool.put(conn);
        Ok(Reply { status, body: buf })
    }

    /// A connection that could not be opened: a TLS refusal, our own exhaustion (file
    /// descriptors, memory), or broken (checked for a hidden TLS refusal by the caller).
    fn connect_failed(&self, url: &Url, e: ConnectError) -> Exchange {
        match e {
            ConnectError::Io(e) => {
                if let Some(tls) = find_rustls(&e) {
                    Exchange::Failed(Error::TlsRefused {
                        url: url.to_string(),
                        cause: explain_tls(self.service, tls, url, &self.tls_setup),
                    })
                } else if is_local_exhaustion(&e) {
                    Exchange::Failed(Error::Exhausted {
                        url: url.to_string(),
                        cause: chain(&e),
                    })
                } else {
                    Exchange::Broken(format!("connecting: {}", chain(&e)))
                }
            }
            ConnectError::Http(e) => Exchange::Broken(format!("connecting: {}", chain(&e))),
            ConnectError::NoHost => Exchange::Failed(Error::config(
                format!("{url} has no host name that TLS can check"),
                None,
            )),
        }
    }

    /// An exchange that broke after the connection was open: a TLS alert, or broken.
    fn broken(&self, url: &Url, e: &(dyn std::error::Error + 'static), doing: &str) -> Exchange {
        match find_rustls(e) {
            Some(tls) => Exchange::Failed(Error::TlsRefused {
                url: url.to_string(),
                cause: explain_tls(self.service, tls, url, &self.tls_setup),
            }),
            None => Exchange::Broken(format!("{doing}{}", chain(e))),
        }
    }

    /// Opens a fresh TLS connection with our client certificate, sends nothing, and listens
    /// briefly: `Some(why)` (explained, see [`explain_tls`]) when the service (or whatever
    /// answers there) refuses the handshake or alerts right after it, `None` when it cannot be
    /// reached or says nothing.
    async fn probe_trust(&self, url: &Url) -> Option<String> {
        use tokio::io::AsyncReadExt;
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = url.port_or_known_default()?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).ok()?;
        let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let explain = |t: &rustls::Error| explain_tls(self.service, t, url, &self.tls_setup);
        let mut tls = match connector.connect(name, tcp).await {
            Ok(t) => t,
            Err(e) => return find_rustls(&e).map(explain),
        };
        let mut byte = [0u8; 1];
        match tokio::time::timeout(PROBE_ALERT_WAIT, tls.read(&mut byte)).await {
            Ok(Err(e)) => find_rustls(&e).map(explain),
            _ => None,
        }
    }
}

/// How one exchange failed: `Broken` connections are checked for a hidden TLS refusal first.
enum Exchange {
    Broken(String),
    Failed(Error),
}

/// The request to `url`, in origin form with its Host header.
fn request(url: &Url, req: &Outgoing) -> Result<hyper::Request<Full<Bytes>>, Exchange> {
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let bad = |what: String| {
        Exchange::Failed(Error::config(
            format!("{url} cannot be sent as an HTTP request: {what}"),
            None,
        ))
    };
    let builder = hyper::Request::builder().uri(target).header(
        HOST,
        HeaderValue::from_str(host).map_err(|e| bad(e.to_string()))?,
    );
    let built = match req {
        Outgoing::Get => builder
            .method(hyper::Method::GET)
            .body(Full::new(Bytes::new())),
        Outgoing::Post {
            body,
            content_type,
            soap_action,
        } => {
            let builder = builder
                .method(hyper::Method::POST)
                .header(CONTENT_TYPE, HeaderValue::from_static(content_type));
            let builder = if *soap_action {
                builder.header("SOAPAction", HeaderValue::from_static("\"\""))
            } else {
                builder
            };
            builder.body(Full::new(body.clone()))
        }
    };
    built.map_err(|e| bad(e.to_string()))
}
/// Whether this process ran out of descriptors or memory somewhere in the chain: overload
/// here, whatever else the error says.
pub(crate) fn is_local_exhaustion(e: &(dyn std::error::Error + 'static)) -> bool {
    // EMFILE, ENFILE, ENOMEM, ENOBUFS (Linux numbering; std exposes no named kinds for them).
    const EXHAUSTED: [i32; 4] = [24, 23, 12, 105];
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.raw_os_error().is_some_and(|c| EXHAUSTED.contains(&c))
            || io.kind() == std::io::ErrorKind::OutOfMemory
        {
            return true;
        }
        if io.get_ref().is_some_and(|inner| is_local_exhaustion(inner)) {
            return true;
        }
    }
    e.source().is_some_and(is_local_exhaustion)
}

/// An error and its sources, joined: the outer message hides the useful part
/// ("connection refused", "certificate unknown").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}
