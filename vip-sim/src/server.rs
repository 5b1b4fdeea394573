//! Listeners: the mutual-TLS SOAP endpoint and the plain-HTTP admin API.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::config::{Faults, ServerConfig, TlsConfig};
use crate::ops::{Op, Service, State};
use crate::xml::{self, VIP_NS};
use crate::{Counters, SimError};

/// Returned by the SOAP service to make hyper drop the connection without an answer.
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for ResetConnection {}

pub(crate) type Resp = Response<Full<Bytes>>;

#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub max_body: usize,
    pub io_timeout: Duration,
    pub max_connections: usize,
    /// Close keep-alive connections idle this long (None: no limit of our own).
    pub idle_timeout: Option<Duration>,
}

pub(crate) fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

pub(crate) const XML_CT: &str = "text/xml;charset=utf-8";

fn fault(code: &str, msg: &str) -> Resp {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        XML_CT,
        xml::soap_fault(code, msg),
    )
}

/// The service and the API minor version (`_1_10` -> 10) of a SOAP path.
fn service_for_path(path: &str) -> Option<(Service, u32)> {
    let rest = path.strip_prefix("/vipuserservices/")?;
    let (name, ver) = rest.split_once("_1_")?;
    if ver.is_empty() || !ver.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Absurdly long digit strings are no version at all.
    let ver = ver.parse().ok()?;
    Some((Service::from_name(name)?, ver))
}

/// SOAP 1.1 requires `text/xml` (parameters such as charset allowed); a JAX-WS endpoint
/// answers anything else with 415 before looking at the body.
pub(crate) fn is_soap11_content_type(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/xml"))
}

/// A short HTML page for an injected HTTP status, as a proxy or load balancer would send.
pub(crate) fn http_status_page(code: u16) -> Option<Resp> {
    let status = StatusCode::from_u16(code).ok()?;
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    Some(respond(
        status,
        "text/html",
        format!("<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"),
    ))
}

pub(crate) async fn read_body(req: Request<Incoming>, limits: Limits) -> Result<Bytes, Resp> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return Err(respond(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            "request body too large\n",
        ));
    }
    let body = Limited::new(req.into_body(), limits.max_body);
    match tokio::time::timeout(limits.io_timeout, body.collect()).await {
        Err(_) => Err(respond(
            StatusCode::REQUEST_TIMEOUT,
            "text/plain",
            "request body too slow\n",
        )),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain",
                    "request body too large\n",
                ))
            } else {
                Err(respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "bad request body\n",
                ))
            }
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// 405 for anything but POST, 415 for anything but `text/xml` (what a SOAP 1.1 stack answers
/// before looking at the body); None when the request may go on.
pub(crate) fn refuse_non_soap(req: &Request<Incoming>) -> Option<Resp> {
    if req.method() != Method::POST {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "POST a SOAP request\n",
        );
        if let Ok(v) = "POST".parse() {
            r.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return Some(r);
    }
    if !is_soap11_content_type(req) {
        return Some(respond(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
            "Unsupported Content-Type: SOAP 1.1 requests must be text/xml\n",
        ));
    }
    None
}

