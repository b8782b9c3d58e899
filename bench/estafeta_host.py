"""An Estafeta host for the benchmark, built on the integration tests' MailHost.

The configuration is the one `make run` and the tests use: everything
under a new directory in /tmp, smtpd on a free port of 127.0.0.1 and
example.test as a virtual domain. The benchmark adds its 1,001 virtual
users and raises the limits listed in SETTINGS.
"""

import os
import pwd
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from conftest import MailHost  # noqa: E402  (path set just above)

from common import DOMAIN, create_maildir  # noqa: E402
from scanners import Clamd, Spamd  # noqa: E402

# Owner of the virtual users' mailboxes when the daemons start as root.
VIRTUAL_MAIL_USER = "_estafeta-vmail"

SETTINGS = {
    # Postfix's limits per client do not apply to mynetworks (its
    # smtpd_client_event_limit_exceptions), so lift Estafeta's as well.
    "smtpd_client_connection_limit": "0",
    "smtpd_max_connections": "2000",
    # Room for the 10 MB workload, the same value as on the Postfix side.
    "message_size_limit": "52428800",
}


def estafeta_commit():
    result = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
    commit = result.stdout.strip() or "unknown"
    return commit + ("+local changes" if dirty.stdout.strip() else "")


class EstafetaHost:
    name = "estafeta"

    def __init__(self, mailboxes, backoff="300s", size_limit=52428800, settings=None,
                 scanners=False):
        # With scanners, smtpd sends every message through filterd to a
        # spamd and a clamd of the host's own (tests/integration/scanners.py).
        self.scanners = [Spamd(), Clamd()] if scanners else []
        all_settings = dict(SETTINGS)
        all_settings.update({
            "minimal_backoff_time": backoff,
            "maximal_backoff_time": backoff,
            "queue_run_delay": backoff,
            "message_size_limit": str(size_limit),
        })
        if scanners:
            all_settings.update({
                "smtpd_filter": "yes",
                "filterd_checks": "spamassassin clamav",
                "spamd_socket": self.scanners[0].socket,
                "clamd_socket": self.scanners[1].socket,
                # The load comes from 127.0.0.1, in mynetworks: scan it
                # anyway, and deliver whatever the score.
                "spam_scan_outbound": "yes",
                "spam_reject_score": "0",
            })
        all_settings.update(settings or {})
        self.host = MailHost(all_settings)
        self.host.write_users({"%s@%s" % (local, DOMAIN): "bench" for local in mailboxes})
        self.dir = self.host.dir
        self.smtp_port = self.host.smtp_port
        self.create_mailboxes(mailboxes)

    def create_mailboxes(self, mailboxes):
        """Create every home and Maildir up front, owned by the virtual mail user.

        Mailboxes that exist before the run are the usual case, and the
        Postfix side gets them too. Before deliverd built new homes under
        a temporary name, one of two first deliveries to a user could find
        the home still owned by root, defer with "Permission denied" and
        wait minimal_backoff_time (300 s) for its retry.
        """
        if os.geteuid() == 0:
            user = pwd.getpwnam(VIRTUAL_MAIL_USER)
            uid, gid = user.pw_uid, user.pw_gid
        else:
            uid, gid = os.getuid(), os.getgid()
        for local in mailboxes:
            home = self.host.dir / "mail" / local
            create_maildir(home, uid, gid)
            create_maildir(self.maildir(local), uid, gid)

    def start(self):
        for scanner in self.scanners:
            scanner.start()
        self.host.newaliases()
        self.host.start()
        if self.scanners:
            self.host.start("filterd")

    def stop(self):
        self.host.stop()

    def root_pids(self):
        pids = [proc.pid for proc in self.host.procs.values()]
        return pids + [scanner.proc.pid for scanner in self.scanners if scanner.running()]

    def maildir(self, local):
        return self.host.maildir("%s@%s" % (local, DOMAIN))

    def queue_size(self):
        """Committed messages: envelopes in queue/ and in deferred/."""
        spool = Path(self.host.settings["queue_directory"])
        return sum(sum(1 for _ in (spool / name).iterdir())
                   for name in ("queue", "deferred") if (spool / name).is_dir())

    def log(self):
        return self.host.log()

    def destroy(self, keep=False):
        self.host.destroy(keep)
        for scanner in self.scanners:
            scanner.destroy()
