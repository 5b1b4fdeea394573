"""RADIUS accounting (RFC 2866) end to end: a real vip-sim and `vip-bridge serve` (info level,
as in production, with [metrics]), and the real `radclient ... acct SECRET` (freeradius-utils),
which verifies each Accounting-Response's authenticator itself.

Start, Interim-Update and Stop are answered; the sessions gauge goes 1 then 0; the Start's log
line names the user and the session; a wrong secret gets no answer and a warning; an unknown
source is dropped like on the authentication port; `accounting_listen = []` turns it off.
"""

import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import time

import pytest

import harness
from conftest import NAS_SECRET, SIM_POLICY, UNKNOWN_SOURCE, bridge_toml, sim_users_toml

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

WRONG_SECRET = "not-the-secret-4242"  # must never appear in the log
WARN = r"^\S+\s+WARN vip_bridge::radius::server: "
BAD_AUTH = ("client nas (127.0.0.1): Accounting-Request authenticator does not verify: wrong "
            "shared secret? Set the same secret at the NAS and in this client's "
            "[[radius.clients]] entry")
UNKNOWN = 'unknown client %s: add it to [[radius.clients]] (address = "%s")'


def need_radclient():
    if shutil.which("radclient"):
        return
    if CI:
        pytest.fail("radclient (freeradius-utils) not installed (CI=true: must run)")
    pytest.skip("radclient (freeradius-utils) not installed")


def start_bridge(workroot, certs, name, extra_radius=""):
    """(sim, bridge) with [metrics]; `extra_radius` goes into [radius]."""
    workdir = os.path.join(workroot, name)
    os.makedirs(workdir, exist_ok=True)
    sim = harness.Sim(workdir, harness.sim_toml(certs, sim_users_toml(), SIM_POLICY))
    try:
        text = bridge_toml(sim, certs)
        if extra_radius:
            text = text.replace("[radius]\n", "[radius]\n" + extra_radius + "\n", 1)
        text += '\n[metrics]\nlisten = "127.0.0.1:0"\n'
        # An empty RUST_LOG leaves `[log] level` (info): the accounting lines are info.
        return sim, harness.Bridge(workdir, text, env={"RUST_LOG": ""})
    except Exception:
        sim.stop()
        raise


@pytest.fixture(scope="module")
def acct(workroot, certs):
    sim, bridge = start_bridge(workroot, certs, "accounting")
    try:
        yield bridge
    finally:
        rc = bridge.stop()
        sim.stop()
        if rc != 0:
            sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, bridge.log()))


def acct_addr(bridge):
    for a in bridge.ready["accounting"]:
        host, port = a.rsplit(":", 1)
        if not host.startswith("["):
            return host, int(port)
    raise LookupError("no IPv4 accounting listener in %s" % bridge.ready["accounting"])


def radclient_acct(addr, secret, attrs, timeout=2, retries=1):
    """`radclient -x ... acct SECRET`: (reply code name or None, output)."""
    text = ", ".join("%s = %s" % kv for kv in attrs) + "\n"
    p = subprocess.run(
        ["radclient", "-x", "-t", str(timeout), "-r", str(retries),
         "%s:%d" % addr, "acct", secret],
        input=text.encode(), capture_output=True, timeout=timeout * (retries + 1) + 10)
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    code = None
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("Received "):
            code = s.split()[1]
    return code, out


def metric(bridge, series):
    return harness.scrape_metrics(bridge.ready["metrics"]).get(series, 0.0)


def sessions(bridge):
    return metric(bridge, 'vip_bridge_radius_accounting_sessions{client="nas"}')


def requests(bridge, status):
    return metric(bridge, 'vip_bridge_radius_accounting_requests_total{client="nas",status="%s"}'
                  % status)


def wait_log(bridge, pattern, timeout=5.0):
    """The first log line matching `pattern` (a regex), or None at the deadline."""
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while True:
        for line in bridge.log().splitlines():
            if rx.search(line):
                return line
        if time.time() > deadline:
            return None
        time.sleep(0.05)


def test_ready_file_and_log_name_the_accounting_listeners(acct):
    assert len(acct.ready["accounting"]) == 2, acct.ready
    # Port 0 in listen stays 0 for accounting: each got a free port of its own.
    assert not set(acct.ready["accounting"]) & set(acct.ready["radius"]), acct.ready
    line = wait_log(acct, r" INFO .*: ready ")
    assert line and "accounting=%s" % acct.ready["accounting"][0] in line, line


