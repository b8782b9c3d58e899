"""Limits that keep one local user from starving queued: uncommitted
queue files and connections per user, the global file limit, the pause
after a failed accept, unread replies, and the descriptor limit."""

import os
import resource
import socket
import struct
import time

import pytest

from test_queue_ipc import Nobody, QueueClient, as_nobody, message

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def queued_pid(mailhost):
    return mailhost.procs["queued"].pid


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_ids(pid, key):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (key, pid))


def descriptor_limits(pid):
    for line in open("/proc/%d/limits" % pid):
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no descriptor limit for pid %d" % pid)


def lower_descriptor_limit(pid, limit):
    """Set PID's RLIMIT_NOFILE to LIMIT. Root may lack CAP_SYS_RESOURCE
    (in a container), so a child with PID's uid and gid sets it."""
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.setgid(process_ids(pid, "Gid"))
            os.setuid(process_ids(pid, "Uid"))
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.WEXITSTATUS(status) == 0, "cannot lower the descriptor limit of pid %d" % pid


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def open_files(hold, path, connections, requests):
    """Send REQUESTS NEW on each of CONNECTIONS connections, keeping every
    file. Returns the NEW-OK count and the distinct NEW-FAIL reasons."""
    accepted, reasons = 0, set()
    for _ in range(connections):
        client = QueueClient(path)
        hold.append(client)
        for _ in range(requests):
            msg_type, fields, fd = client.request("NEW")
            if fd is not None:
                hold.append(os.fdopen(fd, "wb"))
            if msg_type == "NEW-OK":
                accepted += 1
            else:
                reasons.add((msg_type, dict(fields).get("reason")))
    return accepted, sorted(reasons)


def test_new_limit_per_user(mailhost):
    # queue_uncommitted_user_limit is 20 by default.
    child = Nobody(open_files, mailhost.settings["queued_socket"], 4, 30)
    try:
        accepted, reasons = child.result()
        assert accepted == 20
        assert reasons == [("NEW-FAIL", "too many uncommitted queue files for this user "
                                        "(queue_uncommitted_user_limit)")]

        # smtpd and root are not limited per user while nobody holds its files.
        with mailhost.smtp() as smtp:
            smtp.sendmail("alice@example.test", ["demo@example.test"],
                          message("during limit").decode())
        assert len(mailhost.wait_for_messages("demo@example.test", 1)) == 1
        result = mailhost.run("sendmail", "bob@example.test", input=message("root sendmail"))
        assert result.returncode == 0, result.stderr
        assert len(mailhost.wait_for_messages("bob@example.test", 1)) == 1
    finally:
        child.release()

    # 100 rejected NEW requests, one log line (the rest are counted).
    assert mailhost.log().count("NEW from uid 65534 rejected") == 1
    # The files of the closed connections are removed and counted back.
    accepted, _ = as_nobody(open_files, mailhost.settings["queued_socket"], 1, 5)
    assert accepted == 5


@pytest.mark.slow
def test_repeated_rejection_counted(mailhost):
    accepted, _ = as_nobody(open_files, mailhost.settings["queued_socket"], 1, 25)
    assert accepted == 20
    # The five rejections log one line now and the count of the other
    # four when the 10-second interval ends.
    assert mailhost.wait_for_log(
        r"NEW from uid 65534 rejected: too many uncommitted queue files for this user "
        r"\(queue_uncommitted_user_limit\) \(repeated 4 more times in 10 seconds\)", timeout=15)
    assert mailhost.log().count("NEW from uid 65534 rejected") == 2


def test_new_limit_global(make_mailhost):
    mailhost = make_mailhost(queue_uncommitted_limit=5)
    queue = QueueClient(mailhost.settings["queued_socket"])
    ids = []
    for _ in range(5):
        queue_id, fd = queue.new()
        os.close(fd)
        ids.append(queue_id)
    msg_type, fields, fd = queue.request("NEW")
    assert fd is None
    assert msg_type == "NEW-FAIL"
    assert dict(fields)["reason"] == "too many uncommitted queue files in queued (queue_uncommitted_limit)"

    queue.send("ABORT", [("id", ids[0])])
    queue_id, fd = queue.new()
    os.close(fd)
    queue.close()


