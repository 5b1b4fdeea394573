#!/usr/bin/env python3
"""Follows README.md's "Install" section literally on this machine, against the simulator.

Every ```sh block between `<!-- install-test:begin -->` and `<!-- install-test:end -->` in
README.md is run, in order, by bash (-e -u -o pipefail), from the repository root, as root.
Only these mechanical differences from an admin's machine, each named here:

- The README's example values are replaced: the NAS address 10.0.0.5 by 127.0.0.1 (radclient
  sends from there) and the VIP Manager download `vip_certificate.pem` by a file made the same
  way (certificate + encrypted key) from the simulator's CA. The key's password is on stdin
  (openssl asks for it; there is no terminal here).
- Right after `dpkg -i`, [vip] is pointed at a vip-sim on loopback (its URLs and `ca_file`)
  and `[radius] listen` at a free loopback port: tests bind loopback only.
- Without systemd as PID 1 (containers, CI), `systemctl` and `journalctl` are small stand-ins
  that do what the packaged unit says (User, RuntimeDirectory, UMask, ExecStartPre, ExecStart,
  SIGTERM); `sudo` keeps PATH so they are found (`sudo -u U` is `runuser -u U --`).

After `systemctl enable --now` it logs in with radclient (a right code: Access-Accept; a wrong
one: Access-Reject with Message-Authenticator) and reads the journal; at the end it checks that
purge removed what the package made and kept the admin's certificate. It refuses to run when a
vip-bridge package is already installed (it would replace and then remove it), and it undoes
what it did (package, files under /etc/vip-bridge, the vip-bridge user if it made it).

    python3 packaging/install-test.py            # root, Debian; builds the package (release)
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = "/lib/systemd/system/vip-bridge.service"
CONFIG = "/etc/vip-bridge/vip-bridge.toml"
# alice's TOTP secret in the simulator here (the demo's public one).
ALICE = "JBSWY3DPEHPK3PXPALICE234"
KEY_PASSWORD = "vip-manager-download-password"
STARTED = time.time()


def step(msg):
    print("\n==> %s (%ds)" % (msg, time.time() - STARTED), flush=True)


def fail(msg):
    print("install-test: FAILED: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        fail("%s exited %d\n%s%s" % (cmd, p.returncode, p.stdout, p.stderr))
    return p


def installed():
    p = run(["dpkg-query", "-W", "-f=${Status}", "vip-bridge"], check=False)
    return p.returncode == 0 and "installed" in p.stdout and "not-installed" not in p.stdout


def find_binary(name):
    for d in filter(None, [os.environ.get("VIP_BRIDGE_BIN_DIR"),
                           os.path.join(os.environ.get("CARGO_TARGET_DIR", ""), "debug")
                           if os.environ.get("CARGO_TARGET_DIR") else None,
                           os.path.join(REPO, "target", "debug")]):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    fail("%s not built (cargo build -p %s)" % (name, name))


def totp(secret_b32, at=None):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def fresh_code():
    # Not within the last 5 s of a step: the code must still be valid when it arrives.
    while 30 - time.time() % 30 < 5:
        time.sleep(0.5)
    return totp(ALICE)


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def readme_blocks():
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    m = re.search(r"<!-- install-test:begin -->(.*?)<!-- install-test:end -->", text, re.S)
    if not m:
        fail("README.md has no <!-- install-test:begin --> ... <!-- install-test:end --> section")
    blocks = re.findall(r"^```sh\n(.*?)^```", m.group(1), re.S | re.M)
    if len(blocks) < 4:
        fail("README.md's install section has only %d sh blocks" % len(blocks))
    return blocks


# --------------------------------------------------------------------------- stand-ins

SHIM_SUDO = """#!/bin/sh
# sudo for the install test (run as root): keeps PATH; -u USER runs as USER.
if [ "$1" = "-u" ]; then user=$2; shift 2; exec runuser -u "$user" -- "$@"; fi
exec "$@"
"""

SHIM_SYSTEMCTL = """#!/bin/sh
exec "%(python)s" "%(script)s" --systemctl "$@"
"""

SHIM_JOURNALCTL = """#!/bin/sh
exec "%(python)s" "%(script)s" --journalctl "$@"
"""


def unit_settings():
    settings = {}
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                settings.setdefault(k, []).append(v)
    return settings


def state_dir():
    return os.environ["VB_INSTALL_TEST_STATE"]


def systemctl(args):
    """What systemd would do for the packaged unit, for the verbs the README uses."""
    words = [a for a in args if not a.startswith("-")]
    verb, units = words[0], words[1:]
    if units and units[0].replace(".service", "") != "vip-bridge":
        fail("systemctl stand-in: only vip-bridge is known, not %s" % units)
    pidfile = os.path.join(state_dir(), "vip-bridge.pid")
    log = os.path.join(state_dir(), "journal.log")
    now = "--now" in args
    if verb in ("daemon-reload",):
        return 0
    if verb == "enable" and not now or verb == "disable" and not now:
        return 0
    if verb in ("enable", "start", "restart"):
        if verb == "restart":
            systemctl(["stop", "vip-bridge"])
        u = unit_settings()
        user, group = u["User"][0], u["Group"][0]
        rundir = os.path.join("/run", u["RuntimeDirectory"][0])
        os.makedirs(rundir, exist_ok=True)
        os.chmod(rundir, int(u["RuntimeDirectoryMode"][0], 8))
        shutil.chown(rundir, user, group)
        umask = int(u.get("UMask", ["0022"])[0], 8)
        with open(log, "a") as out:
            for pre in u.get("ExecStartPre", []):
                out.write("-- ExecStartPre: %s\n" % pre)
                out.flush()
                p = subprocess.run(["runuser", "-u", user, "--"] + pre.split(), stdout=out,
                                   stderr=out, preexec_fn=lambda: os.umask(umask))
                if p.returncode != 0:
                    print("vip-bridge.service: ExecStartPre failed (%d); see journalctl"
                          % p.returncode, file=sys.stderr)
                    return 1
            out.write("-- ExecStart: %s\n" % u["ExecStart"][0])
            out.flush()
            proc = subprocess.Popen(["runuser", "-u", user, "--"] + u["ExecStart"][0].split(),
                                    stdout=out, stderr=out, preexec_fn=lambda: os.umask(umask),
                                    start_new_session=True)
        with open(pidfile, "w") as f:
            f.write(str(proc.pid))
        deadline = time.time() + 30
        while time.time() < deadline:
            if proc.poll() is not None:
                print("vip-bridge.service: exited %d at start; see journalctl" % proc.returncode,
                      file=sys.stderr)
                return 1
            with open(log) as f:
                if " ready" in f.read():
                    return 0
            time.sleep(0.2)
        print("vip-bridge.service: not ready after 30 s", file=sys.stderr)
        return 1
    if verb in ("stop", "disable"):
        if not os.path.exists(pidfile):
            return 0
        with open(pidfile) as f:
            pid = int(f.read())
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + 25
        while time.time() < deadline:
            if not alive(pid):
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
            fail("vip-bridge did not stop within 25 s of SIGTERM")
        os.unlink(pidfile)
        return 0
    if verb in ("status", "is-active"):
        running = False
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                running = alive(int(f.read()))
        print("vip-bridge.service - %s" % ("active (running)" if running else "inactive (dead)"))
        return 0 if running else 3
    fail("systemctl stand-in: verb %r not supported" % verb)


def alive(pid):
    """Whether process `pid` runs (a zombie left to a PID 1 that does not reap is dead)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def journalctl(args):
    log = os.path.join(state_dir(), "journal.log")
    n = None
    for i, a in enumerate(args):
        if a == "-n" and i + 1 < len(args):
            n = int(args[i + 1])
    lines = open(log).read().splitlines() if os.path.exists(log) else []
    print("\n".join(lines[-n:] if n else lines))
    return 0


