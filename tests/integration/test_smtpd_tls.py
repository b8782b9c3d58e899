"""smtpd over TLS: STARTTLS on the plain listeners, implicit TLS on the
SMTPS listener, SNI certificates, reload on SIGHUP, and the rejected cases.

The clients are OpenSSL's s_client and Python's smtplib and ssl modules,
all trusting only the test CA from conftest.
"""

import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (TLS_OTHER_NAME, TLS_SERVER_NAME, is_root, make_certificate,
                      tls_client_context, tls_pki)

MESSAGE = (
    "From: demo@example.test\r\n"
    "To: demo@example.test\r\n"
    "Subject: over TLS\r\n"
    "\r\n"
    "Sent through an encrypted session.\r\n")


def s_client(args, data=b"EHLO client.example.test\r\nQUIT\r\n", timeout=20):
    """Run openssl s_client trusting the test CA; return the finished process."""
    command = ["openssl", "s_client", "-CAfile", str(tls_pki() / "ca.pem"),
               "-verify_return_error", "-ign_eof"] + args
    return subprocess.run(command, input=data, capture_output=True, timeout=timeout)


def login_if_offered(client):
    """Log in as demo on the submission listeners, which take mail only
    after AUTH once smtpd offers it there."""
    client.ehlo_or_helo_if_needed()
    if not client.has_extn("auth"):
        return False
    client.login("demo@example.test", "demo")
    return True


def peer_subject(result):
    """The subject line s_client printed for the server certificate."""
    for line in result.stdout.decode(errors="replace").splitlines():
        if line.startswith("subject="):
            return line
    return None


def certificate_serial(tls_socket):
    der = tls_socket.getpeercert(binary_form=True)
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
                          input=der, capture_output=True, check=True).stdout
    return text.decode().strip()


