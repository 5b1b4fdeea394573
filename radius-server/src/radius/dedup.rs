//! Duplicate detection and the response cache (RFC 5080 §2.2.2).
//!
//! Key: (client address and port, local socket, Identifier); the entry remembers the Request
//! Authenticator. Same authenticator while in progress → drop (the pending login keeps running:
//! no second push, no second code check). Same authenticator once answered → resend the cached
//! bytes. A different authenticator → a new request replacing the old entry.
//!
//! Bounded in size (moka, TinyLFU eviction). Answered entries live `response_cache_ttl`;
//! in-progress entries live until the request finishes (a guard removes them even when the
//! handler panics) or, as a backstop, `in_progress_ttl`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::ops::compute::Op;
use moka::sync::Cache;
use moka::Expiry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub identifier: u8,
}

#[derive(Clone, Debug)]
pub enum Entry {
    InProgress {
        authenticator: [u8; 16],
    },
    Answered {
        authenticator: [u8; 16],
        reply: Bytes,
    },
}

/// What to do with a request, given what the cache holds for its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A new request: process it (the cache now marks it in progress).
    New,
    /// A retransmit of a request still being processed: drop it.
    InProgress,
    /// A retransmit of an answered request: resend these bytes.
    Answered(Bytes),
}

/// The state machine, without the cache: the new entry to store (if any) and the verdict.
pub fn decide(current: Option<&Entry>, authenticator: &[u8; 16]) -> (Option<Entry>, Seen) {
    match current {
        Some(Entry::InProgress { authenticator: a }) if a == authenticator => {
            (None, Seen::InProgress)
        }
        Some(Entry::Answered {
            authenticator: a,
            reply,
        }) if a == authenticator => (None, Seen::Answered(reply.clone())),
        // Nothing, or a different authenticator: the NAS reused the Identifier for a new request.
        _ => (
            Some(Entry::InProgress {
                authenticator: *authenticator,
            }),
            Seen::New,
        ),
    }
}

struct EntryExpiry {
    answered_ttl: Duration,
    in_progress_ttl: Duration,
}

impl EntryExpiry {
    fn ttl(&self, e: &Entry) -> Option<Duration> {
        Some(match e {
            Entry::InProgress { .. } => self.in_progress_ttl,
            Entry::Answered { .. } => self.answered_ttl,
        })
    }
}

impl Expiry<Key, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &Key, value: &Entry, _: Instant) -> Option<Duration> {
        self.ttl(value)
    }

    fn expire_after_update(
        &self,
        _: &Key,
        value: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.ttl(value)
    }
}

pub struct Dedup {
    cache: Cache<Key, Entry>,
}

impl Dedup {
    pub fn new(capacity: u64, answered_ttl: Duration, in_progress_ttl: Duration) -> Dedup {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(EntryExpiry {
                answered_ttl,
                in_progress_ttl,
            })
            .build();
        Dedup { cache }
    }

    /// Looks the request up and, when it is new, marks it in progress (atomically per key).
    pub fn begin(&self, key: Key, authenticator: &[u8; 16]) -> Seen {
        let mut verdict = Seen::New;
        self.cache.entry(key).and_compute_with(|current| {
            let (store, seen) = decide(current.as_ref().map(|e| e.value()), authenticator);
            verdict = seen;
            match store {
                Some(e) => Op::Put(e),
                None => Op::Nop,
            }
        });
        verdict
    }

    /// Stores the answer of the request, unless a newer request took the key meanwhile.
    pub fn finish(&self, key: Key, authenticator: &[u8; 16], reply: Bytes) {
        self.cache
            .entry(key)
            .and_compute_with(|current| match current.map(|e| e.into_value()) {
                Some(Entry::InProgress { authenticator: a }) if &a == authenticator => {
                    Op::Put(Entry::Answered {
                        authenticator: a,
                        reply,
                    })
                }
                _ => Op::Nop,
            });
    }

