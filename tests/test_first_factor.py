"""The first factor end to end: vip-bridge checks the directory password (a real OpenLDAP slapd
over LDAPS from a throwaway CA, or a real FreeRADIUS as the upstream RADIUS server) before the
VIP code, driven by radclient and pyrad.

Clients (source address -> policy): 127.0.0.1 -> ldap (directory "corp": a dead first URL,
then slapd), 127.0.0.2 -> ldap_groups (required_groups = vpn-users), 127.0.0.3 -> ldap_dead
(both URLs dead, fail_mode = "open": the first factor still never opens), 127.0.0.4 -> nps
(FreeRADIUS), 127.0.0.5 -> nps_dead. The simulator's call counters prove that a refused
password never reaches VIP; slapd's own log proves what the lockout guard kept from it.
"""

import os
import re
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "directory"))

import harness  # noqa: E402
from harness import (access_request, code_name, fresh_totp, q, radclient,  # noqa: E402
                     raw_attributes, reply_messages, reply_state)

import freeradius as fr  # noqa: E402
import slapd as ldap  # noqa: E402

CI = os.environ.get("CI") == "true"
SECRET = "ff-nas-secret-0123456789"
SIM_USERS = ("alice", "bob", "carol", "erin", "zoe", "rich", "chal", "plain", "pat")
PINS = {"pat": "2468"}  # VIP PINs (mode = "pin_otp" in the README's second block)


def _totp_secret(user):
    import base64
    import hashlib

    return base64.b32encode(hashlib.sha1(("vip-bridge-ff-" + user).encode()).digest()).decode()


TOTP = {u: _totp_secret(u) for u in SIM_USERS}
VPN_USERS = "cn=vpn-users,ou=groups," + ldap.BASE_DN
SOURCES = {
    "ldap": "127.0.0.1",
    "ldap_groups": "127.0.0.2",
    "ldap_dead": "127.0.0.3",
    "nps": "127.0.0.4",
    "nps_dead": "127.0.0.5",
}


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI."""
    if ok:
        return
    if CI:
        pytest.fail("%s (CI=true: the first-factor tests must run)" % what)
    pytest.skip(what)


def sim_users():
    out = []
    for i, user in enumerate(SIM_USERS):
        out.append('[[users]]\nid = "%s"\n' % user)
        if user in PINS:
            out.append('pin = "%s"\n' % PINS[user])
        out.append('[[users.credentials]]\nid = "VSMT7%07d"\ntotp_secret = "%s"\npush = true\n'
                   % (i + 1, TOTP[user]))
        out.append('[users.push]\naction = "approve"\ndelay_ms = 200\n\n')
    return "".join(out)


def bridge_toml(sim, certs, d, upstream):
    dead = [ldap.free_port() for _ in range(3)]
    ldap_common = """ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password = "{bind_pw}"
base_dn = "{base}"
nested_groups = "recursive"
""".format(ca=d.ca_file, bind_dn=d.bind_dn, bind_pw=d.bind_password, base=d.base_dn)
    clients = "".join(
        '[[radius.clients]]\nname = "{p}"\naddress = "{a}"\nsecret = "{s}"\npolicy = "{p}"\n\n'
        .format(p=p, a=a, s=SECRET) for p, a in SOURCES.items())
    return harness.vip_toml(sim, certs) + """
[engine]
poll_interval = "500ms"

[engine.throttle]
password_failures_per_user = {{ count = 3, per = "10m" }}

[directories.corp]
kind = "ldap"
urls = ["ldaps://127.0.0.1:{dead0}", "{ldaps}"]
{ldap_common}
[directories.dead]
kind = "ldap"
urls = ["ldaps://127.0.0.1:{dead1}", "ldaps://127.0.0.1:{dead2}"]
timeout = "2s"
{ldap_common}
[directories.nps]
kind = "radius"
servers = ["{upstream}"]
secret = "{upstream_secret}"

[directories.nps_dead]
kind = "radius"
servers = ["127.0.0.1:{dead_udp}"]
secret = "nobody-listens-here"
timeout = "500ms"
retries = 0

