//! The LDAP first factor's strings: escaping (RFC 4515 filters, RFC 4514 DNs), the filters it
//! builds, URLs, DN comparison form, result codes and AD's bind sub-codes in words, and TLS
//! failures explained for the admin.

use std::borrow::Cow;

/// How a server is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://` then the StartTLS extended operation before anything else.
    StartTls,
    /// `ldap://` in clear (`allow_plaintext = true` only).
    Plain,
}

impl Security {
    pub fn describe(self) -> &'static str {
        match self {
            Security::Ldaps => "LDAPS",
            Security::StartTls => "StartTLS",
            Security::Plain => "plaintext LDAP (allow_plaintext)",
        }
    }
}

/// One configured URL, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    /// `scheme://host:port`, what the connection is opened with.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub ldaps: bool,
}

/// Checks an entry of `urls`: `ldaps://host[:port]` or `ldap://host[:port]`, nothing else (no
/// DN, attributes or filter: those have keys of their own).
pub fn parse_url(s: &str) -> Result<ServerUrl, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("urls: {s:?} is not a URL: {e}"))?;
    let ldaps = match url.scheme() {
        "ldaps" => true,
        "ldap" => false,
        other => {
            return Err(format!(
                "urls: {s:?} has the scheme {other}:// ; use ldaps://host (port 636) or \
                 ldap://host (port 389, with StartTLS)"
            ))
        }
    };
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_owned(),
        _ => {
            return Err(format!(
                "urls: {s:?} names no host (ldaps://dc1.example.org)"
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "urls: {s:?} carries credentials; use bind_dn and bind_password_file"
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "urls: {s:?} has a path, query or fragment; only ldaps://host[:port] or \
             ldap://host[:port] (set base_dn, user_filter... with their own keys)"
        ));
    }
    let port = url.port().unwrap_or(if ldaps { 636 } else { 389 });
    let scheme = if ldaps { "ldaps" } else { "ldap" };
    Ok(ServerUrl {
        url: format!("{scheme}://{host}:{port}"),
        host,
        port,
        ldaps,
    })
}

/// RFC 4515: a value inside a filter, with `*`, `(`, `)`, `\` and NUL escaped as `\XX`.
pub fn escape_filter_value(value: &str) -> Cow<'_, str> {
    ldap3::ldap_escape(value)
}

/// RFC 4514: a value inside an RDN (`,`, `+`, `"`, `\`, `<`, `>`, `;`, `=`, NUL, and a
/// leading `#` or space, a trailing space, escaped).
pub fn escape_dn_value(value: &str) -> Cow<'_, str> {
    ldap3::dn_escape(value)
}

/// `template` with each `{user}` replaced by the filter-escaped login name.
pub fn user_filter(template: &str, login: &str) -> String {
    template.replace("{user}", &escape_filter_value(login))
}

/// `template` with each `{user}` replaced by the DN-escaped login name.
pub fn user_dn(template: &str, login: &str) -> String {
    template.replace("{user}", &escape_dn_value(login))
}

/// Groups whose `member_attribute` holds any of `dns` directly.
pub fn member_filter(group_filter: &str, member_attribute: &str, dns: &[String]) -> String {
    let mut out = format!("(&{group_filter}");
    if dns.len() > 1 {
        out.push_str("(|");
    }
    for dn in dns {
        out.push_str(&format!("({member_attribute}={})", escape_filter_value(dn)));
    }
    if dns.len() > 1 {
        out.push(')');
    }
    out.push(')');
    out
}

/// AD's LDAP_MATCHING_RULE_IN_CHAIN: every group `dn` is in, nested ones included, in one
/// search (AD evaluates the transitive closure; OpenLDAP does not know the rule and matches
/// nothing).
pub const IN_CHAIN_OID: &str = "1.2.840.113556.1.4.1941";

pub fn in_chain_filter(group_filter: &str, member_attribute: &str, dn: &str) -> String {
    format!(
        "(&{group_filter}({member_attribute}:{IN_CHAIN_OID}:={}))",
        escape_filter_value(dn)
    )
}

