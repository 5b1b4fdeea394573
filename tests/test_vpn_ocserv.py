"""ocserv (AnyConnect-compatible VPN server, RADIUS through radcli) + openconnect in front of
vip-bridge: the second factor as a real VPN user meets it.

Per module: a server certificate for 127.0.0.1 (openssl), and three stacks, each a vip-sim, a
vip-bridge (one RADIUS client 127.0.0.1 with `require_message_authenticator = false`: radcli
sends none) and an ocserv (`auth = "radius[config=...,groupconfig=false]"`) on free loopback
ports; every process is stopped and every temp file removed afterwards, failures included.

* "code":   policy mode = "code", push_mode = "blocking"; radcli radius_timeout 2 s, so a 5 s
            push is retransmitted by radcli while vip-bridge waits for the phone.
* "menu":   policy mode = "challenge", push_mode = "challenge" (the factor menu, Access-Challenge
            rounds relayed by ocserv to openconnect as prompts).
* "number": the same policy against a VIP account with "Require Number Challenge" on.

The client: `openconnect --authenticate --passwd-on-stdin --non-inter --user U --servercert
pin-sha256:... https://127.0.0.1:PORT/`, each later prompt answered on stdin once printed.
Authenticated = exit 0 and COOKIE= on stdout.

Under CI=true a missing ocserv/openconnect fails the module; elsewhere it is skipped.
"""

import base64
import hashlib
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from vpn import ocserv as oc  # noqa: E402

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

SECRET = "ocserv-e2e-secret"
PUSH_DELAY_MS = 5000  # the blocking push: longer than radcli's radius_timeout below
RADCLI_TIMEOUT = 2  # seconds per try; radcli retransmits (same id and authenticator)
RADCLI_RETRIES = 5  # 2 s x 6 tries: radcli waits 12 s in all, above PUSH_DELAY_MS
CHALLENGE_PUSH_DELAY_MS = 300
SLOW_PUSH_DELAY_MS = 3000  # longer than one Enter round waits (2 x engine.poll_interval)
NUMBER = 73
STATE_LOGINS = 25  # x 2 State rounds (menu -> sms, sms -> code) = 50


def _secret(user):
    return base64.b32encode(hashlib.sha1(("vip-bridge-ocserv-" + user).encode()).digest()).decode()


# user: (push action, push delay ms, sms phone?)
CODE_USERS = {"ocode": ("approve", 200, False), "opush": ("approve", PUSH_DELAY_MS, False),
              "odeny": ("deny", 1000, False)}
MENU_USERS = {"omenu": ("approve", CHALLENGE_PUSH_DELAY_MS, True),
              "omcode": ("approve", CHALLENGE_PUSH_DELAY_MS, True),
              "ostate": ("approve", CHALLENGE_PUSH_DELAY_MS, True),
              "oslow": ("approve", SLOW_PUSH_DELAY_MS, False)}
NUMBER_USERS = {"onum": ("approve", CHALLENGE_PUSH_DELAY_MS, False)}
SECRETS = {u: _secret(u) for u in list(CODE_USERS) + list(MENU_USERS) + list(NUMBER_USERS)}

CODE_POLICY = 'mode = "code"\npush_mode = "blocking"\npush_timeout = "25s"\n'
MENU_POLICY = 'mode = "challenge"\npush_mode = "challenge"\npush_timeout = "60s"\n'


def sim_users(users):
    out = []
    for i, (user, (action, delay, sms)) in enumerate(sorted(users.items())):
        out.append('[[users]]\nid = "%s"\n' % user)
        if sms:
            out.append('sms_phones = ["1555010%04d"]\n' % i)
        out.append('[[users.credentials]]\nid = "VSOC%08d"\ntotp_secret = "%s"\npush = true\n'
                   % (i + 1, SECRETS[user]))
        out.append('[users.push]\naction = "%s"\ndelay_ms = %d\n' % (action, delay))
        if user in NUMBER_USERS:
            out.append("number = %d\n" % NUMBER)
        out.append("\n")
    return "".join(out)


def bridge_toml(sim, certs, policy):
    return harness.vip_toml(sim, certs) + """
[engine]
poll_interval = "300ms"

[engine.throttle]
push_per_user = {{ count = 100, per = "5m" }}
codes_per_user = {{ count = 100, per = "5m" }}

[policies.vpn]
{policy}
[radius]
listen = ["127.0.0.1:0"]
response_cache_ttl = "15s"
shutdown_timeout = "2s"

[[radius.clients]]
name = "ocserv"
address = "127.0.0.1"
secret = "{secret}"
policy = "vpn"
require_message_authenticator = false

[log]
format = "text"
level = "info"
""".format(policy=policy, secret=SECRET)


