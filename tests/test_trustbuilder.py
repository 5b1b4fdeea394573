"""TrustBuilder MFA (backend = "trustbuilder") end to end: radclient (freeradius-utils) and
pyrad -> vip-bridge serve -> tb-sim over mutual TLS (PKCS#12 client certificate), all real
processes on loopback; plus `vip-bridge check-config` and `vip-bridge test-auth` against tb-sim.

One tb-sim and one bridge serve the module. RADIUS clients by source address pick a policy:
  127.0.0.1  "default": code or `push` (blocking, push_timeout 5 s: the shortest allowed)
  127.0.0.2  "menu":    mode = "challenge" (the menu built from the user's tools)
  127.0.0.3  "open":    fail_mode = "open"
The simulator's own push_timeout stays at 60 s, so an unanswered push ends on the bridge's
deadline (the simulator's NOK:TIMEOUT is forced with a fault instead). Small extra bridges: a
wrong service_id, and a tb-sim that is stopped (fail modes while the service is down).

One tb-sim login per scenario, so one-time codes, pushes and faults never collide.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from pyrad import client as pyrad_client
from pyrad import packet

import harness
from harness import (access_request, code_name, decode_reply, q, radclient, raw_attributes,
                     reply_messages)

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

SECRET = "tb-radius-shared-secret"
DEFAULT_SRC, MENU_SRC, OPEN_SRC = "127.0.0.1", "127.0.0.2", "127.0.0.3"
SERVICE_ID = 4242
WRONG_SERVICE_ID = 4343
PUSH_TIMEOUT_S = 5  # policy push_timeout: the shortest the bridge allows
DUP_PUSH_AFTER_S = 2.5

# RFC 4226's test seed (hex), one per tool is fine: codes are checked per login.
SEED = "3132333435363738393031323334353637383930"

ANSI = re.compile(r"\x1b\[[0-9;]*m")

MSG_BAD_CODE = "Wrong security code"
MSG_NO_PUSH_DEVICE = "No device of yours can receive a push right now. Type a security code"
MSG_NO_FACTOR = "No device is set up for this kind of sign-in"
MSG_DENIED = "The sign-in request was denied on your phone."
MSG_TIMEOUT = "The sign-in request was not approved in time."
MSG_MISCONFIGURED = "Two-factor sign-in is not set up correctly"
MSG_UNAVAILABLE = "The two-factor service is unavailable"


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI=true."""
    if ok:
        return
    if CI:
        pytest.fail("%s (CI=true: the TrustBuilder tests must run)" % what)
    pytest.skip(what)


# ---------------------------------------------------------------------------------------------
# Configuration


def tool(kind, tid, alias, seed=SEED, state=0, push_enabled=None, push=None):
    out = ['[[users.tools]]\nkind = "%s"\nid = %d\nalias = "%s"\nstate = %d\n'
           % (kind, tid, alias, state)]
    if seed:
        out.append('seed = "%s"\n' % seed)
    if push_enabled is not None:
        out.append("push_enabled = %s\n" % ("true" if push_enabled else "false"))
    if push:
        out.append("push = %s\n" % push)
    return "".join(out)


def login(name, *tools):
    return '[[users]]\nlogin = "%s"\n%s\n' % (name, "".join(tools))


def app(tid, push="approve", after="300ms"):
    """An active mobile app registered for push, with a seed (codes)."""
    return tool("ma", tid, "ma%04d" % tid, push_enabled=True,
                push='{ action = "%s", after = "%s" }' % (push, after))


