"""SIGHUP that drops the relayhost credentials in the middle of AUTH LOGIN.

AUTH LOGIN takes three round trips, and each step uses the credentials
that queued loaded last from relayhost_password_file. A reload in between
whose file no longer names the relayhost leaves queued without
credentials for the session that is still authenticating. That session
may finish with the credentials it started with or give up and defer
its mail, but queued must keep running.

The relayhost is a scripted server in namespace "b" that offers
STARTTLS and then only AUTH LOGIN. It holds back its first 334 reply
until the test creates a go-ahead file.
"""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import smtp_peer
from conftest import make_certificate, tls_pki
from smtp_peer import A_ADDRESS, send

pytestmark = smtp_peer.skip_without_netns

B_ADDRESS = "198.51.100.25"
RELAYHOST = "[relay.example.test]:25"
RECORDS = ["relay.example.test. A " + B_ADDRESS]

# Arguments: address, certificate, key, record file, go-ahead file. The
# record file gets "AUTH LOGIN" when that command arrives.
RELAY = r'''
import os, ssl
address, cert, key, record, go_ahead = sys.argv[1:6]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)

def read_line(conn, buf):
    while b"\r\n" not in buf[0]:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("closed")
        buf[0] += chunk
    line, buf[0] = buf[0].split(b"\r\n", 1)
    return line

def serve(conn):
    conn.sendall(b"220 relay.example.test ESMTP test relay\r\n")
    buf = [b""]
    while True:
        line = read_line(conn, buf)
        verb = line[:4].upper()
        if verb == b"EHLO" and isinstance(conn, ssl.SSLSocket):
            conn.sendall(b"250-relay.example.test\r\n250 AUTH LOGIN\r\n")
        elif verb == b"EHLO":
            conn.sendall(b"250-relay.example.test\r\n250 STARTTLS\r\n")
        elif verb == b"STAR":
            conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
            conn = context.wrap_socket(conn, server_side=True)
            buf = [b""]
        elif verb == b"AUTH":
            with open(record, "ab") as out:
                out.write(line + b"\n")
            deadline = time.monotonic() + 20
            while not os.path.exists(go_ahead) and time.monotonic() < deadline:
                time.sleep(0.05)
            conn.sendall(b"334 VXNlcm5hbWU6\r\n")
            read_line(conn, buf)
            conn.sendall(b"334 UGFzc3dvcmQ6\r\n")
            read_line(conn, buf)
            conn.sendall(b"235 2.7.0 Authentication successful\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET"):
            conn.sendall(b"250 2.0.0 Ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            while read_line(conn, buf) != b".":
                pass
            conn.sendall(b"250 2.0.0 Ok: queued as TEST\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

listen_and_serve(address, serve, 5)
'''


@pytest.fixture
def net(tmp_path):
    with smtp_peer.netns_bed(tmp_path, [("a", A_ADDRESS), ("b", B_ADDRESS)], records=RECORDS) as bed:
        yield bed


@pytest.fixture
def shared():
    """A directory that the queue user can read, removed at the end."""
    directory = Path(tempfile.mkdtemp(prefix="est-relay-", dir="/tmp"))
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def write_password_file(path, text):
    """Write TEXT to PATH with mode 0600, owned by the queue user so that
    queued can read it again on SIGHUP."""
    path.write_text(text)
    os.chmod(path, 0o600)
    queue_user = pwd.getpwnam("_estafeta-queue")
    os.chown(path, queue_user.pw_uid, queue_user.pw_gid)


def start_relay(net, tmp_path, shared):
    """Start RELAY in namespace "b" and return its record and go-ahead paths."""
    make_certificate(shared, "relay", ["relay.example.test"], tls_pki())
    record, go_ahead = tmp_path / "auth.record", tmp_path / "go-ahead"
    script = tmp_path / "relay.py"
    script.write_text(smtp_peer.PEER_RUNTIME + RELAY)
    proc = net.popen("b", ["/usr/bin/python3", str(script), B_ADDRESS, str(shared / "relay.pem"),
                           str(shared / "relay.key"), str(record), str(go_ahead)],
                     stdout=subprocess.PIPE, stderr=sys.stderr)
    assert proc.stdout.readline().strip() == b"ready"
    return record, go_ahead


def wait_for_file(path, timeout=20):
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def wait_for_outcome_or_exit(host, recipient, timeout=20):
    """Return the first result line for RECIPIENT, or None once queued has
    exited or TIMEOUT seconds have passed."""
    deadline = time.monotonic() + timeout
    while host.procs["queued"].poll() is None and time.monotonic() < deadline:
        found = smtp_peer.outcomes(host, recipient)
        if found:
            return found[0]
        time.sleep(0.1)
    return None


def test_credentials_dropped_mid_auth(make_mailhost, net, tmp_path, shared):
    record, go_ahead = start_relay(net, tmp_path, shared)
    password_file = shared / "relay_passwords"
    write_password_file(password_file, "%s demo@example.test:demo\n" % RELAYHOST)
    sender = smtp_peer.sender_host(make_mailhost, net, relayhost=RELAYHOST,
                                   relayhost_password_file=str(password_file),
                                   smtp_tls_security_level="encrypt")

    send(sender, "friend@elsewhere.test", subject="reload during AUTH")
    assert wait_for_file(record)
    write_password_file(password_file, "[other.example.test]:25 someone@example.test:other\n")
    sender.procs["queued"].send_signal(signal.SIGHUP)
    assert sender.wait_for_log(r"relayhost_password_file .* reloaded")
    go_ahead.write_text("")

    outcome = wait_for_outcome_or_exit(sender, "friend@elsewhere.test")
    assert sender.procs["queued"].poll() is None
    assert outcome is not None
    assert "status=bounced" not in outcome
