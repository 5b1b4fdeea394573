//! `vip-bridge admin` with `backend = "trustbuilder"`: the help desk's commands over
//! TrustBuilder's provisioning API (seed 003: the ConsoleAdmin SOAP operations), with the
//! `[trustbuilder]` section's service and certificate.
//!
//! A command names a login; it is looked up with loginSearch (exact match) for its numeric id,
//! and read with loginQuery where the command needs its fields or tools. Not found (exit status
//! 3): no such login, no such tool. TrustBuilder has no request ids: replies carry none.
//! Activation, restore and recovery codes are printed once, by the command that asked for them
//! (`user show` and `user list` only say whether one is pending), and never logged.

use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{json, Value};
use vip_core::config::BackendKind;
use vip_core::trustbuilder::{
    CodeType, LoginAttributes, LoginDetails, LoginEntry, LoginFields, TbError, TbStatus, Tool,
    ToolKind, TrustBuilderClient, TrustBuilderConfig, OP_LOGIN_ACTIVATE_CODE, OP_LOGIN_ADD_DEVICE,
    OP_LOGIN_DELETE, OP_LOGIN_RESET_PIN_ERROR_COUNTER, OP_LOGIN_RESET_PWD_EXTENDED,
    OP_LOGIN_RESTORE, OP_LOGIN_SEND_BY_MAIL,
};

use super::{Failed, Failure, Reply};
use crate::cli::{
    ActivationArg, AdminCommand, CredentialCommand, LoginDetailsArgs, PinCommand, SortArg,
    UserCommand, UserStatusArg,
};
use crate::error::Error;

type Outcome = std::result::Result<Reply, Failed>;

/// The login `check` looks up (nobody has it: a service that answers is enough).
const CHECK_LOGIN: &str = "vip-bridge-admin-check";

impl From<TbError> for Failed {
    fn from(e: TbError) -> Self {
        Failed::Remote(failure(&e))
    }
}

/// TrustBuilder's refusal (its `NOK:<cause>` in the message and `status`), or why it could not
/// be asked.
fn failure(e: &TbError) -> Failure {
    let status = e.status();
    let hint = match status {
        Some(TbStatus::ServiceUnknown | TbStatus::AccessForbidden) => {
            "; check trustbuilder.service_id and the certificate"
        }
        _ => "",
    };
    Failure {
        message: format!("{e}{hint}"),
        not_found: status.is_some_and(is_not_found),
        status: status.map(|s| s.as_str().into_owned()),
        request_id: None,
    }
}

/// TrustBuilder's answers for a login or tool that is not there (deleted between our lookup
/// and the call).
fn is_not_found(status: &TbStatus) -> bool {
    match status {
        TbStatus::AccountUnknown => true,
        TbStatus::Other(s) => ["NOK:loginid", "NOK:toolid"]
            .iter()
            .any(|n| s.eq_ignore_ascii_case(n)),
        _ => false,
    }
}

fn not_found(message: String) -> Failed {
    Failed::Remote(Failure {
        message,
        not_found: true,
        status: None,
        request_id: None,
    })
}

fn local(message: String) -> Failed {
    Failed::Local(Error::Check(message))
}

/// Runs one command with TrustBuilder (`super::run` has refused the commands and options only
/// VIP has).
pub(super) async fn run(cfg: Option<&TrustBuilderConfig>, command: AdminCommand) -> Outcome {
    let cfg = cfg.ok_or_else(|| {
        local("backend = \"trustbuilder\" needs a [trustbuilder] section".to_owned())
    })?;
    let tb = TrustBuilderClient::new(cfg).map_err(|e| local(e.to_string()))?;
    dispatch(&tb, command).await
}

