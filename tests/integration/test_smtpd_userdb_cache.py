"""smtpd caches the results of recipient lookups in authd for
smtpd_userdb_cache_time, so a user removed from the passwd-file is
still accepted at RCPT until the cached result expires."""

import time

import pytest

from conftest import VIRTUAL_USERS


def rcpt(host, address):
    with host.smtp() as client:
        client.ehlo("client.example.test")
        client.mail("sender@client.example.test")
        return client.rcpt(address)[0]


def remove_alice(host):
    users = {address: password for address, password in VIRTUAL_USERS.items()
             if not address.startswith("alice@")}
    # authd rereads the passwd-file at its next lookup, since the file's
    # size and modification time changed.
    host.write_users(users)


@pytest.fixture
def cached_host(make_mailhost):
    return make_mailhost(smtpd_userdb_cache_time="2s")


def test_result_cached_until_expiry(cached_host):
    started = time.monotonic()
    assert rcpt(cached_host, "alice@example.test") == 250
    remove_alice(cached_host)

    assert rcpt(cached_host, "alice@example.test") == 250
    time.sleep(max(0, started + 2.5 - time.monotonic()))
    assert rcpt(cached_host, "alice@example.test") == 550


def test_unknown_result_cached(cached_host):
    assert rcpt(cached_host, "nobody@example.test") == 550
    assert rcpt(cached_host, "nobody@example.test") == 550


def test_cache_off(make_mailhost):
    host = make_mailhost(smtpd_userdb_cache_time="0")
    assert rcpt(host, "alice@example.test") == 250
    remove_alice(host)
    assert rcpt(host, "alice@example.test") == 550


def test_failure_not_cached(cached_host):
    cached_host.stop("authd")
    assert rcpt(cached_host, "bob@example.test") == 451
    cached_host.start("authd")
    assert rcpt(cached_host, "bob@example.test") == 250
