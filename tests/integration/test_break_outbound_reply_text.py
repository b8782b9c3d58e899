"""Remote reply text shown by the queue listing.

queued keeps the text of a temporary failure as the recipient's reason,
with control characters replaced but UTF-8 kept, and `estafeta queue
list` and mailq print it to the admin's terminal. U+0080 to U+009F are
control characters too, and xterm in UTF-8 mode reads U+009B (the bytes
C2 9B) as CSI, the start of an escape sequence. A remote server must
not be able to send escape sequences to the admin's terminal.
"""

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

# Every RCPT gets a 450 whose text clears the screen with CSI 2 J.
PEER = r'''
import socket, sys

address = sys.argv[1]

def serve(conn):
    conn.sendall(b"220 mx1.example.test ESMTP test peer\r\n")
    buf = b""
    while True:
        while b"\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        verb = line[:4].upper()
        if verb == b"EHLO":
            conn.sendall(b"250-mx1.example.test\r\n250 SMTPUTF8\r\n")
        elif verb in (b"MAIL", b"RSET"):
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"RCPT":
            conn.sendall(b"450 4.2.0 mailbox busy \xc2\x9b2J\xc2\x9b31mcleared\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"503 5.5.1 Error: need RCPT command\r\n")

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


def test_queue_list_hides_c1_controls(make_mailhost, net, tmp_path):
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
                           dns_trust_anchor_file="")
    sender.write_users({SENDER: "demo-secret"})
    sender.newaliases()
    sender.start()
    message = "From: %s\nTo: alice@example.test\nSubject: busy\n\nHello.\n" % SENDER

    result = sender.run("sendmail", "-f", SENDER, "alice@example.test", input=message.encode())
    assert result.returncode == 0, result.stderr
    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=deferred \(450 4\.2\.0 mailbox busy",
                               timeout=20)

    listing = sender.run("estafeta", "queue", "list").stdout
    assert b"mailbox busy" in listing
    assert b"\xc2\x9b" not in listing
