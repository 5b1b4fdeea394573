"""Helpers for the end-to-end tests: locate the built binaries (never build them), generate
certificates, run vip-sim and vip-bridge as separate processes on loopback, compute TOTP
codes, and speak raw RADIUS over UDP.

Binaries: $VIP_BRIDGE_BIN_DIR, else $CARGO_TARGET_DIR/debug, else /work/main/target/debug
(and the repository's own target/debug).
"""

import base64
import collections
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RADIUS_DIR = os.path.join(REPO, "tests", "radius")
DICTIONARY = os.path.join(RADIUS_DIR, "dictionary")


# ---------------------------------------------------------------------------------------------
# Binaries


def bin_dirs():
    dirs = []
    if os.environ.get("VIP_BRIDGE_BIN_DIR"):
        dirs.append(os.environ["VIP_BRIDGE_BIN_DIR"])
    if os.environ.get("CARGO_TARGET_DIR"):
        dirs.append(os.path.join(os.environ["CARGO_TARGET_DIR"], "debug"))
    dirs.append(os.path.join(REPO, "target", "debug"))
    dirs.append("/work/main/target/debug")
    return dirs


def find_binary(name):
    """The first existing `name` among bin_dirs(); raises with the list searched."""
    for d in bin_dirs():
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise FileNotFoundError(
        "%s not found in %s (build it: cargo build -p %s, or set VIP_BRIDGE_BIN_DIR)"
        % (name, bin_dirs(), name)
    )


# ---------------------------------------------------------------------------------------------
# TOTP (RFC 6238: HMAC-SHA1, 30 s steps)


def totp(secret_b32, at=None, step=30, digits=6):
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % (10 ** digits)
    return str(value).zfill(digits)


def fresh_totp(secret_b32, min_left=4):
    """A current code with at least `min_left` seconds of its step left (waits otherwise)."""
    left = 30 - (time.time() % 30)
    if left < min_left:
        time.sleep(left + 0.2)
    return totp(secret_b32)


def wrong_code(secret_b32):
    """A 6-digit code that matches no step within ±25 steps (so it is not 'out of sync')."""
    now = time.time()
    near = {totp(secret_b32, now + k * 30) for k in range(-25, 26)}
    code = int(totp(secret_b32))
    while True:
        code = (code + 123457) % 1000000
        c = "%06d" % code
        if c not in near:
            return c


# ---------------------------------------------------------------------------------------------
# Processes


class Proc:
    """A child process with captured output; stop() always ends it (TERM, then KILL)."""

    def __init__(self, name, argv, cwd, env=None):
        self.name = name
        self.log_path = os.path.join(cwd, name + ".log")
        self._log = open(self.log_path, "wb")
        self.p = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        self.stdout_lines = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self):
        for line in iter(self.p.stdout.readline, b""):
            self.stdout_lines.append(line.decode("utf-8", "replace"))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def wait(self, timeout):
        return self.p.wait(timeout=timeout)

    def kill(self):
        """SIGKILL (no clean-up of any kind, as a crash or the OOM killer) and reap it."""
        if self.alive():
            self.p.kill()
        self.p.wait(timeout=10)

    def stop(self, timeout=15):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
        self._log.close()
        return self.p.returncode


def gen_certs(directory):
    sim = find_binary("vip-sim")
    subprocess.run([sim, "gen-certs", directory], check=True, capture_output=True, timeout=60)
    out = {
        name: os.path.join(directory, name)
        for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }
    # The same generator writes the client certificate as PKCS#12 too (TrustBuilder's form).
    for name in ("client.p12", "client.p12.password"):
        if os.path.exists(os.path.join(directory, name)):
            out[name] = os.path.join(directory, name)
    return out


def sim_toml(certs, users_toml, policy_toml="", listen="127.0.0.1:0"):
    """`listen`: the HTTPS address (a fixed port lets a restarted simulator take its place)."""
    return (
        '[server]\nlisten = "%s"\nadmin_listen = "127.0.0.1:0"\n\n'
        '[tls]\ncert = "%s"\nkey = "%s"\nclient_ca = "%s"\n\n[policy]\n%s\n\n%s'
        % (listen, certs["server.pem"], certs["server.key"], certs["ca.pem"], policy_toml,
           users_toml)
    )


def vip_toml(sim, certs, timeout="5s"):
    """The [vip] section pointing at `sim` over mutual TLS with the test certificates."""
    return (
        '[vip]\nauth_url = "%s"\nquery_url = "%s"\nmanagement_url = "%s"\ncert_file = "%s"\n'
        'key_file = "%s"\nca_file = "%s"\ntimeout = "%s"\n'
        % (sim.url("AuthenticationService"), sim.url("QueryService"),
           sim.url("ManagementService"), certs["client.pem"], certs["client.key"],
           certs["ca.pem"], timeout)
    )


