"""The AWS Secrets Manager backend against the in-process fake AWS
(tests/fakes/fake_aws.py), which verifies the SigV4 signature of every
Secrets Manager request.

What is pinned here: values (strings, JSON fields, whole JSON, binary),
every credential source of the chain (environment, shared files and
profiles, web identity, container credentials, IMDSv2) and the refusal of
unsafe ones, temporary credentials refreshed ahead of expiry and after an
early ExpiredTokenException, DescribeSecret probes with one GetSecretValue
per rotation, stage and version pins, outages and AWS errors keeping the
last good value, config errors, HTTPS, and no plaintext (values, keys,
session tokens) at rest.

Timings are read from the fake's request log, never from sleeps; every
wait is bounded (and stretched by SLOW under ASan).
"""

import json
import os
import re
import stat
from urllib.parse import parse_qs

import pytest

from helpers.aws import (FakeAws, backend, clean_env, last_seq, non_loopback_ipv4,
                         register_report_plugin, replace_private, sm, sm_reqs, start,
                         static_keys, write_private)
from helpers.harness import (SANITIZE, SLOW, WaitTimeout, call_with_timeout, describe_hits, errno_of,
                             holds_for, parse_env_file, rand_token, scan_memory, wait_until)

ROLE = "arn:aws:iam::123456789012:role/secretfs-test"


@pytest.fixture
def make_aws(request, sandbox):
    """Starts in-process fake AWS servers: make_aws(**FakeAws kwargs). They
    are stopped before the sandbox's daemons (which then see connection
    refused, never a hang)."""
    started = []
    request.node._fake_aws = started
    register_report_plugin(request.config)

    def make(**kw):
        fake = FakeAws(**kw).start()
        started.append(fake)
        return fake
    try:
        yield make
    finally:
        for fake in started:
            fake.stop()


@pytest.fixture
def aws(make_aws):
    """A fake AWS over plain HTTP on 127.0.0.1, region us-east-1."""
    return make_aws()


def lines_matching(log, pattern):
    return [ln for ln in log.splitlines() if re.search(pattern, ln, re.IGNORECASE)]


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def environ_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read()


def cmdline_of(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def assert_all_signed_ok(fake, akid, token=None):
    """Every Secrets Manager request passed the fake's SigV4 check (200)
    with this access key (and session token)."""
    rs = sm_reqs(fake)
    assert rs, "no Secrets Manager request"
    for r in rs:
        assert r.status == 200, r
        assert r.access_key_id == akid, r
        assert r.header("X-Amz-Security-Token") == token, r
        assert r.header("Content-Type") == "application/x-amz-json-1.1", r


# =========================================================================== values, env keys

@pytest.mark.fuse
def test_static_env_keys_serve_strings_fields_json_and_binary(sandbox, aws):
    plain = rand_token(32)
    doc = {"db": {"user": "app", "password": rand_token(24)}, "api_key": rand_token(24),
           "n": 3}
    blob = bytes(range(256)) + b"\x00\xff\x00" + rand_token(16).encode()
    aws.add_secret("app/plain", string=plain)
    aws.add_secret("app/doc", string=json.dumps(doc, indent=2))
    aws.add_secret("app/blob", binary=blob)
    # JSON that is not an object is served as the text it is.
    listy, quoted = '[1, "two", {"x": null}]', '"just a JSON string"'
    aws.add_secret("app/list", string=listy)
    aws.add_secret("app/quoted", string=quoted)
    by_arn = rand_token(32)
    arn = aws.add_secret("team/by-arn", string=by_arn)
    # Secrets Manager's largest value (64 KiB) and a name using every
    # punctuation character names may have.
    big, odd = rand_token(65536), rand_token(32)
    aws.add_secret("app/big", string=big)
    aws.add_secret("app/odd_name+=.@-", string=odd)
    env, akid, secret = static_keys(aws, sandbox)
    secrets = {"plain": sm("app/plain"), "db/password": sm("app/doc", field="db.password"),
               "api": sm("app/doc", field="api_key"), "doc.json": sm("app/doc"),
               "blob.bin": sm("app/blob"), "list": sm("app/list"), "quoted": sm("app/quoted"),
               "by-arn": sm(arn), "big": sm("app/big"), "odd": sm("app/odd_name+=.@-")}
    d = start(sandbox, secrets, backend(aws), env)
    assert d.read("plain") == plain
    assert d.read("db/password") == doc["db"]["password"]
    assert d.read("api") == doc["api_key"]
    whole = d.read("doc.json")
    assert json.loads(whole) == doc
    assert whole == json.dumps(json.loads(whole), separators=(",", ":")), "raw JSON is compact"
    assert d.read_bytes("blob.bin") == blob
    assert d.read("list") == listy
    assert d.read("quoted") == quoted
    assert d.read("by-arn") == by_arn
    assert d.read("big") == big
    assert d.read("odd") == odd
    assert sm_reqs(aws, "GetSecretValue", arn)[0].json == {"SecretId": arn}
    for name in secrets:
        st = os.stat(d.path(name))
        assert stat.S_IMODE(st.st_mode) == 0o400, (name, oct(st.st_mode))
    assert os.stat(d.path("blob.bin")).st_size == len(blob)
    # One GetSecretValue per secret, the two fields and the whole document
    # of app/doc sharing one.
    assert len(sm_reqs(aws, "GetSecretValue", "app/doc")) == 1
    assert len(sm_reqs(aws, "GetSecretValue")) == 8
    assert_all_signed_ok(aws, akid)
    # The secret key is wiped from the environment; neither it nor the
    # values are on the command line or in the log.
    assert secret.encode() not in environ_of(d.pid)
    assert akid.encode() in environ_of(d.pid), "control: the environ of the daemon is read"
    assert secret.encode() not in cmdline_of(d.pid)
    assert d.stop() == 0
    log = d.log_text()
    assert "credentials from environment" in log
    for s in (secret, plain, doc["db"]["password"], doc["api_key"]):
        assert s not in log


@pytest.mark.fuse
def test_env_session_token_is_signed_and_never_leaks(sandbox, aws):
    cred = aws.issue_temporary_credentials(lifetime=3600)
    value = rand_token(32)
    aws.add_secret("app/key", string=value)
    env = clean_env(sandbox, AWS_ACCESS_KEY_ID=cred.access_key_id,
                    AWS_SECRET_ACCESS_KEY=cred.secret_access_key,
                    AWS_SESSION_TOKEN=cred.session_token)
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), env)
    assert d.read("key") == value
    assert_all_signed_ok(aws, cred.access_key_id, cred.session_token)
    r = sm_reqs(aws)[0]
    signed = re.search(r"SignedHeaders=([^,\s]+)", r.header("Authorization")).group(1)
    assert "x-amz-security-token" in signed.split(";"), signed
    environ = environ_of(d.pid)
    assert cred.secret_access_key.encode() not in environ
    assert cred.session_token.encode() not in environ
    assert cred.session_token.encode() not in cmdline_of(d.pid)
    assert d.stop() == 0
    log = d.log_text()
    assert cred.secret_access_key not in log and cred.session_token not in log
    assert value not in log


