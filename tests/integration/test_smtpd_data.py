"""smtpd DATA and BDAT: content conversion, the Received: field, bare LF
and CR (SMTP smuggling), NUL bytes, size and line limits, BDAT chunks,
and what reaches the queue when a message is rejected or cut off."""

import signal
import subprocess
import time

import pytest


def start_transaction(host, rcpt="demo@example.test", source=None, mail_params=""):
    conn = host.raw(source=source)
    assert conn.cmd("EHLO client.example.test")[0] == 250
    assert conn.cmd("MAIL FROM:<sender@example.net>" + mail_params)[0] == 250
    assert conn.cmd("RCPT TO:<%s>" % rcpt)[0] == 250
    return conn


def queue_listing(host):
    result = host.run("sendmail", "-bp")
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def assert_queue_empty(host):
    """Nothing is waiting in the queue. Tests that call this stop
    deliverd first, so a message queued by mistake would stay there."""
    time.sleep(0.5)
    assert "Mail queue is empty" in queue_listing(host)


@pytest.fixture
def held_host(make_mailhost):
    """A host whose queue keeps every message: deliverd is not running."""
    host = make_mailhost()
    host.stop("deliverd")
    return host


def assert_reply(reply, code, enhanced):
    assert reply[0] == code, reply
    assert reply[1].startswith(enhanced + " "), reply


def test_smtplib_delivery(mailhost):
    with mailhost.smtp() as client:
        refused = client.sendmail("sender@example.net", ["demo@example.test"],
                                  b"Subject: hello\r\n\r\nfirst line\r\n.dotted\r\n")
    assert refused == {}
    messages = mailhost.wait_for_messages("demo@example.test", 1)
    assert len(messages) == 1
    message = messages[0]
    # smtplib dot-stuffs ".dotted" on the wire; smtpd removes the extra dot.
    assert b"\r\n" not in message
    assert b"\nfirst line\n.dotted\n" in message
    assert b"Subject: hello\n" in message


def test_swaks_delivery(mailhost):
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % mailhost.smtp_port,
         "--helo", "client.example.test", "--from", "sender@example.net",
         "--to", "alice@example.test", "--header", "Subject: swaks", "--body", "swaks body"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    messages = mailhost.wait_for_messages("alice@example.test", 1)
    assert len(messages) == 1
    assert b"swaks body" in messages[0]


def test_received_field(mailhost):
    conn = start_transaction(mailhost)
    assert conn.cmd("DATA")[0] == 354
    code, text = conn.cmd(b"Subject: trace\r\n\r\nbody\r\n.")
    assert code == 250
    queue_id = text.split()[-1]
    conn.close()
    message = mailhost.wait_for_messages("demo@example.test", 1)[0]
    lines = message.split(b"\n")
    # deliverd puts Return-Path: and Delivered-To: above the Received: field.
    start = next(i for i, line in enumerate(lines) if line.startswith(b"Received: "))
    first = lines[start:start + 4]
    assert first[0] == b"Received: from client.example.test (unknown [127.0.0.1])"
    assert first[1] == ("\tby mail.example.test (Estafeta) with ESMTP id %s" % queue_id).encode()
    assert first[2] == b"\tfor <demo@example.test>;"
    assert first[3].startswith(b"\t")


def test_received_without_for_when_several(mailhost):
    conn = start_transaction(mailhost)
    assert conn.cmd("RCPT TO:<alice@example.test>")[0] == 250
    assert conn.cmd("DATA")[0] == 354
    assert conn.cmd(b"Subject: two\r\n\r\nbody\r\n.")[0] == 250
    conn.close()
    message = mailhost.wait_for_messages("alice@example.test", 1)[0]
    header = message.split(b"\n\n")[0]
    assert b"for <" not in header


def test_empty_message(mailhost):
    conn = start_transaction(mailhost)
    assert conn.cmd("DATA")[0] == 354
    assert_reply(conn.cmd("."), 250, "2.0.0")
    conn.close()