USERS = "".join([
    login("tbrc", app(1)),                      # radclient codes
    login("tbpy", app(2)),                      # pyrad codes
    login("tbpush", app(3, after="1s")),        # push approved after 1 s
    login("tbdeny", app(4, push="refuse")),     # push refused
    login("tbnever", app(5, push="ignore")),    # push never answered
    login("tbexpire", app(6, push="ignore")),   # the simulator says NOK:TIMEOUT (fault)
    login("tbdup", app(7, after="%gs" % DUP_PUSH_AFTER_S)),  # retransmits during the push
    login("tbnopush", tool("ma", 8, "ma0008", push_enabled=False)),  # app, not for push: NoPush
    login("tbnoma", tool("ca", 9, "ca0009")),   # desktop app only: NoMA
    login("tbnotool", tool("ma", 10, "ma0010", state=1, push_enabled=True)),  # locked tool only
    login("tbsn", app(11)),                     # forced NOK:SN
    login("tbwrongsvc", app(12)),               # the wrong-service_id bridge's target
    login("tbauth", app(13, after="500ms")),    # vip-bridge test-auth
    login("tbmetrics", app(14)),                # metrics
    login("tbmenu", app(15, after="500ms")),    # the menu of a push-capable user
    login("tbflaky", app(16)),                  # HTTP 503 for this login only
])
UNKNOWN = "tbghost"  # no such login in the service


def bridge_body(metrics=True):
    """Everything but `backend` and [trustbuilder] (bridge_toml_trustbuilder adds them)."""
    return """
[engine]
poll_interval = "300ms"

[engine.throttle]
push_per_user = {{ count = 50, per = "5m" }}
codes_per_user = {{ count = 100, per = "5m" }}

[policies.default]
push_timeout = "{push_timeout}s"

[policies.menu]
mode = "challenge"
push_timeout = "{push_timeout}s"

[policies.open]
fail_mode = "open"
push_timeout = "{push_timeout}s"

[radius]
listen = ["127.0.0.1:0"]
response_cache_ttl = "15s"
shutdown_timeout = "2s"

[[radius.clients]]
name = "nas"
address = "{default_src}"
secret = "{secret}"
policy = "default"

[[radius.clients]]
name = "nas-menu"
address = "{menu_src}"
secret = "{secret}"
policy = "menu"

[[radius.clients]]
name = "nas-open"
address = "{open_src}"
secret = "{secret}"
policy = "open"
{metrics}
[log]
format = "text"
level = "info"
""".format(push_timeout=PUSH_TIMEOUT_S, default_src=DEFAULT_SRC, menu_src=MENU_SRC,
           open_src=OPEN_SRC, secret=SECRET,
           metrics='\n[metrics]\nlisten = "127.0.0.1:0"\n' if metrics else "")


def tb_extra(health="2s"):
    return 'health_check_interval = "%s"\n' % health


# ---------------------------------------------------------------------------------------------
# Stacks


class TbStack:
    def __init__(self, workdir, tbsim, bridge):
        self.dir = workdir
        self.sim = tbsim
        self.bridge = bridge

    @property
    def addr(self):
        return self.bridge.addr()

    def log(self):
        return ANSI.sub("", self.bridge.log())

    def metrics(self):
        return harness.scrape_metrics(self.bridge.ready["metrics"])


def start_bridge(workdir, tbsim, certs, service_id=SERVICE_ID, health="2s"):
    os.makedirs(workdir, exist_ok=True)
    text = harness.bridge_toml_trustbuilder(tbsim, certs, bridge_body(), service_id=service_id,
                                            timeout="3s", extra=tb_extra(health))
    return harness.Bridge(workdir, text)


def stop_all(*procs):
    """Stops bridges first, then simulators; reports a bridge that did not exit cleanly."""
    for p in procs:
        if p is None:
            continue
        rc = p.stop()
        if isinstance(p, harness.Bridge) and rc not in (0, None):
            sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, p.log()))


@pytest.fixture(scope="module")
def peers():
    need(shutil.which("radclient"), "radclient (freeradius-utils) is not installed")


@pytest.fixture(scope="module")
def tb(peers, workroot, certs):
    workdir = os.path.join(workroot, "test_trustbuilder")
    os.makedirs(workdir, exist_ok=True)
    sim = harness.TbSim(workdir, harness.tb_sim_toml(certs, USERS, service_id=SERVICE_ID))
    bridge = None
    try:
        bridge = start_bridge(workdir, sim, certs)
        yield TbStack(workdir, sim, bridge)
    finally:
        stop_all(bridge, sim)


