"""The From: check after AUTH must see every From: field that a mail
reader may show. smtpd's header parser ends the header section at the
first line that is neither a field nor a continuation, but Dovecot 2.3.19
(Debian's dovecot-imapd) reads on past such a line, and Python's email
package skips a leading mbox "From " line. So after AUTH smtpd rejects
a message with such a line in its header section (550 5.6.0), and a From:
placed after it never reaches readers unchecked."""

import smtplib

import pytest

from conftest import tls_client_context

DEMO = "demo@example.test"
BOB = "bob@example.test"
OTHER = "alice@example.test"

# The first lines of a message, each followed by "From: OTHER".
LINES_BEFORE_FROM = {
    "line without colon": "Subject: test\r\nA line without a colon\r\n",
    "8-bit line": "Subject: test\r\n\xe9\xe9\xe9\r\n",
    "mbox From_ line": "From %s Sat Jan  1 00:00:00 2026\r\n" % DEMO,
}


@pytest.mark.parametrize("case", sorted(LINES_BEFORE_FROM))
def test_from_after_malformed_line_rejected(make_mailhost, case):
    host = make_mailhost(tls=True)
    message = (LINES_BEFORE_FROM[case] + "From: %s\r\n\r\nbody\r\n" % OTHER).encode("latin-1")

    with host.submission() as client:
        client.starttls(context=tls_client_context())
        client.login(DEMO, "demo")
        with pytest.raises(smtplib.SMTPDataError) as error:
            client.sendmail(DEMO, [BOB], message)

    assert error.value.smtp_code == 550
    assert error.value.smtp_error.startswith(b"5.6.0 ")
    assert host.messages(BOB) == []
