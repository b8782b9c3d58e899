"""deliverd over its LMTP socket: protocol replies, Maildir files, +detail,
aliases, loop detection and limits, with Python's smtplib.LMTP as client."""

import os
import re
import shutil
import smtplib
import subprocess
import time

import pytest


def lmtp(host):
    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=30)
    code, _ = client.ehlo("client.example.test")
    assert code == 250
    return client


def send_data(client, body):
    """Send DATA and BODY (bytes, CRLF, not dot-stuffed); return the 354 reply."""
    code, text = client.docmd("DATA")
    if code != 354:
        return code, text
    stuffed = re.sub(rb"(?m)^\.", b"..", body)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    client.send(stuffed + b".\r\n")
    return code, text


def transaction(host, rcpts, body=b"Subject: test\r\n\r\nhello\r\n", sender="sender@example.org"):
    """Run one transaction; return (rcpt replies, data replies, client)."""
    client = lmtp(host)
    assert client.docmd("MAIL FROM:<%s>" % sender)[0] == 250
    rcpt_replies = [client.docmd("RCPT TO:<%s>" % rcpt) for rcpt in rcpts]
    accepted = sum(1 for code, _ in rcpt_replies if code == 250)
    code, _ = send_data(client, body)
    assert code == 354
    data_replies = [client.getreply() for _ in range(accepted)]
    return rcpt_replies, data_replies, client


def test_lhlo_extensions(mailhost):
    client = smtplib.LMTP(mailhost.settings["lmtp_socket"], timeout=30)
    code, text = client.ehlo("client.example.test")
    assert code == 250
    lines = text.decode().splitlines()
    assert lines[0] == "mail.example.test"
    for extension in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8"):
        assert extension in lines
    assert any(line.startswith("SIZE") for line in lines)
    client.quit()


def test_greeting_names_lmtp(mailhost):
    client = smtplib.LMTP(timeout=30)
    code, text = client.connect(mailhost.settings["lmtp_socket"])
    assert code == 220
    assert b"LMTP" in text
    client.close()


def test_replies_per_recipient_in_order(mailhost):
    rcpt_replies, data_replies, client = transaction(
        mailhost, ["demo@example.test", "nosuchuser@example.test", "alice@example.test"])
    assert [code for code, _ in rcpt_replies] == [250, 550, 250]
    assert rcpt_replies[1][1].startswith(b"5.1.1")
    assert len(data_replies) == 2
    assert data_replies[0][0] == 250
    assert b"<demo@example.test>" in data_replies[0][1]
    assert data_replies[1][0] == 250
    assert b"<alice@example.test>" in data_replies[1][1]
    assert client.docmd("QUIT")[0] == 221


def test_unknown_user_rejected(mailhost):
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<>")[0] == 250
    code, text = client.docmd("RCPT TO:<nobody-here@example.test>")
    assert code == 550
    assert text.startswith(b"5.1.1")
    code, text = client.docmd("RCPT TO:<nobody-here@mail.example.test>")
    assert code == 550
    assert text.startswith(b"5.1.1")
    code, text = client.docmd("RCPT TO:<someone@not-local.example>")
    assert code == 550
    code, text = client.docmd("DATA")
    assert code == 503
    assert text.startswith(b"5.5.1")
    client.quit()


def test_maildir_file_name_and_headers(mailhost):
    body = b"Subject: file name\r\nFrom: a@example.org\r\n\r\nline one\r\n.leading dot\r\n"
    _, data_replies, client = transaction(mailhost, ["demo@example.test"], body)
    client.quit()
    assert data_replies[0][0] == 250

    files = mailhost.message_files("demo@example.test")
    assert len(files) == 1
    path = files[0]
    assert path.parent.name == "new"
    match = re.fullmatch(r"(\d+)\.M(\d+)P(\d+)Q(\d+)\.(.+),S=(\d+)", path.name)
    assert match, path.name
    assert int(match.group(6)) == path.stat().st_size
    assert abs(int(match.group(1)) - time.time()) < 120

    content = path.read_bytes()
    assert content.startswith(
        b"Return-Path: <sender@example.org>\nDelivered-To: demo@example.test\n")
    assert b"\r" not in content
    assert content.endswith(b"\n\nline one\n.leading dot\n")

    maildir = mailhost.maildir("demo@example.test")
    for sub in ("tmp", "new", "cur"):
        assert (maildir / sub).is_dir()
        assert (maildir / sub).stat().st_mode & 0o777 == 0o700
    assert list((maildir / "tmp").iterdir()) == []


