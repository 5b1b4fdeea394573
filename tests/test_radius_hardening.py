"""Attacks on the RADIUS front door, replayed end to end against the real daemon (issue
"Hardening"): a second login riding on a user's pending push, a forged request that proves
nothing, and log injection through the User-Name."""

import threading
import time

from conftest import NAS_SECRET, PAM_SECRET, PAM_SOURCE
from harness import access_request, code_name

SECRET = NAS_SECRET.encode()


def _login(stack, udp, results, key, **attrs):
    s = udp()
    _, raw = access_request(SECRET, "dave", "push", **attrs)
    reply = s.exchange(raw, stack.addr, timeout=15)
    results[key] = code_name(reply) if reply else None


def test_a_second_session_never_rides_on_a_pending_push(stack, udp):
    # dave's phone approves 3 s after each push. The user's own login (NAS port 1) and an
    # attacker's (another Calling-Station-Id) at the same time: two pushes, not one.
    before = stack.sim.calls("authenticateUserWithPush")
    results = {}
    own = threading.Thread(target=_login, args=(stack, udp, results, "own"),
                           kwargs=dict(Calling_Station_Id="198.51.100.7", NAS_Port=1))
    own.start()
    time.sleep(0.5)
    other = threading.Thread(target=_login, args=(stack, udp, results, "other"),
                             kwargs=dict(Calling_Station_Id="203.0.113.66", NAS_Port=2))
    other.start()
    own.join()
    other.join()
    assert results == {"own": "Access-Accept", "other": "Access-Accept"}, results
    assert stack.sim.calls("authenticateUserWithPush") == before + 2, "a login joined another's push"
    # The same NAS session retrying with a new Identifier joins the pending push instead.
    results = {}
    first = threading.Thread(target=_login, args=(stack, udp, results, "first"),
                             kwargs=dict(Calling_Station_Id="198.51.100.8", NAS_Port=3))
    first.start()
    time.sleep(0.5)
    _login(stack, udp, results, "retry", Calling_Station_Id="198.51.100.8", NAS_Port=3)
    first.join()
    assert results == {"first": "Access-Accept", "retry": "Access-Accept"}, results
    assert stack.sim.calls("authenticateUserWithPush") == before + 3


def test_a_request_that_proves_nothing_starts_nothing(stack, udp):
    # The legacy client may omit Message-Authenticator; a packet without it and without
    # User-Password could come from anyone who can reach the port: no push, no VIP call.
    before = stack.sim.counters()["calls"]
    s = udp(source=PAM_SOURCE)
    _, raw = access_request(PAM_SECRET.encode(), "dave", None, ma=False)
    reply = s.exchange(raw, stack.addr, timeout=5)
    assert reply is not None and code_name(reply) == "Access-Reject"
    time.sleep(0.3)
    assert stack.sim.counters()["calls"] == before, "a forged request reached VIP"


def test_a_newline_in_the_user_name_cannot_forge_a_log_line(stack, udp):
    s = udp()
    forged = 'mallory\n2026-01-01T00:00:00Z  INFO login round finished outcome="accept" user=root'
    _, raw = access_request(SECRET, forged, "123456")
    reply = s.exchange(raw, stack.addr, timeout=5)
    assert reply is not None and code_name(reply) == "Access-Reject"
    time.sleep(0.3)
    log = stack.bridge.log()
    assert "mallory\\u{a}2026" in log, log[-2000:]
    assert not any(line.startswith("2026-01-01T00:00:00Z") for line in log.splitlines()), log[-2000:]
