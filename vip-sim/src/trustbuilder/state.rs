//! tb-sim's state: logins, tools, push sessions, used codes, faults and counters.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;

use super::config::{decode_seed, TbFaults, TbPush, TbSimConfig, TbToolConfig, TbUserConfig};
use crate::totp::{code_at_step, STEP_SECONDS};
use crate::{CounterSet, Counters};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), the answers' timestamp format.
pub(crate) fn timestamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A random string of `n` decimal digits (the first one not 0).
pub(crate) fn random_digits(n: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(n);
    s.push(char::from(b'1' + rng.gen_range(0..9u8)));
    for _ in 1..n {
        s.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    s
}

/// The activation-code state of a login (loginsQuery's `code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CodeState {
    /// The code was used: the login is active (`ok`).
    Used,
    /// A valid code (`<9 digits>`).
    Active { code: String, until: u64 },
    /// Created with codetype 1, not activated yet (`in:<9 digits>`).
    Inactive { code: String, until: u64 },
    /// Created with codetype 2: an activation link (`link`).
    Link { long: String, until: u64 },
    /// Never used and expired.
    Expired,
}

impl CodeState {
    /// The wire value at `now`.
    pub(crate) fn wire(&self, now: u64) -> String {
        match self {
            CodeState::Used => "ok".into(),
            CodeState::Active { code, until } if *until > now => code.clone(),
            CodeState::Inactive { code, until } if *until > now => format!("in:{code}"),
            CodeState::Link { until, .. } if *until > now => "link".into(),
            _ => "expired".into(),
        }
    }
}

/// A tool at run time.
#[derive(Debug, Clone)]
pub(crate) struct Tool {
    pub cfg: TbToolConfig,
    pub key: Option<Vec<u8>>,
    pub created: u64,
    pub last_auth: u64,
}

impl Tool {
    pub(crate) fn new(cfg: TbToolConfig, created: u64) -> Tool {
        let key = cfg.seed.as_deref().and_then(decode_seed);
        Tool {
            cfg,
            key,
            created,
            last_auth: 0,
        }
    }

    pub(crate) fn code_at(&self, step: i64) -> Option<String> {
        self.key.as_deref().map(|k| code_at_step(k, step, 6))
    }

    fn active(&self) -> bool {
        self.cfg.state == 0
    }
}

/// A login at run time.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub id: u64,
    pub login: String,
    pub status: u8,
    pub firstname: String,
    pub name: String,
    pub mail: String,
    pub phone: String,
    pub role: u8,
    pub extrafields: String,
    /// 0 console, 1 API.
    pub createdby: u8,
    pub lastauthdate: u64,
    pub code: CodeState,
    /// A long code (codetype 2) for loginQuery's `longcode`.
    pub longcode: Option<String>,
    /// loginResetPINErrorCounter was used since the last successful authentication.
    pub pin_reset_used: bool,
    pub faults: TbFaults,
    /// How often this login's `err` faults were injected, per name.
    pub injected: HashMap<String, u32>,
    pub tools: Vec<Tool>,
}

impl Login {
    pub(crate) fn from_config(id: u64, u: &TbUserConfig, now: u64) -> Login {
        Login {
            id,
            login: u.login.clone(),
            status: u.status,
            firstname: u.firstname.clone(),
            name: u.name.clone(),
            mail: u.mail.clone(),
            phone: u.phone.clone(),
            role: u.role,
            extrafields: String::new(),
            createdby: 0,
            lastauthdate: 0,
            code: if u.tools.is_empty() {
                CodeState::Expired
            } else {
                CodeState::Used
            },
            longcode: None,
            pin_reset_used: false,
            faults: u.faults.clone(),
            injected: HashMap::new(),
            tools: u.tools.iter().map(|t| Tool::new(t.clone(), now)).collect(),
        }
    }

    /// loginSearch's `activation_status` mask: 1 an active mobile app, 2 an active Helium,
    /// 4 an active Virtual Authenticator.
    pub(crate) fn activation_status(&self) -> u64 {
        let has = |kind: &str| {
            self.tools
                .iter()
                .any(|t| t.cfg.kind == kind && t.cfg.state == 0)
        };
        u64::from(has("ma")) | (u64::from(has("ca")) << 1) | (u64::from(has("va")) << 2)
    }
}

