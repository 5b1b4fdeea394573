"""`vip-bridge demo` end to end, as a new user follows it: start it on a free port, then run the
very lines it prints, in bash, against the real peers (freeradius-utils radtest / radclient,
pamtester under libpam-wrapper in a pseudo-terminal):

- `demo code alice` and the metrics curl line;
- the radtest code line -> Access-Accept (radtest sends Message-Authenticator; the demo
  requires it, and a request without one gets no answer);
- the push lines -> alice Access-Accept after her phone approves, bob Access-Reject;
- the SMS lines -> Access-Challenge with a State, the demo prints the simulated text message, the
  printed radclient answer (State + `demo code alice --sms`) -> Access-Accept;
- the pamtester line -> success, each prompt shown once (carol is created with the printed
  useradd line when missing, and removed again);
- the login lines in its log have the fields `vip-bridge serve` writes (user included);
- nothing at WARN or ERROR in its output while following the printed text;
- the printed commands name the executable (its path, or `vip-bridge` when that is on PATH);
- SIGINT stops it cleanly and removes its temporary directory.

Under CI=true a missing peer is a failure, never a skip."""

import json
import os
import pty
import pwd
import re
import select
import shutil
import signal
import subprocess
import time

import pytest

import harness

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

ALICE = "JBSWY3DPEHPK3PXPALICE234"
CAROL = "JBSWY3DPEHPK3PXPCAROL234"
WRAPPERS = ["/usr/lib/x86_64-linux-gnu/libpam_wrapper.so", "/usr/lib/libpam_wrapper.so"]


def need(ok, what):
    """A missing peer: skipped on a developer's machine, a failure under CI."""
    if ok:
        return
    if CI:
        pytest.fail("%s (CI=true: the demo tests must run)" % what)
    pytest.skip(what)


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class Demo:
    def __init__(self, proc, info, carol_existed):
        self.proc = proc
        self.info = info
        self.port = int(info["radius"].rsplit(":", 1)[1])
        self.carol_existed = carol_existed
        self.created_carol = False

    def text(self):
        return "".join(self.proc.stdout_lines)

    def lines(self, prefix):
        """The printed command lines (indented by two spaces) that start with `prefix`."""
        return [l[2:].rstrip("\n") for l in self.proc.stdout_lines
                if l.startswith("  " + prefix)]

    def line(self, prefix, containing=""):
        found = [l for l in self.lines(prefix) if containing in l]
        assert len(found) == 1, "expected one printed line %r ... %r:\n%s" % (
            prefix, containing, self.text())
        return found[0]


def start_demo(workdir, env=None, extra=()):
    env = dict(os.environ if env is None else env)
    # The demo's own log level, as a user gets it.
    env.pop("RUST_LOG", None)
    proc = harness.Proc("vip-bridge-demo", [harness.find_binary("vip-bridge"), "demo",
                                             "--port", "0", *extra], workdir, env=env)
    deadline = time.time() + 30
    info = None
    while info is None or not any(l.startswith("Ctrl-C") for l in proc.stdout_lines):
        for line in list(proc.stdout_lines):
            if line.startswith("VIP_BRIDGE_DEMO "):
                info = json.loads(line.split(" ", 1)[1])
        if not proc.alive() or time.time() > deadline:
            proc.stop()
            raise RuntimeError("demo did not start:\n" + "".join(proc.stdout_lines)
                               + proc.log())
        time.sleep(0.05)
    return proc, info


@pytest.fixture(scope="module")
def demo(workroot):
    need(shutil.which("radtest") and shutil.which("radclient"),
         "radtest / radclient (freeradius-utils) not installed")
    workdir = os.path.join(workroot, "demo")
    os.makedirs(workdir, exist_ok=True)
    carol_existed = user_exists("carol")
    proc, info = start_demo(workdir)
    d = Demo(proc, info, carol_existed)
    try:
        yield d
    finally:
        proc.stop()
        if d.created_carol:
            subprocess.run(["userdel", "carol"], capture_output=True, timeout=30)


def bash(cmd, timeout=60):
    """Runs printed text in bash (a user's shell); returns (exit code, stdout + stderr)."""
    p = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def without_comment(line):
    return line.split("   #", 1)[0]


def login_lines(text):
    return [l for l in text.splitlines() if "login round finished" in l]


def field_names(line):
    """The field names of a tracing text line, spans included, in order."""
    body = line.split(" INFO ", 1)[1]
    return re.findall(r"([A-Za-z_]+)=", body)


