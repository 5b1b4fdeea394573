"""`vip-bridge demo` end to end: start it on a free port, read its machine-readable line, answer
radtest (freeradius-utils) with `vip-bridge demo code alice` -> Access-Accept, a wrong code ->
Access-Reject; SIGINT stops it cleanly and removes its temporary directory."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import harness

pytestmark = pytest.mark.skipif(not shutil.which("radtest"), reason="radtest not installed")


@pytest.fixture(scope="module")
def demo(workroot):
    workdir = os.path.join(workroot, "demo")
    os.makedirs(workdir, exist_ok=True)
    env = dict(os.environ, RUST_LOG="warn")
    proc = harness.Proc("vip-bridge-demo", [harness.find_binary("vip-bridge"), "demo",
                                             "--port", "0"], workdir, env=env)
    try:
        deadline = time.time() + 30
        info = None
        while info is None:
            for line in list(proc.stdout_lines):
                if line.startswith("VIP_BRIDGE_DEMO "):
                    info = json.loads(line.split(" ", 1)[1])
            if info is None:
                if not proc.alive() or time.time() > deadline:
                    raise RuntimeError("demo did not start:\n" + proc.log())
                time.sleep(0.05)
        # The rest of the instructions come right after; wait for the last line.
        while not any("Ctrl-C" in l for l in proc.stdout_lines) and time.time() < deadline:
            time.sleep(0.05)
        yield proc, info
    finally:
        proc.stop()


def demo_code(user):
    out = subprocess.run([harness.find_binary("vip-bridge"), "demo", "code", user],
                         capture_output=True, timeout=10, check=True)
    return out.stdout.decode().strip()


def radtest(user, password, port):
    p = subprocess.run(["radtest", user, password, "127.0.0.1:%d" % port, "0", "demo-secret"],
                       capture_output=True, timeout=30)
    return (p.stdout + p.stderr).decode("utf-8", "replace")


def test_demo_code_is_the_totp_of_the_public_secret():
    code = demo_code("alice")
    assert len(code) == 6 and code.isdigit()
    secret = "JBSWY3DPEHPK3PXPALICE234"
    assert code in {harness.totp(secret, time.time() + d) for d in (-30, 0, 30)}
    p = subprocess.run([harness.find_binary("vip-bridge"), "demo", "code", "mallory"],
                       capture_output=True, timeout=10)
    assert p.returncode != 0 and b"mallory" in p.stderr


def test_radtest_with_the_demo_code_is_accepted(demo):
    proc, info = demo
    host, port = info["radius"].rsplit(":", 1)
    port = int(port)
    assert host == "127.0.0.1" and port > 0
    out = "".join(proc.stdout_lines)
    assert "radtest alice" in out and "demo code alice" in out and "otpauth://totp/" in out
    harness.fresh_totp("JBSWY3DPEHPK3PXPALICE234", min_left=5)
    got = radtest("alice", demo_code("alice"), port)
    assert "Received Access-Accept" in got, got
    got = radtest("alice", "000000" if demo_code("alice") != "000000" else "111111", port)
    assert "Received Access-Reject" in got, got


def test_sigint_stops_it_cleanly(demo):
    proc, info = demo
    proc.signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0, proc.log()
    assert any("demo stopped" in l for l in proc.stdout_lines)
    assert not os.path.exists(info["dir"]), "the temporary directory was left behind"
