"""OpenVPN 2.6 + radiusplugin (openvpn-auth-radius) in front of vip-bridge, end to end.

A network namespace made for this module (radiusplugin truncates RADIUS ports to four digits, so
vip-bridge must be on 1812/1813, which only a namespace of our own guarantees are free) holds
vip-sim, vip-bridge (RADIUS 127.0.0.1:1812, accounting 127.0.0.1:1813), an OpenVPN server with
radiusplugin (EC certificates from a throwaway CA, `verify-client-cert none`,
`username-as-common-name`) and the OpenVPN clients (`auth-user-pass`, `auth-retry none`,
`ifconfig-noexec`, `route-noexec`). radiusplugin sends no Message-Authenticator, needs its
Accounting-Request Start answered or the connection fails, retries a request as a new one (new
source port and authenticator, same Acct-Session-Id) and shows any denial as AUTH_FAILED.

Cases: a code login connects, its accounting Start and (on disconnect) Stop reach vip-bridge; a
wrong code is AUTH_FAILED; a blocking push the phone approves after radiusplugin's retry `wait`
connects with exactly one push at VIP; a denied push is AUTH_FAILED.

Needs root, openvpn, radiusplugin, ip (iproute2), openssl and /dev/net/tun. Without them the
module is skipped, except under CI=true where it fails.
"""

import os
import re
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from vpn_openvpn import stack as ovpn  # noqa: E402

CONNECTED = "Initialization Sequence Completed"
AUTH_FAILED = "AUTH_FAILED"

# radiusplugin's `wait` (seconds before it sends a request again, as a new request) and the
# phone's delay in the slow-push case: the push must outlast one wait.
PLUGIN_WAIT_S = 10
SLOW_PUSH_MS = 13000


def _secret(user):
    import base64
    import hashlib

    return base64.b32encode(hashlib.sha1(("vip-bridge-ovpn-" + user).encode()).digest()).decode()


USERS = {
    "ov-code": {"secret": _secret("ov-code")},
    "ov-wrong": {"secret": _secret("ov-wrong")},
    "ov-push": {"secret": _secret("ov-push"), "push": "approve", "delay_ms": SLOW_PUSH_MS},
    "ov-deny": {"secret": _secret("ov-deny"), "push": "deny", "delay_ms": 500},
}


def _ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def vpn():
    missing = ovpn.missing_tools()
    if missing:
        msg = "OpenVPN + radiusplugin e2e needs: " + ", ".join(missing)
        if _ci():
            pytest.fail(msg + " (CI=true: a missing peer is a failure, not a skip)", pytrace=False)
        pytest.skip(msg)
    s = ovpn.Stack(USERS, keep_tmp=bool(os.environ.get("VIP_BRIDGE_KEEP_TMP")))
    try:
        yield s
    finally:
        errors = s.close()
        assert not errors, "teardown: %s" % errors


# ---------------------------------------------------------------------------------------------
# helpers


def _series(metrics, name, **labels):
    """The sum of the series `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


def _sessions(vpn):
    return _series(vpn.metrics(), "vip_bridge_radius_accounting_sessions", client="openvpn")


def _acct(vpn, status):
    return _series(vpn.metrics(), "vip_bridge_radius_accounting_requests_total",
                   client="openvpn", status=status)


def _acct_log_lines(vpn, status, user):
    pat = re.compile(r'\baccounting\b.*\bstatus="?%s"?.*\buser="?%s"?'
                     % (re.escape(status), re.escape(user)))
    return [line for line in vpn.bridge.log().splitlines() if pat.search(line)]


def _wait(pred, timeout, step=0.2):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v or time.time() > deadline:
            return v
        time.sleep(step)


def _ctx(vpn):
    """Every peer's log tail, for a failure message."""
    return vpn.logs()


def _connect(vpn, user, password, timeout):
    """Starts a client; returns (client, what it ended with: CONNECTED, AUTH_FAILED or None)."""
    c = vpn.client(user, password)
    got = c.wait_for(CONNECTED, timeout, fail_on=(AUTH_FAILED,))
    return c, got


def _assert_refused(vpn, c, got):
    assert got == AUTH_FAILED, "expected AUTH_FAILED, got %r\n%s" % (got, _ctx(vpn))
    # auth-retry none: the client gives up and exits without ever bringing the tunnel up.
    c.wait(timeout=30)
    log = c.log()
    assert CONNECTED not in log, _ctx(vpn)
    assert "PUSH_REPLY" not in log, "the refused client got a tunnel configuration\n" + _ctx(vpn)


# ---------------------------------------------------------------------------------------------
# cases


