"""MTA-STS (RFC 8461) between Estafeta hosts in network namespaces.

Host A (198.51.100.10) sends; host B (198.51.100.25) receives with a
certificate from the test CA for mx1.sts.test and mx1.mismatch.test. An
HTTPS server in host "web" (198.51.100.80) serves the policy of each
test as https://mta-sts.DOMAIN/.well-known/mta-sts.txt with a
certificate for mta-sts.sts.test and mta-sts.mismatch.test. A trusts the
test CA through smtp_tls_CAfile. The zones are not signed, so DANE
never applies.

  sts.test        MX mx1.sts.test: in the policy, in B's certificate
  mismatch.test   MX mx2.mismatch.test: in the policy, not in B's certificate
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
WEB_ADDRESS = "198.51.100.80"
SENDER = "demo@sender.test"
DOMAINS = ["sts.test", "mismatch.test"]

RECORDS = [
    "sts.test. MX 10 mx1.sts.test.",
    "mx1.sts.test. A " + B_ADDRESS,
    '_mta-sts.sts.test. TXT "v=STSv1; id=20261205a;"',
    "mta-sts.sts.test. A " + WEB_ADDRESS,
    "mismatch.test. MX 10 mx2.mismatch.test.",
    "mx2.mismatch.test. A " + B_ADDRESS,
    '_mta-sts.mismatch.test. TXT "v=STSv1; id=1"',
    "mta-sts.mismatch.test. A " + WEB_ADDRESS,
]


def policy_text(mode, *mx):
    lines = ["version: STSv1", "mode: %s" % mode] + ["mx: %s" % name for name in mx]
    return "\r\n".join(lines + ["max_age: 86400", ""])


@pytest.fixture
def bed(tmp_path):
    """Namespaces, DNS, and B's and the web server's certificates."""
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


def serve_policy(bed, policy, **reply):
    return outbound_tls_bed.PolicyServer(bed, "web", WEB_ADDRESS, bed.shared / "web-root",
                                         bed.shared / "web.pem", bed.shared / "web.key", policy,
                                         **reply)


def receiver_host(make_mailhost, bed):
    host = make_mailhost(start=False, netns=bed.hosts["b"], smtpd_listen="%s:25" % B_ADDRESS,
                         myhostname="mx1.sts.test", virtual_domains=" ".join(DOMAINS),
                         tls_cert_file=str(bed.shared / "mx.pem"),
                         tls_key_file=str(bed.shared / "mx.key"))
    host.write_users({"alice@%s" % domain: "x" for domain in DOMAINS})
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
        dns_trust_anchor_file="",
        smtp_connect_timeout="5s",
        smtp_tls_CAfile=str(tls_pki() / "ca.pem"),
        smtp_tls_mta_sts_timeout="10s",
    )
    values.update(settings)
    host = make_mailhost(start=False, netns=bed.hosts["a"], **values)
    host.write_users({SENDER: "demo-secret"})
    host.newaliases()
    host.start()
    return host


def send(host, recipient):
    message = ("From: %s\nTo: %s\nSubject: MTA-STS test\nMessage-ID: <%s@sender.test>\n\nHello.\n"
               % (SENDER, recipient, time.monotonic_ns()))
    result = host.run("sendmail", "-f", SENDER, recipient, input=message.encode())
    assert result.returncode == 0, result.stderr


def assert_log(host, pattern, timeout=15):
    """Wait for PATTERN in HOST's log; fail with the log's end."""
    assert host.wait_for_log(pattern, timeout=timeout), "%r not logged; log ends:\n%s" % (
        pattern, "\n".join(host.log().splitlines()[-25:]))


def test_mta_sts_enforce_delivers(make_mailhost, bed):
    server = serve_policy(bed, policy_text("enforce", "mx1.sts.test"))
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@sts.test")

    messages = receiver.wait_for_messages("alice@sts.test", 1, timeout=20)
    assert len(messages) == 1, sender.log()
    assert_log(sender, r"MTA-STS: policy for sts\.test: id=20261205a mode=enforce max_age=86400 mx_patterns=1")
    assert_log(sender, r"Verified TLS connection established to mx1\.sts\.test")
    assert_log(sender, r"policy mta-sts from MTA-STS enforce id=20261205a")
    assert_log(sender, r"to=<alice@sts\.test>, .*status=sent")
    assert server.requests(), server.log()
    cache = Path(sender.settings["queue_directory"]) / "mta-sts" / "sts.test"
    assert cache.read_text().startswith("id=20261205a\nfetched=")


def test_mta_sts_policy_reused_from_cache(make_mailhost, bed):
    server = serve_policy(bed, policy_text("enforce", "mx1.sts.test"))
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@sts.test")
    assert len(receiver.wait_for_messages("alice@sts.test", 1, timeout=20)) == 1
    send(sender, "alice@sts.test")
    assert len(receiver.wait_for_messages("alice@sts.test", 2, timeout=20)) == 2

    assert len(server.requests()) == 1, server.log()


def test_mta_sts_cache_survives_restart(make_mailhost, bed):
    server = serve_policy(bed, policy_text("enforce", "mx1.sts.test"))
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)
    send(sender, "alice@sts.test")
    assert len(receiver.wait_for_messages("alice@sts.test", 1, timeout=20)) == 1

    # With the policy server stopped, "enforce" can come only from the cached policy.
    server.proc.terminate()
    server.proc.wait(5)
    sender.restart("queued")
    send(sender, "alice@sts.test")

    assert len(receiver.wait_for_messages("alice@sts.test", 2, timeout=20)) == 2, sender.log()
    assert len(server.requests()) == 1, server.log()
    assert len([line for line in sender.log().splitlines()
                if "policy mta-sts from MTA-STS enforce id=20261205a" in line]) == 2


def test_mta_sts_enforce_certificate_mismatch_defers(make_mailhost, bed):
    serve_policy(bed, policy_text("enforce", "mx2.mismatch.test"))
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@mismatch.test")

    assert_log(sender, r"to=<alice@mismatch\.test>, .*dsn=4\.7\.5, status=deferred \(.*"
                       r"server certificate does not match mx2\.mismatch\.test")
    assert_log(sender, r"Trusted TLS connection established to mx2\.mismatch\.test")
    assert receiver.messages("alice@mismatch.test") == []


def test_mta_sts_unlisted_mx_deferred(make_mailhost, bed):
    serve_policy(bed, policy_text("enforce", "*.other.test"))
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@sts.test")

    assert_log(sender, r"to=<alice@sts\.test>, .*dsn=4\.7\.5, status=deferred \(.*"
                       r"MX host mx1\.sts\.test does not match the MTA-STS policy of sts\.test")
    assert receiver.messages("alice@sts.test") == []


def test_mta_sts_testing_mismatch_delivers(make_mailhost, bed):
    serve_policy(bed, policy_text("testing", "mx2.mismatch.test"))
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@mismatch.test")

    assert len(receiver.wait_for_messages("alice@mismatch.test", 1, timeout=20)) == 1, sender.log()
    assert_log(sender, r"[0-9A-F]+: MTA-STS testing policy of mismatch\.test \(id=1\): server certificate does not "
                       r"match mx2\.mismatch\.test; delivering anyway")


def test_mta_sts_invalid_policy_ignored(make_mailhost, bed):
    serve_policy(bed, "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n")
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send(sender, "alice@mismatch.test")

    assert len(receiver.wait_for_messages("alice@mismatch.test", 1, timeout=20)) == 1, sender.log()
    assert_log(sender, r"MTA-STS: invalid policy for mismatch\.test \(id=1\): no mx field")


def test_mta_sts_off_skips_lookup(make_mailhost, bed):
    server = serve_policy(bed, policy_text("enforce", "*.other.test"))
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed, smtp_tls_mta_sts="no")

    send(sender, "alice@sts.test")

    assert len(receiver.wait_for_messages("alice@sts.test", 1, timeout=20)) == 1, sender.log()
    assert server.requests() == []


# Each reply would make sts.test undeliverable if A used the policy in it
# (its mx pattern does not match mx1.sts.test), so delivery shows that A
# rejected the fetch.
REJECTED_FETCHES = [
    ("redirect", dict(status=301, location="https://mta-sts.sts.test/elsewhere"), {},
     r"HTTP status 301"),
    ("media_type", dict(content_type="text/html"), {},
     r"media type text/html, expected text/plain"),
    ("not_found", dict(status=404), {}, r"HTTP status 404"),
    ("too_large", dict(), {"pad": 70000}, r"policy larger than 65536 bytes"),
    ("untrusted_certificate", dict(), {"smtp_tls_CAfile": "mx.pem"}, r"SSL certificate"),
]


@pytest.mark.parametrize("reply,options,reason", [case[1:] for case in REJECTED_FETCHES],
                         ids=[case[0] for case in REJECTED_FETCHES])
def test_mta_sts_fetch_rejected(make_mailhost, bed, reply, options, reason):
    policy = policy_text("enforce", "*.other.test") + "x" * options.get("pad", 0)
    server = serve_policy(bed, policy, **reply)
    receiver = receiver_host(make_mailhost, bed)
    settings = {}
    if "smtp_tls_CAfile" in options:
        settings["smtp_tls_CAfile"] = str(bed.shared / options["smtp_tls_CAfile"])
    sender = sender_host(make_mailhost, bed, **settings)

    send(sender, "alice@sts.test")

    assert len(receiver.wait_for_messages("alice@sts.test", 1, timeout=20)) == 1, sender.log()
    assert_log(sender, r"MTA-STS: policy fetch from mta-sts\.sts\.test failed: .*" + reason)
    assert "/elsewhere" not in server.log()


REQUIRETLS_CLIENT = r'''
import smtplib, ssl, sys
recipient, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.sender.test", timeout=10)
client.starttls(context=ssl._create_unverified_context())
message = "From: %s\r\nTo: %s\r\nSubject: REQUIRETLS test\r\n\r\nSecret.\r\n" % (sender, recipient)
client.sendmail(sender, [recipient], message, mail_options=["REQUIRETLS"])
client.quit()
print("accepted")
'''


def test_requiretls_enforces_testing_policy(make_mailhost, bed):
    serve_policy(bed, policy_text("testing", "*.other.test"))
    receiver = receiver_host(make_mailhost, bed)
    pki = tls_pki()
    sender = sender_host(make_mailhost, bed, tls_cert_file=str(pki / "server.pem"),
                         tls_key_file=str(pki / "server.key"))

    result = bed.run("a", "/usr/bin/python3", "-c", REQUIRETLS_CLIENT, "alice@sts.test",
                     str(sender.smtp_port), SENDER)
    assert "accepted" in result.stdout, result.stdout + result.stderr

    assert_log(sender, r"to=<alice@sts\.test>, .*dsn=5\.7\.30, status=bounced \(.*"
                       r"MX host mx1\.sts\.test does not match the MTA-STS policy of sts\.test")
    assert receiver.messages("alice@sts.test") == []
