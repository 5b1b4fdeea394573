"""A network namespace with vip-sim, vip-bridge (RADIUS 127.0.0.1:1812, accounting :1813), an
OpenVPN 2.6 server with radiusplugin (openvpn-auth-radius) and OpenVPN clients, all inside it.

radiusplugin truncates RADIUS ports to four digits, so the test runs everything in a namespace of
its own where 1812/1813 are free. Everything started here is stopped by process group, whatever
is left in the namespace is killed by pid, the namespace is deleted and the temp dir removed.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

OPENVPN = "/usr/sbin/openvpn"
RADIUSPLUGIN = "/usr/lib/openvpn/radiusplugin.so"
IP = "/usr/sbin/ip"
OPENSSL = "/usr/bin/openssl"

RADIUS_SECRET = "ovpn-radius-secret"
OVPN_PORT = 1194


def missing_tools():
    """What this test needs and the machine lacks (a list of descriptions)."""
    out = []
    for name, path in (("openvpn", OPENVPN), ("ip (iproute2)", IP), ("openssl", OPENSSL)):
        if not (shutil.which(os.path.basename(path)) or os.access(path, os.X_OK)):
            out.append(name)
    if not os.path.isfile(RADIUSPLUGIN):
        out.append("radiusplugin (openvpn-auth-radius: %s)" % RADIUSPLUGIN)
    if not os.path.exists("/dev/net/tun"):
        out.append("/dev/net/tun")
    if os.geteuid() != 0:
        out.append("root (network namespaces, tun devices)")
    return out


def tool(path):
    return shutil.which(os.path.basename(path)) or path


# ---------------------------------------------------------------------------------------------
# Network namespace


class Netns:
    """`ip netns add` a uniquely named namespace with loopback up; delete() kills whatever is
    still running in it (by pid: only processes of this test live there) and deletes it."""

    def __init__(self):
        self.name = "vipbr-ovpn-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
        subprocess.run([tool(IP), "netns", "add", self.name], check=True, capture_output=True,
                       timeout=20)
        self.created = True
        try:
            self.run([tool(IP), "link", "set", "lo", "up"], check=True)
        except Exception:
            self.delete()
            raise

    def argv(self, argv):
        return [tool(IP), "netns", "exec", self.name] + list(argv)

    def run(self, argv, timeout=30, check=False, input=None):
        return subprocess.run(self.argv(argv), capture_output=True, timeout=timeout, check=check,
                              input=input)

    def pids(self):
        p = subprocess.run([tool(IP), "netns", "pids", self.name], capture_output=True,
                           timeout=20)
        return [int(x) for x in p.stdout.split()]

    def delete(self):
        if not self.created:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + 5
            while pids and time.time() < deadline:
                time.sleep(0.1)
                pids = self.pids()
            if not pids:
                break
        subprocess.run([tool(IP), "netns", "del", self.name], capture_output=True, timeout=20)
        self.created = False

    def http(self, method, url, body=None, timeout=10):
        """An HTTP request made from inside the namespace (vip-sim's admin API and vip-bridge's
        metrics listen on its loopback): (status, body text)."""
        code = (
            "import sys, json, urllib.request\n"
            "m, u, b = sys.argv[1], sys.argv[2], sys.argv[3]\n"
            "d = b.encode() if b else None\n"
            "r = urllib.request.Request(u, data=d, method=m)\n"
            "if d is not None: r.add_header('Content-Type', 'application/json')\n"
            "with urllib.request.urlopen(r, timeout=%d) as f:\n"
            "    sys.stdout.write(str(f.status) + '\\n' + f.read().decode())\n" % timeout
        )
        data = "" if body is None else json.dumps(body)
        p = self.run([sys.executable, "-c", code, method, url, data], timeout=timeout + 10)
        if p.returncode != 0:
            raise RuntimeError("%s %s in %s failed: %s" % (method, url, self.name,
                                                           p.stderr.decode()[-2000:]))
        status, _, text = p.stdout.decode().partition("\n")
        return int(status), text


# ---------------------------------------------------------------------------------------------
# Processes


class NsProc:
    """A process in the namespace, in a session of its own, stdout and stderr in NAME.log;
    stop() ends its whole process group (TERM, then KILL)."""

    def __init__(self, ns, name, argv, cwd, env=None, separate_stdout=False):
        self.name = name
        self.log_path = os.path.join(cwd, name + ".log")
        self.stdout_path = os.path.join(cwd, name + ".stdout")
        self._log = open(self.log_path, "wb")
        self._out = open(self.stdout_path, "wb") if separate_stdout else self._log
        self.p = subprocess.Popen(ns.argv(argv), cwd=cwd, stdin=subprocess.DEVNULL,
                                  stdout=self._out, stderr=self._log, env=env,
                                  start_new_session=True)

    def stdout(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.p.poll() is None

    def _killpg(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def wait(self, timeout):
        return self.p.wait(timeout=timeout)

    def stop(self, timeout=15):
        if self.alive():
            # The main process first: OpenVPN then closes radiusplugin, which ends its own
            # background process (TERM to the whole group would hang the server in its close).
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._killpg(signal.SIGKILL)
                self.p.wait(timeout=5)
        # radiusplugin's background process shares the group: end whatever is left behind.
        self._killpg(signal.SIGKILL)
        for f in (self._log, self._out):
            if not f.closed:
                f.close()
        return self.p.returncode

    def wait_for(self, needle, timeout, fail_on=()):
        """Waits until `needle` is in the log; returns the first of needle/fail_on seen
        (or None on timeout or exit)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.log()
            for s in (needle,) + tuple(fail_on):
                if s in text:
                    return s
            if not self.alive():
                text = self.log()
                for s in (needle,) + tuple(fail_on):
                    if s in text:
                        return s
                return None
            time.sleep(0.1)
        return None


