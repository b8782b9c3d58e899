"""Outbound delivery to a peer that sends a positive reply in place of
354 to DATA.

DATA has one positive reply, 354. A 250 to DATA, whether the server is
broken or has lost track of the commands (replies to commands not yet
sent), means that no message data was sent, so the recipients must stay
deferred. The client drops the connection.
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

# Mode "data250": PIPELINING, and 250 in place of 354 to DATA.
# Mode "desync": no PIPELINING, and three 250 replies to MAIL, so the
# client reads the third one as the reply to a DATA it sends later.
PEER = r'''
import socket, sys

mode, address, record = sys.argv[1], sys.argv[2], sys.argv[3]

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
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    for line in lines(conn):
        verb = line[:4].upper()
        with open(record, "ab") as out:
            out.write(line + b"\r\n")
        if verb == b"EHLO":
            if mode == "desync":
                conn.sendall(b"250 mx1.example.test\r\n")
            else:
                conn.sendall(b"250-mx1.example.test\r\n250 PIPELINING\r\n")
        elif verb == b"MAIL":
            if mode == "desync":
                conn.sendall(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as LOST\r\n")
            else:
                conn.sendall(b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            if mode != "desync":
                conn.sendall(b"250 2.1.5 Ok\r\n")
        elif verb == b"DATA":
            if mode != "desync":
                conn.sendall(b"250 2.0.0 Ok: queued as LOST\r\n")
        elif verb == b"RSET":
            conn.sendall(b"250 2.0.0 Ok\r\n")
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
for _ in range(20):
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


def start_peer(net, tmp_path, mode):
    """Start PEER in MODE and return the file it appends received lines to."""
    script = tmp_path / "peer.py"
    script.write_text(PEER)
    record = tmp_path / "commands"
    proc = net.popen("peer", ["/usr/bin/python3", str(script), mode, PEER_ADDRESS, str(record)],
                     stdout=subprocess.PIPE, stderr=sys.stderr)
    assert proc.stdout.readline().strip() == b"ready"
    return record


def sender_host(make_mailhost, net):
    host = make_mailhost(start=False, netns=net.hosts["a"],
                         myhostname="a.sender.test",
                         local_domains="localhost a.sender.test",
                         virtual_domains="sender.test",
                         outbound_delivery="yes",
                         dns_resolvers=netns_dns.DNS_ADDRESS,
                         dns_trust_anchor_file="",
                         smtp_helo_timeout="3s",
                         smtp_rcpt_timeout="3s",
                         smtp_data_done_timeout="3s")
    host.write_users({SENDER: "demo-secret"})
    host.newaliases()
    host.start()
    return host


def send(host, recipient):
    message = "From: %s\nTo: %s\nSubject: data reply\n\nHello.\n" % (SENDER, recipient)
    result = host.run("sendmail", "-f", SENDER, recipient, input=message.encode())
    assert result.returncode == 0, result.stderr


def first_outcome(host, timeout=20):
    """The first to=<alice@example.test> result line in the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"^.*to=<alice@example\.test>, relay=.*$", host.log(), re.M)
        if found:
            return found.group(0)
        time.sleep(0.1)
    raise AssertionError("no outcome for alice@example.test in the log")


def queued_ids(host):
    listing = host.run("estafeta", "queue", "list").stdout.decode()
    return re.findall(r"^([0-9A-F]{8,})", listing, re.M)


def test_250_to_data_keeps_message(make_mailhost, net, tmp_path):
    record = start_peer(net, tmp_path, "data250")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    outcome = first_outcome(sender)
    assert b"DATA\r\n" in record.read_bytes()
    assert "status=sent" not in outcome
    assert len(queued_ids(sender)) == 1


def test_replies_ahead_of_commands_keep_message(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "desync")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    outcome = first_outcome(sender)
    assert "status=sent" not in outcome
    assert len(queued_ids(sender)) == 1
