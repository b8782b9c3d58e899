"""Connection reuse after a 421 reply.

A 421 reply means that the server closes the connection (RFC 5321
section 3.8). After a 421 to the end of data the client must not keep
the session for the next message to the same destination, or that
message fails on the closed connection without having been offered to
the server.
"""

import re
import subprocess
import sys
import time

import pytest

import netns_dns

pytestmark = pytest.mark.skipif(netns_dns.available() is not None,
                                reason=netns_dns.available() or "")

A_ADDRESS = "198.51.100.10"
PEER_ADDRESS = "198.51.100.25"
SENDER = "demo@sender.test"
RECORDS = [
    "example.test. MX 10 mx1.example.test.",
    "mx1.example.test. A " + PEER_ADDRESS,
]

# The first message gets 421 to the end of data, then the server closes
# the connection. Every later message is accepted.
PEER = r'''
import socket, sys, time

address = sys.argv[1]
messages = 0

def lines(conn):
    buf = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            yield line

def serve(conn):
    global messages
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    reader = lines(conn)
    for line in reader:
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.sendall(b"250-mx1.example.test\r\n250 PIPELINING\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET"):
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            for data_line in reader:
                if data_line == b".":
                    break
            messages += 1
            if messages == 1:
                # Long enough for the second message to be waiting.
                time.sleep(0.5)
                conn.sendall(b"421 4.3.2 shutting down\r\n")
                return
            conn.sendall(b"250 2.0.0 Ok: queued as TEST\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((address, 25))
server.listen(5)
print("ready", flush=True)
for _ in range(10):
    conn, _ = server.accept()
    try:
        serve(conn)
    except OSError:
        pass
    conn.close()
'''


@pytest.fixture
def net(tmp_path):
    bed = netns_dns.NetnsBed()
    try:
        bed.add_host("a", A_ADDRESS)
        bed.add_host("peer", PEER_ADDRESS)
        bed.dns = netns_dns.ZoneServer(bed, tmp_path / "dns", ["example.test"], RECORDS)
        yield bed
    finally:
        bed.close()


def send(host, subject):
    message = "From: %s\nTo: alice@example.test\nSubject: %s\n\nHello.\n" % (SENDER, subject)
    result = host.run("sendmail", "-f", SENDER, "alice@example.test", input=message.encode())
    assert result.returncode == 0, result.stderr


def test_no_reuse_after_421(make_mailhost, net, tmp_path):
    script = tmp_path / "peer.py"
    script.write_text(PEER)
    proc = net.popen("peer", ["/usr/bin/python3", str(script), PEER_ADDRESS],
                     stdout=subprocess.PIPE, stderr=sys.stderr)
    assert proc.stdout.readline().strip() == b"ready"
    sender = make_mailhost(start=False, netns=net.hosts["a"],
                           myhostname="a.sender.test",
                           local_domains="localhost a.sender.test",
                           virtual_domains="sender.test",
                           outbound_delivery="yes",
                           dns_resolvers=netns_dns.DNS_ADDRESS,
                           dns_trust_anchor_file="",
                           smtp_destination_concurrency_limit="1")
    sender.write_users({SENDER: "demo-secret"})
    sender.newaliases()
    sender.start()

    send(sender, "first")
    send(sender, "second")

    outcome = r"^.*to=<alice@example\.test>, relay=.*$"
    deadline = time.monotonic() + 20
    while len(re.findall(outcome, sender.log(), re.M)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    outcomes = re.findall(outcome, sender.log(), re.M)
    assert len(outcomes) == 2
    assert "status=deferred (421 4.3.2 shutting down)" in outcomes[0]
    assert "status=sent (250 2.0.0 Ok: queued as TEST)" in outcomes[1]
