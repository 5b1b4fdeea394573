//! Duplicate detection and the response cache (RFC 5080 §2.2.2).
//!
//! Key: (client address and port, local socket, Identifier); the entry remembers the Request
//! Authenticator. Same authenticator while in progress → drop (the pending login keeps running:
//! no second push, no second code check). Same authenticator once answered → resend the cached
//! bytes. A different authenticator → a new request replacing the old entry.
//!
//! Bounded in size, and cheap: every request touches this map twice (begin, finish), so it is
//! a set of mutex-guarded hash maps (shards) rather than a general-purpose cache. Each shard
//! keeps two generations; when the current one is half the shard's share of
//! `response_cache_size`, it becomes the previous one and the old previous one is dropped.
//! Looking an entry up moves it to the current generation, so a request in progress that the
//! NAS keeps retransmitting is never forgotten, and the most recent half of the capacity is
//! always kept. Answered entries live `response_cache_ttl`; in-progress entries live until the
//! request finishes (a guard removes them even when the handler panics) or, as a backstop,
//! `in_progress_ttl`. No lock is held for more than a few hash-map operations.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

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

/// Most shards; fewer for small capacities, so each keeps a useful share.
const MAX_SHARDS: usize = 64;
/// Fewest entries per shard before adding another shard.
const MIN_PER_SHARD: usize = 1024;

struct Slot {
    entry: Entry,
    expires: Instant,
}

/// What to do with the entry once looked at.
enum Change {
    Keep,
    Put(Entry),
    Remove,
}

#[derive(Default)]
struct Shard {
    current: HashMap<Key, Slot>,
    previous: HashMap<Key, Slot>,
}

impl Shard {
    /// Removes the key's entry from either generation; `None` when absent or expired.
    fn take(&mut self, key: &Key, now: Instant) -> Option<Slot> {
        let slot = self
            .current
            .remove(key)
            .or_else(|| self.previous.remove(key))?;
        (slot.expires > now).then_some(slot)
    }

    fn put(&mut self, key: Key, slot: Slot, generation_size: usize) {
        if self.current.len() >= generation_size {
            // The previous generation is dropped; its allocation is reused for the new one.
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(key, slot);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

pub struct Dedup {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Entries per generation per shard: two generations of every shard fit the capacity.
    generation_size: usize,
    answered_ttl: Duration,
    in_progress_ttl: Duration,
}

impl Dedup {
    /// At most `capacity` entries in all (at least the most recent `capacity / 2` are kept).
    pub fn new(capacity: u64, answered_ttl: Duration, in_progress_ttl: Duration) -> Dedup {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(2);
        let shards = (capacity / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        Dedup {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            generation_size: (capacity / shards / 2).max(1),
            answered_ttl,
            in_progress_ttl,
        }
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        // A panic cannot happen while a shard is locked (plain map operations), and the map
        // stays consistent if one did: a poisoned lock is used as is.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at the key's live entry (if any) and applies the change, atomically per key.
    fn update<R>(&self, key: Key, f: impl FnOnce(Option<&Entry>) -> (Change, R)) -> R {
        let now = Instant::now();
        let mut shard = self.shard(&key);
        let slot = shard.take(&key, now);
        let (change, result) = f(slot.as_ref().map(|s| &s.entry));
        let keep = match change {
            Change::Keep => slot,
            Change::Put(entry) => {
                let ttl = match entry {
                    Entry::InProgress { .. } => self.in_progress_ttl,
                    Entry::Answered { .. } => self.answered_ttl,
                };
                Some(Slot {
                    entry,
                    expires: now + ttl,
                })
            }
            Change::Remove => None,
        };
        if let Some(slot) = keep {
            shard.put(key, slot, self.generation_size);
        }
        result
    }

    /// Looks the request up and, when it is new, marks it in progress (atomically per key).
    pub fn begin(&self, key: Key, authenticator: &[u8; 16]) -> Seen {
        self.update(key, |current| {
            let (store, seen) = decide(current, authenticator);
            (store.map_or(Change::Keep, Change::Put), seen)
        })
    }

    /// Stores the answer of the request, unless a newer request took the key meanwhile.
    pub fn finish(&self, key: Key, authenticator: &[u8; 16], reply: Bytes) {
        self.update(key, |current| match current {
            Some(Entry::InProgress { authenticator: a }) if a == authenticator => (
                Change::Put(Entry::Answered {
                    authenticator: *a,
                    reply,
                }),
                (),
            ),
            _ => (Change::Keep, ()),
        })
    }

    /// Forgets a request that will not be answered (dropped under load, failed, panicked), so
    /// that the NAS's next retransmit is processed.
    pub fn abandon(&self, key: Key, authenticator: &[u8; 16]) {
        self.update(key, |current| match current {
            Some(Entry::InProgress { authenticator: a }) if a == authenticator => {
                (Change::Remove, ())
            }
            _ => (Change::Keep, ()),
        })
    }

    /// Entries held, expired ones included until their generation is dropped.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
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
        assert_eq!(d.begin(key(1), &a), Seen::New);
    }

    #[test]
    fn bounded() {
        let d = Dedup::new(10, Duration::from_secs(15), Duration::from_secs(600));
        for i in 0..=255u8 {
            d.begin(key(i), &[i; 16]);
        }
        assert!(d.len() <= 10, "{} entries", d.len());
        // The most recent half of the capacity is still there.
        for i in 251..=255u8 {
            assert_eq!(d.begin(key(i), &[i; 16]), Seen::InProgress, "key {i}");
        }
    }

    #[test]
    fn bounded_with_many_shards() {
        let d = Dedup::new(65_536, Duration::from_secs(15), Duration::from_secs(600));
        assert_eq!(d.shards.len(), MAX_SHARDS);
        let mut n = 0u32;
        for port in 1..=1000u16 {
            for id in 0..=255u8 {
                let k = Key {
                    client: SocketAddr::from(([10, 0, 0, 1], port)),
                    local: "127.0.0.1:1812".parse().unwrap(),
                    identifier: id,
                };
                d.begin(k, &[id; 16]);
                n += 1;
            }
        }
        assert_eq!(n, 256_000);
        assert!(d.len() <= 65_536, "{} entries", d.len());
        assert!(d.len() >= 65_536 / 2, "{} entries", d.len());
    }

    #[test]
    fn a_retransmitted_request_in_progress_survives_eviction() {
        let d = Dedup::new(16, Duration::from_secs(15), Duration::from_secs(600));
        let pending = [42u8; 16];
        let mut pending_key = key(0);
        pending_key.client = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(d.begin(pending_key, &pending), Seen::New);
        // Many other requests pass; the NAS retransmits the pending one now and then.
        for round in 0..20u8 {
            for i in 0..=255u8 {
                d.begin(key(i), &[round; 16]);
                if i % 4 == 0 {
                    assert_eq!(d.begin(pending_key, &pending), Seen::InProgress);
                }
            }
        }
        d.finish(pending_key, &pending, Bytes::from_static(b"R"));
        assert_eq!(
            d.begin(pending_key, &pending),
            Seen::Answered(Bytes::from_static(b"R"))
        );
    }

    #[test]
    fn in_progress_entries_have_a_backstop_lifetime() {
        let d = Dedup::new(100, Duration::from_secs(15), Duration::from_millis(50));
        let a = [1u8; 16];
        assert_eq!(d.begin(key(1), &a), Seen::New);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(d.begin(key(1), &a), Seen::New);
    }
}
