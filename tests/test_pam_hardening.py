"""Local attacks on the PAM socket, replayed against a real daemon (pamtester -> pam_vip.so ->
vip-bridge -> vip-sim, pamtester under libpam-wrapper). Each test fails if its attack works
again:

* a uid that is allowed to use the socket opens hundreds of idle connections: it holds at most
  `pam.max_connections_per_uid` (default 8) of the daemon's descriptors, the rest are told
  `busy` at once, and root's login (sshd, sudo) still succeeds meanwhile;
* a stranger that can reach the socket file (a member of `socket_group`, not in allowed_uids /
  allowed_gids) storms it: every connection is refused `forbidden` and closed at once (none is
  held, not even for a second), and root's login succeeds during the storm;
* a user outside `socket_group` cannot connect at all (socket 0660, directory 0750);
* every flood leaves a few rate-limited log lines with a count of the suppressed ones, not a
  line per connection;
* a daemon out of file descriptors backs off in accept() (a few log lines, little CPU) instead
  of spinning, and serves again once descriptors are free.

The flooding processes are python children that drop to throwaway local users (created like
pam_harness.ensure_user does, names starting with `vbhard`) before connecting.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pam"))

import harness  # noqa: E402
import pam_harness as ph  # noqa: E402

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

GROUP = "vbhardpam"          # the socket's group
ALLOWED = "vbhardallowed"    # in GROUP and in allowed_uids: floods idle connections
STRANGER = "vbhardstranger"  # in GROUP, not allowed: refused by its peer credentials
# Whose second factor root's pamtester checks: one user per login, so that the simulator's
# replay protection never meets a code twice.
LOGINS = {"idle": "vbhardlogin1", "storm": "vbhardlogin2", "starved": "vbhardlogin3"}
SERVICE = "vb-hard"
PER_UID_DEFAULT = 8          # pam.max_connections_per_uid when not configured


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI."""
    if ok:
        return
    if CI:
        pytest.fail("%s (CI=true: the PAM hardening tests must run)" % what)
    pytest.skip(what)


def need_peers():
    need(ph.have("pamtester"), "pamtester not installed")
    need(ph.wrapper_path(), "libpam-wrapper not installed")
    need(os.geteuid() == 0, "must run as root (local users, privilege drop)")
    need(ph.have("useradd", "usermod", "groupadd"), "useradd / usermod / groupadd missing")
    need(os.path.exists("/usr/bin/python3"), "/usr/bin/python3 missing")


# A flooding client, stdlib only, run as an unprivileged user (the checkout may not be readable
# by it, so it goes in with -c). Modes:
#   hold SOCKET N BURSTS GAP WINDOW: BURSTS times (GAP seconds apart) open N connections that
#     never say a word, and see what the daemon does with each within WINDOW seconds; the ones
#     it keeps open are held until stdin closes. Prints one JSON line after the last burst.
#   storm SOCKET SECONDS WINDOW: connect, wait up to WINDOW for the daemon's answer, close;
#     again, for SECONDS. Prints one JSON line at the end.
#   connect SOCKET: one connect(); prints {"errno": name or null}.
FLOOD = r'''
import errno, json, select, socket, struct, sys, time

def classify(s, window):
    """forbidden / busy / other error kind: refused and closed; "closed": closed without a
    word; "held": nothing within `window` (the daemon keeps the connection)."""
    s.settimeout(window)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        if not data:
            return "held"
    except OSError:
        pass
    if len(data) >= 4:
        (n,) = struct.unpack(">I", data[:4])
        try:
            msg = json.loads(data[4:4 + n])
            return msg.get("kind") or msg.get("type")
        except ValueError:
            return "garbage"
    return "closed"

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return s, None
    except OSError as e:
        s.close()
        return None, errno.errorcode.get(e.errno, str(e.errno))

def bump(d, k):
    d[k] = d.get(k, 0) + 1

mode, path = sys.argv[1], sys.argv[2]
out = {"kinds": {}, "connect_errors": {}, "count": 0}
held = []
if mode == "hold":
    n, bursts, gap, window = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    for b in range(bursts):
        if b:
            time.sleep(gap)
        batch = []
        for _ in range(n):
            s, err = connect(path)
            if err:
                bump(out["connect_errors"], err)
            else:
                batch.append(s)
        out["count"] += len(batch)
        # Wait for all of the burst at once: WINDOW from the last connect.
        deadline = time.time() + window
        poller = select.poll()
        for s in batch:
            poller.register(s, select.POLLIN)
        pending = {s.fileno(): s for s in batch}
        while pending and time.time() < deadline:
            for fd, _ in poller.poll(max(1, int((deadline - time.time()) * 1000))):
                s = pending.pop(fd, None)
                if s is None:
                    continue
                poller.unregister(fd)
                bump(out["kinds"], classify(s, 0.5))
                s.close()
        for s in pending.values():
            bump(out["kinds"], "held")
            held.append(s)
    print(json.dumps(out), flush=True)
    sys.stdin.read()
elif mode == "storm":
    seconds, window = float(sys.argv[3]), float(sys.argv[4])
    end = time.time() + seconds
    while time.time() < end:
        s, err = connect(path)
        if err:
            bump(out["connect_errors"], err)
            time.sleep(0.01)
            continue
        out["count"] += 1
        bump(out["kinds"], classify(s, window))
        s.close()
    print(json.dumps(out), flush=True)
elif mode == "connect":
    s, err = connect(path)
    print(json.dumps({"errno": err}), flush=True)
'''


