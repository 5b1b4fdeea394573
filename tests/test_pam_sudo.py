"""sudo -S with its own PAM service: `Defaults:vbsudo pam_service=sudo-vipbridge` in a file under
/etc/sudoers.d and /etc/pam.d/sudo-vipbridge, both unique to these tests and always removed.
/etc/pam.d/sudo is never touched."""

import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402

SERVICE = "sudo-vipbridge"
USER = "vbsudo"

pytestmark = pytest.mark.skipif(
    not (shutil.which("sudo") and shutil.which("runuser") and shutil.which("visudo")
         and os.geteuid() == 0 and os.path.isdir("/etc/sudoers.d")),
    reason="needs root, sudo (with /etc/sudoers.d) and runuser")


@pytest.fixture(scope="module")
def sudo(workroot, certs):
    ph.ensure_user(USER)
    workdir = os.path.join(workroot, "test_pam_sudo")
    os.makedirs(workdir, exist_ok=True)
    stack = ph.PamStack(workdir, certs, ph.sim_user(USER), {SERVICE: "sudo"},
                        {"sudo": 'push_timeout = "20s"'},
                        sim_policy="number_challenge = false\nlockout_after = 50\n")
    files = []
    try:
        files.append(ph.SystemFile(
            "/etc/pam.d/" + SERVICE,
            ph.pam_lines(ph.module_path(), "socket=%s timeout=30" % stack.socket)))
        rule = ("Defaults:%s pam_service=%s\n%s ALL=(root) /usr/bin/id\n" % (USER, SERVICE, USER))
        sudoers = ph.SystemFile("/etc/sudoers.d/vipbridge-test", rule, mode=0o440)
        files.append(sudoers)
        check = subprocess.run(["visudo", "-c", "-f", sudoers.path], capture_output=True,
                               timeout=10)
        assert check.returncode == 0, check.stdout + check.stderr
        yield stack
    finally:
        for f in reversed(files):
            f.remove()
        stack.stop()


def run_sudo(answer):
    p = subprocess.run(["runuser", "-u", USER, "--", "sudo", "-S", "-k", "/usr/bin/id", "-un"],
                       input=(answer + "\n").encode(), capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_code_accepted(sudo):
    before = sudo.sim.calls("authenticateUser")
    rc, out, err = run_sudo(harness.fresh_totp(ph.totp_secret(USER), min_left=8))
    assert rc == 0, (out, err)
    assert out.strip() == "root", (out, err)
    assert "security code" in err, err  # the daemon's prompt, shown by sudo
    assert sudo.sim.calls("authenticateUser") == before + 1


def test_bad_code_refused(sudo):
    rc, out, err = run_sudo(harness.wrong_code(ph.totp_secret(USER)))
    assert rc != 0, (out, err)
    assert "root" not in out, (out, err)
    # sudo authenticates with PAM_SILENT (pam_silent is on by default), so pam_vip shows no
    # error message; sudo says it itself and asks again (stdin is exhausted by then).
    assert "incorrect password attempt" in err, err
    assert "Wrong security code" not in err, err