# =========================================================================== shared files

SHARED_CASES = {
    # AWS_PROFILE picks [team]; no region in the config: the profile's.
    "aws_profile_env": dict(env_profile="team", env_keys=False, conf_profile=None,
                            conf_region=False, expect="team"),
    # The config's profile wins over AWS_PROFILE, and environment keys are
    # then skipped.
    "config_profile_over_env": dict(env_profile="default", env_keys=True, conf_profile="team",
                                    conf_region=False, expect="team"),
    # Without a configured profile, environment keys come first.
    "env_keys_before_files": dict(env_profile="team", env_keys=True, conf_profile=None,
                                  conf_region=False, expect="env"),
    # No profile anywhere: [default]; the config's region beats its region.
    "default_profile": dict(env_profile=None, env_keys=False, conf_profile=None,
                            conf_region=True, expect="default"),
}


@pytest.mark.fuse
@pytest.mark.parametrize("case", sorted(SHARED_CASES))
def test_shared_files_profiles_and_regions(sandbox, aws, case):
    c = SHARED_CASES[case]
    keys = {}
    for who in ("default", "team", "env"):
        akid, secret = "AKIA" + rand_token(16).upper(), rand_token(40)
        aws.add_static_credentials(akid, secret, user=who)
        keys[who] = (akid, secret)
    # [default]'s region is not the fake's: a request signed for it fails.
    creds = write_private(sandbox, "aws-credentials", (
        "# shared credentials\n"
        f"[default]\naws_access_key_id = {keys['default'][0]}\n"
        f"aws_secret_access_key = {keys['default'][1]}\n\n"
        f"[team]\naws_access_key_id={keys['team'][0]}\n"
        f"aws_secret_access_key={keys['team'][1]}\n"))
    config = write_private(sandbox, "aws-config", (
        "[default]\nregion = eu-west-3\n\n"
        f"[profile team]\nregion = {aws.region}\noutput = json\n"
        "s3 =\n  max_concurrent_requests = 4\n"))
    extra = {"AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_CONFIG_FILE": config}
    if c["env_profile"]:
        extra["AWS_PROFILE"] = c["env_profile"]
    if c["env_keys"]:
        extra["AWS_ACCESS_KEY_ID"], extra["AWS_SECRET_ACCESS_KEY"] = keys["env"]
    be = backend(aws, region=aws.region if c["conf_region"] else None,
                 profile=c["conf_profile"])
    value = rand_token(32)
    aws.add_secret("app/key", string=value)
    d = start(sandbox, {"key": sm("app/key")}, be, clean_env(sandbox, **extra))
    assert d.read("key") == value
    assert_all_signed_ok(aws, keys[c["expect"]][0])
    source = "environment" if c["expect"] == "env" else "shared files"
    d.wait_log(rf"credentials from {source}")
    d.wait_log(rf"region {aws.region}")
    assert d.stop() == 0
    log = d.log_text()
    assert all(s not in log for _, s in keys.values())


@pytest.mark.fuse
def test_profile_with_role_arn_and_web_identity_token_file(sandbox, aws):
    jwt = "eyJ" + rand_token(80)
    role = "arn:aws:iam::123456789012:role/from-profile"
    aws.allow_web_identity(role, jwt)
    token_file = write_private(sandbox, "wi-token", jwt)
    config = write_private(sandbox, "aws-config", (
        f"[profile wi]\nrole_arn = {role}\nweb_identity_token_file = {token_file}\n"
        f"role_session_name = from-profile\nregion = {aws.region}\n"))
    value = rand_token(32)
    aws.add_secret("app/key", string=value)
    d = start(sandbox, {"key": sm("app/key")}, backend(aws, region=None, profile="wi"),
              clean_env(sandbox, AWS_CONFIG_FILE=config))
    assert d.read("key") == value
    (call,) = sts_calls(aws)
    p = sts_params(call)
    assert (p["RoleArn"], p["WebIdentityToken"], p["RoleSessionName"]) == \
        (role, jwt, "from-profile")
    cred = aws.credential(call.issued_access_key_id)
    assert_all_signed_ok(aws, cred.access_key_id, cred.session_token)


# =========================================================================== web identity

def sts_calls(fake):
    return fake.find_requests(kind="sts", op="AssumeRoleWithWebIdentity")


def sts_params(r):
    return {k: v[0] for k, v in parse_qs(r.body.decode(), keep_blank_values=True).items()}


def web_identity_env(sandbox, fake, token, session="secretfs-it", **extra):
    """AWS_ROLE_ARN, the token in AWS_WEB_IDENTITY_TOKEN_FILE and (unless
    session is None) AWS_ROLE_SESSION_NAME. Returns (env, token file)."""
    path = write_private(sandbox, "web-identity-token", token)
    if session is not None:
        extra["AWS_ROLE_SESSION_NAME"] = session
    env = clean_env(sandbox, AWS_ROLE_ARN=ROLE, AWS_WEB_IDENTITY_TOKEN_FILE=path, **extra)
    return env, path


def start_web_identity(sandbox, aws, secrets, **kw):
    jwt = "eyJ" + rand_token(80)
    aws.allow_web_identity(ROLE, jwt)
    env, _ = web_identity_env(sandbox, aws, jwt)
    return start(sandbox, secrets, backend(aws), env, **kw), jwt


def start_container(sandbox, aws, secrets, token_in_env=False, **kw):
    token = rand_token(48)
    path = aws.add_container_endpoint("/v1/credentials", token=token, style="pod-identity")
    extra = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": aws.url + path}
    if token_in_env:
        extra["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
    else:
        extra["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = write_private(sandbox, "eks", token)
    return start(sandbox, secrets, backend(aws), clean_env(sandbox, **extra), **kw), token


def issued_keys(aws, kind):
    """Access keys handed out by STS, the container endpoint or IMDS, in
    order, without repeats (the container endpoint and IMDS hand out the
    same keys until they near their end)."""
    out = []
    for r in aws.find_requests(kind=kind):
        if r.issued_access_key_id and r.issued_access_key_id not in out:
            out.append(r.issued_access_key_id)
    return out


@pytest.mark.fuse
def test_web_identity_assumes_the_role_at_sts_and_rereads_the_token_file(sandbox, make_aws):
    aws = make_aws(credential_lifetime=6)
    jwt1, jwt2 = "eyJ" + rand_token(80), "eyJ" + rand_token(80)
    aws.allow_web_identity(ROLE, jwt1)
    aws.allow_web_identity(ROLE, jwt2)
    value = rand_token(32)
    aws.add_secret("app/key", string=value)
    env, token_file = web_identity_env(sandbox, aws, jwt1)
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), env)
    assert d.read("key") == value
    first = sts_calls(aws)[0]
    p = sts_params(first)
    assert p["RoleArn"] == ROLE and p["WebIdentityToken"] == jwt1, p
    assert p["RoleSessionName"] == "secretfs-it" and p["Version"] == "2011-06-15"
    assert first.status == 200 and first.header("Authorization") is None, "STS call is unsigned"
    cred1 = aws.credential(first.issued_access_key_id)
    gets = sm_reqs(aws, "GetSecretValue")
    assert gets and all(r.access_key_id == cred1.access_key_id and r.status == 200 and
                        r.header("X-Amz-Security-Token") == cred1.session_token for r in gets)
    assert gets[0].seq > first.seq

    replace_private(token_file, jwt2)          # the kubelet rotated the token
    wait_until(lambda: len(sts_calls(aws)) >= 2, timeout=8 * SLOW, what="a second STS call")
    second = sts_calls(aws)[1]
    assert second.status == 200
    assert sts_params(second)["WebIdentityToken"] == jwt2, "the token file is read again"
    cred2 = aws.credential(second.issued_access_key_id)
    assert cred2.access_key_id != cred1.access_key_id
    wait_until(lambda: sm_reqs(aws, access_key_id=cred2.access_key_id), timeout=3 * SLOW,
               what="a request signed with the new keys")
    assert all(r.status == 200 for r in sm_reqs(aws))
    assert d.stop() == 0
    log = d.log_text()
    assert "credentials from web identity, temporary, expire in" in log
    for s in (jwt1, jwt2, cred1.secret_access_key, cred1.session_token,
              cred2.secret_access_key, cred2.session_token):
        assert s not in log


