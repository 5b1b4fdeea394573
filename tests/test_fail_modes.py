"""Every VIP failure x fail mode (closed, open), through both real front doors:

* RADIUS: radclient (freeradius-utils) from two client addresses, 127.0.0.1 (policy `closed`)
  and 127.0.0.2 (policy `open`);
* PAM: pamtester + pam_vip.so under libpam-wrapper, PAM services `vbfm-closed` and `vbfm-open`
  mapped by the daemon's [pam.services] to the same two policies (the daemon's fail mode, not
  pam_vip's own `fail_mode=` argument, which is about the daemon being down).

Expected outcomes (the failure classes of the bridge):
  outage (connect refused, timeout, HTTP 503, SOAP Server fault, 6005 twice)
      closed -> Reject `unavailable`; open -> Accept, failed open (fail_opens_total + 1) while
      VIP is known down; 6005 for one user on a healthy VIP -> Reject `unavailable` in both.
  misconfiguration / protocol (404 path, SOAP Client fault, wrong namespace, garbage body,
  HTML 500, TLS refusal) -> Reject `misconfigured` in both modes.
  overload here (no free vip.max_in_flight slot) -> Reject `overloaded` in both modes; and a
  login flood on a healthy (if slowish) VIP never makes the health monitor say "down", so it
  never fails open.

The peer's own result says Accept / Reject (radclient's reply code, pamtester's exit status);
the reason comes from the bridge's Prometheus endpoint (`vip_bridge_rejects_total{reason}`
before / after each login) and from the `login round finished` log event of that user.

One simulator and one bridge (vip.timeout 1s, vip.max_in_flight 2) serve every simulator-side
fault; small extra bridges only for connection refused, a wrong auth_url path and an untrusted
client certificate. Faults are cleared after every case.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402
from harness import fresh_totp, q, radclient, wrong_code  # noqa: E402

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

SECRET = "fail-modes-secret"
CLOSED_SOURCE = "127.0.0.1"
OPEN_SOURCE = "127.0.0.2"
MODES = ("closed", "open")
DOORS = ("radius", "pam")

# One simulator user per door x mode: the only real Accept of each (6005 once) never meets a
# replayed code, and every log line names whose login it was. PAM users are also local users.
TARGETS = {
    ("radius", "closed"): "vbfmrc",
    ("radius", "open"): "vbfmro",
    ("pam", "closed"): "vbfmpc",
    ("pam", "open"): "vbfmpo",
}
# Flood users (RADIUS only): every call of theirs takes longer than vip.timeout.
FLOOD_USERS = ["vbflood%d" % i for i in range(1, 7)]
FLOOD_LATENCY_MS = 4000

VIP_TIMEOUT = "1s"
SLOW_MS = 1500  # > vip.timeout
MAX_IN_FLIGHT = 2
HEALTH_INTERVAL = "1s"


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI."""
    if ok:
        return
    if CI:
        pytest.fail("%s (CI=true: the fail-mode tests must run)" % what)
    pytest.skip(what)


def cases_for(*doors):
    return [pytest.param(d, m, id="%s-%s" % (d, m)) for d in doors for m in MODES]


# ---------------------------------------------------------------------------------------------
# Configuration


def sim_users():
    out = []
    users = [TARGETS[k] for k in sorted(TARGETS)] + FLOOD_USERS
    for i, u in enumerate(users):
        out.append(ph.sim_user(u, index=i))
        if u in FLOOD_USERS:
            out.append("[users.faults]\nlatency_ms = %d\n\n" % FLOOD_LATENCY_MS)
    return "".join(out)


