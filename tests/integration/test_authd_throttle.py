"""Failure delays per client address: the delay before a FAIL doubles with
each failure from one rip, up to auth_failure_delay_max, and a success or
a quiet period resets it. The rip= values are only text in the AUTH line;
no traffic goes to them.
"""

import base64
import time

import pytest

from test_authd_passdb import AuthClient


@pytest.fixture
def throttle_host(make_mailhost):
    def start(**settings):
        settings.setdefault("auth_failure_delay", 1)
        settings.setdefault("auth_failure_delay_max", 8)
        host = make_mailhost(start=False, **settings)
        host.start("authd")
        return host, AuthClient(str(host.dir / "sock" / "auth-client"))
    return start


class Attempts:
    """AUTH PLAIN attempts with a given rip, timed."""

    def __init__(self, client):
        self.client = client
        self.next_id = 0

    def timed(self, password, rip="192.0.2.10"):
        """Return (reply command, seconds until the reply)."""
        self.next_id += 1
        resp = base64.b64encode(b"\0demo@example.test\0" + password.encode()).decode()
        fields = ["AUTH", str(self.next_id), "PLAIN", "service=smtp"]
        if rip is not None:
            fields.append("rip=" + rip)
        fields.append("resp=" + resp)
        start = time.monotonic()
        self.client.send("\t".join(fields))
        reply = self.client.readline().split("\t")
        return reply[0], time.monotonic() - start


def assert_delay(measured, expected):
    assert expected - 0.1 <= measured < expected + 0.8, (measured, expected)


def test_delay_doubles_per_address(throttle_host):
    host, client = throttle_host()
    attempts = Attempts(client)
    for expected in (1, 2, 4):
        command, seconds = attempts.timed("wrong")
        assert command == "FAIL"
        assert_delay(seconds, expected)

    # Another address starts again at auth_failure_delay.
    command, seconds = attempts.timed("wrong", rip="192.0.2.20")
    assert command == "FAIL"
    assert_delay(seconds, 1)

    assert host.wait_for_log(r"auth: rip=192\.0\.2\.10, failures=3, reply delayed by 4 s")
    assert host.wait_for_log(r"auth: rip=192\.0\.2\.20, failures=1, reply delayed by 1 s")
    assert "wrong" not in host.log()


def test_delay_capped(throttle_host):
    _, client = throttle_host(auth_failure_delay_max=1)
    attempts = Attempts(client)
    for expected in (1, 1):
        assert_delay(attempts.timed("wrong")[1], expected)


def test_success_resets_delay(throttle_host):
    _, client = throttle_host()
    attempts = Attempts(client)
    assert_delay(attempts.timed("wrong")[1], 1)
    assert_delay(attempts.timed("wrong")[1], 2)
    command, seconds = attempts.timed("demo")
    assert command == "OK"
    assert seconds < 0.5
    assert_delay(attempts.timed("wrong")[1], 1)


def test_quiet_period_resets_delay(throttle_host):
    _, client = throttle_host(auth_failure_reset_time=2)
    attempts = Attempts(client)
    assert_delay(attempts.timed("wrong")[1], 1)
    assert_delay(attempts.timed("wrong")[1], 2)
    time.sleep(2.2)
    assert_delay(attempts.timed("wrong")[1], 1)


def test_no_rip_gets_base_delay(throttle_host):
    _, client = throttle_host()
    attempts = Attempts(client)
    assert_delay(attempts.timed("wrong", rip=None)[1], 1)
    assert_delay(attempts.timed("wrong", rip=None)[1], 1)


def test_delay_does_not_block_other_clients(throttle_host):
    host, client = throttle_host(auth_failure_delay=2)
    client.send("AUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.10\tresp="
                + base64.b64encode(b"\0demo@example.test\0wrong").decode())
    other = AuthClient(str(host.dir / "sock" / "auth-client"))
    start = time.monotonic()
    assert other.plain(1, "demo@example.test", "demo")[0] == "OK"
    assert time.monotonic() - start < 1
    assert client.readline().startswith("FAIL\t1")


def test_delay_off_when_zero(throttle_host):
    _, client = throttle_host(auth_failure_delay=0)
    attempts = Attempts(client)
    for _ in range(3):
        assert attempts.timed("wrong")[1] < 0.5