pub(crate) async fn handle_soap(
    req: Request<Incoming>,
    st: Arc<State>,
    limits: Limits,
) -> Result<Resp, ResetConnection> {
    st.counters.request();
    let Some((service, version)) = service_for_path(req.uri().path()) else {
        return Ok(respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"));
    };
    if let Some(r) = refuse_non_soap(&req) {
        return Ok(r);
    }
    let body = match read_body(req, limits).await {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let root = match xml::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            return Ok(fault(
                "Client",
                &format!("Couldn't create SOAP message due to exception: {e}"),
            ))
        }
    };
    let el = match xml::soap_body_op(&root) {
        Ok(el) => el,
        Err(e) => return Ok(fault("Client", &e)),
    };
    let op = if el.ns.as_deref() == Some(VIP_NS) {
        Op::from_element(&el.name).filter(|op| op.service() == service)
    } else {
        None
    };
    let Some(op) = op else {
        return Ok(fault(
            "Client",
            &format!(
                "Cannot find dispatch method for {{{}}}{}",
                el.ns.as_deref().unwrap_or(""),
                el.name
            ),
        ));
    };
    st.count_call(op, el);
    let faults = st.faults_for(op, el);
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.connection_reset {
        return Err(ResetConnection);
    }
    // An invalid status set through the Rust API is ignored (Faults::validate refuses it).
    if let Some(r) = faults
        .http_status
        .filter(|s| (300..=599).contains(s))
        .and_then(http_status_page)
    {
        return Ok(r);
    }
    if faults.http_500 {
        return Ok(respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/html",
            "<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>",
        ));
    }
    if faults.client_fault {
        return Ok(fault(
            "Client",
            &format!("Cannot find dispatch method for {{{VIP_NS}}}{}", el.name),
        ));
    }
    if faults.soap_fault {
        return Ok(fault("Server", "Internal error (injected fault)"));
    }
    if faults.malformed_xml {
        let doc = format!(
            "<?xml version='1.0' encoding='UTF-8'?><S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\"><S:Body><{} xmlns=\"{VIP_NS}\"><requestId>{}</requestId><status>00",
            op.response(),
            xml::esc(el.text_of("requestId").unwrap_or(""))
        );
        return Ok(respond(StatusCode::OK, XML_CT, doc));
    }
    if faults.wrong_namespace {
        return Ok(respond(
            StatusCode::OK,
            XML_CT,
            st.wrong_namespace_doc(op, el),
        ));
    }
    let doc = st.run(op, el, version);
    Ok(respond(StatusCode::OK, XML_CT, doc))
}

/// When a connection last finished a request, and how many it is serving now.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks a request in progress; dropping it (also on a reset) records the time it ended.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(a: Arc<Activity>) -> Busy {
        a.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(a)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts TLS connections until `shutdown` flips (or its sender is dropped).