async fn dispatch(tb: &TrustBuilderClient, command: AdminCommand) -> Outcome {
    match command {
        AdminCommand::User(UserCommand::Show { user }) => user_show(tb, &user).await,
        AdminCommand::User(UserCommand::List {
            offset,
            limit,
            sort,
            desc,
        }) => user_list(tb, offset, limit, sort_code(sort, desc)).await,
        AdminCommand::User(UserCommand::Create {
            user,
            details,
            activation,
            ..
        }) => user_create(tb, &user, &details, activation).await,
        AdminCommand::User(UserCommand::Update {
            user,
            new_id,
            status,
            details,
            ..
        }) => {
            let changes = Changes {
                new_login: new_id.as_deref(),
                status: status.map(|s| match s {
                    UserStatusArg::Active => 0,
                    UserStatusArg::Disabled | UserStatusArg::Blocked => 1,
                }),
                details: &details,
            };
            user_update(tb, &user, &changes).await
        }
        AdminCommand::User(UserCommand::Delete { user, yes }) => {
            if !yes {
                return Err(local(format!(
                    "deleting {user} removes the login and every tool it activated, and cannot be undone: add --yes"
                )));
            }
            let entry = login_op(tb, &user, OP_LOGIN_DELETE).await?;
            Ok(login_reply(&entry)
                .line(format!(
                    "deleted {user} (login id {}) and its tools",
                    entry.id
                ))
                .field("deleted", true))
        }
        AdminCommand::User(UserCommand::Restore { user }) => issue_code(tb, &user, &RESTORE).await,
        AdminCommand::User(UserCommand::SendActivation { user }) => {
            let entry = login_op(tb, &user, OP_LOGIN_SEND_BY_MAIL).await?;
            let to = entry
                .attributes
                .mail
                .as_deref()
                .unwrap_or("its mail address");
            Ok(login_reply(&entry)
                .line(format!(
                    "TrustBuilder mailed {user}'s activation link to {to}"
                ))
                .field("mailed", true))
        }
        AdminCommand::User(UserCommand::ActivateCode { user }) => {
            issue_code(tb, &user, &ACTIVATE_CODE).await
        }
        AdminCommand::User(UserCommand::NewCode { user }) => {
            issue_code(tb, &user, &NEW_DEVICE_CODE).await
        }
        AdminCommand::User(UserCommand::ResetPassword { user }) => {
            issue_code(tb, &user, &RECOVERY_CODE).await
        }
        AdminCommand::Pin(PinCommand::Unlock { user }) => {
            let entry = login_op(tb, &user, OP_LOGIN_RESET_PIN_ERROR_COUNTER).await?;
            Ok(login_reply(&entry)
                .line(format!(
                    "reset the PIN error counter of {user} (allowed once until they next log in)"
                ))
                .field("unlocked", true))
        }
        AdminCommand::Credential(CredentialCommand::List { user }) => {
            let (entry, details) = query(tb, &user).await?;
            let mut reply = login_reply(&entry);
            if details.tools.is_empty() {
                reply = reply.line(format!("{user} has no tools"));
            }
            for t in &details.tools {
                reply = reply.line(tool_line(t));
            }
            Ok(reply.field("tools", tools_json(&details.tools)))
        }
        AdminCommand::Credential(CredentialCommand::Rename {
            user,
            credential,
            name,
            ..
        }) => {
            let (entry, tool) = find_tool(tb, &user, &credential).await?;
            tb.login_update_tool(tool.kind, tool.id, &name).await?;
            Ok(login_reply(&entry)
                .line(format!(
                    "{} {} of {user} is now named {name:?}",
                    kind_name(tool.kind),
                    tool.id
                ))
                .field("tool", tool_json(&tool))
                .field("new_name", name.as_str()))
        }
        AdminCommand::Credential(CredentialCommand::Remove {
            user, credential, ..
        }) => {
            let (entry, tool) = find_tool(tb, &user, &credential).await?;
            tb.login_delete_tool(tool.kind, tool.id).await?;
            Ok(login_reply(&entry)
                .line(format!(
                    "removed {} {} from {user}",
                    kind_name(tool.kind),
                    tool.id
                ))
                .field("tool", tool_json(&tool))
                .field("removed", true))
        }
        AdminCommand::Check => {
            let started = Instant::now();
            tb.probe().await?;
            let rest_ms = started.elapsed().as_millis() as u64;
            let started = Instant::now();
            tb.login_search(CHECK_LOGIN).await?;
            let soap_ms = started.elapsed().as_millis() as u64;
            Ok(Reply::untracked()
                .line(format!(
                    "TrustBuilder service {}: authentication API OK in {rest_ms} ms, \
                     provisioning API (loginSearch) OK in {soap_ms} ms",
                    tb.service_id()
                ))
                .field("service_id", tb.service_id())
                .field("authentication_ms", rest_ms)
                .field("provisioning_ms", soap_ms))
        }
        // VIP's: refused by `super::run`.
        AdminCommand::TempCode(_)
        | AdminCommand::Pin(PinCommand::Clear { .. })
        | AdminCommand::Sms(_)
        | AdminCommand::Voice(_)
        | AdminCommand::ServerTime
        | AdminCommand::Import(_)
        | AdminCommand::Credential(CredentialCommand::Add { .. }) => {
            Err(super::only_on(BackendKind::Vip, "this command"))
        }
    }
}

/// An operation on a login id that answers `OK` (loginDelete, loginSendByMail,
/// loginResetPINErrorCounter), on the login named: its entry.
async fn login_op(
    tb: &TrustBuilderClient,
    login: &str,
    op: &'static str,
) -> std::result::Result<LoginEntry, Failed> {
    let entry = find(tb, login).await?;
    tb.login_op(op, entry.id).await?;
    Ok(entry)
}

