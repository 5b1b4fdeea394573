"""Known-answer vector for the Rust Message-Authenticator unit tests (radius/packet.rs).

    python ma_vector.py            -> prints the hex of a pyrad-signed Access-Request
    python ma_vector.py REPLYHEX   -> verifies a reply to it strictly (enforce_ma)
"""
import os
import sys

from pyrad import dictionary, packet

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = b"testing123"


def request():
    d = dictionary.Dictionary(os.path.join(HERE, "dictionary"))
    req = packet.AuthPacket(code=packet.AccessRequest, id=7, secret=SECRET, dict=d,
                            authenticator=bytes(range(16)), message_authenticator=True)
    req["User-Name"] = "alice"
    req["User-Password"] = req.PwCrypt("123456")
    req["NAS-Identifier"] = "vector"
    return d, req


def main():
    d, req = request()
    raw = req.RequestPacket()
    if len(sys.argv) == 1:
        print(raw.hex())
        return
    rawreply = bytes.fromhex(sys.argv[1])
    reply = packet.Packet(packet=rawreply, dict=d, secret=SECRET)
    ok = req.VerifyReply(reply, rawreply, enforce_ma=True)
    print("verified" if ok else "NOT VERIFIED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
