"""queued's socket protocol, driven with a raw client (lib/queue_proto.h).

QueueClient is also used by the other test_queue_* files.
"""

import fcntl
import os
import pickle
import select
import socket
import struct

import pytest

IPC_FLAG_FD = 1
NOBODY = 65534


class QueueClient:
    """A raw client of queued_socket: framed key=value messages with
    descriptor passing (lib/ipc.h)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(15)
        self.sock.connect(str(path))

    def send(self, msg_type, fields=()):
        body = (msg_type + "\n" + "".join("%s=%s\n" % kv for kv in fields)).encode()
        self.sock.sendall(struct.pack("!II", len(body), 0) + body)

    def _recv_exact(self, count, fds):
        data = b""
        while len(data) < count:
            chunk, new_fds, _, _ = socket.recv_fds(self.sock, count - len(data), 4)
            if not chunk:
                raise ConnectionError("queued closed the connection")
            fds.extend(new_fds)
            data += chunk
        return data

    def recv(self):
        """Return (type, [(key, value), ...], fd or None)."""
        fds = []
        length, flags = struct.unpack("!II", self._recv_exact(8, fds))
        body = self._recv_exact(length, fds).decode()
        lines = body.rstrip("\n").split("\n")
        fields = [tuple(line.split("=", 1)) for line in lines[1:]]
        fd = fds[0] if flags & IPC_FLAG_FD else None
        return lines[0], fields, fd

    def request(self, msg_type, fields=()):
        self.send(msg_type, fields)
        return self.recv()

    def new(self):
        msg_type, fields, fd = self.request("NEW")
        assert msg_type == "NEW-OK", fields
        return dict(fields)["id"], fd

    def submit(self, sender, rcpts, data, extra=(), protocol="LOCAL"):
        """Submit DATA (bytes, LF line ends); return the COMMIT reply.
        PROTOCOL None sends no protocol field."""
        queue_id, fd = self.new()
        os.write(fd, data)
        os.close(fd)
        fields = [("id", queue_id), ("sender", sender)]
        fields += [("rcpt", r) for r in rcpts]
        fields += [("size", str(len(data)))]
        if protocol is not None:
            fields += [("protocol", protocol)]
        fields += list(extra)
        msg_type, reply, _ = self.request("COMMIT", fields)
        return msg_type, dict(reply), queue_id

    def list(self):
        """LIST as a list of field lists, one per message."""
        self.send("LIST")
        entries = []
        while True:
            msg_type, fields, _ = self.recv()
            if msg_type == "END":
                return entries
            assert msg_type == "ENTRY", (msg_type, fields)
            entries.append(fields)

    def close(self):
        self.sock.close()


class Nobody:
    """A child process that runs FUNCTION(hold, *args) as nobody and sends
    back its result. Objects the function appends to HOLD (open
    connections) stay alive until release()."""

    def __init__(self, function, *args, timeout=60):
        if os.geteuid() != 0:
            pytest.skip("needs root to connect as another user")
        self.timeout = timeout
        result_read, result_write = os.pipe()
        release_read, self.release_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(result_read)
            os.close(self.release_write)
            self._child(function, args, result_write, release_read)
        os.close(result_write)
        os.close(release_read)
        self.result_read = result_read

    def _child(self, function, args, result_write, release_read):
        code = 1
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            hold = []
            try:
                outcome = ("ok", function(hold, *args))
            except Exception as e:  # reported to the parent, which fails the test
                outcome = ("error", repr(e))
            with os.fdopen(result_write, "wb") as out:
                pickle.dump(outcome, out)
            select.select([release_read], [], [], self.timeout)
            code = 0
        finally:
            os._exit(code)

    def result(self):
        """The function's return value; raises if it raised."""
        with os.fdopen(self.result_read, "rb") as f:
            status, value = pickle.load(f)
        if status != "ok":
            raise AssertionError("child as nobody failed: " + value)
        return value

    def release(self):
        os.close(self.release_write)
        _, status = os.waitpid(self.pid, 0)
        return os.WEXITSTATUS(status)


