"""A message whose header section smtpd cannot edit must get a
permanent reply, not 451 for ever.

smtpd applies filterd's header edits in place, and header_edit_apply
reads at most HEADER_EDIT_MAX (1 MiB) of header section, counted up to
the first empty line. A longer header section, or a message of more than
1 MiB with no empty line at all, makes the edit fail and smtpd replies
"451 4.3.0 Error: queue file write error, try again later". The sender
retries the same message until its queue lifetime ends. filterd itself
reads up to 4 MiB of header section and ends it at the first line that
is not a field, so the two sides disagree on what the header is."""

import smtplib

import pytest

DEMO = "demo@example.test"
SENDER = "sender@example.org"

# About 1.2 MB each, under smtpd's default message_size_limit of 10 MB.
MESSAGES = {
    "header section over 1 MiB": ("From: <%s>\r\nTo: <%s>\r\nSubject: big header\r\n" % (SENDER, DEMO)
                                  + ("X-Padding: %s\r\n" % ("a" * 900)) * 1300
                                  + "\r\nbody\r\n"),
    "no empty line, over 1 MiB": ("From: <%s>\r\nTo: <%s>\r\nSubject: no empty line\r\n" % (SENDER, DEMO)
                                  + "a body line straight after the header fields\r\n" * 27000),
}


def start_host(make_mailhost):
    """Inbound mail through filterd, whose authres check always adds a field."""
    host = make_mailhost(start=False, mynetworks="198.51.100.0/24", smtpd_filter="yes",
                         filterd_checks="authres")
    host.newaliases()
    host.start()
    host.start("filterd")
    return host


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_uneditable_header_not_tempfailed(make_mailhost, case):
    host = start_host(make_mailhost)

    with host.smtp() as client:
        try:
            client.sendmail(SENDER, [DEMO], MESSAGES[case])
            code = 250
        except smtplib.SMTPDataError as error:
            code = error.smtp_code

    assert code == 250 or code >= 500, host.log()
