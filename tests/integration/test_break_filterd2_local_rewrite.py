"""A local submitter could rewrite its message after filterd had judged it.

queued hands the submitting client a read-write descriptor of the spool
data file (NEW-OK) and keeps using that same file after COMMIT. With
smtpd_filter on, the commit waits for filterd, which scans the file
through a read-only descriptor of its own. The client's descriptor
stayed valid. An ordinary user that talks to queued_socket directly, as
sendmail does, could commit a clean message, let clamd pass it, and then
write a virus into the committed file. The message was then delivered in
a form that was never scanned. The same write could change a message
after filterd added its DKIM signature.

Fixed: at COMMIT from any uid but root and smtpd's, queued reopens the
data file and requests a write lease on it, which the kernel grants
only if no other open file refers to the file. A client that still has
its descriptor open, in any process, gets COMMIT-FAIL.
"""

import os

import pytest

from scanners import EICAR, Clamd
from test_queue_ipc import Nobody, QueueClient

REMOTE = "someone@remote.test"
SENDER = "nobody@example.test"
CLEAN = b"From: <%s>\nTo: <%s>\nSubject: scanned\n\n%s\n" % (
    SENDER.encode(), REMOTE.encode(), b"x" * len(EICAR))
INFECTED = CLEAN.replace(b"x" * len(EICAR), EICAR)


@pytest.fixture(scope="module")
def clamd():
    server = Clamd()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def host(make_mailhost, clamd):
    mailhost = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="clamav",
                             clamd_socket=clamd.socket)
    mailhost.start("filterd")
    return mailhost


def commit_fields(queue_id, message):
    return [("id", queue_id), ("sender", SENDER), ("rcpt", REMOTE),
            ("size", str(len(message))), ("protocol", "LOCAL")]


def commit_then_rewrite(hold, socket_path):
    """Commit CLEAN while still holding the descriptor from NEW-OK, then
    try to overwrite the file with INFECTED. Return the queue id and the
    COMMIT reply type and fields."""
    client = QueueClient(socket_path)
    hold.append(client)
    queue_id, fd = client.new()
    os.write(fd, CLEAN)
    reply_type, fields, _ = client.request("COMMIT", commit_fields(queue_id, CLEAN))
    try:
        os.pwrite(fd, INFECTED, 0)
    except OSError:
        pass
    os.close(fd)
    return queue_id, reply_type, fields


def commit_with_copy_elsewhere(hold, socket_path):
    """Close the descriptor from NEW-OK after a forked child got a copy
    of it, then commit. Return the queue id and the COMMIT reply type and
    fields."""
    client = QueueClient(socket_path)
    hold.append(client)
    queue_id, fd = client.new()
    os.write(fd, CLEAN)
    release_read, release_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(release_write)
        os.read(release_read, 1)
        os._exit(0)
    os.close(release_read)
    os.close(fd)
    try:
        reply_type, fields, _ = client.request("COMMIT", commit_fields(queue_id, CLEAN))
    finally:
        os.close(release_write)
        os.waitpid(child, 0)
    return queue_id, reply_type, fields


def commit_closed(hold, socket_path):
    """Write CLEAN, close the descriptor, then commit, as sendmail does.
    Return the queue id and the COMMIT reply type."""
    client = QueueClient(socket_path)
    hold.append(client)
    queue_id, fd = client.new()
    os.write(fd, CLEAN)
    os.close(fd)
    reply_type, _, _ = client.request("COMMIT", commit_fields(queue_id, CLEAN))
    return queue_id, reply_type


def run_as_nobody(function, *args):
    child = Nobody(function, *args)
    try:
        return child.result()
    finally:
        child.release()


def spool_files(host, queue_id):
    """Return the spool files named QUEUE_ID."""
    return [p for p in (host.dir / "spool").rglob(queue_id) if p.is_file()]


def test_commit_with_open_descriptor_rejected(host):
    queue_id, reply_type, fields = run_as_nobody(commit_then_rewrite,
                                                 host.settings["queued_socket"])

    assert reply_type == "COMMIT-FAIL", host.log()
    assert "still open" in dict(fields).get("reason", ""), fields
    assert spool_files(host, queue_id) == []
    assert host.wait_for_log(r"%s: commit rejected, uid=65534: the queue file is still open"
                             % queue_id)
    assert "%s: filterd action" % queue_id not in host.log()


def test_commit_with_copy_in_child_rejected(host):
    queue_id, reply_type, fields = run_as_nobody(commit_with_copy_elsewhere,
                                                 host.settings["queued_socket"])

    assert reply_type == "COMMIT-FAIL", host.log()
    assert "still open" in dict(fields).get("reason", ""), fields
    assert spool_files(host, queue_id) == []


def test_commit_after_close_is_scanned(host):
    queue_id, reply_type = run_as_nobody(commit_closed, host.settings["queued_socket"])

    assert reply_type == "COMMIT-OK", host.log()
    assert host.wait_for_log(r"%s: filterd action=accept" % queue_id)
    data = [p.read_bytes() for p in spool_files(host, queue_id) if b"Subject:" in p.read_bytes()]
    assert data == [CLEAN]
