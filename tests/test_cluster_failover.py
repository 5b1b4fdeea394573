"""Fail-overs of a two-instance cluster, end to end, with real parts only: real
`vip-bridge serve` processes, one vip-sim, a real FreeRADIUS 3.2 acting as the NAS-side proxy,
real `redis-server`s and a real `redis-sentinel`; traffic from pyrad-encoded packets over raw
UDP. tests/test_cluster.py covers the shared store's rules one request at a time; this file
covers what happens when something dies while logins are going on:

1. FreeRADIUS as a proxy in front of both instances (a `home_server_pool` of type fail-over,
   `status_check = status-server`): a login through it is served by A; A is SIGKILLed while a
   blocking push it sent is pending; FreeRADIUS 3.2.1 does not re-send that pending request to
   the other pool member (it answers the NAS with an Access-Reject after `response_window` and
   marks A zombie), so the user logs in again: that NEXT login goes to B, which joins the push
   A sent (one push, one Accept), and a code login after it is served by B too. A started again
   on its port answers FreeRADIUS's Status-Server checks (RFC 5997, with Message-Authenticator)
   and is used again.
2. Redis SIGKILLed under load: code logins stream at RATE per second over both instances, each
   a fresh user with a valid code; Redis is killed after 2 s and started again on the same port
   after 4 s. With when_unavailable = "memory" every login is answered with an Access-Accept, no
   instance dies or panics, vip_bridge_store_fallbacks_total{to="memory"} grows on both, and
   once Redis is back the store is used again (a State replayed across instances is refused).
3. A Sentinel fail-over under load: a master, its replica and one redis-sentinel (quorum 1); the
   instances find the master through the Sentinel; the master is SIGKILLed mid-stream; every
   login is answered with an Access-Accept and within seconds both instances use the promoted
   replica (its ROLE is master, the instances log the connection to it, a State replayed across
   instances is refused and its spent nonce is on the new master).

Clients of the instances (source address -> name): 127.0.0.1 -> "nas" (a code or "push" in the
password), 127.0.0.2 -> "menu" (mode = "challenge": a first round answers an Access-Challenge
with a State; used for the State replays), 127.0.0.3 -> "freeradius" (the proxy of case 1: its
home_servers send from that address; it signs every proxied request with a
Message-Authenticator, so the default require_message_authenticator stays on).

Users: their own simulator TOML below, every login a user of its own, so one-time codes and
limits never collide. Under CI=true a missing freeradius, redis-server, redis-sentinel or
redis-cli fails instead of skipping.
"""

import base64
import calendar
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import harness
from redis_peer import Redis, metric, resp, store_calls, wait_log  # noqa: E402
from harness import access_request, code_name, reply_messages, reply_state

CI = os.environ.get("CI") == "true"
SECRET = "failover-nas-secret-0123456789"       # the NAS (this test) to vip-bridge / FreeRADIUS
PROXY_SECRET = "failover-proxy-secret-9876543210"  # FreeRADIUS to vip-bridge
NAS_SOURCE = "127.0.0.1"
MENU_SOURCE = "127.0.0.2"
PROXY_SOURCE = "127.0.0.3"
SETUP = os.path.join(harness.REPO, "bench", "freeradius", "setup.sh")

RATE = 80            # code logins per second in the load cases (over both instances)
REDIS_LOAD = 6.0     # case 2: seconds of load; Redis is killed at 2 s and back at 4 s
SENTINEL_LOAD = 8.0  # case 3: seconds of load; the master is killed at 2 s
REDIS_USERS = ["rload%03d" % i for i in range(int(RATE * REDIS_LOAD))]
SENTINEL_USERS = ["sload%03d" % i for i in range(int(RATE * SENTINEL_LOAD))]
FR_USERS = ("frone", "frtwo", "frthree", "frpush")
REPLAY_USERS = ("replayredis", "replaysentinel")
SIM_USERS = FR_USERS + REPLAY_USERS + tuple(REDIS_USERS) + tuple(SENTINEL_USERS)
PHONE_DELAY_MS = {"frpush": 9000}  # the phone of case 1 approves 9 s after the push arrives
SIM_POLICY = "number_challenge = false\nlockout_after = 50\n"

