"""A local user gets mail signed for an address that is not theirs.

After AUTH, smtpd requires every From: address to belong to the login
(smtpd_sender_login_maps, or the virtual or system user of that name).
Local submissions skip that check. Since sendmail submissions pass
filterd, queued sends them with auth_user set to the submitting user,
so filterd treats them as outbound mail and signs them. Any local
account, such as a web application's, can then send mail that carries
a valid DKIM signature of the domain in the name of another user.

Fixed: filterd signs the mail of a login only when the login owns
every From: address, by the rules smtpd applies after AUTH.
"""

import os
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
