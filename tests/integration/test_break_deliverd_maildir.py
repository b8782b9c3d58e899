"""Barriers of a mailbox worker's batch, watched with strace. A batch
whose Maildirs are on two file systems must sync both of them, and a
barrier shared by two batches must come before the first one's results."""

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from test_deliverd_lmtp import lmtp, send_data
from test_deliverd_pool import deliver, delivering_pids

SYSCALL = re.compile(r'^(\w+)\((.*)\)\s+= (-?\d+)')


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


def test_batch_on_two_file_systems_syncs_both(make_mailhost):
    # alice's Maildir is on tmpfs, demo's on the file system of the host
    # directory. Their deliveries share one batch with alice's first, and
    # syncfs on alice's file must not stand in for demo's barriers.
    if os.geteuid() != 0:
        pytest.skip("needs root to trace the mailbox worker")
    if shutil.which("strace") is None or not os.path.isdir("/dev/shm"):
        pytest.skip("needs strace and a tmpfs at /dev/shm")
    host = make_mailhost(start=False)
    shm = tempfile.mkdtemp(prefix="estafeta-test-", dir="/dev/shm")
    try:
        if os.stat(shm).st_dev == os.stat(host.dir).st_dev:
            pytest.skip("/dev/shm is on the file system of the host directory")
        os.chmod(shm, 0o755)
        vmail = pwd.getpwnam("_estafeta-vmail")
        users = host.dir / "etc" / "passwd-file"
        users.write_text(users.read_text().replace(str(host.dir / "mail" / "alice"),
                                                   shm + "/alice"))
        demo_home = host.dir / "mail" / "demo"
        for home in (shm + "/alice", str(demo_home)):
            os.mkdir(home)
            os.chown(home, vmail.pw_uid, vmail.pw_gid)
        host.start()
        deliver(host, "demo@example.test", 1)
        worker = delivering_pids(host, "demo@example.test")[0]

        clients = []
        for rcpt in ("alice@example.test", "demo@example.test"):
            client = lmtp(host)
            assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
            assert client.docmd("RCPT TO:<%s>" % rcpt)[0] == 250
            clients.append(client)
        tracer = subprocess.Popen(
            ["strace", "-qq", "-p", str(worker), "-e", "trace=openat,rename,fsync,syncfs"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)

        # Both requests wait on the channel of the stopped worker, so it
        # reads them as one batch.
        os.kill(worker, signal.SIGSTOP)
        try:
            for client in clients:
                assert send_data(client, b"Subject: batch\r\n\r\nbody\r\n")[0] == 354
                time.sleep(0.2)
        finally:
            os.kill(worker, signal.SIGCONT)
        for client in clients:
            assert client.getreply()[0] == 250
            client.quit()
        tracer.send_signal(signal.SIGINT)
        _, trace = tracer.communicate(timeout=10)

        demo_tmp = str(demo_home / "Maildir" / "tmp") + "/"
        counts = barriers_before_and_after_rename(trace, demo_tmp, os.stat(host.dir).st_dev)
    finally:
        shutil.rmtree(shm, ignore_errors=True)

    assert counts is not None, trace
    before, after = counts
    assert before >= 1, trace
    assert after >= 1, trace


def client_before_data(host, rcpt):
    client = lmtp(host)
    assert client.docmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert client.docmd("RCPT TO:<%s>" % rcpt)[0] == 250
    return client


def traced_calls(trace):
    """The worker's calls in order, as (name, argument text, result)."""
    events = []
    for line in trace.splitlines():
        match = SYSCALL.match(line)
        if match is not None:
            events.append((match.group(1), match.group(2), int(match.group(3))))
    return events


def test_shared_barrier_precedes_results(make_mailhost):
    # Two batches of two deliveries. The second batch reaches the worker
    # while it renames the first (strace slows each rename), so one
    # syncfs serves as the first batch's folder barrier and the second
    # batch's file barrier. No result may leave before a barrier that
    # follows the renames it reports.
    if os.geteuid() != 0:
        pytest.skip("needs root to trace the mailbox worker")
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    host = make_mailhost()
    # The first delivery creates the home in a one-shot worker; the
    # second starts the mailbox worker.
    deliver(host, "demo@example.test", 2)
    worker = [pid for pid in delivering_pids(host, "demo@example.test")
              if os.path.exists("/proc/%d" % pid)][0]

    first = [client_before_data(host, "demo@example.test") for _ in range(2)]
    second = [client_before_data(host, "demo@example.test") for _ in range(2)]
    os.kill(worker, signal.SIGSTOP)
    tracer = subprocess.Popen(
        ["strace", "-qq", "-p", str(worker),
         "-e", "trace=openat,rename,fsync,syncfs,sendmsg",
         "-e", "inject=rename:delay_exit=400000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        for client in first:
            assert send_data(client, b"Subject: first\r\n\r\nbody\r\n")[0] == 354
        time.sleep(0.3)
    finally:
        os.kill(worker, signal.SIGCONT)
    # The worker now writes, syncs and renames the first batch.
    time.sleep(0.2)
    for client in second:
        assert send_data(client, b"Subject: second\r\n\r\nbody\r\n")[0] == 354
    for client in first + second:
        assert client.getreply()[0] == 250
        client.quit()
    tracer.send_signal(signal.SIGINT)
    _, trace = tracer.communicate(timeout=10)

    assert len(host.messages("demo@example.test")) == 6
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
