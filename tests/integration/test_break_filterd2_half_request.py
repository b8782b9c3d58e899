"""A connection that sends part of a request keeps a filterd worker.

filterd's main loop hands a connection to a worker as soon as it is
readable. The worker then reads the whole request in blocking calls,
each bounded by filterd_timeout (600 s by default). A peer that sends
the first bytes of a frame and waits keeps a worker and a
filterd_max_connections slot that long. Every SMTP client meanwhile gets
451 4.7.0 at MAIL FROM. The timeout bounds each read, not the request,
so a peer that sends a byte now and then can keep the slot longer. That
case was found by reading lib/ipc.c and was not run. Only members of
filterd_socket_group can connect, so this needs a faulty or compromised
smtpd or queued.

Fixed: filterd's main thread now reads each request without blocking and
hands only a complete one to a worker; a request not complete after
filterd_request_timeout closes its connection.
"""

import socket
import struct
import time

import pytest

SLOTS = 2


def start_host(make_mailhost):
    host = make_mailhost(start=False, mynetworks="198.51.100.0/24", smtpd_filter="yes",
                         filterd_checks="", filterd_max_connections=str(SLOTS),
                         filterd_request_timeout="2s")
    host.newaliases()
    host.start()
    host.start("filterd")
    return host


def mail_reply(host):
    """Return the reply code to MAIL FROM on a new session."""
    raw = host.raw()
    try:
        assert raw.cmd("EHLO client.example.test")[0] == 250
        return raw.cmd("MAIL FROM:<sender@example.org>")[0]
    finally:
        raw.close()


def half_request(path):
    """Connect to filterd and send the frame header of a request and no body."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(struct.pack("!II", 100, 0))
    return sock


def test_partial_requests_keep_no_slot(make_mailhost):
    host = start_host(make_mailhost)
    path = host.settings["filterd_socket"]
    assert mail_reply(host) == 250, host.log()

    # Send one extra connection in case the end of the session above still
    # takes a slot for a moment, and filterd replies BUSY to one of them.
    time.sleep(0.5)
    stalled = [half_request(path) for _ in range(SLOTS + 1)]

    # The stalled connections reach the workers within a moment: try a few times.
    codes = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        time.sleep(0.3)
        codes.append(mail_reply(host))

    for sock in stalled:
        sock.close()
    assert codes, host.log()
    assert all(code == 250 for code in codes), (codes, host.log())


def test_partial_request_is_closed_after_request_timeout(make_mailhost):
    host = start_host(make_mailhost)
    sock = half_request(host.settings["filterd_socket"])
    try:
        started = time.monotonic()
        assert sock.recv(1) == b"", host.log()
        assert time.monotonic() - started < 4.5, host.log()
    finally:
        sock.close()
    host.wait_for_log(r"closing a connection from smtpd whose request is not complete after 2s")
    assert mail_reply(host) == 250, host.log()