/// A push waiting for checkPushResult.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub login: String,
    pub alias: String,
    pub started: Instant,
    pub push: TbPush,
}

pub(crate) struct Inner {
    /// In creation order (loginsQuery's unsorted order); call [`Inner::reindex`] after
    /// adding, renaming or removing one.
    pub logins: Vec<Login>,
    /// Where each login name and id is in `logins`: a benchmark's 200,000 logins are found
    /// in O(1), not by a scan per call.
    names: HashMap<String, usize>,
    ids: HashMap<u64, usize>,
    pub next_id: u64,
    pub sessions: HashMap<String, Session>,
    /// (tool alias, time step) of codes already accepted.
    pub used: HashSet<(String, i64)>,
    /// The time step `used` was last pruned at (once a step, not once a call).
    pruned_at: i64,
}

impl Inner {
    fn new(logins: Vec<Login>, next_id: u64) -> Inner {
        let mut inner = Inner {
            logins,
            names: HashMap::new(),
            ids: HashMap::new(),
            next_id,
            sessions: HashMap::new(),
            used: HashSet::new(),
            pruned_at: i64::MIN,
        };
        inner.reindex();
        inner
    }

    /// Rebuilds the name and id indexes (after loginCreate, loginUpdate, loginDelete).
    pub(crate) fn reindex(&mut self) {
        self.names = (self.logins.iter().enumerate())
            .map(|(i, l)| (l.login.clone(), i))
            .collect();
        self.ids = (self.logins.iter().enumerate())
            .map(|(i, l)| (l.id, i))
            .collect();
    }

    pub(crate) fn by_login(&self, login: &str) -> Option<&Login> {
        self.names.get(login).and_then(|&i| self.logins.get(i))
    }

    pub(crate) fn by_login_mut(&mut self, login: &str) -> Option<&mut Login> {
        let i = *self.names.get(login)?;
        self.logins.get_mut(i)
    }

    pub(crate) fn by_id_mut(&mut self, id: u64) -> Option<&mut Login> {
        let i = *self.ids.get(&id)?;
        self.logins.get_mut(i)
    }

    /// Forgets used codes older than the accepted window, once per time step.
    fn prune_used(&mut self, now: i64) {
        if self.pruned_at != now {
            self.used.retain(|(_, s)| *s >= now - 2);
            self.pruned_at = now;
        }
    }
}

/// The device fields of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Device {
    pub name: Option<String>,
    pub alias: Option<String>,
    pub version: Option<String>,
    pub platform: Option<String>,
    pub kind: Option<String>,
    pub timestamp: Option<String>,
}

impl Device {
    fn of(t: &TbToolConfig) -> Device {
        Device {
            name: Some(t.name.clone()),
            alias: Some(t.alias.clone()),
            version: t.version.clone(),
            platform: t.platform.clone(),
            kind: Some(t.kind.clone()),
            timestamp: Some(timestamp()),
        }
    }
}

/// What an authentication action answers: `err`, the device fields, the push's sessionId.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub err: String,
    pub device: Device,
    pub session_id: Option<String>,
}

impl Outcome {
    pub(crate) fn err(e: impl Into<String>) -> Outcome {
        Outcome {
            err: e.into(),
            ..Outcome::default()
        }
    }
}

/// The status of a locked account (status 1): the simulator's choice among "any other NOK:*".
pub(crate) const NOK_LOCKED: &str = "NOK:account locked";

pub(crate) struct TbState {
    pub service_id: u64,
    pub max_users: usize,
    pub push_timeout: Duration,
    pub inner: Mutex<Inner>,
    global: Mutex<(TbFaults, HashMap<String, u32>)>,
    pub counters: CounterSet,
}

