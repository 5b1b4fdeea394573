//! A first factor for engine tests: an in-test implementation of the `FirstFactor` trait that
//! counts its calls, so each test can prove what was (not) asked, and an engine over the
//! real simulator that uses it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vip_core::engine::{Authenticate, Engine, FirstFactorKind, LoginPolicy, Outcome};
use vip_core::first_factor::{
    BoxFuture, DirectoryUser, FirstFactor, FirstFactorError, Lookup, ProbeReport, RawAttribute,
    Verdict,
};
use vip_core::secret::Secret;

use super::*;

/// What the fake directory does when asked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Outage,
    /// Asks a question first (an upstream RADIUS server's Access-Challenge); the answer
    /// `"4321"` passes.
    Challenge,
}

pub struct FakeDirectory {
    pub kind: &'static str,
    /// login -> (password, groups, mail)
    pub users: HashMap<String, (String, Vec<String>, String)>,
    pub mode: Mutex<Mode>,
    pub verifies: AtomicU64,
    pub lookups: AtomicU64,
    /// Logins the directory was asked about, in order.
    pub asked: Mutex<Vec<String>>,
}

impl FakeDirectory {
    pub fn new(kind: &'static str) -> Arc<Self> {
        let mut users = HashMap::new();
        users.insert(
            "alice".to_owned(),
            (
                "Corp,pass 1".to_owned(),
                vec!["cn=vpn-users,ou=groups,dc=example,dc=org".to_owned()],
                "alice".to_owned(),
            ),
        );
        users.insert(
            "bob".to_owned(),
            (
                "bobpw".to_owned(),
                vec!["cn=admins,ou=groups,dc=example,dc=org".to_owned()],
                "bob".to_owned(),
            ),
        );
        // Directory users VIP knows without a credential (newbie), or not at all (walker,
        // pamela): candidates for in-band enrollment.
        for (login, password) in [
            ("newbie", "newpw"),
            ("walker", "walkpw"),
            ("pamela", "pampw"),
        ] {
            users.insert(
                login.to_owned(),
                (password.to_owned(), Vec::new(), login.to_owned()),
            );
        }
        // A directory name that differs from the VIP user id (mapping by attribute).
        users.insert(
            "a.smith".to_owned(),
            ("smithpw".to_owned(), Vec::new(), "alice".to_owned()),
        );
        Arc::new(FakeDirectory {
            kind,
            users,
            mode: Mutex::new(Mode::Normal),
            verifies: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            asked: Mutex::new(Vec::new()),
        })
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn verifies(&self) -> u64 {
        self.verifies.load(Ordering::SeqCst)
    }

    fn user(&self, who: &Lookup<'_>) -> Option<DirectoryUser> {
        self.users
            .get(who.login)
            .map(|(_, groups, mail)| DirectoryUser {
                dn: Some(format!("uid={},ou=people,dc=example,dc=org", who.login)),
                attribute: who.attribute.map(|_| mail.clone()),
                groups: if who.groups {
                    groups.clone()
                } else {
                    Vec::new()
                },
                reply_attributes: if self.kind == "radius" {
                    vec![
                        RawAttribute {
                            kind: 25,
                            value: b"vpn-class".to_vec(),
                        },
                        RawAttribute {
                            kind: 11,
                            value: b"staff".to_vec(),
                        },
                    ]
                } else {
                    Vec::new()
                },
            })
    }
}

impl FirstFactor for FakeDirectory {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn verify<'a>(
        &'a self,
        who: Lookup<'a>,
        password: &'a Secret,
        upstream_state: Option<&'a [u8]>,
    ) -> BoxFuture<'a, Result<Verdict, FirstFactorError>> {
        Box::pin(async move {
            self.verifies.fetch_add(1, Ordering::SeqCst);
            self.asked.lock().unwrap().push(who.login.to_owned());
            let mode = *self.mode.lock().unwrap();
            if mode == Mode::Outage {
                return Err(FirstFactorError::Outage("no server answered".into()));
            }
            let Some(user) = self.user(&who) else {
                return Ok(Verdict::Refused {
                    why: "no such user".into(),
                });
            };
            if mode == Mode::Challenge && upstream_state.is_none() {
                if password.expose() != self.users[who.login].0 {
                    return Ok(Verdict::Refused {
                        why: "wrong".into(),
                    });
                }
                return Ok(Verdict::Challenge {
                    prompt: "Enter your new PIN:".into(),
                    state: b"upstream-state-1".to_vec(),
                });
            }
            if let Some(state) = upstream_state {
                assert_eq!(state, b"upstream-state-1", "the upstream's State went back");
                return Ok(if password.expose() == "4321" {
                    Verdict::Passed(user)
                } else {
                    Verdict::Refused {
                        why: "wrong PIN".into(),
                    }
                });
            }
            Ok(if password.expose() == self.users[who.login].0 {
                Verdict::Passed(user)
            } else {
                Verdict::Refused {
                    why: "invalid credentials".into(),
                }
            })
        })
    }

    fn lookup<'a>(
        &'a self,
        who: Lookup<'a>,
    ) -> BoxFuture<'a, Result<Option<DirectoryUser>, FirstFactorError>> {
        Box::pin(async move {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok(self.user(&who))
        })
    }

    fn probe(&self) -> BoxFuture<'_, Vec<ProbeReport>> {
        Box::pin(async { Vec::new() })
    }
}

pub struct Ff {
    pub env: Env,
    pub engine: Arc<Engine>,
    pub dir: Arc<FakeDirectory>,
}

pub async fn ff_env(kind: &'static str, policies: BTreeMap<String, LoginPolicy>) -> Ff {
    ff_env_with(kind, policies, "", fast_engine_config()).await
}

/// [`ff_env`] with more simulator TOML (users, tokens) and this engine configuration.
pub async fn ff_env_with(
    kind: &'static str,
    policies: BTreeMap<String, LoginPolicy>,
    extra: &str,
    engine: vip_core::engine::EngineConfig,
) -> Ff {
    let env = env_with(extra, engine).await;
    let dir = FakeDirectory::new(kind);
    let mut directories: HashMap<String, Arc<dyn FirstFactor>> = HashMap::new();
    directories.insert("corp".into(), dir.clone());
    let client = vip_core::vip::VipClient::new(&env.core.vip).unwrap();
    let backend = vip_core::vip::VipBackend::new(client, env.core.vip.health_check_interval);
    let engine =
        Engine::with_parts(&env.core.engine, Arc::new(backend), directories, &policies).unwrap();
    Ff { env, engine, dir }
}

pub fn ldap_policy(edit: impl FnOnce(&mut LoginPolicy)) -> Arc<LoginPolicy> {
    policy(|p| {
        p.first_factor = FirstFactorKind::Ldap;
        edit(p);
    })
}

impl Ff {
    pub async fn auth(
        &self,
        user: &str,
        typed: &str,
        state: Option<Vec<u8>>,
        policy: &Arc<LoginPolicy>,
    ) -> Outcome {
        self.engine
            .authenticate(request(user, Some(typed), state, policy))
            .await
    }

    pub fn vip_calls(&self) -> u64 {
        let c = self.env.sim.counters();
        [
            "authenticateUser",
            "checkOtp",
            "authenticateUserWithPush",
            "getUserInfo",
            "sendOtp",
            "createUser",
            "addCredential",
            "register",
            "updateUser",
        ]
        .iter()
        .map(|op| c.calls(op))
        .sum()
    }
}
