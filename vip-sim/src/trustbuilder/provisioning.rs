//! The provisioning SOAP API (seed 003): `POST /v2/services/ConsoleAdmin`, SOAP 1.1
//! document/literal, namespace `http://console.inwebo.com`, answered as Axis 1.4 does:
//! `<opResponse><opReturn>…</opReturn></opResponse>`, list results as parallel arrays
//! (repeated sibling elements), absent strings `xsi:nil="true"`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::config::{valid_login, TOOL_KINDS};
use super::state::{lock, now_unix, random_digits, CodeState, Login, TbState, Tool};
use crate::server::{self, respond, Limits, ResetConnection, Resp, XML_CT};
use crate::xml::{self, esc, Elem, SOAP_NS};

/// The endpoint's path.
pub(crate) const PATH: &str = "/v2/services/ConsoleAdmin";
/// The payload namespace.
pub const CONSOLE_NS: &str = "http://console.inwebo.com";

const THIRTY_MIN: u64 = 30 * 60;
const THREE_WEEKS: u64 = 21 * 24 * 3600;

/// A parameter type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum T {
    Long,
    Str,
}

/// `(name, type, mandatory)` of each operation, in WSDL order.
fn params(op: &str) -> Option<&'static [(&'static str, T, bool)]> {
    use T::*;
    const LOGINID: &[(&str, T, bool)] = &[
        ("userid", Long, true),
        ("serviceid", Long, true),
        ("loginid", Long, true),
    ];
    Some(match op {
        "loginsQuery" => &[
            ("userid", Long, true),
            ("serviceid", Long, true),
            ("offset", Long, true),
            ("nmax", Long, true),
            ("sort", Long, true),
        ],
        "loginQuery" => &[("userid", Long, true), ("loginid", Long, true)],
        "loginSearch" => &[
            ("userid", Long, true),
            ("serviceid", Long, true),
            ("loginname", Str, true),
            ("exactmatch", Long, true),
            ("offset", Long, true),
            ("nmax", Long, true),
            ("sort", Long, true),
        ],
        "loginCreate" => &[
            ("userid", Long, true),
            ("serviceid", Long, true),
            ("login", Str, true),
            ("firstname", Str, false),
            ("name", Str, false),
            ("mail", Str, false),
            ("phone", Str, false),
            ("status", Long, true),
            ("role", Long, true),
            ("access", Long, true),
            ("codetype", Long, true),
            ("lang", Str, false),
            ("extrafields", Str, false),
        ],
        "loginUpdate" => &[
            ("userid", Long, true),
            ("serviceid", Long, true),
            ("loginid", Long, true),
            ("login", Str, true),
            ("firstname", Str, false),
            ("name", Str, false),
            ("mail", Str, false),
            ("phone", Str, false),
            ("status", Long, true),
            ("role", Long, true),
            ("extrafields", Str, false),
        ],
        "loginSendByMail"
        | "loginActivateCode"
        | "loginDelete"
        | "loginResetPwd"
        | "loginResetPINErrorCounter"
        | "loginRestore" => LOGINID,
        "loginResetPwdExtended" | "loginAddDevice" => &[
            ("userid", Long, true),
            ("serviceid", Long, true),
            ("loginid", Long, true),
            ("codetype", Long, true),
        ],
        "loginUpdateTool" => &[
            ("userid", Long, true),
            ("serviceid", Long, true),
            ("toolid", Long, true),
            ("tooltype", Str, true),
            ("name", Str, true),
        ],
        "loginDeleteTool" => &[
            ("userid", Long, true),
            ("serviceid", Long, true),
            ("toolid", Long, true),
            ("tooltype", Str, true),
        ],
        _ => return None,
    })
}

/// The parsed arguments of a call.
struct Args<'a> {
    el: &'a Elem,
}

impl Args<'_> {
    fn child(&self, name: &str) -> Option<&Elem> {
        self.el
            .children
            .iter()
            .find(|c| c.name == name && matches!(c.ns.as_deref(), None | Some(CONSOLE_NS)))
    }

    /// A long (validated before the operation runs: present when mandatory, numeric).
    fn long(&self, name: &str) -> i64 {
        self.child(name)
            .and_then(|c| c.text.trim().parse().ok())
            .unwrap_or(0)
    }

    fn str(&self, name: &str) -> String {
        self.child(name).map(|c| c.text.clone()).unwrap_or_default()
    }
}

