"""Shared parts of the outbound tests against scripted SMTP servers.

Each test file writes one misbehaving server as a Python script that
defines serve(conn) and calls listen_and_serve() from PEER_RUNTIME.
start_peer() runs it in the network namespace "peer" as
mx1.example.test, and the sending Estafeta host runs in namespace "a".
The test creates both namespaces and the DNS server for example.test
with netns_dns.
"""

import contextlib
import re
import subprocess
import sys
import time

import pytest

import netns_dns

skip_without_netns = pytest.mark.skipif(netns_dns.available() is not None,
                                        reason=netns_dns.available() or "")

A_ADDRESS = "198.51.100.10"
PEER_ADDRESS = "198.51.100.25"
SENDER = "demo@sender.test"
RECORDS = [
    "example.test. MX 10 mx1.example.test.",
    "mx1.example.test. A " + PEER_ADDRESS,
]

# Reply timeouts short enough for a test to see a peer that never replies.
SHORT_REPLY_TIMEOUTS = {
    "smtp_helo_timeout": "3s",
    "smtp_rcpt_timeout": "3s",
    "smtp_data_done_timeout": "3s",
}

# Prepended to every peer script. lines(conn) yields the CRLF-terminated
# lines the client sends, and listen_and_serve() accepts CONNECTIONS
# connections on port 25 one after another and hands each to SERVE.
PEER_RUNTIME = r'''
import socket, sys, time

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

def listen_and_serve(address, serve, connections, receive_buffer=None, nodelay=False):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if receive_buffer:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    server.bind((address, 25))
    server.listen(5)
    print("ready", flush=True)
    for _ in range(connections):
        conn, _ = server.accept()
        if nodelay:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            serve(conn)
        except OSError:
            pass
        conn.close()
'''


@contextlib.contextmanager
def netns_bed(tmp_path, hosts, zones=("example.test",), records=RECORDS):
    """Create one namespace per (name, address) in HOSTS and a DNS server
    for ZONES with RECORDS, and remove them all on exit."""
    bed = netns_dns.NetnsBed()
    try:
        for name, address in hosts:
            bed.add_host(name, address)
        bed.dns = netns_dns.ZoneServer(bed, tmp_path / "dns", list(zones), records)
        yield bed
    finally:
        bed.close()


@pytest.fixture
def net(tmp_path):
    """The sender namespace "a" and the peer namespace "peer", with RECORDS."""
    with netns_bed(tmp_path, [("a", A_ADDRESS), ("peer", PEER_ADDRESS)]) as bed:
        yield bed


def start_peer(net, tmp_path, script, *args):
    """Run PEER_RUNTIME followed by SCRIPT in namespace "peer" with ARGS,
    and wait until it listens."""
    path = tmp_path / "peer.py"
    path.write_text(PEER_RUNTIME + script)
    proc = net.popen("peer", ["/usr/bin/python3", str(path), *args],
                     stdout=subprocess.PIPE, stderr=sys.stderr)
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def sender_host(make_mailhost, net, **settings):
    """Start an Estafeta host in namespace "a" that delivers outbound mail,
    with SENDER as its one user and SETTINGS on top of the defaults."""
    values = dict(
        myhostname="a.sender.test",
        local_domains="localhost a.sender.test",
        virtual_domains="sender.test",
        outbound_delivery="yes",
        dns_resolvers=netns_dns.DNS_ADDRESS,
        dns_trust_anchor_file="",
    )
    values.update(settings)
    host = make_mailhost(start=False, netns=net.hosts["a"], **values)
    host.write_users({SENDER: "demo-secret"})
    host.newaliases()
    host.start()
    return host


def send(host, recipient, body="Hello.\n", *options, sender=SENDER, subject="hostile peer"):
    """Submit one message to RECIPIENT with the sendmail command."""
    message = "From: %s\nTo: %s\nSubject: %s\n\n%s" % (sender, recipient, subject, body)
    result = host.run("sendmail", *options, "-f", sender, recipient, input=message.encode())
    assert result.returncode == 0, result.stderr


def submit_with_smtplib(net, host, recipient, message, *mail_options):
    """Send MESSAGE (text, sent as UTF-8) from SENDER to RECIPIENT through
    HOST's smtpd with smtplib from inside namespace "a", with MAIL_OPTIONS
    on MAIL FROM."""
    script = (
        "import smtplib, sys\n"
        "client = smtplib.SMTP('127.0.0.1', %d, local_hostname='client.sender.test', timeout=15)\n"
        "client.sendmail(%r, [%r], sys.argv[1].encode('utf-8'), mail_options=sys.argv[2:])\n"
        "client.quit()\n" % (host.smtp_port, SENDER, recipient))
    result = net.run("a", "/usr/bin/python3", "-c", script, message, *mail_options)
    assert result.returncode == 0, result.stderr


def outcomes(host, recipient):
    """Return the delivery result lines (to=<RECIPIENT>, relay=...) in the log."""
    return re.findall(r"^.*to=<%s>, relay=.*$" % re.escape(recipient), host.log(), re.M)