def as_user(user, *args, stdin=subprocess.DEVNULL):
    """The flooding client as `user` (its own groups: primary and supplementary)."""
    pw = ph.pwd.getpwnam(user)
    groups = [g.gr_gid for g in ph.grp.getgrall() if user in g.gr_mem]
    return subprocess.Popen(["/usr/bin/python3", "-c", FLOOD] + [str(a) for a in args],
                            user=pw.pw_uid, group=pw.pw_gid, extra_groups=groups,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd="/")


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err.decode("utf-8", "replace")
    return json.loads(out.decode().splitlines()[-1])


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lines_with(log, text):
    return [line for line in log.splitlines() if text in line]


def suppressed(line):
    m = re.search(r"suppressed=(\d+)", line)
    assert m, "no suppressed count in: " + line
    return int(m.group(1))


def root_login(pt, user):
    rc, out = pt.run(SERVICE, user, [harness.fresh_totp(ph.totp_secret(user), min_left=8)])
    assert rc == 0 and "successfully authenticated" in out, out
    return out


def sim_users(*users):
    return "".join(ph.sim_user(u, index=i) for i, u in enumerate(users))


@pytest.fixture(scope="module")
def env(workroot, certs):
    need_peers()
    gid = ph.ensure_group(GROUP)
    ph.ensure_user(ALLOWED, groups=[GROUP])
    ph.ensure_user(STRANGER, groups=[GROUP])
    ph.ensure_user(LOGINS["idle"])
    ph.ensure_user(LOGINS["storm"])
    workdir = os.path.join(workroot, "test_pam_hardening")
    os.makedirs(workdir, exist_ok=True)
    # The test directories are 0700: let the flooding users pass through to the socket's own
    # directory (which the daemon makes 0750, group GROUP).
    opened = [workroot, workdir]
    for d in opened:
        os.chmod(d, 0o711)
    pam_extra = ('socket_group = "%s"\nallowed_uids = [%d]\nread_timeout = "8s"\n'
                 'max_connections = 64\n' % (GROUP, ph.pwd.getpwnam(ALLOWED).pw_uid))
    stack = None
    try:
        stack = ph.PamStack(workdir, certs, sim_users(LOGINS["idle"], LOGINS["storm"]),
                            {SERVICE: "code"}, {"code": 'push_timeout = "20s"'},
                            sim_policy="number_challenge = false\nlockout_after = 50\n",
                            pam_extra=pam_extra)
        pt = ph.Pamtester(workdir)
        pt.service(SERVICE, ph.module_path(), "socket=%s timeout=30" % stack.socket)
        yield stack, pt, gid
    finally:
        if stack is not None:
            rc = stack.stop()
            if rc not in (0, None):
                sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, stack.bridge.log()))
        for d in opened:
            os.chmod(d, 0o700)


def test_only_the_socket_group_can_connect(env):
    stack, _, gid = env
    st = os.stat(stack.socket)
    assert st.st_mode & 0o777 == 0o660 and st.st_gid == gid, oct(st.st_mode)
    d = os.stat(os.path.dirname(stack.socket))
    assert d.st_mode & 0o777 == 0o750 and d.st_gid == gid, oct(d.st_mode)
    # `nobody` is in neither group: the file system refuses it before the daemon sees it.
    assert finish(as_user("nobody", "connect", stack.socket)) == {"errno": "EACCES"}
    assert finish(as_user(STRANGER, "connect", stack.socket)) == {"errno": None}


def test_idle_flood_from_an_allowed_uid_is_capped_and_root_still_logs_in(env):
    stack, pt, _ = env
    pid = stack.bridge.proc.p.pid
    fds_before = open_fds(pid)
    log_before = len(stack.bridge.log().splitlines())
    # Two bursts of 150 silent connections, 1.2 s apart (two log seconds).
    p = as_user(ALLOWED, "hold", stack.socket, 150, 2, 1.2, 1.0, stdin=subprocess.PIPE)
    try:
        line = p.stdout.readline()
        assert line, p.stderr.read().decode("utf-8", "replace")
        got = json.loads(line)
        assert got["count"] == 300 and not got["connect_errors"], got
        # The daemon keeps the uid's quota and turns the rest away at once.
        assert got["kinds"] == {"held": PER_UID_DEFAULT, "busy": 300 - PER_UID_DEFAULT}, got
        during = open_fds(pid)
        assert during <= fds_before + PER_UID_DEFAULT + 4, (fds_before, during)
        flood_log = stack.bridge.log().splitlines()[log_before:]
        # While the flood holds its connections, root (sshd, sudo) is served.
        root_login(pt, LOGINS["idle"])
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    busy = [line for line in flood_log if "max_connections_per_uid" in line]
    assert 1 <= len(busy) <= 4, "\n".join(flood_log)
    # A line says how many were held back since the last one (the last second's rest is told
    # by the next line, whenever that comes).
    assert sum(suppressed(line) for line in busy) + len(busy) <= 300 - PER_UID_DEFAULT, busy
    assert any(suppressed(line) >= 100 for line in busy), busy
    # Not a line per connection of any kind.
    assert len(flood_log) <= 12, "\n".join(flood_log)