def bridge_toml(urls, cert, key, ca, socket_path):
    auth, query, mgmt = urls
    return """
[vip]
auth_url = "{auth}"
query_url = "{query}"
management_url = "{mgmt}"
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{ca}"
timeout = "{timeout}"
max_in_flight = {max_in_flight}
health_check_interval = "{health}"

[engine]
poll_interval = "300ms"

[engine.throttle]
push_per_user = {{ count = 50, per = "5m" }}
codes_per_user = {{ count = 1000, per = "5m" }}

[policies.closed]
fail_mode = "closed"
otp_operation = "authenticate_user"

[policies.open]
fail_mode = "open"
otp_operation = "authenticate_user"

[radius]
listen = ["127.0.0.1:0"]
response_cache_ttl = "15s"
max_in_flight = 256
shutdown_timeout = "2s"

[[radius.clients]]
name = "nas-closed"
address = "{closed_src}"
secret = "{secret}"
policy = "closed"

[[radius.clients]]
name = "nas-open"
address = "{open_src}"
secret = "{secret}"
policy = "open"

[pam]
socket = "{sock}"
request_timeout = "60s"

[pam.services."vbfm-closed"]
policy = "closed"

[pam.services."vbfm-open"]
policy = "open"

[metrics]
listen = "127.0.0.1:0"

[log]
format = "text"
level = "info"
""".format(auth=auth, query=query, mgmt=mgmt, cert=cert, key=key, ca=ca, timeout=VIP_TIMEOUT,
           max_in_flight=MAX_IN_FLIGHT, health=HEALTH_INTERVAL, closed_src=CLOSED_SOURCE,
           open_src=OPEN_SOURCE, secret=SECRET, sock=socket_path)


def sim_urls(sim, auth_service="AuthenticationService"):
    return (sim.url(auth_service), sim.url("QueryService"), sim.url("ManagementService"))