# --------------------------------------------------------------------------- the test


def start_sim(work):
    sim_bin = find_binary("vip-sim")
    certs = os.path.join(work, "certs")
    run([sim_bin, "gen-certs", certs])
    os.chmod(certs, 0o755)
    os.chmod(os.path.join(certs, "ca.pem"), 0o644)
    conf = os.path.join(work, "sim.toml")
    with open(conf, "w") as f:
        f.write("""[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[policy]
number_challenge = false
[tls]
cert = "{c}/server.pem"
key = "{c}/server.key"
client_ca = "{c}/ca.pem"
[[users]]
id = "alice"
[users.push]
action = "approve"
delay_ms = 200
[[users.credentials]]
id = "VSMT10000001"
totp_secret = "{alice}"
push = true
""".format(c=certs, alice=ALICE))
    log = open(os.path.join(work, "sim.log"), "w")
    proc = subprocess.Popen([sim_bin, "--config", conf], stdout=subprocess.PIPE, stderr=log,
                            text=True)
    line = proc.stdout.readline()
    try:
        info = json.loads(line)
    except ValueError:
        proc.kill()
        fail("vip-sim did not start: %r" % line)
    return proc, info["listen"], certs


def vip_manager_pem(work, certs):
    """What VIP Manager's PEM download is: the certificate and its key, encrypted."""
    enc = run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in",
               os.path.join(certs, "client.key"), "-passout", "pass:" + KEY_PASSWORD]).stdout
    path = os.path.join(work, "vip_certificate.pem")
    with open(os.path.join(certs, "client.pem")) as f:
        cert = f.read()
    with open(path, "w") as f:
        f.write(cert + enc)
    os.chmod(path, 0o600)
    return path