///
/// `on_handshake` runs after each completed handshake; `handler` answers each request (its
/// `Err` drops the connection without an answer).
pub(crate) async fn serve_tls<C, H, F>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    on_handshake: C,
    handler: H,
) where
    C: Fn() + Clone + Send + Sync + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Resp, ResetConnection>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let on_handshake = on_handshake.clone();
        let handler = handler.clone();
        conns.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(limits.io_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            on_handshake();
            let activity = Arc::new(Activity::new());
            let act = activity.clone();
            let svc = service_fn(move |req| {
                let busy = Busy::start(act.clone());
                let fut = handler(req);
                async move {
                    let r = fut.await;
                    drop(busy);
                    r
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.io_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), svc);
            let mut conn = std::pin::pin!(conn);
            let mut closing = false;
            // With idle_timeout: once no request has been in progress for that long, shut the
            // connection down gracefully (hyper closes an idle one at once: TLS close_notify
            // and FIN), as a server or load balancer with a keep-alive timeout does. Clients
            // must then retry a request written into a pooled connection closed under them.
            let r = loop {
                let Some(idle) = limits.idle_timeout.filter(|_| !closing) else {
                    break conn.as_mut().await;
                };
                let busy = activity.in_flight.load(Ordering::SeqCst) > 0;
                // While busy, look again one period later instead of spinning on a past
                // deadline.
                let deadline = if busy {
                    Instant::now() + idle
                } else {
                    activity.last() + idle
                };
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        if activity.in_flight.load(Ordering::SeqCst) == 0
                            && activity.last().elapsed() >= idle
                        {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    // Dropping `conns` aborts every open connection.
}

pub(crate) fn load_tls(tls: &TlsConfig) -> Result<rustls::ServerConfig, SimError> {
    use rustls::pki_types::CertificateDer;
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| SimError::Io(format!("{}: {e}", p.display())));
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut read(&tls.cert)?.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| SimError::Tls(format!("{}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(SimError::Tls(format!(
            "{}: no certificate found",
            tls.cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut read(&tls.key)?.as_slice())
        .map_err(|e| SimError::Tls(format!("{}: {e}", tls.key.display())))?
        .ok_or_else(|| SimError::Tls(format!("{}: no private key found", tls.key.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut read(&tls.client_ca)?.as_slice()) {
        let c = c.map_err(|e| SimError::Tls(format!("{}: {e}", tls.client_ca.display())))?;
        roots
            .add(c)
            .map_err(|e| SimError::Tls(format!("{}: {e}", tls.client_ca.display())))?;
    }
    if roots.is_empty() {
        return Err(SimError::Tls(format!(
            "{}: no CA certificate found",
            tls.client_ca.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| SimError::Tls(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

pub(crate) fn json(status: StatusCode, v: serde_json::Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the admin API needs from a simulator: counters, faults and its code look-ups.
pub(crate) trait AdminApi: Send + Sync + 'static {
    /// The simulator's fault set (JSON in `GET/POST /faults`).
    type Faults: Serialize + DeserializeOwned + Default;
    fn counters(&self) -> Counters;
    fn reset_counters(&self);
    fn global_faults(&self) -> Self::Faults;
    /// Checks what serde cannot; the message goes back to the caller (HTTP 400).
    fn validate_faults(f: &Self::Faults) -> Result<(), String>;
    fn set_global_faults(&self, f: Self::Faults);
    /// False when there is no such user.
    fn set_user_faults(&self, user: &str, f: Self::Faults) -> bool;
    /// `GET /<segments>` answering `{"code": ...}`: None if the path is not such a route or
    /// has no code (404).
    fn code_route(&self, segs: &[&str]) -> Option<String>;
}

async fn handle_admin<A: AdminApi>(
    req: Request<Incoming>,
    st: Arc<A>,
    limits: Limits,
) -> Result<Resp, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let not_found = || {
        json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not found"}),
        )
    };
    let to_json = |v: Result<serde_json::Value, serde_json::Error>| match v {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": e.to_string()}),
        ),
    };
    let r = match (method.clone(), segs.as_slice()) {
        (Method::GET, ["healthz"]) => json(StatusCode::OK, serde_json::json!({"ok": true})),
        (Method::GET, ["counters"]) => to_json(serde_json::to_value(st.counters())),
        (Method::POST, ["counters", "reset"]) => {
            st.reset_counters();
            json(StatusCode::OK, serde_json::json!({"ok": true}))
        }
        (Method::GET, ["faults"]) => to_json(serde_json::to_value(st.global_faults())),
        (Method::POST, ["faults"]) | (Method::POST, ["users", _, "faults"]) => {
            let user = match segs.as_slice() {
                ["users", u, "faults"] => Some(u.to_string()),
                _ => None,
            };
            match read_body(req, limits).await {
                Err(r) => r,
                Ok(body) => {
                    let parsed: Result<A::Faults, String> =
                        if body.iter().all(u8::is_ascii_whitespace) {
                            Ok(A::Faults::default())
                        } else {
                            serde_json::from_slice::<A::Faults>(&body)
                                .map_err(|e| e.to_string())
                                .and_then(|f| A::validate_faults(&f).map(|()| f))
                        };
                    match (parsed, user) {
                        (Err(e), _) => {
                            json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": e }))
                        }
                        (Ok(f), None) => {
                            st.set_global_faults(f);
                            json(StatusCode::OK, serde_json::json!({"ok": true}))
                        }
                        (Ok(f), Some(u)) => {
                            if st.set_user_faults(&u, f) {
                                json(StatusCode::OK, serde_json::json!({"ok": true}))
                            } else {
                                not_found()
                            }
                        }
                    }
                }
            }
        }
        (Method::GET, segs) => match st.code_route(segs) {
            Some(c) => json(StatusCode::OK, serde_json::json!({"code": c})),
            None => not_found(),
        },
        _ => not_found(),
    };
    Ok(r)
}

impl AdminApi for State {
    type Faults = Faults;

    fn counters(&self) -> Counters {
        State::counters(self)
    }

    fn reset_counters(&self) {
        State::reset_counters(self)
    }

    fn global_faults(&self) -> Faults {
        State::global_faults(self)
    }

    fn validate_faults(f: &Faults) -> Result<(), String> {
        f.validate().map_err(|e| e.to_string())
    }

    fn set_global_faults(&self, f: Faults) {
        State::set_global_faults(self, f)
    }

    fn set_user_faults(&self, user: &str, f: Faults) -> bool {
        State::set_user_faults(self, user, f)
    }

    fn code_route(&self, segs: &[&str]) -> Option<String> {
        match segs {
            ["sent-codes", user] => self.last_sent_code(user),
            ["users", user, "code"] => self.current_code(user),
            ["phones", phone, "code"] => self.last_sent_code_to(phone),
            ["tokens", id, "code"] => self.token_code(id),
            _ => None,
        }
    }
}

/// Serves the admin API (plain HTTP/1.1) to loopback peers until shutdown.
pub(crate) async fn serve_admin<A: AdminApi>(
    listener: TcpListener,
    st: Arc<A>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        if !peer.ip().is_loopback() || conns.len() >= 256 {
            continue;
        }
        let st = st.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| handle_admin(req, st.clone(), limits));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.io_timeout)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// The listeners of a simulator, bound, with the TLS acceptor ready.
pub(crate) struct Bound {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    acceptor: TlsAcceptor,
    limits: Limits,
}

/// Loads the TLS files and binds `server.listen` (and `admin_listen` if set).
pub(crate) async fn bind(server: &ServerConfig, tls: &TlsConfig) -> Result<Bound, SimError> {
    let tls = load_tls(tls)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(server.listen)
        .await
        .map_err(|e| SimError::Io(format!("bind {}: {e}", server.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SimError::Io(e.to_string()))?;
    let admin = match server.admin_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| SimError::Io(format!("bind {a}: {e}")))?,
        ),
        None => None,
    };
    let admin_addr = match &admin {
        Some(l) => Some(l.local_addr().map_err(|e| SimError::Io(e.to_string()))?),
        None => None,
    };
    let limits = Limits {
        max_body: server.max_body_bytes,
        io_timeout: Duration::from_millis(server.io_timeout_ms.max(1)),
        max_connections: server.max_connections,
        idle_timeout: (server.idle_timeout_ms > 0)
            .then(|| Duration::from_millis(server.idle_timeout_ms)),
    };
    Ok(Bound {
        addr,
        admin_addr,
        listener,
        admin,
        acceptor,
        limits,
    })
}

/// The serving tasks of a simulator; dropping it stops them (without waiting).
pub(crate) struct Running {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Bound {
    /// Spawns the TLS listener (see [`serve_tls`]) and the admin listener, if bound.
    pub(crate) fn spawn<A, C, H, F>(
        self,
        admin_state: Arc<A>,
        on_handshake: C,
        handler: impl FnOnce(Limits) -> H,
    ) -> Running
    where
        A: AdminApi,
        C: Fn() + Clone + Send + Sync + 'static,
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Resp, ResetConnection>> + Send + 'static,
    {
        let (tx, rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(serve_tls(
            self.listener,
            self.acceptor,
            self.limits,
            rx.clone(),
            on_handshake,
            handler(self.limits),
        ))];
        if let Some(l) = self.admin {
            tasks.push(tokio::spawn(serve_admin(l, admin_state, self.limits, rx)));
        }
        Running {
            shutdown: tx,
            tasks,
        }
    }
}

impl Running {
    /// Stops accepting, closes every connection and waits for the listeners to end.
    pub(crate) async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            service_for_path("/vipuserservices/QueryService_1_8"),
            Some((Service::Query, 8))
        );
        assert_eq!(
            service_for_path("/vipuserservices/AuthenticationService_1_10"),
            Some((Service::Authentication, 10))
        );
        assert_eq!(
            service_for_path(&format!(
                "/vipuserservices/QueryService_1_{}",
                "9".repeat(30)
            )),
            None
        );
        assert_eq!(service_for_path("/vipuserservices/QueryService_1_"), None);
        assert_eq!(service_for_path("/vipuserservices/QueryService_2_8"), None);
        assert_eq!(service_for_path("/other/QueryService_1_8"), None);
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("J%C3%B6rg"), "Jörg");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
    }
}
