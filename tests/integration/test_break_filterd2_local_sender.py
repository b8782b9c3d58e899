"""A local user gets mail signed for an address that is not theirs.

After AUTH, smtpd requires every From: address to belong to the login
(smtpd_sender_login_maps, or the virtual or system user of that name).
Local submissions skip that check. Since sendmail submissions pass
filterd, queued sends them with auth_user set to the submitting user,
so filterd treats them as outbound mail and signs them. Any local
account, such as a web application's, can then send mail that carries
a valid DKIM signature of the domain in the name of another user.

Fixed: filterd signs the mail of a login only when the login owns
every From: address, by the rules smtpd applies after AUTH. The same
applies to every other address-like text in the From: fields, because
mail readers disagree on which address of an odd field is the author.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

import dkim_bed
from conftest import is_root
from test_filterd_dkim import keys, records, zone  # noqa: F401 (fixtures)

DEMO = "demo@example.test"
NOBODY = 65534

pytestmark = pytest.mark.skipif(not is_root() or not os.path.exists(dkim_bed.UNBOUND),
                                reason="needs root (filter_user keys, another user) and unbound")


def signing_host(make_mailhost, zone, keys):  # noqa: F811
    """Start a host whose filterd signs mail from example.test."""
    table = Path(keys["directory"]) / "table-local-sender"
    table.write_text(keys["rsa"]["line"] + "\n")
    os.chmod(table, 0o644)
    host = make_mailhost(local_filter="yes",
                         **dkim_bed.filter_settings(zone, dkim_signing_table=table))
    host.start("filterd")
    return host


def test_local_user_not_signed_as_other(make_mailhost, zone, keys, records):  # noqa: F811
    host = signing_host(make_mailhost, zone, keys)
    message = ("From: Demo <%s>\nTo: <%s>\nSubject: not from demo\n\nHello.\n"
               % (DEMO, DEMO)).encode()

    result = subprocess.run([host.bin("sendmail"), "-f", DEMO, DEMO], input=message,
                            capture_output=True, timeout=30, env=host.env,
                            user=NOBODY, group=NOBODY, extra_groups=[])
    stored = host.wait_for_messages(DEMO, 1) if result.returncode == 0 else []

    signed = [m for m in stored if dkim_bed.dkimpy_verify(m, records)]
    assert signed == [], host.log()


def owner_host(make_mailhost, zone, keys):  # noqa: F811
    """A signing host where the user nobody owns nobody@example.test and
    root the rest of the domain."""
    table = Path(keys["directory"]) / "table-local-owner"
    table.write_text(keys["rsa"]["line"] + "\n")
    os.chmod(table, 0o644)
    owners = Path(keys["directory"]) / "sender-logins-owner"
    owners.write_text("nobody@example.test nobody\n@example.test root\n")
    os.chmod(owners, 0o644)
    host = make_mailhost(local_filter="yes", smtpd_sender_login_maps=str(owners),
                         **dkim_bed.filter_settings(zone, dkim_signing_table=table))
    host.start("filterd")
    return host


def send_as_nobody(host, from_value, subject):
    message = ("From: %s\nTo: <%s>\nSubject: %s\n\nHello.\n" % (from_value, DEMO, subject)).encode()
    result = subprocess.run([host.bin("sendmail"), "-f", "nobody@example.test", DEMO],
                            input=message, capture_output=True, timeout=30, env=host.env,
                            user=NOBODY, group=NOBODY, extra_groups=[])
    assert result.returncode == 0, result.stderr


# From: fields whose author mail readers may take for demo@example.test,
# although the last or the only angle address is nobody's.
AMBIGUOUS_FROM = [
    "<demo@example.test> <nobody@example.test>",
    "demo@example.test: nobody@example.test;",
    "[ <demo@example.test>, ] <nobody@example.test>",
    '"demo@example.test" <nobody@example.test>',
    "nobody@example.test (demo@example.test)",
]


def test_ambiguous_from_not_signed(make_mailhost, zone, keys, records):  # noqa: F811
    host = owner_host(make_mailhost, zone, keys)

    send_as_nobody(host, "Nobody <nobody@example.test>", "own address")
    for i, from_value in enumerate(AMBIGUOUS_FROM):
        send_as_nobody(host, from_value, "ambiguous %d" % i)
    stored = host.wait_for_messages(DEMO, 1 + len(AMBIGUOUS_FROM))

    signed = [m for m in stored if dkim_bed.dkimpy_verify(m, records)]
    assert len(stored) == 1 + len(AMBIGUOUS_FROM), host.log()
    assert len(signed) == 1, host.log()
    assert b"Subject: own address" in signed[0]
    unsigned = re.findall(r"filterd\[\d+\]: \w+: .*dkim_sign=none \(From: demo@example.test "
                          r"not owned by nobody\)", host.log())
    assert len(unsigned) == len(AMBIGUOUS_FROM), host.log()
