"""The AWS Secrets Manager Agent's local API ("aws_api") against the fake
AWS (tests/fakes/fake_aws.py): the agent's documented requests, made as
its own examples make them (curl, and Python's urllib), and its answers:
the GetSecretValue JSON shape, /ping, the SSRF token from the first set of
AWS_TOKEN / AWS_SESSION_TOKEN / AWS_CONTAINER_AUTHORIZATION_TOKEN (a
file:// value names a file), refusals of a missing or wrong token and of
X-Forwarded-For, the allow-list of the config's secrets and on_demand,
and no plaintext at rest with the API enabled.
"""

import base64
import http.client
import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from helpers.aws import backend, sm, start, static_keys
from helpers.harness import (SANITIZE, SLOW, TIMEOUT, assert_no_plaintext, free_port,
                             rand_token, wait_until)

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"


@pytest.fixture
def aws(fake_aws):
    return fake_aws


def start_api(sandbox, aws, secrets, token, api=None, token_var="AWS_TOKEN", top=None):
    """secretfs with the AWS backend on the fake and "aws_api" on a free
    loopback port; returns (daemon, base URL)."""
    port = free_port()
    env, _, _ = static_keys(aws, sandbox, **{token_var: token})
    block = {"listen": f"127.0.0.1:{port}", **(api or {})}
    d = start(sandbox, secrets, backend(aws), env, top={"aws_api": block, **(top or {})})
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: get(base + "/ping")[0] == 200, timeout=5 * SLOW,
               ignore=(OSError,), what="the API listening")
    return d, base


def get(url, headers=None):
    """urllib GET, as the agent's Python example; returns (status, body)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def raw(base, method, path, headers=None, conn=None):
    """One request as sent (path not re-encoded), on conn (a kept-alive
    http.client connection) or a new one; returns (status, headers, body)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(base.split("//")[1], timeout=TIMEOUT)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read().decode()
    finally:
        if own:
            conn.close()


def curl(url, *headers):
    """curl, as the agent's shell example; returns (status, body)."""
    args = ["curl", "-sS", "--max-time", str(TIMEOUT), "-w", "\n%{http_code}"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=TIMEOUT + 5,
                         check=True).stdout
    body, _, status = out.rpartition("\n")
    return int(status), body


def test_get_answers_the_get_secret_value_shape(sandbox, aws):
    token, value = rand_token(32), rand_token(40)
    arn = aws.add_secret("app/db", string=value)
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, token)
    status, body = curl(f"{base}/secretsmanager/get?secretId=app/db",
                        f"{TOKEN_HEADER}: {token}")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["SecretString"] == value
    assert doc["ARN"] == arn and doc["Name"] == "app/db"
    assert doc["VersionId"] == aws.version_id("app/db")
    assert doc["VersionStages"] == ["AWSCURRENT"]
    # The agent's serialization: these keys in this order, CreatedDate a
    # string of epoch seconds with the fraction the service gave.
    assert list(doc) == ["ARN", "Name", "VersionId", "SecretString", "VersionStages",
                         "CreatedDate"]
    assert re.fullmatch(r"[0-9]+(\.[0-9]{1,3})?", doc["CreatedDate"]), doc["CreatedDate"]
    assert abs(float(doc["CreatedDate"]) - aws.now()) < 3600
    # The path form, by ARN too (the config names the secret by name).
    status, body = get(f"{base}/v1/app/db", {TOKEN_HEADER: token})
    assert status == 200 and json.loads(body)["SecretString"] == value


def test_ping_is_healthy_without_a_token(sandbox, aws):
    aws.add_secret("app/db", string="x")
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, rand_token(32))
    assert curl(base + "/ping") == (200, "healthy")


@pytest.mark.parametrize("headers", [{}, {TOKEN_HEADER: "wrong"}, {TOKEN_HEADER: ""}],
                         ids=["missing", "wrong", "empty"])
def test_a_missing_or_wrong_token_is_refused(sandbox, aws, headers):
    token = rand_token(32)
    aws.add_secret("app/db", string=rand_token(20))
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, token)
    before = len(aws.find_requests(kind="sm", op="GetSecretValue"))
    status, body = get(f"{base}/secretsmanager/get?secretId=app/db", headers)
    assert (status, body) == (403, "Bad Token")
    assert len(aws.find_requests(kind="sm", op="GetSecretValue")) == before


