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