def test_bare_cr_kept(mailhost):
    body = b"Subject: cr\r\n\r\nbare\rcr inside\r\n"
    _, data_replies, client = transaction(mailhost, ["demo@example.test"], body)
    client.quit()
    assert data_replies[0][0] == 250
    assert mailhost.messages("demo@example.test")[0].endswith(b"\n\nbare\rcr inside\n")


def test_detail_goes_to_base_user(mailhost):
    _, data_replies, client = transaction(mailhost, ["Alice+Lists@example.test"])
    client.quit()
    assert data_replies[0][0] == 250
    messages = mailhost.messages("alice@example.test")
    assert len(messages) == 1
    assert b"Delivered-To: alice+lists@example.test\n" in messages[0]


def test_alias_to_several_users(mailhost):
    _, data_replies, client = transaction(mailhost, ["team@example.test"])
    client.quit()
    assert data_replies[0][0] == 250
    for user in ("alice@example.test", "bob@example.test"):
        messages = mailhost.messages(user)
        assert len(messages) == 1
        assert b"Delivered-To: %s\n" % user.encode() in messages[0]


def test_local_alias_without_domain(mailhost):
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<>")[0] == 250
    code, text = client.docmd("RCPT TO:<Postmaster>")
    assert code == 250
    assert b"<postmaster@mail.example.test>" in text.lower()
    assert send_data(client, b"Subject: bounce\r\n\r\nx\r\n")[0] == 354
    assert client.getreply()[0] == 250
    client.quit()
    messages = mailhost.messages("demo@example.test")
    assert len(messages) == 1
    assert messages[0].startswith(b"Return-Path: <>\nDelivered-To: demo@example.test\n")


def test_delivered_to_loop_rejected(mailhost):
    body = b"Delivered-To: other@example.test\r\nDelivered-To: demo@example.test\r\nSubject: loop\r\n\r\nx\r\n"
    _, data_replies, client = transaction(mailhost, ["demo@example.test", "alice@example.test"], body)
    client.quit()
    assert data_replies[0][0] == 550
    assert data_replies[0][1].startswith(b"5.4.6")
    assert data_replies[1][0] == 250
    assert mailhost.messages("demo@example.test") == []
    assert len(mailhost.messages("alice@example.test")) == 1
    assert mailhost.wait_for_log(r"to=<demo@example.test>.*dsn=5\.4\.6, status=bounced")


