"""deliverd with system users (created with useradd for each test, so these
run only as root), ~/.forward, mbox delivery with quoting and locking, and
the uid 0 rule."""

import fcntl
import grp
import os
import pwd
import secrets
import smtplib
import subprocess
import threading
import time

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates system users; needs root")


def deliver(host, rcpts, body=b"Subject: system test\r\n\r\nFrom here\r\n>From there\r\nend\r\n",
            sender="sender@example.org"):
    """One LMTP transaction; returns the DATA replies, one per accepted RCPT."""
    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=60)
    client.ehlo("client.example.test")
    assert client.docmd("MAIL FROM:<%s>" % sender)[0] == 250
    for rcpt in rcpts:
        code, text = client.docmd("RCPT TO:<%s>" % rcpt)
        assert code == 250, text
    assert client.docmd("DATA")[0] == 354
    client.send(body + b".\r\n")
    replies = [client.getreply() for _ in rcpts]
    client.quit()
    return replies


@pytest.fixture
def system_users(make_mailhost):
    """Create system users with homes under the host directory; remove them after."""
    created = []

    def create(host, count=1):
        users = []
        for _ in range(count):
            name = "estt" + secrets.token_hex(4)
            home = host.dir / "home" / name
            subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/usr/sbin/nologin", name],
                           check=True, capture_output=True)
            created.append(name)
            users.append(pwd.getpwnam(name))
        os.chmod(host.dir, 0o755)
        return users

    yield create
    for name in created:
        subprocess.run(["userdel", name], capture_output=True)


def make_home(user):
    os.makedirs(user.pw_dir, mode=0o700, exist_ok=True)
    os.chown(user.pw_dir, user.pw_uid, user.pw_gid)


def write_as(user, path, text, mode=0o644):
    path.write_text(text)
    os.chmod(path, mode)
    os.chown(path, user.pw_uid, user.pw_gid)


@needs_root
def test_system_user_maildir(make_mailhost, system_users):
    host = make_mailhost()
    (user,) = system_users(host)
    replies = deliver(host, ["%s@mail.example.test" % user.pw_name])
    assert replies[0][0] == 250

    home = host.dir / "home" / user.pw_name
    assert home.stat().st_uid == user.pw_uid
    assert home.stat().st_mode & 0o777 == 0o700
    files = list((home / "Maildir" / "new").iterdir())
    assert len(files) == 1
    assert files[0].stat().st_uid == user.pw_uid
    assert files[0].read_bytes().startswith(
        b"Return-Path: <sender@example.org>\nDelivered-To: %s@mail.example.test\n"
        % user.pw_name.encode())


@needs_root
def test_forward_file(make_mailhost, system_users):
    host = make_mailhost()
    (user,) = system_users(host)
    make_home(user)
    home = host.dir / "home" / user.pw_name
    write_as(user, home / ".forward",
             "# keep a copy, log it, and pass it on\n"
             "\\%s\n"
             "\"|/bin/sh -c 'cat > %s/piped; id -u > %s/uid'\"\n"
             "%s/copy.mbox\n"
             "demo@example.test\n" % (user.pw_name, home, home, home))

    replies = deliver(host, ["%s@localhost" % user.pw_name])
    assert replies[0][0] == 250, replies

    assert len(list((home / "Maildir" / "new").iterdir())) == 1
    assert (home / "uid").read_text().strip() == str(user.pw_uid)
    assert b"Delivered-To: %s@localhost\n" % user.pw_name.encode() in (home / "piped").read_bytes()
    copy = (home / "copy.mbox").read_bytes()
    assert copy.startswith(b"From sender@example.org ")
    assert (home / "copy.mbox").stat().st_uid == user.pw_uid

    forwarded = host.wait_for_messages("demo@example.test", 1)
    assert len(forwarded) == 1
    assert forwarded[0].startswith(
        b"Return-Path: <sender@example.org>\nDelivered-To: demo@example.test\n"
        b"Delivered-To: %s@localhost\n" % user.pw_name.encode())


@needs_root
def test_forward_loop_detected(make_mailhost, system_users):
    host = make_mailhost()
    first, second = system_users(host, 2)
    for user, target in ((first, second), (second, first)):
        make_home(user)
        write_as(user, host.dir / "home" / user.pw_name / ".forward",
                 "%s@mail.example.test\n" % target.pw_name)

    replies = deliver(host, ["%s@mail.example.test" % first.pw_name])
    assert replies[0][0] == 250
    assert host.wait_for_log(r"to=<%s@mail\.example\.test>.*dsn=5\.4\.6, status=bounced"
                             % first.pw_name, timeout=20)


@needs_root
def test_unsafe_forward_ignored(make_mailhost, system_users):
    host = make_mailhost()
    (user,) = system_users(host)
    make_home(user)
    home = host.dir / "home" / user.pw_name
    write_as(user, home / ".forward", "demo@example.test\n", mode=0o666)

    replies = deliver(host, ["%s@mail.example.test" % user.pw_name])
    assert replies[0][0] == 250
    assert len(list((home / "Maildir" / "new").iterdir())) == 1
    assert host.wait_for_log(r"ignoring .*\.forward")


