"""The shipped sudo recipe, packaging/pam.d/sudo-vip, run by the real sudo: the user's own
password, then VIP.

The recipe is written to /etc/pam.d/sudo-vipbridge and selected for the test users only, with
`Defaults:<user> pam_service=sudo-vipbridge` in /etc/sudoers.d/vipbridge-test (the way the
recipe's header suggests trying it on one user first); both files are unique to these tests and
always removed; /etc/pam.d/sudo and /etc/pam.d/common-* are never touched. The only changes to
the recipe (pam_harness.recipe): the socket path -> this test daemon's socket, and `pam_vip.so`
-> the absolute path of the built module.

Local users (created here, removed afterwards): vbsudo (password + VIP), vbsudox (member of
vip-bridge-exempt: password only). The group vip-bridge-exempt is created if missing and then
removed again. sudo runs as `runuser -u <user> -- sudo -S -k /usr/bin/id -un`, reading every
answer from stdin.
"""

import os
import secrets
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402

SERVICE = "sudo-vipbridge"
SUDOERS = "/etc/sudoers.d/vipbridge-test"
USER = "vbsudo"
EXEMPT_USER = "vbsudox"


def need_peers():
    ph.need(os.geteuid() == 0, "must run as root (local users, /etc/pam.d, sudoers)")
    ph.need(shutil.which("sudo") and shutil.which("visudo") and os.path.isdir("/etc/sudoers.d"),
            "sudo (with /etc/sudoers.d) not installed")
    ph.need(ph.have("runuser", "useradd", "userdel", "groupadd", "groupdel", "chpasswd",
                    "gpasswd"), "runuser / shadow utilities missing")


class Env:
    pass


@pytest.fixture(scope="module")
def sudo(workroot, certs):
    need_peers()
    workdir = os.path.join(workroot, "test_pam_sudo")
    os.makedirs(workdir, exist_ok=True)
    e = Env()
    e.passwords = {u: "vb-" + secrets.token_urlsafe(12) for u in (USER, EXEMPT_USER)}
    accounts = ph.Accounts()
    files = []
    e.stack = None
    try:
        accounts.group(ph.EXEMPT_GROUP)
        accounts.user(USER, password=e.passwords[USER])
        accounts.user(EXEMPT_USER, password=e.passwords[EXEMPT_USER], groups=[ph.EXEMPT_GROUP])
        users = ph.sim_user(USER, index=0) + ph.sim_user(EXEMPT_USER, index=1)
        # The built-in default policy (push_timeout 25 s, below the recipe's timeout=60).
        e.stack = ph.PamStack(workdir, certs, users, {}, {},
                              sim_policy="number_challenge = false\nlockout_after = 50\n")
        text = ph.recipe(ph.read_packaging("pam.d", "sudo-vip"), e.stack.socket,
                         ph.module_path())
        files.append(ph.SystemFile("/etc/pam.d/" + SERVICE, text))
        rule = "".join("Defaults:%s pam_service=%s\n%s ALL=(root) /usr/bin/id\n" % (u, SERVICE, u)
                       for u in (USER, EXEMPT_USER))
        sudoers = ph.SystemFile(SUDOERS, rule, mode=0o440)
        files.append(sudoers)
        check = subprocess.run(["visudo", "-c", "-f", sudoers.path], capture_output=True,
                               timeout=10)
        assert check.returncode == 0, check.stdout + check.stderr
        yield e
    finally:
        for f in reversed(files):
            f.remove()
        if e.stack is not None:
            e.stack.stop()
        accounts.remove()


def run_sudo(user, answers):
    data = "".join(a + "\n" for a in answers).encode()
    p = subprocess.run(["runuser", "-u", user, "--", "sudo", "-S", "-k", "/usr/bin/id", "-un"],
                       input=data, capture_output=True, timeout=90)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def code(user):
    return harness.fresh_totp(ph.totp_secret(user), min_left=8)


def test_password_and_code_accepted(sudo):
    before = sudo.stack.sim.calls("authenticateUser")
    rc, out, err = run_sudo(USER, [sudo.passwords[USER], code(USER)])
    assert rc == 0, (out, err)
    assert out.strip() == "root", (out, err)
    assert "password for %s" % USER in err, err   # common-auth (pam_unix) first
    assert "security code" in err, err             # then the daemon's prompt, shown by sudo
    assert sudo.stack.sim.calls("authenticateUser") == before + 1


def test_password_and_wrong_code_refused(sudo):
    before = sudo.stack.sim.calls("authenticateUser")
    rc, out, err = run_sudo(USER, [sudo.passwords[USER], harness.wrong_code(ph.totp_secret(USER))])
    assert rc != 0, (out, err)
    assert "root" not in out, (out, err)
    # sudo authenticates with PAM_SILENT (pam_silent is on by default), so pam_vip shows no
    # error message; sudo says it itself and asks again (stdin is exhausted by then).
    assert "incorrect password attempt" in err, err
    assert "Wrong security code" not in err, err
    assert sudo.stack.sim.calls("authenticateUser") == before + 1


def test_wrong_password_refused_even_with_right_code(sudo):
    before = sudo.stack.total_calls()
    rc, out, err = run_sudo(USER, ["not-" + sudo.passwords[USER], code(USER)])
    assert rc != 0, (out, err)
    assert "root" not in out, (out, err)
    # common-auth failed: pam_vip.so never ran (no prompt, no VIP call); sudo asked for the
    # password again and got the code, which is not the password either.
    assert "security code" not in err, err
    assert sudo.stack.total_calls() == before


def test_non_member_still_needs_vip(sudo):
    rc, out, err = run_sudo(USER, [sudo.passwords[USER]])
    assert rc != 0, (out, err)
    assert "root" not in out, (out, err)
    assert "security code" in err, err


def test_break_glass_member_needs_only_the_password(sudo):
    before = sudo.stack.total_calls()
    rc, out, err = run_sudo(EXEMPT_USER, [sudo.passwords[EXEMPT_USER]])
    assert rc == 0, (out, err)
    assert out.strip() == "root", (out, err)
    assert "security code" not in err, err
    assert sudo.stack.total_calls() == before


def test_break_glass_member_still_needs_the_password(sudo):
    before = sudo.stack.total_calls()
    rc, out, err = run_sudo(EXEMPT_USER, ["not-" + sudo.passwords[EXEMPT_USER]])
    assert rc != 0, (out, err)
    assert "root" not in out, (out, err)
    assert "incorrect password attempt" in err, err
    assert sudo.stack.total_calls() == before
