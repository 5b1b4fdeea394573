//! `vip-bridge admin`: the help desk's command line against the configured MFA service, with
//! the daemon's configuration file: VIP's Management and Query services (its `[vip]` section,
//! here) or, with `backend = "trustbuilder"`, TrustBuilder's provisioning API
//! ([`trustbuilder`]). This module dispatches on the backend and owns what both print.
//!
//! Every command prints what the service did (VIP: and the requestId of each call, which VIP's
//! reports find it by), as text or, with `--json`, as one JSON object. Exit status: 0 done, 1
//! failed or refused, 3 not found (VIP: no such user, credential or binding, 6003, 6004, 6007;
//! TrustBuilder: no such login or tool), so a script can tell a typo from an outage. A command
//! only the other backend has is refused with one line on stderr, exit status 1.

pub mod import;
pub mod trustbuilder;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use vip_core::config::BackendKind;
use vip_core::vip::{
    AddCredential, CreateUser, CredentialType, NewUserStatus, OtpDelivery, SetTemporaryPassword,
    TempPasswordAttributes, UpdateUser, UserStatus, VipClient, VipError,
};

use crate::cli::{
    AdminArgs, AdminCommand, CredentialCommand, CredentialTypeArg, PhoneCommand, PinCommand,
    TempCodeCommand, UserCommand, UserStatusArg,
};
use crate::config;
use crate::error::{Error, Result};
use crate::tools::read_secret_line;

use import::{BoxFuture, Created, CreatesUsers};

/// Exit status of a command whose user, credential or binding does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;

/// What a command found, for both kinds of output.
struct Reply {
    /// One line each, for people.
    lines: Vec<String>,
    /// The same, for scripts (`request_ids` is added from `ids`).
    json: Map<String, Value>,
    /// VIP: the requestId of every call made, in order. Empty for a service without request
    /// ids (TrustBuilder): no `requestId` line, no `request_ids`.
    ids: Vec<String>,
}

impl Reply {
    fn new(id: &str) -> Reply {
        Reply {
            ids: vec![id.to_owned()],
            ..Reply::untracked()
        }
    }

    /// A reply from a service without request ids.
    fn untracked() -> Reply {
        Reply {
            lines: Vec::new(),
            json: Map::new(),
            ids: Vec::new(),
        }
    }

    fn line(mut self, l: impl Into<String>) -> Reply {
        self.lines.push(l.into());
        self
    }

    fn field(mut self, k: &str, v: impl Into<Value>) -> Reply {
        self.json.insert(k.to_owned(), v.into());
        self
    }
}

/// Runs one admin command against the configured backend; returns the exit status. Errors
/// before any call (the configuration, a file, a command the backend lacks) are returned; the
/// service's refusals are printed and give 1 or 3.
pub async fn run(args: AdminArgs, out: &mut dyn Write) -> Result<u8> {
    let cfg = config::load(&args.config)?;
    let json = args.json;
    if let Err(refused) = refuse_other_backends(cfg.core.backend, &args.command) {
        return finish(out, json, Err(refused));
    }
    let result = match cfg.core.backend {
        BackendKind::Vip => {
            let vip = VipClient::new(&cfg.core.vip)?;
            if let AdminCommand::Import(a) = &args.command {
                return import(vip, a, cfg.core.vip.max_in_flight, json, out).await;
            }
            dispatch(&vip, args.command).await
        }
        BackendKind::Trustbuilder => {
            trustbuilder::run(cfg.core.trustbuilder.as_ref(), args.command).await
        }
    };
    finish(out, json, result)
}

/// Prints a command's outcome; its exit status.
fn finish(
    out: &mut dyn Write,
    json: bool,
    result: std::result::Result<Reply, Failed>,
) -> Result<u8> {
    let written = match result {
        Ok(reply) => write_reply(out, json, reply).map(|_| 0),
        Err(Failed::Remote(f)) => {
            write_error(out, json, &f).map(|_| if f.not_found { EXIT_NOT_FOUND } else { 1 })
        }
        Err(Failed::Local(e)) => return Err(e),
    };
    written.map_err(|source| Error::Io {
        what: "writing the answer".into(),
        source,
    })
}

