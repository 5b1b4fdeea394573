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
    /// Wrong directory passwords (first factor: LDAP or upstream RADIUS) per login name, before
    /// further attempts are refused without asking the directory. Default 4 per 30 minutes:
    /// keep `count` below the directory's own lockout threshold (Active Directory's "Account
    /// lockout threshold", often 5 or 10) so a stranger who knows a name cannot lock the
    /// account through us. Only failures count (and attempts in flight); a right password
    /// clears the count, as AD's bad-password count is reset by a good logon.
    pub password_failures_per_user: RateLimit,
    /// In-band enrollment steps that reach VIP per user (a code checked for a credential
    /// being added, a code sent to a phone being registered, a new PIN set). Default 6 per
    /// 15 minutes: enough for a typo or two, too few to guess a code or to spend the SMS
    /// budget on strangers' phones.
    pub enrollment_per_user: RateLimit,
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

impl ThrottleConfig {
    /// The configured quota of `limit` (`None` for the password guard, which counts failures).
    pub fn quota(&self, limit: Limit) -> Option<RateLimit> {
        match limit {
            Limit::Push => Some(self.push_per_user),
            Limit::Code => Some(self.codes_per_user),
            Limit::Client => Some(self.requests_per_client),
            Limit::Enrollment => Some(self.enrollment_per_user),
            Limit::Password => None,
        }
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
            password_failures_per_user: RateLimit {
                count: 4,
                per: Duration::from_secs(30 * 60),
            },
            enrollment_per_user: RateLimit {
                count: 6,
                per: Duration::from_secs(15 * 60),
            },
        }
    }
}

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Wrong directory passwords ([`PasswordGuard`]).
    Password,
    /// In-band enrollment steps that reach VIP.
    Enrollment,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Push => "push_per_user",
            Limit::Code => "codes_per_user",
            Limit::Client => "requests_per_client",
            Limit::Password => "password_failures_per_user",
            Limit::Enrollment => "enrollment_per_user",
        }
    }
}

/// The engine's limiters. Each allows a burst of `count` and refills one token every
/// `per / count` (GCRA), so being over a limit never lasts longer than one refill interval.
pub struct Throttles {
    push: Keyed,
    codes: Keyed,
    clients: Keyed,
    enrollment: Keyed,
    checks: AtomicU64,
}

impl Throttles {
    pub fn new(cfg: &ThrottleConfig) -> Result<Self, String> {
        Ok(Throttles {
            push: RateLimiter::dashmap(quota("push_per_user", cfg.push_per_user)?),
            codes: RateLimiter::dashmap(quota("codes_per_user", cfg.codes_per_user)?),
            clients: RateLimiter::dashmap(quota("requests_per_client", cfg.requests_per_client)?),
            enrollment: RateLimiter::dashmap(quota(
                "enrollment_per_user",
                cfg.enrollment_per_user,
            )?),
            checks: AtomicU64::new(0),
        })
    }

    /// Takes one token for `key` (a user name, case-folded, or a client name); false when over.
    pub fn allow(&self, limit: Limit, key: &str) -> bool {
        let limiter = match limit {
            Limit::Push => &self.push,
            Limit::Code => &self.codes,
            Limit::Client => &self.clients,
            Limit::Enrollment => &self.enrollment,
            // Counted by failures, not attempts: see PasswordGuard.
            Limit::Password => return true,
        };
        let key = match limit {
            Limit::Client => key.to_owned(),
            _ => key.to_lowercase(),
        };
        // Forget keys whose buckets are full again, now and then, so memory stays bounded by
        // the number of recently active users.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            for l in [&self.push, &self.codes, &self.clients, &self.enrollment] {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        limiter.check_key(&key).is_ok()
    }
}

/// The AD-lockout guard: at most `count` wrong directory passwords per login name in any
/// `per` window. An attempt in flight counts as a failure until it ends, so a burst of
/// concurrent guesses cannot slip past the limit; a right password clears the count; an
/// attempt that ends without a verdict (outage) counts for nothing.
///
/// Memory follows the failures, not the logins: only names with a recent wrong password keep a
/// window, and only attempts in flight keep a counter.
pub struct PasswordGuard(Arc<GuardState>);

struct GuardState {
    limit: RateLimit,
    /// Attempts in flight per name; an entry is removed when its last attempt ends. Every
    /// decision and update takes this lock first (never across an await), so counting the
    /// failures and the attempts in flight is one atomic step.
    in_flight: Mutex<HashMap<String, u32>>,
    /// Recent failure times per name. Bounded: a name is forgotten once idle for `per` (its
    /// failures have expired by then), and the cache holds at most a million names.
    failures: moka::sync::Cache<String, Arc<Mutex<VecDeque<std::time::Instant>>>>,
}

