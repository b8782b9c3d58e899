"""BDAT (RFC 3030) in deliverd's LMTP sessions: counted chunks without
dot-stuffing, one reply per recipient after the LAST chunk, and the
replies to chunks that cannot be taken."""

import smtplib

import pytest

BODY = b"Subject: chunks\r\n\r\n.a line with a leading dot\r\nlast line\r\n"


def lmtp(host):
    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=30)
    code, text = client.ehlo("client.example.test")
    assert code == 250
    assert "CHUNKING" in text.decode().splitlines()
    return client


def bdat(client, data, last=False):
    client.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)


def test_one_chunk_for_two_recipients(mailhost):
    client = lmtp(mailhost)
    client.send(b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<demo@example.test>\r\n"
                b"RCPT TO:<alice@example.test>\r\n" + b"BDAT %d LAST\r\n" % len(BODY) + BODY)
    assert [client.getreply()[0] for _ in range(4)] == [250, 250, 250, 250]

    for address in ("demo@example.test", "alice@example.test"):
        message = mailhost.wait_for_messages(address, 1)[0]
        assert message.endswith(b"\n\n.a line with a leading dot\nlast line\n")


def test_several_chunks(mailhost):
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    # The CRLF is split between two chunks.
    bdat(client, BODY[:-1])
    code, text = client.getreply()
    assert (code, text) == (250, b"2.0.0 %d octets received" % (len(BODY) - 1))
    bdat(client, BODY[-1:], last=True)
    code, text = client.getreply()
    assert code == 250
    assert text.startswith(b"2.0.0 <demo@example.test>")

    message = mailhost.wait_for_messages("demo@example.test", 1)[0]
    assert message.endswith(b"\nlast line\n")
    assert b"\r" not in message


def test_empty_last_chunk(mailhost):
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    bdat(client, BODY)
    assert client.getreply()[0] == 250
    bdat(client, b"", last=True)
    assert client.getreply()[0] == 250
    assert mailhost.wait_for_messages("demo@example.test", 1)[0].endswith(b"last line\n")


def test_bdat_without_mail(mailhost):
    client = lmtp(mailhost)
    bdat(client, BODY, last=True)
    assert client.getreply() == (503, b"5.5.1 Send MAIL first")
    assert client.docmd("NOOP")[0] == 250


def test_bdat_without_valid_recipient(mailhost):
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<nosuchuser@example.test>")[0] == 550
    bdat(client, BODY, last=True)
    assert client.getreply() == (503, b"5.5.1 No valid recipients")
    assert client.docmd("NOOP")[0] == 250


@pytest.mark.parametrize("argument", ["", "x", "-1", "12 NOTLAST", "99999999999999999999999"])
def test_bdat_invalid_size(mailhost, argument):
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("BDAT " + argument) == (501, b"5.5.4 Syntax: BDAT size [LAST]")
    assert client.docmd("NOOP")[0] == 250


def test_data_after_bdat(mailhost):
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    bdat(client, BODY)
    assert client.getreply()[0] == 250
    assert client.docmd("DATA") == (503, b"5.5.1 DATA after BDAT in the same transaction")


def test_rset_drops_chunks(mailhost):
    client = lmtp(mailhost)
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    bdat(client, b"Subject: dropped\r\n\r\n")
    assert client.getreply()[0] == 250
    assert client.docmd("RSET")[0] == 250

    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    bdat(client, BODY, last=True)
    assert client.getreply()[0] == 250
    message = mailhost.wait_for_messages("demo@example.test", 1)[0]
    assert b"dropped" not in message


def test_chunks_over_size_limit(make_mailhost):
    host = make_mailhost(message_size_limit="1k")
    client = lmtp(host)
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<demo@example.test>")[0] == 250
    bdat(client, b"Subject: big\r\n\r\n" + b"x" * 800 + b"\r\n")
    assert client.getreply()[0] == 250
    bdat(client, b"y" * 800 + b"\r\n", last=True)
    code, text = client.getreply()
    assert code == 552
    assert text.startswith(b"5.3.4 <demo@example.test>")
    assert client.docmd("NOOP")[0] == 250
