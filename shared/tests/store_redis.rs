//! The shared store (`[cluster] store = "redis"`) against real Redis servers on loopback:
//! `redis-server` (and `redis-sentinel` for a fail-over), started here and stopped on drop.
//! Two engines over one simulator, one Redis and one State key play two instances. Under
//! `CI=true` a machine without Redis fails these tests; elsewhere they are skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use vip_core::engine::{Engine, Outcome, PasswordMode, RejectReason};
use vip_core::store::{ClusterConfig, RedisConfig, SharedStore, StoreKind, WhenUnavailable};
use vip_core::throttle::RateLimit;

/// A Redis process on a loopback port; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(dir: &Path, name: &str, port: u16, extra: &[&str]) -> Redis {
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--dbfilename".into(),
            format!("{name}.rdb"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server");
        wait_port(port);
        Redis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn have_redis() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("redis-server is required under CI=true (Debian package redis-server)");
        }
        eprintln!("SKIPPED: redis-server is not installed");
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cluster(urls: Vec<String>, when: WhenUnavailable) -> ClusterConfig {
    ClusterConfig {
        store: StoreKind::Redis,
        when_unavailable: when,
        redis: RedisConfig {
            urls,
            timeout: Duration::from_millis(300),
            ..RedisConfig::default()
        },
    }
}