enum Failed {
    /// The service refused, or could not be asked.
    Remote(Failure),
    /// Something here: a file, a value, a command the backend lacks.
    Local(Error),
}

/// A refusal or failure of the service, whichever it is, as the output shows it.
struct Failure {
    /// What happened, in words (the service's status in it).
    message: String,
    /// No such user, login, credential, tool or binding: exit status 3.
    not_found: bool,
    /// The service's status: VIP's code (`6003`), TrustBuilder's `NOK:<cause>`.
    status: Option<String>,
    /// VIP: the call's requestId (empty: nothing was sent). `None` for a service without
    /// request ids.
    request_id: Option<String>,
}

impl From<VipError> for Failed {
    fn from(e: VipError) -> Self {
        Failed::Remote(Failure {
            message: e.to_string(),
            not_found: e.is_not_found(),
            status: e.status().map(|s| s.code_str().to_string()),
            request_id: Some(e.request_id().unwrap_or("").to_owned()),
        })
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Local(e)
    }
}

fn credential_type(kind: CredentialTypeArg) -> CredentialType {
    match kind {
        CredentialTypeArg::Token => CredentialType::StandardOtp,
        CredentialTypeArg::Sms => CredentialType::SmsOtp,
        CredentialTypeArg::Voice => CredentialType::VoiceOtp,
    }
}

fn status_name(s: &UserStatus) -> String {
    match s {
        UserStatus::Active => "ACTIVE".into(),
        UserStatus::Disabled => "DISABLED".into(),
        UserStatus::Locked => "LOCKED".into(),
        UserStatus::Other(o) => o.clone(),
    }
}

/// VIP's longest temporary-code lifetime (seed 000: setTemporaryPassword, "maximum of 30 days").
const MAX_TEMP_CODE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

