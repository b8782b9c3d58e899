"""queued reloads transport_maps on SIGHUP.

The map routes example.test to mx1 (198.51.100.25) and then to mx2
(198.51.100.26), both smtp_peer.MX_PEER. After SIGHUP the next message
follows the new entry, and a map that no longer loads leaves the one
loaded before in use.
"""

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

import smtp_peer
from smtp_peer import recorded, send, start_mx_peer

pytestmark = smtp_peer.skip_without_netns

MX1_ADDRESS = smtp_peer.PEER_ADDRESS
MX2_ADDRESS = "198.51.100.26"


@pytest.fixture
def net(tmp_path):
    hosts = [("a", smtp_peer.A_ADDRESS), ("mx1", MX1_ADDRESS), ("mx2", MX2_ADDRESS)]
    with smtp_peer.netns_bed(tmp_path, hosts, ["example.test"], []) as bed:
        yield bed


@pytest.fixture
def transport_map():
    """A transport_maps file in a directory that the queue user can read."""
    directory = Path(tempfile.mkdtemp(prefix="est-reload-", dir="/tmp"))
    os.chmod(directory, 0o755)
    yield directory / "transport"
    shutil.rmtree(directory, ignore_errors=True)


def messages_received(record):
    return sum(1 for line in recorded(record) if line.startswith(b"DATA done"))


def reload_queued(sender, pattern):
    """Send SIGHUP to queued and wait for PATTERN in its log."""
    sender.procs["queued"].send_signal(signal.SIGHUP)
    assert sender.wait_for_log(pattern, timeout=10), sender.log()[-2000:]


def test_sighup_reloads_transport_maps(make_mailhost, net, tmp_path, transport_map):
    mx1 = start_mx_peer(net, tmp_path, "mx1", MX1_ADDRESS, "ok")
    mx2 = start_mx_peer(net, tmp_path, "mx2", MX2_ADDRESS, "ok")
    transport_map.write_text("example.test smtp:[%s]:25\n" % MX1_ADDRESS)
    sender = smtp_peer.sender_host(make_mailhost, net, transport_maps=str(transport_map))
    send(sender, "first@example.test")
    assert "status=sent" in smtp_peer.first_outcome(sender, "first@example.test")
    transport_map.write_text("example.test smtp:[%s]:25\n" % MX2_ADDRESS)

    reload_queued(sender, r"transport_maps .* reloaded: 1 entries")
    send(sender, "second@example.test")

    line = smtp_peer.first_outcome(sender, "second@example.test")
    assert "relay=198.51.100.26[198.51.100.26]:25" in line
    assert "status=sent" in line
    assert messages_received(mx1) == 1
    assert messages_received(mx2) == 1


def test_invalid_map_on_sighup_keeps_old(make_mailhost, net, tmp_path, transport_map):
    mx1 = start_mx_peer(net, tmp_path, "mx1", MX1_ADDRESS, "ok")
    transport_map.write_text("example.test smtp:[%s]:25\n" % MX1_ADDRESS)
    sender = smtp_peer.sender_host(make_mailhost, net, transport_maps=str(transport_map))
    transport_map.write_text("example.test uucp:somewhere\n")

    reload_queued(sender, r"reloading transport_maps failed: transport_maps .*:1: unsupported transport "
                          r"uucp:somewhere .*; the map loaded before stays in use")
    send(sender, "alice@example.test")

    line = smtp_peer.first_outcome(sender, "alice@example.test")
    assert "relay=198.51.100.25[198.51.100.25]:25" in line
    assert "status=sent" in line
    assert messages_received(mx1) == 1