@pytest.mark.fuse
def test_web_identity_rejected_by_sts_is_reported_and_retried(sandbox, aws):
    bad = "eyJ" + rand_token(80)
    aws.add_secret("app/key", string=rand_token(32))
    env, _ = web_identity_env(sandbox, aws, bad)
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), env,
              top={"startup_timeout": "1s"})
    assert errno_of(lambda: d.read("key")) == "ENOENT"
    d.wait_log(r"source aws:app/key: .*failed.*STS AssumeRoleWithWebIdentity: HTTP 400 "
               r"InvalidIdentityToken")
    assert d.alive()
    assert not sm_reqs(aws), "no Secrets Manager request without credentials"
    assert bad not in d.log_text()
    # The identity provider is fixed: the next attempt succeeds.
    aws.allow_web_identity(ROLE, bad)
    wait_until(lambda: d.read("key") == aws.get_value("app/key"), timeout=15 * SLOW,
               what="the secret after STS accepts the token")


# =========================================================================== container

@pytest.mark.fuse
@pytest.mark.parametrize("style", ["pod-identity", "ecs"])
def test_container_credentials_with_authorization_token(sandbox, aws, style):
    token = rand_token(48)
    path = aws.add_container_endpoint("/v1/credentials", token=token, style=style)
    value = rand_token(32)
    aws.add_secret("app/key", string=value)
    extra = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": aws.url + path}
    if style == "pod-identity":
        extra["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = write_private(sandbox, "eks-token",
                                                                         token)
    else:
        extra["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), clean_env(sandbox, **extra))
    assert d.read("key") == value
    (creq,) = aws.find_requests(kind="container")
    assert creq.method == "GET" and creq.path == path and creq.status == 200
    assert creq.header("Authorization") == token
    cred = aws.container_credentials(path)
    assert_all_signed_ok(aws, cred.access_key_id, cred.session_token)
    assert token.encode() not in environ_of(d.pid)
    assert d.stop() == 0
    log = d.log_text()
    assert "credentials from container credentials" in log
    assert token not in log and cred.session_token not in log


@pytest.mark.fuse
def test_container_token_file_is_read_again_at_each_refresh(sandbox, aws):
    v1 = rand_token(32)
    aws.add_secret("app/key", string=v1)
    d, _ = start_container(sandbox, aws, {"key": sm("app/key")})
    assert d.read("key") == v1
    # The agent rotated its token: the endpoint now wants the new one,
    # written to the same file.
    token2 = rand_token(48)
    aws.add_container_endpoint("/v1/credentials", token=token2, style="pod-identity")
    replace_private(sandbox.file("eks"), token2)
    mark = last_seq(aws)
    aws.expire_credentials()
    v2 = rand_token(32)
    aws.rotate("app/key", v2)
    wait_until(lambda: d.read("key") == v2, timeout=3 * SLOW, what="served with new credentials")
    fetches = [r for r in aws.find_requests(kind="container") if r.seq > mark]
    assert len(fetches) == 1 and fetches[0].status == 200, fetches
    assert fetches[0].header("Authorization") == token2


@pytest.mark.fuse
def test_container_credentials_wrong_token_is_reported(sandbox, aws):
    path = aws.add_container_endpoint("/v1/credentials", token=rand_token(48))
    aws.add_secret("app/key", string=rand_token(32))
    wrong = rand_token(48)
    env = clean_env(sandbox, AWS_CONTAINER_CREDENTIALS_FULL_URI=aws.url + path,
                    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=write_private(sandbox, "tok", wrong))
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), env,
              top={"startup_timeout": "1s"})
    assert errno_of(lambda: d.read("key")) == "ENOENT"
    d.wait_log(r"source aws:app/key: .*failed.*container credentials endpoint: HTTP 403")
    assert aws.find_requests(kind="container", status=403)
    assert not sm_reqs(aws)
    assert d.alive() and wrong not in d.log_text()


def _container_refusal_cases():
    ip = non_loopback_ipv4()
    cases = [pytest.param("http://example.com/creds", None, id="plain_http_remote_host")]
    # The fake listens on this machine's non-loopback address to see
    # whether anything is sent there; in the userinfo cases the part
    # before '@' looks like an allowed host, while curl connects to the
    # host after it.
    for uri, name in (("http://{ip}:{port}/creds", "plain_http_non_loopback_ip"),
                      ("http://127.0.0.1:80@{ip}:{port}/creds", "userinfo_127_with_port"),
                      ("http://localhost:x@{ip}:{port}/creds", "userinfo_localhost"),
                      ("http://[::1]@{ip}:{port}/creds", "userinfo_ipv6_loopback")):
        marks = () if ip else pytest.mark.skip(reason="no non-loopback IPv4 address")
        cases.append(pytest.param(uri, ip, id=name, marks=marks))
    return cases


@pytest.mark.fuse
@pytest.mark.parametrize("uri,ip", _container_refusal_cases())
def test_container_full_uri_over_http_to_a_remote_host_is_refused(sandbox, make_aws, uri, ip):
    aws = make_aws(host=ip or "127.0.0.1")
    token = rand_token(48)
    aws.add_container_endpoint("/creds", token=token)
    aws.add_secret("app/key", string=rand_token(32))
    uri = uri.format(ip=ip, port=aws.port)
    env = clean_env(sandbox, AWS_CONTAINER_CREDENTIALS_FULL_URI=uri,
                    AWS_CONTAINER_AUTHORIZATION_TOKEN=token)
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), env,
              top={"startup_timeout": "1s"}, wait=False)
    refused = (r"AWS_CONTAINER_CREDENTIALS_FULL_URI must be https:// or http:// on a "
               r"loopback address")
    # Refused at start-up or at the first fetch; either way, nothing is sent.
    wait_until(lambda: aws.find_requests(kind="container") or re.search(refused, d.log_text()),
               timeout=5 * SLOW, what="the refusal (or a request)")
    sent = aws.find_requests(kind="container")
    assert not sent, f"the container token was sent in the clear to {uri}: {sent}"
    assert re.search(refused, d.log_text())
    if d.alive():
        d.wait_mounted()
        assert errno_of(lambda: d.read("key")) == "ENOENT"
    assert not sm_reqs(aws)
    assert token not in d.log_text()


