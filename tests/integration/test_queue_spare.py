"""Spare files: queued zeroes the files of removed messages (emptying
large ones), keeps them in spool/spare/ and renames them back into use
for new messages, cut to the length of the new text.
"""

import os
import re
import subprocess
import time

import pytest

from test_queue_ipc import QueueClient

BODY = b"Subject: spare\r\n\r\n" + b"x" * 3000 + b"\r\n"


def send(host, count, rcpt="demo@example.test"):
    with host.smtp() as client:
        for _ in range(count):
            assert client.sendmail("sender@client.example.test", [rcpt], BODY) == {}


def spare_files(host):
    return sorted((host.dir / "spool" / "spare").iterdir())


def wait_removed(host, count, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(r": removed$", host.log(), re.M)) >= count:
            return True
        time.sleep(0.05)
    return False


def held_files(host, timeout=10):
    """Return the data files and envelopes of the held messages, once the
    spool file that smtpd requested for a next message is gone with its
    session."""
    spool = host.dir / "spool"
    deadline = time.monotonic() + timeout
    while True:
        data = sorted((spool / "deferred-data").iterdir())
        envelopes = sorted((spool / "deferred").iterdir())
        if (data and len(data) == len(envelopes)) or time.monotonic() > deadline:
            return data, envelopes
        time.sleep(0.05)


def send_held(host, count):
    """Send COUNT messages while deliverd is down, then deliver them all,
    so that none of them can reuse the files of another."""
    host.stop("deliverd")
    send(host, count)
    host.start("deliverd")
    host.run("estafeta", "queue", "flush")
    host.wait_for_messages("demo@example.test", count)
    assert wait_removed(host, count)


def test_removed_messages_become_spare_files(mailhost):
    send_held(mailhost, 5)

    spares = spare_files(mailhost)
    # The envelope and the data file of each message, and the envelopes
    # that deferrals replaced.
    assert len(spares) >= 10
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in spares)
    assert list((mailhost.dir / "spool" / "data").iterdir()) == []


def test_new_messages_reuse_spare_files(mailhost):
    send_held(mailhost, 3)
    spare_inodes = {path.stat().st_ino for path in spare_files(mailhost)}
    assert len(spare_inodes) >= 6

    # Hold the next message in the queue to look at its files.
    mailhost.stop("deliverd")
    send(mailhost, 1)
    data, envelope = held_files(mailhost)
    assert len(data) == 1
    assert len(envelope) == 1
    assert data[0].stat().st_ino in spare_inodes
    assert envelope[0].stat().st_ino in spare_inodes
    assert len(spare_files(mailhost)) < len(spare_inodes)
    # The reused data file contains this message only, nothing of the old one.
    assert data[0].read_bytes().endswith(BODY.replace(b"\r\n", b"\n"))
    assert data[0].stat().st_size < 2 * len(BODY)


def test_short_message_in_a_long_spare_file(mailhost):
    long_body = b"Subject: long\r\n\r\n" + b"0123456789abcdef\r\n" * 4000
    with mailhost.smtp() as client:
        assert client.sendmail("sender@client.example.test", ["demo@example.test"],
                               long_body) == {}
    mailhost.wait_for_messages("demo@example.test", 1)
    assert wait_removed(mailhost, 1)
    # The files keep their length as spares, but none of their text.
    spares = spare_files(mailhost)
    assert max(path.stat().st_size for path in spares) > 60000
    assert all(path.read_bytes().count(0) == path.stat().st_size for path in spares)

    short_body = b"Subject: short\r\n\r\nshort text\r\n"
    with mailhost.smtp() as client:
        assert client.sendmail("sender@client.example.test", ["demo@example.test"],
                               short_body) == {}
    messages = mailhost.wait_for_messages("demo@example.test", 2)
    short = [m for m in messages if b"Subject: short" in m]
    assert len(short) == 1
    assert short[0].endswith(b"\n\nshort text\n")
    assert b"0123456789abcdef" not in short[0]


def test_reused_files_are_cut_to_length(mailhost):
    long_body = b"Subject: long\r\n\r\n" + b"0123456789abcdef\r\n" * 4000
    send_held_body(mailhost, long_body)

    mailhost.stop("deliverd")
    send(mailhost, 1)
    data, envelope = held_files(mailhost)
    assert len(data) == 1
    assert len(envelope) == 1
    assert data[0].read_bytes().count(0) == 0
    assert data[0].read_bytes().endswith(BODY.replace(b"\r\n", b"\n"))
    assert data[0].stat().st_size < 2 * len(BODY)
    assert envelope[0].read_bytes().count(0) == 0


def test_large_files_are_emptied(mailhost):
    large_body = b"Subject: large\r\n\r\n" + b"0123456789abcdef\r\n" * 12000
    send_held_body(mailhost, large_body)
    assert max(path.stat().st_size for path in spare_files(mailhost)) < 128 * 1024
    assert all(path.read_bytes().count(0) == path.stat().st_size
               for path in spare_files(mailhost))


def spare_sizes(host):
    """Return the size of each spare file, leaving out one that queued
    renames back into use meanwhile."""
    sizes = {}
    for path in spare_files(host):
        try:
            sizes[path] = path.stat().st_size
        except FileNotFoundError:
            pass
    return sizes