def free_port(kind=socket.SOCK_STREAM):
    """A loopback port free right now (TCP by default, or socket.SOCK_DGRAM), for a process
    that must be restarted on the same address."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def scrape_metrics(addr, timeout=5):
    """GET http://addr/metrics as {series: value}, the series written as exposed, labels
    included (e.g. 'vip_bridge_rejects_total{reason="unavailable"}')."""
    with urllib.request.urlopen("http://%s/metrics" % addr, timeout=timeout) as r:
        text = r.read().decode()
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


class SimProcess:
    """A running simulator binary (vip-sim, tb-sim): .listen ("127.0.0.1:PORT"), .admin, and
    the admin API both share (counters, faults)."""

    BINARY = None
    # Where the configuration is written in `workdir` (default: NAME.toml).
    CONFIG_FILE = None

    def __init__(self, workdir, config_text, timeout=20, name=None):
        name = name or self.BINARY
        self.dir = workdir
        path = os.path.join(workdir, self.CONFIG_FILE or name + ".toml")
        with open(path, "w") as f:
            f.write(config_text)
        self.proc = Proc(name, [find_binary(self.BINARY), "--config", path], workdir)
        deadline = time.time() + timeout
        while not self.proc.stdout_lines:
            if not self.proc.alive() or time.time() > deadline:
                self.proc.stop()
                raise RuntimeError("%s did not start:\n%s" % (self.BINARY, self.proc.log()))
            time.sleep(0.05)
        info = json.loads(self.proc.stdout_lines[0])
        self.listen = info["listen"]
        self.admin = info["admin"]

    def _admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://%s%s" % (self.admin, path), data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null")

    def counters(self):
        return self._admin("GET", "/counters")

    def calls(self, op):
        """How many times operation `op` was called (VIP: checkOtp...; TrustBuilder: the REST
        action or SOAP operation, authenticateExtended, loginSearch...)."""
        return self.counters().get("calls", {}).get(op, 0)

    def reset_counters(self):
        return self._admin("POST", "/counters/reset", {})

    def set_faults(self, faults=None):
        """Replaces the global faults (admin POST /faults); None or {} clears them, with the
        simulator's field names (vip-sim: latency_ms, http_500, malformed_xml, soap_fault,
        connection_reset, client_fault, http_status, wrong_namespace, status, status_times...;
        tb-sim: latency_ms, http_status, connection_drop, err ({action: "NOK:..."}), err_times,
        upper_case, account_unknown_trailing_space, access_forbidden)."""
        return self._admin("POST", "/faults", faults or {})

    def set_user_faults(self, user, faults=None):
        """Replaces one user's faults (admin POST /users/{user}/faults); None or {} clears them."""
        return self._admin("POST", "/users/%s/faults" % urllib.parse.quote(user, safe=""),
                           faults or {})

    def clear_faults(self, *users):
        """Clears the global faults and those of `users`."""
        self.set_faults(None)
        for u in users:
            self.set_user_faults(u, None)

    def stop(self):
        return self.proc.stop()


class Sim(SimProcess):
    """A running vip-sim: .listen ("127.0.0.1:PORT"), .admin, and the admin API."""

    BINARY = "vip-sim"
    CONFIG_FILE = "sim.toml"

    def url(self, service):
        return "https://%s/vipuserservices/%s_1_10" % (self.listen, service)

    def sent_code(self, user):
        return self._admin("GET", "/sent-codes/%s" % user)["code"]

    def current_code(self, user):
        return self._admin("GET", "/users/%s/code" % user)["code"]

    def token_code(self, credential_id):
        """The code a token shows now, its drift included (admin GET /tokens/{id}/code): an
        unbound [[tokens]] token of the inventory or any bound token with a secret."""
        return self._admin("GET", "/tokens/%s/code" % credential_id)["code"]

    def phone_code(self, phone):
        """The last code VIP "sent" to a phone number, by register or sendOtp, even if already
        used (admin GET /phones/{phone}/code; digits only, as VIP stores it)."""
        return self._admin("GET", "/phones/%s/code" % phone)["code"]


