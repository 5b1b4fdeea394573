"""In-band enrollment end to end: the real daemon, a real OpenLDAP slapd as the first factor
and the real vip-sim, driven by radclient (freeradius-utils) and by pyrad over raw UDP.

A policy with first_factor = "ldap" and enrollment = "after_first_factor" offers a user VIP
knows no usable credential for to set one up during the login, once the directory password
passed, over Access-Challenge rounds (shared/src/engine/enrollment.rs); engine-level tests of
the same flows: shared/tests/engine_enrollment.rs.

Clients (source address -> policy): 127.0.0.1 -> enroll (token, sms, voice), 127.0.0.2 ->
enroll_sms (sms only), 127.0.0.3 -> enroll_audit (as enroll, but VIP's user id is
"{user}.audit", so the audit test has a VIP user of its own). This file's bridge sets
engine.throttle.enrollment_per_user = 3 per 10m.

Directory users (tests/directory/slapd.py) and what VIP knows of them (one per case, so codes,
throttles and bindings never collide): alice (unknown to VIP: enrolls a token), bob (known to
VIP, no credential: enrolls a phone by SMS), carol (has a token: never offered enrollment),
dave@example.org (known, no credential: the throttle), erin (has a token: reset), zoe (a wrong
password), alice again as "alice.audit" (unknown: the audit test).
"""

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "directory"))

import harness  # noqa: E402
from harness import (access_request, code_name, q, radclient, reply_messages,  # noqa: E402
                     reply_state, totp)

import slapd as ldap  # noqa: E402

CI = os.environ.get("CI") == "true"
SECRET = "enroll-nas-secret-0123456789"
SOURCES = {"enroll": "127.0.0.1", "enroll_sms": "127.0.0.2", "enroll_audit": "127.0.0.3"}

# Tokens in the simulator's inventory (unbound): one for alice, one for the audit test, one that
# the throttle test never manages to bind.
TOKEN = "VSST10000001"
TOKEN_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
AUDIT_TOKEN = "VSST10000002"
AUDIT_SECRET = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"
THROTTLE_TOKEN = "VSST10000003"
THROTTLE_SECRET = "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"
# Tokens already bound (carol: the enrollment menu must never reach her; erin: reset).
CAROL_TOKEN, CAROL_SECRET = "VSMT20000001", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
ERIN_TOKEN, ERIN_SECRET = "VSMT20000002", "ONSWG4TFOQYTEMZUGU3DOOBZGAYTEMZU"
PHONE_TYPED, PHONE = "+1 555 000 2222", "15550002222"

MENU = "You have no second factor yet. Set one up now:"
ENROLLING_OPS = ("getUserInfo", "createUser", "register", "addCredential", "authenticateUser",
                 "checkOtp", "authenticateUserWithPush", "sendOtp")

# Every security code typed in this module: none may ever show in the bridge's log.
TYPED_CODES = set()


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI."""
    if ok:
        return
    if CI:
        pytest.fail("%s (CI=true: the enrollment tests must run)" % what)
    pytest.skip(what)


def sim_config():
    return """
[[users]]
id = "bob"

[[users]]
id = "dave@example.org"

[[users]]
id = "carol"
[[users.credentials]]
id = "{carol_token}"
totp_secret = "{carol_secret}"

[[users]]
id = "erin"
[[users.credentials]]
id = "{erin_token}"
totp_secret = "{erin_secret}"

[[tokens]]
id = "{token}"
secret = "{token_secret}"

[[tokens]]
id = "{audit_token}"
secret = "{audit_secret}"

[[tokens]]
id = "{throttle_token}"
secret = "{throttle_secret}"
""".format(carol_token=CAROL_TOKEN, carol_secret=CAROL_SECRET, erin_token=ERIN_TOKEN,
           erin_secret=ERIN_SECRET, token=TOKEN, token_secret=TOKEN_SECRET,
           audit_token=AUDIT_TOKEN, audit_secret=AUDIT_SECRET, throttle_token=THROTTLE_TOKEN,
           throttle_secret=THROTTLE_SECRET)


def bridge_toml(sim, certs, d):
    clients = "".join(
        '[[radius.clients]]\nname = "{p}"\naddress = "{a}"\nsecret = "{s}"\npolicy = "{p}"\n\n'
        .format(p=p, a=a, s=SECRET) for p, a in SOURCES.items())
    return harness.vip_toml(sim, certs) + """
