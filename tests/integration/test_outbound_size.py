"""The SIZE parameter of MAIL FROM (RFC 1870 section 3): the message size
on the wire, with CRLF line ends and without dot-stuffing, not the size
of the queue file, whose lines end in LF.

mx1.example.test runs smtp_peer.MX_PEER in mode "size", which announces
SIZE and records the octets of each message it receives as RFC 1870
counts them.
"""

import re

import pytest

import smtp_peer
from smtp_peer import PEER_ADDRESS, queued_ids, recorded, send, start_mx_peer

pytestmark = smtp_peer.skip_without_netns

# Lines that start with "." are stuffed on the wire but not counted.
BODY = "".join("line %d\n.dotted %d\n" % (n, n) for n in range(150))


@pytest.fixture
def net(tmp_path):
    with smtp_peer.netns_bed(tmp_path, [("a", smtp_peer.A_ADDRESS), ("mx1", PEER_ADDRESS)]) as bed:
        yield bed


def test_size_parameter_counts_crlf(make_mailhost, net, tmp_path):
    record = start_mx_peer(net, tmp_path, "mx1", PEER_ADDRESS, "size", 10000000)
    sender = smtp_peer.sender_host(make_mailhost, net)

    send(sender, "alice@example.test", BODY)

    assert "status=sent" in smtp_peer.first_outcome(sender, "alice@example.test")
    lines = b"\n".join(recorded(record)).decode()
    announced = re.findall(r"^MAIL FROM:<[^>]*> SIZE=(\d+)", lines, re.M)
    received = re.findall(r"^DATA done size=(\d+)", lines, re.M)
    assert len(announced) == 1
    assert announced == received


def test_size_limit_between_lf_and_crlf_bounces(make_mailhost, net, tmp_path):
    # No server listens yet, so the message waits in the queue.
    sender = smtp_peer.sender_host(make_mailhost, net)
    send(sender, "alice@example.test", BODY)
    assert "status=deferred" in smtp_peer.first_outcome(sender, "alice@example.test")
    ids, _ = queued_ids(sender)
    assert len(ids) == 1
    listing = sender.run("estafeta", "queue", "show", ids[0]).stdout
    queue_size = int(re.search(rb"^message_size: (\d+)$", listing, re.M).group(1))
    # Each body line gains a CR on the wire, so a limit of half that
    # many octets above the queue size lies between the two sizes.
    body_lines = listing.split(b"\n\n", 1)[1].count(b"\n")
    limit = queue_size + body_lines // 2
    record = start_mx_peer(net, tmp_path, "mx1", PEER_ADDRESS, "size", limit)

    assert sender.run("estafeta", "queue", "flush").returncode == 0

    outcomes = smtp_peer.wait_for_outcomes(sender, "alice@example.test", 2)
    assert len(outcomes) == 2
    assert re.search(r"dsn=5\.3\.4, status=bounced \(message size \d+ exceeds the limit of %d that "
                     r"the host announced\)" % limit, outcomes[1])
    assert not any(line.startswith(b"MAIL FROM:") for line in recorded(record))
