"""`vip-bridge admin` with backend = "trustbuilder": the real binary against a real tb-sim over
mutual TLS (PKCS#12 client certificate). Every subcommand in text and --json; exit status 0
done, 1 refused or failed (TrustBuilder's NOK:<cause> named), 3 no such login or tool;
activation, restore and recovery codes printed once (and never by `user show` / `user list`);
loginUpdate keeping every field not asked; the commands only VIP has refused with one line
(and TrustBuilder's own with backend = "vip"); a wrong service_id and an unreachable service.

One tb-sim serves the module; each test works on logins of its own.
"""

import json
import os
import re
import subprocess

import pytest

import harness

SERVICE_ID = 4242
WRONG_SERVICE_ID = 4343
CODE = re.compile(r"\b\d{9}\b")


def tool(kind, tid, name, alias, state=0, push_enabled=None):
    out = '[[users.tools]]\nkind = "%s"\nid = %d\nname = "%s"\nalias = "%s"\nstate = %d\n' % (
        kind, tid, name, alias, state)
    if push_enabled is not None:
        out += "push_enabled = %s\n" % ("true" if push_enabled else "false")
    return out


def login(name, lid, status=0, role=0, firstname=None, lastname=None, mail=None, phone=None,
          tools=()):
    out = '[[users]]\nlogin = "%s"\nid = %d\nstatus = %d\nrole = %d\n' % (name, lid, status, role)
    for key, v in (("firstname", firstname), ("name", lastname), ("mail", mail),
                   ("phone", phone)):
        if v is not None:
            out += '%s = "%s"\n' % (key, v)
    return out + "".join(tools) + "\n"


USERS = "".join([
    # show / credential: a mobile app and a desktop tool sharing id 501, a PIN-locked mAccess.
    login("hd-alice", 11, firstname="Alice", lastname="Liddell", mail="alice@example.com",
          phone="33600000001", tools=[
              tool("ma", 501, "iPhone", "tba501", push_enabled=True),
              tool("ca", 501, "laptop", "tbc501", state=1),
              tool("mac", 601, "bank app", "tbm601", state=2, push_enabled=False),
              tool("va", 701, "browser", "tbv701"),
          ]),
    # update: a blocked manager with every field set.
    login("hd-bob", 12, status=1, role=1, firstname="Bob", lastname="Builder",
          mail="bob@example.com", phone="33600000002"),
    # codes: restore, new-code, reset-password, pin unlock, send-activation.
    login("hd-carol", 13, firstname="Carol", mail="carol@example.com",
          tools=[tool("ma", 502, "Pixel", "tba502", state=2, push_enabled=True)]),
    # no mail: loginSendByMail refuses.
    login("hd-dave", 14),
    # delete.
    login("hd-erin", 15, mail="erin@example.com"),
    # list paging: a few more.
    login("hd-list-a", 21, lastname="Zulu", mail="z@example.com"),
    login("hd-list-b", 22, lastname="Alpha", mail="a@example.com"),
])


@pytest.fixture(scope="module")
def tb(workroot, certs):
    workdir = os.path.join(workroot, "admin_trustbuilder")
    os.makedirs(workdir, exist_ok=True)
    sim = harness.TbSim(workdir, harness.tb_sim_toml(certs, USERS, service_id=SERVICE_ID))

    def config(name, service_id=SERVICE_ID, sim_for=sim):
        path = os.path.join(workdir, name)
        with open(path, "w") as f:
            f.write(harness.bridge_toml_trustbuilder(sim_for, certs, "", service_id=service_id))
        os.chmod(path, 0o600)
        return path

    class Env:
        pass

    env = Env()
    env.sim, env.dir = sim, workdir
    env.cfg = config("bridge.toml")
    env.wrong_service = config("wrong-service.toml", service_id=WRONG_SERVICE_ID)

    class Gone:
        api_url = "https://127.0.0.1:%d" % harness.free_port()

    env.unreachable = config("unreachable.toml", sim_for=Gone)
    yield env
    sim.stop()