# ---------------------------------------------------------------------------------------------
# A small EC certificate authority


def make_ca(d):
    """ca.crt, server.crt, server.key (P-256) in `d`; returns their paths."""
    ssl = tool(OPENSSL)

    def run(*args):
        subprocess.run([ssl] + list(args), cwd=d, check=True, capture_output=True, timeout=60)

    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    run("genpkey", *ec, "-out", "ca.key")
    run("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=vip-bridge openvpn test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("genpkey", *ec, "-out", "server.key")
    run("req", "-new", "-key", "server.key", "-out", "server.csr", "-subj", "/CN=ovpn-server")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n"
                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", "0x%s" % uuid.uuid4().hex[:16], "-days", "2", "-out", "server.crt",
        "-extfile", "server.ext")
    os.chmod(os.path.join(d, "server.key"), 0o600)
    return {n: os.path.join(d, n) for n in ("ca.crt", "server.crt", "server.key")}


# ---------------------------------------------------------------------------------------------
# Configuration files


def radiusplugin_cnf(server_conf, acctport=1813, authport=1812, wait=10, retry=3):
    return (
        "NAS-Identifier=vip-bridge-openvpn-test\n"
        "Service-Type=5\n"
        "Framed-Protocol=1\n"
        "NAS-Port-Type=5\n"
        "NAS-IP-Address=127.0.0.1\n"
        "OpenVPNConfig=%s\n"
        "subnet=255.255.255.0\n"
        "useauthcontrolfile=true\n"
        "server\n"
        "{\n"
        "\tacctport=%d\n"
        "\tauthport=%d\n"
        "\tname=127.0.0.1\n"
        "\tretry=%d\n"
        "\twait=%d\n"
        "\tsharedsecret=%s\n"
        "}\n" % (server_conf, acctport, authport, retry, wait, RADIUS_SECRET)
    )


