//! What each request carries: user names from a pattern, a fixed or TOTP password, an
//! optional State.

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

/// Caches the TOTP code for the current 30 s step.
#[derive(Debug, Default)]
pub struct PasswordCache {
    step: u64,
    value: Vec<u8>,
}

impl PasswordCache {
    pub fn get<'a>(&'a mut self, src: &'a PasswordSource) -> &'a [u8] {
        match src {
            PasswordSource::Fixed(p) => p,
            PasswordSource::Totp { key, digits } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let step = now / 30;
                if self.value.is_empty() || step != self.step {
                    self.step = step;
                    self.value = crate::totp::code(key, now, *digits).into_bytes();
                }
                &self.value
            }
        }
    }
}
