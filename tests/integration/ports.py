"""Listening ports for test servers.

A port found by binding port 0 lies in the kernel's ephemeral range, so a
client connection elsewhere in the run can take it as its source port
before the server under test binds it. Ports here come from below that
range and are handed out once per run.
"""

import random
import socket

FIRST_PORT = 20000
LAST_PORT = 32000

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
