#!/usr/bin/env python3
"""A throwaway OpenLDAP slapd on loopback for the LDAP first factor's tests.

Python 3 standard library plus the `openssl` CLI and Debian's slapd (`/usr/sbin/slapd`,
`/usr/sbin/slapadd`, schemas in /etc/ldap/schema). Everything lives in one work directory: a
throwaway CA and server certificate (SAN 127.0.0.1 and localhost), a second CA that did not
sign anything (for "wrong CA" tests), slapd.conf (mdb backend), the database seeded with
slapadd before start, and slapd's log (`-d stats`: one line per BIND, SEARCH, RESULT).

As a module::

    with Slapd(workdir) as d:        # or Slapd(workdir, name="second")
        d.ldaps_url, d.ldap_url, d.ca_file, d.base_dn, d.bind_dn, d.bind_password, d.users
    stop_server("second")            # stop one of several running instances by name
    free_port()                      # a loopback port nothing listens on (fail-over tests)

As a CLI::

    python3 tests/directory/slapd.py serve DIR [--name NAME]

prints one JSON line (the fields of `Slapd.info()`), keeps slapd running until standard input
closes or SIGTERM/SIGINT arrives, then stops slapd and exits 0.

The directory (base dc=example,dc=org):
- ou=services: cn=bridge, the service account (BIND_PASSWORD);
- ou=people: alice, bob, carol, dave@example.org (uid looks like an e-mail), erin (kept for the
  empty-password test: nothing else binds as her), zoe (non-ASCII password); each has `mail`;
  bob and carol share the mail shared@example.org (an ambiguous filter);
- ou=groups (groupOfNames): engineers {alice}; vpn-users {cn=engineers, carol}; admins {bob};
  loop-a {cn=loop-b, dave@example.org} and loop-b {cn=loop-a} (a cycle).
`allow bind_anon_dn` is set, so a simple bind with a DN and an EMPTY password succeeds as an
unauthenticated bind (RFC 4513 5.1.2), as some servers allow: a client must never send one.
"""

import base64
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"

BASE_DN = "dc=example,dc=org"
BIND_DN = "cn=bridge,ou=services," + BASE_DN
BIND_PASSWORD = "bridge-service-pw"
ROOT_DN = "cn=admin," + BASE_DN
ROOT_PASSWORD = "root-admin-pw"

# login name -> password
USERS = {
    "alice": "alice-pw-1",
    "bob": "bob-pw-2",
    "carol": "carol-pw-3",
    "dave@example.org": "dave-pw-4",
    "erin": "erin-pw-5",
    "zoe": "Z\u00f6\u00eb-p\u00e4ssw\u00f6rd-\u20ac",
}

# running instances by name (stop_server)
_RUNNING = {}


