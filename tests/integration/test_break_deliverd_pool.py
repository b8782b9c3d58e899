"""Failures of deliverd's mailbox worker pool found in review: each test
fails while the bug is there."""

import smtplib

from test_deliverd_lmtp import send_data


def test_redo_at_process_limit_delivers(make_mailhost):
    # With one process slot, the mailbox worker occupies the slot when it
    # hands the first delivery (no home directory yet) back with redo=yes.
    # The request must reach a one-shot worker, not go back to the pool.
    host = make_mailhost(deliverd_max_processes="1")
    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=20)
    assert client.ehlo("client.example.test")[0] == 250
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    assert send_data(client, b"Subject: slot\r\n\r\nhello\r\n")[0] == 354

    try:
        code, text = client.getreply()
    except smtplib.SMTPServerDisconnected as error:
        code, text = None, str(error)
    assert code == 250, text
    assert len(host.wait_for_messages("demo@example.test", 1, timeout=5)) == 1
    client.quit()