def mbox_host(make_mailhost, spool_group=None):
    """A host whose users get mbox inboxes in DIR/spool (Debian layout:
    root:mail, mode 2775, when SPOOL_GROUP is given)."""
    host = make_mailhost(start=False)
    spool = host.dir / "spool-mail"
    spool.mkdir()
    if spool_group is not None:
        os.chown(spool, 0, grp.getgrnam(spool_group).gr_gid)
        os.chmod(spool, 0o2775)
    else:
        os.chmod(spool, 0o1777)
    host.settings["mail_location"] = "mbox:~/mail:INBOX=%s/%%n" % spool
    host.write_config()
    host.newaliases()
    host.start()
    return host, spool


def test_virtual_user_mbox_quoting(make_mailhost):
    host, spool = mbox_host(make_mailhost)
    body = (b"Subject: quoting\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\n"
            b"From\r\nFromage\r\n last line\r\n")
    replies = deliver(host, ["demo@example.test"], body=body)
    assert replies[0][0] == 250
    replies = deliver(host, ["demo@example.test"], body=b"Subject: second\r\n\r\nsecond\r\n")
    assert replies[0][0] == 250

    content = (spool / "demo").read_bytes()
    assert content.startswith(b"From sender@example.org ")
    assert b"\nReturn-Path: <sender@example.org>\nDelivered-To: demo@example.test\nSubject: quoting\n" in content
    assert b"\n>From the start\n>>From quoted\n>>>From twice\nFrom\nFromage\n last line\n\n" in content
    assert content.count(b"\nFrom sender@example.org ") == 1
    assert content.endswith(b"second\n\n")
    assert not (spool / "demo.lock").exists()


@needs_root
def test_mbox_debian_spool(make_mailhost, system_users):
    host, spool = mbox_host(make_mailhost, spool_group="mail")
    (user,) = system_users(host)
    replies = deliver(host, ["%s@mail.example.test" % user.pw_name])
    assert replies[0][0] == 250

    mbox = spool / user.pw_name
    st = mbox.stat()
    assert st.st_uid == user.pw_uid
    assert st.st_gid == grp.getgrnam("mail").gr_gid
    assert st.st_mode & 0o777 == 0o600
    assert b"\n>From here\n>>From there\nend\n\n" in mbox.read_bytes()


def test_mbox_waits_for_dotlock(make_mailhost):
    host, spool = mbox_host(make_mailhost)
    lock = spool / "demo.lock"
    lock.write_text("")
    threading.Timer(1.5, lock.unlink).start()

    started = time.monotonic()
    replies = deliver(host, ["demo@example.test"])
    assert replies[0][0] == 250
    assert time.monotonic() - started >= 1.0
    assert b"From here" in (spool / "demo").read_bytes()


def test_mbox_waits_for_fcntl_lock(make_mailhost):
    host, spool = mbox_host(make_mailhost)
    mbox = spool / "demo"
    mbox.touch(mode=0o600)
    if os.geteuid() == 0:
        # Virtual users without a uid in passwd-file get virtual_mail_user's.
        vmail = pwd.getpwnam("_estafeta-vmail")
        os.chown(mbox, vmail.pw_uid, vmail.pw_gid)
    with open(mbox, "ab") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)
        threading.Timer(1.5, fcntl.lockf, (held, fcntl.LOCK_UN)).start()
        started = time.monotonic()
        replies = deliver(host, ["demo@example.test"])
        assert replies[0][0] == 250
        assert time.monotonic() - started >= 1.0
    assert b"From here" in mbox.read_bytes()


@needs_root
def test_root_needs_alias(make_mailhost):
    host = make_mailhost()
    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=30)
    client.ehlo("client.example.test")
    assert client.docmd("MAIL FROM:<>")[0] == 250
    code, _ = client.docmd("RCPT TO:<root@mail.example.test>")
    assert code == 550
    client.quit()

    host.write_aliases("root: demo@example.test\n")
    host.newaliases()
    replies = deliver(host, ["root@mail.example.test"])
    assert replies[0][0] == 250
    assert len(host.messages("demo@example.test")) == 1


@needs_root
def test_uid_zero_never_delivered(make_mailhost):
    host = make_mailhost(start=False)
    zero_home = host.dir / "mail" / "zero"
    with open(host.dir / "etc" / "passwd-file", "a") as users:
        users.write("zero@example.test:{PLAIN}x:0:0::%s::\n" % zero_home)
    host.newaliases()
    host.start()

    client = smtplib.LMTP(host.settings["lmtp_socket"], timeout=30)
    client.ehlo("client.example.test")
    assert client.docmd("MAIL FROM:<>")[0] == 250
    code, _ = client.docmd("RCPT TO:<zero@example.test>")
    assert code in (451, 550)
    client.quit()
    assert not zero_home.exists()
