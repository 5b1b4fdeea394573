"""Retransmits (RFC 5080 §2.2.2) against a real pending push: a retransmit while the blocking
push is pending fires no second push and gets no second answer; a retransmit after the answer
gets the byte-identical cached reply without reprocessing."""

import time

from conftest import NAS_SECRET, PUSH_DELAY_MS
from harness import access_request, code_name, decode_reply, raw_attributes

SECRET = NAS_SECRET.encode()


def test_retransmit_during_blocking_push_then_after_answer(stack, udp):
    s = udp()
    pushes_before = stack.sim.calls("authenticateUserWithPush")
    req, raw = access_request(SECRET, "dave", "push")
    t0 = time.time()
    s.send(raw, stack.addr)
    time.sleep(1.0)
    s.send(raw, stack.addr)  # retransmit while the push is pending
    time.sleep(0.8)
    s.send(raw, stack.addr)  # and again

    first = s.recv(timeout=15)
    elapsed = time.time() - t0
    assert first is not None, "no answer to the push login"
    assert code_name(first) == "Access-Accept", code_name(first)
    assert elapsed >= PUSH_DELAY_MS / 1000.0 - 0.5, "answered before the phone approved"
    assert req.VerifyReply(decode_reply(first, SECRET), first, enforce_ma=True)
    assert raw_attributes(first)[0][0] == 80
    assert s.recv(timeout=1.5) is None, "a retransmit got its own answer"
    assert stack.sim.calls("authenticateUserWithPush") == pushes_before + 1

    # After the answer: the cached bytes, at once, without reprocessing.
    polls = stack.sim.calls("pollPushStatus")
    t1 = time.time()
    again = s.exchange(raw, stack.addr, timeout=2)
    assert again == first, "the cached reply is not byte-identical"
    assert time.time() - t1 < 1.0
    assert stack.sim.calls("authenticateUserWithPush") == pushes_before + 1
    assert stack.sim.calls("pollPushStatus") == polls

    # Same Identifier with a new authenticator is a new request, not a duplicate.
    req2, raw2 = access_request(SECRET, "dave", "000000", ident=req.id)
    reply2 = s.exchange(raw2, stack.addr, timeout=10)
    assert reply2 is not None and reply2 != first
    assert req2.VerifyReply(decode_reply(reply2, SECRET), reply2, enforce_ma=True)
