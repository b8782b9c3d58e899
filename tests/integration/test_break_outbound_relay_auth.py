"""A relayhost that rejects the SMTP client's credentials.

A 535 to AUTH means that the username or password in
relayhost_password_file is wrong, which the admin can fix. Postfix 3.7
defers such mail by default (`postconf -d`: smtp_sasl_auth_soft_bounce
= yes). The Estafeta client must do the same, or one wrong password
bounces all outgoing mail at once.
"""

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

import netns_dns

pytestmark = pytest.mark.skipif(netns_dns.available() is not None,
                                reason=netns_dns.available() or "")

A_ADDRESS = "198.51.100.10"
B_ADDRESS = "198.51.100.25"
SENDER = "demo@sender.test"
RECORDS = [
    "relay.example.test. A " + B_ADDRESS,
]


@pytest.fixture
def net(tmp_path):
    bed = netns_dns.NetnsBed()
    try:
        bed.add_host("a", A_ADDRESS)
        bed.add_host("b", B_ADDRESS)
        bed.dns = netns_dns.ZoneServer(bed, tmp_path / "dns", ["example.test"], RECORDS)
        yield bed
    finally:
        bed.close()


def test_rejected_relay_auth_defers(make_mailhost, net):
    make_mailhost(netns=net.hosts["b"], tls=True, smtpd_listen=B_ADDRESS + ":25",
                  smtpd_submission_listen=B_ADDRESS + ":587", myhostname="relay.example.test")
    password_file = Path(tempfile.mkdtemp(prefix="est-relay-", dir="/tmp")) / "relay_passwords"
    password_file.write_text("[relay.example.test]:587 demo@example.test:wrong-password\n")
    os.chmod(password_file, 0o600)
    try:
        sender = make_mailhost(start=False, netns=net.hosts["a"],
                               myhostname="a.sender.test",
                               local_domains="localhost a.sender.test",
                               virtual_domains="sender.test",
                               outbound_delivery="yes",
                               dns_resolvers=netns_dns.DNS_ADDRESS,
                               dns_trust_anchor_file="",
                               relayhost="[relay.example.test]:587",
                               relayhost_password_file=str(password_file),
                               smtp_tls_security_level="encrypt")
        sender.write_users({SENDER: "demo-secret"})
        sender.newaliases()
        sender.start()
        message = "From: %s\nTo: friend@elsewhere.test\nSubject: relay\n\nHello.\n" % SENDER

        result = sender.run("sendmail", "-f", SENDER, "friend@elsewhere.test", input=message.encode())
        assert result.returncode == 0, result.stderr

        assert sender.wait_for_log(r"to=<friend@elsewhere\.test>, relay=.*status=", timeout=20)
        outcome = re.search(r"^.*to=<friend@elsewhere\.test>, relay=.*$", sender.log(), re.M).group(0)
        assert "SASL authentication to relay.example.test" in outcome
        assert "status=deferred" in outcome
        time.sleep(0.5)
        assert "wrong-password" not in sender.log()
    finally:
        shutil.rmtree(password_file.parent, ignore_errors=True)
