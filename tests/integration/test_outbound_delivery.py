"""Outbound delivery by MX lookup between Estafeta hosts in network namespaces.

Host A (198.51.100.10) sends; host B (198.51.100.25, mx1.example.test)
receives mail for example.test; 198.51.100.24 (mx0.example.test) is a
host where nothing listens. unbound on 198.51.100.53 serves the zones.
A's queued runs inside its namespace, whose only route is the bridge,
and test_mx_delivery_to_other_host checks that A's resolver sent queries
to that server only.
"""

import email
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

import netns_dns
from conftest import VIRTUAL_USERS

pytestmark = pytest.mark.skipif(netns_dns.available() is not None,
                                reason=netns_dns.available() or "")

A_ADDRESS, A_ADDRESS6 = "198.51.100.10", "2001:db8:100::10"
B_ADDRESS, B_ADDRESS6 = "198.51.100.25", "2001:db8:100::25"
DOWN_ADDRESS = "198.51.100.24"

RECORDS = [
    "example.test. MX 10 mx1.example.test.",
    "mx1.example.test. A " + B_ADDRESS,
    "mx1.example.test. AAAA " + B_ADDRESS6,
    "mx0.example.test. A " + DOWN_ADDRESS,
    # MX 10 has nothing listening, so delivery falls back to MX 20.
    "fallback.test. MX 10 mx0.example.test.",
    "fallback.test. MX 20 mx1.example.test.",
    # RFC 7505 null MX.
    "nullmx.test. MX 0 .",
    # Only an unreachable MX.
    "dead.test. MX 10 mx0.example.test.",
    # No MX: the A record of the domain itself.
    "bare.test. A " + B_ADDRESS,
    # The MX host is an alias of mx1.
    "cname.test. MX 10 alias.example.test.",
    "alias.example.test. CNAME mx1.example.test.",
    # MX 10 is on a network that no namespace routes to, so connect()
    # fails at once with ENETUNREACH and no packet is sent.
    "unreach.test. MX 10 far.example.test.",
    "unreach.test. MX 20 mx1.example.test.",
    "far.example.test. AAAA 2001:db8:999::1",
    # The best MX is the sending host itself.
    "loop.test. MX 10 a.sender.test.",
    "loop.test. MX 20 mx1.example.test.",
]
ZONES = ["example.test", "fallback.test", "nullmx.test", "dead.test", "bare.test", "cname.test",
         "loop.test", "unreach.test"]

SENDER = "demo@sender.test"


@pytest.fixture
def net(tmp_path):
    bed = netns_dns.NetnsBed()
    try:
        bed.add_host("a", A_ADDRESS, A_ADDRESS6)
        bed.add_host("b", B_ADDRESS, B_ADDRESS6)
        bed.add_host("down", DOWN_ADDRESS)
        bed.dns = netns_dns.ZoneServer(bed, tmp_path / "dns", ZONES, RECORDS)
        yield bed
    finally:
        bed.close()


def sender_host(make_mailhost, net, **settings):
    """Host A: its own domain is sender.test, everything else is remote."""
    values = dict(
        myhostname="a.sender.test",
        local_domains="localhost a.sender.test",
        virtual_domains="sender.test",
        outbound_delivery="yes",
        dns_resolvers=netns_dns.DNS_ADDRESS,
        dns_trust_anchor_file="",
        smtp_connect_timeout="5s",
    )
    values.update(settings)
    host = make_mailhost(start=False, netns=net.hosts["a"], **values)
    host.write_users({SENDER: "demo-secret"})
    host.newaliases()
    host.start()
    return host


def receiver_host(make_mailhost, net, users=None, **settings):
    """Host B: receives mail for example.test on port 25 over IPv4 and IPv6."""
    host = make_mailhost(start=False, netns=net.hosts["b"], smtpd_listen="%s:25" % B_ADDRESS,
                         myhostname="mx1.example.test", **settings)
    host.settings["smtpd_listen"] = "%s:25 [%s]:25" % (B_ADDRESS, B_ADDRESS6)
    host.write_config()
    # The readiness probe connects to the first address only.
    host.settings["smtpd_listen"] = "%s:25" % B_ADDRESS
    if users is not None:
        host.write_users(dict(VIRTUAL_USERS, **users))
    host.newaliases()
    host.start()
    return host