[policies.ldap]
first_factor = "ldap"
directory = "corp"
user_name = {{ strip_domain = true, strip_realm = true, lowercase = true }}

[policies.ldap_groups]
first_factor = "ldap"
directory = "corp"
required_groups = ["{vpn_users}"]

[policies.ldap_dead]
first_factor = "ldap"
directory = "dead"
fail_mode = "open"

[policies.nps]
first_factor = "radius"
directory = "nps"

[policies.nps_dead]
first_factor = "radius"
directory = "nps_dead"

[radius]
listen = ["127.0.0.1:0"]
accounting_listen = []
max_in_flight = 64
shutdown_timeout = "5s"

{clients}
[metrics]
listen = "127.0.0.1:0"

[log]
format = "text"
level = "info"
""".format(
        dead0=dead[0], dead1=dead[1], dead2=dead[2], ldaps=d.ldaps_url,
        ldap_common=ldap_common, upstream=upstream.addr, upstream_secret=upstream.secret,
        dead_udp=fr.free_udp_port(), vpn_users=VPN_USERS, clients=clients)


class FF:
    def __init__(self, sim, bridge, slapd, upstream):
        self.sim, self.bridge, self.slapd, self.upstream = sim, bridge, slapd, upstream

    @property
    def addr(self):
        return self.bridge.addr()

    def vip_calls(self):
        return sum(self.sim.calls(op) for op in (
            "authenticateUser", "checkOtp", "authenticateUserWithPush", "getUserInfo",
            "sendOtp"))

    def ask(self, udp, policy, user, password, state=None, timeout=15):
        s = udp(SOURCES[policy])
        _, raw = access_request(SECRET.encode(), user, password, state=state)
        return s.exchange(raw, self.addr, timeout=timeout)

    def binds(self, login):
        """Simple binds as `login`'s entry so far, from slapd's -d stats log (one request line
        per bind, `BIND dn="..." method=128`; a successful one adds a `mech=SIMPLE` line)."""
        with open(self.slapd.log_file, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return len(re.findall(r'BIND dn="uid=%s,[^"]*" method=128' % re.escape(login), text))


@pytest.fixture(scope="module")
def ff(workroot, certs):
    need(ldap.available() is None, "slapd: %s" % ldap.available())
    need(shutil.which("freeradius"), "freeradius is not installed")
    need(shutil.which("radclient"), "radclient (freeradius-utils) is not installed")
    workdir = os.path.join(workroot, "first_factor")
    os.makedirs(workdir, exist_ok=True)
    slapd = upstream = sim = bridge = None
    try:
        slapd = ldap.Slapd(os.path.join(workdir, "slapd"))
        upstream = fr.UpstreamFreeRadius(os.path.join(workdir, "upstream"))
        sim = harness.Sim(workdir, harness.sim_toml(certs, sim_users(),
                                                    "number_challenge = false\n"))
        bridge = harness.Bridge(workdir, bridge_toml(sim, certs, slapd, upstream))
        yield FF(sim, bridge, slapd, upstream)
    finally:
        if bridge is not None:
            bridge.stop()
        if sim is not None:
            sim.stop()
        if upstream is not None:
            upstream.stop()
        if slapd is not None:
            slapd.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    if call.when == "call" and call.excinfo is not None:
        st = item.funcargs.get("ff") if hasattr(item, "funcargs") else None
        if st is not None:
            item.add_report_section("call", "vip-bridge log (tail)", st.bridge.log()[-6000:])


def pw(user):
    return ldap.USERS[user]


def test_password_and_code_accepted_over_failover(ff):
    # The directory's first URL is a dead port: slapd, the second, answers.
    before = ff.sim.calls("authenticateUser")
    got, attrs, out = radclient(ff.addr, SECRET, [
        ("User-Name", q("alice")), ("User-Password", q(pw("alice") + "," + fresh_totp(TOTP["alice"]))),
        ("Message-Authenticator", "0x00"),
    ])
    assert got == "Access-Accept", out
    assert ff.sim.calls("authenticateUser") == before + 1


def test_wrong_password_is_rejected_without_any_vip_call(ff, udp):
    before = ff.vip_calls()
    # (dave: the lockout guard counts these three, and nothing else logs in as him.)
    for typed in ("wrong-pw," + fresh_totp(TOTP["bob"]), "wrong-pw,push", "wrong-pw"):
        reply = ff.ask(udp, "ldap", "dave@example.org", typed)
        assert code_name(reply) == "Access-Reject"
        assert "password" in reply_messages(reply)
    assert ff.vip_calls() == before, "a wrong password reached VIP"


def test_password_comma_push_sends_exactly_one_push(ff, udp):
    before = ff.sim.calls("authenticateUserWithPush")
    reply = ff.ask(udp, "ldap", "bob", pw("bob") + ",push")
    assert code_name(reply) == "Access-Accept", reply_messages(reply)
    assert ff.sim.calls("authenticateUserWithPush") == before + 1


def test_password_alone_then_a_challenge_for_the_code(ff):
    got, attrs, out = radclient(ff.addr, SECRET, [
        ("User-Name", q("carol")), ("User-Password", q(pw("carol"))),
        ("Message-Authenticator", "0x00"),
    ])
    assert got == "Access-Challenge", out
    assert "security code" in " ".join(attrs.get("Reply-Message", [])), out
    state = attrs["State"][0]
    got, attrs, out = radclient(ff.addr, SECRET, [
        ("User-Name", q("carol")), ("User-Password", q(fresh_totp(TOTP["carol"]))),
        ("State", state), ("Message-Authenticator", "0x00"),
    ])
    assert got == "Access-Accept", out


def test_required_groups_with_nesting(ff, udp):
    before = ff.vip_calls()
    # bob is only in admins: the right password, and still refused, before VIP.
    reply = ff.ask(udp, "ldap_groups", "bob", pw("bob") + ",push")
    assert code_name(reply) == "Access-Reject"
    assert "not allowed" in reply_messages(reply)
    assert ff.vip_calls() == before
    # carol is a direct member of vpn-users; alice through engineers (nested).
    for user in ("carol", "alice"):
        reply = ff.ask(udp, "ldap_groups", user, pw(user) + ",push")
        assert code_name(reply) == "Access-Accept", (user, reply_messages(reply))


def test_both_directory_servers_down_rejects_even_with_fail_open(ff, udp):
    before = ff.vip_calls()
    reply = ff.ask(udp, "ldap_dead", "alice", pw("alice") + ",push")
    assert code_name(reply) == "Access-Reject"
    assert "unavailable" in reply_messages(reply)
    assert ff.vip_calls() == before
    assert "FAIL-OPEN" not in ff.bridge.log()
    series = harness.scrape_metrics(ff.bridge.ready["metrics"])
    outage = ('vip_bridge_directory_call_duration_seconds_count'
              '{directory="dead",operation="verify",result="outage"}')
    assert series.get(outage, 0) >= 1, sorted(k for k in series if "directory" in k)
    assert series.get('vip_bridge_rejects_total{reason="unavailable"}', 0) >= 1


def test_lockout_guard_stops_asking_the_directory(ff, udp):
    # engine.throttle.password_failures_per_user = 3 per 10m in this module.
    for _ in range(3):
        reply = ff.ask(udp, "ldap", "erin", "guess,push")
        assert code_name(reply) == "Access-Reject"
    binds = ff.binds("erin")
    assert binds == 3, "each wrong password is one bind at slapd"
    # The right password now is refused without asking slapd: AD would have counted it.
    reply = ff.ask(udp, "ldap", "erin", pw("erin") + ",push")
    assert code_name(reply) == "Access-Reject"
    assert "Too many attempts" in reply_messages(reply)
    assert ff.binds("erin") == binds
    assert 'limit="password_failures_per_user"' in ff.bridge.log() or \
        "password_failures_per_user" in ff.bridge.log()


def test_domain_and_realm_names_map_to_the_directory_and_vip_name(ff, udp):
    before = ff.sim.calls("authenticateUserWithPush")
    for name in ("EXAMPLE\\zoe", "ZOE@example.org"):
        reply = ff.ask(udp, "ldap", name, pw("zoe") + ",push")
        assert code_name(reply) == "Access-Accept", (name, reply_messages(reply))
    assert ff.sim.calls("authenticateUserWithPush") == before + 2
    assert ff.binds("zoe") == 2


def test_upstream_radius_accept_passes_its_attributes_through(ff, udp):
    reply = ff.ask(udp, "nps", "rich", "rich-pw," + fresh_totp(TOTP["rich"]))
    assert code_name(reply) == "Access-Accept", reply_messages(reply)
    attrs = raw_attributes(reply)
    got = {t: v for t, v in attrs}
    assert got.get(25) == b"class-of-rich"          # Class
    assert got.get(11) == b"vpn-admins"             # Filter-Id
    assert got.get(8) == bytes([10, 8, 0, 7])       # Framed-IP-Address
    assert got.get(27) == (3600).to_bytes(4, "big")  # Session-Timeout
    vsa = [v for t, v in attrs if t == 26]
    assert vsa and vsa[0][:4] == (9).to_bytes(4, "big") and b"shell:priv-lvl=15" in vsa[0]
    assert b"welcome" not in reply_messages(reply).encode(), "Reply-Message is ours, not passed"


def test_upstream_wrong_password_and_refusal_never_reach_vip(ff, udp):
    before = ff.vip_calls()
    for user, typed in (("rich", "nope,push"), ("plain", "plain-pw-wrong,push")):
        reply = ff.ask(udp, "nps", user, typed)
        assert code_name(reply) == "Access-Reject"
    assert ff.vip_calls() == before


def test_upstream_challenge_is_relayed_then_the_second_factor(ff, udp):
    reply = ff.ask(udp, "nps", "chal", "chal-pw")
    assert code_name(reply) == "Access-Challenge"
    assert "Enter your token code:" in reply_messages(reply)
    reply = ff.ask(udp, "nps", "chal", "4321", state=reply_state(reply))
    assert code_name(reply) == "Access-Challenge", reply_messages(reply)
    assert "security code" in reply_messages(reply)
    reply = ff.ask(udp, "nps", "chal", fresh_totp(TOTP["chal"]), state=reply_state(reply))
    assert code_name(reply) == "Access-Accept", reply_messages(reply)
    assert (25, b"chal-done") in raw_attributes(reply)


def test_upstream_down_rejects_without_vip(ff, udp):
    before = ff.vip_calls()
    reply = ff.ask(udp, "nps_dead", "plain", "plain-pw,push")
    assert code_name(reply) == "Access-Reject"
    assert "unavailable" in reply_messages(reply)
    assert ff.vip_calls() == before


def test_check_config_probes_and_test_auth_runs_both_factors(ff, tmp_path):
    import subprocess

    exe = harness.find_binary("vip-bridge")
    p = subprocess.run([exe, "check-config", "--config", ff.bridge.config],
                       capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    # "dead" and "nps_dead" have no live server: the check fails and names them.
    assert p.returncode != 0, out
    assert "directories.corp (ldap): %s: " % ff.slapd.ldaps_url in out, out
    assert "directories.dead: no server answered" in out or "directories.nps_dead" in out, out
    pwfile = tmp_path / "pw"
    pwfile.write_text(pw("alice") + "\n")
    p = subprocess.run([exe, "test-auth", "--config", ff.bridge.config, "--policy", "ldap",
                        "alice", "--push", "--password-file", str(pwfile)],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and "ACCEPT" in p.stdout, p.stdout + p.stderr
    pwfile.write_text("not-her-password\n")
    p = subprocess.run([exe, "test-auth", "--config", ff.bridge.config, "--policy", "ldap",
                        "alice", "--push", "--password-file", str(pwfile)],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and "bad_password" in p.stdout, p.stdout + p.stderr
    assert pw("alice") not in p.stdout + p.stderr


README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_modes_toml(ff, workdir):
    """The README's "Three validation modes" blocks, with only these substitutions: this
    test's slapd, FreeRADIUS and files for the example hosts and paths, and
    nested_groups = "recursive" (OpenLDAP has no AD in-chain rule)."""
    text = open(README, encoding="utf-8").read()
    section = text.split("<!-- validation-modes:begin -->", 1)[1].split(
        "<!-- validation-modes:end -->", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(blocks) == 4, "the README shows four blocks: code, PIN, LDAP, upstream RADIUS"
    bind_pw = os.path.join(workdir, "ldap.pass")
    with open(bind_pw, "w") as f:
        f.write(ff.slapd.bind_password + "\n")
    nps_secret = os.path.join(workdir, "nps.secret")
    with open(nps_secret, "w") as f:
        f.write(ff.upstream.secret + "\n")
    subst = [
        (r'urls = \[.*\]', 'urls = ["%s"]' % ff.slapd.ldaps_url),
        (r'ca_file = ".*"', 'ca_file = "%s"' % ff.slapd.ca_file),
        (r'bind_dn = ".*"', 'bind_dn = "%s"' % ff.slapd.bind_dn),
        (r'bind_password_file = ".*"', 'bind_password_file = "%s"' % bind_pw),
        (r'base_dn = ".*"', 'base_dn = "%s"' % ff.slapd.base_dn),
        (r'nested_groups = "in_chain"', 'nested_groups = "recursive"'),
        (r'required_groups = \[.*\]', 'required_groups = ["%s"]' % VPN_USERS),
        (r'servers = \[.*\]', 'servers = ["%s"]' % ff.upstream.addr),
        (r'secret_file = ".*"', 'secret_file = "%s"' % nps_secret),
    ]
    out = []
    for block in blocks:
        for pattern, repl in subst:
            block, _ = re.subn(pattern, lambda _m, r=repl: r, block)
        out.append(block)
    return "\n".join(out)


def test_the_readmes_three_validation_modes_work_as_written(ff, certs, workroot, udp):
    workdir = os.path.join(workroot, "first_factor_readme")
    os.makedirs(workdir, exist_ok=True)
    modes = readme_modes_toml(ff, workdir)
    sources = {"default": "127.0.0.6", "pin": "127.0.0.7", "vpn": "127.0.0.8"}
    clients = "".join(
        '[[radius.clients]]\nname = "{p}"\naddress = "{a}"\nsecret = "{s}"\npolicy = "{p}"\n\n'
        .format(p=p, a=a, s=SECRET) for p, a in sources.items())
    config = "%s\n%s\n[radius]\nlisten = [\"127.0.0.1:0\"]\naccounting_listen = []\n\n%s" % (
        harness.vip_toml(ff.sim, certs), modes, clients)
    bridge = harness.Bridge(workdir, config)
    try:
        def ask(policy, user, typed):
            s = udp(sources[policy])
            _, raw = access_request(SECRET.encode(), user, typed)
            return s.exchange(raw, bridge.addr(), timeout=15)

        # 1. A security code only.
        reply = ask("default", "plain", fresh_totp(TOTP["plain"]))
        assert code_name(reply) == "Access-Accept", reply_messages(reply)
        # 2. VIP PIN + code.
        reply = ask("pin", "pat", PINS["pat"] + fresh_totp(TOTP["pat"]))
        assert code_name(reply) == "Access-Accept", reply_messages(reply)
        # 3. Directory password + code, with the README's group and name mapping: CORP\Carol
        # is carol in the directory (a member of vpn-users) and at VIP.
        before = ff.vip_calls()
        reply = ask("vpn", "CORP\\Carol", "wrong,push")
        assert code_name(reply) == "Access-Reject"
        assert ff.vip_calls() == before
        reply = ask("vpn", "CORP\\Carol", pw("carol") + ",push")
        assert code_name(reply) == "Access-Accept", reply_messages(reply)
        # bob's password is right, but he is not in the README's required group.
        reply = ask("vpn", "bob", pw("bob") + ",push")
        assert code_name(reply) == "Access-Reject"
        assert "not allowed" in reply_messages(reply)
    finally:
        bridge.stop()
