"""An MX host with very many addresses.

ROUTE_HOSTS_MAX bounds the MX hosts that one delivery attempt tries,
but every address of each host is tried too, with no limit. The owner
of a recipient domain can publish hundreds of A records that never
accept a connection, and each costs smtp_connect_timeout (30 s by
default) while the session occupies a connection slot. Postfix bounds the
whole attempt with smtp_mx_address_limit (default 5 addresses) and
smtp_mx_session_limit.

Here mx1.example.test has ADDRESS_COUNT addresses in namespace "peer",
where nothing listens on port 25, so each connect is refused at once.
The test checks that the attempt gives up before it has tried them all.
"""

import re

import pytest

import netns_dns
import smtp_peer
from smtp_peer import A_ADDRESS, PEER_ADDRESS, send

pytestmark = smtp_peer.skip_without_netns

# Enough to show that no cap applies, few enough for a UDP DNS reply.
ADDRESS_COUNT = 60
ADDRESSES = ["198.51.100.%d" % (100 + n) for n in range(ADDRESS_COUNT)]
RECORDS = ["example.test. MX 10 mx1.example.test."] + [
    "mx1.example.test. A " + address for address in ADDRESSES]


@pytest.fixture
def net(tmp_path):
    with smtp_peer.netns_bed(tmp_path, [("a", A_ADDRESS), ("peer", PEER_ADDRESS)],
                             records=RECORDS) as bed:
        for address in ADDRESSES:
            netns_dns.ip("-n", bed.hosts["peer"], "addr", "add", address + "/24", "dev", "eth0")
        yield bed


def test_addresses_per_attempt_bounded(make_mailhost, net):
    sender = smtp_peer.sender_host(make_mailhost, net)

    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test", timeout=30)
    assert "status=deferred" in line
    # One line per address tried, apart from the result line.
    refused = re.findall(r"[0-9A-F]+: connect to mx1\.example\.test\[198\.51\.100\.\d+\]:25: "
                         r"Connection refused$", sender.log(), re.M)
    assert len(refused) > 0
    assert len(refused) < ADDRESS_COUNT
