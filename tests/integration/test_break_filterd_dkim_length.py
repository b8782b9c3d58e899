"""A DKIM signature with l= must not vouch for text appended after the
signed length.

l=, the body length tag of RFC 6376, limits the body hash to the first
L bytes, so anyone who has one message signed with l= by a domain can
append text, even a new MIME part, and keep dkim=pass. filterd reported
dkim=pass and let the signature align DMARC, so the message passed the
p=reject policy of the signing domain, while mail readers show the
appended text as part of the message. Such a signature now gets
dkim=policy (RFC 6376 section 8.2).
"""

import os
import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

import dkim_bed
from conftest import BIN

DEMO = "demo@example.test"
DOMAIN = "reject.test"
SELECTOR = "sel"

pytestmark = pytest.mark.skipif(not os.path.exists(dkim_bed.UNBOUND),
                                reason="needs unbound to serve the key and DMARC records")


@pytest.fixture(scope="module")
def key():
    """A key for reject.test from estafeta dkim keygen: (PEM, TXT strings)."""
    directory = Path(tempfile.mkdtemp(prefix="est-dkim-length-", dir="/tmp"))
    config = directory / "estafeta.conf"
    config.write_text("syslog = no\ndkim_key_directory = %s\n" % (directory / "keys"))
    path, strings, _ = dkim_bed.keygen(str(BIN / "estafeta"), config, DOMAIN, SELECTOR)
    yield path.read_bytes(), strings
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def zone(tmp_path_factory, key):
    records = ['%s. TXT "v=spf1 ?all"' % DOMAIN,
               '_dmarc.%s. TXT "v=DMARC1; p=reject"' % DOMAIN,
               dkim_bed.txt_record("%s._domainkey.%s" % (SELECTOR, DOMAIN), key[1])]
    server = dkim_bed.LoopbackZone(tmp_path_factory.mktemp("dkim-length-dns"), [DOMAIN],
                                   records)
    yield server
    server.close()


def signed_message(key_pem, body, length):
    """A message from ceo@reject.test signed by dkimpy, with l= when LENGTH is set."""
    import dkim

    message = dkim_bed.message(sender="ceo@%s" % DOMAIN, body=body)
    signature = dkim.sign(message, SELECTOR.encode(), DOMAIN.encode(), key_pem,
                          include_headers=[b"from", b"to", b"subject", b"date"], length=length)
    return signature + message


def deliver(make_mailhost, zone, message, checks="dkim_verify dmarc authres"):
    """Send MESSAGE inbound through CHECKS. Return the reply code to the
    data and the Authentication-Results fields of the stored copy."""
    host = make_mailhost(**dkim_bed.filter_settings(
        zone, mynetworks="127.0.0.254/32", filterd_checks=checks))
    host.start("filterd")
    with host.smtp() as client:
        try:
            client.sendmail("bounce@other.test", [DEMO], message)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, []
    stored = host.wait_for_messages(DEMO, 1)
    assert len(stored) == 1, host.log()
    return 250, dkim_bed.authres_fields(stored[0])


def test_signed_length_whole_body_passes(make_mailhost, zone, key):
    message = signed_message(key[0], "Please pay invoice 17.\n", length=True)

    code, fields = deliver(make_mailhost, zone, message)

    assert code == 250
    assert len(fields) == 1, fields
    assert "dkim=pass header.d=%s" % DOMAIN in fields[0]
    assert "dmarc=pass" in fields[0]


def test_appended_text_not_dmarc_pass(make_mailhost, zone, key):
    message = signed_message(key[0], "Please pay invoice 17.\n", length=True)
    message += b"\r\nNew bank account for invoice 17: 00-666-0000.\r\n"

    code, fields = deliver(make_mailhost, zone, message)

    # Rejecting the message (p=reject) keeps the appended text out too.
    if code != 250:
        assert code >= 500
        return
    assert len(fields) == 1, fields
    assert "dmarc=pass" not in fields[0]


def test_appended_text_dkim_policy(make_mailhost, zone, key):
    message = signed_message(key[0], "Please pay invoice 17.\n", length=True)
    message += b"\r\nNew bank account for invoice 17: 00-666-0000.\r\n"

    code, fields = deliver(make_mailhost, zone, message, checks="dkim_verify authres")

    assert code == 250
    assert len(fields) == 1, fields
    assert ("dkim=policy (unsigned content after l=) header.d=%s" % DOMAIN) in fields[0]


def test_from_after_bad_line_breaks_dkim(make_mailhost, zone, key):
    # A second From: after a header line without a colon is shown by mail
    # readers, so DKIM must see it too: h= then covers the added field.
    message = signed_message(key[0], "Please pay invoice 17.\n", length=False)
    header, body = message.split(b"\r\n\r\n", 1)
    message = header + b"\r\nA line without a colon\r\nFrom: ceo@other.test\r\n\r\n" + body

    code, fields = deliver(make_mailhost, zone, message, checks="dkim_verify authres")

    assert code == 250
    assert len(fields) == 1, fields
    assert "dkim=fail header.d=%s" % DOMAIN in fields[0]
