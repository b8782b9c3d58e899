"""REQUIRETLS (RFC 8689) on the wire, the TLSA port of a relayhost and
the queue id on the TLS log line, between hosts in network namespaces.

Host A (198.51.100.10) sends. Host B (198.51.100.25) is Estafeta and
offers REQUIRETLS after STARTTLS. Host C (198.51.100.26) runs a small
Python SMTP server that offers STARTTLS but not REQUIRETLS, and host D
(198.51.100.27) one that offers no STARTTLS at all. Every server shows
one certificate for mx1..mx3 and relay.rtls.test, and the signed zone
rtls.test publishes TLSA 3 1 1 of its key:

  rtls.test        MX mx1 (B), _25._tcp TLSA
  notrt.rtls.test  MX mx2 (C), _25._tcp TLSA
  notls.rtls.test  MX mx3 (D), _25._tcp TLSA
  mixed.rtls.test  MX 10 mx2 (C), MX 20 mx1 (B)
  relay.rtls.test  A of B, TLSA only at _587._tcp (B listening on 587)
"""

import os
import shutil
import subprocess
import sys
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
C_ADDRESS = "198.51.100.26"
D_ADDRESS = "198.51.100.27"
SENDER = "demo@sender.test"
DOMAINS = ["rtls.test", "notrt.rtls.test", "notls.rtls.test", "mixed.rtls.test"]

