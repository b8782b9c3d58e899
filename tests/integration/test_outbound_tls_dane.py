"""DANE (RFC 7672) and REQUIRETLS (RFC 8689) between Estafeta hosts in
network namespaces.

Host A (198.51.100.10) sends; host B (198.51.100.25) receives for every
domain below and presents one certificate, signed by the test CA, for
mx1..mx4.dane.test. The zone dane.test is DNSSEC-signed by the test and
served by unbound on 198.51.100.53 as an auth-zone; A's resolver
validates it with the zone's key as its trust anchor.

  dane.test          MX mx1, TLSA 3 1 1 of B's key: delivered over DANE
  wrong.dane.test    MX mx2, TLSA 3 1 1 of another key: deferred
  bogus.dane.test    MX mx3, TLSA altered after signing: deferred (bogus)
  plain.dane.test    MX mx4, no TLSA: opportunistic TLS
  ta.dane.test       MX mx6, TLSA 2 0 1 of the test CA: delivered over DANE-TA
  taname.dane.test   MX mx5, TLSA 2 0 1 of the test CA, mx5 not in B's
                     certificate: deferred
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
OTHER_DIGEST = "00" * 32
# A digest that is valid hex but matches no key, written over a signed record.
TAMPERED_DIGEST = "11" * 32
DOMAINS = ["dane.test", "wrong.dane.test", "bogus.dane.test", "plain.dane.test", "ta.dane.test",
           "taname.dane.test"]


@pytest.fixture
def bed(tmp_path):
    """The namespaces, B's certificate and the signed zone, served. The
    files the daemons read go to a directory that queue_user can read."""
    pki = tls_pki()
    shared = Path(tempfile.mkdtemp(prefix="est-dane-", dir="/tmp"))
    os.chmod(shared, 0o755)
    cert_dir = shared / "b-cert"
    cert_dir.mkdir(mode=0o755)
    make_certificate(cert_dir, "mx", ["mx1.dane.test", "mx2.dane.test", "mx3.dane.test",
                                      "mx4.dane.test", "mx6.dane.test"], pki)
    os.chmod(cert_dir / "mx.key", 0o644)
    digest = outbound_tls_bed.spki_sha256(cert_dir / "mx.pem")
    ca_digest = outbound_tls_bed.certificate_sha256(pki / "ca.pem")
    # DANE-TA needs the CA in the chain that B sends.
    (cert_dir / "chain.pem").write_text((cert_dir / "mx.pem").read_text() +
                                        (pki / "ca.pem").read_text())
    # ldns-signzone writes the bogus host's digest once; it is replaced after signing.
    bogus_digest = "ab" * 32
    zone = outbound_tls_bed.SignedZone(shared / "zone", "dane.test", [
        "@ IN MX 10 mx1.dane.test.",
        "wrong IN MX 10 mx2.dane.test.",
        "bogus IN MX 10 mx3.dane.test.",
        "plain IN MX 10 mx4.dane.test.",
        "ta IN MX 10 mx6.dane.test.",
        "mx6 IN A %s" % B_ADDRESS,
        "taname IN MX 10 mx5.dane.test.",
        "mx5 IN A %s" % B_ADDRESS,
        "_25._tcp.mx5 IN TLSA 2 0 1 %s" % ca_digest,
        "mx1 IN A %s" % B_ADDRESS,
        "mx2 IN A %s" % B_ADDRESS,
        "mx3 IN A %s" % B_ADDRESS,
        "mx4 IN A %s" % B_ADDRESS,
        "_25._tcp.mx1 IN TLSA 3 1 1 %s" % digest,
        "_25._tcp.mx6 IN TLSA 2 0 1 %s" % ca_digest,
        "_25._tcp.mx2 IN TLSA 3 1 1 %s" % OTHER_DIGEST,
        "_2525._tcp.mx2 IN TLSA 3 1 1 %s" % OTHER_DIGEST,
        "_25._tcp.mx3 IN TLSA 3 1 1 %s" % bogus_digest,
    ], tamper={bogus_digest: TAMPERED_DIGEST})

    net = netns_dns.NetnsBed()
    try:
        net.add_host("a", A_ADDRESS)
        net.add_host("b", B_ADDRESS)
        net.dns = netns_dns.ZoneServer(net, tmp_path / "dns", ["sender.test"], [],
                                       extra_config=zone.unbound_config())
        net.zone = zone
        net.cert_dir = cert_dir
        net.shared = shared
        yield net
    finally:
        net.close()
        shutil.rmtree(shared, ignore_errors=True)


def receiver_host(make_mailhost, bed, port=25):
    host = make_mailhost(start=False, netns=bed.hosts["b"], smtpd_listen="%s:%d" % (B_ADDRESS, port),
                         myhostname="mx1.dane.test", virtual_domains=" ".join(DOMAINS),
                         tls_cert_file=str(bed.cert_dir / "chain.pem"),
                         tls_key_file=str(bed.cert_dir / "mx.key"))
    users = {"alice@%s" % domain: "x" for domain in DOMAINS}
    host.write_users(users)
    host.newaliases()
    host.start()
    return host


def sender_host(make_mailhost, bed, **settings):
    values = dict(
        myhostname="a.sender.test",
        local_domains="localhost a.sender.test",
        virtual_domains="sender.test",
        outbound_delivery="yes",
        dns_resolvers=netns_dns.DNS_ADDRESS,
        dns_trust_anchor_file=str(bed.zone.anchor_path),
        smtp_connect_timeout="5s",
    )
    values.update(settings)
    host = make_mailhost(start=False, netns=bed.hosts["a"], **values)
    host.write_users({SENDER: "demo-secret"})
    host.newaliases()
    host.start()
    return host


def assert_log(host, pattern, timeout=10):
    """Wait for PATTERN in HOST's log; fail with the log's end."""
    assert host.wait_for_log(pattern, timeout=timeout), "%r not logged; log ends:\n%s" % (
        pattern, "\n".join(host.log().splitlines()[-25:]))


def assert_delivered(receiver, sender, address):
    """Wait until one message for ADDRESS is in RECEIVER's mailbox."""
    messages = receiver.wait_for_messages(address, 1, timeout=20)
    assert len(messages) == 1, "no message for %s; sender log ends:\n%s" % (
        address, "\n".join(sender.log().splitlines()[-25:]))


