//! `TrustBuilderClient`: one typed async method per TrustBuilder call, over the shared HTTPS
//! transport ([`crate::https`]).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing::Instrument;
use url::Url;

use super::config::TrustBuilderConfig;
use super::error::TbError;
use super::provisioning::*;
use super::rest::{self, RestAnswer};
use super::status::TbStatus;
use super::xml;
use crate::https::tls::{parse_url, TlsFiles};
use crate::https::transport::{Limits, Outgoing, Transport};
use crate::https::{self, Service};
use crate::metrics::Metrics;

/// TrustBuilder, as the shared transport's messages name it.
pub(crate) static TRUSTBUILDER: Service = Service {
    name: "TrustBuilder",
    section: "trustbuilder",
    console: "the TrustBuilder administration console",
    url_keys: "trustbuilder.api_url",
};

/// The login the health probe asks about (checkPushResult of a session nobody has: a bare
/// `NOK` from a service that is up).
const PROBE_LOGIN: &str = "vip-bridge-health-check";

/// The TrustBuilder MFA client. Cheap to clone (an `Arc` inside); make one per process so every
/// call shares the connection pool and the in-flight bound.
#[derive(Clone)]
pub struct TrustBuilderClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    service_id: u64,
    /// `{api_url}/FS`.
    fs_url: Url,
    /// `{api_url}/v2/services/ConsoleAdmin`.
    console_url: Url,
    push_context: Option<String>,
    user_cache_ttl: Duration,
    metrics: OnceLock<Arc<Metrics>>,
}

impl std::fmt::Debug for TrustBuilderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBuilderClient")
            .field("service_id", &self.inner.service_id)
            .field("fs_url", &self.inner.fs_url.as_str())
            .finish_non_exhaustive()
    }
}

fn tb_err(e: https::Error) -> TbError {
    TbError::from_https(e, "", "")
}

impl TrustBuilderClient {
    /// Validates the configuration, loads the client certificate (PKCS#12 or PEM) and the CA
    /// roots, and builds the pooled HTTPS client. Does not connect.
    pub fn new(cfg: &TrustBuilderConfig) -> Result<TrustBuilderClient, TbError> {
        cfg.validate()?;
        let base = parse_url(&TRUSTBUILDER, "api_url", cfg.api_url.trim_end_matches('/'))
            .map_err(tb_err)?;
        let join = |path: &str| {
            Url::parse(&format!("{}{path}", base.as_str().trim_end_matches('/'))).map_err(|e| {
                TbError::config(format!("trustbuilder.api_url: cannot add {path}: {e}"))
            })
        };
        let fs_url = join("/FS")?;
        let console_url = join("/v2/services/ConsoleAdmin")?;
        let files = TlsFiles {
            cert_file: cfg.cert_file.as_deref(),
            key_file: cfg.key_file.as_deref(),
            pkcs12_file: cfg.pkcs12_file.as_deref(),
            pkcs12_password: None,
            pkcs12_password_file: cfg.pkcs12_password_file.as_deref(),
            ca_file: cfg.ca_file.as_deref(),
        };
        let limits = Limits {
            timeout: cfg.timeout,
            max_in_flight: cfg.max_in_flight,
        };
        let transport = Transport::new(&TRUSTBUILDER, &files, limits).map_err(tb_err)?;
        Ok(TrustBuilderClient {
            inner: Arc::new(Inner {
                transport,
                service_id: cfg.service_id,
                fs_url,
                console_url,
                push_context: cfg.push_context.clone(),
                user_cache_ttl: cfg.user_cache_ttl,
                metrics: OnceLock::new(),
            }),
        })
    }

