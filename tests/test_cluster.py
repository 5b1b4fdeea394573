"""Two instances, one shared store, end to end: two real `vip-bridge serve` processes (A and B,
each with its own working directory, the same configuration and State key) sharing one real
`redis-server` ([cluster] store = "redis") and one vip-sim, driven by pyrad over raw UDP and by
radclient (freeradius-utils).

What the store must share (shared/src/store/): a State's nonce, so an Access-Challenge's State
is single-use across instances, and every throttle as one GCRA bucket, so a user's limits do
not multiply by the number of instances. Engine-level tests of the same: shared/tests/
store_redis.rs; this file proves it through the real daemons, their RADIUS doors, check-config
and /metrics, including Redis killed (SIGKILL) and started again on the same port while logins
go on (when_unavailable = "memory").

Clients (source address -> policy): 127.0.0.1 -> "nas" (the default policy: a code or "push"
in the password), 127.0.0.2 -> "menu" (mode = "challenge": the first round answers an
Access-Challenge with the factor menu and a State). This file's bridges set
engine.throttle.push_per_user and codes_per_user to 3 per 10m.

Users (one per case, so one-time codes and limits never collide): stan (a State used on B,
replayed on A), pia (push bombing), gus (code guessing), dora / dirk (logins while Redis is
down), rita (a State replay after Redis is back), rex (a retransmit answered by the other
instance), fay (a NAS failing over while her push is pending; her phone answers after 3 s),
alf (a challenge dialogue whose rounds alternate between the instances).
"""

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

import harness
from redis_peer import Redis, metric, resp, store_calls, wait_log  # noqa: E402
from harness import (access_request, code_name, q, radclient, reply_messages,
                     reply_state, wrong_code)

CI = os.environ.get("CI") == "true"
SECRET = "cluster-nas-secret-0123456789"
NAS_SOURCE = "127.0.0.1"   # client "nas", the default policy
MENU_SOURCE = "127.0.0.2"  # client "menu", mode = "challenge"
SIM_USERS = ("stan", "pia", "gus", "dora", "dirk", "rita", "rex", "fay", "alf")
SLOW_PHONE = {"fay": 3000}  # push approved this many ms after it arrives
SIM_POLICY = "number_challenge = false\nlockout_after = 50\n"
LIMIT = 3  # push_per_user and codes_per_user: 3 per 10m
OUTAGE = 2.5  # seconds Redis stays down in the last test

MSG_THROTTLED = "Too many attempts"
MSG_BAD_STATE = "This sign-in has expired or was already used"
USED_ELSEWHERE = "State was already used (on another instance)"  # A's log line
NO_ANSWER = "the shared store (Redis) did not answer"  # the fallback's warning
FALLBACK_MEMORY = 'vip_bridge_store_fallbacks_total{to="memory"}'


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI."""
    if ok:
        return
    if CI:
        pytest.fail("%s (CI=true: the cluster tests must run)" % what)
    pytest.skip(what)


def _totp_secret(user):
    return base64.b32encode(hashlib.sha1(("vip-bridge-cluster-" + user).encode())
                            .digest()).decode()


TOTP = {u: _totp_secret(u) for u in SIM_USERS}


def sim_users():
    out = []
    for i, user in enumerate(SIM_USERS):
        out.append('[[users]]\nid = "%s"\nsms_phones = ["1555000%04d"]\n' % (user, i))
        out.append('[[users.credentials]]\nid = "VSMT8%07d"\ntotp_secret = "%s"\npush = true\n'
                   % (i + 1, TOTP[user]))
        out.append('[users.push]\naction = "approve"\ndelay_ms = %d\n\n'
                   % SLOW_PHONE.get(user, 200))
    return "".join(out)


def bridge_toml(sim, certs, key_file, redis_url, when_unavailable="memory"):
    return harness.vip_toml(sim, certs) + """
[engine]
poll_interval = "200ms"
state_key_file = "{key}"

