//! `vip-bridge demo`: a complete bridge in one process against an in-process VIP simulator,
//! on loopback, with deliberately PUBLIC demo secrets (TOTP secrets, RADIUS secret). Prints
//! what to paste to try it: radtest, pamtester (libpam-wrapper), the current code, the
//! otpauth:// URIs for an authenticator app.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use vip_core::engine::{Authenticate, Engine};
use vip_core::metrics::Metrics;

use crate::cli::DemoArgs;
use crate::config;
use crate::daemon;
use crate::error::{Error, Result};

/// The RADIUS secret of the demo client (public: it is the demo).
pub const DEMO_RADIUS_SECRET: &str = "demo-secret";

/// Demo users and their TOTP secrets. PUBLIC, fixed, for the demo only: never use them for
/// anything real.
pub const DEMO_USERS: [(&str, &str, &str); 3] = [
    (
        "alice",
        "JBSWY3DPEHPK3PXPALICE234",
        "code, push (approves after 2 s), sms",
    ),
    ("bob", "JBSWY3DPEHPK3PXPBOBBOB23", "code, push (denied)"),
    (
        "carol",
        "JBSWY3DPEHPK3PXPCAROL234",
        "code, push with number challenge (approves after 5 s)",
    ),
];

/// The demo TOTP secret of `user`.
pub fn secret_of(user: &str) -> Result<&'static str> {
    DEMO_USERS
        .iter()
        .find(|(u, _, _)| u.eq_ignore_ascii_case(user))
        .map(|(_, s, _)| *s)
        .ok_or_else(|| {
            Error::Demo(format!(
                "no demo user {user:?} (there are alice, bob and carol)"
            ))
        })
}

/// `vip-bridge demo code USER`: the user's current code (RFC 6238, SHA-1, 30 s, 6 digits).
pub fn code(user: &str) -> Result<String> {
    let secret = secret_of(user)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(vip_sim::totp::code(secret, now, 6))
}

fn otpauth_uri(user: &str, secret: &str) -> String {
    format!("otpauth://totp/vip-bridge-demo:{user}?secret={secret}&issuer=vip-bridge-demo&algorithm=SHA1&digits=6&period=30")
}

fn sim_toml(certs: &vip_sim::certs::CertPaths) -> String {
    let mut s = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\n[policy]\nnumber_challenge = true\n\n",
        certs.server_cert, certs.server_key, certs.ca_cert
    );
    for (i, (user, secret, _)) in DEMO_USERS.iter().enumerate() {
        let push = match *user {
            "alice" => "{ action = \"approve\", delay_ms = 2000 }",
            "bob" => "{ action = \"deny\", delay_ms = 1000 }",
            _ => "{ action = \"approve\", delay_ms = 5000, number = 42 }",
        };
        let phones = if *user == "alice" {
            "sms_phones = [\"15555550100\"]\n"
        } else {
            ""
        };
        s.push_str(&format!(
            "[[users]]\nid = \"{user}\"\n{phones}push = {push}\n\n[[users.credentials]]\n\
             id = \"VSMT{:08}\"\ntotp_secret = \"{secret}\"\npush = true\nfriendly_name = \"{user}'s phone\"\n\n",
            i + 1
        ));
    }
    s
}

fn bridge_toml(base_url: &str, certs: &vip_sim::certs::CertPaths, port: u16, dir: &Path) -> String {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    format!(
        r#"# Written by `vip-bridge demo`: a working configuration against the built-in simulator.
[vip]
auth_url = "{base_url}/vipuserservices/AuthenticationService_1_10"
query_url = "{base_url}/vipuserservices/QueryService_1_10"
management_url = "{base_url}/vipuserservices/ManagementService_1_10"
cert_file = {cert:?}
key_file = {key:?}
ca_file = {ca:?}
timeout = "5s"
request_id_prefix = "demo"

[engine]
poll_interval = "1s"

# RADIUS (radtest, VPNs): blocking push, answered within radtest's patience.
[policies.default]
push_timeout = "20s"

# PAM (pamtester, ssh): a menu, push-then-Enter with the number challenge shown.
[policies.pam]
mode = "challenge"
push_mode = "challenge"
number_challenge = true
push_timeout = "60s"

[radius]
listen = ["127.0.0.1:{port}"]

[[radius.clients]]
name = "demo"
address = "127.0.0.0/8"
secret = "{secret}"
# Only so that plain radtest works. Keep it true (the default) for real NASes.
require_message_authenticator = false

[pam]
socket = {sock:?}
allowed_uids = [{uid}]
default_policy = "pam"

[metrics]
listen = "127.0.0.1:0"

[log]
level = "warn,vip_bridge::login=info"
"#,
        cert = certs.client_cert,
        key = certs.client_key,
        ca = certs.ca_cert,
        secret = DEMO_RADIUS_SECRET,
        sock = dir.join("pam.sock"),
    )
}

