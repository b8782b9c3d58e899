"""imapd and Dovecot on the same Maildir: what one writes (UIDs,
UIDVALIDITY, flags, keywords, folders, subscriptions) the other reads,
so users move between them without clients downloading anything again.
Dovecot is Debian's dovecot-imapd, started privately on loopback."""

import imaplib
import os
import pwd
import re
import shutil
import subprocess
import time

import pytest

from ports import free_port

DEMO = "demo@example.test"
MESSAGE = b"From: a@example.org\r\nSubject: %s\r\n\r\nbody\r\n"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="Dovecot's master needs root"),
    pytest.mark.skipif(shutil.which("dovecot") is None, reason="dovecot-imapd not installed"),
]


class Dovecot:
    """A private Dovecot serving the demo user's Maildir on 127.0.0.1."""

    def __init__(self, host):
        self.dir = host.dir / "dovecot"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        vmail = pwd.getpwnam("_estafeta-vmail")
        self.config = self.dir / "dovecot.conf"
        self.config.write_text(
            "base_dir = %(dir)s/run\n"
            "log_path = %(dir)s/dovecot.log\n"
            "ssl = no\n"
            "protocols = imap\n"
            "listen = 127.0.0.1\n"
            "first_valid_uid = 1\n"
            "disable_plaintext_auth = no\n"
            "mail_location = maildir:~/Maildir\n"
            "service imap-login {\n"
            "  inet_listener imap {\n"
            "    address = 127.0.0.1\n"
            "    port = %(port)d\n"
            "  }\n"
            "}\n"
            "passdb {\n  driver = static\n  args = password=demo\n}\n"
            "userdb {\n  driver = static\n  args = uid=%(uid)d gid=%(gid)d home=%(home)s\n}\n"
            % {"dir": self.dir, "port": self.port, "uid": vmail.pw_uid, "gid": vmail.pw_gid,
               "home": host.dir / "mail" / "demo"})
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                imaplib.IMAP4("127.0.0.1", self.port, timeout=2).logout()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("dovecot did not start:\n%s" % self.log())

    def log(self):
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def login(self):
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        assert imap.login(DEMO, "demo")[0] == "OK"
        return imap

    def stop(self):
        subprocess.run(["doveadm", "-c", str(self.config), "stop"], capture_output=True, timeout=30)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def imaphost(make_mailhost):
    host = make_mailhost()
    host.start("imapd")
    return host


def estafeta_login(host):
    imap = host.imap()
    assert imap.login(DEMO, "demo")[0] == "OK"
    return imap


def uid_flags(imap):
    """{uid: set of flags} of the selected mailbox, without \\Recent."""
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK"
    result = {}
    for line in data:
        uid = int(re.search(rb"UID (\d+)", line).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", line).group(1).split()
        result[uid] = set(flags) - {b"\\Recent"}
    return result


def uidvalidity(imap, mailbox):
    typ, data = imap.status(mailbox, "(UIDVALIDITY UIDNEXT MESSAGES)")
    assert typ == "OK"
    return re.search(rb"\((.*)\)", data[0]).group(1)


def test_dovecot_reads_estafeta_maildir(imaphost):
    imap = estafeta_login(imaphost)
    imap.append("INBOX", "(\\Seen \\Flagged Work)", None, MESSAGE % b"one")
    imap.append("INBOX", None, None, MESSAGE % b"two")
    assert imap.create("Projects.Entw&APw-rfe")[0] == "OK"
    imap.append("Projects.Entw&APw-rfe", "(\\Answered)", None, MESSAGE % b"three")
    imap.subscribe("Projects.Entw&APw-rfe")
    imap.select("INBOX")
    ours = uid_flags(imap)
    ours_status = uidvalidity(imap, "INBOX")
    ours_folder = uidvalidity(imap, "Projects.Entw&APw-rfe")
    imap.logout()
    imaphost.stop("imapd")

    dovecot = Dovecot(imaphost)
    try:
        theirs = dovecot.login()
        assert uidvalidity(theirs, "INBOX") == ours_status
        assert uidvalidity(theirs, "Projects.Entw&APw-rfe") == ours_folder
        theirs.select("INBOX")
        assert uid_flags(theirs) == ours
        assert ours == {1: {b"\\Seen", b"\\Flagged", b"Work"}, 2: set()}
        typ, data = theirs.list('""', "*")
        names = [line.rsplit(b" ", 1)[-1].strip(b'"') for line in data]
        assert b"Projects.Entw&APw-rfe" in names
        assert b"Sent" in names
        typ, data = theirs.lsub('""', "*")
        subscribed = [line.rsplit(b" ", 1)[-1].strip(b'"') for line in data]
        assert b"Projects.Entw&APw-rfe" in subscribed
        assert b"Trash" in subscribed
        theirs.logout()
    finally:
        dovecot.stop()


def test_estafeta_reads_dovecot_maildir(imaphost):
    estafeta_login(imaphost).logout()
    imaphost.stop("imapd")

    dovecot = Dovecot(imaphost)
    try:
        theirs = dovecot.login()
        theirs.append("INBOX", "(\\Answered $Label1)", None, MESSAGE % b"one")
        theirs.append("INBOX", "(\\Draft)", None, MESSAGE % b"two")
        theirs.append("INBOX", None, None, MESSAGE % b"three")
        theirs.create("FromDovecot")
        theirs.subscribe("FromDovecot")
        theirs.select("INBOX")
        theirs.store("3", "+FLAGS", "(\\Deleted)")
        theirs.expunge()
        expected = uid_flags(theirs)
        expected_status = uidvalidity(theirs, "INBOX")
        theirs.logout()
    finally:
        dovecot.stop()

    imaphost.start("imapd")
    imap = estafeta_login(imaphost)
    assert uidvalidity(imap, "INBOX") == expected_status
    imap.select("INBOX")
    assert uid_flags(imap) == expected
    assert expected == {1: {b"\\Answered", b"$Label1"}, 2: {b"\\Draft"}}
    typ, data = imap.lsub('""', "*")
    assert any(b'"FromDovecot"' in line for line in data)
    deliver = imap.append("INBOX", None, None, MESSAGE % b"four")
    assert re.match(rb"\[APPENDUID \d+ 4\]", deliver[1][0])
