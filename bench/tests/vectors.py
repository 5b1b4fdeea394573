# Regenerates the pyrad vectors of packets.rs: .venv/bin/python bench/tests/vectors.py
from pyrad.packet import AuthPacket, AccessAccept, Packet
from pyrad.dictionary import Dictionary
d = Dictionary(__import__("os").path.join(__import__("os").path.dirname(__file__), "vectors.dict"))
auth = bytes(range(16))
p = AuthPacket(id=42, secret=b"s3cret", authenticator=auth, dict=d)
p.add_message_authenticator()
p["User-Name"] = "alice"
p["User-Password"] = p.PwCrypt("123456")
p["NAS-IP-Address"] = "127.0.0.1"
p["NAS-Identifier"] = "vip-load"
p["State"] = bytes.fromhex("deadbeef")
raw = p.RequestPacket()
print("REQ", raw.hex())
# reply
r = p.CreateReply()
r.code = AccessAccept
r.add_message_authenticator()
r["Reply-Message"] = "welcome"
rraw = r.ReplyPacket()
print("REP", rraw.hex())