# =========================================================================== IMDSv2

@pytest.mark.fuse
def test_imdsv2_token_then_role_then_credentials(sandbox, aws):
    aws.set_instance_role("secretfs-node")
    value = rand_token(32)
    aws.add_secret("app/key", string=value)
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), clean_env(sandbox, imds=aws.url))
    assert d.read("key") == value
    imds = aws.find_requests(kind="imds")
    assert [(r.method, r.op) for r in imds[:3]] == [
        ("PUT", "token"), ("GET", "list-roles"), ("GET", "credentials")], imds
    put, roles, creds = imds[:3]
    assert put.header("X-aws-ec2-metadata-token-ttl-seconds") and put.status == 200
    assert roles.path == "/latest/meta-data/iam/security-credentials/"
    assert creds.path == "/latest/meta-data/iam/security-credentials/secretfs-node"
    with aws._lock:
        issued = set(aws._imds_tokens)
    for r in imds:
        if r.method == "GET":
            assert r.header("X-aws-ec2-metadata-token") in issued, r
            assert r.status == 200, r
    cred = aws.imds_credentials()
    assert_all_signed_ok(aws, cred.access_key_id, cred.session_token)
    assert sm_reqs(aws)[0].seq > creds.seq
    d.wait_log(r"credentials from IMDSv2, temporary")


STARTUP_FAILURES = {
    "no_source": ({}, r"no AWS credentials: the environment, web identity, "
                      r"profile default and container credentials are not configured, "
                      r"and IMDS is disabled"),
    "credential_process_profile": (
        {"profile": "[default]\ncredential_process = /usr/bin/false\n"},
        r"profile default uses credential_process, which secretfs does not support"),
    "sso_profile": (
        {"profile": "[profile dev]\nsso_session = corp\nregion = us-east-1\n",
         "AWS_PROFILE": "dev"},
        r"profile dev uses sso_session"),
}


@pytest.mark.fuse
@pytest.mark.parametrize("case", sorted(STARTUP_FAILURES))
def test_no_usable_credential_source_fails_start_up(sandbox, aws, case):
    setup, expected = STARTUP_FAILURES[case]
    extra = {}
    if "profile" in setup:
        extra["AWS_CONFIG_FILE"] = write_private(sandbox, "aws-config", setup["profile"])
    if "AWS_PROFILE" in setup:
        extra["AWS_PROFILE"] = setup["AWS_PROFILE"]
    aws.add_secret("app/key", string=rand_token(32))
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), clean_env(sandbox, **extra),
              wait=False)
    rc = call_with_timeout(lambda: d.proc.wait(), what="secretfs to exit")
    assert rc == 5, d.log_text()                 # start-up failure
    log = d.log_text()
    assert re.search(expected, log), log
    if case == "no_source":
        assert "IMDS" in log
    assert not aws.find_requests()


# =========================================================================== credential refresh

@pytest.mark.fuse
@pytest.mark.parametrize("source", ["web_identity", "container"])
def test_temporary_credentials_are_replaced_before_they_expire(sandbox, make_aws, source):
    life = 6
    aws = make_aws(credential_lifetime=life)
    v1 = rand_token(32)
    aws.add_secret("app/key", string=v1)
    starter, kind = {"web_identity": (start_web_identity, "sts"),
                     "container": (start_container, "container")}[source]
    d, _ = starter(sandbox, aws, {"key": sm("app/key")})
    assert d.read("key") == v1
    wait_until(lambda: len(issued_keys(aws, kind)) >= 3, timeout=(2.5 * life + 2) * SLOW,
               interval=0.1, what="two replacements of the temporary credentials")
    v2 = rand_token(32)
    aws.rotate("app/key", v2)
    wait_until(lambda: d.read("key") == v2, timeout=3 * SLOW, what="a rotation served")
    keys = issued_keys(aws, kind)
    wait_until(lambda: sm_reqs(aws, access_key_id=keys[-1]), timeout=3 * SLOW,
               what="requests signed with the latest keys")
    for old, new in zip(keys, keys[1:]):
        c_old, c_new = aws.credential(old), aws.credential(new)
        first_new = sm_reqs(aws, access_key_id=new)
        assert first_new, f"keys {new} were fetched but never used"
        # Fetched, and used, before the previous keys expired (the fake's
        # clock is real time here: nothing calls advance()).
        assert c_new.issued < c_old.expires - 0.5, (c_new, c_old)
        assert first_new[0].time < c_old.expires, (first_new[0], c_old)
        # ... and once switched, the old keys are no longer used.
        assert not [r for r in sm_reqs(aws, access_key_id=old) if r.seq > first_new[0].seq]
    bad = [r for r in sm_reqs(aws) if r.status != 200]
    assert not bad, bad
    log = d.log_text()
    assert "ExpiredToken" not in log and "expired early" not in log
    assert not lines_matching(log, r"failed")


@pytest.mark.fuse
def test_idle_temporary_credentials_are_refreshed_at_half_their_life(sandbox, make_aws):
    # No Secrets Manager request after start-up (refresh 1h): only the
    # backend's own schedule can replace the credentials, at half their
    # life since they are shorter than 30 minutes.
    life = 6
    aws = make_aws(credential_lifetime=life)
    aws.add_secret("app/key", string=rand_token(32))
    d, _ = start_web_identity(sandbox, aws, {"key": sm("app/key", refresh="1h")})
    first = sts_calls(aws)[0]
    bound = (life + 1) * SLOW
    try:
        wait_until(lambda: len(sts_calls(aws)) >= 2, timeout=bound, interval=0.1,
                   what="credentials refreshed while idle")
    except WaitTimeout:
        pytest.fail(f"temporary credentials living {life} s were not refreshed within "
                    f"{bound:.0f} s while no request was made", pytrace=False)
    second = sts_calls(aws)[1]
    at = second.time - first.time
    # Half of a life counted in whole seconds: 2-4 s of 6.
    assert 0.3 * life <= at <= 0.7 * life + 0.5 * SLOW, f"refreshed after {at:.2f} s of {life}"
    assert d.alive()


def start_imds(sandbox, aws, secrets, **kw):
    aws.set_instance_role("secretfs-node")
    return start(sandbox, secrets, backend(aws), clean_env(sandbox, imds=aws.url), **kw), None


