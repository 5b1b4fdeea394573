"""A minimal, independent client of the vip-bridge PAM socket protocol (u32 big-endian length +
JSON frames), for cross-checking the wire format and peer-credential checks from outside Rust.

usage: raw_client.py SOCKET [JSON-MESSAGE ...]   -> prints each reply as one JSON line
"""

import json
import socket
import struct
import sys


def send(s, obj):
    body = json.dumps(obj).encode()
    s.sendall(struct.pack(">I", len(body)) + body)


def recv(s):
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise EOFError("truncated frame")
        body += chunk
    return json.loads(body)


def main():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sys.argv[1])
    for raw in sys.argv[2:] or ['{"type":"hello","version":1}']:
        try:
            send(s, json.loads(raw))
        except (BrokenPipeError, ConnectionResetError):
            # The daemon refuses some peers at once (and closes); its refusal is still
            # there to read, as pam_vip.so reads it.
            pass
        reply = recv(s)
        print(json.dumps(reply), flush=True)
        if reply is None or reply.get("type") == "error":
            break


if __name__ == "__main__":
    main()
