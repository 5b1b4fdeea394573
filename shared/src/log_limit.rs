//! Rate limits for log lines a stranger can trigger: under a flood, one line a second, not one
//! a packet (the metrics still count every event).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Allows one event per wall-clock second.
#[derive(Debug, Default)]
pub struct OncePerSecond {
    last: AtomicU64,
}

impl OncePerSecond {
    pub const fn new() -> Self {
        OncePerSecond {
            last: AtomicU64::new(0),
        }
    }

    /// True for the first call in each second.
    pub fn allow(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last.swap(now, Ordering::Relaxed) != now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_second() {
        let l = OncePerSecond::new();
        let allowed = (0..1000).filter(|_| l.allow()).count();
        // A second boundary may fall inside the loop.
        assert!((1..=2).contains(&allowed), "{allowed}");
    }
}
