"""pamtester -> pam_vip.so -> vip-bridge (PAM door, backend = "trustbuilder") -> tb-sim over
mutual TLS, all real processes on one machine. libpam-wrapper keeps /etc/pam.d untouched (the
service files live in a temporary directory and name the module by absolute path); the local
users (vb*) are created when missing and left in place, as in test_pam_pamtester.py."""

import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402

SEED = "3132333435363738393031323334353637383930"
SERVICE = "vbtb-code"

# One local + tb-sim login per scenario.
USERS = {
    "vbtbcode": None,                               # codes
    "vbtbpush": '{ action = "approve", after = "500ms" }',
    "vbtbdeny": '{ action = "refuse", after = "200ms" }',
}


def tb_users():
    out = []
    for i, (user, push) in enumerate(USERS.items()):
        out.append('[[users]]\nlogin = "%s"\n[[users.tools]]\nkind = "ma"\nid = %d\n'
                   'alias = "pam%04d"\nseed = "%s"\npush_enabled = true\n'
                   % (user, 100 + i, i, SEED))
        if push:
            out.append("push = %s\n" % push)
        out.append("\n")
    return "".join(out)


def bridge_body(socket_path):
    return """
[engine]
poll_interval = "300ms"

[engine.throttle]
push_per_user = {{ count = 50, per = "5m" }}
codes_per_user = {{ count = 50, per = "5m" }}

[policies.code]
push_timeout = "10s"

[pam]
socket = "{sock}"
request_timeout = "60s"
socket_group = {gid}

[pam.services.{svc}]
policy = "code"

[log]
format = "text"
level = "info"
""".format(sock=socket_path, gid=ph.nobody_gid(), svc=json.dumps(SERVICE))


@pytest.fixture(scope="module")
def env(workroot, certs):
    ph.need(ph.have("pamtester") and ph.wrapper_path(), "pamtester or libpam-wrapper not installed")
    for u in USERS:
        ph.ensure_user(u)
    workdir = os.path.join(workroot, "test_pam_trustbuilder")
    os.makedirs(os.path.join(workdir, "run"), exist_ok=True)
    sim = harness.TbSim(workdir, harness.tb_sim_toml(certs, tb_users()))
    bridge = None
    try:
        text = harness.bridge_toml_trustbuilder(
            sim, certs, bridge_body(os.path.join(workdir, "run", "pam.sock")), timeout="5s")
        bridge = ph.PamBridge(workdir, text)
        pt = ph.Pamtester(workdir)
        pt.service(SERVICE, ph.module_path(), "socket=%s timeout=30" % bridge.socket)
        yield sim, bridge, pt
    finally:
        rc = bridge.stop() if bridge else None
        sim.stop()
        if rc not in (0, None):
            sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, bridge.log()))


def ok(out):
    return "successfully authenticated" in out


def fresh_code(sim, user, min_left=8):
    left = 30 - (time.time() % 30)
    if left < min_left:
        time.sleep(left + 0.2)
    return sim.current_code(user)


def test_code_accepted(env):
    sim, _, pt = env
    before = sim.calls("authenticateExtended")
    rc, out = pt.run(SERVICE, "vbtbcode", [fresh_code(sim, "vbtbcode")])
    assert rc == 0 and ok(out), out
    assert "Enter your security code" in out, out
    assert sim.calls("authenticateExtended") == before + 1


def test_bad_code_refused(env):
    sim, _, pt = env
    before = sim.calls("authenticateExtended")
    bad = "%06d" % ((int(sim.current_code("vbtbcode")) + 500000) % 1000000)
    rc, out = pt.run(SERVICE, "vbtbcode", [bad])
    assert rc != 0 and not ok(out), out
    assert "Authentication failure" in out, out
    assert "Wrong security code" in out, out
    assert sim.calls("authenticateExtended") == before + 1


def test_push_approved(env):
    sim, _, pt = env
    before = sim.calls("pushAuthenticate")
    t0 = time.time()
    rc, out = pt.run(SERVICE, "vbtbpush", ["push"])
    assert rc == 0 and ok(out), out
    assert time.time() - t0 >= 0.4, "accepted before the app approved"
    assert sim.calls("pushAuthenticate") == before + 1


def test_push_refused(env):
    sim, _, pt = env
    rc, out = pt.run(SERVICE, "vbtbdeny", ["push"])
    assert rc != 0 and not ok(out), out
    assert "denied" in out, out
