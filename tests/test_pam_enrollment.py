"""In-band enrollment under PAM, end to end: pamtester (under libpam-wrapper, so /etc/pam.d is
untouched) -> pam_unix.so -> pam_vip.so -> vip-bridge (PAM socket) -> vip-sim.

Under PAM the first factor is pam_unix earlier in the same transaction: pam_vip.so reads the
result pam_unix recorded (pam_get_data("unix_setcred_return") == PAM_SUCCESS) and tells the
daemon, which offers a user VIP knows no usable credential for to set one up (policy
`enrollment = "after_first_factor"`). Never without pam_unix's success: not after a wrong
password under a `required` pam_unix (the stack goes on to pam_vip.so), not with pam_vip.so
alone, and never to a user who already has a credential.

The enrolling login runs pamtester on a pseudo-terminal and answers each prompt only once
pamtester waits for it, so the terminal's echo shows which prompts are echo-on (the menu and
the credential ID: what was typed appears in the transcript) and which are not (the Unix
password and the security code never appear).

Local users (created here with Unix passwords, removed afterwards with their homes):
vbenroll, vbenrollpw, vbenrollsolo (unknown to VIP) and vbenrollhas (has a token at VIP).
"""

import os
import secrets
import select
import subprocess
import sys
import time
import urllib.error

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402

PAM_UNIX_CANDIDATES = [
    "/usr/lib/x86_64-linux-gnu/security/pam_unix.so",
    "/lib/x86_64-linux-gnu/security/pam_unix.so",
    "/usr/lib64/security/pam_unix.so",
    "/lib/security/pam_unix.so",
]

# The simulator's unbound token inventory ([[tokens]]): one to enroll, one an attacker holds.
TOKEN = ("VSST10000001", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
OTHER_TOKEN = ("VSST10000002", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")

# Local users.
ENROLLS = "vbenroll"        # case 1: enrolls a token, then logs in with it
WRONG_PW = "vbenrollpw"     # case 2: a wrong Unix password under `required` pam_unix
SOLO = "vbenrollsolo"       # case 3: pam_vip.so alone
HAS = "vbenrollhas"         # case 4: already has a credential at VIP
LOCAL_USERS = (ENROLLS, WRONG_PW, SOLO, HAS)

# Services, all on the enrolling policy.
REQUISITE = "vb-enroll-requisite"   # auth requisite pam_unix.so, then pam_vip.so
REQUIRED = "vb-enroll-required"     # auth required pam_unix.so, then pam_vip.so
ALONE = "vb-enroll-alone"           # pam_vip.so only

ENROLL_OPS = ("createUser", "addCredential", "register", "deleteUser")
NO_FACTOR_YET = "You have no second factor yet. Set one up now:"
MENU_END = "Type one of these words:"
ASK_ID = "Enter the credential ID shown in VIP Access"
ASK_CODE = "Enter your security code"


def pam_unix_path():
    for p in PAM_UNIX_CANDIDATES:
        if os.path.exists(p):
            return p
    return None


def need_peers():
    ph.need(os.geteuid() == 0, "must run as root (local users with passwords, pam_unix)")
    ph.need(ph.have("pamtester"), "pamtester not installed")
    ph.need(ph.wrapper_path() is not None, "libpam-wrapper not installed")
    ph.need(pam_unix_path() is not None, "pam_unix.so not found (libpam-modules)")
    ph.need(ph.have("useradd", "userdel", "chpasswd"), "shadow utilities missing")
    ph.need(os.path.exists("/proc/self/syscall"), "/proc/PID/syscall unavailable")


class Env:
    pass


@pytest.fixture(scope="module")
def env(workroot, certs):
    need_peers()
    workdir = os.path.join(workroot, "test_pam_enrollment")
    os.makedirs(workdir, exist_ok=True)
    e = Env()
    # Unique per run, never written anywhere but chpasswd's stdin.
    e.passwords = {u: "vb-" + secrets.token_urlsafe(12) for u in LOCAL_USERS}
    accounts = ph.Accounts()
    stack = None
    try:
        for u in LOCAL_USERS:
            accounts.user(u, password=e.passwords[u])
        users = ph.sim_user(HAS, index=0)
        for token_id, secret in (TOKEN, OTHER_TOKEN):
            users += '[[tokens]]\nid = "%s"\nsecret = "%s"\n\n' % (token_id, secret)
        policies = {"enroll": 'enrollment = "after_first_factor"\npush_timeout = "20s"'}
        services = {REQUISITE: "enroll", REQUIRED: "enroll", ALONE: "enroll"}
        stack = ph.PamStack(workdir, certs, users, services, policies,
                            sim_policy="number_challenge = false\nlockout_after = 50\n")
        e.stack = stack
        e.pt = ph.Pamtester(workdir)
        vip = "auth required %s socket=%s timeout=30\n" % (ph.module_path(), stack.socket)
        tail = "account required pam_permit.so\nsession required pam_permit.so\n"
        e.pt.service_text(REQUISITE, "auth requisite pam_unix.so\n" + vip + tail)
        e.pt.service_text(REQUIRED, "auth required pam_unix.so\n" + vip + tail)
        e.pt.service_text(ALONE, vip + tail)
        yield e
    finally:
        try:
            if stack is not None:
                rc = stack.stop()
                if rc not in (0, None):
                    sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, stack.bridge.log()))
        finally:
            accounts.remove()


