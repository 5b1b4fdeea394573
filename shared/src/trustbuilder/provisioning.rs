//! The provisioning SOAP API (ConsoleAdmin, seed 003): typed requests out, typed results in.
//! Pure functions, no I/O. `userid` is always 0 (seed 003). Answers are Axis-style
//! `<opResponse><opReturn>`; list results are parallel arrays (repeated sibling elements,
//! `n` of each), read defensively: arrays whose lengths disagree are a protocol error.

use super::error::TbError;
use super::status::TbStatus;
use super::xml::{self, Element};

pub const OP_LOGIN_SEARCH: &str = "loginSearch";
pub const OP_LOGIN_QUERY: &str = "loginQuery";
pub const OP_LOGINS_QUERY: &str = "loginsQuery";
pub const OP_LOGIN_CREATE: &str = "loginCreate";
pub const OP_LOGIN_UPDATE: &str = "loginUpdate";
pub const OP_LOGIN_DELETE: &str = "loginDelete";
pub const OP_LOGIN_RESTORE: &str = "loginRestore";
pub const OP_LOGIN_SEND_BY_MAIL: &str = "loginSendByMail";
pub const OP_LOGIN_ACTIVATE_CODE: &str = "loginActivateCode";
pub const OP_LOGIN_RESET_PWD: &str = "loginResetPwd";
pub const OP_LOGIN_RESET_PWD_EXTENDED: &str = "loginResetPwdExtended";
pub const OP_LOGIN_RESET_PIN_ERROR_COUNTER: &str = "loginResetPINErrorCounter";
pub const OP_LOGIN_ADD_DEVICE: &str = "loginAddDevice";
pub const OP_LOGIN_UPDATE_TOOL: &str = "loginUpdateTool";
pub const OP_LOGIN_DELETE_TOOL: &str = "loginDeleteTool";

/// What list results and loginQuery both say about a login.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginAttributes {
    pub login: String,
    /// `ok`, `expired`, `in:<code>`, `link` or the activation code.
    pub code: Option<String>,
    /// 0 active, 1 blocked.
    pub status: Option<i64>,
    /// 0 user, 1 manager, 2 administrator.
    pub role: Option<i64>,
    pub firstname: Option<String>,
    pub name: Option<String>,
    pub mail: Option<String>,
    pub extrafields: Option<String>,
    /// 0 console, 1 API (loginsQuery, loginQuery).
    pub created_by: Option<i64>,
    /// Last successful authentication, a timestamp (0: none).
    pub last_auth_date: Option<i64>,
}

impl LoginAttributes {
    pub fn is_blocked(&self) -> bool {
        self.status == Some(1)
    }

    /// Reads the attributes through `text` (a field's value for this login).
    fn read(op: &str, text: impl Fn(&str) -> Option<String>) -> Result<Self, TbError> {
        Ok(LoginAttributes {
            login: text("login").unwrap_or_default(),
            code: text("code"),
            status: long(op, "status", text("status"))?,
            role: long(op, "role", text("role"))?,
            firstname: text("firstname"),
            name: text("name"),
            mail: text("mail"),
            extrafields: text("extrafields"),
            created_by: long(op, "createdby", text("createdby"))?,
            last_auth_date: long(op, "lastauthdate", text("lastauthdate"))?,
        })
    }

    /// The wire names of the fields [`read`](Self::read) reads.
    const FIELDS: [&'static str; 10] = [
        "login",
        "code",
        "status",
        "role",
        "firstname",
        "name",
        "mail",
        "extrafields",
        "createdby",
        "lastauthdate",
    ];
}

/// A login as list results give it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginEntry {
    pub id: i64,
    pub attributes: LoginAttributes,
    pub phone: Option<String>,
    /// loginSearch: mask of active tools (1 mobile app, 2 Helium, 4 Virtual Authenticator).
    pub activation_status: Option<i64>,
}

