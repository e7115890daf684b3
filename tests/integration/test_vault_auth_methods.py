"""Vault's cert and aws (IAM) auth methods against the fake Vault.

cert: the fake asks for a client certificate on the TLS handshake and
verifies it (openssl CLI) against the certificate role's CA, as Vault's
auth/cert/login does; the login body only names the role.

aws: secretfs signs an STS GetCallerIdentity request with SigV4 and the AWS
credential chain, and sends it base64-encoded in auth/aws/login; the fake
Vault forwards it to the fake AWS's STS (its configured sts_endpoint, as
Vault does), which verifies the signature independently, and binds the
returned ARN to the role.
"""

import base64
import json
import os

import pytest


from helpers.harness import errno_of, rand_token
from helpers.vault import (backend, clean_env, login_requests, make_test_pki, start,
                           tokens_issued_by_logins)

CFG = "secret/app/config"


def kv(path=CFG, refresh="1s", **kw):
    return {"backend": "vault", "path": path, "refresh": refresh, **kw}


def mtls(pki):
    return {"ca_file": pki.ca_cert, "client_cert": pki.client_cert,
            "client_key": pki.client_key}


# =========================================================================== cert

@pytest.mark.fuse
def test_cert_login_with_the_client_certificate(sandbox, make_vault, vault_pki):
    vault = make_vault(tls_client_ca=vault_pki.ca_cert, tls_client_optional=True)
    vault.add_cert_role("web", vault_pki.ca_cert,
                        allowed_common_names=["secretfs-test-client"])
    value = rand_token(24)
    vault.kv_put(CFG, {"api_key": value})
    be = backend(vault, auth={"method": "cert", "name": "web"}, tls=mtls(vault_pki))
    d = start(sandbox, {"api": kv(field="api_key")}, be)
    assert d.read("api") == value
    logins = login_requests(vault, mount="cert")
    assert [r.status for r in logins] == [200]
    assert logins[0].json == {"name": "web"}
    assert logins[0].peer_cert_der, "the login must come over the client certificate"
    assert vault.logins[("cert/", "web")] == 1
    # The token from that login is the one that reads the secret.
    issued = [r for r in vault.find_requests()
                                 if r.path == "/v1/secret/data/app/config"]
    assert issued and {r.headers.get("X-Vault-Token") for r in issued} == \
        set(tokens_issued_by_logins(vault, mount="cert"))


@pytest.mark.fuse
def test_cert_login_refused_for_a_certificate_of_another_ca(sandbox, make_vault,
                                                            vault_pki, tmp_path):
    other = make_test_pki(str(tmp_path / "other-ca"))
    vault = make_vault(tls_client_ca=vault_pki.ca_cert, tls_client_optional=True)
    # The role trusts only the other CA: the presented certificate must not verify.
    vault.add_cert_role("web", other.ca_cert)
    vault.kv_put(CFG, {"api_key": rand_token(24)})
    be = backend(vault, auth={"method": "cert"}, tls=mtls(vault_pki))
    d = start(sandbox, {"api": kv(field="api_key")}, be, top={"startup_timeout": "1s"})
    d.wait_log(r"login failed.*invalid certificate")
    assert errno_of(lambda: d.read("api")) == "ENOENT"
    assert vault.logins[("cert/", "web")] == 0
    assert all(r.status == 400 for r in login_requests(vault, mount="cert"))


def test_cert_auth_without_a_client_certificate_is_refused_by_check(workdir):
    cfg = {"mount": {"path": os.path.join(workdir.root, "mnt")},
           "backends": {"v": {"type": "vault", "address": "https://127.0.0.1:1",
                              "auth": {"method": "cert", "name": "web"}}},
           "secrets": {"api": {"backend": "v", "path": CFG}}}
    workdir.write_config(cfg, os.path.join(workdir.root, "cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"], env=clean_env())
    assert r.returncode == 1, r
    assert "backends.v.auth" in r.stderr and "tls.client_cert" in r.stderr, r.stderr


# =========================================================================== aws (IAM)

def aws_env(sandbox, fake, temporary=False):
    """Keys the fake AWS knows, in a daemon environment without AWS_/VAULT_
    variables. Returns (env, credential)."""
    from helpers.aws import clean_env as aws_clean_env
    if temporary:
        cred = fake.issue_temporary_credentials("test", lifetime=3600)
    else:
        cred = fake.add_static_credentials("AKIA" + rand_token(16).upper(), rand_token(40),
                                           user="app-runner")
    env = aws_clean_env(sandbox, AWS_ACCESS_KEY_ID=cred.access_key_id,
                        AWS_SECRET_ACCESS_KEY=cred.secret_access_key)
    if cred.session_token:
        env["AWS_SESSION_TOKEN"] = cred.session_token
    return env, cred