def server_conf(ca, plugin_cnf, status, tmp_dir):
    return (
        "port %d\nproto udp\nlocal 127.0.0.1\n"
        "dev tun\ntopology subnet\nserver 10.77.0.0 255.255.255.0\n"
        "ca %s\ncert %s\nkey %s\ndh none\n"
        "verify-client-cert none\nusername-as-common-name\n"
        "plugin %s %s\n"
        "status %s 1\n"
        "tmp-dir %s\n"
        "keepalive 10 60\n"
        "verb 4\n"
        % (OVPN_PORT, ca["ca.crt"], ca["server.crt"], ca["server.key"], RADIUSPLUGIN,
           plugin_cnf, status, tmp_dir)
    )


def client_conf(ca_crt, auth_file):
    return (
        "client\ndev tun\nproto udp\nremote 127.0.0.1 %d\nnobind\n"
        "ca %s\nremote-cert-tls server\n"
        "auth-user-pass %s\nauth-retry none\n"
        "ifconfig-noexec\nroute-noexec\npull-filter ignore \"redirect-gateway\"\n"
        "explicit-exit-notify 2\n"
        "connect-retry-max 1\n"
        "verb 4\n"
        % (OVPN_PORT, ca_crt, auth_file)
    )


# ---------------------------------------------------------------------------------------------
# The whole stack


def _harness():
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import harness

    return harness


def sim_toml(certs, users):
    """`users`: {name: {"secret": base32, "push": "approve"|"deny", "delay_ms": N}}."""
    out = [
        '[server]\nlisten = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\n\n'
        '[tls]\ncert = "%s"\nkey = "%s"\nclient_ca = "%s"\n\n'
        "[policy]\nnumber_challenge = false\nlockout_after = 50\n\n"
        % (certs["server.pem"], certs["server.key"], certs["ca.pem"])
    ]
    for i, (name, u) in enumerate(sorted(users.items())):
        out.append('[[users]]\nid = "%s"\nsms_phones = ["1555666%04d"]\n' % (name, i))
        out.append('[[users.credentials]]\nid = "VSOV%08d"\ntotp_secret = "%s"\npush = true\n'
                   % (i + 1, u["secret"]))
        out.append('[users.push]\naction = "%s"\ndelay_ms = %d\n\n'
                   % (u.get("push", "approve"), u.get("delay_ms", 200)))
    return "".join(out)


def bridge_toml(sim_listen, certs, push_timeout="25s"):
    url = "https://%s/vipuserservices/%%s_1_10" % sim_listen
    return """
[vip]
auth_url = "{auth}"
query_url = "{query}"
management_url = "{mgmt}"
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{ca}"
timeout = "5s"

[engine]
poll_interval = "500ms"

[policies.default]
push_timeout = "{push_timeout}"

[radius]
listen = ["127.0.0.1:1812"]
accounting_listen = ["127.0.0.1:1813"]
response_cache_ttl = "15s"
shutdown_timeout = "5s"

[[radius.clients]]
name = "openvpn"
address = "127.0.0.1"
secret = "{secret}"
require_message_authenticator = false

[metrics]
listen = "127.0.0.1:0"

[log]
format = "text"
level = "info"
""".format(
        auth=url % "AuthenticationService",
        query=url % "QueryService",
        mgmt=url % "ManagementService",
        cert=certs["client.pem"],
        key=certs["client.key"],
        ca=certs["ca.pem"],
        secret=RADIUS_SECRET,
        push_timeout=push_timeout,
    )


