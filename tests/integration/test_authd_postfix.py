"""Postfix's SMTP AUTH against authd: a private Debian Postfix with
smtpd_sasl_type = dovecot and smtpd_sasl_path = authd's auth_socket, and
swaks as the SMTP client. Root only, because Postfix's master starts as
root and its smtpd connects to the socket as user postfix.
"""

import shutil
import subprocess

import pytest

from conftest import is_root
from postfix_sasl_host import PostfixSaslHost
# Fixtures: a throwaway system user and PAM service file.
from test_authd_pam import PASSWORD as SYSTEM_PASSWORD, pam_service, system_user  # noqa: F401

pytestmark = [
    # Mostly the other program's work, so the sanitizer pass skips it.
    pytest.mark.slow,
    pytest.mark.skipif(not is_root(), reason="a private Postfix instance needs root"),
    pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed"),
    pytest.mark.skipif(shutil.which("postfix") is None and
                       not shutil.which("/usr/sbin/postfix"), reason="postfix is not installed"),
]


@pytest.fixture
def postfix(make_mailhost, request, pam_service):
    # Postfix's smtpd runs as user postfix, so the socket's group is postfix.
    host = make_mailhost(start=False, auth_failure_delay=1, auth_socket_group="postfix",
                         pam_service=pam_service)
    host.start("authd")
    instance = PostfixSaslHost(str(host.dir / "sock" / "auth-client"))
    try:
        instance.start()
        yield instance, host
    finally:
        report = getattr(request.node, "report_call", None)
        instance.destroy(keep=report is not None and report.failed)


def swaks(port, mechanism, user, password):
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(port), "--helo", "client.example.test",
         "--from", "sender@example.test", "--to", "rcpt@example.test",
         "--auth", mechanism, "--auth-user", user, "--auth-password", password,
         "--quit-after", "AUTH", "--timeout", "30"],
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_postfix_auth_ok(postfix, mechanism):
    instance, host = postfix
    result = swaks(instance.smtp_port, mechanism, "demo@example.test", "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  235 2.7.0 Authentication successful" in result.stdout
    assert host.wait_for_log(r"auth: method=%s, user=<demo@example\.test>, service=smtp, "
                             r"rip=127\.0\.0\.1, status=ok" % mechanism)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_postfix_auth_wrong_password(postfix, mechanism):
    instance, host = postfix
    result = swaks(instance.smtp_port, mechanism, "demo@example.test", "not-the-password")
    assert result.returncode != 0
    assert "<** 535 5.7.8 Error: authentication failed" in result.stdout
    assert host.wait_for_log(r"auth: method=%s, user=<demo@example\.test>, .*"
                             r"status=failed \(password mismatch\)" % mechanism)
    assert "not-the-password" not in host.log()
    assert "not-the-password" not in instance.log()


def test_postfix_auth_unknown_user(postfix):
    instance, host = postfix
    result = swaks(instance.smtp_port, "PLAIN", "nobody@example.test", "x")
    assert "<** 535 5.7.8 Error: authentication failed" in result.stdout
    assert host.wait_for_log(r"user=<nobody@example\.test>.*status=failed \(unknown user\)")


def test_postfix_sees_mechanisms(postfix):
    instance, _ = postfix
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(instance.smtp_port),
         "--helo", "client.example.test", "--from", "sender@example.test",
         "--to", "rcpt@example.test", "--quit-after", "EHLO", "--timeout", "30"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250-AUTH PLAIN LOGIN" in result.stdout or "<-  250-AUTH LOGIN PLAIN" in result.stdout


def test_postfix_auth_system_user(postfix, system_user):
    instance, host = postfix
    result = swaks(instance.smtp_port, "PLAIN", system_user, SYSTEM_PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  235 2.7.0 Authentication successful" in result.stdout
    result = swaks(instance.smtp_port, "LOGIN", system_user, "wrong")
    assert "<** 535 5.7.8 Error: authentication failed" in result.stdout
    assert host.wait_for_log(r"user=<%s>.*status=failed \(PAM authentication failed\)"
                             % system_user)


def test_postfix_offers_scram_without_plus(postfix):
    # Postfix speaks protocol 1.0, so authd never lists SCRAM-SHA-256-PLUS to it.
    instance, _ = postfix
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(instance.smtp_port),
         "--helo", "client.example.test", "--quit-after", "EHLO", "--timeout", "30"],
        capture_output=True, text=True, timeout=60)
    auth_lines = [line for line in result.stdout.splitlines() if "250-AUTH " in line or
                  "250 AUTH " in line]
    assert len(auth_lines) == 1, result.stdout
    assert "SCRAM-SHA-256" in auth_lines[0].split()
    assert "PLUS" not in auth_lines[0]


@pytest.mark.skipif(shutil.which("gsasl") is None, reason="gsasl is not installed")
@pytest.mark.parametrize("password, status", [("demo", "ok"), ("wrong", "failed")])
def test_postfix_scram_with_gsasl(postfix, password, status):
    # Postfix relays SCRAM's challenges, including server-final as a last
    # 334 challenge, between GNU SASL's SMTP client and authd.
    instance, host = postfix
    result = subprocess.run(
        ["gsasl", "--smtp", "--connect=127.0.0.1:%d" % instance.smtp_port, "--no-starttls",
         "--mechanism=SCRAM-SHA-256", "--no-cb", "--authentication-id=demo@example.test",
         "--password=" + password],
        input="", capture_output=True, text=True, timeout=60)
    if status == "ok":
        assert result.returncode == 0, result.stdout + result.stderr
        assert "235 " in result.stdout + result.stderr
    else:
        assert result.returncode != 0, result.stdout + result.stderr
    assert host.wait_for_log(r"auth: method=SCRAM-SHA-256, user=<demo@example\.test>, "
                             r"service=smtp, rip=127\.0\.0\.1, status=%s" % status)
