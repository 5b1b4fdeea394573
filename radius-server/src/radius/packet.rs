//! Raw RADIUS packet work the `radius` crate cannot do: length and attribute checks on the
//! received bytes, Message-Authenticator (RFC 3579 §3.2) computation and verification, and
//! building replies with Message-Authenticator as the first attribute.
//!
//! User-Password is decoded here too (RFC 2865 §5.2), into zeroized buffers; other attribute
//! values (typed look-ups) are left to the `radius` crate.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// RFC 2865 §3: a packet is 20 to 4096 octets.
pub const MAX_PACKET_LEN: usize = 4096;
pub const HEADER_LEN: usize = 20;
/// The longest attribute value (255 minus type and length octets).
pub const MAX_ATTR_VALUE: usize = 253;

pub const CODE_ACCESS_REQUEST: u8 = 1;
pub const CODE_ACCESS_ACCEPT: u8 = 2;
pub const CODE_ACCESS_REJECT: u8 = 3;
pub const CODE_ACCESS_CHALLENGE: u8 = 11;
pub const CODE_STATUS_SERVER: u8 = 12;

pub const ATTR_USER_NAME: u8 = 1;
pub const ATTR_USER_PASSWORD: u8 = 2;
pub const ATTR_CHAP_PASSWORD: u8 = 3;
pub const ATTR_REPLY_MESSAGE: u8 = 18;
pub const ATTR_STATE: u8 = 24;
pub const ATTR_PROXY_STATE: u8 = 33;
pub const ATTR_PROMPT: u8 = 76;
pub const ATTR_MESSAGE_AUTHENTICATOR: u8 = 80;

/// Length of a Message-Authenticator attribute (type, length, 16-octet HMAC-MD5).
pub const MA_ATTR_LEN: usize = 18;
/// The longest User-Password value (RFC 2865 §5.2).
pub const MAX_USER_PASSWORD: usize = 128;

/// The HMAC-MD5 state keyed by a client's shared secret. Keyed once per client at start and
/// cloned per packet.
pub type MacKey = Hmac<Md5>;

/// Builds the keyed HMAC state for `secret`.
pub fn mac_key(secret: &[u8]) -> MacKey {
    use hmac::digest::KeyInit;
    // HMAC takes keys of any length (long ones are hashed), so this never fails; the
    // fallback only keeps the code free of panics.
    <MacKey as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <MacKey as KeyInit>::new(&Default::default()))
}

/// Why a datagram was dropped before any processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the 20-octet header.
    TooShort,
    /// The Length field is below 20 or above 4096.
    BadLength,
    /// The Length field claims more octets than were received.
    Truncated,
    /// An attribute's length is below 2 or runs past the packet.
    BadAttribute,
    /// Message-Authenticator present with a length other than 18, or more than once.
    BadMessageAuthenticatorAttr,
    /// User-Password of the wrong size (RFC 2865 §5.2: 16 to 128 octets, a multiple of 16).
    BadUserPassword,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::TooShort => "too_short",
            Malformed::BadLength => "bad_length",
            Malformed::Truncated => "truncated",
            Malformed::BadAttribute => "bad_attribute",
            Malformed::BadMessageAuthenticatorAttr => "bad_message_authenticator_attr",
            Malformed::BadUserPassword => "bad_user_password",
        }
    }

    /// What was wrong, for an admin's log line (says nothing of the bytes themselves).
    pub fn describe(self) -> &'static str {
        match self {
            Malformed::TooShort => "shorter than the 20-octet RADIUS header",
            Malformed::BadLength => "its Length field is outside 20..4096",
            Malformed::Truncated => {
                "shorter than its Length field says (cut in transit, or not RADIUS)"
            }
            Malformed::BadAttribute => "an attribute length is below 2 or runs past the packet",
            Malformed::BadMessageAuthenticatorAttr => {
                "Message-Authenticator is not 16 octets, or appears more than once"
            }
            Malformed::BadUserPassword => {
                "User-Password is not 16 to 128 octets in steps of 16 (RFC 2865 section 5.2)"
            }
        }
    }
}

