"""The DSN ORCPT parameter (RFC 3461 section 4.2) from RCPT TO in smtpd
through the queue to RCPT TO at the next hop.

ORCPT is "addr-type;xtext" with an atom as addr-type. smtpd rejects a
malformed one at RCPT, queued rejects one in a COMMIT from its socket,
and the SMTP client leaves out one that a queue file holds. A valid
ORCPT, of type utf-8 too (RFC 6533), reaches mx1.example.test
(smtp_peer.MX_PEER, which offers DSN) unchanged.
"""

import re

import pytest

import smtp_peer
from smtp_peer import PEER_ADDRESS, SENDER, queued_ids, recorded, start_mx_peer
from test_queue_ipc import QueueClient
from test_queue_recovery import with_crc

pytestmark = smtp_peer.skip_without_netns

UTF8_ORCPT = "ORCPT=utf-8;j\\x{00F6}rg@example.test"

# Sends one RCPT TO with the parameter in argv[2] to the smtpd on the port
# in argv[1], prints the reply, and sends the message when it is accepted.
RCPT_CLIENT = r'''
import smtplib, sys
client = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.sender.test", timeout=15)
client.ehlo()
client.mail(%r)
code, text = client.rcpt("alice@example.test", options=[sys.argv[2]])
print(code, text.decode())
if code == 250:
    client.data(b"From: %s\r\nTo: alice@example.test\r\nSubject: orcpt\r\n\r\nHello.\r\n")
client.quit()
''' % (SENDER, SENDER)


@pytest.fixture
def net(tmp_path):
    with smtp_peer.netns_bed(tmp_path, [("a", smtp_peer.A_ADDRESS), ("mx1", PEER_ADDRESS)]) as bed:
        yield bed


def rcpt_with(net, host, parameter):
    """Return the reply of HOST's smtpd to RCPT TO with PARAMETER."""
    result = net.run("a", "/usr/bin/python3", "-c", RCPT_CLIENT, str(host.smtp_port), parameter)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def rcpt_commands(record):
    return [line.decode() for line in recorded(record) if line.startswith(b"RCPT TO:")]


@pytest.mark.parametrize("parameter", [
    "ORCPT=r@fc822;alice@example.test", "ORCPT=rfc822", "ORCPT=;alice@example.test",
])
def test_malformed_orcpt_rejected_at_rcpt(make_mailhost, net, tmp_path, parameter):
    sender = smtp_peer.sender_host(make_mailhost, net)

    reply = rcpt_with(net, sender, parameter)

    assert reply.startswith("501 5.5.4 Invalid ORCPT parameter")


@pytest.mark.parametrize("parameter", [UTF8_ORCPT, "ORCPT=rfc822;a+2Bb@example.test"])
def test_valid_orcpt_passed_on_unchanged(make_mailhost, net, tmp_path, parameter):
    record = start_mx_peer(net, tmp_path, "mx1", PEER_ADDRESS, "ok")
    sender = smtp_peer.sender_host(make_mailhost, net)

    assert rcpt_with(net, sender, parameter).startswith("250")

    assert "status=sent" in smtp_peer.first_outcome(sender, "alice@example.test")
    assert rcpt_commands(record) == ["RCPT TO:<alice@example.test> " + parameter]


@pytest.mark.parametrize("orcpt", ["rfc822", "rf c822;alice@example.test", ";alice@example.test",
                                   "rfc822;", "x<y;alice@example.test"])
def test_malformed_orcpt_rejected_at_commit(make_mailhost, net, orcpt):
    sender = smtp_peer.sender_host(make_mailhost, net)
    queue = QueueClient(sender.settings["queued_socket"])

    msg_type, reply, _ = queue.submit(SENDER, ["alice@example.test"], b"Subject: orcpt\n\nHello.\n",
                                      extra=[("orcpt", orcpt)])
    queue.close()

    assert msg_type == "COMMIT-FAIL"
    assert reply["reason"] == "invalid orcpt: expected addr-type;address"


def test_invalid_orcpt_in_queue_file_left_out(make_mailhost, net, tmp_path):
    # No server listens yet, so the message waits in the queue.
    sender = smtp_peer.sender_host(make_mailhost, net)
    assert rcpt_with(net, sender, "ORCPT=rfc822;alice@example.test").startswith("250")
    assert "status=deferred" in smtp_peer.first_outcome(sender, "alice@example.test")
    ids, _ = queued_ids(sender)
    assert len(ids) == 1
    sender.stop("queued")
    envelope = sender.dir / "spool" / "deferred" / ids[0]
    text = envelope.read_text()
    assert text.count("orcpt=rfc822;alice@example.test\n") == 1
    edited = text.replace("orcpt=rfc822;alice@example.test\n", "orcpt=rf c822;alice@example.test\n")
    envelope.write_bytes(with_crc(edited.encode()))
    record = start_mx_peer(net, tmp_path, "mx1", PEER_ADDRESS, "ok")
    sender.start("queued")

    assert sender.run("estafeta", "queue", "flush").returncode == 0

    outcomes = smtp_peer.wait_for_outcomes(sender, "alice@example.test", 2)
    assert len(outcomes) == 2
    assert "status=sent" in outcomes[1]
    assert rcpt_commands(record) == ["RCPT TO:<alice@example.test>"]
    assert re.search(r"ORCPT of <alice@example\.test> in the queue file is invalid, so RCPT TO goes without it", sender.log())
