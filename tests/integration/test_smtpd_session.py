"""smtpd session handling: greeting, EHLO, simple commands, bad command
lines, limits, timeouts and pipelining, driven by raw sockets, smtplib
and swaks against a running host."""

import socket
import subprocess
import time

import pytest


def wait_probe_closed(host):
    """Wait until the harness's readiness probe no longer counts as a session."""
    assert host.wait_for_log(r"disconnect from unknown\[127\.0\.0\.1\]")


def test_greeting_and_ehlo_keywords(mailhost):
    conn = mailhost.raw()
    code, text = conn.cmd("EHLO client.example.test")
    assert code == 250
    lines = text.split("\n")
    assert lines[0] == "mail.example.test"
    for keyword in ("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES",
                    "SMTPUTF8", "CHUNKING"):
        assert keyword in lines
    conn.close()


def test_greeting_names_host(mailhost):
    sock = socket.create_connection(("127.0.0.1", mailhost.smtp_port), timeout=10)
    greeting = sock.recv(1024)
    sock.close()
    assert greeting == b"220 mail.example.test ESMTP Estafeta\r\n"


def test_helo_then_mail(mailhost):
    conn = mailhost.raw()
    assert conn.cmd("HELO client.example.test") == (250, "mail.example.test")
    assert conn.cmd("MAIL FROM:<sender@example.net>")[0] == 250
    conn.close()


@pytest.mark.parametrize("line, expected", [
    ("NOOP", (250, "2.0.0 Ok")),
    ("RSET", (250, "2.0.0 Ok")),
    ("VRFY demo@example.test", (252, None)),
    ("EXPN staff", (502, None)),
    ("HELP", (214, None)),
    ("FROB", (500, "5.5.2 Error: command not recognized")),
    ("EHLO", (501, None)),
    ("HELO bad\x01name", (501, None)),
    ("VRFY", (501, None)),
])
def test_simple_commands(mailhost, line, expected):
    conn = mailhost.raw()
    conn.cmd("EHLO client.example.test")
    code, text = conn.cmd(line)
    assert code == expected[0]
    if expected[1] is not None:
        assert text == expected[1]
    if code == 252:
        assert text.startswith("2.5.2 ")
    if code == 502:
        assert text.startswith("5.5.1 ")
    if code == 501:
        assert text.startswith("5.5.4 ")
    assert conn.cmd("NOOP")[0] == 250
    conn.close()


def test_quit_closes(mailhost):
    conn = mailhost.raw()
    assert conn.cmd("QUIT") == (221, "2.0.0 Bye")
    assert conn.closed_by_server()


def test_mail_before_ehlo(mailhost):
    conn = mailhost.raw()
    code, text = conn.cmd("MAIL FROM:<sender@example.net>")
    assert code == 503
    assert text.startswith("5.5.1 ")
    conn.close()


def test_nul_in_command(mailhost):
    conn = mailhost.raw()
    code, text = conn.cmd(b"NO\x00OP")
    assert code == 500
    assert text.startswith("5.5.2 ")
    assert conn.cmd("NOOP")[0] == 250
    conn.close()


def test_overlong_command_line(mailhost):
    conn = mailhost.raw()
    conn.cmd("EHLO client.example.test")
    code, text = conn.cmd("NOOP " + "x" * 10000)
    assert code == 500
    assert text.startswith("5.5.6 ")
    assert conn.cmd("NOOP") == (250, "2.0.0 Ok")
    conn.close()


def test_overlong_line_in_pieces(mailhost):
    conn = mailhost.raw()
    for _ in range(5):
        conn.send(b"x" * 3000)
        time.sleep(0.05)
    code, text = conn.cmd("")
    assert code == 500
    assert text.startswith("5.5.6 ")
    assert conn.cmd("NOOP") == (250, "2.0.0 Ok")
    conn.close()


def test_line_at_limit_accepted(make_mailhost):
    host = make_mailhost(smtpd_line_length_limit=600)
    conn = host.raw()
    # 598 bytes plus CRLF is 600, the limit.
    assert conn.cmd("NOOP " + "x" * 593)[0] == 250
    assert conn.cmd("NOOP " + "x" * 594)[0] == 500
    conn.close()


def test_bare_lf_ends_command(mailhost):
    conn = mailhost.raw()
    conn.send(b"EHLO client.example.test\nNOOP\n")
    assert conn.reply()[0] == 250
    assert conn.reply() == (250, "2.0.0 Ok")
    conn.close()