/// loginSearch / loginsQuery: one page of logins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginList {
    /// loginsQuery: the total number of logins (loginSearch: `None`).
    pub count: Option<i64>,
    pub logins: Vec<LoginEntry>,
}

/// The kinds of authentication tool (`tooltype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolKind {
    /// `ma`: TrustBuilder Authenticator (mobile app), mAccess Web.
    MobileApp,
    /// `ca`: Helium (desktop / browser token).
    Helium,
    /// `mac`: mAccess (SDK app).
    MAccess,
    /// `va`: Virtual Authenticator.
    Virtual,
}

impl ToolKind {
    /// The prefix of its arrays in loginQuery, and its `tooltype`.
    pub fn wire(self) -> &'static str {
        match self {
            ToolKind::MobileApp => "ma",
            ToolKind::Helium => "ca",
            ToolKind::MAccess => "mac",
            ToolKind::Virtual => "va",
        }
    }

    const ALL: [ToolKind; 4] = [
        ToolKind::MobileApp,
        ToolKind::Helium,
        ToolKind::MAccess,
        ToolKind::Virtual,
    ];
}

/// One tool of a login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub kind: ToolKind,
    pub id: i64,
    /// 0 active, 1 locked, 2 PIN-locked, 3 both.
    pub state: i64,
    pub name: Option<String>,
    /// Correlates with authenticateExtended's `alias`.
    pub alias: Option<String>,
    /// Mobile apps and mAccess: registered for push (`None` where the kind has no flag).
    pub push_enabled: Option<bool>,
    pub created: Option<i64>,
    pub last_auth: Option<i64>,
}

impl Tool {
    pub fn is_active(&self) -> bool {
        self.state == 0
    }

    /// Active and registered for push.
    pub fn can_push(&self) -> bool {
        self.is_active() && self.push_enabled == Some(true)
    }
}

/// loginQuery: one login and its tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginDetails {
    pub attributes: LoginAttributes,
    pub pin_blocked: bool,
    pub password_blocked: bool,
    pub maccess_password_blocked: bool,
    pub tools: Vec<Tool>,
    pub long_codes: Vec<String>,
}

/// loginCreate: the new login's id and activation code (or long code, `codetype` 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub id: i64,
    pub code: Option<String>,
}

/// loginCreate's and loginUpdate's fields. `status`: 0 active, 1 blocked; `role`: 0 user,
/// 1 manager, 2 administrator.
#[derive(Clone, Debug, Default)]
pub struct LoginFields<'a> {
    pub login: &'a str,
    pub firstname: Option<&'a str>,
    pub name: Option<&'a str>,
    pub mail: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub status: i64,
    pub role: i64,
    pub extrafields: Option<&'a str>,
}

/// How an activation (or unlock) code is issued: 0 valid at once for a short while, 1 inactive
/// until loginActivateCode (loginCreate only), 2 a link sent with loginSendByMail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeType {
    Immediate = 0,
    Inactive = 1,
    Link = 2,
}

// ---------------------------------------------------------------- rendering

fn n(v: i64) -> String {
    v.to_string()
}

fn opt(v: Option<&str>) -> String {
    v.unwrap_or_default().to_owned()
}

/// `loginSearch(userid=0, serviceid, loginname, exactmatch, offset, nmax, sort=0)`.
pub fn render_login_search(
    service_id: u64,
    login: &str,
    exact: bool,
    offset: i64,
    nmax: i64,
) -> String {
    xml::soap_request(
        OP_LOGIN_SEARCH,
        &[
            ("userid", n(0)),
            ("serviceid", service_id.to_string()),
            ("loginname", login.to_owned()),
            ("exactmatch", n(i64::from(exact))),
            ("offset", n(offset)),
            ("nmax", n(nmax)),
            ("sort", n(0)),
        ],
    )
}

