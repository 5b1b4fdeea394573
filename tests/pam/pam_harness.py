"""Helpers for the PAM end-to-end tests (tests/test_pam_*.py): a vip-sim and a PAM-only
vip-bridge as processes, pam_vip.so located among the built binaries, local test users,
pamtester under libpam-wrapper (so /etc/pam.d is untouched), and cleanup of everything a test
writes outside its temporary directory (/etc/pam.d/<unique>, /etc/sudoers.d/<unique>), the
shipped PAM / sshd recipes (packaging/) installed with named, mechanical substitutions only, and
local accounts.

Local users: `ensure_user` creates them with `useradd -m` when missing and **leaves them in
place** (their Unix passwords stay locked; they can only log in through the test services, which
exist only while a test runs). `Accounts` creates users (with passwords, keys, groups) for one
test module and removes them afterwards. All names start with `vb` so they are easy to spot and
remove: `userdel -r vbalice`.
"""

import base64
import errno
import grp
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import time

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import harness  # noqa: E402  (tests/harness.py, owned by the RADIUS engineer; used read-only)

REPO = os.path.dirname(TESTS)
PACKAGING = os.path.join(REPO, "packaging")
# What the shipped recipes (packaging/pam.d, packaging/pam-configs) say, and what the tests
# substitute (see recipe()).
SHIPPED_SOCKET = "/run/vip-bridge/pam.sock"
EXEMPT_GROUP = "vip-bridge-exempt"

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

WRAPPER_CANDIDATES = [
    "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so",
    "/usr/lib/libpam_wrapper.so",
]


def module_path():
    """The built pam_vip.so (libpam_vip.so in the cargo target directory)."""
    for d in harness.bin_dirs():
        p = os.path.join(d, "libpam_vip.so")
        if os.path.isfile(p):
            return p
    raise FileNotFoundError("libpam_vip.so not found in %s (cargo build -p pam_vip)"
                            % harness.bin_dirs())


def wrapper_path():
    for p in WRAPPER_CANDIDATES:
        if os.path.exists(p):
            return p
    return None


def totp_secret(user):
    return base64.b32encode(hashlib.sha1(("vip-bridge-pam-" + user).encode()).digest()).decode()


def ensure_user(name, groups=()):
    """Creates a local user (no usable password) unless it exists; makes it a member of
    `groups` (supplementary, created by ensure_group) either way."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True,
                       capture_output=True, timeout=30)
    for g in groups:
        if name not in grp.getgrnam(g).gr_mem:
            subprocess.run(["usermod", "-a", "-G", g, name], check=True,
                           capture_output=True, timeout=30)


def ensure_group(name):
    """Creates a local group unless it exists (left in place, like the users); its gid."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", name], check=True, capture_output=True, timeout=30)
        return grp.getgrnam(name).gr_gid


def nobody_gid():
    """The primary group of `nobody` (nogroup on Debian)."""
    return pwd.getpwnam("nobody").pw_gid


def sim_user(user, push="approve", delay_ms=200, number=None, sms=False, index=0):
    """One [[users]] block for vip-sim: a TOTP credential that is also push-capable."""
    out = ['[[users]]\nid = "%s"\n' % user]
    if sms:
        out.append('sms_phones = ["1555000%04d"]\n' % index)
    out.append('[[users.credentials]]\nid = "VSMP%08d"\ntotp_secret = "%s"\npush = true\n'
               % (index + 1, totp_secret(user)))
    out.append('[users.push]\naction = "%s"\ndelay_ms = %d\n' % (push, delay_ms))
    if number is not None:
        out.append("number = %d\n" % number)
    out.append("\n")
    return "".join(out)