class Bridge:
    """A running `vip-bridge serve`: .radius (list of "ip:port"), .port, .host."""

    def __init__(self, workdir, config_text, timeout=20, env=None):
        self.dir = workdir
        self.config = os.path.join(workdir, "vip-bridge.toml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.ready_file = os.path.join(workdir, "ready.json")
        if os.path.exists(self.ready_file):
            os.unlink(self.ready_file)
        e = dict(os.environ)
        e.setdefault("RUST_LOG", "info,vip_bridge=debug")
        if env:
            e.update(env)
        self.proc = Proc(
            "vip-bridge",
            [find_binary("vip-bridge"), "serve", "--config", self.config,
             "--ready-file", self.ready_file],
            workdir,
            env=e,
        )
        deadline = time.time() + timeout
        while not os.path.exists(self.ready_file):
            if not self.proc.alive() or time.time() > deadline:
                self.proc.stop()
                raise RuntimeError("vip-bridge did not become ready:\n" + self.proc.log())
            time.sleep(0.05)
        with open(self.ready_file) as f:
            self.ready = json.load(f)
        self.radius = self.ready["radius"]
        host, port = self.radius[0].rsplit(":", 1)
        self.host = host.strip("[]")
        self.port = int(port)

    def addr(self, family=socket.AF_INET):
        for a in self.radius:
            host, port = a.rsplit(":", 1)
            is6 = host.startswith("[")
            if (family == socket.AF_INET6) == is6:
                return host.strip("[]"), int(port)
        raise LookupError("no listener of that family in %s" % self.radius)

    def log(self):
        return self.proc.log()

    def stop(self):
        return self.proc.stop()


def tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# RADIUS over raw UDP, packets encoded with pyrad


def pyrad_dict():
    from pyrad import dictionary

    return dictionary.Dictionary(DICTIONARY)


def access_request(secret, user, password=None, state=None, ma=True, proxy_states=(),
                   ident=None, **attrs):
    """An Access-Request encoded with pyrad: (pyrad packet, raw bytes)."""
    from pyrad import packet

    req = packet.AuthPacket(code=packet.AccessRequest, id=ident, secret=secret,
                            dict=pyrad_dict(), message_authenticator=ma or None)
    if ident is None:
        req.id = req.CreateID()
    req["User-Name"] = user
    if password is not None:
        req["User-Password"] = req.PwCrypt(password)
    if state is not None:
        req["State"] = state
    for p in proxy_states:
        req.AddAttribute("Proxy-State", p)
    for k, v in attrs.items():
        req[k.replace("_", "-")] = v
    raw = req.RequestPacket()
    return req, raw


def status_server(secret, ma=True, ident=None):
    from pyrad import packet

    req = packet.AuthPacket(code=packet.StatusServer, id=ident, secret=secret,
                            dict=pyrad_dict(), message_authenticator=ma or None)
    if ident is None:
        req.id = req.CreateID()
    req.authenticator = req.CreateAuthenticator()
    if ma:
        req.add_message_authenticator()
    raw = req.RequestPacket()
    return req, raw


class Udp:
    """An unconnected UDP socket bound to a chosen loopback source."""

    def __init__(self, source="127.0.0.1", family=socket.AF_INET):
        self.s = socket.socket(family, socket.SOCK_DGRAM)
        self.s.bind((source, 0))

    def send(self, raw, addr):
        self.s.sendto(raw, addr)

    def recv(self, timeout):
        """The next datagram, or None after `timeout` seconds."""
        self.s.settimeout(timeout)
        try:
            data, _ = self.s.recvfrom(8192)
            return data
        except socket.timeout:
            return None

    def exchange(self, raw, addr, timeout=3.0):
        self.send(raw, addr)
        return self.recv(timeout)

    def close(self):
        self.s.close()


def decode_reply(raw, secret):
    from pyrad import packet

    return packet.Packet(packet=raw, dict=pyrad_dict(), secret=secret)


def raw_attributes(raw):
    """[(type, value)] straight from the bytes, in order."""
    out = []
    length = struct.unpack("!H", raw[2:4])[0]
    i = 20
    while i < length:
        t, l = raw[i], raw[i + 1]
        assert l >= 2 and i + l <= length, "bad attribute length in reply"
        out.append((t, raw[i + 2:i + l]))
        i += l
    return out


def reply_messages(raw):
    return b"".join(v for t, v in raw_attributes(raw) if t == 18).decode("utf-8", "replace")


def reply_state(raw):
    for t, v in raw_attributes(raw):
        if t == 24:
            return v
    return None


CODES = {2: "Access-Accept", 3: "Access-Reject", 11: "Access-Challenge"}


def code_name(raw):
    return CODES.get(raw[0], str(raw[0])) if raw else None


# ---------------------------------------------------------------------------------------------
# radclient (freeradius-utils)


def radclient(addr, secret, attrs, timeout=10, retries=1, count=1):
    """Runs radclient -x with `attrs` (a dict or list of (name, value-as-text) pairs).
    Returns (code name or None, {attribute: [values]}, stdout)."""
    host, port = addr
    items = attrs.items() if isinstance(attrs, dict) else attrs
    text = ", ".join("%s = %s" % (k, v) for k, v in items) + "\n"
    target = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    p = subprocess.run(
        ["radclient", "-x", "-t", str(timeout), "-r", str(retries), "-c", str(count),
         target, "auth", secret],
        input=text.encode(), capture_output=True, timeout=timeout * (retries + 1) + 10,
    )
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    code = None
    got = {}
    in_reply = False
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("Received "):
            code = s.split()[1]
            in_reply = True
            got = {}
            continue
        if s.startswith("Sent "):
            in_reply = False
            continue
        if in_reply and " = " in s:
            k, v = s.split(" = ", 1)
            got.setdefault(k.strip(), []).append(v.strip())
    return code, got, out


def q(s):
    """A radclient string value."""
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


# ---------------------------------------------------------------------------------------------
# TrustBuilder MFA: tb-sim (vip-sim crate) and a bridge with backend = "trustbuilder"

# gen_certs' directory also holds these (written by the same generator): the client
# certificate + key + CA as PKCS#12, and its passphrase.
P12_NAMES = ("client.p12", "client.p12.password")


def p12_files(certs):
    """(client.p12, client.p12.password) next to gen_certs' client.pem."""
    d = os.path.dirname(certs["client.pem"])
    return tuple(certs.get(n) or os.path.join(d, n) for n in P12_NAMES)


def tb_sim_toml(certs, users_toml, service_id=4242, extra=""):
    """A tb-sim config: loopback HTTPS (mutual TLS with gen_certs' PKI) and admin listeners,
    `[service] id = service_id`. `extra` follows `id` inside [service], so bare keys
    (`push_timeout = "3s"`) are service keys and it may go on with sections ([faults]);
    `users_toml` ([[users]] blocks with their [[users.tools]]) comes last."""
    return (
        '[server]\nlisten = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\n\n'
        '[tls]\ncert = "%s"\nkey = "%s"\nclient_ca = "%s"\n\n'
        '[service]\nid = %d\n%s\n\n%s'
        % (certs["server.pem"], certs["server.key"], certs["ca.pem"], service_id, extra,
           users_toml)
    )


class TbSim(SimProcess):
    """A running tb-sim: .listen ("127.0.0.1:PORT"), .admin, .api_url, and the admin API."""

    BINARY = "tb-sim"

    def __init__(self, workdir, config_text, timeout=20, name="tb-sim"):
        super().__init__(workdir, config_text, timeout, name)
        self.api_url = "https://%s" % self.listen

    def current_code(self, login):
        """The OTP the login's first active tool with a seed shows now."""
        return self._admin("GET", "/users/%s/code" % urllib.parse.quote(login, safe=""))["code"]

    def tool_code(self, alias):
        return self._admin("GET", "/tools/%s/code" % urllib.parse.quote(alias, safe=""))["code"]


TbToml = collections.namedtuple("TbToml", "top section")


def trustbuilder_toml(tbsim, certs, service_id=4242, timeout="5s", extra=""):
    """The two parts of a bridge config that select TrustBuilder: .top (`backend = ...`, a
    top-level key: it must come before the first [section]) and .section ([trustbuilder]
    pointing at `tbsim` over mutual TLS with gen_certs' PKCS#12; `extra`: more of its keys).
    Use bridge_toml_trustbuilder() to assemble a whole file in the right order."""
    p12, p12_password = p12_files(certs)
    top = 'backend = "trustbuilder"\n'
    section = (
        '[trustbuilder]\nservice_id = %d\napi_url = "%s"\npkcs12_file = "%s"\n'
        'pkcs12_password_file = "%s"\nca_file = "%s"\ntimeout = "%s"\n%s\n'
        % (service_id, tbsim.api_url, p12, p12_password, certs["ca.pem"], timeout, extra)
    )
    return TbToml(top, section)


def bridge_toml_trustbuilder(tbsim, certs, body, service_id=4242, timeout="5s", extra=""):
    """A whole vip-bridge config for TrustBuilder: `backend` first, then `body` (the rest of
    the config: [engine], [policies.*], [radius], ...; it may start with top-level keys),
    then the [trustbuilder] section (see trustbuilder_toml)."""
    tb = trustbuilder_toml(tbsim, certs, service_id=service_id, timeout=timeout, extra=extra)
    return tb.top + "\n" + body + "\n\n" + tb.section