[engine]
poll_interval = "500ms"

[engine.throttle]
enrollment_per_user = {{ count = 3, per = "10m" }}

[directories.corp]
kind = "ldap"
urls = ["{ldaps}"]
ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password = "{bind_pw}"
base_dn = "{base}"

[policies.enroll]
first_factor = "ldap"
directory = "corp"
enrollment = "after_first_factor"

[policies.enroll_sms]
first_factor = "ldap"
directory = "corp"
enrollment = "after_first_factor"
enrollment_credentials = ["sms"]

[policies.enroll_audit]
first_factor = "ldap"
directory = "corp"
enrollment = "after_first_factor"
user_name = {{ vip_user = "{{user}}.audit" }}

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
""".format(ldaps=d.ldaps_url, ca=d.ca_file, bind_dn=d.bind_dn, bind_pw=d.bind_password,
           base=d.base_dn, clients=clients)


class Env:
    def __init__(self, sim, bridge, slapd):
        self.sim, self.bridge, self.slapd = sim, bridge, slapd

    @property
    def addr(self):
        return self.bridge.addr()

    def calls(self):
        """The simulator's call counters, without getServerTime (the bridge's own health
        check may call it at any time)."""
        calls = dict(self.sim.counters().get("calls", {}))
        calls.pop("getServerTime", None)
        return calls

    def ask(self, udp, policy, user, typed, state=None, timeout=15):
        """One Access-Request from `policy`'s client address (pyrad over raw UDP)."""
        s = udp(SOURCES[policy])
        _, raw = access_request(SECRET.encode(), user, typed, state=state)
        reply = s.exchange(raw, self.addr, timeout=timeout)
        assert reply is not None, "no answer from the bridge to %r" % typed
        return reply

    def metric(self, series):
        return harness.scrape_metrics(self.bridge.ready["metrics"]).get(series, 0)


@pytest.fixture(scope="module")
def env(workroot, certs):
    need(ldap.available() is None, "slapd: %s" % ldap.available())
    need(shutil.which("radclient"), "radclient (freeradius-utils) is not installed")
    workdir = os.path.join(workroot, "enrollment")
    os.makedirs(workdir, exist_ok=True)
    slapd = sim = bridge = None
    try:
        slapd = ldap.Slapd(os.path.join(workdir, "slapd"))
        sim = harness.Sim(workdir, harness.sim_toml(certs, sim_config(),
                                                    "number_challenge = false\n"))
        bridge = harness.Bridge(workdir, bridge_toml(sim, certs, slapd))
        yield Env(sim, bridge, slapd)
    finally:
        if bridge is not None:
            bridge.stop()
        if sim is not None:
            sim.stop()
        if slapd is not None:
            slapd.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    if call.when == "call" and call.excinfo is not None:
        st = item.funcargs.get("env") if hasattr(item, "funcargs") else None
        if st is not None:
            item.add_report_section("call", "vip-bridge log (tail)", st.bridge.log()[-8000:])


def pw(user):
    return ldap.USERS[user]


def typed(code):
    """Records a security code about to be typed (for the log test) and returns it."""
    TYPED_CODES.add(code)
    return code


def fresh_step(min_left=6):
    """Waits, when fewer than `min_left` seconds of the current 30 s step are left, for the
    next one: a code read now stays the current code for the round that sends it."""
    left = 30 - (time.time() % 30)
    if left < min_left:
        time.sleep(left + 0.2)


def token_code(secret, steps=0):
    """The code of a token `steps` steps from now (in a fresh step)."""
    fresh_step()
    return typed(totp(secret, time.time() + 30 * steps))


