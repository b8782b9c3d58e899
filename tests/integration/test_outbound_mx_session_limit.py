"""smtp_mx_session_limit: the SMTP sessions of one delivery attempt.

example.test has three MX hosts, each in its own namespace, and each
replies 451 to every RCPT. A session counts once it gets past EHLO, so
with Postfix's default limit of 2 the third host is never contacted,
and with 0 (no limit) it is.
"""

import pytest

import smtp_peer
from smtp_peer import A_ADDRESS, send

pytestmark = smtp_peer.skip_without_netns

MX_HOSTS = [("m1", "198.51.100.31"), ("m2", "198.51.100.32"), ("m3", "198.51.100.33")]
RECORDS = []
for number, (name, address) in enumerate(MX_HOSTS, start=1):
    RECORDS.append("example.test. MX %d %s.example.test." % (10 * number, name))
    RECORDS.append("%s.example.test. A %s" % (name, address))


@pytest.fixture
def net(tmp_path):
    with smtp_peer.netns_bed(tmp_path, [("a", A_ADDRESS)] + MX_HOSTS, records=RECORDS) as bed:
        yield bed


def start_peers(net, tmp_path):
    """Start a peer that replies 451 to RCPT on every MX host, and return their record files."""
    return [smtp_peer.start_mx_peer(net, tmp_path, name, address, "rcpt451")
            for name, address in MX_HOSTS]


def test_default_limit_skips_third_host(make_mailhost, net, tmp_path):
    records = start_peers(net, tmp_path)
    sender = smtp_peer.sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "status=deferred" in line
    assert "451" in line
    assert "relay=m2.example.test" in line
    assert b"CONNECT" in smtp_peer.recorded(records[0])
    assert b"CONNECT" in smtp_peer.recorded(records[1])
    assert smtp_peer.recorded(records[2]) == []


def test_zero_limit_tries_every_host(make_mailhost, net, tmp_path):
    records = start_peers(net, tmp_path)
    sender = smtp_peer.sender_host(make_mailhost, net, smtp_mx_session_limit="0")

    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "status=deferred" in line
    assert "relay=m3.example.test" in line
    assert b"CONNECT" in smtp_peer.recorded(records[2])
