"""Remote reply text shown by the queue listing.

queued keeps the text of a temporary failure as the recipient's reason,
with control characters replaced but UTF-8 kept, and `estafeta queue
list` and mailq print it to the admin's terminal. U+0080 to U+009F are
control characters too, and xterm in UTF-8 mode reads U+009B (the bytes
C2 9B) as CSI, the start of an escape sequence. A remote server must
not be able to send escape sequences to the admin's terminal.
"""

import smtp_peer
from smtp_peer import PEER_ADDRESS, net, send  # noqa: F401 (fixture)

pytestmark = smtp_peer.skip_without_netns

# Every RCPT gets a 450 whose text clears the screen with CSI 2 J.
PEER = r'''
address = sys.argv[1]

def serve(conn):
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    for line in lines(conn):
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.sendall(b"250-mx1.example.test\r\n250 SMTPUTF8\r\n")
        elif verb in (b"MAIL", b"RSET"):
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"RCPT":
            conn.sendall(b"450 4.2.0 mailbox busy \xc2\x9b2J\xc2\x9b31mcleared\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"503 5.5.1 Error: need RCPT command\r\n")

listen_and_serve(address, serve, 5)
'''


def test_queue_list_hides_c1_controls(make_mailhost, net, tmp_path):
    smtp_peer.start_peer(net, tmp_path, PEER, PEER_ADDRESS)
    sender = smtp_peer.sender_host(make_mailhost, net)

    send(sender, "alice@example.test", subject="busy")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=deferred \(450 4\.2\.0 mailbox busy",
                               timeout=20)

    listing = sender.run("estafeta", "queue", "list").stdout
    assert b"mailbox busy" in listing
    assert b"\xc2\x9b" not in listing
