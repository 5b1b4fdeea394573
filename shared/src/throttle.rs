//! Keyed rate limits (governor): push starts per user, code attempts per user, requests per client.

use std::time::Duration;

use serde::Deserialize;

/// `count` events per `per` window, e.g. `{ count = 3, per = "5m" }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub count: u32,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Pushes started per user (stops push bombing). VIP itself locks push after >5 an hour.
    pub push_per_user: RateLimit,
    /// Security-code attempts per user; default 5 per 10 minutes (a burst of 5, then one
    /// more every 2 minutes).
    ///
    /// Why so few: VIP locks a credential after [`VIP_LOCKOUT_CODES`] consecutive bad codes
    /// (by default; the account's policy may differ), and a locked user cannot log in until an
    /// administrator unlocks them. A stranger who knows only a user name must not get there
    /// in one burst: the burst stays at half of VIP's count. A sustained guessing attack is
    /// slowed to one code per 2 minutes, so a user's own good login in between resets VIP's
    /// count, and every refused attempt shows in the throttle metric
    /// (`vip_bridge_throttled_total{limit="codes_per_user"}`) for an alert. The limit refills
    /// steadily, so an attacker cannot lock a real user out of code entry for longer than one
    /// refill interval either. `check-config` warns when `count` reaches VIP's lockout count.
    pub codes_per_user: RateLimit,
    /// Requests per RADIUS client / PAM service.
    pub requests_per_client: RateLimit,
}

/// Consecutive bad security codes after which VIP locks a credential (its default policy).
pub const VIP_LOCKOUT_CODES: u32 = 10;

impl ThrottleConfig {
    /// The warning for a code limit that lets one burst reach VIP's lockout, naming the key;
    /// `None` when `codes_per_user.count` stays below [`VIP_LOCKOUT_CODES`].
    pub fn codes_per_user_warning(&self) -> Option<String> {
        let count = self.codes_per_user.count;
        (count >= VIP_LOCKOUT_CODES).then(|| {
            format!(
                "engine.throttle.codes_per_user.count = {count}: VIP locks a credential after \
                 {VIP_LOCKOUT_CODES} consecutive bad codes by default: a stranger could lock \
                 users out; keep it below {VIP_LOCKOUT_CODES} (the default is 5 per \"10m\")"
            )
        })
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            push_per_user: RateLimit {
                count: 3,
                per: Duration::from_secs(300),
            },
            codes_per_user: RateLimit {
                count: 5,
                per: Duration::from_secs(600),
            },
            requests_per_client: RateLimit {
                count: 2000,
                per: Duration::from_secs(1),
            },
        }
    }
}

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::DefaultClock;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

type Keyed = RateLimiter<String, DashMapStateStore<String>, DefaultClock>;

/// Which limit a request ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Push,
    Code,
    Client,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Push => "push_per_user",
            Limit::Code => "codes_per_user",
            Limit::Client => "requests_per_client",
        }
    }
}

/// The engine's limiters. Each allows a burst of `count` and refills one token every
/// `per / count` (GCRA), so being over a limit never lasts longer than one refill interval.
pub struct Throttles {
    push: Keyed,
    codes: Keyed,
    clients: Keyed,
    checks: AtomicU64,
}

impl Throttles {
    pub fn new(cfg: &ThrottleConfig) -> Result<Self, String> {
        Ok(Throttles {
            push: RateLimiter::dashmap(quota("push_per_user", cfg.push_per_user)?),
            codes: RateLimiter::dashmap(quota("codes_per_user", cfg.codes_per_user)?),
            clients: RateLimiter::dashmap(quota("requests_per_client", cfg.requests_per_client)?),
            checks: AtomicU64::new(0),
        })
    }

