"""Mail forwarded through ~/.forward gets our DKIM signature.

deliverd forwards a message by submitting it to queued as the mailbox
owner, and since sendmail submissions pass filterd, so do forwards, as
outbound mail of that user. A message from the Internet whose From: is
an address of our own domain, spoofed and so without a valid signature
of ours on arrival, is signed with our domain's key when it is
forwarded. Anyone who can
send mail to a user with a ~/.forward gets validly signed mail in our
domain's name at the forward's destination.

Fixed: filterd signs the mail of a login only when the login owns
every From: address, and the forwarding user does not own the spoofed
one.
"""

import os
from pathlib import Path

import pytest

import dkim_bed
from test_deliverd_system import deliver, make_home, system_users, write_as  # noqa: F401
from test_filterd_dkim import keys, records, zone  # noqa: F401 (fixtures)

DEMO = "demo@example.test"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(dkim_bed.UNBOUND),
                                reason="creates system users and needs unbound")


def test_forward_not_signed_for_spoofed_from(make_mailhost, system_users, zone, keys,  # noqa: F811
                                             records):  # noqa: F811
    table = Path(keys["directory"]) / "table-forward"
    table.write_text(keys["rsa"]["line"] + "\n")
    os.chmod(table, 0o644)
    host = make_mailhost(local_filter="yes",
                         **dkim_bed.filter_settings(zone, dkim_signing_table=table))
    host.start("filterd")
    (user,) = system_users(host)
    make_home(user)
    write_as(user, host.dir / "home" / user.pw_name / ".forward", DEMO + "\n")
    body = (b"From: The CEO <ceo@example.test>\r\nTo: <%s@localhost>\r\nSubject: wire money\r\n"
            b"\r\nPlease pay the attached invoice.\r\n" % user.pw_name.encode())

    replies = deliver(host, ["%s@localhost" % user.pw_name], body=body,
                      sender="attacker@example.org")
    forwarded = host.wait_for_messages(DEMO, 1)

    assert replies[0][0] == 250, replies
    assert len(forwarded) == 1, host.log()
    assert not dkim_bed.dkimpy_verify(forwarded[0], records), host.log()
