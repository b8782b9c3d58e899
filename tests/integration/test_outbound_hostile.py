"""Outbound delivery to broken or hostile SMTP servers.

A small Python server (PEER below) runs in its own namespace as
mx1.example.test and misbehaves in one way per test. The sending
Estafeta host must defer or bounce each message correctly, never lose
it, and log why.
"""

import email
import time

import smtp_peer
from smtp_peer import PEER_ADDRESS, SENDER, net, queued_ids, send  # noqa: F401 (fixture)

pytestmark = smtp_peer.skip_without_netns

# One server that misbehaves in the way its first argument, the mode, names.
PEER = r'''
mode, address, record = sys.argv[1], sys.argv[2], sys.argv[3]

def send(conn, text):
    data = text.encode("latin-1")
    if mode == "split":
        # One byte per segment, so every reply arrives in pieces.
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            time.sleep(0.002)
    else:
        conn.sendall(data)

def serve(conn):
    if mode == "busy":
        send(conn, "421 4.3.2 mx1.example.test busy, try later\r\n")
        return
    send(conn, "220 mx1.example.test ESMTP test peer\r\n")
    reader = lines(conn)
    for line in reader:
        verb = line[:4].upper()
        with open(record + ".commands", "ab") as out:
            out.write(line + b"\r\n")
        if verb == b"EHLO":
            if mode == "garbage":
                send(conn, "hello, I do not speak SMTP\r\n")
                continue
            if mode == "helo":
                send(conn, "502 5.5.1 EHLO not implemented\r\n")
                continue
            if mode == "plain":
                # No extensions: no PIPELINING, 8BITMIME, SIZE or SMTPUTF8.
                send(conn, "250 mx1.example.test\r\n")
                continue
            if mode == "badtls":
                send(conn, "250-mx1.example.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n")
                continue
            if mode == "small":
                send(conn, "250-mx1.example.test\r\n250-PIPELINING\r\n250 SIZE 300\r\n")
                continue
            send(conn, "250-mx1.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif verb == b"STAR":
            # Agree to STARTTLS, then answer the ClientHello with junk.
            send(conn, "220 2.0.0 Ready to start TLS\r\n")
            conn.recv(65536)
            send(conn, "this is not a TLS record\r\n")
            return
        elif verb == b"HELO":
            send(conn, "250 mx1.example.test\r\n")
        elif verb == b"MAIL":
            send(conn, "250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            if mode == "endless":
                # A multi-line reply whose last line never comes.
                for n in range(100000):
                    send(conn, "250-still going %d\r\n" % n)
                    time.sleep(0.001)
                return
            if mode == "smuggle":
                send(conn, "550-5.1.1 <victim@example.test>: Recipient address rejected\r\n"
                           "550-\r\n"
                           "550 5.1.1 Subject: smuggled\rX-Injected: yes\x1b[31m\r\n")
                continue
            send(conn, "250 2.1.5 Ok\r\n")
        elif verb == b"DATA":
            send(conn, "354 End data with <CR><LF>.<CR><LF>\r\n")
            body = []
            for data_line in reader:
                if data_line == b".":
                    break
                body.append(data_line)
            with open(record, "ab") as out:
                out.write(b"\r\n".join(body) + b"\r\n--end--\r\n")
            with open(record + ".commands", "ab") as out:
                out.write(b"DATA done\r\n")
            if mode == "hang":
                time.sleep(60)
                return
            send(conn, "250 2.0.0 Ok: queued as TEST\r\n")
        elif verb == b"RSET":
            send(conn, "250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            send(conn, "221 2.0.0 Bye\r\n")
            return
        else:
            send(conn, "502 5.5.2 Error: command not recognized\r\n")

listen_and_serve(address, serve, 20, nodelay=True)
'''


def start_peer(net, tmp_path, mode):
    """Start PEER in MODE and return the file it appends received messages to."""
    record = tmp_path / "received"
    smtp_peer.start_peer(net, tmp_path, PEER, mode, PEER_ADDRESS, str(record))
    return record


def sender_host(make_mailhost, net, **settings):
    """Start the sending host with short reply timeouts and SETTINGS."""
    return smtp_peer.sender_host(make_mailhost, net, **{**smtp_peer.SHORT_REPLY_TIMEOUTS, **settings})


def test_reply_split_across_packets(make_mailhost, net, tmp_path):
    record = start_peer(net, tmp_path, "split")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test", body="line one\n.leading dot\n")

    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=mx1\.example\.test\[198\.51\.100\.25\]:25, "
                               r".*dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as TEST\)", timeout=20)
    received = record.read_bytes()
    assert b"line one\r\n..leading dot\r\n--end--" in received


def test_multiline_reply_without_end(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "endless")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*dsn=4\.4\.2, status=deferred "
                               r"\(invalid reply from mx1\.example\.test\[198\.51\.100\.25\]:25", timeout=20)
    ids, listing = queued_ids(sender)
    assert len(ids) == 1
    assert "invalid reply" in listing