def test_demo_code_is_the_totp_of_the_public_secret():
    p = subprocess.run([harness.find_binary("vip-bridge"), "demo", "code", "alice"],
                       capture_output=True, timeout=10, check=True)
    code = p.stdout.decode().strip()
    assert len(code) == 6 and code.isdigit()
    assert code in {harness.totp(ALICE, time.time() + d) for d in (-30, 0, 30)}
    p = subprocess.run([harness.find_binary("vip-bridge"), "demo", "code", "mallory"],
                       capture_output=True, timeout=10)
    assert p.returncode != 0 and b"mallory" in p.stderr


def test_printed_commands_name_this_executable(demo):
    exe = harness.find_binary("vip-bridge")
    on_path = shutil.which("vip-bridge")
    expected = "vip-bridge" if on_path and os.path.samefile(on_path, exe) else exe
    assert demo.line("%s demo code alice" % expected) == "%s demo code alice" % expected
    assert '"$(%s demo code alice)"' % expected in demo.line("radtest alice \"$(")
    assert "$(%s demo code alice --sms --port %d)" % (expected, demo.port) in \
        demo.line("echo \"User-Name")


def test_printed_commands_say_vip_bridge_when_it_is_on_path(workroot):
    """Installed (/usr/bin/vip-bridge): the printed lines say `vip-bridge`."""
    exe = harness.find_binary("vip-bridge")
    workdir = os.path.join(workroot, "demo-on-path")
    os.makedirs(workdir, exist_ok=True)
    env = dict(os.environ, PATH=os.path.dirname(exe) + os.pathsep + os.environ.get("PATH", ""))
    proc, info = start_demo(workdir, env)
    try:
        text = "".join(proc.stdout_lines)
        assert "\n  vip-bridge demo code alice\n" in text, text
        assert exe not in text.replace(info["dir"], ""), text
    finally:
        proc.signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, proc.log()
        proc.stop()


def test_printed_code_and_metrics_lines(demo):
    found = [l for l in demo.lines("") if l.endswith(" demo code alice")]
    assert len(found) == 1, demo.text()
    rc, out = bash(found[0])
    assert rc == 0 and re.fullmatch(r"\d{6}\n", out), out
    metrics = [l for l in demo.proc.stdout_lines if l.startswith("Metrics:")]
    assert len(metrics) == 1, demo.text()
    line = metrics[0].split(":", 1)[1].strip()
    assert line.startswith("curl -s http://127.0.0.1:") and line.endswith("/metrics"), line
    if shutil.which("curl"):
        rc, out = bash(line)
    else:  # the same URL, without curl
        out = "\n".join(harness.scrape_metrics(line.split("http://", 1)[1].split("/", 1)[0]))
    assert "vip_bridge_" in out, out


def test_printed_radtest_code_line_is_accepted(demo):
    line = demo.line('radtest alice "$(')
    assert "127.0.0.1:%d" % demo.port in line and "demo-secret" in line
    harness.fresh_totp(ALICE, min_left=8)
    rc, out = bash(line)
    assert "Received Access-Accept" in out, out
    # radtest signs the request (and the demo requires that: see the last tests).
    assert "Message-Authenticator = 0x00" in out, out
    # The same line with a wrong code is refused.
    wrong = harness.wrong_code(ALICE)
    rc, out = bash(re.sub(r'"\$\([^)]*\)"', wrong, without_comment(line)))
    assert "Received Access-Reject" in out, out


def test_printed_push_lines(demo):
    alice = demo.line("radtest alice push")
    bob = demo.line("radtest bob push")
    started = time.time()
    rc, out = bash(alice)
    assert "Received Access-Accept" in out, out
    assert time.time() - started >= 1.5, "alice's phone approves after 2 s"
    rc, out = bash(bob)
    assert "Received Access-Reject" in out and "denied" in out, out