impl TbState {
    pub(crate) fn new(cfg: &TbSimConfig) -> TbState {
        let now = now_unix();
        let mut next_id = cfg.users.iter().filter_map(|u| u.id).max().unwrap_or(1000) + 1;
        let mut logins = Vec::new();
        for u in &cfg.users {
            let id = u.id.unwrap_or_else(|| {
                let id = next_id;
                next_id += 1;
                id
            });
            logins.push(Login::from_config(id, u, now));
        }
        TbState {
            service_id: cfg.service.id,
            max_users: cfg.service.max_users,
            push_timeout: cfg.service.push_timeout,
            inner: Mutex::new(Inner::new(logins, next_id)),
            global: Mutex::new((cfg.faults.clone(), HashMap::new())),
            counters: CounterSet::default(),
        }
    }

    pub(crate) fn global_faults(&self) -> TbFaults {
        lock(&self.global).0.clone()
    }

    pub(crate) fn set_global_faults(&self, f: TbFaults) {
        *lock(&self.global) = (f, HashMap::new());
    }

    pub(crate) fn set_user_faults(&self, login: &str, f: TbFaults) -> bool {
        match lock(&self.inner).by_login_mut(login) {
            Some(l) => {
                l.faults = f;
                l.injected.clear();
                true
            }
            None => false,
        }
    }

    /// Global faults merged with those of `login` (if it exists).
    pub(crate) fn faults_for(&self, login: Option<&str>) -> TbFaults {
        let global = self.global_faults();
        let inner = lock(&self.inner);
        match login.and_then(|l| inner.by_login(l)) {
            Some(l) => global.merge(&l.faults),
            None => global,
        }
    }

    /// The forced `err` for `name`, if any, counting it: the login's entry wins over the
    /// global one; each scope counts against its own `err_times`.
    pub(crate) fn take_forced_err(&self, name: &str, login: Option<&str>) -> Option<String> {
        let take = |f: &TbFaults, counts: &mut HashMap<String, u32>| {
            let e = f.err.get(name)?;
            let n = counts.entry(name.to_string()).or_insert(0);
            if f.err_times > 0 && *n >= f.err_times {
                return None;
            }
            *n += 1;
            Some(e.clone())
        };
        {
            let mut inner = lock(&self.inner);
            if let Some(l) = login.and_then(|l| inner.by_login_mut(l)) {
                if l.faults.err.contains_key(name) {
                    let Login {
                        faults, injected, ..
                    } = l;
                    return take(faults, injected);
                }
            }
        }
        let mut g = lock(&self.global);
        let (faults, counts) = &mut *g;
        take(faults, counts)
    }

    pub(crate) fn counters(&self) -> Counters {
        self.counters.snapshot()
    }

    pub(crate) fn login_exists(&self, login: &str) -> bool {
        lock(&self.inner).by_login(login).is_some()
    }

    fn step_now() -> i64 {
        (now_unix() / STEP_SECONDS) as i64
    }

    /// The code the login's first active tool with a seed shows now.
    pub(crate) fn current_code(&self, login: &str) -> Option<String> {
        let inner = lock(&self.inner);
        inner
            .by_login(login)?
            .tools
            .iter()
            .filter(|t| t.active())
            .find_map(|t| t.code_at(Self::step_now()))
    }

    pub(crate) fn tool_code(&self, alias: &str) -> Option<String> {
        let inner = lock(&self.inner);
        inner
            .logins
            .iter()
            .flat_map(|l| &l.tools)
            .find(|t| t.cfg.alias == alias)?
            .code_at(Self::step_now())
    }

    /// authenticateExtended: TOTP ±1 step on the login's active tools, each code once.
    pub(crate) fn authenticate(&self, login: &str, token: &str, f: &TbFaults) -> Outcome {
        let mut inner = lock(&self.inner);
        let now = Self::step_now();
        inner.prune_used(now);
        let Some(&at) = inner.names.get(login) else {
            return Outcome::err(account_unknown(f));
        };
        let Inner { logins, used, .. } = &mut *inner;
        let Some(l) = logins.get_mut(at) else {
            return Outcome::err(account_unknown(f));
        };
        if l.status != 0 {
            return Outcome::err(NOK_LOCKED);
        }
        for t in l.tools.iter_mut().filter(|t| t.active()) {
            for step in now - 1..=now + 1 {
                if t.code_at(step).as_deref() == Some(token)
                    && used.insert((t.cfg.alias.clone(), step))
                {
                    t.last_auth = now_unix();
                    l.lastauthdate = t.last_auth;
                    l.pin_reset_used = false;
                    return Outcome {
                        err: "OK".into(),
                        device: Device::of(&t.cfg),
                        session_id: None,
                    };
                }
            }
        }
        Outcome::err("NOK:no device found")
    }

