"""Listening ports for test servers.

A port found by binding port 0 lies in the kernel's ephemeral range, so a
client connection elsewhere in the run can take it as its source port
before the server under test binds it. Ports here come from below that
range and are handed out once per run.
"""

import os
import random
import socket


def _worker_range(first, last):
    """Split FIRST..LAST between pytest-xdist workers, so that two workers
    never hand out the same port."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    size = (last - first + 1) // count
    return first + worker * size, first + (worker + 1) * size - 1


FIRST_PORT, LAST_PORT = _worker_range(20000, 32000)

_next_port = FIRST_PORT + random.randrange(LAST_PORT - FIRST_PORT)
_handed_out = set()


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port():
    """Return a port on 127.0.0.1 that is free now and not returned before."""
    global _next_port
    for _ in range(LAST_PORT - FIRST_PORT):
        port = _next_port
        _next_port = FIRST_PORT if port == LAST_PORT else port + 1
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port between %d and %d" % (FIRST_PORT, LAST_PORT))
