//! The little XML TrustBuilder speaks: the REST answers' flat records and SOAP 1.1 (Axis) for
//! provisioning, where every element may be `xsi:nil="true"`. No I/O here.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The namespace of the provisioning (ConsoleAdmin) payload.
pub const CONSOLE_NS: &str = "http://console.inwebo.com";
/// SOAP 1.1 envelope namespace.
const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Deeper nesting is not TrustBuilder's (and keeps the recursive drop shallow).
const MAX_DEPTH: usize = 16;

/// An element: namespace, local name, nil-ness, direct text, children.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub(crate) ns: Option<String>,
    pub(crate) name: String,
    /// `xsi:nil="true"`.
    pub(crate) nil: bool,
    pub(crate) text: String,
    pub(crate) children: Vec<Node>,
}

impl Node {
    /// Direct children with this local name, in document order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child `name`; `None` when absent, nil or empty.
    pub(crate) fn text_of(&self, name: &str) -> Option<String> {
        self.all(name).next().and_then(Node::value)
    }

    /// This element's trimmed text; `None` when nil or empty.
    pub(crate) fn value(&self) -> Option<String> {
        let t = self.text.trim();
        (!self.nil && !t.is_empty()).then(|| t.to_owned())
    }
}

fn is_nil(e: &BytesStart<'_>) -> bool {
    e.attributes().flatten().any(|a| {
        a.key.local_name().as_ref() == b"nil" && matches!(a.value.as_ref(), b"true" | b"1")
    })
}

/// Parses a document into a tree, resolving namespaces. DOCTYPEs are refused.
pub(crate) fn parse(body: &[u8]) -> Result<Node, String> {
    let mut reader = NsReader::from_reader(body);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => {
                let at = reader.buffer_position();
                return Err(format!("malformed XML at byte {at}: {e}"));
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root.is_some() {
                    return Err("content after the root element".into());
                }
                if stack.len() >= MAX_DEPTH {
                    return Err("XML nested too deeply".into());
                }
                let ns = match ns {
                    ResolveResult::Bound(n) => Some(
                        String::from_utf8(n.into_inner().to_vec())
                            .map_err(|_| "namespace is not UTF-8".to_string())?,
                    ),
                    ResolveResult::Unbound => None,
                    ResolveResult::Unknown(p) => {
                        return Err(format!(
                            "undeclared namespace prefix {:?}",
                            String::from_utf8_lossy(&p)
                        ))
                    }
                };
                let node = Node {
                    ns,
                    name: String::from_utf8(e.local_name().into_inner().to_vec())
                        .map_err(|_| "element name is not UTF-8".to_string())?,
                    nil: is_nil(e),
                    ..Node::default()
                };
                if matches!(event, Event::Empty(_)) {
                    add(&mut stack, &mut root, node);
                } else {
                    stack.push(node);
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                add(&mut stack, &mut root, node);
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| format!("bad text in XML: {e}"))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text
                        .push_str(std::str::from_utf8(&t).map_err(|_| "CDATA is not UTF-8")?);
                }
            }
            Event::DocType(_) => return Err("DOCTYPE is not allowed".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("truncated XML".into());
    }
    root.ok_or_else(|| "no root element".to_string())
}

fn add(stack: &mut [Node], root: &mut Option<Node>, node: Node) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
}

/// The `{op}Return` of a SOAP 1.1 `{op}Response` (Axis style). A Fault, another envelope, a
/// payload in a namespace other than [`CONSOLE_NS`]: `Err`.
pub(crate) fn soap_return(body: &[u8], op: &str) -> Result<Node, String> {
    let root = parse(body)?;
    if root.name != "Envelope" || root.ns.as_deref() != Some(SOAP_NS) {
        return Err(format!("expected a SOAP 1.1 Envelope, got {}", root.name));
    }
    let body = root
        .children
        .into_iter()
        .find(|c| c.name == "Body" && c.ns.as_deref() == Some(SOAP_NS))
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
