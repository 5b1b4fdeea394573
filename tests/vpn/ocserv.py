"""ocserv (with its radcli RADIUS client) and openconnect, run for a test: a self-signed server
certificate for 127.0.0.1, an ocserv.conf + radcli config + servers file in a temp directory, the
server started in the foreground (`ocserv -f -d 9 -c FILE`) and always stopped, and the client
driven non-interactively (`openconnect --authenticate --passwd-on-stdin`).

Settings as in /work/shared/reference/vpn-servers.md (tried with ocserv 1.1.6 / radcli 1.2.11 /
openconnect 9.01 on Debian 12)."""

import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402

OCSERV = shutil.which("ocserv") or "/usr/sbin/ocserv"
OPENCONNECT = shutil.which("openconnect") or "/usr/sbin/openconnect"
RADCLI_DICTIONARY = "/etc/radcli/dictionary"


def missing():
    """What is missing to run these tests (empty list: nothing)."""
    out = []
    for name, path in (("ocserv", OCSERV), ("openconnect", OPENCONNECT)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            out.append(name)
    if not os.path.isfile(RADCLI_DICTIONARY):
        out.append(RADCLI_DICTIONARY + " (radcli, ocserv's RADIUS client)")
    if shutil.which("openssl") is None:
        out.append("openssl")
    return out


def _run(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, timeout=60, **kw)


def server_cert(directory):
    """A self-signed RSA certificate for 127.0.0.1 (CN and SAN): (cert path, key path,
    openconnect's pin "pin-sha256:BASE64" of its public key)."""
    crt = os.path.join(directory, "server.crt")
    key = os.path.join(directory, "server.key")
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
          "-out", crt, "-days", "30", "-subj", "/CN=127.0.0.1",
          "-addext", "subjectAltName=IP:127.0.0.1"])
    pub = _run(["openssl", "x509", "-in", crt, "-pubkey", "-noout"]).stdout
    der = _run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub).stdout
    pin = "pin-sha256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()
    return crt, key, pin


def free_tcp_udp_port():
    """A loopback port free for both TCP and UDP right now."""
    for _ in range(50):
        port = harness.free_port()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
        return port
    raise RuntimeError("no free TCP+UDP port on 127.0.0.1")