[engine.throttle]
push_per_user = {{ count = {limit}, per = "10m" }}
codes_per_user = {{ count = {limit}, per = "10m" }}

[policies.menu]
mode = "challenge"

[cluster]
store = "redis"
when_unavailable = "{when}"

[cluster.redis]
urls = ["{url}"]
timeout = "250ms"

[radius]
listen = ["127.0.0.1:0"]
response_cache_ttl = "15s"

[[radius.clients]]
name = "nas"
address = "{nas}"
secret = "{secret}"

[[radius.clients]]
name = "menu"
address = "{menu}"
secret = "{secret}"
policy = "menu"

[metrics]
listen = "127.0.0.1:0"

[log]
format = "text"
level = "info"
""".format(key=key_file, limit=LIMIT, when=when_unavailable, url=redis_url, nas=NAS_SOURCE,
           menu=MENU_SOURCE, secret=SECRET)


# ---------------------------------------------------------------------------------------------
# redis-server


# ---------------------------------------------------------------------------------------------
# The two instances


class Cluster:
    def __init__(self, sim, redis, a, b, certs, key_file, workdir):
        self.sim = sim
        self.redis = redis
        self.a = a
        self.b = b
        self.certs = certs
        self.key_file = key_file
        self.dir = workdir

    @property
    def bridges(self):
        return (self.a, self.b)


@pytest.fixture(scope="module")
def cluster(workroot, certs):
    need(shutil.which("redis-server"),
         "redis-server is not installed (Debian package redis-server)")
    need(shutil.which("radclient"), "radclient is not installed (freeradius-utils)")
    workdir = os.path.join(workroot, "cluster")
    os.makedirs(workdir, exist_ok=True)
    key_file = os.path.join(workdir, "state.key")
    with open(key_file, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(key_file, 0o600)

    sim = redis = None
    bridges = []
    try:
        redis = Redis(workdir, "shared").start()
        sim = harness.Sim(workdir, harness.sim_toml(certs, sim_users(), SIM_POLICY))
        for name in ("a", "b"):
            d = os.path.join(workdir, name)
            os.makedirs(d, exist_ok=True)
            bridges.append(harness.Bridge(d, bridge_toml(sim, certs, key_file, redis.url)))
        for b in bridges:
            # The connector connects in the background: wait until both instances use Redis.
            wait_log(b, "connected to the shared store (Redis)")
        yield Cluster(sim, redis, bridges[0], bridges[1], certs, key_file, workdir)
    finally:
        for name, b in zip("AB", bridges):
            rc = b.stop()
            if rc != 0:
                sys.stderr.write("vip-bridge %s exited %r; log:\n%s\n" % (name, rc, b.log()))
        if sim is not None:
            sim.stop()
        if redis is not None:
            redis.stop()


@pytest.fixture
def udp():
    socks = []

    def make(source=NAS_SOURCE):
        s = harness.Udp(source)
        socks.append(s)
        return s

    yield make
    for s in socks:
        s.close()


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    """When a test of this file failed, the tails of both bridges' logs on the terminal (the
    interesting half of any e2e failure; the conftest hook knows only the single `stack`)."""
    failed = request.session.testsfailed
    yield
    cl = request.node.funcargs.get("cluster")
    if cl is not None and request.session.testsfailed > failed:
        for name, b in zip("AB", cl.bridges):
            sys.__stderr__.write("\n--- vip-bridge %s log (tail) ---\n%s\n"
                                 % (name, b.log()[-5000:]))


def ask(s, bridge, user, password, timeout=10, **attrs):
    """A new Access-Request (fresh identifier and authenticator) to `bridge`: the raw reply."""
    _, raw = access_request(SECRET.encode(), user, password, **attrs)
    reply = s.exchange(raw, bridge.addr(), timeout=timeout)
    assert reply is not None, "no reply from vip-bridge at %s" % (bridge.addr(),)
    return reply


def open_menu(s, bridge, user):
    """The first round under the "menu" policy: an Access-Challenge; its State."""
    reply = ask(s, bridge, user, None)
    assert code_name(reply) == "Access-Challenge", (code_name(reply), reply_messages(reply))
    assert "Choose a second factor" in reply_messages(reply), reply_messages(reply)
    state = reply_state(reply)
    assert state, "an Access-Challenge without a State"
    return state


def fresh_code(sim, user, min_left=4):
    """The user's current code (the simulator's admin API), with at least `min_left` seconds
    of its 30 s step left."""
    left = 30 - (time.time() % 30)
    if left < min_left:
        time.sleep(left + 0.2)
    return sim.current_code(user)


def assert_alive(cl):
    for name, b in zip("AB", cl.bridges):
        assert b.proc.alive(), "vip-bridge %s died:\n%s" % (name, b.log()[-6000:])
        assert "panicked" not in b.log(), "vip-bridge %s panicked:\n%s" % (name, b.log()[-6000:])


def state_replay_refused(cl, udp, user):
    """A State from A's Access-Challenge, accepted once on B with the user's code; the same
    State in a new Access-Request to A: refused as used, without asking VIP."""
    s = udp(MENU_SOURCE)
    refused_before = cl.a.log().count(USED_ELSEWHERE)
    state = open_menu(s, cl.a, user)
    code = fresh_code(cl.sim, user)
    before = cl.sim.calls("authenticateUser")
    _, used = access_request(SECRET.encode(), user, code, state=state)
    accepted = s.exchange(used, cl.b.addr(), timeout=10)
    assert code_name(accepted) == "Access-Accept", reply_messages(accepted or b"")
    assert cl.sim.calls("authenticateUser") == before + 1

    # An identical retransmit of B's request is answered from B's response cache (RFC 5080):
    # the same reply, no second VIP call. Not what this test is about, but not to be confused.
    again = s.exchange(used, cl.b.addr(), timeout=5)
    assert again == accepted
    assert cl.sim.calls("authenticateUser") == before + 1

    # A NEW packet (new identifier and authenticator) with the same State, to instance A.
    replay = ask(s, cl.a, user, code, state=state)
    assert code_name(replay) == "Access-Reject", (code_name(replay), reply_messages(replay))
    assert MSG_BAD_STATE in reply_messages(replay), reply_messages(replay)
    # Refused before VIP was asked: the State, not the (spent) code, stopped it.
    assert cl.sim.calls("authenticateUser") == before + 1
    wait_log(cl.a, USED_ELSEWHERE, timeout=5, seen=refused_before)


# ---------------------------------------------------------------------------------------------
# 1. A State is single-use across instances


def test_state_from_a_used_on_b_is_refused_when_replayed_on_a(cluster, udp):
    state_replay_refused(cluster, udp, "stan")
    # The spent nonce is in Redis, with a TTL.
    keys = cluster.redis.keys("vip-bridge:state:*")
    assert keys, cluster.redis.keys()
    assert all(resp(cluster.redis.port, "PTTL", k) > 0 for k in keys), keys
    assert_alive(cluster)


# ---------------------------------------------------------------------------------------------
# 2. Push bombing spread over both instances


def test_push_bombing_over_both_instances_is_one_limit(cluster, udp):
    user = "pia"
    s = udp(NAS_SOURCE)
    before = cluster.sim.calls("authenticateUserWithPush")
    throttled_before = [metric(b, 'vip_bridge_throttled_total{limit="push_per_user"}')
                        for b in cluster.bridges]
    got = []
    for i in range(2 * LIMIT):
        bridge = cluster.bridges[i % 2]
        # Distinct login sessions (NAS-Port, Calling-Station-Id): no request joins another's
        # pending push; each is a push of its own, counted against the user.
        reply = ask(s, bridge, user, "push", timeout=30, NAS_Port=100 + i,
                    Calling_Station_Id="198.51.100.%d" % (10 + i))
        got.append((code_name(reply), reply_messages(reply)))
    sent = cluster.sim.calls("authenticateUserWithPush") - before
    assert sent <= LIMIT, (sent, got)
    # Sequential, alternating A, B, A, B, ...: the first three are pushed (and approved), the
    # rest refused by the bucket both instances share, without asking VIP.
    assert sent == LIMIT, (sent, got)
    assert [c for c, _ in got] == ["Access-Accept"] * LIMIT + ["Access-Reject"] * LIMIT, got
    for code, message in got[LIMIT:]:
        assert MSG_THROTTLED in message, got
    throttled = [metric(b, 'vip_bridge_throttled_total{limit="push_per_user"}') - t
                 for b, t in zip(cluster.bridges, throttled_before)]
    assert sum(throttled) == LIMIT, throttled
    # Each instance alone let fewer than LIMIT through: only the shared bucket refused them.
    assert throttled[0] >= 1 and throttled[1] >= 1, throttled
    assert_alive(cluster)


# ---------------------------------------------------------------------------------------------
# 3. Code guessing spread over both instances (radclient)


def test_code_guessing_over_both_instances_is_one_limit(cluster):
    user = "gus"
    before = cluster.sim.calls("authenticateUser")
    got = []
    for i in range(LIMIT + 1):
        bridge = cluster.bridges[i % 2]
        code, attrs, out = radclient(bridge.addr(), SECRET, [
            ("User-Name", q(user)), ("User-Password", q(wrong_code(TOTP[user]))),
            ("Message-Authenticator", "0x00"),
        ])
        got.append((code, " ".join(attrs.get("Reply-Message", [])), out))
    for code, message, out in got:
        assert code == "Access-Reject", out
    for code, message, out in got[:LIMIT]:
        assert MSG_THROTTLED not in message, out
    # The 4th (on B, which itself has seen only one of them) is throttled.
    assert MSG_THROTTLED in got[LIMIT][1], got[LIMIT][2]
    assert cluster.sim.calls("authenticateUser") == before + LIMIT
    # Even the right code is refused now, on A (which has seen two), and never reaches VIP.
    code, attrs, out = radclient(cluster.a.addr(), SECRET, [
        ("User-Name", q(user)), ("User-Password", q(fresh_code(cluster.sim, user))),
        ("Message-Authenticator", "0x00"),
    ])
    assert code == "Access-Reject", out
    assert MSG_THROTTLED in " ".join(attrs.get("Reply-Message", [])), out
    assert cluster.sim.calls("authenticateUser") == before + LIMIT
    assert_alive(cluster)


# ---------------------------------------------------------------------------------------------
# 4. check-config pings the store


def check_config(path, timeout=60):
    p = subprocess.run([harness.find_binary("vip-bridge"), "check-config", "--config", path],
                       capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_check_config_reports_the_store(cluster, tmp_path):
    rc, out, err = check_config(cluster.a.config)
    assert rc == 0, out + err
    line = re.search(r"^cluster: Redis (\S+): master, round trip ([0-9.]+) ms$", out, re.M)
    assert line, out + err
    assert line.group(1) == cluster.redis.url, out
    assert float(line.group(2)) < 5000, out

    # A Redis of its own, then stopped: with when_unavailable = "reject" every login would be
    # refused, and check-config fails naming [cluster]; with "memory" it only warns.
    own = Redis(str(tmp_path), "check").start()
    try:
        text = bridge_toml(cluster.sim, cluster.certs, cluster.key_file, own.url, "reject")
        reject_cfg = str(tmp_path / "reject.toml")
        with open(reject_cfg, "w") as f:
            f.write(text)
        rc, out, err = check_config(reject_cfg)
        assert rc == 0, out + err
        assert re.search(r"^cluster: Redis %s: master, round trip" % re.escape(own.url), out,
                         re.M), out + err
    finally:
        own.stop()
    rc, out, err = check_config(reject_cfg)
    assert rc != 0, out + err
    problem = [ln for ln in (out + err).splitlines() if "cluster: Redis %s" % own.url in ln]
    assert problem and "reject" in problem[0], out + err
    assert "master" not in "\n".join(problem), out + err

    memory_cfg = str(tmp_path / "memory.toml")
    with open(memory_cfg, "w") as f:
        f.write(bridge_toml(cluster.sim, cluster.certs, cluster.key_file, own.url, "memory"))
    rc, out, err = check_config(memory_cfg)
    assert rc == 0, out + err
    assert re.search(r"cluster: Redis %s: .*own memory" % re.escape(own.url), out + err), \
        out + err


# ---------------------------------------------------------------------------------------------
# 5. Redis killed while logins go on, then back on the same port


def test_redis_killed_logins_go_on_then_the_store_is_used_again(cluster, udp):
    s = udp(NAS_SOURCE)
    fallbacks = metric(cluster.a, FALLBACK_MEMORY)
    unavailable = store_calls(cluster.a, "unavailable")
    warned = cluster.a.log().count(NO_ANSWER)
    killed_at = time.time()
    cluster.redis.kill()
    try:
        assert not cluster.redis.alive()
        # A code login on A: Redis cannot answer, A's own memory decides (when_unavailable =
        # "memory"), VIP accepts the code.
        reply = ask(s, cluster.a, "dora", fresh_code(cluster.sim, "dora"))
        assert code_name(reply) == "Access-Accept", reply_messages(reply)
        # And one on B.
        reply = ask(s, cluster.b, "dirk", fresh_code(cluster.sim, "dirk"))
        assert code_name(reply) == "Access-Accept", reply_messages(reply)
        assert metric(cluster.a, FALLBACK_MEMORY) > fallbacks
        assert store_calls(cluster.a, "unavailable") > unavailable
        assert metric(cluster.a, 'vip_bridge_store_fallbacks_total{to="reject"}') == 0
        wait_log(cluster.a, NO_ANSWER, timeout=5, seen=warned)
        # Logins go on for a while (the connector's pause between attempts grows meanwhile):
        # every request is answered, each store call falling back to memory.
        while time.time() - killed_at < OUTAGE:
            for b in cluster.bridges:
                reply = ask(s, b, "dirk", "x")
                assert code_name(reply) == "Access-Reject", reply_messages(reply)
            time.sleep(0.1)
        assert_alive(cluster)
        down_for = time.time() - killed_at
    finally:
        if not cluster.redis.alive():
            cluster.redis.start()
    restarted_at = time.time()
    assert cluster.redis.keys() == [], "a fresh redis-server (no persistence) is empty"

    # Both instances use the store again within a few seconds (the connector reconnects with
    # a growing pause, at most 5 s). Probe with requests refused before VIP ("x" is no code):
    # each one asks the store for requests_per_client.
    ok = [store_calls(b, "ok") for b in cluster.bridges]
    back = [None, None]
    deadline = restarted_at + 15
    while None in back and time.time() < deadline:
        for i, b in enumerate(cluster.bridges):
            if back[i] is None:
                reply = ask(s, b, "dora", "x")
                assert code_name(reply) == "Access-Reject"
                if store_calls(b, "ok") > ok[i]:
                    back[i] = time.time() - restarted_at
        time.sleep(0.2)
    assert None not in back, "an instance never used Redis again: %s" % back
    sys.stderr.write("Redis down %.1f s; store used again after %.1f s (A), %.1f s (B)\n"
                     % (down_for, back[0], back[1]))

    # And a State is single-use across instances again.
    state_replay_refused(cluster, udp, "rita")
    assert cluster.redis.keys("vip-bridge:state:*"), cluster.redis.keys()
    assert_alive(cluster)


# ---------------------------------------------------------------------------------------------
# 6. The response cache is shared (RFC 5080 across instances)


def test_a_retransmit_reaching_the_other_instance_gets_the_same_reply(cluster, udp):
    s = udp(NAS_SOURCE)
    code = fresh_code(cluster.sim, "rex")
    before = cluster.sim.calls("authenticateUser")
    _, raw = access_request(SECRET.encode(), "rex", code)
    first = s.exchange(raw, cluster.a.addr(), timeout=10)
    assert code_name(first) == "Access-Accept", reply_messages(first or b"")
    # The NAS did not get A's reply and sends the very same packet to B: A's reply, byte for
    # byte, and no second VIP call (the code would now be refused as used).
    again = s.exchange(raw, cluster.b.addr(), timeout=10)
    assert again == first
    assert cluster.sim.calls("authenticateUser") == before + 1
    assert_alive(cluster)


# ---------------------------------------------------------------------------------------------
# 7. A NAS failing over while a push is pending: one push, the login completes on the other


def test_a_nas_failing_over_mid_push_gets_one_push_from_the_surviving_instance(cluster, udp):
    # A third instance of the same cluster, to be SIGKILLed (A and B serve the other tests).
    d = os.path.join(cluster.dir, "doomed")
    os.makedirs(d, exist_ok=True)
    doomed = harness.Bridge(d, bridge_toml(cluster.sim, cluster.certs, cluster.key_file,
                                           cluster.redis.url))
    try:
        wait_log(doomed, "connected to the shared store (Redis)")
        before = cluster.sim.calls("authenticateUserWithPush")
        s = udp(NAS_SOURCE)
        # Like a VPN appliance: one login session (NAS-Port, Calling-Station-Id), a blocking
        # push; the server dies before the phone answers; the appliance re-sends the pending
        # request to the next server of its list.
        _, raw = access_request(SECRET.encode(), "fay", "push", NAS_Port=7,
                                Calling_Station_Id="203.0.113.70")
        s.send(raw, doomed.addr())
        deadline = time.time() + 5
        while cluster.sim.calls("authenticateUserWithPush") == before:
            assert time.time() < deadline, "the push was never sent"
            time.sleep(0.05)
        time.sleep(0.3)
        doomed.proc.kill()
        reply = s.exchange(raw, cluster.b.addr(), timeout=20)
        assert code_name(reply) == "Access-Accept", reply_messages(reply or b"")
        assert cluster.sim.calls("authenticateUserWithPush") == before + 1, "a second push"
        assert "joining the push another instance sent" in cluster.b.log()
    finally:
        doomed.stop()
    assert_alive(cluster)


# ---------------------------------------------------------------------------------------------
# 8. A challenge dialogue whose rounds alternate between instances


def test_a_dialogue_alternating_between_instances_completes(cluster, udp):
    s = udp(MENU_SOURCE)
    # Round 1 on A: the menu.
    state = open_menu(s, cluster.a, "alf")
    # Round 2 on B: "sms" sends a code; a new State.
    reply = ask(s, cluster.b, "alf", "sms", state=state)
    assert code_name(reply) == "Access-Challenge", reply_messages(reply)
    assert "text message" in reply_messages(reply), reply_messages(reply)
    state2 = reply_state(reply)
    assert state2 and state2 != state
    # Round 3 on A: the code sent.
    code = cluster.sim.sent_code("alf")
    reply = ask(s, cluster.a, "alf", code, state=state2)
    assert code_name(reply) == "Access-Accept", reply_messages(reply)
    # Every State of the dialogue is spent, on either instance.
    for st, bridge in ((state, cluster.a), (state2, cluster.b)):
        again = ask(s, bridge, "alf", code, state=st)
        assert code_name(again) == "Access-Reject", reply_messages(again)
        assert MSG_BAD_STATE in reply_messages(again), reply_messages(again)
    assert_alive(cluster)