/// A command that asks TrustBuilder for a code and prints it once.
struct CodeCommand {
    op: &'static str,
    /// loginResetPwdExtended and loginAddDevice take a codetype; loginRestore and
    /// loginActivateCode do not.
    code_type: Option<CodeType>,
    what: &'static str,
    validity: &'static str,
}

const RESTORE: CodeCommand = CodeCommand {
    op: OP_LOGIN_RESTORE,
    code_type: None,
    what: "restore code",
    validity: "valid at once, for 30 minutes; once used, the login's other tools are deleted",
};

const ACTIVATE_CODE: CodeCommand = CodeCommand {
    op: OP_LOGIN_ACTIVATE_CODE,
    code_type: None,
    what: "activation code (now active)",
    validity: "type it in a TrustBuilder app",
};

const NEW_DEVICE_CODE: CodeCommand = CodeCommand {
    op: OP_LOGIN_ADD_DEVICE,
    code_type: Some(CodeType::Immediate),
    what: "activation code for another device",
    validity: "valid at once, for a short while",
};

const RECOVERY_CODE: CodeCommand = CodeCommand {
    op: OP_LOGIN_RESET_PWD_EXTENDED,
    code_type: Some(CodeType::Immediate),
    what: "recovery code",
    validity: "valid 15 minutes; typed in the blocked device, it resets its password or PIN",
};

async fn issue_code(tb: &TrustBuilderClient, login: &str, c: &CodeCommand) -> Outcome {
    let entry = find(tb, login).await?;
    let code = match c.code_type {
        None => tb.login_code(c.op, entry.id).await?,
        Some(t) => tb.login_new_code(c.op, entry.id, t).await?,
    };
    Ok(code_reply(&entry, c.what, &code, c.validity))
}

/// loginSearch with an exact match: the login's entry (its id, status, names, phone).
async fn find(tb: &TrustBuilderClient, login: &str) -> std::result::Result<LoginEntry, Failed> {
    let list = tb.login_search(login).await?;
    pick_login(list.logins, login).ok_or_else(|| {
        not_found(format!(
            "TrustBuilder has no login {login:?} in service {} (loginSearch)",
            tb.service_id()
        ))
    })
}

/// The login an exact loginSearch answered: the one spelled the same, else the only one.
fn pick_login(logins: Vec<LoginEntry>, login: &str) -> Option<LoginEntry> {
    if logins.len() == 1 {
        return logins.into_iter().next();
    }
    logins.into_iter().find(|l| l.attributes.login == login)
}

/// loginSearch then loginQuery: the login and its tools.
async fn query(
    tb: &TrustBuilderClient,
    login: &str,
) -> std::result::Result<(LoginEntry, LoginDetails), Failed> {
    let entry = find(tb, login).await?;
    let details = tb.login_query(entry.id).await?;
    Ok((entry, details))
}

