"""The two shipped SSH recipes, each run by a real OpenSSH sshd from the very files the docs show:

  key + VIP:      packaging/pam.d/sshd-key-vip       + packaging/sshd_config.d/vip-key.conf
  password + VIP: packaging/pam.d/sshd-password-vip  + packaging/sshd_config.d/vip-password.conf

Each recipe gets its own sshd on a loopback high port, started through a symlink named after a
PAM service unique to these tests (sshd's PAM service is the basename of argv[0]), so the recipe
is written to /etc/pam.d/<that service> for the duration of this module and always removed;
/etc/pam.d/sshd and /etc/pam.d/common-* are never touched. Logins are paramiko's: publickey,
then keyboard-interactive answering each prompt.

The only changes made to the shipped files (nothing else):
  - the PAM recipe (pam_harness.recipe): the socket path -> this test daemon's socket, and
    `pam_vip.so` -> the absolute path of the built module;
  - sshd_config: Debian's stock template (/usr/share/openssh/sshd_config) with its
    `Include /etc/ssh/sshd_config.d/*.conf` pointed at the recipe's snippet instead, as if the
    snippet were the only file in /etc/ssh/sshd_config.d (so the snippet must win over the
    stock file's own `KbdInteractiveAuthentication no`, as it does on a Debian host); before
    it, the test's own lines: port, listen address, host key, pid file, PermitRootLogin no,
    LogLevel.

Local users (created here, removed afterwards with their homes, keys and group memberships):
vbkey, vbkeypush (key + VIP), vbkeyx (key, member of vip-bridge-exempt), vbpw (password +
VIP), vbpwx (password, member of vip-bridge-exempt), vbpwnew (password, unknown to VIP: enrolls
a token in the login). The group vip-bridge-exempt is created if missing and then removed again.

The password recipe's service uses a policy with in-band enrollment on (`enrollment =
"after_first_factor"`); every other user there has a credential, so it changes nothing for
them. The key recipe's service uses the built-in default policy.
"""

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402

try:
    import paramiko
except ImportError:  # reported by need_peers(): a skip, or a failure under CI
    paramiko = None

SSHD = "/usr/sbin/sshd"
STOCK_SSHD_CONFIG = "/usr/share/openssh/sshd_config"   # openssh-server's pristine template
STOCK_INCLUDE = "Include /etc/ssh/sshd_config.d/*.conf"
KEY_SERVICE = "sshd-vipbridge-key"
PW_SERVICE = "sshd-vipbridge-pw"

# simulator users: {name: sim_user kwargs}
SIM_USERS = {
    "vbkey": dict(),
    "vbkeypush": dict(push="approve", delay_ms=300),
    "vbkeyx": dict(),
    "vbpw": dict(),
    "vbpwx": dict(),
}
EXEMPT = ("vbkeyx", "vbpwx")
# A local user VIP does not know: enrolls a token from the simulator's inventory.
ENROLL_USER = "vbpwnew"
ENROLL_TOKEN = ("VSST20000001", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
PASSWORD_USERS = ("vbpw", "vbpwx", ENROLL_USER)


def need_peers():
    ph.need(os.geteuid() == 0, "must run as root (local users, /etc/pam.d, sshd)")
    ph.need(os.path.exists(SSHD), "openssh-server not installed")
    ph.need(os.path.exists(STOCK_SSHD_CONFIG), STOCK_SSHD_CONFIG + " missing (openssh-server)")
    ph.need(ph.have("ssh-keygen", "useradd", "userdel", "groupadd", "groupdel", "chpasswd",
                    "gpasswd"), "ssh-keygen / shadow utilities missing")
    ph.need(paramiko is not None, "paramiko not installed in the test venv")


def keypair(directory, name):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path],
                       check=True, timeout=30)
    with open(path + ".pub") as f:
        public = f.read()
    return paramiko.Ed25519Key.from_private_key_file(path), public


class Env:
    pass


