"""A local submitter can rewrite its message after filterd has judged it.

queued hands the submitting client a read-write descriptor of the spool
data file (NEW-OK) and keeps using that same file after COMMIT. With
smtpd_filter on, the commit waits for filterd, which scans the file
through a read-only descriptor of its own. The client's descriptor
stays valid. An ordinary user that talks to queued_socket directly, as
sendmail does, can commit a clean message, let clamd pass it, and then
write a virus into the committed file. The message is then delivered in
a form that was never scanned. The same write can change a message
after filterd added its DKIM signature.
"""

import os

import pytest

from scanners import EICAR, Clamd
from test_queue_ipc import Nobody, QueueClient

REMOTE = "someone@remote.test"
SENDER = "nobody@example.test"


@pytest.fixture(scope="module")
def clamd():
    server = Clamd()
    server.start()
    yield server
    server.destroy()


def commit_then_rewrite(hold, socket_path, message, replacement):
    """Commit MESSAGE as the current user, then overwrite its data file
    with REPLACEMENT through the descriptor from NEW-OK. Return the queue
    id and the COMMIT reply type."""
    client = QueueClient(socket_path)
    hold.append(client)
    queue_id, fd = client.new()
    os.write(fd, message)
    fields = [("id", queue_id), ("sender", SENDER), ("rcpt", REMOTE),
              ("size", str(len(message))), ("protocol", "LOCAL")]
    reply_type, _, _ = client.request("COMMIT", fields)
    if reply_type == "COMMIT-OK":
        try:
            os.pwrite(fd, replacement, 0)
        except OSError:
            pass  # A fixed queued may reject the write.
    os.close(fd)
    return queue_id, reply_type


def spool_data(host, queue_id):
    """Return the contents of the data file of QUEUE_ID, wherever it is in the spool."""
    found = [p for p in (host.dir / "spool").rglob(queue_id) if p.is_file()
             and b"Subject:" in p.read_bytes()[:4096]]
    assert len(found) == 1, found
    return found[0].read_bytes()


@pytest.mark.xfail(strict=True, reason="the submitter keeps a writable descriptor of the committed file")
def test_committed_file_cannot_be_rewritten(make_mailhost, clamd):
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="clamav", clamd_socket=clamd.socket)
    host.start("filterd")
    clean = b"From: <%s>\nTo: <%s>\nSubject: scanned\n\n%s\n" % (
        SENDER.encode(), REMOTE.encode(), b"x" * len(EICAR))
    infected = clean.replace(b"x" * len(EICAR), EICAR)

    child = Nobody(commit_then_rewrite, host.settings["queued_socket"], clean, infected)
    try:
        queue_id, reply_type = child.result()
    finally:
        child.release()

    assert reply_type == "COMMIT-OK", host.log()
    assert host.wait_for_log(r"%s: filterd action=accept" % queue_id)
    assert spool_data(host, queue_id) == clean
