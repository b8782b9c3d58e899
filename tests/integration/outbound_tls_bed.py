"""Pieces for the outbound TLS tests: a DNSSEC-signed zone served by the
test unbound as an auth-zone, TLSA digests of test certificates, and an
HTTPS server in a namespace that serves MTA-STS policies.

The zone is signed by ldns-signzone (ldnsutils) with a key that
ldns-keygen makes for each test. The sender's libunbound validates the
records with that key as its trust anchor (dns_trust_anchor_file).
"""

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import netns_dns

LDNS_KEYGEN = "/usr/bin/ldns-keygen"
LDNS_SIGNZONE = "/usr/bin/ldns-signzone"


def available():
    """The reason these tests cannot run here, or None."""
    reason = netns_dns.available()
    if reason:
        return reason
    for tool in (LDNS_KEYGEN, LDNS_SIGNZONE):
        if not Path(tool).exists():
            return "%s is missing (Debian package ldnsutils)" % tool
    if not shutil.which("openssl"):
        return "openssl is not installed"
    return None


def spki_sha256(cert_path):
    """The hex SHA-256 digest of the certificate's public key, the data of
    a "3 1 1" TLSA record."""
    der = subprocess.run(["openssl", "x509", "-in", str(cert_path), "-noout", "-pubkey"],
                         check=True, capture_output=True).stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der,
                          check=True, capture_output=True).stdout
    return hashlib.sha256(spki).hexdigest()


def certificate_sha256(cert_path):
    """The hex SHA-256 digest of the whole certificate, the data of a
    "2 0 1" TLSA record for a CA."""
    der = subprocess.run(["openssl", "x509", "-in", str(cert_path), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


class SignedZone:
    """ORIGIN signed with a fresh key in DIRECTORY.

    RECORDS are zone file lines relative to ORIGIN. TAMPER maps a text in
    the signed zone (such as a TLSA digest, which ldns-signzone writes in
    lower case) to its replacement after signing, so that the signature
    no longer matches and a validating resolver marks the response bogus.
    """

    def __init__(self, directory, origin, records, tamper=None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        self.origin = origin.rstrip(".")
        zone = self.directory / (self.origin + ".zone")
        zone.write_text("\n".join([
            "$ORIGIN %s." % self.origin,
            "$TTL 300",
            "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300" % (self.origin, self.origin),
            "@ IN NS ns.%s." % self.origin,
            "ns IN A %s" % netns_dns.DNS_ADDRESS,
        ] + list(records)) + "\n")
        key = subprocess.run([LDNS_KEYGEN, "-a", "ECDSAP256SHA256", "-k", self.origin],
                             cwd=self.directory, check=True, capture_output=True,
                             text=True).stdout.strip()
        subprocess.run([LDNS_SIGNZONE, str(zone), key], cwd=self.directory, check=True,
                       capture_output=True)
        self.signed_path = self.directory / (self.origin + ".zone.signed")
        self.anchor_path = self.directory / (key + ".key")
        text = self.signed_path.read_text()
        for old, new in (tamper or {}).items():
            assert text.count(old) == 1, "%r is not once in %s" % (old, self.signed_path)
            text = text.replace(old, new)
        self.signed_path.write_text(text)
        self.anchor_path.chmod(0o644)

    def unbound_config(self):
        """Lines for ZoneServer's extra_config: serve the signed zone."""
        return "\n".join([
            '    local-zone: "%s." transparent' % self.origin,
            "auth-zone:",
            '    name: "%s."' % self.origin,
            '    zonefile: "%s"' % self.signed_path,
            "    for-downstream: yes",
            "    for-upstream: no",
        ])


POLICY_SERVER = r'''
import http.server, json, ssl, sys
config_path, address, cert, key = sys.argv[1:5]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(config_path) as f:
            config = json.load(f)
        body = config["body"].encode()
        self.send_response(config["status"])
        self.send_header("Content-Type", config["content_type"])
        self.send_header("Content-Length", str(len(body)))
        if config.get("location"):
            self.send_header("Location", config["location"])
        self.end_headers()
        self.wfile.write(body)

server = http.server.HTTPServer((address, 443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
'''


class PolicyServer:
    """HTTPS on ADDRESS:443 in host NAME of NET that replies to every GET
    with POLICY, with the certificate CERT/KEY (which must name each
    mta-sts.DOMAIN the test uses). STATUS, CONTENT_TYPE and LOCATION set
    the reply's status and header fields."""

    def __init__(self, net, name, address, directory, cert, key, policy, status=200,
                 content_type="text/plain", location=None):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "reply.json"
        config.write_text(json.dumps({"body": policy, "status": status,
                                      "content_type": content_type, "location": location}))
        script = directory / "policy_server.py"
        script.write_text(POLICY_SERVER)
        self.log_path = directory / "policy_server.log"
        self.log_file = open(self.log_path, "ab")
        self.proc = net.popen(name, ["/usr/bin/python3", str(script), str(config), address,
                                     str(cert), str(key)],
                              stdout=self.log_file, stderr=subprocess.STDOUT)
        self.wait_ready(net, name, address)

    def wait_ready(self, net, name, address, timeout=10):
        probe = ("import socket; socket.create_connection(('%s', 443), timeout=1).close()"
                 % address)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("policy server exited: %s" % self.log())
            if net.run(name, "/usr/bin/python3", "-c", probe).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("policy server not listening after %ss" % timeout)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def requests(self):
        """The request lines the server logged, such as "GET /.well-known/mta-sts.txt"."""
        return [line for line in self.log().splitlines() if '"GET ' in line]