def test_hard_error_limit(make_mailhost):
    host = make_mailhost(smtpd_hard_error_limit=3)
    conn = host.raw()
    assert conn.cmd("FROB")[0] == 500
    assert conn.cmd("FROB")[0] == 500
    assert conn.cmd("FROB")[0] == 500
    code, text = conn.reply()
    assert code == 421
    assert text.startswith("4.7.0 ")
    assert conn.closed_by_server()


def test_command_timeout(make_mailhost):
    host = make_mailhost(smtpd_timeout="2s")
    conn = host.raw()
    started = time.monotonic()
    code, text = conn.reply()
    assert code == 421
    assert text.startswith("4.4.2 ")
    assert time.monotonic() - started < 10
    assert conn.closed_by_server()
    assert host.wait_for_log(r"timeout after CONNECT from unknown\[127\.0\.0\.1\]")


def test_connection_limit_per_client(make_mailhost):
    host = make_mailhost(smtpd_client_connection_limit=2)
    wait_probe_closed(host)
    first = host.raw()
    second = host.raw()
    sock = socket.create_connection(("127.0.0.1", host.smtp_port), timeout=10)
    reply = sock.recv(1024)
    assert reply.startswith(b"421 4.7.0 ")
    assert sock.recv(1024) == b""
    sock.close()

    # Another client address has its own count.
    other = host.raw(source="127.0.0.2")
    assert other.cmd("NOOP")[0] == 250
    other.close()

    # A closed session frees its slot.
    first.cmd("QUIT")
    first.close()
    assert host.wait_for_log(r"disconnect from unknown\[127\.0\.0\.1\].*quit=1")
    third = host.raw()
    assert third.cmd("NOOP")[0] == 250
    third.close()
    second.close()


def test_total_connection_limit(make_mailhost):
    host = make_mailhost(smtpd_max_connections=1)
    wait_probe_closed(host)
    first = host.raw()
    sock = socket.create_connection(("127.0.0.1", host.smtp_port), timeout=10)
    assert sock.recv(1024).startswith(b"421 4.3.2 ")
    sock.close()
    first.close()


def test_pipelined_transaction(mailhost):
    conn = mailhost.raw()
    conn.cmd("EHLO client.example.test")
    conn.send(b"MAIL FROM:<sender@example.net>\r\n"
              b"RCPT TO:<demo@example.test>\r\n"
              b"RCPT TO:<nobody@example.test>\r\n"
              b"RCPT TO:<alice@example.test>\r\n"
              b"DATA\r\n")
    assert conn.reply()[0] == 250
    assert conn.reply()[0] == 250
    code, text = conn.reply()
    assert code == 550
    assert text.startswith("5.1.1 ")
    assert conn.reply()[0] == 250
    assert conn.reply()[0] == 354
    conn.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    code, text = conn.reply()
    assert code == 250
    assert text.startswith("2.0.0 Ok: queued as ")
    assert conn.reply()[0] == 250
    assert conn.reply()[0] == 250
    assert conn.reply()[0] == 221
    assert conn.closed_by_server()
    assert len(mailhost.wait_for_messages("demo@example.test", 1)) == 1
    assert len(mailhost.wait_for_messages("alice@example.test", 1)) == 1


def test_pipelined_commands_one_packet(mailhost):
    conn = mailhost.raw()
    conn.send(b"EHLO client.example.test\r\nNOOP\r\nNOOP\r\nNOOP\r\n")
    assert conn.reply()[0] == 250
    for _ in range(3):
        assert conn.reply() == (250, "2.0.0 Ok")
    conn.close()


def test_swaks_pipeline(mailhost):
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % mailhost.smtp_port, "--pipeline",
         "--helo", "client.example.test", "--from", "sender@example.net",
         "--to", "demo@example.test", "--header", "Subject: swaks pipeline",
         "--body", "pipelined body"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    messages = mailhost.wait_for_messages("demo@example.test", 1)
    assert len(messages) == 1
    assert b"pipelined body" in messages[0]


def test_session_log_lines(mailhost):
    with mailhost.smtp() as client:
        client.sendmail("sender@example.net", ["demo@example.test"],
                        b"Subject: log\r\n\r\nbody\r\n")
    log = mailhost.wait_for_log(r"disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
    assert log
    text = mailhost.log()
    assert "connect from unknown[127.0.0.1]" in text
    assert mailhost.wait_for_log(r"[0-9A-Z]+: client=unknown\[127\.0\.0\.1\]")
    assert mailhost.wait_for_log(r"[0-9A-Z]+: from=<sender@example\.net>, size=\d+, nrcpt=1")


def test_sigterm_stops_smtpd(mailhost):
    conn = mailhost.raw()
    proc = mailhost.procs["smtpd"]
    mailhost.stop("smtpd")
    assert proc.returncode == 0
    assert conn.closed_by_server()
