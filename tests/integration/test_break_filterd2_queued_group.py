"""queued must not reach authd's sockets because smtpd_filter is on.

To reach filterd_socket for local submissions, queued keeps the group
of that socket as a supplementary group after it drops root. By default
that group is the primary group of smtpd_user. That group also owns
authd's auth_socket (password checks) and userdb_socket (USER and LIST
lookups of every user), both mode 0660 by default. So turning on
smtpd_filter lets queued, which reads the replies of remote SMTP
servers, check passwords and list the users.
"""

import os
import socket

import pytest

from conftest import is_root

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


@pytest.mark.xfail(strict=True, reason="queued keeps smtpd_user's group, which owns authd's sockets")
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