def test_x_forwarded_for_is_refused(sandbox, aws):
    token = rand_token(32)
    aws.add_secret("app/db", string=rand_token(20))
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, token)
    status, body = get(f"{base}/v1/app/db",
                       {TOKEN_HEADER: token, "X-Forwarded-For": "10.0.0.1"})
    assert (status, body) == (400, "Forwarded")


def test_token_from_a_file_url_in_the_later_variables(sandbox, aws):
    token = rand_token(32)
    path = sandbox.file("ssrf-token")
    with open(path, "w") as f:
        f.write(token + "\n")
    aws.add_secret("app/db", string="v")
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, "file://" + path,
                        token_var="AWS_CONTAINER_AUTHORIZATION_TOKEN")
    assert get(f"{base}/v1/app/db", {TOKEN_HEADER: token})[0] == 200
    # The agent's default header list has X-Vault-Token too.
    assert get(f"{base}/v1/app/db", {"X-Vault-Token": token})[0] == 200


def test_version_stage_and_version_id_follow_a_rotation(sandbox, aws):
    token, old, new = rand_token(32), rand_token(20), rand_token(20)
    aws.add_secret("app/db", string=old)
    old_id = aws.version_id("app/db")
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, token)
    aws.rotate("app/db", new)
    h = {TOKEN_HEADER: token}
    cur = json.loads(get(f"{base}/v1/app/db", h)[1])
    assert cur["SecretString"] == new and cur["VersionStages"] == ["AWSCURRENT"]
    prev = json.loads(get(f"{base}/secretsmanager/get?secretId=app/db"
                          f"&versionStage=AWSPREVIOUS", h)[1])
    assert prev["SecretString"] == old and prev["VersionId"] == old_id
    by_id = json.loads(get(f"{base}/v1/app/db?versionId={old_id}", h)[1])
    assert by_id["SecretString"] == old


NOT_FOUND = ('{"__type":"ResourceNotFoundException", '
             '"message":"Secrets Manager can\'t find the specified secret."}')


def test_only_the_configs_secrets_unless_on_demand(sandbox, aws):
    token = rand_token(32)
    aws.add_secret("app/db", string="a")
    aws.add_secret("app/other", string=rand_token(20))
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, token)
    status, body = get(f"{base}/v1/app/other", {TOKEN_HEADER: token})
    assert (status, body) == (400, NOT_FOUND)
    assert not aws.find_requests(kind="sm", op="GetSecretValue", secret="app/other")


def test_on_demand_serves_any_id_and_answers_unknown_and_denied(sandbox, aws):
    token, other = rand_token(32), rand_token(20)
    aws.add_secret("app/db", string="a")
    aws.add_secret("app/other", string=other)
    aws.add_secret("app/denied", string=rand_token(20))
    aws.deny_access(secret="app/denied")
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, token, {"on_demand": True})
    h = {TOKEN_HEADER: token}
    status, body = get(f"{base}/v1/app/other", h)
    assert status == 200 and json.loads(body)["SecretString"] == other
    status, body = get(f"{base}/v1/app/missing", h)
    assert (status, body) == (400, NOT_FOUND)
    status, body = get(f"{base}/v1/app/denied", h)
    # The service's error relayed whole, as the agent's err_response
    # writes it (the fake's message is longer than 120 bytes).
    assert status == 400
    assert re.fullmatch(r'\{"__type":"AccessDeniedException", "message":"User: \S+ is not '
                        r'authorized to perform: secretsmanager:GetSecretValue on resource: '
                        r'app/denied because no identity-based policy allows the '
                        r'secretsmanager:GetSecretValue action"\}', body), body
    assert other not in d.log_text()


def test_no_plaintext_at_rest_with_the_api_enabled(sandbox, aws):
    token, value, blob = rand_token(32), rand_token(40), rand_token(30).encode() + b"\xff"
    aws.add_secret("app/db", string=value)
    aws.add_secret("app/blob", binary=blob)
    d, base = start_api(sandbox, aws, {"db": sm("app/db"), "blob": sm("app/blob")}, token)
    for _ in range(3):
        assert json.loads(get(f"{base}/v1/app/db", {TOKEN_HEADER: token})[1])[
            "SecretString"] == value
        assert get(f"{base}/v1/app/blob", {TOKEN_HEADER: token})[0] == 200
    labels = {value.encode(): "SecretString", blob: "binary value",
              token.encode(): "SSRF token"}
    if SANITIZE:
        # The sanitizer runtime keeps its own copy of the initial
        # environment (read from /proc/self/environ at start), out of the
        # daemon's reach: AWS_TOKEN is in it.
        del labels[token.encode()]
    assert_no_plaintext(d.pid, list(labels), "at rest with the API enabled", labels)


