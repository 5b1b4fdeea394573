//! TOTP for generated passwords: the simulator's RFC 6238 implementation, so the load generator
//! computes exactly the codes vip-sim accepts.

pub use vip_sim::totp::{decode_base32, hotp};

/// The TOTP code (HMAC-SHA1, 30 s steps) of a raw key at `unix_seconds`.
pub fn code(key: &[u8], unix_seconds: u64, digits: u32) -> String {
    vip_sim::totp::code_at_step(key, (unix_seconds / 30) as i64, digits)
}