class TLSLineClient:
    """A byte-level SMTP client that can switch to TLS at a chosen point."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def readline(self):
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed; pending %r" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def start_tls(self, server_hostname=TLS_SERVER_NAME):
        assert self.buffer == b"", "plaintext left after the 220: %r" % self.buffer
        self.sock = tls_client_context().wrap_socket(self.sock, server_hostname=server_hostname)

    def close(self):
        self.sock.close()


@pytest.fixture
def tlshost(make_mailhost):
    return make_mailhost(tls=True)


def test_starttls_serves_default_certificate(tlshost):
    result = s_client(["-starttls", "smtp", "-connect", "127.0.0.1:%d" % tlshost.smtp_port,
                       "-servername", TLS_SERVER_NAME])
    output = result.stdout.decode(errors="replace")

    assert result.returncode == 0, result.stderr
    assert "CN = %s" % TLS_SERVER_NAME in peer_subject(result)
    assert "Verify return code: 0 (ok)" in output
    assert "250 CHUNKING" in output
    assert "221 2.0.0 Bye" in output


def test_starttls_on_submission_port(tlshost):
    result = s_client(["-starttls", "smtp", "-connect",
                       "127.0.0.1:%d" % tlshost.submission_port, "-servername", TLS_SERVER_NAME])

    assert result.returncode == 0, result.stderr
    assert "CN = %s" % TLS_SERVER_NAME in peer_subject(result)
    assert "250 CHUNKING" in result.stdout.decode(errors="replace")


def test_smtps_certificate_per_sni_name(tlshost):
    cases = [
        (TLS_SERVER_NAME, TLS_SERVER_NAME),
        (TLS_OTHER_NAME, TLS_OTHER_NAME),
        (TLS_OTHER_NAME.upper(), TLS_OTHER_NAME),
        ("unknown.example.test", TLS_SERVER_NAME),
    ]
    for sent, expected in cases:
        result = s_client(["-connect", "127.0.0.1:%d" % tlshost.smtps_port, "-servername", sent,
                           "-verify_hostname", expected])
        output = result.stdout.decode(errors="replace")

        assert result.returncode == 0, (sent, result.stderr)
        assert "CN = %s" % expected in peer_subject(result), sent
        assert "220 %s ESMTP" % TLS_SERVER_NAME in output, sent
        assert "250 CHUNKING" in output, sent


def test_starttls_sni_selects_other_certificate(tlshost):
    result = s_client(["-starttls", "smtp", "-connect", "127.0.0.1:%d" % tlshost.smtp_port,
                       "-servername", TLS_OTHER_NAME, "-verify_hostname", TLS_OTHER_NAME])

    assert result.returncode == 0, result.stderr
    assert "CN = %s" % TLS_OTHER_NAME in peer_subject(result)
    assert tlshost.wait_for_log(r"TLS connection established from unknown\[127\.0\.0\.1\]: "
                                r"TLSv1\.3 .* sni=%s" % TLS_OTHER_NAME)


def test_explicit_sni_name_overrides_certificate_names(make_mailhost):
    host = make_mailhost(tls=True, start=False)
    tls_dir = host.dir / "etc" / "tls"
    host.settings["tls_sni_certificates"] = "alias.example.test=%s:%s" % (
        tls_dir / "other.pem", tls_dir / "other.key")
    host.write_config()
    host.newaliases()
    host.start()

    alias = s_client(["-connect", "127.0.0.1:%d" % host.smtps_port,
                      "-servername", "alias.example.test"], data=b"QUIT\r\n")
    own_name = s_client(["-connect", "127.0.0.1:%d" % host.smtps_port,
                         "-servername", TLS_OTHER_NAME], data=b"QUIT\r\n")

    assert "CN = %s" % TLS_OTHER_NAME in peer_subject(alias)
    assert "CN = %s" % TLS_SERVER_NAME in peer_subject(own_name)


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_rejected(tlshost, version):
    result = s_client(["-connect", "127.0.0.1:%d" % tlshost.smtps_port, version,
                       "-cipher", "DEFAULT@SECLEVEL=0"], data=b"QUIT\r\n")
    output = result.stdout.decode(errors="replace")

    assert result.returncode != 0
    assert "220 " not in output
    assert tlshost.wait_for_log(r"SSL_accept error from unknown\[127\.0\.0\.1\]: .*"
                                r"(unsupported protocol|no protocols available|version too low)")

    # The server is still up for a client that speaks TLS 1.2 or 1.3.
    assert s_client(["-connect", "127.0.0.1:%d" % tlshost.smtps_port, "-tls1_2"]).returncode == 0


@pytest.mark.parametrize("version,name", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_12_and_13_accepted(tlshost, version, name):
    result = s_client(["-starttls", "smtp", "-connect", "127.0.0.1:%d" % tlshost.smtp_port,
                       version])
    output = result.stdout.decode(errors="replace")

    assert result.returncode == 0, result.stderr
    assert "Protocol  : %s" % name in output or ", %s," % name in output
    assert "250 CHUNKING" in output
    assert tlshost.wait_for_log(r"TLS connection established from unknown\[127\.0\.0\.1\]: %s with cipher"
                                % name.replace(".", r"\."))


def test_tls12_ciphers_are_ecdhe_aead(tlshost):
    result = s_client(["-connect", "127.0.0.1:%d" % tlshost.smtps_port, "-tls1_2",
                       "-cipher", "AES128-SHA:AES256-SHA256:DHE-RSA-AES128-GCM-SHA256"],
                      data=b"QUIT\r\n")

    assert result.returncode != 0
    assert tlshost.wait_for_log(r"SSL_accept error from unknown\[127\.0\.0\.1\]: .*no shared cipher")


def test_plaintext_pipelined_after_starttls_discarded(tlshost):
    client = TLSLineClient(tlshost.smtp_port)
    assert client.reply()[0] == 220
    assert client.cmd("EHLO client.example.test")[0] == 250

    client.sock.sendall(b"STARTTLS\r\nMAIL FROM:<attacker@example.org>\r\nRSET\r\n")
    code, text = client.reply()
    assert (code, text) == (220, "220 2.0.0 Ready to start TLS")
    time.sleep(0.3)  # any reply to the injected lines would be here by now
    client.start_tls()

    assert client.cmd("EHLO client.example.test")[0] == 250
    # MAIL was not executed, so RCPT has no transaction to join.
    code, text = client.cmd("RCPT TO:<demo@example.test>")
    assert code == 503, text
    assert client.cmd("QUIT")[0] == 221
    client.close()

    log = tlshost.wait_for_log(r"improper command pipelining after STARTTLS from "
                               r"unknown\[127\.0\.0\.1\]: (\d+) bytes discarded, first command MAIL(?:\n|$)")
    assert log is not None
    assert int(log.group(1)) == len(b"MAIL FROM:<attacker@example.org>\r\nRSET\r\n")
    disconnect = tlshost.wait_for_log(r"disconnect from unknown\[127\.0\.0\.1\].* starttls=1.*")
    assert disconnect is not None
    assert "mail=" not in disconnect.group(0)
    assert "rset=" not in disconnect.group(0)
    assert "from=<attacker@example.org>" not in tlshost.log()


def test_starttls_resets_session_state(tlshost):
    client = TLSLineClient(tlshost.smtp_port)
    assert client.reply()[0] == 220
    assert client.cmd("EHLO client.example.test")[0] == 250
    assert client.cmd("MAIL FROM:<demo@example.test>")[0] == 250
    assert client.cmd("STARTTLS")[0] == 220
    client.start_tls()

    # The transaction and the EHLO were forgotten (RFC 3207 section 4.2).
    code, text = client.cmd("RCPT TO:<demo@example.test>")
    assert code == 503, text
    code, text = client.cmd("EHLO client.example.test")
    assert code == 250
    assert "STARTTLS" not in text
    client.close()


def test_starttls_twice_rejected(tlshost):
    client = TLSLineClient(tlshost.smtp_port)
    assert client.reply()[0] == 220
    code, text = client.cmd("EHLO client.example.test")
    assert "250-STARTTLS" in text
    assert client.cmd("STARTTLS")[0] == 220
    client.start_tls()
    assert client.cmd("EHLO client.example.test")[0] == 250

    assert client.cmd("STARTTLS") == (503, "503 5.5.1 Error: TLS already active")
    assert client.cmd("NOOP")[0] == 250
    client.close()


def test_starttls_on_smtps_rejected(tlshost):
    client = smtplib.SMTP_SSL("127.0.0.1", tlshost.smtps_port, local_hostname="client.example.test",
                              timeout=30, context=tls_client_context())
    code, features = client.ehlo()
    assert code == 250
    assert b"STARTTLS" not in features
    assert client.docmd("STARTTLS") == (503, b"5.5.1 Error: TLS already active")
    client.quit()


def test_starttls_with_argument_rejected(tlshost):
    client = tlshost.raw()
    assert client.cmd("EHLO client.example.test")[0] == 250
    assert client.cmd("STARTTLS now") == (501, "5.5.4 Syntax: STARTTLS")
    assert client.cmd("NOOP")[0] == 250
    client.close()


def test_starttls_without_certificate(mailhost):
    client = mailhost.raw()
    code, text = client.cmd("EHLO client.example.test")
    assert code == 250
    assert "STARTTLS" not in text
    assert client.cmd("STARTTLS") == (454, "4.7.0 TLS not available due to local problem")
    assert client.cmd("NOOP")[0] == 250
    client.close()


def test_smtplib_starttls_delivers(tlshost):
    client = tlshost.smtp()
    client.starttls(context=tls_client_context())
    client.sendmail("sender@example.org", ["demo@example.test"], MESSAGE)
    client.quit()

    messages = tlshost.wait_for_messages("demo@example.test", 1)
    assert len(messages) == 1
    header = messages[0].split(b"\n\n", 1)[0].decode()
    assert "with ESMTPS id" in header
    assert "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))" in header


def test_smtp_ssl_delivers(tlshost):
    client = tlshost.smtps()
    authenticated = login_if_offered(client)
    client.sendmail("demo@example.test", ["demo@example.test"], MESSAGE)
    client.quit()

    messages = tlshost.wait_for_messages("demo@example.test", 1)
    assert len(messages) == 1
    protocol = b"ESMTPSA" if authenticated else b"ESMTPS"
    assert b"with " + protocol + b" id" in messages[0]
    assert b"(using TLSv1.3 with cipher " in messages[0]


def test_plain_session_received_without_tls(tlshost):
    client = tlshost.smtp()
    client.sendmail("sender@example.org", ["demo@example.test"], MESSAGE)
    client.quit()

    messages = tlshost.wait_for_messages("demo@example.test", 1)
    assert len(messages) == 1
    assert b"with ESMTP id" in messages[0]
    assert b"(using " not in messages[0]


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.0\r\n\r\n",
    b"EHLO client.example.test\r\n",
    b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",  # a truncated ClientHello record
    b"\x00" * 64,
])
def test_garbage_instead_of_client_hello(tlshost, garbage):
    for port in (tlshost.smtps_port, tlshost.smtp_port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if port == tlshost.smtp_port:
            plain = sock.makefile("rb")
            assert plain.readline().startswith(b"220 ")
            sock.sendall(b"STARTTLS\r\n")
            assert plain.readline() == b"220 2.0.0 Ready to start TLS\r\n"
        try:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may have reset the connection already
        sock.settimeout(10)
        received = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass  # the server closed with garbage still unread
        sock.close()
        assert b"220 " not in received, port

    assert tlshost.wait_for_log(r"(SSL_accept error|lost connection during TLS handshake) "
                                r"(from|with) unknown\[127\.0\.0\.1\]")
    # The server is still up.
    client = tlshost.smtps()
    assert client.noop()[0] == 250
    client.quit()
    assert tlshost.procs["smtpd"].poll() is None


def test_client_disconnects_mid_handshake(tlshost):
    sock = socket.create_connection(("127.0.0.1", tlshost.smtps_port), timeout=10)
    sock.close()

    assert tlshost.wait_for_log(r"lost connection during TLS handshake with unknown\[127\.0\.0\.1\]")
    client = tlshost.smtps()
    assert client.noop()[0] == 250
    client.quit()


def replace_server_certificate(host):
    """Write a new certificate and key for mail.example.test over the
    configured files and return the new certificate's serial."""
    staging = host.dir / "staging"
    staging.mkdir()
    cert, key = make_certificate(staging, "server", [TLS_SERVER_NAME, "localhost", "127.0.0.1"],
                                 tls_pki())
    tls_dir = host.dir / "etc" / "tls"
    shutil.copy2(key, tls_dir / "server.key")
    shutil.copy2(cert, tls_dir / "server.pem")
    serial = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-serial"],
                            capture_output=True, check=True).stdout.decode().strip()
    shutil.rmtree(staging)
    return serial


