"""estafeta config check rejects every value a daemon would reject."""

import pytest

BAD_VALUES = [
    ("mynetworks", "300.0.0.0/8"),
    ("mynetworks", "10.0.0.0/33"),
    ("smtpd_listen", "127.0.0.1:99999"),
    ("smtpd_bare_lf", "maybe"),
    ("lmtp_socket_mode", "999"),
    ("myhostname", "a b"),
]


@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_config_check_rejects_meaning(make_mailhost, name, value):
    host = make_mailhost(start=False)
    with open(host.config_path, "a") as config:
        config.write("%s = %s\n" % (name, value))
    line = sum(1 for _ in open(host.config_path))

    check = host.run("estafeta", "config", "check")
    smtpd = host.run("smtpd", "-c", str(host.config_path), timeout=10)

    assert check.returncode == 1
    assert ("%s:%d: invalid value" % (host.config_path, line)) in check.stderr.decode()
    assert smtpd.returncode != 0


def test_config_check_rejects_directory(make_mailhost):
    host = make_mailhost(start=False)

    check = host.run("estafeta", "-c", str(host.dir), "config", "check")

    assert check.returncode == 1
    assert "not a regular file" in check.stderr.decode()


def test_config_check_rejects_tls_range(make_mailhost):
    host = make_mailhost(start=False, tls=True)
    with open(host.config_path, "a") as config:
        config.write("tls_min_protocol = TLSv1.3\ntls_max_protocol = TLSv1.2\n")

    check = host.run("estafeta", "config", "check")
    smtpd = host.run("smtpd", "-c", str(host.config_path), timeout=10)

    assert check.returncode == 1
    assert "tls_min_protocol TLSv1.3 is newer than tls_max_protocol TLSv1.2" in check.stderr.decode()
    assert smtpd.returncode != 0
    assert "tls_min_protocol TLSv1.3 is newer than tls_max_protocol TLSv1.2" in smtpd.stderr.decode()


def test_config_check_tls_range_any_order(make_mailhost):
    """The range is checked once the whole file is read, so lowering
    tls_max_protocol before tls_min_protocol is fine."""
    host = make_mailhost(start=False)
    with open(host.config_path, "a") as config:
        config.write("tls_max_protocol = TLSv1.1\ntls_min_protocol = TLSv1\n")

    check = host.run("estafeta", "config", "check")

    assert check.returncode == 0, check.stderr.decode()
    assert "configuration OK" in check.stdout.decode()
