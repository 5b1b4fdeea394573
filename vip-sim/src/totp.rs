//! RFC 6238 TOTP (HMAC-SHA1, 30 s step) and an RFC 4648 base32 decoder.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The TOTP time step in seconds.
pub const STEP_SECONDS: u64 = 30;

/// Decodes RFC 4648 base32 (case-insensitive; spaces, dashes and `=` padding ignored).
pub fn decode_base32(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 5 / 8 + 1);
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for c in input.chars() {
        let v = match c {
            'A'..='Z' => c as u64 - 'A' as u64,
            'a'..='z' => c as u64 - 'a' as u64,
            '2'..='7' => c as u64 - '2' as u64 + 26,
            ' ' | '-' | '=' => continue,
            _ => return None,
        };
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1u64 << bits) - 1;
    }
    Some(out)
}

/// Encodes bytes as RFC 4648 base32 without padding.
pub fn encode_base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1u32 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// HOTP (RFC 4226) of `counter` with a raw key.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let digits = digits.clamp(1, 10);
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = (u64::from(h[offset] & 0x7f) << 24)
        | (u64::from(h[offset + 1]) << 16)
        | (u64::from(h[offset + 2]) << 8)
        | u64::from(h[offset + 3]);
    let modulus = 10u64.pow(digits);
    format!("{:0width$}", bin % modulus, width = digits as usize)
}

/// TOTP code (RFC 6238, SHA1, 30 s step) for a base32 secret at `unix_seconds`.
///
/// An undecodable secret yields an empty string.
pub fn code(secret_base32: &str, unix_seconds: u64, digits: u32) -> String {
    match decode_base32(secret_base32) {
        Some(key) => hotp(&key, unix_seconds / STEP_SECONDS, digits),
        None => String::new(),
    }
}

/// TOTP code for a raw key at time step `step`.
pub fn code_at_step(key: &[u8], step: i64, digits: u32) -> String {
    hotp(key, step.max(0) as u64, digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = encode_base32(b"12345678901234567890");
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        for (t, want) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code(&secret, t, 8), want, "t={t}");
        }
        assert_eq!(code(&secret, 59, 6), "287082");
    }

    #[test]
    fn base32_roundtrip() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let enc = encode_base32(data);
            assert_eq!(decode_base32(&enc).as_deref(), Some(data));
        }
        assert_eq!(encode_base32(b"foobar"), "MZXW6YTBOI");
        assert!(decode_base32("not base32!").is_none());
    }
}
