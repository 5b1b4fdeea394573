"""The shipped PAM recipes as files: consistent with each other, with Debian's stock files, with
the module and with pam-module/README.md; their break-glass lines under pamtester; and the
pam-auth-update profile (packaging/pam-configs/vip-bridge) run by the real pam-auth-update.

The recipes themselves are driven by real sshd and sudo in test_pam_sshd.py and
test_pam_sudo.py. Here:

- static checks (no daemon): one pam_vip.so line per recipe with the same arguments; one
  timeout that is the module's default and exceeds the default push_timeout; the break-glass
  line directly above pam_vip.so (`success=1` after common-auth and in the profile,
  `success=done` as the key recipe's first auth line); each /etc/pam.d recipe is
  Debian's stock file (as installed on this machine, checked against dpkg's checksum) plus
  exactly the vip-bridge lines; the sshd_config settings a recipe names are those of its
  snippet; every pam.d / sshd_config / profile block in pam-module/README.md is a verbatim
  excerpt of one of these files; the README's [pam] example names policies that exist
  and passes `vip-bridge check-config`.
- pamtester under libpam-wrapper (service files in a temporary directory; /etc/pam.d is
  untouched): the recipes' auth stacks with pam_authenticate and pam_setcred, an exempt user
  passing on the first factor, and a group that does not exist exempting nobody (the one extra
  substitution, named in that test: the group's name).
- pam-auth-update: `pam-auth-update --enable vip-bridge` (and `--disable`) inside
  `bwrap --bind / / --bind COPY /etc/pam.d --bind COPY /usr/share/pam-configs
  --bind COPY /var/lib/pam --bind COPY /var/cache/debconf`, over copies of the real
  directories, so the real /etc/pam.d, /var/lib/pam and debconf database are never written
  (checked). The generated common-auth then authenticates through pamtester.

Substitutions in the recipes (pam_harness.recipe): the socket path -> the test daemon's, and
`pam_vip.so` -> the absolute path of the built module. Local users (created here, removed
afterwards): vbrcp (password + VIP), vbrcpx (password, member of vip-bridge-exempt); the group
vip-bridge-exempt is created if missing and removed again.
"""

import grp
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402

REPO = ph.REPO
README = os.path.join(REPO, "pam-module", "README.md")

# recipe -> (stock Debian file it is based on, sshd_config snippet or None)
RECIPES = {
    "sshd-key-vip": ("/etc/pam.d/sshd", "vip-key.conf"),
    "sshd-password-vip": ("/etc/pam.d/sshd", "vip-password.conf"),
    "sudo-vip": ("/etc/pam.d/sudo", None),
}
PROFILE = ("pam-configs", "vip-bridge")

VIP_ARGS = "socket=/run/vip-bridge/pam.sock prompts=8 timeout=60"
VIP_LINE = "auth required pam_vip.so " + VIP_ARGS
# The break-glass line: "success=1" (skip pam_vip.so only; the first factor's success stands)
# after common-auth and in the profile; "success=done" in the key recipe, where nothing before
# it succeeded (a skip alone would leave the stack without a result: a failure).
EXEMPT_LINE = ("auth [success=1 default=ignore] pam_succeed_if.so quiet_fail user ingroup "
               + ph.EXEMPT_GROUP)
EXEMPT_DONE = EXEMPT_LINE.replace("[success=1 ", "[success=done ")
COMMON_AUTH = "@include common-auth"

# What each sshd_config snippet must say.
SNIPPET_SETTINGS = {
    "vip-key.conf": ["UsePAM yes", "KbdInteractiveAuthentication yes",
                     "AuthenticationMethods publickey,keyboard-interactive"],
    "vip-password.conf": ["UsePAM yes", "KbdInteractiveAuthentication yes",
                          "PasswordAuthentication no",
                          "AuthenticationMethods keyboard-interactive"],
}

USER = "vbrcp"
EXEMPT_USER = "vbrcpx"


def recipe_text(name):
    return ph.read_packaging("pam.d", name)