def start_aws_login(sandbox, vault, pki, env, auth):
    cfg = sandbox.config({"api": kv(field="api_key")},
                         backends={"vault": backend(vault, pki, auth=auth)},
                         startup_timeout="2s")
    return sandbox.start(config=cfg, env=env)


def decoded_login(r):
    body = r.json
    headers = json.loads(base64.b64decode(body["iam_request_headers"]))
    return (base64.b64decode(body["iam_request_url"]).decode(),
            base64.b64decode(body["iam_request_body"]).decode(), headers)


@pytest.mark.fuse
@pytest.mark.parametrize("temporary", [False, True], ids=["static-keys", "session-token"])
def test_aws_iam_login_signs_get_caller_identity(sandbox, make_vault, vault_pki, fake_aws,
                                                 temporary):
    vault = make_vault()
    vault.configure_aws_auth(sts_endpoint=fake_aws.url,
                             iam_server_id_header_value="vault.example.com")
    env, cred = aws_env(sandbox, fake_aws, temporary)
    vault.add_aws_role("app", cred.principal_arn)
    value = rand_token(24)
    vault.kv_put(CFG, {"api_key": value})
    d = start_aws_login(sandbox, vault, vault_pki, env,
                        {"method": "aws", "role": "app",
                         "header_value": "vault.example.com"})
    assert d.read("api") == value
    assert vault.logins[("aws/", "app")] == 1
    (login,) = [r for r in login_requests(vault, mount="aws") if r.status == 200]
    url, body, headers = decoded_login(login)
    assert login.json["iam_http_request_method"] == "POST" and login.json["role"] == "app"
    assert url == "https://sts.amazonaws.com/"
    assert body == "Action=GetCallerIdentity&Version=2011-06-15"
    assert headers["X-Vault-AWS-IAM-Server-ID"] == ["vault.example.com"]
    assert headers["Host"] == ["sts.amazonaws.com"]
    assert ("X-Amz-Security-Token" in headers) == temporary
    # The fake AWS verified the signature of what Vault forwarded.
    calls = fake_aws.find_requests(kind="sts", op="GetCallerIdentity")
    assert [r.status for r in calls] == [200]
    assert calls[0].headers.get("Authorization", "").startswith(
        f"AWS4-HMAC-SHA256 Credential={cred.access_key_id}/")
    log = d.log_text()
    assert cred.secret_access_key not in log
    assert not cred.session_token or cred.session_token not in log


@pytest.mark.fuse
@pytest.mark.parametrize("case", ["wrong-server-id", "unbound-arn"])
def test_aws_iam_login_refused(sandbox, make_vault, vault_pki, fake_aws, case):
    vault = make_vault()
    vault.configure_aws_auth(sts_endpoint=fake_aws.url,
                             iam_server_id_header_value="vault.example.com")
    env, cred = aws_env(sandbox, fake_aws)
    bound = cred.principal_arn if case == "wrong-server-id" else \
        "arn:aws:iam::123456789012:user/someone-else"
    vault.add_aws_role("app", bound)
    vault.kv_put(CFG, {"api_key": rand_token(24)})
    header = "other.example.com" if case == "wrong-server-id" else "vault.example.com"
    d = start_aws_login(sandbox, vault, vault_pki, env,
                        {"method": "aws", "role": "app", "header_value": header})
    expect = {"wrong-server-id": r"login failed.*X-Vault-AWS-IAM-Server-ID",
              "unbound-arn": r"login failed.*does not belong to the role"}[case]
    d.wait_log(expect)
    assert errno_of(lambda: d.read("api")) == "ENOENT"
    assert vault.logins[("aws/", "app")] == 0


def test_aws_auth_config_errors(workdir):
    cfg = {"mount": {"path": os.path.join(workdir.root, "mnt")},
           "backends": {"v": {"type": "vault", "address": "https://127.0.0.1:1",
                              "auth": {"method": "aws", "type": "ec2",
                                       "sts_endpoint": "sts.amazonaws.com"}}},
           "secrets": {"api": {"backend": "v", "path": CFG}}}
    workdir.write_config(cfg, os.path.join(workdir.root, "cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"], env=clean_env())
    assert r.returncode == 1, r
    assert "backends.v.auth.type" in r.stderr and "iam" in r.stderr, r.stderr
    assert "backends.v.auth.sts_endpoint" in r.stderr, r.stderr
