"""A message that spoofs a domain with p=reject must not get past DMARC
by giving the From: field in a form the check skips.

filterd's DMARC check once returned dmarc=permerror and applied no
policy when the header had two From: fields, a From: field with two
addresses, a From: field after a line that is not a field (its header
parser stopped there, while Dovecot reads on to the empty line), or a
From: domain in UTF-8 whose record is published under its A-label. Mail
readers still show the spoofed address. The DMARCbis draft, which
replaces RFC 7489, names this as a way to bypass DMARC and, as RFC 7489
did, recommends applying the strictest policy among the From: domains,
or rejecting such messages: filterd now applies the strictest policy.
A From: field after a bare CR is rejected by smtpd itself.
"""

import email.utils
import os
import smtplib

import pytest

import dkim_bed

DEMO = "demo@example.test"
ENVELOPE_SENDER = "bounce@other.test"
RECORDS = [
    'reject.test. TXT "v=spf1 ?all"',
    '_dmarc.reject.test. TXT "v=DMARC1; p=reject"',
    # bücher.test, whose From: domain arrives as UTF-8 (a U-label).
    'xn--bcher-kva.test. TXT "v=spf1 ?all"',
    '_dmarc.xn--bcher-kva.test. TXT "v=DMARC1; p=reject"',
]

pytestmark = pytest.mark.skipif(not os.path.exists(dkim_bed.UNBOUND),
                                reason="needs unbound to serve the DMARC record")

# The header lines that carry the From: address, by case.
SPOOFED_FROM = {
    "two From fields": "From: ceo@reject.test\r\nFrom: ceo@reject.test\r\n",
    "two From fields, other domain second": ("From: ceo@reject.test\r\n"
                                             "From: someone@other.test\r\n"),
    "two addresses in From": "From: ceo@reject.test, someone@other.test\r\n",
    # A field first: smtpd makes content whose first line is not a field all body.
    "From after a line without colon": ("X-Note: x\r\nA line without a colon\r\n"
                                        "From: ceo@reject.test\r\n"),
    "From domain as a U-label": "From: ceo@b\u00fccher.test\r\n",
}


@pytest.fixture(scope="module")
def zone(tmp_path_factory):
    server = dkim_bed.LoopbackZone(tmp_path_factory.mktemp("dmarc-from-dns"),
                                   ["reject.test", "other.test", "xn--bcher-kva.test"], RECORDS)
    yield server
    server.close()


def start_host(make_mailhost, zone):
    """A host that checks DMARC (no SPF, no DKIM) on mail from 127.0.0.1."""
    host = make_mailhost(**dkim_bed.filter_settings(zone, mynetworks="127.0.0.254/32",
                                                    filterd_checks="dmarc authres"))
    host.start("filterd")
    return host


def send(host, from_lines):
    """Send a message with FROM_LINES and return the code of the reply to the data."""
    message = ("%sTo: <%s>\r\nSubject: invoice\r\n"
               "Date: %s\r\n\r\nPlease pay.\r\n"
               % (from_lines, DEMO, email.utils.formatdate(usegmt=True)))
    with host.smtp() as client:
        try:
            client.sendmail(ENVELOPE_SENDER, [DEMO], message.encode())
        except smtplib.SMTPDataError as error:
            return error.smtp_code
    return 250


def test_single_from_rejected(make_mailhost, zone):
    host = start_host(make_mailhost, zone)

    assert send(host, "From: ceo@reject.test\r\n") == 550
    assert host.messages(DEMO) == []


@pytest.mark.parametrize("case", sorted(SPOOFED_FROM))
def test_spoofed_from_rejected(make_mailhost, zone, case):
    host = start_host(make_mailhost, zone)

    code = send(host, SPOOFED_FROM[case])

    assert code >= 500, host.log()
    assert host.messages(DEMO) == []


def test_from_after_bare_cr_rejected(make_mailhost, zone):
    host = start_host(make_mailhost, zone)

    # smtpd rejects a bare CR in the header section, as it does a bare LF.
    assert send(host, "X-Note: x\rFrom: ceo@reject.test\r\n") == 550
    assert host.messages(DEMO) == []