def wrong_code(secret):
    """A six-digit code that is no code of `secret` within +-25 steps (not even "out of
    sync"): VIP answers it 6009."""
    return typed(harness.wrong_code(secret))


def rc_ask(env, user, password, state=None):
    """One Access-Request by radclient from 127.0.0.1 (the enroll policy): (code, the reply's
    Reply-Message text, the State to send back, radclient's output)."""
    attrs = [("User-Name", q(user)), ("User-Password", q(password))]
    if state is not None:
        attrs.append(("State", state))
    attrs.append(("Message-Authenticator", "0x00"))
    got, reply, out = radclient(env.addr, SECRET, attrs, timeout=15)
    text = " ".join(reply.get("Reply-Message", []))
    st = reply.get("State", [None])[0]
    return got, text, st, out


def test_a_user_unknown_to_vip_enrolls_a_token_over_radclient_rounds(env):
    before = env.calls()
    # The directory password alone: VIP knows no alice, so the enrollment menu.
    got, text, state, out = rc_ask(env, "alice", pw("alice"))
    assert got == "Access-Challenge", out
    assert MENU in text, out
    for word in ("token", "sms", "voice"):
        assert word in text, out
    assert env.calls().get("createUser", 0) == before.get("createUser", 0), \
        "nothing is created at VIP before a credential is proven"
    # The credential ID, then the code the token shows now.
    got, text, state, out = rc_ask(env, "alice", "token", state)
    assert got == "Access-Challenge" and "credential ID" in text, out
    got, text, state, out = rc_ask(env, "alice", TOKEN, state)
    assert got == "Access-Challenge", out
    assert "Enter the security code VIP Access shows for %s" % TOKEN in text, out
    fresh_step()
    code = typed(env.sim.token_code(TOKEN))
    got, text, state, out = rc_ask(env, "alice", code, state)
    assert got == "Access-Accept", out
    after = env.calls()
    delta = {op: after.get(op, 0) - before.get(op, 0) for op in set(after) | set(before)}
    assert delta.get("createUser") == 1, delta
    # addCredential for a user VIP does not know yet: refused 6003, createUser, then again.
    # (Two calls, not one: the engine asks first and creates the user only on 6003.)
    assert delta.get("addCredential") == 2, delta
    # The token is alice's now: her current code is the token's.
    assert env.sim.current_code("alice") == env.sim.token_code(TOKEN)
    # The next login: password,code of a later step of the same token.
    got, text, state, out = rc_ask(env, "alice", pw("alice") + "," + token_code(TOKEN_SECRET, 1))
    assert got == "Access-Accept", out
    # The password alone: the ordinary code challenge now, never the enrollment menu.
    got, text, state, out = rc_ask(env, "alice", pw("alice"))
    assert got == "Access-Challenge", out
    assert "security code" in text and "no second factor" not in text, out
    assert "credential ID" not in text, out


def test_sms_enrollment_registers_the_phone_and_asks_again_after_a_wrong_code(env, udp):
    before = env.calls()
    # enrollment_credentials = ["sms"]: straight to the phone number.
    reply = env.ask(udp, "enroll_sms", "bob", pw("bob"))
    assert code_name(reply) == "Access-Challenge", reply_messages(reply)
    assert MENU in reply_messages(reply)
    assert "mobile number" in reply_messages(reply)
    assert "credential ID" not in reply_messages(reply)
    reply = env.ask(udp, "enroll_sms", "bob", PHONE_TYPED, reply_state(reply))
    assert code_name(reply) == "Access-Challenge", reply_messages(reply)
    assert "A code was sent by text message to %s" % PHONE in reply_messages(reply)
    assert env.calls().get("register", 0) == before.get("register", 0) + 1
    sent = env.sim.phone_code(PHONE)
    wrong = typed("%06d" % ((int(sent) + 1) % 1000000))
    reply = env.ask(udp, "enroll_sms", "bob", wrong, reply_state(reply))
    assert code_name(reply) == "Access-Challenge", reply_messages(reply)
    assert "That code was not right. Enter the code sent to %s" % PHONE in reply_messages(reply)
    reply = env.ask(udp, "enroll_sms", "bob", typed(sent), reply_state(reply))
    assert code_name(reply) == "Access-Accept", reply_messages(reply)
    # The audit line shows the number's last digits only.
    audit = [l for l in _audit_lines(env.bridge.log(), "credential_added")
             if 'credential="sms"' in l and "vip_user=bob" in l]
    assert len(audit) == 1, env.bridge.log()[-3000:]
    assert "credential_id=*******2222" in audit[0] and PHONE not in audit[0], audit[0]
    after = env.calls()
    assert after.get("addCredential", 0) - before.get("addCredential", 0) == 2
    assert after.get("createUser", 0) == before.get("createUser", 0), "bob existed at VIP"
    # The phone is bob's factor now: the next login offers it, not enrollment.
    reply = env.ask(udp, "enroll_sms", "bob", pw("bob"))
    assert code_name(reply) == "Access-Challenge", reply_messages(reply)
    assert "no second factor" not in reply_messages(reply)
    assert "mobile number" not in reply_messages(reply)