@pytest.fixture(scope="module")
def wrong_service(tb, workroot, certs):
    """A second bridge on the same tb-sim with a service_id the simulator does not know."""
    bridge = start_bridge(os.path.join(workroot, "test_trustbuilder", "wrong-service"), tb.sim,
                          certs, service_id=WRONG_SERVICE_ID)
    try:
        yield TbStack(bridge.dir, tb.sim, bridge)
    finally:
        stop_all(bridge)


@pytest.fixture
def udp():
    socks = []

    def make(source=DEFAULT_SRC):
        s = harness.Udp(source)
        socks.append(s)
        return s

    yield make
    for s in socks:
        s.close()


# ---------------------------------------------------------------------------------------------
# Helpers


def rc_login(stack, user, password, source=DEFAULT_SRC, state=None, timeout=15):
    """One radclient Access-Request (Message-Authenticator on) from `source`:
    (reply code name or None, {attribute: [values]}, radclient output)."""
    attrs = [("User-Name", q(user)), ("User-Password", q(password)),
             ("Message-Authenticator", "0x00")]
    if state is not None:
        attrs.append(("State", state))
    if source != DEFAULT_SRC:
        attrs.append(("Packet-Src-IP-Address", source))
    return radclient(stack.addr, SECRET, attrs, timeout=timeout, retries=1)


def reply_text(attrs):
    return "".join(v.strip('"') for v in attrs.get("Reply-Message", []))


def login_lines(log, user):
    pat = re.compile(r'\buser="?%s"?[\s,}]' % re.escape(user))
    return [l for l in log.splitlines() if "login round finished" in l and pat.search(l)]


def field(line, name):
    m = re.search(r'\b%s=(?:"([^"]*)"|([^\s,}]*))' % re.escape(name), line)
    if not m:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def last_round(stack, user, mark=0):
    """The `login round finished` line of `user`'s latest round after log offset `mark`."""
    lines = []
    for _ in range(30):  # written just before the reply: give the file a moment
        lines = login_lines(stack.log()[mark:], user)
        if lines:
            break
        time.sleep(0.1)
    assert lines, "no `login round finished` for %s:\n%s" % (user, stack.log()[mark:][-4000:])
    return lines[-1]


def strict_reply(req, raw):
    """pyrad's strict check of a reply (Message-Authenticator verified, and first)."""
    reply = decode_reply(raw, SECRET.encode())
    assert req.VerifyReply(reply, raw, enforce_ma=True), "pyrad refused the reply"
    assert raw_attributes(raw)[0][0] == 80, "Message-Authenticator is not the first attribute"
    return reply


def fresh_code(sim, user, min_left=4):
    """tb-sim's current code for `user`, with at least `min_left` s of its 30 s step left."""
    left = 30 - (time.time() % 30)
    if left < min_left:
        time.sleep(left + 0.2)
    return sim.current_code(user)


def other_code(code):
    """A 6-digit code that is not `code` (and, at 1-in-a-million odds per step, no other)."""
    return "%06d" % ((int(code) + 500000) % 1000000)


# ---------------------------------------------------------------------------------------------
# Codes


def test_radclient_code_accepted_once_then_replay_and_bad_code_rejected(tb):
    before = tb.sim.calls("authenticateExtended")
    code = fresh_code(tb.sim, "tbrc", min_left=8)
    got, attrs, out = rc_login(tb, "tbrc", code)
    assert got == "Access-Accept", out
    assert "Message-Authenticator" in attrs, out
    assert tb.sim.calls("authenticateExtended") == before + 1, "one call per attempt"

    # A good code is good once: the same code again is TrustBuilder's NOK:no device found.
    got, attrs, out = rc_login(tb, "tbrc", code)
    assert got == "Access-Reject", out
    assert MSG_BAD_CODE in reply_text(attrs), out
    assert tb.sim.calls("authenticateExtended") == before + 2
    line = last_round(tb, "tbrc")
    assert (field(line, "reason"), field(line, "vip_status")) == ("bad_code",
                                                                  "NOK:no device found"), line

    got, attrs, out = rc_login(tb, "tbrc", other_code(tb.sim.current_code("tbrc")))
    assert got == "Access-Reject", out
    assert MSG_BAD_CODE in reply_text(attrs), out
    assert tb.sim.calls("authenticateExtended") == before + 3


