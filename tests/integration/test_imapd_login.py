"""imapd before login: greeting, capabilities, LOGIN and AUTHENTICATE
through authd, the login handoff to the mail process, and bad input."""

import base64
import imaplib
import os
import re
import socket
import time

import pytest


class RawIMAP:
    """A byte-level IMAP client for exact replies and malformed input."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by server; pending %r" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def until_tagged(self, tag):
        """Lines up to and including the tagged reply for TAG."""
        lines = []
        for _ in range(10000):
            line = self.line()
            lines.append(line)
            if line.startswith(tag + " "):
                return lines
        raise AssertionError("no tagged reply for %s: %r" % (tag, lines[-5:]))

    def cmd(self, tag, text):
        if isinstance(text, str):
            text = text.encode()
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.until_tagged(tag)

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def raw(host):
    conn = RawIMAP(host.imap_port)
    greeting = conn.line()
    assert greeting.startswith("* OK ["), greeting
    return conn


@pytest.fixture
def imaphost(make_mailhost):
    # authd delays failed logins; these tests fail many on purpose.
    host = make_mailhost(auth_failure_delay=0)
    host.start("imapd")
    return host


def test_greeting_capabilities(imaphost):
    conn = RawIMAP(imaphost.imap_port)
    greeting = conn.line()
    assert "IMAP4rev1" in greeting
    assert "AUTH=PLAIN" in greeting
    assert "LOGINDISABLED" not in greeting
    lines = conn.cmd("a1", "CAPABILITY")
    assert lines[0].startswith("* CAPABILITY IMAP4rev1 ")
    assert "SASL-IR" in lines[0]
    assert lines[-1] == "a1 OK Capability completed."


def test_login_and_logout(imaphost):
    imap = imaphost.imap()
    typ, data = imap.login("demo@example.test", "demo")
    assert typ == "OK"
    assert b"CAPABILITY" in data[0]
    assert b"UIDPLUS" in data[0]
    assert imap.logout()[0] == "BYE"


def test_login_wrong_password(imaphost):
    conn = raw(imaphost)
    lines = conn.cmd("a1", "LOGIN demo@example.test wrong")
    assert lines[-1] == "a1 NO [AUTHENTICATIONFAILED] Authentication failed."
    assert "demo@example.test" in imaphost.log()
    assert "wrong" not in imaphost.log()


def test_login_unknown_user(imaphost):
    conn = raw(imaphost)
    lines = conn.cmd("a1", "LOGIN nobody@example.test secret")
    assert lines[-1].startswith("a1 NO [AUTHENTICATIONFAILED]")


def test_login_with_literals(imaphost):
    conn = raw(imaphost)
    conn.send(b"a1 LOGIN {17}\r\n")
    assert conn.line().startswith("+ ")
    conn.send(b"demo@example.test {4+}\r\ndemo\r\n")
    lines = conn.until_tagged("a1")
    assert lines[-1].startswith("a1 OK [CAPABILITY ")


def test_authenticate_plain_with_initial_response(imaphost):
    conn = raw(imaphost)
    token = base64.b64encode(b"\0demo@example.test\0demo").decode()
    lines = conn.cmd("a1", "AUTHENTICATE PLAIN " + token)
    assert lines[-1].startswith("a1 OK [CAPABILITY ")


def test_authenticate_plain_with_challenge(imaphost):
    imap = imaphost.imap()
    typ, _ = imap.authenticate("PLAIN", lambda _: b"\0alice@example.test\0alice-secret")
    assert typ == "OK"
    assert imap.select("INBOX")[0] == "OK"


def test_authenticate_login(imaphost):
    conn = raw(imaphost)
    conn.send(b"a1 AUTHENTICATE LOGIN\r\n")
    assert conn.line().startswith("+ ")
    conn.send(base64.b64encode(b"bob@example.test") + b"\r\n")
    assert conn.line().startswith("+ ")
    conn.send(base64.b64encode(b"bob-secret") + b"\r\n")
    lines = conn.until_tagged("a1")
    assert lines[-1].startswith("a1 OK ")


def test_authenticate_cancel(imaphost):
    conn = raw(imaphost)
    conn.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert conn.line().startswith("+")
    conn.send(b"*\r\n")
    assert conn.until_tagged("a1")[-1] == "a1 BAD Authentication canceled"
    assert conn.cmd("a2", "NOOP")[-1] == "a2 OK NOOP completed."


def test_authenticate_unknown_mechanism(imaphost):
    conn = raw(imaphost)
    assert conn.cmd("a1", "AUTHENTICATE CRAM-MD5")[-1] == "a1 NO Unsupported authentication mechanism"


def test_authenticate_invalid_base64(imaphost):
    conn = raw(imaphost)
    assert conn.cmd("a1", "AUTHENTICATE PLAIN a!b")[-1] == "a1 BAD Invalid base64 initial response"


def test_plaintext_refused_when_disabled(make_mailhost):
    host = make_mailhost(imapd_plaintext_auth="never")
    host.start("imapd")
    conn = RawIMAP(host.imap_port)
    greeting = conn.line()
    assert "LOGINDISABLED" in greeting
    assert "AUTH=PLAIN" not in greeting
    lines = conn.cmd("a1", "LOGIN demo@example.test demo")
    assert lines[-1].startswith("a1 NO [PRIVACYREQUIRED]")
    lines = conn.cmd("a2", "AUTHENTICATE PLAIN")
    assert lines[-1].startswith("a2 NO [PRIVACYREQUIRED]")


def test_pipelined_command_after_login(imaphost):
    conn = raw(imaphost)
    conn.send(b"a1 LOGIN demo@example.test demo\r\na2 SELECT INBOX\r\n")
    assert conn.until_tagged("a1")[-1].startswith("a1 OK ")
    lines = conn.until_tagged("a2")
    assert "* 0 EXISTS" in lines
    assert lines[-1] == "a2 OK [READ-WRITE] Select completed."


def test_commands_before_login(imaphost):
    conn = raw(imaphost)
    assert conn.cmd("a1", "NOOP")[-1] == "a1 OK NOOP completed."
    lines = conn.cmd("a2", 'ID ("name" "pytest" "version" NIL)')
    assert lines[0] == '* ID ("name" "Estafeta")'
    for bad_id in ("ID", "ID (", 'ID ("name")', 'ID ("a" "b"', "ID NILX", "ID (name x)"):
        assert conn.cmd("i1", bad_id)[-1] == \
            "i1 BAD Invalid arguments: expected ID NIL or a parameter list", bad_id
    assert conn.cmd("a3", "SELECT INBOX")[-1] == "a3 BAD Unknown command, or not allowed before login"
    assert conn.cmd("a4", "STARTTLS")[-1] == "a4 BAD STARTTLS is not available: no certificate configured"
    lines = conn.cmd("a5", "LOGOUT")
    assert lines == ["* BYE Logging out", "a5 OK Logout completed."]
    assert conn.closed()


def test_bad_input_before_login(imaphost):
    conn = raw(imaphost)
    assert conn.cmd("a1", "")[-1] == "a1 BAD Missing or invalid command name"
    conn.send(b"+bad NOOP\r\n")
    assert conn.line() == "* BAD Invalid tag"
    assert conn.cmd("a2", "LOGIN onlyuser")[-1] == "a2 BAD Invalid arguments: expected LOGIN user password"
    conn.send(b"a3 LOGIN " + b"x" * 10000 + b"\r\n")
    assert conn.line() == "a3 BAD [TOOBIG] Command line too long"
    conn.send(b"a4 LOGIN {100000}\r\n")
    assert conn.line() == "a4 BAD [TOOBIG] Literal too big"
    conn.send(b"a5 LOGIN {99999999999}\r\n")
    assert conn.line() == "a5 BAD Invalid literal size"
    conn.send(b"a6 LOGIN {9000+}\r\n" + b"y" * 9000 + b" pass\r\n")
    assert conn.line() == "a6 BAD [TOOBIG] Literal too big"
    conn.send(b'a7 LOGIN "unterminated\r\n')
    assert conn.line().startswith("a7 BAD Invalid arguments")
    conn.send(b"a8 LOGIN demo\0x demo\r\n")
    assert conn.line().startswith("a8 BAD")
    assert conn.cmd("a9", "NOOP")[-1] == "a9 OK NOOP completed."


def test_too_many_failed_logins(imaphost):
    conn = raw(imaphost)
    for i in range(2):
        assert conn.cmd("a%d" % i, "LOGIN demo@example.test bad")[-1].startswith("a%d NO" % i)
    lines = conn.cmd("a9", "LOGIN demo@example.test bad")
    assert lines[-1].startswith("a9 NO [AUTHENTICATIONFAILED]")
    assert conn.line() == "* BYE Too many failed logins"
    assert conn.closed()


def process_uid(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation needs root")
def test_processes_run_unprivileged(imaphost):
    conn = raw(imaphost)
    assert imaphost.wait_for_log(r"session=2: connect from") is not None
    login_pid = int(re.findall(r"session=2: connect from .*, login process (\d+)", imaphost.log())[0])
    assert process_uid(login_pid) not in (None, 0)

    conn.cmd("a1", "LOGIN demo@example.test demo")
    mail = imaphost.wait_for_log(r"logged in, mail process (\d+)")
    assert mail is not None
    mail_uid = process_uid(int(mail.group(1)))
    assert mail_uid not in (None, 0)
    assert mail_uid == os.stat(imaphost.maildir("demo@example.test")).st_uid


def test_literals_limited_together(imaphost):
    conn = raw(imaphost)
    conn.send(b"a1 LOGIN {5000+}\r\n" + b"u" * 5000 + b" {5000+}\r\n" + b"p" * 5000 + b"\r\n")
    assert conn.line() == "a1 BAD [TOOBIG] Literal too big"
    assert conn.cmd("a2", "NOOP")[-1] == "a2 OK NOOP completed."


def test_login_timeout_covers_session(make_mailhost):
    host = make_mailhost(imapd_login_timeout="1s")
    host.start("imapd")
    conn = raw(host)
    started = time.monotonic()
    for i in range(20):
        conn.send(b"n%d NOOP\r\n" % i)
        line = conn.line()
        if line.startswith("* BYE"):
            break
        assert line == "n%d OK NOOP completed." % i
        time.sleep(0.2)
    # The deadline ends either a wait for input or the next command.
    assert line in ("* BYE Login timed out", "* BYE Disconnected for inactivity")
    assert time.monotonic() - started < 3
    assert conn.closed()


def test_authd_down_gives_unavailable(imaphost):
    imaphost.stop("authd")
    conn = raw(imaphost)
    lines = conn.cmd("a1", "LOGIN demo@example.test demo")
    assert lines[-1] == "a1 NO [UNAVAILABLE] Authentication service unavailable, try again later"
    assert conn.cmd("a2", "NOOP")[-1] == "a2 OK NOOP completed."


def test_connection_limit(make_mailhost):
    host = make_mailhost(imapd_max_connections=2)
    host.start("imapd")
    time.sleep(0.5)     # the readiness probe's login process exits first
    first, second = raw(host), raw(host)
    third = RawIMAP(host.imap_port)
    assert third.line() == "* BYE Too many connections, try again later"
    assert third.closed()
    first.cmd("a1", "LOGOUT")
    assert first.closed()
    time.sleep(0.5)
    fourth = raw(host)
    assert fourth.cmd("a1", "NOOP")[-1] == "a1 OK NOOP completed."
    second.close()


def test_bad_commands_end_session(imaphost):
    conn = raw(imaphost)
    assert conn.cmd("a1", "LOGIN demo@example.test demo")[-1].startswith("a1 OK")
    for i in range(19):
        assert conn.cmd("b%d" % i, "BOGUS")[-1] == "b%d BAD Unknown command" % i
    conn.send(b"c1 BOGUS\r\n")
    assert conn.line() == "c1 BAD Unknown command"
    assert conn.line() == "* BYE Too many invalid commands"
    assert conn.closed()


def test_long_pipeline_after_login(imaphost):
    conn = raw(imaphost)
    commands = b"".join(b"p%d NOOP\r\n" % i for i in range(1500))
    conn.send(b"a1 LOGIN demo@example.test demo\r\n" + commands)
    assert conn.until_tagged("a1")[-1].startswith("a1 OK ")
    for i in range(1500):
        assert conn.until_tagged("p%d" % i)[-1] == "p%d OK NOOP completed." % i
