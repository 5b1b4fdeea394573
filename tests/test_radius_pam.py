"""pamtester -> pam_radius_auth (Debian 2.0, sends no Message-Authenticator) -> vip-bridge.
The client is configured with require_message_authenticator = false. libpam-wrapper keeps
/etc/pam.d untouched; pam_radius_auth always gets its own conf=."""

import os
import shutil
import subprocess

import pytest

from conftest import PAM_SECRET, PAM_SOURCE, USERS
from harness import fresh_totp, wrong_code

MODULE_CANDIDATES = [
    "/lib/x86_64-linux-gnu/security/pam_radius_auth.so",
    "/usr/lib/x86_64-linux-gnu/security/pam_radius_auth.so",
    "/lib/security/pam_radius_auth.so",
]
WRAPPER_CANDIDATES = [
    "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so",
    "/usr/lib/libpam_wrapper.so",
]
SERVICE = "vipbridge-radius-test"


def first_existing(paths):
    for p in paths:
        if os.path.exists(p):
            return p
    return None


@pytest.fixture(scope="module")
def pam_env(stack):
    module = first_existing(MODULE_CANDIDATES)
    wrapper = first_existing(WRAPPER_CANDIDATES)
    if not module or not wrapper or not shutil.which("pamtester"):
        pytest.skip("pam_radius_auth, libpam-wrapper or pamtester not installed")
    d = os.path.join(stack.dir, "pam")
    os.makedirs(os.path.join(d, "pam.d"), exist_ok=True)
    conf = os.path.join(d, "pam_radius_auth.conf")
    host, port = stack.addr
    with open(conf, "w") as f:
        # server[:port] secret timeout source_ip
        f.write("%s:%d %s 10 %s\n" % (host, port, PAM_SECRET, PAM_SOURCE))
    os.chmod(conf, 0o600)
    with open(os.path.join(d, "pam.d", SERVICE), "w") as f:
        f.write("auth required %s conf=%s\n" % (module, conf))
        f.write("account required pam_permit.so\n")
    env = dict(os.environ)
    env.update({
        "LD_PRELOAD": wrapper,
        "PAM_WRAPPER": "1",
        "PAM_WRAPPER_SERVICE_DIR": os.path.join(d, "pam.d"),
    })
    return env


def pamtester(env, user, answer):
    p = subprocess.run(["pamtester", "-v", SERVICE, user, "authenticate"],
                       input=(answer + "\n").encode(), env=env, capture_output=True,
                       timeout=40)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def test_code_accepted(stack, pam_env):
    calls = stack.sim.calls("checkOtp") + stack.sim.calls("authenticateUser")
    rc, out = pamtester(pam_env, "carol", fresh_totp(USERS["carol"], min_left=8))
    assert rc == 0, out
    assert "successfully authenticated" in out, out
    assert stack.sim.calls("checkOtp") + stack.sim.calls("authenticateUser") == calls + 1


def test_bad_code_refused(stack, pam_env):
    rc, out = pamtester(pam_env, "carol", wrong_code(USERS["carol"]))
    assert rc != 0, out
    assert "successfully authenticated" not in out, out
