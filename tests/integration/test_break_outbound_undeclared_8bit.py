"""8-bit content received over SMTP without BODY=8BITMIME.

smtpd stores body=7BIT for a message whose MAIL FROM has no BODY
parameter, whatever bytes the data contains. The SMTP client must
still convert such data for a server that never offered 8BITMIME, since
RFC 6152 forbids sending it 8-bit bytes.
"""

import pytest

import test_outbound_hostile as hostile
from test_outbound_hostile import net  # noqa: F401 (fixture)

pytestmark = hostile.pytestmark


def submit_undeclared_8bit(net, host, recipient, body):
    """Send one message with an 8-bit body but no BODY parameter to HOST's smtpd."""
    script = (
        "import smtplib, sys\n"
        "client = smtplib.SMTP('127.0.0.1', %d, local_hostname='client.sender.test', timeout=15)\n"
        "message = b'From: %s\\r\\nTo: %s\\r\\nSubject: undeclared\\r\\n\\r\\n' + sys.argv[1].encode() + b'\\r\\n'\n"
        "client.sendmail('%s', ['%s'], message)\n"
        "client.quit()\n" % (host.smtp_port, hostile.SENDER, recipient, hostile.SENDER, recipient))
    result = net.run("a", "/usr/bin/python3", "-c", script, body)
    assert result.returncode == 0, result.stderr


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