/// What a packet of this code is and why this port does not serve it, for the admin's log
/// line; `None` for the codes served here (Access-Request, Status-Server).
pub fn unsupported_code(code: u8) -> Option<&'static str> {
    Some(match code {
        CODE_ACCESS_REQUEST | CODE_STATUS_SERVER => return None,
        4 | 5 => {
            "Accounting: this is the authentication port; send accounting to \
             radius.accounting_listen (by default this port + 1)"
        }
        40 | 43 => {
            "Disconnect/CoA: vip-bridge does not take dynamic authorization; \
             check the NAS's CoA/Disconnect target"
        }
        CODE_ACCESS_ACCEPT | CODE_ACCESS_REJECT | CODE_ACCESS_CHALLENGE | 41 | 42 | 44 | 45 => {
            "a reply, sent to a server port: check which port the peer expects replies on"
        }
        _ => "not a RADIUS authentication request (this port serves Access-Request and Status-Server)",
    })
}

/// What the receive loop needs from one datagram, found in a single pass over the raw bytes.
#[derive(Clone, Debug)]
pub struct RawInfo {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    /// The packet length from the header (octets past it are padding and ignored).
    pub len: usize,
    /// Offset of the Message-Authenticator attribute (its type octet), if present.
    pub message_authenticator: Option<usize>,
    pub has_proxy_state: bool,
    /// Offset and length of the first State value, if present.
    pub state: Option<(usize, usize)>,
}

impl RawInfo {
    /// The State value of the request, if any.
    pub fn state<'a>(&self, packet: &'a [u8]) -> Option<&'a [u8]> {
        self.state.and_then(|(off, len)| packet.get(off..off + len))
    }
}

/// Checks the header length and every attribute length (RFC 2865 §3, §5).
/// Returns the packet trimmed to its Length (octets beyond it are padding, §3).
pub fn check(datagram: &[u8]) -> Result<(RawInfo, &[u8]), Malformed> {
    if datagram.len() < HEADER_LEN {
        return Err(Malformed::TooShort);
    }
    let len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&len) {
        return Err(Malformed::BadLength);
    }
    if datagram.len() < len {
        return Err(Malformed::Truncated);
    }
    let packet = &datagram[..len];
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(&packet[4..HEADER_LEN]);
    let mut info = RawInfo {
        code: packet[0],
        identifier: packet[1],
        authenticator,
        len,
        message_authenticator: None,
        has_proxy_state: false,
        state: None,
    };
    for (off, typ, value) in attributes(packet)? {
        match typ {
            ATTR_MESSAGE_AUTHENTICATOR => {
                if value.len() != 16 || info.message_authenticator.is_some() {
                    return Err(Malformed::BadMessageAuthenticatorAttr);
                }
                info.message_authenticator = Some(off);
            }
            ATTR_PROXY_STATE => info.has_proxy_state = true,
            ATTR_STATE if info.state.is_none() => info.state = Some((off + 2, value.len())),
            // An empty value (attribute length 2) is how radcli (ocserv) sends "the user just
            // pressed Enter": the empty password, as FreeRADIUS reads it. Otherwise RFC 2865
            // §5.2: 16 to 128 octets in steps of 16.
            ATTR_USER_PASSWORD
                if !value.is_empty()
                    && (value.len() < 16 || value.len() > 128 || value.len() % 16 != 0) =>
            {
                return Err(Malformed::BadUserPassword)
            }
            _ => {}
        }
    }
    Ok((info, packet))
}

/// One attribute as found in a packet: offset of its type octet, type, value.
pub type RawAttr<'a> = (usize, u8, &'a [u8]);

/// Walks the attributes of a packet whose header was checked.
pub fn attributes(packet: &[u8]) -> Result<Vec<RawAttr<'_>>, Malformed> {
    let mut out = Vec::with_capacity(8);
    let mut i = HEADER_LEN;
    while i < packet.len() {
        if packet.len() - i < 2 {
            return Err(Malformed::BadAttribute);
        }
        let alen = packet[i + 1] as usize;
        if alen < 2 || i + alen > packet.len() {
            return Err(Malformed::BadAttribute);
        }
        out.push((i, packet[i], &packet[i + 2..i + alen]));
        i += alen;
    }
    Ok(out)
}

/// All Proxy-State values of a request, in order (RFC 2865 §5.33: copied unmodified).
pub fn proxy_states(packet: &[u8]) -> Vec<&[u8]> {
    attributes(packet)
        .map(|attrs| {
            attrs
                .into_iter()
                .filter(|(_, t, _)| *t == ATTR_PROXY_STATE)
                .map(|(_, _, v)| v)
                .collect()
        })
        .unwrap_or_default()
}