    /// pushAuthenticate: a session on the login's first active, push-enabled app.
    pub(crate) fn push(&self, login: &str, f: &TbFaults) -> Outcome {
        let mut inner = lock(&self.inner);
        let timeout = self.push_timeout;
        inner
            .sessions
            .retain(|_, s| s.started.elapsed() < timeout + Duration::from_secs(300));
        let Some(l) = inner.by_login(login) else {
            return Outcome::err("NOK:NOLOGIN");
        };
        if l.status != 0 {
            return Outcome::err(NOK_LOCKED);
        }
        let apps: Vec<&Tool> = l
            .tools
            .iter()
            .filter(|t| (t.cfg.kind == "ma" || t.cfg.kind == "mac") && t.active())
            .collect();
        if apps.is_empty() {
            return Outcome::err(if f.upper_case { "NOK:NOMA" } else { "NOK:NoMA" });
        }
        let Some(app) = apps.into_iter().find(|t| t.cfg.push_enabled) else {
            return Outcome::err(if f.upper_case {
                "NOK:NOPUSH"
            } else {
                "NOK:NoPush"
            });
        };
        let sid = hex::encode(rand::thread_rng().gen::<[u8; 16]>());
        let device = Device::of(&app.cfg);
        let session = Session {
            login: l.login.clone(),
            alias: app.cfg.alias.clone(),
            started: Instant::now(),
            push: app.cfg.push.clone(),
        };
        inner.sessions.insert(sid.clone(), session);
        Outcome {
            err: "OK".into(),
            device,
            session_id: Some(sid),
        }
    }

    /// checkPushResult: WAITING until the device's behaviour happens or the push times out.
    /// A final answer (OK, REFUSED, TIMEOUT) ends the session: later checks get bare NOK.
    pub(crate) fn check_push(&self, login: &str, sid: &str) -> Outcome {
        let mut inner = lock(&self.inner);
        let Some(s) = inner.sessions.get(sid) else {
            return Outcome::err("NOK");
        };
        if s.login != login {
            return Outcome::err("NOK");
        }
        let elapsed = s.started.elapsed();
        let after = s.push.after.unwrap_or_default();
        let answered = s.push.action != "ignore" && after < self.push_timeout;
        let (err, done) = if answered && elapsed >= after {
            if s.push.action == "approve" {
                ("OK", true)
            } else {
                ("NOK:REFUSED", true)
            }
        } else if elapsed >= self.push_timeout {
            ("NOK:TIMEOUT", true)
        } else {
            ("NOK:WAITING", false)
        };
        let alias = s.alias.clone();
        if done {
            inner.sessions.remove(sid);
        }
        if err != "OK" {
            return Outcome::err(err);
        }
        let Some(l) = inner.by_login_mut(login) else {
            return Outcome::err("NOK");
        };
        let now = now_unix();
        l.lastauthdate = now;
        l.pin_reset_used = false;
        match l.tools.iter_mut().find(|t| t.cfg.alias == alias) {
            Some(t) => {
                t.last_auth = now;
                Outcome {
                    err: "OK".into(),
                    device: Device::of(&t.cfg),
                    session_id: None,
                }
            }
            // The tool was deleted while the push was pending.
            None => Outcome::err("NOK"),
        }
    }
}

/// `NOK:account unknown`, with the trailing-space variant when the fault asks for it.
pub(crate) fn account_unknown(f: &TbFaults) -> &'static str {
    if f.account_unknown_trailing_space {
        "NOK:account unknown "
    } else {
        "NOK:account unknown"
    }
}