async fn dispatch(vip: &VipClient, command: AdminCommand) -> std::result::Result<Reply, Failed> {
    Ok(match command {
        AdminCommand::User(UserCommand::Show { user }) => user_show(vip, &user).await?,
        AdminCommand::User(UserCommand::Create {
            user,
            pin_file,
            force_pin_change,
            ..
        }) => {
            let pin = pin_file
                .as_deref()
                .map(|f| read_secret_line(f, "PIN"))
                .transpose()?;
            let ack = vip
                .create_user(&CreateUser {
                    user_id: &user,
                    pin: pin.as_ref().map(|p| p.expose()),
                    force_pin_change: force_pin_change.then_some(true),
                })
                .await?;
            Reply::new(&ack.request_id)
                .line(format!("created {user}"))
                .field("user", user.as_str())
                .field("created", true)
        }
        AdminCommand::User(UserCommand::Update {
            user,
            new_id,
            status,
            pin_file,
            force_pin_change,
            ..
        }) => {
            if new_id.is_none() && status.is_none() && pin_file.is_none() {
                return Err(Failed::Local(Error::Check(
                    "nothing to update: give --new-id, --status or --pin-file".into(),
                )));
            }
            let pin = pin_file
                .as_deref()
                .map(|f| read_secret_line(f, "PIN"))
                .transpose()?;
            let new_status = status.map(|s| match s {
                UserStatusArg::Active => NewUserStatus::Active,
                UserStatusArg::Disabled | UserStatusArg::Blocked => NewUserStatus::Disabled,
            });
            let ack = vip
                .update_user(&UpdateUser {
                    user_id: &user,
                    new_user_id: new_id.as_deref(),
                    new_status,
                    old_pin: None,
                    new_pin: pin.as_ref().map(|p| p.expose()),
                    force_pin_change: force_pin_change.then_some(true),
                })
                .await?;
            let mut what = Vec::new();
            if let Some(n) = &new_id {
                what.push(format!("renamed to {n}"));
            }
            if let Some(s) = new_status {
                what.push(format!("status {}", s.as_str()));
            }
            if pin.is_some() {
                what.push("new PIN".to_owned());
            }
            if force_pin_change {
                what.push("PIN change required".to_owned());
            }
            Reply::new(&ack.request_id)
                .line(format!("updated {user}: {}", what.join(", ")))
                .field("user", user.as_str())
                .field("new_user_id", new_id.clone())
                .field("status", new_status.map(|s| s.as_str()))
                .field("pin_changed", pin.is_some())
                .field("force_pin_change", force_pin_change)
        }
        AdminCommand::User(UserCommand::Delete { user, yes }) => {
            if !yes {
                return Err(Failed::Local(Error::Check(format!(
                    "deleting {user} removes the user and every credential binding, and cannot be undone: add --yes"
                ))));
            }
            let ack = vip.delete_user(&user).await?;
            Reply::new(&ack.request_id)
                .line(format!("deleted {user} and their credential bindings"))
                .field("user", user.as_str())
                .field("deleted", true)
        }
        AdminCommand::Credential(CredentialCommand::List { user }) => {
            let info = vip.get_user_info(&user, false).await?;
            let mut reply = Reply::new(&info.request_id).field("user", user.as_str());
            if info.credentials.is_empty() {
                reply = reply.line(format!("{user} has no credentials"));
            }
            let mut list = Vec::new();
            for c in &info.credentials {
                reply = reply.line(credential_line(c));
                list.push(credential_json(c));
            }
            reply.field("credentials", list)
        }
        AdminCommand::Credential(CredentialCommand::Add {
            user,
            credential,
            kind,
            code,
            code2,
            name,
        }) => {
            let ack = vip
                .add_credential(&AddCredential {
                    user_id: &user,
                    credential_id: &credential,
                    credential_type: credential_type(kind),
                    friendly_name: name.as_deref(),
                    trusted_device: None,
                    otp: Some(&code),
                    otp2: code2.as_deref(),
                })
                .await?;
            Reply::new(&ack.request_id)
                .line(format!(
                    "added {} {credential} to {user}",
                    credential_type(kind)
                ))
                .field("user", user.as_str())
                .field("credential_id", credential.as_str())
                .field("credential_type", credential_type(kind).as_str())
                .field("added", true)
        }
        AdminCommand::Credential(CredentialCommand::Remove {
            user,
            credential,
            kind,
        }) => {
            let kind = kind.unwrap_or(CredentialTypeArg::Token);
            let ack = vip
                .remove_credential(&user, &credential, &credential_type(kind))
                .await?;
            Reply::new(&ack.request_id)
                .line(format!("removed {credential} from {user}"))
                .field("user", user.as_str())
                .field("credential_id", credential.as_str())
                .field("removed", true)
        }
        AdminCommand::Credential(CredentialCommand::Rename {
            user,
            credential,
            name,
            kind,
        }) => {
            let kind = kind.unwrap_or(CredentialTypeArg::Token);
            let ack = vip
                .update_credential(&user, &credential, &credential_type(kind), &name)
                .await?;
            Reply::new(&ack.request_id)
                .line(format!("{credential} of {user} is now named {name:?}"))
                .field("user", user.as_str())
                .field("credential_id", credential.as_str())
                .field("friendly_name", name.as_str())
        }
        AdminCommand::TempCode(TempCodeCommand::Set {
            user,
            code_file,
            expires,
            one_time,
            sms,
            voice,
        }) => {
            if let Some(e) = expires {
                if e > MAX_TEMP_CODE_LIFETIME {
                    return Err(Failed::Local(Error::Check(format!(
                        "--expires {}: VIP keeps a temporary code at most 30 days",
                        humantime::format_duration(e)
                    ))));
                }
            }
            let code = code_file
                .as_deref()
                .map(|f| read_secret_line(f, "temporary code"))
                .transpose()?;
            let delivery = match (sms, voice) {
                (Some(p), _) => Some(OtpDelivery::Sms { phone_number: p }),
                (None, Some(p)) => Some(OtpDelivery::Voice { phone_number: p }),
                (None, None) => None,
            };
            let sent_to = delivery.as_ref().map(|d| match d {
                OtpDelivery::Sms { phone_number } => format!("texted to {phone_number}"),
                OtpDelivery::Voice { phone_number } => format!("read out to {phone_number}"),
            });
            let set = vip
                .set_temporary_password(&SetTemporaryPassword {
                    user_id: &user,
                    code: code.as_ref().map(|c| c.expose()),
                    attributes: TempPasswordAttributes {
                        expires_in: expires,
                        one_time_use_only: one_time.then_some(true),
                    },
                    delivery,
                })
                .await?;
            let validity = format!(
                "valid {}{}",
                expires
                    .map(|e| format!("for {}", humantime::format_duration(e)))
                    .unwrap_or_else(|| "for VIP's default of 1 day".into()),
                if one_time { ", for one login" } else { "" }
            );
            let mut reply = Reply::new(&set.request_id)
                .field("user", user.as_str())
                .field("one_time", one_time)
                .field("expires_in_s", expires.map(|e| e.as_secs()))
                .field("sent_to", sent_to.clone());
            // Shown once, to the help desk that asked for it; a code we were given is not
            // repeated back.
            match (&set.code, &code) {
                (Some(c), None) => {
                    reply = reply
                        .line(format!(
                            "temporary code for {user}: {} ({validity})",
                            c.expose()
                        ))
                        .field("code", c.expose())
                }
                _ => reply = reply.line(format!("temporary code set for {user} ({validity})")),
            }
            if let Some(s) = sent_to {
                reply = reply.line(format!("{s} by VIP"));
            }
            reply
        }
        AdminCommand::TempCode(TempCodeCommand::Clear { user }) => {
            let ack = vip.clear_temporary_password(&user).await?;
            Reply::new(&ack.request_id)
                .line(format!("cleared the temporary code of {user}"))
                .field("user", user.as_str())
                .field("cleared", true)
        }
        AdminCommand::TempCode(TempCodeCommand::Show { user }) => {
            let t = vip.get_temporary_password_attributes(&user).await?;
            let mut reply = Reply::new(&t.request_id)
                .field("user", user.as_str())
                .field("present", t.present)
                .field("expiration_time", t.expiration_time.clone())
                .field("one_time", t.one_time_use_only);
            reply = if t.present {
                reply.line(format!(
                    "{user} has a temporary code{}{}",
                    t.expiration_time
                        .as_deref()
                        .map(|e| format!(", valid until {e}"))
                        .unwrap_or_default(),
                    if t.one_time_use_only == Some(true) {
                        ", for one login"
                    } else {
                        ""
                    }
                ))
            } else {
                reply.line(format!("{user} has no temporary code"))
            };
            reply
        }
        AdminCommand::Pin(PinCommand::Clear { user }) => {
            let ack = vip.clear_user_pin(&user).await?;
            Reply::new(&ack.request_id)
                .line(format!("cleared the PIN of {user}"))
                .field("user", user.as_str())
                .field("cleared", true)
        }
        AdminCommand::Sms(PhoneCommand::Register { phone }) => {
            register(
                vip,
                OtpDelivery::Sms {
                    phone_number: phone,
                },
            )
            .await?
        }
        AdminCommand::Voice(PhoneCommand::Register { phone }) => {
            register(
                vip,
                OtpDelivery::Voice {
                    phone_number: phone,
                },
            )
            .await?
        }
        AdminCommand::ServerTime | AdminCommand::Check => {
            let t = vip.get_server_time().await?;
            let skew = match t.skew {
                Some(0) => "clocks agree".to_owned(),
                Some(s) if s > 0 => format!("VIP's clock is {s} s ahead of ours"),
                Some(s) => format!("VIP's clock is {} s behind ours", -s),
                None => "cannot read VIP's timestamp".to_owned(),
            };
            Reply::new(&t.request_id)
                .line(format!("VIP time {} ({skew})", t.timestamp))
                .field("timestamp", t.timestamp.as_str())
                .field("skew_s", t.skew)
        }
        // Handled before dispatch (its own output).
        AdminCommand::Import(_) => {
            return Err(Failed::Local(Error::Check(
                "import is not a single call".into(),
            )))
        }
        // TrustBuilder's (refused by `run`).
        AdminCommand::Pin(PinCommand::Unlock { .. })
        | AdminCommand::User(
            UserCommand::List { .. }
            | UserCommand::Restore { .. }
            | UserCommand::SendActivation { .. }
            | UserCommand::ActivateCode { .. }
            | UserCommand::NewCode { .. }
            | UserCommand::ResetPassword { .. },
        ) => return Err(only_on(BackendKind::Trustbuilder, "this command")),
    })
}