def admin(cfg, *args, json_out=False, timeout=60):
    argv = [harness.find_binary("vip-bridge"), "admin", "--config", cfg]
    if json_out:
        argv.append("--json")
    p = subprocess.run(argv + list(args), capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    out = p.stdout.decode()
    return p.returncode, (json.loads(out) if json_out and out.strip() else out), p.stderr.decode()


def soap_calls(sim):
    calls = sim.counters().get("calls", {})
    return sum(v for k, v in calls.items() if k.startswith("login"))


# ---------------------------------------------------------------------------------------------
# user show, user list


def test_show_text_and_json(tb):
    rc, out, err = admin(tb.cfg, "user", "show", "hd-alice")
    assert rc == 0, out + err
    lines = out.splitlines()
    assert lines[0] == ("hd-alice (active, user), Alice Liddell <alice@example.com>, activated, "
                        "phone 33600000001, 4 tools"), out
    assert '  mobile app 501 "iPhone": active, push enabled' in lines, out
    assert '  desktop 501 "laptop": locked' in lines, out
    assert '  mAccess 601 "bank app": PIN-locked, no push' in lines, out
    assert '  virtual 701 "browser": active' in lines, out
    # TrustBuilder has no request ids.
    assert "requestId" not in out, out

    rc, j, err = admin(tb.cfg, "user", "show", "hd-alice", json_out=True)
    assert rc == 0, err
    assert j["ok"] is True and "request_ids" not in j, j
    assert (j["login"], j["id"], j["status"], j["role"]) == ("hd-alice", 11, "active", "user"), j
    assert (j["firstname"], j["name"], j["mail"], j["phone"]) == (
        "Alice", "Liddell", "alice@example.com", "33600000001"), j
    assert j["activation"] == "ok", j
    tools = {(t["kind"], t["id"]): t for t in j["tools"]}
    assert set(tools) == {("ma", 501), ("ca", 501), ("mac", 601), ("va", 701)}, j
    assert tools[("ma", 501)]["state"] == "active" and tools[("ma", 501)]["push_enabled"] is True
    assert tools[("ca", 501)]["state"] == "locked" and tools[("ca", 501)]["push_enabled"] is None
    assert tools[("mac", 601)]["state"] == "PIN-locked" and tools[("mac", 601)]["state_code"] == 2
    assert tools[("va", 701)]["kind_name"] == "virtual"

    # Blocked, and a manager.
    rc, out, err = admin(tb.cfg, "user", "show", "hd-bob")
    assert rc == 0 and out.startswith("hd-bob (blocked, manager), Bob Builder"), out + err


def test_show_unknown_login_is_not_found(tb):
    rc, out, err = admin(tb.cfg, "user", "show", "hd-nobody")
    assert rc == 3, out + err
    assert out.startswith("failed: TrustBuilder has no login \"hd-nobody\""), out
    rc, j, err = admin(tb.cfg, "user", "show", "hd-nobody", json_out=True)
    assert rc == 3 and j["ok"] is False and j["not_found"] is True, j
    assert j["status"] is None and "request_ids" not in j, j
    # Every login command says the same.
    for args in (["user", "delete", "hd-nobody", "--yes"], ["user", "restore", "hd-nobody"],
                 ["user", "new-code", "hd-nobody"], ["pin", "unlock", "hd-nobody"],
                 ["credential", "list", "hd-nobody"],
                 ["user", "update", "hd-nobody", "--mail", "x@example.com"]):
        rc, out, err = admin(tb.cfg, *args)
        assert rc == 3 and "no login" in out, (args, out, err)


def test_list_pages_and_sorts(tb):
    rc, j, err = admin(tb.cfg, "user", "list", json_out=True)
    assert rc == 0, err
    assert j["count"] >= 7 and j["n"] == len(j["logins"]) == j["count"], j
    assert j["offset"] == 0 and j["limit"] == 100, j
    logins = [entry["login"] for entry in j["logins"]]
    assert "hd-alice" in logins and "hd-list-b" in logins, j

    rc, j, err = admin(tb.cfg, "user", "list", "--sort", "login", "--limit", "2", json_out=True)
    assert rc == 0 and j["n"] == 2 and j["count"] > 2, j
    page1 = [entry["login"] for entry in j["logins"]]
    assert page1 == sorted(page1), j
    rc, j, err = admin(tb.cfg, "user", "list", "--sort", "login", "--limit", "2", "--offset", "2",
                       json_out=True)
    assert rc == 0 and j["offset"] == 2 and j["n"] == 2, j
    page2 = [entry["login"] for entry in j["logins"]]
    assert not set(page1) & set(page2) and page1[-1] < page2[0], (page1, page2)

    rc, j, err = admin(tb.cfg, "user", "list", "--sort", "login", "--desc", json_out=True)
    names = [entry["login"] for entry in j["logins"]]
    assert rc == 0 and names == sorted(names, reverse=True), j

    rc, out, err = admin(tb.cfg, "user", "list", "--sort", "login", "--limit", "2")
    assert rc == 0 and re.match(r"logins 1-2 of \d+\n", out), out + err
    assert len(out.splitlines()) == 3, out
    rc, out, err = admin(tb.cfg, "user", "list", "--offset", "10000")
    assert rc == 0 and out.startswith("no logins from offset 10000"), out + err
    # --desc needs --sort (clap refuses: exit status 2).
    rc, out, err = admin(tb.cfg, "user", "list", "--desc")
    assert rc == 2 and "--sort" in err, out + err


# ---------------------------------------------------------------------------------------------
# user create, activate-code, send-activation


def test_create_prints_the_activation_code_once(tb):
    rc, out, err = admin(tb.cfg, "user", "create", "hd-new1", "--mail", "new1@example.com",
                         "--firstname", "New", "--name", "One", "--phone", "33600000010")
    assert rc == 0, out + err
    assert out.startswith("created hd-new1 (login id "), out
    codes = CODE.findall(out)
    assert len(codes) == 1 and out.count(codes[0]) == 1, out
    assert codes[0] not in err, err
    assert "activation code for hd-new1: %s (valid 30 minutes" % codes[0] in out, out

    # show says it is pending, never the code.
    rc, out, err = admin(tb.cfg, "user", "show", "hd-new1")
    assert rc == 0 and "pending activation" in out and not CODE.search(out), out + err
    assert out.startswith("hd-new1 (active, user), New One <new1@example.com>, pending "
                          "activation, phone 33600000010, 0 tools"), out
    rc, j, err = admin(tb.cfg, "user", "list", json_out=True)
    entry = [e for e in j["logins"] if e["login"] == "hd-new1"][0]
    assert entry["activation"] == "pending" and codes[0] not in json.dumps(j), j
    rc, out, err = admin(tb.cfg, "user", "list")
    assert rc == 0 and codes[0] not in out, out

    # Again: TrustBuilder's NOK:loginexists, exit status 1.
    rc, out, err = admin(tb.cfg, "user", "create", "hd-new1")
    assert rc == 1 and "NOK:loginexists" in out, out + err
    rc, j, err = admin(tb.cfg, "user", "create", "hd-new1", json_out=True)
    assert rc == 1 and j["ok"] is False and j["not_found"] is False, j
    assert j["status"] == "NOK:loginexists" and "NOK:loginexists" in j["error"], j

    # --json: the code once, in "code".
    rc, j, err = admin(tb.cfg, "user", "create", "hd-new2", json_out=True)
    assert rc == 0 and j["created"] is True and j["activation"] == "pending", j
    assert CODE.fullmatch(j["code"]) and json.dumps(j).count(j["code"]) == 1, j
    assert j["code"] not in err

    # A login TrustBuilder refuses (its charset): NOK:login.
    rc, out, err = admin(tb.cfg, "user", "create", "hd bad/login")
    assert rc == 1 and "NOK:login" in out, out + err


def test_create_inactive_then_activate_code(tb):
    rc, j, err = admin(tb.cfg, "user", "create", "hd-new3", "--activation", "inactive",
                       json_out=True)
    assert rc == 0 and j["activation"] == "inactive" and CODE.fullmatch(j["code"]), j
    code = j["code"]
    rc, out, err = admin(tb.cfg, "user", "show", "hd-new3")
    assert rc == 0 and "inactive activation code" in out and code not in out, out + err
    rc, j2, _ = admin(tb.cfg, "user", "show", "hd-new3", json_out=True)
    assert j2["activation"] == "inactive" and code not in json.dumps(j2), j2

    rc, out, err = admin(tb.cfg, "user", "activate-code", "hd-new3")
    assert rc == 0, out + err
    assert out.count(code) == 1 and "activation code (now active) for hd-new3: " + code in out, out
    rc, j, _ = admin(tb.cfg, "user", "show", "hd-new3", json_out=True)
    assert j["activation"] == "pending", j
    # No inactive code any more: TrustBuilder says NOK.
    rc, j, err = admin(tb.cfg, "user", "activate-code", "hd-new3", json_out=True)
    assert rc == 1 and j["ok"] is False and j["status"] == "NOK", j


def test_create_with_a_mailed_link(tb):
    # A link needs a mail address: refused before anything is sent.
    before = soap_calls(tb.sim)
    rc, out, err = admin(tb.cfg, "user", "create", "hd-new4", "--activation", "mail")
    assert rc == 1 and "--mail" in err and out == "", out + err
    assert soap_calls(tb.sim) == before
    sent = tb.sim.calls("loginSendByMail")
    rc, out, err = admin(tb.cfg, "user", "create", "hd-new4", "--activation", "mail",
                         "--mail", "new4@example.com")
    assert rc == 0 and "mailed the activation link to new4@example.com" in out, out + err
    assert tb.sim.calls("loginSendByMail") == sent + 1
    rc, j, _ = admin(tb.cfg, "user", "show", "hd-new4", json_out=True)
    assert j["activation"] == "link", j
    rc, j, _ = admin(tb.cfg, "user", "create", "hd-new5", "--activation", "mail", "--mail",
                     "new5@example.com", json_out=True)
    assert rc == 0 and j["activation"] == "link" and "code" not in j, j


def test_send_activation(tb):
    rc, out, err = admin(tb.cfg, "user", "send-activation", "hd-carol")
    assert rc == 0 and "mailed hd-carol's activation link to carol@example.com" in out, out + err
    rc, j, _ = admin(tb.cfg, "user", "send-activation", "hd-carol", json_out=True)
    assert rc == 0 and j["mailed"] is True and j["login_id"] == 13, j
    # No mail address: loginSendByMail answers NOK.
    rc, out, err = admin(tb.cfg, "user", "send-activation", "hd-dave")
    assert rc == 1 and "loginSendByMail answered NOK" in out, out + err


# ---------------------------------------------------------------------------------------------
# user update, delete


def show_json(tb, name):
    rc, j, err = admin(tb.cfg, "user", "show", name, json_out=True)
    assert rc == 0, err
    return j


def test_update_keeps_the_fields_not_asked(tb):
    before = show_json(tb, "hd-bob")
    rc, out, err = admin(tb.cfg, "user", "update", "hd-bob", "--mail", "bob@example.org")
    assert rc == 0 and 'updated hd-bob: mail "bob@example.org"' in out, out + err
    after = show_json(tb, "hd-bob")
    assert after["mail"] == "bob@example.org", after
    for key in ("firstname", "name", "phone", "status", "role", "login", "id"):
        assert after[key] == before[key], (key, before, after)
    assert (after["status"], after["role"], after["phone"]) == ("blocked", "manager",
                                                                "33600000002")

    rc, j, err = admin(tb.cfg, "user", "update", "hd-bob", "--status", "active", "--phone",
                       "33600000022", json_out=True)
    assert rc == 0 and j["ok"] and j["status"] == "active" and j["phone"] == "33600000022", j
    after = show_json(tb, "hd-bob")
    assert (after["status"], after["role"], after["mail"], after["firstname"], after["name"]) == (
        "active", "manager", "bob@example.org", "Bob", "Builder"), after
    rc, out, err = admin(tb.cfg, "user", "update", "hd-bob", "--status", "blocked")
    assert rc == 0 and "status blocked" in out, out + err
    assert show_json(tb, "hd-bob")["status"] == "blocked"

    # Rename: the old name is gone (exit 3), the new one keeps everything.
    rc, out, err = admin(tb.cfg, "user", "update", "hd-bob", "--new-login", "hd-robert")
    assert rc == 0 and "login renamed to hd-robert" in out, out + err
    rc, out, err = admin(tb.cfg, "user", "show", "hd-bob")
    assert rc == 3, out + err
    renamed = show_json(tb, "hd-robert")
    assert (renamed["id"], renamed["mail"], renamed["phone"], renamed["role"]) == (
        12, "bob@example.org", "33600000022", "manager"), renamed
    # A name another login has: NOK:login already used.
    rc, out, err = admin(tb.cfg, "user", "update", "hd-robert", "--new-login", "hd-alice")
    assert rc == 1 and "NOK:login already used" in out, out + err
    # Nothing asked: refused before anything is sent.
    before = soap_calls(tb.sim)
    rc, out, err = admin(tb.cfg, "user", "update", "hd-robert")
    assert rc == 1 and "nothing to update" in err, out + err
    assert soap_calls(tb.sim) == before


def test_delete(tb):
    rc, out, err = admin(tb.cfg, "user", "delete", "hd-erin")
    assert rc == 1 and "--yes" in err, out + err
    rc, out, err = admin(tb.cfg, "user", "delete", "hd-erin", "--yes")
    assert rc == 0 and out.startswith("deleted hd-erin (login id 15)"), out + err
    rc, j, err = admin(tb.cfg, "user", "show", "hd-erin", json_out=True)
    assert rc == 3 and j["not_found"] is True, j
    rc, j, err = admin(tb.cfg, "user", "delete", "hd-erin", "--yes", json_out=True)
    assert rc == 3 and j["not_found"] is True, j
    rc, j, err = admin(tb.cfg, "user", "create", "hd-gone", json_out=True)
    assert rc == 0
    rc, j, err = admin(tb.cfg, "user", "delete", "hd-gone", "--yes", json_out=True)
    assert rc == 0 and j["deleted"] is True and j["login"] == "hd-gone", j


# ---------------------------------------------------------------------------------------------
# codes: restore, new-code, reset-password; pin unlock


@pytest.mark.parametrize("args,what", [
    (["user", "restore"], "restore code"),
    (["user", "new-code"], "activation code for another device"),
    (["user", "reset-password"], "recovery code"),
])
def test_codes_are_printed_once(tb, args, what):
    rc, out, err = admin(tb.cfg, *(args + ["hd-carol"]))
    assert rc == 0, out + err
    m = re.search(r"%s for hd-carol: (\d+) \(" % re.escape(what), out)
    assert m and out.count(m.group(1)) == 1 and m.group(1) not in err, out
    rc, j, err = admin(tb.cfg, *(args + ["hd-carol"]), json_out=True)
    assert rc == 0 and j["code"].isdigit() and json.dumps(j).count(j["code"]) == 1, j
    assert j["login"] == "hd-carol" and j["login_id"] == 13, j


def test_pin_unlock(tb):
    rc, out, err = admin(tb.cfg, "pin", "unlock", "hd-carol")
    assert rc == 0 and "reset the PIN error counter of hd-carol" in out, out + err
    rc, out, err = admin(tb.cfg, "user", "show", "hd-carol")
    assert '"Pixel": active' in out, out
    # Once until the next successful login: TrustBuilder's refusal, its cause named.
    rc, j, err = admin(tb.cfg, "pin", "unlock", "hd-carol", json_out=True)
    assert rc == 1 and j["ok"] is False and j["status"] == "NOK:already reset", j
    assert "loginResetPINErrorCounter answered NOK:already reset" in j["error"], j


# ---------------------------------------------------------------------------------------------
# credential list, rename, remove


def test_credentials(tb):
    rc, out, err = admin(tb.cfg, "credential", "list", "hd-alice")
    assert rc == 0 and 'mobile app 501 "iPhone": active, push enabled' in out, out + err
    assert len(out.splitlines()) == 4, out
    rc, j, err = admin(tb.cfg, "credential", "list", "hd-alice", json_out=True)
    assert rc == 0 and len(j["tools"]) == 4 and j["login"] == "hd-alice", j
    rc, out, err = admin(tb.cfg, "credential", "list", "hd-dave")
    assert rc == 0 and out == "hd-dave has no tools\n", out + err

    # 501 is a mobile app and a desktop tool: which one, asked before anything changes.
    rc, out, err = admin(tb.cfg, "credential", "rename", "hd-alice", "501", "x")
    assert rc == 1 and "ma:501, ca:501" in err and len(err.strip().splitlines()) == 1, out + err
    rc, out, err = admin(tb.cfg, "credential", "rename", "hd-alice", "ca:501", "old laptop")
    assert rc == 0 and 'desktop 501 of hd-alice is now named "old laptop"' in out, out + err
    rc, j, err = admin(tb.cfg, "credential", "rename", "hd-alice", "701", "Edge", json_out=True)
    assert rc == 0 and j["tool"]["kind"] == "va" and j["new_name"] == "Edge", j
    names = {(t["kind"], t["id"]): t["name"] for t in show_json(tb, "hd-alice")["tools"]}
    assert names == {("ma", 501): "iPhone", ("ca", 501): "old laptop", ("mac", 601): "bank app",
                     ("va", 701): "Edge"}, names

    # No such tool: exit status 3; not a tool id: 1.
    rc, out, err = admin(tb.cfg, "credential", "rename", "hd-alice", "999", "x")
    assert rc == 3 and "has no tool 999" in out, out + err
    rc, j, err = admin(tb.cfg, "credential", "remove", "hd-alice", "mac:501", json_out=True)
    assert rc == 3 and j["not_found"] is True, j
    rc, out, err = admin(tb.cfg, "credential", "remove", "hd-alice", "VSMT1234")
    assert rc == 1 and "tool id is a number" in err, out + err

    rc, out, err = admin(tb.cfg, "credential", "remove", "hd-alice", "601")
    assert rc == 0 and "removed mAccess 601 from hd-alice" in out, out + err
    rc, j, err = admin(tb.cfg, "credential", "remove", "hd-alice", "va:701", json_out=True)
    assert rc == 0 and j["removed"] is True and j["tool"]["id"] == 701, j
    kinds = sorted((t["kind"], t["id"]) for t in show_json(tb, "hd-alice")["tools"])
    assert kinds == [("ca", 501), ("ma", 501)], kinds


# ---------------------------------------------------------------------------------------------
# check; what TrustBuilder cannot be asked or refuses


def test_check(tb):
    rc, out, err = admin(tb.cfg, "check")
    assert rc == 0 and out.startswith("TrustBuilder service 4242: authentication API OK"), out + err
    rc, j, err = admin(tb.cfg, "check", json_out=True)
    assert rc == 0 and j["service_id"] == SERVICE_ID and j["provisioning_ms"] >= 0, j


def test_wrong_service_id_names_the_nok_cause(tb):
    rc, out, err = admin(tb.wrong_service, "user", "show", "hd-alice")
    assert rc == 1, out + err
    assert "loginSearch answered NOK:srv unknown" in out and "trustbuilder.service_id" in out, out
    rc, j, err = admin(tb.wrong_service, "user", "create", "hd-never", json_out=True)
    assert rc == 1 and j["status"] == "NOK:srv unknown" and j["not_found"] is False, j
    rc, out, err = admin(tb.wrong_service, "check")
    assert rc == 1 and "NOK:srv unknown" in out, out + err
    rc, out, err = admin(tb.cfg, "user", "show", "hd-never")
    assert rc == 3, out + err


def test_unreachable_service(tb):
    rc, out, err = admin(tb.unreachable, "user", "show", "hd-alice")
    assert rc == 1 and "TrustBuilder unreachable" in out, out + err
    rc, j, err = admin(tb.unreachable, "user", "list", json_out=True)
    assert rc == 1 and j["ok"] is False and j["status"] is None, j


@pytest.mark.parametrize("args,what", [
    (["temp-code", "show", "hd-alice"], "temp-code show"),
    (["temp-code", "set", "hd-alice"], "temp-code set"),
    (["temp-code", "clear", "hd-alice"], "temp-code clear"),
    (["pin", "clear", "hd-alice"], "pin clear"),
    (["sms", "register", "15551234567"], "sms register"),
    (["voice", "register", "15551234567"], "voice register"),
    (["server-time"], "server-time"),
    (["import", "/dev/null"], "import"),
    (["credential", "add", "hd-alice", "VSMT12345678", "--code", "123456"], "credential add"),
    (["user", "create", "hd-pin", "--pin-file", "/dev/null"], "user create --pin-file"),
    (["user", "update", "hd-alice", "--pin-file", "/dev/null"], "user update --pin-file"),
    (["credential", "remove", "hd-alice", "501", "--type", "sms"], "--type"),
])
def test_vip_only_commands_are_refused(tb, args, what):
    before = soap_calls(tb.sim)
    assert_refused(tb.cfg, args, what, "VIP", "trustbuilder")
    assert soap_calls(tb.sim) == before


def assert_refused(cfg, args, what, only, configured):
    """One line on stderr, nothing on stdout (--json or not), exit status 1."""
    line = 'vip-bridge: `%s` is %s-only: this configuration has backend = "%s"' % (
        what, only, configured)
    for json_out in (False, True):
        rc, out, err = admin(cfg, *args, json_out=json_out)
        assert rc == 1 and out == "", out + err
        assert err.strip().splitlines() == [line], err


@pytest.fixture(scope="module")
def vip_cfg(tb, certs):
    """A backend = "vip" configuration (VIP is never called: the commands are refused first)."""

    class NoVip:
        @staticmethod
        def url(service):
            return "https://127.0.0.1:%d/vipuserservices/%s_1_10" % (harness.free_port(), service)

    path = os.path.join(tb.dir, "vip.toml")
    with open(path, "w") as f:
        f.write(harness.vip_toml(NoVip, certs))
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("args,what", [
    (["user", "list"], "user list"),
    (["user", "restore", "alice"], "user restore"),
    (["user", "send-activation", "alice"], "user send-activation"),
    (["user", "activate-code", "alice"], "user activate-code"),
    (["user", "new-code", "alice"], "user new-code"),
    (["user", "reset-password", "alice"], "user reset-password"),
    (["pin", "unlock", "alice"], "pin unlock"),
    (["user", "create", "alice", "--activation", "code"], "user create --activation"),
    (["user", "create", "alice", "--mail", "a@example.com"], "--mail"),
    (["user", "update", "alice", "--phone", "1"], "--phone"),
])
def test_trustbuilder_only_commands_are_refused_with_vip(vip_cfg, args, what):
    assert_refused(vip_cfg, args, what, "TrustBuilder", "vip")
