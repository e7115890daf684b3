"""Tests of the fake Vault itself, over real HTTP with urllib.

Run: /usr/bin/python3 -m pytest -q tests/fakes/test_fake_vault.py
"""

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
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fakes.fake_vault import FakeVault, go_duration, make_test_pki, parse_duration  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class Resp:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def json(self):
        return json.loads(self.raw) if self.raw else None

    def __repr__(self):
        return f"<{self.status} {self.raw[:300]!r}>"


def call(vault_or_url, method, path, token="root", body=None, headers=None, ctx=None,
         timeout=5):
    url = vault_or_url if isinstance(vault_or_url, str) else vault_or_url.url
    hdrs = {"X-Vault-Request": "true"}
    if token is not None:
        hdrs["X-Vault-Token"] = token
    hdrs.update(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return Resp(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Resp(e.code, e.headers, e.read())


@pytest.fixture
def vault():
    with FakeVault(root_token="root") as v:
        yield v


@pytest.fixture(scope="module")
def pki():
    p = make_test_pki()
    yield p
    p.cleanup()


ENVELOPE = {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info",
            "warnings", "auth"}


# --------------------------------------------------------------------------- helpers

def test_duration_helpers():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    assert parse_duration(5) == 5
    assert parse_duration("15") == 15
    assert go_duration(3600) == "1h0m0s"
    assert go_duration(69) == "1m9s"
    assert go_duration(5) == "5s"
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


# --------------------------------------------------------------------------- KV

def test_kv2_versions_metadata_delete_destroy(vault):
    assert vault.kv_put("secret/app/config", {"user": "a"}) == 1
    assert vault.kv_put("secret/app/config", {"user": "b"}) == 2
    r = call(vault, "POST", "/v1/secret/data/app/config", body={"data": {"user": "c"}})
    assert r.status == 200 and r.json["data"]["version"] == 3

    r = call(vault, "GET", "/v1/secret/data/app/config")
    assert r.status == 200
    body = r.json
    assert ENVELOPE <= set(body)
    assert body["data"]["data"] == {"user": "c"}
    md = body["data"]["metadata"]
    assert md["version"] == 3 and md["destroyed"] is False and md["deletion_time"] == ""
    assert md["created_time"].endswith("Z")

    r = call(vault, "GET", "/v1/secret/data/app/config?version=1")
    assert r.json["data"]["data"] == {"user": "a"}
    assert r.json["data"]["metadata"]["version"] == 1

    r = call(vault, "GET", "/v1/secret/metadata/app/config")
    meta = r.json["data"]
    assert meta["current_version"] == 3
    assert set(meta["versions"]) == {"1", "2", "3"}
    assert {"oldest_version", "created_time", "updated_time", "max_versions",
            "cas_required", "delete_version_after", "custom_metadata"} <= set(meta)

    # soft-delete the latest: 404, but data.metadata carries deletion_time
    vault.kv_delete("secret/app/config")
    r = call(vault, "GET", "/v1/secret/data/app/config")
    assert r.status == 404
    assert r.json["data"]["data"] is None
    assert r.json["data"]["metadata"]["deletion_time"] != ""
    assert r.json["data"]["metadata"]["version"] == 3
    # older versions remain readable; undelete brings the latest back
    assert call(vault, "GET", "/v1/secret/data/app/config?version=2").json["data"]["data"] == \
        {"user": "b"}
    vault.kv_undelete("secret/app/config", [3])
    assert call(vault, "GET", "/v1/secret/data/app/config").status == 200

    # destroy: 404 with destroyed true
    vault.kv_destroy("secret/app/config", [2])
    r = call(vault, "GET", "/v1/secret/data/app/config?version=2")
    assert r.status == 404 and r.json["data"]["metadata"]["destroyed"] is True
    # HTTP delete/destroy endpoints too
    assert call(vault, "POST", "/v1/secret/delete/app/config", body={"versions": [3]}).status == 204
    assert call(vault, "GET", "/v1/secret/data/app/config").status == 404
    md = call(vault, "GET", "/v1/secret/metadata/app/config").json["data"]["versions"]
    assert md["2"]["destroyed"] is True and md["3"]["deletion_time"] != ""

    # unknown version / unknown secret: 404 {"errors": []}
    r = call(vault, "GET", "/v1/secret/data/app/config?version=99")
    assert r.status == 404 and r.json == {"errors": []}
    r = call(vault, "GET", "/v1/secret/data/nope")
    assert r.status == 404 and r.json == {"errors": []}
    assert call(vault, "GET", "/v1/secret/metadata/nope").status == 404


def test_kv2_list_patch_cas(vault):
    vault.kv_put("secret/a/one", {"x": "1"})
    vault.kv_put("secret/a/sub/two", {"y": "2"})
    r = call(vault, "LIST", "/v1/secret/metadata/a")
    assert r.json["data"]["keys"] == ["one", "sub/"]
    r = call(vault, "PATCH", "/v1/secret/data/a/one", body={"data": {"z": "3"}},
             headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and r.json["data"]["version"] == 2
    assert vault.kv_get("secret/a/one") == {"x": "1", "z": "3"}
    r = call(vault, "POST", "/v1/secret/data/a/one", body={"options": {"cas": 1},
                                                           "data": {"q": 1}})
    assert r.status == 400 and "check-and-set" in r.json["errors"][0]


def test_kv1_round_trip(vault):
    vault.kv_put("kv/app/db", {"password": "p1"})
    r = call(vault, "GET", "/v1/kv/app/db")
    assert r.status == 200
    assert r.json["data"] == {"password": "p1"}
    assert r.json["lease_duration"] == 768 * 3600 and r.json["lease_id"] == ""
    assert call(vault, "PUT", "/v1/kv/app/db", body={"password": "p2", "ttl": "30s"}).status == 204
    r = call(vault, "GET", "/v1/kv/app/db")
    assert r.json["data"]["password"] == "p2" and r.json["lease_duration"] == 30
    assert vault.kv_get("kv/app/db")["password"] == "p2"
    assert call(vault, "LIST", "/v1/kv/app").json["data"]["keys"] == ["db"]
    assert call(vault, "DELETE", "/v1/kv/app/db").status == 204
    r = call(vault, "GET", "/v1/kv/app/db")
    assert r.status == 404 and r.json == {"errors": []}


def test_unknown_route_404(vault):
    r = call(vault, "GET", "/v1/nomount/x")
    assert r.status == 404 and "no handler for route" in r.json["errors"][0]


# --------------------------------------------------------------------------- mounts

def test_internal_ui_mounts(vault):
    r = call(vault, "GET", "/v1/sys/internal/ui/mounts/secret/app/config")
    d = r.json["data"]
    assert r.status == 200 and d["path"] == "secret/" and d["type"] == "kv"
    assert d["options"] == {"version": "2"}
    d = call(vault, "GET", "/v1/sys/internal/ui/mounts/kv/app/db").json["data"]
    assert d["path"] == "kv/" and d["options"] == {"version": "1"}
    d = call(vault, "GET", "/v1/sys/internal/ui/mounts/database/creds/app").json["data"]
    assert d["type"] == "database" and d["path"] == "database/"
    d = call(vault, "GET", "/v1/sys/internal/ui/mounts/auth/approle/login").json["data"]
    assert d["type"] == "approle" and d["path"] == "auth/approle/"

    vault.add_mount("team/kv2/", "kv", version=2)
    d = call(vault, "GET", "/v1/sys/internal/ui/mounts/team/kv2/x").json["data"]
    assert d["path"] == "team/kv2/" and d["options"]["version"] == "2"

    r = call(vault, "GET", "/v1/sys/internal/ui/mounts/nope/x")
    assert r.status == 403 and "preflight capability check returned 403" in r.json["errors"][0]
    r = call(vault, "GET", "/v1/sys/internal/ui/mounts/secret/x", token=None)
    assert r.status == 403 and r.json == {"errors": ["permission denied"]}

    r = call(vault, "GET", "/v1/sys/internal/ui/mounts")
    assert "secret/" in r.json["data"]["secret"] and "approle/" in r.json["data"]["auth"]


# --------------------------------------------------------------------------- tokens

def test_token_required_and_recorded(vault):
    vault.kv_put("secret/x", {"a": "b"})
    for tok in (None, "", "bogus"):
        r = call(vault, "GET", "/v1/secret/data/x", token=tok)
        assert r.status == 403 and r.json == {"errors": ["permission denied"]}
    assert call(vault, "GET", "/v1/secret/data/x").status == 200
    reqs = vault.find_requests("GET", "/v1/secret/data/x")
    assert len(reqs) == 4
    assert all(r.header("x-vault-request") == "true" for r in reqs)
    assert reqs[-1].token == "root" and reqs[-1].status == 200
    assert vault.count("GET", "secret/data/x") == 4
    assert vault.count(prefix="/v1/secret/") == 4


def test_token_expiry_num_uses_and_lookup(vault):
    tid = vault.create_token(ttl=30, max_ttl=60, policies=["default", "app"])
    r = call(vault, "GET", "/v1/auth/token/lookup-self", token=tid)
    d = r.json["data"]
    assert r.status == 200 and d["id"] == tid and d["ttl"] == 30 and d["renewable"] is True
    assert d["policies"] == ["default", "app"] and d["accessor"]
    assert call(vault, "POST", "/v1/auth/token/lookup-self", token=tid).status == 200
    vault.advance(31)
    assert call(vault, "GET", "/v1/auth/token/lookup-self", token=tid).status == 403

    two = vault.create_token(ttl=60, num_uses=2)
    assert call(vault, "GET", "/v1/auth/token/lookup-self", token=two).status == 200
    assert call(vault, "GET", "/v1/auth/token/lookup-self", token=two).status == 200
    assert call(vault, "GET", "/v1/auth/token/lookup-self", token=two).status == 403

    rev = vault.create_token(ttl=60)
    assert call(vault, "POST", "/v1/auth/token/revoke-self", token=rev).status == 204
    assert call(vault, "GET", "/v1/auth/token/lookup-self", token=rev).status == 403


def test_token_renew_self_respects_max_ttl(vault):
    tid = vault.create_token(ttl=10, max_ttl=25)
    vault.advance(8)
    r = call(vault, "POST", "/v1/auth/token/renew-self", token=tid, body={})
    a = r.json["auth"]
    assert r.status == 200 and a["client_token"] == tid and a["lease_duration"] == 10
    assert a["renewable"] is True and a["accessor"] and "policies" in a
    vault.advance(8)                                   # t=16, 9 s left before max
    r = call(vault, "POST", "/v1/auth/token/renew-self", token=tid, body={"increment": "1h"})
    assert r.json["auth"]["lease_duration"] == 9
    assert "exceeded the effective max_ttl" in r.json["warnings"][0]
    vault.advance(9.5)
    r = call(vault, "POST", "/v1/auth/token/renew-self", token=tid, body={})
    assert r.status == 403

    fixed = vault.create_token(ttl=10, renewable=False)
    r = call(vault, "POST", "/v1/auth/token/renew-self", token=fixed, body={})
    assert r.status == 400 and r.json["errors"] == ["lease is not renewable"]


def test_namespaces_enforced():
    with FakeVault(namespaces=["team-a", "team-a/child"]) as v:
        v.kv_put("secret/app", {"k": "a"}, namespace="team-a")
        v.kv_put("secret/app", {"k": "root"})
        ns = {"X-Vault-Namespace": "team-a"}
        r = call(v, "GET", "/v1/secret/data/app", headers=ns)
        assert r.json["data"]["data"] == {"k": "a"}
        assert call(v, "GET", "/v1/secret/data/app").json["data"]["data"] == {"k": "root"}
        r = call(v, "GET", "/v1/secret/data/app", headers={"X-Vault-Namespace": "nope"})
        assert r.status == 404 and r.json == {"errors": ["namespace not found"]}
        tok = v.create_token(namespace="team-a")
        assert call(v, "GET", "/v1/secret/data/app", token=tok, headers=ns).status == 200
        assert call(v, "GET", "/v1/secret/data/app", token=tok,
                    headers={"X-Vault-Namespace": "team-a/child"}).status == 404
        assert call(v, "GET", "/v1/secret/data/app", token=tok).status == 403
        assert v.requests[0].namespace == "team-a"
    # not enforced: the header is only recorded
    with FakeVault() as v:
        v.kv_put("secret/app", {"k": "v"})
        assert call(v, "GET", "/v1/secret/data/app",
                    headers={"X-Vault-Namespace": "whatever"}).status == 200
        assert v.requests[-1].namespace == "whatever"


# --------------------------------------------------------------------------- auth methods

def test_approle_login_and_wrapped_secret_id(vault):
    role_id = vault.add_approle("app", token_ttl=60, token_max_ttl=120, policies=["app"])
    sid = vault.add_secret_id("app")
    r = call(vault, "POST", "/v1/auth/approle/login", token=None,
             body={"role_id": role_id, "secret_id": sid})
    assert r.status == 200
    auth = r.json["auth"]
    assert ENVELOPE <= set(r.json)
    assert auth["lease_duration"] == 60 and auth["renewable"] is True
    assert "app" in auth["policies"] and auth["accessor"] and auth["client_token"]
    assert call(vault, "GET", "/v1/auth/token/lookup-self",
                token=auth["client_token"]).status == 200

    r = call(vault, "POST", "/v1/auth/approle/login", token=None,
             body={"role_id": role_id, "secret_id": "wrong"})
    assert r.status == 400 and r.json == {"errors": ["invalid role or secret ID"]}
    r = call(vault, "POST", "/v1/auth/approle/login", token=None, body={"secret_id": sid})
    assert r.status == 400 and r.json == {"errors": ["missing role_id"]}

    # single-use secret id
    once = vault.add_secret_id("app", num_uses=1)
    body = {"role_id": role_id, "secret_id": once}
    assert call(vault, "POST", "/v1/auth/approle/login", token=None, body=body).status == 200
    assert call(vault, "POST", "/v1/auth/approle/login", token=None, body=body).status == 400

    # wrapped secret id: unwrap with the wrapping token as client token, once
    wtok = vault.wrap_secret_id("app", wrap_ttl=60)
    r = call(vault, "POST", "/v1/sys/wrapping/unwrap", token=wtok)
    assert r.status == 200
    wsid = r.json["data"]["secret_id"]
    assert r.json["data"]["secret_id_accessor"]
    assert vault.unwrapped(wtok)
    r = call(vault, "POST", "/v1/sys/wrapping/unwrap", token=wtok)
    assert r.status == 400
    assert r.json == {"errors": ["wrapping token is not valid or does not exist"]}
    assert call(vault, "POST", "/v1/auth/approle/login", token=None,
                body={"role_id": role_id, "secret_id": wsid}).status == 200
    assert vault.logins[("approle/", "app")] == 3

    # unwrap by a third party: wrapping token in the body, own token in the header
    wtok2 = vault.wrap_secret_id("app")
    r = call(vault, "POST", "/v1/sys/wrapping/unwrap", body={"token": wtok2})
    assert r.status == 200 and r.json["data"]["secret_id"]
    r = call(vault, "POST", "/v1/sys/wrapping/unwrap", token="bogus", body={"token": "x"})
    assert r.status == 403

    # expired wrapping token
    wtok3 = vault.wrap_secret_id("app", wrap_ttl=5)
    vault.advance(6)
    assert call(vault, "POST", "/v1/sys/wrapping/unwrap", token=wtok3).status == 400


def test_wrap_ttl_header_over_http(vault):
    vault.add_approle("app")
    r = call(vault, "POST", "/v1/auth/approle/role/app/secret-id",
             headers={"X-Vault-Wrap-TTL": "120"}, body={})
    assert r.status == 200 and r.json["data"] is None
    wi = r.json["wrap_info"]
    assert wi["ttl"] == 120 and wi["creation_path"] == "auth/approle/role/app/secret-id"
    assert wi["token"] and wi["accessor"] and wi["creation_time"]
    r = call(vault, "POST", "/v1/sys/wrapping/unwrap", token=wi["token"])
    assert r.status == 200 and r.json["data"]["secret_id"]
    assert call(vault, "GET", "/v1/auth/approle/role/app/role-id").json["data"]["role_id"]


def test_kubernetes_and_jwt_login(vault):
    vault.add_kubernetes_role("app", jwts=["sa-jwt-1", "sa-jwt-2"], token_ttl=30,
                              service_account="app-sa", sa_namespace="prod")
    vault.add_jwt_role("ci", jwts="ci-jwt", token_ttl=45, token_max_ttl=90)
    for jwt in ("sa-jwt-1", "sa-jwt-2"):
        r = call(vault, "POST", "/v1/auth/kubernetes/login", token=None,
                 body={"role": "app", "jwt": jwt})
        assert r.status == 200
        a = r.json["auth"]
        assert a["lease_duration"] == 30 and a["metadata"]["role"] == "app"
        assert a["metadata"]["service_account_name"] == "app-sa"
    r = call(vault, "POST", "/v1/auth/kubernetes/login", token=None,
             body={"role": "app", "jwt": "stale"})
    assert r.status == 403 and r.json == {"errors": ["permission denied"]}
    r = call(vault, "POST", "/v1/auth/kubernetes/login", token=None,
             body={"role": "nope", "jwt": "sa-jwt-1"})
    assert r.status == 400 and "invalid role name" in r.json["errors"][0]
    assert vault.logins[("kubernetes/", "app")] == 2
    assert vault.find_requests("POST", "auth/kubernetes/login")[0].json["jwt"] == "sa-jwt-1"

    r = call(vault, "POST", "/v1/auth/jwt/login", token=None, body={"role": "ci", "jwt": "ci-jwt"})
    assert r.status == 200 and r.json["auth"]["lease_duration"] == 45
    tok = r.json["auth"]["client_token"]
    assert call(vault, "GET", "/v1/auth/token/lookup-self", token=tok).json["data"]["ttl"] == 45
    r = call(vault, "POST", "/v1/auth/jwt/login", token=None, body={"role": "ci", "jwt": "bad"})
    assert r.status == 400
    r = call(vault, "POST", "/v1/auth/jwt/login", token=None, body={"role": "x", "jwt": "ci-jwt"})
    assert r.status == 400 and "could not be found" in r.json["errors"][0]

    # a second kubernetes mount
    vault.add_mount("auth/k8s-east/", "kubernetes")
    vault.add_kubernetes_role("app", jwts=["east"], mount="k8s-east")
    assert call(vault, "POST", "/v1/auth/k8s-east/login", token=None,
                body={"role": "app", "jwt": "east"}).status == 200


# --------------------------------------------------------------------------- leases

def test_database_lease_renew_to_max_then_lease_not_found(vault):
    revoked = []
    issued = []

    def issue(req):
        issued.append(req)
        return {"username": f"u-{len(issued)}", "password": "pw"}

    vault.add_dynamic_role("database", "app", default_ttl=10, max_ttl=25, issue=issue,
                           revoke=lambda le: revoked.append((le.lease_id, le.revoked_by)))
    r = call(vault, "GET", "/v1/database/creds/app")
    b = r.json
    assert r.status == 200 and ENVELOPE <= set(b)
    assert b["lease_id"].startswith("database/creds/app/") and b["renewable"] is True
    assert b["lease_duration"] == 10 and b["data"] == {"username": "u-1", "password": "pw"}
    assert issued[0].role == "app" and issued[0].ttl == 10 and issued[0].lease_id == b["lease_id"]
    lease_id = b["lease_id"]
    assert [le.lease_id for le in vault.live_leases("database")] == [lease_id]

    vault.advance(8)
    r = call(vault, "PUT", "/v1/sys/leases/renew", body={"lease_id": lease_id, "increment": 10})
    assert r.status == 200
    assert r.json["lease_id"] == lease_id and r.json["lease_duration"] == 10
    assert r.json["renewable"] is True and r.json["warnings"] is None
    vault.advance(8)                                   # t=16, 9 s left before max_ttl
    r = call(vault, "PUT", "/v1/sys/leases/renew", body={"lease_id": lease_id, "increment": 10})
    assert r.json["lease_duration"] == 9
    assert r.json["warnings"] == [
        'TTL of "10s" exceeded the effective max_ttl of "9s"; TTL value is capped accordingly']
    r = call(vault, "PUT", "/v1/sys/leases/lookup", body={"lease_id": lease_id})
    assert r.json["data"]["id"] == lease_id and r.json["data"]["ttl"] == 9

    vault.advance(9.5)                                 # past max_ttl: expired and revoked
    assert vault.wait_for(lambda: revoked == [(lease_id, "expiry")], timeout=2)
    r = call(vault, "PUT", "/v1/sys/leases/renew", body={"lease_id": lease_id})
    assert r.status == 400 and r.json == {"errors": ["lease not found"]}
    assert vault.lease(lease_id).revoked_by == "expiry"
    assert len(vault.lease(lease_id).renewals) == 2
    assert vault.live_leases() == []


def test_lease_revoke_and_unknown(vault):
    revoked = []
    vault.add_dynamic_role("database", "ro", default_ttl=60, max_ttl=120,
                           revoke=lambda le: revoked.append(le.data["username"]))
    b = call(vault, "GET", "/v1/database/creds/ro").json
    assert b["data"]["username"].startswith("v-root-ro-") and len(b["data"]["password"]) == 20
    r = call(vault, "PUT", "/v1/sys/leases/revoke", body={"lease_id": b["lease_id"]})
    assert r.status == 204 and r.raw == b""
    assert revoked == [b["data"]["username"]]
    assert vault.lease(b["lease_id"]).revoked_by == "api"
    r = call(vault, "PUT", "/v1/sys/leases/renew", body={"lease_id": b["lease_id"]})
    assert r.status == 400 and r.json == {"errors": ["lease not found"]}
    r = call(vault, "PUT", "/v1/sys/leases/renew", body={"lease_id": "database/creds/ro/nope"})
    assert r.status == 400 and r.json == {"errors": ["lease not found"]}
    assert call(vault, "PUT", "/v1/sys/leases/revoke",
                body={"lease_id": "database/creds/ro/nope"}).status == 204
    assert call(vault, "GET", "/v1/database/creds/unknown").status == 400


def test_real_time_expiry_and_token_death_revoke_leases():
    with FakeVault() as v:
        revoked = []
        v.add_dynamic_role("database", "app", default_ttl=0.4, max_ttl=1,
                           revoke=lambda le: revoked.append(le.revoked_by))
        call(v, "GET", "/v1/database/creds/app")
        assert v.wait_for(lambda: revoked == ["expiry"], timeout=3)

        tok = v.create_token(ttl=60)
        v.add_dynamic_role("database", "long", default_ttl=600, max_ttl=600,
                           revoke=lambda le: revoked.append(le.revoked_by))
        lid = call(v, "GET", "/v1/database/creds/long", token=tok).json["lease_id"]
        v.revoke_token(tok)
        assert v.lease(lid).revoked_by == "token" and revoked[-1] == "token"


def test_non_renewable_aws_and_pki_issue(vault):
    vault.add_dynamic_role("aws", "deploy", default_ttl=900, max_ttl=3600)
    b = call(vault, "GET", "/v1/aws/creds/deploy").json
    assert b["renewable"] is False and b["lease_duration"] == 900
    assert b["lease_id"].startswith("aws/creds/deploy/")
    assert b["data"]["access_key"].startswith("AKIA") and b["data"]["secret_key"]
    r = call(vault, "PUT", "/v1/sys/leases/renew", body={"lease_id": b["lease_id"]})
    assert r.status == 400 and r.json == {"errors": ["lease is not renewable"]}

    vault.add_dynamic_role("pki", "web", default_ttl=3600, max_ttl=7200)
    r = call(vault, "POST", "/v1/pki/issue/web", body={"common_name": "app.example", "ttl": "2h"})
    b = r.json
    assert r.status == 200 and b["lease_id"].startswith("pki/issue/web/")
    assert b["renewable"] is False and b["lease_duration"] == 7200
    assert "BEGIN CERTIFICATE" in b["data"]["certificate"] and b["data"]["private_key"]
    assert b["data"]["expiration"] > time.time()
    assert vault.lease(b["lease_id"]).params["common_name"] == "app.example"
    r = call(vault, "POST", "/v1/pki/issue/web", body={"common_name": "x", "ttl": "5h"})
    assert r.json["lease_duration"] == 7200 and r.json["warnings"]


# --------------------------------------------------------------------------- faults

def test_fault_status_once_and_n_times(vault):
    vault.kv_put("secret/app", {"k": "v"})
    vault.fault_status("secret/data/app", 500)
    r = call(vault, "GET", "/v1/secret/data/app")
    assert r.status == 500 and r.json == {"errors": ["internal error"]}
    assert call(vault, "GET", "/v1/secret/data/app").status == 200

    vault.fault_status("/v1/secret/", 403, times=2)
    assert [call(vault, "GET", "/v1/secret/data/app").status for _ in range(3)] == [403, 403, 200]

    fid = vault.fault_status("secret/", 502, body="<html>bad gateway</html>", times=None,
                             method="GET")
    for _ in range(3):
        r = call(vault, "GET", "/v1/secret/data/app")
        assert r.status == 502 and r.raw == b"<html>bad gateway</html>"
    assert call(vault, "GET", "/v1/kv/whatever").status == 404     # other prefix untouched
    vault.remove_fault(fid)
    assert call(vault, "GET", "/v1/secret/data/app").status == 200
    assert [r.fault for r in vault.find_requests("GET", "secret/data/app")].count("status") == 6


def test_fault_sealed_rate_limit_malformed(vault):
    vault.kv_put("secret/app", {"k": "v"})
    vault.fault_sealed("secret/")
    r = call(vault, "GET", "/v1/secret/data/app")
    assert r.status == 503 and r.json == {"errors": ["Vault is sealed"]}

    vault.fault_rate_limit("secret/", retry_after=3)
    r = call(vault, "GET", "/v1/secret/data/app")
    assert r.status == 429 and r.headers["Retry-After"] == "3"
    assert "rate limit" in r.json["errors"][0]

    vault.fault_malformed("secret/")
    r = call(vault, "GET", "/v1/secret/data/app")
    assert r.status == 200
    with pytest.raises(ValueError):
        json.loads(r.raw)
    assert call(vault, "GET", "/v1/secret/data/app").json["data"]["data"] == {"k": "v"}


def test_global_seal(vault):
    vault.seal()
    r = call(vault, "GET", "/v1/auth/token/lookup-self")
    assert r.status == 503 and r.json == {"errors": ["Vault is sealed"]}
    r = call(vault, "GET", "/v1/sys/health", token=None)
    assert r.status == 503 and r.json["sealed"] is True
    vault.unseal()
    assert call(vault, "GET", "/v1/auth/token/lookup-self").status == 200
    assert call(vault, "GET", "/v1/sys/health", token=None).json["sealed"] is False


def test_fault_hang_then_answer_and_close(vault):
    vault.kv_put("secret/app", {"k": "v"})
    vault.fault_hang("secret/", seconds=0.4)
    t0 = time.monotonic()
    r = call(vault, "GET", "/v1/secret/data/app")
    assert r.status == 200 and time.monotonic() - t0 >= 0.35

    vault.fault_close("secret/")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
        call(vault, "GET", "/v1/secret/data/app")
    assert call(vault, "GET", "/v1/secret/data/app").status == 200
    closed = vault.find_requests("GET", "secret/data/app")[1]
    assert closed.fault == "close" and closed.status is None


def test_fault_trickle_sends_one_byte_at_a_time_and_never_ends(vault):
    vault.kv_put("secret/app", {"k": "v"})
    vault.fault_trickle("secret/data/app", seconds=0.01)
    conn = http.client.HTTPConnection(vault.host, vault.port, timeout=5)
    conn.request("GET", "/v1/secret/data/app", headers={"X-Vault-Token": "root"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    got = b""
    while len(got) < 40:
        got += r.read1(1)
    assert got.startswith(b"{\"data\": {\"data\": {\"padding\": \"xx"), got
    conn.close()
    assert vault.find_requests("GET", "secret/data/app")[0].fault == "trickle"
    # Once: the next request is answered.
    assert call(vault, "GET", "/v1/secret/data/app").status == 200


def test_hang_forever_and_prompt_stop():
    v = FakeVault().start()
    v.fault_hang("", seconds=None, times=None)
    errors = []

    def client():
        try:
            call(v, "GET", "/v1/auth/token/lookup-self", timeout=10)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    assert v.wait_for(lambda: len(v.requests) == 3, timeout=3)
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        call(v, "GET", "/v1/sys/leases/renew", timeout=0.3)
    t0 = time.monotonic()
    v.stop()
    assert time.monotonic() - t0 < 2
    for t in threads:
        t.join(3)
        assert not t.is_alive()
    assert len(errors) == 3                             # released without an answer


# --------------------------------------------------------------------------- TLS

def test_tls_with_generated_ca_and_mtls(pki):
    with FakeVault(tls_cert=pki.server_cert, tls_key=pki.server_key) as v:
        assert v.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=pki.ca_cert)
        assert call(v, "GET", "/v1/auth/token/lookup-self", ctx=ctx).status == 200
        localhost = v.url.replace("127.0.0.1", "localhost")
        assert call(localhost, "GET", "/v1/sys/health", ctx=ctx, token=None).status == 200
        with pytest.raises(urllib.error.URLError) as ei:    # not trusted without the CA
            call(v, "GET", "/v1/sys/health", ctx=ssl.create_default_context(), token=None)
        assert isinstance(ei.value.reason, ssl.SSLCertVerificationError)

    with FakeVault(tls_cert=pki.server_cert, tls_key=pki.server_key,
                   tls_client_ca=pki.ca_cert) as v:
        ctx = ssl.create_default_context(cafile=pki.ca_cert)
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
        assert call(v, "GET", "/v1/auth/token/lookup-self", ctx=ctx).status == 200
        assert v.requests[-1].peer_cert is not None
        no_cert = ssl.create_default_context(cafile=pki.ca_cert)
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            call(v, "GET", "/v1/auth/token/lookup-self", ctx=no_cert)
        assert v.wait_for(lambda: len(v.tls_failures) >= 1, timeout=2)
        assert len(v.requests) == 1                     # the rejected one never got in


def test_script_mode(pki, tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"kv": {"secret/app": [{"v": "1"}, {"v": "2"}]},
                                "dynamic_roles": [{"mount": "database", "role": "app",
                                                   "default_ttl": 30, "max_ttl": 60}]}))
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_vault.py"), "--port", "0",
                             "--tls-cert", pki.server_cert, "--tls-key", pki.server_key,
                             "--root-token", "s.root", "--seed", str(seed)],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=pki.ca_cert)
        r = call(url, "GET", "/v1/secret/data/app", token="s.root", ctx=ctx)
        assert r.json["data"]["data"] == {"v": "2"} and r.json["data"]["metadata"]["version"] == 2
        assert call(url, "GET", "/v1/database/creds/app", token="s.root",
                    ctx=ctx).json["lease_duration"] == 30
        r = call(url, "POST", "/_fake/call", token=None, ctx=ctx,
                 body={"method": "fault_status", "args": ["secret/", 500]})
        assert r.status == 200
        assert call(url, "GET", "/v1/secret/data/app", token="s.root", ctx=ctx).status == 500
        reqs = call(url, "GET", "/_fake/requests", token=None, ctx=ctx).json["result"]
        assert [q["status"] for q in reqs] == [200, 200, 500]
        assert call(url, "POST", "/_fake/call", token=None, ctx=ctx,
                    body={"method": "stop"}).status == 400
    finally:
        proc.terminate()
        assert proc.wait(5) == 0


