//! SOAP 1.1 envelopes out, namespace-checked parsing in. No I/O here.

use super::error::VipError;

/// The namespace of every VIP User Services payload element.
pub const VIP_NS: &str = "https://schemas.symantec.com/vip/2011/04/vipuserservices";
/// SOAP 1.1 envelope namespace.
pub const SOAP_NS: &str = crate::https::xml::SOAP_NS;

// ---------------------------------------------------------------- writing

/// Builds one request body: `<soapenv:Envelope><soapenv:Body><vip:NAME>...`.
pub(crate) struct Writer {
    out: String,
    stack: Vec<&'static str>,
}

impl Writer {
    /// Opens the envelope and the request element `vip:{request}`.
    pub(crate) fn new(request: &'static str) -> Writer {
        let mut out = String::with_capacity(512);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        out.push_str("<soapenv:Envelope xmlns:soapenv=\"");
        out.push_str(SOAP_NS);
        out.push_str("\" xmlns:vip=\"");
        out.push_str(VIP_NS);
        out.push_str("\"><soapenv:Header/><soapenv:Body>");
        let mut w = Writer {
            out,
            stack: Vec::new(),
        };
        w.open(request);
        w
    }

    pub(crate) fn open(&mut self, name: &'static str) {
        self.out.push_str("<vip:");
        self.out.push_str(name);
        self.out.push('>');
        self.stack.push(name);
    }

    pub(crate) fn close(&mut self) {
        if let Some(name) = self.stack.pop() {
            self.out.push_str("</vip:");
            self.out.push_str(name);
            self.out.push('>');
        }
    }

    /// `<vip:name>escaped text</vip:name>`.
    pub(crate) fn leaf(&mut self, name: &'static str, text: &str) {
        self.out.push_str("<vip:");
        self.out.push_str(name);
        self.out.push('>');
        escape_into(&mut self.out, text);
        self.out.push_str("</vip:");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// A `{Key, Value}` pair element (VIP capitalises `Key` and `Value`).
    pub(crate) fn pair(&mut self, name: &'static str, key: &str, value: &str) {
        self.open(name);
        self.leaf("Key", key);
        self.leaf("Value", value);
        self.close();
    }

    pub(crate) fn finish(mut self) -> String {
        while !self.stack.is_empty() {
            self.close();
        }
        self.out.push_str("</soapenv:Body></soapenv:Envelope>");
        self.out
    }
}

/// XML-escapes text for element content (all five specials, so the same routine is safe
/// for attribute values too).
pub(crate) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // CR would be normalised away by the receiver's parser; keep it.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Whether every character of `s` may appear in an XML 1.0 document (escaping cannot carry
/// the others, e.g. NUL or most C0 controls).
pub(crate) fn is_xml_text(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    })
}

// ---------------------------------------------------------------- reading

pub(crate) use crate::https::xml::Element;

impl Element {
    /// Direct children named `{VIP_NS}name`, in document order.
    pub(crate) fn vip_children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.is(VIP_NS, name))
    }

    pub(crate) fn vip_child<'a>(&'a self, name: &str) -> Option<&'a Element> {
        self.children.iter().find(|c| c.is(VIP_NS, name))
    }

    /// Trimmed text of the first `{VIP_NS}name` child; absent or empty gives `None`.
    pub(crate) fn vip_text(&self, name: &str) -> Option<String> {
        self.vip_child(name)
            .map(|e| e.text.trim().to_owned())
            .filter(|t| !t.is_empty())
    }
}

/// Parses a document into a tree, resolving namespaces.
pub(crate) fn parse_document(body: &[u8]) -> Result<Element, String> {
    crate::https::xml::parse_document(body, &[VIP_NS, SOAP_NS])
}

