"""Mail to an internationalized domain name (RFC 6531).

smtpd accepts alice@bücher.test with SMTPUTF8, and the DNS has the
domain in its ASCII form, xn--bcher-kva.test (the IDNA A-label form
that RFC 5890 defines). queued must look up the A-label form. Today it
sends the UTF-8 octets to the resolver, gets NXDOMAIN, and bounces the
message with 5.1.2 "Host or domain name not found".

The MX host offers SMTPUTF8 and 8BITMIME, so nothing else stands in the
way of delivery.
"""

import pytest

import smtp_peer
from smtp_peer import A_ADDRESS, PEER_ADDRESS

pytestmark = smtp_peer.skip_without_netns

RECIPIENT = "alice@bücher.test"
RECORDS = [
    "xn--bcher-kva.test. MX 10 mx1.example.test.",
    "mx1.example.test. A " + PEER_ADDRESS,
]

# Accepts every message and appends each RCPT command to the record
# file (argument 2).
PEER = r'''
address, record = sys.argv[1], sys.argv[2]

def serve(conn):
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    reader = lines(conn)
    for line in reader:
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.sendall(b"250-mx1.example.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n")
        elif verb == b"RCPT":
            with open(record, "ab") as out:
                out.write(line + b"\n")
            conn.sendall(b"250 2.1.5 Ok\r\n")
        elif verb in (b"MAIL", b"RSET"):
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            for data_line in reader:
                if data_line == b".":
                    break
            conn.sendall(b"250 2.0.0 Ok: queued as TEST\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

listen_and_serve(address, serve, 5)
'''


@pytest.fixture
def net(tmp_path):
    hosts = [("a", A_ADDRESS), ("peer", PEER_ADDRESS)]
    with smtp_peer.netns_bed(tmp_path, hosts, ["example.test", "xn--bcher-kva.test"], RECORDS) as bed:
        yield bed


def test_utf8_domain_delivered(make_mailhost, net, tmp_path):
    record = tmp_path / "rcpt.record"
    smtp_peer.start_peer(net, tmp_path, PEER, PEER_ADDRESS, str(record))
    sender = smtp_peer.sender_host(make_mailhost, net)

    smtp_peer.submit_with_smtplib(net, sender, RECIPIENT, "Subject: IDN\r\n\r\nHello.\r\n", "SMTPUTF8")

    # The log shows the non-ASCII octets escaped, so the pattern skips them.
    outcome = sender.wait_for_log(r"to=<alice@b.*cher\.test>, relay=.*", timeout=20)
    assert outcome is not None
    assert "status=sent" in outcome.group(0)
    assert record.exists()


def test_invalid_utf8_domain_bounces(make_mailhost, net):
    """A domain that IDNA rejects (a label starting with a combining mark) bounces with 5.1.2."""
    sender = smtp_peer.sender_host(make_mailhost, net)

    smtp_peer.submit_with_smtplib(net, sender, "alice@\u0300b.test", "Subject: IDN\r\n\r\nHello.\r\n",
                                  "SMTPUTF8")

    outcome = sender.wait_for_log(r"to=<alice@.*b\.test>, relay=.*", timeout=20)
    assert outcome is not None
    assert "dsn=5.1.2" in outcome.group(0)
    assert "status=bounced" in outcome.group(0)
    assert "invalid internationalized domain name" in outcome.group(0)
    assert sender.procs["queued"].poll() is None