def test_a_wrong_password_is_refused_before_vip_is_asked_anything(env, udp):
    before = env.calls()
    for password in ("not-zoes-password", "not-zoes-password,token"):
        reply = env.ask(udp, "enroll", "zoe", password)
        assert code_name(reply) == "Access-Reject", reply_messages(reply)
        assert "password" in reply_messages(reply)
        assert MENU not in reply_messages(reply)
    after = env.calls()
    assert after == before, "a wrong password reached VIP: %r -> %r" % (before, after)
    for op in ENROLLING_OPS:
        assert after.get(op, 0) == before.get(op, 0), op


def test_never_offered_to_a_user_who_has_a_credential(env, udp):
    before = env.calls()
    reply = env.ask(udp, "enroll", "carol", pw("carol"))
    assert code_name(reply) == "Access-Challenge", reply_messages(reply)
    assert "security code" in reply_messages(reply)
    assert "no second factor" not in reply_messages(reply)
    assert "credential ID" not in reply_messages(reply)
    # The enrollment menu's word means nothing here.
    reply = env.ask(udp, "enroll", "carol", "token", reply_state(reply))
    assert code_name(reply) == "Access-Reject", reply_messages(reply)
    after = env.calls()
    for op in ("createUser", "register", "addCredential"):
        assert after.get(op, 0) == before.get(op, 0), op
    # Nor typed after the password ("token" is no code or keyword, so the whole field is
    # taken as the password, which is wrong).
    reply = env.ask(udp, "enroll", "carol", pw("carol") + ",token")
    assert code_name(reply) == "Access-Reject", reply_messages(reply)
    assert env.calls().get("addCredential", 0) == before.get("addCredential", 0)


def test_wrong_codes_during_enrollment_are_throttled(env, udp):
    # engine.throttle.enrollment_per_user = 3 per 10m in this file's bridge.
    user = "dave@example.org"
    before = env.calls()
    reply = env.ask(udp, "enroll", user, pw(user))
    assert MENU in reply_messages(reply), reply_messages(reply)
    reply = env.ask(udp, "enroll", user, "token", reply_state(reply))
    reply = env.ask(udp, "enroll", user, THROTTLE_TOKEN, reply_state(reply))
    assert THROTTLE_TOKEN in reply_messages(reply), reply_messages(reply)
    for _ in range(3):
        reply = env.ask(udp, "enroll", user, wrong_code(THROTTLE_SECRET), reply_state(reply))
        assert code_name(reply) == "Access-Challenge", reply_messages(reply)
        assert "That code was not right" in reply_messages(reply)
    # The 4th answer, even the right code, never reaches VIP.
    reply = env.ask(udp, "enroll", user, token_code(THROTTLE_SECRET), reply_state(reply))
    assert code_name(reply) == "Access-Reject", reply_messages(reply)
    assert "Too many attempts" in reply_messages(reply)
    after = env.calls()
    assert after.get("addCredential", 0) - before.get("addCredential", 0) == 3
    assert after.get("createUser", 0) == before.get("createUser", 0)
    assert env.metric('vip_bridge_throttled_total{limit="enrollment_per_user"}') >= 1
    # Not bound: dave still has no code of his own at VIP.
    with pytest.raises(urllib.error.HTTPError):
        env.sim.current_code(user)


