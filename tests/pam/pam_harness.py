"""Helpers for the PAM end-to-end tests (tests/test_pam_*.py): a vip-sim and a PAM-only
vip-bridge as processes, pam_vip.so located among the built binaries, local test users,
pamtester under libpam-wrapper (so /etc/pam.d is untouched), and cleanup of everything a test
writes outside its temporary directory (/etc/pam.d/<unique>, /etc/sudoers.d/<unique>).

Local users: created with `useradd -m` when missing and **left in place** (their Unix passwords
stay locked; they can only log in through the test services, which exist only while a test runs).
All names start with `vb` so they are easy to spot and remove: `userdel -r vbalice`.
"""

import base64
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

    def run(self, service, user, answers, timeout=40):
        """Feeds all answers at once; returns (exit code, stdout + stderr)."""
        data = "".join(a + "\n" for a in answers).encode()
        p = subprocess.run(["pamtester", "-v", service, user, "authenticate"], input=data,
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
