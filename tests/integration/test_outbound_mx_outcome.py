"""Which address decides the outcome when a domain has two MX hosts.

mx1.example.test (198.51.100.25, MX 10) and mx2.example.test
(198.51.100.26, MX 20) run smtp_peer.MX_PEER, each in a mode that the
test picks. The outcome follows Postfix's SMTP client: a 5xx greeting
moves on to the next host and at worst defers (smtp_skip_5xx_greeting =
yes), a 4xx reply to RCPT moves the recipient on to the next host, and a
5xx reply to RCPT from a host that accepted the session is final.
"""

import pytest

import smtp_peer
from smtp_peer import queued_ids, recorded, send, start_mx_peer

pytestmark = smtp_peer.skip_without_netns

MX1_ADDRESS = smtp_peer.PEER_ADDRESS
MX2_ADDRESS = "198.51.100.26"
RECORDS = [
    "example.test. MX 10 mx1.example.test.",
    "example.test. MX 20 mx2.example.test.",
    "mx1.example.test. A " + MX1_ADDRESS,
    "mx2.example.test. A " + MX2_ADDRESS,
]
MX1_RELAY = r"mx1\.example\.test\[198\.51\.100\.25\]:25"


@pytest.fixture
def net(tmp_path):
    hosts = [("a", smtp_peer.A_ADDRESS), ("mx1", MX1_ADDRESS), ("mx2", MX2_ADDRESS)]
    with smtp_peer.netns_bed(tmp_path, hosts, ["example.test"], RECORDS) as bed:
        yield bed


def start_peers(net, tmp_path, mx1_mode, mx2_mode):
    """Start both MX hosts and return their record files."""
    return (start_mx_peer(net, tmp_path, "mx1", MX1_ADDRESS, mx1_mode),
            start_mx_peer(net, tmp_path, "mx2", MX2_ADDRESS, mx2_mode))


def sender_host(make_mailhost, net):
    return smtp_peer.sender_host(make_mailhost, net, **smtp_peer.SHORT_REPLY_TIMEOUTS)


def test_5xx_greeting_tries_next_mx(make_mailhost, net, tmp_path):
    mx1, mx2 = start_peers(net, tmp_path, "greet554", "ok")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "relay=mx2.example.test[198.51.100.26]:25" in line
    assert "status=sent" in line
    assert b"DATA done size=" in b"\n".join(recorded(mx2))
    assert b"CONNECT" in recorded(mx1)


def test_5xx_greeting_everywhere_defers(make_mailhost, net, tmp_path):
    start_peers(net, tmp_path, "greet554", "greet554")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "dsn=4.0.0, status=deferred" in line
    assert "refused to talk to me: 554 5.7.1 mx refuses all mail" in line
    assert "relay=mx2.example.test" in line
    ids, _ = queued_ids(sender)
    assert len(ids) == 1


def test_rcpt_4xx_tries_next_mx(make_mailhost, net, tmp_path):
    mx1, mx2 = start_peers(net, tmp_path, "rcpt451", "ok")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "relay=mx2.example.test[198.51.100.26]:25" in line
    assert "status=sent" in line
    assert sender.wait_for_log(r"%s replied 451 4\.3\.0 try again later for <alice@example\.test>; "
                               r"trying the next address" % MX1_RELAY, timeout=1)
    assert b"RCPT TO:<alice@example.test>" in recorded(mx1)
    assert b"DATA done" not in b"\n".join(recorded(mx1))


def test_rcpt_4xx_at_last_mx_defers(make_mailhost, net, tmp_path):
    start_peers(net, tmp_path, "rcpt451", "rcpt451")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "relay=mx2.example.test[198.51.100.26]:25" in line
    assert "dsn=4.3.0, status=deferred (451 4.3.0 try again later)" in line
    assert len(smtp_peer.outcomes(sender, "alice@example.test")) == 1


def test_lost_connection_tries_next_mx(make_mailhost, net, tmp_path):
    mx1, mx2 = start_peers(net, tmp_path, "droprcpt", "ok")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "relay=mx2.example.test[198.51.100.26]:25" in line
    assert "status=sent" in line
    assert sender.wait_for_log(r"SMTP session with %s ended: lost connection with %s while waiting for "
                               r"the MAIL, RCPT or DATA reply" % (MX1_RELAY, MX1_RELAY), timeout=1)
    assert b"RCPT TO:<alice@example.test>" in recorded(mx1)


def test_rcpt_5xx_is_final(make_mailhost, net, tmp_path):
    mx1, mx2 = start_peers(net, tmp_path, "rcpt550", "ok")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "relay=mx1.example.test[198.51.100.25]:25" in line
    assert "dsn=5.1.1, status=bounced (550 5.1.1 no such user)" in line
    assert recorded(mx2) == []
