"""Small helpers shared by the benchmark modules."""

import os
import socket
import time

DOMAIN = "example.test"

# Local parts of the benchmark's mailboxes, in the order smtp-source
# generates recipients for `-t bench@example.test -r N`: bench, 2bench,
# 3bench, ... Nbench.
MAILBOX_COUNT = 1000


def mailbox_names(count=MAILBOX_COUNT):
    return ["bench"] + ["%dbench" % i for i in range(2, count + 1)]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("nothing listens on 127.0.0.1:%d after %ds" % (port, timeout))
            time.sleep(0.05)


def create_maildir(path, uid, gid):
    """Create an empty Maildir (tmp, new, cur) owned by uid:gid, as for an existing user."""
    for folder in (path, path / "tmp", path / "new", path / "cur"):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(folder, uid, gid)
