"""filterd's ClamAV check through smtpd, against a real clamd.

One clamd with a private one-signature database (see scanners.py) serves
the whole module. It decodes MIME parts and unpacks archives itself
(ScanMail and ScanArchive), so filterd sends it the message as stored.
"""

import base64
import io
import re
import time
import zipfile

import pytest

from scanners import EICAR, EICAR_REPORTED, Clamd, FakePeer

DEMO = "demo@example.test"
SENDER = "sender@example.org"
VIRUS_REPLY = ("5.7.1 Message rejected: virus found (%s)" % EICAR_REPORTED).encode()


@pytest.fixture(scope="module")
def clamd():
    server = Clamd()
    server.start()
    yield server
    server.destroy()


def start_host(make_mailhost, **settings):
    """Start a host whose smtpd sends each transaction to filterd, which
    runs only the ClamAV check."""
    base = dict(smtpd_filter="yes", filterd_checks="clamav")
    base.update(settings)
    host = make_mailhost(start=False, **base)
    host.newaliases()
    host.start()
    host.start("filterd")
    return host


def plain_message(subject, body):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n%s\r\n"
            % (SENDER, DEMO, subject, body))


def attachment_message(subject, filename, content, content_type="application/octet-stream"):
    """A multipart/mixed message with CONTENT as a base64 attachment."""
    encoded = base64.encodebytes(content).decode().replace("\n", "\r\n")
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            "--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
            "--b1\r\nContent-Type: %s; name=\"%s\"\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n%s"
            "--b1--\r\n"
            % (SENDER, DEMO, subject, content_type, filename, filename, encoded))


def zip_bytes(name, content):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def send(host, text):
    """Send TEXT to demo; return the end-of-data reply (code, text)."""
    client = host.smtp()
    try:
        assert client.ehlo()[0] == 250
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(DEMO)[0] == 250
        return client.data(text)
    finally:
        client.quit()


def assert_nothing_delivered(host):
    time.sleep(0.5)
    assert host.messages(DEMO) == []


VIRUS_MESSAGES = {
    "body": lambda: plain_message("eicar body", EICAR.decode()),
    "attachment": lambda: attachment_message("eicar attachment", "eicar.com", EICAR),
    "zip": lambda: attachment_message("eicar zip", "eicar.zip", zip_bytes("eicar.com", EICAR),
                                      "application/zip"),
}


@pytest.mark.parametrize("kind", sorted(VIRUS_MESSAGES))
def test_virus_rejected(make_mailhost, clamd, kind):
    host = start_host(make_mailhost, clamd_socket=clamd.socket)
    code, text = send(host, VIRUS_MESSAGES[kind]())
    assert code == 554
    assert text == VIRUS_REPLY

    assert host.wait_for_log(r"action=reject, stage=message, reason=virus=%s"
                             % re.escape(EICAR_REPORTED))
    assert_nothing_delivered(host)


def test_virus_discarded(make_mailhost, clamd):
    host = start_host(make_mailhost, clamd_socket=clamd.socket, virus_action="discard")
    code, _ = send(host, VIRUS_MESSAGES["attachment"]())
    assert code == 250

    assert host.wait_for_log(r"action=discard, stage=message, reason=virus=%s"
                             % re.escape(EICAR_REPORTED))
    assert_nothing_delivered(host)


def test_clean_attachment_passes(make_mailhost, clamd):
    host = start_host(make_mailhost, clamd_socket=clamd.socket)
    content = zip_bytes("report.txt", b"Quarterly numbers, nothing else.\n" * 50)
    assert send(host, attachment_message("report", "report.zip", content))[0] == 250

    delivered = host.wait_for_messages(DEMO, 1)
    assert len(delivered) == 1
    assert b"Subject: report" in delivered[0]
    assert host.wait_for_log(r"action=accept, stage=message, virus=none")


def test_virus_over_tcp(make_mailhost, clamd):
    host = start_host(make_mailhost, clamd_address=clamd.address)
    code, text = send(host, VIRUS_MESSAGES["body"]())
    assert code == 554
    assert text == VIRUS_REPLY


@pytest.mark.parametrize("kind,expected", [("zip", 554), ("clean", 250)])
def test_fildes_scan(make_mailhost, clamd, kind, expected):
    host = start_host(make_mailhost, clamd_socket=clamd.socket, clamd_use_fildes="yes")
    text = VIRUS_MESSAGES[kind]() if kind in VIRUS_MESSAGES else plain_message("hi", "Hello.")
    assert send(host, text)[0] == expected


def test_fildes_needs_unix_socket(make_mailhost, clamd):
    host = make_mailhost(start=False, smtpd_filter="yes", filterd_checks="clamav",
                         clamd_address=clamd.address, clamd_use_fildes="yes")
    with pytest.raises(RuntimeError, match="clamd_use_fildes needs clamd_socket"):
        host.start("filterd")


