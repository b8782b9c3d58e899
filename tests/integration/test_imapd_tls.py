"""imapd over TLS: STARTTLS on the IMAP port and implicit TLS on the
IMAPS port, driven by Python's imaplib, mbsync and openssl s_client.

Also covers the capabilities before and after TLS, certificates by SNI
and after a reload, rejected protocol versions, plaintext injected after
STARTTLS, broken handshakes, and the processes that serve a TLS session."""

import hashlib
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import (SANITIZED, TLS_OTHER_NAME, TLS_SERVER_NAME, make_certificate,
                      tls_client_context, tls_pki)

DEMO = "demo@example.test"
CLIENT_TIMEOUT = 60


@pytest.fixture
def tlshost(make_mailhost):
    host = make_mailhost(tls=True, auth_failure_delay=0)
    host.start("imapd")
    return host


def deliver(host, subject, body="Hello over TLS.\r\n"):
    before = len(host.messages(DEMO))
    with host.smtp() as client:
        client.sendmail("alice@example.org", [DEMO],
                        "From: Alice <alice@example.org>\r\nTo: Demo <%s>\r\n"
                        "Subject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n%s"
                        % (DEMO, subject, uuid.uuid4().hex, body))
    assert len(host.wait_for_messages(DEMO, before + 1)) == before + 1


def starttls_client(host):
    imap = imaplib.IMAP4("127.0.0.1", host.imap_port, timeout=30)
    typ, _ = imap.starttls(ssl_context=tls_client_context())
    assert typ == "OK"
    return imap


def imaps_client(host):
    return imaplib.IMAP4_SSL("127.0.0.1", host.imaps_port, timeout=30,
                             ssl_context=tls_client_context())


def fetch_subject(imap):
    typ, data = imap.select("INBOX")
    assert typ == "OK"
    typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    return data[0][1].decode().strip()


class TLSIMAP:
    """A byte-level IMAP client that can start TLS itself, for exact replies."""

    def __init__(self, port, implicit=False, server_name=TLS_SERVER_NAME):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""
        self.server_name = server_name
        if implicit:
            self.wrap()

    def wrap(self):
        """Run the TLS handshake. Plaintext still buffered here would be a test error."""
        assert self.buffer == b"", "plaintext left before the handshake: %r" % self.buffer
        self.sock = tls_client_context().wrap_socket(self.sock, server_hostname=self.server_name)

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
        lines = []
        for _ in range(10000):
            lines.append(self.line())
            if lines[-1].startswith(tag + " "):
                return lines
        raise AssertionError("no tagged reply for %s: %r" % (tag, lines[-5:]))

    def cmd(self, tag, text):
        self.send(("%s %s\r\n" % (tag, text)).encode())
        return self.until_tagged(tag)

    def close(self):
        self.sock.close()


def s_client(*args, stdin=b"", timeout=30):
    """Run openssl s_client against the test host and return (exit status, output).
    With input it sends CRLF line ends and reads until the server closes."""
    extra = ["-crlf", "-ign_eof"] if stdin else []
    result = subprocess.run(
        ["openssl", "s_client", "-CAfile", str(tls_pki() / "ca.pem"), *extra, *args],
        input=stdin, capture_output=True, timeout=timeout)
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace")


def served_subject(output):
    match = re.search(r"^subject=(.*)$", output, re.M)
    assert match, output
    return match.group(1)


def served_fingerprint(port, starttls=False, server_name=TLS_SERVER_NAME):
    """SHA-256 fingerprint of the certificate the server sends to a new connection."""
    args = ["-connect", "127.0.0.1:%d" % port, "-servername", server_name, "-showcerts"]
    if starttls:
        args += ["-starttls", "imap"]
    status, output = s_client(*args, stdin=b"")
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", output, re.S)
    assert pem, output
    der = ssl.PEM_cert_to_DER_cert(pem.group(0))
    return hashlib.sha256(der).hexdigest()


# Real clients


def test_starttls_imaplib_fetches(tlshost):
    deliver(tlshost, "over starttls")

    imap = starttls_client(tlshost)
    assert imap.login(DEMO, "demo")[0] == "OK"
    assert fetch_subject(imap) == "Subject: over starttls"
    assert imap.logout()[0] == "BYE"
    assert tlshost.wait_for_log(r"login: user=<demo@example\.test>, method=PLAIN, rip=127\.0\.0\.1, tls=yes")


