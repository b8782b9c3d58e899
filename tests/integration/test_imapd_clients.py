"""imapd against real IMAP clients: Debian's mbsync (isync) and fetchmail,
and the imapflow package from the npm registry run by Node.js. Mail is
delivered through smtpd and checked on the server with imaplib."""

import json
import os
import shutil
import subprocess
import time

import pytest

# Mostly the clients' work, so the sanitizer pass skips these tests.
pytestmark = pytest.mark.slow

DEMO = "demo@example.test"
CLIENT_TIMEOUT = 60


def deliver(host, subject, body="Hello there.\r\n"):
    before = len(host.messages(DEMO))
    with host.smtp() as client:
        client.sendmail("alice@example.org", [DEMO],
                        "From: Alice <alice@example.org>\r\nTo: Demo <%s>\r\n"
                        "Subject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n%s"
                        % (DEMO, subject, subject.replace(" ", "."), body))
    assert len(host.wait_for_messages(DEMO, before + 1)) == before + 1


def login(host):
    imap = host.imap()
    assert imap.login(DEMO, "demo")[0] == "OK"
    return imap


def server_subjects(host, mailbox="INBOX"):
    """Map each message's UID to its Subject header in MAILBOX on the server."""
    imap = login(host)
    typ, _ = imap.select(mailbox)
    assert typ == "OK", mailbox
    typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    imap.logout()
    subjects = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(item[0].split(b"UID ")[1].split()[0])
            subjects[uid] = item[1].decode().strip().removeprefix("Subject: ")
    return subjects


def server_flags(host, subject, mailbox="INBOX"):
    imap = login(host)
    imap.select(mailbox)
    typ, data = imap.search(None, "SUBJECT", '"%s"' % subject)
    numbers = data[0].split()
    assert len(numbers) == 1, (subject, data)
    typ, data = imap.fetch(numbers[0].decode(), "(FLAGS)")
    imap.logout()
    return data[0].decode()


@pytest.fixture
def imaphost(make_mailhost):
    host = make_mailhost()
    host.start("imapd")
    return host


# mbsync


def write_mbsyncrc(host, local):
    path = host.dir / "mbsyncrc"
    path.write_text(
        "IMAPAccount estafeta\n"
        "Host 127.0.0.1\nPort %d\nUser %s\nPass demo\n"
        "SSLType None\nAuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount estafeta\n\n"
        "MaildirStore local\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
        "Channel demo\nFar :remote:\nNear :local:\nPatterns INBOX\n"
        "Create Both\nSyncState *\nSync All\nExpunge None\n"
        % (host.imap_port, DEMO, local, local))
    return path


