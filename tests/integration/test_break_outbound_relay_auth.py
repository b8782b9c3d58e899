"""A relayhost that rejects the SMTP client's credentials.

A 535 to AUTH means that the username or password in
relayhost_password_file is wrong, which the admin can fix. Postfix 3.7
defers such mail by default (`postconf -d`: smtp_sasl_auth_soft_bounce
= yes). The Estafeta client must do the same, or one wrong password
bounces all outgoing mail at once.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

import smtp_peer
from smtp_peer import A_ADDRESS, send

pytestmark = smtp_peer.skip_without_netns

B_ADDRESS = "198.51.100.25"
RECORDS = [
    "relay.example.test. A " + B_ADDRESS,
]


@pytest.fixture
def net(tmp_path):
    with smtp_peer.netns_bed(tmp_path, [("a", A_ADDRESS), ("b", B_ADDRESS)], records=RECORDS) as bed:
        yield bed


def test_rejected_relay_auth_defers(make_mailhost, net):
    make_mailhost(netns=net.hosts["b"], tls=True, smtpd_listen=B_ADDRESS + ":25",
                  smtpd_submission_listen=B_ADDRESS + ":587", myhostname="relay.example.test")
    password_file = Path(tempfile.mkdtemp(prefix="est-relay-", dir="/tmp")) / "relay_passwords"
    password_file.write_text("[relay.example.test]:587 demo@example.test:wrong-password\n")
    os.chmod(password_file, 0o600)
    try:
        sender = smtp_peer.sender_host(make_mailhost, net,
                                       relayhost="[relay.example.test]:587",
                                       relayhost_password_file=str(password_file),
                                       smtp_tls_security_level="encrypt")

        send(sender, "friend@elsewhere.test", subject="relay")

        assert sender.wait_for_log(r"to=<friend@elsewhere\.test>, relay=.*status=", timeout=20)
        outcome = smtp_peer.outcomes(sender, "friend@elsewhere.test")[0]
        assert "SASL authentication to relay.example.test" in outcome
        assert "status=deferred" in outcome
        time.sleep(0.5)
        assert "wrong-password" not in sender.log()
    finally:
        shutil.rmtree(password_file.parent, ignore_errors=True)