def profile_auth_lines(text):
    """The Auth: lines of a pam-configs profile, as /etc/pam.d lines ("auth ..."), normalized."""
    out, inside = [], False
    for line in text.splitlines():
        if re.match(r"^\S+:", line):
            inside = line.split(":", 1)[0] == "Auth"
            continue
        if inside and line.strip():
            out.append("auth " + " ".join(line.split()))
    return out


def module_default_timeout():
    with open(os.path.join(REPO, "pam-module", "src", "args.rs")) as f:
        m = re.search(r"DEFAULT_TIMEOUT_SECS: u64 = (\d+);", f.read())
    assert m, "DEFAULT_TIMEOUT_SECS not found in pam-module/src/args.rs"
    return int(m.group(1))


def default_push_timeout():
    with open(os.path.join(REPO, "shared", "src", "engine", "policy.rs")) as f:
        m = re.search(r"push_timeout: Duration::from_secs\((\d+)\)", f.read())
    assert m, "the default push_timeout not found in shared/src/engine/policy.rs"
    return int(m.group(1))


# --- static checks -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RECIPES) + ["profile"])
def test_one_vip_line_with_the_shared_arguments(name):
    if name == "profile":
        lines = profile_auth_lines(ph.read_packaging(*PROFILE))
    else:
        lines = ph.recipe_lines(recipe_text(name))
    vip = [line for line in lines if "pam_vip.so" in line]
    assert vip == [VIP_LINE], vip


def test_timeout_is_the_module_default_and_covers_a_push():
    timeout = int(re.search(r"timeout=(\d+)", VIP_ARGS).group(1))
    assert timeout == module_default_timeout()
    assert timeout > default_push_timeout()
    with open(README) as f:
        readme = f.read()
    m = re.search(r"^\| `timeout=SECONDS` \| `(\d+)` \|", readme, re.M)
    assert m and int(m.group(1)) == timeout, "README's timeout= default must be %d" % timeout
    # No other timeout= value is recommended anywhere in the README.
    others = set(re.findall(r"\btimeout=(\d+)", readme)) - {str(timeout)}
    assert not others, others


@pytest.mark.parametrize("name", list(RECIPES) + ["profile"])
def test_break_glass_line_sits_directly_above_pam_vip(name):
    exempt = EXEMPT_DONE if name == "sshd-key-vip" else EXEMPT_LINE
    if name == "profile":
        lines = profile_auth_lines(ph.read_packaging(*PROFILE))
    else:
        lines = ph.recipe_lines(recipe_text(name))
    i = lines.index(VIP_LINE)
    assert lines[i - 1] == exempt, lines
    assert sum("pam_succeed_if.so" in line for line in lines) == 1, lines
    if name == "profile":
        return
    before = lines[:i - 1]
    auth_before = [line for line in before if line.startswith("auth") or line == COMMON_AUTH]
    if name == "sshd-key-vip":
        # The key is the first factor (sshd checks it): nothing in PAM before the exemption.
        assert auth_before == [], auth_before
        assert COMMON_AUTH not in lines
    else:
        # The password first: an exempt user still needs it.
        assert auth_before == [COMMON_AUTH], auth_before
    # Nothing after pam_vip.so in auth.
    after = [line for line in lines[i + 1:] if line.startswith("auth") or "common-auth" in line]
    assert after == [], after


def stock_lines(path):
    """Debian's stock file on this machine, checked unmodified against dpkg's conffile md5."""
    ph.need(shutil.which("dpkg-query"), "dpkg-query missing (not Debian)")
    owner = subprocess.run(["dpkg-query", "-S", path], capture_output=True, timeout=30)
    ph.need(owner.returncode == 0, "%s belongs to no package here" % path)
    pkg = owner.stdout.decode().split(":")[0].strip()
    conf = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}\n", pkg], capture_output=True,
                          timeout=30).stdout.decode()
    sums = dict(line.split()[:2] for line in conf.splitlines() if line.strip())
    with open(path, "rb") as f:
        data = f.read()
    assert hashlib.md5(data).hexdigest() == sums.get(path), (
        "%s differs from the one %s installed: cannot compare the recipe with Debian's stock "
        "file" % (path, pkg))
    return ph.recipe_lines(data.decode())


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_is_debian_stock_plus_the_vip_lines(name):
    stock = stock_lines(RECIPES[name][0])
    assert stock.count(COMMON_AUTH) == 1, stock
    i = stock.index(COMMON_AUTH)
    if name == "sshd-key-vip":
        vip = [EXEMPT_DONE, VIP_LINE]                        # instead of common-auth
    else:
        vip = [COMMON_AUTH, EXEMPT_LINE, VIP_LINE]           # after common-auth
    expected = stock[:i] + vip + stock[i + 1:]
    assert ph.recipe_lines(recipe_text(name)) == expected