# An SMTP server that accepts everything. Mode "tls" offers STARTTLS but
# never REQUIRETLS; mode "plain" offers no STARTTLS. Each command it
# receives is appended to the record file.
PEER = r'''
import socket, ssl, sys, threading
mode, address, record, cert, key = sys.argv[1:6]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)

def note(text):
    with open(record, "a") as f:
        f.write(text + "\n")

def serve(conn):
    conn.settimeout(20)
    reader = conn.makefile("rb")
    conn.sendall(b"220 peer.test ESMTP\r\n")
    tls = False
    while True:
        line = reader.readline()
        if not line:
            break
        command = line.decode("ascii", "replace").rstrip("\r\n")
        note(command)
        verb = command[:4].upper()
        if verb == "EHLO":
            starttls = "250-STARTTLS\r\n" if mode == "tls" and not tls else ""
            conn.sendall(("250-peer.test\r\n%s250 PIPELINING\r\n" % starttls).encode())
        elif verb == "STAR" and mode == "tls" and not tls:
            conn.sendall(b"220 2.0.0 go ahead\r\n")
            conn = context.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
            tls = True
        elif verb == "DATA":
            conn.sendall(b"354 go ahead\r\n")
            while reader.readline() not in (b".\r\n", b""):
                pass
            note("end of data")
            conn.sendall(b"250 2.0.0 queued\r\n")
        elif verb == "QUIT":
            conn.sendall(b"221 2.0.0 bye\r\n")
            break
        else:
            conn.sendall(b"250 2.0.0 ok\r\n")
    conn.close()

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((address, 25))
listener.listen(8)
print("ready", flush=True)
for _ in range(50):
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''


@pytest.fixture
def bed(tmp_path):
    """Namespaces, the shared certificate, the signed zone and the two
    Python servers. Files the daemons read go where queue_user can read."""
    pki = tls_pki()
    shared = Path(tempfile.mkdtemp(prefix="est-rtls-", dir="/tmp"))
    os.chmod(shared, 0o755)
    cert_dir = shared / "cert"
    cert_dir.mkdir(mode=0o755)
    make_certificate(cert_dir, "mx", ["mx1.rtls.test", "mx2.rtls.test", "mx3.rtls.test",
                                      "relay.rtls.test"], pki)
    os.chmod(cert_dir / "mx.key", 0o644)
    digest = outbound_tls_bed.spki_sha256(cert_dir / "mx.pem")
    zone = outbound_tls_bed.SignedZone(shared / "zone", "rtls.test", [
        "@ IN MX 10 mx1.rtls.test.",
        "notrt IN MX 10 mx2.rtls.test.",
        "notls IN MX 10 mx3.rtls.test.",
        "mixed IN MX 10 mx2.rtls.test.",
        "mixed IN MX 20 mx1.rtls.test.",
        "mx1 IN A %s" % B_ADDRESS,
        "mx2 IN A %s" % C_ADDRESS,
        "mx3 IN A %s" % D_ADDRESS,
        "relay IN A %s" % B_ADDRESS,
        "_25._tcp.mx1 IN TLSA 3 1 1 %s" % digest,
        "_25._tcp.mx2 IN TLSA 3 1 1 %s" % digest,
        "_25._tcp.mx3 IN TLSA 3 1 1 %s" % digest,
        "_587._tcp.relay IN TLSA 3 1 1 %s" % digest,
    ])

    net = netns_dns.NetnsBed()
    try:
        net.add_host("a", A_ADDRESS)
        net.add_host("b", B_ADDRESS)
        net.add_host("c", C_ADDRESS)
        net.add_host("d", D_ADDRESS)
        net.dns = netns_dns.ZoneServer(net, tmp_path / "dns", ["sender.test"], [],
                                       extra_config=zone.unbound_config())
        net.zone = zone
        net.cert_dir = cert_dir
        net.shared = shared
        script = shared / "peer.py"
        script.write_text(PEER)
        net.records = {}
        for name, mode, address in (("c", "tls", C_ADDRESS), ("d", "plain", D_ADDRESS)):
            record = shared / ("%s.record" % name)
            record.touch()
            proc = net.popen(name, ["/usr/bin/python3", str(script), mode, address, str(record),
                                    str(cert_dir / "mx.pem"), str(cert_dir / "mx.key")],
                             stdout=subprocess.PIPE, stderr=sys.stderr)
            assert proc.stdout.readline().strip() == b"ready"
            net.records[name] = record
        yield net
    finally:
        net.close()
        shutil.rmtree(shared, ignore_errors=True)


def receiver_host(make_mailhost, bed, daemons=(), port=25):
    host = make_mailhost(start=False, netns=bed.hosts["b"], smtpd_listen="%s:%d" % (B_ADDRESS, port),
                         myhostname="mx1.rtls.test", virtual_domains=" ".join(DOMAINS),
                         tls_cert_file=str(bed.cert_dir / "mx.pem"),
                         tls_key_file=str(bed.cert_dir / "mx.key"))
    host.write_users({"alice@%s" % domain: "x" for domain in DOMAINS})
    host.newaliases()
    host.start(*daemons)
    return host


def sender_host(make_mailhost, bed, **settings):
    pki = tls_pki()
    values = dict(
        myhostname="a.sender.test",
        local_domains="localhost a.sender.test",
        virtual_domains="sender.test",
        outbound_delivery="yes",
        dns_resolvers=netns_dns.DNS_ADDRESS,
        dns_trust_anchor_file=str(bed.zone.anchor_path),
        smtp_connect_timeout="5s",
        # A's own smtpd offers STARTTLS, and so REQUIRETLS, to the submitter.
        tls_cert_file=str(pki / "server.pem"),
        tls_key_file=str(pki / "server.key"),
    )
    values.update(settings)
    host = make_mailhost(start=False, netns=bed.hosts["a"], **values)
    host.write_users({SENDER: "demo-secret"})
    host.newaliases()
    host.start()
    return host


def assert_log(host, pattern, timeout=20):
    """Wait for PATTERN in HOST's log; fail with the log's end."""
    assert host.wait_for_log(pattern, timeout=timeout), "%r not logged; log ends:\n%s" % (
        pattern, "\n".join(host.log().splitlines()[-25:]))


REQUIRETLS_CLIENT = r'''
import smtplib, ssl, sys
recipient, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.sender.test", timeout=10)
client.starttls(context=ssl._create_unverified_context())
client.ehlo("client.sender.test")
message = "From: %s\r\nTo: %s\r\nSubject: REQUIRETLS\r\n\r\nSecret.\r\n" % (sender, recipient)
client.sendmail(sender, [recipient], message, mail_options=["REQUIRETLS"])
client.quit()
print("accepted")
'''


def send_requiretls(bed, sender, recipient):
    """Submit to A's smtpd over STARTTLS with MAIL FROM ... REQUIRETLS."""
    result = bed.run("a", "/usr/bin/python3", "-c", REQUIRETLS_CLIENT, recipient,
                     str(sender.smtp_port), SENDER)
    assert "accepted" in result.stdout, result.stdout + result.stderr


def send_plain(host, recipient):
    message = ("From: %s\nTo: %s\nSubject: plain\nMessage-ID: <%s@sender.test>\n\nHello.\n"
               % (SENDER, recipient, time.monotonic_ns()))
    result = host.run("sendmail", "-f", SENDER, recipient, input=message.encode())
    assert result.returncode == 0, result.stderr


def queued_envelopes(host, timeout=20):
    """The texts of HOST's committed envelopes, once there is one."""
    spool = host.dir / "spool"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = [path.read_text(errors="replace") for path in spool.glob("deferred/*")]
        if texts:
            return texts
        time.sleep(0.2)
    return []


def assert_bounced(sender, recipient):
    """RECIPIENT bounced with 5.7.30, and the bounce to SENDER contains the reason."""
    assert_log(sender, r"to=<%s>, .*dsn=5\.7\.30, status=bounced \(.*REQUIRETLS support required"
               % recipient.replace(".", r"\."))
    bounces = sender.wait_for_messages(SENDER, 1, timeout=15)
    assert len(bounces) == 1
    assert b"Status: 5.7.30" in bounces[0]
    assert b"REQUIRETLS support required" in bounces[0]


def test_requiretls_sent_in_mail_from(make_mailhost, bed):
    # B runs without deliverd, so the message stays in its queue to be read.
    receiver = receiver_host(make_mailhost, bed, daemons=("authd", "queued", "smtpd"))
    sender = sender_host(make_mailhost, bed)

    send_requiretls(bed, sender, "alice@rtls.test")

    assert_log(sender, r"to=<alice@rtls\.test>, relay=mx1\.rtls\.test\[198\.51\.100\.25\]:25, "
               r".*status=sent")
    envelopes = queued_envelopes(receiver)
    assert len(envelopes) == 1, receiver.log()
    assert "requiretls=1" in envelopes[0].splitlines()


def test_next_hop_without_requiretls_bounces(make_mailhost, bed):
    sender = sender_host(make_mailhost, bed)

    send_requiretls(bed, sender, "alice@notrt.rtls.test")

    assert_bounced(sender, "alice@notrt.rtls.test")
    assert_log(sender, r"Verified TLS connection established to mx2\.rtls\.test")
    commands = bed.records["c"].read_text().splitlines()
    assert "STARTTLS" in commands
    assert not any(line.upper().startswith("MAIL") for line in commands), commands


def test_next_hop_without_starttls_bounces(make_mailhost, bed):
    sender = sender_host(make_mailhost, bed)

    send_requiretls(bed, sender, "alice@notls.rtls.test")

    assert_bounced(sender, "alice@notls.rtls.test")
    commands = bed.records["d"].read_text().splitlines()
    assert not any(line.upper().startswith("MAIL") for line in commands), commands


def test_requiretls_falls_back_to_second_mx(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send_requiretls(bed, sender, "alice@mixed.rtls.test")

    assert_log(sender, r"does not offer REQUIRETLS after STARTTLS")
    messages = receiver.wait_for_messages("alice@mixed.rtls.test", 1, timeout=20)
    assert len(messages) == 1, sender.log()
    assert_log(sender, r"to=<alice@mixed\.rtls\.test>, relay=mx1\.rtls\.test.*status=sent")


def test_relayhost_port_in_tlsa_name(make_mailhost, bed):
    receiver = receiver_host(make_mailhost, bed, port=587)
    sender = sender_host(make_mailhost, bed, relayhost="[relay.rtls.test]:587")

    send_plain(sender, "alice@rtls.test")

    messages = receiver.wait_for_messages("alice@rtls.test", 1, timeout=20)
    assert len(messages) == 1, sender.log()
    assert_log(sender, r"Verified TLS connection established to relay\.rtls\.test")
    assert_log(sender, r"policy dane from DANE TLSA")
    assert_log(sender, r"relay=relay\.rtls\.test\[198\.51\.100\.25\]:587, .*status=sent")


def test_tls_line_carries_queue_id(make_mailhost, bed):
    receiver_host(make_mailhost, bed)
    sender = sender_host(make_mailhost, bed)

    send_plain(sender, "alice@rtls.test")

    assert_log(sender, r"to=<alice@rtls\.test>, .*status=sent")
    lines = [line for line in sender.log().splitlines()
             if "Verified TLS connection established to mx1.rtls.test" in line]
    assert len(lines) == 1, sender.log()
    sent = [line for line in sender.log().splitlines() if "to=<alice@rtls.test>" in line][0]
    queue_id = sent.split(": to=<")[0].split()[-1]
    assert ("%s: Verified TLS connection established" % queue_id) in lines[0], (lines, sent)