class VpnStack:
    """vip-sim + vip-bridge + ocserv (radcli pointed at the bridge). stop() stops all three."""

    def __init__(self, workdir, certs, server_cert, users, policy, number_challenge=False,
                 radius_timeout=5, radius_retries=2, net_octet=77):
        os.makedirs(workdir, exist_ok=True)
        self.sim = self.bridge = self.ocserv = None
        self.ocserv_log = ""
        crt, key, self.pin = server_cert
        try:
            self.sim = harness.Sim(workdir, harness.sim_toml(
                certs, sim_users(users),
                "number_challenge = %s\nlockout_after = 50\n"
                % ("true" if number_challenge else "false")))
            self.bridge = harness.Bridge(workdir, bridge_toml(self.sim, certs, policy))
            self.ocserv = oc.Ocserv(crt, key, self.bridge.addr(), SECRET,
                                    radius_timeout=radius_timeout,
                                    radius_retries=radius_retries, net_octet=net_octet)
        except BaseException:
            self.stop()
            raise

    def login(self, user, *answers, timeout=90):
        return oc.openconnect(self.ocserv, user, list(answers), self.pin, timeout=timeout)

    def explain(self, r):
        """The client's result and the server-side logs, for an assertion message."""
        olog = self.ocserv.log() if self.ocserv else self.ocserv_log
        olog = "\n".join(line for line in olog.splitlines()
                         if "TLS[" not in line and not line.startswith("<"))
        return "%r\n--- vip-bridge log (tail):\n%s\n--- ocserv log (tail):\n%s" % (
            r, self.bridge.log()[-5000:] if self.bridge else "", olog[-5000:])

    def stop(self):
        try:
            if self.ocserv is not None:
                self.ocserv_log = self.ocserv.stop()
        finally:
            try:
                if self.bridge is not None:
                    self.bridge.stop()
            finally:
                if self.sim is not None:
                    self.sim.stop()


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def peers():
    gone = oc.missing()
    if gone:
        what = "missing: %s (apt-get install ocserv openconnect)" % ", ".join(gone)
        if CI:
            pytest.fail("%s; CI=true: the ocserv tests must run" % what)
        pytest.skip(what)


@pytest.fixture(scope="module")
def vpn_dir(peers, workroot):
    d = os.path.join(workroot, "test_vpn_ocserv")
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def server_cert(vpn_dir):
    return oc.server_cert(vpn_dir)


def _stack(vpn_dir, name, certs, server_cert, **kw):
    return VpnStack(os.path.join(vpn_dir, name), certs, server_cert, **kw)


@pytest.fixture(scope="module")
def code_vpn(vpn_dir, certs, server_cert):
    st = _stack(vpn_dir, "code", certs, server_cert, users=CODE_USERS, policy=CODE_POLICY,
                radius_timeout=RADCLI_TIMEOUT, radius_retries=RADCLI_RETRIES, net_octet=77)
    yield st
    st.stop()


@pytest.fixture(scope="module")
def menu_vpn(vpn_dir, certs, server_cert):
    st = _stack(vpn_dir, "menu", certs, server_cert, users=MENU_USERS, policy=MENU_POLICY,
                net_octet=78)
    yield st
    st.stop()


@pytest.fixture(scope="module")
def number_vpn(vpn_dir, certs, server_cert):
    st = _stack(vpn_dir, "number", certs, server_cert, users=NUMBER_USERS, policy=MENU_POLICY,
                number_challenge=True, net_octet=79)
    yield st
    st.stop()


# ---------------------------------------------------------------------------------------------
# Helpers


def authenticated(st, r):
    assert r.rc == 0 and r.cookie, "not authenticated:\n" + st.explain(r)
    assert "webvpn=" in r.cookie, st.explain(r)


def refused(st, r):
    assert r.rc != 0 and r.cookie is None and "COOKIE=" not in r.out, \
        "authenticated, expected a refusal:\n" + st.explain(r)


def prompts(r):
    return len(oc.PROMPT.findall(r.err))


def wait_then(seconds, answer=""):
    def f(_text):
        time.sleep(seconds)
        return answer
    return f


MENU_TEXT = "Choose a second factor:"
PUSH_TEXT = "A sign-in request was sent to your phone. Approve it, then press Enter here"


# ---------------------------------------------------------------------------------------------
# 1-4: mode = "code", blocking push


def test_code_login_authenticated(code_vpn):
    st = code_vpn
    before = st.sim.calls("authenticateUser")
    r = st.login("ocode", harness.fresh_totp(SECRETS["ocode"]))
    authenticated(st, r)
    assert prompts(r) == 0, st.explain(r)
    assert "FINGERPRINT='%s'" % st.pin in r.out, st.explain(r)  # the pinned certificate
    assert st.sim.calls("authenticateUser") == before + 1


def test_wrong_code_refused_with_reply_message(code_vpn):
    st = code_vpn
    before = st.sim.calls("authenticateUser")
    r = st.login("ocode", harness.wrong_code(SECRETS["ocode"]))
    refused(st, r)
    # vip-bridge's Reply-Message, relayed by ocserv and printed by openconnect.
    assert "Wrong security code. Wait for a new code and try again." in r.err, st.explain(r)
    assert st.sim.calls("authenticateUser") == before + 1


