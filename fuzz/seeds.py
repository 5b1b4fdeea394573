#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (deterministic).

Run from anywhere: python3 fuzz/seeds.py. Needs only the standard library, plus the
`cryptography` package for the sealed-State seed (skipped with a note when it is missing).
The seeds are committed; re-run only when a wire format changes.
"""

import hashlib
import hmac
import json
import os
import struct
import sys

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------------------------ radius_packet
# Keep in step with fuzz_targets/radius_packet.rs (SECRET).
SECRET = b"testing123"


def attr(t, v):
    if isinstance(v, str):
        v = v.encode()
    return bytes([t, len(v) + 2]) + v


def hide_password(pw, secret, authenticator):
    """RFC 2865 section 5.2 User-Password hiding."""
    pw = pw.encode()
    pw += b"\0" * (-len(pw) % 16 or (16 if not pw else 0))
    out, prev = b"", authenticator
    for i in range(0, len(pw), 16):
        b = hashlib.md5(secret + prev).digest()
        c = bytes(x ^ y for x, y in zip(pw[i : i + 16], b))
        out += c
        prev = c
    return out


def request(code, ident, authenticator, attrs, with_ma=True):
    """A request; with_ma puts a correct Message-Authenticator first."""
    body = b"".join(attrs)
    if with_ma:
        body = attr(80, b"\0" * 16) + body
    pkt = bytes([code, ident]) + struct.pack(">H", 20 + len(body)) + authenticator + body
    if with_ma:
        mac = hmac.new(SECRET, pkt, hashlib.md5).digest()
        pkt = pkt[:22] + mac + pkt[38:]
    return pkt


def radius_seeds():
    auth = bytes(range(16))
    nas = [
        attr(4, bytes([192, 0, 2, 1])),  # NAS-IP-Address
        attr(32, "vpn-gw-1"),  # NAS-Identifier
        attr(31, "198.51.100.7"),  # Calling-Station-Id
    ]
    write(
        "radius_packet",
        "access_request_code",
        request(1, 1, auth, [attr(1, "alice"), attr(2, hide_password("123456", SECRET, auth))] + nas),
    )
    write(
        "radius_packet",
        "access_request_state_proxy_state",
        request(
            1,
            2,
            auth,
            [
                attr(1, "alice"),
                attr(2, hide_password("654321", SECRET, auth)),
                attr(24, bytes(range(200))),  # a State the size of a sealed one
                attr(33, "proxy-1"),
                attr(33, "proxy-2"),
                attr(95, bytes(16)),  # NAS-IPv6-Address
            ],
        ),
    )
    write(
        "radius_packet",
        "access_request_long_password_no_ma",
        request(
            1,
            3,
            auth,
            [attr(1, "zo\u00eb@example.com"), attr(2, hide_password("1234" + "9" * 60, SECRET, auth))],
            with_ma=False,
        ),
    )
    write(
        "radius_packet",
        "access_request_chap",
        request(1, 4, auth, [attr(1, "bob"), attr(3, bytes(17)), attr(60, bytes(16))], with_ma=False),
    )
    write("radius_packet", "status_server", request(12, 5, auth, [attr(33, "p")]))
    # The pyrad vector of radius-server/src/radius/testdata (same secret).
    with open(os.path.join(ROOT, "radius-server/src/radius/testdata/ma_request.hex")) as f:
        write("radius_packet", "pyrad_vector", bytes.fromhex(f.read().strip()))


# ------------------------------------------------------------------------------ soap_response
# Selector byte -> operation; keep in step with OPS in fuzz_targets/soap_response.rs.
SOAP_OPS = [
    ("resp_authenticate_user", 0),
    ("resp_check_otp", 1),
    ("resp_push", 2),
    ("resp_poll", 3),
    ("resp_user_info", 4),
    ("resp_send_otp", 5),
    ("resp_server_time", 6),
]


def soap_seeds():
    golden = os.path.join(ROOT, "shared/tests/golden")
    for name in sorted(os.listdir(golden)):
        if not name.startswith("resp_"):
            continue
        sel = next((s for p, s in SOAP_OPS if name.startswith(p)), 1)
        with open(os.path.join(golden, name), "rb") as f:
            write("soap_response", os.path.splitext(name)[0], bytes([sel]) + f.read())


# ---------------------------------------------------------------------------------- ipc_frame
def frame(msg):
    body = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()
    return struct.pack(">I", len(body)) + body


def ipc_seeds():
    hello = {"type": "hello", "version": 1}
    auth = {
        "type": "authenticate",
        "service": "sshd",
        "user": "alice",
        "remote_host": "192.0.2.7",
        "tty": "ssh",
        "answer": "123456",
        "state": "AQID+g==",
    }
    first = {"type": "authenticate", "service": "sudo", "user": "bob"}
    # Daemon side: what pam_vip.so sends (chunk byte 0 = 1 octet per read, 7 = 8).
    write("ipc_frame", "module_login", bytes([7]) + frame(hello) + frame(first) + frame(auth))
    write("ipc_frame", "module_login_split_reads", bytes([0]) + frame(hello) + frame(auth))
    # Module side: what the daemon answers.
    challenge = {
        "type": "outcome",
        "outcome": {
            "Challenge": {
                "prompt": "Approve and select 42, then press Enter",
                "echo": False,
                "state": [9] * 40,
            }
        },
    }
    accept = {
        "type": "outcome",
        "outcome": {
            "Accept": {
                "factor": "Push",
                "credential_id": "VSMT1234",
                "credential_type": None,
                "authn_id": "a1",
                "failed_open": False,
            }
        },
    }
    reject = {"type": "outcome", "outcome": {"Reject": {"reason": "BadCode", "message": "Wrong code"}}}
    error = {"type": "error", "kind": "busy", "message": "too many connections"}
    write("ipc_frame", "daemon_answers", bytes([7]) + frame(hello) + frame(challenge) + frame(accept) + frame(reject))
    write("ipc_frame", "daemon_refuses", bytes([3]) + frame(error))


# ------------------------------------------------------------------------------- state_unseal
# Keep in step with fuzz_targets/state_unseal.rs (KEY, USER, CLIENT).
KEY = bytes(range(32))
USER = "alice"
CLIENT = "radius/vpn"


def _rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def _qr(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF
    s[b] = _rotl(s[b] ^ s[c], 7)


def hchacha20(key, nonce16):
    s = list(struct.unpack("<4I", b"expand 32-byte k")) + list(struct.unpack("<8I", key)) + list(
        struct.unpack("<4I", nonce16)
    )
    for _ in range(10):
        _qr(s, 0, 4, 8, 12)
        _qr(s, 1, 5, 9, 13)
        _qr(s, 2, 6, 10, 14)
        _qr(s, 3, 7, 11, 15)
        _qr(s, 0, 5, 10, 15)
        _qr(s, 1, 6, 11, 12)
        _qr(s, 2, 7, 8, 13)
        _qr(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha20poly1305_seal(key, nonce24, plain, aad):
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\0\0\0\0" + nonce24[16:], plain, aad)


def tags():
    return (
        hashlib.sha256(USER.lower().encode()).digest()[:16],
        hashlib.sha256(CLIENT.encode()).digest()[:8],
    )


def field(s):
    s = s.encode()
    return bytes([len(s)]) + s


def state_seeds():
    user_tag, client_tag = tags()
    steps = {
        "menu": b"\x00",
        "next_code": b"\x01" + field("123456") + field("9999"),
        "sent_code_voice": b"\x02\x01",
        "push": b"\x03" + field("0123456789abcdef") + field("42"),
    }
    # Mode 2: step part only (the target adds a live expiry and the right owner tags).
    for name, step in steps.items():
        write("state_unseal", "step_" + name, b"\x02" + step)
    # Mode 3: a Step for seal -> open (kind, then length-prefixed fields).
    write("state_unseal", "seal_push", b"\x03\x03" + field("0123456789abcdef") + field("42"))
    write("state_unseal", "seal_next_code", b"\x03\x01" + field("123456") + field(""))
    # Mode 1: a whole plaintext, expired in 1970.
    write("state_unseal", "plain_expired_menu", b"\x01" + struct.pack(">Q", 1000) + user_tag + client_tag + b"\x00")
    # Mode 0: a real sealed token (live until 2100), as a NAS sends it back.
    try:
        # Known-answer check of HChaCha20 (draft-irtf-cfrg-xchacha-03, section 2.2.1).
        kat = hchacha20(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927"))
        assert kat.hex() == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc", kat.hex()
        expires_ms = 4_102_444_800_000  # 2100-01-01T00:00:00Z
        plain = struct.pack(">Q", expires_ms) + user_tag + client_tag + steps["push"]
        nonce = hashlib.sha256(b"vip-bridge fuzz seed nonce").digest()[:24]
        token = b"\x01" + nonce + xchacha20poly1305_seal(KEY, nonce, plain, b"\x01")
        write("state_unseal", "token_push", b"\x00" + token)
    except ImportError:
        print("note: python3 'cryptography' missing; token_push seed not written", file=sys.stderr)


# -------------------------------------------------------------------------------- config_load
FULL_CONFIG = """\
[vip]
timeout = "5s"
max_in_flight = 32
request_id_prefix = "vb_fuzz"
health_check_interval = "15s"