async fn find_tool(
    tb: &TrustBuilderClient,
    login: &str,
    reference: &str,
) -> std::result::Result<(LoginEntry, Tool), Failed> {
    let wanted = parse_tool_ref(reference).map_err(local)?;
    let (entry, details) = query(tb, login).await?;
    match pick_tool(&details.tools, wanted) {
        ToolPick::One(t) => Ok((entry, t.clone())),
        ToolPick::None => Err(not_found(format!(
            "{login} has no tool {reference} (loginQuery; `credential list {login}` shows its tools)"
        ))),
        ToolPick::Several(kinds) => Err(local(format!(
            "{login} has several tools numbered {}: give one of {}",
            wanted.1,
            kinds
                .iter()
                .map(|k| format!("{}:{}", k.wire(), wanted.1))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The tool kinds, by the `tooltype` seed 003 names them.
const KINDS: [ToolKind; 4] = [
    ToolKind::MobileApp,
    ToolKind::Helium,
    ToolKind::MAccess,
    ToolKind::Virtual,
];

/// A tool as the command line names it: `501`, or `ma:501` (ids are unique per kind only).
fn parse_tool_ref(s: &str) -> std::result::Result<(Option<ToolKind>, i64), String> {
    let (kind, id) = match s.split_once(':') {
        Some((k, id)) => {
            let kind = KINDS
                .into_iter()
                .find(|kind| kind.wire().eq_ignore_ascii_case(k.trim()))
                .ok_or_else(|| {
                    format!("{s:?}: a tool is NUMBER or KIND:NUMBER, KIND one of ma, ca, mac, va")
                })?;
            (Some(kind), id)
        }
        None => (None, s),
    };
    let id = id.trim().parse::<i64>().map_err(|_| {
        format!("{s:?}: a TrustBuilder tool id is a number (see `credential list`)")
    })?;
    Ok((kind, id))
}

#[derive(Debug, PartialEq)]
enum ToolPick<'a> {
    One(&'a Tool),
    None,
    /// The id names tools of these kinds.
    Several(Vec<ToolKind>),
}

fn pick_tool(tools: &[Tool], (kind, id): (Option<ToolKind>, i64)) -> ToolPick<'_> {
    let found: Vec<&Tool> = tools
        .iter()
        .filter(|t| t.id == id && kind.is_none_or(|k| k == t.kind))
        .collect();
    match found.as_slice() {
        [] => ToolPick::None,
        [one] => ToolPick::One(one),
        many => ToolPick::Several(many.iter().map(|t| t.kind).collect()),
    }
}

/// `user list --sort` as loginsQuery's `sort` (seed 003: 0 none, 1/2 login, 3/4 name, 5/6
/// mail, ascending/descending).
fn sort_code(sort: Option<SortArg>, desc: bool) -> i64 {
    let base = match sort {
        None => return 0,
        Some(SortArg::Login) => 1,
        Some(SortArg::Name) => 3,
        Some(SortArg::Mail) => 5,
    };
    base + i64::from(desc)
}

// ---------------------------------------------------------------- what a login is

/// The state of a login's activation code (the `code` field), never the code itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activation {
    /// `ok`: used; the login is activated.
    Used,
    /// `expired`: never used, no valid code left.
    Expired,
    /// `in:<code>`: not switched on yet (`user activate-code`).
    Inactive,
    /// `link`: an activation link was mailed.
    Link,
    /// A code valid now, not used yet.
    Pending,
    /// Something else (shown as such, never as it came: it may be a code).
    Unknown,
}

impl Activation {
    fn of(code: &str) -> Activation {
        let c = code.trim();
        if c.eq_ignore_ascii_case("ok") {
            Activation::Used
        } else if c.eq_ignore_ascii_case("expired") {
            Activation::Expired
        } else if c.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("in:")) {
            Activation::Inactive
        } else if c.eq_ignore_ascii_case("link") {
            Activation::Link
        } else if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) {
            Activation::Pending
        } else {
            Activation::Unknown
        }
    }

    /// For scripts.
    fn key(self) -> &'static str {
        match self {
            Activation::Used => "ok",
            Activation::Expired => "expired",
            Activation::Inactive => "inactive",
            Activation::Link => "link",
            Activation::Pending => "pending",
            Activation::Unknown => "unknown",
        }
    }

    /// For people.
    fn describe(self) -> &'static str {
        match self {
            Activation::Used => "activated",
            Activation::Expired => "activation code expired unused",
            Activation::Inactive => {
                "inactive activation code (switch it on with `user activate-code`)"
            }
            Activation::Link => "activation link mailed",
            Activation::Pending => "pending activation",
            Activation::Unknown => "activation state unknown",
        }
    }
}

fn status_name(status: Option<i64>) -> String {
    match status {
        Some(0) => "active".into(),
        Some(1) => "blocked".into(),
        Some(n) => format!("status {n}"),
        None => "status unknown".into(),
    }
}

fn role_name(role: Option<i64>) -> String {
    match role {
        Some(0) => "user".into(),
        Some(1) => "manager".into(),
        Some(2) => "administrator".into(),
        Some(n) => format!("role {n}"),
        None => "role unknown".into(),
    }
}

fn kind_name(kind: ToolKind) -> &'static str {
    match kind {
        ToolKind::MobileApp => "mobile app",
        ToolKind::Helium => "desktop",
        ToolKind::MAccess => "mAccess",
        ToolKind::Virtual => "virtual",
    }
}

/// A tool's state (a mask: 1 locked, 2 PIN-locked).
fn state_name(state: i64) -> String {
    match state {
        0 => "active".into(),
        1 => "locked".into(),
        2 => "PIN-locked".into(),
        3 => "locked, PIN-locked".into(),
        n => format!("state {n}"),
    }
}

/// A seed 003 timestamp (seconds since 1970; 0 or none: never) as RFC 3339.
fn when(ts: Option<i64>) -> Option<String> {
    let secs = u64::try_from(ts?).ok().filter(|s| *s > 0)?;
    Some(humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string())
}