def mbsync(config):
    result = subprocess.run(["mbsync", "-c", str(config), "demo"],
                            capture_output=True, timeout=CLIENT_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def local_files(folder):
    return sorted(p for sub in ("new", "cur") for p in (folder / sub).iterdir())


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_syncs_both_ways(imaphost):
    deliver(imaphost, "from smtpd")
    local = imaphost.dir / "local"
    local.mkdir()
    config = write_mbsyncrc(imaphost, local)

    mbsync(config)
    inbox = local / "INBOX"
    files = local_files(inbox)
    assert len(files) == 1
    assert b"Subject: from smtpd" in files[0].read_bytes()

    placed = inbox / "new" / "1796000000.P1Q1.client.example.test"
    placed.write_bytes(b"From: demo@example.test\r\nTo: demo@example.test\r\n"
                       b"Subject: placed locally\r\n\r\nWritten into the local Maildir.\r\n")
    synced = files[0]
    flagged = inbox / "cur" / (synced.name.split(":2,")[0] + ":2,F")
    synced.rename(flagged)

    mbsync(config)
    assert sorted(server_subjects(imaphost).values()) == ["from smtpd", "placed locally"]
    assert "\\Flagged" in server_flags(imaphost, "from smtpd")
    assert "\\Flagged" not in server_flags(imaphost, "placed locally")

    # A third run finds nothing left to do and changes nothing on either side.
    mbsync(config)
    assert len(local_files(inbox)) == 2
    assert len(server_subjects(imaphost)) == 2


# fetchmail


def fetchmail(host, output, *options):
    home = host.dir / "fetchmail"
    home.mkdir(mode=0o700, exist_ok=True)
    rcfile = home / "fetchmailrc"
    rcfile.write_text(
        "poll 127.0.0.1 protocol IMAP port %d auth password\n"
        "  user \"%s\" password \"demo\" is \"%s\" here\n"
        "  sslproto ''\n"
        "  mda \"cat >> %s\"\n"
        % (host.imap_port, DEMO, DEMO, output))
    rcfile.chmod(0o600)
    env = dict(os.environ, FETCHMAILHOME=str(home), HOME=str(home))
    return subprocess.run(["fetchmail", "--fetchmailrc", str(rcfile), "--nosyslog",
                           "--idfile", str(home / "fetchids"), *options],
                          capture_output=True, timeout=CLIENT_TIMEOUT, env=env)


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_downloads_and_deletes(imaphost):
    deliver(imaphost, "fetch one")
    deliver(imaphost, "fetch two")
    output = imaphost.dir / "fetched.mbox"

    result = fetchmail(imaphost, output)
    assert result.returncode == 0, result.stdout + result.stderr
    text = output.read_text()
    assert "Subject: fetch one" in text
    assert "Subject: fetch two" in text
    assert "Hello there." in text
    assert server_subjects(imaphost) == {}
    assert imaphost.messages(DEMO) == []

    # Nothing is left, so fetchmail exits 1, which fetchmail(1) documents as "no mail".
    result = fetchmail(imaphost, output)
    assert result.returncode == 1, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_keep_leaves_messages(imaphost):
    deliver(imaphost, "kept one")
    deliver(imaphost, "kept two")
    output = imaphost.dir / "fetched.mbox"

    result = fetchmail(imaphost, output, "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    text = output.read_text()
    assert "Subject: kept one" in text
    assert "Subject: kept two" in text
    assert sorted(server_subjects(imaphost).values()) == ["kept one", "kept two"]
    assert "\\Seen" in server_flags(imaphost, "kept one")
    assert "\\Seen" in server_flags(imaphost, "kept two")


# imapflow

IMAPFLOW_SCRIPT = r"""
const { ImapFlow } = require('imapflow');

async function main() {
    const client = new ImapFlow({
        host: '127.0.0.1', port: Number(process.env.IMAP_PORT), secure: false,
        doSTARTTLS: false, logger: false,
        auth: { user: process.env.IMAP_USER, pass: process.env.IMAP_PASS },
    });
    await client.connect();
    const result = {};

    const mailboxes = await client.list();
    result.mailboxes = mailboxes.map((box) => box.path).sort();

    const lock = await client.getMailboxLock('INBOX');
    try {
        result.exists = client.mailbox.exists;
        result.messages = [];
        for await (const message of client.fetch('1:*', { uid: true, envelope: true, source: true, flags: true })) {
            result.messages.push({
                uid: message.uid,
                subject: message.envelope.subject,
                from: message.envelope.from.map((a) => a.address),
                messageId: message.envelope.messageId,
                source: message.source.toString('utf8'),
            });
        }
        const first = result.messages[0].uid;
        const last = result.messages[result.messages.length - 1].uid;
        result.flagged = await client.messageFlagsAdd(String(first), ['\\Flagged'], { uid: true });
        const moved = await client.messageMove(String(last), 'Archive', { uid: true });
        result.moved = { destination: moved.destination, uidMap: [...moved.uidMap.entries()] };
        result.existsAfterMove = client.mailbox.exists;
    } finally {
        lock.release();
    }

    const archive = await client.status('Archive', { messages: true });
    result.archiveMessages = archive.messages;
    await client.logout();
    process.stdout.write(JSON.stringify(result));
}

main().catch((err) => {
    process.stderr.write(String(err && err.stack || err) + '\n');
    if (err && err.responseText) process.stderr.write('server: ' + err.responseText + '\n');
    process.exit(1);
});
"""

# npm's error codes when the registry cannot be reached.
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT",
                  "ENETUNREACH", "EHOSTUNREACH", "network")


def install_imapflow(directory):
    """Install imapflow from the npm registry, or skip the test when the registry is unreachable."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node or npm not installed")
    try:
        result = subprocess.run(
            ["npm", "install", "--prefix", str(directory), "--no-audit", "--no-fund",
             "--no-update-notifier", "imapflow"],
            capture_output=True, timeout=180, cwd=directory)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install imapflow timed out after 180 s: registry unreachable?")
    output = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0:
        if any(code in output for code in NETWORK_ERRORS):
            pytest.skip("npm registry unreachable: " + output[-300:])
        pytest.fail("npm install imapflow failed:\n" + output)


def test_imapflow_reads_flags_and_moves(imaphost):
    directory = imaphost.dir / "imapflow"
    directory.mkdir()
    install_imapflow(directory)
    deliver(imaphost, "flow one", "First body.\r\n")
    deliver(imaphost, "flow two", "Second body.\r\n")
    script = directory / "client.js"
    script.write_text(IMAPFLOW_SCRIPT)

    env = dict(os.environ, IMAP_PORT=str(imaphost.imap_port), IMAP_USER=DEMO, IMAP_PASS="demo",
               NODE_PATH=str(directory / "node_modules"))
    result = subprocess.run(["node", str(script)], capture_output=True, timeout=CLIENT_TIMEOUT,
                            env=env, cwd=directory)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    output = json.loads(result.stdout)

    assert output["mailboxes"] == ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    assert output["exists"] == 2
    messages = output["messages"]
    assert [m["subject"] for m in messages] == ["flow one", "flow two"]
    assert [m["uid"] for m in messages] == [1, 2]
    assert messages[0]["from"] == ["alice@example.org"]
    assert messages[0]["messageId"] == "<flow.one@example.org>"
    assert "First body." in messages[0]["source"]
    assert "Second body." in messages[1]["source"]
    assert output["flagged"] is True
    assert output["moved"]["destination"] == "Archive"
    assert output["moved"]["uidMap"] == [[2, 1]]
    assert output["existsAfterMove"] == 1
    assert output["archiveMessages"] == 1

    assert list(server_subjects(imaphost).values()) == ["flow one"]
    assert "\\Flagged" in server_flags(imaphost, "flow one")
    assert list(server_subjects(imaphost, "Archive").values()) == ["flow two"]
