"""DANE (RFC 7672) with many TLSA records for one MX host.

Host A (198.51.100.10) sends to many.dane.test, whose MX mx7 is host B
(198.51.100.25, an Estafeta host). The signed zone gives mx7 twenty
TLSA records: nineteen "3 0 1" records that match no certificate and one
"3 1 1" record of B's key. DNSSEC puts an RRset in canonical order, and
unbound here serves it without rotation, so the matching record is the
twentieth in every response.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

import netns_dns
import outbound_tls_bed
from conftest import make_certificate, tls_pki

pytestmark = pytest.mark.skipif(outbound_tls_bed.available() is not None,
                                reason=outbound_tls_bed.available() or "")

A_ADDRESS = "198.51.100.10"
B_ADDRESS = "198.51.100.25"
SENDER = "demo@sender.test"
RECIPIENT = "alice@many.dane.test"
UNMATCHED_RECORDS = 19


@pytest.fixture
def bed(tmp_path):
    """The namespaces, B's certificate and the signed zone, served."""
    pki = tls_pki()
    shared = Path(tempfile.mkdtemp(prefix="est-dane-many-", dir="/tmp"))
    os.chmod(shared, 0o755)
    cert_dir = shared / "b-cert"
    cert_dir.mkdir(mode=0o755)
    make_certificate(cert_dir, "mx", ["mx7.dane.test"], pki)
    os.chmod(cert_dir / "mx.key", 0o644)
    digest = outbound_tls_bed.spki_sha256(cert_dir / "mx.pem")
    unmatched = ["_25._tcp.mx7 IN TLSA 3 0 1 %064x" % (n + 1) for n in range(UNMATCHED_RECORDS)]
    zone = outbound_tls_bed.SignedZone(shared / "zone", "dane.test", [
        "many IN MX 10 mx7.dane.test.",
        "mx7 IN A %s" % B_ADDRESS,
        "_25._tcp.mx7 IN TLSA 3 1 1 %s" % digest,
    ] + unmatched)

    net = netns_dns.NetnsBed()
    try:
        net.add_host("a", A_ADDRESS)
        net.add_host("b", B_ADDRESS)
        net.dns = netns_dns.ZoneServer(net, tmp_path / "dns", ["sender.test"], [],
                                       extra_config="    rrset-roundrobin: no\n" + zone.unbound_config())
        net.zone = zone
        net.cert_dir = cert_dir
        yield net
    finally:
        net.close()
        shutil.rmtree(shared, ignore_errors=True)


def tlsa_answer(bed):
    """Return the TLSA records of mx7 as the test unbound serves them."""
    result = bed.run("a", "dig", "+short", "+time=2", "+tries=1", "@" + netns_dns.DNS_ADDRESS,
                     "_25._tcp.mx7.dane.test", "TLSA")
    return [line for line in result.stdout.splitlines() if line.strip()]


def start_hosts(make_mailhost, bed):
    receiver = make_mailhost(start=False, netns=bed.hosts["b"], smtpd_listen="%s:25" % B_ADDRESS,
                             myhostname="mx7.dane.test", virtual_domains="many.dane.test",
                             tls_cert_file=str(bed.cert_dir / "mx.pem"),
                             tls_key_file=str(bed.cert_dir / "mx.key"))
    receiver.write_users({RECIPIENT: "x"})
    receiver.newaliases()
    receiver.start()
    sender = make_mailhost(start=False, netns=bed.hosts["a"], myhostname="a.sender.test",
                           local_domains="localhost a.sender.test", virtual_domains="sender.test",
                           outbound_delivery="yes", dns_resolvers=netns_dns.DNS_ADDRESS,
                           dns_trust_anchor_file=str(bed.zone.anchor_path),
                           smtp_connect_timeout="5s")
    sender.write_users({SENDER: "demo-secret"})
    sender.newaliases()
    sender.start()
    return receiver, sender


def test_twentieth_tlsa_record_matches(make_mailhost, bed):
    answer = tlsa_answer(bed)
    assert len(answer) == UNMATCHED_RECORDS + 1
    assert answer[-1].startswith("3 1 1 ")
    receiver, sender = start_hosts(make_mailhost, bed)
    message = ("From: %s\nTo: %s\nSubject: many TLSA records\nMessage-ID: <%s@sender.test>\n\nHello.\n"
               % (SENDER, RECIPIENT, time.monotonic_ns()))

    result = sender.run("sendmail", "-f", SENDER, RECIPIENT, input=message.encode())

    assert result.returncode == 0, result.stderr
    assert sender.wait_for_log(r"to=<alice@many\.dane\.test>, relay=mx7\.dane\.test\[198\.51\.100\.25\]:25, "
                               r".*status=sent", timeout=20), sender.log()[-3000:]
    assert sender.wait_for_log(r"policy dane from DANE TLSA", timeout=1)
    assert len(receiver.wait_for_messages(RECIPIENT, 1, timeout=10)) == 1
