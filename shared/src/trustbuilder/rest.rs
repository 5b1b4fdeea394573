//! The REST authentication API (`GET {api_url}/FS?action=NAME&...`): URLs out, answers in.
//! Pure functions, no I/O. Answers are asked for as JSON (`format=json`); the XML form (the
//! API's default) is read too.

use url::Url;

use super::error::TbError;
use super::status::TbStatus;
use super::xml;

pub const ACTION_AUTHENTICATE: &str = "authenticateExtended";
pub const ACTION_PUSH: &str = "pushAuthenticate";
pub const ACTION_CHECK_PUSH: &str = "checkPushResult";

/// The device fields of an answer (all optional: JSON `null` or absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    pub name: Option<String>,
    pub alias: Option<String>,
    pub version: Option<String>,
    pub platform: Option<String>,
    /// `ma` mobile app, `ca` desktop app, `mac` mAccess SDK app.
    pub kind: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS` (not ISO 8601), as sent.
    pub timestamp: Option<String>,
}

/// One REST answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestAnswer {
    pub status: TbStatus,
    pub device: Device,
    /// pushAuthenticate: the session to poll.
    pub session_id: Option<String>,
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters, so `+`,
/// `&`, `@`, `=`, `%` and spaces reach TrustBuilder as they are.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `{api}/FS?action=...&serviceId=...&userId=...&format=json` plus `extra`, in that order.
fn render(fs_url: &Url, action: &str, service_id: u64, user: &str, extra: &[(&str, &str)]) -> Url {
    let mut q = format!(
        "action={action}&serviceId={service_id}&userId={}",
        encode(user)
    );
    for (k, v) in extra {
        q.push('&');
        q.push_str(k);
        q.push('=');
        q.push_str(&encode(v));
    }
    q.push_str("&format=json");
    let mut url = fs_url.clone();
    url.set_query(Some(&q));
    url
}

/// authenticateExtended: checks `token` (the OTP). The URL holds the code: never log it.
pub fn render_authenticate_extended(fs_url: &Url, service_id: u64, user: &str, token: &str) -> Url {
    render(
        fs_url,
        ACTION_AUTHENTICATE,
        service_id,
        user,
        &[("token", token)],
    )
}

/// pushAuthenticate, with the text to show in the app and `withoutpin=1` when asked.
pub fn render_push_authenticate(
    fs_url: &Url,
    service_id: u64,
    user: &str,
    context: Option<&str>,
    without_pin: bool,
) -> Url {
    let mut extra = Vec::new();
    if without_pin {
        extra.push(("withoutpin", "1"));
    }
    if let Some(c) = context {
        extra.push(("context", c));
    }
    render(fs_url, ACTION_PUSH, service_id, user, &extra)
}

/// checkPushResult for one session.
pub fn render_check_push_result(
    fs_url: &Url,
    service_id: u64,
    user: &str,
    session_id: &str,
) -> Url {
    render(
        fs_url,
        ACTION_CHECK_PUSH,
        service_id,
        user,
        &[("sessionId", session_id)],
    )
}

/// Reads an answer, JSON (`{"err":...}`) or XML (`<ACTION><err>...</err>...</ACTION>`).
pub fn parse_answer(body: &[u8]) -> Result<RestAnswer, TbError> {
    let start = body.iter().find(|b| !b.is_ascii_whitespace());
    let fields = match start {
        Some(b'{') => json_fields(body)?,
        Some(b'<') => xml_fields(body)?,
        _ => {
            return Err(TbError::protocol(format!(
                "the answer is neither JSON nor XML: {:?}",
                xml::truncate(&String::from_utf8_lossy(body), 80)
            )))
        }
    };
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.clone())
    };
    let err = get("err").ok_or_else(|| TbError::protocol("the answer has no err"))?;
    let status = TbStatus::parse(&err).ok_or_else(|| {
        TbError::protocol(format!(
            "err {:?} is not OK or NOK",
            xml::truncate(&err, 80)
        ))
    })?;
    Ok(RestAnswer {
        status,
        device: Device {
            name: get("name"),
            alias: get("alias"),
            version: get("version"),
            platform: get("platform"),
            kind: get("type"),
            timestamp: get("timestamp"),
        },
        session_id: get("sessionId"),
    })
}

type Fields = Vec<(String, Option<String>)>;

fn json_fields(body: &[u8]) -> Result<Fields, TbError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| TbError::protocol(format!("the answer is not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = v else {
        return Err(TbError::protocol("the JSON answer is not an object"));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
                other => Some(other.to_string()),
            };
            (k, text)
        })
        .collect())
}

fn xml_fields(body: &[u8]) -> Result<Fields, TbError> {
    let root = xml::parse(body)
        .map_err(|e| TbError::protocol(format!("the XML answer is unreadable: {e}")))?;
    Ok(root
        .children
        .iter()
        .map(|c| (c.name.clone(), c.value()))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fs() -> Url {
        Url::parse("https://api.myinwebo.com/FS").unwrap()
    }

    #[test]
    fn login_names_survive_the_query() {
        let u = render_authenticate_extended(&fs(), 1234, "user+tag@example.com", "123456");
        assert_eq!(
            u.as_str(),
            "https://api.myinwebo.com/FS?action=authenticateExtended&serviceId=1234&userId=user%2Btag%40example.com&token=123456&format=json"
        );
        assert_eq!(encode("a b&c=d%e/é"), "a%20b%26c%3Dd%25e%2F%C3%A9");
        let u = render_push_authenticate(&fs(), 7, "bob smith", Some("VPN & co"), true);
        assert_eq!(
            u.query(),
            Some("action=pushAuthenticate&serviceId=7&userId=bob%20smith&withoutpin=1&context=VPN%20%26%20co&format=json")
        );
        let u = render_push_authenticate(&fs(), 7, "bob", None, false);
        assert_eq!(
            u.query(),
            Some("action=pushAuthenticate&serviceId=7&userId=bob&format=json")
        );
        let u = render_check_push_result(&fs(), 7, "bob", "bda0db4c");
        assert_eq!(
            u.query(),
            Some("action=checkPushResult&serviceId=7&userId=bob&sessionId=bda0db4c&format=json")
        );
        // Through url's own query parser: the values come back as they were.
        let pairs: Vec<(String, String)> = render_authenticate_extended(&fs(), 1, "a+b&c@d e", "1")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(pairs[2], ("userId".into(), "a+b&c@d e".into()));
    }

    #[test]
    fn json_answers_with_nulls() {
        let a = parse_answer(br#"{"err":"OK","name":"iPhone 6s","alias":"f958","sessionId":"bda0db4c","type":"ma","version":"4.0.14","platform":"iphone","timestamp":"2016-03-04 15:48:43"}"#).unwrap();
        assert_eq!(a.status, TbStatus::Ok);
        assert_eq!(a.session_id.as_deref(), Some("bda0db4c"));
        assert_eq!(a.device.kind.as_deref(), Some("ma"));
        assert_eq!(a.device.timestamp.as_deref(), Some("2016-03-04 15:48:43"));
        let a = parse_answer(br#"{"err":"NOK:account unknown ","name":null,"alias":null,"version":null,"platform":null,"type":null,"timestamp":null}"#).unwrap();
        assert_eq!(a.status, TbStatus::AccountUnknown);
        assert_eq!(a.device, Device::default());
        assert_eq!(a.session_id, None);
    }

    #[test]
    fn xml_answers() {
        let a = parse_answer(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><pushAuthenticate><err>OK</err><sessionId>s1</sessionId><type>ma</type></pushAuthenticate>").unwrap();
        assert_eq!(a.status, TbStatus::Ok);
        assert_eq!(a.session_id.as_deref(), Some("s1"));
        let a = parse_answer(b"<checkPushResult><err>nok:waiting</err><name xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:nil=\"true\"/></checkPushResult>").unwrap();
        assert_eq!(a.status, TbStatus::Waiting);
        assert_eq!(a.device.name, None);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for body in [
            &b""[..],
            b"<html><body>502 Bad Gateway</body></html>",
            b"{\"name\":\"x\"}",
            b"{\"err\":\"maybe\"}",
            b"[1,2]",
            b"{\"err\":",
            b"<a><err>OK</err>",
            b"Service Unavailable",
        ] {
            let e = parse_answer(body).unwrap_err();
            assert_eq!(e.class(), crate::https::FailureClass::Misconfigured, "{e}");
        }
    }
}