def test_pyrad_code_accepted_and_bad_code_rejected(tb, udp):
    host, port = tb.addr
    c = pyrad_client.Client(server=host, authport=port, secret=SECRET.encode(),
                            dict=harness.pyrad_dict(), enforce_ma=True, retries=1, timeout=10)
    before = tb.sim.calls("authenticateExtended")
    req = c.CreateAuthPacket(code=packet.AccessRequest, User_Name="tbpy")
    req["User-Password"] = req.PwCrypt(fresh_code(tb.sim, "tbpy", min_left=8))
    req.add_message_authenticator()
    assert c.SendPacket(req).code == packet.AccessAccept
    assert tb.sim.calls("authenticateExtended") == before + 1

    # Raw UDP, the reply checked strictly: a bad code is a signed Reject with a Reply-Message.
    s = udp()
    req, raw = access_request(SECRET.encode(), "tbpy", other_code(tb.sim.current_code("tbpy")))
    reply = s.exchange(raw, tb.addr, timeout=10)
    assert code_name(reply) == "Access-Reject"
    strict_reply(req, reply)
    assert MSG_BAD_CODE in reply_messages(reply)
    assert tb.sim.calls("authenticateExtended") == before + 2


# ---------------------------------------------------------------------------------------------
# Push


def test_push_approved(tb):
    before = (tb.sim.calls("pushAuthenticate"),)
    t0 = time.time()
    got, _, out = rc_login(tb, "tbpush", "push")
    took = time.time() - t0
    assert got == "Access-Accept", out
    assert took >= 0.9, "accepted before the app approved (%.2fs)" % took
    assert tb.sim.calls("pushAuthenticate") == before[0] + 1
    line = last_round(tb, "tbpush")
    assert (field(line, "outcome"), field(line, "factor")) == ("accept", "push"), line


def test_push_refused_rejected(tb):
    got, attrs, out = rc_login(tb, "tbdeny", "push")
    assert got == "Access-Reject", out
    assert MSG_DENIED in reply_text(attrs), out
    assert field(last_round(tb, "tbdeny"), "reason") == "push_denied"


def test_push_never_answered_rejected_after_push_timeout(tb):
    t0 = time.time()
    got, attrs, out = rc_login(tb, "tbnever", "push", timeout=PUSH_TIMEOUT_S + 10)
    took = time.time() - t0
    assert got == "Access-Reject", out
    assert MSG_TIMEOUT in reply_text(attrs), out
    # The bridge's own deadline (the simulator would wait 60 s): bounded on both sides.
    assert PUSH_TIMEOUT_S - 0.5 <= took <= PUSH_TIMEOUT_S + 3, "answered after %.1fs" % took
    assert field(last_round(tb, "tbnever"), "reason") == "push_timeout"


def test_push_simulator_timeout_status_rejected(tb):
    # TrustBuilder's own NOK:TIMEOUT on checkPushResult ends the login at once.
    tb.sim.set_user_faults("tbexpire", {"err": {"checkPushResult": "NOK:TIMEOUT"}})
    try:
        t0 = time.time()
        got, attrs, out = rc_login(tb, "tbexpire", "push")
        assert got == "Access-Reject", out
        assert MSG_TIMEOUT in reply_text(attrs), out
        assert time.time() - t0 < PUSH_TIMEOUT_S - 1, "waited for the bridge's own deadline"
        line = last_round(tb, "tbexpire")
        assert field(line, "reason") == "push_timeout", line
    finally:
        tb.sim.clear_faults("tbexpire")


def test_retransmits_during_push_make_one_push_and_one_answer(tb, udp):
    s = udp()
    pushes = tb.sim.calls("pushAuthenticate")
    req, raw = access_request(SECRET.encode(), "tbdup", "push")
    t0 = time.time()
    s.send(raw, tb.addr)
    for _ in range(3):  # the same datagram (Identifier + authenticator) while the push is pending
        time.sleep(0.5)
        s.send(raw, tb.addr)
    first = s.recv(timeout=15)
    assert first is not None, "no answer to the push login"
    assert code_name(first) == "Access-Accept", reply_messages(first)
    assert time.time() - t0 >= DUP_PUSH_AFTER_S - 0.3, "answered before the app approved"
    strict_reply(req, first)
    assert s.recv(timeout=1.0) is None, "a retransmit got an answer of its own"
    assert tb.sim.calls("pushAuthenticate") == pushes + 1, "a retransmit sent a second push"

    # After the answer: the byte-identical cached reply, no new TrustBuilder call.
    calls = tb.sim.counters()["calls"]
    again = s.exchange(raw, tb.addr, timeout=2)
    assert again == first, "the cached reply is not byte-identical"
    assert tb.sim.counters()["calls"] == calls


