"""An invalid MTA-STS TXT record means no policy (RFC 8461 section 3.1).

"If the number of resulting records is not one, or if the resulting
record is syntactically invalid, senders MUST assume the recipient
domain does not have an available MTA-STS Policy." Here the record of
sts.test carries a valid id followed by a field without "=", and the
policy server offers an enforce policy whose mx pattern leaves out
mx1.sts.test. Without a policy the mail goes out with opportunistic
TLS, so the policy must not be fetched or applied.

The hosts, certificates and policy server are those of
test_outbound_tls_mta_sts.py, with another TXT record.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import netns_dns
import outbound_tls_bed
from conftest import make_certificate, tls_pki
from test_outbound_tls_mta_sts import (A_ADDRESS, B_ADDRESS, DOMAINS, WEB_ADDRESS, assert_log,
                                       policy_text, receiver_host, send, sender_host, serve_policy)

pytestmark = pytest.mark.skipif(outbound_tls_bed.available() is not None,
                                reason=outbound_tls_bed.available() or "")

RECORDS = [
    "sts.test. MX 10 mx1.sts.test.",
    "mx1.sts.test. A " + B_ADDRESS,
    '_mta-sts.sts.test. TXT "v=STSv1; id=20261205a; no field here"',
    "mta-sts.sts.test. A " + WEB_ADDRESS,
]


@pytest.fixture
def bed(tmp_path):
    """Namespaces, DNS with the invalid record, and the certificates."""
    pki = tls_pki()
    shared = Path(tempfile.mkdtemp(prefix="est-sts-", dir="/tmp"))
    os.chmod(shared, 0o755)
    make_certificate(shared, "mx", ["mx1.sts.test", "mx1.mismatch.test"], pki)
    make_certificate(shared, "web", ["mta-sts.sts.test", "mta-sts.mismatch.test"], pki)
    os.chmod(shared / "mx.key", 0o644)

    net = netns_dns.NetnsBed()
    try:
        net.add_host("a", A_ADDRESS)
        net.add_host("b", B_ADDRESS)
        net.add_host("web", WEB_ADDRESS)
        net.dns = netns_dns.ZoneServer(net, tmp_path / "dns", DOMAINS + ["sender.test"], RECORDS)
        net.shared = shared
        yield net
    finally:
        net.close()
        shutil.rmtree(shared, ignore_errors=True)


def test_invalid_txt_record_means_no_policy(make_mailhost, bed):
    serve_policy(bed, policy_text("enforce", "*.other.test"))
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@sts.test")

    assert_log(sender, r"MTA-STS: invalid TXT record at _mta-sts\.sts\.test: field without '='")
    outcome = sender.wait_for_log(r"to=<alice@sts\.test>, relay=.*", timeout=20)
    assert outcome is not None
    assert "status=sent" in outcome.group(0)
    assert len(receiver.wait_for_messages("alice@sts.test", 1)) == 1
    assert "MTA-STS: policy for sts.test" not in sender.log()