/// Parses a SOAP 1.1 response and returns its payload element, which must be
/// `{VIP_NS}response`. A Fault, another envelope, a wrong namespace or element: `Protocol`.
pub(crate) fn parse_response(body: &[u8], response: &str) -> Result<Element, VipError> {
    let root = parse_document(body).map_err(VipError::protocol)?;
    if !root.is(SOAP_NS, "Envelope") {
        return Err(VipError::protocol(format!(
            "expected a SOAP 1.1 Envelope, got {}",
            root.qualified()
        )));
    }
    let body_el = root
        .children
        .into_iter()
        .find(|c| c.is(SOAP_NS, "Body"))
        .ok_or_else(|| VipError::protocol("SOAP Envelope without Body"))?;
    let payload = body_el
        .children
        .into_iter()
        .next()
        .ok_or_else(|| VipError::protocol("empty SOAP Body"))?;
    if payload.is(SOAP_NS, "Fault") {
        return Err(VipError::protocol(read_fault(&payload).to_string()));
    }
    if payload.name == response && payload.ns.as_deref() != Some(VIP_NS) {
        return Err(VipError::protocol(format!(
            "{response} in the wrong namespace {:?} (expected {VIP_NS})",
            payload.ns.as_deref().unwrap_or("")
        )));
    }
    if !payload.is(VIP_NS, response) {
        return Err(VipError::protocol(format!(
            "expected {{{VIP_NS}}}{response}, got {}",
            payload.qualified()
        )));
    }
    Ok(payload)
}

/// A SOAP 1.1 Fault: its `faultcode` and `faultstring`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    code: String,
    text: String,
}

impl Fault {
    /// A `Server` fault (SOAP 1.2: `Receiver`): the service failed, not our request. The only
    /// kind of fault that counts as an outage.
    pub(crate) fn is_server(&self) -> bool {
        let local = self.code.rsplit(':').next().unwrap_or("");
        local == "Server" || local == "Receiver" || local.starts_with("Server.")
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SOAP Fault: {} {}", self.code, self.text)
    }
}

/// If `body` is a SOAP Fault, the fault.
pub(crate) fn fault_of(body: &[u8]) -> Option<Fault> {
    let root = parse_document(body).ok()?;
    let b = root.children.iter().find(|c| c.is(SOAP_NS, "Body"))?;
    let f = b.children.iter().find(|c| c.is(SOAP_NS, "Fault"))?;
    Some(read_fault(f))
}

fn read_fault(fault: &Element) -> Fault {
    // faultcode / faultstring are unqualified in SOAP 1.1.
    let field = |n: &str| {
        fault
            .children
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.text.trim().to_owned())
            .unwrap_or_default()
    };
    Fault {
        code: truncate(&field("faultcode"), 60),
        text: truncate(&field("faultstring"), 200),
    }
}

/// At most `max` characters of `s` (for error messages built from peer data).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fault_codes() {
        let doc = |code: &str| {
            format!(
                r#"<S:Envelope xmlns:S="{SOAP_NS}"><S:Body><S:Fault><faultcode>{code}</faultcode><faultstring>x</faultstring></S:Fault></S:Body></S:Envelope>"#
            )
        };
        for (code, server) in [
            ("S:Server", true),
            ("soap:Server.Busy", true),
            ("env:Receiver", true),
            ("S:Client", false),
            ("Client", false),
            ("S:VersionMismatch", false),
            ("", false),
        ] {
            let f = fault_of(doc(code).as_bytes()).unwrap();
            assert_eq!(f.is_server(), server, "{code}");
        }
        assert!(fault_of(b"<html>503</html>").is_none());
    }

    #[test]
    fn escapes_all_specials() {
        let mut s = String::new();
        escape_into(&mut s, "<&>\"'é\r");
        assert_eq!(s, "&lt;&amp;&gt;&quot;&apos;é&#13;");
    }

    #[test]
    fn xml_text_check() {
        assert!(is_xml_text("ünï\tcode\n😀"));
        assert!(!is_xml_text("a\u{0}b"));
        assert!(!is_xml_text("a\u{1b}b"));
        assert!(!is_xml_text("\u{FFFE}"));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut doc = String::new();
        for _ in 0..100_000 {
            doc.push_str("<a>");
        }
        assert!(parse_document(doc.as_bytes()).is_err());
    }

    #[test]
    fn resolves_namespaces() {
        let doc = br#"<x:a xmlns:x="urn:x" xmlns="urn:d"><b>t&amp;</b><x:c/></x:a>"#;
        let root = parse_document(doc).unwrap();
        assert!(root.is("urn:x", "a"));
        assert!(root.children[0].is("urn:d", "b"));
        assert_eq!(root.children[0].text, "t&");
        assert!(root.children[1].is("urn:x", "c"));
    }

    #[test]
    fn undeclared_prefix_and_trailing_garbage_are_errors() {
        assert!(parse_document(b"<x:a/>").is_err());
        assert!(parse_document(b"<a/><b/>").is_err());
        assert!(parse_document(b"<a>").is_err());
        assert!(parse_document(b"<a></b>").is_err());
    }
}
