"""Barriers of a mailbox worker's batch, watched with strace. A batch
whose Maildirs are on two file systems must sync both of them."""

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