@pytest.mark.fuse
@pytest.mark.parametrize("source", ["web_identity", "container", "imds"])
def test_expired_token_exception_refreshes_at_once_and_retries(sandbox, aws, source):
    v1 = rand_token(32)
    aws.add_secret("app/key", string=v1)
    starter, kind = {"web_identity": (start_web_identity, "sts"),
                     "container": (start_container, "container"),
                     "imds": (start_imds, "imds")}[source]
    d, _ = starter(sandbox, aws, {"key": sm("app/key")})
    assert d.read("key") == v1
    (old,) = issued_keys(aws, kind)
    mark = last_seq(aws)
    assert aws.expire_credentials(old) == 1    # revoked early, an hour before its end
    wait_until(lambda: len(issued_keys(aws, kind)) >= 2, timeout=3 * SLOW,
               what="new credentials after ExpiredTokenException")
    new = issued_keys(aws, kind)[1]
    wait_until(lambda: sm_reqs(aws, access_key_id=new), timeout=2 * SLOW,
               what="the retried request")
    expired = sm_reqs(aws, since=mark, error="ExpiredTokenException")
    assert len(expired) == 1, expired
    failed = expired[0]
    assert failed.access_key_id == old
    retry = [r for r in sm_reqs(aws, since=failed.seq)][0]
    assert retry.access_key_id == new and retry.status == 200, retry
    assert (retry.op, retry.secret) == (failed.op, failed.secret)
    fetches = [r for r in aws.find_requests(kind=kind) if r.seq > failed.seq]
    assert fetches and fetches[-1].seq < retry.seq
    assert retry.time - failed.time < 1.0 * SLOW, "the retry should follow at once"
    # One refresh: no more credential fetches while the new keys are fresh
    # (IMDS: token, role, credentials).
    holds_for(lambda: len(issued_keys(aws, kind)) == 2, 1.5, what="a single refresh")
    per_refresh = 3 if kind == "imds" else 1
    assert len([r for r in aws.find_requests(kind=kind) if r.seq > mark]) == per_refresh
    d.wait_log(r"ExpiredTokenException; getting credentials again")
    # The failure never reached the scheduler: no failed read or probe.
    assert not lines_matching(d.log_text(), r"source aws:app/key: .*failed")
    assert d.read("key") == v1
    v2 = rand_token(32)
    aws.rotate("app/key", v2)
    wait_until(lambda: d.read("key") == v2, timeout=3 * SLOW, what="serving with the new keys")


# =========================================================================== probes and rotation

@pytest.mark.fuse
def test_describe_secret_probes_and_one_get_per_rotation(sandbox, aws):
    doc1 = {"user": "app", "password": rand_token(24)}
    aws.add_secret("app/db", string=json.dumps(doc1))
    marker = sandbox.file("on-change.log")
    on_change = {"command": ["/bin/sh", "-c", f"echo \"$SECRETFS_FILES\" >> {marker}"],
                 "debounce": "200ms"}
    secrets = {"db/password": sm("app/db", field="password", on_change=on_change),
               "db.json": sm("app/db", format="json", on_change=on_change)}
    env, akid, _ = static_keys(aws, sandbox)
    d = start(sandbox, secrets, backend(aws), env)
    assert d.read("db/password") == doc1["password"]
    gets = lambda: sm_reqs(aws, "GetSecretValue")            # noqa: E731
    probes = lambda: sm_reqs(aws, "DescribeSecret")          # noqa: E731

    wait_until(lambda: len(probes()) >= 4, timeout=5 * SLOW, interval=0.05,
               what="four DescribeSecret probes")
    assert len(gets()) == 1, "no GetSecretValue while the version is unchanged"
    ps = probes()
    gaps = [b.time - a.time for a, b in zip(ps, ps[1:])]
    assert all(0.8 <= g <= 1.6 * SLOW for g in gaps), f"probe intervals {gaps}"
    assert all(r.status == 200 and r.json == {"SecretId": "app/db"} for r in ps)

    doc2 = {"user": "app", "password": rand_token(24)}
    aws.rotate("app/db", json.dumps(doc2))
    wait_until(lambda: d.read("db/password") == doc2["password"], timeout=2.5 * SLOW,
               what="the rotated value")
    assert json.loads(d.read("db.json")) == doc2
    seen = len(probes())
    wait_until(lambda: len(probes()) >= seen + 2, timeout=3 * SLOW, what="two more probes")
    assert len(gets()) == 2, "exactly one GetSecretValue for the rotation, shared by two files"
    second = gets()[1]
    before = [r for r in probes() if r.seq < second.seq]
    assert before[-1].seq == second.seq - 1, "the read follows the probe that saw the version"
    assert second.json == {"SecretId": "app/db"}
    d.wait_log(r"source aws:app/db: version \S+ -> " + re.escape(aws.version_id("app/db")))

    wait_until(lambda: os.path.exists(marker), timeout=3 * SLOW, what="on_change")
    holds_for(lambda: len(read_lines(marker)) == 1, 1.5, what="on_change ran once for both files")
    assert set(read_lines(marker)[0].split()) == {"db/password", "db.json"}
    assert_all_signed_ok(aws, akid)


@pytest.mark.fuse
def test_version_stage_and_version_id_pins(sandbox, aws):
    k1, k2, k3 = (rand_token(32) for _ in range(3))
    aws.add_secret("app/key", string=k1)
    aws.rotate("app/key", k2)                  # AWSCURRENT k2, AWSPREVIOUS k1
    o1, o2 = rand_token(32), rand_token(32)
    aws.add_secret("app/old", string=o1)
    vid1 = aws.version_id("app/old")
    aws.rotate("app/old", o2)
    secrets = {"current": sm("app/key"), "previous": sm("app/key", version_stage="AWSPREVIOUS"),
               "pinned": sm("app/old", version_id=vid1), "latest-old": sm("app/old")}
    env, _, _ = static_keys(aws, sandbox)
    d = start(sandbox, secrets, backend(aws), env)
    assert d.read("current") == k2
    assert d.read("previous") == k1
    assert d.read("pinned") == o1
    assert d.read("latest-old") == o2

    aws.rotate("app/key", k3)                  # AWSCURRENT k3, AWSPREVIOUS k2
    o3 = rand_token(32)
    aws.rotate("app/old", o3)
    wait_until(lambda: d.read("current") == k3, timeout=2.5 * SLOW, what="current rotated")
    wait_until(lambda: d.read("previous") == k2, timeout=2.5 * SLOW, what="previous moved")
    wait_until(lambda: d.read("latest-old") == o3, timeout=2.5 * SLOW, what="latest-old")
    seen = len(sm_reqs(aws, "DescribeSecret", "app/old"))
    wait_until(lambda: len(sm_reqs(aws, "DescribeSecret", "app/old")) >= seen + 2,
               timeout=3 * SLOW, what="two more probes")
    assert d.read("pinned") == o1

    pinned = [r for r in sm_reqs(aws, "GetSecretValue", "app/old") if "VersionId" in r.json]
    assert len(pinned) == 1, "a pinned version is read once and never again"
    assert pinned[0].json == {"SecretId": "app/old", "VersionId": vid1}
    staged = [r for r in sm_reqs(aws, "GetSecretValue", "app/key") if "VersionStage" in r.json]
    assert len(staged) == 2 and all(r.json["VersionStage"] == "AWSPREVIOUS" for r in staged)
    assert all("VersionId" not in r.json for r in sm_reqs(aws, "GetSecretValue", "app/key"))
    assert len(sm_reqs(aws, "GetSecretValue", "app/key")) == 4, "one read per file per change"
    assert len(sm_reqs(aws, "GetSecretValue", "app/old")) == 3


