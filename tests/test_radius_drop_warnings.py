"""Requests the bridge drops without an answer are warnings an admin can act on, at the
daemon's default log level (info): a wrong shared secret, a missing Message-Authenticator and
an unknown source each name the likely reason and the fix; a flood of one cause is one line a
second, the next line carrying `suppressed=N`; strangers on many addresses share one limiter.

A real vip-sim and `vip-bridge serve` (its own instance here: RUST_LOG empty, so `[log] level =
"info"` applies, as in production), radclient (freeradius-utils) where it can send what is
needed, pyrad-encoded packets over raw UDP where a chosen source address is needed (radclient
cannot bind one). Every drop is still counted: the metrics are read back.
"""

import os
import re
import shutil
import sys
import time

import pytest

import harness
from conftest import (NAS_SECRET, PAM_SECRET, PAM_SOURCE, SIM_POLICY, UNKNOWN_SOURCE, USERS,
                      bridge_toml, sim_users_toml)
from harness import access_request, code_name, q, radclient, wrong_code

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

FLOOD_SOURCE = "127.0.0.7"  # a client of its own, so only the flood test touches its limiter
FLOOD_SECRET = "flood-secret-4711"
WRONG_SECRET = "not-the-secret-0815"  # must never appear in the log

PREFIX = r"^\S+\s+WARN vip_bridge::radius::server: "

BAD_MA = ("client %s (%s): Message-Authenticator does not verify: wrong shared secret? "
          "Set the same secret at the NAS and in this client's [[radius.clients]] entry")
MISSING_MA = ("client nas (127.0.0.1): request without Message-Authenticator dropped: turn "
              "Message-Authenticator on at the NAS; a NAS or proxy that cannot send it "
              "(radsecproxy 1.9 forwarding a NAS that sends none, ocserv/radcli, OpenVPN "
              "radiusplugin) needs require_message_authenticator = false for this client")
UNKNOWN = 'unknown client %s: add it to [[radius.clients]] (address = "%s")'


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI."""
    if ok:
        return
    if CI:
        pytest.fail("%s (CI=true: the drop-warning tests must run)" % what)
    pytest.skip(what)


def need_radclient():
    need(shutil.which("radclient"), "radclient (freeradius-utils) not installed")


def need_pyrad():
    try:
        import pyrad  # noqa: F401
        ok = True
    except ImportError:
        ok = False
    need(ok, "pyrad not installed (pip install pyrad)")


@pytest.fixture(scope="module")
def quiet(workroot, certs):
    """vip-sim + vip-bridge at the configured level (info), with metrics and a flood client."""
    workdir = os.path.join(workroot, "drop-warnings")
    os.makedirs(workdir, exist_ok=True)
    sim = harness.Sim(workdir, harness.sim_toml(certs, sim_users_toml(), SIM_POLICY))
    bridge = None
    try:
        text = (bridge_toml(sim, certs)
                + '\n[metrics]\nlisten = "127.0.0.1:0"\n'
                + '\n[[radius.clients]]\nname = "flood"\naddress = "%s"\nsecret = "%s"\n'
                % (FLOOD_SOURCE, FLOOD_SECRET))
        # The harness turns debug on by default; an empty RUST_LOG leaves `[log] level`.
        bridge = harness.Bridge(workdir, text, env={"RUST_LOG": ""})
        yield bridge
    finally:
        rc = bridge.stop() if bridge else None
        sim.stop()
        if bridge is not None and rc != 0:
            sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, bridge.log()))


def warn_lines(bridge, message):
    """`suppressed` of every WARN line whose message is exactly `message`, in order."""
    pattern = re.compile(PREFIX + re.escape(message) + r" suppressed=(\d+)$")
    return [int(m.group(1)) for m in map(pattern.match, bridge.log().splitlines()) if m]


def wait_for_lines(bridge, message, count, timeout=5.0):
    deadline = time.time() + timeout
    while True:
        got = warn_lines(bridge, message)
        if len(got) >= count or time.time() > deadline:
            return got
        time.sleep(0.05)


def dropped(bridge, cause):
    return harness.scrape_metrics(bridge.ready["metrics"]).get(
        'vip_bridge_radius_dropped_total{cause="%s"}' % cause, 0.0)


def wait_dropped(bridge, cause, count, timeout=5.0):
    """The counter once it reaches `count` (or at the deadline): every drop processed."""
    deadline = time.time() + timeout
    while True:
        got = dropped(bridge, cause)
        if got >= count or time.time() > deadline:
            return got
        time.sleep(0.05)


def next_second():
    """Sleeps past the next wall-clock second: the limiter's window is the second."""
    time.sleep(1.05 - (time.time() % 1.0))


def test_the_bridge_logs_at_info_not_debug(quiet):
    # The other tests mean something only if debug lines (the old home of drop messages) are
    # not written.
    log = quiet.log()
    assert " INFO " in log, log[-2000:]
    assert " DEBUG " not in log, log[-2000:]


def test_a_wrong_shared_secret_names_the_secret(quiet):
    need_radclient()
    before = dropped(quiet, "bad_message_authenticator")
    got, _, out = radclient(quiet.addr(), WRONG_SECRET, [
        ("User-Name", q("alice")), ("User-Password", q(wrong_code(USERS["alice"]))),
        ("Message-Authenticator", "0x00"),
    ], timeout=1, retries=1)
    assert got is None, out
    lines = wait_for_lines(quiet, BAD_MA % ("nas", "127.0.0.1"), 1)
    assert lines and lines[0] == 0, lines
    assert dropped(quiet, "bad_message_authenticator") > before
    log = quiet.log()
    assert WRONG_SECRET not in log and NAS_SECRET not in log


