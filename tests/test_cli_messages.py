"""What an administrator reads on day one: a missing config file says so and what to do; a bad
duration names the key and line and shows a valid value; TLS failures with VIP name their
actual cause (VIP refused our certificate, we do not trust VIP's, a wrong host name, no
certificate at all); no Rust debug output or doubled prefixes; no colour codes when stderr is
not a terminal; `vip-sim gen-certs` labels what it wrote; check-config warns about a code
throttle that reaches VIP's lockout."""

import json
import os
import re
import subprocess
import time

import pytest

import harness
from conftest import NAS_SECRET, SIM_POLICY, USERS, bridge_toml, sim_users_toml

ESC = "\x1b["
MISSING_HINT = ("no such file; the vip-bridge package installs an example as "
                "/etc/vip-bridge/vip-bridge.toml")


def run(binary, *args, env=None, timeout=30):
    """Runs a binary with stdout and stderr to pipes (never a terminal)."""
    e = dict(os.environ)
    e.pop("NO_COLOR", None)
    e.pop("CLICOLOR_FORCE", None)
    if env:
        e.update(env)
    p = subprocess.run([harness.find_binary(binary)] + list(args), capture_output=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, env=e)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def vb(*args, **kw):
    return run("vip-bridge", *args, **kw)


def no_debug_output(text):
    """No Rust debug formatting or doubled prefixes in what a person reads."""
    for bad in ("Some(", "None)", "VIP: VIP", "DnsName(", "Os {", "Kind(", "\\\"", "VIP client: VIP"):
        assert bad not in text, "%r in: %s" % (bad, text)


def plain(text):
    assert ESC not in text, "colour codes in output that is not a terminal: %r" % text[:500]


def write(directory, name, text):
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


class RawSim:
    """vip-sim with debug logging to a file (stderr not a terminal), on `listen`."""

    def __init__(self, workdir, certs, listen="127.0.0.1:0"):
        os.makedirs(workdir, exist_ok=True)
        path = write(workdir, "sim.toml",
                     harness.sim_toml(certs, sim_users_toml(), SIM_POLICY, listen=listen))
        env = dict(os.environ, RUST_LOG="debug")
        env.pop("NO_COLOR", None)
        self.proc = harness.Proc("vip-sim", [harness.find_binary("vip-sim"), "--config", path],
                                 workdir, env=env)
        deadline = time.time() + 20
        while not self.proc.stdout_lines:
            if not self.proc.alive() or time.time() > deadline:
                self.proc.stop()
                raise RuntimeError("vip-sim did not start:\n" + self.proc.log())
            time.sleep(0.05)
        self.listen = json.loads(self.proc.stdout_lines[0])["listen"]

    def url(self, service):
        return "https://%s/vipuserservices/%s_1_10" % (self.listen, service)

    def stop(self):
        self.proc.stop()


@pytest.fixture(scope="module")
def sim(workroot, certs):
    s = RawSim(os.path.join(workroot, "cli_messages"), certs)
    yield s
    s.stop()


# ---------------------------------------------------------------------------------------------
# 1. A missing configuration file


@pytest.mark.parametrize("args", [("check-config",), ("check-config", "--offline"), ("serve",),
                                  ("test-auth", "alice", "123456")])
def test_a_missing_config_file_says_so_and_what_to_do(tmp_path, args):
    missing = str(tmp_path / "nope.toml")
    rc, out, err = vb(args[0], "--config", missing, *args[1:])
    assert rc == 1, out + err
    assert err.startswith("vip-bridge: %s: %s" % (missing, MISSING_HINT)), err
    assert "`vip-bridge demo --dir DIR` writes a complete working one" in err, err
    assert "pass --config FILE" in err, err
    assert "os error" not in err and len(err.strip().splitlines()) == 1, err
    plain(out + err)


def test_the_default_path_from_the_environment_is_named(tmp_path):
    missing = str(tmp_path / "env.toml")
    rc, out, err = vb("check-config", env={"VIP_BRIDGE_CONFIG": missing})
    assert rc == 1 and err.startswith("vip-bridge: %s: no such file; " % missing), err


# ---------------------------------------------------------------------------------------------
# 2. A bad duration


@pytest.mark.parametrize("text,key,line,leaf", [
    ('[vip]\ntimeout = 5\n', "vip.timeout", 2, "timeout"),
    ('[vip]\n# a comment\ntimeout = "5 secs please"\n', "vip.timeout", 3, "timeout"),
    ('[engine]\nstate_ttl = "3"\n', "engine.state_ttl", 2, "state_ttl"),
    ('[engine.throttle]\ncodes_per_user = { count = 3, per = 600 }\n',
     "engine.throttle.codes_per_user.per", 2, "per"),
    ('[radius]\nshutdown_timeout = "ten seconds"\n', "radius.shutdown_timeout", 2,
     "shutdown_timeout"),
])
def test_a_bad_duration_names_key_and_line_and_shows_valid_values(tmp_path, text, key, line,
                                                                 leaf):
    cfg = write(tmp_path, "d.toml", text)
    for args in (("check-config", "--offline"), ("serve",)):
        rc, out, err = vb(*args, "--config", cfg)
        assert rc == 1, (args, out + err)
        assert err.startswith("vip-bridge: %s: %s (line %d): " % (cfg, key, line)), err
        assert "expected a duration" in err, err
        assert 'e.g. %s = "5s", "250ms", "2m"' % leaf in err, err
        assert len(err.strip().splitlines()) == 1, err
        no_debug_output(err)
        plain(out + err)