# Case 1: FreeRADIUS's response_window for both home servers: above what B needs to answer the
# joined push (it arrives ~6 s after the push was sent, the phone answers at 9 s), below the
# phone's delay (so the request pending on the killed A times out before the push ends).
RESPONSE_WINDOW = 6
# zombie_period: FreeRADIUS 3.2.1 marks a home server zombie after a response_window without an
# answer only if nothing came from it for (zombie_period + 3) / 4 s (3 s here; A answered the
# first login 6 s before), checks a zombie with Status-Server at once and then every
# check_interval = 6 s (3.2.1's minimum), revives it on one answer, and marks it dead after
# zombie_period; a dead one needs num_answers_to_alive = 3 (3.2.1's minimum) answered checks,
# 12 s or more. A is started again ~5 s into the zombie period: the check at 6 s revives it.
ZOMBIE_PERIOD = 12

MSG_BAD_STATE = "This sign-in has expired or was already used"
USED_ELSEWHERE = "State was already used (on another instance)"
NO_ANSWER = "the shared store (Redis) did not answer"
CONNECTED = "connected to the shared store (Redis)"
FALLBACK_MEMORY = 'vip_bridge_store_fallbacks_total{to="memory"}'
FALLBACK_REJECT = 'vip_bridge_store_fallbacks_total{to="reject"}'
CODE_ACCEPTS = 'vip_bridge_logins_total{front_door="radius",factor="code",outcome="accept"}'


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI."""
    if ok:
        return
    if CI:
        pytest.fail("%s (CI=true: the cluster fail-over tests must run)" % what)
    pytest.skip(what)


def which(name):
    return shutil.which(name) or (os.path.exists("/usr/sbin/" + name) and "/usr/sbin/" + name)


def totp_secret(user):
    return base64.b32encode(hashlib.sha1(("vip-bridge-failover-" + user).encode())
                            .digest()).decode()


TOTP = {u: totp_secret(u) for u in SIM_USERS}


def sim_users():
    out = []
    for i, user in enumerate(SIM_USERS):
        out.append('[[users]]\nid = "%s"\n' % user)
        out.append('[[users.credentials]]\nid = "VSMT7%07d"\ntotp_secret = "%s"\npush = true\n'
                   % (i + 1, TOTP[user]))
        out.append('[users.push]\naction = "approve"\ndelay_ms = %d\n\n'
                   % PHONE_DELAY_MS.get(user, 200))
    return "".join(out)


def code_of(user, min_left=3):
    """The user's current code (RFC 6238 from its secret), with `min_left` seconds of its step
    left (waits otherwise). The simulator accepts the steps either side too."""
    return harness.fresh_totp(TOTP[user], min_left)


def bridge_toml(sim, certs, key_file, redis_urls, sentinel_master=None, listen="127.0.0.1:0",
                cluster_toml=None):
    """The bridge's configuration; `cluster_toml` (the README's recipe) replaces this file's
    own [engine] and [cluster] sections."""
    sentinel = 'sentinel_master = "%s"\n' % sentinel_master if sentinel_master else ""
    own = """
[engine]
poll_interval = "200ms"
state_key_file = "{key}"

[cluster]
store = "redis"
when_unavailable = "memory"

[cluster.redis]
urls = [{urls}]
{sentinel}timeout = "250ms"
""".format(key=key_file, urls=", ".join('"%s"' % u for u in redis_urls), sentinel=sentinel)
    return harness.vip_toml(sim, certs) + (cluster_toml if cluster_toml is not None else own) + """
[policies.menu]
mode = "challenge"

[radius]
listen = ["{listen}"]
response_cache_ttl = "15s"
shutdown_timeout = "2s"

[[radius.clients]]
name = "nas"
address = "{nas}"
secret = "{secret}"

[[radius.clients]]
name = "menu"
address = "{menu}"
secret = "{secret}"
policy = "menu"

# FreeRADIUS, the proxy of case 1. Its pre-proxy section puts a Message-Authenticator in every
# proxied Access-Request and its Status-Server checks carry one (RFC 5997): the default
# require_message_authenticator = true holds for it too.
[[radius.clients]]
name = "freeradius"
address = "{proxy}"
secret = "{proxy_secret}"

[metrics]
listen = "127.0.0.1:0"