def send(host, recipient, subject="outbound test", body="Hello from A.\n"):
    message = ("From: %s\nTo: %s\nSubject: %s\nMessage-ID: <%s@sender.test>\n\n%s"
               % (SENDER, recipient, subject, time.monotonic_ns(), body))
    result = host.run("sendmail", "-f", SENDER, recipient, input=message.encode())
    assert result.returncode == 0, result.stderr


def assert_only_test_resolver(net):
    assert "default" not in net.routes("a")
    assert net.dns.query_sources() <= {A_ADDRESS, A_ADDRESS6, netns_dns.DNS_ADDRESS}


def test_mx_delivery_to_other_host(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net)
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test", subject="by MX")

    messages = receiver.wait_for_messages("alice@example.test", 1, timeout=20)
    assert len(messages) == 1
    assert b"Subject: by MX" in messages[0]
    assert sender.wait_for_log(
        r"to=<alice@example\.test>, relay=mx1\.example\.test\[[0-9a-f.:]+\]:25, "
        r"delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=2\.0\.0, status=sent \(250 ")
    assert_only_test_resolver(net)


def test_ipv4_only_setting(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net)
    sender = sender_host(make_mailhost, net, outbound_address_family="ipv4")

    send(sender, "alice@example.test")

    assert len(receiver.wait_for_messages("alice@example.test", 1, timeout=20)) == 1
    assert sender.wait_for_log(r"relay=mx1\.example\.test\[198\.51\.100\.25\]:25, .*status=sent")


def test_ipv6_only_setting(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net)
    sender = sender_host(make_mailhost, net, outbound_address_family="ipv6")

    send(sender, "alice@example.test")

    assert len(receiver.wait_for_messages("alice@example.test", 1, timeout=20)) == 1
    assert sender.wait_for_log(r"relay=mx1\.example\.test\[2001:db8:100::25\]:25, .*status=sent")


def test_domain_without_mx_uses_a_record(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net, users={"alice@bare.test": "x"},
                             virtual_domains="example.test bare.test")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@bare.test")

    assert len(receiver.wait_for_messages("alice@bare.test", 1, timeout=20)) == 1
    assert sender.wait_for_log(r"to=<alice@bare\.test>, relay=bare\.test\[198\.51\.100\.25\]:25, .*status=sent")


def test_fallback_to_second_mx(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net, users={"alice@fallback.test": "x"},
                             virtual_domains="example.test fallback.test")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@fallback.test")

    assert len(receiver.wait_for_messages("alice@fallback.test", 1, timeout=20)) == 1
    assert sender.wait_for_log(r"connect to mx0\.example\.test\[198\.51\.100\.24\]:25: Connection refused")
    assert sender.wait_for_log(r"to=<alice@fallback\.test>, relay=mx1\.example\.test\[[0-9a-f.:]+\]:25, .*status=sent")


def test_null_mx_bounces_at_once(make_mailhost, net):
    sender = sender_host(make_mailhost, net)

    send(sender, "someone@nullmx.test", subject="to a null MX")

    assert sender.wait_for_log(r"to=<someone@nullmx\.test>, relay=none, .*dsn=5\.1\.10, status=bounced")
    bounces = sender.wait_for_messages(SENDER, 1, timeout=15)
    assert len(bounces) == 1
    report = email.message_from_bytes(bounces[0])
    assert report.get_content_type() == "multipart/report"
    assert b"Status: 5.1.10" in bounces[0]
    assert b"nullMX" in bounces[0]


