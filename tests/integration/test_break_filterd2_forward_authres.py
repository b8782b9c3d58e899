"""Mail forwarded through ~/.forward loses its Authentication-Results.

deliverd forwards a message by submitting it to queued as the mailbox
owner, and since sendmail submissions pass filterd, so do forwards.
filterd treats the Authentication-Results fields with our authserv-id
as forged and removes them. Those fields are the results filterd itself
added when the message arrived (spf=fail, dmarc=fail here), and the
forward is a local submission from 127.0.0.1 that cannot be checked
again. The final recipient's filters and mail reader lose the verdict.
"""

import os

import pytest

from test_deliverd_system import deliver, make_home, system_users, write_as  # noqa: F401

AUTHSERV_ID = "mail.example.test"
DEMO = "demo@example.test"
RESULTS = (b"Authentication-Results: mail.example.test; spf=fail smtp.mailfrom=sender@example.org;"
           b"\r\n  dmarc=fail header.from=example.org\r\n")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates system users; needs root")


@pytest.mark.xfail(strict=True, reason="filterd removes our own results from forwarded mail")
def test_forward_keeps_arrival_results(make_mailhost, system_users):  # noqa: F811
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="authres", authserv_id=AUTHSERV_ID)
    host.start("filterd")
    (user,) = system_users(host)
    make_home(user)
    write_as(user, host.dir / "home" / user.pw_name / ".forward", DEMO + "\n")
    body = RESULTS + b"From: <sender@example.org>\r\nSubject: forwarded\r\n\r\nHello.\r\n"

    replies = deliver(host, ["%s@localhost" % user.pw_name], body=body)
    forwarded = host.wait_for_messages(DEMO, 1)

    assert replies[0][0] == 250, replies
    assert len(forwarded) == 1, host.log()
    assert b"spf=fail" in forwarded[0], host.log()
    assert b"dmarc=fail" in forwarded[0]