# ---------------------------------------------------------------------------------------------
# 3. TLS failures name their cause


def check_online(tmp_path, text):
    rc, out, err = vb("check-config", "--config", write(tmp_path, "tls.toml", text))
    assert rc == 1, out + err
    no_debug_output(err)
    plain(out + err)
    return err


def sim_toml_for(sim, certs):
    return bridge_toml(sim, certs)


def test_vip_refusing_our_client_certificate_is_named(sim, certs, tmp_path):
    # A client certificate from another CA (the same name as the simulator's, another key).
    other = harness.gen_certs(str(tmp_path / "other"))
    text = sim_toml_for(sim, certs).replace(certs["client.pem"], other["client.pem"]) \
        .replace(certs["client.key"], other["client.key"])
    err = check_online(tmp_path, text)
    assert "VIP TLS handshake with https://%s/" % sim.listen in err, err
    assert re.search(r"VIP refused our client certificate \([a-z_]+\): revoked, expired, or not "
                     r"the one issued for this account in VIP Manager\? check vip.cert_file / "
                     r"vip.pkcs12_file", err), err
    assert "ca_file" not in err, err


def test_no_client_certificate_is_named(sim, certs, tmp_path):
    text = "\n".join(l for l in sim_toml_for(sim, certs).splitlines()
                     if not l.startswith(("cert_file", "key_file")))
    err = check_online(tmp_path, text)
    assert "VIP asked for a client certificate and none is configured (certificate_required): " \
           "set vip.cert_file + vip.key_file, or vip.pkcs12_file" in err, err


def test_an_untrusted_server_certificate_points_at_ca_file(sim, certs, tmp_path):
    other = harness.gen_certs(str(tmp_path / "other"))
    text = sim_toml_for(sim, certs).replace(certs["ca.pem"], other["ca.pem"])
    err = check_online(tmp_path, text)
    assert "the server's certificate is not trusted (" in err, err
    assert "check vip.ca_file (%s)" % other["ca.pem"] in err, err
    assert "client certificate" not in err, err


def test_a_host_name_the_certificate_does_not_cover(workroot, certs, tmp_path):
    # The simulator's certificate is for localhost, 127.0.0.1 and ::1; 127.0.0.2 is loopback
    # too, but not a name in it.
    s = RawSim(os.path.join(workroot, "cli_messages_name"), certs, listen="127.0.0.2:0")
    try:
        err = check_online(tmp_path, bridge_toml(s, certs))
        assert "the server's certificate is not valid for the name 127.0.0.2 (it is for " in err, \
            err
        assert "check the host in vip.auth_url / vip.query_url / vip.management_url" in err, err
    finally:
        s.stop()


def test_a_missing_or_mismatched_client_key_is_named_before_connecting(sim, certs, tmp_path):
    text = sim_toml_for(sim, certs).replace(certs["client.key"], str(tmp_path / "gone.key"))
    rc, out, err = vb("check-config", "--offline", "--config", write(tmp_path, "k.toml", text))
    assert rc == 1, out + err
    assert "cannot read vip.key_file: no such file (%s)" % (tmp_path / "gone.key") in err, err
    other = harness.gen_certs(str(tmp_path / "other"))
    text = sim_toml_for(sim, certs).replace(certs["client.key"], other["client.key"])
    rc, out, err = vb("check-config", "--offline", "--config", write(tmp_path, "m.toml", text))
    assert rc == 1, out + err
    assert "the client certificate and private key do not match: vip.key_file is not the key " \
           "of vip.cert_file" in err, err
    no_debug_output(err)


# ---------------------------------------------------------------------------------------------
# 4. Errors are one line of words, never a Rust Debug dump


def test_vip_sim_errors_are_one_line_even_with_rust_backtrace(tmp_path):
    for args in ((), ("--config", str(tmp_path / "nope.toml"))):
        rc, out, err = run("vip-sim", *args, env={"RUST_BACKTRACE": "1"})
        assert rc == 1, out + err
        assert err.startswith("vip-sim: ") and len(err.strip().splitlines()) == 1, err
        assert "Stack backtrace" not in err and "Caused by" not in err, err
        no_debug_output(err)
    rc, out, err = run("vip-sim", "--config", str(tmp_path / "nope.toml"))
    assert str(tmp_path / "nope.toml") in err, err


# ---------------------------------------------------------------------------------------------
# 5. No colour codes when stderr is not a terminal


def check_cfg(sim, certs, tmp_path):
    return write(tmp_path, "ok.toml", bridge_toml(sim, certs))