def wait_for_outcomes(host, recipient, count=1, timeout=20):
    """Wait until the log has COUNT result lines for RECIPIENT or TIMEOUT
    seconds pass, and return the lines found, which may be fewer."""
    deadline = time.monotonic() + timeout
    found = outcomes(host, recipient)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        found = outcomes(host, recipient)
    return found


def first_outcome(host, recipient, timeout=20):
    """Return the first result line for RECIPIENT, waiting up to TIMEOUT seconds."""
    found = wait_for_outcomes(host, recipient, 1, timeout)
    if not found:
        raise AssertionError("no outcome for %s in the log" % recipient)
    return found[0]


def queued_ids(host):
    """Return the queue ids in `estafeta queue list` and the whole listing."""
    listing = host.run("estafeta", "queue", "list").stdout.decode()
    return re.findall(r"^([0-9A-F]{8,})", listing, re.M), listing


# A well-behaved SMTP server with PIPELINING and DSN that fails in the
# way its mode names. Arguments: mode, address, record file, and for mode
# "limit" the number of recipients it takes per transaction. Every
# command it receives is appended to the record file, with "CONNECT" at
# the start of each connection and "DATA done" after each message.
#   ok        accepts everything
#   greet554  greets with 554 and replies 503 to every command
#   rcpt451   replies 451 to every RCPT
#   rcpt550   replies 550 to every RCPT
#   droprcpt  closes the connection when the first RCPT arrives
#   data421   replies 421 to the end of the data and closes the connection
#   limit     replies 452 4.5.3 to each RCPT past the limit
#   size      announces SIZE with the limit argument as its value and
#             records the octets between DATA and the final "."
MX_PEER = r'''
mode, address, record = sys.argv[1], sys.argv[2], sys.argv[3]
limit = int(sys.argv[4]) if len(sys.argv) > 4 else 0

def note(line):
    with open(record, "ab") as out:
        out.write(line + b"\r\n")

def refuse(conn):
    conn.sendall(b"554 5.7.1 mx refuses all mail\r\n")
    for line in lines(conn):
        note(line)
        if line.upper() == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        conn.sendall(b"503 5.5.1 no service here\r\n")

def rcpt_reply(accepted):
    if mode == "rcpt451":
        return b"451 4.3.0 try again later\r\n"
    if mode == "rcpt550":
        return b"550 5.1.1 no such user\r\n"
    if mode == "limit" and accepted >= limit:
        return b"452 4.5.3 Error: too many recipients\r\n"
    return b"250 2.1.5 Ok\r\n"

def receive_data(conn, reader):
    # The octets of the message as sent, with dot-stuffing undone, the
    # unit of the SIZE parameter (RFC 1870).
    size = 0
    for data_line in reader:
        if data_line == b".":
            break
        if data_line.startswith(b"."):
            data_line = data_line[1:]
        size += len(data_line) + 2
    note(b"DATA done size=%d" % size)
    if mode == "data421":
        conn.sendall(b"421 4.3.2 shutting down\r\n")
        return False
    conn.sendall(b"250 2.0.0 Ok: queued as TEST\r\n")
    return True

def serve(conn):
    note(b"CONNECT")
    if mode == "greet554":
        refuse(conn)
        return
    conn.sendall(b"220 mx ESMTP test peer\r\n")
    reader = lines(conn)
    accepted = 0
    for line in reader:
        note(line)
        verb = line[:4].upper()
        if verb == b"EHLO":
            size = b"250-SIZE %d\r\n" % limit if mode == "size" else b""
            conn.sendall(b"250-mx\r\n" + size + b"250-DSN\r\n250 PIPELINING\r\n")
        elif verb == b"MAIL":
            accepted = 0
            conn.sendall(b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT" and mode == "droprcpt":
            return
        elif verb == b"RCPT":
            reply = rcpt_reply(accepted)
            accepted += reply.startswith(b"250")
            conn.sendall(reply)
        elif verb == b"DATA" and accepted == 0:
            conn.sendall(b"554 5.5.1 Error: no valid recipients\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            if not receive_data(conn, reader):
                return
        elif verb == b"RSET":
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

listen_and_serve(address, serve, 20)
'''


def start_mx_peer(net, tmp_path, name, address, mode, *args):
    """Run MX_PEER in MODE as host NAME of NET at ADDRESS and return the
    path of its record file."""
    record = tmp_path / ("%s.record" % name)
    script = tmp_path / ("%s.py" % name)
    script.write_text(PEER_RUNTIME + MX_PEER)
    proc = net.popen(name, ["/usr/bin/python3", str(script), mode, address, str(record),
                            *[str(arg) for arg in args]],
                     stdout=subprocess.PIPE, stderr=sys.stderr)
    assert proc.stdout.readline().strip() == b"ready"
    return record


def recorded(record):
    """Return the lines in a record file of MX_PEER, or [] when it has none."""
    return record.read_bytes().split(b"\r\n") if record.exists() else []