def test_blocking_push_through_radcli_retransmits_one_push(code_vpn):
    st = code_vpn
    pushes = st.sim.calls("authenticateUserWithPush")
    dups = st.bridge.log().count("duplicate of a request in progress")
    r = st.login("opush", "push", timeout=60)
    authenticated(st, r)
    assert r.elapsed >= PUSH_DELAY_MS / 1000.0 - 0.5, st.explain(r)
    # radcli retransmitted while the phone was pending (2 s tries, a 5 s push) ...
    assert st.bridge.log().count("duplicate of a request in progress") >= dups + 1, \
        "radcli did not retransmit (the case tests nothing):\n" + st.explain(r)
    # ... and every retransmit joined the one push.
    assert st.sim.calls("authenticateUserWithPush") == pushes + 1, st.explain(r)


def test_blocking_push_denied_refused(code_vpn):
    st = code_vpn
    pushes = st.sim.calls("authenticateUserWithPush")
    r = st.login("odeny", "push", timeout=60)
    refused(st, r)
    assert st.sim.calls("authenticateUserWithPush") == pushes + 1, st.explain(r)
    assert r.elapsed >= 1.0, st.explain(r)  # the phone's answer came after 1 s
    assert "The sign-in request was denied on your phone." in r.err, st.explain(r)


# ---------------------------------------------------------------------------------------------
# 5: challenge dialogues relayed by ocserv


def test_menu_push_then_enter(menu_vpn):
    st = menu_vpn
    pushes = st.sim.calls("authenticateUserWithPush")
    # menu -> "push" -> (the phone approves) an empty answer: radcli sends a User-Password of
    # length 2, which vip-bridge takes as the empty answer.
    r = st.login("omenu", "anything", "push", wait_then(CHALLENGE_PUSH_DELAY_MS / 1000.0 + 1.2))
    authenticated(st, r)
    assert MENU_TEXT in r.err and PUSH_TEXT in r.err, st.explain(r)
    assert "Not approved yet" not in r.err, st.explain(r)
    assert prompts(r) == 2, st.explain(r)
    assert st.sim.calls("authenticateUserWithPush") == pushes + 1, st.explain(r)


def test_menu_push_enter_too_early_asks_again(menu_vpn):
    st = menu_vpn
    # Enter at once: vip-bridge waits at most 2 poll intervals (0.6 s) in that round, then asks
    # again; Enter after the phone answered logs in.
    r = st.login("oslow", "anything", "push", "", wait_then(SLOW_PUSH_DELAY_MS / 1000.0))
    authenticated(st, r)
    assert "Not approved yet" in r.err and prompts(r) == 3, st.explain(r)


def test_menu_typed_code(menu_vpn):
    st = menu_vpn
    before = st.sim.calls("authenticateUser")

    def code(_text):
        return harness.fresh_totp(SECRETS["omcode"])

    r = st.login("omcode", "anything", code)
    authenticated(st, r)
    assert MENU_TEXT in r.err and prompts(r) == 1, st.explain(r)
    assert st.sim.calls("authenticateUser") == before + 1


def test_menu_sms_code(menu_vpn):
    st = menu_vpn
    r = st.login("omcode", "anything", "sms", lambda _t: st.sim.sent_code("omcode"))
    authenticated(st, r)
    assert MENU_TEXT in r.err and prompts(r) == 2, st.explain(r)


def test_number_challenge_shown_to_the_user(number_vpn):
    st = number_vpn
    shown = []

    def approve_then_enter(text):
        shown.append(text)
        time.sleep(CHALLENGE_PUSH_DELAY_MS / 1000.0 + 1.2)
        return ""

    r = st.login("onum", "anything", "push", approve_then_enter)
    authenticated(st, r)
    assert shown and re.search(r"enter the number %d in VIP Access" % NUMBER, shown[0]), \
        st.explain(r)


# ---------------------------------------------------------------------------------------------
# 6: State intact through radcli (it keeps State as a C string)


def test_state_survives_fifty_challenge_rounds(menu_vpn):
    st = menu_vpn
    sends = st.sim.calls("sendOtp")
    failures = []
    for i in range(STATE_LOGINS):
        # menu (State 1) -> "sms" -> code prompt (State 2) -> the code sent.
        r = st.login("ostate", "anything", "sms", lambda _t: st.sim.sent_code("ostate"))
        if not (r.rc == 0 and r.cookie and prompts(r) == 2):
            failures.append((i, r))
    assert not failures, "%d of %d logins failed; the first:\n%s" % (
        len(failures), STATE_LOGINS, st.explain(failures[0][1]))
    assert st.sim.calls("sendOtp") == sends + STATE_LOGINS
