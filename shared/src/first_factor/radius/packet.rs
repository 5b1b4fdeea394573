//! The client side of RADIUS, by hand: building Access-Request and Status-Server packets
//! (RFC 2865 §3, §4.1; RFC 5997 §3), hiding User-Password (RFC 2865 §5.2), computing
//! Message-Authenticator (RFC 3579 §3.2) and checking a reply: every length, the Response
//! Authenticator (RFC 2865 §3) and Message-Authenticator, all comparisons in constant time.
//! Nothing here panics on any bytes from the network.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// RFC 2865 §3: a packet is 20 to 4096 octets.
pub const MAX_PACKET_LEN: usize = 4096;
pub const HEADER_LEN: usize = 20;
/// The longest attribute value (255 minus the type and length octets).
pub const MAX_ATTR_VALUE: usize = 253;
/// RFC 2865 §5.2: a password is hidden in at most 128 octets.
pub const MAX_PASSWORD: usize = 128;

pub const CODE_ACCESS_REQUEST: u8 = 1;
pub const CODE_ACCESS_ACCEPT: u8 = 2;
pub const CODE_ACCESS_REJECT: u8 = 3;
pub const CODE_ACCESS_CHALLENGE: u8 = 11;
pub const CODE_STATUS_SERVER: u8 = 12;

pub const ATTR_USER_NAME: u8 = 1;
pub const ATTR_USER_PASSWORD: u8 = 2;
pub const ATTR_REPLY_MESSAGE: u8 = 18;
pub const ATTR_STATE: u8 = 24;
pub const ATTR_NAS_IDENTIFIER: u8 = 32;
pub const ATTR_MESSAGE_AUTHENTICATOR: u8 = 80;

/// The HMAC-MD5 state keyed by the shared secret, keyed once and cloned per packet.
pub type MacKey = Hmac<Md5>;

/// Builds the keyed HMAC state for `secret`.
pub fn mac_key(secret: &[u8]) -> MacKey {
    use hmac::digest::KeyInit;
    // HMAC takes keys of any length (long ones are hashed), so this never fails; the fallback
    // only keeps the code free of panics.
    <MacKey as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <MacKey as KeyInit>::new(&Default::default()))
}

/// RFC 2865 §5.2: the password, padded with zeros to a multiple of 16 octets, XORed with
/// b1 = MD5(S + RA), b2 = MD5(S + c1), ... `password` must be 1 to 128 octets (checked by the
/// caller; longer input is cut at 128 rather than panicking).
pub fn hide_password(password: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
    let password = &password[..password.len().min(MAX_PASSWORD)];
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut padded = Zeroizing::new(vec![0u8; padded_len]);
    padded[..password.len()].copy_from_slice(password);
    let mut out = Vec::with_capacity(padded_len);
    let mut previous: [u8; 16] = *authenticator;
    for chunk in padded.chunks(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(previous);
        let b = md5.finalize();
        for (i, (p, k)) in chunk.iter().zip(b.iter()).enumerate() {
            previous[i] = p ^ k;
        }
        out.extend_from_slice(&previous);
    }
    out
}

/// A request under construction: header, then Message-Authenticator first (Blast-RADIUS:
/// RFC 3579 §3.2 lets it go anywhere; first is what FreeRADIUS 3.2.5 and the advisory ask),
/// then the attributes; [`Request::finish`] fills in the Length and the HMAC.
pub struct Request {
    bytes: Vec<u8>,
}

