"""Password schemes of the passwd-file, each with a hash written by a tool
that does not share authd's code: openssl passwd for the SHA-crypt
schemes, htpasswd (APR's bcrypt) for $2y$, Python's crypt module for
$2b$, and the argon2 command (the reference implementation's CLI) for
Argon2.
"""

import shutil
import subprocess
import warnings

import pytest

from test_authd_passdb import AuthClient, passwd_line

with warnings.catch_warnings():
    # Python 3.11 (Debian 12) still has crypt(3) bindings; 3.13 removes them.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

PASSWORD = "s3cret pass"


def tool(*args, input=None):
    if shutil.which(args[0]) is None:
        pytest.skip("%s is not installed" % args[0])
    return subprocess.run(args, input=input, capture_output=True, text=True,
                          check=True).stdout.strip()


def openssl_crypt(option):
    return tool("openssl", "passwd", option, PASSWORD)


def htpasswd_bcrypt():
    line = tool("htpasswd", "-nbB", "-C", "5", "user", PASSWORD)
    return line.split(":", 1)[1]


def argon2(variant):
    return tool("argon2", "estafeta-salt", variant, "-t", "2", "-m", "12", "-p", "1", "-e",
                input=PASSWORD)


HASHES = {
    "SHA512-CRYPT": lambda: "{SHA512-CRYPT}" + openssl_crypt("-6"),
    "SHA256-CRYPT": lambda: "{SHA256-CRYPT}" + openssl_crypt("-5"),
    "BLF-CRYPT-2y": lambda: "{BLF-CRYPT}" + htpasswd_bcrypt(),
    "BLF-CRYPT-2b": lambda: "{BLF-CRYPT}" + crypt.crypt(PASSWORD,
                                                        crypt.mksalt(crypt.METHOD_BLOWFISH)),
    "PLAIN": lambda: "{PLAIN}" + PASSWORD,
    "ARGON2ID": lambda: "{ARGON2ID}" + argon2("-id"),
    "ARGON2I": lambda: "{ARGON2I}" + argon2("-i"),
}


@pytest.fixture
def scheme_host(make_mailhost):
    def start(stored):
        host = make_mailhost(start=False, auth_failure_delay=0, passdb="passwd-file")
        (host.dir / "etc" / "passwd-file").write_text(passwd_line("u@example.test", stored))
        host.start("authd")
        return AuthClient(str(host.dir / "sock" / "auth-client")), host
    return start


@pytest.mark.parametrize("scheme", sorted(HASHES))
def test_scheme_verifies(scheme_host, scheme):
    stored = HASHES[scheme]()
    client, _ = scheme_host(stored)
    assert client.plain(1, "u@example.test", PASSWORD) == ["OK", "1", "user=u@example.test"]
    assert client.plain(2, "u@example.test", PASSWORD + "x")[0] == "FAIL"
    assert client.plain(3, "u@example.test", "")[0] == "FAIL"


def test_bcrypt_prefix_is_2y():
    assert htpasswd_bcrypt().startswith("$2y$")


def test_argon2_variant_mismatch_fails(scheme_host):
    # An Argon2i hash under the ARGON2ID scheme is malformed, not a match.
    client, host = scheme_host("{ARGON2ID}" + argon2("-i"))
    assert client.plain(1, "u@example.test", PASSWORD)[0] == "FAIL"
    assert host.wait_for_log(r"unsupported scheme or format")


def test_argon2_corrupt_hash_fails(scheme_host):
    client, host = scheme_host("{ARGON2ID}$argon2id$v=19$m=4096,t=2,p=1$bm90$!!!")
    assert client.plain(1, "u@example.test", PASSWORD)[0] == "FAIL"
    assert host.wait_for_log(r"unsupported scheme or format")
