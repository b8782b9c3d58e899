"""Mail for a domain whose MX host is this host under another name.

queued drops an MX host only when its name equals myhostname. Here
loop.test has MX mx.loop.test with address 127.0.0.1, where the
sender's own smtpd listens on port 25. smtpd accepts the message from
127.0.0.1 (mynetworks) for relaying, queued sends it back to smtpd, and
so on: in a trial the message went round 81 times in 6 seconds, 170
octets bigger each time, with no end in sight.

Postfix stops this twice: its SMTP client bounces with "mail for
loop.test loops back to myself" (5.4.6 at the best MX) when the server
replies to EHLO with Postfix's own myhostname, and Postfix bounces a
message with more than hopcount_limit (default 50) Received headers.
The test accepts either kind of fix: the recipient must bounce, after
a bounded number of rounds.
"""

import re
import time

import pytest

import smtp_peer
from smtp_peer import A_ADDRESS, send

pytestmark = smtp_peer.skip_without_netns

RECORDS = ["loop.test. MX 10 mx.loop.test.", "mx.loop.test. A 127.0.0.1"]
# Postfix's hopcount_limit, and some room above it.
ROUNDS_MAX = 60


@pytest.fixture
def net(tmp_path):
    with smtp_peer.netns_bed(tmp_path, [("a", A_ADDRESS)], ["loop.test"], RECORDS) as bed:
        yield bed


def rounds(host):
    """Return how many messages queued has committed from SMTP clients at 127.0.0.1."""
    return len(re.findall(r"committed, client=unknown\[127\.0\.0\.1\], protocol=ESMTP", host.log()))


def test_loop_through_own_smtpd_ends(make_mailhost, net):
    sender = smtp_peer.sender_host(make_mailhost, net, smtpd_listen="127.0.0.1:25")

    send(sender, "someone@loop.test")

    deadline = time.monotonic() + 15
    bounced = None
    while bounced is None and rounds(sender) <= ROUNDS_MAX and time.monotonic() < deadline:
        time.sleep(0.2)
        bounced = re.search(r"to=<someone@loop\.test>, .*status=bounced.*", sender.log())
    assert rounds(sender) <= ROUNDS_MAX
    assert bounced is not None


def test_ehlo_with_own_name_bounces(make_mailhost, net):
    """The best MX host replies to EHLO with myhostname: a 5.4.6 bounce before any round."""
    sender = smtp_peer.sender_host(make_mailhost, net, smtpd_listen="127.0.0.1:25")

    send(sender, "someone@loop.test")

    line = smtp_peer.first_outcome(sender, "someone@loop.test", timeout=15)
    assert "dsn=5.4.6" in line
    assert "status=bounced" in line
    assert "mail for loop.test loops back to myself" in line
    assert rounds(sender) == 0
    assert sender.wait_for_log(r"replied to EHLO or HELO with my own hostname") is not None


@pytest.fixture
def net_backup(tmp_path):
    # The best MX host has no address in any namespace, so connect() fails
    # and the attempt goes on to this host's own smtpd at preference 20.
    records = ["loop.test. MX 10 mx0.loop.test.", "mx0.loop.test. A 198.51.100.200",
               "loop.test. MX 20 mx.loop.test.", "mx.loop.test. A 127.0.0.1"]
    with smtp_peer.netns_bed(tmp_path, [("a", A_ADDRESS)], ["loop.test"], records) as bed:
        yield bed


def test_ehlo_with_own_name_at_backup_defers(make_mailhost, net_backup):
    """A backup MX host that replies with myhostname defers with 4.4.6."""
    sender = smtp_peer.sender_host(make_mailhost, net_backup, smtpd_listen="127.0.0.1:25")

    send(sender, "someone@loop.test")

    line = smtp_peer.first_outcome(sender, "someone@loop.test", timeout=15)
    assert "dsn=4.4.6" in line
    assert "status=deferred" in line
    assert "mail for loop.test loops back to myself" in line
    assert rounds(sender) == 0