class Ocserv:
    """A running ocserv whose RADIUS server is vip-bridge at `radius_addr` ((host, port)).
    radius_timeout / radius_retries: radcli's (seconds per try, retries after the first)."""

    def __init__(self, cert, key, radius_addr, secret, radius_timeout=10,
                 radius_retries=3, net_octet=77, nas_identifier="ocserv-e2e", timeout=30):
        # A temp directory of its own, traversable by all: ocserv's workers run as nobody and
        # connect to the sec-mod socket in here (a 0700 parent gives "Permission denied").
        directory = tempfile.mkdtemp(prefix="vip-bridge-ocserv-")
        os.chmod(directory, 0o755)
        self.dir = directory
        host, port = radius_addr
        p = lambda name: os.path.join(directory, name)  # noqa: E731
        self.servers = p("radcli-servers")
        with open(self.servers, "w") as f:
            f.write("%s %s\n" % (host, secret))
        os.chmod(self.servers, 0o600)
        self.radcli_conf = p("radcli.conf")
        with open(self.radcli_conf, "w") as f:
            f.write(
                "nas-identifier %s\n"
                "authserver %s:%d\n"
                "acctserver %s:%d\n"
                "servers %s\n"
                "dictionary %s\n"
                "default_realm\n"
                "radius_timeout %d\n"
                "radius_retries %d\n"
                "bindaddr *\n"
                % (nas_identifier, host, port, host, port, self.servers, RADCLI_DICTIONARY,
                   radius_timeout, radius_retries))
        self.port = free_tcp_udp_port()
        self.conf = p("ocserv.conf")
        with open(self.conf, "w") as f:
            f.write(
                'auth = "radius[config=%s,groupconfig=false]"\n'
                "listen-host = 127.0.0.1\n"
                "tcp-port = %d\n"
                "udp-port = %d\n"
                "run-as-user = nobody\n"
                "run-as-group = nogroup\n"
                "socket-file = %s\n"
                "pid-file = %s\n"
                "use-occtl = false\n"
                "server-cert = %s\n"
                "server-key = %s\n"
                "isolate-workers = false\n"
                "auth-timeout = 240\n"
                "max-clients = 16\n"
                "max-same-clients = 0\n"
                "keepalive = 32400\n"
                "dpd = 90\n"
                "mobile-dpd = 1800\n"
                "try-mtu-discovery = false\n"
                "tls-priorities = \"NORMAL:%%SERVER_PRECEDENCE\"\n"
                "min-reauth-time = 1\n"
                "max-ban-score = 0\n"
                "cookie-timeout = 300\n"
                "deny-roaming = false\n"
                "rekey-time = 172800\n"
                "rekey-method = ssl\n"
                "device = vpns\n"
                "predictable-ips = true\n"
                "ipv4-network = 192.168.%d.0\n"
                "ipv4-netmask = 255.255.255.0\n"
                "cisco-client-compat = true\n"
                % (self.radcli_conf, self.port, self.port, p("ocserv.sock"), p("ocserv.pid"),
                   cert, key, net_octet))
        self.proc = harness.Proc("ocserv", [OCSERV, "-f", "-d", "9", "-c", self.conf], directory)
        self._stopped = False
        deadline = time.time() + timeout
        while True:
            if not self.proc.alive():
                raise RuntimeError("ocserv exited at start:\n" + self.stop()[-4000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("ocserv did not listen:\n" + self.stop()[-4000:])
                time.sleep(0.1)
        self.url = "https://127.0.0.1:%d/" % self.port

    def log(self):
        # ocserv -f logs to stderr (the Proc log), its -d debug output too.
        return self.proc.log() + "".join(self.proc.stdout_lines)

    def stop(self, keep=False):
        """Stops ocserv (TERM, then KILL; the process group: sec-mod and workers too) and
        removes its directory unless `keep`. Returns the log."""
        if self._stopped:
            return self._log_text
        try:
            self.proc.stop()
        finally:
            try:
                os.killpg(self.proc.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._log_text = self.log()
            self._stopped = True
            if not keep:
                shutil.rmtree(self.dir, ignore_errors=True)
        return self._log_text


class Result:
    def __init__(self, rc, out, err, elapsed):
        self.rc = rc
        self.out = out
        self.err = err
        self.elapsed = elapsed

    @property
    def text(self):
        return self.out + self.err

    @property
    def cookie(self):
        for line in self.out.splitlines():
            if line.startswith("COOKIE="):
                return line[len("COOKIE="):].strip().strip("'")
        return None

    def __repr__(self):
        return "openconnect rc=%r after %.1fs\n--- stdout:\n%s\n--- stderr:\n%s" % (
            self.rc, self.elapsed, self.out, self.err)


PROMPT = re.compile(r"(?m)^Password\d*:")


def openconnect(server, user, answers, pin, timeout=90):
    """`openconnect --authenticate --passwd-on-stdin --non-inter --user USER --servercert PIN
    URL` against `server` (an Ocserv). answers[0] is the password (read at once); answers[i]
    answers the i-th later prompt (openconnect prints an Access-Challenge's Reply-Message, then
    "PasswordN:") and is written only once that prompt was printed: a string, or a callable
    given the client's output so far (stderr) that returns the string (it may wait, e.g. for
    the phone, or fetch an SMS code sent in the meantime). After the last answer stdin is closed,
    so a further prompt ends the client ("User input required in non-interactive mode").
    Returns a Result (exit status, stdout, stderr)."""
    argv = [OPENCONNECT, "--authenticate", "--passwd-on-stdin", "--non-inter", "--user", user,
            "--servercert", pin, server.url]
    t0 = time.time()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    out, err = [], []
    lock = threading.Lock()
    changed = threading.Condition(lock)

    def reader(stream, sink):
        while True:
            chunk = os.read(stream.fileno(), 4096)
            with changed:
                if chunk:
                    sink.append(chunk.decode("utf-8", "replace"))
                changed.notify_all()
            if not chunk:
                return

    threads = [threading.Thread(target=reader, args=(p.stdout, out), daemon=True),
               threading.Thread(target=reader, args=(p.stderr, err), daemon=True)]
    for t in threads:
        t.start()
    deadline = t0 + timeout
    problem = None
    try:
        p.stdin.write((answers[0] + "\n").encode())
        p.stdin.flush()
        for i, answer in enumerate(answers[1:], start=1):
            with changed:
                while len(PROMPT.findall("".join(err))) < i:
                    if p.poll() is not None or time.time() > deadline:
                        break
                    changed.wait(0.1)
                text = "".join(err)
            if len(PROMPT.findall(text)) < i:
                break  # the client finished (or timed out) before asking again
            if callable(answer):
                answer = answer(text)
            p.stdin.write((answer + "\n").encode())
            p.stdin.flush()
    except (BrokenPipeError, OSError) as e:
        problem = e
    finally:
        try:
            p.stdin.close()
        except OSError:
            pass
    try:
        p.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        problem = "openconnect did not finish in %ds (killed)" % timeout
    for t in threads:
        t.join(5)
    r = Result(p.returncode, "".join(out), "".join(err), time.time() - t0)
    if problem is not None and not isinstance(problem, BrokenPipeError):
        raise AssertionError("%s\n%r" % (problem, r))
    return r
