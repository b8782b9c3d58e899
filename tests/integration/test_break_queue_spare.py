"""Failures of queued's spare files found in review: each test fails
while the bug is there."""

import os
import pwd
import shutil
import subprocess
import time

import pytest

from test_queue_ipc import QueueClient
from test_queue_spare import spare_files, wait_removed

SECRET = b"SECRET-4711"


def connect_as(host, user):
    """Connect a QueueClient with USER's uid as its peer credentials,
    because SO_PEERCRED stores the effective uid at connect()."""
    if os.geteuid() != 0:
        pytest.skip("needs root to connect with another uid")
    uid = pwd.getpwnam(user).pw_uid
    os.seteuid(uid)
    try:
        return QueueClient(host.settings["queued_socket"])
    finally:
        os.seteuid(0)


def smtpd_user(host):
    return host.settings.get("smtpd_user", "_estafeta")


def commit_fields(queue_id, rcpt, size):
    return [("id", queue_id), ("sender", ""), ("rcpt", rcpt), ("size", str(size)),
            ("protocol", "ESMTP")]


def test_reused_file_hides_old_text(make_mailhost):
    # A bounce carries the headers of a local user's message, and its data
    # file becomes a spare file as it is. A process with smtpd's uid (smtpd,
    # imapd's login processes, deliverd's LMTP sessions) must not be able
    # to commit those bytes to itself by taking the file and writing nothing.
    host = make_mailhost()
    headers = b"Subject: private " + SECRET + b"\n\nbody\n"
    result = host.run("sendmail", "-f", "demo@example.test", "nosuchuser@example.test",
                      input=headers)
    assert result.returncode == 0, result.stderr
    assert len(host.wait_for_messages("demo@example.test", 1)) == 1
    assert wait_removed(host, 2)

    client = connect_as(host, smtpd_user(host))
    replies = []
    for _ in range(10):
        queue_id, fd = client.new()
        size = os.fstat(fd).st_size
        os.close(fd)
        if size == 0:
            client.send("ABORT", [("id", queue_id)])
            continue
        msg_type, _, _ = client.request("COMMIT", commit_fields(queue_id, "bob@example.test", size))
        replies.append(msg_type)
    client.close()

    delivered = host.wait_for_messages("bob@example.test", replies.count("COMMIT-OK"))
    leaked = [message for message in delivered if SECRET in message]
    assert leaked == [], replies


def test_kept_descriptor_cannot_edit_later_message(make_mailhost):
    # Data files are reused once their message is delivered. A process
    # with smtpd's uid that kept its descriptor after COMMIT must not be
    # able to write into another client's message that reuses the file.
    host = make_mailhost()
    attacker = connect_as(host, smtpd_user(host))
    queue_id, kept_fd = attacker.new()
    text = b"Subject: first\n\nhello\n"
    os.write(kept_fd, text)
    os.ftruncate(kept_fd, len(text))
    msg_type, reply, _ = attacker.request("COMMIT", commit_fields(queue_id, "bob@example.test",
                                                                  len(text)))
    assert msg_type == "COMMIT-OK", reply
    assert len(host.wait_for_messages("bob@example.test", 1)) == 1
    assert wait_removed(host, 1)

    # Take the older spare files, so that the next NEW gets the kept one.
    inode = os.fstat(kept_fd).st_ino
    older = []
    for path in spare_files(host):
        if path.stat().st_ino == inode:
            older = [p for p in spare_files(host) if int(p.name) < int(path.name)]
    drain = QueueClient(host.settings["queued_socket"])
    for _ in older:
        drained_id, fd = drain.new()
        os.close(fd)
        drain.send("ABORT", [("id", drained_id)])
    drain.close()

    host.stop("deliverd")
    victim = b"Subject: victim\n\noriginal text\n"
    result = host.run("sendmail", "-f", "alice@example.test", "demo@example.test", input=victim)
    assert result.returncode == 0, result.stderr
    os.pwrite(kept_fd, b"INJECTED", 0)
    os.close(kept_fd)
    attacker.close()

    host.start("deliverd")
    host.run("estafeta", "queue", "flush")
    messages = host.wait_for_messages("demo@example.test", 1)
    assert len(messages) == 1
    assert b"INJECTED" not in messages[0]
    assert b"original text" in messages[0]


def test_open_during_lease_check_keeps_queued(make_mailhost):
    # queued takes a write lease on a removed message's data file to see
    # whether anyone still has it open. An open by another process (a
    # backup, a virus scanner) during that check breaks the lease, and the
    # kernel sends the lease holder SIGIO, which must not end queued.
    # strace delays the commit thread for 1.5 seconds after each fcntl to
    # widen the window of the check, which is otherwise microseconds.
    if os.geteuid() != 0:
        pytest.skip("needs root to trace queued")
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    host = make_mailhost()
    queued = host.procs["queued"]
    threads = sorted(int(tid) for tid in os.listdir("/proc/%d/task" % queued.pid))
    assert len(threads) == 2, "expected the event loop and the commit thread: %s" % threads
    # The commit thread runs the removals.
    tracer = subprocess.Popen(
        ["strace", "-qq", "-p", str(threads[1]), "-e", "trace=fcntl",
         "-e", "inject=fcntl:delay_exit=1500000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        with host.smtp() as client:
            client.sendmail("sender@client.example.test", ["demo@example.test"],
                            b"Subject: lease\r\n\r\nbody\r\n")
        assert len(host.wait_for_messages("demo@example.test", 1)) == 1

        # The data file stays in data/ while the commit thread holds the
        # lease. A non-blocking open fails with EAGAIN and breaks it.
        data = host.dir / "spool" / "data"
        broken = False
        deadline = time.monotonic() + 5
        while not broken and time.monotonic() < deadline:
            for path in data.iterdir():
                try:
                    os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                except BlockingIOError:
                    broken = True
                except FileNotFoundError:
                    pass
            time.sleep(0.05)
        assert broken

        # SIGIO arrives when the open breaks the lease; a queued that it
        # ends is gone well within this wait.
        deadline = time.monotonic() + 3
        while queued.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queued.poll() is None, "queued exited with status %s" % queued.returncode
    finally:
        tracer.kill()
        tracer.wait()
