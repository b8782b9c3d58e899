"""Outbound delivery to a domain with more MX records than the client tries.

The client tries at most ROUTE_HOSTS_MAX (16) MX hosts per domain. It
must keep the 16 best, whatever order the DNS answer lists the records
in, and it must find itself among all of them to detect a mail loop.
Each domain here has 40 MX records, and the one that matters is listed
last: in example.test the only host that accepts connections, in
loop.test the sending host itself.
"""

import pytest

import smtp_peer
import test_outbound_hostile as hostile

pytestmark = smtp_peer.skip_without_netns

DEAD_ADDRESS = "198.51.100.26"
MX_WORSE = 39
RECORDS = (
    ["example.test. MX %d mx%d.example.test." % (20 + i, i) for i in range(MX_WORSE)]
    + ["mx%d.example.test. A %s" % (i, DEAD_ADDRESS) for i in range(MX_WORSE)]
    + ["example.test. MX 10 best.example.test.",
       "best.example.test. A " + smtp_peer.PEER_ADDRESS]
    + ["loop.test. MX %d mx%d.example.test." % (20 + i, i) for i in range(MX_WORSE)]
    + ["loop.test. MX 5 a.sender.test."]
)


@pytest.fixture
def net(tmp_path):
    hosts = [("a", smtp_peer.A_ADDRESS), ("peer", smtp_peer.PEER_ADDRESS), ("dead", DEAD_ADDRESS)]
    with smtp_peer.netns_bed(tmp_path, hosts, ["example.test", "loop.test"], RECORDS) as bed:
        yield bed


def test_best_mx_kept_past_limit(make_mailhost, net, tmp_path):
    hostile.start_peer(net, tmp_path, "plain")
    sender = hostile.sender_host(make_mailhost, net, smtp_connect_timeout="2s")

    smtp_peer.send(sender, "alice@example.test")

    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=.*status=", timeout=30)
    assert sender.wait_for_log(r"to=<alice@example\.test>, relay=best\.example\.test\[.*status=sent",
                               timeout=1)


def test_self_found_past_limit(make_mailhost, net, tmp_path):
    sender = hostile.sender_host(make_mailhost, net, smtp_connect_timeout="2s")

    smtp_peer.send(sender, "alice@loop.test")

    assert sender.wait_for_log(r"to=<alice@loop\.test>, relay=.*status=", timeout=30)
    assert sender.wait_for_log(r"to=<alice@loop\.test>, .*dsn=5\.4\.6, status=bounced", timeout=1)