@pytest.mark.fuse
def test_version_id_pin_alone_needs_no_probe(sandbox, aws):
    v1 = rand_token(32)
    aws.add_secret("app/old", string=v1)
    vid1 = aws.version_id("app/old")
    env, _, _ = static_keys(aws, sandbox)
    d = start(sandbox, {"pinned": sm("app/old", version_id=vid1)}, backend(aws), env)
    assert d.read("pinned") == v1
    aws.rotate("app/old", rand_token(32))
    holds_for(lambda: len(sm_reqs(aws)) == 1, 2.5, what="no request after the pinned read")
    assert d.read("pinned") == v1
    assert sm_reqs(aws)[0].op == "GetSecretValue"


# =========================================================================== outages

OUTAGES = {
    # kind: (install the fault, pattern of the logged failure)
    "throttle": (lambda aws: aws.fault_throttle("sm", times=3, secret="app/key"),
                 r"HTTP 400 ThrottlingException: Rate exceeded"),
    "status_500": (lambda aws: aws.fault_status("sm", 500, times=None, secret="app/key"),
                   r"HTTP 500 InternalServiceError"),
    "garbage": (lambda aws: aws.fault_garbage("sm", times=None, secret="app/key"),
                r"HTTP 200 with a malformed body"),
    "hang": (lambda aws: aws.fault_hang("sm", seconds=30, times=None, secret="app/key"),
             r"Timeout was reached"),
}


@pytest.mark.fuse
@pytest.mark.parametrize("kind", sorted(OUTAGES))
def test_outage_keeps_last_good_value_and_recovers(sandbox, aws, kind):
    install, why = OUTAGES[kind]
    v1, v2, other = rand_token(32), rand_token(32), rand_token(32)
    aws.add_secret("app/key", string=v1)
    aws.add_secret("app/other", string=other)
    env, _, _ = static_keys(aws, sandbox)
    be = backend(aws, timeout="2s")
    d = start(sandbox, {"key": sm("app/key"), "other": sm("app/other")}, be, env)
    assert d.read("key") == v1
    mark = last_seq(aws)
    with aws._lock:                            # no probe sees v2 before the fault
        install(aws)
        aws.rotate("app/key", v2)
    d.wait_log(r"source aws:app/key: version probe failed .*DescribeSecret app/key: .*"
               + why + r".*serving the last good value", timeout=(12 if kind == "hang" else 5)
               * SLOW)
    # Readers are answered at once, with the last good value.
    assert call_with_timeout(lambda: d.read("key"), timeout=2) == v1
    assert d.read("other") == other
    if kind != "throttle":
        aws.clear_faults()                     # throttling ends by itself after 3
    wait_until(lambda: d.read("key") == v2, timeout=15 * SLOW, what="recovery")
    faulted = [r for r in sm_reqs(aws, since=mark) if r.fault]
    assert faulted and all(r.secret == "app/key" for r in faulted)
    if kind == "throttle":
        assert len(faulted) == 3
    assert not [r for r in sm_reqs(aws, "GetSecretValue", "app/other") if r.seq > mark]
    assert d.alive()


@pytest.mark.fuse
def test_retry_after_of_a_503_is_honoured(sandbox, aws):
    v1, v2 = rand_token(32), rand_token(32)
    aws.add_secret("app/key", string=v1)
    env, _, _ = static_keys(aws, sandbox)
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), env)
    assert d.read("key") == v1
    with aws._lock:
        aws.fault_status("DescribeSecret", 503, times=1, headers={"Retry-After": "3"})
        aws.rotate("app/key", v2)
    wait_until(lambda: d.read("key") == v2, timeout=8 * SLOW, what="served after the pause")
    (limited,) = [r for r in sm_reqs(aws) if r.fault]
    assert limited.status == 503
    after = sm_reqs(aws, since=limited.seq)
    gap = after[0].time - limited.time
    assert gap >= 2.9, f"Retry-After: 3 not honoured (retried after {gap:.2f} s)"
    d.wait_log(r"DescribeSecret app/key: HTTP 503 ServiceUnavailableException")


# =========================================================================== AWS errors

@pytest.mark.fuse
def test_unknown_secret_is_reported_by_name_and_others_are_served(sandbox, aws):
    ok = rand_token(32)
    aws.add_secret("app/ok", string=ok)
    env, _, _ = static_keys(aws, sandbox)
    arn = f"arn:aws:secretsmanager:{aws.region}:{aws.account_id}:secret:app/missing-AbCdEf"
    d = start(sandbox, {"ok": sm("app/ok"), "missing": sm("app/missing"), "by-arn": sm(arn)},
              backend(aws), env, top={"startup_timeout": "1s"})
    assert d.read("ok") == ok
    assert errno_of(lambda: d.read("missing")) == "ENOENT"
    assert errno_of(lambda: d.read("by-arn")) == "ENOENT"
    d.wait_log(r"source aws:app/missing: read failed .*GetSecretValue app/missing: HTTP 400 "
               r"ResourceNotFoundException: Secrets Manager can't find the specified secret")
    d.wait_log(r"GetSecretValue " + re.escape(arn) + r": HTTP 400 ResourceNotFoundException")
    ok2 = rand_token(32)
    aws.rotate("app/ok", ok2)
    wait_until(lambda: d.read("ok") == ok2, timeout=2.5 * SLOW, what="the other secret updated")
    # Created later: served after a retry.
    late = rand_token(32)
    aws.add_secret("app/missing", string=late)
    wait_until(lambda: d.read("missing") == late, timeout=15 * SLOW, what="the late secret")


@pytest.mark.fuse
def test_an_over_long_version_id_is_refused_not_cut(sandbox, aws):
    ok = rand_token(32)
    aws.add_secret("app/ok", string=ok)
    aws.add_secret("app/long", string=rand_token(32), version_id="v" * 200)
    env, _, _ = static_keys(aws, sandbox)
    d = start(sandbox, {"ok": sm("app/ok"), "long": sm("app/long")}, backend(aws), env,
              top={"startup_timeout": "1s"})
    assert d.read("ok") == ok
    assert errno_of(lambda: d.read("long")) == "ENOENT"
    d.wait_log(r"source aws:app/long: read failed .*GetSecretValue app/long: VersionId is "
               r"longer than 127 bytes")


MIDRUN_ERRORS = {
    "access_denied": (lambda aws: aws.deny_access(secret="app/key"),
                      lambda aws: aws.allow_access(),
                      r"version probe failed .*(DescribeSecret|GetSecretValue) app/key: "
                      r"HTTP 400 AccessDeniedException: User: .* is not authorized"),
    "decryption_failure": (lambda aws: aws.set_decryption_failure("app/key"),
                           lambda aws: aws.set_decryption_failure("app/key", False),
                           r"read failed .*GetSecretValue app/key: HTTP 400 DecryptionFailure: "
                           r"Secrets Manager can't decrypt"),
    "scheduled_deletion": (lambda aws: aws.delete_secret("app/key"),
                           lambda aws: aws.restore_secret("app/key"),
                           r"version probe failed .*DescribeSecret app/key: the secret is "
                           r"scheduled for deletion"),
}


