"""The [metrics] endpoint end to end: vip-sim + `vip-bridge serve` with `[metrics]` on loopback;
an accept, a reject and a retransmit over RADIUS, then `GET /metrics` shows exactly those."""

import os
import re
import sys
import time
import urllib.error
import urllib.request

import pytest

import harness
from conftest import NAS_SECRET, SIM_POLICY, UNKNOWN_SOURCE, USERS, bridge_toml, sim_users_toml
from harness import access_request, code_name, fresh_totp, wrong_code

SECRET = NAS_SECRET.encode()


@pytest.fixture(scope="module")
def mstack(workroot, certs):
    workdir = os.path.join(workroot, "metrics")
    os.makedirs(workdir, exist_ok=True)
    sim = harness.Sim(workdir, harness.sim_toml(certs, sim_users_toml(), SIM_POLICY))
    bridge = None
    try:
        text = bridge_toml(sim, certs) + '\n[metrics]\nlisten = "127.0.0.1:0"\n'
        bridge = harness.Bridge(workdir, text)
        yield sim, bridge
    finally:
        rc = bridge.stop() if bridge else None
        sim.stop()
        if bridge is not None and rc != 0:
            sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, bridge.log()))


def scrape(bridge, path="/metrics"):
    with urllib.request.urlopen("http://%s%s" % (bridge.ready["metrics"], path), timeout=5) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


def value(text, series):
    """The value of one exact series (name + labels as printed), or None."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_accept_reject_retransmit_are_counted(mstack, udp):
    sim, bridge = mstack
    assert bridge.ready["metrics"].startswith("127.0.0.1:")
    _, before = scrape(bridge)
    assert value(before, 'vip_bridge_logins_total{front_door="radius",factor="code",'
                         'outcome="accept"}') is None, before

    s = udp()
    req, raw = access_request(SECRET, "alice", fresh_totp(USERS["alice"]))
    first = s.exchange(raw, bridge.addr(), timeout=10)
    assert code_name(first) == "Access-Accept"
    # A retransmit of the answered request: the cached reply, counted as such.
    again = s.exchange(raw, bridge.addr(), timeout=5)
    assert again == first

    _, raw = access_request(SECRET, "bob", wrong_code(USERS["bob"]))
    assert code_name(s.exchange(raw, bridge.addr(), timeout=10)) == "Access-Reject"

    # A datagram from a source that is no client.
    stranger = udp(source=UNKNOWN_SOURCE)
    stranger.send(access_request(SECRET, "alice", "123456")[1], bridge.addr())

    ctype, text = scrape(bridge)
    assert ctype.startswith("application/openmetrics-text"), ctype
    expect = {
        'vip_bridge_logins_total{front_door="radius",factor="code",outcome="accept"}': 1,
        'vip_bridge_logins_total{front_door="radius",factor="code",outcome="reject"}': 1,
        'vip_bridge_rejects_total{reason="bad_code"}': 1,
        'vip_bridge_vip_call_duration_seconds_count{operation="authenticateUser",status="0000"}': 1,
        'vip_bridge_vip_call_duration_seconds_count{operation="authenticateUser",status="6009"}': 1,
        "vip_bridge_vip_calls_in_flight": 0,
        "vip_bridge_pending_pushes": 0,
        "vip_bridge_fail_opens_total": 0,
        "vip_bridge_radius_retransmits_answered_from_cache_total": 1,
        'vip_bridge_radius_replies_total{code="Access-Accept"}': 1,
        'vip_bridge_radius_replies_total{code="Access-Reject"}': 1,
    }
    # The stranger's datagram is handled asynchronously: wait for it to be counted.
    for _ in range(50):
        if value(text, "vip_bridge_radius_unknown_clients_total") == 1:
            break
        time.sleep(0.1)
        _, text = scrape(bridge)
    expect["vip_bridge_radius_unknown_clients_total"] = 1
    expect['vip_bridge_radius_dropped_total{cause="unknown_client"}'] = 1
    for series, want in expect.items():
        assert value(text, series) == want, "%s: want %s in\n%s" % (series, want, text)
    assert sim.calls("authenticateUser") == 2
    # Nothing per-user or secret leaks into labels.
    assert "alice" not in text and "bob" not in text and NAS_SECRET not in text
    assert re.search(r"^# EOF$", text, re.M), text


def test_other_paths_are_404(mstack):
    _, bridge = mstack
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(bridge, "/")
    assert e.value.code == 404