@pytest.mark.slow
def test_sighup_serves_new_certificate(tlshost):
    # A session opened before the reload, on TLS with the old certificate.
    old_session = tlshost.smtps()
    old_serial = certificate_serial(old_session.sock)
    assert old_session.ehlo()[0] == 250

    new_serial = replace_server_certificate(tlshost)
    assert new_serial != old_serial
    if is_root():
        # smtpd has dropped root and cannot open the key itself: the key
        # reader it forked before the drop reads it.
        key = os.stat(tlshost.dir / "etc" / "tls" / "server.key")
        assert (key.st_uid, key.st_mode & 0o777) == (0, 0o600)
        status = open("/proc/%d/status" % tlshost.procs["smtpd"].pid).read()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1] != "0"
    tlshost.procs["smtpd"].send_signal(signal.SIGHUP)
    assert tlshost.wait_for_log(r"smtpd: TLS certificates reloaded from ")

    new_session = tlshost.smtps()
    assert certificate_serial(new_session.sock) == new_serial
    new_session.quit()

    starttls_session = tlshost.smtp()
    starttls_session.starttls(context=tls_client_context())
    assert certificate_serial(starttls_session.sock) == new_serial
    starttls_session.quit()

    # The old session goes on with its certificate and delivers.
    login_if_offered(old_session)
    old_session.sendmail("demo@example.test", ["demo@example.test"], MESSAGE)
    old_session.quit()
    assert len(tlshost.wait_for_messages("demo@example.test", 1)) == 1