fn full_name(a: &LoginAttributes) -> Option<String> {
    let parts: Vec<&str> = [a.firstname.as_deref(), a.name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// `alice (active, user), Alice Liddell <alice@example.com>, activated`.
fn login_line(a: &LoginAttributes) -> String {
    let mut l = format!(
        "{} ({}, {})",
        a.login,
        status_name(a.status),
        role_name(a.role)
    );
    if let Some(n) = full_name(a) {
        l.push_str(&format!(", {n}"));
    }
    if let Some(m) = a.mail.as_deref().filter(|m| !m.is_empty()) {
        l.push_str(&format!(" <{m}>"));
    }
    if let Some(c) = &a.code {
        l.push_str(&format!(", {}", Activation::of(c).describe()));
    }
    l
}

fn login_json(entry: &LoginEntry) -> Value {
    let a = &entry.attributes;
    json!({
        "login": a.login,
        "id": entry.id,
        "status": status_name(a.status),
        "role": role_name(a.role),
        "firstname": a.firstname,
        "name": a.name,
        "mail": a.mail,
        "phone": entry.phone,
        "activation": a.code.as_deref().map(|c| Activation::of(c).key()),
        "last_auth": when(a.last_auth_date),
    })
}

fn tool_line(t: &Tool) -> String {
    let mut l = format!("{} {}", kind_name(t.kind), t.id);
    if let Some(n) = &t.name {
        l.push_str(&format!(" {n:?}"));
    }
    l.push_str(&format!(": {}", state_name(t.state)));
    match t.push_enabled {
        Some(true) => l.push_str(", push enabled"),
        Some(false) => l.push_str(", no push"),
        None => {}
    }
    if let Some(w) = when(t.last_auth) {
        l.push_str(&format!(", last used {w}"));
    }
    l
}

fn tool_json(t: &Tool) -> Value {
    json!({
        "id": t.id,
        "kind": t.kind.wire(),
        "kind_name": kind_name(t.kind),
        "name": t.name,
        "alias": t.alias,
        "state": state_name(t.state),
        "state_code": t.state,
        "push_enabled": t.push_enabled,
        "created": when(t.created),
        "last_used": when(t.last_auth),
    })
}

fn tools_json(tools: &[Tool]) -> Vec<Value> {
    tools.iter().map(tool_json).collect()
}

/// A reply about one login: `login` and `login_id` for scripts.
fn login_reply(entry: &LoginEntry) -> Reply {
    Reply::untracked()
        .field("login", entry.attributes.login.as_str())
        .field("login_id", entry.id)
}

/// A code shown once, to the help desk that asked for it.
fn code_reply(entry: &LoginEntry, what: &str, code: &str, validity: &str) -> Reply {
    let login = &entry.attributes.login;
    login_reply(entry)
        .line(format!("{what} for {login}: {code} ({validity})"))
        .field("code", code)
}

// ---------------------------------------------------------------- commands

async fn user_show(tb: &TrustBuilderClient, login: &str) -> Outcome {
    let (entry, details) = query(tb, login).await?;
    // loginQuery's fields are the login's own; the phone is only in loginSearch's.
    let shown = LoginEntry {
        attributes: details.attributes.clone(),
        ..entry.clone()
    };
    let a = &shown.attributes;
    let n = details.tools.len();
    let mut head = login_line(a);
    if let Some(p) = shown.phone.as_deref().filter(|p| !p.is_empty()) {
        head.push_str(&format!(", phone {p}"));
    }
    head.push_str(&format!(", {n} tool{}", if n == 1 { "" } else { "s" }));
    if let Some(w) = when(a.last_auth_date) {
        head.push_str(&format!(", last login {w}"));
    }
    let mut reply = Reply::untracked().line(head);
    let blocked: Vec<&str> = [
        (details.pin_blocked, "PIN"),
        (details.password_blocked, "password"),
        (details.maccess_password_blocked, "mAccess PIN"),
    ]
    .into_iter()
    .filter_map(|(b, what)| b.then_some(what))
    .collect();
    if !blocked.is_empty() {
        reply = reply.line(format!(
            "  blocked by wrong entries: {} (`pin unlock` or `user reset-password`)",
            blocked.join(", ")
        ));
    }
    for t in &details.tools {
        reply = reply.line(format!("  {}", tool_line(t)));
    }
    let mut obj = login_json(&shown);
    if let Some(o) = obj.as_object_mut() {
        o.insert("pin_blocked".into(), details.pin_blocked.into());
        o.insert("password_blocked".into(), details.password_blocked.into());
        o.insert(
            "maccess_password_blocked".into(),
            details.maccess_password_blocked.into(),
        );
        o.insert("tools".into(), tools_json(&details.tools).into());
        reply.json.extend(std::mem::take(o));
    }
    Ok(reply)
}

async fn user_list(tb: &TrustBuilderClient, offset: i64, limit: i64, sort: i64) -> Outcome {
    let page = tb.logins_query(offset, limit, sort).await?;
    let n = page.logins.len();
    let count = page
        .count
        .map(|c| c.to_string())
        .unwrap_or_else(|| "?".into());
    let head = if n == 0 {
        format!("no logins from offset {offset} ({count} in all)")
    } else {
        format!("logins {}-{} of {count}", offset + 1, offset + n as i64)
    };
    let mut reply = Reply::untracked().line(head);
    for l in &page.logins {
        reply = reply.line(format!("  {}", login_line(&l.attributes)));
    }
    Ok(reply
        .field("offset", offset)
        .field("limit", limit)
        .field("count", page.count)
        .field("n", n)
        .field(
            "logins",
            page.logins.iter().map(login_json).collect::<Vec<_>>(),
        ))
}

async fn user_create(
    tb: &TrustBuilderClient,
    login: &str,
    d: &LoginDetailsArgs,
    activation: Option<ActivationArg>,
) -> Outcome {
    let activation = activation.unwrap_or(ActivationArg::Code);
    if activation == ActivationArg::Mail && d.mail.as_deref().is_none_or(str::is_empty) {
        return Err(local(
            "--activation mail mails the activation link to the login: give --mail".into(),
        ));
    }
    let code_type = match activation {
        ActivationArg::Code => CodeType::Immediate,
        ActivationArg::Inactive => CodeType::Inactive,
        ActivationArg::Mail => CodeType::Link,
    };
    let fields = LoginFields {
        login,
        firstname: d.firstname.as_deref(),
        name: d.name.as_deref(),
        mail: d.mail.as_deref(),
        phone: d.phone.as_deref(),
        status: 0,
        role: 0,
        extrafields: None,
    };
    let created = tb.login_create(&fields, false, code_type, None).await?;
    let mut reply = Reply::untracked()
        .line(format!("created {login} (login id {})", created.id))
        .field("login", login)
        .field("login_id", created.id)
        .field("created", true);
    // codetype 1 may come back as `in:<code>`, as loginQuery shows it.
    let code = created
        .code
        .as_deref()
        .map(|c| c.trim())
        .map(|c| c.strip_prefix("in:").unwrap_or(c))
        .filter(|c| !c.is_empty());
    reply = match (activation, code) {
        (ActivationArg::Mail, _) => {
            if let Err(e) = tb.login_op(OP_LOGIN_SEND_BY_MAIL, created.id).await {
                let mut f = failure(&e);
                f.message = format!(
                    "created {login} (login id {}), but mailing its activation link failed: {}; \
                     send it with `vip-bridge admin user send-activation {login}`",
                    created.id, f.message
                );
                return Err(Failed::Remote(f));
            }
            reply
                .line(format!(
                    "TrustBuilder mailed the activation link to {} (valid 3 weeks)",
                    d.mail.as_deref().unwrap_or_default()
                ))
                .field("activation", "link")
        }
        (ActivationArg::Code, Some(c)) => reply
            .line(format!(
                "activation code for {login}: {c} (valid 30 minutes; type it in a TrustBuilder app)"
            ))
            .field("activation", "pending")
            .field("code", c),
        (ActivationArg::Inactive, Some(c)) => reply
            .line(format!(
                "inactive activation code for {login}: {c} (valid 3 weeks once switched on with \
                 `vip-bridge admin user activate-code {login}`)"
            ))
            .field("activation", "inactive")
            .field("code", c),
        (_, None) => reply
            .line("TrustBuilder returned no activation code: `user new-code` asks for one")
            .field("activation", Value::Null),
    };
    Ok(reply)
}

/// What `user update` was asked to change.
struct Changes<'a> {
    new_login: Option<&'a str>,
    /// 0 active, 1 blocked.
    status: Option<i64>,
    details: &'a LoginDetailsArgs,
}

impl Changes<'_> {
    /// The changes asked for, in words: `mail x@y`...
    fn described(&self) -> Vec<String> {
        let d = self.details;
        let mut what = Vec::new();
        if let Some(l) = self.new_login {
            what.push(format!("login renamed to {l}"));
        }
        if let Some(s) = self.status {
            what.push(format!("status {}", status_name(Some(s))));
        }
        for (name, v) in [
            ("mail", &d.mail),
            ("first name", &d.firstname),
            ("name", &d.name),
            ("phone", &d.phone),
        ] {
            if let Some(v) = v {
                what.push(format!("{name} {v:?}"));
            }
        }
        what
    }
}