def has_unwritten_extent(path):
    """Return whether filefrag maps an unwritten extent in PATH, or None
    when it cannot map the file."""
    result = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True)
    if result.returncode != 0 or "extent" not in result.stdout:
        return None
    return "unwritten" in result.stdout


def test_small_spares_keep_written_blocks(mailhost):
    """Zeros are written over a file of up to 16 KB, so its blocks stay
    written extents. A larger one is zeroed with FALLOC_FL_ZERO_RANGE and
    its blocks become unwritten extents."""
    send_held(mailhost, 3)
    send_held_body(mailhost, b"Subject: long\r\n\r\n" + b"0123456789abcdef\r\n" * 4000)

    # The data file of the long message becomes a spare just after its
    # removal is logged.
    deadline = time.monotonic() + 10
    while True:
        sizes = spare_sizes(mailhost)
        large = [path for path, size in sizes.items() if size > 16 * 1024]
        if large or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    small = [path for path, size in sizes.items() if 0 < size <= 16 * 1024]
    assert small
    assert large
    assert all(path.read_bytes() == bytes(sizes[path]) for path in small + large)

    small_unwritten = [has_unwritten_extent(path) for path in small]
    large_unwritten = [has_unwritten_extent(path) for path in large]
    if None in small_unwritten + large_unwritten:
        pytest.skip("filefrag cannot map the spool's files on this file system")
    assert not any(small_unwritten)
    assert all(large_unwritten)


def send_held_body(host, body):
    with host.smtp() as client:
        assert client.sendmail("sender@client.example.test", ["demo@example.test"], body) == {}
    host.wait_for_messages("demo@example.test", 1)
    assert wait_removed(host, 1)


def test_sendmail_gets_an_emptied_spare_file(mailhost):
    long_body = b"Subject: long\r\n\r\n" + b"0123456789abcdef\r\n" * 4000
    with mailhost.smtp() as client:
        assert client.sendmail("sender@client.example.test", ["demo@example.test"],
                               long_body) == {}
    mailhost.wait_for_messages("demo@example.test", 1)
    assert wait_removed(mailhost, 1)

    result = mailhost.run("sendmail", "-f", "root@mail.example.test", "demo@example.test",
                          input=b"Subject: local\n\nfrom sendmail\n")
    assert result.returncode == 0, result.stderr
    messages = mailhost.wait_for_messages("demo@example.test", 2)
    local = [m for m in messages if b"Subject: local" in m]
    assert len(local) == 1
    assert local[0].endswith(b"\n\nfrom sendmail\n")


def test_spare_files_can_be_turned_off(make_mailhost):
    host = make_mailhost(queue_spare_files="0")
    send_held(host, 3)
    assert spare_files(host) == []


def test_spare_files_are_capped(make_mailhost):
    host = make_mailhost(queue_spare_files="3")
    send_held(host, 4)
    assert len(spare_files(host)) == 3


def test_data_file_still_open_is_not_reused(mailhost):
    client = QueueClient(mailhost.settings["queued_socket"])
    queue_id, kept_fd = client.new()
    text = b"Subject: kept\n\nhello\n"
    os.write(kept_fd, text)
    msg_type, reply, _ = client.request("COMMIT", [
        ("id", queue_id), ("sender", ""), ("rcpt", "demo@example.test"),
        ("size", str(len(text)))])
    assert msg_type == "COMMIT-OK", reply
    mailhost.wait_for_messages("demo@example.test", 1)
    assert wait_removed(mailhost, 1)

    # The envelope became a spare file; the data file, still open here,
    # was removed.
    inode = os.fstat(kept_fd).st_ino
    assert os.fstat(kept_fd).st_nlink == 0
    assert inode not in {path.stat().st_ino for path in spare_files(mailhost)}
    os.close(kept_fd)
    client.close()


def test_start_up_empties_spare_files_and_drops_strangers(mailhost):
    send(mailhost, 1)
    mailhost.wait_for_messages("demo@example.test", 1)
    assert wait_removed(mailhost, 1)
    mailhost.stop("queued")

    spare = mailhost.dir / "spool" / "spare"
    owner = spare.stat()
    for name, text in (("notanumber", b"left by someone\n"), ("77", b"old message text\n")):
        (spare / name).write_bytes(text)
        os.chown(spare / name, owner.st_uid, owner.st_gid)
    mailhost.start("queued")

    names = sorted(path.name for path in spare.iterdir())
    assert "notanumber" not in names
    assert "77" in names
    assert all(path.stat().st_size == 0 for path in spare.iterdir())

    # The pool works after the restart.
    send(mailhost, 2)
    mailhost.wait_for_messages("demo@example.test", 3)


def test_size_checked_against_written_bytes(mailhost):
    """A reused file is longer than the new text: the announced size must
    still match what the client wrote, not the file's length."""
    long_body = b"Subject: long\r\n\r\n" + b"0123456789abcdef\r\n" * 4000
    send_held_body(mailhost, long_body)

    client = QueueClient(mailhost.settings["queued_socket"])
    queue_id, fd = client.new()
    os.write(fd, b"Subject: short\n\nbody\n")
    os.close(fd)
    msg_type, reply, _ = client.request("COMMIT", [
        ("id", queue_id), ("sender", "alice@example.test"),
        ("rcpt", "bob@example.test"), ("size", "9999")])
    assert msg_type == "COMMIT-FAIL"
    assert dict(reply)["reason"] == "size mismatch: 9999 bytes announced, 21 written"
