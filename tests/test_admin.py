"""`vip-bridge admin`, the help desk's commands, against a running vip-sim over mutual TLS:
every subcommand in text and --json, VIP's requestId on every call, exit status 3 for "not
found" and 1 for other refusals; a token and an SMS phone bound with real codes read from the
simulator; a temporary code that then logs in through the engine (test-auth); and a CSV import
of 1,000 users, some already present and some malformed, run twice."""

import json
import os
import subprocess

import pytest

import harness
from conftest import SIM_POLICY, bridge_toml, sim_users_toml

TOKENS = {"VSMT90000001": "GEZDGNBVGY3TQOJQ", "VSMT90000002": "JBSWY3DPEHPK3PXP"}


@pytest.fixture(scope="module")
def stack(workroot, certs):
    workdir = os.path.join(workroot, "admin")
    os.makedirs(workdir, exist_ok=True)
    tokens = "".join('[[tokens]]\nid = "%s"\nsecret = "%s"\n\n' % t for t in TOKENS.items())
    sim = harness.Sim(workdir, harness.sim_toml(certs, sim_users_toml() + tokens, SIM_POLICY))
    cfg = os.path.join(workdir, "bridge.toml")
    with open(cfg, "w") as f:
        f.write(bridge_toml(sim, certs))
    os.chmod(cfg, 0o600)
    yield sim, cfg, workdir
    sim.stop()


def admin(cfg, *args, json_out=False, stdin=None, timeout=60):
    argv = [harness.find_binary("vip-bridge"), "admin", "--config", cfg]
    if json_out:
        argv.append("--json")
    p = subprocess.run(argv + list(args), capture_output=True, timeout=timeout,
                       input=stdin.encode() if stdin is not None else None,
                       stdin=None if stdin is not None else subprocess.DEVNULL)
    out = p.stdout.decode()
    return p.returncode, (json.loads(out) if json_out and out.strip() else out), p.stderr.decode()


def sim_get(sim, path):
    return sim._admin("GET", path)["code"]


def test_user_lifecycle_text_and_json(stack):
    sim, cfg, _ = stack
    rc, out, err = admin(cfg, "user", "create", "hd-zoe@example.com")
    assert rc == 0, out + err
    assert "created hd-zoe@example.com" in out and "requestId vb" in out, out
    # Creating again: VIP says 6002; a refusal, not "not found".
    rc, out, err = admin(cfg, "user", "create", "hd-zoe@example.com")
    assert rc == 1 and "6002" in out and "requestId vb" in out, out + err

    rc, j, err = admin(cfg, "user", "show", "hd-zoe@example.com", json_out=True)
    assert rc == 0, err
    assert j["ok"] and j["status"] == "ACTIVE" and j["credentials"] == [], j
    assert len(j["request_ids"]) == 2 and all(r.startswith("vb") for r in j["request_ids"]), j

    rc, out, err = admin(cfg, "user", "update", "hd-zoe@example.com", "--status", "disabled")
    assert rc == 0 and "status DISABLED" in out, out + err
    rc, j, _ = admin(cfg, "user", "show", "hd-zoe@example.com", json_out=True)
    assert j["status"] == "DISABLED", j
    rc, out, err = admin(cfg, "user", "update", "hd-zoe@example.com")
    assert rc == 1 and "nothing to update" in err, out + err

    rc, out, err = admin(cfg, "user", "delete", "hd-zoe@example.com")
    assert rc == 1 and "--yes" in err, out + err
    before = sim.calls("deleteUser")
    rc, out, err = admin(cfg, "user", "delete", "hd-zoe@example.com", "--yes")
    assert rc == 0 and "deleted hd-zoe@example.com" in out, out + err
    assert sim.calls("deleteUser") == before + 1

    # Gone: exit status 3, in text and JSON, with the requestId.
    rc, out, err = admin(cfg, "user", "show", "hd-zoe@example.com")
    assert rc == 3 and "6003" in out and "requestId vb" in out, out + err
    rc, j, err = admin(cfg, "user", "show", "hd-zoe@example.com", json_out=True)
    assert rc == 3 and j["ok"] is False and j["not_found"] is True and j["status"] == "6003", j
    assert j["request_ids"][0].startswith("vb"), j


