"""Forged Authentication-Results fields that carry this host's
authserv-id must not reach the mailbox, as RFC 8601 requires: readers
and Sieve scripts trust such a field as this host's own verdict.

filterd returns a removal (name and index) for each forged field. The
cases here once let some through:
- The removals of one message were capped at 16, shared by all checks,
  and past the cap the authres check failed and its failure policy
  (accept by default) went on without it. The SpamAssassin check used
  the slots first for incoming X-Spam-* fields, even with spamd down.
  Now a message that needs more removals than smtpd takes (32) is
  rejected with 550 5.7.1.
- filterd's parser ended the header section at the first line that is
  not a field, while smtpd and Dovecot read on to the empty line.
- A bare CR is message content to smtpd and filterd, but a line end to
  Python's email package. smtpd now rejects it in the header section.
"""

import re
import smtplib

import pytest

DEMO = "demo@example.test"
SENDER = "sender@example.org"
OUR_ID = "mail.example.test"
FORGED = "Authentication-Results: %s; dkim=pass header.d=bank.test\r\n" % OUR_ID

# Each case: (extra header lines, filterd_checks).
CASES = {
    "seventeen forged fields": (FORGED * 17, "authres"),
    "after sixteen X-Spam fields": ("X-Spam-Flag: NO\r\n" * 16 + FORGED,
                                    "spamassassin authres"),
    "after a line without colon": ("A line without a colon\r\n" + FORGED, "authres"),
}

# Cases with more removals than one filterd reply may carry: (extra
# header lines, filterd_checks).
TOO_MANY = {
    "forty forged fields": (FORGED * 40, "authres"),
    "after forty X-Spam fields": ("X-Spam-Flag: NO\r\n" * 40 + FORGED, "spamassassin authres"),
    # smtpd takes no removal index above 10000.
    "after 10001 X-Spam fields": ("X-Spam-Flag: NO\r\n" * 10001 + FORGED,
                                  "spamassassin authres"),
    "after 10001 forged fields": (FORGED * 10001, "authres"),
}


def start_host(make_mailhost, checks):
    """A host whose mail from 127.0.0.1 is inbound, with spamd down."""
    host = make_mailhost(start=False, mynetworks="198.51.100.0/24", smtpd_filter="yes",
                         filterd_checks=checks, authserv_id=OUR_ID,
                         spamd_socket="/nonexistent/spamd.sock")
    host.newaliases()
    host.start()
    host.start("filterd")
    return host


def our_fields(header):
    """The Authentication-Results fields in HEADER with this host's id,
    unfolded, including those after a line that is not a field or a CR."""
    unfolded = re.sub(r"\n[ \t]+", " ", header.replace("\r", "\n"))
    pattern = re.compile(r"^authentication-results[ \t]*:[ \t]*%s[ \t]*;(.*)$" % re.escape(OUR_ID),
                         re.IGNORECASE | re.MULTILINE)
    return pattern.findall(unfolded)


def deliver_header(make_mailhost, extra, checks):
    """Send a message with the header lines EXTRA through filterd. Return the
    stored header section, or None when smtpd rejected the message."""
    host = start_host(make_mailhost, checks)
    message = ("From: <%s>\r\nTo: <%s>\r\nSubject: forged results\r\n%s\r\nbody\r\n"
               % (SENDER, DEMO, extra))

    with host.smtp() as client:
        try:
            # Bytes, because smtplib turns a bare CR of a str into CRLF.
            client.sendmail(SENDER, [DEMO], message.encode())
        except smtplib.SMTPDataError as error:
            # Rejecting the message keeps the forged field out too.
            assert error.smtp_code >= 500, error
            assert host.messages(DEMO) == []
            return None
    stored = host.wait_for_messages(DEMO, 1)
    assert len(stored) == 1, host.log()
    return stored[0].split(b"\n\n", 1)[0].decode()


def test_forged_authres_with_space_removed(make_mailhost):
    forged = "Authentication-Results : %s; dkim=pass header.d=bank.test\r\n" % OUR_ID

    header = deliver_header(make_mailhost, forged, "authres")

    assert "bank.test" not in header
    assert len(our_fields(header)) == 1, our_fields(header)


@pytest.mark.parametrize("case", sorted(CASES))
def test_forged_authres_removed(make_mailhost, case):
    extra, checks = CASES[case]

    header = deliver_header(make_mailhost, extra, checks)

    if header is None:
        return
    assert "bank.test" not in header
    assert len(our_fields(header)) == 1, our_fields(header)


def test_forged_authres_after_bare_cr_rejected(make_mailhost):
    header = deliver_header(make_mailhost, "X-Note: x\r" + FORGED, "authres")

    # smtpd rejects a bare CR in the header section, as it does a bare LF.
    assert header is None


@pytest.mark.parametrize("case", sorted(TOO_MANY))
def test_too_many_removals_rejected(make_mailhost, case):
    extra, checks = TOO_MANY[case]

    header = deliver_header(make_mailhost, extra, checks)

    assert header is None