def test_unconfigured_clamd_rejected(make_mailhost):
    host = make_mailhost(start=False, smtpd_filter="yes", filterd_checks="clamav")
    with pytest.raises(RuntimeError, match="clamd_socket and clamd_address are both empty"):
        host.start("filterd")


def test_outbound_mail_scanned(make_mailhost, clamd):
    # The loopback client is in mynetworks (the harness default): viruses
    # from local clients are stopped too.
    host = start_host(make_mailhost, clamd_socket=clamd.socket)
    assert send(host, VIRUS_MESSAGES["body"]())[0] == 554


def test_size_limit_is_failure(make_mailhost):
    small = Clamd(stream_max_length="4K")
    small.start()
    try:
        host = start_host(make_mailhost, clamd_socket=small.socket)
        body = "\r\n".join("clean line %d of a long message" % i for i in range(2000))
        code, _ = send(host, plain_message("long", body))
        assert code == 451
        assert host.wait_for_log(r"check clamav failed: clamd replied: "
                                 r"INSTREAM size limit exceeded\. ERROR; replying 451")
    finally:
        small.destroy()
    assert_nothing_delivered(host)


def test_clamd_down_accept(make_mailhost, clamd):
    host = start_host(make_mailhost, clamd_socket=str(clamd.dir / "missing.sock"),
                      filterd_clamav_failure_policy="accept")
    assert send(host, plain_message("hi", "Hello."))[0] == 250

    assert len(host.wait_for_messages(DEMO, 1)) == 1
    assert host.wait_for_log(r"check clamav failed: connect to clamd at \S+ failed: "
                             r"No such file or directory; accepting")


def test_clamd_down_tempfail_resend(make_mailhost):
    server = Clamd()
    server.start()
    try:
        host = start_host(make_mailhost, clamd_socket=server.socket)
        server.stop()
        code, text = send(host, plain_message("later", "Hello again."))
        assert code == 451
        assert text.startswith(b"4.7.0 ")
        assert_nothing_delivered(host)

        # The client tries again once clamd is back: delivered once.
        server.start()
        assert send(host, plain_message("later", "Hello again."))[0] == 250
        assert len(host.wait_for_messages(DEMO, 1)) == 1
        time.sleep(0.5)
        assert len(host.messages(DEMO)) == 1
    finally:
        server.destroy()


def test_clamd_silent_timeout(make_mailhost):
    peer = FakePeer(reply=None)
    try:
        host = start_host(make_mailhost, clamd_socket=peer.socket, clamd_timeout="1s")
        started = time.monotonic()
        code, _ = send(host, plain_message("hi", "Hello."))
        elapsed = time.monotonic() - started
        assert code == 451
        assert 0.9 < elapsed < 10
        assert host.wait_for_log(r"check clamav failed: clamd: timed out waiting for the reply")
    finally:
        peer.close()


REPLIES = [
    (b"stream: OK", None),
    (b"garbage\0", r"clamd replied: garbage"),
    (b"stream: Some Name With Spaces FOUND\0", r"clamd replied: stream: Some Name With Spaces FOUND"),
    (b"stream: \x1b[31mBad FOUND\0", r"clamd replied: stream: \\x1b\[31mBad FOUND"),
    (b"stream: lstat() failed: No such file. ERROR\0", r"clamd replied: stream: lstat\(\) failed"),
    (b"", r"clamd: connection closed without a reply"),
    (b"x" * 2000, r"clamd: reply longer than 1023 bytes"),
]


@pytest.mark.parametrize("reply,logged", REPLIES)
def test_clamd_bad_reply(make_mailhost, reply, logged):
    peer = FakePeer(reply=reply, unix=False)
    try:
        host = start_host(make_mailhost, clamd_address=peer.address)
        code, _ = send(host, plain_message("hi", "Hello."))
        if logged is None:
            # A reply without its NUL that ends with the connection still counts.
            assert code == 250
        else:
            assert code == 451
            assert host.wait_for_log(r"check clamav failed: " + logged)
    finally:
        peer.close()


def test_instream_request_bytes(make_mailhost):
    peer = FakePeer(reply=b"stream: OK\0")
    try:
        host = start_host(make_mailhost, clamd_socket=peer.socket)
        assert send(host, plain_message("bytes", "Hello."))[0] == 250
        delivered = host.wait_for_messages(DEMO, 1)
    finally:
        peer.close()

    request = peer.requests[0]
    assert request.startswith(b"zINSTREAM\0")
    assert request.endswith(b"\0\0\0\0")
    chunk = request[len(b"zINSTREAM\0"):-4]
    length = int.from_bytes(chunk[:4], "big")
    assert length == len(chunk) - 4
    # The spool file as filterd read it: LF line ends, smtpd's Received first.
    assert chunk[4:].startswith(b"Received: ")
    assert b"\r\n" not in chunk
    assert b"Subject: bytes\n" in chunk
    assert len(delivered) == 1