/// `loginQuery(userid=0, loginid)`.
pub fn render_login_query(login_id: i64) -> String {
    xml::soap_request(
        OP_LOGIN_QUERY,
        &[("userid", n(0)), ("loginid", n(login_id))],
    )
}

/// `loginsQuery(userid=0, serviceid, offset, nmax, sort)`: one page (`sort` 0..=6, see seed
/// 003).
pub fn render_logins_query(service_id: u64, offset: i64, nmax: i64, sort: i64) -> String {
    xml::soap_request(
        OP_LOGINS_QUERY,
        &[
            ("userid", n(0)),
            ("serviceid", service_id.to_string()),
            ("offset", n(offset)),
            ("nmax", n(nmax)),
            ("sort", n(sort)),
        ],
    )
}

/// `loginCreate(userid=0, serviceid, login, firstname, name, mail, phone, status, role,
/// access, codetype, lang, extrafields)`.
pub fn render_login_create(
    service_id: u64,
    f: &LoginFields<'_>,
    access_bookmarks: bool,
    code_type: CodeType,
    lang: Option<&str>,
) -> String {
    xml::soap_request(
        OP_LOGIN_CREATE,
        &[
            ("userid", n(0)),
            ("serviceid", service_id.to_string()),
            ("login", f.login.to_owned()),
            ("firstname", opt(f.firstname)),
            ("name", opt(f.name)),
            ("mail", opt(f.mail)),
            ("phone", opt(f.phone)),
            ("status", n(f.status)),
            ("role", n(f.role)),
            ("access", n(i64::from(access_bookmarks))),
            ("codetype", n(code_type as i64)),
            ("lang", opt(lang)),
            ("extrafields", opt(f.extrafields)),
        ],
    )
}

/// `loginUpdate(userid=0, serviceid, loginid, login, firstname, name, mail, phone, status,
/// role, extrafields)`.
pub fn render_login_update(service_id: u64, login_id: i64, f: &LoginFields<'_>) -> String {
    xml::soap_request(
        OP_LOGIN_UPDATE,
        &[
            ("userid", n(0)),
            ("serviceid", service_id.to_string()),
            ("loginid", n(login_id)),
            ("login", f.login.to_owned()),
            ("firstname", opt(f.firstname)),
            ("name", opt(f.name)),
            ("mail", opt(f.mail)),
            ("phone", opt(f.phone)),
            ("status", n(f.status)),
            ("role", n(f.role)),
            ("extrafields", opt(f.extrafields)),
        ],
    )
}

/// The operations whose parameters are `(userid=0, serviceid, loginid)`: loginDelete,
/// loginRestore, loginSendByMail, loginActivateCode, loginResetPwd,
/// loginResetPINErrorCounter.
pub fn render_login_op(
    op: &'static str,
    service_id: u64,
    login_id: i64,
) -> Result<String, TbError> {
    if ![
        OP_LOGIN_DELETE,
        OP_LOGIN_RESTORE,
        OP_LOGIN_SEND_BY_MAIL,
        OP_LOGIN_ACTIVATE_CODE,
        OP_LOGIN_RESET_PWD,
        OP_LOGIN_RESET_PIN_ERROR_COUNTER,
    ]
    .contains(&op)
    {
        return Err(TbError::BadRequest {
            action: op,
            message: "not an operation on a login id".into(),
        });
    }
    Ok(xml::soap_request(
        op,
        &[
            ("userid", n(0)),
            ("serviceid", service_id.to_string()),
            ("loginid", n(login_id)),
        ],
    ))
}

/// `loginResetPwdExtended` / `loginAddDevice(userid=0, serviceid, loginid, codetype)`
/// (`codetype` 0 or 2).
pub fn render_login_code_op(
    op: &'static str,
    service_id: u64,
    login_id: i64,
    code_type: CodeType,
) -> Result<String, TbError> {
    if ![OP_LOGIN_RESET_PWD_EXTENDED, OP_LOGIN_ADD_DEVICE].contains(&op)
        || code_type == CodeType::Inactive
    {
        return Err(TbError::BadRequest {
            action: op,
            message: "only loginResetPwdExtended and loginAddDevice, with codetype 0 or 2".into(),
        });
    }
    Ok(xml::soap_request(
        op,
        &[
            ("userid", n(0)),
            ("serviceid", service_id.to_string()),
            ("loginid", n(login_id)),
            ("codetype", n(code_type as i64)),
        ],
    ))
}