@pytest.mark.fuse
@pytest.mark.parametrize("case", sorted(MIDRUN_ERRORS))
def test_aws_error_keeps_last_good_value_names_the_secret_and_spares_others(
        sandbox, aws, case):
    fail, fix, pattern = MIDRUN_ERRORS[case]
    v1, v2 = rand_token(32), rand_token(32)
    aws.add_secret("app/key", string=v1)
    aws.add_secret("app/other", string=rand_token(32))
    env, _, _ = static_keys(aws, sandbox)
    d = start(sandbox, {"key": sm("app/key"), "other": sm("app/other")}, backend(aws), env)
    assert d.read("key") == v1
    with aws._lock:
        fail(aws)
        aws.rotate("app/key", v2)
    d.wait_log(r"source aws:app/key: " + pattern + r".*serving the last good value",
               timeout=4 * SLOW)
    assert d.read("key") == v1
    for _ in range(2):
        o = rand_token(32)
        aws.rotate("app/other", o)
        wait_until(lambda: d.read("other") == o, timeout=2.5 * SLOW, what="other keeps updating")
    assert d.read("key") == v1
    assert v1 not in d.log_text() and v2 not in d.log_text()
    fix(aws)
    wait_until(lambda: d.read("key") == v2, timeout=15 * SLOW, what="recovery")


@pytest.mark.fuse
def test_a_role_without_describe_secret_still_sees_rotations(sandbox, aws):
    # Many roles are granted GetSecretValue only: the probe falls back to a
    # full read (logged once), so rotations still arrive.
    v1, v2 = rand_token(32), rand_token(32)
    aws.add_secret("app/key", string=v1)
    aws.deny_access(secret="app/key", ops=["DescribeSecret"])
    env, _, _ = static_keys(aws, sandbox)
    d = start(sandbox, {"key": sm("app/key")}, backend(aws), env)
    assert d.read("key") == v1
    d.wait_log(r"checking for new versions with GetSecretValue instead")
    aws.rotate("app/key", v2)
    wait_until(lambda: d.read("key") == v2, timeout=5 * SLOW, what="the rotation")
    wait_until(lambda: aws.count(op="GetSecretValue", secret="app/key") >= 4,
               timeout=5 * SLOW, what="more interval probes")
    assert len(lines_matching(d.log_text(), r"checking for new versions")) == 1
    # Only the first DescribeSecret was tried.
    assert aws.count(op="DescribeSecret", secret="app/key") == 1


# =========================================================================== config

AWS_CHECK_CASES = {
    "unknown_backend_key": (lambda be, s: be.update(regoin="us-east-1"),
                            r"backends\.aws\.regoin: unknown key \"regoin\""),
    "bad_endpoint": (lambda be, s: be.update(endpoint="secretsmanager.local:4566"),
                     r"backends\.aws\.endpoint: must be an https:// URL"),
    "bad_sts_endpoint": (lambda be, s: be.update(sts_endpoint="ftp://sts.local"),
                         r"backends\.aws\.sts_endpoint: must be an https:// URL"),
    "region_not_a_string": (lambda be, s: be.update(region=1),
                            r"backends\.aws\.region: must be a non-empty string"),
    "unknown_tls_key": (lambda be, s: be.update(tls={"insecure": True}),
                        r"backends\.aws\.tls\.insecure: unknown key"),
    "bad_timeout": (lambda be, s: be.update(timeout="soon"), r"backends\.aws\.timeout: "),
    "version_id_and_stage": (
        lambda be, s: s.update(version_id="a" * 32, version_stage="AWSPREVIOUS"),
        r"secrets\.api: give version_id or version_stage, not both"),
    "version_stage_not_string": (lambda be, s: s.update(version_stage=["AWSPREVIOUS"]),
                                 r"secrets\.api\.version_stage: must be a non-empty string"),
    "version_id_empty": (lambda be, s: s.update(version_id=""),
                         r"secrets\.api\.version_id: must be a non-empty string"),
    "unknown_secret_key": (lambda be, s: s.update(version=2),
                           r"secrets\.api\.version: unknown key"),
}


def _check(workdir, be, secret):
    cfg = workdir.config({"api": secret}, backends={"aws": be})
    workdir.write_config(cfg, workdir.file("cfg.json"))
    return workdir.run(["--config", "cfg.json", "--check"], env=clean_env(workdir))


@pytest.mark.parametrize("case", sorted(AWS_CHECK_CASES))
def test_check_reports_aws_config_errors_with_key_paths(workdir, case):
    mutate, expected = AWS_CHECK_CASES[case]
    be = {"type": "aws", "region": "us-east-1"}
    secret = {"backend": "aws", "path": "prod/app"}
    mutate(be, secret)
    r = _check(workdir, be, secret)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"cfg\.json: " + expected, r.stderr), r.stderr


def test_check_accepts_a_valid_aws_config(workdir):
    be = {"type": "aws", "region": "eu-west-1",
          "endpoint": "https://secretsmanager.eu-west-1.amazonaws.com",
          "sts_endpoint": "https://sts.eu-west-1.amazonaws.com", "profile": "payments",
          "tls": {"ca_file": "/etc/hostname"}, "timeout": "30s"}
    secret = {"backend": "aws", "path": "prod/payments", "field": "api_key",
              "version_stage": "AWSPREVIOUS", "refresh": "1m"}
    r = _check(workdir, be, secret)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration OK"


def test_no_region_anywhere_fails_start_up(workdir):
    be = {"type": "aws", "endpoint": "http://127.0.0.1:9"}
    cfg = workdir.config({"api": {"backend": "aws", "path": "prod/app"}},
                         backends={"aws": be})
    workdir.write_config(cfg, workdir.file("cfg.json"))
    env = clean_env(workdir, AWS_ACCESS_KEY_ID="AKIA" + rand_token(16).upper(),
                    AWS_SECRET_ACCESS_KEY=rand_token(40))
    r = workdir.run(["--config", "cfg.json"], env=env)
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert re.search(r"backend aws: no region: set \"region\", AWS_REGION, AWS_DEFAULT_REGION "
                     r"or region in profile default", r.stderr), r.stderr