def test_pins_come_from_files_and_are_never_printed(stack):
    sim, cfg, _ = stack
    user = "hd-pia@example.com"
    rc, out, err = admin(cfg, "user", "create", user, "--pin-file", "-", "--force-pin-change",
                         stdin="73195\n")
    assert rc == 0 and "created" in out, out + err
    rc, j, _ = admin(cfg, "user", "show", user, json_out=True)
    assert j["pin_set"] is True, j
    rc, out, err = admin(cfg, "user", "update", user, "--pin-file", "-", stdin="84026\n")
    assert rc == 0 and "new PIN" in out, out + err
    rc, out, err = admin(cfg, "user", "update", user, "--pin-file", "-", stdin="\n")
    assert rc == 1 and "the PIN is empty" in err, out + err
    rc, out, err = admin(cfg, "pin", "clear", user)
    assert rc == 0 and "cleared the PIN" in out, out + err
    rc, j, _ = admin(cfg, "user", "show", user, json_out=True)
    assert j["pin_set"] is False, j
    for secret in ("73195", "84026"):
        assert secret not in out + err


def test_a_token_is_bound_with_its_code_renamed_listed_and_removed(stack):
    sim, cfg, _ = stack
    user = "hd-yann@example.com"
    assert admin(cfg, "user", "create", user)[0] == 0
    # A wrong code binds nothing.
    code = sim_get(sim, "/tokens/VSMT90000001/code")
    wrong = "%06d" % ((int(code) + 1) % 1000000)
    rc, out, err = admin(cfg, "credential", "add", user, "VSMT90000001", "--code", wrong)
    assert rc == 1 and "6009" in out, out + err
    rc, out, err = admin(cfg, "credential", "add", user, "VSMT90000001", "--code",
                         sim_get(sim, "/tokens/VSMT90000001/code"), "--name", "phone app")
    assert rc == 0 and "added STANDARD_OTP VSMT90000001" in out, out + err
    rc, j, _ = admin(cfg, "credential", "list", user, json_out=True)
    assert [(c["credential_id"], c["credential_type"], c["friendly_name"])
            for c in j["credentials"]] == [("VSMT90000001", "STANDARD_OTP", "phone app")], j

    rc, out, err = admin(cfg, "credential", "rename", user, "VSMT90000001", "old phone")
    assert rc == 0 and '"old phone"' in out, out + err
    rc, out, _ = admin(cfg, "credential", "list", user)
    assert 'STANDARD_OTP VSMT90000001 "old phone"' in out, out

    rc, out, err = admin(cfg, "credential", "remove", user, "VSMT90000001")
    assert rc == 0 and "removed VSMT90000001" in out, out + err
    # Removing it again: no binding (6007) is "not found".
    rc, out, err = admin(cfg, "credential", "remove", user, "VSMT90000001")
    assert rc == 3 and "6007" in out, out + err
    rc, out, _ = admin(cfg, "credential", "list", user)
    assert "has no credentials" in out, out


def test_an_sms_phone_is_registered_then_bound_with_the_code_it_received(stack):
    sim, cfg, _ = stack
    user, phone = "hd-xena@example.com", "15550001234"
    assert admin(cfg, "user", "create", user)[0] == 0
    rc, out, err = admin(cfg, "sms", "register", phone)
    assert rc == 0 and "registered 15550001234 for sms codes" in out, out + err
    assert "credential add USER 15550001234 --type sms --code CODE" in out, out
    rc, out, err = admin(cfg, "sms", "register", phone)
    assert rc == 1 and "6026" in out, out + err
    code = sim_get(sim, "/phones/%s/code" % phone)
    assert code not in admin(cfg, "sms", "register", "15550009999")[1], "a code was printed"
    rc, out, err = admin(cfg, "credential", "add", user, phone, "--type", "sms", "--code", code)
    assert rc == 0 and "added SMS_OTP 15550001234" in out, out + err
    rc, j, _ = admin(cfg, "credential", "list", user, json_out=True)
    assert [c["credential_type"] for c in j["credentials"]] == ["SMS_OTP"], j