/// `loginUpdateTool(userid=0, serviceid, toolid, tooltype, name)`: renames a tool.
pub fn render_login_update_tool(
    service_id: u64,
    kind: ToolKind,
    tool_id: i64,
    name: &str,
) -> String {
    xml::soap_request(
        OP_LOGIN_UPDATE_TOOL,
        &[
            ("userid", n(0)),
            ("serviceid", service_id.to_string()),
            ("toolid", n(tool_id)),
            ("tooltype", kind.wire().to_owned()),
            ("name", name.to_owned()),
        ],
    )
}

/// `loginDeleteTool(userid=0, serviceid, toolid, tooltype)`.
pub fn render_login_delete_tool(service_id: u64, kind: ToolKind, tool_id: i64) -> String {
    xml::soap_request(
        OP_LOGIN_DELETE_TOOL,
        &[
            ("userid", n(0)),
            ("serviceid", service_id.to_string()),
            ("toolid", n(tool_id)),
            ("tooltype", kind.wire().to_owned()),
        ],
    )
}

// ---------------------------------------------------------------- parsing

fn ret(body: &[u8], op: &str) -> Result<Element, TbError> {
    xml::soap_return(body, op).map_err(|e| TbError::protocol(format!("{op}: {e}")))
}

/// The `err` of a result record: `Ok(())` for `OK`, a `Rejected` for `NOK*`.
fn check_err(r: &Element, op: &'static str) -> Result<(), TbError> {
    let err = r
        .text_of("err")
        .ok_or_else(|| TbError::protocol(format!("{op}: the result has no err")))?;
    ok_or_rejected(&err, op)
}

fn ok_or_rejected(err: &str, op: &'static str) -> Result<(), TbError> {
    match TbStatus::parse(err) {
        Some(TbStatus::Ok) => Ok(()),
        Some(status) => Err(TbError::Rejected {
            action: op,
            status,
            session_id: None,
        }),
        None => Err(TbError::protocol(format!(
            "{op}: err {:?} is not OK or NOK",
            xml::truncate(err, 80)
        ))),
    }
}

fn long(op: &str, field: &str, v: Option<String>) -> Result<Option<i64>, TbError> {
    v.map(|s| {
        s.parse::<i64>().map_err(|_| {
            TbError::protocol(format!(
                "{op}: {field} {:?} is not a number",
                xml::truncate(&s, 40)
            ))
        })
    })
    .transpose()
}

/// Reads the parallel arrays of one result.
struct Columns<'a> {
    node: &'a Element,
    op: &'static str,
}

impl Columns<'_> {
    /// The `n` values of array `field`: exactly `n` elements, or none at all when `optional`
    /// (an array the service leaves out). Any other count is a protocol error.
    fn texts(&self, field: &str, n: usize, optional: bool) -> Result<Vec<Option<String>>, TbError> {
        let values: Vec<Option<String>> = self.node.named(field).map(Element::value).collect();
        if values.len() == n {
            return Ok(values);
        }
        if values.is_empty() && optional {
            return Ok(vec![None; n]);
        }
        Err(TbError::protocol(format!(
            "{}: {} {field} value(s) where the count says {n} (parallel arrays disagree)",
            self.op,
            values.len()
        )))
    }

    fn longs(&self, field: &str, n: usize, optional: bool) -> Result<Vec<Option<i64>>, TbError> {
        self.texts(field, n, optional)?
            .into_iter()
            .map(|v| long(self.op, field, v))
            .collect()
    }

    /// A required array: every value present.
    fn required_longs(&self, field: &str, n: usize) -> Result<Vec<i64>, TbError> {
        self.longs(field, n, false)?
            .into_iter()
            .map(|v| {
                v.ok_or_else(|| {
                    TbError::protocol(format!("{}: a {field} value is missing", self.op))
                })
            })
            .collect()
    }

    /// A scalar count (`n`, `nma`...): absent or nil is 0, negative is a protocol error.
    fn count(&self, field: &str) -> Result<usize, TbError> {
        let v = long(self.op, field, self.node.text_of(field))?.unwrap_or(0);
        usize::try_from(v).map_err(|_| TbError::protocol(format!("{}: {field} is {v}", self.op)))
    }
}