def test_stranger_storm_is_refused_at_once_while_root_logs_in(env):
    stack, pt, _ = env
    pid = stack.bridge.proc.p.pid
    fds_before = open_fds(pid)
    log_before = len(stack.bridge.log().splitlines())
    # A 0.5 s window: the old door kept a forbidden peer for a second, waiting for its hello.
    p = as_user(STRANGER, "storm", stack.socket, 3.0, 0.5)
    try:
        time.sleep(0.5)
        max_fds = open_fds(pid)
        root_login(pt, LOGINS["storm"])
        max_fds = max(max_fds, open_fds(pid))
    finally:
        got = finish(p)
    assert got["count"] >= 100 and not got["connect_errors"], got
    assert got["kinds"] == {"forbidden": got["count"]}, got
    assert max_fds <= fds_before + 4, (fds_before, max_fds)
    storm_log = stack.bridge.log().splitlines()[log_before:]
    refused = [line for line in storm_log if "refused a PAM connection" in line]
    # Three seconds of storm: a line a second, with the count of the rest.
    assert 1 <= len(refused) <= 5, "\n".join(storm_log)
    assert sum(suppressed(line) for line in refused) + len(refused) <= got["count"], refused
    assert any(suppressed(line) >= 50 for line in refused), refused
    assert len(storm_log) <= 15, "\n".join(storm_log)


@pytest.fixture(scope="module")
def starved(workroot, certs):
    """A daemon with only 64 file descriptors (prlimit), so that root's idle connections can
    exhaust them."""
    need_peers()
    need(ph.have("prlimit"), "prlimit (util-linux) missing")
    ph.ensure_user(LOGINS["starved"])
    workdir = os.path.join(workroot, "test_pam_hardening_starved")
    os.makedirs(workdir, exist_ok=True)
    stack = None
    try:
        stack = ph.PamStack(workdir, certs, sim_users(LOGINS["starved"]), {SERVICE: "code"},
                            {"code": 'push_timeout = "20s"'},
                            sim_policy="number_challenge = false\nlockout_after = 50\n",
                            pam_extra='read_timeout = "30s"\n',
                            wrapper=[shutil.which("prlimit"), "--nofile=64:64", "--"])
        pt = ph.Pamtester(workdir)
        pt.service(SERVICE, ph.module_path(), "socket=%s timeout=30" % stack.socket)
        yield stack, pt
    finally:
        if stack is not None:
            rc = stack.stop()
            if rc not in (0, None):
                sys.stderr.write("vip-bridge exited %r; log:\n%s\n" % (rc, stack.bridge.log()))


def test_out_of_descriptors_accept_backs_off_instead_of_spinning(starved):
    import socket

    stack, pt = starved
    pid = stack.bridge.proc.p.pid
    log_before = len(stack.bridge.log().splitlines())
    conns = []
    try:
        # Root is not capped per uid and max_connections (256) is above the 64 descriptors:
        # idle connections run the daemon out of them; the rest wait in the listen queue.
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(stack.socket)
            conns.append(s)
        assert ph.wait_for(lambda: lines_with(stack.bridge.log(), "accept failed"), timeout=5), \
            stack.bridge.log()[-3000:]
        cpu0, t0 = cpu_seconds(pid), time.time()
        time.sleep(3)
        cpu = cpu_seconds(pid) - cpu0
        elapsed = time.time() - t0
        assert stack.bridge.proc.alive(), stack.bridge.log()[-3000:]
        # A spinning accept loop burns a whole core; backing off costs next to nothing.
        assert cpu < 0.2 * elapsed, (cpu, elapsed)
        starved_log = stack.bridge.log().splitlines()[log_before:]
        failed = [line for line in starved_log if "accept failed" in line]
        assert 1 <= len(failed) <= 6, "\n".join(starved_log)
        assert all("failures=" in line for line in failed), failed
        failures = int(re.search(r"failures=(\d+)", failed[-1]).group(1))
        assert failures >= 3, failed
    finally:
        for s in conns:
            s.close()
    # Descriptors come back as the idle connections close: root logs in again.
    deadline = time.time() + 20
    while True:
        user = LOGINS["starved"]
        rc, out = pt.run(SERVICE, user, [harness.fresh_totp(ph.totp_secret(user), min_left=8)])
        if rc == 0 and "successfully authenticated" in out:
            break
        assert time.time() < deadline, out + stack.bridge.log()[-3000:]
        time.sleep(1)
