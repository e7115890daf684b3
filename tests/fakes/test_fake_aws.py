"""Tests of the fake AWS itself, over real HTTP with urllib and a signer of our own.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/fakes/test_fake_aws.py
"""

import base64
import calendar
import email.utils
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fakes import fake_aws  # noqa: E402
from fakes.fake_aws import (FakeAws, SmResponse, canonical_request,  # noqa: E402
                            make_test_pki, parse_authorization, sign_request, sm_call,
                            string_to_sign)

HERE = os.path.dirname(os.path.abspath(__file__))
REGION = "eu-west-1"
AKID, SECRET = "AKIAFAKESTATIC000001", "static/secret+key0000000000000000000000"
STS_NS = {"s": "https://sts.amazonaws.com/doc/2011-06-15/"}


class Resp(SmResponse):
    @property
    def xml(self):
        return ET.fromstring(self.raw)


def call(url, method, path, body=None, headers=None, ctx=None, timeout=5):
    url = url if isinstance(url, str) else url.url
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return Resp(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.headers, e.read())


def sm(aws, op, payload=None, akid=AKID, secret=SECRET, token=None, region=REGION, **kw):
    return sm_call(aws.url, op, payload, access_key_id=akid, secret_access_key=secret,
                   session_token=token, region=region, **kw)


def sm_cred(aws, op, payload, cred, **kw):
    return sm(aws, op, payload, cred.access_key_id, cred.secret_access_key, cred.session_token,
              **kw)


def sts_form(role_arn, token, session="app", duration=None, action="AssumeRoleWithWebIdentity"):
    params = {"Action": action, "Version": "2011-06-15", "RoleArn": role_arn,
              "RoleSessionName": session, "WebIdentityToken": token}
    if duration is not None:
        params["DurationSeconds"] = str(duration)
    return urllib.parse.urlencode(params)


def sts_post(aws, form):
    return call(aws, "POST", "/", form,
                {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})


def imds_token(aws, ttl=60):
    r = call(aws, "PUT", "/latest/api/token", b"", {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})
    assert r.status == 200, r
    return r.raw.decode()


@pytest.fixture
def aws():
    with FakeAws(region=REGION) as a:
        a.add_static_credentials(AKID, SECRET)
        yield a


@pytest.fixture(scope="module")
def pki():
    p = make_test_pki()
    yield p
    p.cleanup()


# --------------------------------------------------------------------------- SigV4 vectors

def _suite_dir():
    for d in (os.path.join(HERE, "aws4_testsuite"),
              os.path.join(os.path.dirname(HERE), "unit", "aws4_testsuite")):
        if os.path.isdir(d):
            return d
    raise RuntimeError("aws4_testsuite not found beside the tests")


def _cases():
    out = []
    for root, _, files in os.walk(_suite_dir()):
        out += [os.path.join(root, f[:-4]) for f in files if f.endswith(".req")]
    return sorted(out)


