//! XML as the MFA services answer it (SOAP 1.1 envelopes, flat REST records): a
//! namespace-resolving tree parser that refuses DOCTYPEs and bounds nesting. No I/O here; each
//! service checks its own namespaces and elements.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// SOAP 1.1 envelope namespace.
pub const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Nesting deeper than this is not a service's response; the bound also keeps the tree's
/// (recursive) drop shallow whatever the peer sends.
const MAX_DEPTH: usize = 32;

/// A parsed element: its namespace (None when unbound), local name, `xsi:nil`, direct text
/// and children.
#[derive(Debug)]
pub(crate) struct Element {
    /// The namespaces the caller knows are shared, not copied per element.
    pub(crate) ns: Option<Cow<'static, str>>,
    pub(crate) name: String,
    /// `xsi:nil="true"` (nillable elements of Axis services).
    pub(crate) nil: bool,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    pub(crate) fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }

    /// `{namespace}name`, for messages.
    pub(crate) fn qualified(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{{{ns}}}{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Direct children with this local name (any namespace), in document order.
    pub(crate) fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// This element's trimmed text; `None` when nil or empty.
    pub(crate) fn value(&self) -> Option<String> {
        let t = self.text.trim();
        (!self.nil && !t.is_empty()).then(|| t.to_owned())
    }

    /// The [`value`](Self::value) of the first child with this local name.
    pub(crate) fn text_of(&self, name: &str) -> Option<String> {
        self.named(name).next().and_then(Element::value)
    }
}

fn is_nil(e: &BytesStart<'_>) -> bool {
    e.attributes().flatten().any(|a| {
        a.key.local_name().as_ref() == b"nil" && matches!(a.value.as_ref(), b"true" | b"1")
    })
}

/// Parses a document into a tree, resolving namespaces; the `known` namespaces are shared by
/// every element that uses them, not copied.
pub(crate) fn parse_document(body: &[u8], known: &[&'static str]) -> Result<Element, String> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err("empty body".into());
    }
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
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
                    ResolveResult::Bound(n) => Some(intern(n.into_inner(), known)?),
                    ResolveResult::Unbound => None,
                    ResolveResult::Unknown(p) => {
                        return Err(format!(
                            "undeclared namespace prefix {:?}",
                            String::from_utf8_lossy(&p)
                        ))
                    }
                };
                let name = std::str::from_utf8(e.local_name().into_inner())
                    .map_err(|_| "element name is not UTF-8".to_string())?
                    .to_owned();
                let el = Element {
                    ns,
                    name,
                    nil: is_nil(e),
                    text: String::new(),
                    children: Vec::new(),
                };
                if matches!(event, Event::Empty(_)) {
                    attach(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| "unbalanced end tag".to_string())?;
                attach(&mut stack, &mut root, el);
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
                let s = std::str::from_utf8(&t)
                    .map_err(|_| "CDATA is not UTF-8".to_string())?
                    .to_owned();
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::DocType(_) => return Err("DOCTYPE is not allowed in a SOAP message".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("truncated XML (unclosed elements at end of input)".into());
    }
    root.ok_or_else(|| "no root element".to_string())
}

fn intern(ns: &[u8], known: &[&'static str]) -> Result<Cow<'static, str>, String> {
    if let Some(k) = known.iter().find(|k| k.as_bytes() == ns) {
        return Ok(Cow::Borrowed(k));
    }
    Ok(Cow::Owned(
        std::str::from_utf8(ns)
            .map_err(|_| "namespace is not UTF-8".to_string())?
            .to_owned(),
    ))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}
