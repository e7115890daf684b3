#!/usr/bin/python3
"""A fake HashiCorp Vault (and OpenBao) HTTP server for secretfs's integration tests.

Python standard library only. Use it as a library::

    from fakes.fake_vault import FakeVault, make_test_pki

    with FakeVault(root_token="root") as vault:
        vault.kv_put("secret/app/config", {"api_key": "k1"})         # KV v2 (mount "secret/")
        vault.add_dynamic_role("database", "app", default_ttl=30, max_ttl=90)
        ...  # point secretfs at vault.url, then assert on vault.requests / vault.leases

or as a script (the URL is the first line printed on stdout)::

    /usr/bin/python3 tests/fakes/fake_vault.py --port 0 --tls-cert C --tls-key K \
        [--tls-client-ca CA] [--root-token T] [--namespace NS ...] [--seed FILE]

A script-mode fake is steered over ``POST /_fake/call`` ({"method", "args",
"kwargs"} naming one of ADMIN_METHODS) and inspected with ``GET /_fake/requests``
and ``GET /_fake/leases``; those paths are never recorded and ignore seal/faults.

What is modelled, with the HTTP shapes of Vault's API docs
(website/content/api-docs in hashicorp/vault):

* Every response body is {"request_id", "lease_id", "renewable", "lease_duration",
  "data", "wrap_info", "warnings", "auth"} (plus "mount_type" for mount paths);
  errors are {"errors": [...]} with Vault's statuses: 400 bad request,
  403 {"errors":["permission denied"]} for a missing/unknown/expired token,
  404 {"errors":[]} for nothing at a path, 429 rate limited, 500, and
  503 {"errors":["Vault is sealed"]}.
* Tokens: X-Vault-Token required except on logins, sys/health, sys/seal-status
  and sys/wrapping/unwrap with the wrapping token as the client token. Tokens
  have ttl, max ttl, renewable, num_uses and a namespace; auth/token/lookup-self
  (GET/POST), renew-self (capped at the max TTL with Vault's warning),
  revoke-self. An expired or revoked token revokes the leases it created (as
  Vault does) unless revoke_leases_with_token=False.
* Namespaces: X-Vault-Namespace is always recorded; when the fake is created
  with namespaces=[...] it is enforced: each namespace has its own mounts, KV
  data and roles; an unknown namespace is 404 {"errors":["namespace not found"]};
  a token works in its own namespace and its children.
* GET sys/internal/ui/mounts and sys/internal/ui/mounts/<path> (403 with the
  "preflight capability check returned 403 ..." message when no mount matches).
* KV v1 (GET/PUT/POST/DELETE/LIST) and KV v2 (data/, metadata/, delete/,
  undelete/, destroy/, config; ?version=N; a deleted or destroyed version is 404
  with data.data null and data.metadata carrying deletion_time/destroyed).
* Auth: approle (role_id, secret_id; secret-id generation, num_uses),
  kubernetes and jwt (role, jwt: accepted when the JWT is one configured for
  the role), cert (the TLS client certificate, verified with the openssl CLI
  against the role's CA; optional name), aws IAM (the signed GetCallerIdentity
  request is sent to the configured sts_endpoint, as Vault does, and the ARN
  STS answers is bound to the role; X-Vault-AWS-IAM-Server-ID checked and
  required to be signed when configured). sys/wrapping/unwrap (single use; wrapping token in X-Vault-Token or
  body {"token"}) and X-Vault-Wrap-TTL on any 200 response.
* Leased secrets: <mount>/creds/<role> (database: renewable; aws: not) and
  <mount>/issue/<role> (pki), with pluggable issue/revoke callbacks;
  <mount>/revoke (pki, POST/PUT {"serial_number"}: 200 with revocation_time,
  revocation_time_rfc3339 and state; 400 for a missing or unknown serial),
  recorded in pki_revoked;
  sys/leases/renew (capped at the role's max_ttl, then 400 "lease not found"
  once expired/revoked), sys/leases/revoke (204), sys/leases/lookup. Expired
  leases are revoked by a reaper thread, which calls the revoke callback.
* Faults per path prefix (status/body, sealed, 429 + Retry-After, malformed
  JSON, hang N seconds or until stop, close without reply), once / N times /
  until cleared; a global seal toggle.

The fake's clock can be moved forward with advance(seconds); that moves only
the fake's own notion of time (TTLs, expiry), not the client's.
"""

import argparse
import base64
import copy
import datetime
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import socketserver
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import weakref
from collections import Counter

__all__ = ["FakeVault", "VaultError", "TestPKI", "make_test_pki", "parse_duration",
           "go_duration", "ADMIN_METHODS", "main"]

DEFAULT_MAX_TTL = 768 * 3600          # Vault's system default/max lease TTL (768h)
KV1_LEASE_DURATION = 768 * 3600       # what KV v1 reports as lease_duration
KV2_DEFAULT_MAX_VERSIONS = 10
_ALNUM = string.ascii_letters + string.digits


# --------------------------------------------------------------------------- helpers

def parse_duration(value, default=0.0):
    """Seconds from an int/float, a numeric string or a Go-style duration ("1h30m", "90s")."""
    if value is None or value == "":
        return float(default)
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {value!r}")
    return sum(float(n) * units[u] for n, u in parts)


def _secs(seconds):
    """Whole seconds as reported in responses (rounded: a request's own latency must not
    turn a 10 s TTL into 9)."""
    return int(round(seconds))


def go_duration(seconds):
    """Format whole seconds the way Go's time.Duration prints them ("1h0m0s", "1m9s", "5s")."""
    s = _secs(seconds)
    if s <= 0:
        return "0s"
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def rfc3339(ts):
    """RFC 3339 with fractional seconds and Z, like Go's time.RFC3339Nano."""
    if ts is None:
        return ""
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def _rand(n, alphabet=_ALNUM):
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _uuid():
    return str(uuid.uuid4())


class VaultError(Exception):
    """An error answer: HTTP status + {"errors": [...]} (or a full body)."""

    def __init__(self, status, errors=None, body=None, headers=None):
        super().__init__(f"{status}: {errors}")
        self.status = status
        self.errors = list(errors) if errors is not None else []
        self.body = body
        self.headers = dict(headers or {})


def _denied():
    return VaultError(403, ["permission denied"])


def _bad(msg):
    return VaultError(400, [msg])


def _not_found():
    return VaultError(404, [])


# --------------------------------------------------------------------------- records

class RecordedRequest:
    """One request as the fake saw it (before faults and authentication)."""

    def __init__(self, seq, method, raw_path, path, query, headers, body, client, peer_cert):
        self.seq = seq
        self.time = time.time()
        self.method = method
        self.raw_path = raw_path
        self.path = path                  # URL path without the query, e.g. /v1/secret/data/app
        self.query = query                # {name: first value}
        self.headers = headers            # {Header-Name: value} as sent
        self.body = body                  # raw bytes
        self.client = client              # (host, port)
        self.peer_cert = peer_cert        # client certificate (dict) under mTLS, else None
        self.peer_cert_der = None         # the same certificate, DER bytes
        self.fault = None                 # kind of the fault applied, if any
        self.status = None                # status answered (None: no answer / connection closed)
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name, default=None):
        low = name.lower()
        for k, v in self.headers.items():
            if k.lower() == low:
                return v
        return default

    @property
    def token(self):
        return self.header("X-Vault-Token")

    @property
    def namespace(self):
        return self.header("X-Vault-Namespace")

    def to_dict(self):
        return {"seq": self.seq, "time": self.time, "method": self.method, "path": self.path,
                "raw_path": self.raw_path, "query": self.query, "headers": self.headers,
                "body": self.body.decode("utf-8", "replace"), "json": self.json,
                "fault": self.fault, "status": self.status,
                "peer_cert": self.peer_cert is not None}

    def __repr__(self):
        return f"<{self.method} {self.raw_path} -> {self.status} fault={self.fault}>"


class Token:
    def __init__(self, token_id, namespace, policies, ttl, max_ttl, renewable, num_uses,
                 path, display_name, meta, now, allowed_prefixes=None):
        self.id = token_id
        self.accessor = _rand(24)
        self.namespace = namespace
        self.policies = list(policies)
        self.ttl = ttl                        # creation TTL (0: never expires, e.g. root)
        self.max_ttl = max_ttl                # max TTL from creation (0: none)
        self.renewable = renewable
        self.num_uses = num_uses              # remaining uses; 0 = unlimited
        self.limited = num_uses > 0
        self.path = path
        self.display_name = display_name
        self.meta = dict(meta or {})
        self.issued = now
        self.expires = now + ttl if ttl else None
        self.max_expires = now + max_ttl if (ttl and max_ttl) else None
        self.last_renewal = None
        self.renewals = []                    # [(time, granted_seconds)]
        self.revoked = False
        self.revoked_by = None
        self.exhausted = False                # num_uses used up (revoked by the reaper)
        self.allowed_prefixes = list(allowed_prefixes) if allowed_prefixes else None

    def remaining(self, now):
        return None if self.expires is None else max(0.0, self.expires - now)

    def to_dict(self):
        return {k: getattr(self, k) for k in (
            "id", "accessor", "namespace", "policies", "ttl", "max_ttl", "renewable", "num_uses",
            "path", "display_name", "meta", "issued", "expires", "max_expires", "last_renewal",
            "renewals", "revoked", "revoked_by", "exhausted", "allowed_prefixes")}


class Lease:
    """A leased secret the fake handed out."""

    def __init__(self, lease_id, namespace, mount, role, verb, data, now, ttl, max_ttl,
                 renewable, token_accessor, revoke_cb, params):
        self.lease_id = lease_id
        self.namespace = namespace
        self.mount = mount                    # "database/"
        self.role = role
        self.verb = verb                      # "creds" / "issue" / ...
        self.data = data
        self.params = params
        self.issued = now
        self.ttl = ttl
        self.max_ttl = max_ttl
        self.expires = now + ttl
        self.max_expires = now + max_ttl
        self.renewable = renewable
        self.token_accessor = token_accessor
        self.renewals = []                    # [(time, requested_increment, granted)]
        self.revoked = False
        self.revoked_at = None
        self.revoked_by = None                # "api" | "expiry" | "token" | "test"
        self.revoke_error = None
        self._revoke_cb = revoke_cb

    @property
    def live(self):
        return not self.revoked

    def to_dict(self):
        d = {k: getattr(self, k) for k in (
            "lease_id", "namespace", "mount", "role", "verb", "data", "params", "issued", "ttl",
            "max_ttl", "expires", "max_expires", "renewable", "token_accessor", "renewals",
            "revoked", "revoked_at", "revoked_by", "revoke_error")}
        return d

    def __repr__(self):
        return f"<Lease {self.lease_id} live={self.live} by={self.revoked_by}>"


class Fault:
    def __init__(self, fid, prefix, kind, method, status, body, headers, seconds, times):
        self.id = fid
        self.prefix = prefix
        self.kind = kind
        self.method = method
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.seconds = seconds
        self.times = times                    # remaining; None = until cleared
        self.hits = 0

    def to_dict(self):
        return {k: getattr(self, k) for k in (
            "id", "prefix", "kind", "method", "status", "body", "headers", "seconds", "times",
            "hits")}