# ---------------------------------------------------------------------------------------------
# Users without push, without tools, unknown


@pytest.mark.parametrize("user,status", [("tbnopush", "NOK:NoPush"), ("tbnoma", "NOK:NoMA")])
def test_push_without_a_push_capable_app_says_type_a_code(tb, user, status):
    t0 = time.time()
    got, attrs, out = rc_login(tb, user, "push")
    assert got == "Access-Reject", out
    assert MSG_NO_PUSH_DEVICE in reply_text(attrs), out
    assert time.time() - t0 < 2, "not refused at once"
    line = last_round(tb, user)
    assert (field(line, "reason"), field(line, "vip_status")) == ("no_credential", status), line


@pytest.mark.parametrize("user", ["tbnopush", "tbnoma"])
def test_menu_of_a_user_without_push_offers_a_code_only(tb, user):
    got, attrs, out = rc_login(tb, user, "anything", source=MENU_SRC)
    assert got == "Access-Challenge", out
    assert reply_text(attrs) == "Enter your security code:", out
    state = attrs["State"][0]
    got, attrs, out = rc_login(tb, user, fresh_code(tb.sim, user), source=MENU_SRC, state=state)
    assert got == "Access-Accept", out


def test_menu_of_a_push_capable_user_offers_push_and_push_works(tb):
    got, attrs, out = rc_login(tb, "tbmenu", "", source=MENU_SRC)
    assert got == "Access-Challenge", out
    text = reply_text(attrs)
    assert "push" in text and "security code" in text, out
    # TrustBuilder sends no SMS and places no calls: never offered.
    assert "sms" not in text and "voice" not in text, out
    pushes = tb.sim.calls("pushAuthenticate")
    got, attrs, out = rc_login(tb, "tbmenu", "push", source=MENU_SRC, state=attrs["State"][0])
    assert got == "Access-Accept", out
    assert tb.sim.calls("pushAuthenticate") == pushes + 1


def test_menu_of_an_unknown_user_is_what_a_real_user_gets(tb):
    got, attrs, out = rc_login(tb, "tbmenu", "", source=MENU_SRC)
    assert got == "Access-Challenge", out
    real = reply_text(attrs)
    got, attrs, out = rc_login(tb, UNKNOWN, "", source=MENU_SRC)
    assert got == "Access-Challenge", out
    assert reply_text(attrs) == real, "unknown user's menu %r != a real user's %r" % (
        reply_text(attrs), real)


def test_sms_keyword_answers_an_unknown_user_as_a_real_one(tb):
    got_real, attrs, out = rc_login(tb, "tbmenu", "sms")
    real = (got_real, reply_text(attrs))
    got, attrs, out = rc_login(tb, UNKNOWN, "sms")
    assert (got, reply_text(attrs)) == real, out


def test_unknown_user_rejected_like_a_wrong_code(tb):
    got, attrs, out = rc_login(tb, UNKNOWN, "123456")
    assert got == "Access-Reject", out
    assert MSG_BAD_CODE in reply_text(attrs), out  # no account oracle (helpful_messages off)
    line = last_round(tb, UNKNOWN)
    assert field(line, "reason") == "unknown_user", line
    assert field(line, "vip_status").startswith("NOK:account unknown"), line

    got, attrs, out = rc_login(tb, UNKNOWN, "push")
    assert got == "Access-Reject", out
    line = last_round(tb, UNKNOWN)
    assert (field(line, "reason"), field(line, "vip_status")) == ("no_credential",
                                                                  "NOK:NOLOGIN"), line


