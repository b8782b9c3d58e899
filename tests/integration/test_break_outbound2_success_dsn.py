"""Success notifications (NOTIFY=SUCCESS) for mail relayed over SMTP.

RFC 3464 keeps the "delivered" action for final delivery. A message
relayed to a server that offers DSN carries NOTIFY=SUCCESS on, and that
server or a later one reports the delivery. A message relayed to a
server without DSN ends the DSN chain here, so this host reports it as
"relayed". Postfix's SMTP client does both in its smtp_rcpt_done
function: it drops SUCCESS when the server announced DSN, and otherwise
uses the action "relayed".
"""

import time

import pytest

import smtp_peer
from smtp_peer import PEER_ADDRESS, SENDER, net  # noqa: F401 (fixture)
from test_queue_ipc import QueueClient, message
from test_smtpd_dsn import delivery_status, reports_in

pytestmark = smtp_peer.skip_without_netns

# Accepts every message. Argument 2 is "dsn" to offer DSN, anything else
# to leave it out. Every RCPT command goes to the record file.
PEER = r'''
address, mode, record = sys.argv[1], sys.argv[2], sys.argv[3]

def serve(conn):
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    reader = lines(conn)
    for line in reader:
        verb = line[:4].upper()
        if verb == b"EHLO":
            dsn = b"250-DSN\r\n" if mode == "dsn" else b""
            conn.sendall(b"250-mx1.example.test\r\n" + dsn + b"250 PIPELINING\r\n")
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


def submit_with_notify_success(host, recipient):
    """Queue a message from SENDER to RECIPIENT with NOTIFY=SUCCESS as a
    local submission, which may request success notifications."""
    client = QueueClient(host.settings["queued_socket"])
    msg_type, _, queue_id = client.submit(SENDER, [recipient], message("receipt please"),
                                          extra=[("notify", "SUCCESS")])
    client.close()
    assert msg_type == "COMMIT-OK"
    return queue_id


def relay_to_peer(make_mailhost, net, tmp_path, mode):
    """Relay one NOTIFY=SUCCESS message to a peer in MODE and return the
    sending host, the queue id and the peer's record file."""
    record = tmp_path / "rcpt.record"
    smtp_peer.start_peer(net, tmp_path, PEER, PEER_ADDRESS, mode, str(record))
    sender = smtp_peer.sender_host(make_mailhost, net)
    queue_id = submit_with_notify_success(sender, "alice@example.test")
    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "status=sent" in line
    return sender, queue_id, record


def test_no_notice_for_dsn_server(make_mailhost, net, tmp_path):
    sender, queue_id, record = relay_to_peer(make_mailhost, net, tmp_path, "dsn")

    # "removed" is logged after every notification of the attempt is queued.
    assert sender.wait_for_log(queue_id + r": removed", timeout=10)
    assert b"NOTIFY=SUCCESS" in record.read_bytes()
    assert queue_id + ": sender delivery status notification" not in sender.log()
    time.sleep(1)
    assert sender.messages(SENDER) == []


def test_relayed_action_without_dsn(make_mailhost, net, tmp_path):
    sender, queue_id, record = relay_to_peer(make_mailhost, net, tmp_path, "plain")

    assert b"NOTIFY=" not in record.read_bytes()
    assert sender.wait_for_log(queue_id + r": sender delivery status notification: ", timeout=10)
    assert len(sender.wait_for_messages(SENDER, 1)) == 1
    groups = delivery_status(reports_in(sender, SENDER)[0])
    assert groups[1]["final-recipient"] == "rfc822; alice@example.test"
    assert groups[1]["status"] == "2.0.0"
    assert groups[1]["action"] == "relayed"
