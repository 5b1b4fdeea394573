//! Listeners: the mutual-TLS SOAP endpoint and the plain-HTTP admin API.

use std::convert::Infallible;
use std::net::SocketAddr;
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
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::Faults;
use crate::ops::{Op, Service, State};
use crate::xml::{self, VIP_NS};

/// Returned by the SOAP service to make hyper drop the connection without an answer.
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for ResetConnection {}

type Resp = Response<Full<Bytes>>;

#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub max_body: usize,
    pub io_timeout: Duration,
    pub max_connections: usize,
    /// Close keep-alive connections idle this long (None: no limit of our own).
    pub idle_timeout: Option<Duration>,
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

const XML_CT: &str = "text/xml;charset=utf-8";

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
fn is_soap11_content_type(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/xml"))
}

/// A short HTML page for an injected HTTP status, as a proxy or load balancer would send.
fn http_status_page(code: u16) -> Option<Resp> {
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

async fn read_body(req: Request<Incoming>, limits: Limits) -> Result<Bytes, Resp> {
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

async fn handle_soap(
    req: Request<Incoming>,
    st: Arc<State>,
    limits: Limits,
) -> Result<Resp, ResetConnection> {
    st.http_requests.fetch_add(1, Ordering::Relaxed);
    let Some((service, version)) = service_for_path(req.uri().path()) else {
        return Ok(respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"));
    };
    if req.method() != Method::POST {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "POST a SOAP request\n",
        );
        if let Ok(v) = "POST".parse() {
            r.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return Ok(r);
    }
    if !is_soap11_content_type(&req) {
        return Ok(respond(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
            "Unsupported Content-Type: SOAP 1.1 requests must be text/xml\n",
        ));
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
pub(crate) async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    st: Arc<State>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
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
        let st = st.clone();
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
            st.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            let activity = Arc::new(Activity::new());
            let act = activity.clone();
            let svc = service_fn(move |req| {
                let busy = Busy::start(act.clone());
                let st = st.clone();
                async move {
                    let r = handle_soap(req, st, limits).await;
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

fn json(status: StatusCode, v: serde_json::Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

fn percent_decode(s: &str) -> String {
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

async fn handle_admin(
    req: Request<Incoming>,
    st: Arc<State>,
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
    let r = match (method.clone(), segs.as_slice()) {
        (Method::GET, ["healthz"]) => json(StatusCode::OK, serde_json::json!({"ok": true})),
        (Method::GET, ["counters"]) => match serde_json::to_value(st.counters()) {
            Ok(v) => json(StatusCode::OK, v),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": e.to_string()}),
            ),
        },
        (Method::POST, ["counters", "reset"]) => {
            st.reset_counters();
            json(StatusCode::OK, serde_json::json!({"ok": true}))
        }
        (Method::GET, ["sent-codes", user]) => match st.last_sent_code(user) {
            Some(c) => json(StatusCode::OK, serde_json::json!({"code": c})),
            None => not_found(),
        },
        (Method::GET, ["users", user, "code"]) => match st.current_code(user) {
            Some(c) => json(StatusCode::OK, serde_json::json!({"code": c})),
            None => not_found(),
        },
        (Method::GET, ["phones", phone, "code"]) => match st.last_sent_code_to(phone) {
            Some(c) => json(StatusCode::OK, serde_json::json!({"code": c})),
            None => not_found(),
        },
        (Method::GET, ["tokens", id, "code"]) => match st.token_code(id) {
            Some(c) => json(StatusCode::OK, serde_json::json!({"code": c})),
            None => not_found(),
        },
        (Method::GET, ["faults"]) => match serde_json::to_value(st.global_faults()) {
            Ok(v) => json(StatusCode::OK, v),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": e.to_string()}),
            ),
        },
        (Method::POST, ["faults"]) | (Method::POST, ["users", _, "faults"]) => {
            let user = match segs.as_slice() {
                ["users", u, "faults"] => Some(u.to_string()),
                _ => None,
            };
            match read_body(req, limits).await {
                Err(r) => r,
                Ok(body) => {
                    let parsed: Result<Faults, String> = if body.iter().all(u8::is_ascii_whitespace)
                    {
                        Ok(Faults::default())
                    } else {
                        serde_json::from_slice::<Faults>(&body)
                            .map_err(|e| e.to_string())
                            .and_then(|f| f.validate().map(|()| f).map_err(|e| e.to_string()))
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
        _ => not_found(),
    };
    Ok(r)
}

/// Serves the admin API (plain HTTP/1.1) to loopback peers until shutdown.
pub(crate) async fn serve_admin(
    listener: TcpListener,
    st: Arc<State>,
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