@pytest.mark.parametrize("name", [n for n, (_, s) in RECIPES.items() if s])
def test_sshd_settings_named_by_the_recipe_are_its_snippet(name):
    snippet = RECIPES[name][1]
    settings = [line.strip() for line in ph.read_packaging("sshd_config.d", snippet).splitlines()
                if line.strip() and not line.startswith("#")]
    for s in SNIPPET_SETTINGS[snippet]:
        assert s in settings, (snippet, s)
    header = recipe_text(name)
    assert "/usr/share/doc/vip-bridge/sshd_config.d/" + snippet in header
    for s in settings:
        assert "#   " + s + "\n" in header, (name, s)


def readme_blocks():
    with open(README) as f:
        text = f.read()
    return re.findall(r"^```([^\n]*)\n(.*?)^```\s*$", text, re.M | re.S)


def shipped_files():
    out = {}
    for n in RECIPES:
        out["packaging/pam.d/" + n] = recipe_text(n)
    for s in SNIPPET_SETTINGS:
        out["packaging/sshd_config.d/" + s] = ph.read_packaging("sshd_config.d", s)
    out["packaging/pam-configs/vip-bridge"] = ph.read_packaging(*PROFILE)
    return out


def test_readme_shows_the_shipped_files_verbatim():
    """Every README block of PAM lines, sshd_config settings or a profile is an exact excerpt
    (whole lines, in order) of one shipped file: the docs cannot drift from what is tested."""
    files = shipped_files()
    markers = ("pam_vip.so", "pam_succeed_if.so", "AuthenticationMethods", "Auth-Type:")
    checked = 0
    for info, body in readme_blocks():
        if info.strip() in ("toml", "sh", "console") or not any(m in body for m in markers):
            continue
        block = body.rstrip("\n")
        found = [p for p, t in files.items() if block + "\n" in t
                 and (t.startswith(block) or ("\n" + block + "\n") in t)]
        assert found, "README block is not an excerpt of any shipped file:\n" + block
        checked += 1
    assert checked >= 5, "expected the README to show the recipes, snippets and profile"


def test_readme_pam_example_names_existing_policies():
    done = False
    for info, body in readme_blocks():
        if info.strip() != "toml" or "[pam" not in body:
            continue
        cfg = tomllib.loads(body)
        defined = set(cfg.get("policies", {})) | {"default"}
        pam = cfg["pam"]
        named = [s["policy"] for s in pam.get("services", {}).values()]
        named.append(pam.get("default_policy", "default"))
        for p in named:
            assert p in defined, "README [pam] example names policy %r, not defined" % p
        done = True
    assert done, "no [pam] example in the README"