def test_code_login_connects_with_accounting_start_and_stop(vpn):
    assert vpn.ready.get("accounting") == ["127.0.0.1:1813"], vpn.ready
    user = "ov-code"
    checks = vpn.sim_calls("authenticateUser")
    starts, stops = _acct(vpn, "Start"), _acct(vpn, "Stop")
    assert _sessions(vpn) == 0

    c, got = _connect(vpn, user, harness.fresh_totp(USERS[user]["secret"], min_left=8), 60)
    assert got == CONNECTED, "the code login did not connect (%r)\n%s" % (got, _ctx(vpn))
    assert re.search(r"PUSH_REPLY,.*ifconfig 10\.77\.0\.\d+ 255\.255\.255\.0", c.log()), c.log()
    assert vpn.sim_calls("authenticateUser") == checks + 1

    # radiusplugin sends the Start before the client is told its address; vip-bridge answered
    # it (else no tunnel) and recorded it: one Start, one live session, a log line.
    assert _acct(vpn, "Start") == starts + 1, _ctx(vpn)
    assert _sessions(vpn) == 1, _ctx(vpn)
    start_lines = _acct_log_lines(vpn, "Start", user)
    assert len(start_lines) == 1, _ctx(vpn)
    assert "10.77.0." in start_lines[0], start_lines

    # Disconnect (explicit-exit-notify): the server tears the client down and sends the Stop.
    c.signal(signal.SIGTERM)
    c.wait(timeout=20)
    assert _wait(lambda: _acct(vpn, "Stop") == stops + 1, 30), "no Stop\n" + _ctx(vpn)
    assert _sessions(vpn) == 0, _ctx(vpn)
    assert len(_acct_log_lines(vpn, "Stop", user)) == 1, _ctx(vpn)


def test_wrong_code_is_auth_failed(vpn):
    user = "ov-wrong"
    checks = vpn.sim_calls("authenticateUser")
    starts = _acct(vpn, "Start")
    c, got = _connect(vpn, user, harness.wrong_code(USERS[user]["secret"]), 60)
    _assert_refused(vpn, c, got)
    assert vpn.sim_calls("authenticateUser") == checks + 1, _ctx(vpn)
    assert _acct(vpn, "Start") == starts, "a refused login was accounted\n" + _ctx(vpn)
    assert not _acct_log_lines(vpn, "Start", user)


def test_slow_blocking_push_connects_with_one_push(vpn):
    """The phone answers after radiusplugin's `wait`: radiusplugin sends the request again (new
    source port and authenticator); vip-bridge joins it to the pending push instead of sending a
    second one, and the answer to the retry lets the client in."""
    user = "ov-push"
    pushes = vpn.sim_calls("authenticateUserWithPush")
    accepts = _series(vpn.metrics(), "vip_bridge_radius_replies_total", code="Access-Accept")
    starts = _acct(vpn, "Start")
    t0 = time.time()
    c, got = _connect(vpn, user, "push", 75)
    elapsed = time.time() - t0
    assert got == CONNECTED, "the approved push did not connect (%r)\n%s" % (got, _ctx(vpn))
    assert elapsed >= SLOW_PUSH_MS / 1000.0, "connected before the phone approved"
    assert vpn.sim_calls("authenticateUserWithPush") == pushes + 1, \
        "radiusplugin's retry sent a second push\n" + _ctx(vpn)
    # The retry did happen (else this case proves nothing): the first request and its retry
    # were each answered with an Accept when the phone approved.
    answered = _series(vpn.metrics(), "vip_bridge_radius_replies_total",
                       code="Access-Accept") - accepts
    assert answered >= 2, "radiusplugin did not retry (%d Accept)\n%s" % (answered, _ctx(vpn))
    assert _acct(vpn, "Start") == starts + 1, _ctx(vpn)
    assert len(_acct_log_lines(vpn, "Start", user)) == 1, _ctx(vpn)
    assert _sessions(vpn) == 1, _ctx(vpn)
    stops = _acct(vpn, "Stop")
    c.signal(signal.SIGTERM)
    c.wait(timeout=20)
    assert _wait(lambda: _acct(vpn, "Stop") == stops + 1, 30), "no Stop\n" + _ctx(vpn)
    assert _sessions(vpn) == 0, _ctx(vpn)


def test_denied_push_is_auth_failed(vpn):
    user = "ov-deny"
    pushes = vpn.sim_calls("authenticateUserWithPush")
    starts = _acct(vpn, "Start")
    c, got = _connect(vpn, user, "push", 60)
    _assert_refused(vpn, c, got)
    assert vpn.sim_calls("authenticateUserWithPush") == pushes + 1, _ctx(vpn)
    assert _acct(vpn, "Start") == starts, _ctx(vpn)
