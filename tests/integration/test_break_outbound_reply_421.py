"""Connection reuse after a 421 reply.

A 421 reply means that the server closes the connection (RFC 5321
section 3.8). After a 421 to the end of data the client must not keep
the session for the next message to the same destination, or that
message fails on the closed connection without having been offered to
the server.
"""

import smtp_peer
from smtp_peer import PEER_ADDRESS, net, send  # noqa: F401 (fixture)

pytestmark = smtp_peer.skip_without_netns

# The first message gets 421 to the end of data, then the server closes
# the connection. Every later message is accepted.
PEER = r'''
address = sys.argv[1]
messages = 0

def serve(conn):
    global messages
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    reader = lines(conn)
    for line in reader:
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.sendall(b"250-mx1.example.test\r\n250 PIPELINING\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET"):
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            for data_line in reader:
                if data_line == b".":
                    break
            messages += 1
            if messages == 1:
                # Long enough for the second message to be waiting.
                time.sleep(0.5)
                conn.sendall(b"421 4.3.2 shutting down\r\n")
                return
            conn.sendall(b"250 2.0.0 Ok: queued as TEST\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

listen_and_serve(address, serve, 10)
'''


def test_no_reuse_after_421(make_mailhost, net, tmp_path):
    smtp_peer.start_peer(net, tmp_path, PEER, PEER_ADDRESS)
    sender = smtp_peer.sender_host(make_mailhost, net, smtp_destination_concurrency_limit="1")

    send(sender, "alice@example.test", subject="first")
    send(sender, "alice@example.test", subject="second")

    outcomes = smtp_peer.wait_for_outcomes(sender, "alice@example.test", 2)
    assert len(outcomes) == 2
    assert "status=deferred (421 4.3.2 shutting down)" in outcomes[0]
    assert "status=sent (250 2.0.0 Ok: queued as TEST)" in outcomes[1]