@pytest.mark.fuse
def test_region_and_endpoints_from_the_environment(sandbox, aws):
    # No region or endpoints in the config: AWS_REGION, and the
    # service-specific endpoint variables before AWS_ENDPOINT_URL.
    value = rand_token(32)
    aws.add_secret("app/key", string=value)
    jwt = "eyJ" + rand_token(80)
    aws.allow_web_identity(ROLE, jwt)
    env, _ = web_identity_env(sandbox, aws, jwt, session=None, AWS_REGION=aws.region,
                              AWS_DEFAULT_REGION="eu-west-3",
                              AWS_ENDPOINT_URL_SECRETS_MANAGER=aws.url + "/",
                              AWS_ENDPOINT_URL_STS=aws.url + "/",
                              AWS_ENDPOINT_URL="http://127.0.0.1:9")
    d = start(sandbox, {"key": sm("app/key")}, {"type": "aws"}, env)
    assert d.read("key") == value
    assert len(sts_calls(aws)) == 1
    # Without AWS_ROLE_SESSION_NAME a session name is made up.
    assert re.fullmatch(r"secretfs-\d+", sts_params(sts_calls(aws)[0])["RoleSessionName"])
    assert all(r.path == "/" for r in aws.find_requests())
    cred = aws.credential(sts_calls(aws)[0].issued_access_key_id)
    assert_all_signed_ok(aws, cred.access_key_id, cred.session_token)
    d.wait_log(rf"AWS Secrets Manager at {re.escape(aws.url)} \(region {aws.region}\)")


# =========================================================================== HTTPS

@pytest.mark.fuse
@pytest.mark.parametrize("ca", ["config", "AWS_CA_BUNDLE", "none"])
def test_https_endpoint_verified_with_the_ca(sandbox, make_aws, vault_pki, ca):
    aws = make_aws(tls_cert=vault_pki.server_cert, tls_key=vault_pki.server_key)
    assert aws.url.startswith("https://")
    value = rand_token(32)
    aws.add_secret("app/key", string=value)
    jwt = "eyJ" + rand_token(80)
    aws.allow_web_identity(ROLE, jwt)
    extra = {"AWS_CA_BUNDLE": vault_pki.ca_cert} if ca == "AWS_CA_BUNDLE" else {}
    env, _ = web_identity_env(sandbox, aws, jwt, **extra)
    be = backend(aws, ca_file=vault_pki.ca_cert if ca == "config" else None)
    d = start(sandbox, {"key": sm("app/key")}, be, env, top={"startup_timeout": "1s"})
    if ca != "none":
        assert d.read("key") == value
        assert len(sts_calls(aws)) == 1, "STS over the same verified TLS"
        assert all(r.status == 200 for r in sm_reqs(aws))
    else:
        assert errno_of(lambda: d.read("key")) == "ENOENT"
        d.wait_log(r"source aws:app/key: .*failed.*(certificate|SSL)")
        assert not aws.find_requests(), "no request may pass an unverified handshake"
        assert aws.tls_failures


# =========================================================================== memory

@pytest.mark.fuse
@pytest.mark.parametrize("source", ["web_identity", "container"])
def test_no_plaintext_values_keys_or_tokens_at_rest(sandbox, make_aws, source):
    life = 6
    aws = make_aws(credential_lifetime=life)
    doc = {"user": "app", "password": rand_token(40)}
    plain, blob = rand_token(40), rand_token(40).encode() + b"\x00\xff"
    aws.add_secret("app/db", string=json.dumps(doc))
    aws.add_secret("app/plain", string=plain)
    aws.add_secret("app/blob", binary=blob)
    secrets = {"db/password": sm("app/db", field="password"), "db.env": sm("app/db",
                                                                           format="env"),
               "plain": sm("app/plain"), "blob": sm("app/blob")}
    if source == "web_identity":
        d, token = start_web_identity(sandbox, aws, secrets)
        kind, control = "sts", ROLE
    else:
        d, token = start_container(sandbox, aws, secrets, token_in_env=True)
        kind, control = "container", aws.url + "/v1/credentials"
    for name in secrets:
        d.read_bytes(name)
    rotated = rand_token(40)
    aws.rotate("app/plain", rotated)
    wait_until(lambda: d.read("plain") == rotated, timeout=2.5 * SLOW, what="the rotation")
    wait_until(lambda: len(issued_keys(aws, kind)) >= 2, timeout=(life + 1) * SLOW,
               interval=0.1, what="a credential refresh")
    new = issued_keys(aws, kind)[-1]
    wait_until(lambda: sm_reqs(aws, access_key_id=new), timeout=2 * SLOW,
               what="a request with the new keys")
    assert d.read("db/password") == doc["password"]
    assert parse_env_file(d.read("db.env")) == doc
    labels = {doc["password"].encode(): "JSON field password", plain.encode(): "old value",
              rotated.encode(): "rotated value", blob: "binary value",
              token.encode(): f"{source} token"}
    if SANITIZE and source == "container":
        # The sanitizer runtime keeps its own copy of the initial
        # environment (read from /proc/self/environ at start), out of the
        # daemon's reach: AWS_CONTAINER_AUTHORIZATION_TOKEN is in it.
        del labels[token.encode()]
    for c in aws.credentials(source=kind):
        labels[c.secret_access_key.encode()] = f"secret access key of {c.access_key_id}"
        labels[c.session_token.encode()] = f"session token of {c.access_key_id}"
    state = {}

    def clean():
        state["hits"], state["scanned"] = scan_memory(d.pid, list(labels))
        return not state["hits"]
    try:
        wait_until(clean, timeout=3 * SLOW, interval=0.2, what="no plaintext")
    except WaitTimeout:
        pytest.fail("plaintext in the daemon's memory with no file open:\n"
                    + describe_hits(state["hits"], labels), pytrace=False)
    assert state["scanned"] > 1 << 20
    # Control: the scanner does find what the daemon holds in the clear.
    hits, _ = scan_memory(d.pid, [aws.url.encode(), control.encode()])
    assert len(hits) == 2, hits.keys()


# =========================================================================== concurrency

@pytest.mark.fuse
def test_many_secrets_are_fetched_concurrently_on_a_bounded_pool(sandbox, aws):
    n, delay = 40, 0.3
    values = {f"s{i:02d}": rand_token(24) for i in range(n)}
    for name, v in values.items():
        aws.add_secret(f"app/{name}", string=v)
    aws.fault_hang("GetSecretValue", seconds=delay, times=None)   # every read takes 0.3 s
    jwt = "eyJ" + rand_token(80)
    aws.allow_web_identity(ROLE, jwt)
    env, _ = web_identity_env(sandbox, aws, jwt)
    d = start(sandbox, {name: sm(f"app/{name}", refresh="1h") for name in values},
              backend(aws), env, timeout=20 * SLOW)
    for name, v in values.items():
        assert d.read(name) == v
    gets = sm_reqs(aws, "GetSecretValue")
    assert len(gets) == n and all(r.status == 200 for r in gets)
    span = max(r.time for r in gets) - min(r.time for r in gets)
    # One after another this would take n * delay = 12 s.
    assert span < n * delay / 3, f"reads spread over {span:.1f} s: not concurrent"
    ports = {r.client[1] for r in gets}
    assert len(ports) <= 8, f"{len(ports)} connections for one AWS backend (at most 8)"
    # Forty first requests found no credentials at once: one STS call.
    (call,) = sts_calls(aws)
    cred = aws.credential(call.issued_access_key_id)
    assert_all_signed_ok(aws, cred.access_key_id, cred.session_token)