impl Request {
    pub fn new(code: u8, identifier: u8, authenticator: &[u8; 16]) -> Request {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&[code, identifier, 0, 0]);
        bytes.extend_from_slice(authenticator);
        bytes.extend_from_slice(&[ATTR_MESSAGE_AUTHENTICATOR, 18]);
        bytes.extend_from_slice(&[0u8; 16]);
        Request { bytes }
    }

    /// Appends one attribute; values over 253 octets are cut (callers check lengths first).
    pub fn attr(&mut self, kind: u8, value: &[u8]) -> &mut Request {
        let value = &value[..value.len().min(MAX_ATTR_VALUE)];
        self.bytes.push(kind);
        self.bytes.push((value.len() + 2) as u8);
        self.bytes.extend_from_slice(value);
        self
    }

    /// Sets the Length and Message-Authenticator (HMAC-MD5 over the whole packet with the
    /// MA value zero, RFC 3579 §3.2; in a request the header holds the Request Authenticator).
    pub fn finish(mut self, key: &MacKey) -> Vec<u8> {
        let len = self.bytes.len().min(MAX_PACKET_LEN) as u16;
        self.bytes.truncate(len as usize);
        self.bytes[2..4].copy_from_slice(&len.to_be_bytes());
        let mut mac = key.clone();
        mac.update(&self.bytes);
        let ma = mac.finalize().into_bytes();
        self.bytes[HEADER_LEN + 2..HEADER_LEN + 18].copy_from_slice(&ma);
        self.bytes
    }
}

/// Why a reply was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Shorter than the header, a Length outside 20..4096 or above what arrived, an attribute
    /// length below 2 or past the end, or Message-Authenticator not 16 octets / repeated.
    Malformed,
    /// Not the Identifier of our request.
    WrongIdentifier,
    /// The Response Authenticator does not verify with the shared secret.
    BadAuthenticator,
    /// Message-Authenticator present and wrong.
    BadMessageAuthenticator,
    /// No Message-Authenticator where one is required.
    MissingMessageAuthenticator,
}

impl Dropped {
    pub fn describe(self) -> &'static str {
        match self {
            Dropped::Malformed => "a malformed reply (bad length or attribute)",
            Dropped::WrongIdentifier => "a reply with another Identifier",
            Dropped::BadAuthenticator => {
                "a reply whose Response Authenticator does not verify with the shared secret"
            }
            Dropped::BadMessageAuthenticator => {
                "a reply whose Message-Authenticator does not verify with the shared secret"
            }
            Dropped::MissingMessageAuthenticator => {
                "a reply without Message-Authenticator (require_message_authenticator = true)"
            }
        }
    }
}

/// A reply that verified: its code and attributes (type, value), in the order received.
#[derive(Debug)]
pub struct Reply {
    pub code: u8,
    pub attributes: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    /// The values of every attribute of `kind`, in order.
    pub fn values(&self, kind: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }
}

/// Walks the attributes after the header (RFC 2865 §5): offset of each type octet, type,
/// value. `None` when an attribute's length is below 2 or runs past the packet.
fn attributes(packet: &[u8]) -> Option<Vec<(usize, u8, &[u8])>> {
    let mut out = Vec::new();
    let mut i = HEADER_LEN;
    while i < packet.len() {
        let kind = *packet.get(i)?;
        let alen = *packet.get(i + 1)? as usize;
        if alen < 2 {
            return None;
        }
        let value = packet.get(i + 2..i + alen)?;
        out.push((i, kind, value));
        i += alen;
    }
    Some(out)
}