def test_reset_with_two_consecutive_codes(env, udp):
    before = env.calls()
    reply = env.ask(udp, "enroll", "erin", pw("erin") + ",reset")
    assert code_name(reply) == "Access-Challenge", reply_messages(reply)
    assert "To reset your token, enter the security code it shows now" in reply_messages(reply)
    fresh_step()
    now = time.time()
    first, nxt = typed(totp(ERIN_SECRET, now)), typed(totp(ERIN_SECRET, now + 30))
    reply = env.ask(udp, "enroll", "erin", first, reply_state(reply))
    assert code_name(reply) == "Access-Challenge", reply_messages(reply)
    assert "Wait for the next code" in reply_messages(reply)
    assert env.calls().get("authenticateUser", 0) == before.get("authenticateUser", 0), \
        "the first code alone is not sent to VIP"
    reply = env.ask(udp, "enroll", "erin", nxt, reply_state(reply))
    assert code_name(reply) == "Access-Accept", reply_messages(reply)
    after = env.calls()
    assert after.get("authenticateUser", 0) - before.get("authenticateUser", 0) == 1
    for op in ("createUser", "register", "addCredential"):
        assert after.get(op, 0) == before.get(op, 0), op


def _log_without_timestamps(env):
    # Timestamps carry six-digit fractions of a second: they are not codes.
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "", env.bridge.log())


def _audit_lines(log, event):
    return [l for l in log.splitlines()
            if "vip_bridge::audit" in l and re.search(r'\bevent="?%s"?' % event, l)]


def test_credential_changes_are_audited_and_counted_and_codes_never_logged(env, udp):
    series = 'vip_bridge_credential_changes_total{event="credential_added",credential="token"}'
    before = env.metric(series)
    user = "alice.audit"  # alice's password, a VIP user of its own (policy enroll_audit)

    def ask(password, state=None):
        return env.ask(udp, "enroll_audit", "alice", password, state)

    reply = ask(pw("alice"))
    assert MENU in reply_messages(reply), reply_messages(reply)
    reply = ask("token", reply_state(reply))
    reply = ask(AUDIT_TOKEN, reply_state(reply))
    reply = ask(token_code(AUDIT_SECRET), reply_state(reply))
    assert code_name(reply) == "Access-Accept", reply_messages(reply)
    assert env.metric(series) == before + 1
    # The lines are written as the round ends: give the log a moment.
    deadline = time.time() + 5
    while time.time() < deadline:
        log = _log_without_timestamps(env)
        mine = [l for l in _audit_lines(log, "credential_added") if AUDIT_TOKEN in l]
        if mine:
            break
        time.sleep(0.1)
    assert len(mine) == 1, "\n".join(_audit_lines(log, "credential_added"))
    for field in ('credential="token"', "credential_id=%s" % AUDIT_TOKEN,
                  "vip_user=alice.audit", "client=enroll_audit", 'first_factor="ldap"'):
        assert field in mine[0], (field, mine[0])
    # VIP did not know alice.audit: the user it created for her is an audit line too.
    created = [l for l in _audit_lines(log, "user_created") if "vip_user=alice.audit" in l]
    assert len(created) == 1, created
    # Every credential added in this module is one audit line, and the metric counts them all.
    added = _audit_lines(log, "credential_added")
    counted = sum(v for k, v in harness.scrape_metrics(env.bridge.ready["metrics"]).items()
                  if k.startswith("vip_bridge_credential_changes_total{")
                  and 'event="credential_added"' in k)
    assert len(added) == counted, (added, counted)
    resets = _audit_lines(log, "credential_reset")
    assert len(resets) == env.metric(
        'vip_bridge_credential_changes_total{event="credential_reset",credential="token"}')
    # No code typed in this module (right or wrong, token or SMS) is in the log.
    assert TYPED_CODES, "the codes typed were not recorded"
    leaked = [c for c in sorted(TYPED_CODES)
              if re.search(r"(?<![0-9A-Za-z])%s(?![0-9A-Za-z])" % c, log)]
    assert not leaked, "codes typed appear in the bridge's log: %s" % leaked
    assert pw("alice") not in log


