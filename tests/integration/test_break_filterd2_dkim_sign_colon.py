"""dkim_sign reads the fields after a header line without a colon.

smtpd accepts a header line without a colon, and filterd's verifier
reads the fields after one, so the signer must read them too. A From:
field after the line must be found. A Subject: after it must be covered
by the signature, because otherwise it could be changed in transit
while a verifier that reads the whole header section still reports pass.
"""

import os
import re

import pytest

import dkim_bed
from conftest import is_root
from test_filterd_dkim import keys, records, signing_host, zone  # noqa: F401 (fixtures)

DEMO = "demo@example.test"

pytestmark = pytest.mark.skipif(not is_root() or not os.path.exists(dkim_bed.UNBOUND),
                                reason="needs root (filter_user keys) and unbound")


def signed_fields(stored):
    """Return the lower-case field names in h= of the DKIM-Signature of STORED."""
    match = re.search(rb"DKIM-Signature:(.*?)\n(?=\S)", stored, re.S)
    assert match, stored[:2000]
    value = re.sub(rb"\s+", b"", match.group(1))
    names = re.search(rb"(?:^|;)h=([^;]*)", value).group(1)
    return names.lower().split(b":")


def send(host, header):
    """Send HEADER and a short body from mynetworks and return the delivered message."""
    message = header + b"\r\nHello from the DKIM tests.\r\n"
    with host.smtp() as client:
        client.sendmail(DEMO, [DEMO], message)
    found = host.wait_for_messages(DEMO, 1)
    assert found, host.log()
    return found[0]


def test_sign_from_after_colonless_line(make_mailhost, zone, keys):  # noqa: F811
    host = signing_host(make_mailhost, zone, keys, "rsa")

    stored = send(host, b"To: demo@example.test\r\nnot a field\r\n"
                        b"From: Demo <demo@example.test>\r\nSubject: after\r\n")

    assert b"DKIM-Signature:" in stored, host.log()
    assert b"from" in signed_fields(stored)


def test_sign_subject_after_colonless_line(make_mailhost, zone, keys):  # noqa: F811
    host = signing_host(make_mailhost, zone, keys, "rsa")

    stored = send(host, b"From: Demo <demo@example.test>\r\nTo: demo@example.test\r\n"
                        b"not a field\r\nSubject: after\r\n")

    assert b"DKIM-Signature:" in stored, host.log()
    assert b"subject" in signed_fields(stored)