def available():
    """None when slapd can run here, else why not."""
    for path in (SLAPD, SLAPADD):
        if not os.access(path, os.X_OK):
            return "%s not found (apt-get install slapd)" % path
    if not os.path.isdir(SCHEMA_DIR):
        return "%s not found" % SCHEMA_DIR
    try:
        subprocess.run(["openssl", "version"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return "the openssl CLI is not available"
    return None


def free_port():
    """A loopback TCP port with nothing listening on it (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_dn(login):
    return "uid=%s,ou=people,%s" % (login, BASE_DN)


def group_dn(name):
    return "cn=%s,ou=groups,%s" % (name, BASE_DN)


def _ssha(password):
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _ldif_value(attr, value):
    """`attr: value`, base64 (`attr:: ...`) when the value is not safe as plain text."""
    raw = value.encode("utf-8")
    safe = all(0x20 <= b < 0x7F for b in raw) and not value.startswith((" ", ":", "<"))
    if safe:
        return "%s: %s" % (attr, value)
    return "%s:: %s" % (attr, base64.b64encode(raw).decode())


def _seed_ldif():
    entries = [
        [("dn", BASE_DN), ("objectClass", "dcObject"), ("objectClass", "organization"),
         ("dc", "example"), ("o", "Example")],
        [("dn", "ou=services," + BASE_DN), ("objectClass", "organizationalUnit"),
         ("ou", "services")],
        [("dn", "ou=people," + BASE_DN), ("objectClass", "organizationalUnit"),
         ("ou", "people")],
        [("dn", "ou=groups," + BASE_DN), ("objectClass", "organizationalUnit"),
         ("ou", "groups")],
        [("dn", BIND_DN), ("objectClass", "applicationProcess"),
         ("objectClass", "simpleSecurityObject"), ("cn", "bridge"),
         ("userPassword", _ssha(BIND_PASSWORD))],
    ]
    for login, password in USERS.items():
        name = login.split("@")[0]
        mail = login if "@" in login else "%s@example.org" % login
        entry = [("dn", user_dn(login)), ("objectClass", "inetOrgPerson"), ("uid", login),
                 ("cn", name.capitalize()), ("sn", name.capitalize()), ("mail", mail),
                 ("userPassword", _ssha(password))]
        if login in ("bob", "carol"):
            entry.append(("mail", "shared@example.org"))
        entries.append(entry)
    groups = {
        "engineers": [user_dn("alice")],
        "vpn-users": [group_dn("engineers"), user_dn("carol")],
        "admins": [user_dn("bob")],
        "loop-a": [group_dn("loop-b"), user_dn("dave@example.org")],
        "loop-b": [group_dn("loop-a")],
    }
    for name, members in groups.items():
        entry = [("dn", group_dn(name)), ("objectClass", "groupOfNames"), ("cn", name)]
        entry += [("member", m) for m in members]
        entries.append(entry)
    return "\n".join("\n".join(_ldif_value(a, v) for a, v in e) + "\n" for e in entries)


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def _make_pki(d):
    """CA, server certificate (SAN 127.0.0.1, localhost) signed by it, and an unrelated CA."""
    for ca in ("ca", "wrong-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                 "-subj", "/CN=vip-bridge test LDAP %s" % ca,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
             cwd=d)


class Slapd:
    """One slapd in `workdir` (created if missing), started on construction."""

    def __init__(self, workdir, name="slapd"):
        why = available()
        if why:
            raise RuntimeError("cannot run slapd: " + why)
        self.name = name
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.base_dn = BASE_DN
        self.bind_dn = BIND_DN
        self.bind_password = BIND_PASSWORD
        self.root_dn = ROOT_DN
        self.root_password = ROOT_PASSWORD
        self.users = dict(USERS)
        self.ca_file = os.path.join(self.workdir, "ca.pem")
        self.wrong_ca_file = os.path.join(self.workdir, "wrong-ca.pem")
        self.log_file = os.path.join(self.workdir, "slapd.log")
        self.proc = None
        self._log = None
        _make_pki(self.workdir)
        self._write_config()
        self._seed()
        last = None
        for _ in range(5):  # a port taken between free_port() and slapd's bind: try others
            self.ldap_port, self.ldaps_port = free_port(), free_port()
            if self.ldap_port == self.ldaps_port:
                continue
            try:
                self._start()
                break
            except RuntimeError as e:
                last = e
        else:
            raise last or RuntimeError("slapd did not start")
        self.ldap_url = "ldap://127.0.0.1:%d" % self.ldap_port
        self.ldaps_url = "ldaps://127.0.0.1:%d" % self.ldaps_port
        _RUNNING[name] = self

    def _write_config(self):
        d = self.workdir
        os.makedirs(os.path.join(d, "db"), exist_ok=True)
        schemas = "\n".join("include %s/%s.schema" % (SCHEMA_DIR, s)
                            for s in ("core", "cosine", "inetorgperson", "nis"))
        conf = """{schemas}
modulepath {modules}
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
allow bind_anon_dn
sizelimit 500

database mdb
maxsize 67108864
suffix "{base}"
rootdn "{root}"
rootpw {rootpw}
directory {d}/db
index objectClass eq
index uid,mail,member eq
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by users read
    by anonymous auth
""".format(schemas=schemas, modules=MODULE_DIR, d=d, base=BASE_DN, root=ROOT_DN,
           rootpw=ROOT_PASSWORD)
        self.conf = os.path.join(d, "slapd.conf")
        with open(self.conf, "w") as f:
            f.write(conf)

    def _seed(self):
        ldif = os.path.join(self.workdir, "seed.ldif")
        with open(ldif, "w", encoding="utf-8") as f:
            f.write(_seed_ldif())
        r = subprocess.run([SLAPADD, "-f", self.conf, "-l", ldif], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("slapadd failed: %s%s" % (r.stdout, r.stderr))

    def _start(self):
        urls = "ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/" % (self.ldap_port, self.ldaps_port)
        self._log = open(self.log_file, "ab")
        # -d stats: stay in the foreground, log each operation to stderr (the log file).
        self.proc = subprocess.Popen([SLAPD, "-f", self.conf, "-h", urls, "-d", "stats"],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                with open(self.log_file, errors="replace") as f:
                    tail = f.read()[-2000:]
                raise RuntimeError("slapd exited with %s: %s" % (self.proc.returncode, tail))
            if all(_answers(p) for p in (self.ldap_port, self.ldaps_port)):
                return
            time.sleep(0.05)
        self._kill()
        raise RuntimeError("slapd did not listen within 15 s (log: %s)" % self.log_file)

    def info(self):
        return {
            "name": self.name,
            "ldap_url": self.ldap_url,
            "ldaps_url": self.ldaps_url,
            "ldap_port": self.ldap_port,
            "ldaps_port": self.ldaps_port,
            "ca_file": self.ca_file,
            "wrong_ca_file": self.wrong_ca_file,
            "base_dn": self.base_dn,
            "bind_dn": self.bind_dn,
            "bind_password": self.bind_password,
            "users": self.users,
            "log_file": self.log_file,
            "pid": self.proc.pid if self.proc else None,
            "workdir": self.workdir,
        }

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # slapd shuts down cleanly on SIGTERM
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log and not self._log.closed:
            self._log.close()

    def stop(self):
        """Stops slapd (idempotent); its ports then have nothing listening."""
        self._kill()
        if _RUNNING.get(self.name) is self:
            del _RUNNING[self.name]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_server(name, port=None):
    """Stops the running instance `name` (or whichever one listens on `port`); returns its
    (ldap_port, ldaps_port), now dead, or None when no such instance runs."""
    for n, s in list(_RUNNING.items()):
        if n == name or (port is not None and port in (s.ldap_port, s.ldaps_port)):
            s.stop()
            return (s.ldap_port, s.ldaps_port)
    return None


def _serve(workdir, name):
    server = Slapd(workdir, name=name)
    stopping = []

    def on_signal(_sig, _frame):
        stopping.append(True)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sys.stdout.write(json.dumps(server.info()) + "\n")
        sys.stdout.flush()
        while not stopping:
            try:
                ready, _, _ = select.select([sys.stdin], [], [], 0.2)
            except InterruptedError:
                continue
            if ready and not os.read(sys.stdin.fileno(), 4096):
                break  # standard input closed: our parent is gone or done
            if server.proc.poll() is not None:
                sys.stderr.write("slapd exited by itself (%s)\n" % server.proc.returncode)
                return 1
    finally:
        server.stop()
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "serve":
        name = "slapd"
        if len(argv) == 4 and argv[2] == "--name":
            name = argv[3]
        elif len(argv) != 2:
            sys.stderr.write("usage: slapd.py serve DIR [--name NAME]\n")
            return 2
        return _serve(argv[1], name)
    if argv == ["check"]:
        why = available()
        print(why or "ok")
        return 1 if why else 0
    sys.stderr.write("usage: slapd.py serve DIR [--name NAME] | slapd.py check\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
