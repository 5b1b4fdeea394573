"""Real Redis for the end-to-end tests of the shared store (tests/test_cluster.py,
tests/test_cluster_failover.py): redis-server and redis-sentinel on loopback ports, a RESP
client to look inside them, and readers of a bridge's log and /metrics about the store."""

import os
import re
import socket
import time

import harness


def resp(port, *args, timeout=2.0, password=None):
    """One Redis command over RESP on 127.0.0.1:port (after AUTH when `password` is given);
    the reply as Python (bytes, int, list), an error reply raised as RuntimeError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        cmd = b""
        for command in ([("AUTH", password)] if password else []) + [args]:
            cmd += b"*%d\r\n" % len(command)
            for a in command:
                a = a if isinstance(a, bytes) else str(a).encode()
                cmd += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(cmd)
        f = s.makefile("rb")

        def read():
            line = f.readline()
            if not line:
                raise ConnectionError("Redis closed the connection")
            kind, rest = line[:1], line[1:-2]
            if kind == b"+":
                return rest
            if kind == b"-":
                raise RuntimeError(rest.decode())
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2]
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise ValueError("unexpected RESP reply %r" % line)

        if password:
            read()
        return read()


class Redis:
    """A redis-server (or, with `sentinel_conf`, a redis-sentinel) on a loopback port of its
    own, no persistence; start() again after kill() takes the same port."""

    def __init__(self, workdir, name, extra=(), sentinel_conf=None, password=None):
        self.dir = workdir
        self.name = name
        self.port = harness.free_port()
        self.password = password
        self.extra = list(extra) + (
            ["--requirepass", password, "--masterauth", password] if password else [])
        self.sentinel_conf = sentinel_conf
        self.proc = None
        self.starts = 0

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=15):
        self.starts += 1
        if self.sentinel_conf is not None:
            conf = os.path.join(self.dir, "%s.conf" % self.name)
            with open(conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\ndir %s\n%s"
                        % (self.port, self.dir, self.sentinel_conf))
            argv = ["redis-sentinel", conf]
        else:
            argv = ["redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
                    "--port", str(self.port), "--dir", self.dir,
                    "--dbfilename", "%s.rdb" % self.name] + self.extra
        self.proc = harness.Proc("%s-%d" % (self.name, self.starts), argv, self.dir)
        deadline = time.time() + timeout
        while True:
            try:
                if resp(self.port, "PING", password=self.password) == b"PONG":
                    return self
            except (OSError, ConnectionError, RuntimeError):
                pass
            if not self.proc.alive() or time.time() > deadline:
                self.proc.stop()
                raise RuntimeError("%s did not start on %d:\n%s\n%s"
                                   % (argv[0], self.port, "".join(self.proc.stdout_lines),
                                      self.proc.log()))
            time.sleep(0.05)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def kill(self):
        """SIGKILL, as a crash: nothing is flushed or closed politely."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.stop()

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def keys(self, pattern="*"):
        return sorted(k.decode() for k in resp(self.port, "KEYS", pattern,
                                               password=self.password))

    def info(self, section):
        text = resp(self.port, "INFO", section, password=self.password).decode()
        return dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)

    def output(self):
        return "".join(self.proc.stdout_lines) + self.proc.log() if self.proc else ""


def wait_log(bridge, needle, timeout=15, seen=0):
    """Waits until `needle` (a string or a compiled regex) is in the bridge's log more than
    `seen` times."""
    def count():
        log = bridge.log()
        return len(needle.findall(log)) if hasattr(needle, "findall") else log.count(needle)

    deadline = time.time() + timeout
    while count() <= seen:
        if not bridge.proc.alive() or time.time() > deadline:
            raise AssertionError("%r never appeared in vip-bridge %s's log:\n%s"
                                 % (getattr(needle, "pattern", needle), getattr(bridge, "name", ""),
                                    bridge.log()[-6000:]))
        time.sleep(0.05)



def metric(bridge, series):
    """One exact series of the bridge's /metrics (name and labels as printed), 0 if absent."""
    return harness.scrape_metrics(bridge.ready["metrics"]).get(series, 0.0)


def store_calls(bridge, result, operation=None):
    """How many shared-store calls the bridge made with `result` (ok / unavailable), of one
    operation or of all."""
    total = 0.0
    for series, value in harness.scrape_metrics(bridge.ready["metrics"]).items():
        m = re.match(r'vip_bridge_store_call_duration_seconds_count\{(.*)\}$', series)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("result") == result and operation in (None, labels.get("operation")):
            total += value
    return total