def open_connections(hold, path, count):
    """Open COUNT connections and send LIST on each. Returns the number
    that got a reply."""
    answered = 0
    for _ in range(count):
        client = QueueClient(path)
        client.sock.settimeout(5)
        hold.append(client)
        try:
            client.list()
            answered += 1
        except (ConnectionError, OSError):
            pass
    return answered


def test_connection_limit_per_user(make_mailhost):
    mailhost = make_mailhost(queue_connection_user_limit=3)
    child = Nobody(open_connections, mailhost.settings["queued_socket"], 6)
    try:
        assert child.result() == 3
        root = QueueClient(mailhost.settings["queued_socket"])
        assert root.list() == []
        root.close()
    finally:
        child.release()
    assert mailhost.log().count(
        "connection from uid 65534 rejected: queue_connection_user_limit reached") == 1


def test_accept_pauses_when_out_of_descriptors(mailhost):
    pid = queued_pid(mailhost)
    in_use = len(os.listdir("/proc/%d/fd" % pid))
    lower_descriptor_limit(pid, in_use + 5)
    # Root has no per-user limit, so these use up queued's descriptors.
    clients = [QueueClient(mailhost.settings["queued_socket"]) for _ in range(30)]
    try:
        assert mailhost.wait_for_log(r"accept on queued_socket")
        before = cpu_seconds(pid)
        time.sleep(2)
        assert cpu_seconds(pid) - before < 0.5
        assert mailhost.log().count("accept on queued_socket") == 1
        assert "accept on queued_socket failed: Too many open files" in mailhost.log()
    finally:
        for client in clients:
            client.close()

    # With the descriptors back, queued accepts again after its pause.
    deadline = time.monotonic() + 10
    while True:
        client = QueueClient(mailhost.settings["queued_socket"])
        client.sock.settimeout(3)
        try:
            assert client.list() == []
            break
        except (ConnectionError, OSError):
            assert time.monotonic() < deadline, "queued does not accept after the pause"
        finally:
            client.close()


def test_descriptor_limit_raised(make_mailhost):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 512:
        pytest.skip("hard descriptor limit %d is too low to lower the soft one" % hard)
    mailhost = make_mailhost(start=False)
    mailhost.newaliases()
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        mailhost.start("queued")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert descriptor_limits(queued_pid(mailhost)) == (hard, hard)
    assert mailhost.wait_for_log(r"queued.*started: .*descriptor limit %d" % hard)


def flood_list(hold, path, frames, max_seconds):
    """Send up to FRAMES LIST requests without reading a reply. Returns
    the number sent before queued closed the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(max_seconds)
    sock.connect(path)
    hold.append(sock)
    body = b"LIST\n"
    batch = (struct.pack("!II", len(body), 0) + body) * 100
    deadline = time.monotonic() + max_seconds
    sent = 0
    try:
        while sent < frames and time.monotonic() < deadline:
            sock.sendall(batch)
            sent += 100
    except OSError:
        pass
    return sent


def test_unread_replies_drop_client(mailhost):
    mailhost.stop("deliverd")
    queue = QueueClient(mailhost.settings["queued_socket"])
    rcpts = ["user%03d@example.test" % i for i in range(200)]
    for i in range(10):
        msg_type, _, _ = queue.submit("alice@example.test", rcpts, message("listed %d" % i))
        assert msg_type == "COMMIT-OK"
    pid = queued_pid(mailhost)
    before = rss_kib(pid)

    # Each LIST reply is about 90 KB here, so 3000 unread ones would be
    # 270 MB.
    child = Nobody(flood_list, mailhost.settings["queued_socket"], 3000, 20)
    try:
        child.result()
        time.sleep(1)
        assert rss_kib(pid) - before < 50 * 1024
        assert mailhost.wait_for_log(r"client uid 65534 dropped: it does not read its replies")
    finally:
        child.release()

    assert len(queue.list()) == 10
    queue.close()