def test_user_without_an_active_tool_rejected_with_a_clear_message(tb):
    # The menu reads the tools (provisioning): none active, so nothing to offer.
    got, attrs, out = rc_login(tb, "tbnotool", "", source=MENU_SRC)
    assert got == "Access-Reject", out
    assert MSG_NO_FACTOR in reply_text(attrs), out
    assert field(last_round(tb, "tbnotool"), "reason") == "no_credential"
    # A push: no active app.
    got, attrs, out = rc_login(tb, "tbnotool", "push")
    assert got == "Access-Reject", out
    assert MSG_NO_PUSH_DEVICE in reply_text(attrs), out
    # The locked tool's own code is refused (TrustBuilder: only state 0 authenticates).
    got, attrs, out = rc_login(tb, "tbnotool", tb.sim.tool_code("ma0010"))
    assert got == "Access-Reject", out
    assert field(last_round(tb, "tbnotool"), "reason") == "bad_code"


# ---------------------------------------------------------------------------------------------
# Misconfiguration never fails open


def assert_misconfigured_not_failed_open(stack, user, password, mark):
    got, attrs, out = rc_login(stack, user, password, source=OPEN_SRC)
    assert got == "Access-Reject", out
    assert MSG_MISCONFIGURED in reply_text(attrs), out
    line = last_round(stack, user, mark)
    assert field(line, "reason") == "misconfigured", line
    assert field(line, "failed_open") == "false", line
    return line


def test_wrong_service_id_rejects_as_misconfigured_never_fails_open(wrong_service):
    st = wrong_service
    mark = len(st.log())
    before = st.metrics()
    calls = st.sim.counters()["calls"]
    assert_misconfigured_not_failed_open(st, "tbwrongsvc", fresh_code(st.sim, "tbwrongsvc"),
                                         mark)
    assert_misconfigured_not_failed_open(st, "tbwrongsvc", "push", mark)
    after = st.metrics()
    assert after.get("vip_bridge_fail_opens_total", 0) == before.get(
        "vip_bridge_fail_opens_total", 0)
    key = 'vip_bridge_rejects_total{reason="misconfigured"}'
    assert after.get(key, 0) == before.get(key, 0) + 2
    # Both reached the simulator, which answered NOK:srv unknown; the ERROR line says so.
    now = st.sim.counters()["calls"]
    assert now.get("authenticateExtended", 0) == calls.get("authenticateExtended", 0) + 1
    assert now.get("pushAuthenticate", 0) == calls.get("pushAuthenticate", 0) + 1
    log = st.log()[mark:]
    # Repeated problems are logged at most once a second: read this bridge's whole log (it
    # has no other problem than its service_id).
    errors = [l for l in st.log().splitlines() if " ERROR " in l]
    assert any("misconfiguration" in l and "never failing open" in l
               and "NOK:srv unknown" in l for l in errors), log[-3000:]
    assert "FAIL-OPEN" not in log


def test_misconfiguration_error_line_names_what_to_check_in_trustbuilder(wrong_service):
    st = wrong_service
    mark = len(st.log())
    assert_misconfigured_not_failed_open(st, "tbwrongsvc", "123456", mark)
    errors = [l for l in st.log().splitlines() if " ERROR " in l]
    assert errors, st.log()[mark:]
    assert not any("vip.auth_url" in l for l in errors), errors
    assert any("trustbuilder.service_id" in l for l in errors), errors


def test_forced_nok_sn_rejects_as_misconfigured_never_fails_open(tb):
    tb.sim.set_user_faults("tbsn", {"err": {"authenticateExtended": "NOK:SN"}})
    try:
        mark = len(tb.log())
        before = tb.metrics().get("vip_bridge_fail_opens_total", 0)
        assert_misconfigured_not_failed_open(tb, "tbsn", fresh_code(tb.sim, "tbsn"), mark)
        assert tb.metrics().get("vip_bridge_fail_opens_total", 0) == before
        errors = [l for l in tb.log().splitlines() if " ERROR " in l and "NOK:SN" in l]
        assert any("never failing open" in l for l in errors), errors
    finally:
        tb.sim.clear_faults("tbsn")