async fn user_show(vip: &VipClient, user: &str) -> std::result::Result<Reply, Failed> {
    let info = vip.get_user_info(user, false).await?;
    let temp = vip.get_temporary_password_attributes(user).await?;
    let status = info
        .user_status
        .as_ref()
        .map(status_name)
        .unwrap_or_else(|| "unknown".into());
    let mut reply = Reply::new(&info.request_id);
    reply.ids.push(temp.request_id.clone());
    reply = reply
        .line(format!(
            "{} ({status}), {} credential{}, PIN {}, temporary code {}",
            info.user_id.as_deref().unwrap_or(user),
            info.credentials.len(),
            if info.credentials.len() == 1 { "" } else { "s" },
            match info.is_pin_set {
                Some(true) => "set",
                Some(false) => "not set",
                None => "unknown",
            },
            if temp.present {
                temp.expiration_time
                    .as_deref()
                    .map(|e| format!("set until {e}"))
                    .unwrap_or_else(|| "set".into())
            } else {
                "none".into()
            }
        ))
        .field("user", info.user_id.as_deref().unwrap_or(user))
        .field("status", status)
        .field("pin_set", info.is_pin_set)
        .field("temporary_code", temp.present)
        .field("temporary_code_expires", temp.expiration_time.clone());
    let mut list = Vec::new();
    for c in &info.credentials {
        reply = reply.line(format!("  {}", credential_line(c)));
        list.push(credential_json(c));
    }
    Ok(reply.field("credentials", list))
}