/// Waits until the store answers (the connector connects in the background).
async fn until_connected(store: &SharedStore) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two instances: engines built from one configuration (one simulator, one Redis, one key).
async fn two_instances(
    redis: &Redis,
    when: WhenUnavailable,
    edit: impl FnOnce(&mut vip_core::config::CoreConfig),
) -> (Env, Arc<Engine>, Arc<Engine>) {
    let env = env().await;
    let mut core = env.core.clone();
    let key = env.dir.path().join("state.key");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    core.engine.state_key_file = Some(key);
    core.cluster = cluster(vec![redis.url()], when);
    edit(&mut core);
    let a = core.build_engine().unwrap();
    let b = core.build_engine().unwrap();
    until_connected(a.store().unwrap()).await;
    until_connected(b.store().unwrap()).await;
    (env, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_is_single_use_across_instances() {
    if !have_redis() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), "r", free_port(), &[]);
    let (_env, a, b) = two_instances(&redis, WhenUnavailable::Memory, |_| {}).await;
    let p = policy(|p| p.mode = PasswordMode::Challenge);
    let o = auth_with(&a, request("alice", None, None, &p)).await;
    let state = expect_challenge(&o).state.clone();
    // Instance B continues what A started (the NAS failed over)...
    let o = auth_with(&b, request("alice", Some("push"), Some(state.clone()), &p)).await;
    assert!(
        !matches!(o, Outcome::Reject(ref r) if r.reason == RejectReason::BadState),
        "{o:?}"
    );
    // ...and A, whose own memory never saw it spent, refuses it again.
    let o = auth_with(&a, request("alice", Some("push"), Some(state), &p)).await;
    expect_reject(&o, RejectReason::BadState);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_code_limit_is_shared_by_the_instances() {
    if !have_redis() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), "r", free_port(), &[]);
    let (env, a, b) = two_instances(&redis, WhenUnavailable::Memory, |c| {
        c.engine.throttle.codes_per_user = RateLimit {
            count: 3,
            per: Duration::from_secs(600),
        };
    })
    .await;
    let p = policy(|_| {});
    // Alternating instances: each would allow 3 on its own, together they allow 3.
    for (i, engine) in [&a, &b, &a].into_iter().enumerate() {
        let o = auth_with(engine, request("bob", Some("000000"), None, &p)).await;
        expect_reject(&o, RejectReason::BadCode);
        assert_eq!(env.calls("authenticateUser"), i as u64 + 1);
    }
    let o = auth_with(&b, request("bob", Some("000000"), None, &p)).await;
    expect_reject(&o, RejectReason::Throttled);
    assert_eq!(
        env.calls("authenticateUser"),
        3,
        "the 4th never reached VIP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_allows_a_burst_then_refills_one_at_a_time() {
    if !have_redis() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), "r", free_port(), &[]);
    let store = SharedStore::start(
        &cluster(vec![redis.url()], WhenUnavailable::Reject),
        dir.path(),
    )
    .unwrap()
    .unwrap();
    until_connected(&store).await;
    let q = RateLimit {
        count: 2,
        per: Duration::from_millis(600),
    };
    assert_eq!(store.allow("codes_per_user", "carol", q).await, Ok(true));
    assert_eq!(store.allow("codes_per_user", "carol", q).await, Ok(true));
    assert_eq!(store.allow("codes_per_user", "carol", q).await, Ok(false));
    // Another key, another bucket.
    assert_eq!(store.allow("codes_per_user", "dave", q).await, Ok(true));
    // One token back every 300 ms.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(store.allow("codes_per_user", "carol", q).await, Ok(true));
    assert_eq!(store.allow("codes_per_user", "carol", q).await, Ok(false));
    // A nonce is spent once.
    assert_eq!(
        store.spend_nonce(b"n1", Duration::from_secs(5)).await,
        Ok(true)
    );
    assert_eq!(
        store.spend_nonce(b"n1", Duration::from_secs(5)).await,
        Ok(false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_logins_go_on_per_the_fallback_and_the_store_comes_back() {
    if !have_redis() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut redis = Redis::start(dir.path(), "r", port, &[]);
    let (env, a, _b) = two_instances(&redis, WhenUnavailable::Memory, |_| {}).await;
    let p = policy(|_| {});
    redis.kill();
    // memory: the login goes on, decided by this instance alone.
    let good = code(ALICE_SECRET, 0);
    expect_accept(&auth_with(&a, request("alice", Some(&good), None, &p)).await);
    // Redis back on the same port: the store is used again.
    let redis = Redis::start(dir.path(), "r2", port, &[]);
    until_connected(a.store().unwrap()).await;
    let nonce = b"after-restart";
    let store = a.store().unwrap();
    assert_eq!(
        store.spend_nonce(nonce, Duration::from_secs(5)).await,
        Ok(true)
    );
    assert_eq!(
        store.spend_nonce(nonce, Duration::from_secs(5)).await,
        Ok(false)
    );
    drop(redis);
    drop(env);

    // reject: a login that needs the store is refused while it is down, never let in.
    let mut redis = Redis::start(dir.path(), "r3", free_port(), &[]);
    let (_env, a, _b) = two_instances(&redis, WhenUnavailable::Reject, |_| {}).await;
    redis.kill();
    let o = auth_with(&a, request("alice", Some(&code(ALICE_SECRET, 1)), None, &p)).await;
    expect_reject(&o, RejectReason::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_moves_the_store_to_the_new_master() {
    if !have_redis() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut master = Redis::start(dir.path(), "m", free_port(), &[]);
    let replica_port = free_port();
    let replica = Redis::start(
        dir.path(),
        "s",
        replica_port,
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    let sentinel_port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor vb 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds vb 400\n\
             sentinel failover-timeout vb 2000\n",
            dir.path().display(),
            master.port
        ),
    )
    .unwrap();
    let mut sentinel = Command::new("redis-sentinel")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-sentinel");
    wait_port(sentinel_port);
    let mut cfg = cluster(
        vec![format!("redis://127.0.0.1:{sentinel_port}")],
        WhenUnavailable::Reject,
    );
    cfg.redis.sentinel_master = Some("vb".into());
    let store = SharedStore::start(&cfg, dir.path()).unwrap().unwrap();
    until_connected(&store).await;
    assert_eq!(
        store.spend_nonce(b"before", Duration::from_secs(60)).await,
        Ok(true)
    );
    master.kill();
    // The Sentinel promotes the replica; the store follows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(fresh) = store.spend_nonce(b"after", Duration::from_secs(60)).await {
            assert!(fresh);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store never reached the new master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (role, _) = store.ping().await.unwrap();
    assert_eq!(role, "master");
    assert_eq!(
        store.spend_nonce(b"after", Duration::from_secs(60)).await,
        Ok(false)
    );
    let _ = sentinel.kill();
    let _ = sentinel.wait();
    drop(replica);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_client_certificate_and_a_password_file() {
    if !have_redis() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = vip_sim::certs::generate(dir.path()).unwrap();
    let port = free_port();
    let show = |p: &std::path::PathBuf| p.display().to_string();
    let (cert, key, ca) = (
        show(&pki.server_cert),
        show(&pki.server_key),
        show(&pki.ca_cert),
    );
    let _redis = Redis::start(
        dir.path(),
        "tls",
        port,
        &[
            "--tls-port",
            &port.to_string(),
            "--port",
            "0",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "yes",
            "--requirepass",
            "s3cret-redis",
        ],
    );
    std::fs::write(dir.path().join("redis.pw"), "s3cret-redis\n").unwrap();
    let mut cfg = cluster(
        vec![format!("rediss://127.0.0.1:{port}")],
        WhenUnavailable::Reject,
    );
    cfg.redis.ca_file = Some(pki.ca_cert.clone());
    cfg.redis.cert_file = Some(pki.client_cert.clone());
    cfg.redis.key_file = Some(pki.client_key.clone());
    // Relative to the configuration's directory.
    cfg.redis.password_file = Some("redis.pw".into());
    let store = SharedStore::start(&cfg, dir.path()).unwrap().unwrap();
    until_connected(&store).await;
    assert_eq!(
        store.spend_nonce(b"tls", Duration::from_secs(5)).await,
        Ok(true)
    );

    // Without the client certificate the server refuses the handshake: never connected.
    cfg.redis.cert_file = None;
    cfg.redis.key_file = None;
    let refused = SharedStore::start(&cfg, dir.path()).unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(refused.ping().await.is_err());
    assert_eq!(
        refused.spend_nonce(b"tls2", Duration::from_secs(5)).await,
        Err(vip_core::store::Refused)
    );
}

#[test]
fn configuration_mistakes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let check = |edit: &dyn Fn(&mut ClusterConfig)| {
        let mut cfg = cluster(
            vec!["redis://127.0.0.1:6379".into()],
            WhenUnavailable::Memory,
        );
        edit(&mut cfg);
        SharedStore::check(&cfg, dir.path()).unwrap_err()
    };
    assert!(check(&|c| c.redis.urls.clear()).contains("cluster.redis.urls: empty"));
    assert!(check(&|c| c.redis.urls = vec!["http://x".into()]).contains("cluster.redis.urls[0]"));
    assert!(
        check(&|c| c.redis.urls.push("redis://127.0.0.1:6380".into())).contains("sentinel_master")
    );
    assert!(
        check(&|c| c.redis.password_file = Some("missing.pw".into()))
            .contains("cluster.redis.password_file")
    );
    assert!(check(&|c| c.redis.ca_file = Some("ca.pem".into())).contains("rediss://"));
    assert!(check(&|c| c.redis.timeout = Duration::from_secs(60)).contains("cluster.redis.timeout"));
    assert!(check(&|c| {
        c.redis.redis_cluster = true;
        c.redis.sentinel_master = Some("m".into());
    })
    .contains("exclude each other"));
    // store = "memory" checks nothing of [cluster.redis].
    let memory = ClusterConfig::default();
    assert!(SharedStore::check(&memory, dir.path()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nas_failing_over_mid_push_joins_the_push_on_the_other_instance() {
    if !have_redis() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), "r", free_port(), &[]);
    let (env, a, b) = two_instances(&redis, WhenUnavailable::Memory, |_| {}).await;
    let p = policy(|p| p.push_timeout = Duration::from_secs(10));
    // dave's phone approves 1.2 s after the push arrives. The NAS asks A, gives up on it
    // after 300 ms and sends the same login session's request to B.
    let first = tokio::spawn({
        let a = a.clone();
        let p = p.clone();
        async move { auth_with(&a, request("dave", Some("push"), None, &p)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.abort();
    let o = auth_with(&b, request("dave", Some("push"), None, &p)).await;
    expect_accept(&o);
    assert_eq!(
        env.calls("authenticateUserWithPush"),
        1,
        "one push for one login"
    );
    // Another login session of the same user is its own push.
    let other = in_session(request("dave", Some("push"), None, &p), Some("nas-port-2"));
    expect_accept(&auth_with(&b, other).await);
    assert_eq!(env.calls("authenticateUserWithPush"), 2);
    // Once finished, the first session's next login sends a push of its own.
    tokio::time::sleep(Duration::from_millis(200)).await;
    expect_accept(&auth_with(&a, request("dave", Some("push"), None, &p)).await);
    assert_eq!(env.calls("authenticateUserWithPush"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_routes_each_key_to_its_node() {
    if !have_redis() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _nodes: Vec<Redis> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let conf = dir.path().join(format!("nodes-{i}.conf"));
            Redis::start(
                dir.path(),
                &format!("n{i}"),
                *p,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf.display().to_string(),
                ],
            )
        })
        .collect();
    let mut create = Command::new("redis-cli");
    create.args(["--cluster", "create"]);
    for p in &ports {
        create.arg(format!("127.0.0.1:{p}"));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli (Debian package redis-tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut cfg = cluster(
        vec![format!("redis://127.0.0.1:{}", ports[0])],
        WhenUnavailable::Reject,
    );
    cfg.redis.redis_cluster = true;
    // This test is about routing, not speed: a loaded CI machine may take longer than the
    // usual 300 ms to open a connection to a node the client meets for the first time.
    cfg.redis.timeout = Duration::from_secs(3);
    // The cluster takes a moment to agree on its slots: every node must say so, not only the
    // one the store asks (a node still converging answers CLUSTERDOWN).
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in &ports {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli (Debian package redis-tools)");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {p} never reached cluster_state:ok"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let store = SharedStore::start(&cfg, dir.path()).unwrap().unwrap();
    loop {
        if let Ok((role, _)) = store.ping().await {
            if role == "cluster (state ok)" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the cluster never became ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Keys on every node: each nonce spent once, each user's bucket its own.
    for i in 0..30u8 {
        let nonce = [i; 24];
        assert_eq!(
            store.spend_nonce(&nonce, Duration::from_secs(5)).await,
            Ok(true)
        );
        assert_eq!(
            store.spend_nonce(&nonce, Duration::from_secs(5)).await,
            Ok(false)
        );
    }
    let q = RateLimit {
        count: 1,
        per: Duration::from_secs(60),
    };
    for user in ["ann", "ben", "cid", "dot", "eve"] {
        assert_eq!(store.allow("codes_per_user", user, q).await, Ok(true));
        assert_eq!(store.allow("codes_per_user", user, q).await, Ok(false));
    }
}