def test_garbage_reply(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "garbage")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=deferred \(invalid reply from "
                               r"mx1\.example\.test\[198\.51\.100\.25\]:25 while waiting for the EHLO reply: "
                               r"hello, I do not speak SMTP\)", timeout=20)
    ids, _ = queued_ids(sender)
    assert len(ids) == 1


def test_peer_hangs_mid_data(make_mailhost, net, tmp_path):
    record = start_peer(net, tmp_path, "hang")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*dsn=4\.4\.2, status=deferred \(conversation with "
                               r"mx1\.example\.test\[198\.51\.100\.25\]:25 timed out while waiting for the reply "
                               r"to the end of data\)", timeout=20)
    assert b"--end--" in record.read_bytes()
    ids, listing = queued_ids(sender)
    assert len(ids) == 1
    assert "timed out" in listing


def test_reply_cannot_inject_into_bounce(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "smuggle")
    sender = sender_host(make_mailhost, net)

    send(sender, "victim@example.test")

    assert sender.wait_for_log(r"to=<victim@example\.test>, .*dsn=5\.1\.1, status=bounced \(550 5\.1\.1 ",
                               timeout=20)
    bounces = sender.wait_for_messages(SENDER, 1, timeout=15)
    assert len(bounces) == 1
    lines = bounces[0].split(b"\n")
    assert not any(line.startswith(b"X-Injected") for line in lines)
    assert not any(line.startswith(b"Subject: smuggled") for line in lines)
    assert b"\x00" not in bounces[0]
    assert b"\x1b" not in bounces[0]
    diagnostic = [line for line in lines if line.startswith(b"Diagnostic-Code:")]
    assert len(diagnostic) == 1
    assert diagnostic[0].startswith(b"Diagnostic-Code: smtp; 550 5.1.1 <victim@example.test>: Recipient")
    assert b"X-Injected: yes" in diagnostic[0]