def test_trustbuilder_demo_printed_lines_work(workroot):
    """`vip-bridge demo --backend trustbuilder`: the same users and printed radtest lines, against
    the TrustBuilder simulator (the bridge runs with backend = "trustbuilder"); no SMS there."""
    need(shutil.which("radtest"), "radtest (freeradius-utils) not installed")
    workdir = os.path.join(workroot, "demo-trustbuilder")
    os.makedirs(workdir, exist_ok=True)
    proc, info = start_demo(workdir, extra=("--backend", "trustbuilder"))
    try:
        d = Demo(proc, info, True)
        assert "TrustBuilder MFA simulator" in d.text(), d.text()
        assert not d.lines("S=$("), "TrustBuilder sends no SMS: no SMS lines\n" + d.text()
        with open(os.path.join(info["dir"], "vip-bridge.toml")) as f:
            config = f.read()
        assert config.splitlines()[1] == 'backend = "trustbuilder"', config
        assert "[vip]" not in config, config
        harness.fresh_totp(ALICE, min_left=8)
        rc, out = bash(d.line('radtest alice "$('))
        assert "Received Access-Accept" in out, out
        started = time.time()
        rc, out = bash(d.line("radtest alice push"))
        assert "Received Access-Accept" in out, out
        assert time.time() - started >= 1.5, "alice's app approves after 2 s"
        rc, out = bash(d.line("radtest bob push"))
        assert "Received Access-Reject" in out and "denied" in out, out
        lines = login_lines(proc.log())
        assert len(lines) == 3 and 'factor="push"' in lines[1], lines
    finally:
        proc.stop()


def test_printed_sms_lines_end_in_access_accept(demo):
    ask = demo.line("S=$(")
    answer = demo.line('echo "User-Name')
    rc, out = bash(ask + "\n" + answer)
    assert "Received Access-Challenge" in out and "text message" in out, out
    states = re.findall(r"State = (0x[0-9a-f]+)", out)
    assert len(states) == 2 and states[0] == states[1], out  # the reply's, then the answer's
    assert "Received Access-Accept" in out.split("Received Access-Challenge", 1)[1], out
    # The demo showed the simulated text message with the same code `code --sms` prints.
    p = subprocess.run([harness.find_binary("vip-bridge"), "demo", "code", "alice", "--sms",
                        "--port", str(demo.port)], capture_output=True, timeout=10, check=True)
    sent = p.stdout.decode().strip()
    assert len(sent) == 6 and sent.isdigit()
    deadline = time.time() + 5
    while time.time() < deadline and "your security code is %s" % sent not in demo.text():
        time.sleep(0.1)
    assert "[demo phone] SMS to alice (15555550100): your security code is %s" % sent \
        in demo.text(), demo.text()
    # A new challenge sends a new code: the old one is refused.
    stale = re.sub(r"\$\([^)]*--sms[^)]*\)", sent, answer)
    assert stale != answer
    rc, out = bash(ask + "\n" + stale)
    assert "Received Access-Reject" in out.split("Received Access-Challenge", 1)[1], out


