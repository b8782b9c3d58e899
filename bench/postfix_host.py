"""A private Postfix instance for the benchmark.

Debian's postfix package supplies the binaries only. Configuration,
queue, data directory, log and mailboxes live under one new directory
in /tmp. The instance is started with `postfix -c DIR start` and
stopped with `postfix -c DIR stop`. Of the system's /etc/postfix only
postfix-files is read, by post-install (through meta_directory) to
create the queue directories; nothing there is written.
"""

import os
import pwd
import grp
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from common import create_maildir, free_port, wait_for_port

TEMPLATES = Path(__file__).resolve().parent / "postfix"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

# virtual(8) writes every mailbox as this user, a static uid of at least
# virtual_minimum_uid (100).
MAILBOX_USER = "nobody"
MAILBOX_GROUP = "nogroup"


def postfix_version():
    result = subprocess.run(["postconf", "-d", "-h", "mail_version"],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


class PostfixHost:
    name = "postfix"

    def __init__(self, mailboxes, backoff="300s", size_limit=52428800, smtpd_processes=1100):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-postfix-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.etc = self.dir / "etc"
        self.mail = self.dir / "mail"
        self.smtp_port = free_port()
        self.master_pid = None
        for sub in ("etc", "data", "log", "mail", "spool"):
            (self.dir / sub).mkdir()
            os.chmod(self.dir / sub, 0o755)
        # `postfix start` creates the queue's subdirectories. The master
        # needs a data_directory owned by its own user for its lock file.
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.dir / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        uid = pwd.getpwnam(MAILBOX_USER).pw_uid
        gid = grp.getgrnam(MAILBOX_GROUP).gr_gid
        os.chown(self.mail, uid, gid)

        fields = {
            "DIR": str(self.dir),
            "UID": str(uid),
            "GID": str(gid),
            "BACKOFF": backoff,
            "SIZE_LIMIT": str(size_limit),
            "PORT": str(self.smtp_port),
            "SMTPD_PROCESSES": str(smtpd_processes),
        }
        for name in ("main.cf", "master.cf"):
            text = (TEMPLATES / (name + ".in")).read_text()
            for key, value in fields.items():
                text = text.replace("@%s@" % key, value)
            (self.etc / name).write_text(text)

        # texthash: maps need no postmap run. A value ending in / is a
        # Maildir below virtual_mailbox_base.
        lines = ["%s@example.test example.test/%s/" % (local, local) for local in mailboxes]
        (self.etc / "vmailbox").write_text("\n".join(lines) + "\n")
        for local in mailboxes:
            create_maildir(self.maildir(local), uid, gid)

    def postfix(self, *args, timeout=120):
        return subprocess.run([POSTFIX, "-c", str(self.etc), *args],
                              capture_output=True, text=True, timeout=timeout)

    def start(self):
        result = self.postfix("start")
        if result.returncode != 0:
            raise RuntimeError("postfix start failed in %s:\n%s%s"
                               % (self.dir, result.stdout, result.stderr))
        pid_file = self.dir / "spool" / "pid" / "master.pid"
        self.master_pid = int(pid_file.read_text().split()[0])
        wait_for_port(self.smtp_port)

    def stop(self):
        if self.master_pid is None:
            return
        self.postfix("stop")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process_exists(self.master_pid):
            time.sleep(0.1)
        # The master is the leader of its own process group, which all
        # Postfix daemons of this instance share.
        try:
            os.killpg(self.master_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.master_pid = None

    def root_pids(self):
        return [self.master_pid]

    def maildir(self, local):
        return self.mail / "example.test" / local

    def queue_size(self):
        """Count messages in Postfix's queues (incoming, active, deferred...)."""
        count = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _, _, files in os.walk(self.dir / "spool" / sub):
                count += len(files)
        return count

    def log(self):
        path = self.dir / "log" / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self, keep=False):
        self.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def process_exists(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