def test_outage_for_one_login_on_a_healthy_service_never_fails_open(tb):
    """HTTP 503 for one login's calls while the service is healthy (the health check's own call
    succeeds): an outage the health check does not confirm, so even `open` rejects."""
    tb.sim.set_user_faults("tbflaky", {"http_status": 503})
    try:
        before = tb.metrics()
        for source in (DEFAULT_SRC, OPEN_SRC):
            mark = len(tb.log())
            got, attrs, out = rc_login(tb, "tbflaky", "123456", source=source)
            assert got == "Access-Reject", out
            assert MSG_UNAVAILABLE in reply_text(attrs), out
            line = last_round(tb, "tbflaky", mark)
            assert (field(line, "reason"), field(line, "failed_open")) == ("unavailable",
                                                                           "false"), line
        after = tb.metrics()
        assert after.get("vip_bridge_fail_opens_total", 0) == before.get(
            "vip_bridge_fail_opens_total", 0)
    finally:
        tb.sim.clear_faults("tbflaky")


# ---------------------------------------------------------------------------------------------
# The service down


def test_service_down_closed_rejects_open_fails_open_only_when_confirmed(peers, workroot, certs):
    """tb-sim stopped: an outage. `closed` (the default) -> Reject `unavailable`; `open` ->
    Accept without a second factor, failed_open=true, because the health check (re-run at
    once after the failed call) agrees the service is down."""
    workdir = os.path.join(workroot, "test_trustbuilder", "down")
    os.makedirs(workdir, exist_ok=True)
    sim = harness.TbSim(workdir, harness.tb_sim_toml(certs, login("tbdown", app(1))))
    bridge = None
    try:
        bridge = start_bridge(workdir, sim, certs, health="1s")
        st = TbStack(workdir, sim, bridge)
        # Up: the bridge does reach it.
        got, _, out = rc_login(st, "tbdown", fresh_code(sim, "tbdown"))
        assert got == "Access-Accept", out
        got, _, out = rc_login(st, "tbdown", "000000", source=OPEN_SRC)
        assert got == "Access-Reject", out  # up and answering: a bad code, even when open
        sim.stop()

        mark = len(st.log())
        got, attrs, out = rc_login(st, "tbdown", "123456")
        assert got == "Access-Reject", out
        assert MSG_UNAVAILABLE in reply_text(attrs), out
        line = last_round(st, "tbdown", mark)
        assert (field(line, "reason"), field(line, "failed_open")) == ("unavailable",
                                                                       "false"), line

        fo = st.metrics().get("vip_bridge_fail_opens_total", 0)
        mark = len(st.log())
        got, _, out = rc_login(st, "tbdown", "123456", source=OPEN_SRC)
        assert got == "Access-Accept", out
        line = last_round(st, "tbdown", mark)
        assert (field(line, "outcome"), field(line, "failed_open")) == ("accept", "true"), line
        assert st.metrics().get("vip_bridge_fail_opens_total", 0) == fo + 1
        assert "FAIL-OPEN" in st.log()[mark:]
    finally:
        stop_all(bridge, sim)


# ---------------------------------------------------------------------------------------------
# check-config, test-auth, metrics


def run_bridge_cli(*args, timeout=30):
    """(exit status, stdout, stderr) of `vip-bridge ARGS`."""
    p = subprocess.run([harness.find_binary("vip-bridge")] + list(args), capture_output=True,
                       timeout=timeout, env=dict(os.environ, NO_COLOR="1"))
    dec = lambda b: ANSI.sub("", b.decode("utf-8", "replace"))  # noqa: E731
    return p.returncode, dec(p.stdout), dec(p.stderr)


def write_config(directory, name, text):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_check_config_reaches_trustbuilder(tb):
    before = tb.sim.calls("checkPushResult"), tb.sim.calls("loginSearch")
    rc, out, err = run_bridge_cli("check-config", "--config", tb.bridge.config)
    assert rc == 0, out + err
    assert "OK (3 RADIUS client(s)" in out, out
    assert re.search(r"TrustBuilder reachable: authentication API OK in \d+ ms \(service %d\)"
                     % SERVICE_ID, out), out
    assert re.search(r"TrustBuilder provisioning API \(loginSearch\) OK in \d+ ms", out), out
    # Both APIs were really called (health probes may add more checkPushResults).
    assert tb.sim.calls("checkPushResult") >= before[0] + 1
    assert tb.sim.calls("loginSearch") == before[1] + 1