def test_imaps_imaplib_fetches(tlshost):
    deliver(tlshost, "over imaps")

    imap = imaps_client(tlshost)
    assert imap.login(DEMO, "demo")[0] == "OK"
    assert fetch_subject(imap) == "Subject: over imaps"
    typ, data = imap.fetch("1", "(BODY[TEXT])")
    assert typ == "OK"
    assert data[0][1] == b"Hello over TLS.\r\n"
    assert imap.logout()[0] == "BYE"


def test_imaps_authenticate_plain(tlshost):
    imap = imaps_client(tlshost)
    typ, _ = imap.authenticate("PLAIN", lambda _: b"\0" + DEMO.encode() + b"\0demo")
    assert typ == "OK"
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()


def test_plain_login_logs_no_tls(tlshost):
    imap = tlshost.imap()
    assert imap.login(DEMO, "demo")[0] == "OK"
    imap.logout()
    assert tlshost.wait_for_log(r"login: user=<demo@example\.test>, method=PLAIN, rip=127\.0\.0\.1, tls=no")


def test_large_fetch_through_proxy(tlshost):
    body = "".join("line %05d of a long message through the TLS proxy\r\n" % i for i in range(20000))
    deliver(tlshost, "large", body=body)

    imap = imaps_client(tlshost)
    assert imap.login(DEMO, "demo")[0] == "OK"
    assert imap.select("INBOX")[0] == "OK"
    typ, data = imap.fetch("1", "(BODY[TEXT])")
    assert typ == "OK"
    assert data[0][1] == body.encode()
    imap.logout()


def test_idle_through_proxy(tlshost):
    conn = TLSIMAP(tlshost.imaps_port, implicit=True)
    conn.line()
    assert conn.cmd("a1", "LOGIN %s demo" % DEMO)[-1].startswith("a1 OK")
    assert conn.cmd("a2", "SELECT INBOX")[-1].startswith("a2 OK")

    conn.send(b"a3 IDLE\r\n")
    assert conn.line() == "+ idling"
    deliver(tlshost, "during idle")
    assert conn.line() == "* 1 EXISTS"
    conn.send(b"DONE\r\n")
    assert conn.until_tagged("a3")[-1] == "a3 OK Idle completed."
    conn.close()