def pty_session(cmd, steps, timeout=60):
    """Runs `cmd` in bash on a pseudo-terminal, as typed in a terminal. `steps`: (text to wait
    for, seconds to wait after it, what to type). Returns (exit code, everything shown)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(["bash", "-c", cmd], stdin=slave, stdout=slave, stderr=slave,
                         start_new_session=True)
    os.close(slave)
    shown = b""
    deadline = time.time() + timeout

    def pump(until):
        nonlocal shown
        while not until():
            if time.time() > deadline:
                raise AssertionError("timed out; shown so far:\n" + shown.decode("utf-8", "replace"))
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the other side is closed
                    chunk = b""
                if not chunk:
                    return False
                shown += chunk
        return True

    try:
        for wait_for, delay, typed in steps:
            assert pump(lambda: wait_for.encode() in shown), shown.decode("utf-8", "replace")
            time.sleep(delay)
            os.write(master, typed.encode())
        pump(lambda: False)
        rc = p.wait(timeout=max(1, deadline - time.time()))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        os.close(master)
    return rc, shown.decode("utf-8", "replace").replace("\r\n", "\n")


def test_printed_pamtester_line_shows_each_prompt_once(demo):
    have = shutil.which("pamtester") and any(os.path.exists(w) for w in WRAPPERS)
    need(have, "pamtester or libpam-wrapper not installed")
    lines = demo.lines("LD_PRELOAD=")
    assert len(lines) == 1, "no pamtester line printed:\n" + demo.text()
    if not demo.carol_existed:
        hint = [l for l in demo.proc.stdout_lines if "useradd" in l]
        assert len(hint) == 1, demo.text()
        need(os.geteuid() == 0, "carol is not a local user and creating her needs root")
        create = hint[0].split("first:", 1)[1].strip().rstrip(")")
        rc, out = bash(create)
        assert rc == 0, out
        demo.created_carol = True
    else:
        assert "useradd" not in demo.text()
    # The menu: type push; the phone approves after 5 s; then Enter.
    rc, shown = pty_session(lines[0], [
        ("Or type a security code:", 0.2, "push\n"),
        ("press Enter here", 6.5, "\n"),
    ])
    assert rc == 0 and "pamtester: successfully authenticated" in shown, shown
    assert shown.count("Choose a second factor:") == 1, shown
    assert shown.count("Or type a security code:") == 1, shown
    assert shown.count("press Enter here") == 1, shown
    assert "PWRAP_ERROR" not in shown, shown


def test_login_lines_are_those_of_serve(demo, workroot):
    # Let the last login lines reach the log file.
    time.sleep(0.3)
    lines = login_lines(demo.proc.log())
    code = [l for l in lines if "user=alice" in l and 'factor="code"' in l
            and 'outcome="accept"' in l]
    assert code, demo.proc.log()
    for l in lines:
        assert re.search(r"login\{id=\w+ user=\w+ ", l), l
        for f in ("outcome=", "reason=", "request_ids=demo_"):
            assert f in l, l
    # `vip-bridge serve` with the demo's configuration and its own default log settings.
    with open(os.path.join(demo.info["dir"], "vip-bridge.toml")) as f:
        text = f.read()
    text = text.split("\n[log]", 1)[0]
    text = text.replace('listen = ["127.0.0.1:%d"]' % demo.port, 'listen = ["127.0.0.1:0"]')
    workdir = os.path.join(workroot, "demo-serve")
    os.makedirs(workdir, exist_ok=True)
    text = text.replace(demo.info["pam"], os.path.join(workdir, "pam.sock"))
    config = os.path.join(workdir, "serve.toml")
    with open(config, "w") as f:
        f.write(text)
    ready = os.path.join(workdir, "ready.json")
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    serve = harness.Proc("vip-bridge-serve", [harness.find_binary("vip-bridge"), "serve",
                                              "--config", config, "--ready-file", ready],
                         workdir, env=env)
    try:
        deadline = time.time() + 20
        while not os.path.exists(ready):
            assert serve.alive() and time.time() < deadline, serve.log()
            time.sleep(0.05)
        time.sleep(0.1)
        with open(ready) as f:
            port = int(json.load(f)["radius"][0].rsplit(":", 1)[1])
        harness.fresh_totp(CAROL, min_left=5)
        p = subprocess.run(["radtest", "carol", harness.totp(CAROL), "127.0.0.1:%d" % port,
                            "0", "demo-secret"], capture_output=True, timeout=30)
        assert b"Received Access-Accept" in p.stdout, p.stdout + p.stderr
        deadline = time.time() + 5
        while not login_lines(serve.log()) and time.time() < deadline:
            time.sleep(0.05)
        served = login_lines(serve.log())
        assert len(served) == 1, serve.log()
        assert "user=carol" in served[0]
        assert field_names(code[0]) == field_names(served[0]), (code[0], served[0])
    finally:
        serve.stop()


def test_no_unexplained_warnings(demo):
    """Everything above followed the printed text: nothing at WARN or ERROR in the output."""
    time.sleep(0.3)
    out = demo.text() + demo.proc.log()
    bad = [l for l in out.splitlines() if re.search(r"\b(WARN|ERROR)\b", l)]
    assert not bad, "\n".join(bad)
    assert "state_key_file" not in out and "require_message_authenticator" not in out


def test_message_authenticator_is_required(demo):
    """radtest signs its requests; one without Message-Authenticator is dropped, and the demo
    says why (its printed text says it requires it)."""
    assert "which this demo requires" in demo.text()
    p = subprocess.run(
        ["radclient", "-x", "-r", "1", "-t", "2", "127.0.0.1:%d" % demo.port, "auth", "demo-secret"],
        input=b'User-Name = "alice", User-Password = "000000"\n', capture_output=True,
        timeout=30)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert "Received" not in out and "No reply" in out, out
    deadline = time.time() + 5
    while "without Message-Authenticator dropped" not in demo.proc.log() \
            and time.time() < deadline:
        time.sleep(0.05)
    assert "without Message-Authenticator dropped" in demo.proc.log(), demo.proc.log()


def test_sigint_stops_it_cleanly(demo):
    demo.proc.signal(signal.SIGINT)
    assert demo.proc.wait(timeout=20) == 0, demo.proc.log()
    assert any("demo stopped" in l for l in demo.proc.stdout_lines)
    assert not os.path.exists(demo.info["dir"]), "the temporary directory was left behind"