    /// Records every call's duration and status (in `vip_call_duration_seconds`, under
    /// TrustBuilder's action names) and the calls in flight, from now on (the first call wins).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        self.inner.transport.set_metrics(metrics.clone());
        let _ = self.inner.metrics.set(metrics);
    }

    pub fn service_id(&self) -> u64 {
        self.inner.service_id
    }

    /// `trustbuilder.user_cache_ttl`.
    pub fn user_cache_ttl(&self) -> Duration {
        self.inner.user_cache_ttl
    }

    /// `trustbuilder.push_context`.
    pub fn push_context(&self) -> Option<&str> {
        self.inner.push_context.as_deref()
    }

    /// Sends one call and parses its answer inside a `trustbuilder_call{op}` span. Logs the
    /// outcome and duration, never the URL's query or the body (they carry codes).
    async fn call<T>(
        &self,
        op: &'static str,
        url: &Url,
        out: Outgoing,
        reserved: bool,
        parse: impl FnOnce(&[u8]) -> Result<T, TbError>,
    ) -> Result<T, TbError> {
        let span = tracing::debug_span!("trustbuilder_call", op);
        async move {
            let start = Instant::now();
            let mut shown = url.clone();
            shown.set_query(None);
            let shown = shown.to_string();
            let result = match self.inner.transport.send(url, out, reserved).await {
                Err(e) => Err(TbError::from_https(e, url.as_str(), &shown)),
                Ok(reply) => answer(reply.status, &reply.body, &shown)
                    .and_then(|()| parse(&reply.body).map_err(|e| e.at_url(&shown))),
            };
            let label = match &result {
                Ok(_) => "OK",
                Err(e) => e.label(),
            };
            if let Some(m) = self.inner.metrics.get() {
                m.mfa_call("trustbuilder", op, label.to_owned(), start.elapsed());
            }
            let elapsed_ms = start.elapsed().as_millis() as u64;
            match &result {
                Ok(_) => tracing::debug!(status = label, elapsed_ms, "TrustBuilder call done"),
                Err(e) => {
                    tracing::debug!(status = label, elapsed_ms, error = %e, "TrustBuilder call failed")
                }
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn rest(
        &self,
        action: &'static str,
        url: &Url,
        reserved: bool,
    ) -> Result<RestAnswer, TbError> {
        self.call(action, url, Outgoing::Get, reserved, rest::parse_answer)
            .await
    }

    async fn soap<T>(
        &self,
        op: &'static str,
        body: String,
        parse: impl FnOnce(&[u8]) -> Result<T, TbError>,
    ) -> Result<T, TbError> {
        let url = self.inner.console_url.clone();
        self.call(op, &url, Outgoing::soap(body), false, parse)
            .await
    }

    /// authenticateExtended: checks an OTP. `Ok` only for `OK`; every `NOK*` is `Rejected`.
    pub async fn authenticate_extended(
        &self,
        user: &str,
        token: &str,
    ) -> Result<RestAnswer, TbError> {
        let url = rest::render_authenticate_extended(
            &self.inner.fs_url,
            self.inner.service_id,
            user,
            token,
        );
        let a = self.rest(rest::ACTION_AUTHENTICATE, &url, false).await?;
        only_ok(rest::ACTION_AUTHENTICATE, a)
    }

    /// pushAuthenticate: sends a push; `Ok` (with its sessionId) only for `OK`.
    pub async fn push_authenticate(
        &self,
        user: &str,
        context: Option<&str>,
        without_pin: bool,
    ) -> Result<RestAnswer, TbError> {
        let url = rest::render_push_authenticate(
            &self.inner.fs_url,
            self.inner.service_id,
            user,
            context,
            without_pin,
        );
        let a = only_ok(
            rest::ACTION_PUSH,
            self.rest(rest::ACTION_PUSH, &url, false).await?,
        )?;
        if a.session_id.is_none() {
            return Err(TbError::protocol(format!(
                "pushAuthenticate answered OK without a sessionId ({})",
                self.inner.fs_url
            )));
        }
        tracing::debug!(
            session_id = a.session_id.as_deref().unwrap_or(""),
            "push sent"
        );
        Ok(a)
    }

    /// checkPushResult for one session: `Ok` with the push's status (`OK`, `NOK:WAITING`,
    /// `NOK:REFUSED`, `NOK:TIMEOUT`, bare `NOK`); any other status is `Rejected`.
    pub async fn check_push_result(
        &self,
        user: &str,
        session_id: &str,
    ) -> Result<RestAnswer, TbError> {
        self.check_push(user, session_id, false).await
    }

    async fn check_push(
        &self,
        user: &str,
        session_id: &str,
        reserved: bool,
    ) -> Result<RestAnswer, TbError> {
        let url = rest::render_check_push_result(
            &self.inner.fs_url,
            self.inner.service_id,
            user,
            session_id,
        );
        let a = self.rest(rest::ACTION_CHECK_PUSH, &url, reserved).await?;
        match a.status {
            TbStatus::Ok
            | TbStatus::Waiting
            | TbStatus::Refused
            | TbStatus::Timeout
            | TbStatus::Nok => Ok(a),
            status => Err(TbError::Rejected {
                action: rest::ACTION_CHECK_PUSH,
                status,
                session_id: Some(session_id.to_owned()),
            }),
        }
    }

    /// The health probe: checkPushResult of a session nobody has, on a slot of its own, not
    /// retried. A service that is up answers (bare `NOK`).
    pub async fn probe(&self) -> Result<(), TbError> {
        self.check_push(PROBE_LOGIN, "0", true).await.map(|_| ())
    }
}

/// The provisioning (ConsoleAdmin SOAP) calls. None is retried.
impl TrustBuilderClient {
    /// loginSearch with `exactmatch=1`: the logins named exactly `login` (0 or 1).
    pub async fn login_search(&self, login: &str) -> Result<LoginList, TbError> {
        let body = render_login_search(self.inner.service_id, login, true, 0, 10);
        self.soap(OP_LOGIN_SEARCH, body, parse_login_search).await
    }

    /// loginQuery: a login and its tools.
    pub async fn login_query(&self, login_id: i64) -> Result<LoginDetails, TbError> {
        self.soap(
            OP_LOGIN_QUERY,
            render_login_query(login_id),
            parse_login_query,
        )
        .await
    }

    /// loginsQuery: one page of the service's logins (`sort` 0..=6, seed 003).
    pub async fn logins_query(
        &self,
        offset: i64,
        nmax: i64,
        sort: i64,
    ) -> Result<LoginList, TbError> {
        let body = render_logins_query(self.inner.service_id, offset, nmax, sort);
        self.soap(OP_LOGINS_QUERY, body, parse_logins_query).await
    }

    /// loginCreate.
    pub async fn login_create(
        &self,
        fields: &LoginFields<'_>,
        access_bookmarks: bool,
        code_type: CodeType,
        lang: Option<&str>,
    ) -> Result<Created, TbError> {
        let body = render_login_create(
            self.inner.service_id,
            fields,
            access_bookmarks,
            code_type,
            lang,
        );
        self.soap(OP_LOGIN_CREATE, body, parse_login_create).await
    }

    /// loginUpdate.
    pub async fn login_update(
        &self,
        login_id: i64,
        fields: &LoginFields<'_>,
    ) -> Result<(), TbError> {
        let body = render_login_update(self.inner.service_id, login_id, fields);
        self.soap(OP_LOGIN_UPDATE, body, |b| parse_ok(b, OP_LOGIN_UPDATE))
            .await
    }

    /// loginDelete, loginSendByMail, loginResetPwd, loginResetPINErrorCounter: `OK` or
    /// `Rejected`.
    pub async fn login_op(&self, op: &'static str, login_id: i64) -> Result<(), TbError> {
        let body = render_login_op(op, self.inner.service_id, login_id)?;
        self.soap(op, body, |b| parse_ok(b, op)).await
    }

    /// loginRestore, loginActivateCode: the code they return.
    pub async fn login_code(&self, op: &'static str, login_id: i64) -> Result<String, TbError> {
        let body = render_login_op(op, self.inner.service_id, login_id)?;
        self.soap(op, body, |b| parse_code(b, op)).await
    }

    /// loginResetPwdExtended, loginAddDevice (`codetype` 0 or 2): the code they return.
    pub async fn login_new_code(
        &self,
        op: &'static str,
        login_id: i64,
        code_type: CodeType,
    ) -> Result<String, TbError> {
        let body = render_login_code_op(op, self.inner.service_id, login_id, code_type)?;
        self.soap(op, body, |b| parse_code(b, op)).await
    }

    /// loginUpdateTool: renames a tool.
    pub async fn login_update_tool(
        &self,
        kind: ToolKind,
        tool_id: i64,
        name: &str,
    ) -> Result<(), TbError> {
        let body = render_login_update_tool(self.inner.service_id, kind, tool_id, name);
        self.soap(OP_LOGIN_UPDATE_TOOL, body, |b| {
            parse_ok(b, OP_LOGIN_UPDATE_TOOL)
        })
        .await
    }

    /// loginDeleteTool.
    pub async fn login_delete_tool(&self, kind: ToolKind, tool_id: i64) -> Result<(), TbError> {
        let body = render_login_delete_tool(self.inner.service_id, kind, tool_id);
        self.soap(OP_LOGIN_DELETE_TOOL, body, |b| {
            parse_ok(b, OP_LOGIN_DELETE_TOOL)
        })
        .await
    }
}

/// `OK`, or the status as `Rejected`.
fn only_ok(action: &'static str, a: RestAnswer) -> Result<RestAnswer, TbError> {
    match a.status {
        TbStatus::Ok => Ok(a),
        status => Err(TbError::Rejected {
            action,
            status,
            session_id: a.session_id,
        }),
    }
}

/// Classes an HTTP answer that is not 200: 5xx is an outage, except a SOAP `Client` fault
/// (our request, whatever the status); 4xx and the rest are our URL, certificate or account.
fn answer(status: hyper::StatusCode, body: &[u8], shown: &str) -> Result<(), TbError> {
    if status == hyper::StatusCode::OK {
        return Ok(());
    }
    let fault = xml::soap_return(body, "-")
        .err()
        .filter(|e| e.starts_with("SOAP Fault"));
    let what = fault
        .clone()
        .unwrap_or_else(|| format!("{} bytes of body", body.len()));
    let client_fault = fault.as_deref().is_some_and(|f| {
        let code = f
            .trim_start_matches("SOAP Fault: ")
            .split(' ')
            .next()
            .unwrap_or("");
        code.rsplit(':')
            .next()
            .is_some_and(|c| c.starts_with("Client"))
    });
    let cause = format!("HTTP {status}: {what}");
    if status.is_server_error() && !client_fault {
        return Err(TbError::Unreachable {
            url: shown.to_owned(),
            cause,
        });
    }
    Err(TbError::Protocol {
        url: shown.to_owned(),
        cause: format!("{cause}; check trustbuilder.api_url, the certificate and the service"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::https::FailureClass;

    #[test]
    fn http_statuses_have_their_class() {
        let class = |code: u16, body: &str| {
            let status = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::OK);
            answer(status, body.as_bytes(), "https://h/FS")
                .err()
                .map(|e| e.class())
        };
        assert_eq!(class(200, ""), None);
        for code in [500, 502, 503, 504] {
            assert_eq!(class(code, "busy"), Some(FailureClass::Outage), "{code}");
        }
        for code in [400, 401, 403, 404, 301] {
            assert_eq!(class(code, ""), Some(FailureClass::Misconfigured), "{code}");
        }
        let fault = |code: &str| {
            format!("<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><soapenv:Fault><faultcode>{code}</faultcode><faultstring>x</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>")
        };
        assert_eq!(
            class(500, &fault("soapenv:Client")),
            Some(FailureClass::Misconfigured)
        );
        assert_eq!(
            class(500, &fault("soapenv:Server.userException")),
            Some(FailureClass::Outage)
        );
    }
}