def point_at_sim(sim_listen, certs, port):
    with open(CONFIG) as f:
        text = f.read()
    n = text.count("https://userservices-auth.vip.symantec.com/")
    if n != 3:
        fail("expected the three production VIP URLs in %s, found %d" % (CONFIG, n))
    text = text.replace("https://userservices-auth.vip.symantec.com/",
                        "https://%s/" % sim_listen)
    text = text.replace("\n[vip]\n", '\n[vip]\nca_file = "%s/ca.pem"\n' % certs, 1)
    new = 'listen = ["127.0.0.1:%d"]' % port
    text, k = re.subn(r'^listen = \[.*\]$', new, text, count=1, flags=re.M)
    if k != 1:
        fail("no [radius] listen line in %s" % CONFIG)
    with open(CONFIG, "w") as f:
        f.write(text)


def radclient(port, secret, code):
    p = subprocess.run(
        ["radclient", "-x", "-r", "1", "-t", "10", "127.0.0.1:%d" % port, "auth", secret],
        input='User-Name = "alice", User-Password = "%s", Message-Authenticator = 0x00\n' % code,
        capture_output=True, text=True, timeout=60)
    return p.stdout + p.stderr


def check_installed_files():
    triple = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    for path in ["/usr/bin/vip-bridge", "/usr/lib/%s/security/pam_vip.so" % triple, UNIT,
                 "/usr/share/pam-configs/vip-bridge", "/usr/share/doc/vip-bridge/README.md",
                 "/usr/share/man/man1/vip-bridge.1.gz"]:
        if not os.path.exists(path) and not os.path.exists(path[:-3]):
            fail("the package did not install %s" % path)
    for sub in ("serve", "check-config", "test-auth", "demo", "admin", "admin-import"):
        if not any(os.path.exists("/usr/share/man/man1/vip-bridge-%s.1%s" % (sub, z))
                   for z in ("", ".gz")):
            fail("no man page vip-bridge-%s(1)" % sub)
    if not any(os.path.exists("/usr/lib/%s/security/pam_vip.so" % triple) for _ in [0]):
        fail("pam_vip.so is not in the multiarch security directory")
    # The package is built without the demo: the production daemon links no simulator, and
    # says so when asked for the demo.
    p = run(["/usr/bin/vip-bridge", "demo", "--port", "0"], check=False, timeout=30)
    if p.returncode == 0 or "built without the demo" not in p.stderr:
        fail("the packaged vip-bridge demo should refuse, naming the missing feature: rc %d\n%s"
             % (p.returncode, p.stderr))
    for f, mode, owner in [("/etc/vip-bridge", 0o750, "root:vip-bridge"),
                           (CONFIG, 0o640, "root:vip-bridge"),
                           ("/etc/vip-bridge/state.key", 0o640, "root:vip-bridge"),
                           ("/etc/vip-bridge/vpn.secret", 0o640, "root:vip-bridge")]:
        st = run(["stat", "-c", "%a %U:%G", f]).stdout.split()
        if int(st[0], 8) != mode or st[1] != owner:
            fail("%s is %s %s, want %o %s" % (f, st[0], st[1], mode, owner))
    # Every relative link of the installed documentation resolves among the installed files.
    doc = "/usr/share/doc/vip-bridge"
    for md in ("README.md", "pam-module/README.md"):
        with open(os.path.join(doc, md)) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            resolved = os.path.normpath(os.path.join(doc, os.path.dirname(md), target))
            if not os.path.exists(resolved):
                fail("%s/%s links to %s, which is not installed (%s)" % (doc, md, target,
                                                                          resolved))


