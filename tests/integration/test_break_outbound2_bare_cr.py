"""A bare CR in a queued message must not reach the next hop as a bare CR.

RFC 5321 section 2.3.8: an SMTP client must not send CR or LF except as
the CRLF line end. smtpd and sendmail both queue a CR that no LF follows
as it came, so the SMTP client is the last place that can stop it. A
receiver that takes a bare CR for a line end would read "<CR>.<CR>" as
the end of the data and the text after it as SMTP commands, the kind
of attack known as SMTP smuggling.
"""

import pytest

import smtp_peer
from smtp_peer import PEER_ADDRESS, net, send  # noqa: F401 (fixture)

pytestmark = smtp_peer.skip_without_netns

# Accepts every message and appends the raw octets between the 354 reply
# and the final "." line to the capture file (argument 2).
PEER = r'''
address, capture = sys.argv[1], sys.argv[2]

def serve(conn):
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    buf = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-mx1.example.test\r\n250 8BITMIME\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET"):
                conn.sendall(b"250 2.0.0 Ok\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                while b"\r\n.\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                data, buf = buf.split(b"\r\n.\r\n", 1)
                with open(capture, "ab") as out:
                    out.write(data + b"\r\n")
                conn.sendall(b"250 2.0.0 Ok: queued as TEST\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

listen_and_serve(address, serve, 5)
'''


def bare_crs(data):
    """Return how many CR octets in DATA are not followed by LF."""
    return sum(1 for i, octet in enumerate(data) if octet == 0x0D and data[i + 1:i + 2] != b"\n")


def test_bare_cr_not_sent(make_mailhost, net, tmp_path):
    capture = tmp_path / "data.capture"
    smtp_peer.start_peer(net, tmp_path, PEER, PEER_ADDRESS, str(capture))
    sender = smtp_peer.sender_host(make_mailhost, net)

    send(sender, "alice@example.test", "first\r.\rMAIL FROM:<smuggled@example.test>\nlast\n", "-i")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "status=sent" in line
    data = capture.read_bytes()
    assert b"first" in data
    assert b"last" in data
    assert bare_crs(data) == 0