fn login_list(body: &[u8], op: &'static str) -> Result<LoginList, TbError> {
    let r = ret(body, op)?;
    check_err(&r, op)?;
    let c = Columns { node: &r, op };
    let n = c.count("n")?;
    let ids = c.required_longs("id", n)?;
    // `login` is required (n values); the other attributes may be left out entirely.
    let mut columns = Vec::new();
    for field in LoginAttributes::FIELDS {
        columns.push((field, c.texts(field, n, field != "login")?));
    }
    let phone = c.texts("phone", n, true)?;
    let activation = c.longs("activation_status", n, true)?;
    let mut out = Vec::with_capacity(n);
    for (i, id) in ids.into_iter().enumerate() {
        let text = |f: &str| {
            columns
                .iter()
                .find(|(name, _)| *name == f)
                .and_then(|(_, values)| values.get(i).cloned().flatten())
        };
        out.push(LoginEntry {
            id,
            attributes: LoginAttributes::read(op, text)?,
            phone: phone[i].clone(),
            activation_status: activation[i],
        });
    }
    Ok(LoginList {
        count: long(op, "count", r.text_of("count"))?,
        logins: out,
    })
}

/// loginSearch's result.
pub fn parse_login_search(body: &[u8]) -> Result<LoginList, TbError> {
    login_list(body, OP_LOGIN_SEARCH)
}

/// loginsQuery's result (one page; `count` is the total).
pub fn parse_logins_query(body: &[u8]) -> Result<LoginList, TbError> {
    login_list(body, OP_LOGINS_QUERY)
}

/// loginQuery's result: the login and its tools (`ma*`, `ca*`, `mac*`, `va*` arrays, each as
/// long as its count `nma`, `nca`, `nmac`, `nva`).
pub fn parse_login_query(body: &[u8]) -> Result<LoginDetails, TbError> {
    let op = OP_LOGIN_QUERY;
    let r = ret(body, op)?;
    check_err(&r, op)?;
    let c = Columns { node: &r, op };
    let flag = |field: &str| -> Result<bool, TbError> {
        Ok(long(op, field, r.text_of(field))?.unwrap_or(0) != 0)
    };
    let mut tools = Vec::new();
    for kind in ToolKind::ALL {
        let p = kind.wire();
        let count = c.count(&format!("n{p}"))?;
        let ids = c.required_longs(&format!("{p}id"), count)?;
        let states = c.required_longs(&format!("{p}state"), count)?;
        let names = c.texts(&format!("{p}name"), count, true)?;
        let aliases = c.texts(&format!("{p}alias"), count, true)?;
        let push = match kind {
            ToolKind::MobileApp | ToolKind::MAccess => {
                c.longs(&format!("{p}pushenabled"), count, true)?
            }
            ToolKind::Helium | ToolKind::Virtual => vec![None; count],
        };
        let created = c.longs(&format!("{p}creationdate"), count, true)?;
        let last = c.longs(&format!("{p}lastauthdate"), count, true)?;
        for i in 0..count {
            tools.push(Tool {
                kind,
                id: ids[i],
                state: states[i],
                name: names[i].clone(),
                alias: aliases[i].clone(),
                push_enabled: push[i].map(|v| v != 0),
                created: created[i],
                last_auth: last[i],
            });
        }
    }
    Ok(LoginDetails {
        attributes: LoginAttributes::read(op, |f| r.text_of(f))?,
        pin_blocked: flag("iwpinblocked")?,
        password_blocked: flag("iwpasswordblocked")?,
        maccess_password_blocked: flag("macpasswordblocked")?,
        tools,
        long_codes: r.named("longcode").filter_map(Element::value).collect(),
    })
}