def test_failed_reload_keeps_certificates(tlshost):
    before = tlshost.smtps()
    serial = certificate_serial(before.sock)
    before.quit()

    (tlshost.dir / "etc" / "tls" / "server.pem").write_text("not a certificate\n")
    tlshost.procs["smtpd"].send_signal(signal.SIGHUP)
    assert tlshost.wait_for_log(r"smtpd: TLS reload failed, still serving the previous "
                                r"certificates: no certificate in .*server\.pem")

    after = tlshost.smtps()
    assert certificate_serial(after.sock) == serial
    assert after.noop()[0] == 250
    after.quit()


def test_mismatched_key_rejected_at_start(make_mailhost):
    host = make_mailhost(tls=True, start=False)
    tls_dir = host.dir / "etc" / "tls"
    host.settings["tls_key_file"] = str(tls_dir / "other.key")
    host.write_config()
    host.newaliases()

    with pytest.raises(RuntimeError, match=r"cannot set up TLS: cannot use the private key in "
                                           r".*other\.key"):
        host.start()


def test_smtps_needs_certificate(make_mailhost):
    host = make_mailhost(start=False)
    host.settings["smtpd_smtps_listen"] = "127.0.0.1:%d" % host.smtps_port
    host.write_config()
    host.newaliases()

    with pytest.raises(RuntimeError, match=r"smtpd_smtps_listen is set but tls_cert_file is not"):
        host.start()