    /// Forgets a request that will not be answered (dropped under load, failed, panicked), so
    /// that the NAS's next retransmit is processed.
    pub fn abandon(&self, key: Key, authenticator: &[u8; 16]) {
        self.cache
            .entry(key)
            .and_compute_with(|current| match current.map(|e| e.into_value()) {
                Some(Entry::InProgress { authenticator: a }) if &a == authenticator => Op::Remove,
                _ => Op::Nop,
            });
    }

    #[cfg(test)]
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> Key {
        Key {
            client: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:1812".parse().unwrap(),
            identifier: id,
        }
    }

    #[test]
    fn state_machine() {
        let a = [1u8; 16];
        let b = [2u8; 16];
        let (store, seen) = decide(None, &a);
        assert_eq!(seen, Seen::New);
        let in_progress = store.unwrap();
        let (store, seen) = decide(Some(&in_progress), &a);
        assert!(store.is_none());
        assert_eq!(seen, Seen::InProgress);
        let answered = Entry::Answered {
            authenticator: a,
            reply: Bytes::from_static(b"reply"),
        };
        let (store, seen) = decide(Some(&answered), &a);
        assert!(store.is_none());
        assert_eq!(seen, Seen::Answered(Bytes::from_static(b"reply")));
        let (store, seen) = decide(Some(&answered), &b);
        assert_eq!(seen, Seen::New);
        assert!(matches!(store, Some(Entry::InProgress { authenticator }) if authenticator == b));
        let (_, seen) = decide(Some(&in_progress), &b);
        assert_eq!(seen, Seen::New);
    }

    #[test]
    fn begin_finish_resend() {
        let d = Dedup::new(100, Duration::from_secs(15), Duration::from_secs(600));
        let a = [1u8; 16];
        assert_eq!(d.begin(key(1), &a), Seen::New);
        assert_eq!(d.begin(key(1), &a), Seen::InProgress);
        // Another Identifier, another port: independent.
        assert_eq!(d.begin(key(2), &a), Seen::New);
        let mut other_port = key(1);
        other_port.client = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(d.begin(other_port, &a), Seen::New);
        d.finish(key(1), &a, Bytes::from_static(b"R"));
        assert_eq!(
            d.begin(key(1), &a),
            Seen::Answered(Bytes::from_static(b"R"))
        );
        assert_eq!(
            d.begin(key(1), &a),
            Seen::Answered(Bytes::from_static(b"R"))
        );
        // The NAS reuses the Identifier: a new request.
        assert_eq!(d.begin(key(1), &[9; 16]), Seen::New);
        // The old request's late answer does not overwrite the new one.
        d.finish(key(1), &a, Bytes::from_static(b"stale"));
        assert_eq!(d.begin(key(1), &[9; 16]), Seen::InProgress);
    }

    #[test]
    fn abandon_lets_the_retransmit_through() {
        let d = Dedup::new(100, Duration::from_secs(15), Duration::from_secs(600));
        let a = [1u8; 16];
        assert_eq!(d.begin(key(1), &a), Seen::New);
        d.abandon(key(1), &[7; 16]); // not ours: kept
        assert_eq!(d.begin(key(1), &a), Seen::InProgress);
        d.abandon(key(1), &a);
        assert_eq!(d.begin(key(1), &a), Seen::New);
    }

    #[test]
    fn answers_expire() {
        let d = Dedup::new(100, Duration::from_millis(50), Duration::from_secs(600));
        let a = [1u8; 16];
        assert_eq!(d.begin(key(1), &a), Seen::New);
        d.finish(key(1), &a, Bytes::from_static(b"R"));
        std::thread::sleep(Duration::from_millis(120));
        d.run_pending_tasks();
        assert_eq!(d.begin(key(1), &a), Seen::New);
    }

    #[test]
    fn bounded() {
        let d = Dedup::new(10, Duration::from_secs(15), Duration::from_secs(600));
        for i in 0..=255u8 {
            d.begin(key(i), &[i; 16]);
        }
        d.run_pending_tasks();
        assert!(d.cache.entry_count() <= 10);
    }
}