/// HMAC-MD5 over `packet` as it is, except that the 16 octets of the Message-Authenticator
/// value at `ma_offset` (offset of the attribute's type octet) count as zero.
fn compute_ma(key: &MacKey, packet: &[u8], ma_offset: usize) -> [u8; 16] {
    let value = ma_offset + 2;
    let mut mac = key.clone();
    mac.update(&packet[..value]);
    mac.update(&[0u8; 16]);
    mac.update(&packet[value + 16..]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// Verifies a request's Message-Authenticator (constant-time). `ma_offset` comes from
/// [`check`], which guarantees the attribute is 18 octets inside the packet.
pub fn verify_message_authenticator(key: &MacKey, packet: &[u8], ma_offset: usize) -> bool {
    let Some(received) = packet.get(ma_offset + 2..ma_offset + MA_ATTR_LEN) else {
        return false;
    };
    let expected = compute_ma(key, packet, ma_offset);
    bool::from(expected.ct_eq(received))
}

/// One attribute of a reply, in the order it is written (after Message-Authenticator).
pub type ReplyAttr<'a> = (u8, &'a [u8]);

/// Why a reply could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    ValueTooLong,
    PacketTooLong,
}

/// Builds a response (Access-Accept/Reject/Challenge) to a request whose header carried
/// `identifier` and `request_authenticator`:
/// 1. Message-Authenticator is written first, computed with the Request Authenticator in the
///    header (RFC 3579 §3.2), then
/// 2. the Response Authenticator = MD5(Code+ID+Length+RequestAuth+Attributes+Secret) (RFC 2865 §3).
pub fn build_response(
    code: u8,
    identifier: u8,
    request_authenticator: &[u8; 16],
    attrs: &[ReplyAttr<'_>],
    key: &MacKey,
    secret: &[u8],
) -> Result<Vec<u8>, BuildError> {
    let mut len = HEADER_LEN + MA_ATTR_LEN;
    for (_, v) in attrs {
        if v.len() > MAX_ATTR_VALUE {
            return Err(BuildError::ValueTooLong);
        }
        len += 2 + v.len();
    }
    if len > MAX_PACKET_LEN {
        return Err(BuildError::PacketTooLong);
    }
    let mut p = Vec::with_capacity(len);
    p.push(code);
    p.push(identifier);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.extend_from_slice(request_authenticator);
    p.push(ATTR_MESSAGE_AUTHENTICATOR);
    p.push(MA_ATTR_LEN as u8);
    p.extend_from_slice(&[0u8; 16]);
    for (t, v) in attrs {
        p.push(*t);
        p.push((v.len() + 2) as u8);
        p.extend_from_slice(v);
    }
    let ma = compute_ma(key, &p, HEADER_LEN);
    p[HEADER_LEN + 2..HEADER_LEN + MA_ATTR_LEN].copy_from_slice(&ma);
    let mut md5 = Md5::new();
    md5.update(&p);
    md5.update(secret);
    let response_auth = md5.finalize();
    p[4..HEADER_LEN].copy_from_slice(&response_auth);
    Ok(p)
}

/// Splits `text` into Reply-Message values of at most 253 octets, never inside a UTF-8
/// character. Empty text gives no values.
pub fn split_reply_message(text: &str) -> Vec<&[u8]> {
    split_reply_message_within(text, usize::MAX)
}

/// Like [`split_reply_message`], but the values with their attribute headers (2 octets each)
/// take at most `room` octets: the longest prefix of `text` that fits, cut on a character
/// boundary (all of it when it fits).
pub fn split_reply_message_within(text: &str, mut room: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() && room > 2 {
        let mut cut = rest.len().min(MAX_ATTR_VALUE).min(room - 2);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            break;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head.as_bytes());
        room -= 2 + cut;
        rest = tail;
    }
    out
}