/// Checks a datagram received for the request `request` (its Identifier and Request
/// Authenticator): lengths (RFC 2865 §3), Identifier, Response Authenticator = MD5(Code + ID +
/// Length + RequestAuth + Attributes + Secret) (§3), and Message-Authenticator, computed over
/// the reply with the Request Authenticator in place of the Response Authenticator and the
/// MA value zero (RFC 3579 §3.2), required when `require_ma`.
pub fn check_reply(
    datagram: &[u8],
    identifier: u8,
    request_authenticator: &[u8; 16],
    secret: &[u8],
    key: &MacKey,
    require_ma: bool,
) -> Result<Reply, Dropped> {
    if datagram.len() < HEADER_LEN {
        return Err(Dropped::Malformed);
    }
    let len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&len) || datagram.len() < len {
        return Err(Dropped::Malformed);
    }
    // Octets past Length are padding (§3) and ignored.
    let packet = &datagram[..len];
    let attrs = attributes(packet).ok_or(Dropped::Malformed)?;
    let mut ma_offset = None;
    for (off, kind, value) in &attrs {
        if *kind == ATTR_MESSAGE_AUTHENTICATOR {
            if value.len() != 16 || ma_offset.is_some() {
                return Err(Dropped::Malformed);
            }
            ma_offset = Some(*off);
        }
    }
    if packet[1] != identifier {
        return Err(Dropped::WrongIdentifier);
    }
    let mut md5 = Md5::new();
    md5.update(&packet[..4]);
    md5.update(request_authenticator);
    md5.update(&packet[HEADER_LEN..]);
    md5.update(secret);
    let expected = md5.finalize();
    if !bool::from(expected.as_slice().ct_eq(&packet[4..HEADER_LEN])) {
        return Err(Dropped::BadAuthenticator);
    }
    match ma_offset {
        Some(off) => {
            let value = off + 2;
            let mut mac = key.clone();
            mac.update(&packet[..4]);
            mac.update(request_authenticator);
            mac.update(&packet[HEADER_LEN..value]);
            mac.update(&[0u8; 16]);
            mac.update(&packet[value + 16..]);
            let expected = mac.finalize().into_bytes();
            if !bool::from(expected.as_slice().ct_eq(&packet[value..value + 16])) {
                return Err(Dropped::BadMessageAuthenticator);
            }
        }
        None if require_ma => return Err(Dropped::MissingMessageAuthenticator),
        None => {}
    }
    Ok(Reply {
        code: packet[0],
        attributes: attrs
            .into_iter()
            .filter(|(_, k, _)| *k != ATTR_MESSAGE_AUTHENTICATOR)
            .map(|(_, k, v)| (k, v.to_vec()))
            .collect(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Signs a reply as a server with `secret` would: MA (if `with_ma`) over the packet with
    /// the Request Authenticator, then the Response Authenticator.
    pub(crate) fn sign_reply(
        code: u8,
        id: u8,
        request_authenticator: &[u8; 16],
        attrs: &[(u8, &[u8])],
        secret: &[u8],
        with_ma: bool,
    ) -> Vec<u8> {
        let mut p = vec![code, id, 0, 0];
        p.extend_from_slice(request_authenticator);
        if with_ma {
            p.extend_from_slice(&[ATTR_MESSAGE_AUTHENTICATOR, 18]);
            p.extend_from_slice(&[0u8; 16]);
        }
        for (k, v) in attrs {
            p.push(*k);
            p.push(v.len() as u8 + 2);
            p.extend_from_slice(v);
        }
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        if with_ma {
            let mut mac = mac_key(secret);
            mac.update(&p);
            let ma = mac.finalize().into_bytes();
            p[22..38].copy_from_slice(&ma);
        }
        let mut md5 = Md5::new();
        md5.update(&p);
        md5.update(secret);
        let ra = md5.finalize();
        p[4..20].copy_from_slice(&ra);
        p
    }

    const RA: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn user_password_hiding_matches_a_known_vector() {
        // python3 -c "import hashlib; s=b'testing123'; ra=b'0123456789abcdef';
        //   p=b'a-password-of-21-byte'.ljust(32, b'\0'); b1=hashlib.md5(s+ra).digest();
        //   c1=bytes(x^y for x,y in zip(p[:16],b1)); b2=hashlib.md5(s+c1).digest();
        //   c2=bytes(x^y for x,y in zip(p[16:],b2)); print((c1+c2).hex())"
        let hidden = hide_password(b"a-password-of-21-byte", b"testing123", &RA);
        assert_eq!(
            hex::encode(&hidden),
            "3b28ab5c9272de30d2ca827f75e8a3f8c287b4eca2e60d9ede0f22421f3e854b"
        );
        // One block for a short password, and the length rounds up to 16.
        assert_eq!(hide_password(b"x", b"s", &RA).len(), 16);
        assert_eq!(hide_password(&[b'y'; 128], b"s", &RA).len(), 128);
        assert_eq!(hide_password(&[b'y'; 300], b"s", &RA).len(), 128);
    }

    #[test]
    fn message_authenticator_is_hmac_md5_with_the_field_zero() {
        // python3 -c "import hmac,hashlib; ra=b'0123456789abcdef';
        //   p=bytes([12,7,0,38])+ra+bytes([80,18])+bytes(16);
        //   print(hmac.new(b'testing123', p, hashlib.md5).hexdigest())"
        let p = Request::new(CODE_STATUS_SERVER, 7, &RA).finish(&mac_key(b"testing123"));
        assert_eq!(p.len(), 38);
        assert_eq!(&p[..4], &[12, 7, 0, 38]);
        assert_eq!(hex::encode(&p[22..38]), "c3461e3614a05d247c1ed586758fffc0");
    }

    #[test]
    fn a_signed_reply_verifies_and_a_wrong_secret_does_not() {
        let key = mac_key(b"s3cret");
        let ok = sign_reply(2, 9, &RA, &[(25, b"class")], b"s3cret", true);
        let r = check_reply(&ok, 9, &RA, b"s3cret", &key, true).expect("verifies");
        assert_eq!(r.code, 2);
        assert_eq!(r.attributes, vec![(25, b"class".to_vec())]);
        let wrong = sign_reply(2, 9, &RA, &[], b"other", true);
        assert_eq!(
            check_reply(&wrong, 9, &RA, b"s3cret", &key, true).expect_err("refused"),
            Dropped::BadAuthenticator
        );
        let no_ma = sign_reply(2, 9, &RA, &[], b"s3cret", false);
        assert_eq!(
            check_reply(&no_ma, 9, &RA, b"s3cret", &key, true).expect_err("refused"),
            Dropped::MissingMessageAuthenticator
        );
        assert!(check_reply(&no_ma, 9, &RA, b"s3cret", &key, false).is_ok());
        assert_eq!(
            check_reply(&ok, 10, &RA, b"s3cret", &key, true).expect_err("refused"),
            Dropped::WrongIdentifier
        );
        // A valid Response Authenticator over a forged MA (Blast-RADIUS needs exactly this).
        let mut forged = ok.clone();
        forged[30] ^= 1;
        let mut md5 = Md5::new();
        md5.update(&forged[..4]);
        md5.update(RA);
        md5.update(&forged[20..]);
        md5.update(b"s3cret");
        let ra = md5.finalize();
        forged[4..20].copy_from_slice(&ra);
        assert_eq!(
            check_reply(&forged, 9, &RA, b"s3cret", &key, true).expect_err("refused"),
            Dropped::BadMessageAuthenticator
        );
    }

    #[test]
    fn malformed_replies_are_dropped_without_panicking() {
        let key = mac_key(b"s");
        let good = sign_reply(2, 1, &RA, &[(18, b"hi")], b"s", true);
        let with_len = |len: u16| {
            let mut p = good.clone();
            p[2..4].copy_from_slice(&len.to_be_bytes());
            p
        };
        // Appends octets and makes Length cover them.
        let append = |base: &[u8], extra: &[u8]| {
            let mut p = base.to_vec();
            p.extend_from_slice(extra);
            let len = p.len() as u16;
            p[2..4].copy_from_slice(&len.to_be_bytes());
            p
        };
        let attr_len_0 = append(&good, &[25, 0]);
        let attr_len_1 = append(&good, &[25, 1]);
        let attr_past_end = append(&good, &[25, 10, 1]);
        let lone_type = append(&good, &[25]);
        let short_ma = append(
            &sign_reply(2, 1, &RA, &[], b"s", false),
            &[80, 10, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        let two_ma = append(&good, &good[20..38]);
        let table: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("one octet", vec![2]),
            ("19 octets", good[..19].to_vec()),
            ("length below 20", with_len(19)),
            ("length 0", with_len(0)),
            ("length above 4096", with_len(4097)),
            ("length past the datagram", with_len(good.len() as u16 + 1)),
            (
                "truncated inside an attribute",
                with_len(good.len() as u16 - 1),
            ),
            ("attribute length 0", attr_len_0.clone()),
            ("attribute length 1", attr_len_1.clone()),
            ("attribute past the end", attr_past_end.clone()),
            ("a lone type octet", lone_type.clone()),
            ("Message-Authenticator of 8 octets", short_ma),
            ("two Message-Authenticators", two_ma),
            ("all 0xff", vec![0xff; 4096]),
        ];
        for (name, bytes) in table {
            assert_eq!(
                check_reply(&bytes, 1, &RA, b"s", &key, false).err(),
                Some(Dropped::Malformed),
                "{name}"
            );
        }
        // Octets past Length are padding: still verifies.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0xAA; 7]);
        assert!(check_reply(&padded, 1, &RA, b"s", &key, true).is_ok());
    }
}