def send(host, recipient, subject="DANE test"):
    message = ("From: %s\nTo: %s\nSubject: %s\nMessage-ID: <%s@sender.test>\n\nHello.\n"
               % (SENDER, recipient, subject, time.monotonic_ns()))
    result = host.run("sendmail", "-f", SENDER, recipient, input=message.encode())
    assert result.returncode == 0, result.stderr


def test_dane_match_delivers(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@dane.test", subject="over DANE")

    assert_delivered(receiver, sender, "alice@dane.test")
    assert_log(sender, r"Verified TLS connection established to mx1\.dane\.test: TLSv1\.[23]")
    assert_log(sender, r"to=<alice@dane\.test>, relay=mx1\.dane\.test\[198\.51\.100\.25\]:25, "
                               r".*status=sent")
    assert_log(sender, r"policy dane from DANE TLSA")


def test_dane_ta_match_delivers(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@ta.dane.test")

    assert_delivered(receiver, sender, "alice@ta.dane.test")
    assert_log(sender, r"Verified TLS connection established to mx6\.dane\.test")


def test_dane_ta_name_mismatch_deferred(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@taname.dane.test")

    assert_log(sender, r"to=<alice@taname\.dane\.test>, .*dsn=4\.7\.5, status=deferred \(.*"
                       r"DANE verification failed: [Hh]ostname mismatch", timeout=20)
    assert receiver.messages("alice@taname.dane.test") == []


def test_dane_wrong_tlsa_deferred(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@wrong.dane.test")

    assert_log(sender, 
        r"to=<alice@wrong\.dane\.test>, .*dsn=4\.7\.5, status=deferred \(.*"
        r"server certificate matches no TLSA record of _25\._tcp\.mx2\.dane\.test", timeout=20)
    assert_log(sender, r"Untrusted TLS connection established to mx2\.dane\.test")
    assert receiver.messages("alice@wrong.dane.test") == []
    listing = sender.run("estafeta", "queue", "list").stdout.decode()
    assert "alice@wrong.dane.test" in listing


def test_dane_wrong_tlsa_names_port(make_mailhost, bed):
    """The failure reason names the TLSA record of the port in use."""
    receiver = receiver_host(make_mailhost, bed, port=2525)
    sender = sender_host(make_mailhost, bed, smtp_port="2525")

    send(sender, "alice@wrong.dane.test")

    assert_log(sender,
        r"to=<alice@wrong\.dane\.test>, .*dsn=4\.7\.5, status=deferred \(.*"
        r"server certificate matches no TLSA record of _2525\._tcp\.mx2\.dane\.test", timeout=20)
    assert receiver.messages("alice@wrong.dane.test") == []


def test_dane_bogus_tlsa_deferred(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@bogus.dane.test")

    assert_log(sender, 
        r"to=<alice@bogus\.dane\.test>, .*dsn=4\.7\.5, status=deferred \(.*"
        r"TLSA records of mx3\.dane\.test failed DNSSEC validation", timeout=20)
    assert receiver.messages("alice@bogus.dane.test") == []


def test_dane_without_tlsa_is_opportunistic(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@plain.dane.test")

    assert_delivered(receiver, sender, "alice@plain.dane.test")
    assert_log(sender, r"Untrusted TLS connection established to mx4\.dane\.test")
    assert_log(sender, r"to=<alice@plain\.dane\.test>, .*status=sent")


def test_dane_level_none_in_policy_map(make_mailhost, bed):
    policy = bed.shared / "tls_policy"
    policy.write_text("# no TLS for this domain\nwrong.dane.test none\n")
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed, smtp_tls_policy_maps=str(policy))

    send(sender, "alice@wrong.dane.test")

    assert_delivered(receiver, sender, "alice@wrong.dane.test")
    assert_log(sender, r"to=<alice@wrong\.dane\.test>, .*status=sent")
    assert "TLS connection established to mx2" not in sender.log()


TLS_REQUIRED_NO_CLIENT = r'''
import smtplib, sys
recipient, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.sender.test", timeout=10)
message = ("From: %s\r\nTo: %s\r\nTLS-Required: No\r\nSubject: no TLS policy\r\n\r\nHello.\r\n"
           % (sender, recipient))
client.sendmail(sender, [recipient], message)
client.quit()
print("accepted")
'''


def test_tls_required_no_skips_dane(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    result = bed.run("a", "/usr/bin/python3", "-c", TLS_REQUIRED_NO_CLIENT,
                     "alice@wrong.dane.test", str(sender.smtp_port), SENDER)
    assert "accepted" in result.stdout, result.stdout + result.stderr

    assert_delivered(receiver, sender, "alice@wrong.dane.test")
    assert_log(sender, r"Untrusted TLS connection established to mx2\.dane\.test")
    assert "matches no TLSA record" not in sender.log()


REQUIRETLS_CLIENT = r'''
import smtplib, ssl, sys
recipient = sys.argv[1]
client = smtplib.SMTP("127.0.0.1", int(sys.argv[2]), local_hostname="client.sender.test", timeout=10)
client.starttls(context=ssl._create_unverified_context())
client.ehlo("client.sender.test")
assert client.has_extn("requiretls"), client.esmtp_features
message = "From: %s\r\nTo: %s\r\nSubject: REQUIRETLS test\r\n\r\nSecret.\r\n" % (sys.argv[3], recipient)
client.sendmail(sys.argv[3], [recipient], message, mail_options=["REQUIRETLS"])
client.quit()
print("accepted")
'''


def send_requiretls(bed, sender, recipient):
    """Submit to A's smtpd over STARTTLS with MAIL FROM ... REQUIRETLS."""
    result = bed.run("a", "/usr/bin/python3", "-c", REQUIRETLS_CLIENT, recipient,
                     str(sender.smtp_port), SENDER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted" in result.stdout


def test_requiretls_unverified_bounces(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    # The system CA store does not trust the test CA, and mx4 has no TLSA.
    sender = sender_host(make_mailhost, bed, **server_tls_settings())

    send_requiretls(bed, sender, "alice@plain.dane.test")

    assert_log(sender, 
        r"to=<alice@plain\.dane\.test>, .*dsn=5\.7\.30, status=bounced \(.*REQUIRETLS", timeout=20)
    assert receiver.messages("alice@plain.dane.test") == []
    bounces = sender.wait_for_messages(SENDER, 1, timeout=15)
    assert len(bounces) == 1
    assert b"Status: 5.7.30" in bounces[0]


def test_requiretls_over_dane_delivers(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed, **server_tls_settings())

    send_requiretls(bed, sender, "alice@dane.test")

    assert_delivered(receiver, sender, "alice@dane.test")
    assert_log(sender, r"to=<alice@dane\.test>, .*status=sent")


def server_tls_settings():
    """Server TLS settings for host A, so its smtpd offers STARTTLS and
    REQUIRETLS to the submitting client."""
    pki = tls_pki()
    return {"tls_cert_file": str(pki / "server.pem"), "tls_key_file": str(pki / "server.key")}
