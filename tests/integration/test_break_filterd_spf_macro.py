"""A sender's local part must not turn an SPF fail into temperror.

A record may use the local part in a macro, as in
"v=spf1 exists:%{l}._spf.%{d} -all". A 64-byte local part, which
RFC 5321 allows, expands to a label longer than 63 bytes, and "-" split
on "-" expands to an empty label. RFC 7208 section 4.8 makes such a
name match nothing, and pyspf (python3-spf) gives the record's fail.
filterd's resolver fails the lookup of such a name, and libspf2 turned
that into temperror. With the default spf_policy_temperror the spoofed
mail was accepted instead of rejected with 550 5.7.23, so any sender
could get past such a domain's -all.
"""

import pytest

import netns_dns
from test_filterd_spf import CLIENT_IP, build_probe, probe, pyspf_results, skip_reason, write_config

LONG_LABEL = "z" * 60
RECORDS = [
    'user.spf.test. TXT "v=spf1 exists:%{l}._spf.user.spf.test -all"',
    'split.spf.test. TXT "v=spf1 exists:%{l1r-}._spf.split.spf.test -all"',
    # Four 60-byte labels make a 262-byte name: without its first label
    # it fits in 253 bytes and exists.
    'long.spf.test. TXT "v=spf1 exists:%{l}.%{l}.%{l}.%{l}._spf.long.spf.test -all"',
    '%s._spf.long.spf.test. A 127.0.0.2' % ".".join([LONG_LABEL] * 3),
]
HELO = "client.spf.test"
SENDERS = {
    "plain local part": "someone@user.spf.test",
    "64-byte local part": "z" * 64 + "@user.spf.test",
    "empty label from a split": "-@split.spf.test",
    "name over 253 bytes": LONG_LABEL + "@long.spf.test",
}

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("spf-macro")
    net = netns_dns.NetnsBed()
    try:
        net.dns = netns_dns.ZoneServer(net, directory / "dns", ["spf.test"], RECORDS)
        net.add_host("client", CLIENT_IP)
        net.probe = build_probe(directory)
        net.directory = directory
        yield net
    finally:
        net.close()


def test_plain_local_part_fails(bed):
    config = write_config(bed, "plain")

    result = probe(bed, config, SENDERS["plain local part"], helo=HELO)

    assert result["spf_result"] == "fail"
    assert result["action"] == "reject"
    assert pyspf_results(bed, [[SENDERS["plain local part"], HELO]]) == ["fail"]


@pytest.mark.parametrize("case", ["64-byte local part", "empty label from a split"])
def test_invalid_expansion_still_fails(bed, case):
    config = write_config(bed, "invalid")

    result = probe(bed, config, SENDERS[case], helo=HELO)

    assert pyspf_results(bed, [[SENDERS[case], HELO]]) == ["fail"]
    assert result["spf_result"] == "fail", result["stderr"]
    assert result["action"] == "reject"


def test_long_expansion_is_truncated(bed):
    """RFC 7208 section 7.3 removes leading labels from an expansion over
    253 bytes until it fits, and pyspf does the same here."""
    config = write_config(bed, "long")

    result = probe(bed, config, SENDERS["name over 253 bytes"], helo=HELO)

    assert pyspf_results(bed, [[SENDERS["name over 253 bytes"], HELO]]) == ["pass"]
    assert result["spf_result"] == "pass", result["stderr"]
    assert result["action"] == "accept"
