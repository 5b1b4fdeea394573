"""pyrad with strict Message-Authenticator checking of replies, and raw-UDP checks of what is
dropped, what is answered, and how (Message-Authenticator first, Proxy-State in order,
Status-Server)."""

import socket
import struct

import pytest
from pyrad import client as pyrad_client
from pyrad import packet

from conftest import NAS6_SECRET, NAS_SECRET, UNKNOWN_SOURCE, USERS
from harness import (access_request, code_name, decode_reply, fresh_totp, pyrad_dict,
                     raw_attributes, reply_messages, reply_state, status_server, wrong_code)

SECRET = NAS_SECRET.encode()
QUIET = 0.7  # seconds to wait for a reply that must not come


def strict_check(req, raw):
    """pyrad's strict verification plus the placement rule: Message-Authenticator first."""
    reply = decode_reply(raw, SECRET)
    assert req.VerifyReply(reply, raw, enforce_ma=True), "pyrad refused the reply"
    attrs = raw_attributes(raw)
    assert attrs and attrs[0][0] == 80, "Message-Authenticator is not the first attribute"
    assert len(attrs[0][1]) == 16
    assert [t for t, _ in attrs].count(80) == 1
    return reply


def test_accept_reject_challenge_all_signed_with_ma_first(stack, udp):
    s = udp()
    req, raw = access_request(SECRET, "bob", fresh_totp(USERS["bob"]))
    reply = s.exchange(raw, stack.addr, timeout=10)
    assert code_name(reply) == "Access-Accept"
    strict_check(req, reply)

    req, raw = access_request(SECRET, "bob", wrong_code(USERS["bob"]))
    reply = s.exchange(raw, stack.addr, timeout=10)
    assert code_name(reply) == "Access-Reject"
    strict_check(req, reply)
    assert reply_messages(reply)

    req, raw = access_request(SECRET, "bob", "sms")
    reply = s.exchange(raw, stack.addr, timeout=10)
    assert code_name(reply) == "Access-Challenge"
    strict_check(req, reply)
    assert reply_state(reply)
    assert reply_messages(reply)


def test_pyrad_client_with_enforce_ma(stack):
    # pyrad's own client, enforce_ma=True: an unsigned or mis-signed reply would be ignored
    # and surface as a timeout.
    host, port = stack.addr
    c = pyrad_client.Client(server=host, authport=port, secret=SECRET, dict=pyrad_dict(),
                            enforce_ma=True, retries=1, timeout=10)
    req = c.CreateAuthPacket(code=packet.AccessRequest, User_Name="bob")
    req["User-Password"] = req.PwCrypt(wrong_code(USERS["bob"]))
    reply = c.SendPacket(req)
    assert reply.code == packet.AccessReject


def test_status_server_answered_at_once_without_vip(stack, udp):
    s = udp()
    before = stack.sim.counters()
    req, raw = status_server(SECRET)
    reply = s.exchange(raw, stack.addr, timeout=2)
    assert code_name(reply) == "Access-Accept"
    strict_check(req, reply)
    after = stack.sim.counters()
    assert after["calls"] == before["calls"], "Status-Server must never reach VIP"


def test_status_server_over_ipv6(stack, udp):
    try:
        addr = stack.bridge.addr(socket.AF_INET6)
    except LookupError:
        pytest.skip("no IPv6 listener")
    s = udp("::1")
    req, raw = status_server(NAS6_SECRET.encode())
    reply = s.exchange(raw, addr, timeout=2)
    assert code_name(reply) == "Access-Accept"
    assert req.VerifyReply(decode_reply(reply, NAS6_SECRET.encode()), reply, enforce_ma=True)


def test_proxy_state_copied_in_order(stack, udp):
    s = udp()
    states = [b"first", b"\x00second\xff", b"third"]
    req, raw = access_request(SECRET, "frank", wrong_code(USERS["frank"]), proxy_states=states)
    # pyrad groups attributes by type; check the request really carries them in order.
    assert [v for t, v in raw_attributes(raw) if t == 33] == states
    reply = s.exchange(raw, stack.addr, timeout=10)
    assert code_name(reply) == "Access-Reject"
    strict_check(req, reply)
    assert [v for t, v in raw_attributes(reply) if t == 33] == states
    # Status-Server too.
    req, raw = status_server(SECRET)
    raw = add_proxy_states(raw, [b"ps1", b"ps2"], SECRET)
    reply = s.exchange(raw, stack.addr, timeout=2)
    assert [v for t, v in raw_attributes(reply) if t == 33] == [b"ps1", b"ps2"]


