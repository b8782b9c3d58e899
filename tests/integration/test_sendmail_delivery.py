"""Mail submitted with sendmail and the local clients reaches the Maildir
of a running host (authd, deliverd, queued, smtpd)."""

import re
import subprocess

import pytest


def delivered_one(host, address, timeout=15):
    messages = host.wait_for_messages(address, 1, timeout=timeout)
    assert len(messages) == 1, host.log()
    return messages[0]


def test_plain_submission_delivered(mailhost):
    result = mailhost.run("sendmail", "-f", "sender@client.example.test", "demo@example.test",
                          input=b"Subject: plain\n\nhello\n")
    assert result.returncode == 0, result.stderr
    message = delivered_one(mailhost, "demo@example.test")
    assert b"Return-Path: <sender@client.example.test>\n" in message
    assert re.search(rb"\nReceived: by mail\.example\.test \(Estafeta, from userid \d+\)\n", message)
    assert message.endswith(b"Subject: plain\n\nhello\n")


def test_t_bcc_recipient_gets_copy_without_bcc(mailhost):
    original = (b"To: alice@example.test\nBcc: bob@example.test\nSubject: bcc\n\nsecret copy\n")
    result = mailhost.run("sendmail", "-t", "-i", input=original)
    assert result.returncode == 0, result.stderr
    for address in ("alice@example.test", "bob@example.test"):
        message = delivered_one(mailhost, address)
        assert b"Bcc:" not in message
        assert message.endswith(b"To: alice@example.test\nSubject: bcc\n\nsecret copy\n")


def test_cron_mail_to_aliased_root(make_mailhost):
    host = make_mailhost(aliases="root: demo@example.test\n")
    original = b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> date\n\nout\n"
    result = host.run("sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root",
                      input=original)
    assert result.returncode == 0, result.stderr
    message = delivered_one(host, "demo@example.test")
    assert message.endswith(original)


def test_bsd_mailx_delivered(mailhost):
    mailrc = mailhost.dir / "etc" / "mailrc"
    mailrc.write_text("set sendmail=%s\n" % mailhost.bin("sendmail"))
    env = dict(mailhost.env, MAILRC=str(mailrc), HOME=str(mailhost.dir))
    result = subprocess.run(["mail", "-s", "from mailx", "bob@example.test"],
                            input=b"mailx body\n", env=env, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    message = delivered_one(mailhost, "bob@example.test")
    assert b"\nSubject: from mailx\n" in message
    assert message.endswith(b"\n\nmailx body\n")


def test_bs_session_delivered(mailhost):
    result = mailhost.run("sendmail", "-bs", input=(
        b"EHLO client.example.test\r\nMAIL FROM:<sender@client.example.test>\r\n"
        b"RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: bs\r\n\r\n..dotted\r\n.\r\n"
        b"QUIT\r\n"))
    assert result.returncode == 0
    assert b"250 2.0.0 Ok: queued as " in result.stdout
    message = delivered_one(mailhost, "alice@example.test")
    assert message.endswith(b"Subject: bs\n\n.dotted\n")


def test_queue_empty_after_delivery(mailhost):
    mailhost.run("sendmail", "demo@example.test", input=b"Subject: x\n\ny\n")
    delivered_one(mailhost, "demo@example.test")
    for _ in range(100):
        result = mailhost.run("sendmail", "-bp")
        if result.stdout == b"Mail queue is empty\n":
            break
    assert result.stdout == b"Mail queue is empty\n"


@pytest.mark.parametrize("command", [["estafeta", "queue", "flush"], ["sendmail", "-q"]])
def test_flush_delivers_deferred_message(make_mailhost, command):
    host = make_mailhost(start=False)
    host.newaliases()
    host.start("authd", "queued")
    result = host.run("sendmail", "demo@example.test", input=b"Subject: deferred\n\nlater\n")
    assert result.returncode == 0, result.stderr
    listing = host.run("sendmail", "-bp").stdout
    assert b"demo@example.test" in listing
    assert re.search(rb"\n *\(.*\)\n", listing), listing

    host.start("deliverd")
    result = host.run(*command)
    assert result.returncode == 0, result.stderr
    message = delivered_one(host, "demo@example.test")
    assert message.endswith(b"Subject: deferred\n\nlater\n")
