"""The README's "VPN servers, as tested" table states the settings the VPN end-to-end tests
really use (tests/test_vpn_ocserv.py, tests/test_vpn_openvpn.py): a change to either side
without the other fails here."""

import inspect
import os
import re

import harness
import test_vpn_ocserv as ocserv_test
import test_vpn_openvpn  # noqa: F401  (the module must import: its peers' settings live beside it)
from vpn import ocserv as ocserv_helpers
from vpn_openvpn import stack as openvpn_stack


def readme_table():
    with open(os.path.join(harness.REPO, "README.md")) as f:
        text = f.read()
    start = text.index("**VPN servers, as tested.**")
    return text[start:text.index("**Every hop needs the long timeout.**", start)]


def defaults(fn):
    return {k: v.default for k, v in inspect.signature(fn).parameters.items()
            if v.default is not inspect.Parameter.empty}


def test_ocserv_rows_are_the_tested_settings():
    table = readme_table()
    # Challenge mode: the stack's default radcli timing.
    d = defaults(ocserv_test.VpnStack.__init__)
    assert "radius_timeout %d`, `radius_retries %d` for challenge mode" % (
        d["radius_timeout"], d["radius_retries"]) in table, table
    assert 'push_mode = "challenge"' in ocserv_test.MENU_POLICY
    # Blocking push: the timing the push-through-retransmits case uses, and its push delay.
    assert "a %d s push over `radius_timeout %d`, `radius_retries %d`" % (
        ocserv_test.PUSH_DELAY_MS // 1000, ocserv_test.RADCLI_TIMEOUT,
        ocserv_test.RADCLI_RETRIES) in table, table
    assert "auth-timeout = 240" in table
    assert "auth-timeout = 240" in inspect.getsource(ocserv_helpers.Ocserv)
    assert "require_message_authenticator = false" in inspect.getsource(ocserv_test.bridge_toml)


def test_openvpn_row_is_the_tested_settings():
    table = readme_table()
    d = defaults(openvpn_stack.radiusplugin_cnf)
    row = re.search(r"authport=(\d+) acctport=(\d+) retry=(\d+) wait=(\d+)", table)
    assert row, table
    assert tuple(int(x) for x in row.groups()) == (
        d["authport"], d["acctport"], d["retry"], d["wait"]), (row.groups(), d)
    bridge = inspect.getsource(openvpn_stack.bridge_toml)
    assert "require_message_authenticator = false" in bridge
    assert 'accounting_listen = ["127.0.0.1:1813"]' in bridge
    assert "blocking only" in table