def as_nobody(function, *args):
    """Run FUNCTION(hold, *args) as nobody and return its result."""
    child = Nobody(function, *args)
    try:
        return child.result()
    finally:
        child.release()


def values(fields, key):
    return [v for k, v in fields if k == key]


def message(subject, body="Hello.\n", sender="alice@example.test", to="bob@example.test"):
    return ("From: <%s>\nTo: <%s>\nSubject: %s\nMessage-ID: <%s@client.example.test>\n\n%s"
            % (sender, to, subject, subject.replace(" ", "-"), body)).encode()


@pytest.fixture
def queue(mailhost):
    client = QueueClient(mailhost.settings["queued_socket"])
    yield client
    client.close()


def test_commit_delivers_to_maildir(mailhost, queue):
    msg_type, reply, queue_id = queue.submit(
        "alice@example.test", ["bob@example.test"], message("ipc commit"))
    assert msg_type == "COMMIT-OK"
    assert reply["id"] == queue_id
    found = mailhost.wait_for_messages("bob@example.test", 1)
    assert len(found) == 1
    assert b"Subject: ipc commit" in found[0]
    assert mailhost.wait_for_log(queue_id + r": removed")


def test_queue_id_format(queue):
    ids = [queue.new()[0] for _ in range(20)]
    for queue_id in ids:
        assert 12 <= len(queue_id) <= 20
        assert all(c in "0123456789ABCDEF" for c in queue_id)
    assert len(set(ids)) == len(ids)


def test_commit_size_mismatch_fails(mailhost, queue):
    queue_id, fd = queue.new()
    os.write(fd, b"Subject: short\n\nbody\n")
    os.close(fd)
    msg_type, reply, _ = queue.request("COMMIT", [
        ("id", queue_id), ("sender", "alice@example.test"),
        ("rcpt", "bob@example.test"), ("size", "9999")])
    assert msg_type == "COMMIT-FAIL"
    assert "size mismatch" in dict(reply)["reason"]
    assert not (mailhost.dir / "spool" / "data" / queue_id).exists()


def test_commit_without_recipients_fails(queue):
    queue_id, fd = queue.new()
    os.close(fd)
    msg_type, reply, _ = queue.request("COMMIT", [
        ("id", queue_id), ("sender", "alice@example.test"), ("size", "0")])
    assert msg_type == "COMMIT-FAIL"
    assert dict(reply)["reason"] == "no recipients"


def test_commit_unknown_id_fails(queue):
    msg_type, reply, _ = queue.request("COMMIT", [
        ("id", "0123456789ABCDEF"), ("sender", ""), ("rcpt", "bob@example.test"),
        ("size", "0")])
    assert msg_type == "COMMIT-FAIL"
    assert dict(reply)["reason"] == "unknown queue id"