def body_after_header(message):
    """The part of a delivered message after its first empty line."""
    return message.split(b"\n\n", 1)[1]


@pytest.mark.parametrize("content,body", [
    (b"just a body line\r\nsecond line\r\n", b"just a body line\nsecond line\n"),
    (b"no newline at the end", b"no newline at the end\n"),
    (b"x" * 1500 + b"\r\n", b"x" * 1500 + b"\n"),
    (b"Not a header: the space comes first\r\n", b"Not a header: the space comes first\n"),
])
def test_headerless_message_gets_separator(mailhost, content, body):
    conn = start_transaction(mailhost)
    assert conn.cmd("DATA")[0] == 354
    assert conn.cmd(content + (b"" if content.endswith(b"\n") else b"\r\n") + b".")[0] == 250
    conn.close()

    message = mailhost.wait_for_messages("demo@example.test", 1)[0]
    assert body_after_header(message) == body


def test_header_first_line_unchanged(mailhost):
    conn = start_transaction(mailhost)
    assert conn.cmd("DATA")[0] == 354
    assert conn.cmd(b"Subject: kept\r\nX-Other: 1\r\n\r\nbody\r\n.")[0] == 250
    conn.close()

    message = mailhost.wait_for_messages("demo@example.test", 1)[0]
    assert b"\nSubject: kept\nX-Other: 1\n\nbody\n" in message
    assert body_after_header(message) == b"body\n"


def test_data_with_argument(mailhost):
    conn = start_transaction(mailhost)
    assert_reply(conn.cmd("DATA now"), 501, "5.5.4")
    conn.close()


def test_bare_cr_kept(mailhost):
    conn = start_transaction(mailhost)
    assert conn.cmd("DATA")[0] == 354
    assert conn.cmd(b"Subject: cr\r\n\r\na\rb\r\n.")[0] == 250
    conn.close()
    message = mailhost.wait_for_messages("demo@example.test", 1)[0]
    assert message.endswith(b"\na\rb\n")


def test_bare_lf_rejected(held_host):
    conn = start_transaction(held_host)
    assert conn.cmd("DATA")[0] == 354
    assert_reply(conn.cmd(b"Subject: lf\r\n\r\nline one\nline two\r\n."), 550, "5.5.2")
    assert conn.cmd("NOOP") == (250, "2.0.0 Ok")
    conn.close()
    assert_queue_empty(held_host)


def test_bare_lf_normalized(make_mailhost):
    host = make_mailhost(smtpd_bare_lf="normalize")
    conn = start_transaction(host)
    assert conn.cmd("DATA")[0] == 354
    assert conn.cmd(b"Subject: lf\r\n\r\nline one\nline two\r\n.")[0] == 250
    conn.close()
    message = host.wait_for_messages("demo@example.test", 1)[0]
    assert message.endswith(b"\nline one\nline two\n")


# A bare CR in the header section: a field after it is a field of its
# own to some mail readers, part of the field before to smtpd and filterd.
BARE_CR_HEADERS = [b"X-Note: x\rFrom: <ceo@example.org>\r\n",
                   b"Subject: s\r\tfolded\r\n",
                   b"Subject: ends with CR\r"]


@pytest.mark.parametrize("header", BARE_CR_HEADERS, ids=repr)
def test_bare_cr_in_header_rejected(held_host, header):
    conn = start_transaction(held_host)
    assert conn.cmd("DATA")[0] == 354
    assert_reply(conn.cmd(header + b"\r\nbody\r\n."), 550, "5.5.2")
    assert conn.cmd("NOOP") == (250, "2.0.0 Ok")
    conn.close()
    assert_queue_empty(held_host)


