"""pamtester -> pam_vip.so -> vip-bridge (PAM socket) -> vip-sim, all real processes on one
machine. libpam-wrapper keeps /etc/pam.d untouched: the service files live in a temporary
directory and name the module by absolute path."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (ph.have("pamtester") and ph.wrapper_path()),
    reason="pamtester or libpam-wrapper not installed")

# One local + simulator user per scenario: one-time codes and pushes never collide.
USERS = {
    "vbcode": dict(),
    "vbpush": dict(push="approve", delay_ms=300),
    "vbdeny": dict(push="deny", delay_ms=300),
    "vbnever": dict(push="never"),
    "vbsms": dict(sms=True),
    "vbnumber": dict(push="approve", delay_ms=300, number=47),
}
POLICIES = {
    "code": 'push_timeout = "20s"',
    # Push-then-Enter, with the number shown (number challenge on).
    "chal": 'push_mode = "challenge"\nnumber_challenge = true\npush_timeout = "20s"',
    # A push nobody answers gives up after 5 s (the shortest push_timeout allowed).
    "short": 'push_timeout = "5s"',
    # Login-name mapping applies under PAM too: the local user vbmap is vbmap@corp.example at VIP.
    "mapped": 'push_timeout = "20s"\nuser_name = { vip_user = "{user}@corp.example" }',
}
SERVICES = {"vb-code": "code", "vb-chal": "chal", "vb-short": "short", "vb-mapped": "mapped"}
# The VIP user id of the local user vbmap (policy "mapped").
MAPPED = ("vbmap", "vbmap@corp.example")


@pytest.fixture(scope="module")
def env(workroot, certs):
    for u in list(USERS) + [MAPPED[0]]:
        ph.ensure_user(u)
    users = "".join(ph.sim_user(u, index=i, **kw) for i, (u, kw) in enumerate(USERS.items()))
    users += ph.sim_user(MAPPED[1], index=len(USERS))
    workdir = os.path.join(workroot, "test_pam_pamtester")
    os.makedirs(workdir, exist_ok=True)
    stack = ph.PamStack(workdir, certs, users, SERVICES, POLICIES,
                        sim_policy="number_challenge = false\nlockout_after = 50\n")
    try:
        pt = ph.Pamtester(workdir)
        module = ph.module_path()
        sock = "socket=%s" % stack.socket
        pt.service("vb-code", module, sock + " timeout=30")
        pt.service("vb-chal", module, sock + " timeout=30")
        pt.service("vb-short", module, sock + " timeout=30")
        pt.service("vb-mapped", module, sock + " timeout=30")
        pt.service("vb-autopush", module, sock + " autopush")
        missing = os.path.join(workdir, "nobody-listens.sock")
        pt.service("vb-down-closed", module, "socket=%s" % missing)
        pt.service("vb-down-open", module, "socket=%s fail_mode=open" % missing)
        yield stack, pt
    finally:
        rc = stack.stop()
        if rc not in (0, None):
            sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, stack.bridge.log()))


def ok(out):
    return "successfully authenticated" in out


def test_code_accepted(env):
    stack, pt = env
    before = stack.sim.calls("authenticateUser")
    rc, out = pt.run("vb-code", "vbcode",
                     [harness.fresh_totp(ph.totp_secret("vbcode"), min_left=8)])
    assert rc == 0 and ok(out), out
    # The daemon's own first prompt, then exactly one VIP call.
    assert "Enter your security code" in out, out
    assert stack.sim.calls("authenticateUser") == before + 1


def test_login_names_map_to_the_vip_user_under_pam(env):
    stack, pt = env
    local, vip = MAPPED
    before = stack.sim.calls("authenticateUser")
    # The code of vbmap@corp.example's token logs the local user vbmap in...
    rc, out = pt.run("vb-mapped", local, [harness.fresh_totp(ph.totp_secret(vip), min_left=8)])
    assert rc == 0 and ok(out), out
    assert stack.sim.calls("authenticateUser") == before + 1
    # ...and the login line says who it was at VIP (vbmap alone is nobody VIP knows).
    assert "vip_user=vbmap@corp.example" in stack.bridge.log()


def test_bad_code_refused(env):
    stack, pt = env
    rc, out = pt.run("vb-code", "vbcode", [harness.wrong_code(ph.totp_secret("vbcode"))])
    assert rc != 0 and not ok(out), out
    assert "Authentication failure" in out, out
    assert "Wrong security code" in out, out


def test_push_approved(env):
    stack, pt = env
    before = stack.sim.calls("authenticateUserWithPush")
    rc, out = pt.run("vb-code", "vbpush", ["push"])
    assert rc == 0 and ok(out), out
    assert stack.sim.calls("authenticateUserWithPush") == before + 1


def test_autopush_needs_no_typing(env):
    _, pt = env
    rc, out = pt.run("vb-autopush", "vbpush", [])
    assert rc == 0 and ok(out), out


def test_push_denied(env):
    _, pt = env
    rc, out = pt.run("vb-code", "vbdeny", ["push"])
    assert rc != 0 and not ok(out), out
    assert "denied" in out, out


def test_push_never_answered_times_out(env):
    _, pt = env
    rc, out = pt.run("vb-short", "vbnever", ["push"], timeout=30)
    assert rc != 0 and not ok(out), out
    assert "not approved in time" in out, out


def test_sms_challenge(env):
    stack, pt = env
    p = pt.spawn("vb-code", "vbsms")
    try:
        p.stdin.write(b"sms\n")
        p.stdin.flush()
        code = ph.wait_for(lambda: stack.sim.sent_code("vbsms"), timeout=15)
        assert code, "no SMS code was sent"
        p.stdin.write(code.encode() + b"\n")
        p.stdin.close()
        out = p.stdout.read().decode("utf-8", "replace")
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 0 and ok(out), out
    assert "text message" in out, out


@pytest.fixture(scope="module")
def nc_env(workroot, certs):
    """A VIP account with "Require Number Challenge" on (seed 004)."""
    users = ph.sim_user("vbnumber", index=0, push="approve", delay_ms=300, number=47)
    workdir = os.path.join(workroot, "test_pam_pamtester_nc")
    os.makedirs(workdir, exist_ok=True)
    stack = ph.PamStack(workdir, certs, users, SERVICES, POLICIES,
                        sim_policy="number_challenge = true\nlockout_after = 50\n")
    try:
        pt = ph.Pamtester(workdir)
        module = ph.module_path()
        sock = "socket=%s" % stack.socket
        pt.service("vb-code", module, sock + " timeout=30")
        pt.service("vb-chal", module, sock + " timeout=30")
        yield stack, pt
    finally:
        rc = stack.stop()
        if rc not in (0, None):
            sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, stack.bridge.log()))


def test_number_challenge_shows_the_number(env, nc_env):
    _, pt = nc_env
    # Round 1: the daemon's prompt -> "push"; round 2: the number, then Enter once approved;
    # a spare Enter in case the phone was slower than the first one.
    rc, out = pt.run("vb-chal", "vbnumber", ["push", "", ""])
    assert "47" in out, out
    assert "press Enter" in out, out
    assert rc == 0 and ok(out), out


def test_blocking_push_on_a_number_challenge_account_names_the_fix(env, nc_env):
    stack, pt = nc_env
    # A blocking push cannot show the number: VIP refuses it (7008), the user is told the
    # sign-in is not set up correctly, and the admin's log names push_mode = "challenge".
    rc, out = pt.run("vb-code", "vbnumber", ["push"])
    assert rc != 0 and not ok(out), out
    assert "not set up correctly" in out, out
    log = stack.bridge.log()
    assert 'push_mode = "challenge"' in log, log[-3000:]


def test_daemon_down_fail_closed(env):
    _, pt = env
    rc, out = pt.run("vb-down-closed", "vbcode", ["123456"])
    assert rc != 0 and not ok(out), out
    assert "cannot retrieve authentication info" in out, out  # PAM_AUTHINFO_UNAVAIL


def test_daemon_down_fail_open(env):
    _, pt = env
    rc, out = pt.run("vb-down-open", "vbcode", [])
    assert rc == 0 and ok(out), out


def test_unknown_local_user_never_reaches_the_daemon(env):
    stack, pt = env
    before = stack.total_calls()
    rc, out = pt.run("vb-code", "vbnosuchuser", ["123456"])
    assert rc != 0 and not ok(out), out
    assert "User not known" in out, out
    assert stack.total_calls() == before


RAW_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam", "raw_client.py")


def raw(sock, *messages, user=None):
    import json
    import subprocess

    # The script goes in on stdin (the checkout may not be readable by `user`); stdlib only.
    with open(RAW_CLIENT, "rb") as f:
        script = f.read()
    argv = ["/usr/bin/python3", "-", sock] + [json.dumps(m) for m in messages]
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    p = subprocess.run(argv, input=script, capture_output=True, timeout=20, cwd="/")
    assert p.returncode == 0, p.stderr.decode()
    return [json.loads(line) for line in p.stdout.decode().splitlines()]


def test_wire_format_from_an_independent_client(env):
    stack, _ = env
    replies = raw(stack.socket,
                  {"type": "hello", "version": 1},
                  {"type": "authenticate", "service": "vb-code", "user": "vbcode"})
    assert replies[0] == {"type": "hello", "version": 1}
    challenge = replies[1]["outcome"]["Challenge"]
    assert challenge["state"] == [] and challenge["echo"] is False
    assert "security code" in challenge["prompt"]
    # Another protocol version is refused by name.
    replies = raw(stack.socket, {"type": "hello", "version": 99})
    assert replies[0]["type"] == "error" and replies[0]["kind"] == "version"


def test_unprivileged_peer_is_refused(env, workroot):
    stack, _ = env
    # Let `nobody` reach the socket file (the test directories are 0700); the daemon must still
    # refuse it by its peer credentials.
    for d in (workroot, os.path.join(workroot, "test_pam_pamtester")):
        os.chmod(d, 0o711)
    try:
        replies = raw(stack.socket, {"type": "hello", "version": 1}, user="nobody")
    finally:
        for d in (workroot, os.path.join(workroot, "test_pam_pamtester")):
            os.chmod(d, 0o700)
    assert replies[0]["type"] == "error" and replies[0]["kind"] == "forbidden", replies
    assert "refused a PAM connection" in stack.bridge.log()


def test_fail_open_never_applies_to_a_daemon_that_hangs_up(env, tmp_path):
    """Something accepts and closes at once (a crashing or overloaded daemon): only a failed
    connect() may fail open, so this is PAM_AUTHINFO_UNAVAIL even with fail_mode=open."""
    import socket
    import threading

    _, pt = env
    path = str(tmp_path / "hangs-up.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                c.close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        pt.service("vb-hangup-open", ph.module_path(), "socket=%s fail_mode=open" % path)
        rc, out = pt.run("vb-hangup-open", "vbcode", ["123456"])
    finally:
        stop.set()
        t.join(timeout=5)
        srv.close()
    assert rc != 0 and not ok(out), out
    assert "cannot retrieve authentication info" in out, out
