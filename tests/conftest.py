"""pytest fixtures for the end-to-end tests: session-wide certificates, and per test module a
vip-sim and a vip-bridge started as separate processes on loopback (always stopped).

Users in the simulator (one per test area, so one-time codes and lockouts never collide):
alice (radclient), bob (pyrad), carol (pam_radius_auth), dave (push that approves after 3 s),
erin (SMS challenge), frank (drops / misc). Their TOTP secrets are in USERS.
"""

import base64
import hashlib
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

NAS_SECRET = "testing123"
NAS6_SECRET = "testing666"
PAM_SECRET = "pam-legacy-secret"
PAM_SOURCE = "127.0.0.5"  # pam_radius_auth binds here: the legacy client's address
UNKNOWN_SOURCE = "127.0.0.9"  # no client has this address


def _secret(user):
    return base64.b32encode(hashlib.sha1(("vip-bridge-e2e-" + user).encode()).digest()).decode()


USERS = {u: _secret(u) for u in ("alice", "bob", "carol", "dave", "erin", "frank")}
PUSH_DELAY_MS = 3000


def sim_users_toml():
    out = []
    for i, (user, secret) in enumerate(sorted(USERS.items())):
        out.append('[[users]]\nid = "%s"\nsms_phones = ["1555555%04d"]\n' % (user, i))
        out.append('[[users.credentials]]\nid = "VSMT%08d"\ntotp_secret = "%s"\npush = true\n'
                   % (i + 1, secret))
        delay = PUSH_DELAY_MS if user == "dave" else 200
        out.append('[users.push]\naction = "approve"\ndelay_ms = %d\n\n' % delay)
    return "".join(out)


SIM_POLICY = "number_challenge = false\nlockout_after = 50\n"


def bridge_toml(sim, certs, pam_conf=None):
    return harness.vip_toml(sim, certs) + """
[engine]
poll_interval = "500ms"

[policies.menu]
mode = "challenge"

[radius]
listen = ["127.0.0.1:0", "[::1]:0"]
response_cache_ttl = "15s"
max_in_flight = 64
shutdown_timeout = "5s"

[[radius.clients]]
name = "nas"
address = "127.0.0.1"
secret = "{nas_secret}"

[[radius.clients]]
name = "nas6"
address = "::1"
secret = "{nas6_secret}"

[[radius.clients]]
name = "pam-legacy"
address = "{pam_source}"
secret = "{pam_secret}"
require_message_authenticator = false

[log]
format = "text"
level = "info"
""".format(
        nas_secret=NAS_SECRET,
        nas6_secret=NAS6_SECRET,
        pam_source=PAM_SOURCE,
        pam_secret=PAM_SECRET,
    )


@pytest.fixture(scope="session")
def workroot():
    d = harness.tmpdir("vip-bridge-e2e-")
    yield d
    if not os.environ.get("VIP_BRIDGE_KEEP_TMP"):
        harness.rmtree(d)


@pytest.fixture(scope="session")
def certs(workroot):
    d = os.path.join(workroot, "certs")
    os.makedirs(d, exist_ok=True)
    return harness.gen_certs(d)


class Stack:
    def __init__(self, sim, bridge, workdir):
        self.sim = sim
        self.bridge = bridge
        self.dir = workdir

    @property
    def addr(self):
        return self.bridge.addr()


@pytest.fixture(scope="module")
def stack(request, workroot, certs):
    workdir = os.path.join(workroot, request.module.__name__)
    os.makedirs(workdir, exist_ok=True)
    sim = harness.Sim(workdir, harness.sim_toml(certs, sim_users_toml(), SIM_POLICY))
    bridge = None
    try:
        bridge = harness.Bridge(workdir, bridge_toml(sim, certs))
        yield Stack(sim, bridge, workdir)
    finally:
        rc = bridge.stop() if bridge else None
        sim.stop()
        if bridge is not None and rc != 0:
            sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, bridge.log()))


@pytest.fixture
def udp():
    socks = []

    def make(source="127.0.0.1", family=None):
        import socket

        fam = family or (socket.AF_INET6 if ":" in source else socket.AF_INET)
        s = harness.Udp(source, fam)
        socks.append(s)
        return s

    yield make
    for s in socks:
        s.close()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    # On failure, show the bridge's log (the interesting half of any e2e failure).
    if call.when == "call" and call.excinfo is not None:
        st = item.funcargs.get("stack") if hasattr(item, "funcargs") else None
        if st is not None:
            tail = st.bridge.log()[-6000:]
            item.add_report_section("call", "vip-bridge log (tail)", tail)