# --- helpers ---------------------------------------------------------------------------------


def ok(out):
    return "successfully authenticated" in out


def calls(stack):
    return dict(stack.sim.counters().get("calls", {}))


def delta(stack, before, ops):
    now = calls(stack)
    return {op: now.get(op, 0) - before.get(op, 0) for op in ops}


def user_code(stack, user):
    """The code of `user`'s token at VIP (admin GET /users/{id}/code); None when VIP does not
    know the user or they have no token."""
    try:
        return stack.sim.current_code(user)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


def token_code(stack, token_id):
    """The code a token shows now (admin GET /tokens/{id}/code), bound or not."""
    return stack.sim._admin("GET", "/tokens/%s/code" % token_id)["code"]


def same_code(a, b):
    """Whether two code sources agree (asked again if a 30-s step ended between them)."""
    for _ in range(3):
        if a() == b():
            return True
    return False


def waiting_on_stdin(pid):
    """Whether `pid` is blocked in read(0, ...) (x86-64 syscall 0; /proc/PID/syscall)."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().startswith("0 0x0 ")
    except OSError:
        return False


class Conversation:
    def __init__(self):
        self.rc = None
        self.transcript = ""   # everything pamtester wrote to the terminal, \r\n -> \n
        self.asked = []        # (text shown since the previous answer, answer typed)
        self.unexpected = None

    def __repr__(self):
        return "Conversation(rc=%r unexpected=%r)\n%s" % (self.rc, self.unexpected,
                                                          self.transcript)


def converse(pt, service, user, respond, timeout=60):
    """pamtester on a pseudo-terminal. Whenever it waits on stdin after printing a prompt
    (output ending in ": "), `respond(text since the previous answer)` gives the line to type;
    None ends the conversation (pamtester is killed). The terminal echoes what is typed unless
    the prompt turned echo off (PAM_PROMPT_ECHO_OFF): the transcript shows which was which."""
    c = Conversation()
    master, slave = os.openpty()
    p = subprocess.Popen(["pamtester", "-v", service, user, "authenticate"],
                         stdin=slave, stdout=slave, stderr=slave, env=pt.env,
                         start_new_session=True)
    os.close(slave)
    out = bytearray()
    answered_at = 0
    deadline = time.time() + timeout

    def read(wait):
        """True: got output; False: none yet; None: the terminal closed (pamtester ended)."""
        r, _, _ = select.select([master], [], [], wait)
        if not r:
            return False
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the last slave descriptor is closed
            return None
        if not chunk:
            return None
        out.extend(chunk)
        return True

    try:
        while True:
            if time.time() > deadline:
                c.unexpected = "timed out"
                break
            got = read(0.05)
            if got is None:
                break
            if got or p.poll() is not None:
                continue
            if not waiting_on_stdin(p.pid):
                continue
            # The prompt was written before read() began: take whatever is still buffered.
            while read(0):
                pass
            text = out[answered_at:].decode("utf-8", "replace").replace("\r\n", "\n")
            if not text.endswith(": "):
                continue
            answer = respond(text)
            if answer is None:
                c.unexpected = "no answer for: %r" % text
                break
            c.asked.append((text, answer))
            answered_at = len(out)
            os.write(master, answer.encode() + b"\n")
    finally:
        if p.poll() is None:
            p.kill()
        c.rc = p.wait(timeout=10)
        while read(0):
            pass
        os.close(master)
        c.transcript = out.decode("utf-8", "replace").replace("\r\n", "\n")
    return c


def typed_after(transcript, prompt_end, typed):
    """Whether `typed` was echoed right after the prompt ending in `prompt_end`."""
    return (prompt_end + " " + typed + "\n") in transcript


# --- 1. pam_unix (requisite) passed, user unknown to VIP: enroll a token, then use it ---------


def test_unknown_user_enrolls_a_token_after_pam_unix_then_logs_in_with_it(env):
    stack, pt = env.stack, env.pt
    password = env.passwords[ENROLLS]
    token_id, secret = TOKEN
    assert user_code(stack, ENROLLS) is None, "the user must be unknown to VIP at first"
    typed_id = "vsst 1000-0001"   # as people type it: the engine upper-cases, drops " " and "-"
    before = calls(stack)
    code = harness.fresh_totp(secret, min_left=10)
    enrolled_at = time.time()
    # The simulator's token shows the same code (its admin route and our clock agree).
    assert token_code(stack, token_id) == code

    def respond(text):
        if text.endswith("Password: "):
            return password
        if text.rstrip().endswith(MENU_END):
            return "TOKEN"           # any case
        if ASK_ID in text:
            return typed_id
        if ("Enter the security code VIP Access shows for %s:" % token_id) in text:
            return code
        return None

    c = converse(pt, REQUISITE, ENROLLS, respond)
    t = c.transcript
    assert c.unexpected is None, c
    assert c.rc == 0 and ok(t), c
    # The Unix password, then straight to the menu (no code prompt: the user has none), the
    # credential ID, its code: four prompts in all.
    assert [a for _, a in c.asked] == [password, "TOKEN", typed_id, code], c
    assert ASK_CODE not in t, c
    menu = c.asked[1][0]
    assert NO_FACTOR_YET in menu, c
    for word in ("token", "sms", "voice"):
        assert ("  %s " % word) in menu, (word, c)
    # Echo on for the menu and the credential ID (the terminal shows what was typed)...
    assert typed_after(t, MENU_END, "TOKEN"), c
    assert typed_after(t, "(like VSST12345678):", typed_id), c
    # ...and off for the Unix password and the security code: never on the screen (only the
    # newline the conversation prints after a hidden answer).
    assert password not in t, c
    assert "Password: \n" in t, c
    assert ("shows for %s: \n" % token_id) in t, c
    # The token is bound to the new VIP user: created once, after the first addCredential
    # said the user does not exist (6003), then the token added; nothing registered, nothing
    # deleted.
    assert delta(stack, before, ENROLL_OPS) == {
        "createUser": 1, "addCredential": 2, "register": 0, "deleteUser": 0}, calls(stack)
    assert same_code(lambda: user_code(stack, ENROLLS), lambda: token_code(stack, token_id)), \
        "the token is not bound to the new VIP user"
    # The audit line names pam_unix as the first factor that allowed it.
    audit = [line for line in stack.bridge.log().splitlines()
             if "credential_added" in line and ("vip_user=%s " % ENROLLS) in line]
    assert len(audit) == 1 and 'first_factor="pam_unix"' in audit[0], audit

    # The next login: the ordinary code prompt, no enrollment; the token's next code works
    # (the enrolling code's own step is spent).
    before = calls(stack)
    next_code = harness.totp(secret, enrolled_at + 30)
    assert time.time() < enrolled_at + 60, "too slow: the next step's code left VIP's window"
    rc, out = pt.run(REQUISITE, ENROLLS, [password, next_code])
    assert rc == 0 and ok(out), out
    assert ASK_CODE in out, out
    for text in (NO_FACTOR_YET, "credential ID", MENU_END):
        assert text not in out, out
    d = delta(stack, before, ENROLL_OPS + ("authenticateUser",))
    assert d == dict(dict.fromkeys(ENROLL_OPS, 0), authenticateUser=1), d


# --- 2. pam_unix `required` but the password was wrong: pam_vip.so runs, no enrollment -------


def test_wrong_unix_password_under_required_pam_unix_is_never_offered_enrollment(env):
    stack, pt = env.stack, env.pt
    password = env.passwords[WRONG_PW]
    other_id, other_secret = OTHER_TOKEN
    # Control: on this very stack, with the right password, the user IS offered enrollment
    # (the login is then abandoned at the menu: nothing reaches VIP's management API).
    before = calls(stack)
    rc, out = pt.run(REQUIRED, WRONG_PW, [password])
    assert rc != 0 and not ok(out), out
    assert NO_FACTOR_YET in out, out
    assert delta(stack, before, ENROLL_OPS) == dict.fromkeys(ENROLL_OPS, 0), calls(stack)

    # A wrong password: pam_unix fails but, being `required` (not requisite), the stack goes on
    # to pam_vip.so, which asks for a code. Someone answering as if enrollment were offered
    # gets nowhere.
    before = calls(stack)
    rc, out = pt.run(REQUIRED, WRONG_PW,
                     ["not-" + password, "token", other_id,
                      harness.fresh_totp(other_secret, min_left=8)])
    assert rc != 0 and not ok(out), out
    assert ASK_CODE in out, out              # pam_vip.so did run
    for text in (NO_FACTOR_YET, "credential ID", MENU_END):
        assert text not in out, out
    assert delta(stack, before, ENROLL_OPS) == dict.fromkeys(ENROLL_OPS, 0), calls(stack)
    assert user_code(stack, WRONG_PW) is None, "VIP must still not know the user"


# --- 3. pam_vip.so alone: no first factor in the transaction, no enrollment -----------------


def test_pam_vip_alone_never_offers_enrollment(env):
    stack, pt = env.stack, env.pt
    other_id, other_secret = OTHER_TOKEN
    before = calls(stack)
    rc, out = pt.run(ALONE, SOLO,
                     ["token", other_id, harness.fresh_totp(other_secret, min_left=8)])
    assert rc != 0 and not ok(out), out
    assert ASK_CODE in out, out
    assert "Password:" not in out, out
    for text in (NO_FACTOR_YET, "credential ID", MENU_END):
        assert text not in out, out
    assert delta(stack, before, ENROLL_OPS) == dict.fromkeys(ENROLL_OPS, 0), calls(stack)
    assert user_code(stack, SOLO) is None, "VIP must still not know the user"


# --- 4. a user with a credential: the ordinary code prompt, never enrollment ----------------


def test_user_with_a_credential_gets_the_code_prompt_not_enrollment(env):
    stack, pt = env.stack, env.pt
    password = env.passwords[HAS]
    before = calls(stack)
    rc, out = pt.run(REQUISITE, HAS,
                     [password, harness.fresh_totp(ph.totp_secret(HAS), min_left=8)])
    assert rc == 0 and ok(out), out
    assert ASK_CODE in out, out
    for text in (NO_FACTOR_YET, "credential ID", MENU_END):
        assert text not in out, out
    d = delta(stack, before, ENROLL_OPS + ("authenticateUser",))
    assert d == dict(dict.fromkeys(ENROLL_OPS, 0), authenticateUser=1), d


def test_password_alone_cannot_add_a_token_to_a_user_with_one(env):
    """Someone with the Unix password but not the token types the enrollment words at the code
    prompt: refused, and their token is not added."""
    stack, pt = env.stack, env.pt
    other_id, other_secret = OTHER_TOKEN
    before = calls(stack)
    rc, out = pt.run(REQUISITE, HAS,
                     [env.passwords[HAS], "token", other_id,
                      harness.fresh_totp(other_secret, min_left=8)])
    assert rc != 0 and not ok(out), out
    assert ASK_CODE in out, out
    for text in (NO_FACTOR_YET, "credential ID", MENU_END):
        assert text not in out, out
    assert delta(stack, before, ENROLL_OPS) == dict.fromkeys(ENROLL_OPS, 0), calls(stack)
