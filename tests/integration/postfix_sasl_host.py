"""A private Postfix smtpd that authenticates SMTP clients against authd.

Debian's postfix package supplies the binaries only. main.cf, master.cf,
queue, data directory and log live under one new directory in /tmp, and
the instance is started with `postfix -c DIR/etc start` and stopped with
`postfix -c DIR/etc stop`. Of the system's /etc/postfix only postfix-files
is read (through meta_directory), to create the queue directories. smtpd
listens on one 127.0.0.1 port, never uses DNS and relays nothing.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ports import free_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

MAIN_CF = """\
# Private Postfix instance of tests/integration/postfix_sasl_host.py.
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop

myhostname = mx.example.test
mydomain = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks =
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
relayhost = [127.0.0.1]:9
defer_transports = smtp
alias_maps =
alias_database =
biff = no

smtpd_sasl_type = dovecot
smtpd_sasl_path = {auth_socket}
smtpd_sasl_auth_enable = yes
smtpd_tls_security_level = none
smtpd_tls_auth_only = no
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination

maillog_file = {dir}/log/maillog
maillog_file_prefixes = {dir}
"""

MASTER_CF = """\
# service        type  private unpriv chroot wakeup maxproc command
127.0.0.1:{port} inet  n       -      n      -      10      smtpd
pickup           unix  n       -      n      60     1       pickup
cleanup          unix  n       -      n      -      0       cleanup
qmgr             unix  n       -      n      300    1       qmgr
rewrite          unix  -       -      n      -      -       trivial-rewrite
bounce           unix  -       -      n      -      0       bounce
defer            unix  -       -      n      -      0       bounce
trace            unix  -       -      n      -      0       bounce
proxymap         unix  -       -      n      -      -       proxymap
smtp             unix  -       -      n      -      -       smtp
error            unix  -       -      n      -      -       error
retry            unix  -       -      n      -      -       error
discard          unix  -       -      n      -      -       discard
anvil            unix  -       -      n      -      1       anvil
scache           unix  -       -      n      -      1       scache
postlog          unix-dgram n  -      n      -      1       postlogd
"""


def wait_for_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("nothing listens on 127.0.0.1:%d after %d s" % (port, timeout))


class PostfixSaslHost:
    def __init__(self, auth_socket):
        self.dir = Path(tempfile.mkdtemp(prefix="est-postfix-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.smtp_port = free_port()
        self.master_pid = None
        for sub in ("etc", "data", "log", "spool"):
            (self.dir / sub).mkdir()
            os.chmod(self.dir / sub, 0o755)
        # The master needs a data_directory owned by its user for its lock file.
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.dir / "data", postfix_user.pw_uid, postfix_user.pw_gid)

        (self.dir / "etc" / "main.cf").write_text(
            MAIN_CF.format(dir=self.dir, auth_socket=auth_socket))
        (self.dir / "etc" / "master.cf").write_text(MASTER_CF.format(port=self.smtp_port))

    def postfix(self, *args, timeout=120):
        return subprocess.run([POSTFIX, "-c", str(self.dir / "etc"), *args],
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
        # The master leads the process group of all daemons of this instance.
        try:
            os.killpg(self.master_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.master_pid = None

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