def test_check_config_fails_on_a_wrong_service_id(wrong_service):
    rc, out, err = run_bridge_cli("check-config", "--config", wrong_service.bridge.config)
    assert rc == 1, out + err
    assert "TrustBuilder reachable" not in out, out
    # TrustBuilder's own words for it.
    assert "NOK:srv unknown" in err, out + err


def test_check_config_wrong_service_id_names_the_key(wrong_service):
    rc, out, err = run_bridge_cli("check-config", "--config", wrong_service.bridge.config)
    assert rc == 1, out + err
    assert "trustbuilder.service_id" in err and str(WRONG_SERVICE_ID) in err, err


def test_check_config_offline_needs_no_simulator(tb, workroot, certs):
    class Nowhere:
        api_url = "https://127.0.0.1:%d" % harness.free_port()

    text = harness.bridge_toml_trustbuilder(Nowhere, certs, bridge_body(metrics=False))
    path = write_config(os.path.join(workroot, "test_trustbuilder", "cli"), "offline.toml", text)
    rc, out, err = run_bridge_cli("check-config", "--offline", "--config", path)
    assert rc == 0, out + err
    assert "OK (3 RADIUS client(s)" in out, out
    assert "TrustBuilder reachable" not in out, out
    # Online, the same file fails: nothing listens there.
    rc, out, err = run_bridge_cli("check-config", "--config", path)
    assert rc == 1, out + err
    assert "TrustBuilder reachable" not in out, out


def test_check_config_backend_without_its_section_names_the_key(workroot):
    text = 'backend = "trustbuilder"\n' + bridge_body(metrics=False)
    path = write_config(os.path.join(workroot, "test_trustbuilder", "cli"), "nosection.toml",
                        text)
    rc, out, err = run_bridge_cli("check-config", "--offline", "--config", path)
    assert rc == 1, out + err
    assert 'backend = "trustbuilder" needs a [trustbuilder] section' in err, err
    assert "service_id" in err, err


def test_test_auth_accepts_a_code_and_a_push(tb):
    before = tb.sim.calls("authenticateExtended")
    rc, out, err = run_bridge_cli("test-auth", "--config", tb.bridge.config, "tbauth",
                                  fresh_code(tb.sim, "tbauth", min_left=8))
    assert rc == 0, out + err
    assert "ACCEPT" in out, out
    assert tb.sim.calls("authenticateExtended") == before + 1
    rc, out, err = run_bridge_cli("test-auth", "--config", tb.bridge.config, "tbauth",
                                  other_code(tb.sim.current_code("tbauth")))
    assert rc == 1, out + err
    assert "REJECT" in out and "bad_code" in out, out
    pushes = tb.sim.calls("pushAuthenticate")
    rc, out, err = run_bridge_cli("test-auth", "--config", tb.bridge.config, "--push", "tbauth")
    assert rc == 0, out + err
    assert "ACCEPT" in out and "factor push" in out, out
    assert tb.sim.calls("pushAuthenticate") == pushes + 1


def test_metrics_count_trustbuilder_calls(tb):
    def count():
        total = 0.0
        for k, v in tb.metrics().items():
            if (k.startswith("vip_bridge_mfa_call_duration_seconds_count{")
                    and 'backend="trustbuilder"' in k
                    and 'operation="authenticateExtended"' in k):
                total += v
        return total

    before = count()
    got, _, out = rc_login(tb, "tbmetrics", fresh_code(tb.sim, "tbmetrics"))
    assert got == "Access-Accept", out
    assert count() == before + 1, [k for k in tb.metrics() if "mfa_call" in k]
    # VIP's own series are not fed by TrustBuilder calls.
    assert not any(k.startswith("vip_bridge_vip_call_duration_seconds_count{")
                   and 'operation="authenticateExtended"' in k for k in tb.metrics())
