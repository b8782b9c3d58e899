"""The estafeta admin command: queue list, show, flush, delete, and
config check and show. Queue tests run authd and queued only, so the
messages stay in the queue.
"""

import re

import pytest

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_CONFIG = 78


@pytest.fixture
def queue_host(make_mailhost):
    host = make_mailhost(start=False)
    host.start("authd", "queued")
    return host


def enqueue(host, *rcpts, body=b"body\n"):
    result = host.run("sendmail", "-f", "sender@client.example.test", *rcpts,
                      input=b"Subject: admin test\n\n" + body)
    assert result.returncode == 0, result.stderr


def queue_ids(host):
    result = host.run("estafeta", "queue", "list")
    assert result.returncode == 0, result.stderr
    return re.findall(r"^([0-9A-F]{8,})\*?\s", result.stdout.decode(), re.M)


# estafeta queue

def test_queue_list_matches_mailq(queue_host):
    enqueue(queue_host, "alice@example.test")
    listing = queue_host.run("estafeta", "queue", "list")
    mailq = queue_host.run("sendmail", "-bp")
    assert listing.returncode == 0
    assert listing.stdout == mailq.stdout
    assert b"sender@client.example.test" in listing.stdout


def test_queue_list_empty(queue_host):
    result = queue_host.run("estafeta", "queue", "list")
    assert result.returncode == 0
    assert result.stdout == b"Mail queue is empty\n"


def test_queue_show(queue_host):
    enqueue(queue_host, "alice@example.test", "bob@example.test")
    queue_id = queue_ids(queue_host)[0]
    result = queue_host.run("estafeta", "queue", "show", queue_id)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    lines = text.split("\n")
    assert lines[0] == "*** ENVELOPE %s ***" % queue_id
    assert "sender: sender@client.example.test" in lines
    assert re.search(r"^message_size: \d+$", text, re.M)
    assert re.search(r"^arrival_time: \w{3}, \d\d \w{3} \d{4} ", text, re.M)
    assert re.search(r"^recipient: alice@example\.test status=\w+", text, re.M)
    assert re.search(r"^recipient: bob@example\.test status=\w+", text, re.M)
    assert "*** MESSAGE %s ***" % queue_id in lines
    assert text.endswith("Subject: admin test\n\nbody\n")
    assert "\nReceived: by mail.example.test" in text


def test_queue_show_unknown_id(queue_host):
    result = queue_host.run("estafeta", "queue", "show", "0000000000000000")
    assert result.returncode == 1
    assert b"cannot show 0000000000000000: " in result.stderr


def test_queue_flush(queue_host):
    enqueue(queue_host, "alice@example.test")
    result = queue_host.run("estafeta", "queue", "flush")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rb"delivery requested for \d+ messages?\n", result.stdout)


def test_queue_flush_one(queue_host):
    enqueue(queue_host, "alice@example.test")
    queue_id = queue_ids(queue_host)[0]
    result = queue_host.run("estafeta", "queue", "flush", queue_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"delivery requested for ")


def test_queue_delete_one(queue_host):
    enqueue(queue_host, "alice@example.test")
    enqueue(queue_host, "bob@example.test")
    first, second = queue_ids(queue_host)
    result = queue_host.run("estafeta", "queue", "delete", first)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"%s: deleted\n" % first.encode()
    assert queue_ids(queue_host) == [second]


def test_queue_delete_all(queue_host):
    for rcpt in ("alice@example.test", "bob@example.test", "demo@example.test"):
        enqueue(queue_host, rcpt)
    result = queue_host.run("estafeta", "queue", "delete", "ALL")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"deleted 3 messages\n")
    assert queue_ids(queue_host) == []


def test_queue_delete_unknown_id(queue_host):
    result = queue_host.run("estafeta", "queue", "delete", "0000000000000000")
    assert result.returncode == 1
    assert b"cannot delete 0000000000000000: " in result.stderr


def test_queue_deleted_message_gone_after_restart(queue_host):
    enqueue(queue_host, "alice@example.test")
    queue_id = queue_ids(queue_host)[0]
    assert queue_host.run("estafeta", "queue", "delete", queue_id).returncode == 0
    queue_host.restart("queued")
    assert queue_ids(queue_host) == []


@pytest.mark.parametrize("args", [["list"], ["flush"], ["show", "0000000000000000"],
                                  ["delete", "ALL"]])
def test_queue_commands_when_queued_down(queue_host, args):
    queue_host.stop("queued")
    result = queue_host.run("estafeta", "queue", *args)
    assert result.returncode == EX_UNAVAILABLE
    assert b"cannot connect to queued" in result.stderr


@pytest.mark.parametrize("args", [[], ["show"], ["delete"], ["frob"], ["list", "extra"]])
def test_queue_usage_errors(queue_host, args):
    result = queue_host.run("estafeta", "queue", *args)
    assert result.returncode == EX_USAGE
    assert b"usage: estafeta queue list | show ID | flush [ID] | delete ID|ALL" in result.stderr


