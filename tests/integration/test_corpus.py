"""Real messages from Python's email test corpus pass through unchanged.

Every msg_*.txt of Debian's libpython3.11-testsuite goes in through smtpd
and through sendmail. The copy in the Maildir must be the original, byte
for byte (line ends aside), below trace fields that Estafeta added.
"""

import email.parser
import email.policy
import re
from pathlib import Path

import pytest

CORPUS = Path("/usr/lib/python3.11/test/test_email/data")
CORPUS_FILES = sorted(CORPUS.glob("msg_*.txt"))

TRACE_FIELDS = {"return-path", "delivered-to", "received"}
LOCAL_SUBMISSION_FIELDS = TRACE_FIELDS | {"date", "message-id", "from"}

pytestmark = pytest.mark.skipif(not CORPUS_FILES, reason="libpython3.11-testsuite is not installed")


def lf(data):
    """The message with LF line ends, as Maildir stores it."""
    return data.replace(b"\r\n", b"\n")


def without_from_line(data):
    """DATA without a leading mbox "From " line, which sendmail drops as
    Postfix's sendmail does."""
    while data.startswith((b"From ", b">From ")):
        data = data.split(b"\n", 1)[1]
    return data


def crlf(data):
    return lf(data).replace(b"\n", b"\r\n")


def added_field_names(delivered, original):
    """Names of the header fields in front of ORIGINAL inside DELIVERED."""
    assert delivered.endswith(original), "original bytes not found at the end of the delivered copy"
    prefix = delivered[: len(delivered) - len(original)]
    names = []
    for line in prefix.split(b"\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            assert names, "continuation line without a field: %r" % line
            continue
        match = re.match(rb"([!-9;-~]+):", line)
        assert match, "added line is not a header field: %r" % line
        names.append(match.group(1).decode().lower())
    return names


def is_8bit(data):
    return any(byte > 127 for byte in data)


@pytest.mark.slow
def test_corpus_through_smtpd(mailhost):
    originals = [lf(path.read_bytes()) for path in CORPUS_FILES]

    with mailhost.smtp() as client:
        for data in originals:
            options = ["BODY=8BITMIME"] if is_8bit(data) else []
            refused = client.sendmail("sender@client.example.test", ["demo@example.test"],
                                      crlf(data), mail_options=options)
            assert refused == {}

    delivered = mailhost.wait_for_messages("demo@example.test", len(originals), timeout=60)
    assert len(delivered) == len(originals)

    # Match each copy to its original by content: the delivered copy ends
    # with exactly one original, whose size is unique enough in the corpus.
    remaining = list(originals)
    for copy in delivered:
        matches = [o for o in remaining if copy.endswith(o) and
                   all(name in TRACE_FIELDS for name in added_field_names(copy, o))]
        assert matches, "a delivered message matches no original:\n%r" % copy[:400]
        remaining.remove(max(matches, key=len))
    assert remaining == []


@pytest.mark.slow
def test_corpus_through_sendmail(mailhost):
    for path in CORPUS_FILES:
        original = lf(path.read_bytes())
        result = mailhost.run("sendmail", "-i", "-f", "sender@client.example.test",
                              "demo@example.test", input=original)
        assert result.returncode == 0, (path.name, result.stderr)

    delivered = mailhost.wait_for_messages("demo@example.test", len(CORPUS_FILES), timeout=60)
    assert len(delivered) == len(CORPUS_FILES)

    remaining = [without_from_line(lf(path.read_bytes())) for path in CORPUS_FILES]
    for copy in delivered:
        header_end = copy.find(b"\n\n")
        matches = []
        for original in remaining:
            # sendmail may add Date, Message-ID and From where the original
            # lacks them; everything the original had is kept as is.
            if copy.endswith(original):
                names = added_field_names(copy, original)
                if all(name in LOCAL_SUBMISSION_FIELDS for name in names):
                    matches.append(original)
        assert matches, "a delivered message matches no original:\n%r" % copy[: max(header_end, 400)]
        remaining.remove(max(matches, key=len))
    assert remaining == []


@pytest.mark.slow
def test_corpus_through_sendmail_t(mailhost):
    """sendmail -t: recipients come from the header fields; the command
    line adds demo@example.test, as Postfix's sendmail does."""
    for path in CORPUS_FILES:
        original = lf(path.read_bytes())
        result = mailhost.run("sendmail", "-t", "-i", "-f", "sender@client.example.test",
                              "demo@example.test", input=original)
        assert result.returncode == 0, (path.name, result.stderr)

    delivered = mailhost.wait_for_messages("demo@example.test", len(CORPUS_FILES), timeout=60)
    assert len(delivered) == len(CORPUS_FILES)

    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    for path in CORPUS_FILES:
        original = without_from_line(lf(path.read_bytes()))
        had_bcc = parser.parsebytes(original).get_all("Bcc")
        if had_bcc:
            continue        # sendmail -t removes Bcc, so the bytes differ on purpose
        matches = [c for c in delivered if c.endswith(original)]
        assert matches, "%s was not delivered unchanged" % path.name
