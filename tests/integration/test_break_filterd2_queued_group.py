"""queued must not reach authd's sockets because smtpd_filter is on.

To reach filterd_socket for local submissions, queued keeps the group
of that socket as a supplementary group after it drops root. By default
that group is the primary group of smtpd_user. That group also owns
authd's auth_socket (password checks) and userdb_socket (USER and LIST
lookups of every user), both mode 0660 by default. So turning on
smtpd_filter lets queued, which reads the replies of remote SMTP
servers, check passwords and list the users.

Fixed: filterd_socket_mode is 0666 by default, and filterd closes every
connection whose peer is not root or the uid of smtpd_user, queue_user
or filter_user. queued keeps a group only for a mode that needs one.
"""

import os
import socket
import struct
import subprocess

import pytest

from conftest import is_root

NOBODY = 65534

pytestmark = pytest.mark.skipif(not is_root(), reason="needs root to drop privileges")


def connects_as(pid, path):
    """Return whether a child with the user and groups of PID can connect to PATH."""
    with open("/proc/%d/status" % pid) as status:
        fields = dict(line.split(":", 1) for line in status)
    uid = int(fields["Uid"].split()[1])
    gid = int(fields["Gid"].split()[1])
    supplementary = [int(g) for g in fields["Groups"].split()]

    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.setgroups(supplementary)
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(path))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    return os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("socket_name", ["auth-client", "auth-userdb"])
def test_queued_cannot_reach_authd(make_mailhost, socket_name):
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="")
    host.start("filterd")
    queued = host.procs["queued"].pid
    path = host.dir / "sock" / socket_name

    assert path.exists(), host.log()
    # queued delivers through lmtp_socket, so this child can connect there.
    assert connects_as(queued, host.settings["lmtp_socket"])
    assert not connects_as(queued, path)


def request_as(uid, path):
    """Send a frame to PATH from a child running as UID; return the
    bytes read back before the connection closed."""
    script = (
        "import os, socket, struct, sys\n"
        "os.setgroups([]); os.setgid(%d); os.setuid(%d)\n"
        "s = socket.socket(socket.AF_UNIX); s.settimeout(10)\n"
        "s.connect(sys.argv[1])\n"
        "body = b'MAIL\\nclient_addr=192.0.2.1\\nsender=a@example.org\\n'\n"
        "data = b''\n"
        "try:\n"
        "    s.sendall(struct.pack('!II', len(body), 0) + body)\n"
        "    while len(data) <= 8:\n"
        "        chunk = s.recv(4096)\n"
        "        if not chunk: break\n"
        "        data += chunk\n"
        "except (ConnectionResetError, BrokenPipeError):\n"
        "    pass\n"
        "sys.stdout.buffer.write(data)\n" % (uid, uid))
    result = subprocess.run(["/usr/bin/python3", "-c", script, str(path)],
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_filterd_refuses_other_uids(make_mailhost):
    host = make_mailhost(smtpd_filter="yes", filterd_checks="")
    host.start("filterd")
    path = host.settings["filterd_socket"]

    assert request_as(0, path) != b"", host.log()
    assert request_as(NOBODY, path) == b""
    assert host.wait_for_log(r"connection from uid %d refused: filterd_socket serves only "
                             r"smtpd and queued" % NOBODY)


def burst_as_nobody(path, count):
    """Open COUNT connections to PATH as nobody, without waiting for
    filterd to accept them, then close them all."""
    script = (
        "import errno, os, socket, sys\n"
        "os.setgroups([]); os.setgid(%d); os.setuid(%d)\n"
        "socks = []\n"
        "for _ in range(%d):\n"
        "    s = socket.socket(socket.AF_UNIX); s.setblocking(False)\n"
        "    try:\n"
        "        s.connect(sys.argv[1])\n"
        "    except (BlockingIOError, ConnectionRefusedError):\n"
        "        pass\n"
        "    socks.append(s)\n"
        "for s in socks: s.close()\n" % (NOBODY, NOBODY, count))
    result = subprocess.run(["/usr/bin/python3", "-c", script, str(path)],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_filterd_serves_smtpd_after_burst(make_mailhost):
    host = make_mailhost(smtpd_filter="yes", filterd_checks="")
    host.start("filterd")

    burst_as_nobody(host.settings["filterd_socket"], 500)
    client = host.smtp()
    client.sendmail("sender@example.org", ["demo@example.test"],
                    b"Subject: after the burst\r\n\r\nHello.\r\n")
    client.quit()

    assert len(host.wait_for_messages("demo@example.test", 1)) == 1, host.log()
    assert host.wait_for_log(r"connection from uid %d refused" % NOBODY)


def test_group_mode_keeps_local_filter(make_mailhost):
    """With filterd_socket_mode 0660, queued keeps the socket's group and
    still reaches filterd for local submissions."""
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="",
                         filterd_socket_mode="0660")
    host.start("filterd")
    message = b"From: <root@example.test>\nSubject: group mode\n\nHello.\n"

    result = host.run("sendmail", "-f", "root@example.test", "demo@example.test", input=message)

    assert result.returncode == 0, result.stderr
    assert host.wait_for_log(r"queued\[\d+\]: \w+: filterd action=accept")
    assert oct(os.stat(host.settings["filterd_socket"]).st_mode & 0o777) == "0o660"
