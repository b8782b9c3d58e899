"""The fields of a non-delivery report for mail that an SMTP server
rejected: Remote-MTA (RFC 3464 section 2.3.5), the smtp diagnostic
type, and the human-readable line in the form of Postfix's bounces,
"host NAME[ADDRESS] said: REPLY (in reply to COMMAND command)"."""

import smtp_peer
from smtp_peer import PEER_ADDRESS, SENDER, net  # noqa: F401 (fixture)
from test_smtpd_dsn import delivery_status, reports_in

pytestmark = smtp_peer.skip_without_netns

# Rejects RCPT TO:<nobody@example.test> with 550 and the end of the data
# with 554, so one message gets both kinds of rejection.
PEER = r'''
address = sys.argv[1]

def serve(conn):
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    reader = lines(conn)
    for line in reader:
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.sendall(b"250-mx1.example.test\r\n250 PIPELINING\r\n")
        elif verb == b"RCPT" and b"<nobody@" in line:
            conn.sendall(b"550 5.1.1 <nobody@example.test>: Recipient address rejected\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET"):
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            for data_line in reader:
                if data_line == b".":
                    break
            conn.sendall(b"554 5.7.1 Message content rejected\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

listen_and_serve(address, serve, 5)
'''


def test_rejections_name_remote_mta(make_mailhost, net, tmp_path):
    smtp_peer.start_peer(net, tmp_path, PEER, PEER_ADDRESS)
    sender = smtp_peer.sender_host(make_mailhost, net)
    message = "From: %s\nTo: alice@example.test\nSubject: rejected\n\nHello.\n" % SENDER
    result = sender.run("sendmail", "-f", SENDER, "nobody@example.test", "alice@example.test",
                        input=message.encode())
    assert result.returncode == 0, result.stderr

    assert len(sender.wait_for_messages(SENDER, 1, timeout=20)) == 1
    report = reports_in(sender, SENDER)[0]
    groups = {group.get("final-recipient"): group for group in delivery_status(report)[1:]}

    nobody = groups["rfc822; nobody@example.test"]
    assert nobody["action"] == "failed"
    assert nobody["remote-mta"] == "dns; mx1.example.test"
    assert nobody["diagnostic-code"] == \
        "smtp; 550 5.1.1 <nobody@example.test>: Recipient address rejected"

    alice = groups["rfc822; alice@example.test"]
    assert alice["remote-mta"] == "dns; mx1.example.test"
    assert alice["diagnostic-code"] == "smtp; 554 5.7.1 Message content rejected"

    text = [part for part in report.walk() if part.get_content_type() == "text/plain"][0]
    human = text.get_payload(decode=True).decode()
    assert ("<nobody@example.test>: host mx1.example.test[%s] said: 550 5.1.1 "
            "<nobody@example.test>: Recipient address rejected (in reply to RCPT TO command)"
            % PEER_ADDRESS) in human
    assert ("<alice@example.test>: host mx1.example.test[%s] said: 554 5.7.1 "
            "Message content rejected (in reply to end of DATA command)" % PEER_ADDRESS) in human
