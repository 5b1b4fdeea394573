"""`vip-bridge check-config` and `test-auth` against a running vip-sim: online it reports VIP's
clock over mutual TLS; it fails when VIP is unreachable or refuses our certificate; offline or
not it refuses what `serve` refuses (missing certificate or State key, a configuration serving
nothing), with the same message; it warns about world-readable secret files; and the packaged
example names the placeholder to fill in, then passes --offline."""

import os
import subprocess

import pytest

import harness
from conftest import SIM_POLICY, USERS, bridge_toml, sim_users_toml

REPO = harness.REPO


@pytest.fixture(scope="module")
def sim(workroot, certs):
    workdir = os.path.join(workroot, "cli")
    os.makedirs(workdir, exist_ok=True)
    s = harness.Sim(workdir, harness.sim_toml(certs, sim_users_toml(), SIM_POLICY))
    yield s, workdir
    s.stop()


def vb(*args, timeout=30):
    p = subprocess.run([harness.find_binary("vip-bridge")] + list(args), capture_output=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def write(workdir, name, text, mode=0o600):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def test_online_check_reports_the_clock(sim, certs):
    s, workdir = sim
    cfg = write(workdir, "ok.toml", bridge_toml(s, certs))
    before = s.calls("getServerTime")
    rc, out, err = vb("check-config", "--config", cfg)
    assert rc == 0, out + err
    assert "OK (3 RADIUS client(s)" in out, out
    assert "getServerTime OK" in out and "requestId vb" in out, out
    assert s.calls("getServerTime") == before + 1
    assert "testing123" not in out + err, "a secret was printed"


def test_unreachable_or_refused_vip_fails(sim, certs, tmp_path):
    s, workdir = sim
    text = bridge_toml(s, certs).replace(s.listen, "127.0.0.1:1")
    rc, out, err = vb("check-config", "--config", write(workdir, "down.toml", text))
    assert rc == 1 and "unreachable" in err, out + err
    # A client certificate the simulator's CA did not sign: TLS refused.
    other = harness.gen_certs(str(tmp_path))
    text = bridge_toml(s, certs).replace(certs["client.pem"], other["client.pem"]) \
        .replace(certs["client.key"], other["client.key"])
    rc, out, err = vb("check-config", "--config", write(workdir, "refused.toml", text))
    assert rc == 1 and "refused" in err, out + err


def test_offline_refuses_what_serve_refuses_and_warns_about_readable_files(sim, certs, tmp_path):
    s, workdir = sim
    secret = write(str(tmp_path), "nas.secret", "s3cret\n", mode=0o644)
    text = bridge_toml(s, certs).replace('secret = "testing123"', 'secret_file = "%s"' % secret)
    cfg = write(workdir, "offline.toml", text, mode=0o644)
    rc, out, err = vb("check-config", "--offline", "--config", cfg)
    assert rc == 0, out + err
    assert "secret_file" in err and "readable by every user" in err, err
    assert "%s: mode 0644" % cfg in err, err
    assert "s3cret" not in out + err
    # A missing key file is what `serve` refuses: so does check-config, offline too (the
    # packaged unit runs it before every start), with the same message.
    missing = write(workdir, "missing.toml",
                    text.replace(certs["client.key"], "/nonexistent/client.key"))
    rc, out, err = vb("check-config", "--offline", "--config", missing)
    assert rc == 1 and "/nonexistent/client.key" in err, out + err
    rc2, out2, err2 = vb("serve", "--config", missing)
    assert rc2 == 1 and err2.strip().splitlines()[-1] == err.strip().splitlines()[-1], (err, err2)


@pytest.mark.parametrize("what,edit,expect", [
    ("serves nothing", lambda t: t.split("[radius]")[0], "serves nothing"),
    ("malformed State key", None, "64 hexadecimal characters"),
    ("missing State key", None, "cannot read the State key"),
])
def test_check_config_and_serve_refuse_alike(sim, certs, tmp_path, what, edit, expect):
    s, workdir = sim
    text = bridge_toml(s, certs)
    if what == "malformed State key":
        key = write(str(tmp_path), "state.key", "not-hex\n")
        text = text.replace("[engine]\n", '[engine]\nstate_key_file = "%s"\n' % key, 1)
    elif what == "missing State key":
        text = text.replace("[engine]\n", '[engine]\nstate_key_file = "%s"\n'
                            % os.path.join(str(tmp_path), "absent.key"), 1)
    else:
        text = edit(text)
    cfg = write(str(tmp_path), "refused.toml", text)
    rc, out, err = vb("check-config", "--offline", "--config", cfg)
    assert rc == 1 and expect in err, (what, out + err)
    rc2, _, err2 = vb("serve", "--config", cfg)
    assert rc2 == 1 and expect in err2, (what, err2)


def test_short_client_secrets_are_warned_about_by_name(sim, certs):
    # "testing123" and "testing666" are 10 characters; "pam-legacy-secret" is 17.
    s, workdir = sim
    rc, out, err = vb("check-config", "--offline", "--config",
                      write(workdir, "short.toml", bridge_toml(s, certs)))
    assert rc == 0, out + err
    short = [l for l in err.splitlines() if "shorter than 16 characters" in l]
    assert len(short) == 2, err
    assert 'radius.clients[0].secret (client "nas")' in short[0], err
    assert 'radius.clients[1].secret (client "nas6")' in short[1], err
    assert "pam-legacy" not in "\n".join(short), err
    for secret in ("testing123", "testing666", "pam-legacy-secret"):
        assert secret not in out + err, "a secret was printed"


@pytest.mark.parametrize("section,line,key", [
    ("vip", 'timeout = "{}"', "vip.timeout"),
    ("engine", 'state_ttl = "{}"', "engine.state_ttl"),
    ("engine.throttle", 'push_per_user = {{ count = 3, per = "{}" }}',
     "engine.throttle.push_per_user.per"),
    ("radius", 'shutdown_timeout = "{}"', "radius.shutdown_timeout"),
    ("pam", 'connection_timeout = "{}"', "pam.connection_timeout"),
])
def test_absurd_durations_are_config_errors(tmp_path, section, line, key):
    # 10^9 years parses, but would overflow Instant arithmetic once running.
    cfg = write(str(tmp_path), "absurd.toml",
                "[%s]\n%s\n" % (section, line.format("1000000000y")))
    for args in (("check-config", "--offline"), ("serve",)):
        rc, out, err = vb(*args, "--config", cfg)
        assert rc == 1, (args, out + err)
        assert "panicked" not in err, err
        assert err.startswith("vip-bridge: %s: %s: " % (cfg, key)), err
        assert "must be between" in err, err


def test_production_without_certificate_is_refused(tmp_path):
    cfg = write(str(tmp_path), "prod.toml", "[engine]\nstate_ttl = \"3m\"\n[pam]\n")
    for args in (("check-config", "--offline"), ("serve",)):
        rc, out, err = vb(*args, "--config", cfg)
        assert rc == 1 and "requires a client certificate" in err, (args, out + err)


def test_packaged_example_says_what_to_fill_in_then_passes(certs, tmp_path):
    """The packaged configuration serves RADIUS to one NAS whose address is a placeholder:
    check-config names it; filled in (and with the files the package and the admin provide,
    here in a temporary directory instead of /etc/vip-bridge), it passes offline."""
    with open(os.path.join(REPO, "packaging", "vip-bridge.toml")) as f:
        packaged = f.read()
    d = str(tmp_path)
    as_shipped = write(d, "shipped.toml", packaged)
    rc, out, err = vb("check-config", "--offline", "--config", as_shipped)
    assert rc == 1, out + err
    assert "radius.clients[0].address" in err and "placeholder" in err, err
    local = packaged.replace("/etc/vip-bridge/", d + "/")
    filled = local.replace('address = "192.0.2.1"', 'address = "10.1.2.3"')
    cfg = write(d, "filled.toml", filled)
    # Without the generated secret and State key, or the certificate: each named in turn.
    rc, out, err = vb("check-config", "--offline", "--config", cfg)
    assert rc == 1 and "vpn.secret" in err, out + err
    write(d, "vpn.secret", "a-generated-secret-of-32-chars!!\n")
    rc, out, err = vb("check-config", "--offline", "--config", cfg)
    assert rc == 1 and "state.key" in err, out + err
    write(d, "state.key", "ab" * 32 + "\n")
    rc, out, err = vb("check-config", "--offline", "--config", cfg)
    assert rc == 1 and "vip-cert.pem" in err, out + err
    write(d, "vip-cert.pem", open(certs["client.pem"]).read())
    write(d, "vip-key.pem", open(certs["client.key"]).read())
    rc, out, err = vb("check-config", "--offline", "--config", cfg)
    assert rc == 0, out + err
    assert "OK (1 RADIUS client(s)" in out, out


def test_test_auth_code_and_challenge(sim, certs):
    s, workdir = sim
    cfg = write(workdir, "ta.toml", bridge_toml(s, certs))
    rc, out, err = vb("test-auth", "--config", cfg, "frank",
                      harness.fresh_totp(USERS["frank"], min_left=6))
    assert rc == 0, out + err
    assert "ACCEPT" in out and "requestIds vb" in out, out
    rc, out, err = vb("test-auth", "--config", cfg, "frank", harness.wrong_code(USERS["frank"]))
    assert rc == 1 and "REJECT" in out and "bad_code" in out, out + err
    # An SMS challenge with stdin not a terminal: the prompt is printed, then it exits 2.
    rc, out, err = vb("test-auth", "--config", cfg, "erin", "--sms")
    assert rc == 2 and "CHALLENGE" in out and "not a terminal" in out, out + err


def test_test_auth_push_really_pushes(sim, certs):
    # The README's examples: --push sends a push, also under a policy whose first round is the
    # factor menu (mode = "challenge"): test-auth then picks push from the menu.
    s, workdir = sim
    cfg = write(workdir, "push.toml", bridge_toml(s, certs))
    for policy in ("default", "menu"):
        before = s.calls("authenticateUserWithPush")
        rc, out, err = vb("test-auth", "--config", cfg, "frank", "--push", "--policy", policy)
        assert rc == 0 and "ACCEPT" in out and "factor push" in out, (policy, out + err)
        assert s.calls("authenticateUserWithPush") == before + 1, policy
        assert ("answering the menu" in out) == (policy == "menu"), out


def test_help_version_and_man():
    rc, out, _ = vb("--version")
    assert rc == 0 and out.startswith("vip-bridge ")
    for sub in ("serve", "check-config", "test-auth", "demo"):
        rc, out, _ = vb(sub, "--help")
        assert rc == 0 and "Usage:" in out, sub
    rc, out, _ = vb("man")
    assert rc == 0 and ".TH vip-bridge" in out, out[:200]
    with open(os.path.join(REPO, "packaging", "man", "vip-bridge.1")) as f:
        assert f.read() == out, "packaging/man is stale: vip-bridge man packaging/man"


def test_check_otp_for_logins_is_warned_about(sim, certs):
    # otp_operation = "check_otp" still works, but check-config (and `serve` at start-up) say
    # exactly what it gives up.
    s, workdir = sim
    text = bridge_toml(s, certs).replace(
        '[policies.menu]\nmode = "challenge"\n',
        '[policies.menu]\nmode = "challenge"\n\n[policies.legacy]\notp_operation = "check_otp"\n')
    assert "[policies.legacy]" in text
    rc, out, err = vb("check-config", "--offline", "--config", write(workdir, "legacy.toml", text))
    assert rc == 0, out + err
    both = out + err
    assert "policies.legacy" in both and "check_otp" in both, both
    assert "locked" in both and "temporary security codes" in both, both
    # The default (authenticateUser) draws no such warning.
    rc, out, err = vb("check-config", "--offline", "--config",
                      write(workdir, "modern.toml", bridge_toml(s, certs)))
    assert rc == 0 and "check_otp" not in out + err, out + err