class DynamicRole:
    def __init__(self, name, default_ttl, max_ttl, renewable, issue, revoke, generate_lease,
                 renew=None):
        self.name = name
        self.renew = renew
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.renewable = renewable
        self.issue = issue
        self.revoke = revoke
        self.generate_lease = generate_lease
        self.issued = 0


class IssueRequest:
    """What an issue callback receives."""

    def __init__(self, mount, role, verb, params, ttl, lease_id, namespace, display_name):
        self.mount = mount
        self.role = role
        self.verb = verb
        self.params = params
        self.ttl = ttl
        self.lease_id = lease_id
        self.namespace = namespace
        self.display_name = display_name


class Mount:
    def __init__(self, path, mtype, options=None, description="", renewable=None, config=None,
                 is_auth=False):
        self.path = path                      # "secret/" or, for auth mounts, "approle/"
        self.type = mtype
        self.options = options
        self.description = description
        self.accessor = f"{'auth_' if is_auth else ''}{mtype}_{secrets.token_hex(4)}"
        self.uuid = _uuid()
        self.is_auth = is_auth
        self.config = {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0}
        self.config.update(config or {})
        self.renewable = renewable
        self.kv = {}                          # KV v1: rel -> dict; KV v2: rel -> _KV2Entry
        self.kv2_max_versions = 0
        self.roles = {}                       # dynamic / auth roles

    @property
    def kv_version(self):
        if self.type not in ("kv", "generic"):
            return None
        return 2 if (self.options or {}).get("version") == "2" else 1

    def info(self):
        return {"accessor": self.accessor, "config": dict(self.config),
                "description": self.description, "external_entropy_access": False,
                "local": False, "options": copy.deepcopy(self.options), "plugin_version": "",
                "running_plugin_version": f"v0.0.0+builtin.{self.type}", "running_sha256": "",
                "seal_wrap": False, "type": self.type, "uuid": self.uuid}


class _KV2Version:
    def __init__(self, data, now):
        self.data = data
        self.created = now
        self.deletion = None
        self.destroyed = False

    def meta(self):
        return {"created_time": rfc3339(self.created), "deletion_time": rfc3339(self.deletion),
                "destroyed": self.destroyed}


class _KV2Entry:
    def __init__(self, now):
        self.versions = {}
        self.current = 0
        self.oldest = 0
        self.created = now
        self.updated = now
        self.max_versions = 0
        self.cas_required = False
        self.custom_metadata = None


class _Namespace:
    def __init__(self, name):
        self.name = name
        self.mounts = {}                      # "secret/" -> Mount
        self.auth = {}                        # "approle/" -> Mount


class TestPKI:
    """Paths of a throwaway CA, a server certificate (127.0.0.1, localhost) and a client certificate."""

    __test__ = False                          # not a pytest test class

    def __init__(self, directory):
        self.dir = directory
        self.ca_cert = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        self.server_cert = os.path.join(directory, "server.pem")
        self.server_key = os.path.join(directory, "server.key")
        self.client_cert = os.path.join(directory, "client.pem")
        self.client_key = os.path.join(directory, "client.key")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


def _cert_common_name(pem):
    r = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "multiline"],
                       input=pem, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "commonName":
            return value.strip()
    return ""


def _openssl_verifies(pem, ca_pem):
    """True when the certificate pem is issued by (or is) ca_pem, with the openssl CLI."""
    with tempfile.TemporaryDirectory(prefix="fake-vault-cert-") as d:
        ca, leaf = os.path.join(d, "ca.pem"), os.path.join(d, "leaf.pem")
        with open(ca, "w") as f:
            f.write(ca_pem)
        with open(leaf, "w") as f:
            f.write(pem)
        r = subprocess.run(["openssl", "verify", "-partial_chain", "-CAfile", ca, leaf],
                           capture_output=True, text=True)
        return r.returncode == 0


def make_test_pki(directory=None, days=2, client_cn="secretfs-test-client"):
    """Generate CA, server and client certificates with the openssl CLI (EC P-256) into
    `directory` (a new temporary directory when None). Returns a TestPKI."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise RuntimeError("the openssl command is needed to generate test certificates")
    directory = directory or tempfile.mkdtemp(prefix="fake-vault-pki-")
    os.makedirs(directory, exist_ok=True)
    pki = TestPKI(directory)
    cnf = os.path.join(directory, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write(_OPENSSL_CNF)

    def run(*args):
        r = subprocess.run([openssl, *args], cwd=directory, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {r.stderr.strip()}")

    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", "-config", cnf, "-extensions", "v3_ca", *newkey,
        "-keyout", pki.ca_key, "-out", pki.ca_cert, "-days", str(days),
        "-subj", "/CN=fake-vault-test-ca")
    for name, cn, cert, key in (("server", "127.0.0.1", pki.server_cert, pki.server_key),
                                ("client", client_cn, pki.client_cert, pki.client_key)):
        csr = os.path.join(directory, f"{name}.csr")
        run("req", "-new", "-config", cnf, *newkey, "-keyout", key, "-out", csr,
            "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", csr, "-CA", pki.ca_cert, "-CAkey", pki.ca_key,
            "-set_serial", "0x" + secrets.token_hex(16), "-out", cert, "-days", str(days),
            "-extfile", cnf, "-extensions", name)
    return pki


# --------------------------------------------------------------------------- HTTP plumbing

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, fake, ssl_ctx):
        self.fake = fake
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, handler)

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ssl_ctx is not None:
            # the handshake happens in the handler thread, so a slow client never blocks accept()
            sock = self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        if self.fake.verbose:
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeVault/1.0"
    sys_version = ""

    def setup(self):
        fake = self.server.fake
        sock = self.request
        fake._track(sock)
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(10)
            try:
                sock.do_handshake()
            except (ssl.SSLError, OSError) as e:
                fake._note_tls_failure(self.client_address, e)
                fake._untrack(sock)
                raise
            sock.settimeout(None)
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.fake._untrack(self.request)

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write("fake-vault: " + (fmt % args) + "\n")

    def _serve(self):
        try:
            self.server.fake._serve(self)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_LIST = do_HEAD = _serve

    # -- used by FakeVault
    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send(self, status, body=b"", headers=None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Cache-Control", "no-store")
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if status != 204 and self.command != "HEAD" and body:
            self.wfile.write(body)
        self.wfile.flush()

    def trickle(self, stop, interval):
        """A 200 answer whose chunked body trickles one byte per interval
        until stop is set; then the connection is closed."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        body = b'{"data": {"data": {"padding": "' + b"x" * 1000000
        for i in range(len(body)):
            try:
                self.wfile.write(b"1\r\n" + body[i:i + 1] + b"\r\n")
                self.wfile.flush()
            except OSError:
                break
            if stop.wait(interval):
                break
        self.abort()

    def flood(self, stop):
        """A 200 answer whose chunked body never ends, sent as fast as the
        client takes it (64 KiB chunks of one JSON string) until the client
        hangs up or stop is set."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * 65536
        frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        try:
            self.wfile.write(b"1f\r\n" + b'{"data": {"data": {"padding": "' + b"\r\n")
            while not stop.is_set():
                self.wfile.write(frame)
        except OSError:
            pass
        self.abort()

    def abort(self):
        """Close the connection without a reply."""
        self.close_connection = True
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --------------------------------------------------------------------------- the fake

ADMIN_METHODS = frozenset("""
    seal unseal advance add_namespace add_mount remove_mount kv_put kv_get kv_delete kv_undelete
    kv_destroy kv_metadata_delete create_token revoke_token token_info add_approle add_secret_id
    wrap_secret_id wrap add_kubernetes_role add_jwt_role add_dynamic_role revoke_lease
    expire_lease live_leases add_fault fault_status fault_sealed fault_rate_limit
    fault_malformed fault_hang fault_close clear_faults remove_fault clear_requests count
    load_seed
