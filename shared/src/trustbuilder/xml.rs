//! The little XML TrustBuilder speaks: the REST answers' flat records and SOAP 1.1 (Axis) for
//! provisioning, where every element may be `xsi:nil="true"`. No I/O here.

pub(crate) use crate::https::xml::Element;
use crate::https::xml::{parse_document, SOAP_NS};

/// The namespace of the provisioning (ConsoleAdmin) payload.
pub const CONSOLE_NS: &str = "http://console.inwebo.com";

/// Parses a document into a tree ([`crate::https::xml`]).
pub(crate) fn parse(body: &[u8]) -> Result<Element, String> {
    parse_document(body, &[SOAP_NS, CONSOLE_NS])
}

/// The `{op}Return` of a SOAP 1.1 `{op}Response` (Axis style). A Fault, another envelope, a
/// payload in a namespace other than [`CONSOLE_NS`]: `Err`.
pub(crate) fn soap_return(body: &[u8], op: &str) -> Result<Element, String> {
    let root = parse(body)?;
    if !root.is(SOAP_NS, "Envelope") {
        return Err(format!("expected a SOAP 1.1 Envelope, got {}", root.name));
    }
    let body = root
        .children
        .into_iter()
        .find(|c| c.is(SOAP_NS, "Body"))
        .ok_or("SOAP Envelope without Body")?;
    let payload = body.children.into_iter().next().ok_or("empty SOAP Body")?;
    if payload.name == "Fault" {
        let field = |n: &str| payload.text_of(n).unwrap_or_default();
        return Err(format!(
            "SOAP Fault: {} {}",
            truncate(&field("faultcode"), 60),
            truncate(&field("faultstring"), 200)
        ));
    }
    let response = format!("{op}Response");
    if payload.name != response {
        return Err(format!("expected {response}, got {}", payload.name));
    }
    if let Some(ns) = payload.ns.as_deref().filter(|ns| *ns != CONSOLE_NS) {
        return Err(format!(
            "{response} in the namespace {ns:?} (expected {CONSOLE_NS})"
        ));
    }
    let ret = format!("{op}Return");
    payload
        .children
        .into_iter()
        .find(|c| c.name == ret)
        .ok_or_else(|| format!("{response} without {ret}"))
}

/// A SOAP 1.1 request: `<con:{op}>` with its parameters in WSDL order.
pub(crate) fn soap_request(op: &str, params: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(400);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"");
    out.push_str(SOAP_NS);
    out.push_str("\" xmlns:con=\"");
    out.push_str(CONSOLE_NS);
    out.push_str("\"><soapenv:Header/><soapenv:Body><con:");
    out.push_str(op);
    out.push('>');
    for (name, value) in params {
        out.push('<');
        out.push_str(name);
        out.push('>');
        out.push_str(&quick_xml::escape::escape(value.as_str()));
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out.push_str("</con:");
    out.push_str(op);
    out.push_str("></soapenv:Body></soapenv:Envelope>");
    out
}

/// At most `max` characters of `s` (for messages built from peer data).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}