@pytest.mark.parametrize("block,where", [
    ({"listen": "0.0.0.0:2773"}, "aws_api.listen"),
    ({"listen": "127.0.0.1:2773", "max_connections": 0}, "aws_api.max_connections"),
    ({"listen": "127.0.0.1:2773", "bogus": 1}, "aws_api"),
    ({"backend": "nope"}, "aws_api.backend"),
    ({"ssrf_headers": []}, "aws_api.ssrf_headers"),
    ({"ttl": "100ms"}, "aws_api.ttl"),
    ({"cache_size": 0}, "aws_api.cache_size"),
])
def test_check_names_the_key_path(sandbox, aws, block, where):
    cfg = sandbox.config({"db": sm("app/db")}, backends={"aws": backend(aws)},
                         aws_api=block)
    r = sandbox.run(["--config", sandbox.write_config(cfg), "--check"])
    assert r.returncode != 0
    assert where in r.stderr, r.stderr


def test_check_accepts_non_loopback_when_asked(sandbox, aws):
    cfg = sandbox.config({"db": sm("app/db")}, backends={"aws": backend(aws)},
                         aws_api={"listen": "0.0.0.0:2773", "allow_non_loopback": True})
    r = sandbox.run(["--config", sandbox.write_config(cfg), "--check"])
    assert r.returncode == 0, r.stderr


def test_requests_are_counted_by_path_and_result(sandbox, aws):
    token = rand_token(32)
    aws.add_secret("app/db", string=rand_token(20))
    tport = free_port()
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, token,
                        top={"telemetry": {"listen": f"127.0.0.1:{tport}"}})
    assert get(f"{base}/v1/app/db", {TOKEN_HEADER: token})[0] == 200
    assert get(f"{base}/secretsmanager/get?secretId=app/db")[0] == 403
    metrics = get(f"http://127.0.0.1:{tport}/metrics")[1]
    assert 'secretfs_aws_api_requests_total{path="v1",result="ok"} 1' in metrics
    assert 'secretfs_aws_api_requests_total{path="get",result="unauthorized"} 1' in metrics


def test_the_largest_values_are_served_whole(sandbox, aws):
    token = rand_token(32)
    text = ("\x01\"\\" + rand_token(29)) * 2048  # 65536 bytes, escaped up to 6x
    blob = bytes(range(256)) * 256
    aws.add_secret("app/big", string=text)
    aws.add_secret("app/bin", binary=blob)
    d, base = start_api(sandbox, aws, {"big": sm("app/big"), "bin": sm("app/bin")}, token)
    status, body = get(f"{base}/v1/app/big", {TOKEN_HEADER: token})
    assert status == 200 and json.loads(body)["SecretString"] == text
    status, body = get(f"{base}/v1/app/bin", {TOKEN_HEADER: token})
    assert status == 200 and base64.b64decode(json.loads(body)["SecretBinary"]) == blob


# ---------------------------------------------------------------- sealed cache

# A file of the mount (the config needs one); the API is asked for others.
FILLER = {"filler": sm("app/filler")}


@pytest.fixture(autouse=True)
def _filler(aws):
    aws.add_secret("app/filler", string=rand_token(20))

def test_answers_are_served_from_the_sealed_cache(sandbox, aws):
    token, value = rand_token(32), rand_token(40)
    aws.add_secret("app/api", string=value)
    d, base = start_api(sandbox, aws, FILLER, token, api={"on_demand": True})
    h = {TOKEN_HEADER: token}
    for _ in range(5):
        status, body = get(f"{base}/v1/app/api", h)
        assert status == 200 and json.loads(body)["SecretString"] == value
    # One read from Secrets Manager; the other four from the cache.
    assert aws.count(kind="sm", op="GetSecretValue", secret="app/api") == 1
    # Another stage is another answer.
    get(f"{base}/v1/app/api?versionStage=AWSCURRENT", h)
    assert aws.count(kind="sm", op="GetSecretValue", secret="app/api") == 2