def _parse_raw(text):
    """A raw request of the suite: request line, headers (with continuation lines), body."""
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    method, rest = lines[0].split(" ", 1)
    target = rest.rsplit(" ", 1)[0]
    headers = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[:1] in (" ", "\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + "\n" + line)
            continue
        k, _, v = line.partition(":")
        headers.append((k, v.strip()))
    return method, target, headers, body


SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
# The published get-vanilla-with-session-token .authz/.sreq carry get-vanilla's signature,
# which does not match that case's own (correct) .creq/.sts; checked separately below.
AUTHZ_ERRATUM = {"get-vanilla-with-session-token"}


@pytest.mark.parametrize("case", _cases(), ids=os.path.basename)
def test_sigv4_suite_vector(case):
    def read(ext):
        with open(case + ext, encoding="utf-8") as f:
            return f.read()
    name = os.path.basename(case)

    # server side: rebuild canonical request / string to sign from the signed request
    method, target, headers, body = _parse_raw(read(".sreq"))
    auth = next(v for k, v in headers if k.lower() == "authorization")
    p = parse_authorization(auth)
    assert (p["access_key_id"], p["region"], p["service"]) == ("AKIDEXAMPLE", "us-east-1",
                                                                "service")
    creq = canonical_request(method, target, headers, body, p["signed_headers"])
    assert creq == read(".creq")
    date = next(v for k, v in headers if k.lower() == "x-amz-date")
    sts = string_to_sign(date, p["scope"], creq)
    assert sts == read(".sts")
    expected_sig = fake_aws._signature(SUITE_SECRET, sts, p["scope"])
    if name in AUTHZ_ERRATUM:
        vanilla = os.path.join(_suite_dir(), "get-vanilla", "get-vanilla.authz")
        with open(vanilla) as f:
            assert p["signature"] == parse_authorization(f.read())["signature"]
        return
    assert expected_sig == p["signature"]
    # a tampered secret key does not verify
    assert fake_aws._signature(SUITE_SECRET[:-1] + "X", sts, p["scope"]) != p["signature"]

    # client side: our signer on the unsigned request gives the published header
    method, target, headers, body = _parse_raw(read(".req"))
    token = next((v for k, v in _parse_raw(read(".sreq"))[2]
                  if k.lower() == "x-amz-security-token"), None)
    if token is not None and not any(k.lower() == "x-amz-security-token" for k, _ in headers) \
            and "after" not in name:
        headers.append(("X-Amz-Security-Token", token))
    got = fake_aws.authorization_header(method, target, headers, body, "AKIDEXAMPLE",
                                        SUITE_SECRET, "us-east-1", "service")
    assert got == read(".authz").strip()


def test_sign_request_helper_shape():
    hdrs = sign_request("POST", "http://127.0.0.1:1234/", {"Content-Type": "x"}, b"{}",
                        access_key_id="AK", secret_access_key="SK", session_token="TOK",
                        region="r", date="20200101T000000Z")
    assert hdrs["Host"] == "127.0.0.1:1234" and hdrs["X-Amz-Date"] == "20200101T000000Z"
    assert hdrs["X-Amz-Security-Token"] == "TOK"
    p = parse_authorization(hdrs["Authorization"])
    assert p["scope"] == "20200101/r/secretsmanager/aws4_request"
    assert p["signed_headers"] == ["content-type", "host", "x-amz-date", "x-amz-security-token"]
    late = sign_request("POST", "http://h/", {}, b"", access_key_id="AK", secret_access_key="SK",
                        session_token="TOK", sign_session_token=False, date=0)
    assert "x-amz-security-token" not in parse_authorization(late["Authorization"])["signed_headers"]
    assert late["X-Amz-Security-Token"] == "TOK" and late["X-Amz-Date"] == "19700101T000000Z"


# --------------------------------------------------------------------------- SigV4 over HTTP

def test_signed_requests_accepted_and_recorded(aws):
    aws.add_secret("app/db", string="s3cr3t")
    r = sm(aws, "GetSecretValue", {"SecretId": "app/db"})
    assert r.status == 200 and r.json["SecretString"] == "s3cr3t"
    assert r.headers["Content-Type"] == "application/x-amz-json-1.1"
    assert r.headers["x-amzn-RequestId"]
    temp = aws.issue_temporary_credentials(lifetime=60)
    assert temp.access_key_id.startswith("ASIA") and temp.session_token
    assert sm_cred(aws, "GetSecretValue", {"SecretId": "app/db"}, temp).status == 200
    reqs = aws.find_requests(kind="sm", op="GetSecretValue", secret="app/db")
    assert [q.access_key_id for q in reqs] == [AKID, temp.access_key_id]
    assert all(q.status == 200 and q.secret == "app/db" for q in reqs)
    assert aws.count(op="GetSecretValue", access_key_id=temp.access_key_id) == 1


def test_signature_rejections(aws):
    aws.add_secret("s", string="v")
    payload = {"SecretId": "s"}

    def expect(r, code, fragment=""):
        assert r.status == 400, r
        assert r.json["__type"] == code and r.headers["x-amzn-ErrorType"] == code
        assert fragment in r.json["message"], r.json
        return r

    invalid = "The security token included in the request is invalid."
    r = expect(sm(aws, "GetSecretValue", payload, secret=SECRET + "x"),
               "InvalidSignatureException", "signature we calculated does not match")
    assert "The Canonical String for this request should have been" in r.json["message"]
    expect(sm(aws, "GetSecretValue", payload, akid="AKIAUNKNOWN000000000"),
           "UnrecognizedClientException", invalid)
    expect(sm(aws, "GetSecretValue", payload, token="a-token-for-static-keys"),
           "UnrecognizedClientException", invalid)
    temp = aws.issue_temporary_credentials(lifetime=100)
    expect(sm(aws, "GetSecretValue", payload, temp.access_key_id, temp.secret_access_key),
           "UnrecognizedClientException", invalid)                       # token missing
    expect(sm(aws, "GetSecretValue", payload, temp.access_key_id, temp.secret_access_key,
              temp.session_token + "x"), "UnrecognizedClientException", invalid)
    expect(sm_cred(aws, "GetSecretValue", payload, temp, sign_session_token=False),
           "InvalidSignatureException", "'X-Amz-Security-Token' must be a 'SignedHeader'")
    # skew: the client's date, then the server's clock
    expect(sm(aws, "GetSecretValue", payload, date=time.time() - 301),
           "InvalidSignatureException", "Signature expired")
    expect(sm(aws, "GetSecretValue", payload, date=time.time() + 400),
           "InvalidSignatureException", "Signature not yet current")
    assert sm(aws, "GetSecretValue", payload, date=time.time() - 250).status == 200
    aws.set_clock_skew(600)
    expect(sm(aws, "GetSecretValue", payload), "InvalidSignatureException", "Signature expired")
    r = call(aws, "GET", "/nothing")
    server_date = email.utils.parsedate_to_datetime(r.headers["Date"]).timestamp()
    assert abs(server_date - (time.time() + 600)) < 5                 # Date shows the skew
    aws.set_clock_skew(0)
    # scope
    expect(sm(aws, "GetSecretValue", payload, region="us-east-2"),
           "InvalidSignatureException", "Credential should be scoped to a valid region")
    hdrs = sign_request("POST", aws.url + "/", {"Content-Type": "application/x-amz-json-1.1",
                                                "X-Amz-Target": "secretsmanager.GetSecretValue"},
                        b'{"SecretId":"s"}', access_key_id=AKID, secret_access_key=SECRET,
                        region=REGION, service="kms")
    r = call(aws, "POST", "/", b'{"SecretId":"s"}', hdrs)
    assert r.json["__type"] == "InvalidSignatureException"
    assert "scoped to correct service: 'secretsmanager'" in r.json["message"]
    # tampering after signing: scope date, body, target
    body = b'{"SecretId":"s"}'
    signed = sign_request("POST", aws.url + "/", {"Content-Type": "application/x-amz-json-1.1",
                                                  "X-Amz-Target": "secretsmanager.GetSecretValue"},
                          body, access_key_id=AKID, secret_access_key=SECRET, region=REGION)
    assert call(aws, "POST", "/", body, signed).status == 200
    scope_date = f"Credential={AKID}/{signed['X-Amz-Date'][:8]}/"
    r = call(aws, "POST", "/", body, dict(signed, Authorization=signed["Authorization"].replace(
        scope_date, f"Credential={AKID}/20000101/")))
    expect(r, "InvalidSignatureException", "Date in Credential scope does not match")
    r = call(aws, "POST", "/", b'{"SecretId":"t"}', signed)
    expect(r, "InvalidSignatureException", "does not match")
    r = call(aws, "POST", "/", body, dict(signed, **{"X-Amz-Target": "secretsmanager.DescribeSecret"}))
    expect(r, "InvalidSignatureException", "does not match")
    # required signed headers, missing/incomplete Authorization
    expect(sm(aws, "GetSecretValue", payload, signed_headers=["host", "x-amz-date"]),
           "InvalidSignatureException", "'Content-Type' must be a 'SignedHeader'")
    expect(sm(aws, "GetSecretValue", payload,
              signed_headers=["content-type", "x-amz-date", "x-amz-target"]),
           "InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader'")
    r = call(aws, "POST", "/", b"{}", {"Content-Type": "application/x-amz-json-1.1",
                                       "X-Amz-Target": "secretsmanager.GetSecretValue"})
    assert r.json == {"__type": "MissingAuthenticationTokenException",
                      "message": "Missing Authentication Token"}
    expect(sm(aws, "GetSecretValue", payload,
              send_headers={"Authorization": "AWS4-HMAC-SHA256 Credential=" + AKID}),
           "IncompleteSignatureException", "requires 'SignedHeaders' parameter")
    # every rejection was recorded with the key it used
    assert aws.count(error="UnrecognizedClientException") == 4
    assert aws.count(access_key_id=temp.access_key_id, status=400) == 3
    assert aws.count(kind="sm", status=200) == 2


def test_expired_and_removed_credentials(aws):
    aws.add_secret("s", string="v")
    temp = aws.issue_temporary_credentials(lifetime=30)
    other = aws.issue_temporary_credentials(lifetime=30)
    assert sm_cred(aws, "GetSecretValue", {"SecretId": "s"}, temp).status == 200
    assert aws.expire_credentials(temp.access_key_id) == 1
    r = sm_cred(aws, "GetSecretValue", {"SecretId": "s"}, temp)
    assert r.status == 400 and r.json == {
        "__type": "ExpiredTokenException",
        "message": "The security token included in the request is expired"}
    assert sm_cred(aws, "GetSecretValue", {"SecretId": "s"}, other).status == 200
    aws.advance(31)                                     # the fake clock expires `other`
    assert sm_cred(aws, "GetSecretValue", {"SecretId": "s"}, other).json["__type"] == \
        "ExpiredTokenException"
    assert sm(aws, "GetSecretValue", {"SecretId": "s"}).status == 200   # static: unaffected
    aws.remove_credentials(AKID)
    assert sm(aws, "GetSecretValue", {"SecretId": "s"}).json["__type"] == \
        "UnrecognizedClientException"


def test_unknown_operation_and_bad_json(aws):
    r = sm(aws, "CreateSecret", {"Name": "x"})
    assert r.status == 400 and r.json["__type"] == "UnknownOperationException"
    r = sm(aws, "GetSecretValue", body=b"{not json")
    assert r.status == 400 and r.json["__type"] == "SerializationException"
    r = sm(aws, "GetSecretValue", {})
    assert r.json["__type"] == "InvalidParameterException" and "Message" in r.json


# --------------------------------------------------------------------------- Secrets Manager

def test_get_secret_value_shapes(aws):
    arn = aws.add_secret("app/config", string='{"k":"v1"}')
    assert arn.startswith(f"arn:aws:secretsmanager:{REGION}:123456789012:secret:app/config-")
    assert len(arn.rsplit("-", 1)[1]) == 6
    r = sm(aws, "GetSecretValue", {"SecretId": "app/config"})
    b = r.json
    assert set(b) == {"ARN", "Name", "VersionId", "SecretString", "VersionStages", "CreatedDate"}
    assert b["ARN"] == arn and b["Name"] == "app/config" and b["VersionStages"] == ["AWSCURRENT"]
    assert isinstance(b["CreatedDate"], float) and abs(b["CreatedDate"] - time.time()) < 5
    assert len(b["VersionId"]) == 36
    for sid in (arn, arn[:-7]):                         # full and partial ARN
        assert sm(aws, "GetSecretValue", {"SecretId": sid}).json["Name"] == "app/config"

    aws.add_secret("bin", binary=b"\x00\x01\xffdata")
    b = sm(aws, "GetSecretValue", {"SecretId": "bin"}).json
    assert "SecretString" not in b and base64.b64decode(b["SecretBinary"]) == b"\x00\x01\xffdata"

    v1 = b_v1 = sm(aws, "GetSecretValue", {"SecretId": "app/config"}).json["VersionId"]
    v2 = aws.put_value("app/config", string='{"k":"v2"}')
    assert sm(aws, "GetSecretValue", {"SecretId": "app/config"}).json["SecretString"] == '{"k":"v2"}'
    b = sm(aws, "GetSecretValue", {"SecretId": "app/config", "VersionStage": "AWSPREVIOUS"}).json
    assert b["VersionId"] == v1 and b["SecretString"] == '{"k":"v1"}'
    assert b["VersionStages"] == ["AWSPREVIOUS"]
    b = sm(aws, "GetSecretValue", {"SecretId": "app/config", "VersionId": b_v1}).json
    assert b["SecretString"] == '{"k":"v1"}'
    r = sm(aws, "GetSecretValue", {"SecretId": "app/config", "VersionId": v2,
                                   "VersionStage": "AWSPREVIOUS"})
    assert r.json["__type"] == "InvalidRequestException"
    r = sm(aws, "GetSecretValue", {"SecretId": "app/config", "VersionStage": "AWSPENDING"})
    assert r.json == {"__type": "ResourceNotFoundException", "Message":
                      "Secrets Manager can't find the specified secret value for staging "
                      "label: AWSPENDING"}
    r = sm(aws, "GetSecretValue", {"SecretId": "app/config", "VersionId": "0" * 36})
    assert r.json["__type"] == "ResourceNotFoundException"
    r = sm(aws, "GetSecretValue", {"SecretId": "app/config", "VersionId": "short"})
    assert r.json["__type"] == "InvalidParameterException"
    r = sm(aws, "GetSecretValue", {"SecretId": "nope"})
    assert r.status == 400 and r.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert r.json == {"__type": "ResourceNotFoundException",
                      "Message": "Secrets Manager can't find the specified secret."}
    assert aws.count(secret="app/config") == 11 and aws.count(secret=arn) == 1


def test_describe_and_list_versions(aws):
    arn = aws.add_secret("db", string="p1", description="the db", tags={"team": "core"})
    vid1 = aws.version_id("db")
    b = sm(aws, "DescribeSecret", {"SecretId": "db"}).json
    assert b["ARN"] == arn and b["Name"] == "db" and b["Description"] == "the db"
    assert b["VersionIdsToStages"] == {vid1: ["AWSCURRENT"]}
    assert "LastAccessedDate" not in b and "RotationEnabled" not in b
    assert "SecretString" not in b and "SecretBinary" not in b
    assert b["Tags"] == [{"Key": "team", "Value": "core"}]
    assert isinstance(b["LastChangedDate"], float) and isinstance(b["CreatedDate"], float)
    sm(aws, "GetSecretValue", {"SecretId": "db"})
    b = sm(aws, "DescribeSecret", {"SecretId": "db"}).json
    assert b["LastAccessedDate"] % 86400 == 0                  # truncated to midnight UTC
    assert 0 <= time.time() - b["LastAccessedDate"] < 86400
    vid2 = aws.rotate("db", "p2")
    b = sm(aws, "DescribeSecret", {"SecretId": "db"}).json
    assert b["VersionIdsToStages"] == {vid1: ["AWSPREVIOUS"], vid2: ["AWSCURRENT"]}
    assert b["RotationEnabled"] is True and "LastRotatedDate" in b

    aws.put_value("db", string="p3")
    b = sm(aws, "ListSecretVersionIds", {"SecretId": "db"}).json
    assert b["ARN"] == arn and b["Name"] == "db"
    assert {v["VersionId"]: v["VersionStages"] for v in b["Versions"]} == {
        vid2: ["AWSPREVIOUS"], aws.version_id("db"): ["AWSCURRENT"]}
    assert all(v["KmsKeyIds"] == ["DefaultEncryptionKey"] for v in b["Versions"])
    b = sm(aws, "ListSecretVersionIds", {"SecretId": "db", "IncludeDeprecated": True}).json
    assert len(b["Versions"]) == 3 and b["Versions"][0]["VersionStages"] == []
    b = sm(aws, "ListSecretVersionIds", {"SecretId": "db", "IncludeDeprecated": True,
                                         "MaxResults": 2}).json
    assert len(b["Versions"]) == 2 and b["NextToken"]
    b = sm(aws, "ListSecretVersionIds", {"SecretId": "db", "IncludeDeprecated": True,
                                         "NextToken": b["NextToken"]}).json
    assert len(b["Versions"]) == 1 and "NextToken" not in b


def test_rotation_stages(aws):
    aws.add_secret("r", string="v1")
    v1 = aws.version_id("r")
    pending = aws.rotate("r", "v2", complete=False)
    assert aws.stages("r") == {v1: ["AWSCURRENT"], pending: ["AWSPENDING"]}
    assert sm(aws, "GetSecretValue", {"SecretId": "r"}).json["SecretString"] == "v1"
    b = sm(aws, "GetSecretValue", {"SecretId": "r", "VersionStage": "AWSPENDING"}).json
    assert b["SecretString"] == "v2" and b["VersionId"] == pending
    assert aws.finish_rotation("r") == pending
    assert aws.stages("r") == {v1: ["AWSPREVIOUS"], pending: ["AWSCURRENT"]}
    v3 = aws.rotate("r", b"v3-bytes", keep_pending_label=True)
    assert {k: sorted(v) for k, v in aws.stages("r").items()} == {
        pending: ["AWSPREVIOUS"], v3: ["AWSCURRENT", "AWSPENDING"]}
    b = sm(aws, "GetSecretValue", {"SecretId": "r"}).json
    assert base64.b64decode(b["SecretBinary"]) == b"v3-bytes"
    assert sorted(b["VersionStages"]) == ["AWSCURRENT", "AWSPENDING"]
    assert aws.get_value("r", "AWSPREVIOUS") == "v2"


def test_delete_restore_recreate(aws):
    arn = aws.add_secret("gone", string="x")
    aws.delete_secret("gone")
    r = sm(aws, "GetSecretValue", {"SecretId": "gone"})
    assert r.json["__type"] == "InvalidRequestException" and "marked for deletion" in r.json["Message"]
    assert sm(aws, "DescribeSecret", {"SecretId": "gone"}).json["DeletedDate"] > time.time()
    aws.restore_secret("gone")
    assert sm(aws, "GetSecretValue", {"SecretId": "gone"}).status == 200
    aws.delete_secret("gone", force=True)
    assert sm(aws, "GetSecretValue", {"SecretId": arn}).json["__type"] == "ResourceNotFoundException"
    arn2 = aws.add_secret("gone", string="y")
    assert arn2 != arn                                  # a new ARN suffix
    assert sm(aws, "GetSecretValue", {"SecretId": arn}).json["__type"] == "ResourceNotFoundException"


def test_access_denied_and_decryption_failure(aws):
    aws.add_secret("open", string="o")
    aws.add_secret("locked", string="l")
    rule = aws.deny_access("locked", ops=["GetSecretValue"])
    r = sm(aws, "GetSecretValue", {"SecretId": "locked"})
    assert r.status == 400 and r.json["__type"] == "AccessDeniedException"
    assert r.json["Message"].startswith("User: arn:aws:iam::123456789012:user/test-user is not "
                                        "authorized to perform: secretsmanager:GetSecretValue")
    assert sm(aws, "DescribeSecret", {"SecretId": "locked"}).status == 200
    assert sm(aws, "GetSecretValue", {"SecretId": "open"}).status == 200
    aws.allow_access(rule)
    assert sm(aws, "GetSecretValue", {"SecretId": "locked"}).status == 200
    # a deny for one role only
    temp = aws.issue_temporary_credentials(role_arn="arn:aws:iam::123456789012:role/ro")
    aws.deny_access("locked", role_arn=temp.role_arn)
    assert sm_cred(aws, "GetSecretValue", {"SecretId": "locked"}, temp).json["__type"] == \
        "AccessDeniedException"
    assert sm(aws, "GetSecretValue", {"SecretId": "locked"}).status == 200
    aws.allow_access()

    aws.set_decryption_failure("locked")
    r = sm(aws, "GetSecretValue", {"SecretId": "locked"})
    assert r.json == {"__type": "DecryptionFailure", "Message": "Secrets Manager can't decrypt "
                      "the protected secret text using the provided KMS key."}
    assert sm(aws, "DescribeSecret", {"SecretId": "locked"}).status == 200
    aws.set_decryption_failure("locked", False)
    assert sm(aws, "GetSecretValue", {"SecretId": "locked"}).status == 200


def test_batch_get_secret_value(aws):
    arn_a = aws.add_secret("batch/a", string="A")
    aws.add_secret("batch/b", binary=b"B")
    aws.add_secret("batch/c", string="C")
    aws.add_secret("other", string="O")
    aws.deny_access("batch/c")
    aws.set_decryption_failure("other")
    r = sm(aws, "BatchGetSecretValue", {"SecretIdList": [arn_a, "batch/b", "batch/c", "other",
                                                         "missing"]})
    b = r.json
    assert r.status == 200 and set(b) == {"SecretValues", "Errors"}
    assert [v["Name"] for v in b["SecretValues"]] == ["batch/a", "batch/b"]
    assert b["SecretValues"][0]["SecretString"] == "A"
    assert base64.b64decode(b["SecretValues"][1]["SecretBinary"]) == b"B"
    assert {v["VersionStages"][0] for v in b["SecretValues"]} == {"AWSCURRENT"}
    assert [(e["SecretId"], e["ErrorCode"]) for e in b["Errors"]] == [
        ("batch/c", "AccessDeniedException"), ("other", "DecryptionFailure"),
        ("missing", "ResourceNotFoundException")]
    assert all(e["Message"] for e in b["Errors"])
    rec = aws.last_request(op="BatchGetSecretValue")
    assert rec.secret is None and rec.secret_ids[1] == "batch/b" and "batch/a" in rec.secret_names
    assert aws.count(op="BatchGetSecretValue", secret="batch/a") == 1

    b = sm(aws, "BatchGetSecretValue", {"Filters": [{"Key": "name", "Values": ["batch/"]}],
                                        "MaxResults": 1}).json
    assert [v["Name"] for v in b["SecretValues"]] == ["batch/a"] and b["NextToken"]
    b = sm(aws, "BatchGetSecretValue", {"Filters": [{"Key": "name", "Values": ["batch/"]}],
                                        "MaxResults": 1, "NextToken": b["NextToken"]}).json
    assert [v["Name"] for v in b["SecretValues"]] == ["batch/b"]
    for bad in ({}, {"SecretIdList": ["a"], "Filters": [{"Key": "all", "Values": ["x"]}]},
                {"SecretIdList": ["a"] * 21}, {"SecretIdList": ["a"], "MaxResults": 5}):
        assert sm(aws, "BatchGetSecretValue", bad).json["__type"] == "InvalidParameterException"
    aws.deny_access(ops=["BatchGetSecretValue"])
    r = sm(aws, "BatchGetSecretValue", {"SecretIdList": ["batch/a"]})
    assert r.json["__type"] == "AccessDeniedException"


# --------------------------------------------------------------------------- STS

ROLE = "arn:aws:iam::123456789012:role/app-role"


def test_sts_assume_role_with_web_identity(aws):
    aws.allow_web_identity(ROLE, "jwt-1", subject="system:serviceaccount:prod:app")
    aws.add_secret("s", string="v")
    aws.credential_lifetime = 120
    r = sts_post(aws, sts_form(ROLE, "jwt-1", session="my-session"))
    assert r.status == 200 and r.headers["Content-Type"] == "text/xml"
    root = r.xml
    assert root.tag == "{%s}AssumeRoleWithWebIdentityResponse" % STS_NS["s"]
    res = root.find("s:AssumeRoleWithWebIdentityResult", STS_NS)
    creds = res.find("s:Credentials", STS_NS)
    akid = creds.findtext("s:AccessKeyId", namespaces=STS_NS)
    secret = creds.findtext("s:SecretAccessKey", namespaces=STS_NS)
    token = creds.findtext("s:SessionToken", namespaces=STS_NS)
    exp = creds.findtext("s:Expiration", namespaces=STS_NS)
    assert akid.startswith("ASIA") and secret and token
    exp_ts = calendar.timegm(time.strptime(exp, "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(exp_ts - (time.time() + 120)) < 5
    assert res.findtext("s:SubjectFromWebIdentityToken", namespaces=STS_NS) == \
        "system:serviceaccount:prod:app"
    assert res.findtext("s:AssumedRoleUser/s:Arn", namespaces=STS_NS) == \
        "arn:aws:sts::123456789012:assumed-role/app-role/my-session"
    assert res.findtext("s:AssumedRoleUser/s:AssumedRoleId", namespaces=STS_NS).endswith(
        ":my-session")
    assert res.findtext("s:Audience", namespaces=STS_NS) == "sts.amazonaws.com"
    assert root.findtext("s:ResponseMetadata/s:RequestId", namespaces=STS_NS)
    # the credentials work for Secrets Manager until they expire
    assert sm(aws, "GetSecretValue", {"SecretId": "s"}, akid, secret, token).status == 200
    rec = aws.last_request(kind="sts")
    assert rec.op == "AssumeRoleWithWebIdentity" and rec.issued_access_key_id == akid
    assert aws.credential(akid).source == "sts" and aws.credential(akid).role_arn == ROLE
    aws.advance(121)
    assert sm(aws, "GetSecretValue", {"SecretId": "s"}, akid, secret, token).json["__type"] == \
        "ExpiredTokenException"
    # GET with a query string; DurationSeconds
    r = call(aws, "GET", "/?" + sts_form(ROLE, "jwt-1", duration=900))
    assert r.status == 200
    akid2 = r.xml.findtext(".//s:AccessKeyId", namespaces=STS_NS)
    c = aws.credential(akid2)
    assert c.expires - c.issued == 900


def test_sts_errors(aws):
    aws.allow_web_identity(ROLE, "jwt-ok")
    aws.allow_web_identity("arn:aws:iam::123456789012:role/other", "jwt-other")

    def err(r, status, code):
        assert r.status == status, r
        e = r.xml.find("s:Error", STS_NS)
        assert r.xml.tag == "{%s}ErrorResponse" % STS_NS["s"]
        assert e.findtext("s:Code", namespaces=STS_NS) == code
        assert e.findtext("s:Type", namespaces=STS_NS) == "Sender"
        assert e.findtext("s:Message", namespaces=STS_NS)
        assert r.xml.findtext("s:RequestId", namespaces=STS_NS)

    err(sts_post(aws, sts_form(ROLE, "jwt-bogus")), 400, "InvalidIdentityToken")
    err(sts_post(aws, sts_form(ROLE, "jwt-other")), 403, "AccessDenied")
    err(sts_post(aws, sts_form(ROLE, "jwt-ok", session="x")), 400, "ValidationError")
    err(sts_post(aws, sts_form(ROLE, "jwt-ok", duration=60)), 400, "ValidationError")
    err(sts_post(aws, sts_form(ROLE, "jwt-ok", duration=7200)), 400, "ValidationError")
    err(sts_post(aws, sts_form(ROLE, "jwt-ok", action="AssumeRole")), 400, "InvalidAction")
    err(sts_post(aws, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=" + ROLE),
        400, "ValidationError")
    aws.expire_web_identity("jwt-ok")
    err(sts_post(aws, sts_form(ROLE, "jwt-ok")), 400, "ExpiredTokenException")
    aws.disallow_web_identity("jwt-other")
    err(sts_post(aws, sts_form("arn:aws:iam::123456789012:role/other", "jwt-other")), 400,
        "InvalidIdentityToken")
    assert aws.count(kind="sts") == 9 and aws.count(kind="sts", status=200) == 0
    assert aws.credentials(source="sts") == []


# --------------------------------------------------------------------------- container

def test_container_credentials_ecs_and_pod_identity(aws):
    aws.add_secret("s", string="v")
    ecs = aws.add_container_endpoint("/v2/credentials/abc",
                                     role_arn="arn:aws:iam::123456789012:role/task")
    pod = aws.add_container_endpoint("/v1/credentials", token="pod-token", style="pod-identity")
    r = call(aws, "GET", ecs)
    b = r.json
    assert r.status == 200 and set(b) == {"AccessKeyId", "Expiration", "RoleArn",
                                          "SecretAccessKey", "Token"}
    assert b["RoleArn"] == "arn:aws:iam::123456789012:role/task"
    assert b["Expiration"].endswith("Z") and len(b["Expiration"]) == 20
    assert sm(aws, "GetSecretValue", {"SecretId": "s"}, b["AccessKeyId"], b["SecretAccessKey"],
              b["Token"]).status == 200
    assert call(aws, "GET", ecs).json["AccessKeyId"] == b["AccessKeyId"]   # cached
    aws.expire_credentials(b["AccessKeyId"])
    fresh = call(aws, "GET", ecs).json
    assert fresh["AccessKeyId"] != b["AccessKeyId"]

    r = call(aws, "GET", pod)
    assert r.status == 401 and r.json["code"] and r.json["message"]
    r = call(aws, "GET", pod, headers={"Authorization": "wrong"})
    assert r.status == 403
    b = call(aws, "GET", pod, headers={"Authorization": "pod-token"}).json
    assert set(b) == {"AccessKeyId", "SecretAccessKey", "Token", "AccountId", "Expiration"}
    assert b["AccountId"] == "123456789012"
    assert aws.container_credentials(pod).access_key_id == b["AccessKeyId"]
    assert aws.count(kind="container") == 6 and aws.count(kind="container", status=200) == 4
    assert call(aws, "GET", "/v2/credentials/unknown").status == 404


def test_container_credentials_refresh_before_expiry(aws):
    aws.credential_lifetime = 100
    path = aws.add_container_endpoint()
    first = call(aws, "GET", path).json["AccessKeyId"]
    aws.advance(40)
    assert call(aws, "GET", path).json["AccessKeyId"] == first
    aws.advance(15)                                     # within min(300, 100/2) of expiry
    assert call(aws, "GET", path).json["AccessKeyId"] != first


# --------------------------------------------------------------------------- IMDSv2

def test_imds_flow(aws):
    aws.add_secret("s", string="v")
    aws.set_instance_role("web-role")
    r = call(aws, "PUT", "/latest/api/token", b"", {"X-aws-ec2-metadata-token-ttl-seconds": "30"})
    assert r.status == 200 and r.headers["X-aws-ec2-metadata-token-ttl-seconds"] == "30"
    tok = r.raw.decode()
    h = {"X-aws-ec2-metadata-token": tok}
    r = call(aws, "GET", "/latest/meta-data/iam/security-credentials/", headers=h)
    assert r.status == 200 and r.raw == b"web-role"
    r = call(aws, "GET", "/latest/meta-data/iam/security-credentials/web-role", headers=h)
    b = r.json
    assert r.status == 200 and list(b) == ["Code", "LastUpdated", "Type", "AccessKeyId",
                                           "SecretAccessKey", "Token", "Expiration"]
    assert b["Code"] == "Success" and b["Type"] == "AWS-HMAC"
    assert sm(aws, "GetSecretValue", {"SecretId": "s"}, b["AccessKeyId"], b["SecretAccessKey"],
              b["Token"]).status == 200
    assert aws.imds_credentials().role_arn == "arn:aws:iam::123456789012:role/web-role"
    assert call(aws, "GET", "/latest/meta-data/placement/region", headers=h).raw == REGION.encode()
    doc = call(aws, "GET", "/latest/dynamic/instance-identity/document", headers=h).json
    assert doc["region"] == REGION and doc["accountId"] == "123456789012"
    assert call(aws, "GET", "/latest/meta-data/iam/security-credentials/other",
                headers=h).status == 404

    # rejections
    assert call(aws, "GET", "/latest/meta-data/placement/region").status == 401
    assert call(aws, "GET", "/latest/meta-data/placement/region",
                headers={"X-aws-ec2-metadata-token": "bogus"}).status == 401
    for ttl in ("0", "21601", "abc", None):
        hdr = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
        assert call(aws, "PUT", "/latest/api/token", b"", hdr).status == 400
    assert call(aws, "PUT", "/latest/api/token", b"", {
        "X-aws-ec2-metadata-token-ttl-seconds": "21600", "X-Forwarded-For": "1.2.3.4"}).status == 403
    assert call(aws, "GET", "/latest/api/token").status == 405
    aws.advance(31)                                     # the token expired
    assert call(aws, "GET", "/latest/meta-data/placement/region", headers=h).status == 401
    tok2 = imds_token(aws)
    aws.expire_imds_tokens()
    assert call(aws, "GET", "/latest/meta-data/placement/region",
                headers={"X-aws-ec2-metadata-token": tok2}).status == 401
    assert aws.count(kind="imds", op="token") == 8
    assert aws.count(kind="imds", op="credentials", status=200) == 1


def test_imds_no_role(aws):
    h = {"X-aws-ec2-metadata-token": imds_token(aws)}
    assert call(aws, "GET", "/latest/meta-data/iam/security-credentials/", headers=h).status == 404


# --------------------------------------------------------------------------- faults

def test_faults_sm(aws):
    aws.add_secret("s", string="v")
    aws.add_secret("t", string="w")
    q = {"SecretId": "s"}
    aws.fault_throttle("GetSecretValue")
    r = sm(aws, "GetSecretValue", q)
    assert r.status == 400 and r.json == {"__type": "ThrottlingException", "message": "Rate exceeded"}
    assert r.headers["x-amzn-ErrorType"] == "ThrottlingException"
    assert sm(aws, "GetSecretValue", q).status == 200

    aws.fault_status("GetSecretValue", 500, times=2)
    assert [sm(aws, "GetSecretValue", q).status for _ in range(3)] == [500, 500, 200]
    assert aws.last_request(status=500).error == "InternalServiceError"
    aws.fault_status("sm", 503)
    r = sm(aws, "DescribeSecret", q)
    assert r.status == 503 and r.json["__type"] == "ServiceUnavailableException"

    aws.fault_garbage("GetSecretValue")
    r = sm(aws, "GetSecretValue", q)
    assert r.status == 200
    with pytest.raises(ValueError):
        json.loads(r.raw)
    aws.fault_truncated("GetSecretValue")
    r = sm(aws, "GetSecretValue", q)
    assert r.status == 200 and r.raw.startswith(b'{"ARN"')
    with pytest.raises(ValueError):
        json.loads(r.raw)

    fid = aws.fault_throttle("GetSecretValue", times=None, secret="t")
    for _ in range(3):
        assert sm(aws, "GetSecretValue", {"SecretId": "t"}).json["__type"] == "ThrottlingException"
    assert sm(aws, "GetSecretValue", q).status == 200           # other secret untouched
    assert aws.faults[0]["hits"] == 3
    aws.remove_fault(fid)
    assert sm(aws, "GetSecretValue", {"SecretId": "t"}).status == 200

    aws.fault_hang("DescribeSecret", seconds=0.3)
    t0 = time.monotonic()
    assert sm(aws, "DescribeSecret", q).status == 200
    assert time.monotonic() - t0 >= 0.25
    aws.fault_close("GetSecretValue")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
        sm(aws, "GetSecretValue", q)
    closed = aws.last_request(op="GetSecretValue")
    assert closed.fault == "close" and closed.status is None
    fid = aws.fault_status(None, 500, times=None, body={"custom": True})
    assert sm(aws, "GetSecretValue", q).json == {"custom": True}
    aws.clear_faults()
    assert aws.faults == [] and sm(aws, "GetSecretValue", q).status == 200


def test_faults_sts_container_imds(aws):
    aws.allow_web_identity(ROLE, "jwt")
    path = aws.add_container_endpoint("/v1/credentials")
    aws.set_instance_role("r")
    aws.fault_throttle("sts")
    r = sts_post(aws, sts_form(ROLE, "jwt"))
    assert r.status == 400 and r.xml.findtext(".//s:Code", namespaces=STS_NS) == "Throttling"
    aws.fault_status("AssumeRoleWithWebIdentity", 503)
    r = sts_post(aws, sts_form(ROLE, "jwt"))
    assert r.status == 503 and r.xml.findtext(".//s:Type", namespaces=STS_NS) == "Receiver"
    aws.fault_truncated("sts")
    r = sts_post(aws, sts_form(ROLE, "jwt"))
    with pytest.raises(ET.ParseError):
        ET.fromstring(r.raw)
    assert sts_post(aws, sts_form(ROLE, "jwt")).status == 200

    aws.fault_status("container", 500)
    assert call(aws, "GET", path).status == 500
    aws.fault_garbage("container")
    r = call(aws, "GET", path)
    assert r.status == 200 and not r.raw.startswith(b"{")
    assert call(aws, "GET", path).status == 200

    aws.fault_throttle("imds")
    assert call(aws, "PUT", "/latest/api/token", b"",
                {"X-aws-ec2-metadata-token-ttl-seconds": "60"}).status == 429
    h = {"X-aws-ec2-metadata-token": imds_token(aws)}
    aws.fault_close("credentials")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
        call(aws, "GET", "/latest/meta-data/iam/security-credentials/r", headers=h)
    assert call(aws, "GET", "/latest/meta-data/iam/security-credentials/r", headers=h).status == 200
    kinds = [q.kind for q in aws.requests]
    assert set(kinds) == {"sts", "container", "imds"}
    assert [q.fault for q in aws.requests if q.fault] == [
        "throttle", "status", "truncated", "status", "garbage", "throttle", "close"]


def test_hang_forever_and_prompt_stop():
    a = FakeAws().start()
    a.fault_hang(None, seconds=None, times=None)
    errors = []

    def client():
        try:
            call(a, "GET", "/latest/meta-data/", timeout=10)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    assert a.wait_for(lambda: len(a.requests) == 3, timeout=3)
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        call(a, "GET", "/latest/meta-data/", timeout=0.3)
    t0 = time.monotonic()
    a.stop()
    assert time.monotonic() - t0 < 2
    for t in threads:
        t.join(3)
        assert not t.is_alive()
    assert len(errors) == 3


# --------------------------------------------------------------------------- TLS, script mode

def test_tls(pki):
    with FakeAws(region=REGION, tls_cert=pki.server_cert, tls_key=pki.server_key) as a:
        a.add_static_credentials(AKID, SECRET)
        a.add_secret("s", string="v")
        assert a.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=pki.ca_cert)
        r = sm_call(a.url, "GetSecretValue", {"SecretId": "s"}, access_key_id=AKID,
                    secret_access_key=SECRET, region=REGION, ctx=ctx)
        assert r.status == 200 and r.json["SecretString"] == "v"
        with pytest.raises(urllib.error.URLError):
            call(a, "GET", "/latest/meta-data/", ctx=ssl.create_default_context())


def test_script_mode(tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({
        "secrets": [{"name": "app/db", "string": "pw"},
                    {"name": "app/bin", "binary_base64": base64.b64encode(b"\x01").decode()}],
        "web_identities": [{"role_arn": ROLE, "token": "jwt"}],
        "instance_role": {"name": "node"}}))
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_aws.py"), "--port", "0",
                             "--region", REGION, "--static-credentials", f"{AKID}:{SECRET}",
                             "--seed", str(seed)], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        r = sm_call(url, "GetSecretValue", {"SecretId": "app/db"}, access_key_id=AKID,
                    secret_access_key=SECRET, region=REGION)
        assert r.json["SecretString"] == "pw"
        r = call(url, "POST", "/_fake/call", json.dumps(
            {"method": "rotate", "args": ["app/db", "pw2"]}).encode(),
            {"Content-Type": "application/json"})
        assert r.status == 200 and len(r.json["result"]) == 36
        r = sm_call(url, "GetSecretValue", {"SecretId": "app/db"}, access_key_id=AKID,
                    secret_access_key=SECRET, region=REGION)
        assert r.json["SecretString"] == "pw2"
        assert sts_post(url, sts_form(ROLE, "jwt")).status == 200
        reqs = call(url, "GET", "/_fake/requests").json["result"]
        assert [(q["kind"], q["status"]) for q in reqs] == [("sm", 200), ("sm", 200), ("sts", 200)]
        assert call(url, "POST", "/_fake/call", json.dumps({"method": "stop"}).encode()).status == 400
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
