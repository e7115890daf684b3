#!/usr/bin/python3
"""A fake AWS for secretfs's integration tests: Secrets Manager (SigV4-verified), STS
AssumeRoleWithWebIdentity and GetCallerIdentity (SigV4-verified), container credentials
(ECS / EKS Pod Identity) and IMDSv2, all
on one HTTP(S) server on 127.0.0.1.

Python standard library only. Use it as a library::

    from fakes.fake_aws import FakeAws, sign_request, sm_call

    with FakeAws(region="eu-west-1") as aws:
        aws.add_static_credentials("AKIDEXAMPLE", "secret")
        aws.add_secret("app/db", string='{"password": "p1"}')
        ...  # point secretfs at aws.url, then assert on aws.requests / aws.count(...)

or as a script (the URL is the first line printed on stdout)::

    /usr/bin/python3 tests/fakes/fake_aws.py --port 0 [--region R] [--tls-cert C --tls-key K]
        [--static-credentials AKID:SECRET ...] [--seed FILE]

A script-mode fake is steered over ``POST /_fake/call`` ({"method", "args", "kwargs"}
naming one of ADMIN_METHODS) and inspected with ``GET /_fake/requests``; those paths are
never recorded and ignore faults.

Routing (one server, told apart by the request; each request is recorded with its kind):

* "sm": ``POST /`` with ``X-Amz-Target: secretsmanager.<Op>`` (JSON 1.1). Ops:
  GetSecretValue, DescribeSecret, BatchGetSecretValue, ListSecretVersionIds. Every request
  is SigV4-verified against the fake's credentials, region and clock (see _authenticate).
  Errors are 400 {"__type", "Message"} with x-amzn-ErrorType; the errors the AWS front end
  raises (signature, credentials, throttling, unknown operation, serialization) use a
  lowercase "message", as AWS does; 500 InternalServiceError.
* "sts": ``POST /`` form-encoded (or ``GET /?...``) with Action=AssumeRoleWithWebIdentity
  (unsigned) or Action=GetCallerIdentity (SigV4 for service "sts", verified as above; the
  Arn, UserId and Account of the signer); XML answers and STS ErrorResponse errors.
* "container": ``GET <path>`` for each path added with add_container_endpoint.
* "imds": ``PUT /latest/api/token`` and ``GET /latest/...`` (IMDSv2 only: GETs need a token).

Two clocks: now() is the fake's notion of time for expiry and for the dates it reports; it
moves with advance(seconds). The server clock (real time + clock_skew, see set_clock_skew)
is what X-Amz-Date is judged against and what the Date response header says; advance()
does not move it, so expiring credentials with advance() does not also make every
signature stale.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import re
import secrets
import ssl
import string
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from xml.sax.saxutils import escape as _xml_escape

try:  # imported as fakes.fake_aws
    from .fake_vault import (FakeVault, Fault, RecordedRequest, TestPKI, make_test_pki,
                             _Handler, _Server, _hget, _jsonable, _rand, _uuid,
                             serve_until_signal)
except ImportError:  # run as a script, or imported with tests/fakes on sys.path
    from fake_vault import (FakeVault, Fault, RecordedRequest, TestPKI,  # noqa: F401
                            make_test_pki, _Handler, _Server, _hget, _jsonable, _rand, _uuid,
                            serve_until_signal)

__all__ = ["FakeAws", "AwsError", "AwsRequest", "Credential", "Secret", "SecretVersion",
           "TestPKI", "make_test_pki", "sign_request", "authorization_header",
           "canonical_request", "canonical_uri", "canonical_query", "string_to_sign",
           "signing_key", "parse_authorization", "amz_date", "sm_call", "ADMIN_METHODS",
           "main"]

ALGORITHM = "AWS4-HMAC-SHA256"
SM_SERVICE = "secretsmanager"
SM_CONTENT_TYPE = "application/x-amz-json-1.1"
SM_OPS = ("GetSecretValue", "DescribeSecret", "BatchGetSecretValue", "ListSecretVersionIds")
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
DEFAULT_ACCOUNT = "123456789012"
AWSCURRENT, AWSPREVIOUS, AWSPENDING = "AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"
IMDS_MAX_TTL = 21600
# errors the AWS front end answers itself: their JSON body says "message" (lowercase)
FRONTEND_ERRORS = frozenset((
    "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
    "ExpiredTokenException", "MissingAuthenticationTokenException", "ThrottlingException",
    "UnknownOperationException", "SerializationException", "ServiceUnavailableException"))
_UPPER_ALNUM = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")


# --------------------------------------------------------------------------- SigV4

def amz_date(ts=None):
    """ISO 8601 basic format, as X-Amz-Date wants it: 20150830T123600Z."""
    ts = time.time() if ts is None else ts
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _parse_amz_date(text):
    dt = datetime.datetime.strptime(text, "%Y%m%dT%H%M%SZ")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def iso8601(ts):
    """2026-01-02T03:04:05Z (what STS, ECS and IMDS use for Expiration)."""
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _header_pairs(headers):
    if headers is None:
        return []
    if hasattr(headers, "items"):
        return list(headers.items())
    return list(headers)


def canonical_uri(path):
    """The canonical URI of a non-S3 service: dot segments and empty segments removed, then
    URI-encoded once (so a path that arrived percent-encoded is encoded a second time, as
    AWS does for every service but S3)."""
    segs = []
    for seg in (path or "/").split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if segs:
                segs.pop()
            continue
        segs.append(seg)
    out = "/" + "/".join(segs)
    if segs and (path or "").endswith("/"):
        out += "/"
    return urllib.parse.quote(out, safe="/~")


def canonical_query(query):
    """Parameters decoded, re-encoded (RFC 3986 unreserved kept) and sorted by name, value."""
    pairs = []
    for part in (query or "").split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((urllib.parse.quote(urllib.parse.unquote(k), safe="-_.~"),
                      urllib.parse.quote(urllib.parse.unquote(v), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _canonical_headers(headers, signed):
    values = {}
    for name, value in _header_pairs(headers):
        values.setdefault(name.strip().lower(), []).append(" ".join(str(value).split()))
    return "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in signed)


def canonical_request(method, target, headers, body, signed_headers):
    """The SigV4 canonical request of what arrived. target: the request target (path and
    query); headers: a dict or (name, value) pairs, repeated names allowed; signed_headers:
    lowercase names in the order the Authorization header lists them."""
    path, _, query = target.partition("?")
    body = body.encode() if isinstance(body, str) else (body or b"")
    return "\n".join([method.upper(), canonical_uri(path), canonical_query(query),
                      _canonical_headers(headers, signed_headers), ";".join(signed_headers),
                      hashlib.sha256(body).hexdigest()])


def string_to_sign(date, scope, creq):
    return "\n".join([ALGORITHM, date, scope, hashlib.sha256(creq.encode()).hexdigest()])


def signing_key(secret_access_key, datestamp, region, service):
    key = ("AWS4" + secret_access_key).encode()
    for part in (datestamp, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _signature(secret_access_key, sts, scope):
    datestamp, region, service, _ = scope.split("/")
    return hmac.new(signing_key(secret_access_key, datestamp, region, service), sts.encode(),
                    hashlib.sha256).hexdigest()


def parse_authorization(value):
    """Parse 'AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
    SignedHeaders=a;b, Signature=hex'. Returns a dict (access_key_id, date, region, service,
    terminator, scope, signed_headers [list], signature); raises ValueError saying what is
    missing."""
    value = (value or "").strip()
    if not value.startswith(ALGORITHM + " "):
        raise ValueError(f"Unsupported Authorization Type. Authorization={value}")
    parts = {}
    for item in value[len(ALGORITHM):].split(","):
        k, sep, v = item.strip().partition("=")
        if sep:
            parts[k.strip()] = v.strip()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not parts.get(k)]
    if missing:
        raise ValueError(" ".join(f"Authorization header requires '{k}' parameter."
                                  for k in missing) + f" Authorization={value}")
    cred = parts["Credential"].split("/")
    if len(cred) != 5:
        raise ValueError(f"Credential should have 5 parts. Authorization={value}")
    return {"access_key_id": cred[0], "date": cred[1], "region": cred[2], "service": cred[3],
            "terminator": cred[4], "scope": "/".join(cred[1:]),
            "signed_headers": parts["SignedHeaders"].split(";"),
            "signature": parts["Signature"]}


def authorization_header(method, target, headers, body, access_key_id, secret_access_key,
                         region, service, signed_headers=None):
    """The Authorization value for a request whose headers already hold Host and X-Amz-Date
    (and X-Amz-Security-Token if it is to be signed). signed_headers defaults to every
    header present but Authorization, User-Agent, Expect and X-Amzn-Trace-Id."""
    pairs = _header_pairs(headers)
    date = next((v for k, v in pairs if k.lower() == "x-amz-date"), None)
    if date is None:
        raise ValueError("X-Amz-Date header needed")
    if signed_headers is None:
        skip = {"authorization", "user-agent", "expect", "x-amzn-trace-id"}
        signed_headers = sorted({k.strip().lower() for k, _ in pairs} - skip)
    scope = f"{date[:8]}/{region}/{service}/aws4_request"
    creq = canonical_request(method, target, pairs, body, signed_headers)
    sig = _signature(secret_access_key, string_to_sign(date, scope, creq), scope)
    return (f"{ALGORITHM} Credential={access_key_id}/{scope}, "
            f"SignedHeaders={';'.join(signed_headers)}, Signature={sig}")


def sign_request(method, url, headers=None, body=b"", *, access_key_id, secret_access_key,
                 session_token=None, region="us-east-1", service=SM_SERVICE, date=None,
                 sign_session_token=True, signed_headers=None):
    """Client-side SigV4: returns the headers to send (a dict: the given ones plus Host,
    X-Amz-Date, X-Amz-Security-Token when a session token is given, and Authorization).
    date: an X-Amz-Date string or a POSIX time (default: now, real clock).
    sign_session_token=False adds the token after signing (not in SignedHeaders)."""
    split = urllib.parse.urlsplit(url)
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    pairs = _header_pairs(headers)
    names = {k.lower() for k, _ in pairs}
    if "host" not in names:
        pairs.append(("Host", split.netloc))
    if "x-amz-date" not in names:
        pairs.append(("X-Amz-Date", date if isinstance(date, str) else amz_date(date)))
    late = []
    if session_token is not None and "x-amz-security-token" not in names:
        (pairs if sign_session_token else late).append(("X-Amz-Security-Token", session_token))
    auth = authorization_header(method, target, pairs, body, access_key_id, secret_access_key,
                                region, service, signed_headers)
    out = dict(pairs + late)
    out["Authorization"] = auth
    return out


class SmResponse:
    """What sm_call returns."""

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def json(self):
        return json.loads(self.raw) if self.raw else None

    @property
    def error_type(self):
        return self.json.get("__type") if self.status >= 400 and self.raw else None

    def __repr__(self):
        return f"<{self.status} {self.raw[:300]!r}>"


def sm_call(url, op, payload=None, *, access_key_id, secret_access_key, session_token=None,
            region="us-east-1", ctx=None, timeout=5, date=None, headers=None, body=None,
            sign_session_token=True, signed_headers=None, send_headers=None):
    """Call a Secrets Manager operation (a small signed client for tests). body: raw bytes
    instead of json(payload). send_headers: headers to add/override after signing (to
    tamper). Returns SmResponse(status, headers, raw)."""
    data = body if body is not None else json.dumps(payload or {}).encode()
    hdrs = {"Content-Type": SM_CONTENT_TYPE, "X-Amz-Target": f"secretsmanager.{op}"}
    hdrs.update(headers or {})
    signed = sign_request("POST", url.rstrip("/") + "/", hdrs, data,
                          access_key_id=access_key_id, secret_access_key=secret_access_key,
                          session_token=session_token, region=region, date=date,
                          sign_session_token=sign_session_token, signed_headers=signed_headers)
    signed.update(send_headers or {})
    req = urllib.request.Request(url.rstrip("/") + "/", data=data, method="POST",
                                 headers={k: v for k, v in signed.items() if v is not None})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return SmResponse(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return SmResponse(e.code, e.headers, e.read())


# --------------------------------------------------------------------------- records

class AwsError(Exception):
    """An error answer; rendered in the shape of the kind of endpoint that raised it."""

    def __init__(self, status, code, message="", headers=None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class AwsRequest(RecordedRequest):
    """One request as the fake saw it. Besides RecordedRequest's fields (seq, time, method,
    path, raw_path, query, headers, body, json, fault, status, header()):
    kind ("sm", "sts", "container", "imds", "other"), op (the SM operation, the STS Action,
    "GetCredentials" for container, "token"/"list-roles"/"credentials"/"region"/
    "identity-document"/"meta-data" for IMDS), secret (SecretId as sent, single-secret ops),
    secret_ids (all SecretIds sent), secret_names (those resolved to secret names),
    access_key_id (from the Authorization header, even when rejected), issued_access_key_id
    (credentials handed out by sts/container/imds), error (error code answered)."""

    def __init__(self, *args, kind="other", op=None, **kw):
        super().__init__(*args, **kw)
        self.kind = kind
        self.op = op
        self.secret = None
        self.secret_ids = []
        self.secret_names = []
        self.access_key_id = None
        self.issued_access_key_id = None
        self.error = None
        self.request_id = _uuid()

    def to_dict(self):
        d = super().to_dict()
        d.update({k: getattr(self, k) for k in (
            "kind", "op", "secret", "secret_ids", "secret_names", "access_key_id",
            "issued_access_key_id", "error", "request_id")})
        return d

    def __repr__(self):
        return (f"<{self.kind}:{self.op} {self.method} {self.raw_path} secret={self.secret} "
                f"akid={self.access_key_id} -> {self.status} {self.error or ''} "
                f"fault={self.fault}>")


class Credential:
    """An access key the fake accepts. Temporary ones (source sts/container/imds/test) have
    a session_token and an expiry on the fake's clock."""

    def __init__(self, access_key_id, secret_access_key, session_token, source, issued,
                 expires, role_arn=None, session_name=None, principal_arn=None):
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.source = source                  # "static", "sts", "container", "imds", "test"
        self.issued = issued
        self.expires = expires                # None: never (static)
        self.role_arn = role_arn
        self.session_name = session_name
        self.principal_arn = principal_arn
        self.removed = False

    @property
    def temporary(self):
        return self.session_token is not None

    def expired(self, now):
        return self.expires is not None and now >= self.expires

    def to_dict(self):
        return {k: getattr(self, k) for k in (
            "access_key_id", "secret_access_key", "session_token", "source", "issued",
            "expires", "role_arn", "session_name", "principal_arn", "removed")}

    def __repr__(self):
        return f"<Credential {self.access_key_id} {self.source} expires={self.expires}>"