def wait_for_no_children(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not children_of(pid):
            return True
        time.sleep(0.05)
    return False


def test_client_gone_ends_both_processes(tlshost):
    conn = TLSIMAP(tlshost.imaps_port, implicit=True)
    conn.line()
    assert conn.cmd("a1", "LOGIN %s demo" % DEMO)[-1].startswith("a1 OK")
    master = tlshost.procs["imapd"].pid
    assert len(children_of(master)) == 2

    # Python's SSLSocket.close sends no close_notify: this is a client that crashed.
    conn.sock.close()

    assert wait_for_no_children(master)
    assert tlshost.wait_for_log(r"TLS proxy finished")
    assert_still_serving(tlshost)


def test_commands_pipelined_after_tls_login(tlshost):
    deliver(tlshost, "pipelined")
    conn = TLSIMAP(tlshost.imaps_port, implicit=True)
    conn.line()

    conn.send(b"a1 LOGIN demo@example.test demo\r\na2 SELECT INBOX\r\n"
              b"a3 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\na4 LOGOUT\r\n")

    assert conn.until_tagged("a1")[-1].startswith("a1 OK")
    assert conn.until_tagged("a2")[-1].startswith("a2 OK [READ-WRITE]")
    fetch = conn.until_tagged("a3")
    assert fetch[-1] == "a3 OK Fetch completed."
    assert "Subject: pipelined" in fetch
    assert conn.until_tagged("a4")[-1] == "a4 OK Logout completed."
    conn.close()


def test_large_append_through_proxy(tlshost):
    body = b"".join(b"appended line %05d through the TLS proxy\r\n" % i for i in range(30000))
    message = b"From: demo@example.test\r\nSubject: appended\r\n\r\n" + body

    imap = imaps_client(tlshost)
    assert imap.login(DEMO, "demo")[0] == "OK"
    typ, _ = imap.append("INBOX", None, None, message)
    assert typ == "OK"
    assert imap.select("INBOX")[0] == "OK"
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK"
    assert data[0][1] == message
    imap.logout()


def test_tls_session_counts_once(make_mailhost):
    host = make_mailhost(tls=True, imapd_max_connections=2)
    host.start("imapd")
    first = imaps_client(host)
    assert first.login(DEMO, "demo")[0] == "OK"

    # The logged-in session has a proxy and a mail process, but is one connection.
    second = TLSIMAP(host.imaps_port, implicit=True)
    assert second.line().startswith("* OK [CAPABILITY")
    third = socket.create_connection(("127.0.0.1", host.imaps_port), timeout=15)
    assert third.recv(4096) == b"* BYE Too many connections, try again later\r\n"
    third.close()
    second.close()
    assert first.noop()[0] == "OK"
    first.logout()


def test_stop_ends_tls_sessions(tlshost):
    imap = imaps_client(tlshost)
    assert imap.login(DEMO, "demo")[0] == "OK"
    master = tlshost.procs["imapd"].pid
    assert len(children_of(master)) == 2
    children = children_of(master)

    tlshost.stop("imapd")

    for pid in children:
        assert wait_for_exit(pid), "process %d still running" % pid
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        imap.noop()


def wait_for_exit(pid, timeout=10):
    """Wait until PID is gone or a zombie (its parent, the master, has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def write_mbsyncrc(host, local, port, tls_type):
    # isync 1.4 matches the host name against DNS names only, never the
    # IP address 127.0.0.1 it connects to. A certificate listed in
    # CertificateFile is trusted as it is, so the file has the test CA
    # and the server's certificate.
    trusted = host.dir / "mbsync-trusted.pem"
    trusted.write_text((tls_pki() / "ca.pem").read_text() + (tls_pki() / "server.pem").read_text())
    path = host.dir / ("mbsyncrc-" + tls_type)
    path.write_text(
        "IMAPAccount estafeta\n"
        "Host %s\nPort %d\nUser %s\nPass demo\n"
        "SSLType %s\nSSLVersions TLSv1.2 TLSv1.3\nCertificateFile %s\nAuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount estafeta\n\n"
        "MaildirStore local\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
        "Channel demo\nFar :remote:\nNear :local:\nPatterns INBOX\n"
        "Create Both\nSyncState *\nSync All\nExpunge None\n"
        % ("127.0.0.1", port, DEMO, tls_type, trusted, local, local))
    return path


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
@pytest.mark.parametrize("tls_type", ["IMAPS", "STARTTLS"])
def test_mbsync_syncs_over_tls(tlshost, tls_type):
    deliver(tlshost, "for mbsync over " + tls_type)
    local = tlshost.dir / ("local-" + tls_type)
    local.mkdir()
    port = tlshost.imaps_port if tls_type == "IMAPS" else tlshost.imap_port
    config = write_mbsyncrc(tlshost, local, port, tls_type)

    result = subprocess.run(["mbsync", "-c", str(config), "demo"],
                            capture_output=True, timeout=CLIENT_TIMEOUT)

    assert result.returncode == 0, result.stdout + result.stderr
    files = [p for sub in ("new", "cur") for p in (local / "INBOX" / sub).iterdir()]
    assert len(files) == 1
    assert b"Subject: for mbsync over " + tls_type.encode() in files[0].read_bytes()
    assert tlshost.wait_for_log(r"login: user=<demo@example\.test>, method=PLAIN, rip=127\.0\.0\.1, tls=yes")


def gsasl(host, mechanism, password="demo", *extra):
    """Log in with GNU SASL's command-line client over STARTTLS: an
    implementation of SCRAM and channel binding independent of authd's."""
    result = subprocess.run(
        ["gsasl", "--imap", "--connect=127.0.0.1:%d" % host.imap_port, "--starttls",
         "--x509-ca-file=" + str(tls_pki() / "ca.pem"), "--hostname=" + TLS_SERVER_NAME,
         "--mechanism=" + mechanism, "--authentication-id=" + DEMO, "--password=" + password,
         *extra],
        input=b"", capture_output=True, timeout=CLIENT_TIMEOUT)
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace")


@pytest.mark.skipif(shutil.which("gsasl") is None, reason="gsasl not installed")
def test_gsasl_scram_plus_over_starttls(tlshost):
    status, output = gsasl(tlshost, "SCRAM-SHA-256-PLUS")

    assert status == 0, output
    assert ". OK [CAPABILITY IMAP4rev1" in output
    assert tlshost.wait_for_log(r"login: user=<demo@example\.test>, method=SCRAM-SHA-256-PLUS, "
                                r"rip=127\.0\.0\.1, tls=yes")


@pytest.mark.skipif(shutil.which("gsasl") is None, reason="gsasl not installed")
def test_gsasl_scram_without_channel_binding(tlshost):
    status, output = gsasl(tlshost, "SCRAM-SHA-256", "demo", "--no-cb")

    assert status == 0, output
    assert tlshost.wait_for_log(r"login: user=<demo@example\.test>, method=SCRAM-SHA-256, "
                                r"rip=127\.0\.0\.1, tls=yes")


@pytest.mark.skipif(shutil.which("gsasl") is None, reason="gsasl not installed")
def test_gsasl_scram_plus_wrong_password(tlshost):
    status, output = gsasl(tlshost, "SCRAM-SHA-256-PLUS", "not-the-password")

    assert status != 0, output
    assert "NO [AUTHENTICATIONFAILED] Authentication failed." in output
    assert tlshost.wait_for_log(r"login failed: user=<>, method=SCRAM-SHA-256-PLUS, "
                                r"rip=127\.0\.0\.1, tls=yes")


def test_scram_plus_needs_tls(tlshost):
    conn = TLSIMAP(tlshost.imap_port)
    greeting = conn.line()
    assert "AUTH=SCRAM-SHA-256]" in greeting
    assert "AUTH=SCRAM-SHA-256-PLUS" not in greeting

    assert conn.cmd("a1", "AUTHENTICATE SCRAM-SHA-256-PLUS") == \
        ["a1 NO [PRIVACYREQUIRED] Channel binding needs TLS: use STARTTLS first"]
    assert conn.cmd("a2", "AUTHENTICATE CRAM-MD5") == ["a2 NO Unsupported authentication mechanism"]

    assert conn.cmd("a3", "STARTTLS") == ["a3 OK Begin TLS negotiation now"]
    conn.wrap()
    capability = conn.cmd("a4", "CAPABILITY")[0].split()
    assert "AUTH=SCRAM-SHA-256" in capability
    assert "AUTH=SCRAM-SHA-256-PLUS" in capability
    conn.close()


@pytest.mark.skipif(shutil.which("mutt") is None, reason="mutt not installed")
@pytest.mark.parametrize("scheme,starttls", [("imaps", "no"), ("imap", "yes")])
def test_mutt_reads_over_tls(tlshost, scheme, starttls):
    from test_imapd_mutt import run_on_pty
    deliver(tlshost, "mutt over " + scheme)
    port = tlshost.imaps_port if scheme == "imaps" else tlshost.imap_port
    muttrc = tlshost.dir / ("muttrc-" + scheme)
    muttrc.write_text(
        'set folder="%s://demo%%40example.test@127.0.0.1:%d/"\n'
        'set imap_pass="demo"\nset spoolfile="+INBOX"\n'
        'set certificate_file="%s"\n'
        "set ssl_force_tls=yes\nset ssl_starttls=%s\n"
        'set header_cache=""\nset message_cachedir=""\n'
        % (scheme, port, tls_pki() / "ca.pem", starttls))

    status, output = run_on_pty(["mutt", "-n", "-F", str(muttrc), "-f", "+INBOX",
                                 "-e", 'push "<quit>"'])

    assert status == 0, output[-2000:]
    assert b"mutt over " + scheme.encode() in output
    assert tlshost.wait_for_log(r"login: user=<demo@example\.test>, method=\S+, rip=127\.0\.0\.1, tls=yes")


# Capabilities and STARTTLS replies


def test_capabilities_before_and_after_starttls(make_mailhost):
    host = make_mailhost(tls=True, imapd_plaintext_auth="never")
    host.start("imapd")
    conn = TLSIMAP(host.imap_port)

    greeting = conn.line()
    assert " STARTTLS" in greeting
    assert " LOGINDISABLED" in greeting
    assert "AUTH=PLAIN" not in greeting
    assert conn.cmd("a1", "LOGIN %s demo" % DEMO)[-1] == \
        "a1 NO [PRIVACYREQUIRED] Plaintext authentication is not allowed on this connection"
    assert conn.cmd("a2", "AUTHENTICATE PLAIN")[-1] == \
        "a2 NO [PRIVACYREQUIRED] Plaintext authentication is not allowed on this connection"

    assert conn.cmd("a3", "STARTTLS") == ["a3 OK Begin TLS negotiation now"]
    conn.wrap()
    capability = conn.cmd("a4", "CAPABILITY")
    assert capability[-1] == "a4 OK Capability completed."
    assert "AUTH=PLAIN" in capability[0]
    assert "AUTH=LOGIN" in capability[0]
    assert "LOGINDISABLED" not in capability[0]
    assert "STARTTLS" not in capability[0]

    assert conn.cmd("a5", "STARTTLS") == ["a5 BAD TLS is already active"]
    assert conn.cmd("a6", "LOGIN %s demo" % DEMO)[-1].startswith("a6 OK")
    assert conn.cmd("a7", "SELECT INBOX")[-1].startswith("a7 OK")
    conn.close()


def test_imaps_greeting_has_no_starttls(tlshost):
    conn = TLSIMAP(tlshost.imaps_port, implicit=True)
    greeting = conn.line()
    assert greeting.startswith("* OK [CAPABILITY IMAP4rev1 ")
    assert "STARTTLS" not in greeting
    assert "AUTH=PLAIN" in greeting
    assert conn.cmd("a1", "STARTTLS") == ["a1 BAD TLS is already active"]
    conn.close()


def test_starttls_with_arguments_bad(tlshost):
    conn = TLSIMAP(tlshost.imap_port)
    conn.line()
    assert conn.cmd("a1", "STARTTLS now") == ["a1 BAD Unexpected arguments: expected STARTTLS alone"]
    assert conn.cmd("a2", "NOOP") == ["a2 OK NOOP completed."]
    conn.close()


def test_starttls_without_certificate_bad(make_mailhost):
    host = make_mailhost()
    host.start("imapd")
    conn = TLSIMAP(host.imap_port)
    greeting = conn.line()
    assert "STARTTLS" not in greeting
    assert conn.cmd("a1", "STARTTLS") == ["a1 BAD STARTTLS is not available: no certificate configured"]
    conn.close()


def test_imaps_listen_without_certificate_fails(make_mailhost):
    host = make_mailhost(imapd_imaps_listen="127.0.0.1:%d" % 1)
    with pytest.raises(RuntimeError, match="imapd_imaps_listen is set but tls_cert_file is not"):
        host.start("imapd")


# Plaintext injected after STARTTLS


def test_command_injected_after_starttls_not_executed(tlshost):
    conn = TLSIMAP(tlshost.imap_port)
    conn.line()

    conn.send(b"a1 STARTTLS\r\nx1 CAPABILITY\r\n")
    assert conn.until_tagged("a1") == ["a1 OK Begin TLS negotiation now"]
    conn.wrap()
    lines = conn.cmd("a2", "NOOP")

    assert lines == ["a2 OK NOOP completed."]
    assert tlshost.wait_for_log(r"discarded 15 bytes sent after STARTTLS before the TLS handshake")
    conn.close()


def test_login_injected_after_starttls_not_executed(tlshost):
    conn = TLSIMAP(tlshost.imap_port)
    conn.line()

    conn.send(b"a1 STARTTLS\r\nx1 LOGIN demo@example.test demo\r\n")
    assert conn.until_tagged("a1") == ["a1 OK Begin TLS negotiation now"]
    conn.wrap()

    # Still not authenticated: the injected LOGIN never ran.
    assert conn.cmd("a2", "SELECT INBOX") == ["a2 BAD Unknown command, or not allowed before login"]
    assert "login: user=" not in tlshost.log()
    conn.close()


# Certificates: SNI, reload, protocol versions


def test_s_client_starttls_certificate_per_sni(tlshost):
    for name, expected in ((TLS_SERVER_NAME, "CN = " + TLS_SERVER_NAME),
                           (TLS_OTHER_NAME, "CN = " + TLS_OTHER_NAME)):
        status, output = s_client("-connect", "127.0.0.1:%d" % tlshost.imap_port,
                                  "-starttls", "imap", "-servername", name,
                                  "-verify_return_error", stdin=b"a1 LOGOUT\n")
        assert status == 0, output
        assert served_subject(output) == expected
        assert "Verify return code: 0 (ok)" in output
        assert "* BYE Logging out" in output


def test_s_client_imaps_certificate_per_sni(tlshost):
    for name, expected in ((TLS_SERVER_NAME, "CN = " + TLS_SERVER_NAME),
                           (TLS_OTHER_NAME, "CN = " + TLS_OTHER_NAME)):
        status, output = s_client("-connect", "127.0.0.1:%d" % tlshost.imaps_port,
                                  "-servername", name, "-verify_return_error",
                                  stdin=b"a1 LOGOUT\n")
        assert status == 0, output
        assert served_subject(output) == expected
        assert "* OK [CAPABILITY IMAP4rev1" in output


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_refused(tlshost, version):
    status, output = s_client("-connect", "127.0.0.1:%d" % tlshost.imaps_port,
                              "-servername", TLS_SERVER_NAME, version,
                              "-cipher", "DEFAULT@SECLEVEL=0", stdin=b"a1 LOGOUT\n")
    assert status != 0, output
    assert "* OK" not in output
    assert tlshost.wait_for_log(r"TLS handshake failed: rip=127\.0\.0\.1, .*(unsupported protocol|version)")

    # STARTTLS on the IMAP port refuses them too.
    status, output = s_client("-connect", "127.0.0.1:%d" % tlshost.imap_port, "-starttls", "imap",
                              "-servername", TLS_SERVER_NAME, version,
                              "-cipher", "DEFAULT@SECLEVEL=0", stdin=b"a1 LOGOUT\n")
    assert status != 0, output
    assert "* BYE Logging out" not in output


@pytest.mark.parametrize("version,name", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_current_tls_versions_accepted(tlshost, version, name):
    status, output = s_client("-connect", "127.0.0.1:%d" % tlshost.imaps_port,
                              "-servername", TLS_SERVER_NAME, version, stdin=b"a1 LOGOUT\n")
    assert status == 0, output
    assert "Protocol  : %s" % name in output or "New, %s" % name in output
    assert "* BYE Logging out" in output


def replace_server_certificate(host):
    """Write a new certificate and key for mail.example.test over the files
    the host uses; returns the new certificate's SHA-256 fingerprint."""
    fresh = host.dir / "fresh"
    fresh.mkdir()
    cert, key = make_certificate(fresh, "server", [TLS_SERVER_NAME, "localhost", "127.0.0.1"], tls_pki())
    tls_dir = host.dir / "etc" / "tls"
    shutil.copy2(cert, tls_dir / "server.pem.new")
    shutil.copy2(key, tls_dir / "server.key.new")
    os.rename(tls_dir / "server.key.new", tls_dir / "server.key")
    os.rename(tls_dir / "server.pem.new", tls_dir / "server.pem")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest()


def test_sighup_serves_new_certificate_and_keeps_sessions(tlshost):
    deliver(tlshost, "before the reload")
    old_imaps = served_fingerprint(tlshost.imaps_port)
    assert served_fingerprint(tlshost.imap_port, starttls=True) == old_imaps
    imaps = imaps_client(tlshost)
    assert imaps.login(DEMO, "demo")[0] == "OK"
    assert fetch_subject(imaps) == "Subject: before the reload"
    pending = TLSIMAP(tlshost.imap_port)
    pending.line()
    assert pending.cmd("p1", "STARTTLS") == ["p1 OK Begin TLS negotiation now"]
    pending.wrap()

    new = replace_server_certificate(tlshost)
    assert new != old_imaps
    tlshost.procs["imapd"].send_signal(signal.SIGHUP)
    assert tlshost.wait_for_log(r"received SIGHUP: TLS certificates reloaded for new connections")

    assert served_fingerprint(tlshost.imaps_port) == new
    assert served_fingerprint(tlshost.imap_port, starttls=True) == new
    # The sessions opened before the reload go on.
    assert imaps.noop()[0] == "OK"
    assert fetch_subject(imaps) == "Subject: before the reload"
    assert imaps.logout()[0] == "BYE"
    assert pending.cmd("p2", "LOGIN %s demo" % DEMO)[-1].startswith("p2 OK")
    assert pending.cmd("p3", "NOOP")[-1] == "p3 OK NOOP completed."
    pending.close()


def test_sighup_with_broken_certificate_keeps_old(tlshost):
    old = served_fingerprint(tlshost.imaps_port)
    (tlshost.dir / "etc" / "tls" / "server.pem").write_text("not a certificate\n")

    tlshost.procs["imapd"].send_signal(signal.SIGHUP)
    assert tlshost.wait_for_log(r"imapd.*(reload|load).*(fail|invalid|cannot|error)", timeout=10)

    assert served_fingerprint(tlshost.imaps_port) == old
    imap = imaps_client(tlshost)
    assert imap.login(DEMO, "demo")[0] == "OK"
    imap.logout()


# Broken handshakes


def assert_still_serving(host):
    imap = imaps_client(host)
    assert imap.login(DEMO, "demo")[0] == "OK"
    assert imap.logout()[0] == "BYE"
    assert host.procs["imapd"].poll() is None


def test_garbage_instead_of_client_hello(tlshost):
    sock = socket.create_connection(("127.0.0.1", tlshost.imaps_port), timeout=15)
    sock.sendall(b"a1 LOGIN demo@example.test demo\r\n" + os.urandom(200))
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        data = b""
    # A TLS alert or nothing at all: never an IMAP reply.
    assert b"OK" not in data
    assert b"* " not in data
    sock.close()
    assert tlshost.wait_for_log(r"TLS handshake failed: rip=127\.0\.0\.1")
    assert_still_serving(tlshost)


def test_garbage_after_starttls(tlshost):
    conn = TLSIMAP(tlshost.imap_port)
    conn.line()
    assert conn.cmd("a1", "STARTTLS") == ["a1 OK Begin TLS negotiation now"]
    conn.send(b"\x16\x03\x01\x00\x05hello" + b"a2 NOOP\r\n")
    conn.sock.settimeout(10)
    data = conn.sock.recv(4096)
    assert b"a2 OK" not in data
    conn.close()
    assert tlshost.wait_for_log(r"TLS handshake failed: rip=127\.0\.0\.1")
    assert_still_serving(tlshost)


def test_disconnect_mid_handshake(tlshost):
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", tlshost.imaps_port), timeout=15)
        # The first bytes of a ClientHello record, then gone.
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        sock.close()
    assert tlshost.wait_for_log(r"TLS handshake failed: rip=127\.0\.0\.1, connection closed by the client")
    assert_still_serving(tlshost)


def test_silent_client_times_out_in_handshake(make_mailhost):
    host = make_mailhost(tls=True, imapd_login_timeout=2)
    host.start("imapd")
    sock = socket.create_connection(("127.0.0.1", host.imaps_port), timeout=15)

    assert sock.recv(4096) == b""
    assert host.wait_for_log(r"TLS handshake failed: rip=127\.0\.0\.1, timed out")
    sock.close()
    assert_still_serving(host)


# Processes after a login over TLS


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def status_field(pid, name):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].split()
    raise AssertionError("no %s in /proc/%d/status" % (name, pid))


def listening_socket_inodes():
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[3] == "0A":  # TCP_LISTEN
                        inodes.add(fields[9])
        except FileNotFoundError:
            pass
    return inodes


def socket_inodes(pid):
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        match = re.match(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    return inodes


def open_files(pid):
    paths = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            paths.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return paths


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation needs root")
def test_tls_session_processes(tlshost):
    imap = imaps_client(tlshost)
    assert imap.login(DEMO, "demo")[0] == "OK"
    assert imap.select("INBOX")[0] == "OK"
    master = tlshost.procs["imapd"].pid

    children = children_of(master)
    assert len(children) == 2, children
    login_uid = pwd.getpwnam("_estafeta").pw_uid         # smtpd_user's default
    mail_uid = pwd.getpwnam("_estafeta-vmail").pw_uid    # virtual_mail_user's default
    by_uid = {int(status_field(pid, "Uid")[0]): pid for pid in children}
    assert sorted(by_uid) == sorted([login_uid, mail_uid]), by_uid
    for pid in children:
        uids = status_field(pid, "Uid")
        assert len(set(uids)) == 1, uids  # real, effective, saved and file system uid
        assert status_field(pid, "CapEff")[0] == "0000000000000000"

    listening = listening_socket_inodes()
    for pid in children:
        assert not (socket_inodes(pid) & listening), "pid %d has a listening socket" % pid
        files = open_files(pid)
        assert not any(p.endswith((".key", ".pem")) for p in files), files
        # The master's event loop (epoll instance, signal pipe) stays with the master.
        assert not any(p.startswith(("anon_inode:[eventpoll]", "pipe:")) for p in files), files
    assert len(socket_inodes(by_uid[login_uid])) == 2  # the client and the mail process

    # Only the login process has the TCP connection. The mail process
    # gets a socket pair.
    with open("/proc/net/tcp") as lines:
        next(lines)
        tcp_inodes = {line.split()[9] for line in lines}
    assert socket_inodes(by_uid[login_uid]) & tcp_inodes
    assert not socket_inodes(by_uid[mail_uid]) & tcp_inodes
    assert imap.noop()[0] == "OK"
    imap.logout()


def private_key_patterns(key_file):
    """Byte strings that betray KEY_FILE's EC private key in a process's
    memory: the scalar in either byte order (OpenSSL's BIGNUM keeps it in
    little-endian words on x86-64) and the start of the PEM text."""
    text = subprocess.run(["openssl", "pkey", "-in", str(key_file), "-text", "-noout"],
                          capture_output=True, text=True, check=True).stdout
    match = re.search(r"priv:\s*\n((?:\s+[0-9a-f:]+\n)+)", text)
    assert match, text
    scalar = bytes.fromhex(re.sub(r"[\s:]", "", match.group(1)))[-32:]
    pem = "".join(line for line in Path(key_file).read_text().splitlines()
                  if not line.startswith("-----"))
    return [scalar, scalar[::-1], pem[:40].encode()]


def memory_contains(pid, patterns):
    """Whether any readable mapping of PID contains one of PATTERNS. Reads
    in chunks that overlap by the longest pattern."""
    chunk = 16 << 20
    overlap = max(len(pattern) for pattern in patterns)
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb") as memory:
        for line in maps:
            span, perms = line.split()[:2]
            if "r" not in perms:
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            for offset in range(start, end, chunk):
                try:
                    memory.seek(offset)
                    data = memory.read(min(chunk + overlap, end - offset))
                except (OSError, ValueError, OverflowError):
                    break
                if any(pattern in data for pattern in patterns):
                    return True
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")
@pytest.mark.skipif(SANITIZED, reason="AddressSanitizer's shadow memory is too large to scan")
@pytest.mark.parametrize("transport", ["imaps", "plain"])
def test_mail_process_has_no_private_key(tlshost, transport):
    imap = imaps_client(tlshost) if transport == "imaps" else tlshost.imap()
    assert imap.login(DEMO, "demo")[0] == "OK"
    assert imap.select("INBOX")[0] == "OK"
    patterns = private_key_patterns(tlshost.dir / "etc" / "tls" / "server.key")
    login_uid = pwd.getpwnam("_estafeta").pw_uid
    by_uid = {int(status_field(pid, "Uid")[0]): pid
              for pid in children_of(tlshost.procs["imapd"].pid)}

    if transport == "imaps":
        # The login process serves TLS, so it must have the key: this shows the search works.
        assert memory_contains(by_uid.pop(login_uid), patterns)
    assert len(by_uid) == 1, by_uid
    assert login_uid not in by_uid
    assert not memory_contains(list(by_uid.values())[0], patterns)
    imap.logout()


# Login on an address outside loopback, in network namespaces


SERVER_ADDRESS = "198.51.100.25"
CLIENT_ADDRESS = "198.51.100.10"


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces():
    """(server namespace, client namespace) on one /24, removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    server, client = "est-isrv-" + tag, "est-icli-" + tag
    for name in (server, client):
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
    ip("link", "add", "eth0", "netns", server, "type", "veth", "peer", "name", "eth0", "netns", client)
    ip("-n", server, "addr", "add", SERVER_ADDRESS + "/24", "dev", "eth0")
    ip("-n", client, "addr", "add", CLIENT_ADDRESS + "/24", "dev", "eth0")
    ip("-n", server, "link", "set", "eth0", "up")
    ip("-n", client, "link", "set", "eth0", "up")
    yield server, client
    for name in (server, client):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


REMOTE_CLIENT = r"""
import imaplib, ssl, sys
ca, port = sys.argv[1], int(sys.argv[2])
imap = imaplib.IMAP4("198.51.100.25", port, timeout=15)
print("CAPS", " ".join(imap.capabilities))
for command in (lambda: imap.login("demo@example.test", "demo"),
                lambda: imap.authenticate("PLAIN", lambda _: b"\0demo@example.test\0demo")):
    try:
        command()
        print("ACCEPTED")
    except imaplib.IMAP4.error as error:
        print("REFUSED", error)
context = ssl.create_default_context(cafile=ca)
context.check_hostname = False
imap.starttls(ssl_context=context)
print("TLSCAPS", " ".join(imap.capabilities))
print("LOGIN", imap.login("demo@example.test", "demo")[0])
print("SELECT", imap.select("INBOX")[0])
imap.logout()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
@pytest.mark.skipif(not shutil.which("ip"), reason="iproute2 is not installed")
def test_plaintext_login_refused_off_loopback(make_mailhost, namespaces):
    server, client = namespaces
    host = make_mailhost(tls=True, netns=server, imapd_listen="%s:143" % SERVER_ADDRESS)
    host.start("imapd")
    script = host.dir / "remote_client.py"
    script.write_text(REMOTE_CLIENT)

    result = subprocess.run(
        ["ip", "netns", "exec", client, "/usr/bin/python3", str(script),
         str(tls_pki() / "ca.pem"), "143"],
        capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    caps = re.search(r"^CAPS (.*)$", output, re.M).group(1).split()
    assert "STARTTLS" in caps
    assert "LOGINDISABLED" in caps
    assert not [c for c in caps if c.startswith("AUTH=PLAIN") or c.startswith("AUTH=LOGIN")]
    assert output.count("REFUSED") == 2, output
    assert "PRIVACYREQUIRED" in output or "LOGINDISABLED" in output, output
    tls_caps = re.search(r"^TLSCAPS (.*)$", output, re.M).group(1).split()
    assert "AUTH=PLAIN" in tls_caps
    assert "LOGINDISABLED" not in tls_caps
    assert "LOGIN OK" in output
    assert "SELECT OK" in output
    assert host.wait_for_log(r"login: user=<demo@example\.test>, method=PLAIN, rip=198\.51\.100\.10, tls=yes")
