//! Access-Request building and reply verification (RFC 2865, RFC 3579 §3.2), on raw bytes.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;
pub const ACCESS_CHALLENGE: u8 = 11;

pub const ATTR_USER_NAME: u8 = 1;
pub const ATTR_USER_PASSWORD: u8 = 2;
pub const ATTR_NAS_IP_ADDRESS: u8 = 4;
pub const ATTR_REPLY_MESSAGE: u8 = 18;
pub const ATTR_STATE: u8 = 24;
pub const ATTR_NAS_IDENTIFIER: u8 = 32;
pub const ATTR_MESSAGE_AUTHENTICATOR: u8 = 80;

/// Largest RADIUS packet (RFC 2865 §3).
pub const MAX_PACKET: usize = 4096;

type HmacMd5 = Hmac<Md5>;

/// What an Access-Request carries.
#[derive(Clone, Debug, Default)]
pub struct RequestSpec<'a> {
    pub user: &'a [u8],
    pub password: &'a [u8],
    pub state: Option<&'a [u8]>,
    pub nas_identifier: Option<&'a [u8]>,
    pub nas_ip: Option<[u8; 4]>,
    /// Put a Message-Authenticator first in the packet and sign it.
    pub message_authenticator: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BuildError {
    AttributeTooLong(u8),
    PasswordTooLong,
    PacketTooLong,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::AttributeTooLong(t) => write!(f, "attribute {t} longer than 253 bytes"),
            BuildError::PasswordTooLong => write!(f, "User-Password longer than 128 bytes"),
            BuildError::PacketTooLong => write!(f, "packet longer than 4096 bytes"),
        }
    }
}

impl std::error::Error for BuildError {}