def test_the_cache_is_refreshed_in_the_background_by_probes(sandbox, aws):
    token, old, new = rand_token(32), rand_token(20), rand_token(20)
    aws.add_secret("app/db", string=old)
    d, base = start_api(sandbox, aws, FILLER, token, api={"on_demand": True, "ttl": "1s"})
    h = {TOKEN_HEADER: token}
    assert json.loads(get(f"{base}/v1/app/db", h)[1])["SecretString"] == old
    # Unchanged: probes only, no second read.
    aws.wait_for_requests(2, timeout=10 * SLOW, kind="sm", op="DescribeSecret",
                          secret="app/db")
    assert aws.count(kind="sm", op="GetSecretValue", secret="app/db") == 1
    # Rotated: the refresher reads it again without any request asking.
    aws.rotate("app/db", new)
    aws.wait_for_requests(2, timeout=10 * SLOW, kind="sm", op="GetSecretValue",
                          secret="app/db")
    d.wait_log(r"aws_api: app/db moved to version")
    reads = aws.count(kind="sm", op="GetSecretValue", secret="app/db")
    assert json.loads(get(f"{base}/v1/app/db", h)[1])["SecretString"] == new
    assert aws.count(kind="sm", op="GetSecretValue", secret="app/db") == reads


def test_the_least_recently_served_answer_is_evicted(sandbox, aws):
    token = rand_token(32)
    for name in ("a", "b", "c"):
        aws.add_secret(f"app/{name}", string=rand_token(20))
    d, base = start_api(sandbox, aws, FILLER, token,
                        api={"on_demand": True, "cache_size": 2})
    h = {TOKEN_HEADER: token}
    get(f"{base}/v1/app/a", h)
    get(f"{base}/v1/app/b", h)
    get(f"{base}/v1/app/a", h)       # a is now the more recent
    get(f"{base}/v1/app/c", h)       # evicts b
    get(f"{base}/v1/app/a", h)       # still cached
    assert aws.count(kind="sm", op="GetSecretValue", secret="app/a") == 1
    get(f"{base}/v1/app/b", h)       # read again
    assert aws.count(kind="sm", op="GetSecretValue", secret="app/b") == 2


def test_ttl_zero_turns_the_cache_off(sandbox, aws):
    token = rand_token(32)
    aws.add_secret("app/a", string=rand_token(20))
    d, base = start_api(sandbox, aws, FILLER, token, api={"on_demand": True, "ttl": 0})
    h = {TOKEN_HEADER: token}
    for _ in range(3):
        assert get(f"{base}/v1/app/a", h)[0] == 200
    assert aws.count(kind="sm", op="GetSecretValue", secret="app/a") == 3


# ------------------------------------------- the agent's answers, text for text

# (method, path, headers beyond the token (None: no token), status, body),
# each as the agent's server.rs / parse.rs answers it: its own refusals are
# plain text, checked in its order (connection limit, X-Forwarded-For, the
# token, the method, the path, the parameters).
AGENT_TEXT = [
    ("GET", "/ping", None, 200, "healthy"),
    ("GET", "/ping?x=1", None, 200, "healthy"),
    ("POST", "/ping", None, 405, "Not allowed"),
    ("GET", "/pong", {}, 404, "Not found"),
    ("GET", "/pong", None, 403, "Bad Token"),
    ("GET", "/start_serving", None, 404, "Not found"),
    ("POST", "/secretsmanager/get?secretId=app/db", {}, 405, "Not allowed"),
    ("DELETE", "/v1/app/db", {}, 405, "Not allowed"),
    ("POST", "/secretsmanager/get?secretId=app/db", None, 403, "Bad Token"),
    ("GET", "/v1/app/db", {"X-Forwarded-For": "10.0.0.1"}, 400, "Forwarded"),
    ("GET", "/ping", {"X-Forwarded-For": "10.0.0.1"}, 200, "healthy"),
    ("GET", "/secretsmanager/get", {}, 400, "missing parameter secretId"),
    ("GET", "/secretsmanager/get?secretId=", {}, 400, "missing parameter secretId"),
    ("GET", "/secretsmanager/get?&versionStage=AWSCURRENT", {}, 400,
     "missing parameter secretId"),
    ("GET", "/v1/", {}, 400, "missing secret ID"),
    ("GET", "/v1/?versionStage=AWSCURRENT", {}, 400, "missing secret ID"),
    ("GET", "/secretsmanager/get?secretId=app/db&abc=1", {}, 400, "unknown parameter: abc"),
    ("GET", "/v1/app/db?secretId=app/db", {}, 400, "unknown parameter: secretId"),
    ("GET", "/v1/app/db?refreshNow=maybe", {}, 400, "invalid refreshNow value"),
]


