//! Namespace-aware request parsing (quick-xml) and response writing.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The VIP User Services payload namespace.
pub const VIP_NS: &str = "https://schemas.symantec.com/vip/2011/04/vipuserservices";
/// SOAP 1.1 envelope namespace.
pub const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

const MAX_DEPTH: usize = 48;
const MAX_ELEMENTS: usize = 20_000;

/// A parsed element: namespace, local name, text and children.
///
/// `text` is the unescaped character content, verbatim (not trimmed: VIP compares values as
/// sent). Whitespace-only text of an element that has child elements is dropped (indentation
/// between children); any other text of such an element is kept, so a validator can refuse
/// mixed content.
#[derive(Debug, Clone, Default)]
pub struct Elem {
    pub ns: Option<String>,
    pub name: String,
    pub text: String,
    pub children: Vec<Elem>,
}

impl Elem {
    /// True when this element is `{ns}name`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }

    /// First child `{VIP_NS}name`.
    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.is(VIP_NS, name))
    }

    /// All children `{VIP_NS}name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Elem> + 'a {
        self.children.iter().filter(move |c| c.is(VIP_NS, name))
    }

    /// Text of the first child `{VIP_NS}name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// Parses a whole XML document into its root element.
pub fn parse(doc: &[u8]) -> Result<Elem, String> {
    let text = std::str::from_utf8(doc).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Elem> = Vec::new();
    let mut root: Option<Elem> = None;
    let mut count = 0usize;
    loop {
        let (res, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("XML error: {e}"))?;
        let ns = match res {
            ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(format!(
                    "undeclared namespace prefix {:?}",
                    String::from_utf8_lossy(&p)
                ))
            }
        };
        match ev {
            Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                return Err("content after the root element".into());
            }
            Event::Start(e) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err("document too deep or too large".into());
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                stack.push(Elem {
                    ns,
                    name,
                    ..Elem::default()
                });
            }
            Event::Empty(e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err("document too large".into());
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let el = Elem {
                    ns,
                    name,
                    ..Elem::default()
                };
                match stack.last_mut() {
                    Some(top) => top.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| format!("bad text: {e}"))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None => {
                        if !s.trim().is_empty() {
                            return Err("text outside the root element".into());
                        }
                    }
                }
            }
            Event::CData(c) => {
                let s = String::from_utf8_lossy(&c).into_owned();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None => return Err("CDATA outside the root element".into()),
                }
            }
            Event::End(_) => {
                let mut el = stack.pop().ok_or("unbalanced end tag")?;
                if !el.children.is_empty() && is_xml_space(&el.text) {
                    el.text.clear();
                }
                match stack.last_mut() {
                    Some(top) => top.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::DocType(_) => return Err("DOCTYPE is not allowed".into()),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// True when `s` is only XML white space (space, tab, CR, LF) or empty.
pub fn is_xml_space(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Finds the operation element inside a SOAP 1.1 envelope.
pub fn soap_body_op(root: &Elem) -> Result<&Elem, String> {
    if !root.is(SOAP_NS, "Envelope") {
        return Err(format!(
            "expected {{{SOAP_NS}}}Envelope, found {{{}}}{}",
            root.ns.as_deref().unwrap_or(""),
            root.name
        ));
    }
    let body = root
        .children
        .iter()
        .find(|c| c.is(SOAP_NS, "Body"))
        .ok_or("no SOAP Body")?;
    body.children
        .first()
        .ok_or_else(|| "empty SOAP Body".to_string())
}

/// Escapes text for element content.
pub fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A response under construction:
/// `<?xml ...?><S:Envelope><S:Body><XResponse xmlns=VIP_NS>...`.
pub struct Resp {
    name: &'static str,
    buf: String,
}

impl Resp {
    /// Starts `name` with the common header fields in XSD order.
    pub fn new(
        name: &'static str,
        request_id: &str,
        status: &str,
        message: &str,
        detail: Option<(&str, &str)>,
    ) -> Resp {
        Resp::new_in(VIP_NS, name, request_id, status, message, detail)
    }

    /// Like [`Resp::new`], with the response element in namespace `ns` (for the
    /// wrong-namespace fault).
    pub fn new_in(
        ns: &str,
        name: &'static str,
        request_id: &str,
        status: &str,
        message: &str,
        detail: Option<(&str, &str)>,
    ) -> Resp {
        let mut buf = String::with_capacity(512);
        buf.push_str("<?xml version='1.0' encoding='UTF-8'?>");
        buf.push_str("<S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\"><S:Body>");
        buf.push('<');
        buf.push_str(name);
        buf.push_str(" xmlns=\"");
        buf.push_str(ns);
        buf.push_str("\">");
        let mut r = Resp { name, buf };
        r.field("requestId", request_id);
        r.field("status", status);
        r.field("statusMessage", message);
        if let Some((d, m)) = detail {
            r.field("detail", d);
            r.field("detailMessage", m);
        }
        r
    }

    /// `<name>escaped value</name>`
    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        self.open(name);
        self.buf.push_str(&esc(value));
        self.close(name)
    }

    /// `<name>`
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    /// `</name>`
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    /// A `{Key, Value}` pair element.
    pub fn kv(&mut self, name: &str, key: &str, value: &str) -> &mut Self {
        self.open(name);
        self.field("Key", key);
        self.field("Value", value);
        self.close(name)
    }

    /// Closes the response element and the envelope.
    pub fn finish(mut self) -> String {
        let name = self.name;
        self.close(name);
        self.buf.push_str("</S:Body></S:Envelope>");
        self.buf
    }
}

/// A SOAP 1.1 Fault document as a JAX-WS stack writes it.
pub fn soap_fault(code: &str, message: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='UTF-8'?><S:Envelope xmlns:S=\"{SOAP_NS}\"><S:Body><S:Fault \
         xmlns:ns4=\"http://www.w3.org/2003/05/soap-envelope\"><faultcode>S:{code}</faultcode>\
         <faultstring>{}</faultstring></S:Fault></S:Body></S:Envelope>",
        esc(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_and_unescapes() {
        let doc = r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:vip="https://schemas.symantec.com/vip/2011/04/vipuserservices"><soapenv:Header/><soapenv:Body><vip:CheckOtpRequest><vip:requestId>abcd</vip:requestId><vip:userId>J&#xF6;rg &amp; co</vip:userId></vip:CheckOtpRequest></soapenv:Body></soapenv:Envelope>"#;
        let root = parse(doc.as_bytes()).expect("parse");
        let op = soap_body_op(&root).expect("op");
        assert!(op.is(VIP_NS, "CheckOtpRequest"));
        assert_eq!(op.text_of("userId"), Some("Jörg & co"));
    }

    #[test]
    fn keeps_leaf_text_verbatim_and_drops_indentation() {
        let doc = "<a xmlns=\"https://schemas.symantec.com/vip/2011/04/vipuserservices\">\n  <otp> 123456 </otp>\n  <b>\n  </b>\n</a>";
        let root = parse(doc.as_bytes()).expect("parse");
        assert_eq!(root.text, "");
        assert_eq!(root.text_of("otp"), Some(" 123456 "));
        // A childless element keeps its white space (a validator decides about it).
        assert_eq!(root.text_of("b"), Some("\n  "));
        let mixed = parse(b"<a>x<b/>y</a>").expect("parse");
        assert_eq!(mixed.text, "xy");
    }

    #[test]
    fn rejects_garbage() {
        for d in [
            "",
            "<a>",
            "<a></b>",
            "<x:a/>",
            "garbage",
            "<a/><b/>",
            "<!DOCTYPE a><a/>",
        ] {
            assert!(parse(d.as_bytes()).is_err(), "{d}");
        }
    }
}