""".split())


class FakeVault:
    """In-process fake Vault server. All public methods are thread-safe."""

    def __init__(self, root_token="root", host="127.0.0.1", port=0, tls_cert=None,
                 tls_key=None, tls_client_ca=None, tls_client_optional=False, namespaces=None,
                 default_mounts=True, revoke_leases_with_token=True, admin_api=False,
                 verbose=False):
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.tls_client_ca = tls_client_ca
        self.tls_client_optional = tls_client_optional
        self.root_token = root_token
        self.admin_api = admin_api
        self.verbose = verbose
        self.revoke_leases_with_token = revoke_leases_with_token
        self.enforce_namespaces = namespaces is not None
        self.default_mounts = default_mounts

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._offset = 0.0
        self._sealed = False
        self._seq = 0
        self.requests = []                    # [RecordedRequest]
        self.counters = Counter()             # (method, path) -> n
        self.tls_failures = []                # [(client_address, error string)]
        self._faults = []
        self._fault_seq = 0
        self._tokens = {}                     # id -> Token
        self._wraps = {}                      # wrapping token -> dict
        self.leases = {}                      # lease_id -> Lease
        self.pki_revoked = []                 # [(serial, revocation time)] by <mount>/revoke
        self._pki_mount_of = {}               # serial -> the mount that issued it
        self.logins = Counter()               # (auth mount path, role) -> n
        self._ns = {}
        self._conns = set()
        self._httpd = None
        self._thread = None
        self._reaper = None
        self._policy_denied = []              # path prefixes refused by "policy"

        self.add_namespace("")
        for ns in namespaces or ():
            self.add_namespace(ns)
        if root_token:
            self.create_token(token_id=root_token, policies=["root"], ttl=0, display_name="root",
                              path="auth/token/root")

    # ------------------------------------------------------------------ lifecycle

    @property
    def tls(self):
        return bool(self.tls_cert)

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self):
        ctx = None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_client_ca:
                ctx.load_verify_locations(self.tls_client_ca)
                ctx.verify_mode = ssl.CERT_OPTIONAL if self.tls_client_optional else ssl.CERT_REQUIRED
        self._stop.clear()
        self._httpd = _Server((self.host, self.port), _Handler, self, ctx)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"fake-vault-{self.port}", daemon=True)
        self._thread.start()
        self._reaper = threading.Thread(target=self._reap_loop, name="fake-vault-reaper",
                                        daemon=True)
        self._reaper.start()
        return self

    def stop(self):
        """Stop promptly: hanging requests are released and their connections closed."""
        if self._httpd is None:
            return
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(2)
        self._reaper.join(2)
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _track(self, sock):
        with self._lock:
            self._conns.add(sock)

    def _untrack(self, sock):
        with self._lock:
            self._conns.discard(sock)

    def _note_tls_failure(self, addr, err):
        with self._cond:
            self.tls_failures.append((addr, str(err)))
            self._cond.notify_all()

    # ------------------------------------------------------------------ clock, seal, waiting

    def now(self):
        return time.time() + self._offset

    def advance(self, seconds):
        """Move the fake's clock forward (TTLs and expiry only)."""
        with self._cond:
            self._offset += float(seconds)
        self._reap_once()

    @property
    def sealed(self):
        return self._sealed

    def seal(self):
        with self._cond:
            self._sealed = True

    def unseal(self):
        with self._cond:
            self._sealed = False

    def wait_for(self, predicate, timeout=10.0):
        """Wait until predicate() (called under the fake's lock) is true. Returns its truth."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate():
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return bool(predicate())
                self._cond.wait(min(left, 0.05))

    def wait_for_requests(self, method=None, prefix=None, count=1, timeout=10.0):
        """Wait until at least `count` recorded requests match; returns the matches."""
        self.wait_for(lambda: len(self.find_requests(method, prefix)) >= count, timeout)
        return self.find_requests(method, prefix)

    def find_requests(self, method=None, prefix=None):
        prefix = _norm_prefix(prefix) if prefix is not None else None
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method.upper())
                    and (prefix is None or r.path.startswith(prefix))]

    def count(self, method=None, path=None, prefix=None):
        """Requests recorded with this method (None: any) and this exact path or path
        prefix ("secret/data/app" or "/v1/secret/data/app"; None: any)."""
        exact = _norm_prefix(path) if path is not None else None
        pre = _norm_prefix(prefix) if prefix is not None else None
        with self._lock:
            return sum(n for (m, p), n in self.counters.items()
                       if (method is None or m == method.upper())
                       and (exact is None or p == exact)
                       and (pre is None or p.startswith(pre)))

    def clear_requests(self):
        with self._lock:
            self.requests.clear()
            self.counters.clear()

    # ------------------------------------------------------------------ faults

    def add_fault(self, prefix="", kind="status", *, status=None, body=None, headers=None,
                  seconds=None, times=1, method=None, retry_after=None):
        """Queue a fault for requests whose path starts with `prefix` ("secret/data",
        "/v1/sys/leases/renew"; "" = every request). kind: "status" (status + body
        [dict -> JSON, str/bytes raw] + headers), "sealed" (503 Vault is sealed),
        "rate_limit" (429 + Retry-After), "malformed" (truncated JSON, status 200 by
        default), "hang" (sleep `seconds` then answer normally; seconds=None: never
        answer until stop()), "close" (drop the connection without a reply),
        "trickle" (a body that never ends, slowly), "flood" (one that never
        ends, fast).
        times: 1 = once, N, or None = until cleared. Returns the fault id."""
        if kind not in ("status", "sealed", "rate_limit", "malformed", "hang", "close",
                        "trickle", "flood"):
            raise ValueError(f"unknown fault kind {kind!r}")
        headers = dict(headers or {})
        if kind == "sealed":
            status, body = status or 503, body if body is not None else {"errors": ["Vault is sealed"]}
        elif kind == "rate_limit":
            status = status or 429
            headers.setdefault("Retry-After", str(retry_after if retry_after is not None else 1))
        elif kind == "malformed":
            status = status or 200
        elif kind == "status":
            status = status or 500
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            self._fault_seq += 1
            f = Fault(self._fault_seq, _norm_prefix(prefix), kind,
                      method.upper() if method else None, status, body, headers, seconds, times)
            self._faults.append(f)
            return f.id

    def fault_status(self, prefix, status, body=None, times=1, method=None, headers=None):
        return self.add_fault(prefix, "status", status=status, body=body, times=times,
                              method=method, headers=headers)

    def fault_sealed(self, prefix="", times=1, method=None):
        return self.add_fault(prefix, "sealed", times=times, method=method)

    def fault_rate_limit(self, prefix="", retry_after=1, times=1, method=None):
        return self.add_fault(prefix, "rate_limit", retry_after=retry_after, times=times,
                              method=method)

    def fault_malformed(self, prefix="", status=200, times=1, method=None):
        return self.add_fault(prefix, "malformed", status=status, times=times, method=method)

    def fault_hang(self, prefix="", seconds=None, times=1, method=None):
        return self.add_fault(prefix, "hang", seconds=seconds, times=times, method=method)

    def fault_close(self, prefix="", times=1, method=None):
        return self.add_fault(prefix, "close", times=times, method=method)

    def fault_trickle(self, prefix="", seconds=0.5, times=1, method=None):
        """Answer 200 with a chunked body that never ends: one byte of a JSON
        document every `seconds`, until stop() (a server stuck mid-answer)."""
        return self.add_fault(prefix, "trickle", seconds=seconds, times=times,
                              method=method)

    def remove_fault(self, fault_id):
        with self._lock:
            self._faults = [f for f in self._faults if f.id != fault_id]

    def clear_faults(self, prefix=None):
        with self._lock:
            if prefix is None:
                self._faults.clear()
            else:
                p = _norm_prefix(prefix)
                self._faults = [f for f in self._faults if f.prefix != p]

    @property
    def faults(self):
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def _take_fault(self, method, path):
        with self._lock:
            for f in self._faults:
                if path.startswith(f.prefix) and (f.method is None or f.method == method):
                    f.hits += 1
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._faults.remove(f)
                    return f
        return None

    # ------------------------------------------------------------------ namespaces & mounts

    def _norm_ns(self, name):
        name = (name or "").strip().strip("/")
        return "" if name == "root" else name

    def add_namespace(self, name):
        name = self._norm_ns(name)
        with self._lock:
            if name in self._ns:
                return
            self._ns[name] = _Namespace(name)
        if self.default_mounts:
            self.add_mount("secret/", "kv", version=2, namespace=name,
                           description="key/value secret storage")
            self.add_mount("kv/", "kv", version=1, namespace=name)
            self.add_mount("database/", "database", namespace=name, renewable=True)
            self.add_mount("aws/", "aws", namespace=name, renewable=False)
            self.add_mount("pki/", "pki", namespace=name, renewable=False)
            for m in ("token", "approle", "kubernetes", "jwt", "cert", "aws"):
                self.add_mount(f"auth/{m}/", m, namespace=name)

    def _nsobj(self, namespace):
        ns = self._ns.get(self._norm_ns(namespace))
        if ns is None:
            raise KeyError(f"no namespace {namespace!r} (add_namespace first)")
        return ns

    def add_mount(self, path, mtype, version=None, options=None, namespace="", renewable=None,
                  description="", config=None):
        """Enable a secrets engine ("secret2/", "kv", version=2) or an auth method
        ("auth/k8s-east/", "kubernetes"). Dynamic types: database, aws, pki or any other
        name (their roles are added with add_dynamic_role)."""
        path = path.strip("/") + "/"
        is_auth = path.startswith("auth/")
        if mtype in ("kv", "generic") and options is None:
            options = {"version": str(version or 1)}
        m = Mount(path[5:] if is_auth else path, mtype, options, description,
                  renewable=renewable, config=config, is_auth=is_auth)
        with self._lock:
            ns = self._nsobj(namespace)
            (ns.auth if is_auth else ns.mounts)[m.path] = m
        return m

    def remove_mount(self, path, namespace=""):
        path = path.strip("/") + "/"
        with self._lock:
            ns = self._nsobj(namespace)
            if path.startswith("auth/"):
                ns.auth.pop(path[5:], None)
            else:
                ns.mounts.pop(path, None)

    def _mount_for(self, ns, vpath):
        """Longest secrets mount that vpath lies under -> (mount, rest)."""
        best = None
        for mp, m in ns.mounts.items():
            if (vpath + "/").startswith(mp) and (best is None or len(mp) > len(best.path)):
                best = m
        if best is None:
            return None, None
        return best, vpath[len(best.path):]

    def _auth_mount(self, ns, name, mtype=None):
        m = ns.auth.get(name.strip("/") + "/")
        if m is None or (mtype and m.type != mtype):
            raise KeyError(f"no {mtype or ''} auth mount {name!r}")
        return m

    # ------------------------------------------------------------------ tokens

    def create_token(self, token_id=None, ttl=3600, max_ttl=None, renewable=True, num_uses=0,
                     policies=("default",), namespace="", display_name="token",
                     path="auth/token/create", meta=None, allowed_prefixes=None):
        """Create a token (test side). ttl=0: never expires. max_ttl defaults to Vault's
        768h system max. allowed_prefixes: if given, the token may only use paths under
        these prefixes ("secret/data/app", "sys/") besides auth/token/*-self; else 403."""
        ttl = parse_duration(ttl)
        max_ttl = (parse_duration(max_ttl) or DEFAULT_MAX_TTL) if ttl else 0
        if ttl and ttl > max_ttl:
            ttl = max_ttl
        with self._cond:
            tid = token_id or ("hvs." + _rand(24))
            tok = Token(tid, self._norm_ns(namespace), policies, ttl, max_ttl, renewable,
                        int(num_uses), path, display_name, meta, self.now(), allowed_prefixes)
            self._tokens[tid] = tok
            self._cond.notify_all()
            return tid

    def revoke_token(self, token_id):
        self._revoke_tokens([token_id], "test")

    def token_info(self, token_id):
        with self._lock:
            tok = self._tokens.get(token_id)
            return tok.to_dict() if tok else None

    def token(self, token_id):
        """The Token object (live view) or None."""
        with self._lock:
            return self._tokens.get(token_id)

    def _revoke_tokens(self, ids, why):
        victims = []
        with self._cond:
            for tid in ids:
                tok = self._tokens.get(tid)
                if tok is None or tok.revoked:
                    continue
                tok.revoked, tok.revoked_by = True, why
                if self.revoke_leases_with_token:
                    victims += [le for le in self.leases.values()
                                if le.live and le.token_accessor == tok.accessor]
            for le in victims:
                self._mark_revoked(le, "token")
            self._cond.notify_all()
        self._run_revoke_callbacks(victims)

    def _token_valid(self, tok, now):
        return (tok is not None and not tok.revoked and not tok.exhausted
                and (tok.expires is None or now < tok.expires))

    def _authenticate(self, ns, headers, vpath):
        tid = _hget(headers, "X-Vault-Token")
        if not tid:
            raise _denied()
        with self._cond:
            tok = self._tokens.get(tid)
            now = self.now()
            if not self._token_valid(tok, now):
                raise _denied()
            if not _ns_within(tok.namespace, ns.name):
                raise _denied()
            if tok.allowed_prefixes is not None and not vpath.startswith("auth/token/") \
                    and not any(vpath.startswith(p.strip("/")) for p in tok.allowed_prefixes):
                raise VaultError(403, ["1 error occurred:\n\t* permission denied\n\n"])
            if tok.limited:
                tok.num_uses -= 1
                if tok.num_uses <= 0:
                    # the last use: this request goes through, then the token (and, via the
                    # reaper, its leases) is gone
                    tok.exhausted = True
            return tok

    def _issue_login_token(self, ns, role_cfg, path, display_name, meta):
        ttl = parse_duration(role_cfg.get("token_ttl"), 3600)
        max_ttl = parse_duration(role_cfg.get("token_max_ttl")) or DEFAULT_MAX_TTL
        policies = ["default"] + [p for p in role_cfg.get("policies", []) if p != "default"]
        tid = self.create_token(ttl=ttl, max_ttl=max_ttl,
                                renewable=role_cfg.get("renewable", True),
                                num_uses=role_cfg.get("token_num_uses", 0), policies=policies,
                                namespace=ns.name, display_name=display_name, path=path,
                                meta=meta)
        with self._lock:
            return self._auth_block(self._tokens[tid])

    def _auth_block(self, tok, lease_duration=None):
        return {"client_token": tok.id, "accessor": tok.accessor,
                "policies": list(tok.policies), "token_policies": list(tok.policies),
                "identity_policies": None, "metadata": dict(tok.meta) or None,
                "lease_duration": _secs(tok.ttl if lease_duration is None else lease_duration),
                "renewable": tok.renewable, "entity_id": "", "token_type": "service",
                "orphan": True, "mfa_requirement": None,
                "num_uses": tok.num_uses if tok.limited else 0}

    # ------------------------------------------------------------------ KV (test side)

    def _kv_locate(self, path, namespace):
        ns = self._nsobj(namespace)
        m, rel = self._mount_for(ns, path.strip("/"))
        if m is None or m.kv_version is None:
            raise KeyError(f"no KV mount for {path!r}")
        return m, rel.strip("/")

    def kv_put(self, path, data, namespace="", custom_metadata=None):
        """Write at a KV path as `vault kv put` names it ("secret/app/config"). KV v2:
        returns the new version number; KV v1: returns None."""
        with self._cond:
            m, rel = self._kv_locate(path, namespace)
            if m.kv_version == 1:
                m.kv[rel] = copy.deepcopy(dict(data))
                self._cond.notify_all()
                return None
            ver = self._kv2_write(m, rel, copy.deepcopy(dict(data)))
            if custom_metadata is not None:
                m.kv[rel].custom_metadata = dict(custom_metadata)
            self._cond.notify_all()
            return ver

    def kv_get(self, path, version=None, namespace=""):
        """Current (or given) data at a KV path, or None (deleted/destroyed/missing)."""
        with self._lock:
            m, rel = self._kv_locate(path, namespace)
            if m.kv_version == 1:
                return copy.deepcopy(m.kv.get(rel))
            e = m.kv.get(rel)
            if e is None:
                return None
            v = e.versions.get(version or e.current)
            if v is None or v.destroyed or (v.deletion is not None and v.deletion <= self.now()):
                return None
            return copy.deepcopy(v.data)

    def kv_delete(self, path, versions=None, namespace=""):
        """KV v1: remove the key. KV v2: soft-delete `versions` (default: the latest)."""
        with self._cond:
            m, rel = self._kv_locate(path, namespace)
            if m.kv_version == 1:
                m.kv.pop(rel, None)
            else:
                self._kv2_versions_op(m, rel, "delete", versions)
            self._cond.notify_all()

    def kv_undelete(self, path, versions, namespace=""):
        with self._cond:
            m, rel = self._kv_locate(path, namespace)
            self._kv2_versions_op(m, rel, "undelete", versions)
            self._cond.notify_all()

    def kv_destroy(self, path, versions, namespace=""):
        """KV v2: permanently destroy `versions`."""
        with self._cond:
            m, rel = self._kv_locate(path, namespace)
            self._kv2_versions_op(m, rel, "destroy", versions)
            self._cond.notify_all()

    def _kv2_versions_op(self, m, rel, op, versions):
        e = m.kv.get(rel)
        if e is None:
            return
        now = self.now()
        for v in (versions or ([e.current] if op == "delete" else [])):
            ver = e.versions.get(int(v))
            if ver is None:
                continue
            if op == "delete" and ver.deletion is None and not ver.destroyed:
                ver.deletion = now
            elif op == "undelete" and not ver.destroyed:
                ver.deletion = None
            elif op == "destroy":
                ver.destroyed, ver.data = True, None
        e.updated = now

    def _kv2_current(self, m, rel):
        e = m.kv.get(rel)
        v = e.versions.get(e.current) if e else None
        if v is None or v.destroyed or (v.deletion is not None and v.deletion <= self.now()):
            return None
        return copy.deepcopy(v.data)

    def kv_metadata_delete(self, path, namespace=""):
        with self._cond:
            m, rel = self._kv_locate(path, namespace)
            m.kv.pop(rel, None)
            self._cond.notify_all()

    def _kv2_write(self, m, rel, data):
        now = self.now()
        e = m.kv.get(rel)
        if e is None:
            e = m.kv[rel] = _KV2Entry(now)
        e.current += 1
        e.versions[e.current] = _KV2Version(data, now)
        e.updated = now
        keep = e.max_versions or m.kv2_max_versions or KV2_DEFAULT_MAX_VERSIONS
        while len(e.versions) > keep:
            del e.versions[min(e.versions)]
            e.oldest = min(e.versions)
        return e.current

    # ------------------------------------------------------------------ auth roles (test side)

    def add_approle(self, role, role_id=None, secret_ids=(), token_ttl=3600,
                    token_max_ttl=None, policies=(), bind_secret_id=True, token_num_uses=0,
                    renewable=True, mount="approle", namespace=""):
        """Create an AppRole; returns its role_id."""
        with self._lock:
            m = self._auth_mount(self._nsobj(namespace), mount, "approle")
            m.roles[role] = {"role_id": role_id or _uuid(), "secret_ids": {},
                             "token_ttl": token_ttl, "token_max_ttl": token_max_ttl,
                             "policies": list(policies), "bind_secret_id": bind_secret_id,
                             "token_num_uses": token_num_uses, "renewable": renewable}
            for sid in secret_ids:
                self.add_secret_id(role, sid, mount=mount, namespace=namespace)
            return m.roles[role]["role_id"]

    def add_secret_id(self, role, secret_id=None, num_uses=0, ttl=0, mount="approle",
                      namespace=""):
        """Add a SecretID to an AppRole (num_uses 0 = unlimited, ttl 0 = no expiry)."""
        with self._lock:
            m = self._auth_mount(self._nsobj(namespace), mount, "approle")
            sid = secret_id or _uuid()
            ttl = parse_duration(ttl)
            m.roles[role]["secret_ids"][sid] = {
                "accessor": _uuid(), "num_uses": int(num_uses), "ttl": ttl,
                "expires": self.now() + ttl if ttl else None}
            return sid

    def wrap(self, data, ttl=300, creation_path="sys/wrapping/wrap", namespace="", body=None):
        """Create a response-wrapping token holding `data` (or a full response `body`)."""
        inner = body if body is not None else self._resp(data=data)
        return self._wrap(self._norm_ns(namespace), inner, parse_duration(ttl),
                          creation_path)["token"]

    def wrap_secret_id(self, role, wrap_ttl=300, num_uses=0, secret_id=None, mount="approle",
                       namespace=""):
        """A wrapping token whose unwrap yields a new SecretID, as
        `vault write -wrap-ttl=.. -f auth/approle/role/<role>/secret-id` gives."""
        sid = self.add_secret_id(role, secret_id, num_uses=num_uses, mount=mount,
                                 namespace=namespace)
        with self._lock:
            info = self._auth_mount(self._nsobj(namespace), mount,
                                    "approle").roles[role]["secret_ids"][sid]
        data = {"secret_id": sid, "secret_id_accessor": info["accessor"],
                "secret_id_ttl": int(info["ttl"]), "secret_id_num_uses": info["num_uses"]}
        return self.wrap(data, wrap_ttl, f"auth/{mount}/role/{role}/secret-id", namespace)

    def add_kubernetes_role(self, role, jwts, token_ttl=3600, token_max_ttl=None, policies=(),
                            service_account="default", sa_namespace="default",
                            token_num_uses=0, renewable=True, mount="kubernetes",
                            namespace=""):
        """A kubernetes auth role that accepts exactly the given JWT string(s)."""
        self._add_jwt_like(mount, "kubernetes", namespace, role, jwts, {
            "token_ttl": token_ttl, "token_max_ttl": token_max_ttl, "policies": list(policies),
            "token_num_uses": token_num_uses, "renewable": renewable,
            "service_account_name": service_account, "service_account_namespace": sa_namespace})

    def add_jwt_role(self, role, jwts, token_ttl=3600, token_max_ttl=None, policies=(),
                     token_num_uses=0, renewable=True, mount="jwt", namespace=""):
        """A jwt auth role that accepts exactly the given JWT string(s)."""
        self._add_jwt_like(mount, "jwt", namespace, role, jwts, {
            "token_ttl": token_ttl, "token_max_ttl": token_max_ttl, "policies": list(policies),
            "token_num_uses": token_num_uses, "renewable": renewable})

    def configure_aws_auth(self, sts_endpoint=None, iam_server_id_header_value=None,
                           mount="aws", namespace=""):
        """auth/<mount>/config/client: where the login's signed request is sent, and
        the X-Vault-AWS-IAM-Server-ID value logins must carry (signed)."""
        with self._lock:
            m = self._auth_mount(self._nsobj(namespace), mount, "aws")
            m.config.update({"sts_endpoint": sts_endpoint,
                             "iam_server_id_header_value": iam_server_id_header_value})

    def add_aws_role(self, role, bound_iam_principal_arn, token_ttl=3600, token_max_ttl=None,
                     policies=(), renewable=True, mount="aws", namespace=""):
        """An aws auth role of auth_type iam (auth/aws/role/<role>); a trailing * in a
        bound ARN matches any suffix, as Vault allows."""
        if isinstance(bound_iam_principal_arn, str):
            bound_iam_principal_arn = [bound_iam_principal_arn]
        with self._lock:
            m = self._auth_mount(self._nsobj(namespace), mount, "aws")
            m.roles[role] = {"bound_iam_principal_arn": list(bound_iam_principal_arn),
                             "token_ttl": token_ttl, "token_max_ttl": token_max_ttl,
                             "policies": list(policies), "renewable": renewable,
                             "token_num_uses": 0}

    def add_cert_role(self, name, certificate, allowed_common_names=(), token_ttl=3600,
                      token_max_ttl=None, policies=(), renewable=True, mount="cert",
                      namespace=""):
        """A cert auth role (auth/cert/certs/<name>): `certificate` is the PEM text (or
        a path to it) of the CA that must have issued the client certificate."""
        if os.path.exists(certificate):
            with open(certificate) as f:
                certificate = f.read()
        with self._lock:
            m = self._auth_mount(self._nsobj(namespace), mount, "cert")
            m.roles[name] = {"certificate": certificate,
                             "allowed_common_names": list(allowed_common_names),
                             "token_ttl": token_ttl, "token_max_ttl": token_max_ttl,
                             "policies": list(policies), "renewable": renewable,
                             "token_num_uses": 0}

    def _add_jwt_like(self, mount, mtype, namespace, role, jwts, cfg):
        if isinstance(jwts, str):
            jwts = [jwts]
        with self._lock:
            m = self._auth_mount(self._nsobj(namespace), mount, mtype)
            cfg["jwts"] = set(jwts)
            m.roles[role] = cfg

    # ------------------------------------------------------------------ leased secrets (test side)

    def add_dynamic_role(self, mount, role, default_ttl=3600, max_ttl=None, renewable=None,
                         issue=None, revoke=None, generate_lease=True, namespace="",
                         renew=None):
        """A role under a dynamic mount ("database", "aws", "pki" or one added with add_mount).
        issue(req: IssueRequest) -> data dict (default: random credentials of the mount's
        kind); revoke(lease: Lease) is called on revocation (API, expiry or token death);
        renew(lease: Lease) after each successful renewal, with lease.expires already
        extended (as Vault's database engine runs its renew statements).
        renewable defaults to the mount's (database: True, aws/pki: False)."""
        with self._lock:
            ns = self._nsobj(namespace)
            m = ns.mounts.get(mount.strip("/") + "/")
            if m is None or m.kv_version is not None:
                raise KeyError(f"no dynamic mount {mount!r}")
            default_ttl = parse_duration(default_ttl)
            max_ttl = parse_duration(max_ttl) or DEFAULT_MAX_TTL
            if renewable is None:
                renewable = m.renewable if m.renewable is not None else True
            m.roles[role] = DynamicRole(role, default_ttl, max_ttl, renewable, issue, revoke,
                                        generate_lease, renew)

    def add_pki_role(self, role, ttl=3600, mount="pki", namespace="", expiration=True):
        """A PKI role as Vault's PKI engine has it by default (generate_lease
        false): POST/PUT <mount>/issue/<role> answers, without a lease, a real
        certificate signed by a CA of the fake (openssl CLI), with issuing_ca,
        ca_chain, private_key, private_key_type, serial_number and
        expiration (Unix seconds on the fake's clock, now + ttl; omitted when
        expiration is False). The certificate's notAfter is whole days (the
        openssl CLI's unit): at least ttl, and exact only for multiples of a
        day. Returns nothing; issued certificates are in self.pki_issued."""
        self.add_dynamic_role(mount, role, default_ttl=ttl, max_ttl=max(ttl, DEFAULT_MAX_TTL),
                              renewable=False, generate_lease=False, namespace=namespace,
                              issue=lambda req: self._pki_issue(req, expiration))

    def _pki_issue(self, req, with_expiration):
        with self._lock:
            if getattr(self, "_pki_ca", None) is None:
                self._pki_ca = make_test_pki(days=3650)
                weakref.finalize(self, self._pki_ca.cleanup)
            self._pki_serial = getattr(self, "_pki_serial", 0) + 1
            ca, n = self._pki_ca, self._pki_serial
            self.pki_issued = getattr(self, "pki_issued", [])
        cn = req.params.get("common_name", "example.com")
        days = max(1, -(-int(req.ttl) // 86400))
        key, csr, cert = (os.path.join(ca.dir, f"issued-{n}.{x}") for x in ("key", "csr", "pem"))
        serial = secrets.token_hex(16)
        for args in (["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={cn}"],
                     ["x509", "-req", "-in", csr, "-CA", ca.ca_cert, "-CAkey", ca.ca_key,
                      "-set_serial", "0x" + serial, "-out", cert, "-days", str(days)]):
            r = subprocess.run(["openssl", *args], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"openssl {args[0]} failed: {r.stderr.strip()}")
        with open(cert) as f:
            pem = f.read().strip()
        with open(key) as f:
            private_key = f.read().strip()
        with open(ca.ca_cert) as f:
            ca_pem = f.read().strip()
        for path in (key, csr, cert):
            os.unlink(path)
        data = {"certificate": pem, "issuing_ca": ca_pem, "ca_chain": [ca_pem],
                "private_key": private_key, "private_key_type": "ec",
                "serial_number": ":".join(serial[i:i + 2] for i in range(0, len(serial), 2))}
        if with_expiration:
            data["expiration"] = int(self.now() + req.ttl)
        with self._lock:
            self.pki_issued.append(data["serial_number"])
            self._pki_mount_of[data["serial_number"]] = req.mount
        return data

    def _pki_revoke(self, mount, body):
        """<mount>/revoke as Vault's PKI engine documents it: revokes the
        certificate of serial_number (hex pairs with ':' or '-'); revoking
        one already revoked answers its first revocation_time."""
        serial = str(body.get("serial_number") or "").replace("-", ":").lower()
        if not serial:
            raise _bad("The serial number must be provided")
        with self._lock:
            if self._pki_mount_of.get(serial) != mount.path:
                raise _bad(f"certificate with serial {serial} not found")
            when = next((t for s, t in self.pki_revoked if s == serial), None)
            if when is None:
                when = self.now()
                self.pki_revoked.append((serial, when))
        return self._ok(data={
            "revocation_time": int(when), "state": "revoked",
            "revocation_time_rfc3339": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))})

    def lease(self, lease_id):
        with self._lock:
            return self.leases.get(lease_id)

    def live_leases(self, mount=None, role=None):
        with self._lock:
            return [le for le in self.leases.values() if le.live
                    and (mount is None or le.mount == mount.strip("/") + "/")
                    and (role is None or le.role == role)]

    def revoke_lease(self, lease_id):
        """Revoke from the test side (revoke callback runs, revoked_by='test')."""
        with self._cond:
            le = self.leases.get(lease_id)
            if le is None or not le.live:
                return
            self._mark_revoked(le, "test")
        self._run_revoke_callbacks([le])

    def expire_lease(self, lease_id):
        """Make a lease expire now (the reaper then revokes it, revoked_by='expiry')."""
        with self._cond:
            le = self.leases.get(lease_id)
            if le is not None:
                le.expires = min(le.expires, self.now())
        self._reap_once()

    def _mark_revoked(self, le, why):
        le.revoked, le.revoked_at, le.revoked_by = True, self.now(), why

    def _run_revoke_callbacks(self, leases):
        for le in leases:
            if le._revoke_cb is not None:
                try:
                    le._revoke_cb(le)
                except Exception as e:  # noqa: BLE001 -- recorded for assertions
                    le.revoke_error = f"{type(e).__name__}: {e}"
        if leases:
            with self._cond:
                self._cond.notify_all()

    def _reap_loop(self):
        while not self._stop.wait(0.05):
            self._reap_once()

    def _reap_once(self):
        expired = []
        with self._cond:
            now = self.now()
            dead_tokens = [t.id for t in self._tokens.values() if not t.revoked and (
                t.exhausted or (t.expires is not None and now >= t.expires))]
            for le in self.leases.values():
                if le.live and now >= le.expires:
                    self._mark_revoked(le, "expiry")
                    expired.append(le)
            for w in [w for w, v in self._wraps.items() if now >= v["expires"]]:
                del self._wraps[w]
            if expired:
                self._cond.notify_all()
        self._run_revoke_callbacks(expired)
        if dead_tokens:
            self._revoke_tokens(dead_tokens, "expiry")

    # ------------------------------------------------------------------ seed (script mode)

    def load_seed(self, seed):
        """Apply a JSON-able description: {"namespaces": [...], "mounts": [{add_mount kwargs}],
        "kv": {"secret/app": {..} or [{v1}, {v2}]}, "tokens": [{create_token kwargs}],
        "approles": [{add_approle kwargs}], "kubernetes_roles": [...], "jwt_roles": [...],
        "dynamic_roles": [{add_dynamic_role kwargs}]}."""
        for ns in seed.get("namespaces", []):
            self.add_namespace(ns)
        for kw in seed.get("mounts", []):
            self.add_mount(**kw)
        for path, val in seed.get("kv", {}).items():
            for data in (val if isinstance(val, list) else [val]):
                self.kv_put(path, data)
        for kw in seed.get("tokens", []):
            self.create_token(**kw)
        for kw in seed.get("approles", []):
            self.add_approle(**kw)
        for kw in seed.get("kubernetes_roles", []):
            self.add_kubernetes_role(**kw)
        for kw in seed.get("jwt_roles", []):
            self.add_jwt_role(**kw)
        for kw in seed.get("dynamic_roles", []):
            self.add_dynamic_role(**kw)

    # ------------------------------------------------------------------ request handling

    def _record(self, h, method, raw_path, path, query, body):
        peer = peer_der = None
        if isinstance(h.request, ssl.SSLSocket):
            try:
                peer = h.request.getpeercert() or None
                peer_der = h.request.getpeercert(binary_form=True) if peer else None
            except (ValueError, OSError):
                peer = None
        with self._cond:
            self._seq += 1
            rec = RecordedRequest(self._seq, method, raw_path, path, query,
                                  dict(h.headers.items()), body, h.client_address, peer)
            rec.peer_cert_der = peer_der
            self.requests.append(rec)
            self.counters[(method, path)] += 1
            self._cond.notify_all()
            return rec

    def _serve(self, h):
        method = h.command.upper()
        raw_path = h.path
        split = urllib.parse.urlsplit(raw_path)
        path = urllib.parse.unquote(split.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query,
                                                           keep_blank_values=True).items()}
        body = h.read_body()

        if path.startswith("/_fake/"):
            if self.admin_api:
                return self._admin(h, method, path, body)
            return self._reply(h, None, 404, {"errors": []})

        rec = self._record(h, method, raw_path, path, query, body)
        fault = self._take_fault(method, path)
        if fault is not None:
            rec.fault = fault.kind
            if fault.kind == "hang":
                self._stop.wait(fault.seconds)      # None: until stop()
                if self._stop.is_set():
                    return h.abort()
            elif fault.kind == "close":
                return h.abort()
            elif fault.kind == "trickle":
                return h.trickle(self._stop, fault.seconds or 0.5)
            elif fault.kind == "flood":
                return h.flood(self._stop)
            elif fault.kind == "malformed":
                bad = fault.body if fault.body is not None else \
                    b'{"request_id": "' + _uuid().encode() + b'", "data": {"data": {"key": "va'
                return self._reply(h, rec, fault.status, _as_bytes(bad), fault.headers)
            else:
                msg = _default_message(fault.status)
                fb = fault.body if fault.body is not None else \
                    {"errors": [msg] if msg else []}
                return self._reply(h, rec, fault.status, fb, fault.headers)

        try:
            if not path.startswith("/v1/"):
                raise _not_found()
            status, payload, hdrs = self._route(method, path[4:], query, h.headers, body, rec)
            wrap_ttl = _hget(h.headers, "X-Vault-Wrap-TTL")
            if wrap_ttl and status == 200 and isinstance(payload, dict) \
                    and (payload.get("data") is not None or payload.get("auth") is not None):
                ns = self._norm_ns(_hget(h.headers, "X-Vault-Namespace")) \
                    if self.enforce_namespaces else ""
                payload = self._resp(wrap_info=self._wrap(ns, payload, parse_duration(wrap_ttl),
                                                          path[4:]))
        except VaultError as e:
            status, hdrs = e.status, e.headers
            payload = e.body if e.body is not None else {"errors": e.errors}
        except Exception as e:  # noqa: BLE001 -- a bug or a failing callback: answer like Vault
            status, hdrs = 500, {}
            payload = {"errors": [f"1 error occurred:\n\t* {e}\n\n"]}
            if self.verbose:
                import traceback
                traceback.print_exc()
        return self._reply(h, rec, status, payload, hdrs)

    def _reply(self, h, rec, status, payload, headers=None):
        if rec is not None:
            rec.status = status
        if status == 204 or payload is None:
            data = b""
        elif isinstance(payload, (bytes, str)):
            data = _as_bytes(payload)
        else:
            data = (json.dumps(payload) + "\n").encode()
        h.send(status, data, headers)

    def _resp(self, data=None, lease_id="", renewable=False, lease_duration=0, warnings=None,
              auth=None, wrap_info=None, mount_type=None):
        r = {"request_id": _uuid(), "lease_id": lease_id, "renewable": renewable,
             "lease_duration": _secs(lease_duration), "data": data, "wrap_info": wrap_info,
             "warnings": warnings or None, "auth": auth}
        if mount_type:
            r["mount_type"] = mount_type
        return r

    def _ok(self, **kw):
        return 200, self._resp(**kw), {}

    def _namespace_of(self, headers):
        if not self.enforce_namespaces:
            return self._ns[""]
        name = self._norm_ns(_hget(headers, "X-Vault-Namespace"))
        ns = self._ns.get(name)
        if ns is None:
            raise VaultError(404, ["namespace not found"])
        return ns

    def _route(self, method, vpath, query, headers, raw_body, rec):
        vpath = vpath.strip("/")
        if method == "GET" and query.get("list") == "true":
            method = "LIST"
        if vpath == "sys/health":
            return self._health(query)
        if vpath == "sys/seal-status":
            return 200, self._seal_status(), {}
        if self._sealed:
            raise VaultError(503, ["Vault is sealed"])
        body = _parse_body(raw_body)
        with self._lock:
            ns = self._namespace_of(headers)

        m = re.fullmatch(r"auth/(.+)/login(?:/(.*))?", vpath)
        if m and method in ("POST", "PUT"):
            return self._login(ns, m.group(1), m.group(2), body, rec)
        if vpath == "sys/wrapping/unwrap" and method in ("POST", "PUT"):
            return self._unwrap(ns, headers, body)

        tok = self._authenticate(ns, headers, vpath)
        self._check_policy(vpath)

        if vpath == "auth/token/lookup-self" and method in ("GET", "POST", "PUT"):
            return self._lookup_self(tok)
        if vpath == "auth/token/renew-self" and method in ("POST", "PUT"):
            return self._renew_self(tok, body)
        if vpath == "auth/token/revoke-self" and method in ("POST", "PUT"):
            self._revoke_tokens([tok.id], "api")
            return 204, None, {}
        if vpath == "sys/internal/ui/mounts" and method == "GET":
            return self._ui_mounts(ns)
        if vpath.startswith("sys/internal/ui/mounts/") and method == "GET":
            return self._ui_mount(ns, vpath[len("sys/internal/ui/mounts/"):])
        m = re.fullmatch(r"sys/(?:leases/)?(renew|revoke|lookup)(?:/(.+))?", vpath)
        if m and method in ("POST", "PUT"):
            lease_id = body.get("lease_id") or m.group(2) or ""
            return getattr(self, f"_lease_{m.group(1)}")(ns, lease_id, body)
        m = re.fullmatch(r"auth/(.+)/role/([^/]+)/(secret-id|role-id)", vpath)
        if m:
            return self._approle_admin(ns, m.group(1), m.group(2), m.group(3), method, body)

        with self._lock:
            mount, rest = self._mount_for(ns, vpath)
        if mount is None:
            raise VaultError(404, [f'no handler for route "{vpath}". route entry not found.'])
        if mount.kv_version == 1:
            return self._kv1(mount, rest.strip("/"), method, body)
        if mount.kv_version == 2:
            return self._kv2(mount, rest.strip("/"), method, query, body, headers)
        if rest.strip("/") == "revoke" and method in ("POST", "PUT"):
            return self._pki_revoke(mount, body)
        mm = re.fullmatch(r"(creds|sts|issue)/([^/]+)", rest.strip("/"))
        if mm and (method in ("POST", "PUT") or (method == "GET" and mm.group(1) != "issue")):
            params = dict(query)
            params.update(body)
            return self._issue(ns, mount, mm.group(2), mm.group(1), params, tok)
        raise VaultError(404, [f'no handler for route "{vpath}". route entry not found.'])

    # -- policies

    def deny_by_policy(self, prefix):
        """Refuses every request under prefix (e.g. "secret/metadata/") for
        every token, as a Vault ACL policy without a matching path does: 403
        with Vault's multierror "permission denied" body. The token itself
        stays valid (lookup-self works)."""
        with self._lock:
            self._policy_denied.append(prefix.strip("/") + "/")

    def allow_by_policy(self, prefix=None):
        """Lifts deny_by_policy for prefix (None: all)."""
        with self._lock:
            self._policy_denied = [] if prefix is None else \
                [p for p in self._policy_denied if p != prefix.strip("/") + "/"]

    def _check_policy(self, vpath):
        with self._lock:
            denied = any((vpath.strip("/") + "/").startswith(p) for p in self._policy_denied)
        if denied:
            raise VaultError(403, ["1 error occurred:\n\t* permission denied\n\n"])

    # -- sys

    def _seal_status(self):
        return {"type": "shamir", "initialized": True, "sealed": self._sealed, "t": 1, "n": 1,
                "progress": 0, "nonce": "", "version": "1.15.0", "build_date": "",
                "migration": False, "recovery_seal": False, "storage_type": "inmem"}

    def _health(self, query):
        body = {"initialized": True, "sealed": self._sealed, "standby": False,
                "performance_standby": False, "replication_performance_mode": "disabled",
                "replication_dr_mode": "disabled", "server_time_utc": int(self.now()),
                "version": "1.15.0", "cluster_name": "fake-vault", "cluster_id": "fake"}
        code = int(query.get("sealedcode", 503)) if self._sealed else \
            int(query.get("activecode", 200))
        return code, body, {}

    def _ui_mounts(self, ns):
        with self._lock:
            secret = {p: m.info() for p, m in ns.mounts.items()}
            auth = {p: m.info() for p, m in ns.auth.items()}
        return self._ok(data={"secret": secret, "auth": auth})

    def _ui_mount(self, ns, path):
        path = path.strip("/")
        if not path:
            raise _bad("path not set")
        path += "/"
        with self._lock:
            me = None
            if path.startswith("auth/"):
                for p, m in ns.auth.items():
                    if path[5:].startswith(p) and (me is None or len(p) > len(me.path)):
                        me = m
                full = ("auth/" + me.path) if me else None
            else:
                me, _ = self._mount_for(ns, path.rstrip("/"))
                full = me.path if me else None
            if me is None:
                raise VaultError(403, [
                    f'preflight capability check returned 403, please ensure client\'s '
                    f'policies grant access to path "{path}"'])
            data = me.info()
            data["path"] = full
        return self._ok(data=data)

    # -- tokens

    def _lookup_self(self, tok):
        with self._lock:
            now = self.now()
            data = {"accessor": tok.accessor, "creation_time": int(tok.issued),
                    "creation_ttl": int(tok.ttl), "display_name": tok.display_name,
                    "entity_id": "", "expire_time": rfc3339(tok.expires) or None,
                    "explicit_max_ttl": int(tok.max_ttl if tok.max_ttl != DEFAULT_MAX_TTL else 0),
                    "id": tok.id, "issue_time": rfc3339(tok.issued),
                    "last_renewal_time": int(tok.last_renewal) if tok.last_renewal else None,
                    "meta": dict(tok.meta) or None,
                    "num_uses": tok.num_uses if tok.limited else 0, "orphan": True,
                    "path": tok.path, "policies": list(tok.policies),
                    "renewable": tok.renewable and tok.expires is not None,
                    "ttl": _secs(tok.remaining(now) or 0), "type": "service",
                    "namespace_path": (tok.namespace + "/") if tok.namespace else ""}
        return self._ok(data=data)

    def _renew_self(self, tok, body):
        with self._cond:
            now = self.now()
            if tok.expires is None or not tok.renewable:
                raise _bad("lease is not renewable")
            inc = parse_duration(body.get("increment"))
            if inc <= 0:
                inc = tok.ttl
            granted, warnings = inc, None
            if tok.max_expires is not None and now + inc > tok.max_expires:
                granted = max(0.0, tok.max_expires - now)
                warnings = [f'TTL of "{go_duration(inc)}" exceeded the effective max_ttl of '
                            f'"{go_duration(granted)}"; TTL value is capped accordingly']
            tok.expires = now + granted
            tok.last_renewal = now
            tok.renewals.append((now, _secs(granted)))
            self._cond.notify_all()
            return self._ok(auth=self._auth_block(tok, lease_duration=_secs(granted)),
                            warnings=warnings)

    # -- auth methods

    def _login(self, ns, mount_name, suffix, body, rec=None):
        with self._lock:
            m = ns.auth.get(mount_name.strip("/") + "/")
        if m is None:
            raise VaultError(404, [f'no handler for route "auth/{mount_name}/login". '
                                   'route entry not found.'])
        if m.type == "approle":
            return self._login_approle(ns, m, body)
        if m.type in ("kubernetes", "jwt"):
            return self._login_jwt(ns, m, body)
        if m.type == "aws":
            return self._login_aws(ns, m, body)
        if m.type == "cert":
            return self._login_cert(ns, m, body, rec.peer_cert_der if rec else None)
        raise VaultError(405, ["unsupported operation"])

    def _login_aws(self, ns, m, body):
        """auth/aws/login, IAM type (Vault's path_login.go): decode the signed request,
        check the server ID header, send it to STS and bind the caller's ARN."""
        def b64(name):
            v = body.get(name)
            if not isinstance(v, str) or not v:
                raise _bad(f"missing {name}")
            try:
                return base64.b64decode(v, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise _bad(f"failed to base64 decode {name}")
        method = body.get("iam_http_request_method") or ""
        if not method:
            raise _bad("missing iam_http_request_method")
        url, req_body = b64("iam_request_url"), b64("iam_request_body")
        raw_headers = body.get("iam_request_headers")
        if isinstance(raw_headers, str):
            try:
                raw_headers = json.loads(base64.b64decode(raw_headers, validate=True))
            except ValueError:
                raise _bad("failed to parse iam_request_headers")
        if not isinstance(raw_headers, dict):
            raise _bad("missing iam_request_headers")
        headers = {k: (v if isinstance(v, list) else [v]) for k, v in raw_headers.items()}
        form = urllib.parse.parse_qs(req_body)
        if form.get("Action") != ["GetCallerIdentity"]:
            raise _bad("error parsing iam_request_body: must have 'Action=GetCallerIdentity'")
        with self._lock:
            cfg = dict(m.config or {})
        want = cfg.get("iam_server_id_header_value")
        if want:
            got = next((v for k, v in headers.items() if k.lower() ==
                        "x-vault-aws-iam-server-id"), None)
            if not got:
                raise _bad("error validating X-Vault-AWS-IAM-Server-ID header: missing header "
                           '"X-Vault-AWS-IAM-Server-ID"')
            if got[0] != want:
                raise _bad("error validating X-Vault-AWS-IAM-Server-ID header: expected "
                           f'"{want}" but got "{got[0]}"')
            auth = next((v[0] for k, v in headers.items() if k.lower() == "authorization"), "")
            signed = re.search(r"SignedHeaders=([^,\s]+)", auth)
            if not signed or "x-vault-aws-iam-server-id" not in signed.group(1).split(";"):
                raise _bad("error validating X-Vault-AWS-IAM-Server-ID header: vault header "
                           "wasn't signed")
        endpoint = cfg.get("sts_endpoint") or "https://sts.amazonaws.com"
        target = endpoint.rstrip("/") + (urllib.parse.urlsplit(url).path or "/")
        req = urllib.request.Request(target, data=req_body.encode(), method=method)
        for k, vs in headers.items():
            req.add_header(k, ",".join(vs))
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                xml = r.read().decode()
        except urllib.error.HTTPError as e:
            raise _bad(f"error making upstream request: received error code {e.code} from "
                       f"STS: {e.read().decode(errors='replace')}")
        except OSError as e:
            raise _bad(f"error making upstream request: {e}")
        found = re.search(r"<Arn>([^<]+)</Arn>", xml)
        account = re.search(r"<Account>([^<]+)</Account>", xml)
        if not found:
            raise _bad("error parsing STS response")
        arn = found.group(1)
        role = body.get("role") or arn.rsplit("/", 1)[-1]
        with self._cond:
            rcfg = m.roles.get(role)
            if rcfg is None:
                raise _bad(f"entry for role {role} not found")
            bound = rcfg["bound_iam_principal_arn"]
            if not any(arn == b or (b.endswith("*") and arn.startswith(b[:-1]))
                       for b in bound):
                raise _bad(f'IAM Principal "{arn}" does not belong to the role "{role}"')
            self.logins[(m.path, role)] += 1
            auth = self._issue_login_token(
                ns, rcfg, f"auth/{m.path}login", f"{m.path.rstrip('/')}-{arn}",
                {"auth_type": "iam", "client_arn": arn, "canonical_arn": arn,
                 "account_id": account.group(1) if account else ""})
        return self._ok(auth=auth)

    def _login_cert(self, ns, m, body, der):
        """auth/cert/login: the client certificate of the TLS connection must verify
        against a role's `certificate` (a CA, or the certificate itself) and match its
        allowed_common_names; `name` limits the roles tried to that one."""
        if der is None:
            raise _bad("client certificate must be supplied")
        name = body.get("name") or ""
        with self._lock:
            if name and name not in m.roles:
                raise _bad(f'invalid certificate or no client certificate supplied; '
                           f'role "{name}" not found')
            roles = [(name, m.roles[name])] if name else sorted(m.roles.items())
        pem = ssl.DER_cert_to_PEM_cert(der)
        cn = _cert_common_name(pem)
        for role, cfg in roles:
            allowed = cfg["allowed_common_names"]
            if allowed and cn not in allowed:
                continue
            if not _openssl_verifies(pem, cfg["certificate"]):
                continue
            with self._cond:
                self.logins[(m.path, role)] += 1
                auth = self._issue_login_token(ns, cfg, f"auth/{m.path}login",
                                               f"{m.path.rstrip('/')}-{role}",
                                               {"cert_name": role, "common_name": cn})
            return self._ok(auth=auth)
        raise _bad("invalid certificate or no client certificate supplied")

    def _login_approle(self, ns, m, body):
        role_id = body.get("role_id") or ""
        secret_id = body.get("secret_id") or ""
        if not role_id:
            raise _bad("missing role_id")
        with self._cond:
            name, cfg = next(((n, c) for n, c in m.roles.items() if c["role_id"] == role_id),
                             (None, None))
            if cfg is None:
                raise _bad("invalid role or secret ID")
            if cfg["bind_secret_id"]:
                if not secret_id:
                    raise _bad("missing secret_id")
                info = cfg["secret_ids"].get(secret_id)
                if info is None or (info["expires"] is not None and self.now() >= info["expires"]):
                    raise _bad("invalid role or secret ID")
                if info["num_uses"] > 0:
                    info["num_uses"] -= 1
                    if info["num_uses"] == 0:
                        del cfg["secret_ids"][secret_id]
            self.logins[(m.path, name)] += 1
            auth = self._issue_login_token(ns, cfg, f"auth/{m.path}login", "approle",
                                           {"role_name": name})
        return self._ok(auth=auth)

    def _login_jwt(self, ns, m, body):
        role = body.get("role") or ""
        jwt = body.get("jwt") or ""
        with self._cond:
            if m.type == "kubernetes":
                if not role:
                    raise _bad("missing role")
                if not jwt:
                    raise _bad("missing jwt")
                cfg = m.roles.get(role)
                if cfg is None:
                    raise _bad(f'invalid role name "{role}"')
                if jwt not in cfg["jwts"]:
                    raise _denied()
                meta = {"role": role,
                        "service_account_name": cfg["service_account_name"],
                        "service_account_namespace": cfg["service_account_namespace"],
                        "service_account_secret_name": "",
                        "service_account_uid": str(uuid.uuid5(uuid.NAMESPACE_OID, jwt))}
                display = f"{m.path.rstrip('/')}-{cfg['service_account_namespace']}-" \
                          f"{cfg['service_account_name']}"
            else:
                if not jwt:
                    raise _bad("missing token")
                cfg = m.roles.get(role)
                if cfg is None:
                    raise _bad(f'role "{role}" could not be found')
                if jwt not in cfg["jwts"]:
                    raise _bad("error validating token: invalid JWT")
                meta = {"role": role}
                display = f"{m.path.rstrip('/')}-{role}"
            self.logins[(m.path, role)] += 1
            auth = self._issue_login_token(ns, cfg, f"auth/{m.path}login", display, meta)
        return self._ok(auth=auth)

    def _approle_admin(self, ns, mount_name, role, what, method, body):
        with self._lock:
            m = ns.auth.get(mount_name.strip("/") + "/")
            cfg = m.roles.get(role) if (m is not None and m.type == "approle") else None
        if cfg is None:
            raise _bad(f'role "{role}" does not exist') if m is not None else \
                VaultError(404, [f'no handler for route "auth/{mount_name}/role/{role}/{what}". '
                                 'route entry not found.'])
        if what == "role-id" and method == "GET":
            return self._ok(data={"role_id": cfg["role_id"]})
        if what == "secret-id" and method in ("POST", "PUT"):
            sid = self.add_secret_id(role, num_uses=body.get("num_uses", 0),
                                     ttl=body.get("ttl", 0), mount=m.path, namespace=ns.name)
            with self._lock:
                info = cfg["secret_ids"][sid]
            return self._ok(data={"secret_id": sid, "secret_id_accessor": info["accessor"],
                                  "secret_id_ttl": int(info["ttl"]),
                                  "secret_id_num_uses": info["num_uses"]})
        raise VaultError(405, ["unsupported operation"])

    # -- wrapping

    def _wrap(self, ns_name, inner, ttl, creation_path):
        with self._cond:
            now = self.now()
            wtok = "hvs." + _rand(24)
            info = {"token": wtok, "accessor": _rand(24), "ttl": int(ttl),
                    "creation_time": rfc3339(now), "creation_path": creation_path,
                    "wrapped_accessor": ""}
            if isinstance(inner, dict) and isinstance(inner.get("auth"), dict):
                info["wrapped_accessor"] = inner["auth"].get("accessor", "")
            self._wraps[wtok] = {"body": copy.deepcopy(inner), "expires": now + ttl,
                                 "namespace": ns_name, "info": info, "unwrapped": False}
            self._cond.notify_all()
            return info

    def _unwrap(self, ns, headers, body):
        header_tok = _hget(headers, "X-Vault-Token")
        wtok = body.get("token") or ""
        if wtok:
            # a third party unwraps: its own token must be valid
            self._authenticate(ns, headers, "sys/wrapping/unwrap")
        elif header_tok:
            wtok = header_tok
        else:
            raise _denied()
        with self._cond:
            w = self._wraps.get(wtok)
            if w is None or self.now() >= w["expires"] or \
                    not _ns_within(w["namespace"], ns.name):
                raise _bad("wrapping token is not valid or does not exist")
            del self._wraps[wtok]                    # single use
            self._cond.notify_all()
        out = copy.deepcopy(w["body"])
        out["request_id"] = _uuid()
        return 200, out, {}

    def unwrapped(self, wrapping_token):
        """True once the wrapping token has been consumed (or expired)."""
        with self._lock:
            return wrapping_token not in self._wraps

    # -- leases

    def _issue(self, ns, mount, role_name, verb, params, tok):
        with self._lock:
            role = mount.roles.get(role_name)
            if role is None:
                raise _bad(f"unknown role: {role_name}")
            now = self.now()
            ttl = role.default_ttl
            warnings = None
            if params.get("ttl"):
                ttl = parse_duration(params["ttl"])
            if ttl > role.max_ttl:
                warnings = [f'TTL of "{go_duration(ttl)}" exceeded the effective max_ttl of '
                            f'"{go_duration(role.max_ttl)}"; TTL value is capped accordingly']
                ttl = role.max_ttl
            lease_id = f"{mount.path}{verb}/{role_name}/{_rand(24)}" if role.generate_lease else ""
            req = IssueRequest(mount.path, role_name, verb, dict(params), ttl, lease_id,
                               ns.name, tok.display_name)
        data = role.issue(req) if role.issue else _default_creds(mount.type, req, now)
        with self._cond:
            role.issued += 1
            if lease_id:
                self.leases[lease_id] = Lease(lease_id, ns.name, mount.path, role_name, verb,
                                              copy.deepcopy(data), now, ttl, role.max_ttl,
                                              role.renewable, tok.accessor, role.revoke,
                                              dict(params))
            self._cond.notify_all()
        if not lease_id:
            return self._ok(data=data, warnings=warnings, mount_type=mount.type)
        return self._ok(data=data, lease_id=lease_id, renewable=role.renewable,
                        lease_duration=int(ttl), warnings=warnings, mount_type=mount.type)

    def _live_lease(self, ns, lease_id):
        le = self.leases.get(lease_id)
        if le is None or not le.live or le.namespace != ns.name or self.now() >= le.expires:
            return None
        return le

    def _lease_renew(self, ns, lease_id, body):
        if not lease_id:
            raise _bad("lease_id must be specified")
        with self._cond:
            le = self._live_lease(ns, lease_id)
            if le is None:
                raise _bad("lease not found")
            if not le.renewable:
                raise _bad("lease is not renewable")
            now = self.now()
            inc = parse_duration(body.get("increment"))
            role = self._nsobj(ns.name).mounts.get(le.mount)
            role = role.roles.get(le.role) if role else None
            if inc <= 0:
                inc = role.default_ttl if role else le.ttl
            granted, warnings = inc, None
            if now + inc > le.max_expires:
                granted = max(0.0, le.max_expires - now)
                warnings = [f'TTL of "{go_duration(inc)}" exceeded the effective max_ttl of '
                            f'"{go_duration(granted)}"; TTL value is capped accordingly']
            le.expires = now + granted
            le.renewals.append((now, inc, _secs(granted)))
            self._cond.notify_all()
            renew_cb = role.renew if role else None
        if renew_cb:
            renew_cb(le)  # outside the lock: it may talk to a database
        return self._ok(lease_id=le.lease_id, renewable=True, lease_duration=_secs(granted),
                        warnings=warnings)

    def _lease_revoke(self, ns, lease_id, body):
        if not lease_id:
            raise _bad("lease_id must be specified")
        with self._cond:
            le = self.leases.get(lease_id)
            if le is None or not le.live or le.namespace != ns.name:
                return 204, None, {}                 # Vault: revoking nothing succeeds
            self._mark_revoked(le, "api")
        self._run_revoke_callbacks([le])
        if le.revoke_error:
            raise _bad(f"failed to revoke entry: resp: (*logical.Response)(nil) "
                       f"err: {le.revoke_error}")
        return 204, None, {}

    def _lease_lookup(self, ns, lease_id, body):
        if not lease_id:
            raise _bad("missing lease ID")
        with self._lock:
            le = self._live_lease(ns, lease_id)
            if le is None:
                raise _bad("invalid lease")
            now = self.now()
            last = le.renewals[-1][0] if le.renewals else None
            data = {"id": le.lease_id, "issue_time": rfc3339(le.issued),
                    "expire_time": rfc3339(le.expires),
                    "last_renewal_time": rfc3339(last) if last else None,
                    "renewable": le.renewable, "ttl": _secs(max(0, le.expires - now))}
        return self._ok(data=data)

    # -- KV over HTTP

    def _kv1(self, m, rel, method, body):
        with self._cond:
            if method == "GET":
                if rel not in m.kv:
                    raise _not_found()
                data = copy.deepcopy(m.kv[rel])
                ttl = KV1_LEASE_DURATION
                if "ttl" in data:
                    try:
                        ttl = parse_duration(data["ttl"])
                    except ValueError:
                        pass
                return self._ok(data=data, lease_duration=int(ttl), mount_type=m.type)
            if method in ("POST", "PUT"):
                if not body:
                    raise _bad("missing data fields")
                m.kv[rel] = copy.deepcopy(body)
                self._cond.notify_all()
                return 204, None, {}
            if method == "DELETE":
                m.kv.pop(rel, None)
                self._cond.notify_all()
                return 204, None, {}
            if method == "LIST":
                return self._list(m.kv.keys(), rel, m.type)
        raise VaultError(405, ["unsupported operation"])

    def _list(self, keys, rel, mount_type):
        prefix = (rel + "/") if rel else ""
        out = set()
        for k in keys:
            if k.startswith(prefix) and k != prefix:
                rest = k[len(prefix):]
                out.add(rest.split("/", 1)[0] + "/" if "/" in rest else rest)
        if not out:
            raise _not_found()
        return self._ok(data={"keys": sorted(out)}, mount_type=mount_type)

    def _kv2(self, m, rel, method, query, body, headers):
        op, _, key = rel.partition("/")
        with self._cond:
            now = self.now()
            if op == "config" and not key and method == "GET":
                return self._ok(data={"cas_required": False, "delete_version_after": "0s",
                                      "max_versions": m.kv2_max_versions}, mount_type="kv")
            if op == "data" and key:
                if method == "GET":
                    return self._kv2_read(m, key, query, now)
                if method in ("POST", "PUT", "PATCH"):
                    if not isinstance(body.get("data"), dict):
                        raise _bad("no data provided")
                    e = m.kv.get(key)
                    cas = (body.get("options") or {}).get("cas")
                    if cas is not None and int(cas) != (e.current if e else 0):
                        raise _bad("check-and-set parameter did not match the current version")
                    data = copy.deepcopy(body["data"])
                    if method == "PATCH":
                        cur = self._kv2_current(m, key)
                        if cur is None:
                            raise _not_found()
                        data = _merge_patch(cur, data)
                    ver = self._kv2_write(m, key, data)
                    e = m.kv[key]
                    self._cond.notify_all()
                    meta = e.versions[ver].meta()
                    meta.update(version=ver, custom_metadata=e.custom_metadata)
                    return self._ok(data=meta, mount_type="kv")
                if method == "DELETE":
                    e = m.kv.get(key)
                    if e and e.current in e.versions and e.versions[e.current].deletion is None:
                        e.versions[e.current].deletion = now
                    self._cond.notify_all()
                    return 204, None, {}
            if op in ("delete", "undelete", "destroy") and key and method in ("POST", "PUT"):
                versions = body.get("versions")
                if not versions:
                    raise _bad("no version number provided")
                self._kv2_versions_op(m, key, op, versions)
                self._cond.notify_all()
                return 204, None, {}
            if op == "metadata":
                if method == "LIST":
                    return self._list(m.kv.keys(), key, "kv")
                if not key:
                    raise _not_found()
                e = m.kv.get(key)
                if method == "GET":
                    if e is None:
                        raise _not_found()
                    return self._ok(data={
                        "cas_required": e.cas_required, "created_time": rfc3339(e.created),
                        "current_version": e.current, "custom_metadata": e.custom_metadata,
                        "delete_version_after": "0s", "max_versions": e.max_versions,
                        "oldest_version": e.oldest, "updated_time": rfc3339(e.updated),
                        "versions": {str(n): v.meta() for n, v in sorted(e.versions.items())}},
                        mount_type="kv")
                if method in ("POST", "PUT"):
                    if e is None:
                        e = m.kv[key] = _KV2Entry(now)
                    if "max_versions" in body:
                        e.max_versions = int(body["max_versions"])
                    if "cas_required" in body:
                        e.cas_required = bool(body["cas_required"])
                    if "custom_metadata" in body:
                        e.custom_metadata = body["custom_metadata"]
                    self._cond.notify_all()
                    return 204, None, {}
                if method == "DELETE":
                    m.kv.pop(key, None)
                    self._cond.notify_all()
                    return 204, None, {}
        body404 = {"errors": [], "warnings": [
            "Invalid path for a versioned K/V secrets engine. See the API docs for the "
            "appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' "
            "for this operation."]}
        raise VaultError(404, body=body404)

    def _kv2_read(self, m, key, query, now):
        e = m.kv.get(key)
        if e is None:
            raise _not_found()
        try:
            ver = int(query.get("version") or 0) or e.current
        except ValueError:
            raise _bad("error converting input for field \"version\"")
        v = e.versions.get(ver)
        if v is None:
            raise _not_found()
        meta = v.meta()
        meta.update(version=ver, custom_metadata=e.custom_metadata)
        gone = v.destroyed or (v.deletion is not None and v.deletion <= now)
        resp = self._resp(data={"data": None if gone else copy.deepcopy(v.data),
                                "metadata": meta}, mount_type="kv")
        if gone:
            raise VaultError(404, body=resp)
        return 200, resp, {}

    # ------------------------------------------------------------------ admin API (script mode)

    def _admin(self, h, method, path, body):
        try:
            if path == "/_fake/requests" and method == "GET":
                with self._lock:
                    out = [r.to_dict() for r in self.requests]
            elif path == "/_fake/leases" and method == "GET":
                with self._lock:
                    out = [le.to_dict() for le in self.leases.values()]
            elif path == "/_fake/call" and method == "POST":
                req = json.loads(body or b"{}")
                name = req.get("method", "")
                if name not in ADMIN_METHODS:
                    raise VaultError(400, [f"method {name!r} not allowed"])
                out = getattr(self, name)(*req.get("args", []), **req.get("kwargs", {}))
            else:
                raise _not_found()
            payload, status = {"result": _jsonable(out)}, 200
        except VaultError as e:
            payload, status = {"errors": e.errors}, e.status
        except Exception as e:  # noqa: BLE001
            payload, status = {"errors": [f"{type(e).__name__}: {e}"]}, 500
        self._reply(h, None, status, payload)


# --------------------------------------------------------------------------- small utilities

def _norm_prefix(prefix):
    p = (prefix or "").strip()
    if p.startswith("/v1/") or p == "/v1" or p.startswith("/_fake"):
        return p
    return "/v1/" + p.lstrip("/")


def _hget(headers, name):
    v = headers.get(name)
    if v is None:
        low = name.lower()
        for k in headers.keys():
            if k.lower() == low:
                return headers[k]
    return v


def _ns_within(token_ns, request_ns):
    """A token of namespace A works in A and in A's children."""
    return token_ns == "" or request_ns == token_ns or request_ns.startswith(token_ns + "/")


def _parse_body(raw):
    if not raw or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise _bad(f"failed to parse JSON input: {e}")
    if not isinstance(data, dict):
        raise _bad("failed to parse JSON input: not an object")
    return data


def _merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


def _as_bytes(x):
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    return (json.dumps(x) + "\n").encode()


def _default_message(status):
    return {400: "bad request", 403: "permission denied", 404: None,
            405: "unsupported operation", 412: "required index state not present",
            429: "request path \"/v1/\": rate limit quota exceeded",
            500: "internal error", 502: "bad gateway", 503: "Vault is sealed"}.get(
        status, f"fake error {status}")


def _jsonable(x):
    if hasattr(x, "to_dict"):
        return _jsonable(x.to_dict())
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, Mount):
        return x.info()
    return repr(x)


def _default_creds(mtype, req, now):
    if mtype == "aws":
        return {"access_key": "AKIA" + _rand(16, string.ascii_uppercase + string.digits),
                "secret_key": _rand(40, _ALNUM + "+/"), "security_token": None,
                "arn": f"arn:aws:sts::123456789012:assumed-role/{req.role}/fake"}
    if mtype == "pki":
        cn = req.params.get("common_name", "example.com")
        pem = lambda kind: (f"-----BEGIN {kind}-----\n"  # noqa: E731
                            f"{_rand(64)}\n{cn}\n"
                            f"-----END {kind}-----")
        return {"certificate": pem("CERTIFICATE"), "issuing_ca": pem("CERTIFICATE"),
                "ca_chain": [pem("CERTIFICATE")], "private_key": pem("EC PRIVATE KEY"),
                "private_key_type": "ec",
                "serial_number": ":".join(secrets.token_hex(1) for _ in range(20)),
                "expiration": int(now + req.ttl)}
    display = (req.display_name or "token")[:8].replace("/", "-")
    return {"username": f"v-{display}-{req.role[:8]}-{_rand(20)}-{int(now)}"[:63],
            "password": _rand(20)}


# --------------------------------------------------------------------------- script mode

def serve_until_signal(fake):
    """Script mode: starts fake, prints its URL as the first line of
    stdout, serves until SIGTERM or SIGINT, stops. Returns 0."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    fake.start()
    print(fake.url, flush=True)
    while not done.wait(0.5):
        pass
    fake.stop()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake HashiCorp Vault server for tests. "
                                             "Prints its URL on the first line of stdout.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = an ephemeral port")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    ap.add_argument("--root-token", default="root")
    ap.add_argument("--namespace", action="append", default=None,
                    help="enforce namespaces; repeat for each")
    ap.add_argument("--seed", help="JSON file applied with FakeVault.load_seed")
    ap.add_argument("--no-admin", action="store_true", help="disable the /_fake/ control API")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")

    vault = FakeVault(root_token=args.root_token, host=args.host, port=args.port,
                      tls_cert=args.tls_cert, tls_key=args.tls_key,
                      tls_client_ca=args.tls_client_ca, namespaces=args.namespace,
                      admin_api=not args.no_admin, verbose=args.verbose)
    if args.seed:
        with open(args.seed) as f:
            vault.load_seed(json.load(f))
    return serve_until_signal(vault)


if __name__ == "__main__":
    sys.exit(main())
