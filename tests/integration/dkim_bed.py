"""Shared setup of the DKIM, DMARC and Authentication-Results tests.

LoopbackZone runs Debian's unbound on 127.0.0.1 and a free port with
only the records a test gives it, so filterd (dns_resolvers) queries
nothing else. keygen() runs `estafeta dkim keygen` and returns the key
file and its TXT record. dkimpy_sign() and dkimpy_verify() use
python3-dkim, which gets key records from a dict and never from DNS.
"""

import email.utils
import re
import subprocess
import time
from pathlib import Path

from ports import free_port

UNBOUND = "/usr/sbin/unbound"
DNS_ADDRESS = "127.0.0.1"

# The filterd settings every DKIM test host uses. The chain has only the
# checks under test, because no spamd or clamd runs here. Short DNS
# timeouts make a zone that drops queries cost about a second, and the
# trust anchor is empty because the test zones are not signed.
FILTER_CHECKS = "spf dkim_verify dmarc dkim_sign authres"


def filter_settings(zone, **extra):
    settings = {
        "smtpd_filter": "yes",
        "filterd_checks": FILTER_CHECKS,
        "dns_resolvers": "%s@%d" % (DNS_ADDRESS, zone.port),
        "dns_trust_anchor_file": "",
        "filterd_dns_timeout": "1s",
        "dkim_key_lookup_timeout": "3s",
        "authserv_id": "mail.example.test",
    }
    settings.update(extra)
    return settings


class LoopbackZone:
    """unbound on 127.0.0.1:PORT serving RECORDS in the static ZONES.

    A zone listed in DROPPED gets no answer at all, so lookups there time
    out as when the DNS is down.
    """

    def __init__(self, directory, zones, records, dropped=()):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.directory / "unbound.log"
        config = [
            "server:",
            "    interface: %s" % DNS_ADDRESS,
            "    port: %d" % self.port,
            "    do-daemonize: no",
            '    username: ""',
            '    chroot: ""',
            '    directory: "%s"' % self.directory,
            '    pidfile: ""',
            "    use-syslog: no",
            '    logfile: "%s"' % self.log_path,
            "    verbosity: 1",
            "    num-threads: 1",
            "    access-control: 127.0.0.0/8 allow",
            # No recursion and no upstream: unbound replies only from the lines below.
            '    module-config: "iterator"',
            "    do-not-query-address: 0.0.0.0/0",
            "    do-not-query-address: ::/0",
            '    local-zone: "." static',
        ]
        for zone in zones:
            config.append('    local-zone: "%s." static' % zone)
            config.append('    local-data: "%s. 300 IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300"'
                          % (zone, zone, zone))
        for zone in dropped:
            config.append('    local-zone: "%s." deny' % zone)
        for record in records:
            quote = "'" if '"' in record else '"'
            config.append("    local-data: %s%s%s" % (quote, record, quote))
        config += ["remote-control:", "    control-enable: no"]
        self.config_path = self.directory / "unbound.conf"
        self.config_path.write_text("\n".join(config) + "\n")
        check = subprocess.run(["unbound-checkconf", str(self.config_path)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", str(self.config_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.wait_ready(zones[0])

    def wait_ready(self, zone, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("unbound exited: %s" % self.log())
            result = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(self.port),
                                     "@" + DNS_ADDRESS, zone, "SOA"], capture_output=True, text=True)
            if result.returncode == 0 and result.stdout.strip():
                return
            time.sleep(0.05)
        raise RuntimeError("unbound did not answer within %ss: %s" % (timeout, self.log()))

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def keygen(estafeta, config_path, domain, selector, *options):
    """Run estafeta dkim keygen; return (key path, TXT data, table line)."""
    result = subprocess.run([estafeta, "-c", str(config_path), "dkim", "keygen", domain, selector,
                             *options], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    record_line = next(line for line in lines if " IN TXT " in line)
    table_line = next(line for line in lines if line.startswith(domain + ":"))
    strings = re.findall(r'"([^"]*)"', record_line)
    return Path(table_line.split(":", 2)[2]), strings, table_line


def txt_record(name, strings):
    """An unbound local-data line for a TXT record of several strings."""
    return "%s. 300 IN TXT %s" % (name, " ".join('"%s"' % s for s in strings))


def dkimpy_sign(message, selector, domain, key_pem, headers=(b"from", b"to", b"subject", b"date")):
    """Sign MESSAGE with dkimpy, rsa-sha256 or ed25519-sha256 as the PEM
    key is. dkimpy takes an Ed25519 key as the base64 of its 32-byte seed,
    the last 32 bytes of the PKCS#8 form that keygen writes."""
    import base64
    import dkim
    algorithm = b"rsa-sha256"
    if b"BEGIN PRIVATE KEY" in key_pem:
        der = base64.b64decode(b"".join(key_pem.split(b"\n")[1:-2]))
        if len(der) == 48:
            key_pem = base64.b64encode(der[-32:])
            algorithm = b"ed25519-sha256"
    signature = dkim.sign(message, selector.encode(), domain.encode(), key_pem,
                          include_headers=list(headers), canonicalize=(b"relaxed", b"simple"),
                          signature_algorithm=algorithm)
    return signature + message


def dkimpy_verify(message, records):
    """dkim.verify with key records from RECORDS ({name: text}) only."""
    import dkim

    def dnsfunc(name, timeout=5):
        text = records.get(name.decode().rstrip("."))
        return text.encode() if text is not None else None

    return dkim.verify(message, dnsfunc=dnsfunc)


def authres_fields(message):
    """The unfolded Authentication-Results values of MESSAGE (bytes)."""
    header = message.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", header)
    return [line.split(":", 1)[1].strip() for line in unfolded.splitlines()
            if line.lower().startswith("authentication-results:")]


def message(sender="alice@sender.test", to="demo@example.test", subject="DKIM test",
            body="Hello from the DKIM tests.\n", extra=""):
    # The date of sending: SpamAssassin scores an old Date: field.
    return ("From: Alice <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n"
            "Message-ID: <%s@sender.test>\r\n%s\r\n%s"
            % (sender, to, subject, email.utils.formatdate(usegmt=True), int(time.time() * 1e6), extra,
               body.replace("\n", "\r\n"))).encode()
