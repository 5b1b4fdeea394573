"""A real OpenSSH sshd on a loopback high port, PAM service `sshd-vipbridge` (sshd is started
through a symlink of that name), keyboard-interactive only, logged into with paramiko's
auth_interactive. /etc/pam.d/sshd-vipbridge is written for the duration of this module and
always removed; the name is unique to these tests."""

import os
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402

paramiko = pytest.importorskip("paramiko")

SSHD = "/usr/sbin/sshd"
SERVICE = "sshd-vipbridge"
PAM_FILE = "/etc/pam.d/" + SERVICE

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and ph.have("ssh-keygen") and os.geteuid() == 0),
    reason="needs root and openssh-server")

USERS = {
    "vbsshcode": dict(),
    "vbsshpush": dict(push="approve", delay_ms=300),
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def sshd(workroot, certs):
    for u in USERS:
        ph.ensure_user(u)
    workdir = os.path.join(workroot, "test_pam_sshd")
    os.makedirs(workdir, exist_ok=True)
    users = "".join(ph.sim_user(u, index=i, **kw) for i, (u, kw) in enumerate(USERS.items()))
    stack = ph.PamStack(workdir, certs, users, {SERVICE: "ssh"},
                        {"ssh": 'push_timeout = "20s"'},
                        sim_policy="number_challenge = false\nlockout_after = 50\n")
    pam_file = None
    proc = None
    try:
        pam_file = ph.SystemFile(
            PAM_FILE, ph.pam_lines(ph.module_path(), "socket=%s timeout=30" % stack.socket))
        key = os.path.join(workdir, "ssh_host_ed25519_key")
        if not os.path.exists(key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                           check=True, timeout=30)
        port = free_port()
        config = os.path.join(workdir, "sshd_config")
        with open(config, "w") as f:
            f.write("\n".join([
                "Port %d" % port,
                "ListenAddress 127.0.0.1",
                "HostKey %s" % key,
                "PidFile %s" % os.path.join(workdir, "sshd.pid"),
                "UsePAM yes",
                "KbdInteractiveAuthentication yes",
                "PasswordAuthentication no",
                "PubkeyAuthentication no",
                "AuthenticationMethods keyboard-interactive",
                "PermitRootLogin no",
                "StrictModes no",
                "MaxAuthTries 4",
                "LoginGraceTime 60",
                "LogLevel VERBOSE",
                "",
            ]))
        os.makedirs("/run/sshd", exist_ok=True)
        link = os.path.join(workdir, SERVICE)
        if not os.path.islink(link):
            os.symlink(SSHD, link)
        proc = harness.Proc("sshd", [link, "-D", "-e", "-f", config], workdir)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if not proc.alive() or time.time() > deadline:
                    raise RuntimeError("sshd did not start:\n" + proc.log())
                time.sleep(0.1)
        yield stack, port
    finally:
        if proc is not None:
            proc.stop()
        if pam_file is not None:
            pam_file.remove()
        stack.stop()


def login(port, user, answers):
    """keyboard-interactive login; `answers` is consumed one per prompt. Returns (ok, prompts)."""
    pending = list(answers)
    shown = []

    def handler(title, instructions, prompts):
        shown.append((title, instructions, [p for p, _ in prompts]))
        return [pending.pop(0) if pending else "" for _ in prompts]

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    t = paramiko.Transport(sock)
    try:
        t.start_client(timeout=10)
        try:
            t.auth_interactive(user, handler)
        except paramiko.AuthenticationException:
            return False, shown
        return t.is_authenticated(), shown
    finally:
        t.close()


def test_code_login_succeeds(sshd):
    stack, port = sshd
    before = stack.sim.calls("authenticateUser")
    code = harness.fresh_totp(ph.totp_secret("vbsshcode"), min_left=8)
    ok, shown = login(port, "vbsshcode", [code])
    assert ok, shown
    assert any("security code" in p for _, _, ps in shown for p in ps), shown
    assert stack.sim.calls("authenticateUser") == before + 1


def test_push_login_succeeds(sshd):
    stack, port = sshd
    before = stack.sim.calls("authenticateUserWithPush")
    ok, shown = login(port, "vbsshpush", ["push"])
    assert ok, shown
    assert stack.sim.calls("authenticateUserWithPush") == before + 1


def test_bad_code_fails(sshd):
    _, port = sshd
    ok, shown = login(port, "vbsshcode", [harness.wrong_code(ph.totp_secret("vbsshcode"))])
    assert not ok, shown


def test_unknown_user_never_reaches_vip(sshd):
    stack, port = sshd
    before = stack.total_calls()
    ok, shown = login(port, "vbnosuchuser", ["123456", "push", "push"])
    assert not ok, shown
    # sshd ran PAM for the invalid user; pam_vip refused it locally.
    assert stack.total_calls() == before
    assert "vbnosuchuser" not in stack.bridge.log()