def test_bare_cr_in_header_rejected_in_bdat(held_host):
    conn = start_transaction(held_host)
    assert bdat(conn, b"X-Note: x\r")[0] == 250
    assert_reply(bdat(conn, b"From: <ceo@example.org>\r\n\r\nbody\r\n", last=True), 550,
                 "5.5.2")
    conn.close()
    assert_queue_empty(held_host)


def test_bare_cr_in_first_body_line_kept(mailhost):
    # No header field in the first line: the whole content is body.
    conn = start_transaction(mailhost)
    assert conn.cmd("DATA")[0] == 354
    assert conn.cmd(b"no header\rhere\r\n.")[0] == 250
    conn.close()
    message = mailhost.wait_for_messages("demo@example.test", 1)[0]
    assert message.endswith(b"\n\nno header\rhere\n")


SMUGGLED = (b"MAIL FROM:<attacker@example.net>\r\n"
            b"RCPT TO:<alice@example.test>\r\n"
            b"DATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled\r\n")

# Each sequence ends the message for some broken server, never for smtpd.
SMUGGLING_ENDS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r\n.\r", b"\r.\r\n"]


@pytest.mark.parametrize("fake_end", SMUGGLING_ENDS, ids=repr)
def test_smuggling_rejected_or_contained(held_host, fake_end):
    conn = start_transaction(held_host)
    assert conn.cmd("DATA")[0] == 354
    conn.send(b"Subject: carrier\r\n\r\ncarrier" + fake_end + SMUGGLED + b".\r\n")
    code, text = conn.reply()
    if b"\n" in fake_end.replace(b"\r\n", b""):
        assert_reply((code, text), 550, "5.5.2")
    else:
        assert_reply((code, text), 250, "2.0.0")
    # The smuggled commands were message content: no reply of theirs follows.
    assert conn.cmd("NOOP") == (250, "2.0.0 Ok")
    conn.close()

    listing = queue_listing(held_host)
    assert "attacker@example.net" not in listing
    if code == 550:
        assert "Mail queue is empty" in listing
    else:
        assert listing.count("sender@example.net") == 1


@pytest.mark.parametrize("fake_end", SMUGGLING_ENDS, ids=repr)
def test_smuggling_normalize_mode(make_mailhost, fake_end):
    host = make_mailhost(smtpd_bare_lf="normalize")
    conn = start_transaction(host)
    assert conn.cmd("DATA")[0] == 354
    conn.send(b"Subject: carrier\r\n\r\ncarrier" + fake_end + SMUGGLED + b".\r\n")
    assert_reply(conn.reply(), 250, "2.0.0")
    assert conn.cmd("NOOP") == (250, "2.0.0 Ok")
    conn.close()
    messages = host.wait_for_messages("demo@example.test", 1)
    assert len(messages) == 1
    assert b"smuggled" in messages[0]
    time.sleep(0.5)
    assert host.messages("alice@example.test") == []


def test_nul_in_data(held_host):
    conn = start_transaction(held_host)
    assert conn.cmd("DATA")[0] == 354
    assert_reply(conn.cmd(b"Subject: nul\r\n\r\na\x00b\r\n."), 554, "5.6.0")
    assert conn.cmd("NOOP")[0] == 250
    conn.close()
    assert_queue_empty(held_host)


def test_long_data_line(make_mailhost):
    host = make_mailhost(smtpd_data_line_length_limit=1000)
    host.stop("deliverd")
    conn = start_transaction(host)
    assert conn.cmd("DATA")[0] == 354
    assert_reply(conn.cmd(b"Subject: long\r\n\r\n" + b"x" * 1001 + b"\r\n."), 554, "5.6.0")
    assert conn.cmd("DATA")[0] == 503
    conn.close()
    assert_queue_empty(host)


def test_oversize_data(make_mailhost):
    host = make_mailhost(message_size_limit=10000)
    host.stop("deliverd")
    conn = start_transaction(host)
    assert conn.cmd("DATA")[0] == 354
    body = (b"y" * 70 + b"\r\n") * 200
    assert_reply(conn.cmd(b"Subject: big\r\n\r\n" + body + b"."), 552, "5.3.4")
    assert conn.cmd("NOOP")[0] == 250
    conn.close()
    assert_queue_empty(host)