def test_a_temporary_code_logs_in_then_is_cleared(stack):
    sim, cfg, _ = stack
    rc, j, err = admin(cfg, "temp-code", "set", "erin", "--expires", "2h", "--one-time",
                       json_out=True)
    assert rc == 0 and j["ok"] and len(j["code"]) == 6 and j["one_time"] is True, (j, err)
    code = j["code"]
    rc, out, _ = admin(cfg, "temp-code", "show", "erin")
    assert rc == 0 and "erin has a temporary code" in out and "for one login" in out, out
    # The engine accepts it once (one-time).
    tool = harness.find_binary("vip-bridge")
    p = subprocess.run([tool, "test-auth", "--config", cfg, "erin", code], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    p = subprocess.run([tool, "test-auth", "--config", cfg, "erin", code], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout.decode() + p.stderr.decode()

    # A code the help desk chose, read from a file, is not repeated back.
    rc, out, err = admin(cfg, "temp-code", "set", "erin", "--code-file", "-", stdin="135790\n")
    assert rc == 0 and "temporary code set for erin" in out and "135790" not in out, out + err
    rc, out, err = admin(cfg, "temp-code", "clear", "erin")
    assert rc == 0 and "cleared the temporary code of erin" in out, out + err
    rc, j, _ = admin(cfg, "temp-code", "show", "erin", json_out=True)
    assert j["present"] is False, j
    rc, out, err = admin(cfg, "temp-code", "set", "erin", "--expires", "31d")
    assert rc == 1 and "30 days" in err, out + err


def test_pin_clear_server_time_and_requestids(stack):
    sim, cfg, _ = stack
    rc, out, err = admin(cfg, "server-time")
    assert rc == 0 and "VIP time" in out and "requestId vb" in out, out + err
    rc, j, _ = admin(cfg, "server-time", json_out=True)
    assert j["ok"] and j["request_ids"][0].startswith("vb"), j
    before = sim.calls("clearUserPin")
    rc, out, err = admin(cfg, "pin", "clear", "frank")
    assert sim.calls("clearUserPin") == before + 1
    assert "requestId vb" in out, out + err
    rc, out, err = admin(cfg, "pin", "clear", "nobody-here")
    assert rc == 3 and "6003" in out, out + err


def test_import_of_a_thousand_users_twice(stack, tmp_path):
    sim, cfg, _ = stack
    for i in range(5):
        assert admin(cfg, "user", "create", "imp%04d@example.com" % i)[0] == 0
    lines = ["user_id"] + ["imp%04d@example.com" % i for i in range(1000)]
    lines[101] = '""'                                  # empty user id (line 102)
    lines[202] = "imp0201@example.com,extra"           # too many fields (line 203)
    lines[303] = "IMP0000@example.com"                  # a duplicate, case aside (line 304)
    path = tmp_path / "users.csv"
    path.write_text("\n".join(lines) + "\n")

    before = sim.calls("createUser")
    rc, out, err = admin(cfg, "import", str(path), "--dry-run")
    assert rc == 1 and "dry run: 1000 rows, 997 would be sent to VIP, 3 malformed" in out, out
    assert sim.calls("createUser") == before, "a dry run sent something"

    rc, j, err = admin(cfg, "import", str(path), "--concurrency", "16", json_out=True,
                       timeout=300)
    assert rc == 1, err
    assert (j["rows"], j["created"], j["already_present"]) == (1000, 992, 5), j
    assert sorted(m["line"] for m in j["malformed"]) == [102, 203, 304], j
    assert j["failed"] == [], j
    assert sim.calls("createUser") == before + 997

    # Again: nothing is created twice, nothing fails.
    rc, out, err = admin(cfg, "import", str(path), timeout=300)
    assert rc == 1, out + err
    assert "1000 rows: 0 created, 997 already present, 0 failed, 3 malformed" in out, out
    assert "line 203: not sent: 2 fields where the header has 1" in out, out

    # A file that names no user_id column sends nothing.
    bad = tmp_path / "bad.csv"
    bad.write_text("email\nx@example.com\n")
    rc, out, err = admin(cfg, "import", str(bad))
    assert rc == 1 and '"email" is not known' in err, out + err
