//! Rate limits for log lines a stranger can trigger: under a flood, one line a second, not one
//! a packet, with a count of what was held back (the metrics still count every event).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Allows one event per wall-clock second.
#[derive(Debug, Default)]
pub struct OncePerSecond {
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl OncePerSecond {
    pub const fn new() -> Self {
        OncePerSecond {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// True for the first call in each second.
    pub fn allow(&self) -> bool {
        self.pass().is_some()
    }

    /// `Some(n)` for the first call in each second, `n` being how many calls were held back
    /// since the last line (write it into the line: "… (n more suppressed)"); `None` otherwise.
    pub fn pass(&self) -> Option<u64> {
        self.pass_at(unix_seconds())
    }

    /// [`Self::pass`] at a given second (tests choose the clock).
    fn pass_at(&self, now: u64) -> Option<u64> {
        if self.last.swap(now, Ordering::Relaxed) != now {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One [`OncePerSecond`] per key, the keys being `0..keys` fixed at construction (e.g. client
/// number × cause): one key's flood never hides another key's line, and memory is the table,
/// whatever the traffic. A key outside the table shares a single overflow limiter instead of
/// growing it, so a caller's mistake costs log lines, never memory.
#[derive(Debug)]
pub struct OncePerSecondPerKey {
    /// `keys` limiters, then the overflow one.
    slots: Box<[OncePerSecond]>,
}

impl OncePerSecondPerKey {
    pub fn new(keys: usize) -> Self {
        OncePerSecondPerKey {
            slots: (0..=keys).map(|_| OncePerSecond::new()).collect(),
        }
    }

    /// How many keys have a limiter of their own.
    pub fn keys(&self) -> usize {
        self.slots.len() - 1
    }

    /// [`OncePerSecond::pass`] for `key`: `Some(n)` for the first call in each second for that
    /// key, `n` being how many of its calls were held back since its last line.
    pub fn pass(&self, key: usize) -> Option<u64> {
        self.pass_at(key, unix_seconds())
    }

    fn pass_at(&self, key: usize, now: u64) -> Option<u64> {
        self.slot(key).pass_at(now)
    }

    fn slot(&self, key: usize) -> &OncePerSecond {
        let overflow = self.slots.len() - 1;
        &self.slots[key.min(overflow)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_second_with_the_count_of_the_rest() {
        let l = OncePerSecond::new();
        let passed: Vec<u64> = (0..1000).filter_map(|_| l.pass()).collect();
        // A second boundary may fall inside the loop.
        assert!((1..=2).contains(&passed.len()), "{passed:?}");
        assert_eq!(passed[0], 0);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let next = l.pass().expect("a new second");
        assert_eq!(
            next + passed.iter().skip(1).sum::<u64>() + passed.len() as u64,
            1000
        );
    }

    #[test]
    fn per_key_one_line_a_second_with_the_count_held_back() {
        let l = OncePerSecondPerKey::new(4);
        assert_eq!(l.pass_at(2, 100), Some(0));
        for _ in 0..199 {
            assert_eq!(l.pass_at(2, 100), None);
        }
        // The next second's line carries everything held back since the last line, once.
        assert_eq!(l.pass_at(2, 101), Some(199));
        assert_eq!(l.pass_at(2, 101), None);
        assert_eq!(l.pass_at(2, 102), Some(1));
        assert_eq!(l.pass_at(2, 105), Some(0));
    }

    #[test]
    fn keys_do_not_hide_each_other() {
        let l = OncePerSecondPerKey::new(3);
        assert_eq!(l.pass_at(0, 7), Some(0));
        assert_eq!(l.pass_at(0, 7), None);
        // Key 0 is flooding this second; keys 1 and 2 still get their line.
        assert_eq!(l.pass_at(1, 7), Some(0));
        assert_eq!(l.pass_at(2, 7), Some(0));
        assert_eq!(l.pass_at(1, 7), None);
        assert_eq!(l.pass_at(0, 8), Some(1));
        assert_eq!(l.pass_at(1, 8), Some(1));
        assert_eq!(l.pass_at(2, 8), Some(0));
    }

    #[test]
    fn keys_outside_the_table_share_one_limiter_and_never_grow_it() {
        let l = OncePerSecondPerKey::new(2);
        assert_eq!(l.keys(), 2);
        // A million distinct keys in one second: one line, and the table is the same size.
        assert_eq!(l.pass_at(2, 50), Some(0));
        for key in 3..1_000_000 {
            assert_eq!(l.pass_at(key, 50), None);
        }
        assert_eq!(l.pass_at(usize::MAX, 50), None);
        assert_eq!(l.keys(), 2);
        assert_eq!(l.slots.len(), 3);
        // The overflow never takes a real key's line.
        assert_eq!(l.pass_at(0, 50), Some(0));
        assert_eq!(l.pass_at(1, 50), Some(0));
        assert_eq!(l.pass_at(7, 51), Some(999_998));
    }

    #[test]
    fn an_empty_table_still_limits() {
        let l = OncePerSecondPerKey::new(0);
        assert_eq!(l.pass_at(0, 9), Some(0));
        assert_eq!(l.pass_at(0, 9), None);
        assert_eq!(l.pass_at(0, 10), Some(1));
    }
}