@pytest.fixture(scope="module")
def env(workroot, certs):
    need_peers()
    workdir = os.path.join(workroot, "test_pam_sshd")
    os.makedirs(workdir, exist_ok=True)
    e = Env()
    e.dir = workdir
    e.passwords = {u: "vb-" + secrets.token_urlsafe(12) for u in PASSWORD_USERS}
    accounts = ph.Accounts()
    stack = None
    try:
        accounts.group(ph.EXEMPT_GROUP)
        for u in SIM_USERS:
            accounts.user(u, password=e.passwords.get(u),
                          groups=[ph.EXEMPT_GROUP] if u in EXEMPT else [])
        accounts.user(ENROLL_USER, password=e.passwords[ENROLL_USER])
        e.key, public = keypair(workdir, "id_user")
        e.other_key, _ = keypair(workdir, "id_not_authorized")
        for u in ("vbkey", "vbkeypush", "vbkeyx"):
            accounts.authorize_key(u, public)
        users = "".join(ph.sim_user(u, index=i, **kw)
                        for i, (u, kw) in enumerate(SIM_USERS.items()))
        users += '[[tokens]]\nid = "%s"\nsecret = "%s"\n\n' % ENROLL_TOKEN
        # The built-in default policy (push_timeout 25 s, below the recipes' timeout=60); the
        # password service's has enrollment on besides.
        stack = ph.PamStack(workdir, certs, users, {PW_SERVICE: "pw_enroll"},
                            {"pw_enroll": 'enrollment = "after_first_factor"'},
                            sim_policy="number_challenge = false\nlockout_after = 50\n")
        e.stack = stack
        yield e
    finally:
        if stack is not None:
            stack.stop()
        # sshd's session processes for a login that just ended may still be exiting; userdel
        # refuses a user who has processes.
        wait_until_gone(list(SIM_USERS) + [ENROLL_USER])
        accounts.remove()


def wait_until_gone(users, timeout=15):
    """Waits (bounded) until no process runs as any of `users` (read from /proc only)."""
    import pwd

    uids = set()
    for u in users:
        try:
            uids.add(pwd.getpwnam(u).pw_uid)
        except KeyError:
            pass
    deadline = time.time() + timeout
    while uids and time.time() < deadline:
        busy = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.stat("/proc/" + pid).st_uid in uids:
                    busy = True
                    break
            except OSError:
                pass
        if not busy:
            return
        time.sleep(0.1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sshd_config(workdir, port, snippet):
    with open(STOCK_SSHD_CONFIG) as f:
        stock = f.read()
    stock = ph.substitute(stock, STOCK_INCLUDE, "Include " + snippet,
                          "sshd_config.d/*.conf -> the recipe's sshd_config snippet")
    own = [
        "# test-only lines (this sshd is not the system's)",
        "Port %d" % port,
        "ListenAddress 127.0.0.1",
        "HostKey %s" % os.path.join(workdir, "ssh_host_ed25519_key"),
        "PidFile %s" % os.path.join(workdir, "sshd.pid"),
        "PermitRootLogin no",
        "LogLevel VERBOSE",
        "# Debian's stock sshd_config follows",
    ]
    return "\n".join(own) + "\n" + stock


class Sshd:
    """/etc/pam.d/<service> = the recipe, and an sshd started as <service>; stop() removes
    both."""

    def __init__(self, env, service, pam_recipe, snippet):
        self.pam_file = None
        self.proc = None
        workdir = os.path.join(env.dir, service)
        os.makedirs(workdir, exist_ok=True)
        try:
            text = ph.recipe(ph.read_packaging("pam.d", pam_recipe), env.stack.socket,
                             ph.module_path())
            self.pam_file = ph.SystemFile("/etc/pam.d/" + service, text)
            key = os.path.join(workdir, "ssh_host_ed25519_key")
            if not os.path.exists(key):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                               check=True, timeout=30)
            self.port = free_port()
            config = os.path.join(workdir, "sshd_config")
            with open(config, "w") as f:
                f.write(sshd_config(workdir, self.port,
                                    ph.packaging_path("sshd_config.d", snippet)))
            check = subprocess.run([SSHD, "-t", "-f", config], capture_output=True, timeout=30)
            assert check.returncode == 0, check.stdout + check.stderr
            # What sshd makes of the stock file + the snippet: the snippet's values win.
            effective = subprocess.run([SSHD, "-T", "-f", config], capture_output=True,
                                       timeout=30).stdout.decode().lower().splitlines()
            self.effective = effective
            os.makedirs("/run/sshd", exist_ok=True)
            link = os.path.join(workdir, service)
            if not os.path.islink(link):
                os.symlink(SSHD, link)
            self.proc = harness.Proc("sshd", [link, "-D", "-e", "-f", config], workdir)
            deadline = time.time() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    if not self.proc.alive() or time.time() > deadline:
                        raise RuntimeError("sshd did not start:\n" + self.proc.log())
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def log(self):
        return self.proc.log() if self.proc else ""

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        if self.pam_file is not None:
            self.pam_file.remove()
            self.pam_file = None