def rogue_client_cert(directory):
    """A client certificate and key signed by a CA the simulator does not trust."""
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)  # noqa: E731

    def run(*argv):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", p("rogue-ca.key"), "-out", p("rogue-ca.pem"),
        "-days", "2", "-subj", "/CN=rogue test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", *ec, "-keyout", p("rogue-client.key"), "-out", p("rogue-client.csr"),
        "-subj", "/CN=rogue client")
    with open(p("ext.cnf"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    run("openssl", "x509", "-req", "-in", p("rogue-client.csr"), "-CA", p("rogue-ca.pem"),
        "-CAkey", p("rogue-ca.key"), "-CAcreateserial", "-out", p("rogue-client.pem"),
        "-days", "2", "-extfile", p("ext.cnf"))
    return p("rogue-client.pem"), p("rogue-client.key")


def dead_port():
    """A loopback TCP port nothing listens on."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# One bridge with both doors, its metrics and its log


ANSI = re.compile(r"\x1b\[[0-9;]*m")
REJECT_SERIES = re.compile(r'^vip_bridge_rejects_total\{reason="([^"]+)"\} (\S+)$')


class Env:
    def __init__(self, name, workdir, urls, cert, key, ca):
        self.name = name
        self.dir = workdir
        os.makedirs(os.path.join(workdir, "run"), exist_ok=True)
        self.socket = os.path.join(workdir, "run", "pam.sock")
        self.bridge = harness.Bridge(workdir, bridge_toml(urls, cert, key, ca, self.socket))
        self.pt = ph.Pamtester(workdir)
        module = ph.module_path()
        for mode in MODES:
            self.pt.service("vbfm-" + mode, module,
                            "socket=%s timeout=30" % self.bridge.ready["pam"])

    def stop(self):
        rc = self.bridge.stop()
        if rc not in (0, None):
            sys.stderr.write("vip-bridge (%s) exited %r; log:\n%s\n"
                             % (self.name, rc, self.bridge.log()))

    def log(self):
        return ANSI.sub("", self.bridge.log())

    def scrape(self):
        url = "http://%s/metrics" % self.bridge.ready["metrics"]
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()

    def metrics(self):
        """(rejects by reason, fail_opens_total, vip calls in flight)."""
        rejects, fail_opens, in_flight = {}, 0.0, 0.0
        for line in self.scrape().splitlines():
            m = REJECT_SERIES.match(line)
            if m:
                rejects[m.group(1)] = float(m.group(2))
            elif line.startswith("vip_bridge_fail_opens_total "):
                fail_opens = float(line.split()[-1])
            elif line.startswith("vip_bridge_vip_calls_in_flight "):
                in_flight = float(line.split()[-1])
        return rejects, fail_opens, in_flight

    def login(self, door, mode, user, code):
        """One login through a real peer: (True for Accept / False for Reject, peer output)."""
        if door == "radius":
            attrs = [("User-Name", q(user)), ("User-Password", q(code)),
                     ("Message-Authenticator", "0x00")]
            if mode == "open":
                attrs.append(("Packet-Src-IP-Address", OPEN_SOURCE))
            got, _, out = radclient(self.bridge.addr(), SECRET, attrs, timeout=20, retries=1)
            assert got in ("Access-Accept", "Access-Reject"), "radclient got %r:\n%s" % (got, out)
            return got == "Access-Accept", out
        rc, out = self.pt.run("vbfm-" + mode, user, [code], timeout=60)
        accepted = rc == 0 and "successfully authenticated" in out
        assert accepted or rc != 0, out
        return accepted, out

    def quiet(self, timeout=10.0):
        """Waits until no VIP call is in flight (three reads in a row)."""
        deadline = time.time() + timeout
        calm = 0
        while time.time() < deadline:
            calm = calm + 1 if self.metrics()[2] == 0 else 0
            if calm >= 3:
                return
            time.sleep(0.1)
        raise AssertionError("%s: VIP calls still in flight after %ss" % (self.name, timeout))

    def health_settled(self, timeout=8.0):
        """Waits until the health monitor no longer says VIP is down (its last transition line
        is not "DOWN"), so one case's outage does not leak into the next."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            last = None
            for line in self.log().splitlines():
                if "VIP health check" in line:
                    last = line
            if last is None or "DOWN" not in last:
                return
            time.sleep(0.1)
        raise AssertionError("%s: VIP still reported down %ss after the fault was cleared"
                             % (self.name, timeout))


def login_lines(log, user):
    pat = re.compile(r'\buser="?%s"?[\s,}]' % re.escape(user))
    return [l for l in log.splitlines() if "login round finished" in l and pat.search(l)]


def field(line, name):
    m = re.search(r'\b%s=(?:"([^"]*)"|([^\s,}]*))' % re.escape(name), line)
    if not m:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def check(env, door, mode, user, code, want, reason=None, failed_open=False, exact=True,
          log_has=None):
    """Runs one login and asserts the peer's result, the metrics delta and the log event.
    `want`: "accept" or "reject". `exact`: no other login ran meanwhile (else only the
    target's own log line and a >= delta are checked). `log_has`: text the bridge must have
    logged (which failure it saw)."""
    rej0, fo0, _ = env.metrics()
    mark = len(env.log())
    started = time.time()
    accepted, out = env.login(door, mode, user, code)
    took = time.time() - started
    rej1, fo1, _ = env.metrics()
    delta = {r: rej1.get(r, 0) - rej0.get(r, 0) for r in set(rej0) | set(rej1)}
    delta = {r: int(v) for r, v in delta.items() if v}
    fo = int(fo1 - fo0)
    # The log event is written just before the reply: give the file a moment.
    lines = []
    for _ in range(30):
        lines = login_lines(env.log()[mark:], user)
        if lines:
            break
        time.sleep(0.1)
    context = ("%s %s/%s user=%s: peer %s after %.1fs; rejects delta %s; fail_opens delta %d;"
               "\nlog event: %s\npeer output:\n%s\nbridge log meanwhile:\n%s"
               % (env.name, door, mode, user, "ACCEPT" if accepted else "REJECT", took, delta,
                  fo, lines[-1] if lines else "(none)", out[-3000:], env.log()[mark:][-6000:]))
    assert lines, "no `login round finished` event for %s\n%s" % (user, context)
    line = lines[-1]
    if want == "accept":
        assert accepted, context
        assert field(line, "outcome") == "accept", context
        if exact:
            assert delta == {}, context
        assert fo == (1 if failed_open else 0), context
        assert field(line, "failed_open") == ("true" if failed_open else "false"), context
    else:
        assert not accepted, context
        assert field(line, "outcome") == "reject", context
        assert field(line, "reason") == reason, context
        if exact:
            assert delta == {reason: 1}, context
        else:
            assert delta.get(reason, 0) >= 1, context
        assert fo == 0, context
    if log_has:
        # The bridge logs a repeated problem's details at most once a second: look at all of
        # this bridge's log (each small bridge has exactly one fault).
        assert log_has in env.log(), "%r not logged\n%s" % (log_has, context)
    return context


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def peers():
    need(shutil.which("radclient"), "radclient (freeradius-utils) is not installed")
    need(ph.have("pamtester") and ph.wrapper_path(), "pamtester or libpam-wrapper not installed")
    need(shutil.which("openssl"), "openssl is not installed")
    for (door, _), user in TARGETS.items():
        if door == "pam":
            ph.ensure_user(user)


@pytest.fixture(scope="module")
def sim(peers, workroot, certs):
    workdir = os.path.join(workroot, "fail_modes")
    os.makedirs(workdir, exist_ok=True)
    s = harness.Sim(workdir, harness.sim_toml(
        certs, sim_users(), "number_challenge = false\nlockout_after = 50\n"))
    yield s
    s.stop()


def make_env(workroot, name, urls, cert, key, ca):
    workdir = os.path.join(workroot, "fail_modes", name)
    os.makedirs(workdir, exist_ok=True)
    return Env(name, workdir, urls, cert, key, ca)


@pytest.fixture(scope="module")
def env(sim, workroot, certs):
    e = make_env(workroot, "main", sim_urls(sim), certs["client.pem"], certs["client.key"],
                 certs["ca.pem"])
    yield e
    e.stop()


@pytest.fixture(scope="module")
def refused_env(peers, workroot, certs):
    port = dead_port()
    base = "https://127.0.0.1:%d/vipuserservices/%%s_1_10" % port
    urls = tuple(base % s for s in ("AuthenticationService", "QueryService", "ManagementService"))
    e = make_env(workroot, "refused", urls, certs["client.pem"], certs["client.key"],
                 certs["ca.pem"])
    yield e
    e.stop()


@pytest.fixture(scope="module")
def wrong_path_env(sim, workroot, certs):
    # A typo in the service name: the simulator (like VIP) answers 404.
    urls = sim_urls(sim, auth_service="AuthenticationServices")
    e = make_env(workroot, "wrong_path", urls, certs["client.pem"], certs["client.key"],
                 certs["ca.pem"])
    yield e
    e.stop()


@pytest.fixture(scope="module")
def tls_env(sim, workroot, certs):
    cert, key = rogue_client_cert(os.path.join(workroot, "fail_modes", "rogue"))
    e = make_env(workroot, "tls_refused", sim_urls(sim), cert, key, certs["ca.pem"])
    yield e
    e.stop()


# ---------------------------------------------------------------------------------------------
# 6005 (VIP's "internal error, retry"): retried once; first, while VIP is certainly healthy.


@pytest.mark.parametrize("door,mode", cases_for(*DOORS))
def test_6005_twice_is_retried_then_unavailable(env, sim, door, mode):
    user = TARGETS[(door, mode)]
    sim.set_user_faults(user, {"status": {"authenticateUser": "6005"}})
    try:
        before = sim.calls("authenticateUser")
        # VIP itself is healthy (getServerTime answers): never a fail-open, even in `open`.
        check(env, door, mode, user, wrong_code(ph.totp_secret(user)), "reject", "unavailable")
        assert sim.calls("authenticateUser") == before + 2, "6005 must be retried exactly once"
    finally:
        sim.clear_faults(user)


@pytest.mark.parametrize("door,mode", cases_for(*DOORS))
def test_6005_once_the_retry_succeeds(env, sim, door, mode):
    user = TARGETS[(door, mode)]
    sim.set_user_faults(user, {"status": {"authenticateUser": "6005"}, "status_times": 1})
    try:
        before = sim.calls("authenticateUser")
        code = fresh_totp(ph.totp_secret(user), min_left=8)
        check(env, door, mode, user, code, "accept", failed_open=False)
        assert sim.calls("authenticateUser") == before + 2
    finally:
        sim.clear_faults(user)


# ---------------------------------------------------------------------------------------------
# Simulator-side faults on the shared bridge (global: the health probe sees them too).

OUTAGE, MISCONFIGURED = "outage", "misconfigured"
SIM_FAULTS = [
    ("timeout", OUTAGE, {"latency_ms": SLOW_MS}),
    ("http_503", OUTAGE, {"http_status": 503}),
    ("soap_server_fault", OUTAGE, {"soap_fault": True}),
    ("soap_client_fault", MISCONFIGURED, {"client_fault": True}),
    ("wrong_namespace", MISCONFIGURED, {"wrong_namespace": True}),
    ("malformed_xml", MISCONFIGURED, {"malformed_xml": True}),
    ("http_500_html", MISCONFIGURED, {"http_500": True}),
]


def expect_class(env, door, mode, user, klass, log_has=None):
    code = wrong_code(ph.totp_secret(user))
    if klass == OUTAGE and mode == "open":
        return check(env, door, mode, user, code, "accept", failed_open=True, log_has=log_has)
    reason = "unavailable" if klass == OUTAGE else "misconfigured"
    return check(env, door, mode, user, code, "reject", reason, log_has=log_has)


@pytest.mark.parametrize("door,mode", cases_for(*DOORS))
@pytest.mark.parametrize("fault,klass,faults", [pytest.param(*f, id=f[0]) for f in SIM_FAULTS])
def test_simulator_fault(env, sim, fault, klass, faults, door, mode):
    user = TARGETS[(door, mode)]
    sim.set_faults(faults)
    try:
        if klass == OUTAGE and mode == "open":
            # Fail-open needs VIP *known* down: the bridge reuses a health probe that finished
            # within the last second (here: the one that saw the previous case recover), so
            # let that one age first.
            time.sleep(1.1)
        expect_class(env, door, mode, user, klass)
    finally:
        sim.clear_faults()
        env.quiet()
        env.health_settled()


# ---------------------------------------------------------------------------------------------
# Bridge-side faults: each its own small bridge.


@pytest.mark.parametrize("door,mode", cases_for(*DOORS))
def test_connection_refused(refused_env, door, mode):
    expect_class(refused_env, door, mode, TARGETS[(door, mode)], OUTAGE,
                 log_has="Connection refused")


@pytest.mark.parametrize("door,mode", cases_for(*DOORS))
def test_wrong_auth_url_path_404(wrong_path_env, door, mode):
    expect_class(wrong_path_env, door, mode, TARGETS[(door, mode)], MISCONFIGURED,
                 log_has="HTTP 404")


@pytest.mark.parametrize("door,mode", cases_for(*DOORS))
def test_tls_refused_untrusted_client_certificate(tls_env, door, mode):
    expect_class(tls_env, door, mode, TARGETS[(door, mode)], MISCONFIGURED,
                 log_has="TLS handshake")


# ---------------------------------------------------------------------------------------------
# Overload here: other users' slow logins hold every vip.max_in_flight slot, and more of them
# are queued ahead of the target. Last in the module (the flood leaves VIP's health in doubt).


class Flood:
    """Flood users' code logins over RADIUS (the closed client), fired at chosen moments; their
    calls take longer than vip.timeout. Replies are left unread."""

    def __init__(self, env):
        self.addr = env.bridge.addr()
        self.socks = []

    def wave(self, users):
        for u in users:
            s = harness.Udp(CLOSED_SOURCE)
            self.socks.append(s)
            s.send(harness.access_request(SECRET.encode(), u, "123456")[1], self.addr)

    def close(self):
        for s in self.socks:
            s.close()


@pytest.mark.parametrize("door,mode", cases_for(*DOORS))
def test_overload_in_flight_slots_exhausted(env, door, mode):
    user = TARGETS[(door, mode)]
    env.quiet()
    env.health_settled()
    flood = Flood(env)
    try:
        # Wave A takes both slots until vip.timeout (VIP answers the flood users only later).
        flood.wave(FLOOD_USERS[0:2])
        deadline = time.time() + 3
        while env.metrics()[2] < MAX_IN_FLIGHT:
            assert time.time() < deadline, "the flood never filled the in-flight slots"
            time.sleep(0.01)
        # Each call waits at most vip.timeout (1 s) for a slot, then has vip.timeout for VIP.
        # Wave B, 0.3 s later, gets A's slots when A gives up at ~1.0 s and holds them to
        # ~2.0 s; the target, 0.1 s after B, waits for a slot until ~1.4 s and gets none.
        time.sleep(0.3)
        flood.wave(FLOOD_USERS[2:4])
        time.sleep(0.1)
        check(env, door, mode, user, wrong_code(ph.totp_secret(user)), "reject", "overloaded",
              exact=False)
    finally:
        flood.close()
        env.quiet()


class FloodWorkers:
    """Flood users' logins sent back to back (one thread per user) until stop()."""

    def __init__(self, env, users):
        self.addr = env.bridge.addr()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(u,), daemon=True)
                        for u in users]
        for t in self.threads:
            t.start()

    def _run(self, user):
        sock = harness.Udp(CLOSED_SOURCE)
        try:
            while not self.halt.is_set():
                sock.send(harness.access_request(SECRET.encode(), user, "123456")[1], self.addr)
                sock.recv(timeout=3)
        finally:
            sock.close()

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(timeout=10)