def bridge_toml(sim, certs, socket_path, services, policies, pam_extra=""):
    """A PAM-only vip-bridge config. `services`: {pam service: policy}; `policies`: {name: toml};
    `pam_extra`: more [pam] keys (TOML lines)."""
    text = [
        '[vip]\nauth_url = "%s"\nquery_url = "%s"\nmanagement_url = "%s"\n'
        'cert_file = "%s"\nkey_file = "%s"\nca_file = "%s"\ntimeout = "5s"\n\n'
        % (sim.url("AuthenticationService"), sim.url("QueryService"),
           sim.url("ManagementService"), certs["client.pem"], certs["client.key"],
           certs["ca.pem"]),
        '[engine]\npoll_interval = "300ms"\n\n'
        '[engine.throttle]\npush_per_user = { count = 50, per = "5m" }\n'
        'codes_per_user = { count = 50, per = "5m" }\n\n',
    ]
    for name, body in policies.items():
        text.append("[policies.%s]\n%s\n\n" % (name, body))
    text.append('[pam]\nsocket = "%s"\nrequest_timeout = "60s"\n%s\n' % (socket_path, pam_extra))
    for svc, pol in services.items():
        text.append('[pam.services.%s]\npolicy = "%s"\n\n' % (json.dumps(svc), pol))
    text.append('[log]\nformat = "text"\nlevel = "info"\n')
    return "".join(text)