[engine]
state_ttl = "2m"
poll_interval = "2s"
user_info_ttl = "30s"

[engine.throttle]
push_per_user = { count = 3, per = "5m" }
codes_per_user = { count = 10, per = "5m" }
requests_per_client = { count = 2000, per = "1s" }

[policies.default]
mode = "pin_otp"
code_length = 8
auth_level = 2

[policies.ssh]
mode = "challenge"
push_mode = "challenge"
push_timeout = "60s"
fail_mode = "open"

[radius]
listen = ["127.0.0.1:1812", "[::1]:1812"]
response_cache_ttl = "20s"
max_in_flight = 128
response_cache_size = 1024
receive_buffer = 1048576
shutdown_timeout = "5s"

[[radius.clients]]
name = "vpn"
address = "10.0.0.0/24"
secret = "testing123"
policy = "ssh"

[[radius.clients]]
name = "wifi"
address = "2001:db8::/32"
secret = "s3cret"
require_message_authenticator = false

[pam]
socket = "/run/vip-bridge/pam.sock"
allowed_uids = [1000]
default_policy = "default"
read_timeout = "10s"
request_timeout = "90s"
connection_timeout = "5m"
max_connections = 64
services = { sshd = { policy = "ssh" }, sudo = { policy = "default" } }

[metrics]
listen = "127.0.0.1:9812"

[log]
format = "json"
level = "vip_bridge=debug,info"
"""


def config_seeds():
    with open(os.path.join(ROOT, "packaging/vip-bridge.toml"), "rb") as f:
        write("config_load", "packaged", f.read())
    write("config_load", "full", FULL_CONFIG)
    write("config_load", "minimal_radius", '[[radius.clients]]\nname = "vpn"\naddress = "10.0.0.1"\nsecret = "x"\n')
    # Regression: read without end (and out of memory) before the secret file size bound.
    write("config_load", "secret_file_dev_zero", '[[radius.clients]]\nname = "vpn"\naddress = "10.0.0.1"\nsecret_file = "/dev/zero"\n')


if __name__ == "__main__":
    radius_seeds()
    soap_seeds()
    ipc_seeds()
    state_seeds()
    config_seeds()
    for t in sorted(os.listdir(CORPUS)):
        n = len(os.listdir(os.path.join(CORPUS, t)))
        print(f"{t}: {n} seeds")
