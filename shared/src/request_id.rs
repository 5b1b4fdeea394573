//! VIP requestId generation.
//!
//! VIP wants 4..=40 characters of `[0-9A-Za-z_]` and echoes the value back; we use it to match
//! answers to requests and to find a login in VIP's reports. An id is
//! `PREFIX_RANDOM_COUNTER`: the configured prefix (≤ 12), 10 random base-62 characters drawn
//! once per process (≈ 59 bits, so two processes or two restarts practically never share it),
//! and a per-process counter in base 36. At most 12 + 1 + 10 + 1 + 13 = 37 characters.
//! No clock is involved, so clock steps cannot produce duplicates.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use thiserror::Error;

/// Longest accepted prefix.
pub const MAX_PREFIX_LEN: usize = 12;
const RANDOM_LEN: usize = 10;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid VIP requestId prefix {prefix:?}: use at most 12 letters, digits or '_'")]
pub struct InvalidPrefix {
    pub prefix: String,
}

/// Generates unique VIP requestIds. Share one per process (it is `Sync`).
#[derive(Debug)]
pub struct RequestIds {
    /// `PREFIX_RANDOM_` (or `RANDOM_` without a prefix), computed once.
    stem: String,
    counter: AtomicU64,
}

impl RequestIds {
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        if prefix.len() > MAX_PREFIX_LEN || !prefix.bytes().all(is_id_byte) {
            return Err(InvalidPrefix {
                prefix: prefix.to_owned(),
            });
        }
        let mut rng = rand::thread_rng();
        let random: String = (0..RANDOM_LEN)
            .map(|_| char::from(BASE62[rng.gen_range(0..BASE62.len())]))
            .collect();
        let stem = if prefix.is_empty() {
            format!("{random}_")
        } else {
            format!("{prefix}_{random}_")
        };
        Ok(RequestIds {
            stem,
            counter: AtomicU64::new(0),
        })
    }

    /// The next id; never repeats within this process.
    pub fn next(&self) -> String {
        // Relaxed is enough: only uniqueness of the fetched value matters.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = String::with_capacity(self.stem.len() + 13);
        out.push_str(&self.stem);
        push_base36(&mut out, n);
        out
    }
}

/// Whether `s` is a valid VIP requestId (4..=40 of `[0-9A-Za-z_]`).
pub fn is_valid_request_id(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.bytes().all(is_id_byte)
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn push_base36(out: &mut String, mut n: u64) {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [0u8; 13];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_have_the_vip_format() {
        for prefix in ["", "a", "vb", "ABCDEFGHIJ_1"] {
            let ids = RequestIds::new(prefix).unwrap();
            for _ in 0..1000 {
                let id = ids.next();
                assert!(is_valid_request_id(&id), "{id:?}");
                assert!(id.starts_with(prefix));
            }
        }
    }

    #[test]
    fn longest_possible_id_fits() {
        let ids = RequestIds::new("ABCDEFGHIJKL").unwrap();
        ids.counter.store(u64::MAX, Ordering::Relaxed);
        let id = ids.next();
        assert!(is_valid_request_id(&id), "{id:?} ({} chars)", id.len());
        assert_eq!(id.len(), 37);
    }

    #[test]
    fn unique_over_100k_and_across_instances() {
        let a = RequestIds::new("vb").unwrap();
        let b = RequestIds::new("vb").unwrap();
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            assert!(seen.insert(a.next()));
        }
        // A second instance (a restart, another daemon) must not collide with the first.
        for _ in 0..1_000 {
            assert!(seen.insert(b.next()));
        }
    }

    #[test]
    fn unique_across_threads() {
        let ids = std::sync::Arc::new(RequestIds::new("t").unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || (0..10_000).map(|_| ids.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(seen.insert(id));
            }
        }
        assert_eq!(seen.len(), 40_000);
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in ["ABCDEFGHIJKLM", "a-b", "a b", "é", "a.b"] {
            assert!(RequestIds::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn validity_check() {
        assert!(is_valid_request_id("abcd"));
        assert!(!is_valid_request_id("abc"));
        assert!(!is_valid_request_id(&"a".repeat(41)));
        assert!(!is_valid_request_id("ab-cd"));
    }
}
