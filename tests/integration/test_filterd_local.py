"""Mail submitted with sendmail(1) passes filterd, as SMTP mail does.

With local_filter on, queued passes each local submission to filterd
before the commit, as outbound mail of the submitting user. The message
is DKIM-signed (checked with dkimpy), and a virus makes sendmail fail
with nothing queued. With filterd down, smtpd_filter_failure_policy
decides. Run as root, queued drops to its own user and reaches
filterd's socket through the socket's group.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import dkim_bed
from conftest import is_root
from scanners import EICAR, EICAR_REPORTED, Clamd
from test_filterd_dkim import keys, records, zone  # noqa: F401 (fixtures)

DEMO = "demo@example.test"
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75

needs_dkim_bed = pytest.mark.skipif(not is_root() or not os.path.exists(dkim_bed.UNBOUND),
                                    reason="needs root (filter_user keys) and unbound")


@pytest.fixture(scope="module")
def clamd():
    server = Clamd()
    server.start()
    yield server
    server.destroy()


def plain_message(subject, body):
    return ("From: Demo <%s>\nTo: <%s>\nSubject: %s\n\n%s\n" % (DEMO, DEMO, subject, body)).encode()


def queued_files(host):
    """Names of the committed envelopes in the spool."""
    spool = host.dir / "spool"
    return sorted({p.name for p in [*spool.glob("queue/*"), *spool.glob("deferred/*")]})


def signing_host(make_mailhost, zone, keys, owners_mode=0o644):  # noqa: F811
    """A host whose filterd signs mail from example.test that root sends:
    root owns the domain's addresses in smtpd_sender_login_maps, a file
    of OWNERS_MODE."""
    table = Path(keys["directory"]) / "table-local"
    table.write_text(keys["rsa"]["line"] + "\n")
    os.chmod(table, 0o644)
    owners = Path(keys["directory"]) / ("sender-logins-%o" % owners_mode)
    owners.write_text("@example.test root\n")
    os.chmod(owners, owners_mode)
    host = make_mailhost(local_filter="yes", smtpd_sender_login_maps=str(owners),
                         **dkim_bed.filter_settings(zone, dkim_signing_table=table))
    host.start("filterd")
    return host


@needs_dkim_bed
def test_sendmail_mail_is_signed(make_mailhost, zone, keys, records):  # noqa: F811
    host = signing_host(make_mailhost, zone, keys)

    result = host.run("sendmail", "-f", DEMO, DEMO,
                      input=plain_message("from cron", "Hello from the DKIM tests."))
    stored = host.wait_for_messages(DEMO, 1)

    assert result.returncode == 0, result.stderr
    assert len(stored) == 1, host.log()
    assert b"DKIM-Signature:" in stored[0]
    assert dkim_bed.dkimpy_verify(stored[0], records)
    assert host.wait_for_log(r"queued\[\d+\]: \w+: filterd action=accept")


@needs_dkim_bed
def test_sendmail_foreign_from_not_signed(make_mailhost, zone, keys, records):  # noqa: F811
    host = signing_host(make_mailhost, zone, keys)
    message = ("From: <someone@example.org>\nTo: <%s>\nSubject: not ours\n\nHello.\n"
               % DEMO).encode()

    result = host.run("sendmail", "-f", DEMO, DEMO, input=message)
    stored = host.wait_for_messages(DEMO, 1)

    assert result.returncode == 0, result.stderr
    assert b"DKIM-Signature:" not in stored[0]
    assert host.wait_for_log(r"dkim_sign=none \(From: someone@example.org not owned by root\)")


@needs_dkim_bed
def test_sendmail_unreadable_owner_map(make_mailhost, zone, keys):  # noqa: F811
    """filterd reads smtpd_sender_login_maps as filter_user; a map it
    cannot read fails the signing check, whose failure policy applies."""
    host = signing_host(make_mailhost, zone, keys, owners_mode=0o600)

    result = host.run("sendmail", "-f", DEMO, DEMO,
                      input=plain_message("private map", "Hello."))
    stored = host.wait_for_messages(DEMO, 1)

    assert result.returncode == 0, result.stderr
    assert b"DKIM-Signature:" not in stored[0]
    assert host.wait_for_log(r"check dkim_sign failed: smtpd_sender_login_maps \S+ cannot be read")


def test_sendmail_virus_is_rejected(make_mailhost, clamd):
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="clamav", clamd_socket=clamd.socket)
    host.start("filterd")

    result = host.run("sendmail", "-f", DEMO, DEMO,
                      input=plain_message("virus", EICAR.decode()))

    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert b"message rejected" in result.stderr
    assert EICAR_REPORTED.encode() in result.stderr
    assert host.wait_for_log(r"queued\[\d+\]: \w+: rejected by filterd")
    assert queued_files(host) == []
    assert host.messages(DEMO) == []


def test_sendmail_bs_virus_gets_554(make_mailhost, clamd):
    """In an SMTP session on standard input (-bs) the rejected message
    gets 554 and the session goes on."""
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="clamav", clamd_socket=clamd.socket)
    host.start("filterd")
    data = plain_message("virus", EICAR.decode()).replace(b"\n", b"\r\n")

    result = host.run("sendmail", "-bs", input=(
        b"EHLO client.example.test\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n%s.\r\n"
        b"QUIT\r\n" % (DEMO.encode(), DEMO.encode(), data)))

    assert b"554 5.7.1 Error: message rejected by the mail filter" in result.stdout
    assert b"221 " in result.stdout
    assert queued_files(host) == []


def test_sendmail_virus_is_discarded(make_mailhost, clamd):
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="clamav", clamd_socket=clamd.socket,
                         virus_action="discard")
    host.start("filterd")

    result = host.run("sendmail", "-f", DEMO, DEMO,
                      input=plain_message("virus", EICAR.decode()))

    assert result.returncode == 0, result.stderr
    assert host.wait_for_log(r"queued\[\d+\]: \w+: discarded by filterd")
    assert queued_files(host) == []
    assert host.messages(DEMO) == []


def test_sendmail_filterd_down_tempfails(make_mailhost):
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_socket="/nonexistent/filterd.sock")

    result = host.run("sendmail", "-f", DEMO, DEMO, input=plain_message("later", "x"))

    assert result.returncode == EX_TEMPFAIL, result.stderr
    assert b"mail filter unavailable" in result.stderr
    assert host.wait_for_log(r"filterd unavailable: cannot connect to /nonexistent/filterd.sock")
    assert queued_files(host) == []


def test_sendmail_filterd_down_accept_policy(make_mailhost):
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_socket="/nonexistent/filterd.sock",
                         smtpd_filter_failure_policy="accept")

    result = host.run("sendmail", "-f", DEMO, DEMO, input=plain_message("unfiltered", "x"))

    assert result.returncode == 0, result.stderr
    assert len(host.wait_for_messages(DEMO, 1)) == 1, host.log()
    assert host.wait_for_log(r"committing without filtering")


def test_sendmail_without_filter_skips_filterd(make_mailhost):
    host = make_mailhost(filterd_socket="/nonexistent/filterd.sock")

    result = host.run("sendmail", "-f", DEMO, DEMO, input=plain_message("unfiltered", "x"))

    assert result.returncode == 0, result.stderr
    assert len(host.wait_for_messages(DEMO, 1)) == 1, host.log()
    assert "filterd" not in host.log()


def test_sendmail_waiting_leaves_queued_serving(make_mailhost):
    """A submission that waits for a stopped filterd does not hold up
    queued, which replies to a queue listing meanwhile."""
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", smtpd_filter_timeout="3s")
    host.start("filterd")
    proc = host.procs["filterd"]
    data = host.dir / "spool" / "data"

    proc.send_signal(signal.SIGSTOP)
    try:
        waiting = subprocess.Popen([host.bin("sendmail"), "-f", DEMO, DEMO],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=host.env)
        waiting.stdin.write(plain_message("waiting", "x"))
        waiting.stdin.close()
        deadline = time.monotonic() + 5
        while not any(data.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        # The COMMIT follows the data file's last write at once.
        time.sleep(0.3)
        started = time.monotonic()
        listing = host.run("sendmail", "-bp", timeout=10)
        elapsed = time.monotonic() - started
        still_waiting = waiting.poll() is None
        waiting.wait(timeout=15)
        stderr = waiting.stderr.read()
    finally:
        proc.send_signal(signal.SIGCONT)

    assert listing.returncode == 0, listing.stderr
    assert elapsed < 2
    assert still_waiting
    assert waiting.returncode == EX_TEMPFAIL, stderr
    assert b"mail filter unavailable" in stderr
    assert host.wait_for_log(r"filterd unavailable: no reply within 3s")
    assert queued_files(host) == []


@needs_dkim_bed
def test_sendmail_uneditable_header_rejected(make_mailhost, zone, keys):  # noqa: F811
    """A header section over 1 MiB cannot take the DKIM-Signature field,
    and a retry would fail the same way, so sendmail fails for good."""
    host = signing_host(make_mailhost, zone, keys)
    filler = "X-Filler: %s\n" % ("x" * 70)
    message = ("From: <%s>\nTo: <%s>\nSubject: big header\n%s\nbody\n"
               % (DEMO, DEMO, filler * 15000)).encode()

    result = host.run("sendmail", "-f", DEMO, DEMO, input=message)

    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert b"552 5.3.4" in result.stderr
    assert queued_files(host) == []


def test_local_filter_off_by_default(make_mailhost):
    host = make_mailhost(smtpd_filter="yes", filterd_socket="/nonexistent/filterd.sock")

    result = host.run("sendmail", "-f", DEMO, DEMO, input=plain_message("default", "x"))

    assert result.returncode == 0, result.stderr
    assert len(host.wait_for_messages(DEMO, 1)) == 1, host.log()
    assert "committing without filtering" not in host.log()