def test_pipelined_transaction(mailhost):
    client = smtplib.LMTP(mailhost.settings["lmtp_socket"], timeout=30)
    client.send(b"LHLO client.example.test\r\nMAIL FROM:<s@example.org>\r\n"
                b"RCPT TO:<demo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    codes = [client.getreply()[0] for _ in range(5)]
    assert codes == [250, 250, 250, 250, 354]
    client.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    codes = [client.getreply()[0] for _ in range(5)]
    assert codes == [250, 250, 250, 250, 221]
    assert len(mailhost.messages("demo@example.test")) == 1
    assert len(mailhost.messages("bob@example.test")) == 1


@pytest.mark.parametrize("command, code, status", [
    ("HELO client.example.test", 500, b"5.5.1"),
    ("EHLO client.example.test", 500, b"5.5.1"),
    ("MAIL FROM:<a@example.org>", 503, b"5.5.1"),
    ("RCPT TO:<demo@example.test>", 503, b"5.5.1"),
    ("DATA", 503, b"5.5.1"),
    ("LHLO", 501, b"5.5.4"),
    ("XYZZY", 500, b"5.5.2"),
])
def test_out_of_order_commands(mailhost, command, code, status):
    client = smtplib.LMTP(timeout=30)
    client.connect(mailhost.settings["lmtp_socket"])
    reply = client.docmd(command)
    assert reply[0] == code
    assert reply[1].startswith(status)
    assert client.docmd("NOOP")[0] == 250
    client.quit()


@pytest.mark.parametrize("command, code, status", [
    ("MAIL FROM:<a@example.org> RET=HDRS", 555, b"5.5.4"),
    ("MAIL FROM:<a@example.org> BODY=BINARYMIME", 501, b"5.5.4"),
    ("MAIL FROM:<a@example.org> SIZE=x", 501, b"5.5.4"),
    ("MAIL FROM:<a@example.org> SIZE=99999999999", 552, b"5.3.4"),
    ("MAIL FROM:a@example.org", 501, b"5.1.7"),
    ("MAIL FROM:<a@@example.org>", 501, b"5.1.7"),
    ("MAIL TO:<a@example.org>", 501, b"5.5.4"),
])
def test_invalid_mail_commands(mailhost, command, code, status):
    client = lmtp(mailhost)
    reply = client.docmd(command)
    assert reply[0] == code
    assert reply[1].startswith(status)
    assert client.docmd("MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8 SIZE=100")[0] == 250
    assert client.docmd("MAIL FROM:<a@example.org>")[0] == 503
    client.quit()


def test_invalid_rcpt_commands(mailhost):
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<a@example.org>")[0] == 250
    code, text = client.docmd("RCPT TO:demo@example.test")
    assert (code, text[:5]) == (501, b"5.1.3")
    code, text = client.docmd("RCPT TO:<demo@example.test> NOTIFY=NEVER")
    assert (code, text[:5]) == (555, b"5.5.4")
    assert client.docmd("RCPT TO:<demo@example.test> ORCPT=rfc822;demo@example.test")[0] == 250
    client.quit()


def test_line_too_long(mailhost):
    client = lmtp(mailhost)
    client.send(b"NOOP " + b"x" * 5000 + b"\r\n")
    code, text = client.getreply()
    assert (code, text[:5]) == (500, b"5.5.6")
    assert client.docmd("NOOP")[0] == 250
    client.quit()


def test_too_many_errors_closes(mailhost):
    client = lmtp(mailhost)
    for _ in range(19):
        assert client.docmd("XYZZY")[0] == 500
    client.send(b"XYZZY\r\n")
    assert client.getreply()[0] == 500
    assert client.getreply()[0] == 421
    client.close()


def test_message_size_limit(make_mailhost):
    host = make_mailhost(message_size_limit=2000)
    client = lmtp(host)
    assert client.docmd("MAIL FROM:<a@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    assert client.docmd("RCPT TO:<bob@example.test>")[0] == 250
    assert send_data(client, b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 40)[0] == 354
    for _ in range(2):
        code, text = client.getreply()
        assert (code, text[:5]) == (552, b"5.3.4")
    assert client.docmd("NOOP")[0] == 250
    client.quit()
    assert host.messages("demo@example.test") == []


def test_authd_down_tempfails(mailhost):
    mailhost.stop("authd")
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<a@example.org>")[0] == 250
    code, text = client.docmd("RCPT TO:<demo@example.test>")
    assert code == 451
    assert text.startswith(b"4.3.0")
    client.quit()


def test_eight_bit_and_utf8(mailhost):
    body = "Subject: Grüße\r\n\r\nÄpfel\r\n".encode()
    client = lmtp(mailhost)
    client.command_encoding = "utf-8"
    assert client.docmd("MAIL FROM:<jörg@example.org> SMTPUTF8 BODY=8BITMIME")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    assert send_data(client, body)[0] == 354
    assert client.getreply()[0] == 250
    client.quit()
    message = mailhost.messages("demo@example.test")[0]
    assert message.startswith("Return-Path: <jörg@example.org>\n".encode())
    assert message.endswith("Äpfel\n".encode())


def test_concurrent_sessions(mailhost):
    clients = [lmtp(mailhost) for _ in range(5)]
    for i, client in enumerate(clients):
        assert client.docmd("MAIL FROM:<s%d@example.org>" % i)[0] == 250
        assert client.docmd("RCPT TO:<bob@example.test>")[0] == 250
    for i, client in enumerate(clients):
        assert send_data(client, b"Subject: %d\r\n\r\nx\r\n" % i)[0] == 354
    for client in clients:
        assert client.getreply()[0] == 250
        client.quit()
    assert len(mailhost.messages("bob@example.test")) == 5


def test_log_lines(mailhost):
    _, data_replies, client = transaction(mailhost, ["team@example.test"])
    client.quit()
    assert data_replies[0][0] == 250
    assert mailhost.wait_for_log(
        r"[0-9A-F]{10}: from=<sender@example.org>, size=\d+, nrcpt=1")
    assert mailhost.wait_for_log(
        r"[0-9A-F]{10}: to=<alice@example.test>, orig_to=<team@example.test>, relay=local, "
        r"delay=[0-9.]+, dsn=2\.0\.0, status=sent \(delivered to maildir\)")


@pytest.mark.skipif(shutil.which("smtp-source") is None, reason="Postfix's smtp-source is not installed")
def test_postfix_lmtp_client(mailhost):
    """Postfix's smtp-source, in LMTP mode over the Unix socket: two
    sessions, six messages."""
    result = subprocess.run(
        ["smtp-source", "-L", "-s", "2", "-m", "6", "-l", "2000", "-M", "client.example.test",
         "-f", "sender@example.org", "-t", "bob@example.test",
         "unix:" + mailhost.settings["lmtp_socket"]],
        capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    messages = mailhost.messages("bob@example.test")
    assert len(messages) == 6
    for message in messages:
        assert message.startswith(b"Return-Path: <sender@example.org>\nDelivered-To: bob@example.test\n")
        assert b"\r" not in message