def test_a_missing_message_authenticator_names_the_setting(quiet):
    need_radclient()
    before = dropped(quiet, "missing_message_authenticator")
    got, _, out = radclient(quiet.addr(), NAS_SECRET, [
        ("User-Name", q("alice")), ("User-Password", q(wrong_code(USERS["alice"]))),
    ], timeout=1, retries=1)
    assert got is None, out
    lines = wait_for_lines(quiet, MISSING_MA, 1)
    assert lines and lines[0] == 0, lines
    assert dropped(quiet, "missing_message_authenticator") > before


def test_an_unknown_source_names_the_address_to_add(quiet, udp):
    need_pyrad()
    next_second()
    before = dropped(quiet, "unknown_client")
    s = udp(source=UNKNOWN_SOURCE)
    _, raw = access_request(NAS_SECRET.encode(), "alice", "123456")
    assert s.exchange(raw, quiet.addr(), timeout=1.0) is None
    lines = wait_for_lines(quiet, UNKNOWN % (UNKNOWN_SOURCE, UNKNOWN_SOURCE), 1)
    assert len(lines) == 1, lines
    assert dropped(quiet, "unknown_client") == before + 1


def test_a_legacy_client_without_message_authenticator_is_not_warned_about(quiet, udp):
    # require_message_authenticator = false: answered as before, and a password that
    # decodes to garbage (here: the wrong secret) is a Reject, not a guess in the log.
    need_pyrad()
    start = len(quiet.log())
    s = udp(source=PAM_SOURCE)
    _, raw = access_request(PAM_SECRET.encode(), "frank", wrong_code(USERS["frank"]), ma=False)
    reply = s.exchange(raw, quiet.addr(), timeout=10)
    assert code_name(reply) == "Access-Reject"
    _, raw = access_request(WRONG_SECRET.encode(), "frank", "123456", ma=False)
    reply = s.exchange(raw, quiet.addr(), timeout=10)
    assert code_name(reply) == "Access-Reject"
    time.sleep(0.3)
    new = quiet.log()[start:]
    assert " WARN " not in new and "secret" not in new, new


def test_a_flood_is_one_line_a_second_with_the_count_held_back(quiet, udp):
    need_pyrad()
    message = BAD_MA % ("flood", FLOOD_SOURCE)
    before = dropped(quiet, "bad_message_authenticator")
    s = udp(source=FLOOD_SOURCE)
    packets = [access_request(WRONG_SECRET.encode(), "alice", "123456", ident=i % 256)[1]
               for i in range(200)]
    next_second()
    start = time.time()
    for i, raw in enumerate(packets):
        s.send(raw, quiet.addr())
        if i % 20 == 19:
            time.sleep(0.002)  # let the bridge read: the kernel buffer may be small
    took = time.time() - start
    assert took < 1.0, "the flood took %.2f s: not a flood" % took
    # Every drop counted (so every line written), then the lines.
    assert wait_dropped(quiet, "bad_message_authenticator", before + 200) == before + 200
    seconds = int(time.time()) - int(start) + 1
    flood = warn_lines(quiet, message)
    # One line a second of flood (a single one unless this machine is very slow), the first
    # with nothing held back before it.
    assert 1 <= len(flood) <= seconds, (seconds, flood)
    assert flood[0] == 0, flood

    next_second()
    s.send(access_request(WRONG_SECRET.encode(), "alice", "123456")[1], quiet.addr())
    lines = wait_for_lines(quiet, message, len(flood) + 1)
    assert len(lines) == len(flood) + 1, lines
    assert lines[-1] > 0, lines
    # Each drop was either a line or counted in a later line's suppressed=.
    assert len(lines) + sum(lines) == 201, lines
    assert dropped(quiet, "bad_message_authenticator") == before + 201


def test_strangers_on_many_addresses_share_one_line(quiet, udp):
    # A limiter per source address would let a stranger choose how much memory (and how many
    # lines) we spend: forty addresses inside a second get one line between them.
    need_pyrad()
    _, raw = access_request(NAS_SECRET.encode(), "alice", "123456")
    sources = ["127.0.0.%d" % h for h in range(100, 140)]
    any_unknown = re.compile(PREFIX + r"unknown client 127\.0\.0\.(\d+): .* suppressed=(\d+)$")

    def unknown_lines():
        return [(m.group(1), int(m.group(2)))
                for m in map(any_unknown.match, quiet.log().splitlines()) if m]

    before = len(unknown_lines())
    dropped_before = dropped(quiet, "unknown_client")
    next_second()
    start = time.time()
    for src in sources:
        udp(source=src).send(raw, quiet.addr())
    assert time.time() - start < 1.0
    assert wait_dropped(quiet, "unknown_client", dropped_before + 40) == dropped_before + 40
    seconds = int(time.time()) - int(start) + 1
    burst = unknown_lines()[before:]
    assert 1 <= len(burst) <= seconds, (seconds, burst)
    assert burst[0] == ("100", 0), burst

    next_second()
    udp(source="127.0.0.150").send(raw, quiet.addr())
    deadline = time.time() + 5
    while len(unknown_lines()) < before + len(burst) + 1 and time.time() < deadline:
        time.sleep(0.05)
    lines = unknown_lines()[before:]
    assert len(lines) == len(burst) + 1, lines
    assert lines[-1][0] == "150", lines
    assert len(lines) + sum(n for _, n in lines) == 41, lines
    assert UNKNOWN % ("127.0.0.150", "127.0.0.150") in quiet.log()
