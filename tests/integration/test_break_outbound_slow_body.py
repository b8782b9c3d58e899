"""Outbound delivery of a large message to a server that reads slowly.

smtp_data_xfer_timeout bounds how long the server may stop accepting
message content, as Postfix's parameter of that name does. A transfer
that keeps moving but lasts longer than the timeout must not be cut
off, although the server sends nothing while it receives the content.
"""

import pytest

import smtp_peer
from smtp_peer import PEER_ADDRESS, net, send  # noqa: F401 (fixture)

pytestmark = smtp_peer.skip_without_netns

# Reads the message content at most 4 KiB per 10 ms (400 KB/s) through
# a small receive buffer, so the transfer of about 3 MB lasts several
# seconds but never stalls for as long as one.
PEER = r'''
address, record = sys.argv[1], sys.argv[2]

def serve(conn):
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    buf = b""
    while True:
        while b"\r\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.sendall(b"250-mx1.example.test\r\n250 8BITMIME\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET"):
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            size = 0
            while not buf.endswith(b"\r\n.\r\n"):
                time.sleep(0.01)
                chunk = conn.recv(4096)
                if not chunk:
                    return
                size += len(chunk)
                buf = buf[-5:] + chunk
            buf = b""
            with open(record, "a") as out:
                out.write("received %d bytes\n" % size)
            conn.sendall(b"250 2.0.0 Ok: queued as SLOW\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

listen_and_serve(address, serve, 5, receive_buffer=4096)
'''


@pytest.mark.slow
def test_slow_transfer_not_cut_off(make_mailhost, net, tmp_path):
    record = tmp_path / "received"
    smtp_peer.start_peer(net, tmp_path, PEER, PEER_ADDRESS, str(record))
    sender = smtp_peer.sender_host(make_mailhost, net, smtp_data_xfer_timeout="2s")
    body = ("%s\n" % ("x" * 76)) * 40000    # about 3 MB

    send(sender, "alice@example.test", body, subject="large")

    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=.*status=", timeout=30)
    outcome = smtp_peer.outcomes(sender, "alice@example.test")[0]
    assert "status=sent (250 2.0.0 Ok: queued as SLOW)" in outcome