def test_queued_message_listed(held_host):
    # The check that assert_queue_empty relies on: a message stays queued.
    conn = start_transaction(held_host)
    assert conn.cmd("DATA")[0] == 354
    assert conn.cmd(b"Subject: held\r\n\r\nbody\r\n.")[0] == 250
    conn.close()
    assert "Mail queue is empty" not in queue_listing(held_host)


def test_client_drop_mid_data(held_host):
    conn = start_transaction(held_host)
    assert conn.cmd("DATA")[0] == 354
    conn.send(b"Subject: cut\r\n\r\npartial body\r\n")
    conn.close()
    assert held_host.wait_for_log(r"lost connection after DATA from unknown\[127\.0\.0\.1\]")
    assert_queue_empty(held_host)


def test_rset_after_failed_data(held_host):
    conn = start_transaction(held_host)
    assert conn.cmd("DATA")[0] == 354
    assert conn.cmd(b"a\x00\r\n.")[0] == 554
    assert conn.cmd("RSET")[0] == 250
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    conn.close()


def test_data_timeout(make_mailhost):
    host = make_mailhost(smtpd_data_timeout="2s")
    host.stop("deliverd")
    conn = start_transaction(host)
    assert conn.cmd("DATA")[0] == 354
    conn.send(b"Subject: slow\r\n\r\nstarted")
    assert_reply(conn.reply(), 421, "4.4.2")
    assert conn.closed_by_server()
    assert_queue_empty(host)


def test_queued_down(mailhost):
    mailhost.stop("queued")
    conn = start_transaction(mailhost)
    assert_reply(conn.cmd("DATA"), 451, "4.3.0")
    assert conn.cmd("NOOP")[0] == 250
    conn.close()


def test_queued_stopped_before_data(make_mailhost):
    host = make_mailhost(smtpd_queue_timeout="2s")
    queued = host.procs["queued"]
    conn = start_transaction(host)
    queued.send_signal(signal.SIGSTOP)
    try:
        assert_reply(conn.cmd("DATA"), 451, "4.3.0")
    finally:
        queued.send_signal(signal.SIGCONT)
    assert conn.cmd("NOOP")[0] == 250
    assert conn.cmd("DATA")[0] == 354
    assert_reply(conn.cmd(b"Subject: retry\r\n\r\nbody\r\n."), 250, "2.0.0")
    conn.close()


def test_queued_stopped_before_commit(make_mailhost):
    host = make_mailhost(smtpd_queue_timeout="2s")
    queued = host.procs["queued"]
    conn = start_transaction(host)
    assert conn.cmd("DATA")[0] == 354
    queued.send_signal(signal.SIGSTOP)
    try:
        # No 250 without COMMIT-OK: the client must retry later.
        assert_reply(conn.cmd(b"Subject: stuck\r\n\r\nbody\r\n."), 451, "4.3.0")
    finally:
        queued.send_signal(signal.SIGCONT)
    assert conn.cmd("NOOP")[0] == 250
    conn.close()
    # queued may still commit the COMMIT it had already received, so
    # the message can arrive twice after the client retries: at least
    # once, never lost.


def test_two_messages_one_session(mailhost):
    conn = mailhost.raw()
    conn.cmd("EHLO client.example.test")
    for number in range(2):
        assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
        assert conn.cmd("RCPT TO:<bob@example.test>")[0] == 250
        assert conn.cmd("DATA")[0] == 354
        assert conn.cmd(b"Subject: %d\r\n\r\nbody\r\n." % number)[0] == 250
    conn.close()
    assert len(mailhost.wait_for_messages("bob@example.test", 2)) == 2


# BDAT (RFC 3030)