class SecretVersion:
    def __init__(self, version_id, string_value, binary_value, created):
        self.version_id = version_id
        self.string = string_value
        self.binary = binary_value
        self.created = created
        self.stages = []
        self.last_accessed = None

    def to_dict(self):
        return {"version_id": self.version_id, "string": self.string,
                "binary": base64.b64encode(self.binary).decode() if self.binary else None,
                "created": self.created, "stages": list(self.stages),
                "last_accessed": self.last_accessed}


class Secret:
    def __init__(self, name, arn, created, description=None, kms_key_id=None, tags=None,
                 rotation_enabled=None):
        self.name = name
        self.arn = arn
        self.created = created
        self.description = description
        self.kms_key_id = kms_key_id
        self.tags = dict(tags or {})
        self.rotation_enabled = rotation_enabled
        self.versions = {}                    # version id -> SecretVersion, oldest first
        self.last_changed = created
        self.last_accessed = None
        self.last_rotated = None
        self.deleted_date = None              # scheduled deletion (DescribeSecret DeletedDate)
        self.decryption_failure = False

    def holder(self, stage):
        for vid, v in self.versions.items():
            if stage in v.stages:
                return vid
        return None

    def stages(self):
        return {vid: list(v.stages) for vid, v in self.versions.items() if v.stages}

    def to_dict(self):
        return {"name": self.name, "arn": self.arn, "created": self.created,
                "description": self.description, "tags": self.tags,
                "rotation_enabled": self.rotation_enabled, "last_changed": self.last_changed,
                "last_accessed": self.last_accessed, "last_rotated": self.last_rotated,
                "deleted_date": self.deleted_date, "decryption_failure": self.decryption_failure,
                "versions": [v.to_dict() for v in self.versions.values()]}


class _Fault(Fault):
    """fake_vault's Fault, aimed at a kind or op (and maybe a secret) instead of a path."""

    def __init__(self, fid, target, kind, status, body, headers, seconds, times, secret):
        super().__init__(fid, target, kind, None, status, body, headers, seconds, times)
        self.target = target
        self.secret = secret

    def matches(self, rec):
        if self.target not in (None, "", rec.kind, rec.op):
            return False
        return self.secret is None or self.secret in rec.secret_ids \
            or self.secret in rec.secret_names

    def to_dict(self):
        d = super().to_dict()
        del d["prefix"], d["method"]
        d.update(target=self.target, secret=self.secret)
        return d


class _DenyRule:
    def __init__(self, rid, secret, ops, access_key_id, role_arn):
        self.id = rid
        self.secret = secret
        self.ops = set(ops) if ops else None
        self.access_key_id = access_key_id
        self.role_arn = role_arn

    def matches(self, secret_name, op, cred):
        return ((self.secret is None or self.secret == secret_name)
                and (self.ops is None or op in self.ops)
                and (self.access_key_id is None or self.access_key_id == cred.access_key_id)
                and (self.role_arn is None or self.role_arn == cred.role_arn))


# --------------------------------------------------------------------------- HTTP plumbing

class _AwsHandler(_Handler):
    server_version = "FakeAws/1.0"

    def date_time_string(self, timestamp=None):
        # the Date header follows the (possibly skewed) server clock, as SDKs read it to
        # correct their own clock
        fake = self.server.fake
        return super().date_time_string(timestamp if timestamp is not None
                                        else fake.server_time())

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write("fake-aws: " + (fmt % args) + "\n")


