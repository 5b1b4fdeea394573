"""radclient (freeradius-utils) against vip-bridge + vip-sim: a code is accepted, a bad code
is rejected with a Reply-Message, and an SMS challenge round is answered with its State."""

from conftest import NAS_SECRET, USERS
from harness import fresh_totp, q, radclient, wrong_code


def test_code_accepted(stack):
    code = fresh_totp(USERS["alice"])
    got, attrs, out = radclient(stack.addr, NAS_SECRET, [
        ("User-Name", q("alice")), ("User-Password", q(code)),
        ("Message-Authenticator", "0x00"),
    ])
    assert got == "Access-Accept", out
    assert "Message-Authenticator" in attrs, out


def test_bad_code_rejected_with_reply_message(stack):
    before = stack.sim.calls("authenticateUser")
    got, attrs, out = radclient(stack.addr, NAS_SECRET, [
        ("User-Name", q("alice")), ("User-Password", q(wrong_code(USERS["alice"]))),
        ("Message-Authenticator", "0x00"),
    ])
    assert got == "Access-Reject", out
    assert attrs.get("Reply-Message"), out
    assert stack.sim.calls("authenticateUser") == before + 1


def test_sms_challenge_answered_with_state(stack):
    got, attrs, out = radclient(stack.addr, NAS_SECRET, [
        ("User-Name", q("erin")), ("User-Password", q("sms")),
        ("Message-Authenticator", "0x00"),
    ])
    assert got == "Access-Challenge", out
    assert attrs.get("Reply-Message"), out
    states = attrs.get("State")
    assert states and states[0].startswith("0x"), out
    code = stack.sim.sent_code("erin")
    got, attrs, out = radclient(stack.addr, NAS_SECRET, [
        ("User-Name", q("erin")), ("User-Password", q(code)), ("State", states[0]),
        ("Message-Authenticator", "0x00"),
    ])
    assert got == "Access-Accept", out
    # The State is single-use: replaying the answer is refused.
    got, attrs, out = radclient(stack.addr, NAS_SECRET, [
        ("User-Name", q("erin")), ("User-Password", q(code)), ("State", states[0]),
        ("Message-Authenticator", "0x00"),
    ])
    assert got == "Access-Reject", out


def test_without_message_authenticator_radclient_gets_no_answer(stack):
    # The "nas" client requires Message-Authenticator: radclient without it times out.
    got, _, out = radclient(stack.addr, NAS_SECRET, [
        ("User-Name", q("alice")), ("User-Password", q("123456")),
    ], timeout=1, retries=1)
    assert got is None, out