def test_unreachable_domain_deferred_then_bounced(make_mailhost, net):
    sender = sender_host(make_mailhost, net, minimal_backoff_time="1s", maximal_backoff_time="1s",
                         queue_run_delay="1s", maximal_queue_lifetime="4s")

    send(sender, "someone@dead.test")

    assert sender.wait_for_log(r"to=<someone@dead\.test>, .*dsn=4\.4\.1, status=deferred "
                               r"\(connect to mx0\.example\.test\[198\.51\.100\.24\]:25: Connection refused\)")
    listing = sender.run("estafeta", "queue", "list").stdout.decode()
    assert "someone@dead.test" in listing
    assert "Connection refused" in listing

    bounces = sender.wait_for_messages(SENDER, 1, timeout=30)
    assert len(bounces) == 1
    assert b"message delivery time exceeded" in bounces[0]
    assert b"Final-Recipient: rfc822; someone@dead.test" in bounces[0]
    deferrals = [line for line in sender.log().splitlines()
                 if "to=<someone@dead.test>" in line and "status=deferred" in line]
    assert len(deferrals) >= 2


def test_unknown_domain_bounces(make_mailhost, net):
    sender = sender_host(make_mailhost, net)

    send(sender, "someone@nowhere.example.test")

    assert sender.wait_for_log(r"to=<someone@nowhere\.example\.test>, .*dsn=5\.1\.2, status=bounced "
                               r"\(Host or domain name not found")
    assert len(sender.wait_for_messages(SENDER, 1, timeout=15)) == 1


def test_remote_rcpt_rejection_bounces(make_mailhost, net):
    receiver_host(make_mailhost, net)
    sender = sender_host(make_mailhost, net)

    send(sender, "nobody@example.test")

    assert sender.wait_for_log(r"to=<nobody@example\.test>, relay=mx1\.example\.test\[[0-9a-f.:]+\]:25, "
                               r".*dsn=5\.1\.1, status=bounced \(550 5\.1\.1 ")
    bounces = sender.wait_for_messages(SENDER, 1, timeout=15)
    assert len(bounces) == 1
    assert b"Diagnostic-Code: smtp; 550 5.1.1" in bounces[0]


def test_several_messages_one_destination(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net)
    sender = sender_host(make_mailhost, net, smtp_destination_concurrency_limit="1")

    for n in range(5):
        send(sender, "alice@example.test", subject="batch %d" % n)

    assert len(receiver.wait_for_messages("alice@example.test", 5, timeout=30)) == 5
    deadline = time.monotonic() + 10
    while sender.log().count("status=sent") < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sender.log().count("status=sent") == 5
    # With one connection at a time, waiting messages reuse it.
    connections = [line for line in receiver.log().splitlines() if " connect from " in line]
    assert len(connections) < 5


def test_off_by_default_with_reason(make_mailhost):
    host = make_mailhost()

    result = host.run("sendmail", "-f", "demo@example.test", "friend@elsewhere.test",
                      input=b"Subject: waits\n\nbody\n")

    assert result.returncode == 0
    assert host.wait_for_log(r"to=<friend@elsewhere\.test>, relay=none, .*status=deferred "
                             r"\(outbound delivery is not enabled\)")
    listing = host.run("estafeta", "queue", "list").stdout.decode()
    assert "outbound delivery is not enabled" in listing


def test_no_resolver_keeps_outbound_off(make_mailhost):
    host = make_mailhost(outbound_delivery="yes")

    host.run("sendmail", "-f", "demo@example.test", "friend@elsewhere.test",
             input=b"Subject: waits\n\nbody\n")

    assert host.wait_for_log(r"to=<friend@elsewhere\.test>, relay=none, .*status=deferred "
                             r"\(outbound delivery is off: no DNS resolver configured")


