"""Recipients per SMTP transaction: smtp_destination_recipient_limit, and
a server that replies 452 4.5.3 when it takes no more recipients (RFC
5321 section 4.5.3.1.10).

mx1.example.test runs smtp_peer.MX_PEER, which records every command,
so the tests count the recipients of each transaction.
"""

import pytest

import smtp_peer
from smtp_peer import PEER_ADDRESS, SENDER, recorded, start_mx_peer

pytestmark = smtp_peer.skip_without_netns


@pytest.fixture
def net(tmp_path):
    with smtp_peer.netns_bed(tmp_path, [("a", smtp_peer.A_ADDRESS), ("mx1", PEER_ADDRESS)]) as bed:
        yield bed


def recipients(count):
    return ["user%02d@example.test" % n for n in range(count)]


def send_to_all(host, addresses):
    """Submit one message to every address in ADDRESSES."""
    message = "From: %s\nTo: undisclosed-recipients:;\nSubject: many\n\nHello.\n" % SENDER
    result = host.run("sendmail", "-f", SENDER, *addresses, input=message.encode())
    assert result.returncode == 0, result.stderr


def transactions(record):
    """Return the RCPT addresses sent in each transaction that reached
    DATA done, in the order sent."""
    found, current = [], []
    for line in recorded(record):
        if line.startswith(b"MAIL FROM:"):
            current = []
        elif line.startswith(b"RCPT TO:<"):
            current.append(line[len(b"RCPT TO:<"):line.index(b">")].decode())
        elif line.startswith(b"DATA done"):
            found.append(current)
    return found


def wait_for_all_sent(host, addresses, timeout=20):
    for address in addresses:
        line = smtp_peer.first_outcome(host, address, timeout=timeout)
        assert "status=sent" in line, line


def test_default_limit_splits_at_50(make_mailhost, net, tmp_path):
    record = start_mx_peer(net, tmp_path, "mx1", PEER_ADDRESS, "ok")
    sender = smtp_peer.sender_host(make_mailhost, net)
    addresses = recipients(60)

    send_to_all(sender, addresses)

    wait_for_all_sent(sender, addresses)
    sent = transactions(record)
    assert [len(rcpts) for rcpts in sent] == [50, 10]
    assert sorted(sent[0] + sent[1]) == addresses


def test_configured_limit(make_mailhost, net, tmp_path):
    record = start_mx_peer(net, tmp_path, "mx1", PEER_ADDRESS, "ok")
    sender = smtp_peer.sender_host(make_mailhost, net, smtp_destination_recipient_limit="2")
    addresses = recipients(5)

    send_to_all(sender, addresses)

    wait_for_all_sent(sender, addresses)
    assert [len(rcpts) for rcpts in transactions(record)] == [2, 2, 1]
    assert recorded(record).count(b"CONNECT") == 1


def test_452_sends_rest_in_next_transaction(make_mailhost, net, tmp_path):
    record = start_mx_peer(net, tmp_path, "mx1", PEER_ADDRESS, "limit", 3)
    sender = smtp_peer.sender_host(make_mailhost, net)
    addresses = recipients(7)

    send_to_all(sender, addresses)

    wait_for_all_sent(sender, addresses)
    # The peer takes the first 3 RCPTs of each transaction, so each one
    # starts with the first recipient that the one before did not take.
    assert transactions(record) == [addresses, addresses[3:], addresses[6:]]
    for address in addresses:
        assert len(smtp_peer.outcomes(sender, address)) == 1
    assert sender.wait_for_log(r"accepted 3 recipients, then replied 452; the rest go in the next transaction", timeout=1)


def test_421_defers_rcpts_not_sent(make_mailhost, net, tmp_path):
    record = start_mx_peer(net, tmp_path, "mx1", PEER_ADDRESS, "data421")
    sender = smtp_peer.sender_host(make_mailhost, net, smtp_destination_recipient_limit="1")
    first, second = recipients(2)

    send_to_all(sender, [first, second])

    line = smtp_peer.first_outcome(sender, first)
    assert "dsn=4.3.2, status=deferred (421 4.3.2 shutting down)" in line
    line = smtp_peer.first_outcome(sender, second)
    assert ("dsn=4.4.2, status=deferred (the session with mx1.example.test[198.51.100.25]:25 ended "
            "before every recipient was sent)") in line
    assert transactions(record) == [[first]]


def test_452_for_first_rcpt_defers(make_mailhost, net, tmp_path):
    record = start_mx_peer(net, tmp_path, "mx1", PEER_ADDRESS, "limit", 0)
    sender = smtp_peer.sender_host(make_mailhost, net)
    addresses = recipients(2)

    send_to_all(sender, addresses)

    for address in addresses:
        line = smtp_peer.first_outcome(sender, address)
        assert "dsn=4.5.3, status=deferred (452 4.5.3 Error: too many recipients)" in line
    assert transactions(record) == []
