"""A whole IMAP session with Python's standard imaplib, against a Strata server.

Usage: imaplib_session.py HOST PORT CAFILE USER PASSWORD
Exits non-zero (with the failing step) if the server misbehaves.
"""

import email
import email.header
import email.message
import email.policy
import imaplib
import ssl
import sys
import time

host, port, cafile, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)


def ok(result, step):
    typ, data = result
    assert typ == "OK", f"{step}: {typ} {data}"
    return data


ok(m.login(user, password), "login")
caps = ok(m.capability(), "capability")[0].split()
assert b"IDLE" in caps and b"UIDPLUS" in caps and b"MOVE" in caps, caps
boxes = ok(m.list(), "list")
assert any(b.endswith(b' Sent') and b'\\Sent' in b for b in boxes), boxes
ok(m.create("Python/Tests"), "create")
ok(m.subscribe("Python/Tests"), "subscribe")
assert any(b"Python/Tests" in b for b in ok(m.lsub(), "lsub")), "lsub"

for i in range(5):
    msg = email.message.EmailMessage()
    msg["From"] = "Script <script@example.org>"
    msg["To"] = "alice@example.org"
    msg["Subject"] = f"imaplib message {i} \u00e9t\u00e9"
    msg.set_content(f"Hello number {i}.\n")
    msg.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream", filename="b.bin")
    ok(m.append("Python/Tests", "\\Flagged" if i == 0 else None, imaplib.Time2Internaldate(time.time()),
              msg.as_bytes().replace(b"\n", b"\r\n")), f"append {i}")

data = ok(m.select("Python/Tests"), "select")
assert data == [b"5"], data
# 8-bit search text travels as a literal, as RFC 3501 requires.
m.literal = "\u00e9t\u00e9".encode()
typ, data = m.search("UTF-8", "SUBJECT")
assert typ == "OK" and data[0].split() == [b"1", b"2", b"3", b"4", b"5"], data
data = ok(m.search(None, "FLAGGED"), "search flagged")
assert data == [b"1"], data
data = ok(m.fetch("1:5", "(UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE)"), "fetch")
assert len(data) == 5, data
data = ok(m.uid("FETCH", "3", "(BODY.PEEK[])"), "uid fetch")
parsed = email.message_from_bytes(data[0][1], policy=email.policy.compat32)
assert str(email.header.make_header(email.header.decode_header(parsed["Subject"]))) == "imaplib message 2 \u00e9t\u00e9"
assert parsed.get_payload()[1].get_payload(decode=True) == b"\x00\x01binary"
data = ok(m.fetch("2", "(BODY[1])"), "fetch part")
assert b"Hello number 1." in data[0][1], data
data = ok(m.fetch("2", "(FLAGS)"), "flags after fetch")
assert b"\\Seen" in data[0], data
ok(m.store("1:2", "+FLAGS", "(\\Deleted)"), "store")
data = ok(m.copy("3", "INBOX"), "copy")
data = ok(m.expunge(), "expunge")
assert data == [b"1", b"1"], data
data = ok(m.status("Python/Tests", "(MESSAGES UNSEEN)"), "status")
assert b"MESSAGES 3" in data[0], data
ok(m.close(), "close")
ok(m.rename("Python/Tests", "Python/Done"), "rename")
ok(m.select("Python/Done", readonly=True), "examine")
ok(m.unselect() if hasattr(m, "unselect") else m.close(), "unselect")
ok(m.delete("Python/Done"), "delete")
ok(m.noop(), "noop")
typ, _ = m.logout()
assert typ == "BYE", typ
print("imaplib session ok")