@pytest.fixture
def public_dir():
    """A directory that queued can read after it drops to its queue user."""
    path = Path(tempfile.mkdtemp(prefix="est-maps-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_transport_maps_routes(make_mailhost, net, public_dir):
    receiver = receiver_host(make_mailhost, net, users={"alice@routed.test": "x"},
                             virtual_domains="example.test routed.test")
    transports = public_dir / "transport"
    transports.write_text(
        "# domain transport\n"
        "routed.test smtp:[%s]:25\n"
        "rejected.test error:5.7.1 this domain takes no mail from us\n"
        ".later.test defer:4.3.2 held for maintenance\n" % B_ADDRESS)
    sender = sender_host(make_mailhost, net, transport_maps=str(transports))

    send(sender, "alice@routed.test")
    send(sender, "someone@rejected.test")
    send(sender, "someone@mail.later.test")

    assert len(receiver.wait_for_messages("alice@routed.test", 1, timeout=20)) == 1
    assert sender.wait_for_log(r"to=<alice@routed\.test>, relay=198\.51\.100\.25\[198\.51\.100\.25\]:25, "
                               r".*status=sent")
    assert sender.wait_for_log(r"to=<someone@rejected\.test>, relay=none, .*dsn=5\.7\.1, status=bounced "
                               r"\(this domain takes no mail from us\)")
    assert sender.wait_for_log(r"to=<someone@mail\.later\.test>, relay=none, .*dsn=4\.3\.2, status=deferred "
                               r"\(held for maintenance\)")
    # No DNS query was needed for any of them.
    queried = net.dns.log()
    assert "routed.test" not in queried
    assert "rejected.test" not in queried
    assert "later.test" not in queried


def test_invalid_transport_map_keeps_outbound_off(make_mailhost, net, public_dir):
    transports = public_dir / "transport"
    transports.write_text("example.test uucp:somewhere\n")
    sender = sender_host(make_mailhost, net, transport_maps=str(transports))

    send(sender, "alice@example.test")

    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=none, .*status=deferred \(outbound delivery is "
                               r"off: transport_maps .*:1: unsupported transport uucp:somewhere")


def test_mx_host_behind_cname(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net, users={"alice@cname.test": "x"},
                             virtual_domains="example.test cname.test")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@cname.test")

    assert len(receiver.wait_for_messages("alice@cname.test", 1, timeout=20)) == 1
    assert sender.wait_for_log(r"to=<alice@cname\.test>, relay=alias\.example\.test\[[0-9a-f.:]+\]:25, "
                               r".*status=sent")


def test_mx_loop_back_to_myself(make_mailhost, net):
    sender = sender_host(make_mailhost, net)

    send(sender, "someone@loop.test")

    assert sender.wait_for_log(r"to=<someone@loop\.test>, relay=none, .*dsn=5\.4\.6, status=bounced "
                               r"\(mail for loop\.test loops back to myself\)")


def test_unreachable_network_tries_next_mx(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net, users={"alice@unreach.test": "x"},
                             virtual_domains="example.test unreach.test")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@unreach.test")

    assert len(receiver.wait_for_messages("alice@unreach.test", 1, timeout=20)) == 1
    assert sender.wait_for_log(r"connect to far\.example\.test\[2001:db8:999::1\]:25: Network is unreachable")
    assert sender.wait_for_log(r"to=<alice@unreach\.test>, relay=mx1\.example\.test\[[0-9a-f.:]+\]:25, "
                               r".*status=sent")


def write_cdb(path, items):
    """Write ITEMS (key, value) as a cdb file (D. J. Bernstein's format, as
    tinycdb reads it): a table of 256 (position, slots) pairs, the
    records, then 256 hash tables of (hash, position) slots."""
    import struct

    def cdb_hash(data):
        h = 5381
        for byte in data:
            h = ((h << 5) + h ^ byte) & 0xFFFFFFFF
        return h

    records = b""
    entries = [[] for _ in range(256)]
    for key, value in items:
        key, value = key.encode(), value.encode()
        position = 2048 + len(records)
        records += struct.pack("<II", len(key), len(value)) + key + value
        h = cdb_hash(key)
        entries[h & 255].append((h, position))

    header = b""
    tables = b""
    position = 2048 + len(records)
    for bucket in entries:
        slots = len(bucket) * 2
        table = [(0, 0)] * slots
        for h, record in bucket:
            slot = (h >> 8) % slots
            while table[slot][1] != 0:
                slot = (slot + 1) % slots
            table[slot] = (h, record)
        header += struct.pack("<II", position + len(tables), slots)
        tables += b"".join(struct.pack("<II", h, record) for h, record in table)
    path.write_bytes(header + records + tables)


def test_transport_maps_cdb(make_mailhost, net, public_dir):
    receiver = receiver_host(make_mailhost, net, users={"alice@routed.test": "x"},
                             virtual_domains="example.test routed.test")
    transports = public_dir / "transport.cdb"
    write_cdb(transports, [
        ("routed.test", "smtp:[%s]:25" % B_ADDRESS),
        (".later.test", "defer:4.3.2 held for maintenance"),
        ("odd.test", "uucp:somewhere"),
    ])
    sender = sender_host(make_mailhost, net, transport_maps=str(transports))

    send(sender, "alice@routed.test")
    send(sender, "someone@mail.later.test")
    send(sender, "someone@odd.test")

    assert len(receiver.wait_for_messages("alice@routed.test", 1, timeout=20)) == 1
    assert sender.wait_for_log(r"to=<someone@mail\.later\.test>, relay=none, .*dsn=4\.3\.2, status=deferred "
                               r"\(held for maintenance\)")
    assert sender.wait_for_log(r"to=<someone@odd\.test>, relay=none, .*dsn=4\.3\.5, status=deferred "
                               r"\(unsupported transport in transport_maps for odd\.test\)")


@pytest.mark.parametrize("value, message", [
    ("dns.example", "dns.example is not an IPv4 or IPv6 address"),
    ("127.0.0.1@99999", "the port must be 1 to 65535"),
    ("127.0.0.1@", "the port must be 1 to 65535"),
])
def test_config_check_rejects_bad_resolver(make_mailhost, value, message):
    host = make_mailhost(start=False, dns_resolvers=value)

    result = host.run("estafeta", "config", "check")

    assert result.returncode == 1
    assert message in result.stderr.decode()


def test_config_check_accepts_resolvers(make_mailhost):
    host = make_mailhost(start=False, dns_resolvers="198.51.100.53, 127.0.0.1@5353 2001:db8::53@53")

    result = host.run("estafeta", "config", "check")

    assert result.returncode == 0, result.stderr


def test_mixed_recipients_in_one_transaction(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net)
    sender = sender_host(make_mailhost, net)
    message = "From: %s\nTo: several\nSubject: mixed\n\nHello.\n" % SENDER

    result = sender.run("sendmail", "-f", SENDER, "alice@example.test", "nobody@example.test",
                        "bob@example.test", input=message.encode())
    assert result.returncode == 0, result.stderr

    assert len(receiver.wait_for_messages("alice@example.test", 1, timeout=20)) == 1
    assert len(receiver.wait_for_messages("bob@example.test", 1, timeout=20)) == 1
    assert sender.wait_for_log(r"to=<nobody@example\.test>, .*dsn=5\.1\.1, status=bounced")
    bounces = sender.wait_for_messages(SENDER, 1, timeout=15)
    assert len(bounces) == 1
    assert b"Final-Recipient: rfc822; nobody@example.test" in bounces[0]
    assert bounces[0].count(b"Final-Recipient:") == 1
    # One connection carried all three: the readiness probe comes from B itself.
    connections = [line for line in receiver.log().splitlines()
                   if " connect from " in line and ("[%s]" % A_ADDRESS in line or "[%s]" % A_ADDRESS6 in line)]
    assert len(connections) == 1


def test_unknown_relayhost_defers(make_mailhost, net):
    sender = sender_host(make_mailhost, net, relayhost="[norelay.example.test]:25")

    send(sender, "friend@elsewhere.test")

    assert sender.wait_for_log(r"to=<friend@elsewhere\.test>, relay=none, .*dsn=4\.4\.3, status=deferred "
                               r"\(Host or domain name not found\. Name service error for "
                               r"name=norelay\.example\.test type=A: Host not found\)")


def test_global_concurrency_limit_of_one(make_mailhost, net):
    receiver = receiver_host(make_mailhost, net, users={"alice@bare.test": "x"},
                             virtual_domains="example.test bare.test")
    sender = sender_host(make_mailhost, net, smtp_concurrency_limit="1")
    message = "From: %s\nTo: two domains\nSubject: one at a time\n\nHello.\n" % SENDER

    result = sender.run("sendmail", "-f", SENDER, "alice@example.test", "alice@bare.test",
                        input=message.encode())
    assert result.returncode == 0, result.stderr

    assert len(receiver.wait_for_messages("alice@example.test", 2, timeout=20)) == 2
    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=sent")
    assert sender.wait_for_log(r"to=<alice@bare\.test>, .*status=sent")
    assert sender.wait_for_log(r": removed")
