"""Relay control seen from a real remote client.

Two network namespaces made by the test, joined by a veth pair: the mail
host listens on 198.51.100.25 in one, and swaks runs in the other as the
client 198.51.100.10, which is outside mynetworks unless a test adds it.
No traffic leaves the two namespaces.
"""

import os
import shutil
import subprocess
import uuid

import pytest

SERVER_ADDRESS = "198.51.100.25"
CLIENT_ADDRESS = "198.51.100.10"

pytestmark = [
    # Mostly the other program's work, so the sanitizer pass skips it.
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not shutil.which("ip"), reason="iproute2 is not installed"),
    pytest.mark.skipif(not shutil.which("swaks"), reason="swaks is not installed"),
]


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces():
    """(server namespace, client namespace) on one /24, removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    server, client = "est-srv-" + tag, "est-cli-" + tag
    for name in (server, client):
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
    ip("link", "add", "eth0", "netns", server, "type", "veth", "peer", "name", "eth0", "netns", client)
    ip("-n", server, "addr", "add", SERVER_ADDRESS + "/24", "dev", "eth0")
    ip("-n", client, "addr", "add", CLIENT_ADDRESS + "/24", "dev", "eth0")
    ip("-n", server, "link", "set", "eth0", "up")
    ip("-n", client, "link", "set", "eth0", "up")
    yield server, client
    for name in (server, client):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def swaks(client_ns, recipient):
    result = subprocess.run(
        ["ip", "netns", "exec", client_ns, "swaks", "--server", SERVER_ADDRESS + ":25",
         "--helo", "client.remote.test", "--from", "someone@remote.test", "--to", recipient,
         "--timeout", "15"],
        capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def remote_host(make_mailhost, server_ns, **settings):
    return make_mailhost(netns=server_ns, smtpd_listen=SERVER_ADDRESS + ":25", **settings)


def test_relay_rejected_from_remote(make_mailhost, namespaces):
    server, client = namespaces
    host = remote_host(make_mailhost, server)

    output = swaks(client, "victim@elsewhere.test")

    assert "<** 554 5.7.1" in output
    assert host.wait_for_log(r"NOQUEUE: reject: RCPT from \S*\[198\.51\.100\.10\]: 554 5\.7\.1")


def test_local_domain_accepted_from_remote(make_mailhost, namespaces):
    server, client = namespaces
    host = remote_host(make_mailhost, server)

    output = swaks(client, "demo@example.test")

    assert "<-  250 2.0.0 Ok: queued as" in output
    assert len(host.wait_for_messages("demo@example.test", 1)) == 1


def test_relay_allowed_for_mynetworks(make_mailhost, namespaces):
    server, client = namespaces
    host = remote_host(make_mailhost, server, mynetworks="127.0.0.0/8 198.51.100.10/32")

    output = swaks(client, "friend@elsewhere.test")

    assert "<-  250 2.0.0 Ok: queued as" in output
    listing = host.run("estafeta", "queue", "list")
    assert "friend@elsewhere.test" in listing.stdout.decode()
