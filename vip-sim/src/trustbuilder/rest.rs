//! The REST authentication API: `GET /FS?action=NAME&serviceId=N&userId=LOGIN&...`.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::state::{Outcome, TbState};
use super::REST_ACTIONS;
use crate::server::{percent_decode, respond, Resp};
use crate::xml::esc;

/// Decodes an `application/x-www-form-urlencoded` query: `+` is a space, `%XX` a byte.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// The answer in the requested form. XML: `<?xml ...?><ACTION><err>..</err>...</ACTION>` with
/// absent values left out; JSON: one object, absent values `null`.
fn render(action: &str, json: bool, o: &Outcome, with_session: bool) -> Resp {
    let d = &o.device;
    let mut fields: Vec<(&str, Option<&str>)> = vec![
        ("err", Some(o.err.as_str())),
        ("name", d.name.as_deref()),
        ("alias", d.alias.as_deref()),
        ("version", d.version.as_deref()),
        ("platform", d.platform.as_deref()),
        ("type", d.kind.as_deref()),
        ("timestamp", d.timestamp.as_deref()),
    ];
    if with_session {
        fields.push(("sessionId", o.session_id.as_deref()));
    }
    if json {
        let map: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.map_or(serde_json::Value::Null, |s| s.into()),
                )
            })
            .collect();
        return respond(
            StatusCode::OK,
            "application/json;charset=utf-8",
            serde_json::Value::Object(map).to_string(),
        );
    }
    let root = if REST_ACTIONS.contains(&action) {
        action
    } else {
        "response"
    };
    let mut doc = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root}>");
    for (k, v) in fields {
        if let Some(v) = v {
            doc.push_str(&format!("<{k}>{}</{k}>", esc(v)));
        }
    }
    doc.push_str(&format!("</{root}>"));
    respond(StatusCode::OK, "text/xml;charset=utf-8", doc)
}

/// The parameters each action requires (besides action, serviceId, userId).
fn required(action: &str) -> &'static [&'static str] {
    match action {
        "authenticateExtended" => &["token"],
        "checkPushResult" => &["sessionId"],
        _ => &[],
    }
}

/// Parameters each action accepts.
fn allowed(action: &str, key: &str) -> bool {
    matches!(key, "action" | "serviceId" | "userId" | "format")
        || required(action).contains(&key)
        || (action == "pushAuthenticate" && matches!(key, "withoutpin" | "context"))
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    st: &TbState,
) -> Result<Resp, crate::server::ResetConnection> {
    if req.method() != Method::GET {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /FS?action=...\n",
        );
        if let Ok(v) = "GET".parse() {
            r.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return Ok(r);
    }
    let params = parse_query(req.uri().query().unwrap_or(""));
    let get = |k: &str| -> Option<&str> {
        let mut it = params.iter().filter(|(n, _)| n == k);
        let first = it.next().map(|(_, v)| v.as_str());
        // A parameter given twice is a syntax error: treat it as missing.
        if it.next().is_some() {
            return None;
        }
        first
    };
    let json = get("format") == Some("json");
    let action = get("action").unwrap_or("");
    let login = get("userId");
    let sn = |a: &str| Ok(render(a, json, &Outcome::err("NOK:SN"), false));
    if !REST_ACTIONS.contains(&action) {
        return sn(action);
    }
    st.counters.call(action);
    let with_session = action == "pushAuthenticate";
    let faults = st.faults_for(login);
    if let Some(r) = super::transport_faults(&faults).await? {
        return Ok(r);
    }
    if let Some(e) = st.take_forced_err(action, login) {
        return Ok(render(action, json, &Outcome::err(e), with_session));
    }
    // Syntax: every parameter known and given once, the required ones non-empty, serviceId
    // numeric, withoutpin 0 or 1.
    let syntax_ok = params
        .iter()
        .all(|(k, _)| allowed(action, k) && get(k).is_some())
        && ["serviceId", "userId"]
            .iter()
            .chain(required(action))
            .all(|k| get(k).is_some_and(|v| !v.is_empty()))
        && get("serviceId").is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit()))
        && get("withoutpin").is_none_or(|v| v == "0" || v == "1");
    let Some(login) = login.filter(|_| syntax_ok) else {
        return sn(action);
    };
    if get("serviceId").and_then(|v| v.parse::<u64>().ok()) != Some(st.service_id) {
        let e = if faults.access_forbidden {
            "NOK:access forbidden"
        } else {
            "NOK:srv unknown"
        };
        return Ok(render(action, json, &Outcome::err(e), with_session));
    }
    let outcome = match action {
        "authenticateExtended" => st.authenticate(login, get("token").unwrap_or(""), &faults),
        "pushAuthenticate" => st.push(login, &faults),
        // An unknown login owns no session: bare NOK, like an unknown sessionId.
        _ => st.check_push(login, get("sessionId").unwrap_or("")),
    };
    Ok(render(action, json, &outcome, with_session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let p = parse_query("userId=user%2Btag%40example.com&b=a+b&c=&d");
        assert_eq!(p[0], ("userId".into(), "user+tag@example.com".into()));
        assert_eq!(p[1], ("b".into(), "a b".into()));
        assert_eq!(p[2], ("c".into(), String::new()));
        assert_eq!(p[3], ("d".into(), String::new()));
    }
}