ADMIN_METHODS = frozenset("""
    advance set_clock_skew add_static_credentials issue_temporary_credentials
    expire_credentials remove_credentials add_secret put_value rotate finish_rotation
    delete_secret restore_secret set_decryption_failure deny_access allow_access
    allow_web_identity expire_web_identity disallow_web_identity add_container_endpoint
    set_instance_role expire_imds_tokens add_fault fault_throttle fault_status fault_garbage
    fault_truncated fault_hang fault_close remove_fault clear_faults clear_requests count
    load_seed
""".split())


# --------------------------------------------------------------------------- the fake

class FakeAws:
    """In-process fake AWS endpoints. All public methods are thread-safe."""

    def __init__(self, region="us-east-1", account_id=DEFAULT_ACCOUNT, host="127.0.0.1",
                 port=0, tls_cert=None, tls_key=None, credential_lifetime=3600,
                 refresh_margin=300, max_skew=300, admin_api=False, verbose=False):
        self.region = region
        self.account_id = account_id
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.admin_api = admin_api
        self.verbose = verbose
        self.credential_lifetime = credential_lifetime   # seconds, temporary credentials
        self.refresh_margin = refresh_margin             # container/IMDS hand out new keys
        self.max_skew = max_skew                         # allowed X-Amz-Date distance
        self.clock_skew = 0.0                            # server clock = real time + this
        self.required_signed_headers = ["host", "x-amz-date", "content-type", "x-amz-target"]

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._offset = 0.0
        self._seq = 0
        self.requests = []                    # [AwsRequest]
        self.tls_failures = []
        self._faults = []
        self._fault_seq = 0
        self._creds = {}                      # access key id -> Credential
        self._secrets = {}                    # name -> Secret
        self._denies = []
        self._deny_seq = 0
        self._web_identities = {}             # token -> dict
        self._containers = {}                 # path -> dict
        self.instance_role = None
        self.instance_role_arn = None
        self.instance_id = "i-" + secrets.token_hex(9)[:17]
        self._imds_tokens = {}                # token -> expiry (fake clock)
        self._imds_cred = None
        self._conns = set()
        self._httpd = None
        self._thread = None
        self._reaper = None

    # ------------------------------------------------------------------ lifecycle

    # The server plumbing is FakeVault's own: the same attribute names (_httpd, _thread,
    # _reaper, _stop, _lock, _cond, _conns, tls_failures) make its methods work here.
    tls = FakeVault.tls
    url = FakeVault.url
    stop = FakeVault.stop                     # prompt: hanging requests are released
    __enter__ = FakeVault.__enter__
    __exit__ = FakeVault.__exit__
    _track = FakeVault._track
    _untrack = FakeVault._untrack
    _note_tls_failure = FakeVault._note_tls_failure
    wait_for = FakeVault.wait_for
    remove_fault = FakeVault.remove_fault
    faults = FakeVault.faults

    def start(self):
        ctx = None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        self._stop.clear()
        self._httpd = _Server((self.host, self.port), _AwsHandler, self, ctx)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"fake-aws-{self.port}", daemon=True)
        self._thread.start()
        self._reaper = threading.Thread(target=self._reap_loop, name="fake-aws-reaper",
                                        daemon=True)
        self._reaper.start()
        return self

    def _reap_loop(self):
        """Forget expired IMDS tokens (they are refused anyway)."""
        while not self._stop.wait(0.5):
            with self._lock:
                now = self.now()
                for t in [t for t, exp in self._imds_tokens.items() if exp <= now - 60]:
                    del self._imds_tokens[t]

    # ------------------------------------------------------------------ clocks

    def now(self):
        """The fake's clock (expiry, reported dates): real time + whatever advance() added."""
        return time.time() + self._offset

    def advance(self, seconds):
        """Move the fake's clock (expiry of credentials, IMDS tokens, web identity tokens)."""
        with self._cond:
            self._offset += float(seconds)
            self._cond.notify_all()

    def server_time(self):
        """The clock X-Amz-Date is checked against (and the Date header): real + clock_skew."""
        return time.time() + self.clock_skew

    def set_clock_skew(self, seconds):
        """Make the server clock run `seconds` ahead of real time (negative: behind)."""
        self.clock_skew = float(seconds)

    # ------------------------------------------------------------------ waiting and the log

    def find_requests(self, kind=None, op=None, secret=None, access_key_id=None, status=None,
                      error=None):
        """Recorded requests matching every filter given (secret: a SecretId as sent or the
        secret's name)."""
        with self._lock:
            return [r for r in self.requests
                    if (kind is None or r.kind == kind) and (op is None or r.op == op)
                    and (secret is None or secret in r.secret_ids or secret in r.secret_names)
                    and (access_key_id is None or r.access_key_id == access_key_id)
                    and (status is None or r.status == status)
                    and (error is None or r.error == error)]

    def count(self, kind=None, op=None, secret=None, access_key_id=None, status=None,
              error=None):
        return len(self.find_requests(kind, op, secret, access_key_id, status, error))

    def last_request(self, **filters):
        found = self.find_requests(**filters)
        return found[-1] if found else None

    def wait_for_requests(self, count=1, timeout=10.0, **filters):
        """Wait until at least `count` recorded requests match; returns the matches."""
        self.wait_for(lambda: len(self.find_requests(**filters)) >= count, timeout)
        return self.find_requests(**filters)

    def clear_requests(self):
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------ credentials

    def add_static_credentials(self, access_key_id, secret_access_key, user="test-user"):
        """A long-term access key (no session token, never expires)."""
        with self._lock:
            c = Credential(access_key_id, secret_access_key, None, "static", self.now(), None,
                           principal_arn=f"arn:aws:iam::{self.account_id}:user/{user}")
            self._creds[access_key_id] = c
            return c

    def issue_temporary_credentials(self, source="test", role_arn=None, session_name="fake",
                                    lifetime=None):
        """New temporary credentials (ASIA..., session token, expiry = now + lifetime or
        credential_lifetime) as STS would issue them. Returns the Credential."""
        role_arn = role_arn or f"arn:aws:iam::{self.account_id}:role/fake-role"
        lifetime = self.credential_lifetime if lifetime is None else float(lifetime)
        with self._lock:
            now = self.now()
            akid = "ASIA" + _rand(16, _UPPER_ALNUM)
            token = base64.b64encode(secrets.token_bytes(180)).decode()
            role_name = role_arn.rsplit("/", 1)[-1]
            c = Credential(akid, _rand(40, _ALNUM + "+/"), token, source, now, now + lifetime,
                           role_arn=role_arn, session_name=session_name,
                           principal_arn=f"arn:aws:sts::{self.account_id}:assumed-role/"
                                         f"{role_name}/{session_name}")
            self._creds[akid] = c
            return c

    def credential(self, access_key_id):
        """The Credential (live view) or None."""
        with self._lock:
            return self._creds.get(access_key_id)

    def credentials(self, source=None):
        """Every Credential the fake knows (of one source), in issue order."""
        with self._lock:
            return [c for c in self._creds.values() if source is None or c.source == source]

    def expire_credentials(self, access_key_id=None):
        """Make temporary credentials (all, or the one given) expire now: requests signed
        with them get ExpiredTokenException; container/IMDS hand out new ones. Returns how
        many were expired."""
        with self._cond:
            now = self.now()
            n = 0
            for c in self._creds.values():
                if c.temporary and (access_key_id is None or c.access_key_id == access_key_id) \
                        and not c.expired(now):
                    c.expires = now
                    n += 1
            self._cond.notify_all()
            return n

    def remove_credentials(self, access_key_id):
        """Forget an access key: requests signed with it get UnrecognizedClientException."""
        with self._lock:
            c = self._creds.get(access_key_id)
            if c is not None:
                c.removed = True

    # ------------------------------------------------------------------ secrets (test side)

    def _arn(self, name):
        return f"arn:aws:secretsmanager:{self.region}:{self.account_id}:secret:{name}-{_rand(6)}"

    def _secret(self, name):
        s = self._secrets.get(name)
        if s is None:
            raise KeyError(f"no secret {name!r}")
        return s

    @staticmethod
    def _value(string_value, binary_value):
        if string_value is not None and binary_value is not None:
            raise ValueError("a version holds SecretString or SecretBinary, not both")
        if binary_value is not None and not isinstance(binary_value, (bytes, bytearray)):
            raise TypeError("binary must be bytes")
        return string_value, bytes(binary_value) if binary_value is not None else None

    def _new_version(self, s, string_value, binary_value, version_id, stages):
        string_value, binary_value = self._value(string_value, binary_value)
        vid = version_id or _uuid()
        if vid in s.versions:
            raise ValueError(f"version {vid} exists")
        s.versions[vid] = SecretVersion(vid, string_value, binary_value, self.now())
        for stage in stages:
            self._move_stage(s, stage, vid)
        s.last_changed = self.now()
        self._cond.notify_all()
        return vid

    @staticmethod
    def _move_stage(s, stage, vid):
        """Attach `stage` to version vid (a label is on one version at most); moving
        AWSCURRENT puts AWSPREVIOUS on the version that had it, as Secrets Manager does."""
        old = s.holder(stage)
        if old == vid:
            return
        if old is not None:
            s.versions[old].stages.remove(stage)
        if stage == AWSCURRENT and old is not None:
            prev = s.holder(AWSPREVIOUS)
            if prev is not None:
                s.versions[prev].stages.remove(AWSPREVIOUS)
            s.versions[old].stages.append(AWSPREVIOUS)
        s.versions[vid].stages.append(stage)

    def add_secret(self, name, string=None, binary=None, *, description=None, tags=None,
                   kms_key_id=None, rotation_enabled=None, version_id=None):
        """Create a secret; with a value (string or bytes binary) its first version gets
        AWSCURRENT. Returns the ARN (arn:aws:secretsmanager:<region>:<account>:secret:
        <name>-<6 random chars>)."""
        with self._cond:
            old = self._secrets.get(name)
            if old is not None and old.deleted_date is None:
                raise ValueError(f"secret {name!r} exists")
            s = Secret(name, self._arn(name), self.now(), description, kms_key_id, tags,
                       rotation_enabled)
            self._secrets[name] = s
            if string is not None or binary is not None:
                self._new_version(s, string, binary, version_id, [AWSCURRENT])
            self._cond.notify_all()
            return s.arn

    def put_value(self, name, string=None, binary=None, *, version_id=None, stages=None):
        """A new version (PutSecretValue): by default it gets AWSCURRENT and the old current
        one AWSPREVIOUS. Returns the new version id."""
        with self._cond:
            return self._new_version(self._secret(name), string, binary, version_id,
                                     [AWSCURRENT] if stages is None else list(stages))

    def rotate(self, name, new_value, *, complete=True, keep_pending_label=False,
               version_id=None):
        """Rotation as the Lambda steps do it: createSecret puts the new value (str ->
        SecretString, bytes -> SecretBinary) as AWSPENDING; with complete=True finishSecret
        then moves AWSCURRENT to it (the old current becomes AWSPREVIOUS) and AWSPENDING is
        removed (keep_pending_label=True leaves it on the new current version, which AWS
        also allows). Returns the new version id."""
        if isinstance(new_value, (bytes, bytearray)):
            string_value, binary_value = None, bytes(new_value)
        else:
            string_value, binary_value = new_value, None
        with self._cond:
            s = self._secret(name)
            vid = self._new_version(s, string_value, binary_value, version_id, [AWSPENDING])
            if s.rotation_enabled is None:
                s.rotation_enabled = True
            if complete:
                self.finish_rotation(name, keep_pending_label=keep_pending_label)
            return vid

    def finish_rotation(self, name, keep_pending_label=False):
        """finishSecret: AWSCURRENT moves to the AWSPENDING version. Returns its id."""
        with self._cond:
            s = self._secret(name)
            vid = s.holder(AWSPENDING)
            if vid is None:
                raise ValueError(f"secret {name!r} has no AWSPENDING version")
            self._move_stage(s, AWSCURRENT, vid)
            if not keep_pending_label:
                s.versions[vid].stages.remove(AWSPENDING)
            s.last_rotated = s.last_changed = self.now()
            self._cond.notify_all()
            return vid

    def delete_secret(self, name, force=False, recovery_days=30):
        """DeleteSecret: scheduled (GetSecretValue -> InvalidRequestException, DescribeSecret
        shows DeletedDate) or, with force=True, gone at once (ResourceNotFoundException)."""
        with self._cond:
            s = self._secret(name)
            if force:
                del self._secrets[name]
            else:
                s.deleted_date = self.now() + recovery_days * 86400
                s.last_changed = self.now()
            self._cond.notify_all()

    def restore_secret(self, name):
        with self._cond:
            s = self._secret(name)
            s.deleted_date = None
            s.last_changed = self.now()

    def secret(self, name):
        """The Secret (live view) or None."""
        with self._lock:
            return self._secrets.get(name)

    def get_value(self, name, stage=AWSCURRENT, version_id=None):
        """The value (str or bytes) of a version, or None."""
        with self._lock:
            s = self._secrets.get(name)
            vid = version_id or (s.holder(stage) if s else None)
            v = s.versions.get(vid) if s and vid else None
            if v is None:
                return None
            return v.string if v.string is not None else v.binary

    def version_id(self, name, stage=AWSCURRENT):
        with self._lock:
            return self._secret(name).holder(stage)

    def stages(self, name):
        """{version id: [labels]} of the versions that have labels."""
        with self._lock:
            return self._secret(name).stages()

    def set_decryption_failure(self, name, failing=True):
        """GetSecretValue/BatchGetSecretValue of this secret answer DecryptionFailure."""
        with self._lock:
            self._secret(name).decryption_failure = bool(failing)

    def deny_access(self, secret=None, ops=None, access_key_id=None, role_arn=None):
        """Model an IAM deny: requests for `secret` (name; None = any, including the
        BatchGetSecretValue call itself) with an op in `ops` (None = any) from this access
        key / role (None = any) get AccessDeniedException (in BatchGetSecretValue, an entry
        in Errors; BatchGetSecretValue needs GetSecretValue on each secret). Returns the rule id."""
        with self._lock:
            self._deny_seq += 1
            self._denies.append(_DenyRule(self._deny_seq, secret, ops, access_key_id, role_arn))
            return self._deny_seq

    def allow_access(self, rule_id=None):
        """Drop one deny rule, or all of them."""
        with self._lock:
            self._denies = [] if rule_id is None else [r for r in self._denies if r.id != rule_id]

    # ------------------------------------------------------------------ STS / container / IMDS (test side)

    def allow_web_identity(self, role_arn, token, *, subject="system:serviceaccount:default:app",
                           audience="sts.amazonaws.com", provider=None,
                           max_session_duration=3600, expires=None):
        """AssumeRoleWithWebIdentity accepts `token` (the exact string) for `role_arn`.
        expires: fake-clock time after which STS says ExpiredTokenException."""
        with self._lock:
            self._web_identities[token] = {
                "role_arn": role_arn, "subject": subject, "audience": audience,
                "provider": provider or f"arn:aws:iam::{self.account_id}:oidc-provider/"
                                        f"oidc.example.com/id/FAKE",
                "max_session_duration": int(max_session_duration), "expires": expires}

    def expire_web_identity(self, token):
        with self._lock:
            self._web_identities[token]["expires"] = self.now()

    def disallow_web_identity(self, token):
        with self._lock:
            self._web_identities.pop(token, None)

    def add_container_endpoint(self, path=None, token=None, role_arn=None, style="ecs",
                               account_id=None):
        """Serve container credentials at GET `path` (default /v2/credentials/<uuid>).
        token: required verbatim in the Authorization header (missing: 401, wrong: 403).
        style "ecs": {AccessKeyId, Expiration, RoleArn, SecretAccessKey, Token};
        "pod-identity" (EKS): {AccessKeyId, SecretAccessKey, Token, AccountId, Expiration}.
        Returns the path."""
        if style not in ("ecs", "pod-identity"):
            raise ValueError("style is 'ecs' or 'pod-identity'")
        path = path or f"/v2/credentials/{_uuid()}"
        with self._lock:
            self._containers[path] = {
                "token": token, "style": style, "cred": None,
                "role_arn": role_arn or f"arn:aws:iam::{self.account_id}:role/fake-task-role",
                "account_id": account_id or self.account_id}
        return path

    def container_credentials(self, path):
        """The Credential last handed out at `path`, or None."""
        with self._lock:
            return self._containers[path]["cred"]

    def set_instance_role(self, name="fake-instance-role", role_arn=None):
        """The role IMDS serves credentials for (None: no role, 404s)."""
        with self._lock:
            self.instance_role = name
            self.instance_role_arn = role_arn or (
                f"arn:aws:iam::{self.account_id}:role/{name}" if name else None)
            self._imds_cred = None

    def imds_credentials(self):
        """The Credential IMDS last handed out, or None."""
        with self._lock:
            return self._imds_cred

    def expire_imds_tokens(self):
        with self._lock:
            for t in self._imds_tokens:
                self._imds_tokens[t] = self.now()

    def _current(self, cred, source, role_arn, session_name):
        """Container/IMDS: keep handing out the same keys until they are close to expiry."""
        now = self.now()
        if cred is not None and not cred.removed:
            margin = min(self.refresh_margin, (cred.expires - cred.issued) / 2)
            if now < cred.expires - margin:
                return cred
        return self.issue_temporary_credentials(source, role_arn, session_name)

    # ------------------------------------------------------------------ faults

    def add_fault(self, target=None, kind="throttle", *, status=None, body=None, headers=None,
                  seconds=None, times=1, secret=None):
        """Queue a fault for requests whose kind ("sm", "sts", "container", "imds") or op
        ("GetSecretValue", "AssumeRoleWithWebIdentity", "credentials", ...) is `target`
        (None or "" = every request); secret: only SM requests naming this secret.
        kind: "throttle" (SM: 400 ThrottlingException "Rate exceeded"; STS: 400 Throttling;
        container/IMDS: 429), "status" (status, default 500; SM 500 InternalServiceError,
        503 ServiceUnavailableException; `body` [dict -> JSON, str/bytes raw] replaces the
        default body), "garbage" (200 with a body that is not JSON/XML), "truncated" (the
        real answer cut in half, 200), "hang" (sleep `seconds` then answer normally;
        None: until stop()), "close" (drop the connection without a reply).
        times: 1 = once, N, or None = until cleared. Returns the fault id."""
        if kind not in ("throttle", "status", "garbage", "truncated", "hang", "close"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if kind == "status":
            status = status or 500
        with self._lock:
            self._fault_seq += 1
            self._faults.append(_Fault(self._fault_seq, target, kind, status, body, headers,
                                       seconds, times, secret))
            return self._fault_seq

    def fault_throttle(self, target=None, times=1, secret=None):
        return self.add_fault(target, "throttle", times=times, secret=secret)

    def fault_status(self, target=None, status=500, times=1, body=None, headers=None,
                     secret=None):
        return self.add_fault(target, "status", status=status, times=times, body=body,
                              headers=headers, secret=secret)

    def fault_garbage(self, target=None, times=1, body=None, secret=None):
        return self.add_fault(target, "garbage", times=times, body=body, secret=secret)

    def fault_truncated(self, target=None, times=1, secret=None):
        return self.add_fault(target, "truncated", times=times, secret=secret)

    def fault_hang(self, target=None, seconds=None, times=1, secret=None):
        return self.add_fault(target, "hang", seconds=seconds, times=times, secret=secret)

    def fault_close(self, target=None, times=1, secret=None):
        return self.add_fault(target, "close", times=times, secret=secret)

    def clear_faults(self):
        with self._lock:
            self._faults.clear()

    def _take_fault(self, rec):
        with self._lock:
            for f in self._faults:
                if f.matches(rec):
                    f.hits += 1
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._faults.remove(f)
                    return f
        return None

    # ------------------------------------------------------------------ seed (script mode)

    def load_seed(self, seed):
        """Apply a JSON-able description: {"static_credentials": [{"access_key_id",
        "secret_access_key"}], "secrets": [{add_secret kwargs; "binary_base64" for bytes}],
        "web_identities": [{allow_web_identity kwargs}], "container_endpoints":
        [{add_container_endpoint kwargs}], "instance_role": {set_instance_role kwargs}}."""
        for kw in seed.get("static_credentials", []):
            self.add_static_credentials(**kw)
        for kw in seed.get("secrets", []):
            kw = dict(kw)
            if "binary_base64" in kw:
                kw["binary"] = base64.b64decode(kw.pop("binary_base64"))
            self.add_secret(**kw)
        for kw in seed.get("web_identities", []):
            self.allow_web_identity(**kw)
        for kw in seed.get("container_endpoints", []):
            self.add_container_endpoint(**kw)
        if "instance_role" in seed:
            self.set_instance_role(**seed["instance_role"])

    # ------------------------------------------------------------------ request handling

    def _classify(self, method, path, query, headers, body):
        if path == "/latest/api/token":
            return "imds", "token"
        if path.startswith("/latest/"):
            if path.startswith("/latest/meta-data/iam/security-credentials"):
                rest = path[len("/latest/meta-data/iam/security-credentials"):].strip("/")
                return "imds", "credentials" if rest else "list-roles"
            return "imds", {"/latest/meta-data/placement/region": "region",
                            "/latest/dynamic/instance-identity/document": "identity-document"
                            }.get(path, "meta-data")
        with self._lock:
            if path in self._containers:
                return "container", "GetCredentials"
        target = _hget(headers, "X-Amz-Target")
        if target is not None:
            svc, _, op = target.partition(".")
            return "sm", op if svc == "secretsmanager" else target
        if path == "/" and method in ("GET", "POST"):
            ctype = (_hget(headers, "Content-Type") or "").lower()
            if ctype.startswith("application/x-amz-json"):
                return "sm", None
            params = self._sts_params(query, body)
            return "sts", params.get("Action")
        return "other", None

    @staticmethod
    def _sts_params(query, body):
        params = dict(query)
        if body:
            try:
                params.update({k: v[0] for k, v in urllib.parse.parse_qs(
                    body.decode("utf-8"), keep_blank_values=True).items()})
            except UnicodeDecodeError:
                pass
        return params

    def _record(self, h, method, raw_path, path, query, body, kind, op):
        with self._cond:
            self._seq += 1
            rec = AwsRequest(self._seq, method, raw_path, path, query, dict(h.headers.items()),
                             body, h.client_address, None, kind=kind, op=op)
            if kind == "sm":
                auth = _hget(h.headers, "Authorization") or ""
                m = re.search(r"Credential=([^/,\s]+)", auth)
                rec.access_key_id = m.group(1) if m else None
                js = rec.json if isinstance(rec.json, dict) else {}
                ids = js.get("SecretIdList") if op == "BatchGetSecretValue" else [js.get("SecretId")]
                rec.secret_ids = [i for i in (ids or []) if isinstance(i, str)]
                rec.secret = rec.secret_ids[0] if op != "BatchGetSecretValue" and rec.secret_ids \
                    else None
                rec.secret_names = [s.name for s in (self._lookup(i) for i in rec.secret_ids) if s]
            self.requests.append(rec)
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
            return h.send(404, b"", content_type="text/plain")

        kind, op = self._classify(method, path, query, h.headers, body)
        rec = self._record(h, method, raw_path, path, query, body, kind, op)
        truncate = False
        try:
            fault = self._take_fault(rec)
            if fault is not None:
                rec.fault = fault.kind
                if fault.kind == "hang":
                    self._stop.wait(fault.seconds)     # None: until stop()
                    if self._stop.is_set():
                        return h.abort()
                elif fault.kind == "close":
                    return h.abort()
                elif fault.kind == "truncated":
                    truncate = True
                else:
                    return self._fault_answer(h, rec, fault)
            handler = {"sm": self._sm, "sts": self._sts, "container": self._container,
                       "imds": self._imds}.get(kind)
            if handler is None:
                raise AwsError(404, "NotFound", "not found")
            status, data, hdrs, ctype = handler(rec, h, method, path, query, body)
        except AwsError as e:
            status, data, hdrs, ctype = self._render_error(rec, e)
        except Exception as e:  # noqa: BLE001 -- a bug: answer like a 500
            if self.verbose:
                import traceback
                traceback.print_exc()
            status, data, hdrs, ctype = self._render_error(
                rec, AwsError(500, "InternalServiceError" if kind == "sm" else "InternalFailure",
                              f"{type(e).__name__}: {e}"))
        if truncate:
            data = data[:max(1, len(data) // 2)]
        return self._reply(h, rec, status, data, hdrs, ctype)

    def _reply(self, h, rec, status, data, headers, ctype):
        with self._cond:
            rec.status = status
            self._cond.notify_all()
        if rec.kind in ("sm", "sts"):
            headers = dict(headers or {})
            headers.setdefault("x-amzn-RequestId", rec.request_id)
        h.send(status, data, headers, content_type=ctype)

    def _fault_answer(self, h, rec, fault):
        if fault.kind == "garbage":
            data = _as_bytes(fault.body) if fault.body is not None else \
                b"<html><body><h1>502 Bad Gateway</h1>\x00\xff not what you asked for"
            return self._reply(h, rec, 200, data, fault.headers, "text/html")
        if fault.kind == "throttle":
            code, status = {"sm": ("ThrottlingException", 400), "sts": ("Throttling", 400)}.get(
                rec.kind, ("TooManyRequests", 429))
            e = AwsError(status, code, "Rate exceeded", fault.headers)
        else:
            status = fault.status
            if fault.body is not None:
                with self._cond:
                    rec.error = None
                return self._reply(h, rec, status, _as_bytes(fault.body), fault.headers,
                                   "application/json" if isinstance(fault.body, (dict, list))
                                   else "text/plain")
            code, msg = {
                ("sm", 500): ("InternalServiceError", "An error occurred on the server side."),
                ("sm", 503): ("ServiceUnavailableException", "Service Unavailable"),
                ("sts", 500): ("InternalFailure", "An internal error occurred."),
                ("sts", 503): ("ServiceUnavailable", "Service is unable to handle request."),
            }.get((rec.kind, status), ("InternalFailure", f"fake error {status}"))
            e = AwsError(status, code, msg, fault.headers)
        status, data, hdrs, ctype = self._render_error(rec, e)
        return self._reply(h, rec, status, data, hdrs, ctype)

    def _render_error(self, rec, e):
        rec.error = e.code
        hdrs = dict(e.headers)
        if rec.kind == "sm":
            key = "message" if e.code in FRONTEND_ERRORS else "Message"
            hdrs["x-amzn-ErrorType"] = e.code
            return e.status, _json({"__type": e.code, key: e.message}), hdrs, SM_CONTENT_TYPE
        if rec.kind == "sts":
            xml = (f'<ErrorResponse xmlns="{STS_NS}">\n  <Error>\n'
                   f'    <Type>{"Sender" if e.status < 500 else "Receiver"}</Type>\n'
                   f'    <Code>{_xml_escape(e.code)}</Code>\n'
                   f'    <Message>{_xml_escape(e.message)}</Message>\n  </Error>\n'
                   f'  <RequestId>{rec.request_id}</RequestId>\n</ErrorResponse>\n')
            return e.status, xml.encode(), hdrs, "text/xml"
        if rec.kind == "container":
            return e.status, _json({"code": e.code, "message": e.message}), hdrs, \
                "application/json"
        reason = http.server.BaseHTTPRequestHandler.responses.get(e.status, ("Error",))[0]
        page = (f'<?xml version="1.0" encoding="iso-8859-1"?>\n<html><head><title>{e.status} - '
                f'{reason}</title></head><body><h1>{e.status} - {reason}</h1></body></html>\n')
        return e.status, page.encode(), hdrs, "text/html"

    # ------------------------------------------------------------------ Secrets Manager

    def _authenticate(self, h, body, service=SM_SERVICE):
        """SigV4 of a Secrets Manager request, rebuilt from what arrived. Returns the
        Credential or raises AwsError (400): MissingAuthenticationTokenException (no
        Authorization), IncompleteSignatureException (malformed Authorization, no/bad
        X-Amz-Date), InvalidSignatureException (a required header not signed, wrong scope
        date/region/service/terminator, X-Amz-Date more than max_skew from the server
        clock: "Signature expired"/"Signature not yet current", signature mismatch),
        UnrecognizedClientException (unknown or removed key, temporary key without its
        X-Amz-Security-Token or with a wrong one, static key with a token),
        ExpiredTokenException (temporary key expired on the fake clock)."""
        auth = _hget(h.headers, "Authorization")
        if not auth:
            raise AwsError(400, "MissingAuthenticationTokenException", "Missing Authentication Token")
        try:
            p = parse_authorization(auth)
        except ValueError as e:
            raise AwsError(400, "IncompleteSignatureException", str(e))
        date = _hget(h.headers, "X-Amz-Date")
        if not date:
            raise AwsError(400, "IncompleteSignatureException",
                           "Authorization header requires existence of either a 'X-Amz-Date' "
                           f"or a 'Date' header. Authorization={auth}")
        try:
            signed_at = _parse_amz_date(date)
        except ValueError:
            raise AwsError(400, "IncompleteSignatureException",
                           f"Date must be in ISO-8601 'basic format'. Got '{date}'. See "
                           "http://en.wikipedia.org/wiki/ISO_8601")
        token = _hget(h.headers, "X-Amz-Security-Token")
        base = self.required_signed_headers if service == SM_SERVICE else \
            [n for n in self.required_signed_headers if n != "x-amz-target"]
        required = list(base) + \
            (["x-amz-security-token"] if token is not None else [])
        for name in required:
            if name not in p["signed_headers"]:
                what = "'Host' or ':authority'" if name == "host" else \
                    "'" + "-".join(w.capitalize() for w in name.split("-")) + "'"
                raise AwsError(400, "InvalidSignatureException",
                               f"{what} must be a 'SignedHeader' in the AWS Authorization.")
        with self._lock:
            cred = self._creds.get(p["access_key_id"])
            invalid = AwsError(400, "UnrecognizedClientException",
                               "The security token included in the request is invalid.")
            if cred is None or cred.removed:
                raise invalid
            if cred.temporary:
                if token is None or not hmac.compare_digest(token.encode(),
                                                            cred.session_token.encode()):
                    raise invalid
            elif token is not None:
                raise invalid
            if cred.expired(self.now()):
                raise AwsError(400, "ExpiredTokenException",
                               "The security token included in the request is expired")
            secret_key = cred.secret_access_key
        if p["date"] != date[:8]:
            raise AwsError(400, "InvalidSignatureException",
                           "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                           f"version of date from HTTP: '{p['date']}' != '{date[:8]}', "
                           f"from '{date}'.")
        if p["region"] != self.region:
            raise AwsError(400, "InvalidSignatureException",
                           "Credential should be scoped to a valid region. ")
        if p["service"] != service:
            raise AwsError(400, "InvalidSignatureException",
                           f"Credential should be scoped to correct service: '{service}'. ")
        if p["terminator"] != "aws4_request":
            raise AwsError(400, "InvalidSignatureException",
                           "Credential should be scoped with a valid terminator: "
                           "'aws4_request', not '" + p["terminator"] + "'. ")
        server = self.server_time()
        minutes = f"{self.max_skew / 60:g} min."
        if signed_at < server - self.max_skew:
            raise AwsError(400, "InvalidSignatureException",
                           f"Signature expired: {date} is now earlier than "
                           f"{amz_date(server - self.max_skew)} ({amz_date(server)} - {minutes})")
        if signed_at > server + self.max_skew:
            raise AwsError(400, "InvalidSignatureException",
                           f"Signature not yet current: {date} is still later than "
                           f"{amz_date(server + self.max_skew)} ({amz_date(server)} + {minutes})")
        creq = canonical_request(h.command, h.path, list(h.headers.items()), body,
                                 p["signed_headers"])
        sts = string_to_sign(date, p["scope"], creq)
        if not hmac.compare_digest(_signature(secret_key, sts, p["scope"]), p["signature"]):
            raise AwsError(400, "InvalidSignatureException",
                           "The request signature we calculated does not match the signature "
                           "you provided. Check your AWS Secret Access Key and signing method. "
                           "Consult the service documentation for details.\n\nThe Canonical "
                           f"String for this request should have been\n'{creq}'\n\nThe "
                           f"String-to-Sign should have been\n'{sts}'\n")
        return cred

    def _sm(self, rec, h, method, path, query, body):
        cred = self._authenticate(h, body)
        ctype = (_hget(h.headers, "Content-Type") or "").split(";")[0].strip().lower()
        if method != "POST" or rec.op not in SM_OPS or ctype != SM_CONTENT_TYPE:
            raise AwsError(400, "UnknownOperationException", "")
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            raise AwsError(400, "SerializationException", "Start of structure or map found "
                           "where not expected.")
        if not isinstance(req, dict):
            raise AwsError(400, "SerializationException", "Unexpected JSON type.")
        with self._cond:
            out = getattr(self, "_sm_" + rec.op)(req, cred)
            self._cond.notify_all()
        return 200, _json(out), {}, SM_CONTENT_TYPE

    def _lookup(self, secret_id):
        """A name, a full ARN or a partial ARN (without the 6-character suffix)."""
        if not isinstance(secret_id, str):
            return None
        if secret_id.startswith("arn:"):
            for s in self._secrets.values():
                if secret_id in (s.arn, s.arn[:-7]):
                    return s
            return None
        return self._secrets.get(secret_id)

    def _check_denied(self, op, secret_name, secret_id, cred):
        for r in self._denies:
            if r.matches(secret_name, op, cred):
                resource = secret_id if secret_name is not None else "*"
                raise AwsError(400, "AccessDeniedException",
                               f"User: {cred.principal_arn} is not authorized to perform: "
                               f"secretsmanager:{op} on resource: {resource} because no "
                               f"identity-based policy allows the secretsmanager:{op} action")

    @staticmethod
    def _secret_id_param(req, key="SecretId"):
        sid = req.get(key)
        if not isinstance(sid, str) or not 1 <= len(sid) <= 2048:
            raise AwsError(400, "InvalidParameterException",
                           f"Invalid parameter {key}: must be a string of 1 to 2048 characters.")
        return sid

    def _find(self, sid):
        s = self._lookup(sid)
        if s is None:
            raise AwsError(400, "ResourceNotFoundException",
                           "Secrets Manager can't find the specified secret.")
        return s

    def _read_value(self, sid, req, cred, op="GetSecretValue"):
        """GetSecretValue of one secret (also each BatchGetSecretValue entry)."""
        s = self._find(sid)
        self._check_denied(op, s.name, sid, cred)
        if s.deleted_date is not None:
            raise AwsError(400, "InvalidRequestException",
                           "You can't perform this operation on the secret because it was "
                           "marked for deletion.")
        vid, stage = req.get("VersionId"), req.get("VersionStage")
        if vid is not None and (not isinstance(vid, str) or not 32 <= len(vid) <= 64):
            raise AwsError(400, "InvalidParameterException",
                           "Invalid parameter VersionId: must be 32 to 64 characters long.")
        if stage is not None and (not isinstance(stage, str) or not 1 <= len(stage) <= 256):
            raise AwsError(400, "InvalidParameterException",
                           "Invalid parameter VersionStage: must be 1 to 256 characters long.")
        if vid is not None:
            v = s.versions.get(vid)
            if v is None:
                raise AwsError(400, "ResourceNotFoundException",
                               f"Secrets Manager can't find the specified secret value for "
                               f"VersionId: {vid}")
            if stage is not None and stage not in v.stages:
                raise AwsError(400, "InvalidRequestException",
                               "You provided a VersionStage that is not associated to the "
                               "provided VersionId.")
        else:
            stage = stage or AWSCURRENT
            vid = s.holder(stage)
            if vid is None:
                raise AwsError(400, "ResourceNotFoundException",
                               f"Secrets Manager can't find the specified secret value for "
                               f"staging label: {stage}")
            v = s.versions[vid]
        if s.decryption_failure:
            raise AwsError(400, "DecryptionFailure",
                           "Secrets Manager can't decrypt the protected secret text using the "
                           "provided KMS key.")
        now = self.now()
        s.last_accessed = v.last_accessed = now
        out = {"ARN": s.arn, "Name": s.name, "VersionId": v.version_id}
        if v.binary is not None:
            out["SecretBinary"] = base64.b64encode(v.binary).decode()
        if v.string is not None:
            out["SecretString"] = v.string
        out["VersionStages"] = list(v.stages)
        out["CreatedDate"] = _epoch(v.created)
        return out

    def _sm_GetSecretValue(self, req, cred):
        return self._read_value(self._secret_id_param(req), req, cred)

    def _sm_DescribeSecret(self, req, cred):
        sid = self._secret_id_param(req)
        s = self._find(sid)
        self._check_denied("DescribeSecret", s.name, sid, cred)
        out = {"ARN": s.arn, "Name": s.name}
        if s.description is not None:
            out["Description"] = s.description
        if s.kms_key_id is not None:
            out["KmsKeyId"] = s.kms_key_id
        if s.rotation_enabled is not None:
            out["RotationEnabled"] = s.rotation_enabled
        if s.last_rotated is not None:
            out["LastRotatedDate"] = _epoch(s.last_rotated)
        out["LastChangedDate"] = _epoch(s.last_changed)
        if s.last_accessed is not None:
            out["LastAccessedDate"] = _epoch(_midnight(s.last_accessed))
        if s.deleted_date is not None:
            out["DeletedDate"] = _epoch(s.deleted_date)
        if s.tags:
            out["Tags"] = [{"Key": k, "Value": v} for k, v in s.tags.items()]
        out["VersionIdsToStages"] = s.stages()
        out["CreatedDate"] = _epoch(s.created)
        return out

    def _sm_ListSecretVersionIds(self, req, cred):
        sid = self._secret_id_param(req)
        s = self._find(sid)
        self._check_denied("ListSecretVersionIds", s.name, sid, cred)
        include = bool(req.get("IncludeDeprecated"))
        versions = [v for v in s.versions.values() if include or v.stages]
        start, limit = self._page(req, 100)
        page = versions[start:start + limit]
        out = {"Versions": []}
        for v in page:
            e = {"VersionId": v.version_id, "VersionStages": list(v.stages)}
            if v.last_accessed is not None:
                e["LastAccessedDate"] = _epoch(_midnight(v.last_accessed))
            e["CreatedDate"] = _epoch(v.created)
            e["KmsKeyIds"] = [s.kms_key_id or "DefaultEncryptionKey"]
            out["Versions"].append(e)
        if start + limit < len(versions):
            out["NextToken"] = _next_token(start + limit)
        out["ARN"], out["Name"] = s.arn, s.name
        return out

    @staticmethod
    def _page(req, max_results):
        limit = req.get("MaxResults", max_results)
        if not isinstance(limit, int) or not 1 <= limit <= max_results:
            raise AwsError(400, "InvalidParameterException",
                           f"Invalid parameter MaxResults: must be 1 to {max_results}.")
        token = req.get("NextToken")
        if token is None:
            return 0, limit
        try:
            start = int(base64.b64decode(token).decode().split(":", 1)[1])
        except (ValueError, IndexError, UnicodeDecodeError):
            raise AwsError(400, "InvalidNextTokenException", "The NextToken value is invalid.")
        return start, limit

    def _sm_BatchGetSecretValue(self, req, cred):
        ids, filters = req.get("SecretIdList"), req.get("Filters")
        if (ids is None) == (filters is None):
            raise AwsError(400, "InvalidParameterException",
                           "You must include Filters or SecretIdList, but not both.")
        self._check_denied("BatchGetSecretValue", None, None, cred)
        out = {"SecretValues": [], "Errors": []}
        if ids is not None:
            if "MaxResults" in req:
                raise AwsError(400, "InvalidParameterException",
                               "MaxResults can only be used with Filters.")
            if not isinstance(ids, list) or not 1 <= len(ids) <= 20 or \
                    not all(isinstance(i, str) and i for i in ids):
                raise AwsError(400, "InvalidParameterException",
                               "Invalid parameter SecretIdList: 1 to 20 secret IDs.")
            chosen = list(dict.fromkeys(ids))
            start, more = 0, False
        else:
            matched = [s.arn for s in self._secrets.values() if self._filter_match(s, filters)]
            start, limit = self._page(req, 20)
            chosen = matched[start:start + limit]
            more = start + limit < len(matched)
        for sid in chosen:
            try:
                out["SecretValues"].append(self._read_value(sid, {}, cred))
            except AwsError as e:
                out["Errors"].append({"SecretId": sid, "ErrorCode": e.code, "Message": e.message})
        if more:
            out["NextToken"] = _next_token(start + len(chosen))
        return out

    @staticmethod
    def _filter_match(s, filters):
        if not isinstance(filters, list) or not filters:
            raise AwsError(400, "InvalidParameterException", "Invalid parameter Filters.")
        for f in filters:
            key, values = f.get("Key"), f.get("Values") or []
            if key == "all":
                hay = [s.name, s.description or ""] + list(s.tags) + list(s.tags.values())
            elif key == "name":
                hay = [s.name]
            elif key == "description":
                hay = [s.description or ""]
            elif key == "tag-key":
                hay = list(s.tags)
            elif key == "tag-value":
                hay = list(s.tags.values())
            else:
                raise AwsError(400, "InvalidParameterException",
                               f"Invalid filter key {key!r} (this fake knows all, name, "
                               "description, tag-key, tag-value).")
            negated = [v[1:] for v in values if v.startswith("!")]
            wanted = [v for v in values if not v.startswith("!")]
            if wanted and not any(h.startswith(v) for v in wanted for h in hay):
                return False
            if any(h.startswith(v) for v in negated for h in hay):
                return False
        return s.deleted_date is None

    # ------------------------------------------------------------------ STS

    def _sts(self, rec, h, method, path, query, body):
        p = self._sts_params(query, body)
        if p.get("Action") == "GetCallerIdentity" and p.get("Version") == "2011-06-15":
            return self._sts_get_caller_identity(rec, h, body)
        if p.get("Action") != "AssumeRoleWithWebIdentity" or p.get("Version") != "2011-06-15":
            raise AwsError(400, "InvalidAction",
                           f"Could not find operation {p.get('Action')} for version "
                           f"{p.get('Version')}")
        for key, field in (("RoleArn", "roleArn"), ("RoleSessionName", "roleSessionName"),
                           ("WebIdentityToken", "webIdentityToken")):
            if not p.get(key):
                raise AwsError(400, "ValidationError",
                               f"1 validation error detected: Value null at '{field}' failed "
                               "to satisfy constraint: Member must not be null")
        if not _SESSION_NAME.match(p["RoleSessionName"]):
            raise AwsError(400, "ValidationError",
                           f"1 validation error detected: Value '{p['RoleSessionName']}' at "
                           "'roleSessionName' failed to satisfy constraint: Member must "
                           "satisfy regular expression pattern: [\\w+=,.@-]*")
        duration = None
        if p.get("DurationSeconds"):
            try:
                duration = int(p["DurationSeconds"])
            except ValueError:
                duration = -1
            if not 900 <= duration <= 43200:
                raise AwsError(400, "ValidationError",
                               f"1 validation error detected: Value '{p['DurationSeconds']}' "
                               "at 'durationSeconds' failed to satisfy constraint: Member "
                               "must have value between 900 and 43200")
        with self._lock:
            wi = self._web_identities.get(p["WebIdentityToken"])
            now = self.now()
            if wi is None:
                raise AwsError(400, "InvalidIdentityToken",
                               "The web identity token that was passed could not be validated "
                               "by AWS. Get a new identity token from the identity provider "
                               "and then retry the request.")
            if wi["expires"] is not None and now >= wi["expires"]:
                raise AwsError(400, "ExpiredTokenException",
                               f"Token expired: current date/time {int(now)} must be before "
                               f"the expiration date/time {int(wi['expires'])}")
            if wi["role_arn"] != p["RoleArn"]:
                raise AwsError(403, "AccessDenied",
                               "Not authorized to perform sts:AssumeRoleWithWebIdentity")
            if duration is not None and duration > wi["max_session_duration"]:
                raise AwsError(400, "ValidationError",
                               "The requested DurationSeconds exceeds the MaxSessionDuration "
                               "set for this role.")
            cred = self.issue_temporary_credentials("sts", p["RoleArn"], p["RoleSessionName"],
                                                    duration)
            rec.issued_access_key_id = cred.access_key_id
            role_id = "AROA" + _rand(17, _UPPER_ALNUM)
            x = {k: _xml_escape(str(v)) for k, v in {
                "akid": cred.access_key_id, "secret": cred.secret_access_key,
                "token": cred.session_token, "exp": iso8601(cred.expires),
                "sub": wi["subject"], "aud": wi["audience"], "prov": wi["provider"],
                "arn": cred.principal_arn, "rid": f"{role_id}:{p['RoleSessionName']}"}.items()}
        xml = (f'<AssumeRoleWithWebIdentityResponse xmlns="{STS_NS}">\n'
               f'  <AssumeRoleWithWebIdentityResult>\n'
               f'    <Audience>{x["aud"]}</Audience>\n'
               f'    <AssumedRoleUser>\n'
               f'      <AssumedRoleId>{x["rid"]}</AssumedRoleId>\n'
               f'      <Arn>{x["arn"]}</Arn>\n'
               f'    </AssumedRoleUser>\n'
               f'    <Provider>{x["prov"]}</Provider>\n'
               f'    <Credentials>\n'
               f'      <AccessKeyId>{x["akid"]}</AccessKeyId>\n'
               f'      <SecretAccessKey>{x["secret"]}</SecretAccessKey>\n'
               f'      <SessionToken>{x["token"]}</SessionToken>\n'
               f'      <Expiration>{x["exp"]}</Expiration>\n'
               f'    </Credentials>\n'
               f'    <SubjectFromWebIdentityToken>{x["sub"]}</SubjectFromWebIdentityToken>\n'
               f'  </AssumeRoleWithWebIdentityResult>\n'
               f'  <ResponseMetadata>\n'
               f'    <RequestId>{rec.request_id}</RequestId>\n'
               f'  </ResponseMetadata>\n'
               f'</AssumeRoleWithWebIdentityResponse>\n')
        return 200, xml.encode(), {}, "text/xml"

    def _sts_get_caller_identity(self, rec, h, body):
        """GetCallerIdentity: SigV4-signed for service "sts" (verified like Secrets
        Manager requests); answers who signed it."""
        cred = self._authenticate(h, body, service="sts")
        user_id = cred.access_key_id if not cred.temporary else \
            f"AROA{cred.access_key_id[4:]}:{cred.session_name}"
        x = {k: _xml_escape(str(v)) for k, v in {
            "arn": cred.principal_arn, "uid": user_id, "acct": self.account_id}.items()}
        xml = (f'<GetCallerIdentityResponse xmlns="{STS_NS}">\n'
               f'  <GetCallerIdentityResult>\n'
               f'    <Arn>{x["arn"]}</Arn>\n'
               f'    <UserId>{x["uid"]}</UserId>\n'
               f'    <Account>{x["acct"]}</Account>\n'
               f'  </GetCallerIdentityResult>\n'
               f'  <ResponseMetadata>\n'
               f'    <RequestId>{rec.request_id}</RequestId>\n'
               f'  </ResponseMetadata>\n'
               f'</GetCallerIdentityResponse>\n')
        return 200, xml.encode(), {}, "text/xml"

    # ------------------------------------------------------------------ container credentials

    def _container(self, rec, h, method, path, query, body):
        if method != "GET":
            raise AwsError(405, "MethodNotAllowed", f"{method} not allowed")
        with self._lock:
            ep = self._containers[path]
            if ep["token"] is not None:
                sent = _hget(h.headers, "Authorization")
                if not sent:
                    raise AwsError(401, "Unauthorized", "Authorization header required")
                if not hmac.compare_digest(sent.encode(), ep["token"].encode()):
                    raise AwsError(403, "AccessDenied", "Invalid authorization token")
            cred = ep["cred"] = self._current(ep["cred"], "container", ep["role_arn"],
                                              "fake-container")
            rec.issued_access_key_id = cred.access_key_id
            if ep["style"] == "ecs":
                out = {"AccessKeyId": cred.access_key_id, "Expiration": iso8601(cred.expires),
                       "RoleArn": ep["role_arn"], "SecretAccessKey": cred.secret_access_key,
                       "Token": cred.session_token}
            else:
                out = {"AccessKeyId": cred.access_key_id,
                       "SecretAccessKey": cred.secret_access_key, "Token": cred.session_token,
                       "AccountId": ep["account_id"], "Expiration": iso8601(cred.expires)}
        return 200, _json(out), {}, "application/json"

    # ------------------------------------------------------------------ IMDSv2

    def _imds(self, rec, h, method, path, query, body):
        if rec.op == "token":
            if method != "PUT":
                raise AwsError(405, "MethodNotAllowed", "")
            if _hget(h.headers, "X-Forwarded-For") is not None:
                raise AwsError(403, "Forbidden", "")
            ttl = _hget(h.headers, "X-aws-ec2-metadata-token-ttl-seconds")
            try:
                ttl = int(ttl)
            except (TypeError, ValueError):
                ttl = 0
            if not 1 <= ttl <= IMDS_MAX_TTL:
                raise AwsError(400, "BadRequest", "")
            token = base64.urlsafe_b64encode(secrets.token_bytes(42)).decode()
            with self._lock:
                self._imds_tokens[token] = self.now() + ttl
            return 200, token.encode(), {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)}, \
                "text/plain"
        if method not in ("GET", "HEAD"):
            raise AwsError(405, "MethodNotAllowed", "")
        token = _hget(h.headers, "X-aws-ec2-metadata-token")
        with self._lock:
            expires = self._imds_tokens.get(token) if token else None
            if expires is None or self.now() >= expires:
                raise AwsError(401, "Unauthorized", "")
            ttl_left = int(expires - self.now())
            hdrs = {"X-aws-ec2-metadata-token-ttl-seconds": str(max(ttl_left, 0))}
            if rec.op == "list-roles":
                if not self.instance_role:
                    raise AwsError(404, "NotFound", "")
                return 200, self.instance_role.encode(), hdrs, "text/plain"
            if rec.op == "credentials":
                role = path.rstrip("/").rsplit("/", 1)[-1]
                if not self.instance_role or role != self.instance_role:
                    raise AwsError(404, "NotFound", "")
                cred = self._imds_cred = self._current(self._imds_cred, "imds",
                                                       self.instance_role_arn,
                                                       self.instance_id)
                rec.issued_access_key_id = cred.access_key_id
                doc = {"Code": "Success", "LastUpdated": iso8601(cred.issued),
                       "Type": "AWS-HMAC", "AccessKeyId": cred.access_key_id,
                       "SecretAccessKey": cred.secret_access_key, "Token": cred.session_token,
                       "Expiration": iso8601(cred.expires)}
                return 200, json.dumps(doc, indent=2, separators=(",", " : ")).encode(), hdrs, \
                    "text/plain"
            if rec.op == "region":
                return 200, self.region.encode(), hdrs, "text/plain"
            if rec.op == "identity-document":
                doc = {"accountId": self.account_id, "architecture": "x86_64",
                       "availabilityZone": self.region + "a", "imageId": "ami-0fake",
                       "instanceId": self.instance_id, "instanceType": "t3.micro",
                       "pendingTime": iso8601(self.now() - 3600), "privateIp": "10.0.0.10",
                       "region": self.region, "version": "2017-09-30"}
                return 200, json.dumps(doc, indent=2, separators=(",", " : ")).encode(), hdrs, \
                    "text/plain"
            simple = {"/latest/meta-data/instance-id": self.instance_id,
                      "/latest/meta-data/placement/availability-zone": self.region + "a"}
            if path in simple:
                return 200, simple[path].encode(), hdrs, "text/plain"
        raise AwsError(404, "NotFound", "")

    # ------------------------------------------------------------------ admin API (script mode)

    def _admin(self, h, method, path, body):
        try:
            if path == "/_fake/requests" and method == "GET":
                with self._lock:
                    out = [r.to_dict() for r in self.requests]
            elif path == "/_fake/credentials" and method == "GET":
                out = self.credentials()
            elif path == "/_fake/call" and method == "POST":
                req = json.loads(body or b"{}")
                name = req.get("method", "")
                if name not in ADMIN_METHODS:
                    raise AwsError(400, "BadRequest", f"method {name!r} not allowed")
                out = getattr(self, name)(*req.get("args", []), **req.get("kwargs", {}))
            else:
                raise AwsError(404, "NotFound", "no such admin path")
            payload, status = {"result": _jsonable(out)}, 200
        except AwsError as e:
            payload, status = {"error": e.message}, e.status
        except Exception as e:  # noqa: BLE001
            payload, status = {"error": f"{type(e).__name__}: {e}"}, 500
        h.send(status, _json(payload))


# --------------------------------------------------------------------------- small utilities

def _json(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _as_bytes(x):
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    return _json(x)


def _epoch(ts):
    """Secrets Manager's timestamps: epoch seconds with milliseconds."""
    return round(ts, 3)


def _midnight(ts):
    return float(int(ts // 86400) * 86400)


def _next_token(index):
    return base64.b64encode(f"fake-next:{index}".encode()).decode()


# --------------------------------------------------------------------------- script mode

def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake AWS (Secrets Manager, STS web identity, "
                                             "container credentials, IMDSv2) for tests. "
                                             "Prints its URL on the first line of stdout.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = an ephemeral port")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account-id", default=DEFAULT_ACCOUNT)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--static-credentials", action="append", default=[],
                    metavar="AKID:SECRET", help="a long-term access key; repeat for more")
    ap.add_argument("--credential-lifetime", type=float, default=3600)
    ap.add_argument("--seed", help="JSON file applied with FakeAws.load_seed")
    ap.add_argument("--no-admin", action="store_true", help="disable the /_fake/ control API")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    aws = FakeAws(region=args.region, account_id=args.account_id, host=args.host,
                  port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key,
                  credential_lifetime=args.credential_lifetime, admin_api=not args.no_admin,
                  verbose=args.verbose)
    for item in args.static_credentials:
        akid, sep, secret = item.partition(":")
        if not sep:
            ap.error("--static-credentials wants AKID:SECRET")
        aws.add_static_credentials(akid, secret)
    if args.seed:
        with open(args.seed) as f:
            aws.load_seed(json.load(f))
    return serve_until_signal(aws)


if __name__ == "__main__":
    sys.exit(main())