/// Where pam_vip.so is: installed, or next to this binary (a cargo build).
fn pam_module() -> Option<PathBuf> {
    let mut c = vec![PathBuf::from(
        "/usr/lib/x86_64-linux-gnu/security/pam_vip.so",
    )];
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        c.insert(0, d.join("libpam_vip.so"));
    }
    c.into_iter().find(|p| p.is_file())
}

fn pam_wrapper() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so",
        "/usr/lib/libpam_wrapper.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

fn local_user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .map(|t| t.lines().any(|l| l.split(':').next() == Some(name)))
        .unwrap_or(false)
}

/// `vip-bridge demo`: runs until SIGINT / SIGTERM.
pub async fn run(args: &DemoArgs) -> Result<()> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| Error::Io { what, source }
    };
    // The directory: given (kept), or temporary (removed at the end).
    let (dir, _temp) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(io("creating the demo directory"))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("vip-bridge-demo-")
                .tempdir()
                .map_err(io("creating a temporary directory"))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let certs = vip_sim::certs::generate(&dir.join("certs"))
        .map_err(|e| Error::Demo(format!("generating certificates: {e}")))?;
    let sim_cfg = vip_sim::SimConfig::from_toml_str(&sim_toml(&certs))
        .map_err(|e| Error::Demo(format!("simulator configuration: {e}")))?;
    let sim = vip_sim::Sim::start(sim_cfg)
        .await
        .map_err(|e| Error::Demo(format!("starting the simulator: {e}")))?;

    let config_path = dir.join("vip-bridge.toml");
    std::fs::write(
        &config_path,
        bridge_toml(&sim.base_url(), &certs, args.port, &dir),
    )
    .map_err(io("writing the demo configuration"))?;
    let cfg = config::load(&config_path)?;
    daemon::init_logging(&cfg.log)?;
    let mut registry = daemon::new_registry();
    let engine = Engine::with_metrics(&cfg.core, Metrics::new(&mut registry))?;
    let auth: Arc<dyn Authenticate> = engine;
    let shutdown = Arc::new(watch::channel(false).0);
    daemon::spawn_signal_handler(shutdown.clone())?;
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let mut task = tokio::spawn(daemon::serve(
        cfg,
        auth,
        registry,
        Some(ready.clone()),
        shutdown.clone(),
    ));

    // Wait for the ready file (or an early failure, e.g. the port is taken).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let ready_doc = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                break v;
            }
        }
        if task.is_finished() || tokio::time::Instant::now() > deadline {
            shutdown.send_replace(true);
            let r = (&mut task).await;
            sim.shutdown().await;
            return match r {
                Ok(Err(e)) => Err(e),
                _ => Err(Error::Demo("the bridge did not start".into())),
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let radius = ready_doc["radius"][0].as_str().unwrap_or("").to_owned();
    let port = radius.rsplit(':').next().unwrap_or("").to_owned();
    let metrics = ready_doc["metrics"].as_str().unwrap_or("").to_owned();
    print_instructions(&dir, &radius, &port, &metrics);

    let result = match task.await {
        Ok(r) => r,
        Err(e) => Err(Error::Demo(format!("the bridge task failed: {e}"))),
    };
    sim.shutdown().await;
    println!("vip-bridge demo stopped.");
    result
}

fn print_instructions(dir: &Path, radius: &str, port: &str, metrics: &str) {
    let exe = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "vip-bridge".into());
    let sock = dir.join("pam.sock");
    // A machine-readable line first (tests and scripts read it).
    println!(
        "VIP_BRIDGE_DEMO {}",
        serde_json::json!({
            "radius": radius,
            "pam": sock.display().to_string(),
            "metrics": metrics,
            "dir": dir.display().to_string(),
            "radius_secret": DEMO_RADIUS_SECRET,
        })
    );
    println!();
    println!(
        "vip-bridge demo is running: a VIP simulator, the engine, RADIUS on {radius}, PAM on {}.",
        sock.display()
    );
    println!(
        "Configuration it runs with: {}",
        dir.join("vip-bridge.toml").display()
    );
    println!();
    println!(
        "Demo users (PUBLIC demo TOTP secrets: add them to an authenticator app if you like):"
    );
    for (user, secret, what) in DEMO_USERS {
        println!("  {user:<6} {what}");
        println!("         {}", otpauth_uri(user, secret));
    }
    println!();
    println!("The current code of a demo user (no need to reach this process):");
    println!("  {exe} demo code alice");
    println!();
    println!("RADIUS (freeradius-utils), in another terminal:");
    println!(
        "  radtest alice \"$({exe} demo code alice)\" 127.0.0.1:{port} 0 {DEMO_RADIUS_SECRET}"
    );
    println!(
        "  radtest alice push 127.0.0.1:{port} 0 {DEMO_RADIUS_SECRET}      # approved after 2 s"
    );
    println!("  radtest bob push 127.0.0.1:{port} 0 {DEMO_RADIUS_SECRET}        # denied");
    println!();
    match (pam_module(), pam_wrapper()) {
        (Some(module), Some(wrapper)) => {
            let pam_dir = dir.join("pam.d");
            let service = "vip-demo";
            let text = format!(
                "auth required {} socket={} timeout=60\naccount required pam_permit.so\nsession required pam_permit.so\n",
                module.display(),
                sock.display()
            );
            let wrote = std::fs::create_dir_all(&pam_dir)
                .and_then(|_| std::fs::write(pam_dir.join(service), text));
            if wrote.is_ok() {
                println!("PAM (pamtester + libpam-wrapper; /etc/pam.d is not touched): a menu, then push with a number");
                if !local_user_exists("carol") {
                    println!("  (pam_vip.so serves local accounts only; create one first:  sudo useradd -M -s /usr/sbin/nologin carol)");
                }
                println!(
                    "  LD_PRELOAD={} PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR={} pamtester -v {service} carol authenticate",
                    wrapper.display(),
                    pam_dir.display()
                );
                println!();
            }
        }
        _ => {
            println!("PAM: install pamtester and libpam-wrapper, and build pam_vip.so (cargo build -p pam_vip),");
            println!("     to get a pamtester line here.");
            println!();
        }
    }
    if !metrics.is_empty() {
        println!("Metrics:  curl -s http://{metrics}/metrics");
        println!();
    }
    println!("Ctrl-C stops it.");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_secrets_decode_and_give_codes() {
        for (user, secret, _) in DEMO_USERS {
            assert!(vip_sim::totp::decode_base32(secret).is_some(), "{user}");
            let c = code(user).unwrap();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        assert!(code("mallory").is_err());
        assert_eq!(secret_of("ALICE").unwrap(), DEMO_USERS[0].1);
    }

    #[test]
    fn the_generated_configuration_loads() {
        let dir = tempfile::tempdir().unwrap();
        let certs = vip_sim::certs::generate(&dir.path().join("certs")).unwrap();
        let path = dir.path().join("vb.toml");
        std::fs::write(
            &path,
            bridge_toml("https://127.0.0.1:1", &certs, 0, dir.path()),
        )
        .unwrap();
        let cfg = config::load(&path).unwrap();
        let r = cfg.radius.unwrap();
        let c = r.clients.lookup("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(c.secret(), DEMO_RADIUS_SECRET.as_bytes());
        assert!(!c.require_message_authenticator);
        assert!(cfg.pam.is_some() && cfg.metrics.is_some());
        vip_sim::SimConfig::from_toml_str(&sim_toml(&certs)).unwrap();
    }
}
