"""MX hosts whose thousands of addresses all fail at connect().

A connect() that fails at once (ENETUNREACH) makes next_address() call
try_address() again before it returns, through the TLS policy lookup
and connect_address(). Each address adds about 2.4 KiB of stack, and an
8 MiB stack ran out after about 3460 A records with the -O2 build.
Nothing bounds the number of addresses: ROUTE_HOSTS_MAX caps the MX
hosts but not their addresses. A domain whose MX hosts
publish a few thousand addresses that the sending host cannot route
(IPv6 addresses on an IPv4-only host, for one) makes queued overflow
its stack and die, and it dies again on every retry.

Here three MX hosts have 2300 AAAA records each in 2001:db8:ffff::/48.
Host "a" has no IPv6 address or route, so every connect() fails with
ENETUNREACH before any packet leaves the namespace. queued gets the
usual 8 MiB stack limit so that the result does not depend on the
shell that runs the tests.
"""

import resource
import time

import pytest

import smtp_peer
from smtp_peer import A_ADDRESS, send

pytestmark = smtp_peer.skip_without_netns

# NOTE: with four hosts of 3800 A records each, every address lookup
# failed with rcode 2 (SERVFAIL) in a trial, so the test stays below that.
HOST_COUNT = 3
# About as many AAAA records as fit in one 64 KiB DNS response.
ADDRESSES_PER_HOST = 2300
STACK_LIMIT = 8 * 1024 * 1024


def host_records(host):
    name = "mx%d.example.test." % host
    records = ["example.test. MX %d %s" % (10 + host, name)]
    for n in range(ADDRESSES_PER_HOST):
        records.append("%s AAAA 2001:db8:ffff:%x::%x" % (name, host, n + 1))
    return records


RECORDS = [record for host in range(HOST_COUNT) for record in host_records(host)]


@pytest.fixture
def net(tmp_path):
    with smtp_peer.netns_bed(tmp_path, [("a", A_ADDRESS)], records=RECORDS) as bed:
        yield bed


@pytest.fixture
def stack_limit():
    """Set the stack limit that the daemons started in the test inherit to
    STACK_LIMIT, and restore the old limit afterwards."""
    old = resource.getrlimit(resource.RLIMIT_STACK)
    hard = old[1]
    soft = STACK_LIMIT if hard == resource.RLIM_INFINITY else min(STACK_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))
    yield
    resource.setrlimit(resource.RLIMIT_STACK, old)


def wait_for_outcome_or_exit(host, recipient, timeout=30):
    """Return the first result line for RECIPIENT, or None once queued has
    exited or TIMEOUT seconds have passed."""
    deadline = time.monotonic() + timeout
    while host.procs["queued"].poll() is None and time.monotonic() < deadline:
        found = smtp_peer.outcomes(host, recipient)
        if found:
            return found[0]
        time.sleep(0.1)
    return None


def test_unroutable_addresses_do_not_crash(make_mailhost, net, stack_limit):
    sender = smtp_peer.sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    outcome = wait_for_outcome_or_exit(sender, "alice@example.test")
    assert sender.procs["queued"].poll() is None
    assert outcome is not None
    assert "status=deferred" in outcome
    assert "Network is unreachable" in outcome