/// loginUpdate's fields: the login's current ones (loginQuery's, and loginSearch's phone) with
/// only the asked changes applied. loginUpdate replaces every field (an optional one left out
/// is emptied), and its status and role are mandatory: a login whose current status or role
/// is not known is not updated (it would be unblocked or demoted).
fn merged<'a>(
    current: &'a LoginAttributes,
    phone: Option<&'a str>,
    changes: &'a Changes<'_>,
) -> std::result::Result<LoginFields<'a>, String> {
    let d = changes.details;
    let status = changes.status.or(current.status).ok_or_else(|| {
        format!(
            "TrustBuilder did not say the status of {}: not updating it (loginUpdate would reset it)",
            current.login
        )
    })?;
    let role = current.role.ok_or_else(|| {
        format!(
            "TrustBuilder did not say the role of {}: not updating it (loginUpdate would reset it)",
            current.login
        )
    })?;
    Ok(LoginFields {
        login: changes.new_login.unwrap_or(&current.login),
        firstname: d.firstname.as_deref().or(current.firstname.as_deref()),
        name: d.name.as_deref().or(current.name.as_deref()),
        mail: d.mail.as_deref().or(current.mail.as_deref()),
        phone: d.phone.as_deref().or(phone),
        status,
        role,
        extrafields: current.extrafields.as_deref(),
    })
}