def test_policy_denial_refuses_only_the_prefix_and_keeps_the_token_valid(vault):
    vault.kv_put("secret/app/config", {"user": "a"})
    vault.deny_by_policy("secret/metadata/")
    r = call(vault, "GET", "/v1/secret/metadata/app/config")
    assert r.status == 403
    assert r.json == {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
    assert call(vault, "GET", "/v1/secret/data/app/config").status == 200
    assert call(vault, "GET", "/v1/auth/token/lookup-self").status == 200
    vault.allow_by_policy("secret/metadata/")
    assert call(vault, "GET", "/v1/secret/metadata/app/config").status == 200


def test_pki_issue_answers_a_real_certificate_without_a_lease(vault):
    vault.add_pki_role("web", ttl=90)
    r = call(vault, "POST", "/v1/pki/issue/web", body={"common_name": "app.example"})
    assert r.status == 200
    body = r.json
    assert body["lease_id"] == "" and body["lease_duration"] == 0 and body["renewable"] is False
    data = body["data"]
    assert data["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert data["private_key_type"] == "ec" and "PRIVATE KEY" in data["private_key"]
    assert data["ca_chain"] == [data["issuing_ca"]]
    assert abs(data["expiration"] - (time.time() + 90)) < 5
    out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-serial"],
                         input=data["certificate"], capture_output=True, text=True, check=True)
    assert "app.example" in out.stdout
    assert out.stdout.split("serial=")[1].strip().lower() == \
        data["serial_number"].replace(":", "").lower()
    assert vault.pki_issued == [data["serial_number"]]