async fn register(vip: &VipClient, phone: OtpDelivery) -> std::result::Result<Reply, Failed> {
    let (number, kind) = match &phone {
        OtpDelivery::Sms { phone_number } => (phone_number.clone(), "sms"),
        OtpDelivery::Voice { phone_number } => (phone_number.clone(), "voice"),
    };
    let r = vip.register(&phone).await?;
    // A code VIP may return here is not printed: binding the phone must prove the user holds
    // it, with the code the phone received.
    Ok(Reply::new(&r.request_id)
        .line(format!(
            "registered {number} for {kind} codes; VIP sent it a code: bind it with \
             `vip-bridge admin credential add USER {number} --type {kind} --code CODE`"
        ))
        .field("phone", number.as_str())
        .field("registered", true))
}

fn credential_line(c: &vip_core::vip::CredentialBinding) -> String {
    let mut l = format!("{} {}", c.credential_type, c.credential_id);
    if let Some(n) = &c.friendly_name {
        l.push_str(&format!(" {n:?}"));
    }
    if let Some(s) = &c.credential_status {
        l.push_str(&format!(", credential {s}"));
    }
    if let Some(s) = &c.bind_status {
        l.push_str(&format!(", binding {s}"));
    }
    if let Some(t) = &c.last_authn_time {
        l.push_str(&format!(", last used {t}"));
    }
    l
}

fn credential_json(c: &vip_core::vip::CredentialBinding) -> Value {
    json!({
        "credential_id": c.credential_id,
        "credential_type": c.credential_type,
        "friendly_name": c.friendly_name,
        "credential_status": c.credential_status,
        "bind_status": c.bind_status,
        "last_authn_time": c.last_authn_time,
    })
}

