"""smtpd's hop count: a message whose header section has more than
hopcount_limit Received: and Delivered-To: fields (smtpd's own Received:
field included) is in a mail loop and gets 554 5.4.6, as with Postfix's
hopcount_limit."""

import pytest

from conftest import MailHost

LIMIT = 5


@pytest.fixture(scope="module")
def limited_host():
    """One host with hopcount_limit = LIMIT for the tests that only talk to it."""
    host = MailHost({"hopcount_limit": str(LIMIT)})
    host.newaliases()
    host.start()
    yield host

    reports = host.sanitizer_reports()
    host.destroy(keep=bool(reports))
    assert not reports, "sanitizer reports in %s:\n%s" % (host.dir, "\n".join(reports))


def received_fields(count):
    """Return COUNT Received: fields as they come from other hosts."""
    return "".join("Received: from relay%d.example.net by mx.example.net;\r\n"
                   "\tFri, 04 Dec 2026 10:15:02 +0000\r\n" % i for i in range(count))


def message(header, body="Hello.\r\n"):
    return ("%sFrom: sender@example.net\r\nSubject: hops\r\n\r\n%s" % (header, body)).encode()


def send_data(host, content):
    """Send CONTENT with DATA and return the final reply and the connection."""
    conn = host.raw()
    assert conn.cmd("EHLO client.example.test")[0] == 250
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert conn.cmd("DATA")[0] == 354
    conn.send(content + b".\r\n")
    return conn.reply(), conn


def assert_too_many_hops(reply):
    assert reply[0] == 554, reply
    assert reply[1] == "5.4.6 Error: too many hops", reply


def test_hops_at_limit_accepted(limited_host):
    # LIMIT - 1 fields, and smtpd's own Received: makes LIMIT.
    reply, conn = send_data(limited_host, message(received_fields(LIMIT - 1)))
    assert reply[0] == 250, reply
    conn.cmd("QUIT")


def test_hops_over_limit_rejected(limited_host):
    reply, conn = send_data(limited_host, message(received_fields(LIMIT)))
    assert_too_many_hops(reply)

    # The session goes on with a new transaction.
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("QUIT")[0] == 221
    assert limited_host.wait_for_log(r"more than hopcount_limit = %d Received: and Delivered-To: "
                                     r"fields" % LIMIT)


def test_delivered_to_counted(limited_host):
    header = received_fields(LIMIT - 2) + "Delivered-To: a@example.test\r\n" \
        "Delivered-To: b@example.test\r\n"
    reply, conn = send_data(limited_host, message(header))
    assert_too_many_hops(reply)
    conn.cmd("QUIT")


def test_name_forms_counted(limited_host):
    header = received_fields(LIMIT - 3) + "RECEIVED: from a by b; now\r\n" \
        "Received : from c by d; now\r\ndelivered-to: c@example.test\r\n"
    reply, conn = send_data(limited_host, message(header))
    assert_too_many_hops(reply)
    conn.cmd("QUIT")


def test_folded_field_counted_once(limited_host):
    header = "Received: from a\r\n Received: from b\r\n\tReceived: from c\r\n"
    reply, conn = send_data(limited_host, message(header))
    assert reply[0] == 250, reply
    conn.cmd("QUIT")


def test_body_fields_not_counted(limited_host):
    body = received_fields(LIMIT * 2)
    reply, conn = send_data(limited_host, message(received_fields(1), body))
    assert reply[0] == 250, reply
    conn.cmd("QUIT")


def test_fields_after_header_not_counted(limited_host):
    # A line that is no field ends the header section, as in RFC 5322.
    content = b"not a field\r\n" + received_fields(LIMIT * 2).encode()
    reply, conn = send_data(limited_host, content)
    assert reply[0] == 250, reply
    conn.cmd("QUIT")


def test_bdat_over_limit_rejected(limited_host):
    content = message(received_fields(LIMIT))
    conn = limited_host.raw()
    assert conn.cmd("EHLO client.example.test")[0] == 250
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    assert conn.cmd("RCPT TO:<demo@example.test>")[0] == 250
    conn.send(b"BDAT %d LAST\r\n" % len(content) + content)
    assert_too_many_hops(conn.reply())
    conn.cmd("QUIT")


def test_default_limit_is_50(shared_mailhost):
    reply, conn = send_data(shared_mailhost, message(received_fields(49)))
    assert reply[0] == 250, reply
    conn.cmd("QUIT")

    reply, conn = send_data(shared_mailhost, message(received_fields(50)))
    assert_too_many_hops(reply)
    conn.cmd("QUIT")
