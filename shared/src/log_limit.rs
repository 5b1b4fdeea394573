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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.last.swap(now, Ordering::Relaxed) != now {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
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
}