def test_start_interim_stop_are_answered_and_counted(acct):
    need_radclient()
    addr = acct_addr(acct)
    session = "vpn-%d" % os.getpid()
    common = [("User-Name", harness.q("alice")), ("Acct-Session-Id", harness.q(session)),
              ("NAS-IP-Address", "127.0.0.1"), ("Framed-IP-Address", "10.8.0.6")]
    before = {s: requests(acct, s) for s in ("Start", "Interim-Update", "Stop")}

    code, out = radclient_acct(addr, NAS_SECRET, [("Acct-Status-Type", "Start")] + common)
    assert code == "Accounting-Response", out
    assert sessions(acct) == 1
    line = wait_log(acct, r" INFO .*accounting client=nas status=Start user=alice "
                          r"session_id=%s framed_ip=10\.8\.0\.6" % re.escape(session))
    assert line, acct.log()[-3000:]

    code, out = radclient_acct(addr, NAS_SECRET, [("Acct-Status-Type", "Interim-Update"),
                                                  ("Acct-Session-Time", "30")] + common)
    assert code == "Accounting-Response", out
    assert sessions(acct) == 1

    code, out = radclient_acct(addr, NAS_SECRET, [
        ("Acct-Status-Type", "Stop"), ("Acct-Session-Time", "61"),
        ("Acct-Terminate-Cause", "User-Request")] + common)
    assert code == "Accounting-Response", out
    assert sessions(acct) == 0
    line = wait_log(acct, r"accounting client=nas status=Stop .*session_id=%s.*session_time=61 "
                          r'terminate_cause="User-Request"' % re.escape(session))
    assert line, acct.log()[-3000:]
    for s in before:
        assert requests(acct, s) == before[s] + 1, s


def test_a_message_authenticator_is_verified_too(acct):
    # radclient signs it over the packet with a zero authenticator (as FreeRADIUS does).
    need_radclient()
    code, out = radclient_acct(acct_addr(acct), NAS_SECRET, [
        ("Acct-Status-Type", "Start"), ("Acct-Session-Id", harness.q("ma-1")),
        ("User-Name", harness.q("bob")), ("Message-Authenticator", "0x00")])
    assert code == "Accounting-Response", out
    code, out = radclient_acct(acct_addr(acct), NAS_SECRET, [
        ("Acct-Status-Type", "Stop"), ("Acct-Session-Id", harness.q("ma-1")),
        ("User-Name", harness.q("bob")), ("Message-Authenticator", "0x00")])
    assert code == "Accounting-Response", out
    assert sessions(acct) == 0


def test_a_wrong_secret_is_not_answered_and_is_warned_about(acct):
    need_radclient()
    before = metric(acct, 'vip_bridge_radius_dropped_total{cause="bad_accounting_authenticator"}')
    code, out = radclient_acct(acct_addr(acct), WRONG_SECRET, [
        ("Acct-Status-Type", "Start"), ("Acct-Session-Id", harness.q("forged")),
        ("User-Name", harness.q("mallory"))], timeout=1, retries=1)
    assert code is None, out
    assert wait_log(acct, WARN + re.escape(BAD_AUTH) + r" suppressed=\d+$"), acct.log()[-3000:]
    after = metric(acct, 'vip_bridge_radius_dropped_total{cause="bad_accounting_authenticator"}')
    assert after > before
    assert sessions(acct) == 0
    log = acct.log()
    assert "mallory" not in log and WRONG_SECRET not in log and NAS_SECRET not in log


def raw_accounting_request(secret, ident, attrs):
    """An Accounting-Request built with hashlib (RFC 2866 §3)."""
    body = b"".join(bytes([t, len(v) + 2]) + v for t, v in attrs)
    head = struct.pack("!BBH", 4, ident, 20 + len(body))
    return head + hashlib.md5(head + b"\0" * 16 + body + secret).digest() + body


def test_an_unknown_source_is_dropped_and_named(acct, udp):
    before = metric(acct, 'vip_bridge_radius_dropped_total{cause="unknown_client"}')
    time.sleep(1.05 - (time.time() % 1.0))  # the warning limiter's window is the second
    s = udp(source=UNKNOWN_SOURCE)
    raw = raw_accounting_request(NAS_SECRET.encode(), 9, [
        (40, struct.pack("!I", 1)), (44, b"stranger"), (1, b"eve")])
    assert s.exchange(raw, acct_addr(acct), timeout=1.0) is None
    assert wait_log(acct, WARN + re.escape(UNKNOWN % (UNKNOWN_SOURCE, UNKNOWN_SOURCE))), \
        acct.log()[-3000:]
    assert metric(acct, 'vip_bridge_radius_dropped_total{cause="unknown_client"}') == before + 1
    assert "eve" not in re.findall(r"user=(\S+)", acct.log())


def test_a_retransmit_is_answered_from_the_cache(acct, udp):
    s = udp(source="127.0.0.1")
    raw = raw_accounting_request(NAS_SECRET.encode(), 77, [
        (40, struct.pack("!I", 3)), (44, b"retransmit"), (1, b"carol")])
    before = requests(acct, "Interim-Update")
    first = s.exchange(raw, acct_addr(acct), timeout=3.0)
    assert first and first[0] == 5 and first[1] == 77
    assert s.exchange(raw, acct_addr(acct), timeout=3.0) == first
    assert requests(acct, "Interim-Update") == before + 1
    # Finish the session the Interim-Update opened, so the gauge is back to 0.
    stop = raw_accounting_request(NAS_SECRET.encode(), 78, [
        (40, struct.pack("!I", 2)), (44, b"retransmit")])
    assert s.exchange(stop, acct_addr(acct), timeout=3.0)
    assert sessions(acct) == 0


def test_accounting_listen_empty_turns_it_off(workroot, certs):
    sim, bridge = start_bridge(workroot, certs, "accounting-off", "accounting_listen = []")
    try:
        assert bridge.ready["accounting"] == []
        line = wait_log(bridge, r" INFO .*: ready ")
        assert line and "accounting=off" in line, line
    finally:
        bridge.stop()
        sim.stop()