@pytest.fixture(scope="module")
def key_sshd(env):
    s = Sshd(env, KEY_SERVICE, "sshd-key-vip", "vip-key.conf")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def pw_sshd(env):
    s = Sshd(env, PW_SERVICE, "sshd-password-vip", "vip-password.conf")
    try:
        yield s
    finally:
        s.stop()


class Result:
    def __init__(self):
        self.ok = False
        self.prompts = []   # every prompt shown, in order
        self.echoes = []    # each prompt's echo flag, in the same order
        self.rounds = 0     # keyboard-interactive rounds that reached the client
        self.error = None
        self.output = None  # the command's stdout
        self.status = None  # the command's exit status

    def __repr__(self):
        return "Result(ok=%r prompts=%r echoes=%r rounds=%r error=%r output=%r status=%r)" % (
            self.ok, self.prompts, self.echoes, self.rounds, self.error, self.output,
            self.status)


def ssh_login(port, user, key=None, answers=(), command=None):
    """publickey (when `key` is given), then keyboard-interactive answering one prompt per
    answer ("" once they run out); then `command` in a session when logged in."""
    r = Result()
    pending = list(answers)

    def handler(title, instructions, prompts):
        r.rounds += 1
        r.prompts.extend(p for p, _ in prompts)
        r.echoes.extend(bool(e) for _, e in prompts)
        return [pending.pop(0) if pending else "" for _ in prompts]

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    t = paramiko.Transport(sock)
    try:
        t.start_client(timeout=10)
        try:
            if key is not None:
                t.auth_publickey(user, key)
            t.auth_interactive(user, handler)
        except paramiko.AuthenticationException as e:
            r.error = "%s: %s" % (type(e).__name__, e)
            return r
        r.ok = t.is_authenticated()
        if r.ok and command:
            chan = t.open_session(timeout=10)
            chan.settimeout(30)
            chan.exec_command(command)
            r.output = chan.makefile("rb").read().decode()
            r.status = chan.recv_exit_status()
        return r
    finally:
        t.close()


def code(user):
    return harness.fresh_totp(ph.totp_secret(user), min_left=8)


def asked_for_vip(r):
    return any("security code" in p for p in r.prompts)


# --- the sshd_config snippets really take effect over Debian's stock file -------------------


def test_key_snippet_wins_over_stock_config(key_sshd):
    eff = key_sshd.effective
    assert "usepam yes" in eff, eff
    assert "kbdinteractiveauthentication yes" in eff, eff
    assert "authenticationmethods publickey,keyboard-interactive" in eff, eff


def test_password_snippet_wins_over_stock_config(pw_sshd):
    eff = pw_sshd.effective
    assert "usepam yes" in eff, eff
    assert "kbdinteractiveauthentication yes" in eff, eff
    assert "passwordauthentication no" in eff, eff
    assert "authenticationmethods keyboard-interactive" in eff, eff


# --- key + VIP -----------------------------------------------------------------------------


def test_key_and_code_login(env, key_sshd):
    before = env.stack.sim.calls("authenticateUser")
    r = ssh_login(key_sshd.port, "vbkey", key=env.key, answers=[code("vbkey")],
                  command="id -un")
    assert r.ok, (r, key_sshd.log()[-3000:])
    # PAM asked for VIP only: no Unix password prompt.
    assert len(r.prompts) == 1 and asked_for_vip(r), r
    # The whole stock stack ran: account, setcred and session for a real command.
    assert r.status == 0 and r.output.strip() == "vbkey", r
    assert env.stack.sim.calls("authenticateUser") == before + 1


def test_key_and_push_login(env, key_sshd):
    before = env.stack.sim.calls("authenticateUserWithPush")
    r = ssh_login(key_sshd.port, "vbkeypush", key=env.key, answers=["push"])
    assert r.ok, r
    assert env.stack.sim.calls("authenticateUserWithPush") == before + 1


