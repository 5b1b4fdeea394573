#!/usr/bin/env python3
"""A private FreeRADIUS 3.2 acting as the *upstream* RADIUS server of vip-bridge's
`[directories.NAME] kind = "radius"` first factor (Python 3 stdlib only).

The configuration is built by bench/freeradius/setup.sh (a copy of /etc/freeradius/3.0 with one
site: PAP from a users file on a loopback port, clients.conf for 127.0.0.1 with
require_message_authenticator = yes) with --status-server and --reply-message-authenticator
(3.2.1 sends no Message-Authenticator in PAP replies by itself).

As a module:

    with UpstreamFreeRadius(workdir) as up:      # DEFAULT_USERS unless users_text=...
        up.addr, up.port, up.secret

As a CLI (for tests in other languages):

    python3 tests/directory/freeradius.py serve DIR [--secret S] [--users-file F] [--port P]
                                          [--no-reply-message-authenticator]

prints one JSON line {"port", "addr", "secret", "dir", "pid", "log"} and runs until stdin
closes or SIGTERM/SIGINT, then stops FreeRADIUS. Logs stay in DIR/conf/log (radius.log,
stdout.log) for debugging.
"""

import argparse
import hashlib
import hmac
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETUP = os.path.join(REPO, "bench", "freeradius", "setup.sh")

DEFAULT_SECRET = "upstream-secret"

# The State the challenge user's first round sends and its second round must carry.
CHALLENGE_STATE = b"state-round-2"
# 100 octets, and a non-ASCII password (UTF-8).
LONG_PASSWORD = "L" * 90 + "0123456789"
NON_ASCII_PASSWORD = "pässwörd-日本"

# The users file the tests (Rust and pytest) use:
# - rich: an Access-Accept with Class, Filter-Id, Framed-IP-Address, Cisco-AVPair (a
#   Vendor-Specific, vendor 9), Session-Timeout and a Reply-Message;
# - plain: an Access-Accept with no attributes (but Message-Authenticator);
# - refused: always an Access-Reject with Reply-Message "account disabled";
# - chal: password chal-pw gets an Access-Challenge (Reply-Message + State), whose answer 4321
#   with that State is accepted with Class "chal-done";
# - long / unicode: the passwords above.
DEFAULT_USERS = f"""\
rich Cleartext-Password := "rich-pw"
	Class = "class-of-rich",
	Filter-Id = "vpn-admins",
	Framed-IP-Address = 10.8.0.7,
	Cisco-AVPair = "shell:priv-lvl=15",
	Session-Timeout = 3600,
	Reply-Message = "welcome"

plain Cleartext-Password := "plain-pw"

refused Auth-Type := Reject
	Reply-Message = "account disabled"

chal State == 0x{CHALLENGE_STATE.hex()}, Cleartext-Password := "4321"
	Class = "chal-done"

chal Cleartext-Password := "chal-pw", Response-Packet-Type := Access-Challenge
	Reply-Message = "Enter your token code:",
	State = 0x{CHALLENGE_STATE.hex()}

long Cleartext-Password := "{LONG_PASSWORD}"

unicode Cleartext-Password := "{NON_ASCII_PASSWORD}"
"""


def free_udp_port():
    """A loopback UDP port free right now (FreeRADIUS binds it a moment later)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def status_server(port, secret, timeout=0.3):
    """Sends one Status-Server (RFC 5997, with Message-Authenticator); True on any answer."""
    ident = os.urandom(1)[0]
    auth = os.urandom(16)
    length = 20 + 18
    head = struct.pack("!BBH", 12, ident, length) + auth
    ma = hmac.new(secret.encode(), head + bytes([80, 18]) + bytes(16), hashlib.md5).digest()
    pkt = head + bytes([80, 18]) + ma
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.send(pkt)
        reply = s.recv(4096)
        return len(reply) >= 20 and reply[1] == ident
    except OSError:
        return False
    finally:
        s.close()


class UpstreamFreeRadius:
    """A FreeRADIUS on 127.0.0.1:PORT for the duration of a `with` block (or until .stop())."""

    def __init__(self, workdir, users_text=None, secret=DEFAULT_SECRET, port=None,
                 start_timeout=20.0, reply_message_authenticator=True):
        if not shutil_which("freeradius"):
            raise FileNotFoundError("freeradius is not installed (apt-get install freeradius)")
        self.workdir = os.path.abspath(workdir)
        self.secret = secret
        self.users_text = DEFAULT_USERS if users_text is None else users_text
        self.proc = None
        self.reply_ma = reply_message_authenticator
        self.conf = os.path.join(self.workdir, "conf")
        os.makedirs(self.workdir, exist_ok=True)
        users_path = os.path.join(self.workdir, "users")
        with open(users_path, "w", encoding="utf-8") as f:
            f.write(self.users_text)
        last_error = None
        for _attempt in range(5):
            self.port = port or free_udp_port()
            try:
                self._start(users_path, start_timeout)
                break
            except RuntimeError as e:
                last_error = e
                self.stop()
                if port:
                    raise
        else:
            raise last_error
        self.addr = f"127.0.0.1:{self.port}"

    def _start(self, users_path, start_timeout):
        cmd = ["bash", SETUP, "--dir", self.conf, "--port", str(self.port), "--secret",
               self.secret, "--users-file", users_path, "--status-server"]
        if self.reply_ma:
            cmd.append("--reply-message-authenticator")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        self.log = os.path.join(self.conf, "log")
        out = open(os.path.join(self.log, "stdout.log"), "ab")
        try:
            self.proc = subprocess.Popen(["freeradius", "-f", "-d", self.conf],
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        finally:
            out.close()
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"freeradius exited with {self.proc.returncode}; see "
                                   f"{self.log}/radius.log and stdout.log")
            if status_server(self.port, self.secret):
                return
            time.sleep(0.05)
        raise RuntimeError(f"freeradius did not answer Status-Server on port {self.port} "
                           f"within {start_timeout} s; see {self.log}")

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def __del__(self):
        try:
            self.stop()
        except Exception:
            pass


def _die_with_parent():
    """In the child: SIGTERM when the launching process dies, however it dies (Linux
    prctl(PR_SET_PDEATHSIG)), so no FreeRADIUS outlives a killed test."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def shutil_which(name):
    import shutil
    return shutil.which(name) or (os.path.exists(f"/usr/sbin/{name}") and f"/usr/sbin/{name}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run until stdin closes or SIGTERM")
    serve.add_argument("dir")
    serve.add_argument("--secret", default=DEFAULT_SECRET)
    serve.add_argument("--users-file", help="users file (default: the test users)")
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--no-reply-message-authenticator", action="store_true",
                       help="replies without Message-Authenticator (FreeRADIUS 3.2.1 as shipped)")
    args = ap.parse_args(argv)

    users_text = None
    if args.users_file:
        with open(args.users_file, encoding="utf-8") as f:
            users_text = f.read()
    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        up = UpstreamFreeRadius(args.dir, users_text=users_text, secret=args.secret,
                                port=args.port,
                                reply_message_authenticator=not args.no_reply_message_authenticator)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        print(json.dumps({"error": str(e)}), flush=True)
        return 1
    try:
        print(json.dumps({"port": up.port, "addr": up.addr, "secret": up.secret,
                          "dir": up.conf, "pid": up.proc.pid, "log": up.log}), flush=True)

        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except (OSError, ValueError):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        while not stop.wait(0.2):
            if up.proc is None or up.proc.poll() is not None:
                print("freeradius exited", file=sys.stderr)
                return 1
    finally:
        up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
