"""8-bit content received over SMTP without BODY=8BITMIME.

smtpd stores body=7BIT for a message whose MAIL FROM has no BODY
parameter, whatever bytes the data contains. The SMTP client must
still convert such data for a server that never offered 8BITMIME, since
RFC 6152 forbids sending it 8-bit bytes.
"""

import smtp_peer
import test_outbound_hostile as hostile
from smtp_peer import SENDER, net  # noqa: F401 (fixture)

pytestmark = smtp_peer.skip_without_netns


def submit_undeclared_8bit(net, host, recipient, body):
    """Send one message with an 8-bit body but no BODY parameter to HOST's smtpd."""
    message = "From: %s\r\nTo: %s\r\nSubject: undeclared\r\n\r\n%s\r\n" % (SENDER, recipient, body)
    smtp_peer.submit_with_smtplib(net, host, recipient, message)


def test_undeclared_8bit_not_sent_raw(make_mailhost, net, tmp_path):  # noqa: F811
    record = hostile.start_peer(net, tmp_path, "plain")
    sender = hostile.sender_host(make_mailhost, net)

    submit_undeclared_8bit(net, sender, "alice@example.test", "Gr\u00fc\u00dfe")

    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=.*status=", timeout=20)
    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=.*status=sent", timeout=1)
    received = record.read_bytes()
    assert b"Subject: undeclared" in received
    assert all(byte < 128 for byte in received)
    assert b"Content-Transfer-Encoding: quoted-printable" in received