class Stack:
    """Everything in one namespace; close() undoes all of it (also when start-up fails)."""

    def __init__(self, users, keep_tmp=False):
        self.keep_tmp = keep_tmp
        self.dir = tempfile.mkdtemp(prefix="vip-bridge-ovpn-")
        self.ns = None
        self.procs = []
        self.clients = 0
        try:
            self._start(users)
        except BaseException:
            self.close()
            raise

    def _spawn(self, *args, **kw):
        p = NsProc(self.ns, *args, **kw)
        self.procs.append(p)
        return p

    def _start(self, users):
        h = _harness()
        self.ns = Netns()

        # vip-sim
        cdir = os.path.join(self.dir, "vip-certs")
        os.makedirs(cdir)
        certs = h.gen_certs(cdir)
        sim_conf = os.path.join(self.dir, "sim.toml")
        with open(sim_conf, "w") as f:
            f.write(sim_toml(certs, users))
        self.sim = self._spawn("vip-sim", [h.find_binary("vip-sim"), "--config", sim_conf],
                               self.dir, separate_stdout=True)
        deadline = time.time() + 30
        while True:
            first = self.sim.stdout().split("\n", 1)
            if len(first) == 2:
                info = json.loads(first[0])
                break
            if not self.sim.alive() or time.time() > deadline:
                raise RuntimeError("vip-sim did not start:\n" + self.sim.log())
            time.sleep(0.05)
        self.sim_listen, self.sim_admin = info["listen"], info["admin"]

        # vip-bridge
        self.bridge_conf = os.path.join(self.dir, "vip-bridge.toml")
        with open(self.bridge_conf, "w") as f:
            f.write(bridge_toml(self.sim_listen, certs))
        ready = os.path.join(self.dir, "ready.json")
        env = dict(os.environ)
        env["RUST_LOG"] = "info,vip_bridge=debug"
        env.pop("NO_COLOR", None)
        self.bridge = self._spawn(
            "vip-bridge",
            [h.find_binary("vip-bridge"), "serve", "--config", self.bridge_conf,
             "--ready-file", ready],
            self.dir, env=env)
        deadline = time.time() + 30
        while not os.path.exists(ready):
            if not self.bridge.alive() or time.time() > deadline:
                raise RuntimeError("vip-bridge did not become ready:\n" + self.bridge.log())
            time.sleep(0.05)
        with open(ready) as f:
            self.ready = json.load(f)

        # OpenVPN server with radiusplugin
        odir = os.path.join(self.dir, "openvpn")
        os.makedirs(odir)
        self.ovpn_dir = odir
        self.ca = make_ca(odir)
        conf = os.path.join(odir, "server.conf")
        cnf = os.path.join(odir, "radiusplugin.cnf")
        with open(cnf, "w") as f:
            f.write(radiusplugin_cnf(conf))
        with open(conf, "w") as f:
            f.write(server_conf(self.ca, cnf, os.path.join(odir, "status.txt"), odir))
        self.server = self._spawn("openvpn-server", [tool(OPENVPN), "--config", conf], odir)
        if self.server.wait_for("Initialization Sequence Completed", 30) is None:
            raise RuntimeError("the OpenVPN server did not start:\n" + self.server.log())

    # -- clients --------------------------------------------------------------------------

    def client(self, user, password):
        """Starts an OpenVPN client for user/password (auth-user-pass file)."""
        self.clients += 1
        name = "openvpn-client-%d-%s" % (self.clients, user)
        auth = os.path.join(self.ovpn_dir, name + ".auth")
        fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("%s\n%s\n" % (user, password))
        conf = os.path.join(self.ovpn_dir, name + ".conf")
        with open(conf, "w") as f:
            f.write(client_conf(self.ca["ca.crt"], auth))
        return self._spawn(name, [tool(OPENVPN), "--config", conf], self.ovpn_dir)

    # -- peers' state ---------------------------------------------------------------------

    def sim_counters(self):
        _, text = self.ns.http("GET", "http://%s/counters" % self.sim_admin)
        return json.loads(text)

    def sim_calls(self, op):
        return self.sim_counters().get("calls", {}).get(op, 0)

    def metrics(self):
        """vip-bridge's GET /metrics as {series: value}."""
        _, text = self.ns.http("GET", "http://%s/metrics" % self.ready["metrics"])
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
        return out

    def logs(self):
        return "\n".join("===== %s =====\n%s" % (p.name, p.log()[-8000:]) for p in self.procs)

    # -- teardown -------------------------------------------------------------------------

    def close(self):
        errors = []
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # keep going: everything must be stopped
                errors.append("%s: %r" % (p.name, e))
        if self.ns is not None:
            try:
                self.ns.delete()
            except Exception as e:
                errors.append("netns %s: %r" % (self.ns.name, e))
        if not self.keep_tmp:
            shutil.rmtree(self.dir, ignore_errors=True)
        return errors