/// Checks the arguments as Axis deserializes them: every child known and given once,
/// mandatory ones present, longs numeric. Err: the SOAP Fault message.
fn check_args(op: &str, el: &Elem) -> Result<(), String> {
    let spec = params(op).ok_or_else(|| format!("No such operation '{op}'"))?;
    for c in &el.children {
        let known = matches!(c.ns.as_deref(), None | Some(CONSOLE_NS))
            && spec.iter().any(|(n, _, _)| *n == c.name);
        if !known {
            return Err(format!(
                "org.xml.sax.SAXException: Invalid element in {op} - {}",
                c.name
            ));
        }
        if el.children.iter().filter(|o| o.name == c.name).count() > 1 {
            return Err(format!(
                "org.xml.sax.SAXException: Invalid element in {op} - {} (given twice)",
                c.name
            ));
        }
    }
    for (name, ty, mandatory) in spec {
        let c = el.children.iter().find(|c| c.name == *name);
        match (c, ty) {
            (None, _) if *mandatory => {
                return Err(format!("{op}: missing mandatory parameter {name}"));
            }
            (Some(c), T::Long) if c.text.trim().parse::<i64>().is_err() => {
                return Err(format!(
                    "java.lang.NumberFormatException: For input string: \"{}\" ({name})",
                    c.text
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// An Axis result record under construction.
#[derive(Default)]
struct Rec(String);

impl Rec {
    fn long(&mut self, name: &str, v: i64) -> &mut Self {
        self.0.push_str(&format!("<{name}>{v}</{name}>"));
        self
    }

    fn str(&mut self, name: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.0.push_str(&format!("<{name}>{}</{name}>", esc(v))),
            None => self.0.push_str(&format!("<{name} xsi:nil=\"true\"/>")),
        }
        self
    }

    /// A string field: empty strings are nil (Axis writes a null Java String so).
    fn s(&mut self, name: &str, v: &str) -> &mut Self {
        self.str(name, Some(v).filter(|v| !v.is_empty()))
    }

    fn longs(&mut self, name: &str, vs: impl IntoIterator<Item = i64>) -> &mut Self {
        for v in vs {
            self.long(name, v);
        }
        self
    }

    fn strs<'a>(&mut self, name: &str, vs: impl IntoIterator<Item = &'a str>) -> &mut Self {
        for v in vs {
            self.s(name, v);
        }
        self
    }
}

fn envelope(op: &str, ret: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"{SOAP_NS}\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>\
         <{op}Response xmlns=\"{CONSOLE_NS}\"><{op}Return>{ret}</{op}Return></{op}Response>\
         </soapenv:Body></soapenv:Envelope>"
    )
}

/// An Axis SOAP Fault (HTTP 500).
fn fault(code: &str, msg: &str) -> Resp {
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"{SOAP_NS}\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><soapenv:Fault>\
         <faultcode>soapenv:{code}</faultcode><faultstring>{}</faultstring><detail>\
         <ns1:hostname xmlns:ns1=\"http://xml.apache.org/axis/\">tb-sim</ns1:hostname></detail>\
         </soapenv:Fault></soapenv:Body></soapenv:Envelope>",
        esc(msg)
    );
    respond(StatusCode::INTERNAL_SERVER_ERROR, XML_CT, doc)
}

/// Operations answering a record (the rest answer a string).
fn record_result(op: &str) -> bool {
    matches!(
        op,
        "loginsQuery" | "loginQuery" | "loginSearch" | "loginCreate"
    )
}

/// A record result carrying only `err` (and zero counts), for errors.
fn nok_record(op: &str, err: &str) -> String {
    let mut r = Rec::default();
    r.s("err", err);
    match op {
        "loginsQuery" => {
            r.long("n", 0).long("count", 0);
        }
        "loginSearch" => {
            r.long("n", 0);
        }
        "loginCreate" => {
            r.str("code", None).long("id", 0);
        }
        _ => {}
    }
    r.0
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    st: &TbState,
    limits: Limits,
) -> Result<Resp, ResetConnection> {
    if let Some(r) = server::refuse_non_soap(&req) {
        return Ok(r);
    }
    let body = match server::read_body(req, limits).await {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let root = match xml::parse(&body) {
        Ok(r) => r,
        Err(e) => return Ok(fault("Server.userException", &e)),
    };
    let el = match xml::soap_body_op(&root) {
        Ok(el) => el,
        Err(e) => return Ok(fault("Server.userException", &e)),
    };
    let op = el.name.as_str();
    if el.ns.as_deref() != Some(CONSOLE_NS) || params(op).is_none() {
        return Ok(fault("Client", &format!("No such operation '{op}'")));
    }
    st.counters.call(op);
    let args = Args { el };
    // The login a call is about (for its faults): by name or by id.
    let login = {
        let inner = lock(&st.inner);
        let by_id = |id: i64| {
            inner
                .logins
                .iter()
                .find(|l| i64::try_from(l.id).ok() == Some(id))
                .map(|l| l.login.clone())
        };
        match op {
            "loginSearch" => Some(args.str("loginname")),
            "loginCreate" => Some(args.str("login")),
            _ if args.child("loginid").is_some() => by_id(args.long("loginid")),
            _ => None,
        }
    };
    let faults = st.faults_for(login.as_deref());
    if let Some(r) = super::transport_faults(&faults).await? {
        return Ok(r);
    }
    if let Err(e) = check_args(op, el) {
        return Ok(fault("Server.userException", &e));
    }
    let ret = if let Some(e) = st.take_forced_err(op, login.as_deref()) {
        if record_result(op) {
            nok_record(op, &e)
        } else {
            esc(&e)
        }
    } else if args.long("userid") != 0 {
        nok(op, "NOK:userid must be 0")
    } else if args.child("serviceid").is_some()
        && u64::try_from(args.long("serviceid")).ok() != Some(st.service_id)
    {
        nok(op, "NOK:srv unknown")
    } else {
        run(op, &args, st)
    };
    Ok(respond(StatusCode::OK, XML_CT, envelope(op, &ret)))
}

fn nok(op: &str, err: &str) -> String {
    if record_result(op) {
        nok_record(op, err)
    } else {
        esc(err)
    }
}

/// Page `items` with offset / nmax (nmax <= 0: the default page of 100).
fn page<X>(items: Vec<X>, offset: i64, nmax: i64) -> Vec<X> {
    let nmax = if nmax <= 0 { 100 } else { nmax as usize };
    items
        .into_iter()
        .skip(offset.max(0) as usize)
        .take(nmax)
        .collect()
}

fn sort(ls: &mut [&Login], sort: i64) -> bool {
    match sort {
        0 => {}
        1 => ls.sort_by(|a, b| a.login.cmp(&b.login)),
        2 => ls.sort_by(|a, b| b.login.cmp(&a.login)),
        3 => ls.sort_by(|a, b| a.name.cmp(&b.name)),
        4 => ls.sort_by(|a, b| b.name.cmp(&a.name)),
        5 => ls.sort_by(|a, b| a.mail.cmp(&b.mail)),
        6 => ls.sort_by(|a, b| b.mail.cmp(&a.mail)),
        _ => return false,
    }
    true
}

/// The common per-login columns of loginsQuery / loginSearch (id .. extrafields).
fn login_columns(r: &mut Rec, ls: &[&Login], now: u64, with_count: Option<usize>) {
    r.longs("id", ls.iter().map(|l| l.id as i64));
    if let Some(c) = with_count {
        r.long("count", c as i64);
    }
    r.strs("login", ls.iter().map(|l| l.login.as_str()));
    for l in ls {
        r.s("code", &l.code.wire(now));
    }
    r.longs("status", ls.iter().map(|l| i64::from(l.status)));
    r.longs("role", ls.iter().map(|l| i64::from(l.role)));
    r.strs("firstname", ls.iter().map(|l| l.firstname.as_str()));
    r.strs("name", ls.iter().map(|l| l.name.as_str()));
    r.strs("mail", ls.iter().map(|l| l.mail.as_str()));
    r.strs("phone", ls.iter().map(|l| l.phone.as_str()));
    r.strs("extrafields", ls.iter().map(|l| l.extrafields.as_str()));
}

/// loginQuery's tool block for one kind: `n<kind>` then its parallel arrays.
fn tool_block(r: &mut Rec, kind: &str, tools: &[&Tool]) {
    r.long(&format!("n{kind}"), tools.len() as i64);
    r.longs(&format!("{kind}id"), tools.iter().map(|t| t.cfg.id as i64));
    r.longs(
        &format!("{kind}state"),
        tools.iter().map(|t| i64::from(t.cfg.state)),
    );
    r.strs(
        &format!("{kind}name"),
        tools.iter().map(|t| t.cfg.name.as_str()),
    );
    r.strs(
        &format!("{kind}alias"),
        tools.iter().map(|t| t.cfg.alias.as_str()),
    );
    match kind {
        "ca" => {
            r.longs("cault", tools.iter().map(|_| 1));
        }
        "ma" | "mac" => {
            r.longs(
                &format!("{kind}pushenabled"),
                tools.iter().map(|t| i64::from(t.cfg.push_enabled)),
            );
        }
        _ => {}
    }
    r.longs(
        &format!("{kind}creationdate"),
        tools.iter().map(|t| t.created as i64),
    );
    r.longs(
        &format!("{kind}lastauthdate"),
        tools.iter().map(|t| t.last_auth as i64),
    );
}

fn login_query(l: &Login, now: u64) -> String {
    let mut r = Rec::default();
    r.s("err", "OK")
        .s("login", &l.login)
        .s("code", &l.code.wire(now))
        .long("status", i64::from(l.status))
        .long("role", i64::from(l.role))
        .s("firstname", &l.firstname)
        .s("name", &l.name)
        .s("mail", &l.mail)
        .s("extrafields", &l.extrafields)
        .long("createdby", i64::from(l.createdby))
        .long("lastauthdate", l.lastauthdate as i64);
    let pin = l.tools.iter().any(|t| t.cfg.state & 2 != 0);
    r.long("iwpinblocked", i64::from(pin))
        .long("iwpasswordblocked", 0)
        .long("macpasswordblocked", 0);
    for kind in TOOL_KINDS {
        let tools: Vec<&Tool> = l.tools.iter().filter(|t| t.cfg.kind == kind).collect();
        tool_block(&mut r, kind, &tools);
    }
    r.strs("longcode", l.longcode.as_deref());
    r.0
}

/// Validates loginCreate / loginUpdate's fields; Err: the NOK answer.
fn check_fields(a: &Args<'_>, status_role: bool) -> Result<(), &'static str> {
    if !valid_login(&a.str("login")) {
        return Err("NOK:login");
    }
    let names_ok = |s: &str| {
        s.chars().count() <= 255
            && s.chars()
                .all(|c| c.is_alphanumeric() || " .+-_'".contains(c))
    };
    if !names_ok(&a.str("firstname")) || !names_ok(&a.str("name")) {
        return Err("NOK:name");
    }
    if status_role && (!(0..=1).contains(&a.long("status")) || !(0..=2).contains(&a.long("role"))) {
        return Err("NOK:status or role");
    }
    Ok(())
}

fn run(op: &str, a: &Args<'_>, st: &TbState) -> String {
    let now = now_unix();
    let mut inner = lock(&st.inner);
    match op {
        "loginsQuery" | "loginSearch" => {
            let needle = a.str("loginname");
            let exact = a.long("exactmatch");
            if op == "loginSearch" && !(0..=1).contains(&exact) {
                return nok(op, "NOK:exactmatch");
            }
            let mut ls: Vec<&Login> = inner
                .logins
                .iter()
                .filter(|l| {
                    op == "loginsQuery"
                        || if exact == 1 {
                            l.login == needle
                        } else {
                            l.login.contains(&needle)
                        }
                })
                .collect();
            if !sort(&mut ls, a.long("sort")) {
                return nok(op, "NOK:sort");
            }
            let count = ls.len();
            let ls = page(ls, a.long("offset"), a.long("nmax"));
            let mut r = Rec::default();
            r.s("err", "OK").long("n", ls.len() as i64);
            if op == "loginsQuery" {
                login_columns(&mut r, &ls, now, Some(count));
                r.longs("createdby", ls.iter().map(|l| i64::from(l.createdby)));
                r.longs("lastauthdate", ls.iter().map(|l| l.lastauthdate as i64));
            } else {
                login_columns(&mut r, &ls, now, None);
                r.longs(
                    "activation_status",
                    ls.iter().map(|l| l.activation_status() as i64),
                );
            }
            r.0
        }
        "loginQuery" => match inner.by_id_mut(a.long("loginid") as u64) {
            Some(l) => login_query(l, now),
            None => nok(op, "NOK:loginid"),
        },
        "loginCreate" => {
            if let Err(e) = check_fields(a, true) {
                return nok(op, e);
            }
            let login = a.str("login");
            if inner.by_login(&login).is_some() {
                return nok(op, "NOK:loginexists");
            }
            if inner.logins.len() >= st.max_users {
                return nok(op, "NOK:full");
            }
            let access = a.long("access");
            let lang = a.str("lang");
            if !(0..=1).contains(&access) || !matches!(lang.as_str(), "" | "fr" | "en") {
                return nok(op, "NOK:access or lang");
            }
            let (code, state, longcode) = match a.long("codetype") {
                0 => {
                    let c = random_digits(9);
                    let s = CodeState::Active {
                        code: c.clone(),
                        until: now + THIRTY_MIN,
                    };
                    (c, s, None)
                }
                1 => {
                    let c = random_digits(9);
                    let s = CodeState::Inactive {
                        code: c.clone(),
                        until: now + THREE_WEEKS,
                    };
                    (c, s, None)
                }
                2 => {
                    let c = random_digits(24);
                    let s = CodeState::Link {
                        long: c.clone(),
                        until: now + THREE_WEEKS,
                    };
                    (c.clone(), s, Some(c))
                }
                _ => return nok(op, "NOK:codetype"),
            };
            let id = inner.next_id;
            inner.next_id += 1;
            let mut cfg = super::TbUserConfig::new(login);
            cfg.firstname = a.str("firstname");
            cfg.name = a.str("name");
            cfg.mail = a.str("mail");
            cfg.phone = a.str("phone");
            cfg.status = a.long("status") as u8;
            cfg.role = a.long("role") as u8;
            let mut l = Login::from_config(id, &cfg, now);
            l.extrafields = a.str("extrafields");
            l.createdby = 1;
            l.code = state;
            l.longcode = longcode;
            inner.logins.push(l);
            inner.reindex();
            let mut r = Rec::default();
            r.s("err", "OK").s("code", &code).long("id", id as i64);
            r.0
        }
        "loginUpdate" => {
            if let Err(e) = check_fields(a, true) {
                return esc(e);
            }
            let id = a.long("loginid") as u64;
            let login = a.str("login");
            if inner.by_login(&login).is_some_and(|l| l.id != id) {
                return esc("NOK:login already used");
            }
            let Some(l) = inner.by_id_mut(id) else {
                return esc("NOK:loginid");
            };
            l.login = login;
            l.firstname = a.str("firstname");
            l.name = a.str("name");
            l.mail = a.str("mail");
            l.phone = a.str("phone");
            l.status = a.long("status") as u8;
            l.role = a.long("role") as u8;
            l.extrafields = a.str("extrafields");
            inner.reindex();
            "OK".into()
        }
        "loginDelete" => {
            let id = a.long("loginid") as u64;
            let before = inner.logins.len();
            inner.logins.retain(|l| l.id != id);
            inner.reindex();
            if inner.logins.len() < before {
                "OK".into()
            } else {
                "NOK".into()
            }
        }
        "loginUpdateTool" | "loginDeleteTool" => {
            let kind = a.str("tooltype");
            if !TOOL_KINDS.contains(&kind.as_str()) {
                return esc("NOK:tooltype");
            }
            let id = a.long("toolid") as u64;
            let found = inner.logins.iter_mut().find_map(|l| {
                let i = l
                    .tools
                    .iter()
                    .position(|t| t.cfg.kind == kind && t.cfg.id == id)?;
                Some((l, i))
            });
            let Some((l, i)) = found else {
                return esc("NOK:toolid");
            };
            if op == "loginDeleteTool" {
                l.tools.remove(i);
            } else {
                l.tools[i].cfg.name = a.str("name");
            }
            "OK".into()
        }
        _ => {
            let Some(l) = inner.by_id_mut(a.long("loginid") as u64) else {
                return "NOK".into();
            };
            login_code_op(op, a, l, now)
        }
    }
}

/// The per-login code and unlock operations answering a string.
fn login_code_op(op: &str, a: &Args<'_>, l: &mut Login, now: u64) -> String {
    match op {
        "loginSendByMail" => {
            if l.mail.contains('@') {
                "OK".into()
            } else {
                "NOK".into()
            }
        }
        "loginActivateCode" => match &l.code {
            CodeState::Inactive { code, until } if *until > now => {
                let code = code.clone();
                l.code = CodeState::Active {
                    code: code.clone(),
                    until: now + THIRTY_MIN,
                };
                code
            }
            _ => "NOK".into(),
        },
        "loginRestore" => {
            let code = random_digits(9);
            l.code = CodeState::Active {
                code: code.clone(),
                until: now + THIRTY_MIN,
            };
            code
        }
        "loginResetPwd" => "OK".into(),
        "loginResetPwdExtended" | "loginAddDevice" => match a.long("codetype") {
            0 => random_digits(9),
            2 => {
                let long = random_digits(24);
                l.longcode = Some(long.clone());
                long
            }
            _ => "NOK:codetype".into(),
        },
        "loginResetPINErrorCounter" => {
            if l.pin_reset_used {
                return "NOK:already reset".into();
            }
            l.pin_reset_used = true;
            for t in &mut l.tools {
                t.cfg.state &= !2;
            }
            "OK".into()
        }
        _ => "NOK".into(),
    }
}