def main():
    if os.geteuid() != 0:
        fail("run as root (it installs and purges the package)")
    if installed():
        fail("a vip-bridge package is already installed on this machine; this test would "
             "replace it and then purge it: run it on a machine (or container) without one")
    user_existed = run(["getent", "passwd", "vip-bridge"], check=False).returncode == 0
    etc_existed = os.path.exists("/etc/vip-bridge")
    work = tempfile.mkdtemp(prefix="vip-bridge-install-test-")
    # The service user reads the simulator's CA from here.
    os.chmod(work, 0o755)
    state = os.path.join(work, "state")
    os.makedirs(state)
    shims = os.path.join(work, "bin")
    os.makedirs(shims)
    use_standins = not os.path.isdir("/run/systemd/system")
    env = dict(os.environ, VB_INSTALL_TEST_STATE=state)
    me = {"python": sys.executable, "script": os.path.abspath(__file__)}
    for name, body in [("sudo", SHIM_SUDO)] + (
            [("systemctl", SHIM_SYSTEMCTL % me), ("journalctl", SHIM_JOURNALCTL % me)]
            if use_standins else []):
        p = os.path.join(shims, name)
        with open(p, "w") as f:
            f.write(body)
        os.chmod(p, 0o755)
    env["PATH"] = shims + ":" + env["PATH"]
    os.environ["VB_INSTALL_TEST_STATE"] = state

    with open("/etc/pam.d/common-auth", "rb") as f:
        common_auth = f.read()
    sim = None
    we_installed = False
    try:
        step("vip-sim on loopback (the VIP this machine talks to)")
        sim, sim_listen, certs = start_sim(work)
        pem = vip_manager_pem(work, certs)
        port = free_udp_port()
        blocks = readme_blocks()
        started_service = False
        for i, block in enumerate(blocks, 1):
            text = block.replace("10.0.0.5", "127.0.0.1").replace("vip_certificate.pem", pem)
            step("README install block %d/%d:\n%s" % (i, len(blocks), text.rstrip()))
            p = subprocess.run(["setsid", "-w", "bash", "-euo", "pipefail", "-c", text],
                               cwd=REPO, env=env, input=KEY_PASSWORD + "\n", text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1800)
            print(p.stdout, end="", flush=True)
            if p.returncode != 0:
                if os.path.exists(os.path.join(state, "journal.log")):
                    print(open(os.path.join(state, "journal.log")).read())
                fail("README install block %d exited %d" % (i, p.returncode))
            if "dpkg -i" in text:
                we_installed = installed()
                if not we_installed:
                    fail("block %d ran dpkg -i but vip-bridge is not installed" % i)
                check_installed_files()
                point_at_sim(sim_listen, certs, port)
                print("(install test: [vip] now points at vip-sim %s, [radius] listens on "
                      "127.0.0.1:%d)" % (sim_listen, port))
            if "systemctl enable --now" in text:
                started_service = True
                step("logins through the installed service (radclient, Message-Authenticator)")
                with open("/etc/vip-bridge/vpn.secret") as f:
                    secret = f.read().strip()
                out = radclient(port, secret, fresh_code())
                if "Access-Accept" not in out:
                    fail("a right code was not accepted:\n" + out)
                out = radclient(port, secret, "000000" if fresh_code() != "000000" else "111111")
                if "Access-Reject" not in out:
                    fail("a wrong code was not rejected:\n" + out)
                journal = run(["journalctl", "-u", "vip-bridge"], env=env).stdout
                if journal.count("login round finished") < 2:
                    fail("the journal does not show the two logins:\n" + journal)
                if secret in journal:
                    fail("the shared secret is in the journal")
        if not started_service:
            fail("the README's install section never runs systemctl enable --now vip-bridge")
        step("after the README's removal steps")
        if installed():
            fail("vip-bridge is still installed after the README's removal steps")
        we_installed = False
        for gone in ("/usr/bin/vip-bridge", CONFIG, "/etc/vip-bridge/state.key",
                     "/etc/vip-bridge/vpn.secret"):
            if os.path.exists(gone):
                fail("%s is still there after purge" % gone)
        # The admin's certificate is theirs: purge keeps it.
        for kept in ("/etc/vip-bridge/vip-cert.pem", "/etc/vip-bridge/vip-key.pem"):
            if not os.path.exists(kept):
                fail("purge removed %s, the admin's file" % kept)
        # Installing and purging registered and removed the pam-auth-update profile, which is
        # off by default: the machine's PAM stacks are as they were.
        with open("/etc/pam.d/common-auth", "rb") as f:
            if f.read() != common_auth:
                fail("/etc/pam.d/common-auth changed across install and purge")
        step("install test passed")
    finally:
        if use_standins:
            subprocess.run([sys.executable, os.path.abspath(__file__), "--systemctl", "stop",
                            "vip-bridge"], env=env, capture_output=True)
        if sim is not None:
            sim.terminate()
            sim.wait(timeout=10)
        if we_installed and installed():
            subprocess.run(["dpkg", "--purge", "vip-bridge"], capture_output=True)
        if not etc_existed and os.path.isdir("/etc/vip-bridge"):
            shutil.rmtree("/etc/vip-bridge")
        if not user_existed and run(["getent", "passwd", "vip-bridge"],
                                    check=False).returncode == 0:
            subprocess.run(["userdel", "vip-bridge"], capture_output=True)
            subprocess.run(["groupdel", "vip-bridge"], capture_output=True)
        if os.path.isdir("/run/vip-bridge") and use_standins:
            shutil.rmtree("/run/vip-bridge", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--systemctl":
        sys.exit(systemctl(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--journalctl":
        sys.exit(journalctl(sys.argv[2:]))
    main()
