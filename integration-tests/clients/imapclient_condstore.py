"""CONDSTORE and QRESYNC driven by imapclient (PyPI), as a Python mail program uses them.

Usage: imapclient_condstore.py HOST PORT CAFILE USER PASSWORD
Exits non-zero (with the failing step) if the server misbehaves.
"""

import ssl
import sys

from imapclient import IMAPClient

host, port, cafile, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
MESSAGE = b"From: a@example.org\r\nSubject: condstore %d\r\n\r\nbody %d\r\n"

with IMAPClient(host, port=port, ssl=True, ssl_context=ctx) as c:
    c.login(user, password)
    caps = c.capabilities()
    assert b"CONDSTORE" in caps and b"QRESYNC" in caps, caps
    assert c.enable("CONDSTORE") == [b"CONDSTORE"], "enable"
    c.create_folder("Sync")
    for i in range(1, 6):
        c.append("Sync", MESSAGE % (i, i))
    info = c.select_folder("Sync")
    highest = info[b"HIGHESTMODSEQ"]
    assert highest > 0, info

    # Every message carries a MODSEQ no higher than HIGHESTMODSEQ.
    all_ = c.fetch(c.search(["ALL"]), ["FLAGS", "MODSEQ"])
    assert len(all_) == 5, all_
    assert all(d[b"MODSEQ"][0] <= highest for d in all_.values()), all_

    # Flag changes, then only those come back with CHANGEDSINCE.
    c.add_flags([2, 4], [b"\\Flagged"])
    changed = c.fetch(c.search(["ALL"]), ["FLAGS"], modifiers=["CHANGEDSINCE %d" % highest])
    assert sorted(changed) == [2, 4], changed
    assert all(b"\\Flagged" in d[b"FLAGS"] and d[b"MODSEQ"][0] > highest for d in changed.values()), changed

    # SEARCH MODSEQ finds them, and says the highest MODSEQ among them.
    found = c.search(["MODSEQ", highest + 1])
    assert sorted(found) == [2, 4], found
    assert found.modseq == max(d[b"MODSEQ"][0] for d in changed.values()), found.modseq

    # STATUS HIGHESTMODSEQ moved with them.
    status = c.folder_status("Sync", ["HIGHESTMODSEQ"])
    assert status[b"HIGHESTMODSEQ"] == found.modseq, status

    # A conditional STORE on a message changed since the given MODSEQ is refused.
    typ, data = c._imap.uid("STORE", "2,3", "(UNCHANGEDSINCE %d)" % highest, "+FLAGS", "(\\Seen)")
    assert typ == "OK", (typ, data)
    assert c._imap.response("MODIFIED") == ("MODIFIED", [b"2"]), c._imap.response("MODIFIED")
    seen = c.get_flags([2, 3])
    assert b"\\Seen" not in seen[2] and b"\\Seen" in seen[3], seen

print("imapclient condstore ok")