def test_server_without_extensions(make_mailhost, net, tmp_path):
    record = start_peer(net, tmp_path, "plain")
    sender = sender_host(make_mailhost, net)
    long_line = "x" * 2500

    send(sender, "alice@example.test", "%s\n.\nend\n" % long_line, "-i", "-B", "8BITMIME")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=sent \(250 2\.0\.0 Ok", timeout=20)
    commands = (tmp_path / "received.commands").read_bytes().split(b"\r\n")
    mail = [c for c in commands if c.startswith(b"MAIL FROM:")]
    assert mail == [b"MAIL FROM:<demo@sender.test>"]
    received = record.read_bytes().split(b"\r\n")
    assert max(len(line) for line in received) <= 998
    assert b"".join(line for line in received if line.startswith(b"x")) == long_line.encode()
    assert b".." in received


def test_8bit_body_converted_for_7bit_server(make_mailhost, net, tmp_path):
    record = start_peer(net, tmp_path, "plain")
    sender = sender_host(make_mailhost, net)
    body = "Gr\u00fc\u00dfe aus A, a line with a trailing space \n" + "\u00e9" * 60 + "\n=end\n"

    send(sender, "alice@example.test", body)

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=sent \(250 2\.0\.0 Ok", timeout=20)
    assert sender.wait_for_log(r"does not offer 8BITMIME: 8-bit body parts are sent as quoted-printable")
    received = record.read_bytes().split(b"\r\n--end--")[0]
    assert all(byte < 128 for byte in received)
    assert max(len(line) for line in received.split(b"\r\n")) <= 76
    message = email.message_from_bytes(received.replace(b"\r\n", b"\n"))
    assert message["MIME-Version"] == "1.0"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    # The peer's record drops the line end before the final ".".
    assert message.get_payload(decode=True).decode("utf-8") == body.rstrip("\n")


def test_8bit_parts_of_multipart_converted(make_mailhost, net, tmp_path):
    record = start_peer(net, tmp_path, "plain")
    sender = sender_host(make_mailhost, net)
    text = "Gr\u00fc\u00dfe\n"
    mime = ("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"part\"\n\n"
            "--part\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n%s"
            "--part\nContent-Type: text/plain\n\nplain ASCII\n--part--\n" % text)
    message = "From: %s\nTo: alice@example.test\nSubject: parts\n%s" % (SENDER, mime)
    result = sender.run("sendmail", "-f", SENDER, "alice@example.test", input=message.encode())
    assert result.returncode == 0, result.stderr

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=sent \(250 2\.0\.0 Ok", timeout=20)
    received = record.read_bytes().split(b"\r\n--end--")[0]
    assert all(byte < 128 for byte in received)
    parsed = email.message_from_bytes(received.replace(b"\r\n", b"\n"))
    parts = parsed.get_payload()
    assert len(parts) == 2
    assert parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
    assert parts[0].get_payload(decode=True).decode("utf-8") == text.rstrip("\n")
    assert parts[1].get_payload() == "plain ASCII"


def test_8bit_header_to_7bit_server_bounces(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "plain")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test", subject="Gr\u00fc\u00dfe")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*dsn=5\.6\.3, status=bounced \(message has "
                               r"8-bit header content, but the host does not offer 8BITMIME\)", timeout=20)
    assert len(sender.wait_for_messages(SENDER, 1, timeout=15)) == 1


def test_utf8_address_needs_smtputf8(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "normal")
    sender = sender_host(make_mailhost, net)

    send(sender, "j\u00f6rg@example.test")

    assert sender.wait_for_log(r"dsn=5\.6\.7, status=bounced \(SMTPUTF8 is required, but was not offered",
                               timeout=20)


def test_size_limit_of_server_bounces(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "small")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test", "y" * 1000 + "\n")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*dsn=5\.3\.4, status=bounced \(message size \d+ "
                               r"exceeds the limit of 300", timeout=20)


def test_busy_greeting_defers(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "busy")
    sender = sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*dsn=4\.0\.0, status=deferred \(host "
                               r"mx1\.example\.test\[198\.51\.100\.25\]:25 refused to talk to me: 421 4\.3\.2 ",
                               timeout=20)
    ids, _ = queued_ids(sender)
    assert len(ids) == 1


def test_failed_handshake_falls_back_to_plaintext(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "badtls")
    sender = sender_host(make_mailhost, net, smtp_tls_security_level="may")

    send(sender, "alice@example.test")

    assert sender.wait_for_log(r"TLS handshake with mx1\.example\.test\[198\.51\.100\.25\]:25 failed: .*; "
                               r"trying mx1\.example\.test\[198\.51\.100\.25\]:25 again without TLS", timeout=20)
    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=sent \(250 2\.0\.0 Ok", timeout=20)
    commands = (tmp_path / "received.commands").read_bytes().split(b"\r\n")
    assert commands.count(b"STARTTLS") == 1


def test_failed_handshake_defers_when_tls_required(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "badtls")
    sender = sender_host(make_mailhost, net, smtp_tls_security_level="encrypt")

    send(sender, "alice@example.test")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*dsn=4\.7\.5, status=deferred \(TLS handshake with "
                               r"mx1\.example\.test\[198\.51\.100\.25\]:25 failed", timeout=20)
    ids, _ = queued_ids(sender)
    assert len(ids) == 1


def test_rejected_message_leaves_connection_usable(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "plain")
    sender = sender_host(make_mailhost, net, smtp_destination_concurrency_limit="1")

    for subject in ("8-bit: \u00e9", "7-bit", "8-bit again: \u00fc", "7-bit again"):
        send(sender, "alice@example.test", subject=subject)

    # Bounces to the sender are logged with status=sent too, so only the
    # lines for alice count.
    outcome = "to=<alice@example.test>, relay=mx1.example.test[198.51.100.25]:25"
    deadline = time.monotonic() + 20
    while sender.log().count(outcome) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    log = sender.log()
    assert log.count("dsn=5.6.3, status=bounced") == 2
    assert log.count(outcome) == 4
    assert log.count("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as TEST)") == 2


def test_helo_when_ehlo_rejected(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "helo")
    sender = sender_host(make_mailhost, net, smtp_helo_name="out.sender.test")

    send(sender, "alice@example.test")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=sent \(250 2\.0\.0 Ok", timeout=20)
    commands = (tmp_path / "received.commands").read_bytes().split(b"\r\n")
    assert commands[:2] == [b"EHLO out.sender.test", b"HELO out.sender.test"]


def submit_smtputf8(net, host, recipient, header_value):
    """Send one message to HOST's smtpd from inside namespace a, with
    SMTPUTF8 on MAIL FROM, and a Subject of HEADER_VALUE."""
    message = "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nHello.\r\n" % (SENDER, recipient, header_value)
    smtp_peer.submit_with_smtplib(net, host, recipient, message, "SMTPUTF8")


def test_smtputf8_not_needed_is_dropped(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "normal")
    sender = sender_host(make_mailhost, net)

    submit_smtputf8(net, sender, "alice@example.test", "plain ASCII")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*status=sent \(250 2\.0\.0 Ok", timeout=20)
    commands = (tmp_path / "received.commands").read_bytes().split(b"\r\n")
    mail = [c for c in commands if c.startswith(b"MAIL FROM:")]
    assert len(mail) == 1
    assert b"SMTPUTF8" not in mail[0]


def test_smtputf8_header_needs_it(make_mailhost, net, tmp_path):
    start_peer(net, tmp_path, "normal")
    sender = sender_host(make_mailhost, net)

    submit_smtputf8(net, sender, "alice@example.test", "Gr\u00fc\u00dfe")

    assert sender.wait_for_log(r"to=<alice@example\.test>, .*dsn=5\.6\.7, status=bounced \(SMTPUTF8 is required",
                               timeout=20)


def test_crash_mid_delivery_keeps_message(make_mailhost, net, tmp_path):
    record = start_peer(net, tmp_path, "hang")
    sender = sender_host(make_mailhost, net, smtp_data_done_timeout="30s")

    send(sender, "alice@example.test")

    deadline = time.monotonic() + 20
    while (not record.exists() or b"--end--" not in record.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"--end--" in record.read_bytes()
    sender.kill("queued")
    sender.start("queued")

    ids, listing = queued_ids(sender)
    assert len(ids) == 1
    assert "alice@example.test" in listing
