"""Mail forwarded through ~/.forward loses its Authentication-Results.

deliverd forwards a message by submitting it to queued as the mailbox
owner, and since sendmail submissions pass filterd, so do forwards.
filterd treats the Authentication-Results fields with our authserv-id
as forged and removes them. Those fields are the results filterd itself
added when the message arrived (spf=fail, dmarc=fail here), and the
forward is a local submission from 127.0.0.1 that cannot be checked
again. The final recipient's filters and mail reader lose the verdict.

Fixed: with local_filter on, deliverd forwards from a one-shot worker
that connected to queued_socket as root before it became the user, and
sends forward=1 with the user as submitter. filterd still scans the
forward and signs it if the user owns its From: addresses, but keeps
the fields with our authserv-id. From any other uid queued ignores
forward=1.
"""

import os
from pathlib import Path

import pytest

from test_deliverd_system import deliver, make_home, system_users, write_as  # noqa: F401
from test_queue_ipc import Nobody, QueueClient

AUTHSERV_ID = "mail.example.test"
DEMO = "demo@example.test"
RESULTS = (b"Authentication-Results: mail.example.test; spf=fail smtp.mailfrom=sender@example.org;"
           b"\r\n  dmarc=fail header.from=example.org\r\n")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates system users; needs root")


def test_forward_keeps_arrival_results(make_mailhost, system_users):  # noqa: F811
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="authres", authserv_id=AUTHSERV_ID)
    host.start("filterd")
    (user,) = system_users(host)
    make_home(user)
    write_as(user, host.dir / "home" / user.pw_name / ".forward", DEMO + "\n")
    body = RESULTS + b"From: <sender@example.org>\r\nSubject: forwarded\r\n\r\nHello.\r\n"

    replies = deliver(host, ["%s@localhost" % user.pw_name], body=body)
    forwarded = host.wait_for_messages(DEMO, 1)

    assert replies[0][0] == 250, replies
    assert len(forwarded) == 1, host.log()
    assert b"spf=fail" in forwarded[0], host.log()
    assert b"dmarc=fail" in forwarded[0]
    assert forwarded[0].count(b"Authentication-Results:") == 1
    forward_id = host.wait_for_log(r"forwarded as (\w+)").group(1)
    assert host.wait_for_log(r"queued\[\d+\]: %s: filterd action=accept" % forward_id)


def submit_with_forward_flag(hold, socket_path):
    """Submit a message that carries our results, claiming forward=1, as
    an ordinary user. Return the COMMIT reply type."""
    client = QueueClient(socket_path)
    hold.append(client)
    data = (RESULTS.replace(b"\r\n", b"\n") +
            b"From: <nobody@example.test>\nSubject: claimed forward\n\nHello.\n")
    reply_type, _, _ = client.submit("nobody@example.test", [DEMO], data,
                                     extra=[("forward", "1")])
    return reply_type


def test_forward_flag_ignored_from_user(make_mailhost):
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="authres",
                         authserv_id=AUTHSERV_ID)
    host.start("filterd")

    child = Nobody(submit_with_forward_flag, host.settings["queued_socket"])
    try:
        reply_type = child.result()
    finally:
        child.release()
    stored = host.wait_for_messages(DEMO, 1)

    assert reply_type == "COMMIT-OK", host.log()
    assert host.wait_for_log(r"forward from uid 65534 ignored")
    assert b"spf=fail" not in stored[0], host.log()


def test_forward_command_gets_no_root_connection(make_mailhost, system_users):  # noqa: F811
    """A |command in ~/.forward runs as the user while the worker keeps
    the connection it made to queued as root. The command must not get
    that connection, because it could submit mail as root through it."""
    host = make_mailhost(smtpd_filter="yes", local_filter="yes", filterd_checks="authres",
                         authserv_id=AUTHSERV_ID)
    host.start("filterd")
    (user,) = system_users(host)
    make_home(user)
    home = host.dir / "home" / user.pw_name
    write_as(user, home / ".forward",
             "\"|/bin/sh -c 'ls -l /proc/$$/fd > %s/fds'\", %s\n" % (home, DEMO))
    body = b"From: <sender@example.org>\r\nSubject: command\r\n\r\nHello.\r\n"

    replies = deliver(host, ["%s@localhost" % user.pw_name], body=body)
    forwarded = host.wait_for_messages(DEMO, 1)
    fds = (home / "fds").read_text()

    assert replies[0][0] == 250, replies
    assert len(forwarded) == 1, host.log()
    assert "socket:" not in fds, fds


def processes_of(uid, name):
    """Return the ids of the processes called NAME that run as UID."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Name", "").strip() == name and int(fields["Uid"].split()[0]) == uid:
            found.append(int(entry.name))
    return found


def can_list_fds(uid, gid, pid):
    """Return whether a child running as UID can list /proc/PID/fd."""
    child = os.fork()
    if child == 0:
        code = 2
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.listdir("/proc/%d/fd" % pid)
            code = 0
        except PermissionError:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.WEXITSTATUS(status) in (0, 1)
    return os.WEXITSTATUS(status) == 0


def test_mailbox_worker_not_open_to_its_user(make_mailhost, system_users):  # noqa: F811
    """A mailbox worker runs as the user but keeps a connection to authd's
    userdb that it made as root. With fs.suid_dumpable 1 the kernel would
    leave it open to the user's ptrace and /proc/PID/fd."""
    setting = Path("/proc/sys/fs/suid_dumpable")
    if not os.access(setting, os.W_OK):
        pytest.skip("cannot change fs.suid_dumpable")
    before = setting.read_text().strip()
    setting.write_text("1\n")
    try:
        host = make_mailhost()
        (user,) = system_users(host)
        make_home(user)
        replies = deliver(host, ["%s@localhost" % user.pw_name])
        workers = processes_of(user.pw_uid, "deliverd")

        assert replies[0][0] == 250, replies
        assert workers, host.log()
        for pid in workers:
            assert not can_list_fds(user.pw_uid, user.pw_gid, pid)
    finally:
        setting.write_text(before + "\n")