[log]
format = "text"
level = "info"
""".format(listen=listen, nas=NAS_SOURCE, menu=MENU_SOURCE, proxy=PROXY_SOURCE, secret=SECRET,
           proxy_secret=PROXY_SECRET)


README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
REDIS_PW = "ha-recipe-redis-password"


def readme_cluster_toml(cl, sentinel_url):
    """The README's "Several instances" recipe, with only these substitutions: this test's
    Sentinel for the example ones, and this test's State key and password files for the
    example paths."""
    text = open(README, encoding="utf-8").read()
    section = text.split("<!-- cluster-recipe:begin -->", 1)[1].split(
        "<!-- cluster-recipe:end -->", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README shows one [cluster] recipe"
    pw_file = os.path.join(cl.dir, "redis.password")
    with open(pw_file, "w") as f:
        f.write(REDIS_PW + "\n")
    subst = [
        (r'urls = \[.*\]', 'urls = ["%s"]' % sentinel_url),
        (r'state_key_file = ".*?"', 'state_key_file = "%s"' % cl.key_file),
        (r'password_file = ".*?"', 'password_file = "%s"' % pw_file),
    ]
    block = blocks[0]
    for pattern, repl in subst:
        block, n = re.subn(pattern, lambda _m, r=repl: r, block)
        assert n == 1, "the README's recipe has no %s" % pattern
    return block


# ---------------------------------------------------------------------------------------------
# Redis, Sentinel


def wait_for(what, check, timeout, interval=0.05):
    """Polls `check()` until it returns something true; its value. Fails naming `what`."""
    deadline = time.time() + timeout
    while True:
        try:
            got = check()
        except (OSError, ConnectionError, RuntimeError):
            got = None
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError("%s: not within %.0f s" % (what, timeout))
        time.sleep(interval)


def redis_cli_role(port, password=None):
    """`redis-cli -p PORT ROLE`: its first line (master / slave / sentinel)."""
    auth = ["-a", password, "--no-auth-warning"] if password else []
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)] + auth + ["ROLE"],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    lines = p.stdout.decode().split()
    return lines[0] if lines else p.stderr.decode()


# ---------------------------------------------------------------------------------------------
# The instances


@pytest.fixture(scope="module")
def env(workroot, certs):
    """The simulator and the State key every instance of this file shares."""
    need(shutil.which("redis-server"),
         "redis-server is not installed (Debian package redis-server)")
    workdir = os.path.join(workroot, "cluster-failover")
    os.makedirs(workdir, exist_ok=True)
    key_file = os.path.join(workdir, "state.key")
    with open(key_file, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(key_file, 0o600)
    sim = harness.Sim(workdir, harness.sim_toml(certs, sim_users(), SIM_POLICY))
    try:
        yield Env(sim, certs, key_file, workdir)
    finally:
        sim.stop()


class Env:
    def __init__(self, sim, certs, key_file, workdir):
        self.sim = sim
        self.certs = certs
        self.key_file = key_file
        self.dir = workdir
        self.started = []  # every bridge and peer, stopped by the `stopped` fixture

    def subdir(self, name):
        d = os.path.join(self.dir, name)
        os.makedirs(d, exist_ok=True)
        return d

    def bridge(self, name, redis_urls, sentinel_master=None, listen="127.0.0.1:0",
               cluster_toml=None):
        b = harness.Bridge(self.subdir(name),
                           bridge_toml(self.sim, self.certs, self.key_file, redis_urls,
                                       sentinel_master, listen, cluster_toml))
        b.name = name
        self.started.append(b)
        return b

    def redis(self, name, **kw):
        r = Redis(self.subdir("redis"), name, **kw)
        self.started.append(r)
        return r.start()


@pytest.fixture
def cl(env, request):
    """The test's own processes: stopped in any case; on failure the tails of the bridges'
    logs on the terminal."""
    failed = request.session.testsfailed
    env.started = []
    try:
        yield env
    finally:
        if request.session.testsfailed > failed:
            for p in env.started:
                if isinstance(p, harness.Bridge):
                    sys.__stderr__.write("\n--- vip-bridge %s log (tail) ---\n%s\n"
                                         % (p.name, p.log()[-5000:]))
        for p in reversed(env.started):
            try:
                rc = p.stop()
            except Exception as e:  # noqa: BLE001 -- stop every other one regardless
                sys.stderr.write("stopping %r: %s\n" % (p, e))
                continue
            if isinstance(p, harness.Bridge) and rc not in (0, -9):
                sys.stderr.write("vip-bridge %s exited %r; log tail:\n%s\n"
                                 % (p.name, rc, p.log()[-3000:]))
        env.started = []


def connected_at(bridge, index):
    """When the bridge logged its `index`-th connection to the store (Unix time, from the
    log line's UTC timestamp)."""
    lines = [ln for ln in bridge.log().splitlines() if CONNECTED in ln]
    stamp = lines[index].split()[0]
    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(
        "0" + stamp[19:].rstrip("Z"))


def assert_alive(*bridges):
    for b in bridges:
        assert b.proc.alive(), "vip-bridge %s died:\n%s" % (b.name, b.log()[-6000:])
        assert "panicked" not in b.log(), "vip-bridge %s panicked:\n%s" % (b.name,
                                                                           b.log()[-6000:])


def reply_ok(raw_request, reply, secret):
    """The reply answers this request: same Identifier, Response Authenticator right (RFC
    2865 3: MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret))."""
    if reply is None or len(reply) < 20 or reply[1] != raw_request[1]:
        return False
    want = hashlib.md5(reply[:4] + raw_request[4:20] + reply[20:] + secret).digest()
    return reply[4:20] == want


def ask(source, addr, user, password, secret=SECRET, timeout=20, **attrs):
    """A new Access-Request from `source` to `addr`: the raw reply (checked to answer it)."""
    s = harness.Udp(source)
    try:
        _, raw = access_request(secret.encode(), user, password, **attrs)
        reply = s.exchange(raw, addr, timeout=timeout)
    finally:
        s.close()
    assert reply is not None, "no reply from %s within %d s" % (addr, timeout)
    assert reply_ok(raw, reply, secret.encode()), "a reply that does not answer the request"
    return reply


def state_replay_refused(sim, a, b, user):
    """A State from A's Access-Challenge (client "menu"), accepted once on B with the user's
    code; the same State in a NEW Access-Request to A: refused as used, before VIP is asked.
    Only the shared store can tell A that B spent it."""
    refused_before = a.log().count(USED_ELSEWHERE)
    first = ask(MENU_SOURCE, a.addr(), user, None)
    assert code_name(first) == "Access-Challenge", (code_name(first), reply_messages(first))
    state = reply_state(first)
    assert state, "an Access-Challenge without a State"
    code = code_of(user)
    before = sim.calls("authenticateUser")
    used = ask(MENU_SOURCE, b.addr(), user, code, state=state)
    assert code_name(used) == "Access-Accept", reply_messages(used)
    assert sim.calls("authenticateUser") == before + 1
    replay = ask(MENU_SOURCE, a.addr(), user, code, state=state)
    assert code_name(replay) == "Access-Reject", (code_name(replay), reply_messages(replay))
    assert MSG_BAD_STATE in reply_messages(replay), reply_messages(replay)
    assert sim.calls("authenticateUser") == before + 1, "the replay reached VIP"
    wait_log(a, USED_ELSEWHERE, timeout=5, seen=refused_before)


def wait_store_used(bridges, since, timeout):
    """Waits until each bridge made a successful store call beyond `since` (its count of
    them at some earlier moment), probing with requests refused before VIP ("x" is no code;
    each asks the store for requests_per_client). Seconds each took."""
    started = time.time()
    took = [None] * len(bridges)
    deadline = started + timeout
    while None in took and time.time() < deadline:
        for i, b in enumerate(bridges):
            if took[i] is None:
                reply = ask(NAS_SOURCE, b.addr(), "probe", "x")
                assert code_name(reply) == "Access-Reject", reply_messages(reply)
                if store_calls(b, "ok") > since[i]:
                    took[i] = time.time() - started
        time.sleep(0.1)
    assert None not in took, "an instance never used Redis again: %s" % took
    return took


# ---------------------------------------------------------------------------------------------
# Load: fresh users' code logins at a steady rate over both instances


class Stream:
    """`len(users)` code logins, RATE a second, from `threads` threads (each its own UDP
    socket, one request at a time, as many NAS ports), alternating between `bridges`: login k
    is sent at t0 + k / RATE (or as soon as its thread is free) to bridges[k % 2] for users[k]
    with that user's current code. No retransmits: each request must be answered within
    `timeout` seconds. .results: one (k, bridge index, sent at (s since t0), seconds to the
    reply or None, code name or None, Reply-Message) per login."""

    def __init__(self, bridges, users, threads=8, timeout=20):
        self.bridges = bridges
        self.users = users
        self.threads = threads
        self.timeout = timeout
        self.results = []
        self.errors = []
        self._lock = threading.Lock()
        self.t0 = None
        self._workers = []
        self._stop = threading.Event()

    def start(self):
        self.t0 = time.time() + 0.2
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def _run(self, i):
        s = harness.Udp(NAS_SOURCE)
        try:
            for k in range(i, len(self.users), self.threads):
                if self._stop.is_set():
                    return
                at = self.t0 + k / RATE
                delay = at - time.time()
                if delay > 0:
                    time.sleep(delay)
                user = self.users[k]
                which_bridge = k % len(self.bridges)
                _, raw = access_request(SECRET.encode(), user, harness.totp(TOTP[user]))
                sent = time.time()
                reply = s.exchange(raw, self.bridges[which_bridge].addr(), timeout=self.timeout)
                took = time.time() - sent
                if reply is not None and not reply_ok(raw, reply, SECRET.encode()):
                    row = (k, which_bridge, sent - self.t0, took, "not-an-answer", "")
                elif reply is None:
                    row = (k, which_bridge, sent - self.t0, None, None, "")
                else:
                    row = (k, which_bridge, sent - self.t0, took, code_name(reply),
                           reply_messages(reply))
                with self._lock:
                    self.results.append(row)
        except Exception as e:  # noqa: BLE001 -- reported by join()
            with self._lock:
                self.errors.append(repr(e))
        finally:
            s.close()

    def sleep_until(self, offset):
        delay = self.t0 + offset - time.time()
        if delay > 0:
            time.sleep(delay)

    def stop(self):
        """Sends no more (a test failing half-way)."""
        self._stop.set()

    def join(self):
        for t in self._workers:
            t.join(timeout=len(self.users) / RATE + self.timeout + 30)
        assert not any(t.is_alive() for t in self._workers), "a load thread is stuck"
        assert not self.errors, self.errors
        self.results.sort()
        return self.results

    def summary(self):
        lat = sorted(r[3] for r in self.results if r[3] is not None)
        last = max(r[2] for r in self.results)
        return ("%d logins in %.1f s (%.0f/s), reply time median %.0f ms, max %.0f ms"
                % (len(self.results), last, len(self.results) / max(last, 0.1),
                   1000 * lat[len(lat) // 2], 1000 * lat[-1]))

    def assert_all_accepted(self):
        assert len(self.results) == len(self.users)
        unanswered = [r for r in self.results if r[4] is None]
        assert not unanswered, "%d of %d logins got no answer within %d s: %s" % (
            len(unanswered), len(self.results), self.timeout, unanswered[:10])
        wrong = [r for r in self.results if r[4] != "Access-Accept"]
        assert not wrong, "%d of %d logins were not accepted: %s" % (
            len(wrong), len(self.results), wrong[:10])
        # None waited on the dead store for long (each store call waits at most
        # cluster.redis.timeout = 250 ms; a broken connection fails calls at once).
        slow = [r for r in self.results if r[3] > 5]
        assert not slow, "%d logins took over 5 s: %s" % (len(slow), slow[:10])


# ---------------------------------------------------------------------------------------------
# FreeRADIUS as the NAS-side proxy


def freeradius_proxy(workdir, homes):
    """A private FreeRADIUS 3.2 (bench/freeradius/setup.sh's copy of /etc/freeradius/3.0, then
    proxying on) listening on a loopback port for the NAS (client 127.0.0.1, SECRET), proxying
    every Access-Request to a fail-over pool of `homes` ([(name, port)], in that order) from
    PROXY_SOURCE, with Status-Server checks. (harness.Proc, port, the configuration dir.)"""
    conf = os.path.join(workdir, "conf")
    last = None
    for _attempt in range(4):
        shutil.rmtree(conf, ignore_errors=True)
        port = harness.free_port(socket.SOCK_DGRAM)
        subprocess.run(["bash", SETUP, "--dir", conf, "--port", str(port), "--secret", SECRET,
                        "--users", "1", "--status-server"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=60)
        radiusd = os.path.join(conf, "radiusd.conf")
        with open(radiusd) as f:
            text = f.read()
        text, n = re.subn(r"(?m)^proxy_requests = no$", "proxy_requests = yes", text)
        assert n == 1, "setup.sh's radiusd.conf has no 'proxy_requests = no' line"
        with open(radiusd, "w") as f:
            f.write(text)
        servers = "".join("""
home_server {name} {{
	type = auth
	ipaddr = 127.0.0.1
	port = {port}
	src_ipaddr = {src}
	secret = {secret}
	response_window = {window}
	response_timeouts = 1
	zombie_period = {zombie}
	status_check = status-server
	check_interval = 6
	check_timeout = 2
	num_answers_to_alive = 3
	max_outstanding = 65536
}}
""".format(name=name, port=hp, src=PROXY_SOURCE, secret=PROXY_SECRET, window=RESPONSE_WINDOW,
           zombie=ZOMBIE_PERIOD)
            for name, hp in homes)
        with open(os.path.join(conf, "proxy.conf"), "w") as f:
            f.write("proxy server {\n\tdefault_fallback = no\n}\n" + servers
                    + "home_server_pool bridges {\n\ttype = fail-over\n"
                    + "".join("\thome_server = %s\n" % name for name, _ in homes)
                    + "}\nrealm vip {\n\tauth_pool = bridges\n\tnostrip\n}\n")
        with open(os.path.join(conf, "sites-enabled", "bench"), "w") as f:
            f.write("""server nas {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = %d
	}
	authorize {
		Autz-Type Status-Server {
			ok
		}
		update control {
			&Proxy-To-Realm := "vip"
		}
	}
	authenticate {
	}
	pre-proxy {
		# 3.2.1 ignores require_message_authenticator on a home_server: sign every
		# proxied Access-Request ourselves (vip-bridge requires it by default).
		update proxy-request {
			&Message-Authenticator := 0x00
		}
	}
	post-proxy {
	}
	post-auth {
	}
}
""" % port)
        check = subprocess.run(["freeradius", "-C", "-d", conf], capture_output=True,
                               timeout=60)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        proc = harness.Proc("freeradius", ["freeradius", "-f", "-d", conf], workdir)
        try:
            wait_for("FreeRADIUS answering Status-Server on %d" % port,
                     lambda: status_server_answered(port, SECRET), timeout=20)
            return proc, port, conf
        except AssertionError as e:
            last = "%s\n%s\n%s" % (e, proc.log(), fr_log(conf))
            proc.stop()
    raise RuntimeError("FreeRADIUS did not start:\n%s" % last)


def status_server_answered(port, secret, source=NAS_SOURCE):
    s = harness.Udp(source)
    try:
        _, raw = harness.status_server(secret.encode())
        reply = s.exchange(raw, ("127.0.0.1", port), timeout=0.5)
        return reply is not None and reply[1] == raw[1]
    finally:
        s.close()


def fr_log(conf):
    try:
        with open(os.path.join(conf, "log", "radius.log"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# 1. FreeRADIUS in front of both: A killed mid-push, the next login goes to B


def test_freeradius_proxy_fails_over_to_the_surviving_instance(cl):
    need(which("freeradius"), "freeradius is not installed (Debian package freeradius)")
    redis = cl.redis("fr-redis")
    a = cl.bridge("fr-a", [redis.url])
    b = cl.bridge("fr-b", [redis.url])
    for x in (a, b):
        wait_log(x, CONNECTED)
    a_port = a.addr()[1]
    fr, fr_port, conf = freeradius_proxy(cl.subdir("freeradius"),
                                         [("bridge_a", a_port), ("bridge_b", b.addr()[1])])
    cl.started.append(fr)
    front = ("127.0.0.1", fr_port)
    sim = cl.sim
    try:
        # The two instances answer Status-Server (RFC 5997) from the proxy's address.
        for x in (a, b):
            s = harness.Udp(PROXY_SOURCE)
            try:
                _, raw = harness.status_server(PROXY_SECRET.encode())
                reply = s.exchange(raw, x.addr(), timeout=10)
            finally:
                s.close()
            assert code_name(reply) == "Access-Accept", reply
            assert reply_ok(raw, reply, PROXY_SECRET.encode())

        # A login through FreeRADIUS: the pool's first member, A, serves it.
        checks = sim.calls("authenticateUser")
        reply = ask(NAS_SOURCE, front, "frone", code_of("frone"))
        assert code_name(reply) == "Access-Accept", (code_name(reply), reply_messages(reply))
        assert sim.calls("authenticateUser") == checks + 1
        assert (metric(a, CODE_ACCEPTS), metric(b, CODE_ACCEPTS)) == (1, 0)

        # A blocking push through FreeRADIUS, to A; A is SIGKILLed before the phone answers.
        pushes = sim.calls("authenticateUserWithPush")
        session = {"NAS_Port": 7, "Calling_Station_Id": "203.0.113.7"}
        nas = harness.Udp(NAS_SOURCE)
        try:
            _, pending = access_request(SECRET.encode(), "frpush", "push", **session)
            nas.send(pending, front)
            wait_for("the push A sends", lambda: sim.calls("authenticateUserWithPush") > pushes,
                     timeout=10)
            time.sleep(0.3)  # A publishes the push's transaction in Redis right after
            killed = time.time()
            a.proc.kill()
            # FreeRADIUS does not re-send the pending request to B: after response_window it
            # gives up on A (zombie) and refuses the login.
            lost = nas.recv(timeout=RESPONSE_WINDOW + 15)
        finally:
            nas.close()
        gave_up = time.time() - killed
        assert lost is not None, "FreeRADIUS never answered the request pending on A"
        assert reply_ok(pending, lost, SECRET.encode())
        assert code_name(lost) == "Access-Reject", code_name(lost)
        wait_for("FreeRADIUS marking A zombie",
                 lambda: re.search(r"[Mm]arking home server .* port %d\b.* zombie" % a_port,
                                   fr_log(conf)), timeout=10, interval=0.1)

        # The user tries again (a new request, same login session): FreeRADIUS sends it to B,
        # which joins the push A sent instead of sending a second one; the phone approves.
        reply = ask(NAS_SOURCE, front, "frpush", "push", timeout=30, **session)
        assert code_name(reply) == "Access-Accept", (code_name(reply), reply_messages(reply))
        assert sim.calls("authenticateUserWithPush") == pushes + 1, "a second push"
        assert "joining the push another instance sent" in b.log()

        # And a code login after it: B again (A is still dead).
        reply = ask(NAS_SOURCE, front, "frtwo", code_of("frtwo"))
        assert code_name(reply) == "Access-Accept", (code_name(reply), reply_messages(reply))
        assert metric(b, CODE_ACCEPTS) == 1
        assert_alive(b)

        # A started again on its port: FreeRADIUS's next Status-Server check of the zombie
        # (every check_interval) reaches it, A answers, and FreeRADIUS uses it again (the
        # first member of a fail-over pool).
        alive_before = len(re.findall(r"[Mm]arking home server .* port %d\b.* alive" % a_port,
                                      fr_log(conf)))
        a2 = cl.bridge("fr-a2", [redis.url], listen="127.0.0.1:%d" % a_port)
        wait_log(a2, CONNECTED)
        wait_for("FreeRADIUS marking A alive again",
                 lambda: len(re.findall(r"[Mm]arking home server .* port %d\b.* alive" % a_port,
                                        fr_log(conf))) > alive_before, timeout=30, interval=0.2)
        assert "Received response to status check" in fr_log(conf), fr_log(conf)
        reply = ask(NAS_SOURCE, front, "frthree", code_of("frthree"))
        assert code_name(reply) == "Access-Accept", (code_name(reply), reply_messages(reply))
        assert metric(a2, CODE_ACCEPTS) == 1
        assert metric(b, CODE_ACCEPTS) == 1
        assert_alive(a2, b)
        sys.stderr.write("FreeRADIUS gave up on the killed A after %.1f s\n" % gave_up)
    except BaseException:
        sys.__stderr__.write("\n--- FreeRADIUS radius.log ---\n%s\n" % fr_log(conf)[-5000:])
        raise


# ---------------------------------------------------------------------------------------------
# 2. Redis SIGKILLed under load, then back on the same port


def test_redis_killed_under_load_every_login_is_answered(cl):
    redis = cl.redis("load-redis")
    a = cl.bridge("load-a", [redis.url])
    b = cl.bridge("load-b", [redis.url])
    for x in (a, b):
        wait_log(x, CONNECTED)
    fallbacks = [metric(x, FALLBACK_MEMORY) for x in (a, b)]
    warned = [x.log().count(NO_ANSWER) for x in (a, b)]

    stream = Stream([a, b], REDIS_USERS).start()
    try:
        try:
            stream.sleep_until(2.0)
            redis.kill()
            killed = time.time() - stream.t0
            stream.sleep_until(4.0)
        finally:
            if not redis.alive():
                redis.start()
        restarted = time.time() - stream.t0
        ok_at_restart = [store_calls(x, "ok") for x in (a, b)]
    except BaseException:
        stream.stop()
        raise
    stream.join()
    sys.stderr.write("Redis down from %.1f s to %.1f s; %s\n"
                     % (killed, restarted, stream.summary()))

    stream.assert_all_accepted()
    during = [r for r in stream.results if killed + 0.1 < r[2] < restarted - 0.1]
    assert len(during) >= RATE, "only %d logins were sent while Redis was down" % len(during)
    for i, x in enumerate((a, b)):
        assert metric(x, FALLBACK_MEMORY) > fallbacks[i], x.name
        assert metric(x, FALLBACK_REJECT) == 0, x.name
        assert x.log().count(NO_ANSWER) > warned[i], x.name
    assert_alive(a, b)

    # Both reconnect (the connector's pause between attempts grows up to 5 s while Redis is
    # down) and use the store again, and a State is single-use across the instances again.
    back = []
    for x in (a, b):
        wait_log(x, CONNECTED, timeout=20, seen=1)
        back.append(connected_at(x, -1) - (stream.t0 + restarted))
    wait_store_used((a, b), ok_at_restart, timeout=10)
    sys.stderr.write("reconnected %.1f s (A), %.1f s (B) after the restart\n" % tuple(back))
    assert redis.keys("vip-bridge:*"), "nothing in the restarted Redis"
    state_replay_refused(cl.sim, a, b, "replayredis")
    assert redis.keys("vip-bridge:state:*"), redis.keys()
    assert_alive(a, b)


# ---------------------------------------------------------------------------------------------
# 3. A Sentinel fail-over under load


def test_sentinel_failover_under_load_moves_both_instances_to_the_new_master(cl):
    need(shutil.which("redis-sentinel"),
         "redis-sentinel is not installed (Debian package redis-sentinel)")
    need(shutil.which("redis-cli"), "redis-cli is not installed (Debian package redis-tools)")
    # (No 5 s wait for more replicas before the first full sync: Redis 7's default.)
    # The README's recipe as written: a password, and the master named "vip-bridge".
    master = cl.redis("master", extra=["--repl-diskless-sync-delay", "0"], password=REDIS_PW)
    replica = cl.redis("replica", extra=["--replicaof", "127.0.0.1", str(master.port)],
                       password=REDIS_PW)
    # The Sentinel learns of the replica from the master's INFO: only once it is attached.
    wait_for("the replica in sync", lambda: replica.info("replication")
             .get("master_link_status") == "up", timeout=20)
    wait_for("the master seeing its replica", lambda: master.info("replication")
             .get("connected_slaves") == "1", timeout=20)
    sentinel = cl.redis("sentinel", sentinel_conf=(
        "sentinel monitor vip-bridge 127.0.0.1 %d 1\n"
        "sentinel auth-pass vip-bridge %s\n"
        "sentinel down-after-milliseconds vip-bridge 500\n"
        "sentinel failover-timeout vip-bridge 3000\n" % (master.port, REDIS_PW)))
    wait_for("the Sentinel knowing the replica",
             lambda: resp(sentinel.port, "SENTINEL", "replicas", "vip-bridge"), timeout=20)
    assert resp(sentinel.port, "SENTINEL", "get-master-addr-by-name", "vip-bridge") == \
        [b"127.0.0.1", str(master.port).encode()]

    recipe = readme_cluster_toml(cl, sentinel.url)
    a = cl.bridge("sentinel-a", [], cluster_toml=recipe)
    b = cl.bridge("sentinel-b", [], cluster_toml=recipe)
    on_master = re.compile(r"%s.*127\.0\.0\.1:%d\b" % (re.escape(CONNECTED), master.port))
    on_replica = re.compile(r"%s.*127\.0\.0\.1:%d\b" % (re.escape(CONNECTED), replica.port))
    for x in (a, b):
        wait_log(x, on_master)
    fallbacks = [metric(x, FALLBACK_MEMORY) for x in (a, b)]

    stream = Stream([a, b], SENTINEL_USERS).start()
    try:
        stream.sleep_until(2.0)
        master.kill()
        killed_at = time.time()
        killed = killed_at - stream.t0
        # Both instances follow the Sentinel to the promoted replica, while the load goes on.
        moved = []
        for x in (a, b):
            wait_log(x, on_replica, timeout=15 - (time.time() - killed_at))
            moved.append(time.time() - killed_at)
        promoted = wait_for("the replica promoted",
                            lambda: redis_cli_role(replica.port, REDIS_PW) == "master",
                            timeout=1)
    except BaseException:
        stream.stop()
        raise
    stream.join()
    sys.stderr.write("master killed at %.1f s; both instances on the new master %.1f s later; "
                     "%s\n" % (killed, max(moved), stream.summary()))
    assert promoted
    assert resp(sentinel.port, "SENTINEL", "get-master-addr-by-name", "vip-bridge") == \
        [b"127.0.0.1", str(replica.port).encode()]

    stream.assert_all_accepted()
    after_kill = [r for r in stream.results if r[2] > killed + 0.1]
    assert len(after_kill) >= 2 * RATE, "only %d logins after the kill" % len(after_kill)
    for i, x in enumerate((a, b)):
        # Between the kill and the reconnection the instances decided alone.
        assert metric(x, FALLBACK_MEMORY) > fallbacks[i], x.name
        assert metric(x, FALLBACK_REJECT) == 0, x.name
    assert_alive(a, b)

    # The new master holds what the instances write now, and shares it between them.
    wait_store_used((a, b), [store_calls(x, "ok") for x in (a, b)], timeout=10)
    assert replica.keys("vip-bridge:*"), "nothing on the new master"
    state_replay_refused(cl.sim, a, b, "replaysentinel")
    assert replica.keys("vip-bridge:state:*"), replica.keys()
    assert_alive(a, b)
