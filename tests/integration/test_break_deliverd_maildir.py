"""Barriers of a mailbox worker's batch, watched with strace. A small
batch syncs each file and folder, and a batch of many files shares one
syncfs per barrier. Such a batch with Maildirs on two file systems must
sync both of them, and a barrier shared by two batches must come before
the first one's results. A second worker of the same owner takes only
the overflow of the first, so that batches stay whole. A delivered file
is on disk, link count included, when its 250 goes out, which a copy of
an ext4 image without a journal shows."""

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import VIRTUAL_USERS
from test_deliverd_lmtp import lmtp, send_data
from test_deliverd_pool import deliver, delivering_pids

SYSCALL = re.compile(r'^(\w+)\((.*)\)\s+= (-?\d+)')

# Batches of at least this many files share one syncfs per barrier in deliverd.
SYNCFS_MIN_FILES = 32
FAN_OUT = ["fan%02d@example.test" % i for i in range(SYNCFS_MIN_FILES)]


def barriers_before_and_after_rename(trace, tmp_prefix, device):
    """Count the fsync and syncfs calls that reach DEVICE before and after
    the rename of the file under TMP_PREFIX. None if it was not renamed."""
    paths = {}
    before = after = 0
    renamed = False
    for line in trace.splitlines():
        match = SYSCALL.match(line)
        if match is None:
            continue
        name, args, result = match.group(1), match.group(2), int(match.group(3))
        if name == "openat" and result >= 0:
            paths[result] = args.split('"')[1]
        elif name == "rename" and args.startswith('"' + tmp_prefix):
            renamed = True
        elif name in ("fsync", "syncfs"):
            path = paths.get(int(args))
            if path is not None and os.stat(os.path.dirname(path)).st_dev == device:
                if renamed:
                    after += 1
                else:
                    before += 1
    return (before, after) if renamed else None


def skip_unless_traceable():
    if os.geteuid() != 0:
        pytest.skip("needs root to trace the mailbox worker")
    if shutil.which("strace") is None:
        pytest.skip("needs strace")


def fan_out_host(make_mailhost, homes=None, processes=1):
    """Start a host whose virtual users of FAN_OUT and demo have homes and
    Maildirs, so that one mailbox worker delivers to all of them and
    creates no folder. HOMES maps an address to a home elsewhere, which
    the caller created. PROCESSES is deliverd_user_processes. Returns the
    host and the pid of the worker that delivered to demo."""
    host = make_mailhost(start=False, deliverd_user_processes=processes)
    host.write_users(dict(VIRTUAL_USERS, **{address: "fan-secret" for address in FAN_OUT}))
    vmail = pwd.getpwnam("_estafeta-vmail")
    for address in FAN_OUT + ["demo@example.test"]:
        home = host.dir / "mail" / address.split("@")[0]
        for folder in (home, home / "Maildir", home / "Maildir" / "cur",
                       home / "Maildir" / "new", home / "Maildir" / "tmp"):
            folder.mkdir(parents=True)
            os.chown(folder, vmail.pw_uid, vmail.pw_gid)
    users = host.dir / "etc" / "passwd-file"
    for address, home in (homes or {}).items():
        default = str(host.dir / "mail" / address.split("@")[0])
        users.write_text(users.read_text().replace(default + ":", home + ":"))
    host.newaliases()
    host.start()
    deliver(host, "demo@example.test", 1)
    return host, delivering_pids(host, "demo@example.test")[0]


def open_transaction(host, rcpts):
    """Return an LMTP client that has sent MAIL and a RCPT for each of RCPTS."""
    client = lmtp(host)
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    for rcpt in rcpts:
        assert client.docmd("RCPT TO:<%s>" % rcpt)[0] == 250
    return client


def finish_transaction(client, count):
    """Return the codes of the COUNT replies after the message, and close the session."""
    codes = [client.getreply()[0] for _ in range(count)]
    client.quit()
    return codes


def send_while_stopped(client, worker, subject):
    """Send the message of CLIENT's open transaction while WORKER is
    stopped, so that the session passes every request to the master
    before the worker reads any."""
    os.kill(worker, signal.SIGSTOP)
    try:
        assert send_data(client, b"Subject: %s\r\n\r\nbody\r\n" % subject)[0] == 354
        time.sleep(1)
    finally:
        os.kill(worker, signal.SIGCONT)