def test_the_agents_own_answers_text_for_text(sandbox, aws):
    token = rand_token(32)
    aws.add_secret("app/db", string=rand_token(20))
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, token)
    # X-Forwarded-For is refused before the token is looked at.
    status, _, body = raw(base, "GET", "/v1/app/db", {"X-Forwarded-For": "10.0.0.1"})
    assert (status, body) == (400, "Forwarded")
    for method, path, headers, want_status, want_body in AGENT_TEXT:
        h = dict(headers or {})
        if headers is not None:
            h[TOKEN_HEADER] = token
        status, hdrs, body = raw(base, method, path, h)
        assert (status, body) == (want_status, want_body), (method, path, headers)
        # The agent (hyper, with no header set) sends no Content-Type.
        assert hdrs.get("Content-Type") is None, (method, path)
    assert not aws.find_requests(kind="sm", op="GetSecretValue", secret="app/db") or \
        all(r.secret == "app/db" for r in aws.find_requests(kind="sm", op="GetSecretValue"))


def test_service_errors_and_versions_as_the_agent_relays_them(sandbox, aws):
    token, old, new = rand_token(32), rand_token(20), rand_token(20)
    aws.add_secret("app/db", string=old)
    old_id = aws.version_id("app/db")
    aws.rotate("app/db", new)
    new_id = aws.version_id("app/db")
    d, base = start_api(sandbox, aws, FILLER, token, api={"on_demand": True})
    h = {TOKEN_HEADER: token}
    # Both given and naming the same version: that version.
    status, hdrs, body = raw(base, "GET", f"/secretsmanager/get?secretId=app/db"
                             f"&versionId={old_id}&versionStage=AWSPREVIOUS", h)
    assert status == 200 and json.loads(body)["SecretString"] == old
    assert hdrs.get("Content-Type") is None
    # Both given, not the same version: the service's answer, relayed.
    status, _, body = raw(base, "GET", f"/v1/app/db?versionId={new_id}"
                          f"&versionStage=AWSPREVIOUS", h)
    assert (status, body) == (400, '{"__type":"InvalidRequestException", "message":"You '
                              'provided a VersionStage that is not associated to the '
                              'provided VersionId."}')
    status, _, body = raw(base, "GET", "/v1/app/db?versionStage=NOPE", h)
    assert (status, body) == (400, '{"__type":"ResourceNotFoundException", "message":'
                              '"Secrets Manager can\'t find the specified secret value '
                              'for staging label: NOPE"}')
    status, _, body = raw(base, "GET", "/v1/app/db?versionId=short", h)
    assert (status, body) == (400, '{"__type":"InvalidParameterException", "message":'
                              '"Invalid parameter VersionId: must be 32 to 64 characters '
                              'long."}')
    status, _, body = raw(base, "GET", "/secretsmanager/get?secretId=app/nothing", h)
    assert (status, body) == (400, NOT_FOUND)


def test_ids_are_parsed_as_the_agent_parses_them(sandbox, aws):
    token, v1, v2 = rand_token(32), rand_token(20), rand_token(20)
    arn = aws.add_secret("app/db", string=v1)
    aws.add_secret("app/a+b=c@d", string=v2)
    d, base = start_api(sandbox, aws, FILLER, token, api={"on_demand": True})
    h = {TOKEN_HEADER: token}

    def value(path):
        status, _, body = raw(base, "GET", path, h)
        assert status == 200, (path, body)
        return json.loads(body)["SecretString"]

    # The query form is form-decoded: %XX is a byte, '+' a space.
    assert value("/secretsmanager/get?secretId=app%2Fa%2Bb%3Dc%40d") == v2
    status, _, body = raw(base, "GET", "/secretsmanager/get?secretId=app/a+b=c@d", h)
    assert (status, body) == (400, NOT_FOUND)  # asked for "app/a b=c@d"
    assert aws.find_requests(kind="sm", op="GetSecretValue", secret="app/a b=c@d")
    # An ARN, with its ':' and '/', in either form; the last of repeated
    # parameters wins.
    assert value(f"/secretsmanager/get?secretId=nope&secretId={arn}") == v1
    assert value(f"/v1/{arn}") == v1
    # The path form is not decoded (the agent takes the URL's path as
    # sent): app%2Fdb is asked for as such.
    status, _, body = raw(base, "GET", "/v1/app%2Fdb", h)
    assert (status, body) == (400, NOT_FOUND)
    assert aws.find_requests(kind="sm", op="GetSecretValue", secret="app%2Fdb")
    # refreshNow=true reads again; false, 0 and FALSE do not.
    assert value("/v1/app/db") == v1
    before = aws.count(kind="sm", op="GetSecretValue", secret="app/db")
    for flag in ("false", "0", "FALSE"):
        assert value(f"/v1/app/db?refreshNow={flag}") == v1
    assert aws.count(kind="sm", op="GetSecretValue", secret="app/db") == before
    assert value("/v1/app/db?refreshNow=TRUE") == v1
    assert value("/secretsmanager/get?secretId=app/db&refreshNow=1") == v1
    assert aws.count(kind="sm", op="GetSecretValue", secret="app/db") == before + 2