def test_a_wrong_code_for_a_user_vip_does_not_know_creates_nothing_at_vip(env, udp):
    # carol's password; VIP's user id "carol.audit" (policy enroll_audit), unknown to VIP.
    before = env.calls()
    reply = env.ask(udp, "enroll_audit", "carol", pw("carol"))
    assert MENU in reply_messages(reply), reply_messages(reply)
    reply = env.ask(udp, "enroll_audit", "carol", "token", reply_state(reply))
    reply = env.ask(udp, "enroll_audit", "carol", THROTTLE_TOKEN, reply_state(reply))
    reply = env.ask(udp, "enroll_audit", "carol", wrong_code(THROTTLE_SECRET),
                    reply_state(reply))
    assert "That code was not right" in reply_messages(reply), reply_messages(reply)
    # VIP checks a code only for a user it knows: the user was created for the check and, the
    # credential refused, deleted again. The user gives up here: nothing is left at VIP.
    after = env.calls()
    created = after.get("createUser", 0) - before.get("createUser", 0)
    deleted = after.get("deleteUser", 0) - before.get("deleteUser", 0)
    assert (created, deleted) == (1, 1), after
    p = subprocess.run([harness.find_binary("vip-bridge"), "admin", "--config", env.bridge.config,
                        "user", "show", "carol.audit"], capture_output=True, timeout=60)
    assert p.returncode == 3, (p.stdout + p.stderr).decode()


def test_check_config_refuses_enrollment_without_a_first_factor(env, certs, tmp_path):
    exe = harness.find_binary("vip-bridge")
    config = harness.vip_toml(env.sim, certs) + """
[policies.ok]
first_factor = "ldap"
enrollment = "after_first_factor"

[policies.no_ff]
enrollment = "after_first_factor"

[directories.corp]
kind = "ldap"
urls = ["{ldaps}"]
ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password = "{bind_pw}"
base_dn = "{base}"

[radius]
listen = ["127.0.0.1:0"]
accounting_listen = []

[[radius.clients]]
name = "good"
address = "127.0.0.1"
secret = "{secret}"
policy = "ok"

[[radius.clients]]
name = "nas"
address = "127.0.0.2"
secret = "{secret}"
policy = "no_ff"
""".format(ldaps=env.slapd.ldaps_url, ca=env.slapd.ca_file, bind_dn=env.slapd.bind_dn,
           bind_pw=env.slapd.bind_password, base=env.slapd.base_dn, secret=SECRET)
    path = tmp_path / "enroll-no-ff.toml"
    path.write_text(config)
    os.chmod(str(path), 0o600)
    for args in (["check-config", "--offline"], ["check-config"]):
        p = subprocess.run([exe] + args + ["--config", str(path)], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        out = p.stdout + p.stderr
        assert p.returncode == 1, (args, out)
        assert "radius.clients[1].policy" in out, out
        assert 'enrollment = "after_first_factor" but no first_factor' in out, out
        assert '"no_ff"' in out, out
    # The same config with the client moved to the policy that has a first factor passes.
    fixed = tmp_path / "enroll-ok.toml"
    fixed.write_text(config.replace('policy = "no_ff"', 'policy = "ok"'))
    os.chmod(str(fixed), 0o600)
    p = subprocess.run([exe, "check-config", "--offline", "--config", str(fixed)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    # And serve refuses it alike.
    p = subprocess.run([exe, "serve", "--config", str(path)], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and "no first_factor" in p.stderr, p.stdout + p.stderr
