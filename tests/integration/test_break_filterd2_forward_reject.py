"""A forward that filterd rejects is retried for the queue lifetime.

deliverd forwards a message by submitting it to queued, which passes it
to filterd. When filterd rejects it for good (554, a virus here),
queued's COMMIT-FAIL carries permanent=1, yet deliverd replies 451 4.3.0 to
every failed commit. queued then retries the delivery until the
message expires, each time scanning it again, and the sender hears of
it only days later. A message can pass on arrival and fail on forward
when clamd was down and filterd_clamav_failure_policy is accept, or
when clamd's database changed in between.

Fixed: deliverd fails such a forward for good, with 5.7.1 and
filterd's reply in the text, so queued returns the message to its
sender at once.
"""

import os

import pytest

from scanners import EICAR, Clamd
from test_deliverd_system import deliver, make_home, system_users, write_as  # noqa: F401

DEMO = "demo@example.test"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates system users; needs root")


@pytest.fixture(scope="module")
def clamd():
    server = Clamd()
    server.start()
    yield server
    server.destroy()


def test_rejected_forward_is_not_retried(make_mailhost, system_users, clamd):  # noqa: F811
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="clamav", clamd_socket=clamd.socket)
    host.start("filterd")
    (user,) = system_users(host)
    make_home(user)
    write_as(user, host.dir / "home" / user.pw_name / ".forward", DEMO + "\n")
    body = b"From: <sender@example.org>\r\nSubject: infected\r\n\r\n" + EICAR + b"\r\n"

    replies = deliver(host, ["%s@localhost" % user.pw_name], body=body)

    assert host.wait_for_log(r"rejected by filterd")
    assert replies[0][0] == 550, replies
    assert replies[0][1].startswith(b"5.7.1 "), replies
    assert b"cannot forward" in replies[0][1], replies
    assert b"virus found" in replies[0][1], replies