def test_key_and_wrong_code_fails(env, key_sshd):
    before = env.stack.sim.calls("authenticateUser")
    r = ssh_login(key_sshd.port, "vbkey", key=env.key,
                  answers=[harness.wrong_code(ph.totp_secret("vbkey"))])
    assert not r.ok, r
    assert asked_for_vip(r), r
    assert env.stack.sim.calls("authenticateUser") == before + 1


def test_key_missing_fails_even_with_right_code(env, key_sshd):
    before = env.stack.total_calls()
    # No key at all: keyboard-interactive is not even offered first.
    r = ssh_login(key_sshd.port, "vbkey", answers=[code("vbkey")])
    assert not r.ok and "BadAuthenticationType" in r.error, r
    # A key that is not authorized.
    r2 = ssh_login(key_sshd.port, "vbkey", key=env.other_key, answers=[code("vbkey")])
    assert not r2.ok, r2
    assert r.prompts == [] and r2.prompts == [], (r, r2)
    assert env.stack.total_calls() == before


def test_key_non_member_still_needs_vip(env, key_sshd):
    """The key alone is not enough for anyone outside vip-bridge-exempt."""
    r = ssh_login(key_sshd.port, "vbkey", key=env.key, answers=[])
    assert not r.ok, r
    assert asked_for_vip(r), r


def test_key_break_glass_member_needs_only_the_key(env, key_sshd):
    before = env.stack.total_calls()
    r = ssh_login(key_sshd.port, "vbkeyx", key=env.key, answers=[], command="id -un")
    assert r.ok, (r, key_sshd.log()[-3000:])
    # No prompt at all; then a working session (pam_setcred and the session stack succeed for
    # an exempt user too).
    assert r.prompts == [], r
    assert r.status == 0 and r.output.strip() == "vbkeyx", r
    assert env.stack.total_calls() == before


def test_key_break_glass_member_still_needs_the_key(env, key_sshd):
    before = env.stack.total_calls()
    r = ssh_login(key_sshd.port, "vbkeyx", answers=[])
    assert not r.ok, r
    r2 = ssh_login(key_sshd.port, "vbkeyx", key=env.other_key, answers=[])
    assert not r2.ok, r2
    assert env.stack.total_calls() == before


# --- password + VIP ------------------------------------------------------------------------


def test_password_and_code_login(env, pw_sshd):
    before = env.stack.sim.calls("authenticateUser")
    r = ssh_login(pw_sshd.port, "vbpw", answers=[env.passwords["vbpw"], code("vbpw")],
                  command="id -un")
    assert r.ok, (r, pw_sshd.log()[-3000:])
    assert len(r.prompts) == 2, r
    assert "password" in r.prompts[0].lower() and "security code" in r.prompts[1], r
    assert r.status == 0 and r.output.strip() == "vbpw", r
    assert env.stack.sim.calls("authenticateUser") == before + 1


def test_password_and_wrong_code_fails(env, pw_sshd):
    before = env.stack.sim.calls("authenticateUser")
    r = ssh_login(pw_sshd.port, "vbpw",
                  answers=[env.passwords["vbpw"], harness.wrong_code(ph.totp_secret("vbpw"))])
    assert not r.ok, r
    assert asked_for_vip(r), r
    assert env.stack.sim.calls("authenticateUser") == before + 1


def test_wrong_password_fails_even_with_right_code(env, pw_sshd):
    before = env.stack.total_calls()
    r = ssh_login(pw_sshd.port, "vbpw", answers=["not-" + env.passwords["vbpw"], code("vbpw")])
    assert not r.ok, r
    # common-auth failed: the stack ended before pam_vip.so; no code was asked for or spent.
    assert not asked_for_vip(r), r
    assert env.stack.total_calls() == before


def test_password_non_member_still_needs_vip(env, pw_sshd):
    r = ssh_login(pw_sshd.port, "vbpw", answers=[env.passwords["vbpw"]])
    assert not r.ok, r
    assert asked_for_vip(r), r


def test_password_break_glass_member_needs_only_the_password(env, pw_sshd):
    before = env.stack.total_calls()
    r = ssh_login(pw_sshd.port, "vbpwx", answers=[env.passwords["vbpwx"]], command="id -un")
    assert r.ok, (r, pw_sshd.log()[-3000:])
    assert len(r.prompts) == 1 and "password" in r.prompts[0].lower(), r
    assert r.status == 0 and r.output.strip() == "vbpwx", r
    assert env.stack.total_calls() == before


