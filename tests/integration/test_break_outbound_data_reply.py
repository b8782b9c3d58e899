"""Outbound delivery to a peer that sends a positive reply in place of
354 to DATA.

DATA has one positive reply, 354. A 250 to DATA, whether the server is
broken or has lost track of the commands (replies to commands not yet
sent), means that no message data was sent, so the recipients must stay
deferred. The client drops the connection.
"""

import smtp_peer
from smtp_peer import PEER_ADDRESS, net, queued_ids, send  # noqa: F401 (fixture)

pytestmark = smtp_peer.skip_without_netns

# Mode "data250": PIPELINING, and 250 in place of 354 to DATA.
# Mode "desync": no PIPELINING, and three 250 replies to MAIL, so the
# client reads the third one as the reply to a DATA it sends later.
PEER = r'''
mode, address, record = sys.argv[1], sys.argv[2], sys.argv[3]

def serve(conn):
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    for line in lines(conn):
        verb = line[:4].upper()
        with open(record, "ab") as out:
            out.write(line + b"\r\n")
        if verb == b"EHLO":
            if mode == "desync":
                conn.sendall(b"250 mx1.example.test\r\n")
            else:
                conn.sendall(b"250-mx1.example.test\r\n250 PIPELINING\r\n")
        elif verb == b"MAIL":
            if mode == "desync":
                conn.sendall(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as LOST\r\n")
            else:
                conn.sendall(b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            if mode != "desync":
                conn.sendall(b"250 2.1.5 Ok\r\n")
        elif verb == b"DATA":
            if mode != "desync":
                conn.sendall(b"250 2.0.0 Ok: queued as LOST\r\n")
        elif verb == b"RSET":
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

listen_and_serve(address, serve, 20)
'''


def start_peer(net, tmp_path, mode):
    """Start PEER in MODE and return the file it appends received lines to."""
    record = tmp_path / "commands"
    smtp_peer.start_peer(net, tmp_path, PEER, mode, PEER_ADDRESS, str(record))
    return record


def sender_host(make_mailhost, net):
    return smtp_peer.sender_host(make_mailhost, net, **smtp_peer.SHORT_REPLY_TIMEOUTS)


def test_250_to_data_keeps_message(make_mailhost, net, tmp_path):
    record = start_peer(net, tmp_path, "data250")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test", subject="data reply")

    outcome = smtp_peer.first_outcome(sender, "alice@example.test")
    assert b"DATA\r\n" in record.read_bytes()
    assert "status=sent" not in outcome
    assert len(queued_ids(sender)[0]) == 1


def test_replies_ahead_of_commands_keep_message(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "desync")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test", subject="data reply")

    outcome = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "status=sent" not in outcome
    assert len(queued_ids(sender)[0]) == 1
