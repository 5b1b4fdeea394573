//! The `[metrics]` endpoint: `GET /metrics` in the text exposition format, over plain HTTP/1.1
//! with hyper on the daemon's runtime; and the RADIUS front door's counters as collected metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::radius::accounting::Accounting;
use crate::radius::Stats;

/// Scrapes at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 16;
/// A connection (request head, body, answer) must be done within this.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the endpoint (so errors surface at start-up).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serves `registry` on `listener` until `shutdown` is set.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = listener.local_addr().ok();
    info!(listen = ?local, "metrics endpoint up (GET /metrics)");
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &registry)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "metrics connection failed"),
                Err(_) => debug!(%peer, "metrics connection timed out"),
            }
        });
    }
    debug!("metrics endpoint stopped");
}

/// Resolves once `shutdown` is set (or its sender is gone), holding no borrow across awaits.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await.map(|_| ());
}

fn answer(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match vip_core::metrics::encode(registry) {
        Ok(text) => reply(StatusCode::OK, vip_core::metrics::CONTENT_TYPE, text),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "cannot encode the metrics\n".into(),
        ),
    }
}

/// The RADIUS front door's [`Stats`], read at scrape time.
#[derive(Debug)]
pub struct RadiusCollector(pub Arc<Stats>);

impl Collector for RadiusCollector {
    fn encode(
        &self,
        mut encoder: DescriptorEncoder<'_>,
    ) -> std::result::Result<(), std::fmt::Error> {
        let snapshot = self.0.snapshot();
        let get = |name: &str| {
            snapshot
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or(0)
        };
        let single = |encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64| {
            let c = ConstCounter::new(value);
            let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            c.encode(m)
        };
        single(
            &mut encoder,
            "radius_received",
            "RADIUS datagrams received",
            get("received"),
        )?;
        single(
            &mut encoder,
            "radius_retransmits_answered_from_cache",
            "RADIUS retransmits answered with the cached reply (RFC 5080), not re-processed",
            get("duplicates_answered_from_cache"),
        )?;
        single(
            &mut encoder,
            "radius_unknown_clients",
            "RADIUS datagrams from a source that matches no configured client (dropped)",
            get("dropped_unknown_client"),
        )?;
        single(
            &mut encoder,
            "radius_status_server",
            "Status-Server requests answered",
            get("status_server"),
        )?;
        single(
            &mut encoder,
            "radius_admitted_reserved",
            "Requests admitted through the share reserved for continuing logins",
            get("admitted_reserved"),
        )?;
        single(
            &mut encoder,
            "radius_unverifiable",
            "RADIUS requests refused unheard: neither Message-Authenticator nor User-Password proves the client sent them",
            get("unverifiable"),
        )?;
        single(
            &mut encoder,
            "radius_send_errors",
            "RADIUS replies that could not be sent",
            get("send_errors"),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "radius_dropped",
                "RADIUS datagrams dropped without an answer, by cause",
                None,
                MetricType::Counter,
            )?;
            for (name, value) in &snapshot {
                if let Some(cause) = name.strip_prefix("dropped_") {
                    let labels = [("cause", cause)];
                    ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "radius_replies",
            "RADIUS replies sent (retransmits answered from the cache not included), by code",
            None,
            MetricType::Counter,
        )?;
        for (code, name) in [
            ("Access-Accept", "access_accept"),
            ("Access-Reject", "access_reject"),
            ("Access-Challenge", "access_challenge"),
            ("Accounting-Response", "accounting_response"),
        ] {
            let labels = [("code", code)];
            ConstCounter::new(get(name)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Accounting (RFC 2866): requests by client and Acct-Status-Type, active sessions by client.
pub struct AccountingCollector(pub Arc<Accounting>);

impl std::fmt::Debug for AccountingCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountingCollector")
    }
}

impl Collector for AccountingCollector {
    fn encode(
        &self,
        mut encoder: DescriptorEncoder<'_>,
    ) -> std::result::Result<(), std::fmt::Error> {
        {
            let mut family = encoder.encode_descriptor(
                "radius_accounting_requests",
                "Accounting-Requests recorded (verified, retransmits not counted), by client and \
                 Acct-Status-Type",
                None,
                MetricType::Counter,
            )?;
            for (client, status, value) in self.0.requests() {
                let labels = [("client", client), ("status", status)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "radius_accounting_sessions",
            "Active accounting sessions (Start seen, no Stop yet; forgotten after 24 h), by client",
            None,
            MetricType::Gauge,
        )?;
        for (client, value) in self.0.sessions() {
            let labels = [("client", client)];
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_stats_are_exported() {
        let stats = Arc::new(Stats::default());
        Stats::inc(&stats.duplicates_answered_from_cache);
        Stats::inc(&stats.dropped_unknown_client);
        Stats::inc(&stats.dropped_unknown_client);
        Stats::inc(&stats.dropped_overload);
        Stats::inc(&stats.access_accept);
        let mut reg = Registry::with_prefix("vip_bridge");
        reg.register_collector(Box::new(RadiusCollector(stats)));
        let text = vip_core::metrics::encode(&reg).unwrap();
        for line in [
            "vip_bridge_radius_retransmits_answered_from_cache_total 1",
            "vip_bridge_radius_unknown_clients_total 2",
            r#"vip_bridge_radius_dropped_total{cause="unknown_client"} 2"#,
            r#"vip_bridge_radius_dropped_total{cause="overload"} 1"#,
            r#"vip_bridge_radius_dropped_total{cause="malformed"} 0"#,
            r#"vip_bridge_radius_replies_total{code="Access-Accept"} 1"#,
            r#"vip_bridge_radius_replies_total{code="Access-Reject"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn accounting_is_exported() {
        use crate::radius::accounting::Event;
        let acct = Arc::new(Accounting::new(vec!["vpn".into(), "wifi".into()]));
        let start = Event {
            status_value: Some(1),
            session_id: Some("s1".into()),
            ..Event::default()
        };
        acct.record(0, &start);
        let mut reg = Registry::with_prefix("vip_bridge");
        reg.register_collector(Box::new(AccountingCollector(acct)));
        let text = vip_core::metrics::encode(&reg).unwrap();
        for line in [
            r#"vip_bridge_radius_accounting_requests_total{client="vpn",status="Start"} 1"#,
            r#"vip_bridge_radius_accounting_requests_total{client="vpn",status="Stop"} 0"#,
            r#"vip_bridge_radius_accounting_requests_total{client="wifi",status="Accounting-On"} 0"#,
            r#"vip_bridge_radius_accounting_sessions{client="vpn"} 1"#,
            r#"vip_bridge_radius_accounting_sessions{client="wifi"} 0"#,
            "# TYPE vip_bridge_radius_accounting_sessions gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[tokio::test]
    async fn serves_get_metrics_and_stops() {
        let mut reg = Registry::with_prefix("vip_bridge");
        let m = vip_core::metrics::Metrics::new(&mut reg);
        m.reject("bad_code");
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, Arc::new(reg), rx));
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let body = get("/metrics").await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("application/openmetrics-text"), "{body}");
        assert!(
            body.contains(r#"vip_bridge_rejects_total{reason="bad_code"} 1"#),
            "{body}"
        );
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
    }
}