/// A DN in the form groups are returned and compared in: lower-case, without the optional
/// spaces around the separators (`,` `+` `=`) that RFC 4514 comparison ignores; escapes kept.
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut chars = dn.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(n) = chars.next() {
                    out.extend(n.to_lowercase());
                }
            }
            ',' | '+' | '=' => {
                while out.ends_with(' ') && !out.ends_with("\\ ") {
                    out.pop();
                }
                out.push(c);
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Whether `name` is an attribute description we can put in a filter or request (a name
/// with options, or an OID): no filter syntax can hide in it.
pub fn is_attribute_name(name: &str) -> bool {
    let mut parts = name.split(';');
    let base = parts.next().unwrap_or("");
    let base_ok = (base.starts_with(|c: char| c.is_ascii_alphabetic())
        && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        || (!base.is_empty()
            && base
                .split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())));
    base_ok
        && parts.all(|o| !o.is_empty() && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// Checks a configured filter (with `{user}` filled with a sample name) parses as LDAP.
pub fn check_filter(key: &str, filter: &str) -> Result<(), String> {
    let sample = user_filter(filter, "sample");
    if !filter.trim_start().starts_with('(') || ldap3::parse_filter(&sample).is_err() {
        return Err(format!(
            "{key} {filter:?} is not an LDAP filter (RFC 4515): write it in parentheses, e.g. \
             (&(objectClass=user)(sAMAccountName={{user}}))"
        ));
    }
    Ok(())
}

/// AD's sub-code in an invalidCredentials (49) diagnostic ("... AcceptSecurityContext error,
/// data 775, v4563"), in words.
pub fn ad_bind_reason(diagnostic: &str) -> Option<&'static str> {
    let lower = diagnostic.to_ascii_lowercase();
    let at = lower.find("data ")?;
    let code: String = lower[at + 5..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    Some(match code.as_str() {
        "52e" => "wrong password (AD 52e)",
        "525" => "no such user (AD 525)",
        "530" => "not permitted to log on at this time (AD 530)",
        "531" => "not permitted to log on from this workstation (AD 531)",
        "532" => "password expired (AD 532)",
        "533" => "account disabled (AD 533)",
        "568" => "too many security IDs (AD 568)",
        "701" => "account expired (AD 701)",
        "773" => "must change password at next logon (AD 773)",
        "775" => "account locked out (AD 775)",
        _ => return None,
    })
}

/// An LDAP result code's name (RFC 4511 appendix A).
pub fn rc_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        13 => "confidentialityRequired",
        19 => "constraintViolation",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "error",
    }
}

/// `rc` and the server's diagnostic text, for messages.
pub fn rc_text(rc: u32, text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        format!("{} ({rc})", rc_name(rc))
    } else {
        format!("{} ({rc}): {text}", rc_name(rc))
    }
}

/// The rustls error anywhere in `e`'s chain (`io::Error::source` skips what it wraps, so
/// each io::Error is opened with `get_ref`).
pub fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(tls) = find_rustls(inner) {
            return Some(tls);
        }
    }
    e.source().and_then(find_rustls)
}