def test_reader_gives_read_only_descriptor(queue):
    queue_id, fd = queue.new()
    os.write(fd, b"Subject: reader\n\nbody\n")

    msg_type, reply, reader = queue.request("READER", [("id", queue_id)])

    assert msg_type == "READER-OK", reply
    assert dict(reply)["id"] == queue_id
    assert fcntl.fcntl(reader, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    assert os.read(reader, 100) == b"Subject: reader\n\nbody\n"
    # The reader has a file offset of its own: the writer's stays at the end.
    assert os.lseek(fd, 0, os.SEEK_CUR) == 22
    os.close(reader)
    os.close(fd)


def test_reader_unknown_id_fails(queue):
    msg_type, reply, reader = queue.request("READER", [("id", "0123456789ABCDEF")])

    assert msg_type == "READER-FAIL"
    assert dict(reply)["reason"] == "unknown queue id"
    assert reader is None


def test_abort_removes_data_file(mailhost, queue):
    queue_id, fd = queue.new()
    os.write(fd, b"Subject: aborted\n\n")
    os.close(fd)
    data = mailhost.dir / "spool" / "data" / queue_id
    assert data.exists()
    queue.send("ABORT", [("id", queue_id)])
    # ABORT has no reply; a LIST round trip orders it before the check.
    queue.list()
    assert not data.exists()


def test_disconnect_removes_uncommitted(mailhost, queue):
    other = QueueClient(mailhost.settings["queued_socket"])
    queue_id, fd = other.new()
    os.close(fd)
    data = mailhost.dir / "spool" / "data" / queue_id
    assert data.exists()
    other.close()
    queue.list()
    assert not data.exists()


def test_unknown_request_gets_error(queue):
    msg_type, reply, _ = queue.request("FROB")
    assert msg_type == "ERROR"
    assert dict(reply)["reason"] == "unknown request"


def test_list_shows_fields_in_order(mailhost, queue):
    mailhost.stop("deliverd")
    msg_type, _, queue_id = queue.submit(
        "alice@example.test", ["bob@example.test", "demo@example.test"], message("listed"))
    assert msg_type == "COMMIT-OK"
    assert mailhost.wait_for_log(queue_id + r": to=<demo@example.test>.*status=deferred")
    entries = [e for e in queue.list() if dict(e)["id"] == queue_id]
    assert len(entries) == 1
    fields = entries[0]
    assert [k for k, _ in fields[:7]] == [
        "id", "arrival", "size", "sender", "queue", "next_attempt", "attempts"]
    assert dict(fields)["sender"] == "alice@example.test"
    assert dict(fields)["queue"] == "deferred"
    assert int(dict(fields)["next_attempt"]) > 0
    assert values(fields, "rcpt") == ["bob@example.test", "demo@example.test"]
    assert values(fields, "status") == ["deferred", "deferred"]
    assert all(values(fields, "reason"))


def test_admin_requests_need_privilege(mailhost, queue):
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            client = QueueClient(mailhost.settings["queued_socket"])
            results = [client.request(t, [("id", "0123456789ABCDEF")])[:2]
                       for t in ("FLUSH", "DELETE", "SHOW")]
            listed = client.list()
            if (all(r == ("ERROR", [("reason", "permission denied")]) for r in results)
                    and listed == []):
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_show_returns_envelope_and_data(mailhost, queue):
    mailhost.stop("deliverd")
    data = message("shown")
    msg_type, _, queue_id = queue.submit("alice@example.test", ["bob@example.test"], data)
    assert msg_type == "COMMIT-OK"
    msg_type, fields, fd = queue.request("SHOW", [("id", queue_id)])
    assert msg_type == "SHOW-OK"
    assert dict(fields)["protocol"] == "LOCAL"
    assert fd is not None
    with os.fdopen(fd, "rb") as f:
        assert f.read() == data


def test_delete_removes_message(mailhost, queue):
    mailhost.stop("deliverd")
    msg_type, _, queue_id = queue.submit("alice@example.test", ["bob@example.test"],
                                         message("deleted"))
    assert msg_type == "COMMIT-OK"
    assert mailhost.wait_for_log(queue_id + r": to=<bob@example.test>.*status=deferred")
    msg_type, _, _ = queue.request("DELETE", [("id", queue_id)])
    assert msg_type == "OK"
    assert mailhost.wait_for_log(queue_id + r": removed")
    assert not (mailhost.dir / "spool" / "queue" / queue_id).exists()
    assert not (mailhost.dir / "spool" / "data" / queue_id).exists()
    msg_type, fields, _ = queue.request("DELETE", [("id", queue_id)])
    assert msg_type == "ERROR"
    assert dict(fields)["reason"] == "queue id not found"


def show(mailhost, queue_id):
    client = QueueClient(mailhost.settings["queued_socket"])
    try:
        msg_type, fields, fd = client.request("SHOW", [("id", queue_id)])
    finally:
        client.close()
    if fd is not None:
        os.close(fd)
    assert msg_type == "SHOW-OK", fields
    return dict(fields)


@pytest.mark.parametrize("field", [
    "helo", "client_addr", "client_name", "protocol", "submitter", "sasl_user", "orcpt", "body"])
def test_commit_control_chars_rejected(mailhost, queue, field):
    msg_type, reply, queue_id = queue.submit(
        "alice@example.test", ["bob@example.test"], message("control " + field),
        extra=[(field, "evil\x1b[2J\x07")])
    assert msg_type == "COMMIT-FAIL"
    assert reply["reason"] == "invalid %s: control character" % field
    assert not (mailhost.dir / "spool" / "data" / queue_id).exists()
    assert not (mailhost.dir / "spool" / "queue" / queue_id).exists()
    assert "\x1b[2J" not in mailhost.log()


def test_commit_delete_char_rejected(queue):
    msg_type, reply, _ = queue.submit(
        "alice@example.test", ["bob@example.test"], message("delete char"),
        extra=[("client_name", "host\x7f.example.test")])
    assert msg_type == "COMMIT-FAIL"
    assert reply["reason"] == "invalid client_name: control character"


@pytest.mark.parametrize("sender,rcpt,reason", [
    ("alice@example.test> SIZE=1", "bob@example.test", "invalid sender"),
    ("alice@example.test", "bob@example.test> NOTIFY=NEVER", "invalid recipient"),
    ("alice@example.test", "bob", "invalid recipient"),
    ("not an address", "bob@example.test", "invalid sender"),
])
def test_commit_invalid_address_rejected(queue, sender, rcpt, reason):
    msg_type, reply, _ = queue.submit(sender, [rcpt], message("bad address"))
    assert msg_type == "COMMIT-FAIL"
    assert reply["reason"] == reason


def test_commit_quoted_local_part_kept(mailhost, queue):
    msg_type, _, queue_id = queue.submit(
        "\"odd > sender\"@example.test", ["demo@example.test"], message("quoted"))
    assert msg_type == "COMMIT-OK"
    delivered = mailhost.wait_for_messages("demo@example.test", 1)
    assert b'Return-Path: <"odd > sender"@example.test>' in delivered[0]


FORGED = [("client_addr", "192.0.2.99"), ("client_name", "forged.example.test"),
          ("helo", "forged.example.test"), ("protocol", "ESMTP"),
          ("submitter", "root"), ("sasl_user", "admin")]


def submit_forged(hold, path):
    client = QueueClient(path)
    hold.append(client)
    msg_type, _, queue_id = client.submit(
        "alice@example.test", ["bob@example.test"], message("forged"),
        extra=FORGED, protocol=None)
    return msg_type, queue_id


def test_commit_fields_from_nobody_ignored(mailhost):
    mailhost.stop("deliverd")
    msg_type, queue_id = as_nobody(submit_forged, mailhost.settings["queued_socket"])
    assert msg_type == "COMMIT-OK"
    envelope = show(mailhost, queue_id)
    assert "client_addr" not in envelope
    assert "client_name" not in envelope
    assert "helo" not in envelope
    assert "sasl_user" not in envelope
    assert envelope["protocol"] == "LOCAL"
    assert envelope["submitter"] == "nobody"
    assert envelope["uid"] == str(NOBODY)
    assert mailhost.wait_for_log(
        queue_id + r": client_addr, client_name, sasl_user, submitter from uid 65534 ignored")
    assert mailhost.wait_for_log(queue_id + r": committed, client=unknown\[local\], protocol=LOCAL")
    assert "192.0.2.99" not in mailhost.log()


def test_commit_fields_from_root_kept(mailhost, queue):
    mailhost.stop("deliverd")
    msg_type, _, queue_id = queue.submit(
        "alice@example.test", ["bob@example.test"], message("trusted"),
        extra=FORGED, protocol=None)
    assert msg_type == "COMMIT-OK"
    envelope = show(mailhost, queue_id)
    for key, value in FORGED:
        assert envelope[key] == value
    assert mailhost.wait_for_log(
        queue_id + r": committed, client=forged.example.test\[192.0.2.99\], protocol=ESMTP, uid=0")