/// Octets the attributes take in a packet (type and length octets included).
pub fn attrs_len(attrs: &[ReplyAttr<'_>]) -> usize {
    attrs.iter().map(|(_, v)| 2 + v.len()).sum()
}

/// A User-Password value of a size RFC 2865 §5.2 does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadUserPassword;

/// Recovers the password hidden in a User-Password value (RFC 2865 §5.2): block i is
/// c(i) xor MD5(secret + c(i-1)), with c(0) the Request Authenticator; trailing NULs (the
/// padding) are stripped. An empty value is the empty password; otherwise the value must be 16
/// to 128 octets, a multiple of 16.
///
/// The secret is only borrowed; the plaintext lives in a zeroized buffer allocated once at its
/// final size (never reallocated), and each key-stream block is wiped after use.
pub fn decode_user_password(
    hidden: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Zeroizing<Vec<u8>>, BadUserPassword> {
    if hidden.len() > MAX_USER_PASSWORD || hidden.len() % 16 != 0 {
        return Err(BadUserPassword);
    }
    let mut plain = Zeroizing::new(Vec::with_capacity(hidden.len()));
    let mut previous: &[u8] = request_authenticator;
    for chunk in hidden.chunks_exact(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(previous);
        let mut key_stream = md5.finalize();
        plain.extend(chunk.iter().zip(key_stream.iter()).map(|(c, b)| c ^ b));
        key_stream.as_mut_slice().zeroize();
        previous = chunk;
    }
    let keep = plain.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    // The cut-off padding is zero already; Zeroizing wipes the whole capacity on drop.
    plain.truncate(keep);
    Ok(plain)
}

/// Builds a request with a Message-Authenticator (for tests and tools): the attributes are
/// written in order and the one of type 80 (if any, 16 octets) is filled in.
#[cfg(test)]
pub fn sign_request(
    code: u8,
    identifier: u8,
    authenticator: &[u8; 16],
    attrs: &[ReplyAttr<'_>],
    key: &MacKey,
) -> Vec<u8> {
    let mut p = vec![code, identifier, 0, 0];
    p.extend_from_slice(authenticator);
    let mut ma_off = None;
    for (t, v) in attrs {
        if *t == ATTR_MESSAGE_AUTHENTICATOR {
            ma_off = Some(p.len());
        }
        p.push(*t);
        p.push((v.len() + 2) as u8);
        p.extend_from_slice(v);
    }
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    if let Some(off) = ma_off {
        let ma = compute_ma(key, &p, off);
        p[off + 2..off + 18].copy_from_slice(&ma);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    // Produced with pyrad 2.4 (see tests/radius/ma_vector.py): an Access-Request from
    // "alice" with Message-Authenticator, secret "testing123", fixed authenticator and id 7.
    const VECTOR_SECRET: &[u8] = b"testing123";
    const VECTOR_REQUEST: &str = include_str!("testdata/ma_request.hex");
    const VECTOR_REPLY: &str = include_str!("testdata/ma_reply.hex");

    #[test]
    fn unsupported_codes_are_named_and_served_ones_are_not() {
        assert_eq!(unsupported_code(CODE_ACCESS_REQUEST), None);
        assert_eq!(unsupported_code(CODE_STATUS_SERVER), None);
        assert!(unsupported_code(4).unwrap().starts_with("Accounting"));
        assert!(unsupported_code(43).unwrap().starts_with("Disconnect/CoA"));
        assert!(unsupported_code(CODE_ACCESS_ACCEPT)
            .unwrap()
            .starts_with("a reply"));
        assert!(unsupported_code(255).unwrap().starts_with("not a RADIUS"));
    }

    #[test]
    fn verifies_a_known_message_authenticator() {
        let pkt = unhex(VECTOR_REQUEST.trim());
        let (info, packet) = check(&pkt).unwrap();
        let key = mac_key(VECTOR_SECRET);
        let off = info.message_authenticator.unwrap();
        assert!(verify_message_authenticator(&key, packet, off));
        assert!(!verify_message_authenticator(
            &mac_key(b"wrong"),
            packet,
            off
        ));
        let mut tampered = pkt.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(!verify_message_authenticator(&key, &tampered, off));
    }

    #[test]
    fn reply_matches_a_known_vector_and_is_authentic() {
        // The reply pyrad verified strictly: Access-Reject with Reply-Message "Nope".
        let req = unhex(VECTOR_REQUEST.trim());
        let (info, _) = check(&req).unwrap();
        let key = mac_key(VECTOR_SECRET);
        let reply = build_response(
            CODE_ACCESS_REJECT,
            info.identifier,
            &info.authenticator,
            &[(ATTR_REPLY_MESSAGE, b"Nope")],
            &key,
            VECTOR_SECRET,
        )
        .unwrap();
        assert_eq!(hex::encode(&reply), VECTOR_REPLY.trim());
        assert!(radius::core::packet::Packet::is_authentic_response(
            &reply,
            &req,
            VECTOR_SECRET
        ));
    }

    #[test]
    fn message_authenticator_is_first_and_verifies_with_request_authenticator() {
        let key = mac_key(b"s3cret");
        let req_auth = [9u8; 16];
        let reply = build_response(
            CODE_ACCESS_CHALLENGE,
            42,
            &req_auth,
            &[
                (ATTR_REPLY_MESSAGE, b"Enter code"),
                (ATTR_STATE, b"abc"),
                (ATTR_PROXY_STATE, b"p1"),
            ],
            &key,
            b"s3cret",
        )
        .unwrap();
        assert_eq!(reply[0], CODE_ACCESS_CHALLENGE);
        assert_eq!(reply[1], 42);
        assert_eq!(
            u16::from_be_bytes([reply[2], reply[3]]) as usize,
            reply.len()
        );
        assert_eq!(reply[HEADER_LEN], ATTR_MESSAGE_AUTHENTICATOR);
        assert_eq!(reply[HEADER_LEN + 1], 18);
        // Put the Request Authenticator back and the MAC must verify.
        let mut check_copy = reply.clone();
        check_copy[4..20].copy_from_slice(&req_auth);
        assert!(verify_message_authenticator(&key, &check_copy, HEADER_LEN));
        // And the response authenticator is the RFC 2865 one.
        let mut req = vec![1u8, 42, 0, 20];
        req.extend_from_slice(&req_auth);
        assert!(radius::core::packet::Packet::is_authentic_response(
            &reply, &req, b"s3cret"
        ));
        let attrs = attributes(&reply).unwrap();
        let types: Vec<u8> = attrs.iter().map(|a| a.1).collect();
        assert_eq!(types, vec![80, 18, 24, 33]);
    }

    #[test]
    fn length_checks() {
        assert_eq!(check(&[1u8; 10]).unwrap_err(), Malformed::TooShort);
        let mut p = vec![1u8, 1, 0, 19];
        p.extend_from_slice(&[0; 16]);
        assert_eq!(check(&p).unwrap_err(), Malformed::BadLength);
        p[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(check(&p).unwrap_err(), Malformed::BadLength);
        p[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(check(&p).unwrap_err(), Malformed::Truncated);
        // Attribute running past the end.
        let mut p = vec![1u8, 1, 0, 24];
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&[1, 10, b'a', b'b']);
        assert_eq!(check(&p).unwrap_err(), Malformed::BadAttribute);
        // Attribute of length 1.
        p[20..24].copy_from_slice(&[1, 1, 0, 0]);
        assert_eq!(check(&p).unwrap_err(), Malformed::BadAttribute);
        // Padding after Length is ignored.
        let mut p = vec![1u8, 1, 0, 23];
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&[1, 3, b'a', 0xff, 0xff]);
        let (info, packet) = check(&p).unwrap();
        assert_eq!(packet.len(), 23);
        assert_eq!(info.len, 23);
    }

    #[test]
    fn bad_message_authenticator_and_password_sizes_are_malformed() {
        let mut p = vec![1u8, 1, 0, 30];
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&[80, 10, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            check(&p).unwrap_err(),
            Malformed::BadMessageAuthenticatorAttr
        );
        let mut p = vec![1u8, 1, 0, 27];
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&[2, 7, 1, 2, 3, 4, 5]);
        assert_eq!(check(&p).unwrap_err(), Malformed::BadUserPassword);
    }

    #[test]
    fn finds_state_and_proxy_state() {
        let key = mac_key(b"x");
        let p = sign_request(
            1,
            3,
            &[1; 16],
            &[(33, b"one"), (24, b"ST"), (33, b"two"), (80, &[0; 16])],
            &key,
        );
        let (info, packet) = check(&p).unwrap();
        assert!(info.has_proxy_state);
        assert_eq!(info.state(packet), Some(&b"ST"[..]));
        assert_eq!(proxy_states(packet), vec![&b"one"[..], &b"two"[..]]);
        assert!(verify_message_authenticator(
            &key,
            packet,
            info.message_authenticator.unwrap()
        ));
    }

    #[test]
    fn reply_message_is_split_at_253_octets_on_char_boundaries() {
        assert!(split_reply_message("").is_empty());
        let short = split_reply_message("hello");
        assert_eq!(short, vec![&b"hello"[..]]);
        let long = "a".repeat(600);
        let parts = split_reply_message(&long);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![253, 253, 94]
        );
        // 'é' is two octets: 252 'a' then 'é' must not be cut in half.
        let tricky = format!("{}é{}", "a".repeat(252), "b".repeat(10));
        let parts = split_reply_message(&tricky);
        assert_eq!(parts[0].len(), 252);
        assert_eq!(parts.concat(), tricky.as_bytes());
        assert!(parts.iter().all(|p| std::str::from_utf8(p).is_ok()));
    }

    // pyrad 2.6 `PwCrypt` (tests/radius/ma_vector.py's request: secret "testing123", Request
    // Authenticator 00 01 .. 0f).
    const PW_SECRET: &[u8] = b"testing123";
    const PW_AUTH: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    const SIXTEEN: &str = "0123456789abcdef";

    #[test]
    fn user_password_decodes_known_vectors() {
        let cases: [(&str, String); 6] = [
            ("96ee09ca74fd7a1a104607240014828b", String::new()),
            ("a7dc3afe41cb7a1a104607240014828b", "123456".into()),
            ("a6df3bf940c84c2d287f66466370e7ed", SIXTEEN.into()),
            (
                "a6df3bf940c84c2d287f66466370e7ed329926ed946a79ae383e111b63f9c204",
                format!("{SIXTEEN}{}", SIXTEEN.to_uppercase()),
            ),
            (
                "ee9671b20c850262683e7f5c786cfaf3a9bcdd87e2c659daab317259322a498d",
                "x".repeat(17),
            ),
            (
                "a6df3bf940c84c2d287f66466370e7ed329926ed946a79ae383e313b43d9e224\
                 484b9a79b3c8d2660ed87807133b744a002b8d39ba17737c097a6562ab6c70fb\
                 d15acb6ce46aed9822197ae67427b3e12339940681d637d88e91579c65cf04c7\
                 acda8e37dd9b7abbbb14faf46af506baae1dc9feae94c75e027164b527b46bdd",
                SIXTEEN.repeat(8),
            ),
        ];
        for (hidden, plain) in cases {
            let hidden = unhex(hidden);
            let got = decode_user_password(&hidden, PW_SECRET, &PW_AUTH).unwrap();
            assert_eq!(&got[..], plain.as_bytes(), "{} octets", hidden.len());
        }
    }

    #[test]
    fn user_password_round_trips_through_the_crate_encoder() {
        use radius::core::avp::AVP;
        let auth: [u8; 16] = rand::random();
        for len in [1usize, 6, 15, 16, 17, 31, 32, 33, 100, 127, 128] {
            let plain: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let hidden = AVP::from_user_password(2, &plain, b"s3cret", &auth)
                .unwrap()
                .encode_bytes();
            assert_eq!(hidden.len(), len.div_ceil(16) * 16);
            let got = decode_user_password(&hidden, b"s3cret", &auth).unwrap();
            assert_eq!(&got[..], &plain[..], "{len} octets");
            // The wrong secret gives something else (RADIUS has no integrity check here).
            let wrong = decode_user_password(&hidden, b"other", &auth).unwrap();
            assert_ne!(&wrong[..], &plain[..]);
        }
    }

    #[test]
    fn user_password_empty_value_is_the_empty_password() {
        // A User-Password attribute of 2 octets: no value at all.
        let got = decode_user_password(&[], PW_SECRET, &PW_AUTH).unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn user_password_only_trailing_nuls_are_padding() {
        use radius::core::avp::AVP;
        let hidden = AVP::from_user_password(2, b"ab\0cd", PW_SECRET, &PW_AUTH)
            .unwrap()
            .encode_bytes();
        let got = decode_user_password(&hidden, PW_SECRET, &PW_AUTH).unwrap();
        assert_eq!(&got[..], b"ab\0cd");
    }

    #[test]
    fn user_password_of_a_bad_size_is_refused() {
        for len in [1usize, 2, 15, 17, 31, 33, 127, 129, 144, 253] {
            assert_eq!(
                decode_user_password(&vec![7u8; len], PW_SECRET, &PW_AUTH),
                Err(BadUserPassword),
                "{len} octets"
            );
        }
    }

    #[test]
    fn oversized_replies_are_refused() {
        let key = mac_key(b"x");
        let big = [0u8; 254];
        assert_eq!(
            build_response(2, 1, &[0; 16], &[(18, &big)], &key, b"x").unwrap_err(),
            BuildError::ValueTooLong
        );
        let v = [0u8; 253];
        let many: Vec<ReplyAttr<'_>> = (0..17).map(|_| (18u8, &v[..])).collect();
        assert_eq!(
            build_response(2, 1, &[0; 16], &many, &key, b"x").unwrap_err(),
            BuildError::PacketTooLong
        );
    }
}