/// One directory password check under the guard; ends with [`failed`](Self::failed),
/// [`passed`](Self::passed), or (dropped) as neither.
pub struct PasswordAttempt {
    guard: Arc<GuardState>,
    key: String,
}

impl PasswordGuard {
    pub fn new(limit: RateLimit) -> Result<Self, String> {
        quota("password_failures_per_user", limit)?;
        Ok(PasswordGuard(Arc::new(GuardState {
            limit,
            in_flight: Mutex::new(HashMap::new()),
            failures: moka::sync::Cache::builder()
                .time_to_idle(limit.per)
                .max_capacity(1_000_000)
                .build(),
        })))
    }

    /// Starts an attempt for `login` (case-folded here), or `None` when its failures (with
    /// the attempts in flight) already reach the limit.
    pub fn begin(&self, login: &str) -> Option<PasswordAttempt> {
        let g = &self.0;
        let key = login.to_lowercase();
        let mut in_flight = g.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let failures = g.failures.get(&key).map_or(0, |w| {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            while w
                .front()
                .is_some_and(|t| now.duration_since(*t) >= g.limit.per)
            {
                w.pop_front();
            }
            w.len() as u64
        });
        let running = in_flight.get(&key).copied().unwrap_or(0);
        if failures + u64::from(running) >= u64::from(g.limit.count) {
            return None;
        }
        in_flight.insert(key.clone(), running + 1);
        Some(PasswordAttempt {
            guard: g.clone(),
            key,
        })
    }

    /// Names with failures on record (for tests and diagnostics).
    pub fn names_with_failures(&self) -> u64 {
        self.0.failures.run_pending_tasks();
        self.0.failures.entry_count()
    }
}

impl PasswordAttempt {
    /// The directory refused the password: it counts for `per`.
    pub fn failed(self) {
        let g = &self.guard;
        let _in_flight = g.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let window = g.failures.get_with(self.key.clone(), Default::default);
        window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(std::time::Instant::now());
    }

    /// The password was right: earlier failures are forgotten.
    pub fn passed(self) {
        let g = &self.guard;
        let _in_flight = g.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        g.failures.invalidate(&self.key);
    }
}

impl Drop for PasswordAttempt {
    fn drop(&mut self) {
        let mut in_flight = self
            .guard
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match in_flight.get_mut(&self.key) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                in_flight.remove(&self.key);
            }
        }
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
            password_failures_per_user: l,
            enrollment_per_user: l,
        }
    }

    #[test]
    fn the_password_guard_counts_failures_and_attempts_in_flight() {
        let g = PasswordGuard::new(RateLimit {
            count: 3,
            per: Duration::from_secs(60),
        })
        .unwrap();
        // Right passwords never use the allowance up.
        for _ in 0..10 {
            g.begin("alice").unwrap().passed();
        }
        g.begin("alice").unwrap().failed();
        g.begin("ALICE").unwrap().failed();
        // Two failures and one attempt in flight reach the limit of 3: a concurrent fourth
        // guess is refused before it reaches the directory.
        let pending = g.begin("alice").unwrap();
        assert!(g.begin("alice").is_none());
        // An attempt without a verdict (an outage) counts for nothing.
        drop(pending);
        g.begin("alice").unwrap().failed();
        assert!(g.begin("alice").is_none(), "three failures");
        assert!(g.begin("bob").is_some(), "per login name");
    }

    #[test]
    fn the_password_guard_keeps_nothing_for_right_passwords() {
        let g = PasswordGuard::new(RateLimit {
            count: 3,
            per: Duration::from_secs(60),
        })
        .unwrap();
        for i in 0..1000 {
            g.begin(&format!("user{i}")).unwrap().passed();
        }
        assert_eq!(g.names_with_failures(), 0);
        assert!(g.0.in_flight.lock().unwrap().is_empty());
        g.begin("mallory").unwrap().failed();
        assert_eq!(g.names_with_failures(), 1);
        g.begin("mallory").unwrap().passed();
        assert_eq!(
            g.names_with_failures(),
            0,
            "a right password forgets the failures"
        );
    }

    #[test]
    fn a_right_password_clears_the_failures_and_they_expire() {
        let g = PasswordGuard::new(RateLimit {
            count: 2,
            per: Duration::from_millis(200),
        })
        .unwrap();
        g.begin("alice").unwrap().failed();
        g.begin("alice").unwrap().passed();
        g.begin("alice").unwrap().failed();
        g.begin("alice").unwrap().failed();
        assert!(g.begin("alice").is_none());
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            g.begin("alice").is_some(),
            "failures older than per are forgotten"
        );
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
