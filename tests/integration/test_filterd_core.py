"""filterd and smtpd's side of it: the protocol, the failure policies and
the verdicts, with real smtplib sessions through smtpd.

The tests of verdicts other than accept (reject, discard, quarantine,
header edits, invalid replies) put a scripted filterd peer on
filterd_socket, so that they do not depend on what the checks decide.
The outbound tests use a scripted SMTP peer in the same way. The peer
sends the replies each test gives it and records the requests smtpd
sent.
"""

import fcntl
import os
import signal
import smtplib
import socket
import struct
import threading
import time

import pytest

from ports import free_port
from scanners import FakePeer

SENDER = "someone@example.org"
RCPT = "demo@example.test"
MESSAGE = ("From: someone@example.org\r\nTo: demo@example.test\r\n"
           "Subject: filter test\r\nX-Remove-Me: first\r\n\r\nbody line\r\n")

FILTER_SETTINGS = {"smtpd_filter": "yes", "filterd_checks": ""}


# The lib/ipc.h framing: a 4-byte length and 4-byte flags in network byte
# order, then "TYPE\n" and "key=value\n" lines. Flag 1 means that a file
# descriptor came with the first byte.

def encode_frame(kind, fields):
    body = (kind + "\n" + "".join("%s=%s\n" % item for item in fields)).encode()
    return struct.pack("!II", len(body), 0) + body