def test_past_max_connections_the_agents_429(sandbox, aws):
    token = rand_token(32)
    aws.add_secret("app/db", string=rand_token(20))
    d, base = start_api(sandbox, aws, {"db": sm("app/db")}, token,
                        api={"max_connections": 3})
    h = {TOKEN_HEADER: token}
    host = base.split("//")[1]
    conns = []

    def kept(path="/v1/app/db"):
        """A new kept-alive connection once its first request is answered
        200 (a connection that just closed may still be counted a moment)."""
        def attempt():
            c = http.client.HTTPConnection(host, timeout=TIMEOUT)
            status, _, _ = raw(base, "GET", path, h, conn=c)
            if status == 200:
                return c
            c.close()
            return None
        c = wait_until(attempt, timeout=5 * SLOW, what="a connection under the limit")
        conns.append(c)
        return c

    try:
        for _ in range(3):
            kept()
        # The fourth: every request on it is refused, as long as it lives.
        c4 = http.client.HTTPConnection(host, timeout=TIMEOUT)
        conns.append(c4)
        for _ in range(2):
            status, hdrs, body = raw(base, "GET", "/v1/app/db", h, conn=c4)
            assert (status, body) == (429, "Connection limit exceeded")
            assert hdrs.get("Content-Type") is None
        # Health checks get two connections more.
        assert raw(base, "GET", "/ping", conn=c4)[::2] == (200, "healthy")
        c5 = http.client.HTTPConnection(host, timeout=TIMEOUT)
        conns.append(c5)
        assert raw(base, "GET", "/ping", conn=c5)[::2] == (200, "healthy")
        c6 = http.client.HTTPConnection(host, timeout=TIMEOUT)
        conns.append(c6)
        assert raw(base, "GET", "/ping", conn=c6)[::2] == \
            (429, "Connection limit exceeded")
        # The connections kept under the limit still work.
        assert raw(base, "GET", "/v1/app/db", h, conn=conns[0])[0] == 200
        # Closing one (and the refused ones) lets a new one through.
        for c in [conns[0], c4, c5, c6]:
            c.close()
        kept()
        metrics_free = get(f"{base}/ping")
        assert metrics_free == (200, "healthy")
    finally:
        for c in conns:
            c.close()


def test_transport_failures_as_the_agent_answers_them(sandbox, aws):
    token = rand_token(32)
    aws.add_secret("app/db", string=rand_token(20))
    d, base = start_api(sandbox, aws, FILLER, token, api={"on_demand": True, "ttl": 0})
    h = {TOKEN_HEADER: token}
    # A service error without retry here: relayed (the agent's SDK would
    # retry a throttle first; see the README).
    aws.fault_throttle("GetSecretValue", secret="app/db")
    status, _, body = raw(base, "GET", "/v1/app/db", h)
    assert (status, body) == (400, '{"__type":"ThrottlingException", '
                              '"message":"Rate exceeded"}')
    # Dropped connections (more than one: a dropped kept-alive connection
    # is tried again on a new one).
    aws.fault_close("GetSecretValue", secret="app/db", times=None)
    status, _, body = raw(base, "GET", "/v1/app/db", h)
    assert (status, body) == (502, '{"__type":"ConnectionError", "message":"Read Error"}')
    aws.clear_faults()
    # The backend's timeout is 5 s (helpers.aws.backend).
    aws.fault_hang("GetSecretValue", seconds=8, secret="app/db")
    status, _, body = raw(base, "GET", "/v1/app/db", h)
    assert (status, body) == (504, '{"__type":"TimeoutError", "message":"Timeout"}')
    assert raw(base, "GET", "/v1/app/db", h)[0] == 200