def trace_one_batch(host, worker, rcpts):
    """Deliver one message to RCPTS, which the stopped WORKER reads as one
    batch. Returns strace's output of its file calls."""
    client = open_transaction(host, rcpts)
    tracer = subprocess.Popen(
        ["strace", "-qq", "-p", str(worker), "-e", "trace=openat,rename,fsync,syncfs"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    send_while_stopped(client, worker, b"batch")
    codes = finish_transaction(client, len(rcpts))
    tracer.send_signal(signal.SIGINT)
    _, trace = tracer.communicate(timeout=10)
    assert codes == [250] * len(rcpts), trace
    return trace


def traced_calls(trace):
    """The worker's calls in order, as (name, argument text, result)."""
    events = []
    for line in trace.splitlines():
        match = SYSCALL.match(line)
        if match is not None:
            events.append((match.group(1), match.group(2), int(match.group(3))))
    return events


def call_names(trace):
    """Return the names of the worker's calls in order."""
    return [name for name, _, _ in traced_calls(trace)]


def test_small_batch_fsyncs_each_file(make_mailhost):
    skip_unless_traceable()
    host, worker = fan_out_host(make_mailhost)

    trace = trace_one_batch(host, worker, FAN_OUT[:2])

    names = call_names(trace)
    assert names.count("syncfs") == 0, trace
    # Two files, then the two new/ folders they were renamed into.
    assert names.count("fsync") == 4, trace
    assert names.count("rename") == 2, trace


def test_second_worker_takes_only_overflow(make_mailhost):
    host, first = fan_out_host(make_mailhost, processes=2)

    # The stopped first worker takes 16 of 20 requests (the spawn depth),
    # and a second worker starts for the other 4.
    client = open_transaction(host, FAN_OUT[:20])
    send_while_stopped(client, first, b"overflow")
    assert finish_transaction(client, 20) == [250] * 20
    overflow_pids = {pid for address in FAN_OUT[:20] for pid in delivering_pids(host, address)}
    assert len(overflow_pids) == 2, overflow_pids

    # With both workers idle, 12 requests at once stay below the depth
    # and all go to one worker.
    client = open_transaction(host, FAN_OUT[20:32])
    assert send_data(client, b"Subject: together\r\n\r\nbody\r\n")[0] == 354
    assert finish_transaction(client, 12) == [250] * 12
    batch_pids = {pid for address in FAN_OUT[20:32] for pid in delivering_pids(host, address)}
    assert len(batch_pids) == 1, batch_pids
    assert batch_pids < overflow_pids


def link_count(image, inode):
    """The link count that debugfs reads for INODE in the ext4 IMAGE."""
    stat = subprocess.run(["debugfs", "-R", "stat <%d>" % inode, image],
                          capture_output=True, text=True, check=True).stdout
    match = re.search(r"Links: (\d+)", stat)
    assert match, stat
    return int(match.group(1))


def deliver_and_copy_image(make_mailhost, work):
    """Mount an ext4 image without a journal under WORK, deliver one
    message into a Maildir on it and copy the image as soon as the 250
    arrives. Returns the copy's path and the delivered file's inode."""
    image, crashed, mount_point = work + "/ext4.img", work + "/crashed.img", work + "/mnt"
    subprocess.run(["truncate", "-s", "64M", image], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal,^metadata_csum", image],
                   check=True)
    loop = subprocess.run(["losetup", "--show", "-f", image], capture_output=True, text=True)
    if loop.returncode != 0:
        pytest.skip("no loop device: " + loop.stderr.strip())
    device = loop.stdout.strip()
    os.mkdir(mount_point)
    host = None
    try:
        subprocess.run(["mount", device, mount_point], check=True)
        os.chmod(mount_point, 0o755)
        vmail = pwd.getpwnam("_estafeta-vmail")
        home = mount_point + "/fan00"
        for folder in (home, home + "/Maildir", home + "/Maildir/cur", home + "/Maildir/new",
                       home + "/Maildir/tmp"):
            os.mkdir(folder)
            os.chown(folder, vmail.pw_uid, vmail.pw_gid)
        host, _ = fan_out_host(make_mailhost, {FAN_OUT[0]: home})
        os.sync()

        client = open_transaction(host, FAN_OUT[:1])
        assert send_data(client, b"Subject: durable\r\n\r\nbody\r\n")[0] == 354
        code = client.getreply()[0]
        shutil.copyfile(image, crashed)
        client.quit()
        assert code == 250
        names = os.listdir(home + "/Maildir/new")
        assert len(names) == 1, names
        return crashed, os.stat(home + "/Maildir/new/" + names[0]).st_ino
    finally:
        if host is not None:
            host.stop()
        if subprocess.run(["umount", mount_point]).returncode != 0:
            subprocess.run(["umount", "-l", mount_point])
        subprocess.run(["losetup", "-d", device])


def test_delivery_survives_crash_without_journal(make_mailhost):
    # A copy of the image taken right after the 250 contains what the
    # loop device had written, which is what a crash would leave. On
    # ext4 without a journal, an fsync of new/ does not write the
    # file's inode, so the file must have its link from the first
    # barrier on.
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a file system image")
    for tool in ("mkfs.ext4", "losetup", "debugfs", "e2fsck"):
        if shutil.which(tool) is None:
            pytest.skip("needs " + tool)
    work = tempfile.mkdtemp(prefix="estafeta-test-")
    try:
        os.chmod(work, 0o755)
        crashed, inode = deliver_and_copy_image(make_mailhost, work)
        assert link_count(crashed, inode) >= 1
        fsck = subprocess.run(["e2fsck", "-fn", crashed], capture_output=True, text=True)
        assert "deleted/unused inode" not in fsck.stdout, fsck.stdout
    finally:
        shutil.rmtree(work)


def test_large_batch_shares_syncfs(make_mailhost):
    skip_unless_traceable()
    host, worker = fan_out_host(make_mailhost)

    trace = trace_one_batch(host, worker, FAN_OUT)

    names = call_names(trace)
    # One barrier for the files, one for the folders.
    assert names.count("syncfs") == 2, trace
    assert names.count("fsync") == 0, trace
    assert names.count("rename") == SYNCFS_MIN_FILES, trace
    for address in FAN_OUT:
        assert len(host.messages(address)) == 1, address


def test_batch_on_two_file_systems_syncs_both(make_mailhost):
    # alice's Maildir is on tmpfs, the others' on the file system of the
    # host directory. Their deliveries share one batch with alice's
    # first, and syncfs on alice's file must not stand in for the
    # others' barriers.
    skip_unless_traceable()
    if not os.path.isdir("/dev/shm"):
        pytest.skip("needs a tmpfs at /dev/shm")
    shm = tempfile.mkdtemp(prefix="estafeta-test-", dir="/dev/shm")
    try:
        os.chmod(shm, 0o755)
        vmail = pwd.getpwnam("_estafeta-vmail")
        os.mkdir(shm + "/alice")
        os.chown(shm + "/alice", vmail.pw_uid, vmail.pw_gid)
        host, worker = fan_out_host(make_mailhost, {"alice@example.test": shm + "/alice"})
        if os.stat(shm).st_dev == os.stat(host.dir).st_dev:
            pytest.skip("/dev/shm is on the file system of the host directory")

        trace = trace_one_batch(host, worker, ["alice@example.test"] + FAN_OUT[:-1])

        last_tmp = str(host.maildir(FAN_OUT[-2]) / "tmp") + "/"
        counts = barriers_before_and_after_rename(trace, last_tmp, os.stat(host.dir).st_dev)
    finally:
        shutil.rmtree(shm, ignore_errors=True)

    assert counts is not None, trace
    before, after = counts
    assert before >= 1, trace
    assert after >= 1, trace
    assert call_names(trace).count("fsync") == 0, trace


def test_shared_barrier_precedes_results(make_mailhost):
    # Two batches of SYNCFS_MIN_FILES deliveries. The second batch
    # reaches the worker while it renames the first (strace slows each
    # rename), so one syncfs serves as the first batch's folder barrier
    # and the second batch's file barrier. No result may leave before a
    # barrier that follows the renames it reports.
    skip_unless_traceable()
    host, worker = fan_out_host(make_mailhost)

    first = open_transaction(host, FAN_OUT)
    second = open_transaction(host, FAN_OUT)
    os.kill(worker, signal.SIGSTOP)
    tracer = subprocess.Popen(
        ["strace", "-qq", "-p", str(worker),
         "-e", "trace=openat,rename,fsync,syncfs,sendmsg",
         "-e", "inject=rename:delay_exit=30000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert send_data(first, b"Subject: first\r\n\r\nbody\r\n")[0] == 354
        time.sleep(0.5)
    finally:
        os.kill(worker, signal.SIGCONT)
    # The worker now writes, syncs and renames the first batch.
    time.sleep(0.2)
    assert send_data(second, b"Subject: second\r\n\r\nbody\r\n")[0] == 354
    assert finish_transaction(first, len(FAN_OUT)) == [250] * len(FAN_OUT)
    assert finish_transaction(second, len(FAN_OUT)) == [250] * len(FAN_OUT)
    tracer.send_signal(signal.SIGINT)
    _, trace = tracer.communicate(timeout=10)

    for address in FAN_OUT:
        assert len(host.messages(address)) == 2, address
    events = traced_calls(trace)
    renamed = created = 0
    shared = False
    for name, args, result in events:
        if name == "rename" and result == 0:
            renamed += 1
        elif name == "openat" and "/tmp/" in args and "O_CREAT" in args and result >= 0:
            created += 1
        elif name in ("fsync", "syncfs"):
            shared = shared or (renamed > 0 and created > 0)
            renamed = created = 0
        elif name == "sendmsg":
            assert renamed == 0, "a result left before the barrier after its rename:\n" + trace
    assert shared, "no barrier served two batches:\n" + trace