fn write_reply(out: &mut dyn Write, json: bool, reply: Reply) -> std::io::Result<()> {
    let tracked = !reply.ids.is_empty();
    if json {
        let mut obj = reply.json;
        obj.insert("ok".into(), true.into());
        if tracked {
            obj.insert("request_ids".into(), reply.ids.into());
        }
        writeln!(out, "{}", Value::Object(obj))
    } else {
        for l in &reply.lines {
            writeln!(out, "{l}")?;
        }
        if tracked {
            writeln!(out, "requestId {}", reply.ids.join(", "))?;
        }
        Ok(())
    }
}

/// The refusal of a command (or option) only the other backend has: one line, exit status 1.
fn only_on(only: BackendKind, what: &str) -> Failed {
    let (name, configured) = match only {
        BackendKind::Vip => ("VIP", BackendKind::Trustbuilder),
        BackendKind::Trustbuilder => ("TrustBuilder", BackendKind::Vip),
    };
    Failed::Local(Error::Check(format!(
        "`{what}` is {name}-only: this configuration has backend = \"{}\"",
        configured.as_str()
    )))
}

/// The name of a command only one backend has (`temp-code set`...) and which backend that is;
/// `None` for the commands both have.
fn only_one_backend(command: &AdminCommand) -> Option<(BackendKind, &'static str)> {
    use BackendKind::{Trustbuilder as Tb, Vip};
    Some(match command {
        AdminCommand::TempCode(TempCodeCommand::Set { .. }) => (Vip, "temp-code set"),
        AdminCommand::TempCode(TempCodeCommand::Clear { .. }) => (Vip, "temp-code clear"),
        AdminCommand::TempCode(TempCodeCommand::Show { .. }) => (Vip, "temp-code show"),
        AdminCommand::Pin(PinCommand::Clear { .. }) => (Vip, "pin clear"),
        AdminCommand::Sms(_) => (Vip, "sms register"),
        AdminCommand::Voice(_) => (Vip, "voice register"),
        AdminCommand::ServerTime => (Vip, "server-time"),
        AdminCommand::Import(_) => (Vip, "import"),
        AdminCommand::Credential(CredentialCommand::Add { .. }) => (Vip, "credential add"),
        AdminCommand::Pin(PinCommand::Unlock { .. }) => (Tb, "pin unlock"),
        AdminCommand::User(UserCommand::List { .. }) => (Tb, "user list"),
        AdminCommand::User(UserCommand::Restore { .. }) => (Tb, "user restore"),
        AdminCommand::User(UserCommand::SendActivation { .. }) => (Tb, "user send-activation"),
        AdminCommand::User(UserCommand::ActivateCode { .. }) => (Tb, "user activate-code"),
        AdminCommand::User(UserCommand::NewCode { .. }) => (Tb, "user new-code"),
        AdminCommand::User(UserCommand::ResetPassword { .. }) => (Tb, "user reset-password"),
        _ => return None,
    })
}

/// Refuses, before anything is sent, a command or option the configured backend lacks.
fn refuse_other_backends(
    backend: BackendKind,
    command: &AdminCommand,
) -> std::result::Result<(), Failed> {
    if let Some((only, what)) = only_one_backend(command) {
        if only != backend {
            return Err(only_on(only, what));
        }
    }
    let mut options: Vec<(BackendKind, &str)> = Vec::new();
    match command {
        AdminCommand::User(UserCommand::Create {
            pin_file,
            details,
            activation,
            ..
        }) => {
            if pin_file.is_some() {
                options.push((BackendKind::Vip, "user create --pin-file"));
            }
            if activation.is_some() {
                options.push((BackendKind::Trustbuilder, "user create --activation"));
            }
            if let Some(o) = details.given().first() {
                options.push((BackendKind::Trustbuilder, o));
            }
        }
        AdminCommand::User(UserCommand::Update {
            pin_file, details, ..
        }) => {
            if pin_file.is_some() {
                options.push((BackendKind::Vip, "user update --pin-file"));
            }
            if let Some(o) = details.given().first() {
                options.push((BackendKind::Trustbuilder, o));
            }
        }
        AdminCommand::Credential(
            CredentialCommand::Remove { kind: Some(_), .. }
            | CredentialCommand::Rename { kind: Some(_), .. },
        ) => options.push((BackendKind::Vip, "--type")),
        _ => {}
    }
    match options.into_iter().find(|(only, _)| *only != backend) {
        Some((only, what)) => Err(only_on(only, what)),
        None => Ok(()),
    }
}