def test_config_option_c(queue_host):
    enqueue(queue_host, "alice@example.test")
    result = queue_host.run("estafeta", "-c", str(queue_host.config_path), "queue", "list",
                            env={"ESTAFETA_CONFIG": "/nonexistent/estafeta.conf"})
    assert result.returncode == 0, result.stderr
    assert b"alice@example.test" in result.stdout


# estafeta config

def test_config_check_good(make_mailhost):
    host = make_mailhost(start=False)
    result = host.run("estafeta", "config", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"%s: configuration OK\n" % str(host.config_path).encode()


def test_config_check_unknown_parameter(make_mailhost):
    host = make_mailhost(start=False)
    with open(host.config_path, "a") as config:
        config.write("no_such_parameter = 1\n")
    line = len(host.config_path.read_text().splitlines())
    result = host.run("estafeta", "config", "check")
    assert result.returncode == 1
    assert result.stderr == b'estafeta: %s:%d: unknown parameter "no_such_parameter"\n' % (
        str(host.config_path).encode(), line)


def test_config_check_invalid_value(make_mailhost):
    host = make_mailhost(start=False)
    host.config_path.write_text("# broken\nmyhostname = mail.example.test\nsyslog = maybe\n")
    result = host.run("estafeta", "config", "check")
    assert result.returncode == 1
    assert result.stderr.startswith(b"estafeta: %s:3: invalid value \"maybe\" for syslog"
                                    % str(host.config_path).encode())


def test_config_check_missing_equals(make_mailhost):
    host = make_mailhost(start=False)
    host.config_path.write_text("myhostname mail.example.test\n")
    result = host.run("estafeta", "config", "check")
    assert result.returncode == 1
    assert b"%s:1: missing '='" % str(host.config_path).encode() in result.stderr


def test_config_check_out_of_range(make_mailhost):
    host = make_mailhost(start=False)
    host.config_path.write_text("first_valid_uid = 0\n")
    result = host.run("estafeta", "config", "check")
    assert result.returncode == 1
    assert b"%s:1: value 0 for first_valid_uid is out of range" % str(host.config_path).encode() \
        in result.stderr


def test_config_check_missing_file(make_mailhost):
    host = make_mailhost(start=False)
    result = host.run("estafeta", "-c", "/nonexistent/estafeta.conf", "config", "check")
    assert result.returncode == 1
    assert b"/nonexistent/estafeta.conf: cannot open" in result.stderr


def test_config_show_changed_only(make_mailhost):
    host = make_mailhost(start=False)
    result = host.run("estafeta", "config", "show", "-n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert "myhostname = mail.example.test" in lines
    assert "virtual_domains = example.test" in lines
    assert not any(line.startswith("first_valid_uid") for line in lines)


def test_config_show_all(make_mailhost):
    host = make_mailhost(start=False)
    result = host.run("estafeta", "config", "show")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert "myhostname = mail.example.test" in lines
    assert "first_valid_uid = 1000" in lines
    assert "virtual_mail_user = _estafeta-vmail" in lines


def test_config_show_bad_config(make_mailhost):
    host = make_mailhost(start=False)
    host.config_path.write_text("bogus = 1\n")
    result = host.run("estafeta", "config", "show")
    assert result.returncode == EX_CONFIG
    assert b'%s:1: unknown parameter "bogus"' % str(host.config_path).encode() in result.stderr


@pytest.mark.parametrize("args", [["config"], ["config", "frob"], ["config", "show", "-x"]])
def test_config_usage_errors(make_mailhost, args):
    host = make_mailhost(start=False)
    result = host.run("estafeta", *args)
    assert result.returncode == EX_USAGE
    assert b"usage: estafeta config" in result.stderr


# estafeta help

@pytest.mark.parametrize("args", [["help"], ["-h"], ["--help"]])
def test_help(make_mailhost, args):
    host = make_mailhost(start=False)
    result = host.run("estafeta", *args)
    assert result.returncode == 0
    for command in (b"queue list", b"queue show ID", b"queue flush [ID]", b"queue delete ID|ALL",
                    b"config check", b"config show [-n]", b"help"):
        assert command in result.stdout


def test_no_command(make_mailhost):
    host = make_mailhost(start=False)
    result = host.run("estafeta")
    assert result.returncode == EX_USAGE
    assert b"usage: estafeta [-c config] command" in result.stderr


def test_unknown_command(make_mailhost):
    host = make_mailhost(start=False)
    result = host.run("estafeta", "frobnicate")
    assert result.returncode == EX_USAGE
    assert result.stderr == b'estafeta: unknown command "frobnicate"; try estafeta help\n'