    /// Takes one token for `key` (a user name, case-folded, or a client name); false when over.
    pub fn allow(&self, limit: Limit, key: &str) -> bool {
        let limiter = match limit {
            Limit::Push => &self.push,
            Limit::Code => &self.codes,
            Limit::Client => &self.clients,
        };
        let key = match limit {
            Limit::Client => key.to_owned(),
            _ => key.to_lowercase(),
        };
        // Forget keys whose buckets are full again, now and then, so memory stays bounded by
        // the number of recently active users.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            for l in [&self.push, &self.codes, &self.clients] {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        limiter.check_key(&key).is_ok()
    }
}

fn quota(key: &str, limit: RateLimit) -> Result<Quota, String> {
    let count = NonZeroU32::new(limit.count)
        .ok_or_else(|| format!("engine.throttle.{key}.count must be at least 1"))?;
    if limit.per.is_zero() {
        return Err(format!("engine.throttle.{key}.per must be longer than 0s"));
    }
    let period = limit.per / limit.count;
    let quota = Quota::with_period(period)
        .ok_or_else(|| format!("engine.throttle.{key}: per/count is too short"))?;
    Ok(quota.allow_burst(count))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(count: u32, per_ms: u64) -> ThrottleConfig {
        let l = RateLimit {
            count,
            per: Duration::from_millis(per_ms),
        };
        ThrottleConfig {
            push_per_user: l,
            codes_per_user: l,
            requests_per_client: l,
        }
    }

    #[test]
    fn allows_the_burst_then_refuses() {
        let t = Throttles::new(&cfg(3, 60_000)).unwrap();
        assert!((0..3).all(|_| t.allow(Limit::Push, "alice")));
        assert!(
            !t.allow(Limit::Push, "ALICE"),
            "user keys are case-insensitive"
        );
        // Other users and other limits are independent.
        assert!(t.allow(Limit::Push, "bob"));
        assert!(t.allow(Limit::Code, "alice"));
    }

    #[test]
    fn refills_so_a_lockout_does_not_last() {
        let t = Throttles::new(&cfg(2, 200)).unwrap();
        assert!(t.allow(Limit::Code, "alice") && t.allow(Limit::Code, "alice"));
        assert!(!t.allow(Limit::Code, "alice"));
        std::thread::sleep(Duration::from_millis(120));
        assert!(
            t.allow(Limit::Code, "alice"),
            "one token back after per/count"
        );
    }

    #[test]
    fn the_default_code_burst_stays_below_vips_lockout() {
        let d = ThrottleConfig::default().codes_per_user;
        assert_eq!((d.count, d.per), (5, Duration::from_secs(600)));
        assert!(d.count < VIP_LOCKOUT_CODES);
        // One more every 2 minutes after the burst.
        assert_eq!(d.per / d.count, Duration::from_secs(120));
        let t = Throttles::new(&ThrottleConfig::default()).unwrap();
        assert!((0..5).all(|_| t.allow(Limit::Code, "alice")));
        assert!(
            !t.allow(Limit::Code, "alice"),
            "the sixth code of a burst is refused"
        );
        assert_eq!(ThrottleConfig::default().codes_per_user_warning(), None);
    }

    #[test]
    fn a_code_limit_reaching_vips_lockout_is_warned_about() {
        let with = |count| ThrottleConfig {
            codes_per_user: RateLimit {
                count,
                per: Duration::from_secs(300),
            },
            ..ThrottleConfig::default()
        };
        assert_eq!(with(9).codes_per_user_warning(), None);
        for count in [10, 11, 1000] {
            let w = with(count).codes_per_user_warning().unwrap();
            assert!(
                w.starts_with(&format!("engine.throttle.codes_per_user.count = {count}: ")),
                "{w}"
            );
            assert!(
                w.contains(
                    "VIP locks a credential after 10 consecutive bad codes by default: a \
                     stranger could lock users out"
                ),
                "{w}"
            );
        }
    }

    #[test]
    fn zero_count_is_a_config_error() {
        let err = Throttles::new(&cfg(0, 1000)).err().unwrap();
        assert!(err.contains("count must be at least 1"), "{err}");
    }
}
