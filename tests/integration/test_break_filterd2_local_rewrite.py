"""A local submitter could rewrite its message after filterd had judged it.

queued hands the submitting client a read-write descriptor of the spool
data file (NEW-OK) and kept using that same file after COMMIT. With
smtpd_filter on, the commit waits for filterd, which scans the file
through a read-only descriptor of its own. The client's descriptor
stayed valid. An ordinary user that talks to queued_socket directly, as
sendmail does, could commit a clean message, let clamd pass it, and then
write a virus into the committed file. The message was then delivered in
a form that was never scanned. The same write could change a message
after filterd added its DKIM signature.

Fixed: at COMMIT from any uid but root and smtpd's, queued copies the
message into a new file that no client has seen, renames it over the
client's file and never reuses the client's file. Whatever the client
kept (a descriptor, a shared mapping, pages pinned by io_uring on a
tmpfs spool) now reaches only the old file.
"""

import mmap
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from scanners import EICAR, Clamd
from test_queue_ipc import Nobody, QueueClient

REMOTE = "someone@remote.test"
SENDER = "nobody@example.test"
CLEAN = b"From: <%s>\nTo: <%s>\nSubject: scanned\n\n%s\n" % (
    SENDER.encode(), REMOTE.encode(), b"x" * len(EICAR))
INFECTED = CLEAN.replace(b"x" * len(EICAR), EICAR)
PIN_HELPER_SOURCE = Path(__file__).with_name("pin_pages.c")


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
    overwrite the file with INFECTED through it. Return the queue id and
    the COMMIT reply type."""
    client = QueueClient(socket_path)
    hold.append(client)
    queue_id, fd = client.new()
    os.write(fd, CLEAN)
    reply_type, _, _ = client.request("COMMIT", commit_fields(queue_id, CLEAN))
    os.pwrite(fd, INFECTED, 0)
    os.close(fd)
    return queue_id, reply_type


def commit_then_rewrite_in_child(hold, socket_path):
    """Give a forked child a copy of the descriptor from NEW-OK, close
    ours and commit CLEAN; the child then overwrites the file with
    INFECTED. Return the queue id and the COMMIT reply type."""
    client = QueueClient(socket_path)
    hold.append(client)
    queue_id, fd = client.new()
    os.write(fd, CLEAN)
    go_read, go_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(go_write)
        os.read(go_read, 1)
        os.pwrite(fd, INFECTED, 0)
        os._exit(0)
    os.close(go_read)
    os.close(fd)
    try:
        reply_type, _, _ = client.request("COMMIT", commit_fields(queue_id, CLEAN))
    finally:
        os.write(go_write, b"x")
        os.close(go_write)
        os.waitpid(child, 0)
    return queue_id, reply_type


def commit_then_rewrite_mapping(hold, socket_path):
    """Map the file from NEW-OK shared and writable, close the descriptor
    and commit CLEAN, then overwrite the file through the mapping.
    Return the queue id and the COMMIT reply type."""
    client = QueueClient(socket_path)
    hold.append(client)
    queue_id, fd = client.new()
    os.write(fd, CLEAN)
    mapping = mmap.mmap(fd, len(CLEAN), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    os.close(fd)
    reply_type, _, _ = client.request("COMMIT", commit_fields(queue_id, CLEAN))
    mapping[:] = INFECTED
    mapping.close()
    return queue_id, reply_type


def commit_then_rewrite_pinned(hold, socket_path, helper):
    """Pin the pages of the file from NEW-OK with HELPER (pin_pages.c),
    which then has no open file of it, commit CLEAN, and let the helper
    write INFECTED into the pinned pages. Return the queue id, the COMMIT
    reply type and the helper's last line."""
    client = QueueClient(socket_path)
    hold.append(client)
    queue_id, fd = client.new()
    os.write(fd, CLEAN)
    os.dup2(fd, 3)
    os.close(fd)
    pinner = subprocess.Popen([helper, INFECTED.decode()], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, pass_fds=(3,))
    os.close(3)
    ready = pinner.stdout.readline().decode().strip()
    if ready != "READY":
        pinner.wait(10)
        return queue_id, None, ready
    reply_type, _, _ = client.request("COMMIT", commit_fields(queue_id, CLEAN))
    pinner.stdin.write(b"go\n")
    pinner.stdin.flush()
    outcome = pinner.stdout.readline().decode().strip()
    pinner.wait(10)
    return queue_id, reply_type, outcome


def run_as_nobody(function, *args):
    child = Nobody(function, *args)
    try:
        return child.result()
    finally:
        child.release()


def spool_data(spool, queue_id):
    """Return the contents of the data file of QUEUE_ID, wherever it is
    in SPOOL."""
    found = [p for p in Path(spool).rglob(queue_id) if p.is_file()
             and b"Subject:" in p.read_bytes()[:4096]]
    assert len(found) == 1, found
    return found[0].read_bytes()


@pytest.mark.parametrize("rewrite", [commit_then_rewrite, commit_then_rewrite_in_child,
                                     commit_then_rewrite_mapping],
                         ids=["descriptor", "child", "mapping"])
def test_write_after_commit_changes_nothing(host, rewrite):
    queue_id, reply_type = run_as_nobody(rewrite, host.settings["queued_socket"])

    assert reply_type == "COMMIT-OK", host.log()
    assert host.wait_for_log(r"%s: filterd action=accept" % queue_id)
    assert spool_data(host.dir / "spool", queue_id) == CLEAN


def test_pinned_pages_on_tmpfs_change_nothing(make_mailhost):
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    spool_parent = Path(tempfile.mkdtemp(prefix="estafeta-spool-", dir="/dev/shm"))
    os.chmod(spool_parent, 0o755)
    # The helper runs as uid nobody, which cannot enter pytest's tmp_path.
    helper = spool_parent / "pin_pages"
    try:
        subprocess.run(["cc", "-o", str(helper), str(PIN_HELPER_SOURCE)], check=True,
                       timeout=120)
        host = make_mailhost(queue_directory=str(spool_parent / "spool"))
        queue_id, reply_type, outcome = run_as_nobody(
            commit_then_rewrite_pinned, host.settings["queued_socket"], str(helper))
        if outcome == "UNSUPPORTED":
            pytest.skip("io_uring cannot pin pages here")

        assert reply_type == "COMMIT-OK", host.log()
        assert outcome.startswith("WROTE"), outcome
        assert spool_data(spool_parent / "spool", queue_id) == CLEAN
    finally:
        shutil.rmtree(spool_parent, ignore_errors=True)