class PamBridge:
    """`vip-bridge serve` with only the PAM door; waits for the ready file's "pam" entry."""

    def __init__(self, workdir, config_text, timeout=20, wrapper=()):
        """`wrapper`: a command line the daemon runs under, e.g. ["prlimit", "--nofile=64", "--"]."""
        self.config = os.path.join(workdir, "vip-bridge.toml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.ready_file = os.path.join(workdir, "ready.json")
        if os.path.exists(self.ready_file):
            os.unlink(self.ready_file)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info,vip_bridge=debug")
        self.proc = harness.Proc(
            "vip-bridge",
            list(wrapper) + [harness.find_binary("vip-bridge"), "serve",
                             "--config", self.config, "--ready-file", self.ready_file],
            workdir, env=env)
        deadline = time.time() + timeout
        while not os.path.exists(self.ready_file):
            if not self.proc.alive() or time.time() > deadline:
                self.proc.stop()
                raise RuntimeError("vip-bridge did not become ready:\n" + self.proc.log())
            time.sleep(0.05)
        with open(self.ready_file) as f:
            self.socket = json.load(f)["pam"]

    def log(self):
        return self.proc.log()

    def stop(self):
        return self.proc.stop()


class PamStack:
    """vip-sim + vip-bridge for one test module; always stopped by stop()."""

    def __init__(self, workdir, certs, users_toml, services, policies, sim_policy="",
                 pam_extra=None, wrapper=()):
        self.dir = workdir
        self.socket = os.path.join(workdir, "run", "pam.sock")
        if pam_extra is None:
            # The socket is 0660 (owner and socket_group); root's clients pass anyway. Its group
            # is nobody's here so that tests can replay an unprivileged peer that reaches the
            # socket (a site whose socket_group is too wide): the peer-credential check must
            # still refuse it.
            pam_extra = "socket_group = %d\n" % nobody_gid()
        self.sim = harness.Sim(workdir, harness.sim_toml(certs, users_toml, sim_policy))
        self.bridge = None
        try:
            self.bridge = PamBridge(workdir, bridge_toml(self.sim, certs, self.socket,
                                                         services, policies, pam_extra),
                                    wrapper=wrapper)
        except Exception:
            self.sim.stop()
            raise

    def total_calls(self):
        return sum(self.sim.counters().get("calls", {}).values())

    def stop(self):
        rc = self.bridge.stop() if self.bridge else None
        self.sim.stop()
        return rc


def pam_lines(module, args=""):
    return ("auth required %s %s\n"
            "account required pam_permit.so\n"
            "session required pam_permit.so\n" % (module, args))


class Pamtester:
    """pamtester under libpam-wrapper, with its own service directory."""

    def __init__(self, directory):
        self.dir = os.path.join(directory, "pam.d")
        os.makedirs(self.dir, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "LD_PRELOAD": wrapper_path(),
            "PAM_WRAPPER": "1",
            "PAM_WRAPPER_SERVICE_DIR": self.dir,
        })

    def service(self, name, module, args=""):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(pam_lines(module, args))
        return name

    def service_text(self, name, text):
        """A service file with exactly this content."""
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)
        return name

    def run(self, service, user, answers, timeout=40, operations=("authenticate",)):
        """Feeds all answers at once; returns (exit code, stdout + stderr)."""
        data = "".join(a + "\n" for a in answers).encode()
        p = subprocess.run(["pamtester", "-v", service, user] + list(operations), input=data,
                           env=self.env, capture_output=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    def spawn(self, service, user):
        """An interactive pamtester: write answers to .stdin as prompts come."""
        return subprocess.Popen(["pamtester", "-v", service, user, "authenticate"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=self.env)


def wait_for(fn, timeout=10, interval=0.1):
    deadline = time.time() + timeout
    while True:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # noqa: BLE001 - polling an API that may 404 until ready
            if time.time() > deadline:
                raise
        if time.time() > deadline:
            return None
        time.sleep(interval)


class SystemFile:
    """A file written outside the test directory (/etc/pam.d/..., /etc/sudoers.d/...) that
    must not exist before and is always removed by remove()."""

    def __init__(self, path, text, mode=0o644):
        if os.path.exists(path):
            raise RuntimeError("%s already exists; refusing to overwrite it" % path)
        self.path = path
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def have(*programs):
    return all(shutil.which(p) for p in programs)


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI=true."""
    if ok:
        return
    import pytest

    if CI:
        pytest.fail("%s (CI=true: the PAM tests must run)" % what)
    pytest.skip(what)


# ---------------------------------------------------------------------------------------------
# The shipped recipes


def packaging_path(*parts):
    return os.path.join(PACKAGING, *parts)


def read_packaging(*parts):
    with open(packaging_path(*parts)) as f:
        return f.read()


def substitute(text, old, new, what):
    """One mechanical substitution, named by the test (`what`); fails when `old` is absent, so a
    recipe that changed is noticed instead of being tested as it was."""
    if old not in text:
        raise AssertionError("cannot substitute %s: %r is not in the recipe" % (what, old))
    return text.replace(old, new)


def recipe(text, socket, module):
    """A shipped PAM recipe (a /etc/pam.d file or a pam-configs profile) made to run against the
    test daemon. Exactly two substitutions, nothing else changes:
      1. the daemon's socket: `socket=/run/vip-bridge/pam.sock` -> `socket=<socket>`;
      2. the module: `pam_vip.so socket=` -> `<module, absolute path> socket=` (the built
         libpam_vip.so is not installed in the system's security directory)."""
    text = substitute(text, "socket=" + SHIPPED_SOCKET, "socket=" + socket, "the socket path")
    text = substitute(text, "pam_vip.so socket=", module + " socket=",
                      "pam_vip.so -> the built module")
    for line in text.splitlines():
        fields = line.split()
        if fields and not line.lstrip().startswith("#") and "pam_vip.so" in fields:
            raise AssertionError("a pam_vip.so line was not substituted: %r" % line)
    return text


def recipe_lines(text):
    """The PAM lines of a /etc/pam.d file: no comments, no blank lines, whitespace collapsed."""
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(" ".join(line.split()))
    return out


# ---------------------------------------------------------------------------------------------
# Local accounts


def _shadow_hash(user):
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == user:
                return fields[1]
    return None


def _run(argv, data=None):
    p = subprocess.run(argv, input=data, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), p.returncode,
                                                   (p.stdout + p.stderr).decode(errors="replace")))


class Accounts:
    """Local users and groups for one test module; remove() undoes everything: users and groups
    it created are deleted (`userdel -r`, `groupdel`); a user or group that existed before is
    left, with its password hash, the group memberships it was given and its ~/.ssh restored."""

    def __init__(self):
        self.created_users = []
        self.created_groups = []
        self.memberships = []      # (user, group) added to accounts that existed before
        self.saved_hashes = {}     # user -> shadow hash, for users that existed before
        self.saved_ssh = []        # (directory, authorized_keys text or None, dir existed)

    def group(self, name):
        """The group `name` (created unless it exists); its gid."""
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            pass
        _run(["groupadd", name])
        self.created_groups.append(name)
        return grp.getgrnam(name).gr_gid

    def user(self, name, password=None, groups=()):
        """The local user `name` (created with a home, shell /bin/sh, unless it exists), with
        `password` as its Unix password (else locked) and a member of `groups` (which must
        exist: see group())."""
        try:
            pwd.getpwnam(name)
            existed = True
        except KeyError:
            existed = False
        if existed:
            if name not in self.saved_hashes and name not in self.created_users:
                self.saved_hashes[name] = _shadow_hash(name)
        else:
            _run(["useradd", "-m", "-s", "/bin/sh", name])
            self.created_users.append(name)
        if password is not None:
            _run(["chpasswd"], ("%s:%s\n" % (name, password)).encode())
        for g in groups:
            if name not in grp.getgrnam(g).gr_mem:
                _run(["usermod", "-a", "-G", g, name])
                if name not in self.created_users:
                    self.memberships.append((name, g))
        return pwd.getpwnam(name)

    def authorize_key(self, name, public_key_line):
        """~name/.ssh/authorized_keys holds exactly this key (modes sshd's StrictModes accepts)."""
        pw = pwd.getpwnam(name)
        ssh_dir = os.path.join(pw.pw_dir, ".ssh")
        keys = os.path.join(ssh_dir, "authorized_keys")
        if name not in self.created_users and not any(d == ssh_dir for d, _, _ in self.saved_ssh):
            old = None
            if os.path.exists(keys):
                with open(keys) as f:
                    old = f.read()
            self.saved_ssh.append((ssh_dir, old, os.path.isdir(ssh_dir)))
        os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
        with open(keys, "w") as f:
            f.write(public_key_line.strip() + "\n")
        for p, mode in ((ssh_dir, 0o700), (keys, 0o600)):
            os.chown(p, pw.pw_uid, pw.pw_gid)
            os.chmod(p, mode)

    def remove(self):
        """Undoes everything; raises at the end if something could not be undone."""
        errors = []
        for ssh_dir, old, existed in self.saved_ssh:
            try:
                keys = os.path.join(ssh_dir, "authorized_keys")
                if old is not None:
                    with open(keys, "w") as f:
                        f.write(old)
                elif existed:
                    os.unlink(keys)
                else:
                    shutil.rmtree(ssh_dir)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    errors.append("%s: %s" % (ssh_dir, e))
        for name, g in self.memberships:
            p = subprocess.run(["gpasswd", "-d", name, g], capture_output=True, timeout=60)
            if p.returncode != 0:
                errors.append("gpasswd -d %s %s: %s" % (name, g, p.stderr.decode(errors="replace")))
        for name, h in self.saved_hashes.items():
            if h is not None:
                p = subprocess.run(["usermod", "-p", h, name], capture_output=True, timeout=60)
                if p.returncode != 0:
                    errors.append("usermod -p %s: %s" % (name, p.stderr.decode(errors="replace")))
        for name in self.created_users:
            # -r: the home (and any key written there) and the mail spool go too.
            subprocess.run(["userdel", "-r", name], capture_output=True, timeout=60)
            try:
                pwd.getpwnam(name)
                errors.append("user %s still exists" % name)
            except KeyError:
                pass
        for g in self.created_groups:
            subprocess.run(["groupdel", g], capture_output=True, timeout=60)
            try:
                grp.getgrnam(g)
                errors.append("group %s still exists" % g)
            except KeyError:
                pass
        self.created_users, self.created_groups, self.memberships = [], [], []
        self.saved_hashes, self.saved_ssh = {}, []
        if errors:
            raise RuntimeError("could not undo the test accounts: " + "; ".join(errors))