def test_password_break_glass_member_still_needs_the_password(env, pw_sshd):
    before = env.stack.total_calls()
    r = ssh_login(pw_sshd.port, "vbpwx", answers=["not-" + env.passwords["vbpwx"]])
    assert not r.ok, r
    assert not asked_for_vip(r), r
    assert env.stack.total_calls() == before


def test_unknown_user_never_reaches_vip(env, pw_sshd):
    before = env.stack.total_calls()
    r = ssh_login(pw_sshd.port, "vbnosuchuser", answers=["123456", "push", "push"])
    assert not r.ok, r
    # sshd ran PAM for the invalid user (with its placeholder password): common-auth failed.
    assert env.stack.total_calls() == before
    assert "vbnosuchuser" not in env.stack.bridge.log()


# --- in-band enrollment after the Unix password --------------------------------------------


def test_password_login_of_a_user_unknown_to_vip_enrolls_a_token_then_uses_it(env, pw_sshd):
    """pam_unix (common-auth) accepted the password, pam_vip.so reads that from the PAM
    transaction in sshd's PAM process, and the daemon offers enrollment through
    keyboard-interactive: the menu, the credential ID, its code. Then the ordinary login."""
    stack = env.stack
    password = env.passwords[ENROLL_USER]
    token_id, secret = ENROLL_TOKEN
    with pytest.raises(urllib.error.HTTPError):   # 404: VIP does not know the user yet
        stack.sim.current_code(ENROLL_USER)
    before = dict(stack.sim.counters()["calls"])
    code_now = harness.fresh_totp(secret, min_left=10)
    enrolled_at = time.time()
    typed_id = "vsst 2000-0001"
    r = ssh_login(pw_sshd.port, ENROLL_USER,
                  answers=[password, "token", typed_id, code_now], command="id -un")
    assert r.ok, (r, pw_sshd.log()[-3000:], stack.bridge.log()[-3000:])
    assert r.status == 0 and r.output.strip() == ENROLL_USER, r
    assert len(r.prompts) == 4, r
    pw, menu, ask_id, ask_code = r.prompts
    assert "password" in pw.lower(), r
    assert "You have no second factor yet" in menu, r
    for word in ("token", "sms", "voice"):
        assert ("  %s " % word) in menu, (word, r)
    assert "credential ID" in ask_id, r
    assert ("security code VIP Access shows for %s" % token_id) in ask_code, r
    # The menu and the credential ID are answered in the clear; the password and code are not.
    assert r.echoes == [False, True, True, False], r
    now = stack.sim.counters()["calls"]
    d = {op: now.get(op, 0) - before.get(op, 0)
         for op in ("createUser", "addCredential", "register", "deleteUser")}
    # addCredential twice: refused first (6003, no such user), then after createUser.
    assert d == {"createUser": 1, "addCredential": 2, "register": 0, "deleteUser": 0}, now
    # The new VIP user's token is this one (its code now, or a moment ago at a step's edge).
    bound = stack.sim.current_code(ENROLL_USER)
    assert bound in (harness.totp(secret), harness.totp(secret, time.time() - 5)), \
        "the token is not bound to the new VIP user"
    # The audit line names pam_unix as the first factor that allowed it.
    audit = [line for line in stack.bridge.log().splitlines()
             if "credential_added" in line and ("vip_user=%s " % ENROLL_USER) in line]
    assert len(audit) == 1 and 'first_factor="pam_unix"' in audit[0], audit

    # Again: the password, then the ordinary code prompt; the token's next code (the enrolling
    # code's step is spent).
    assert time.time() < enrolled_at + 60, "too slow: the next step's code left VIP's window"
    before = dict(stack.sim.counters()["calls"])
    r = ssh_login(pw_sshd.port, ENROLL_USER,
                  answers=[password, harness.totp(secret, enrolled_at + 30)], command="id -un")
    assert r.ok, (r, pw_sshd.log()[-3000:])
    assert len(r.prompts) == 2 and asked_for_vip(r), r
    assert not any("second factor yet" in p or "credential ID" in p for p in r.prompts), r
    assert r.status == 0 and r.output.strip() == ENROLL_USER, r
    now = stack.sim.counters()["calls"]
    assert now.get("authenticateUser", 0) == before.get("authenticateUser", 0) + 1, now
    for op in ("createUser", "addCredential", "register", "deleteUser"):
        assert now.get(op, 0) == before.get(op, 0), (op, now)