/// loginCreate's result: `NOK:full`, `NOK:loginexists` ... are `Rejected`.
pub fn parse_login_create(body: &[u8]) -> Result<Created, TbError> {
    let op = OP_LOGIN_CREATE;
    let r = ret(body, op)?;
    check_err(&r, op)?;
    let id = long(op, "id", r.text_of("id"))?
        .ok_or_else(|| TbError::protocol("loginCreate: OK without an id"))?;
    Ok(Created {
        id,
        code: r.text_of("code"),
    })
}

/// The string `{op}Return` of the operations that answer one (`OK`, a code, or `NOK*`).
pub fn parse_string_return(body: &[u8], op: &'static str) -> Result<String, TbError> {
    ret(body, op)?
        .value()
        .ok_or_else(|| TbError::protocol(format!("{op}: empty {op}Return")))
}

/// loginUpdate, loginDelete, loginSendByMail, loginResetPwd, loginResetPINErrorCounter,
/// loginUpdateTool, loginDeleteTool: `OK`, or `Rejected` with the cause.
pub fn parse_ok(body: &[u8], op: &'static str) -> Result<(), TbError> {
    ok_or_rejected(&parse_string_return(body, op)?, op)
}

/// loginRestore, loginActivateCode, loginResetPwdExtended, loginAddDevice: the code they
/// return, or `Rejected` (`NOK`, `NOK:<cause>`).
pub fn parse_code(body: &[u8], op: &'static str) -> Result<String, TbError> {
    let text = parse_string_return(body, op)?;
    if text.to_ascii_lowercase().starts_with("nok") {
        ok_or_rejected(&text, op)?;
    }
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::https::FailureClass;

    fn envelope(op: &str, inner: &str) -> Vec<u8> {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
             xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>\
             <ns1:{op}Response xmlns:ns1=\"http://console.inwebo.com\"><{op}Return>{inner}\
             </{op}Return></ns1:{op}Response></soapenv:Body></soapenv:Envelope>"
        )
        .into_bytes()
    }

    #[test]
    fn requests_are_axis_wrapped_with_userid_0() {
        assert_eq!(
            render_login_search(1234, "user+tag@example.com", true, 0, 10),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:con=\"http://console.inwebo.com\"><soapenv:Header/><soapenv:Body><con:loginSearch><userid>0</userid><serviceid>1234</serviceid><loginname>user+tag@example.com</loginname><exactmatch>1</exactmatch><offset>0</offset><nmax>10</nmax><sort>0</sort></con:loginSearch></soapenv:Body></soapenv:Envelope>"
        );
        assert!(render_login_query(42)
            .contains("<con:loginQuery><userid>0</userid><loginid>42</loginid></con:loginQuery>"));
        let f = LoginFields {
            login: "a&b<c",
            mail: Some("a@example.com"),
            ..LoginFields::default()
        };
        let body = render_login_create(7, &f, true, CodeType::Inactive, Some("en"));
        assert!(body.contains("<login>a&amp;b&lt;c</login><firstname></firstname><name></name><mail>a@example.com</mail><phone></phone><status>0</status><role>0</role><access>1</access><codetype>1</codetype><lang>en</lang><extrafields></extrafields>"), "{body}");
        assert!(render_login_update(7, 9, &f)
            .contains("<serviceid>7</serviceid><loginid>9</loginid><login>a&amp;b&lt;c</login>"));
        assert!(render_login_op(OP_LOGIN_DELETE, 7, 9).unwrap().contains("<con:loginDelete><userid>0</userid><serviceid>7</serviceid><loginid>9</loginid></con:loginDelete>"));
        assert!(render_login_op(OP_LOGIN_UPDATE_TOOL, 7, 9).is_err());
        assert!(
            render_login_code_op(OP_LOGIN_ADD_DEVICE, 7, 9, CodeType::Link)
                .unwrap()
                .contains("<codetype>2</codetype>")
        );
        assert!(render_login_code_op(OP_LOGIN_ADD_DEVICE, 7, 9, CodeType::Inactive).is_err());
        assert!(render_login_update_tool(7, ToolKind::MAccess, 5, "phone")
            .contains("<toolid>5</toolid><tooltype>mac</tooltype><name>phone</name>"));
        assert!(render_login_delete_tool(7, ToolKind::Virtual, 5)
            .contains("<tooltype>va</tooltype></con:loginDeleteTool>"));
        assert!(render_logins_query(7, 100, 100, 1)
            .contains("<offset>100</offset><nmax>100</nmax><sort>1</sort>"));
    }

    #[test]
    fn login_search_reads_parallel_arrays() {
        let body = envelope(
            "loginSearch",
            "<err>OK</err><n>2</n><id>11</id><id>12</id><login>alice</login><login>Alice2</login>\
             <code>ok</code><code xsi:nil=\"true\"/><status>0</status><status>1</status>\
             <role>0</role><role>2</role><activation_status>1</activation_status><activation_status>0</activation_status>",
        );
        let l = parse_login_search(&body).unwrap();
        assert_eq!(l.logins.len(), 2);
        assert_eq!(l.logins[0].id, 11);
        assert_eq!(l.logins[0].attributes.code.as_deref(), Some("ok"));
        assert_eq!(l.logins[1].attributes.code, None);
        assert!(l.logins[1].attributes.is_blocked());
        assert_eq!(l.logins[1].attributes.role, Some(2));
        assert_eq!(l.logins[0].attributes.mail, None);
        let none = parse_login_search(&envelope("loginSearch", "<err>OK</err><n>0</n>")).unwrap();
        assert!(none.logins.is_empty());
    }

    #[test]
    fn disagreeing_arrays_are_a_protocol_error_not_a_panic() {
        for inner in [
            "<err>OK</err><n>2</n><id>11</id><login>a</login><login>b</login>",
            "<err>OK</err><n>1</n><id>11</id><id>12</id><login>a</login>",
            "<err>OK</err><n>1</n><id>11</id><login>a</login><status>0</status><status>1</status>",
            "<err>OK</err><n>-1</n>",
            "<err>OK</err><n>1</n><id>x</id><login>a</login>",
            "<err>OK</err><n>1</n><id xsi:nil=\"true\"/><login>a</login>",
        ] {
            let e = parse_login_search(&envelope("loginSearch", inner)).unwrap_err();
            assert_eq!(e.class(), FailureClass::Misconfigured, "{inner}: {e}");
        }
        let e = parse_login_query(&envelope(
            "loginQuery",
            "<err>OK</err><login>a</login><nma>2</nma><maid>1</maid><mastate>0</mastate>",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("parallel arrays disagree"), "{e}");
    }

    #[test]
    fn login_query_lists_tools() {
        let body = envelope(
            "loginQuery",
            "<err>OK</err><login>alice</login><code>ok</code><status>0</status><role>0</role>\
             <firstname xsi:nil=\"true\"/><lastauthdate>0</lastauthdate><iwpinblocked>0</iwpinblocked>\
             <nca>1</nca><caid>5</caid><castate>3</castate><caname>laptop</caname><caalias xsi:nil=\"true\"/>\
             <nma>1</nma><maid>7</maid><mastate>0</mastate><maname>iPhone</maname><maalias>f958</maalias>\
             <mapushenabled>1</mapushenabled><macreationdate>1700000000</macreationdate><malastauthdate>0</malastauthdate>\
             <nmac>1</nmac><macid>8</macid><macstate>2</macstate><macpushenabled>1</macpushenabled>\
             <nva>0</nva>",
        );
        let d = parse_login_query(&body).unwrap();
        assert_eq!(d.attributes.login, "alice");
        assert_eq!(d.attributes.firstname, None);
        assert_eq!(d.tools.len(), 3);
        let ma = d
            .tools
            .iter()
            .find(|t| t.kind == ToolKind::MobileApp)
            .unwrap();
        assert!(ma.can_push());
        assert_eq!(ma.alias.as_deref(), Some("f958"));
        let ca = d.tools.iter().find(|t| t.kind == ToolKind::Helium).unwrap();
        assert!(!ca.is_active());
        assert_eq!(ca.push_enabled, None);
        let mac = d
            .tools
            .iter()
            .find(|t| t.kind == ToolKind::MAccess)
            .unwrap();
        // PIN-locked: not active, so no push either.
        assert!(!mac.can_push());
        // No tool at all.
        let d = parse_login_query(&envelope(
            "loginQuery",
            "<err>OK</err><login>bob</login><nma>0</nma><nca xsi:nil=\"true\"/>",
        ))
        .unwrap();
        assert!(d.tools.is_empty());
    }

    #[test]
    fn results_and_refusals() {
        let e =
            parse_login_search(&envelope("loginSearch", "<err>NOK:srv unknown</err>")).unwrap_err();
        assert_eq!(e.class(), FailureClass::Misconfigured);
        let c = parse_login_create(&envelope(
            "loginCreate",
            "<err>OK</err><code>123456789</code><id>99</id>",
        ))
        .unwrap();
        assert_eq!(
            c,
            Created {
                id: 99,
                code: Some("123456789".into())
            }
        );
        let e = parse_login_create(&envelope(
            "loginCreate",
            "<err>NOK:loginexists</err><id>0</id>",
        ))
        .unwrap_err();
        assert_eq!(e.status(), Some(&TbStatus::Other("NOK:loginexists".into())));
        parse_ok(&envelope("loginUpdate", "OK"), OP_LOGIN_UPDATE).unwrap();
        let e = parse_ok(
            &envelope("loginUpdate", "NOK:login already used"),
            OP_LOGIN_UPDATE,
        )
        .unwrap_err();
        assert_eq!(e.class(), FailureClass::Answered);
        assert_eq!(
            parse_code(&envelope("loginRestore", "123456789"), OP_LOGIN_RESTORE).unwrap(),
            "123456789"
        );
        assert!(parse_code(
            &envelope("loginAddDevice", "NOK:NoPassword"),
            OP_LOGIN_ADD_DEVICE
        )
        .is_err());
        assert!(parse_code(
            &envelope("loginActivateCode", "NOK"),
            OP_LOGIN_ACTIVATE_CODE
        )
        .is_err());
        let l = parse_logins_query(&envelope("loginsQuery", "<err>OK</err><n>1</n><id>1</id><count>250</count><login>a</login><createdby>1</createdby><lastauthdate>1700000000</lastauthdate>")).unwrap();
        assert_eq!(l.count, Some(250));
        assert_eq!(l.logins[0].attributes.created_by, Some(1));
    }

    #[test]
    fn not_the_api_is_a_protocol_error() {
        for body in [
            &b"<html/>"[..],
            b"",
            b"<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>bad</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
            b"<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><x:loginSearchResponse xmlns:x=\"urn:other\"><loginSearchReturn/></x:loginSearchResponse></soapenv:Body></soapenv:Envelope>",
            b"<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><loginQueryResponse/></soapenv:Body></soapenv:Envelope>",
        ] {
            let e = parse_login_search(body).unwrap_err();
            assert_eq!(e.class(), FailureClass::Misconfigured, "{e}");
        }
    }
}