async fn user_update(tb: &TrustBuilderClient, login: &str, changes: &Changes<'_>) -> Outcome {
    let what = changes.described();
    if what.is_empty() {
        return Err(local(
            "nothing to update: give --new-login, --status, --mail, --firstname, --name or --phone"
                .into(),
        ));
    }
    let (entry, details) = query(tb, login).await?;
    let fields = merged(&details.attributes, entry.phone.as_deref(), changes).map_err(local)?;
    tb.login_update(entry.id, &fields).await?;
    let d = changes.details;
    Ok(login_reply(&entry)
        .line(format!("updated {login}: {}", what.join(", ")))
        .field("new_login", changes.new_login)
        .field("status", changes.status.map(|s| status_name(Some(s))))
        .field("mail", d.mail.clone())
        .field("firstname", d.firstname.clone())
        .field("name", d.name.clone())
        .field("phone", d.phone.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(kind: ToolKind, id: i64, state: i64) -> Tool {
        Tool {
            kind,
            id,
            state,
            name: None,
            alias: None,
            push_enabled: None,
            created: None,
            last_auth: None,
        }
    }

    #[test]
    fn activation_states_never_show_the_code() {
        assert_eq!(Activation::of("ok"), Activation::Used);
        assert_eq!(Activation::of("OK"), Activation::Used);
        assert_eq!(Activation::of("expired"), Activation::Expired);
        assert_eq!(Activation::of("in:123456789"), Activation::Inactive);
        assert_eq!(Activation::of("link"), Activation::Link);
        assert_eq!(Activation::of("123456789"), Activation::Pending);
        assert_eq!(Activation::of("a1b2c3"), Activation::Unknown);
        assert_eq!(Activation::of(""), Activation::Unknown);
        let a = LoginAttributes {
            login: "alice".into(),
            code: Some("123456789".into()),
            status: Some(0),
            role: Some(0),
            firstname: Some("Alice".into()),
            name: Some("Liddell".into()),
            mail: Some("alice@example.com".into()),
            ..LoginAttributes::default()
        };
        let line = login_line(&a);
        assert_eq!(
            line,
            "alice (active, user), Alice Liddell <alice@example.com>, pending activation"
        );
        let entry = LoginEntry {
            id: 11,
            attributes: LoginAttributes {
                code: Some("in:987654321".into()),
                ..a
            },
            ..LoginEntry::default()
        };
        let j = login_json(&entry).to_string();
        assert!(
            !j.contains("987654321") && j.contains("\"inactive\""),
            "{j}"
        );
    }

    #[test]
    fn states_roles_and_kinds() {
        assert_eq!(status_name(Some(0)), "active");
        assert_eq!(status_name(Some(1)), "blocked");
        assert_eq!(status_name(Some(7)), "status 7");
        assert_eq!(role_name(Some(2)), "administrator");
        assert_eq!(state_name(0), "active");
        assert_eq!(state_name(1), "locked");
        assert_eq!(state_name(2), "PIN-locked");
        assert_eq!(state_name(3), "locked, PIN-locked");
        let mut t = tool(ToolKind::MobileApp, 501, 2);
        t.name = Some("iPhone".into());
        t.push_enabled = Some(true);
        assert_eq!(
            tool_line(&t),
            "mobile app 501 \"iPhone\": PIN-locked, push enabled"
        );
        assert_eq!(
            tool_line(&tool(ToolKind::Helium, 5, 0)),
            "desktop 5: active"
        );
        assert_eq!(when(Some(0)), None);
        assert_eq!(when(Some(-5)), None);
        assert_eq!(
            when(Some(1_700_000_000)).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
    }

    #[test]
    fn sort_codes_follow_seed_003() {
        assert_eq!(sort_code(None, false), 0);
        assert_eq!(sort_code(Some(SortArg::Login), false), 1);
        assert_eq!(sort_code(Some(SortArg::Login), true), 2);
        assert_eq!(sort_code(Some(SortArg::Name), false), 3);
        assert_eq!(sort_code(Some(SortArg::Mail), true), 6);
    }

    #[test]
    fn tools_are_found_by_id_or_kind_and_id() {
        assert_eq!(parse_tool_ref("501"), Ok((None, 501)));
        assert_eq!(parse_tool_ref("mac:7"), Ok((Some(ToolKind::MAccess), 7)));
        assert!(parse_tool_ref("xx:7").is_err());
        assert!(parse_tool_ref("phone").is_err());
        let tools = vec![
            tool(ToolKind::MobileApp, 1, 0),
            tool(ToolKind::Helium, 1, 0),
            tool(ToolKind::Virtual, 9, 1),
        ];
        assert_eq!(pick_tool(&tools, (None, 9)), ToolPick::One(&tools[2]));
        assert_eq!(pick_tool(&tools, (None, 2)), ToolPick::None);
        assert_eq!(
            pick_tool(&tools, (None, 1)),
            ToolPick::Several(vec![ToolKind::MobileApp, ToolKind::Helium])
        );
        assert_eq!(
            pick_tool(&tools, (Some(ToolKind::Helium), 1)),
            ToolPick::One(&tools[1])
        );
        assert_eq!(
            pick_tool(&tools, (Some(ToolKind::MAccess), 9)),
            ToolPick::None
        );
    }

    #[test]
    fn an_exact_search_picks_the_login() {
        let e = |id: i64, login: &str| LoginEntry {
            id,
            attributes: LoginAttributes {
                login: login.into(),
                ..LoginAttributes::default()
            },
            ..LoginEntry::default()
        };
        assert_eq!(pick_login(vec![], "a").map(|l| l.id), None);
        assert_eq!(pick_login(vec![e(1, "A")], "a").map(|l| l.id), Some(1));
        assert_eq!(
            pick_login(vec![e(1, "A"), e(2, "a")], "a").map(|l| l.id),
            Some(2)
        );
        assert_eq!(
            pick_login(vec![e(1, "A"), e(2, "b")], "a").map(|l| l.id),
            None
        );
    }

    #[test]
    fn an_update_keeps_every_field_not_asked() {
        let current = LoginAttributes {
            login: "alice".into(),
            status: Some(1),
            role: Some(2),
            firstname: Some("Alice".into()),
            name: Some("Liddell".into()),
            mail: Some("alice@example.com".into()),
            extrafields: Some("{\"k\":\"v\"}".into()),
            ..LoginAttributes::default()
        };
        let details = LoginDetailsArgs {
            mail: Some("a@example.org".into()),
            ..LoginDetailsArgs::default()
        };
        let changes = Changes {
            new_login: None,
            status: None,
            details: &details,
        };
        let f = merged(&current, Some("33600000001"), &changes).unwrap_or_default();
        assert_eq!(f.login, "alice");
        assert_eq!(f.mail, Some("a@example.org"));
        assert_eq!(f.firstname, Some("Alice"));
        assert_eq!(f.name, Some("Liddell"));
        assert_eq!(f.phone, Some("33600000001"));
        // Still blocked, still an administrator, extrafields kept.
        assert_eq!((f.status, f.role), (1, 2));
        assert_eq!(f.extrafields, Some("{\"k\":\"v\"}"));
        assert_eq!(
            changes.described(),
            vec!["mail \"a@example.org\"".to_owned()]
        );

        let none = LoginDetailsArgs::default();
        let changes = Changes {
            new_login: Some("alice2"),
            status: Some(0),
            details: &none,
        };
        let f = merged(&current, None, &changes).unwrap_or_default();
        assert_eq!((f.login, f.status, f.role), ("alice2", 0, 2));
        assert_eq!(f.mail, Some("alice@example.com"));
        assert_eq!(f.phone, None);
        // An empty value clears the field.
        let clear = LoginDetailsArgs {
            phone: Some(String::new()),
            ..LoginDetailsArgs::default()
        };
        let changes = Changes {
            new_login: None,
            status: None,
            details: &clear,
        };
        assert_eq!(
            merged(&current, Some("336"), &changes).map(|f| f.phone),
            Ok(Some(""))
        );
        // Unknown status or role: refused, not reset.
        let unknown = LoginAttributes {
            role: None,
            ..current.clone()
        };
        assert!(merged(&unknown, None, &changes)
            .err()
            .is_some_and(|e| e.contains("role")));
        let unknown = LoginAttributes {
            status: None,
            ..current
        };
        assert!(merged(&unknown, None, &changes).is_err());
    }

    #[test]
    fn not_found_answers() {
        assert!(is_not_found(&TbStatus::Other("NOK:loginid".into())));
        assert!(is_not_found(&TbStatus::Other("NOK:toolid".into())));
        assert!(!is_not_found(&TbStatus::ServiceUnknown));
        assert!(!is_not_found(&TbStatus::Other("NOK:loginexists".into())));
    }
}