def test_readme_pam_example_is_accepted_by_the_daemon(certs, tmp_path):
    """The README's [pam] example, under a [vip] section, passes `vip-bridge check-config`; the
    old example's `policy = "sudo"` (no such policy) is refused."""
    body = [b for info, b in readme_blocks() if info.strip() == "toml" and "[pam" in b]
    assert len(body) == 1, body
    vip = ('[vip]\nauth_url = "https://127.0.0.1:9/a"\nquery_url = "https://127.0.0.1:9/q"\n'
           'management_url = "https://127.0.0.1:9/m"\ncert_file = "%s"\nkey_file = "%s"\n'
           'ca_file = "%s"\n\n' % (certs["client.pem"], certs["client.key"], certs["ca.pem"]))
    good = tmp_path / "readme-pam.toml"
    good.write_text(vip + body[0])
    bad = tmp_path / "readme-pam-sudo.toml"
    bad.write_text(vip + re.sub(r'(\[pam\.services\.sudo\]\npolicy = )"default"', r'\1"sudo"',
                                body[0]))
    assert bad.read_text() != good.read_text()
    exe = harness.find_binary("vip-bridge")
    p = subprocess.run([exe, "check-config", "--offline", "--config", str(good)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([exe, "check-config", "--offline", "--config", str(bad)],
                       capture_output=True, timeout=60)
    assert p.returncode != 0 and b"sudo" in p.stdout + p.stderr, p.stdout + p.stderr


# --- pamtester: the recipes' auth stacks, break-glass, a missing group ----------------------


def need_pamtester():
    ph.need(os.geteuid() == 0, "must run as root (local users, pam_unix)")
    ph.need(ph.have("pamtester"), "pamtester not installed")
    ph.need(ph.wrapper_path(), "libpam-wrapper not installed")
    ph.need(ph.have("useradd", "userdel", "groupadd", "groupdel", "chpasswd", "gpasswd"),
            "shadow utilities missing")


class Env:
    pass


@pytest.fixture(scope="module")
def env(workroot, certs):
    need_pamtester()
    workdir = os.path.join(workroot, "test_pam_recipes")
    os.makedirs(workdir, exist_ok=True)
    e = Env()
    e.dir = workdir
    e.passwords = {u: "vb-" + secrets.token_urlsafe(12) for u in (USER, EXEMPT_USER)}
    accounts = ph.Accounts()
    e.stack = None
    try:
        accounts.group(ph.EXEMPT_GROUP)
        accounts.user(USER, password=e.passwords[USER])
        accounts.user(EXEMPT_USER, password=e.passwords[EXEMPT_USER], groups=[ph.EXEMPT_GROUP])
        users = ph.sim_user(USER, index=0) + ph.sim_user(EXEMPT_USER, index=1)
        e.stack = ph.PamStack(workdir, certs, users, {}, {},
                              sim_policy="number_challenge = false\nlockout_after = 50\n")
        e.pt = ph.Pamtester(workdir)
        e.module = ph.module_path()
        for name in RECIPES:
            e.pt.service_text("vb-" + name, ph.recipe(recipe_text(name), e.stack.socket,
                                                       e.module))
        yield e
    finally:
        if e.stack is not None:
            e.stack.stop()
        accounts.remove()


def ok(out):
    return "successfully authenticated" in out


def asked_for_vip(out):
    return "security code" in out


def first_factor(e, name, user):
    """The answers for the first factor PAM asks in this recipe (the key is sshd's)."""
    return [] if name == "sshd-key-vip" else [e.passwords[user]]


@pytest.mark.parametrize("name", list(RECIPES))
def test_exempt_member_passes_authenticate_and_setcred(env, name):
    before = env.stack.total_calls()
    rc, out = env.pt.run("vb-" + name, EXEMPT_USER, first_factor(env, name, EXEMPT_USER),
                         operations=("authenticate", "setcred"))
    assert rc == 0 and ok(out), out
    assert "Failure setting user credentials" not in out, out
    assert not asked_for_vip(out), out
    assert env.stack.total_calls() == before


@pytest.mark.parametrize("name", list(RECIPES))
def test_non_member_needs_vip(env, name):
    rc, out = env.pt.run("vb-" + name, USER, first_factor(env, name, USER))
    assert rc != 0 and not ok(out), out
    assert asked_for_vip(out), out


@pytest.mark.parametrize("name", ["sshd-password-vip", "sudo-vip"])
def test_exempt_member_still_needs_the_password(env, name):
    before = env.stack.total_calls()
    rc, out = env.pt.run("vb-" + name, EXEMPT_USER, ["not-" + env.passwords[EXEMPT_USER]])
    assert rc != 0 and not ok(out), out
    assert env.stack.total_calls() == before


@pytest.mark.parametrize("name", list(RECIPES))
def test_missing_group_exempts_nobody(env, name):
    """The break-glass group does not exist: nobody is exempt, not even a user who is in the
    real vip-bridge-exempt group. One more substitution, for this test only: the group's name
    in the recipe -> a name no group has."""
    missing = "vb-no-such-group-%d" % os.getpid()
    with pytest.raises(KeyError):
        grp.getgrnam(missing)
    text = ph.substitute(ph.recipe(recipe_text(name), env.stack.socket, env.module),
                         "ingroup " + ph.EXEMPT_GROUP, "ingroup " + missing,
                         "the exempt group -> a group that does not exist")
    service = env.pt.service_text("vb-missing-" + name, text)
    rc, out = env.pt.run(service, EXEMPT_USER, first_factor(env, name, EXEMPT_USER))
    assert rc != 0 and not ok(out), out
    assert asked_for_vip(out), out


# --- pam-auth-update ------------------------------------------------------------------------

# What pam-auth-update reads and writes, copied for a sandbox: (real path, sandbox name).
PAU_DIRS = [
    ("/etc/pam.d", "pam.d"),
    ("/usr/share/pam-configs", "pam-configs"),
    ("/var/lib/pam", "varlibpam"),
    ("/var/cache/debconf", "debconf"),
]


def need_pam_auth_update():
    ph.need(ph.have("bwrap"), "bubblewrap not installed")
    ph.need(ph.have("pam-auth-update"), "pam-auth-update (libpam-runtime) not installed")
    for real, _ in PAU_DIRS:
        ph.need(os.path.isdir(real), real + " missing")


def tree_digest(paths):
    """A digest of every file under the given paths (content, name, mode)."""
    h = hashlib.sha256()
    for top in paths:
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for n in sorted(files):
                p = os.path.join(root, n)
                h.update(p.encode() + b"\0")
                if os.path.islink(p):
                    h.update(os.readlink(p).encode())
                    continue
                st = os.stat(p)
                h.update(oct(st.st_mode).encode())
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


class Sandbox:
    def __init__(self, directory, profile_text):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        self.dir = directory
        self.paths = {}
        for real, name in PAU_DIRS:
            dest = os.path.join(directory, name)
            subprocess.run(["cp", "-a", real, dest], check=True, timeout=60)
            self.paths[real] = dest
        with open(os.path.join(self.paths["/usr/share/pam-configs"], "vip-bridge"), "w") as f:
            f.write(profile_text)
        self.pamd = self.paths["/etc/pam.d"]

    def read(self, name):
        with open(os.path.join(self.pamd, name)) as f:
            return f.read()

    def pam_auth_update(self, *args):
        argv = ["bwrap", "--die-with-parent", "--bind", "/", "/"]
        for real, dest in self.paths.items():
            argv += ["--bind", dest, real]
        argv += ["env", "DEBIAN_FRONTEND=noninteractive", "pam-auth-update"] + list(args)
        p = subprocess.run(argv, capture_output=True, timeout=120)
        out = (p.stdout + p.stderr).decode(errors="replace")
        assert p.returncode == 0, out
        # pam-auth-update exits 0 after refusing to touch locally modified files: catch that.
        assert "Local modifications" not in out, out
        return out


def profile_for_test(module, socket):
    text = ph.recipe(ph.read_packaging(*PROFILE), socket, module)
    # pam-auth-update turns "end" in a line's control and module fields into a jump count.
    assert "end" not in module, "the module's path must not contain 'end': %s" % module
    return text


def additional_block(common_auth):
    m = re.search(r'^# and here are more per-package modules \(the "Additional" block\)\n'
                  r"(.*?)^# end of pam-auth-update config", common_auth, re.M | re.S)
    assert m, common_auth
    return [" ".join(line.split()) for line in m.group(1).splitlines() if line.strip()]


def primary_part(common_auth):
    return common_auth.split('# and here are more per-package modules')[0]


@pytest.fixture(scope="module")
def pau(env):
    """pam-auth-update --enable vip-bridge in a sandbox; a pamtester service that runs the
    generated common-auth (included by absolute path: under libpam-wrapper a relative
    @include would read the real /etc/pam.d)."""
    need_pam_auth_update()
    real = [r for r, _ in PAU_DIRS]
    digest = tree_digest(real)
    box = Sandbox(os.path.join(env.dir, "pam-auth-update"),
                  profile_for_test(env.module, env.stack.socket))
    box.original = {n: box.read(n) for n in os.listdir(box.pamd) if n.startswith("common-")}
    box.output = box.pam_auth_update("--enable", "vip-bridge")
    box.service = env.pt.service_text(
        "vb-common-auth",
        "auth include %s\naccount required pam_permit.so\n"
        % os.path.join(box.pamd, "common-auth"))
    try:
        yield box
    finally:
        assert tree_digest(real) == digest, "pam-auth-update in the sandbox changed the system"


def test_enable_adds_the_profile_after_the_primary_block(env, pau):
    after = pau.read("common-auth")
    before = pau.original["common-auth"]
    assert primary_part(after) == primary_part(before)
    block = additional_block(after)
    module_line = "auth required %s socket=%s prompts=8 timeout=60" % (env.module,
                                                                      env.stack.socket)
    i = block.index(module_line)
    assert block[i - 1] == EXEMPT_LINE, block
    # Everything else that was in the Additional block is still there, in order.
    assert block[:i - 1] + block[i + 1:] == additional_block(before), block
    for n, text in pau.original.items():
        if n != "common-auth":
            assert pau.read(n) == text, n
    with open(os.path.join(pau.paths["/var/lib/pam"], "seen")) as f:
        assert "vip-bridge" in f.read().split()


def test_enabled_password_and_code_login(env, pau):
    before = env.stack.sim.calls("authenticateUser")
    rc, out = env.pt.run(pau.service, USER, [env.passwords[USER],
                                             harness.fresh_totp(ph.totp_secret(USER), 8)],
                         operations=("authenticate", "setcred"))
    assert rc == 0 and ok(out), out
    assert asked_for_vip(out), out
    assert env.stack.sim.calls("authenticateUser") == before + 1


def test_enabled_password_only_fails(env, pau):
    rc, out = env.pt.run(pau.service, USER, [env.passwords[USER]])
    assert rc != 0 and not ok(out), out
    assert asked_for_vip(out), out


def test_enabled_wrong_password_fails_before_vip(env, pau):
    before = env.stack.total_calls()
    rc, out = env.pt.run(pau.service, USER, ["not-" + env.passwords[USER],
                                             harness.fresh_totp(ph.totp_secret(USER), 8)])
    assert rc != 0 and not ok(out), out
    assert not asked_for_vip(out), out
    assert env.stack.total_calls() == before


def test_enabled_exempt_member_password_only(env, pau):
    before = env.stack.total_calls()
    rc, out = env.pt.run(pau.service, EXEMPT_USER, [env.passwords[EXEMPT_USER]],
                         operations=("authenticate", "setcred"))
    assert rc == 0 and ok(out), out
    assert not asked_for_vip(out), out
    rc, out = env.pt.run(pau.service, EXEMPT_USER, ["not-" + env.passwords[EXEMPT_USER]])
    assert rc != 0 and not ok(out), out
    assert env.stack.total_calls() == before


def test_disable_removes_it(env):
    need_pam_auth_update()
    real = [r for r, _ in PAU_DIRS]
    digest = tree_digest(real)
    box = Sandbox(os.path.join(env.dir, "pam-auth-update-disable"),
                  profile_for_test(env.module, env.stack.socket))
    original = box.read("common-auth")
    box.pam_auth_update("--enable", "vip-bridge")
    assert "pam_vip" in box.read("common-auth")
    box.pam_auth_update("--disable", "vip-bridge")
    after = box.read("common-auth")
    assert "pam_vip" not in after and "vip-bridge-exempt" not in after, after
    assert after == original
    assert tree_digest(real) == digest, "pam-auth-update in the sandbox changed the system"