/// A TLS failure with a directory server, and what to do about it.
pub fn explain_tls(e: &rustls::Error, host: &str, ca_file: Option<&std::path::Path>) -> String {
    use rustls::CertificateError as C;
    let ca = match ca_file {
        Some(p) => format!(
            "the server's certificate is not signed by ca_file ({}): set ca_file to the CA \
             that issued the directory's certificate (for AD, the enterprise root CA, PEM)",
            p.display()
        ),
        None => "the server's certificate is not signed by a CA in the system roots: set \
                 ca_file to the CA that issued the directory's certificate (for AD, the \
                 enterprise root CA, PEM)"
            .to_owned(),
    };
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for the name {host} ({c}): use in urls \
                 the name (or address) its certificate is issued for"
            ),
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => {
                format!(
                    "the server's certificate is expired or not yet valid ({c}): check this \
                     machine's clock, then the server's certificate"
                )
            }
            C::UnknownIssuer | C::BadSignature => ca,
            other => format!("the server's certificate is not trusted ({other}): {ca}"),
        },
        rustls::Error::AlertReceived(a) => format!(
            "the server ended the TLS handshake ({a:?}): no TLS version or cipher in common, or \
             it wants a client certificate"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::PeerMisbehaved(_) => format!(
            "{host} does not speak TLS there: is the port an LDAPS port (636) for an ldaps:// \
             URL, or a plain LDAP port (389) for ldap:// with StartTLS?"
        ),
        other => format!("TLS failure: {other}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped_per_rfc_4515() {
        assert_eq!(escape_filter_value("alice"), "alice");
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(escape_filter_value("al*"), "al\\2a");
        assert_eq!(escape_filter_value("a(b)c\\d\0"), "a\\28b\\29c\\5cd\\00");
        assert_eq!(
            user_filter("(uid={user})", "*)(uid=*"),
            "(uid=\\2a\\29\\28uid=\\2a)"
        );
        // An injection attempt stays one equality match on one value.
        assert!(ldap3::parse_filter(user_filter("(uid={user})", "x)(|(uid=*")).is_ok());
        assert_eq!(user_filter("(|(a={user})(b={user}))", "é"), "(|(a=é)(b=é))");
    }

    #[test]
    fn dn_values_are_escaped_per_rfc_4514() {
        assert_eq!(
            user_dn("uid={user},ou=people,dc=example,dc=org", "dave@example.org"),
            "uid=dave@example.org,ou=people,dc=example,dc=org"
        );
        assert_eq!(
            user_dn("uid={user},ou=people", "a,b=c+d"),
            "uid=a\\2cb\\3dc\\2bd,ou=people"
        );
        assert_eq!(user_dn("cn={user}", " #x "), "cn=\\20#x\\20");
        assert_eq!(user_dn("cn={user}", "#x"), "cn=\\23x");
    }

    #[test]
    fn group_filters() {
        let gf = "(objectClass=groupOfNames)";
        assert_eq!(
            member_filter(gf, "member", &["uid=a,dc=x".into()]),
            "(&(objectClass=groupOfNames)(member=uid=a,dc=x))"
        );
        assert_eq!(
            member_filter(gf, "member", &["cn=a,dc=x".into(), "cn=b*,dc=x".into()]),
            "(&(objectClass=groupOfNames)(|(member=cn=a,dc=x)(member=cn=b\\2a,dc=x)))"
        );
        assert_eq!(
            in_chain_filter(
                "(objectClass=group)",
                "member",
                "CN=Smith\\, John (IT),OU=Users,DC=corp,DC=example"
            ),
            "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=CN=Smith\\5c, John \
             \\28IT\\29,OU=Users,DC=corp,DC=example))"
        );
        for f in [
            member_filter(gf, "member", &["cn=a(b),dc=x".into(), "cn=c".into()]),
            in_chain_filter(gf, "member", "cn=a*,dc=x"),
        ] {
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
        }
    }

    #[test]
    fn dns_compare_lower_case_without_separator_spaces() {
        assert_eq!(
            normalize_dn("CN=VPN Users , OU=Groups,DC=Example, DC=org"),
            "cn=vpn users,ou=groups,dc=example,dc=org"
        );
        assert_eq!(normalize_dn("cn = a\\, B ,dc=x"), "cn=a\\, b,dc=x");
        assert_eq!(normalize_dn("cn=a\\ ,dc=x"), "cn=a\\ ,dc=x");
    }

    #[test]
    fn urls() {
        let u = parse_url("ldaps://dc1.example.org").unwrap();
        assert_eq!(
            (u.url.as_str(), u.port, u.ldaps),
            ("ldaps://dc1.example.org:636", 636, true)
        );
        let u = parse_url("ldap://127.0.0.1:3890/").unwrap();
        assert_eq!(
            (u.url.as_str(), u.host.as_str(), u.ldaps),
            ("ldap://127.0.0.1:3890", "127.0.0.1", false)
        );
        assert_eq!(parse_url("ldap://[::1]").unwrap().url, "ldap://[::1]:389");
        for (bad, says) in [
            ("https://dc1", "scheme https"),
            ("ldaps://", "no host"),
            ("ldaps://u:p@dc1", "credentials"),
            ("ldap://dc1/dc=example,dc=org?uid", "path"),
            ("dc1.example.org", "not a URL"),
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(says) && e.starts_with("urls:"), "{bad}: {e}");
        }
    }

    #[test]
    fn attribute_names() {
        for ok in [
            "mail",
            "userPrincipalName",
            "x-ms-ds",
            "cn;lang-en",
            "2.5.4.3",
        ] {
            assert!(is_attribute_name(ok), "{ok}");
        }
        for bad in ["", "mail)", "m*", "1mail", "a b", "cn;", "2..5", "mail=x"] {
            assert!(!is_attribute_name(bad), "{bad}");
        }
    }

    #[test]
    fn ad_sub_codes_in_words() {
        let d = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 775, v4563";
        assert_eq!(ad_bind_reason(d), Some("account locked out (AD 775)"));
        assert_eq!(
            ad_bind_reason("... data 52e, v2580"),
            Some("wrong password (AD 52e)")
        );
        assert_eq!(
            ad_bind_reason("data 533,"),
            Some("account disabled (AD 533)")
        );
        assert_eq!(ad_bind_reason(""), None);
        assert_eq!(ad_bind_reason("data 999"), None);
    }

    #[test]
    fn filters_are_checked() {
        assert!(check_filter("user_filter", "(uid={user})").is_ok());
        assert!(check_filter(
            "user_filter",
            "(|(sAMAccountName={user})(userPrincipalName={user})(uid={user}))"
        )
        .is_ok());
        let e = check_filter("user_filter", "uid={user}").unwrap_err();
        assert!(
            e.starts_with("user_filter") && e.contains("parentheses"),
            "{e}"
        );
        assert!(check_filter("group_filter", "(&(objectClass=group)").is_err());
    }
}