/// A shared secret with its HMAC-MD5 key schedule computed once.
#[derive(Clone)]
pub struct Secret {
    secret: Vec<u8>,
    hmac: HmacMd5,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn new(secret: &[u8]) -> Secret {
        // HMAC takes keys of any length.
        let hmac = match HmacMd5::new_from_slice(secret) {
            Ok(h) => h,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        Secret {
            secret: secret.to_vec(),
            hmac,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.secret
    }

    /// HMAC-MD5 of `data` keyed by the secret.
    pub fn hmac_md5(&self, data: &[u8]) -> [u8; 16] {
        let mut m = self.hmac.clone();
        m.update(data);
        m.finalize().into_bytes().into()
    }
}

/// RFC 2865 §5.2 User-Password hiding.
pub fn hide_password(
    password: &[u8],
    secret: &Secret,
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, BuildError> {
    if password.len() > 128 {
        return Err(BuildError::PasswordTooLong);
    }
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut out = vec![0u8; padded_len];
    out[..password.len()].copy_from_slice(password);
    let mut prev: [u8; 16] = *authenticator;
    for chunk in out.chunks_mut(16) {
        let mut h = Md5::new();
        h.update(secret.bytes());
        h.update(prev);
        let b = h.finalize();
        for (c, k) in chunk.iter_mut().zip(b.iter()) {
            *c ^= k;
        }
        prev.copy_from_slice(chunk);
    }
    Ok(out)
}

/// Reverses [`hide_password`] (trailing NULs stripped).
pub fn unhide_password(hidden: &[u8], secret: &Secret, authenticator: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hidden.len());
    let mut prev: Vec<u8> = authenticator.to_vec();
    for chunk in hidden.chunks(16) {
        let mut h = Md5::new();
        h.update(secret.bytes());
        h.update(&prev);
        let b = h.finalize();
        out.extend(chunk.iter().zip(b.iter()).map(|(c, k)| c ^ k));
        prev = chunk.to_vec();
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    out
}

fn push_attr(buf: &mut Vec<u8>, t: u8, value: &[u8]) -> Result<(), BuildError> {
    if value.len() > 253 {
        return Err(BuildError::AttributeTooLong(t));
    }
    buf.push(t);
    buf.push((value.len() + 2) as u8);
    buf.extend_from_slice(value);
    Ok(())
}

/// Builds a signed Access-Request into `buf` (cleared first).
pub fn build_access_request(
    buf: &mut Vec<u8>,
    id: u8,
    authenticator: &[u8; 16],
    secret: &Secret,
    spec: &RequestSpec<'_>,
) -> Result<(), BuildError> {
    buf.clear();
    buf.extend_from_slice(&[ACCESS_REQUEST, id, 0, 0]);
    buf.extend_from_slice(authenticator);
    let ma_at = if spec.message_authenticator {
        let at = buf.len() + 2;
        push_attr(buf, ATTR_MESSAGE_AUTHENTICATOR, &[0u8; 16])?;
        Some(at)
    } else {
        None
    };
    push_attr(buf, ATTR_USER_NAME, spec.user)?;
    let hidden = hide_password(spec.password, secret, authenticator)?;
    push_attr(buf, ATTR_USER_PASSWORD, &hidden)?;
    if let Some(ip) = spec.nas_ip {
        push_attr(buf, ATTR_NAS_IP_ADDRESS, &ip)?;
    }
    if let Some(nas) = spec.nas_identifier {
        push_attr(buf, ATTR_NAS_IDENTIFIER, nas)?;
    }
    if let Some(state) = spec.state {
        push_attr(buf, ATTR_STATE, state)?;
    }
    if buf.len() > MAX_PACKET {
        return Err(BuildError::PacketTooLong);
    }
    let len = buf.len() as u16;
    buf[2..4].copy_from_slice(&len.to_be_bytes());
    if let Some(at) = ma_at {
        let mac = secret.hmac_md5(buf);
        buf[at..at + 16].copy_from_slice(&mac);
    }
    Ok(())
}

/// Why a reply was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// Shorter than 20 bytes, Length field out of range, or a bad attribute length.
    Malformed,
    /// Not the Identifier of the request.
    WrongIdentifier,
    /// The Response Authenticator does not match.
    BadResponseAuthenticator,
    /// A Message-Authenticator is present but wrong (or of the wrong length).
    BadMessageAuthenticator,
}

/// A verified reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyInfo {
    pub code: u8,
    /// A Message-Authenticator was present (and correct).
    pub has_message_authenticator: bool,
    /// The Message-Authenticator was the first attribute.
    pub message_authenticator_first: bool,
}

/// Walks the attributes of `packet[20..len]`, calling `f(offset_of_type_byte, type, value)`.
fn walk_attrs(packet: &[u8], mut f: impl FnMut(usize, u8, &[u8])) -> Result<(), VerifyError> {
    let mut i = 20;
    while i < packet.len() {
        if i + 2 > packet.len() {
            return Err(VerifyError::Malformed);
        }
        let l = packet[i + 1] as usize;
        if l < 2 || i + l > packet.len() {
            return Err(VerifyError::Malformed);
        }
        f(i, packet[i], &packet[i + 2..i + l]);
        i += l;
    }
    Ok(())
}

/// The packet cut at its Length field, or `Malformed`.
pub fn framed(datagram: &[u8]) -> Result<&[u8], VerifyError> {
    if datagram.len() < 20 {
        return Err(VerifyError::Malformed);
    }
    let len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if !(20..=MAX_PACKET).contains(&len) || len > datagram.len() {
        return Err(VerifyError::Malformed);
    }
    Ok(&datagram[..len])
}

/// Verifies a reply to the request with Identifier `id` and Request Authenticator `req_auth`:
/// the Response Authenticator and, when present, the Message-Authenticator (computed over the
/// reply with the Request Authenticator in the header, RFC 3579 §3.2).
pub fn verify_reply(
    datagram: &[u8],
    id: u8,
    req_auth: &[u8; 16],
    secret: &Secret,
) -> Result<ReplyInfo, VerifyError> {
    let p = framed(datagram)?;
    if p[1] != id {
        return Err(VerifyError::WrongIdentifier);
    }
    let mut ma: Option<(usize, usize)> = None;
    let mut first = true;
    let mut ma_first = false;
    let mut ma_bad_len = false;
    walk_attrs(p, |at, t, v| {
        if t == ATTR_MESSAGE_AUTHENTICATOR && ma.is_none() {
            if v.len() != 16 {
                ma_bad_len = true;
            }
            ma = Some((at + 2, v.len()));
            ma_first = first;
        }
        first = false;
    })?;
    let mut h = Md5::new();
    h.update(&p[..4]);
    h.update(req_auth);
    h.update(&p[20..]);
    h.update(secret.bytes());
    let want: [u8; 16] = h.finalize().into();
    if want[..] != p[4..20] {
        return Err(VerifyError::BadResponseAuthenticator);
    }
    if ma_bad_len {
        return Err(VerifyError::BadMessageAuthenticator);
    }
    if let Some((at, _)) = ma {
        let mut copy = [0u8; MAX_PACKET];
        let c = &mut copy[..p.len()];
        c.copy_from_slice(p);
        c[4..20].copy_from_slice(req_auth);
        c[at..at + 16].fill(0);
        let mac = secret.hmac_md5(c);
        if mac[..] != p[at..at + 16] {
            return Err(VerifyError::BadMessageAuthenticator);
        }
    }
    Ok(ReplyInfo {
        code: p[0],
        has_message_authenticator: ma.is_some(),
        message_authenticator_first: ma_first,
    })
}

/// Builds a signed reply (Message-Authenticator first, then `attrs` as (type, value)) to a
/// request with `id` and `req_auth`, padded with Reply-Message attributes up to `pad_to` bytes
/// when given. Used by the echo server and the tests.
pub fn build_reply(
    code: u8,
    id: u8,
    req_auth: &[u8; 16],
    secret: &Secret,
    attrs: &[(u8, &[u8])],
    pad_to: Option<usize>,
) -> Result<Vec<u8>, BuildError> {
    let mut buf = Vec::with_capacity(pad_to.unwrap_or(64).max(64));
    buf.extend_from_slice(&[code, id, 0, 0]);
    buf.extend_from_slice(req_auth);
    push_attr(&mut buf, ATTR_MESSAGE_AUTHENTICATOR, &[0u8; 16])?;
    for (t, v) in attrs {
        push_attr(&mut buf, *t, v)?;
    }
    if let Some(target) = pad_to {
        let target = target.min(MAX_PACKET);
        while buf.len() + 3 <= target {
            let n = (target - buf.len() - 2).min(253);
            push_attr(&mut buf, ATTR_REPLY_MESSAGE, &[b'x'; 253][..n])?;
        }
    }
    if buf.len() > MAX_PACKET {
        return Err(BuildError::PacketTooLong);
    }
    let len = buf.len() as u16;
    buf[2..4].copy_from_slice(&len.to_be_bytes());
    let mac = secret.hmac_md5(&buf);
    buf[22..38].copy_from_slice(&mac);
    let mut h = Md5::new();
    h.update(&buf);
    h.update(secret.bytes());
    let ra: [u8; 16] = h.finalize().into();
    buf[4..20].copy_from_slice(&ra);
    Ok(buf)
}

/// Reads an attribute's first value out of a packet (tests and the echo server).
pub fn find_attr(packet: &[u8], t: u8) -> Option<&[u8]> {
    let p = framed(packet).ok()?;
    let mut found: Option<(usize, usize)> = None;
    walk_attrs(p, |at, ty, v| {
        if ty == t && found.is_none() {
            found = Some((at + 2, v.len()));
        }
    })
    .ok()?;
    found.map(|(at, n)| &p[at..at + n])
}

/// Checks a request's Message-Authenticator (the echo server's optional check; tests).
pub fn request_message_authenticator_ok(packet: &[u8], secret: &Secret) -> Option<bool> {
    let p = framed(packet).ok()?;
    let mut ma: Option<usize> = None;
    walk_attrs(p, |at, t, v| {
        if t == ATTR_MESSAGE_AUTHENTICATOR && v.len() == 16 && ma.is_none() {
            ma = Some(at + 2);
        }
    })
    .ok()?;
    let at = ma?;
    let mut c = p.to_vec();
    c[at..at + 16].fill(0);
    Some(secret.hmac_md5(&c)[..] == p[at..at + 16])
}
