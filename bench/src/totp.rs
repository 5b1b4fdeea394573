//! RFC 6238 TOTP (HMAC-SHA1, 30 s) and RFC 4648 base32 decoding.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Decodes base32 (case-insensitive; spaces, dashes and `=` ignored).
pub fn decode_base32(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 5 / 8 + 1);
    let (mut acc, mut bits) = (0u64, 0u32);
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
            out.push((acc >> bits) as u8);
        }
        acc &= (1u64 << bits) - 1;
    }
    Some(out)
}

/// HOTP (RFC 4226) of `counter`.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let digits = digits.clamp(1, 10);
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0x0f) as usize;
    let bin = (u64::from(h[o] & 0x7f) << 24)
        | (u64::from(h[o + 1]) << 16)
        | (u64::from(h[o + 2]) << 8)
        | u64::from(h[o + 3]);
    format!("{:0w$}", bin % 10u64.pow(digits), w = digits as usize)
}

/// The TOTP code of a raw key at `unix_seconds`.
pub fn code(key: &[u8], unix_seconds: u64, digits: u32) -> String {
    hotp(key, unix_seconds / 30, digits)
}
