"""Outbound delivery of a large message to a server that reads slowly.

smtp_data_xfer_timeout bounds how long the server may stop accepting
message content, as Postfix's parameter of that name does. A transfer
that keeps moving but lasts longer than the timeout must not be cut
off, although the server sends nothing while it receives the content.
"""

import re
import subprocess
import sys

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

# Reads the message content at most 4 KiB per 10 ms (400 KB/s) through
# a small receive buffer, so the transfer of about 3 MB lasts several
# seconds but never stalls for as long as one.
PEER = r'''
import socket, sys, time

address, record = sys.argv[1], sys.argv[2]

def serve(conn):
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    buf = b""
    while True:
        while b"\r\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.sendall(b"250-mx1.example.test\r\n250 8BITMIME\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET"):
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            size = 0
            while not buf.endswith(b"\r\n.\r\n"):
                time.sleep(0.01)
                chunk = conn.recv(4096)
                if not chunk:
                    return
                size += len(chunk)
                buf = buf[-5:] + chunk
            buf = b""
            with open(record, "a") as out:
                out.write("received %d bytes\n" % size)
            conn.sendall(b"250 2.0.0 Ok: queued as SLOW\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
server.bind((address, 25))
server.listen(5)
print("ready", flush=True)
for _ in range(5):
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


@pytest.mark.slow
def test_slow_transfer_not_cut_off(make_mailhost, net, tmp_path):
    script = tmp_path / "peer.py"
    script.write_text(PEER)
    record = tmp_path / "received"
    proc = net.popen("peer", ["/usr/bin/python3", str(script), PEER_ADDRESS, str(record)],
                     stdout=subprocess.PIPE, stderr=sys.stderr)
    assert proc.stdout.readline().strip() == b"ready"
    sender = make_mailhost(start=False, netns=net.hosts["a"],
                           myhostname="a.sender.test",
                           local_domains="localhost a.sender.test",
                           virtual_domains="sender.test",
                           outbound_delivery="yes",
                           dns_resolvers=netns_dns.DNS_ADDRESS,
                           dns_trust_anchor_file="",
                           smtp_data_xfer_timeout="2s")
    sender.write_users({SENDER: "demo-secret"})
    sender.newaliases()
    sender.start()
    body = ("%s\n" % ("x" * 76)) * 40000    # about 3 MB
    message = "From: %s\nTo: alice@example.test\nSubject: large\n\n%s" % (SENDER, body)

    result = sender.run("sendmail", "-f", SENDER, "alice@example.test", input=message.encode())
    assert result.returncode == 0, result.stderr

    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=.*status=", timeout=30)
    outcome = re.search(r"^.*to=<alice@example\.test>, relay=.*$", sender.log(), re.M).group(0)
    assert "status=sent (250 2.0.0 Ok: queued as SLOW)" in outcome