def bdat(conn, data, last=False):
    """Send one chunk; BDAT has no line end after its data."""
    conn.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)
    return conn.reply()


def test_bdat_chunks(mailhost):
    conn = start_transaction(mailhost)
    assert bdat(conn, b"Subject: chunks\r\n\r\nHel") == (250, "2.0.0 Ok: 22 octets received")
    code, text = bdat(conn, b"lo\r\nend\r", last=True)
    assert code == 250
    assert text.startswith("2.0.0 Ok: queued as ")
    conn.close()
    message = mailhost.wait_for_messages("demo@example.test", 1)[0]
    assert b"\n\nHello\nend\r" in message


def test_bdat_zero_last(mailhost):
    conn = start_transaction(mailhost)
    assert bdat(conn, b"Subject: z\r\n\r\nbody\r\n")[0] == 250
    assert_reply(conn.cmd("BDAT 0 LAST"), 250, "2.0.0")
    conn.close()
    assert mailhost.wait_for_messages("demo@example.test", 1)[0].endswith(b"\n\nbody\n")


def test_bdat_pipelined(mailhost):
    conn = start_transaction(mailhost)
    conn.send(b"BDAT 5\r\n.\r\n.\nBDAT 3 LAST\r\nabcQUIT\r\n")
    assert conn.reply()[0] == 250
    assert_reply(conn.reply(), 250, "2.0.0")
    assert conn.reply()[0] == 221
    conn.close()
    # No dot-stuffing in BDAT: the dots are content.
    assert b"\n.\n.\nabc" in mailhost.wait_for_messages("demo@example.test", 1)[0]


def test_bdat_without_mail(mailhost):
    conn = mailhost.raw()
    conn.cmd("EHLO client.example.test")
    # The chunk is read and dropped, so "NOOP" inside it is not a command.
    assert_reply(bdat(conn, b"NOOP\r\n"), 503, "5.5.1")
    assert conn.cmd("NOOP") == (250, "2.0.0 Ok")
    conn.close()


def test_bdat_without_rcpt(mailhost):
    conn = mailhost.raw()
    conn.cmd("EHLO client.example.test")
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert_reply(bdat(conn, b"abcd", last=True), 503, "5.5.1")
    conn.close()


@pytest.mark.parametrize("args", ["", "x", "-1", "10 NOW", "99999999999999999999999"])
def test_bdat_bad_syntax(mailhost, args):
    conn = start_transaction(mailhost)
    assert_reply(conn.cmd("BDAT " + args), 501, "5.5.4")
    conn.close()


def test_data_after_bdat(mailhost):
    conn = start_transaction(mailhost)
    assert bdat(conn, b"abc")[0] == 250
    assert_reply(conn.cmd("DATA"), 503, "5.5.1")
    conn.close()


def test_binarymime_needs_bdat(mailhost):
    conn = start_transaction(mailhost, mail_params=" BODY=BINARYMIME")
    assert_reply(conn.cmd("DATA"), 503, "5.5.1")
    assert bdat(conn, b"a\x00b\n", last=True)[0] == 250
    conn.close()


def test_bdat_oversize(make_mailhost):
    host = make_mailhost(message_size_limit=1000)
    host.stop("deliverd")
    conn = start_transaction(host)
    code, text = bdat(conn, b"z" * 2000, last=True)
    assert_reply((code, text), 552, "5.3.4")
    assert conn.cmd("NOOP")[0] == 250
    conn.close()
    assert_queue_empty(host)


def test_bdat_rset_aborts(held_host):
    conn = start_transaction(held_host)
    assert bdat(conn, b"abc")[0] == 250
    assert conn.cmd("RSET")[0] == 250
    conn.close()
    assert_queue_empty(held_host)


def test_bdat_nul_rejected(held_host):
    conn = start_transaction(held_host)
    assert_reply(bdat(conn, b"a\x00b\n", last=True), 554, "5.6.0")
    conn.close()
    assert_queue_empty(held_host)