def test_handshake_timeout_closes(make_mailhost):
    host = make_mailhost(tls=True, smtpd_timeout="1s")
    sock = socket.create_connection(("127.0.0.1", host.smtps_port), timeout=10)
    start = time.monotonic()
    assert sock.recv(4096) == b""
    elapsed = time.monotonic() - start
    sock.close()

    assert elapsed < 5
    assert host.wait_for_log(r"timeout during TLS handshake with unknown\[127\.0\.0\.1\]")


def test_tls_version_parameters(make_mailhost):
    host = make_mailhost(tls=True, tls_min_protocol="TLSv1.3")
    refused = s_client(["-connect", "127.0.0.1:%d" % host.smtps_port, "-tls1_2"], data=b"QUIT\r\n")
    accepted = s_client(["-connect", "127.0.0.1:%d" % host.smtps_port, "-tls1_3"], data=b"QUIT\r\n")

    assert refused.returncode != 0
    assert accepted.returncode == 0, accepted.stderr
    assert "221 2.0.0 Bye" in accepted.stdout.decode(errors="replace")


def test_tls_ciphersuites_parameter(make_mailhost):
    host = make_mailhost(tls=True, tls_ciphersuites="TLS_CHACHA20_POLY1305_SHA256")
    client = host.smtps()
    cipher = client.sock.cipher()
    client.quit()

    assert cipher[0] == "TLS_CHACHA20_POLY1305_SHA256"


def test_invalid_cipher_list_rejected(make_mailhost):
    host = make_mailhost(tls=True, start=False, tls_ciphers="NOSUCHCIPHER")
    host.newaliases()

    with pytest.raises(RuntimeError, match=r"invalid tls_ciphers \"NOSUCHCIPHER\""):
        host.start()


def test_ssl_context_rejects_wrong_name(tlshost):
    context = tls_client_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", tlshost.smtps_port), timeout=10) as sock:
            with context.wrap_socket(sock, server_hostname=TLS_OTHER_NAME + ".invalid"):
                pass


def test_renegotiation_rejected(tlshost):
    client = subprocess.Popen(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % tlshost.smtps_port, "-tls1_2",
         "-CAfile", str(tls_pki() / "ca.pem")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert tlshost.wait_for_log(r"TLS connection established from unknown\[127\.0\.0\.1\]: TLSv1\.2")
    try:
        client.stdin.write(b"R\n")  # s_client's command to renegotiate
        client.stdin.flush()
        client.stdin.write(b"NOOP\r\n")
        client.stdin.close()
    except BrokenPipeError:
        pass  # s_client gave up after the server rejected the renegotiation
    client.wait(timeout=20)
    output = client.stdout.read().decode(errors="replace")
    client.stdout.close()

    assert "RENEGOTIATING" in output
    assert "Compression: NONE" in output
    assert "250 2.0.0 Ok" not in output
    assert tlshost.wait_for_log(r"lost connection after CONNECT from unknown\[127\.0\.0\.1\]: error:")
    assert tlshost.log().count("TLS connection established") == 1


@pytest.mark.skipif(not is_root(), reason="smtpd starts the key reader only as root")
def test_reload_after_key_reader_died(tlshost):
    smtpd_pid = tlshost.procs["smtpd"].pid
    children = open("/proc/%d/task/%d/children" % (smtpd_pid, smtpd_pid)).read().split()
    assert len(children) == 1, children
    key_reader = int(children[0])
    assert open("/proc/%d/status" % key_reader).read().count("Uid:\t0\t") == 1
    before = tlshost.smtps()
    serial = certificate_serial(before.sock)
    before.quit()

    os.kill(key_reader, signal.SIGKILL)
    tlshost.procs["smtpd"].send_signal(signal.SIGHUP)
    assert tlshost.wait_for_log(r"smtpd: TLS reload failed, still serving the previous "
                                r"certificates: (cannot reach|no reply from) the key reader")

    after = tlshost.smtps()
    assert certificate_serial(after.sock) == serial
    assert after.noop()[0] == 250
    after.quit()
    assert tlshost.procs["smtpd"].poll() is None