def test_login_flood_on_a_healthy_slow_vip_never_opens_the_door(env, sim):
    """VIP is up and answers everyone in 500 ms (half of vip.timeout); a sustained flood of
    slow logins keeps every in-flight slot busy. Time spent queued here must never read as a
    VIP outage: no login is let through by fail-open, the health monitor (whose getServerTime
    queues behind the flood too) never declares VIP down, and the targets are refused as
    `overloaded` (or get VIP's own answer, `bad_code`, when they did get a slot in time)."""
    env.quiet()
    env.health_settled()
    mark = len(env.log())
    sim.set_faults({"latency_ms": 500})
    workers = None
    results = []
    try:
        workers = FloodWorkers(env, FLOOD_USERS)
        deadline = time.time() + 3
        while env.metrics()[2] < MAX_IN_FLIGHT:
            assert time.time() < deadline, "the flood never filled the in-flight slots"
            time.sleep(0.02)
        _, fo0, _ = env.metrics()
        # Several periodic health checks (every 1 s) happen during these logins.
        for _ in range(2):
            for door in DOORS:
                for mode in MODES:
                    user = TARGETS[(door, mode)]
                    accepted, _ = env.login(door, mode, user, wrong_code(ph.totp_secret(user)))
                    lines = login_lines(env.log()[mark:], user)
                    results.append((door, mode, accepted,
                                    field(lines[-1], "reason") if lines else None))
        _, fo1, _ = env.metrics()
    finally:
        if workers:
            workers.stop()
        sim.clear_faults()
        env.quiet()
    log = env.log()[mark:]
    downs = [l for l in log.splitlines() if "VIP health check: VIP is DOWN" in l]
    opened = [l for l in log.splitlines() if "FAIL-OPEN" in l]
    summary = ("results (door, mode, accepted, reason): %s\nDOWN lines:\n%s\n"
               "FAIL-OPEN lines:\n%s" % (results, "\n".join(downs), "\n".join(opened)))
    assert not any(r[2] for r in results), summary
    assert fo1 - fo0 == 0 and not opened, summary
    assert not downs, summary
    assert all(r[3] in ("overloaded", "bad_code") for r in results), summary