def test_no_colour_codes_in_serve_logs_clap_errors_or_the_simulators_log(sim, certs, tmp_path):
    # `serve` against a VIP that is down: it starts and logs VIP's health, to a pipe.
    text = bridge_toml(sim, certs).replace(sim.listen, "127.0.0.1:1") \
        .replace('level = "info"', 'level = "debug"')
    workdir = str(tmp_path / "serve")
    os.makedirs(workdir)
    bridge = harness.Bridge(workdir, text, env={"RUST_LOG": "debug"})
    try:
        # A login, so that the bridge calls VIP and logs the failure.
        u = harness.Udp("127.0.0.1")
        try:
            reply = u.exchange(harness.access_request(NAS_SECRET.encode(), "alice", "123456")[1],
                               bridge.addr(), timeout=15)
            assert reply is not None, bridge.log()[-2000:]
        finally:
            u.close()
    finally:
        bridge.stop()
    log = bridge.log()
    assert "VIP" in log and "127.0.0.1:1" in log, log[-2000:]
    plain(log)
    # test-auth logs warnings through tracing (the State key is random here) to stderr.
    rc, out, err = vb("test-auth", "--config", check_cfg(sim, certs, tmp_path), "alice",
                      harness.wrong_code(USERS["alice"]))
    assert rc == 1 and "REJECT" in out, out + err
    assert "WARN" in err and "state_key_file" in err, err
    plain(out + err)
    # clap's own errors and help.
    rc, out, err = vb("--no-such-flag")
    assert rc != 0 and "--no-such-flag" in err, err
    plain(out + err)
    rc, out, err = vb("check-config", "--help")
    assert rc == 0 and "Usage:" in out
    plain(out + err)
    # The simulator's debug log (stderr to a file), with calls in it.
    rc, out, err = vb("check-config", "--config", check_cfg(sim, certs, tmp_path))
    assert rc == 0, out + err
    plain(out + err)
    sim_log = sim.proc.log()
    assert "DEBUG" in sim_log or "INFO" in sim_log, sim_log[-2000:]
    plain(sim_log)


# ---------------------------------------------------------------------------------------------
# 6. vip-sim gen-certs labels its output


def test_gen_certs_lists_each_file_what_it_is_and_its_config_key(tmp_path):
    d = str(tmp_path / "pki")
    rc, out, err = run("vip-sim", "gen-certs", d)
    assert rc == 0, err
    # stdout stays the PKCS#12 password alone (scripts read it).
    with open(os.path.join(d, "client.p12.password")) as f:
        assert out.strip() == f.read().strip()
    assert out.strip() not in err, "the password is printed once, on stdout"
    lines = err.splitlines()
    assert lines[0] == "wrote a test PKI to %s:" % d, err
    for name, key in [("ca.pem", "vip.ca_file"), ("ca.pem", "tls.client_ca"),
                      ("server.pem", "tls.cert"), ("server.key", "tls.key"),
                      ("client.pem", "vip.cert_file"), ("client.key", "vip.key_file"),
                      ("client.p12", "vip.pkcs12_file"),
                      ("client.p12.password", "vip.pkcs12_password_file")]:
        at = [i for i, l in enumerate(lines) if l.strip().startswith(name + " ")]
        assert at, (name, err)
        assert key in lines[at[0] + 1], (name, key, err)
        assert os.path.isfile(os.path.join(d, name))
    m = re.search(r"^CA SHA-256 fingerprint: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$", err, re.M)
    assert m, err
    assert re.search(r"^valid from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d \(UTC\)$", err, re.M), err
    try:
        fp = subprocess.run(["openssl", "x509", "-in", os.path.join(d, "ca.pem"), "-noout",
                             "-fingerprint", "-sha256"], capture_output=True, text=True,
                            timeout=30)
    except FileNotFoundError:
        fp = None
    if fp is None:
        assert not os.environ.get("CI"), "openssl is needed to check the fingerprint"
    else:
        assert fp.stdout.strip().split("=", 1)[1] == m.group(1), fp.stdout
    plain(out + err)


# ---------------------------------------------------------------------------------------------
# 7. A code throttle at VIP's lockout count is warned about


def test_a_code_throttle_reaching_vips_lockout_is_warned_about(sim, certs, tmp_path):
    base = bridge_toml(sim, certs)
    for count, warned in ((10, True), (25, True), (9, False)):
        text = base + "\n[engine.throttle]\ncodes_per_user = { count = %d, per = \"5m\" }\n" % count
        rc, out, err = vb("check-config", "--offline", "--config",
                          write(tmp_path, "t%d.toml" % count, text))
        assert rc == 0, out + err
        line = ("warning: engine.throttle.codes_per_user.count = %d: VIP locks a credential "
                "after 10 consecutive bad codes by default: a stranger could lock users out"
                % count)
        assert (line in err) == warned, (count, err)
    # The default (5 per 10 minutes) is not warned about.
    rc, out, err = vb("check-config", "--offline", "--config", write(tmp_path, "d.toml", base))
    assert rc == 0 and "codes_per_user" not in err, out + err