fn write_error(out: &mut dyn Write, json: bool, f: &Failure) -> std::io::Result<()> {
    if json {
        let mut obj = json!({
            "ok": false,
            "not_found": f.not_found,
            "status": f.status,
            "error": f.message,
        });
        if let (Some(rid), Some(o)) = (&f.request_id, obj.as_object_mut()) {
            let ids: Vec<&str> = if rid.is_empty() { vec![] } else { vec![rid] };
            o.insert("request_ids".into(), ids.into());
        }
        writeln!(out, "{obj}")
    } else {
        writeln!(out, "failed: {}", f.message)?;
        match f.request_id.as_deref() {
            None => Ok(()),
            Some("") => writeln!(out, "requestId (none: nothing was sent)"),
            Some(rid) => writeln!(out, "requestId {rid}"),
        }
    }
}

/// createUser for the import: 6002 counts as present.
struct ImportVip(VipClient);

impl CreatesUsers for ImportVip {
    fn create_user<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Created> {
        Box::pin(async move {
            let req = CreateUser {
                user_id,
                ..CreateUser::default()
            };
            match self.0.create_user(&req).await {
                Ok(ack) => Created::New {
                    request_id: ack.request_id,
                },
                Err(e) if e.status() == Some(vip_core::vip::Status::UserExists) => {
                    Created::AlreadyPresent {
                        request_id: e.request_id().unwrap_or("").to_owned(),
                    }
                }
                Err(e) => Created::Failed {
                    request_id: e.request_id().unwrap_or("").to_owned(),
                    why: e.to_string(),
                },
            }
        })
    }
}

async fn import(
    vip: VipClient,
    a: &crate::cli::ImportArgs,
    max_in_flight: usize,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let plan = read_plan(&a.file)?;
    if a.concurrency == 0 || a.concurrency > max_in_flight {
        return Err(Error::Check(format!(
            "--concurrency {}: give 1 to vip.max_in_flight ({max_in_flight})",
            a.concurrency
        )));
    }
    let report = if a.dry_run {
        import::dry_run(plan)
    } else {
        let bar = if json || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            let bar = indicatif::ProgressBar::new(plan.rows.len() as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} users  {per_sec}  eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        };
        let ticker = bar.clone();
        let report = import::run(Arc::new(ImportVip(vip)), plan, a.concurrency, move || {
            ticker.inc(1)
        })
        .await;
        bar.finish_and_clear();
        report
    };
    let written = if json {
        serde_json::to_string(&report)
            .map_err(std::io::Error::other)
            .and_then(|s| writeln!(out, "{s}"))
    } else {
        write!(out, "{}", report.human())
    };
    written.map_err(|source| Error::Io {
        what: "writing the report".into(),
        source,
    })?;
    Ok(if report.ok() { 0 } else { 1 })
}

fn read_plan(file: &Path) -> Result<import::Plan> {
    let what = |e: String| Error::Check(format!("{}: {e}", file.display()));
    if file == Path::new("-") {
        import::plan(std::io::stdin().lock()).map_err(what)
    } else {
        let f = std::fs::File::open(file).map_err(|source| Error::Io {
            what: format!("opening {}", file.display()),
            source,
        })?;
        import::plan(std::io::BufReader::new(f)).map_err(what)
    }
}
