"""imapd's mail process, which runs as the mailbox owner, must contain no
TLS private key. It is forked from the root master, which parsed every
key, so any key bytes the master leaves in freed memory reach the user's
session. These tests look for the raw private scalar of each key, in
both byte orders, in the memory of the mail process."""

import imaplib
import os
import pwd
import re
import signal
import subprocess
import time

import pytest

from conftest import SANITIZED, tls_client_context

DEMO = "demo@example.test"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation needs root"),
    pytest.mark.skipif(SANITIZED, reason="AddressSanitizer's shadow memory is too large to scan"),
]


@pytest.fixture
def tlshost(make_mailhost):
    host = make_mailhost(tls=True, auth_failure_delay=0)
    host.start("imapd")
    return host


def key_scalar_patterns(key_file):
    """The EC private scalar of KEY_FILE in big-endian order and reversed."""
    text = subprocess.run(["openssl", "pkey", "-in", str(key_file), "-text", "-noout"],
                          capture_output=True, text=True, check=True).stdout
    match = re.search(r"priv:\s*\n((?:\s+[0-9a-f:]+\n)+)", text)
    assert match, text
    scalar = bytes.fromhex(re.sub(r"[\s:]", "", match.group(1)))[-32:]
    return [scalar, scalar[::-1]]


def memory_contains(pid, patterns):
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


def mail_process(host):
    """The pid of imapd's one child that runs as virtual_mail_user."""
    mail_uid = pwd.getpwnam("_estafeta-vmail").pw_uid
    master = host.procs["imapd"].pid
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/status" % entry) as status:
                uid = int(next(line for line in status if line.startswith("Uid:")).split()[1])
        except (OSError, StopIteration):
            continue
        if parent == master and uid == mail_uid:
            found.append(int(entry))
    assert len(found) == 1, found
    return found[0]


def logged_in_over_imaps(host):
    imap = imaplib.IMAP4_SSL("127.0.0.1", host.imaps_port, timeout=30,
                             ssl_context=tls_client_context())
    assert imap.login(DEMO, "demo")[0] == "OK"
    assert imap.select("INBOX")[0] == "OK"
    return imap


def test_mail_process_lacks_sni_key(tlshost):
    imap = logged_in_over_imaps(tlshost)
    patterns = key_scalar_patterns(tlshost.dir / "etc" / "tls" / "other.key")

    assert not memory_contains(mail_process(tlshost), patterns)
    imap.logout()


def test_mail_process_lacks_key_after_sighup(tlshost):
    tlshost.procs["imapd"].send_signal(signal.SIGHUP)
    assert tlshost.wait_for_log(r"imapd.*reloaded")
    time.sleep(0.2)
    imap = logged_in_over_imaps(tlshost)
    patterns = key_scalar_patterns(tlshost.dir / "etc" / "tls" / "server.key")

    assert not memory_contains(mail_process(tlshost), patterns)
    imap.logout()
