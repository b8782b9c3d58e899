"""Debian's mutt reads imapd: it lists the INBOX, saves one message
to another folder and expunges it, driven by push keys on a pty."""

import os
import pty
import select
import shutil
import time

import pytest

DEMO = "demo@example.test"

pytestmark = [
    # Mostly the other program's work, so the sanitizer pass skips it.
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("mutt") is None, reason="mutt not installed"),
]


def run_on_pty(argv, timeout=30):
    """Run ARGV on a pseudo-terminal; return (exit status, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "vt100"
        os.execvp(argv[0], argv)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                output += chunk
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), output
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return None, output
    finally:
        os.close(fd)


def test_mutt_saves_and_expunges(make_mailhost):
    host = make_mailhost()
    host.start("imapd")
    with host.smtp() as client:
        client.sendmail("a@example.org", [DEMO],
                        "From: a@example.org\r\nSubject: move me\r\n\r\nfirst\r\n")
        client.sendmail("a@example.org", [DEMO],
                        "From: a@example.org\r\nSubject: stay here\r\n\r\nsecond\r\n")
    assert len(host.wait_for_messages(DEMO, 2)) == 2

    muttrc = host.dir / "muttrc"
    muttrc.write_text(
        'set folder="imap://demo%%40example.test@127.0.0.1:%d/"\n'
        'set imap_pass="demo"\n'
        'set spoolfile="+INBOX"\n'
        "set ssl_starttls=no\nset ssl_force_tls=no\n"
        "set confirmappend=no\nset confirmcreate=no\nset delete=yes\nset move=no\n"
        'set header_cache=""\nset message_cachedir=""\n' % host.imap_port)
    keys = "<tag-pattern>~s move<enter><tag-prefix><save-message>=Archive<enter><quit>"
    status, output = run_on_pty(["mutt", "-n", "-F", str(muttrc), "-f", "+INBOX",
                                 "-e", 'push "%s"' % keys])
    assert status == 0, output[-2000:]
    assert b"move me" in output

    imap = host.imap()
    imap.login(DEMO, "demo")
    imap.select("INBOX")
    typ, data = imap.search(None, "ALL")
    assert data == [b"1"]
    typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"stay here" in data[0][1]
    imap.select("Archive")
    typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"move me" in data[0][1]