def add_proxy_states(raw, states, secret):
    """Appends Proxy-State attributes to a signed request and re-signs its
    Message-Authenticator (which pyrad puts first)."""
    import hashlib
    import hmac

    body = bytearray(raw)
    for v in states:
        body += bytes([33, len(v) + 2]) + v
    body[2:4] = struct.pack("!H", len(body))
    assert body[20] == 80
    body[22:38] = bytes(16)
    body[22:38] = hmac.new(secret, bytes(body), hashlib.md5).digest()
    return bytes(body)


def check_dropped(stack, sock, raw):
    sock.send(raw, stack.addr)
    got = sock.recv(QUIET)
    assert got is None, "expected no reply, got %s" % code_name(got)


def test_drops_and_still_answers(stack, udp):
    s = udp()
    before = stack.sim.counters()["calls"]
    code = wrong_code(USERS["frank"])

    # Unknown client.
    stranger = udp(UNKNOWN_SOURCE)
    _, raw = access_request(SECRET, "frank", code)
    stranger.send(raw, stack.addr)
    assert stranger.recv(QUIET) is None, "unknown client answered"

    # Wrong secret (the Message-Authenticator does not verify).
    _, raw = access_request(b"not-the-secret", "frank", code)
    check_dropped(stack, s, raw)

    # Bad Message-Authenticator (one bit flipped).
    _, raw = access_request(SECRET, "frank", code)
    bad = bytearray(raw)
    assert bad[20] == 80
    bad[30] ^= 0x01
    check_dropped(stack, s, bytes(bad))

    # Missing Message-Authenticator (required for this client).
    _, raw = access_request(SECRET, "frank", code, ma=False)
    assert 80 not in [t for t, _ in raw_attributes(raw)]
    check_dropped(stack, s, raw)

    # Status-Server without Message-Authenticator.
    _, raw = status_server(SECRET, ma=False)
    check_dropped(stack, s, raw)

    # Truncated: the Length field claims more than was sent.
    _, raw = access_request(SECRET, "frank", code)
    check_dropped(stack, s, raw[:-5])

    # Oversized: 5000 octets with Length = 5000.
    _, raw = access_request(SECRET, "frank", code)
    big = bytearray(raw) + bytes(5000 - len(raw))
    big[2:4] = struct.pack("!H", 5000)
    check_dropped(stack, s, bytes(big))

    # An attribute whose length runs past the end of the packet.
    _, raw = access_request(SECRET, "frank", code)
    broken = bytearray(raw)
    broken[21 + 18] = 250  # the attribute after Message-Authenticator
    check_dropped(stack, s, bytes(broken))

    assert stack.sim.counters()["calls"] == before, "a dropped packet reached VIP"

    # ... and the next good request is answered.
    req, raw = status_server(SECRET)
    assert code_name(s.exchange(raw, stack.addr, timeout=2)) == "Access-Accept"
    req, raw = access_request(SECRET, "frank", code)
    reply = s.exchange(raw, stack.addr, timeout=10)
    assert code_name(reply) == "Access-Reject"
    strict_check(req, reply)


def test_bad_message_authenticator_does_not_poison_the_cache(stack, udp):
    # A forged copy (same Identifier and authenticator, bad MAC) sent first must not make the
    # genuine request look like a duplicate.
    s = udp()
    req, raw = access_request(SECRET, "frank", wrong_code(USERS["frank"]))
    forged = bytearray(raw)
    forged[25] ^= 0x40
    check_dropped(stack, s, bytes(forged))
    reply = s.exchange(raw, stack.addr, timeout=10)
    assert code_name(reply) == "Access-Reject"
    strict_check(req, reply)
