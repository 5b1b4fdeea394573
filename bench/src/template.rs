//! What each request carries: user names from a pattern, a fixed or TOTP password (optionally
//! after a fixed prefix: a first-factor password and its delimiter), an optional State.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where passwords come from.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    Fixed(Vec<u8>),
    /// The current TOTP code of this raw key (every user shares the secret).
    Totp {
        key: Vec<u8>,
        digits: u32,
    },
    /// `prefix` followed by the current TOTP code: `password,code` for a policy with a first
    /// factor (the prefix carries the directory password and the delimiter).
    PrefixedTotp {
        prefix: Vec<u8>,
        key: Vec<u8>,
        digits: u32,
    },
}

impl PasswordSource {
    /// This source with `prefix` put before every password (an empty prefix changes nothing).
    pub fn with_prefix(self, prefix: &[u8]) -> PasswordSource {
        if prefix.is_empty() {
            return self;
        }
        match self {
            PasswordSource::Fixed(p) => PasswordSource::Fixed([prefix, &p].concat()),
            PasswordSource::Totp { key, digits } => PasswordSource::PrefixedTotp {
                prefix: prefix.to_vec(),
                key,
                digits,
            },
            PasswordSource::PrefixedTotp {
                prefix: p,
                key,
                digits,
            } => PasswordSource::PrefixedTotp {
                prefix: [prefix, &p].concat(),
                key,
                digits,
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct Template {
    /// `user{n}` style; without `{n}` every request uses the same name.
    pub user_pattern: String,
    pub user_start: u64,
    /// Request n uses number `user_start + n % user_count`.
    pub user_count: u64,
    pub password: PasswordSource,
    pub state: Option<Vec<u8>>,
    pub nas_identifier: Option<Vec<u8>>,
}

impl Template {
    /// The user name of request number `n`.
    pub fn user(&self, n: u64) -> String {
        if self.user_pattern.contains("{n}") {
            let k = self.user_start + n % self.user_count.max(1);
            self.user_pattern.replace("{n}", &k.to_string())
        } else {
            self.user_pattern.clone()
        }
    }

    /// True when every request has its own user (within `user_count`).
    pub fn distinct_users(&self) -> bool {
        self.user_pattern.contains("{n}")
    }
}

/// Caches the TOTP code (with its prefix) for the current 30 s step.
#[derive(Debug, Default)]
pub struct PasswordCache {
    step: u64,
    value: Vec<u8>,
}

impl PasswordCache {
    pub fn get<'a>(&'a mut self, src: &'a PasswordSource) -> &'a [u8] {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.get_at(src, now)
    }

    /// The password at `unix_seconds`.
    pub fn get_at<'a>(&'a mut self, src: &'a PasswordSource, unix_seconds: u64) -> &'a [u8] {
        match src {
            PasswordSource::Fixed(p) => p,
            PasswordSource::Totp { key, digits } => self.totp(b"", key, *digits, unix_seconds),
            PasswordSource::PrefixedTotp {
                prefix,
                key,
                digits,
            } => self.totp(prefix, key, *digits, unix_seconds),
        }
    }

    fn totp(&mut self, prefix: &[u8], key: &[u8], digits: u32, now: u64) -> &[u8] {
        let step = now / 30;
        if self.value.is_empty() || step != self.step {
            self.step = step;
            self.value.clear();
            self.value.extend_from_slice(prefix);
            self.value
                .extend_from_slice(crate::totp::code(key, now, digits).as_bytes());
        }
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_goes_before_fixed_and_totp_passwords() {
        let mut c = PasswordCache::default();
        let fixed = PasswordSource::Fixed(b"123456".to_vec()).with_prefix(b"pw,");
        assert_eq!(c.get(&fixed), b"pw,123456");

        // RFC 6238 appendix B, SHA1, T = 59 s: 94287082 (8 digits), so 287082 with 6.
        let plain = PasswordSource::Totp {
            key: b"12345678901234567890".to_vec(),
            digits: 6,
        };
        assert_eq!(PasswordCache::default().get_at(&plain, 59), b"287082");
        let prefixed = plain.clone().with_prefix(b"p,w,");
        let mut c = PasswordCache::default();
        assert_eq!(c.get_at(&prefixed, 59), b"p,w,287082");
        // Cached within the step, recomputed (prefix once) in the next.
        assert_eq!(c.get_at(&prefixed, 45), b"p,w,287082");
        let next = PasswordCache::default().get_at(&plain, 60).to_vec();
        assert_eq!(c.get_at(&prefixed, 60), [&b"p,w,"[..], &next].concat());
        assert!(matches!(
            plain.with_prefix(b""),
            PasswordSource::Totp { .. }
        ));
    }
}