def recv_exact(sock, count, fds):
    data = b""
    while len(data) < count:
        chunk, ancillary, _, _ = sock.recvmsg(count - len(data), socket.CMSG_SPACE(16))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += struct.unpack("%di" % (len(payload) // 4), payload[:len(payload) - len(payload) % 4])
        if not chunk:
            return None
        data += chunk
    return data


def recv_frame(sock):
    """Return (type, [(key, value)], fd or None), or None at EOF."""
    fds = []
    header = recv_exact(sock, 8, fds)
    if header is None:
        return None
    length, _ = struct.unpack("!II", header)
    body = recv_exact(sock, length, fds)
    if body is None:
        return None
    lines = body.decode().split("\n")[:-1]
    fields = [tuple(line.split("=", 1)) for line in lines[1:]]
    return lines[0], fields, (fds[0] if fds else None)


def field(fields, key):
    values = [value for name, value in fields if name == key]
    return values[0] if values else None


class ScriptedFilterd:
    """A filterd peer on PATH: replies REPLIES[request type] (a list of
    (key, value) or a raw bytes frame) and records each request with the
    spool file's content read through the passed descriptor."""

    def __init__(self, path, replies):
        self.replies = replies
        self.requests = []
        self.access_modes = []  # O_ACCMODE bits of each passed descriptor
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        os.chmod(str(path), 0o666)
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            conn.settimeout(20)
            threading.Thread(target=self.serve_connection, args=(conn,), daemon=True).start()

    def serve_connection(self, conn):
        with conn:
            while True:
                try:
                    frame = recv_frame(conn)
                except OSError:
                    return
                if frame is None:
                    return
                kind, fields, fd = frame
                content = None
                if fd is not None:
                    size = int(field(fields, "size"))
                    content = os.pread(fd, size, 0)
                    self.access_modes.append(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE)
                    # Move the file offset, as a scanner that reads with
                    # read() would: the commit must not depend on it.
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.close(fd)
                self.requests.append((kind, fields, content))
                reply = self.replies[kind]
                conn.sendall(reply if isinstance(reply, bytes) else encode_frame("RESULT", reply))

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def scripted_host(make_mailhost):
    """Start a host with smtpd_filter on and a scripted filterd peer that
    replies REPLIES; returns (host, peer)."""
    peers = []

    def factory(replies, **settings):
        host = make_mailhost(start=False, **dict(FILTER_SETTINGS, **settings))
        peer = ScriptedFilterd(host.settings["filterd_socket"], replies)
        peers.append(peer)
        host.newaliases()
        host.start()
        return host, peer

    yield factory
    for peer in peers:
        peer.stop()


def start_with_filterd(make_mailhost, **settings):
    host = make_mailhost(**dict(FILTER_SETTINGS, **settings))
    host.start("filterd")
    return host


def send(host, message=MESSAGE, sender=SENDER, rcpt=RCPT):
    with host.smtp() as client:
        client.sendmail(sender, [rcpt], message)


def mail_reply(host, sender=SENDER):
    """EHLO and MAIL FROM on a raw session; returns the MAIL reply and the session."""
    raw = host.raw()
    assert raw.cmd("EHLO client.example.test")[0] == 250
    return raw.cmd("MAIL FROM:<%s>" % sender), raw


# The real filterd, with an empty chain.

def test_empty_chain_delivers_unchanged(make_mailhost):
    host = start_with_filterd(make_mailhost)

    send(host)

    messages = host.wait_for_messages(RCPT, 1)
    assert len(messages) == 1
    header, body = messages[0].split(b"\n\n", 1)
    assert body == b"body line\n"
    assert b"\nSubject: filter test\nX-Remove-Me: first" in header
    assert b"X-Estafeta-Filter" not in header
    assert host.wait_for_log(r"filterd\[\d+\]: NOQUEUE: action=accept, stage=mail")
    assert host.wait_for_log(r"filterd\[\d+\]: [0-9A-F]+: action=accept, stage=message")


def test_one_connection_per_session(make_mailhost):
    host = start_with_filterd(make_mailhost)

    with host.smtp() as client:
        for _ in range(3):
            client.sendmail(SENDER, [RCPT], MESSAGE)

    assert len(host.wait_for_messages(RCPT, 3)) == 3
    assert host.log().count("action=accept, stage=message") == 3
    assert "reading a request from smtpd failed" not in host.log()


def test_parallel_sessions(make_mailhost):
    host = start_with_filterd(make_mailhost)
    errors = []

    def session():
        try:
            with host.smtp() as client:
                for _ in range(3):
                    client.sendmail(SENDER, [RCPT], MESSAGE)
        except Exception as error:  # collected for the assert below
            errors.append(error)

    threads = [threading.Thread(target=session) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert len(host.wait_for_messages(RCPT, 24)) == 24
    assert host.log().count("action=accept, stage=message") == 24


def test_bdat_message_filtered(make_mailhost):
    host = start_with_filterd(make_mailhost)
    raw = host.raw()
    data = MESSAGE.encode()

    assert raw.cmd("EHLO client.example.test")[0] == 250
    assert raw.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    assert raw.cmd("RCPT TO:<%s>" % RCPT)[0] == 250
    code, text = raw.cmd(b"BDAT %d LAST\r\n" % len(data) + data[:-2])
    raw.close()

    assert code == 250, text
    assert len(host.wait_for_messages(RCPT, 1)) == 1
    assert host.wait_for_log(r"action=accept, stage=message")


def test_pipelined_commands_wait_for_filterd(make_mailhost):
    host = start_with_filterd(make_mailhost)
    raw = host.raw()
    assert raw.cmd("EHLO client.example.test")[0] == 250

    raw.send(("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (SENDER, RCPT)).encode())
    replies = [raw.reply()[0] for _ in range(3)]
    raw.send(MESSAGE.encode() + b".\r\nQUIT\r\n")
    end = [raw.reply()[0] for _ in range(2)]
    raw.close()

    assert replies == [250, 250, 354]
    assert end == [250, 221]
    assert len(host.wait_for_messages(RCPT, 1)) == 1


def test_client_gone_while_filterd_waits(make_mailhost):
    host = start_with_filterd(make_mailhost)
    proc = host.procs["filterd"]
    raw = host.raw()
    assert raw.cmd("EHLO client.example.test")[0] == 250
    assert raw.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    assert raw.cmd("RCPT TO:<%s>" % RCPT)[0] == 250
    assert raw.cmd("DATA")[0] == 354

    proc.send_signal(signal.SIGSTOP)
    try:
        raw.send(MESSAGE.encode() + b".\r\n")
        time.sleep(0.3)
        raw.close()
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGCONT)

    with host.smtp() as client:
        client.sendmail(SENDER, [RCPT], MESSAGE)
    assert host.procs["smtpd"].poll() is None
    assert len(host.wait_for_messages(RCPT, 1)) >= 1


def test_filterd_down_tempfails(make_mailhost):
    host = make_mailhost(**FILTER_SETTINGS)

    (code, text), raw = mail_reply(host)
    raw.close()

    assert code == 451
    assert text.startswith("4.7.0 ")
    assert host.wait_for_log(r"smtpd\[\d+\]: warning: NOQUEUE: filterd unavailable: cannot connect to "
                             r".*smtpd_filter_failure_policy tempfail")
    assert host.wait_for_log(r"reject: MAIL from .*: 451 4\.7\.0")


def test_filterd_down_policy_accept(make_mailhost):
    host = make_mailhost(smtpd_filter_failure_policy="accept", **FILTER_SETTINGS)

    send(host)

    assert len(host.wait_for_messages(RCPT, 1)) == 1
    assert host.wait_for_log(r"NOQUEUE: filterd unavailable: .*going on without filtering")
    assert host.wait_for_log(r"[0-9A-F]+: filterd unavailable: .*going on without filtering")


def test_filterd_killed_mid_request(make_mailhost):
    host = start_with_filterd(make_mailhost)
    proc = host.procs["filterd"]

    proc.send_signal(signal.SIGSTOP)
    raw = host.raw()
    assert raw.cmd("EHLO client.example.test")[0] == 250
    raw.send(b"MAIL FROM:<someone@example.org>\r\n")
    time.sleep(0.3)
    host.kill("filterd")
    code, text = raw.reply()

    assert code == 451
    assert text.startswith("4.7.0 ")
    assert host.wait_for_log(r"filterd unavailable: lost the connection")
    assert raw.cmd("NOOP")[0] == 250
    raw.close()


def test_filterd_restart_reconnects(make_mailhost):
    host = start_with_filterd(make_mailhost)

    host.kill("filterd")
    (code, _), raw = mail_reply(host)
    assert code == 451
    host.start("filterd")
    code, text = raw.cmd("MAIL FROM:<%s>" % SENDER)
    raw.close()

    assert code == 250, text


def test_filterd_timeout_tempfails(make_mailhost):
    host = start_with_filterd(make_mailhost, smtpd_filter_timeout="1s")
    proc = host.procs["filterd"]

    proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        (code, text), raw = mail_reply(host)
        elapsed = time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGCONT)

    assert code == 451
    assert text.startswith("4.7.0 ")
    assert elapsed < 5
    assert host.wait_for_log(r"filterd unavailable: no reply within 1s")
    # The late reply went to the dropped connection; a new one serves the retry.
    code, text = raw.cmd("MAIL FROM:<%s>" % SENDER)
    raw.close()
    assert code == 250, text


def test_filterd_busy_tempfails(make_mailhost):
    peer = FakePeer(reply=None)
    try:
        host = start_with_filterd(make_mailhost, filterd_max_connections="1",
                                  mynetworks="198.51.100.0/24",
                                  filterd_checks="spamassassin", spamd_socket=peer.socket,
                                  spamd_timeout="4s",
                                  filterd_spamassassin_failure_policy="accept")
        # A session between requests takes no slot, and neither does a
        # partial request: a message waiting for the silent spamd takes
        # the only one.
        sender = threading.Thread(target=send, args=(host,), daemon=True)
        sender.start()
        deadline = time.monotonic() + 5
        while peer.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert peer.connections == 1, host.log()
        (code, text), second = mail_reply(host)
        second.close()
        sender.join(15)
    finally:
        peer.close()

    assert code == 451
    assert text.startswith("4.7.0 ")
    assert host.wait_for_log(r"filterd_max_connections limit of 1 reached")
    # filterd closes the connection after BUSY, so smtpd may see the
    # reset before the BUSY frame.
    assert host.wait_for_log(r"filterd unavailable: (BUSY filterd serves its limit of 1 "
                             r"connections|lost the connection|cannot send MAIL)")


def filterd_connection(host):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(host.settings["filterd_socket"])
    return sock


def test_filterd_bad_requests(make_mailhost):
    host = start_with_filterd(make_mailhost)
    mail = [("client_addr", "192.0.2.1"), ("helo", "x.example"), ("sender", "a@example.org")]
    message = mail + [("queue_id", "0123456789ABCDEF"), ("rcpt", RCPT), ("size", "10")]
    cases = [
        ("BOGUS", mail, "unknown request type"),
        ("MAIL", [("helo", "x.example"), ("sender", "")], "client_addr missing"),
        ("MAIL", [("client_addr", "192.0.2.1")], "sender missing"),
        ("MESSAGE", [kv for kv in message if kv[0] != "queue_id"], "queue_id missing"),
        ("MESSAGE", [kv for kv in message if kv[0] != "rcpt"], "no rcpt"),
        ("MESSAGE", [kv for kv in message if kv[0] != "size"], "size missing or invalid"),
        ("MESSAGE", message, "no spool file descriptor attached"),
    ]

    with filterd_connection(host) as sock:
        for kind, fields, error in cases:
            sock.sendall(encode_frame(kind, fields))
            reply = recv_frame(sock)
            assert reply is not None, kind
            assert reply[0] == "ERROR", (kind, error)
            assert field(reply[1], "error") == error
        sock.sendall(encode_frame("MAIL", mail))
        reply = recv_frame(sock)
    assert reply[0] == "RESULT"
    assert field(reply[1], "action") == "accept"

    # A malformed frame (length 0) closes the connection, nothing more.
    with filterd_connection(host) as sock:
        sock.sendall(struct.pack("!II", 0, 0))
        assert sock.recv(1) == b""
    with filterd_connection(host) as sock:
        sock.sendall(encode_frame("MAIL", mail))
        assert field(recv_frame(sock)[1], "action") == "accept"
    assert host.procs["filterd"].poll() is None


def test_filterd_unknown_check_fails(make_mailhost):
    host = make_mailhost(start=False, filterd_checks="spf no_such_check")

    result = host.run("filterd", "-f", "-c", str(host.config_path), timeout=20)

    assert result.returncode != 0
    assert b"unknown check" in result.stderr


# Chains in an order that would lose results or break signatures:
# (filterd_checks, expected error).
BAD_ORDERS = [
    ("authres spf", b"authres must be the last check, but spf follows it"),
    ("dkim_sign spamassassin authres",
     b"only authres may follow dkim_sign, but spamassassin does"),
    ("spf dkim_sign dmarc", b"only authres may follow dkim_sign, but dmarc does"),
]


@pytest.mark.parametrize("checks,error", BAD_ORDERS)
def test_filterd_check_order_enforced(make_mailhost, checks, error):
    host = make_mailhost(start=False, filterd_checks=checks)

    result = host.run("filterd", "-f", "-c", str(host.config_path), timeout=20)

    assert result.returncode != 0
    assert error in result.stderr


def test_filterd_signals(make_mailhost):
    host = start_with_filterd(make_mailhost)
    proc = host.procs["filterd"]

    proc.send_signal(signal.SIGHUP)
    assert host.wait_for_log(r"filterd\[\d+\]: reloaded 0 checks")
    host.stop("filterd")

    assert proc.returncode == 0
    assert host.wait_for_log(r"filterd\[\d+\]: stopped")


def scanner_host(make_mailhost, **settings):
    """filterd with spamassassin and clamav pointed at a loopback port
    where nothing listens, so each scan that runs fails. The client is
    outside mynetworks, because spamd is not asked about outbound mail."""
    closed = "127.0.0.1:%d" % free_port()
    return start_with_filterd(make_mailhost, filterd_checks="spamassassin clamav",
                              spamd_address=closed, clamd_address=closed,
                              mynetworks="192.0.2.0/24", **settings)


def test_scan_size_limit_skips_scanners(make_mailhost):
    host = scanner_host(make_mailhost, filterd_scan_size_limit="1k")
    large = MESSAGE.replace("body line\r\n", "body line\r\n" * 200)

    send(host, message=large)

    messages = host.wait_for_messages(RCPT, 1)
    assert len(messages) == 1
    header = messages[0].split(b"\n\n", 1)[0]
    assert b"\nX-Estafeta-Filter: scan skipped, message larger than 1024 bytes\nReceived: " \
        in header
    assert host.wait_for_log(r"action=accept, stage=message, scan=skipped")
    assert "check clamav failed" not in host.log()


def test_scanner_failure_policies(make_mailhost):
    host = scanner_host(make_mailhost)

    with host.smtp() as client:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            client.sendmail(SENDER, [RCPT], MESSAGE)

    # clamav defaults to tempfail, spamassassin to accept.
    assert caught.value.smtp_code == 451
    assert caught.value.smtp_error == b"4.7.0 Error: the clamav check is unavailable, try again later"
    assert host.wait_for_log(r"check spamassassin failed: .*accepting without it")
    assert host.wait_for_log(r"check clamav failed: .*replying 451 \(failure policy tempfail\)")
    assert host.messages(RCPT) == []


def test_scanner_failure_policy_accept(make_mailhost):
    host = scanner_host(make_mailhost, filterd_clamav_failure_policy="accept")

    send(host)

    assert len(host.wait_for_messages(RCPT, 1)) == 1
    assert host.wait_for_log(r"action=accept, stage=message, spamassassin=error, clamav=error")


# smtpd's handling of each verdict, against the scripted peer.

ACCEPT = [("action", "accept")]


def test_header_edits_applied(scripted_host):
    host, peer = scripted_host({
        "MAIL": ACCEPT + [("spf_result", "pass"), ("spf_domain", "example.org")],
        "MESSAGE": ACCEPT + [
            ("field", "X-Spam-Status: No, score=0.1"),
            ("field", "X-Folded: first line"),
            ("field", "\tsecond line"),
            ("remove", "x-remove-me:1"),
            ("subject_prefix", "[TAG]"),
        ],
    })

    send(host)

    messages = host.wait_for_messages(RCPT, 1)
    assert len(messages) == 1
    header, body = messages[0].split(b"\n\n", 1)
    lines = header.split(b"\n")
    received = lines.index(next(line for line in lines if line.startswith(b"Received:")))
    assert lines[received - 3:received] == [
        b"X-Spam-Status: No, score=0.1", b"X-Folded: first line", b"\tsecond line"]
    assert b"Subject: [TAG] filter test" in lines
    assert b"X-Remove-Me" not in header
    assert body == b"body line\n"

    mail_request = peer.requests[0]
    message_request = peer.requests[1]
    assert mail_request[0] == "MAIL"
    assert field(mail_request[1], "sender") == SENDER
    assert field(mail_request[1], "client_addr") == "127.0.0.1"
    assert field(mail_request[1], "mynetworks") == "1"
    assert message_request[0] == "MESSAGE"
    assert field(message_request[1], "spf_result") == "pass"
    assert field(message_request[1], "spf_domain") == "example.org"
    assert field(message_request[1], "rcpt") == RCPT
    assert message_request[2].startswith(b"Received: ")
    assert message_request[2].endswith(b"\nX-Remove-Me: first\n\nbody line\n")


def test_reject_at_mail(scripted_host):
    host, _ = scripted_host({
        "MAIL": [("action", "reject"), ("reply", "550 5.7.23 SPF check failed"),
                 ("reason", "spf=fail")],
        "MESSAGE": ACCEPT,
    })

    (code, text), raw = mail_reply(host)
    raw.close()

    assert code == 550
    assert text == "5.7.23 SPF check failed"
    assert host.wait_for_log(r"reject: MAIL from .*: 550 5\.7\.23 SPF check failed")


def test_reject_at_mail_pipelined(scripted_host):
    host, _ = scripted_host({
        "MAIL": [("action", "reject"), ("reply", "550 5.7.23 SPF check failed")],
        "MESSAGE": ACCEPT,
    })
    raw = host.raw()
    assert raw.cmd("EHLO client.example.test")[0] == 250

    raw.send(("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (SENDER, RCPT)).encode())
    replies = [raw.reply()[0] for _ in range(3)]
    assert raw.cmd("QUIT")[0] == 221
    raw.close()

    assert replies == [550, 503, 503]


def test_reject_at_end_of_data(scripted_host):
    host, _ = scripted_host({
        "MAIL": ACCEPT,
        "MESSAGE": [("action", "reject"), ("reply", "554 5.7.1 Virus found: Eicar-Signature")],
    })

    with host.smtp() as client:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            client.sendmail(SENDER, [RCPT], MESSAGE)

    assert caught.value.smtp_code == 554
    assert caught.value.smtp_error == b"5.7.1 Virus found: Eicar-Signature"
    assert host.wait_for_log(r"[0-9A-F]+: reject: END-OF-MESSAGE from .*: 554 5\.7\.1")
    assert host.wait_for_log(r"[0-9A-F]+: aborted")
    assert host.messages(RCPT) == []


def test_tempfail_at_end_of_data(scripted_host):
    host, _ = scripted_host({
        "MAIL": ACCEPT,
        "MESSAGE": [("action", "tempfail"), ("reply", "451 4.7.0 Try later")],
    })

    with host.smtp() as client:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            client.sendmail(SENDER, [RCPT], MESSAGE)

    assert caught.value.smtp_code == 451
    assert host.messages(RCPT) == []


def test_discard(scripted_host):
    host, _ = scripted_host({
        "MAIL": ACCEPT,
        "MESSAGE": [("action", "discard"), ("reason", "virus=Eicar-Signature")],
    })

    with host.smtp() as client:
        client.sendmail(SENDER, [RCPT], MESSAGE)
        assert client.noop()[0] == 250

    assert host.wait_for_log(r"[0-9A-F]+: discarded by filterd: virus=Eicar-Signature")
    assert host.wait_for_log(r"[0-9A-F]+: aborted")
    time.sleep(0.3)
    assert host.messages(RCPT) == []


def test_quarantine_delivers_to_junk(scripted_host):
    host, _ = scripted_host({
        "MAIL": ACCEPT,
        "MESSAGE": [("action", "quarantine"), ("reason", "dmarc=fail policy=quarantine"),
                    ("field", "X-Spam-Flag: YES")],
    })

    send(host)

    assert host.wait_for_log(r"[0-9A-F]+: quarantined by filterd: dmarc=fail policy=quarantine")
    assert host.wait_for_log(r"delivered to maildir folder Junk")
    junk = host.maildir(RCPT) / ".Junk" / "new"
    files = list(junk.iterdir())
    assert len(files) == 1
    assert files[0].read_bytes().split(b"\n\n", 1)[0].count(b"X-Spam-Flag: YES") == 1
    assert host.messages(RCPT) == []


@pytest.mark.parametrize("reply, error", [
    ([("action", "bogus")], "missing or unknown action"),
    ([("action", "reject")], "reject or tempfail without a valid SMTP reply"),
    ([("action", "reject"), ("reply", "250 2.0.0 fine")],
     "reject or tempfail without a valid SMTP reply"),
    ([("action", "tempfail"), ("reply", "554 5.0.0 wrong class")],
     "reject or tempfail without a valid SMTP reply"),
    (ACCEPT + [("field", "no colon here")], "invalid header field name"),
    (ACCEPT + [("field", " continuation first")], "a field continuation line comes first"),
    (ACCEPT + [("remove", "X-Foo:0")], "invalid removal index"),
    (ACCEPT + [("remove", "X-Foo")], "invalid removal"),
    (ACCEPT + [("subject_prefix", "x" * 80)], "subject prefix too long"),
])
def test_invalid_result_tempfails(scripted_host, reply, error):
    host, _ = scripted_host({"MAIL": ACCEPT, "MESSAGE": reply})

    with host.smtp() as client:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            client.sendmail(SENDER, [RCPT], MESSAGE)

    assert caught.value.smtp_code == 451
    assert host.wait_for_log(r"filterd unavailable: invalid reply: %s" % error)
    assert host.messages(RCPT) == []


def test_accept_without_edits(scripted_host):
    host, _ = scripted_host({"MAIL": ACCEPT, "MESSAGE": ACCEPT})

    send(host)

    messages = host.wait_for_messages(RCPT, 1)
    assert len(messages) == 1
    assert messages[0].endswith(b"\nX-Remove-Me: first\n\nbody line\n")


def test_message_descriptor_read_only(scripted_host):
    host, peer = scripted_host({"MAIL": ACCEPT, "MESSAGE": ACCEPT})

    send(host)

    assert len(host.wait_for_messages(RCPT, 1)) == 1
    assert peer.access_modes == [os.O_RDONLY]


def test_error_reply_policy_accept(scripted_host):
    host, _ = scripted_host({
        "MAIL": ACCEPT,
        "MESSAGE": encode_frame("ERROR", [("error", "size missing or invalid")]),
    }, smtpd_filter_failure_policy="accept")

    send(host)

    assert len(host.wait_for_messages(RCPT, 1)) == 1
    assert host.wait_for_log(r"filterd unavailable: ERROR size missing or invalid; going on")
