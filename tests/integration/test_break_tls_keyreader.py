"""A TLS key path that is a FIFO when SIGHUP comes: open(2) of a FIFO
blocks until a writer appears. smtpd's root key reader and imapd's root
master both open the configured paths. A reload must not stall the
daemon, later reloads must work once the path is a regular file again,
and the key reader must exit when smtpd stops."""

import os
import shutil
import signal
import socket
import time

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the key reader runs only when started as root"),
]

# Seconds smtpd waits for the key reader before it gives up a reload
# (KEYREADER_TIMEOUT_MS in lib/tls_files.c).
KEY_READER_TIMEOUT = 10


def replace_key_with_fifo(host):
    key = host.dir / "etc" / "tls" / "server.key"
    saved = host.dir / "server.key.saved"
    shutil.copy2(key, saved)
    key.unlink()
    os.mkfifo(key, 0o600)
    return key, saved


def restore_key(key, saved):
    key.unlink()
    shutil.copy2(saved, key)
    os.chmod(key, 0o600)


def greeting_seconds(port, timeout=15):
    """Seconds until the first line from 127.0.0.1:PORT arrives."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.recv(512)
    return time.monotonic() - start


def log_after(host, offset, pattern, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pattern in host.log()[offset:]:
            return True
        time.sleep(0.1)
    return False


def test_smtpd_serves_during_fifo_reload(make_mailhost):
    host = make_mailhost(tls=True)
    key, saved = replace_key_with_fifo(host)

    host.procs["smtpd"].send_signal(signal.SIGHUP)
    time.sleep(0.5)
    seconds = greeting_seconds(host.smtp_port)
    restore_key(key, saved)

    assert seconds < 3


def test_smtpd_reload_recovers_after_fifo(make_mailhost):
    host = make_mailhost(tls=True)
    key, saved = replace_key_with_fifo(host)
    offset = len(host.log())
    host.procs["smtpd"].send_signal(signal.SIGHUP)
    assert log_after(host, offset, "TLS reload failed", KEY_READER_TIMEOUT + 5)
    assert "server.key: not a regular file" in host.log()[offset:]

    restore_key(key, saved)
    offset = len(host.log())
    host.procs["smtpd"].send_signal(signal.SIGHUP)

    assert log_after(host, offset, "TLS certificates reloaded", KEY_READER_TIMEOUT + 5)


def test_imapd_serves_during_fifo_reload(make_mailhost):
    host = make_mailhost(tls=True)
    host.start("imapd")
    key, saved = replace_key_with_fifo(host)

    host.procs["imapd"].send_signal(signal.SIGHUP)
    time.sleep(0.5)
    try:
        seconds = greeting_seconds(host.imap_port, timeout=5)
    except socket.timeout:
        seconds = None
    restore_key(key, saved)

    assert seconds is not None
    assert seconds < 3
    assert host.wait_for_log(r"imapd.*TLS reload failed.*server\.key: not a regular file")


def child_pids(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == pid:
            found.append(int(entry))
    return found


def process_running(pid):
    """Whether PID exists and is not a zombie waiting to be reaped."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_key_reader_exits_with_smtpd(make_mailhost):
    host = make_mailhost(tls=True)
    readers = child_pids(host.procs["smtpd"].pid)
    assert len(readers) == 1, readers
    replace_key_with_fifo(host)
    offset = len(host.log())
    host.procs["smtpd"].send_signal(signal.SIGHUP)
    assert log_after(host, offset, "TLS reload failed", KEY_READER_TIMEOUT + 5)

    host.stop("smtpd")
    deadline = time.monotonic() + 5
    while process_running(readers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)

    # The host's teardown kills smtpd's process group, the reader included.
    assert not process_running(readers[0])


def test_key_reader_exits_on_sigterm(make_mailhost):
    host = make_mailhost(tls=True)
    readers = child_pids(host.procs["smtpd"].pid)
    assert len(readers) == 1, readers

    os.kill(readers[0], signal.SIGTERM)
    deadline = time.monotonic() + 5
    while process_running(readers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert not process_running(readers[0])


def test_stalled_key_reader_given_up(make_mailhost):
    """A reply that times out part way ends the key reader, so a late
    rest of it cannot be taken for the next reply."""
    host = make_mailhost(tls=True)
    readers = child_pids(host.procs["smtpd"].pid)
    assert len(readers) == 1, readers
    os.kill(readers[0], signal.SIGSTOP)
    offset = len(host.log())

    host.procs["smtpd"].send_signal(signal.SIGHUP)
    assert log_after(host, offset, "TLS reload failed", KEY_READER_TIMEOUT + 5)
    assert log_after(host, offset, "stopped after a failed reply", 5)

    # Resumed, the reader writes its reply to the closed socket and exits.
    os.kill(readers[0], signal.SIGCONT)
    deadline = time.monotonic() + 5
    while process_running(readers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_running(readers[0])

    offset = len(host.log())
    host.procs["smtpd"].send_signal(signal.SIGHUP)
    assert log_after(host, offset, "the key reader stopped after an earlier failure", 5)
    assert greeting_seconds(host.smtp_port) < 3
