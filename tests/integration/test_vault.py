"""The Vault backend against the in-process fake Vault (tests/fakes/fake_vault.py),
over HTTPS with a throwaway CA unless a test is about TLS itself.

What is pinned here: TLS verification and client certificates, the Vault
headers, token/AppRole/Kubernetes/JWT logins, KV v1/v2 (mount detection,
metadata probes, version pins, deleted versions), token renewal and
re-login, dynamic leases (renewal, replacement before the max TTL, grace
revocation, non-renewable leases), POST with params, outages, revocation
at shutdown, config errors, and no plaintext (values or token) at rest.

Timings are read from the fake's request log and lease records, never
from sleeps; every wait is bounded.
"""

import json
import os
import re

import pytest

from helpers.harness import (HELPERS_DIR, PYTHON, SLOW, WaitTimeout, call_with_timeout,
                             describe_hits, errno_of, holds_for, parse_env_file, rand_token,
                             scan_memory, wait_until)
from helpers.vault import (approle_auth, backend, clean_env, last_seq, leases_of,
                           login_requests, replace_private, reqs, start, token_auth,
                           tokens_issued_by_logins, write_private)

CFG = "secret/app/config"


def kv(path=CFG, refresh="1s", **kw):
    return {"backend": "vault", "path": path, "refresh": refresh, **kw}


def dyn(path, **kw):
    return {"backend": "vault", "path": path, **kw}


def fake_time(vault, r):
    """A recorded request's time on the fake's clock (leases use it)."""
    return r.time + vault._offset


def start_kv(sandbox, vault, pki, secrets=None, data=None, auth=None, env=None, **be_kw):
    """Token auth, one KV v2 secret "api" (field api_key) unless secrets are
    given; returns (daemon, token)."""
    if data is not None:
        vault.kv_put(CFG, data)
    token = None
    if auth is None:
        token, auth = token_auth(sandbox, vault, token="hvs." + rand_token(40))
    secrets = secrets or {"api": kv(field="api_key")}
    d = start(sandbox, secrets, backend(vault, pki, auth, **be_kw), env=env)
    return d, token


def lines_matching(log, pattern):
    return [ln for ln in log.splitlines() if re.search(pattern, ln, re.IGNORECASE)]


def start_recorder(sandbox, watched):
    pidfile, logfile = sandbox.file("app.pid"), sandbox.file("signals.log")
    sandbox.popen([PYTHON, str(HELPERS_DIR / "sigrecorder.py"), pidfile, logfile, watched])
    wait_until(lambda: os.path.exists(pidfile), what="the signal recorder's pid file")
    return pidfile, logfile


def recorded_signals(logfile):
    try:
        with open(logfile) as f:
            return [ln.split() for ln in f.read().splitlines() if ln]
    except FileNotFoundError:
        return []


# =========================================================================== TLS

@pytest.mark.fuse
def test_tls_verification_is_on_without_a_ca_file(sandbox, vault):
    token, auth = token_auth(sandbox, vault)
    vault.kv_put(CFG, {"api_key": rand_token(24)})
    # No "tls" key and no VAULT_CACERT: the system CAs do not know the fake's CA.
    d = start(sandbox, {"api": kv(field="api_key")}, backend(vault, None, auth),
              top={"startup_timeout": "1s"})
    assert errno_of(lambda: d.read("api")) == "ENOENT", "a value fetched over unverified TLS"
    # Not just "TLS": the sandbox's own path (in the start-up line) has it.
    d.wait_log(r"(login|read).*failed.*(certificate|SSL)")
    assert not vault.find_requests(), "no HTTP request may pass an unverified handshake"
    assert vault.tls_failures, "the fake should have seen the client abort the handshake"
    log = d.log_text()
    assert lines_matching(log, r"(login|read).*failed.*(certificate|SSL)"), log


@pytest.mark.fuse
def test_mtls_client_certificate_is_presented(sandbox, make_vault, vault_pki):
    vault = make_vault(tls_client_ca=vault_pki.ca_cert)
    value = rand_token(24)
    tls = {"ca_file": vault_pki.ca_cert, "client_cert": vault_pki.client_cert,
           "client_key": vault_pki.client_key}
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": value}, tls=tls)
    assert d.read("api") == value
    rs = vault.find_requests()
    assert rs and all(r.peer_cert is not None for r in rs)
    subject = dict(x[0] for x in rs[0].peer_cert["subject"])
    assert subject.get("commonName") == "secretfs-test-client"


@pytest.mark.fuse
def test_mtls_server_refuses_a_client_without_certificate(sandbox, make_vault, vault_pki):
    vault = make_vault(tls_client_ca=vault_pki.ca_cert)
    token, auth = token_auth(sandbox, vault)
    vault.kv_put(CFG, {"api_key": rand_token(24)})
    d = start(sandbox, {"api": kv(field="api_key")}, backend(vault, vault_pki, auth),
              top={"startup_timeout": "1s"})
    assert errno_of(lambda: d.read("api")) == "ENOENT"
    d.wait_log(r"login failed")
    assert not vault.find_requests()


@pytest.mark.fuse
@pytest.mark.parametrize("server_name,works", [("localhost", True), (None, False),
                                               ("wrong.example", False)])
def test_tls_server_name_override(sandbox, make_vault, vault_pki, server_name, works):
    # The certificate names 127.0.0.1 and localhost; the fake listens on
    # 127.0.0.2, so only tls.server_name "localhost" can verify it.
    vault = make_vault(host="127.0.0.2")
    token, auth = token_auth(sandbox, vault)
    value = rand_token(24)
    vault.kv_put(CFG, {"api_key": value})
    tls = {"ca_file": vault_pki.ca_cert}
    if server_name:
        tls["server_name"] = server_name
    d = start(sandbox, {"api": kv(field="api_key")}, backend(vault, vault_pki, auth, tls=tls),
              top={"startup_timeout": "1s"})
    if works:
        assert d.read("api") == value
    else:
        assert errno_of(lambda: d.read("api")) == "ENOENT"
        d.wait_log(r"login failed.*(certificate|SSL|name)")
        assert not vault.find_requests()


# =========================================================================== token auth

@pytest.mark.fuse
def test_token_file_auth_sends_vault_headers_and_keeps_the_token_out_of_the_log(
        sandbox, vault, vault_pki):
    value = rand_token(24)
    d, token = start_kv(sandbox, vault, vault_pki, data={"api_key": value})
    assert d.read("api") == value
    rs = vault.find_requests()
    assert reqs(vault, "GET", "auth/token/lookup-self"), "the token should be validated"
    for r in rs:
        assert r.header("X-Vault-Request") == "true", r
        assert r.token == token, r
        assert r.namespace is None, r
    assert d.stop() == 0
    log = d.log_text()
    assert "logged in with token" in log
    assert token not in log and token[4:] not in log


@pytest.mark.fuse
def test_vault_environment_variables_supply_address_token_and_ca(sandbox, vault, vault_pki):
    token = vault.create_token(token_id="hvs." + rand_token(40))
    value = rand_token(24)
    vault.kv_put(CFG, {"api_key": value})
    be = {"type": "vault", "auth": {"method": "token"}}
    d = start(sandbox, {"api": kv(field="api_key")}, be,
              env={"VAULT_ADDR": vault.url, "VAULT_TOKEN": token,
                   "VAULT_CACERT": vault_pki.ca_cert})
    assert d.read("api") == value
    assert all(r.token == token and r.header("X-Vault-Request") == "true"
               for r in vault.find_requests())
    assert d.stop() == 0
    assert token not in d.log_text()


# =========================================================================== KV v2

@pytest.mark.fuse
def test_kv2_path_as_for_vault_kv_get_serves_field_json_and_template(sandbox, vault, vault_pki):
    a, u, p = rand_token(24), "app-user", rand_token(24)
    data = {"api_key": a, "db": {"user": u, "password": p}}
    secrets = {
        "api": kv(field="api_key"),
        "conf.json": kv(format="json"),
        "app.conf": kv(format="template", template="key={{api_key}}\nuser={{ db.user }}\n"),
        "db/password": kv(field="db.password"),
    }
    d, _ = start_kv(sandbox, vault, vault_pki, secrets=secrets, data=data)
    assert d.read("api") == a
    assert json.loads(d.read("conf.json")) == data
    assert d.read("app.conf") == f"key={a}\nuser={u}\n"
    assert d.read("db/password") == p
    # The mount's type came from sys/internal/ui/mounts; "data/" was inserted.
    assert len(reqs(vault, "GET", f"sys/internal/ui/mounts/{CFG}")) == 1
    assert len(reqs(vault, "GET", "secret/data/app/config")) == 1, "one read for four files"
    assert not reqs(vault, path=CFG), "the KV v2 path must not be read as written"


@pytest.mark.fuse
def test_kv_versions_of_custom_mounts_are_detected(sandbox, vault, vault_pki):
    vault.add_mount("apps/prod/", "kv", version=2)
    vault.add_mount("legacy/", "kv", version=1)
    v2, v1 = rand_token(24), rand_token(24)
    vault.kv_put("apps/prod/web", {"key": v2})
    vault.kv_put("legacy/web", {"key": v1})
    secrets = {"v2": kv("apps/prod/web", field="key"), "v1": kv("legacy/web", field="key")}
    d, _ = start_kv(sandbox, vault, vault_pki, secrets=secrets)
    assert d.read("v2") == v2
    assert d.read("v1") == v1
    assert reqs(vault, "GET", "apps/prod/data/web")
    assert reqs(vault, "GET", "legacy/web")
    d.wait_log(r"mount apps/prod/ is kv v2")
    d.wait_log(r"mount legacy/ is kv v1")


@pytest.mark.fuse
def test_kv2_new_version_is_served_within_the_refresh_interval(sandbox, vault, vault_pki):
    v1, v2 = rand_token(24), rand_token(24)
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": v1})
    assert d.read("api") == v1
    vault.kv_put(CFG, {"api_key": v2})
    # refresh 1s (first check within 0.5-1 s): well within 2.5 s.
    wait_until(lambda: d.read("api") == v2, timeout=2.5 * SLOW, what="version 2 served")
    d.wait_log(r"version 1 -> 2")


@pytest.mark.fuse
def test_kv2_steady_state_probes_metadata_and_reads_data_once_per_version(
        sandbox, vault, vault_pki):
    v1, v2 = rand_token(24), rand_token(24)
    secrets = {"api": kv(field="api_key"), "all.json": kv(format="json")}
    d, _ = start_kv(sandbox, vault, vault_pki, secrets=secrets, data={"api_key": v1})
    meta = "secret/metadata/app/config"
    data = "secret/data/app/config"

    wait_until(lambda: len(reqs(vault, "GET", meta)) >= 3, timeout=4 * SLOW,
               what="three metadata probes")
    assert len(reqs(vault, "GET", data)) == 1, "no data read while the version is unchanged"

    vault.kv_put(CFG, {"api_key": v2})
    wait_until(lambda: d.read("api") == v2, timeout=3 * SLOW, what="version 2 served")
    seen = len(reqs(vault, "GET", meta))
    wait_until(lambda: len(reqs(vault, "GET", meta)) >= seen + 2, timeout=4 * SLOW,
               what="two more metadata probes")
    assert len(reqs(vault, "GET", data)) == 2, "exactly one data read per version change"
    # The read of version 2 follows the probe that saw it.
    second = reqs(vault, "GET", data)[1]
    before = [r for r in reqs(vault, "GET", meta) if r.seq < second.seq]
    assert before and before[-1].seq == second.seq - 1
    # Mount detection is cached: asked once for the path.
    assert len(reqs(vault, "GET", prefix="sys/internal/ui/mounts")) == 1
    assert len(reqs(vault, "GET", "auth/token/lookup-self")) == 1


# =========================================================================== KV v1, pins, deletes

@pytest.mark.fuse
def test_kv1_mount_is_read_as_is_and_refreshed(sandbox, vault, vault_pki):
    p1, p2 = rand_token(24), rand_token(24)
    vault.kv_put("kv/app", {"password": p1})
    d, _ = start_kv(sandbox, vault, vault_pki, secrets={"pw": kv("kv/app", field="password")})
    assert d.read("pw") == p1
    assert reqs(vault, "GET", "kv/app")
    assert not reqs(vault, prefix="kv/data") and not reqs(vault, prefix="kv/metadata")
    vault.kv_put("kv/app", {"password": p2})
    wait_until(lambda: d.read("pw") == p2, timeout=2.5 * SLOW, what="the new KV v1 value")
    # KV v1's lease_duration (768h) is not a lease: nothing to renew or revoke.
    assert not reqs(vault, prefix="sys/leases")


@pytest.mark.fuse
def test_kv2_version_pin_keeps_serving_the_pinned_version(sandbox, vault, vault_pki):
    v1, v2, v3 = rand_token(24), rand_token(24), rand_token(24)
    vault.kv_put(CFG, {"api_key": v1})
    vault.kv_put(CFG, {"api_key": v2})
    secrets = {"pinned": kv(field="api_key", version=1), "latest": kv(field="api_key")}
    d, _ = start_kv(sandbox, vault, vault_pki, secrets=secrets)
    assert d.read("pinned") == v1
    assert d.read("latest") == v2
    vault.kv_put(CFG, {"api_key": v3})
    wait_until(lambda: d.read("latest") == v3, timeout=2.5 * SLOW, what="the unpinned file at v3")
    assert d.read("pinned") == v1
    pinned = [r for r in reqs(vault, "GET", "secret/data/app/config") if r.query.get("version")]
    assert pinned and all(r.query["version"] == "1" for r in pinned)


@pytest.mark.fuse
@pytest.mark.parametrize("recovery", ["undelete", "new_version"])
def test_kv2_deleted_current_version_keeps_last_good_value_then_recovers(
        sandbox, vault, vault_pki, recovery):
    v1, v2, v3 = rand_token(24), rand_token(24), rand_token(24)
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": v1})
    assert d.read("api") == v1
    with vault._lock:                       # atomically: no probe sees v2 alive
        vault.kv_put(CFG, {"api_key": v2})
        vault.kv_delete(CFG, versions=[2])
    d.wait_log(r"source vault:secret/app/config: read failed.*version 2 is deleted",
               timeout=4 * SLOW)
    assert d.read("api") == v1, "the last good value must stay"
    assert lines_matching(d.log_text(), r"version 2 is deleted.*serving the last good value")
    if recovery == "undelete":
        vault.kv_undelete(CFG, versions=[2])
        expected = v2
    else:
        vault.kv_put(CFG, {"api_key": v3})
        expected = v3
    wait_until(lambda: d.read("api") == expected, timeout=6 * SLOW, what="recovery")


# =========================================================================== namespaces

@pytest.mark.fuse
@pytest.mark.parametrize("via", ["config", "env"])
def test_namespace_header_is_sent(sandbox, make_vault, vault_pki, via):
    vault = make_vault(namespaces=["team-a"])
    value, other = rand_token(24), rand_token(24)
    vault.kv_put(CFG, {"api_key": value}, namespace="team-a")
    vault.kv_put(CFG, {"api_key": other})    # the root namespace holds something else
    token = vault.create_token(namespace="team-a")
    auth = {"method": "token", "token_file": write_private(sandbox, "tok", token)}
    be = backend(vault, vault_pki, auth)
    env = None
    if via == "config":
        be["namespace"] = "team-a"
    else:
        env = {"VAULT_NAMESPACE": "team-a"}
    d = start(sandbox, {"api": kv(field="api_key")}, be, env=env)
    assert d.read("api") == value
    rs = vault.find_requests()
    assert rs and all(r.namespace == "team-a" for r in rs), [(r, r.namespace) for r in rs]


# =========================================================================== auth methods

@pytest.mark.fuse
def test_approle_login_reads_role_id_and_secret_id_files(sandbox, vault, vault_pki):
    role_id, sid, auth = approle_auth(sandbox, vault)
    value = rand_token(24)
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": value}, auth=auth)
    assert d.read("api") == value
    logins = login_requests(vault)
    assert len(logins) == 1
    assert logins[0].json == {"role_id": role_id, "secret_id": sid}
    assert logins[0].token is None
    token = tokens_issued_by_logins(vault)[0]
    others = [r for r in vault.find_requests() if r not in logins]
    assert others and all(r.token == token for r in others)
    assert d.stop() == 0
    log = d.log_text()
    assert "logged in with approle" in log
    assert sid not in log and token not in log


@pytest.mark.fuse
@pytest.mark.parametrize("flag", [True, None], ids=["secret_id_wrapped", "detected"])
def test_approle_wrapped_secret_id_is_unwrapped_once(sandbox, vault, vault_pki, flag):
    role_id, wrapping, auth = approle_auth(sandbox, vault, wrapped=True)
    if flag is not None:
        auth["secret_id_wrapped"] = flag
    value = rand_token(24)
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": value}, auth=auth)
    assert d.read("api") == value
    unwraps = reqs(vault, "POST", "sys/wrapping/unwrap")
    assert len(unwraps) == 1 and unwraps[0].token == wrapping
    assert vault.unwrapped(wrapping)
    login = login_requests(vault)[0]
    assert login.json["role_id"] == role_id and login.json["secret_id"] != wrapping
    # A second login (token revoked) uses the kept secret ID, not the
    # single-use wrapping token again.
    vault.revoke_token(tokens_issued_by_logins(vault)[0])
    wait_until(lambda: len([r for r in login_requests(vault) if r.status == 200]) >= 2,
               timeout=4 * SLOW, what="a second login")
    assert len(reqs(vault, "POST", "sys/wrapping/unwrap")) == 1
    second = login_requests(vault)[1]
    assert second.json["secret_id"] == login.json["secret_id"]
    v2 = rand_token(24)
    vault.kv_put(CFG, {"api_key": v2})
    wait_until(lambda: d.read("api") == v2, timeout=4 * SLOW, what="serving after re-login")
    assert d.stop() == 0
    assert login.json["secret_id"] not in d.log_text() and wrapping not in d.log_text()


@pytest.mark.fuse
@pytest.mark.parametrize("method", ["kubernetes", "jwt"])
def test_role_jwt_login_rereads_the_jwt_file_at_every_login(sandbox, vault, vault_pki, method):
    jwt1, jwt2 = "eyJ" + rand_token(60), "eyJ" + rand_token(60)
    if method == "kubernetes":
        vault.add_kubernetes_role("app", [jwt1, jwt2])
    else:
        vault.add_jwt_role("app", [jwt1, jwt2])
    jwt_file = write_private(sandbox, "sa-token", jwt1)
    auth = {"method": method, "role": "app", "jwt_file": jwt_file}
    value = rand_token(24)
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": value}, auth=auth)
    assert d.read("api") == value
    logins = login_requests(vault, method)
    assert len(logins) == 1 and logins[0].json == {"role": "app", "jwt": jwt1}

    replace_private(jwt_file, jwt2)              # the issuer rotated the token
    vault.revoke_token(tokens_issued_by_logins(vault, method)[0])
    wait_until(lambda: len(login_requests(vault, method)) >= 2, timeout=4 * SLOW,
               what="a second login")
    assert login_requests(vault, method)[1].json == {"role": "app", "jwt": jwt2}
    v2 = rand_token(24)
    vault.kv_put(CFG, {"api_key": v2})
    wait_until(lambda: d.read("api") == v2, timeout=4 * SLOW, what="serving after re-login")
    assert d.stop() == 0
    assert jwt1 not in d.log_text() and jwt2 not in d.log_text()


@pytest.mark.fuse
def test_auth_mount_option_selects_the_login_path(sandbox, vault, vault_pki):
    vault.add_mount("auth/k8s-east/", "kubernetes")
    jwt = "eyJ" + rand_token(60)
    vault.add_kubernetes_role("app", jwt, mount="k8s-east")
    auth = {"method": "kubernetes", "role": "app", "mount": "k8s-east",
            "jwt_file": write_private(sandbox, "sa-token", jwt)}
    value = rand_token(24)
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": value}, auth=auth)
    assert d.read("api") == value
    assert len(login_requests(vault, "k8s-east")) == 1
    assert not login_requests(vault, "kubernetes")


# =========================================================================== token lifecycle

def token_renewals(vault):
    return reqs(vault, "POST", "auth/token/renew-self") + reqs(vault, "PUT",
                                                               "auth/token/renew-self")


@pytest.mark.fuse
def test_token_is_renewed_before_it_expires_repeatedly(sandbox, vault, vault_pki):
    _, _, auth = approle_auth(sandbox, vault, token_ttl=2, token_max_ttl=60)
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": rand_token(24)}, auth=auth)
    wait_until(lambda: len(answered(token_renewals(vault))) >= 3, timeout=6 * SLOW,
               what="three answered token renewals")
    token = tokens_issued_by_logins(vault)[0]
    assert all(r.token == token and r.status == 200 for r in answered(token_renewals(vault)))
    info = vault.token_info(token)
    assert not info["revoked"], info
    assert len(login_requests(vault)) == 1, "renewal, not re-login, while renewable"
    # Each renewal came before the expiry then in force, at 1/2..9/10 of it.
    expiry, start_t, ttl = info["issued"] + 2, info["issued"], 2.0
    for t, granted in info["renewals"][:3]:
        assert t < expiry, "renewed after the token had expired"
        assert 0.5 * ttl <= t - start_t <= 0.9 * ttl, (t - start_t, ttl)
        start_t, ttl, expiry = t, float(granted), t + granted


def start_db(sandbox, vault, pki, auth, ttl=3, max_ttl=600, extra=None, **be_kw):
    vault.add_dynamic_role("database", "app", default_ttl=ttl, max_ttl=max_ttl)
    secrets = {"db/username": dyn("database/creds/app", field="username"),
               "db/password": dyn("database/creds/app", field="password")}
    secrets.update(extra or {})
    return start(sandbox, secrets, backend(vault, pki, auth, **be_kw))


def renewals_of(vault, lease_id):
    return [r for r in reqs(vault, "PUT", "sys/leases/renew")
            if (r.json or {}).get("lease_id") == lease_id]


def answered(requests):
    """The requests the fake has answered (a request still in its handler has no status)."""
    return [r for r in requests if r.status is not None]


def creds_requests(vault):
    return len(reqs(vault, "GET", "database/creds/app"))


@pytest.mark.fuse
def test_token_near_max_ttl_logs_in_again_in_time_and_replaces_its_leases_once(
        sandbox, vault, vault_pki):
    # Token ttl 4 s, max_ttl 8 s: renewed, then replaced by a new login
    # before it ends. As in Vault, the token's leases die with it, so the
    # lease made under it is replaced once, before that; the replacement
    # is then renewed, never re-issued because the token changed.
    _, _, auth = approle_auth(sandbox, vault, token_ttl=4, token_max_ttl=8)
    v1 = rand_token(24)
    vault.kv_put(CFG, {"api_key": v1})
    d = start_db(sandbox, vault, vault_pki, auth, ttl=2, extra={"api": kv(field="api_key")})
    wait_until(lambda: len(tokens_issued_by_logins(vault)) >= 2, timeout=10 * SLOW,
               what="a second login near the token's max TTL")
    first, second = tokens_issued_by_logins(vault)[:2]
    wait_until(lambda: len(leases_of(vault, "database", "app")) >= 2, timeout=3 * SLOW,
               what="the lease of the retiring token replaced")
    old, new = leases_of(vault, "database", "app")[:2]
    wait_until(lambda: len([r for r in renewals_of(vault, new.lease_id)
                            if r.token == second and r.status == 200]) >= 2,
               timeout=5 * SLOW, what="the replacement renewed twice with the new token")
    assert creds_requests(vault) == 2, "one replacement for the retiring token's lease, no more"
    assert new.live and new.token_accessor == vault.token_info(second)["accessor"]
    assert not old.revoked or old.revoked_at >= new.issued, "the old lease died before the swap"
    assert (d.read("db/username"), d.read("db/password")) == \
        (new.data["username"], new.data["password"])
    v2 = rand_token(24)
    vault.kv_put(CFG, {"api_key": v2})
    wait_until(lambda: d.read("api") == v2, timeout=3 * SLOW, what="serving with the new token")
    assert reqs(vault, "GET", "secret/metadata/app/config")[-1].token == second

    info1 = vault.token_info(first)
    login2 = login_requests(vault)[1]
    assert token_renewals(vault) and token_renewals(vault)[0].seq < login2.seq, \
        "the token should be renewed before the re-login"
    assert not [r for r in vault.find_requests() if r.status == 403], \
        "an expired token was used"
    assert fake_time(vault, login2) < info1["max_expires"], "logged in again only after expiry"
    # Design: replace at 85-90 % of the token's life, not at its last
    # moment (its leases, and the app's credentials, die with it).
    life = info1["max_expires"] - info1["issued"]
    at = fake_time(vault, login2) - info1["issued"]
    msg = f"re-login at {at:.2f} s of the token's {life:.0f} s life"
    if old.revoked:
        msg += f"; the old credentials died {old.revoked_at - new.issued:.2f} s after the swap"
    assert at <= 0.9 * life + 0.4, msg


@pytest.mark.fuse
def test_token_renewed_for_zero_seconds_is_replaced_at_once(sandbox, vault, vault_pki):
    # Vault reports TTLs in whole seconds: a renewal capped by the max TTL
    # with under a second left says lease_duration 0. That means "ends
    # now" (only lookup-self's ttl 0 means "never expires").
    _, _, auth = approle_auth(sandbox, vault, token_ttl=2, token_max_ttl=60)
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": rand_token(24)}, auth=auth)
    first = tokens_issued_by_logins(vault)[0]
    info = vault.token_info(first)
    reply = {"request_id": "0", "lease_id": "", "renewable": False, "lease_duration": 0,
             "data": None, "wrap_info": None, "auth": {
                 "client_token": first, "accessor": info["accessor"], "policies": ["default"],
                 "token_policies": ["default"], "metadata": None, "lease_duration": 0,
                 "renewable": True, "entity_id": "", "token_type": "service", "orphan": True},
             "warnings": ['TTL of "2s" exceeded the effective max_ttl of "0s"; '
                          "TTL value is capped accordingly"]}
    vault.fault_status("auth/token/renew-self", 200, body=reply, times=1)
    wait_until(lambda: len(tokens_issued_by_logins(vault)) >= 2, timeout=4 * SLOW,
               what="a new login after a renewal granting 0 s")
    login2 = login_requests(vault)[1]
    assert [r for r in token_renewals(vault) if r.fault], "the faked renewal was not requested"
    assert not [r for r in vault.find_requests() if r.status == 403], \
        "the token was treated as never expiring and used until refused"
    assert fake_time(vault, login2) < info["expires"]


@pytest.mark.fuse
def test_forbidden_with_a_revoked_token_logs_in_again_and_keeps_working(
        sandbox, vault, vault_pki):
    _, _, auth = approle_auth(sandbox, vault)
    v1, v2 = rand_token(24), rand_token(24)
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": v1}, auth=auth)
    first = tokens_issued_by_logins(vault)[0]
    vault.revoke_token(first)
    wait_until(lambda: len(tokens_issued_by_logins(vault)) >= 2, timeout=3 * SLOW,
               what="a login after the 403")
    second = tokens_issued_by_logins(vault)[1]
    denied = [r for r in vault.find_requests() if r.status == 403]
    assert denied and denied[0].token == first
    lookups = [r for r in reqs(vault, "GET", "auth/token/lookup-self") if r.seq > denied[0].seq]
    assert lookups and lookups[0].status == 403, "the token's validity should be checked"
    vault.kv_put(CFG, {"api_key": v2})
    wait_until(lambda: d.read("api") == v2, timeout=3 * SLOW, what="serving after re-login")
    assert reqs(vault, "GET", "secret/metadata/app/config")[-1].token == second
    d.wait_log(r"no longer valid; logging in again")


@pytest.mark.fuse
def test_lease_revoked_along_with_its_token_is_replaced_once_then_renewed(
        sandbox, vault, vault_pki):
    # Vault revokes a token's leases with it: after the re-login exactly one
    # replacement is fetched, and that lease is renewed, not re-issued.
    _, _, auth = approle_auth(sandbox, vault)
    d = start_db(sandbox, vault, vault_pki, auth, ttl=2)
    assert creds_requests(vault) == 1
    (old,) = leases_of(vault, "database", "app")
    vault.revoke_token(tokens_issued_by_logins(vault)[0])
    assert old.revoked_by == "token"
    wait_until(lambda: len(leases_of(vault, "database", "app")) >= 2, timeout=4 * SLOW,
               what="a replacement lease")
    new = leases_of(vault, "database", "app")[1]
    wait_until(lambda: d.read("db/password") == new.data["password"], what="new creds served")
    assert d.read("db/username") == new.data["username"]
    assert len(tokens_issued_by_logins(vault)) == 2
    second = tokens_issued_by_logins(vault)[1]
    wait_until(lambda: len([r for r in renewals_of(vault, new.lease_id)
                            if r.token == second and r.status == 200]) >= 2,
               timeout=5 * SLOW, what="the replacement renewed twice with the new token")
    assert creds_requests(vault) == 2, "one replacement, no more"
    assert new.live


# =========================================================================== dynamic secrets

@pytest.mark.fuse
def test_db_creds_username_and_password_come_from_one_lease(sandbox, vault, vault_pki):
    token, auth = token_auth(sandbox, vault)
    d = start_db(sandbox, vault, vault_pki, auth, ttl=60,
                 extra={"db.env": dyn("database/creds/app", format="env")})
    assert len(reqs(vault, "GET", "database/creds/app")) == 1, "one creds request for all files"
    (lease,) = leases_of(vault, "database", "app")
    assert d.read("db/username") == lease.data["username"]
    assert d.read("db/password") == lease.data["password"]
    assert parse_env_file(d.read("db.env")) == lease.data
    d.wait_log(re.escape(lease.lease_id))


@pytest.mark.fuse
def test_db_lease_is_renewed_at_about_two_thirds_of_its_ttl(sandbox, vault, vault_pki):
    token, auth = token_auth(sandbox, vault)
    d = start_db(sandbox, vault, vault_pki, auth, ttl=2)
    (lease,) = leases_of(vault, "database", "app")
    # The fake records the renewal in the lease before it answers: wait for the answers.
    wait_until(lambda: len(answered(renewals_of(vault, lease.lease_id))) >= 2,
               timeout=4 * SLOW, what="two answered renewals")
    rs = answered(renewals_of(vault, lease.lease_id))
    assert len(rs) >= 2 and all(r.method == "PUT" and r.status == 200 for r in rs)
    prev = lease.issued
    for t, _inc, granted in lease.renewals[:2]:
        frac = (t - prev) / 2.0
        assert 0.6 <= frac <= 0.8, f"renewed at {frac:.0%} of the TTL"
        prev = t
    assert len(reqs(vault, "GET", "database/creds/app")) == 1
    assert d.read("db/password") == lease.data["password"]


@pytest.mark.fuse
def test_db_lease_near_max_ttl_is_replaced_before_expiry_and_revoked_after_grace(
        sandbox, vault, vault_pki):
    # ttl 6 s, max_ttl 20 s: renewed at ~4, 8, 13, 17 s; the renewal near
    # 17 s is capped (3 s). The replacement must come at 85-90 % of the
    # lease's life (17-18 s), the files swap together, on_change runs once,
    # and the old lease is revoked 1 s later, while still alive.
    token, auth = token_auth(sandbox, vault)
    pidfile, siglog = start_recorder(sandbox, os.path.join(sandbox.mount, "db/password"))
    on_change = {"signal": "HUP", "pid_file": pidfile}
    vault.add_dynamic_role("database", "app", default_ttl=6, max_ttl=20)
    secrets = {"db/username": dyn("database/creds/app", field="username", on_change=on_change),
               "db/password": dyn("database/creds/app", field="password", on_change=on_change)}
    d = start(sandbox, secrets, backend(vault, vault_pki, auth, revoke_grace="1s"))
    (old,) = leases_of(vault, "database", "app")
    pairs = set()

    def poll_pair():
        u1 = d.read("db/username")
        p = d.read("db/password")
        u2 = d.read("db/username")
        if u1 == u2:
            pairs.add((u1, p))
        return len(leases_of(vault, "database", "app")) >= 2 and u2 != old.data["username"]

    wait_until(poll_pair, timeout=22 * SLOW, interval=0.05, what="the replacement served")
    new = leases_of(vault, "database", "app")[1]
    wait_until(lambda: old.revoked, timeout=3 * SLOW, what="the old lease revoked")

    valid = {(old.data["username"], old.data["password"]),
             (new.data["username"], new.data["password"])}
    assert pairs <= valid, f"a torn pair was served: {pairs - valid}"
    assert (d.read("db/username"), d.read("db/password")) == \
        (new.data["username"], new.data["password"])
    renewed = [g for _t, _i, g in old.renewals]
    assert renewed and renewed[0] == 6
    life = old.max_expires - old.issued
    at = new.issued - old.issued
    assert at <= 0.9 * life + 0.5, \
        f"replacement fetched at {at:.2f} s of the old lease's {life:.0f} s life " \
        f"({old.max_expires - new.issued:.2f} s before it expired)"
    assert old.revoked_by == "api", \
        f"the old lease should be revoked by secretfs after the grace, not by {old.revoked_by}"
    grace = old.revoked_at - new.issued
    assert 0.9 <= grace <= 2.5, f"old lease revoked {grace:.2f} s after the swap"
    assert len(reqs(vault, "GET", "database/creds/app")) == 2
    wait_until(lambda: recorded_signals(siglog), timeout=3 * SLOW, what="on_change")
    holds_for(lambda: len(recorded_signals(siglog)) == 1, 1.5, what="on_change ran once")


@pytest.mark.fuse
def test_db_lease_not_found_on_renewal_fetches_a_replacement(sandbox, vault, vault_pki):
    token, auth = token_auth(sandbox, vault)
    d = start_db(sandbox, vault, vault_pki, auth, ttl=2)
    (old,) = leases_of(vault, "database", "app")
    vault.revoke_lease(old.lease_id)          # gone behind secretfs's back
    wait_until(lambda: len(leases_of(vault, "database", "app")) >= 2, timeout=4 * SLOW,
               what="a replacement after 'lease not found'")
    new = leases_of(vault, "database", "app")[1]
    failed = renewals_of(vault, old.lease_id)
    assert failed and failed[-1].status == 400
    wait_until(lambda: d.read("db/password") == new.data["password"], what="new creds served")
    assert d.read("db/username") == new.data["username"]
    d.wait_log(r"can no longer be renewed")


@pytest.mark.fuse
def test_non_renewable_lease_is_replaced_at_85_to_90_percent_of_its_ttl(
        sandbox, vault, vault_pki):
    token, auth = token_auth(sandbox, vault)
    vault.add_dynamic_role("aws", "app", default_ttl=4)
    secrets = {"aws/access_key": dyn("aws/creds/app", field="access_key"),
               "aws/secret_key": dyn("aws/creds/app", field="secret_key")}
    d = start(sandbox, secrets, backend(vault, vault_pki, auth, revoke_grace="200ms"))
    (old,) = leases_of(vault, "aws", "app")
    assert not old.renewable
    wait_until(lambda: len(leases_of(vault, "aws", "app")) >= 2, timeout=5 * SLOW,
               what="a replacement")
    new = leases_of(vault, "aws", "app")[1]
    frac = (new.issued - old.issued) / 4.0
    assert 0.83 <= frac <= 0.92, f"replaced at {frac:.0%} of the TTL"
    assert not reqs(vault, prefix="sys/leases/renew"), "a non-renewable lease is not renewed"
    wait_until(lambda: d.read("aws/secret_key") == new.data["secret_key"], what="new keys")
    assert d.read("aws/access_key") == new.data["access_key"]
    wait_until(lambda: old.revoked, timeout=2 * SLOW, what="the old lease revoked")
    assert old.revoked_by == "api"


@pytest.mark.fuse
def test_post_with_params_issues_once_for_all_files(sandbox, vault, vault_pki):
    token, auth = token_auth(sandbox, vault)
    vault.add_dynamic_role("pki", "web", default_ttl=3600)
    params = {"common_name": "app.example.com", "ttl": "1h"}
    secrets = {f"tls/{f}": dyn("pki/issue/web", method="POST", params=params, field=f)
               for f in ("certificate", "private_key")}
    d = start(sandbox, secrets, backend(vault, vault_pki, auth))
    issued = reqs(vault, "POST", "pki/issue/web")
    assert len(issued) == 1
    assert issued[0].json == params
    assert issued[0].header("Content-Type", "").startswith("application/json")
    (lease,) = leases_of(vault, "pki", "web")
    assert lease.params["common_name"] == "app.example.com"
    assert d.read("tls/certificate") == lease.data["certificate"]
    assert "app.example.com" in d.read("tls/certificate")
    assert d.read("tls/private_key") == lease.data["private_key"]


# =========================================================================== outages

OUTAGES = ["sealed", "status_500", "rate_limit", "malformed", "hang"]


@pytest.mark.fuse
@pytest.mark.parametrize("kind", OUTAGES)
def test_outage_keeps_last_good_value_and_recovers_without_restart(
        sandbox, vault, vault_pki, kind):
    v1, v2 = rand_token(24), rand_token(24)
    be_kw = {"timeout": "1s"} if kind == "hang" else {}
    d, _ = start_kv(sandbox, vault, vault_pki, data={"api_key": v1}, **be_kw)
    assert d.read("api") == v1
    mark = last_seq(vault)
    if kind == "sealed":
        vault.seal()
        why = r"sealed"
    elif kind == "status_500":
        vault.fault_status("secret/", 500, times=None)
        why = r"HTTP 500"
    elif kind == "rate_limit":
        vault.fault_rate_limit("secret/", retry_after=3, times=None)
        why = r"HTTP 429"
    elif kind == "malformed":
        vault.fault_malformed("secret/", times=None)
        why = r"malformed"
    else:
        vault.fault_hang("secret/", seconds=30, times=None)
        why = r"time|Timeout"
    vault.kv_put(CFG, {"api_key": v2})
    d.wait_log(rf"source vault:secret/app/config: .*failed.*({why}).*serving the last good value",
               timeout=10 * SLOW)
    # Readers are answered at once, with the last good value, all along.
    assert call_with_timeout(lambda: d.read("api"), timeout=2) == v1
    if kind == "sealed":
        vault.unseal()
    else:
        vault.clear_faults()
    wait_until(lambda: d.read("api") == v2, timeout=8 * SLOW, what="recovery after the outage")
    assert d.alive()
    if kind == "rate_limit":
        limited = [r for r in reqs(vault, prefix="secret/", since=mark) if r.status == 429]
        after = reqs(vault, prefix="secret/", since=limited[-1].seq)
        gap = after[0].time - limited[-1].time
        assert gap >= 2.9, f"Retry-After: 3 not honoured (retried after {gap:.2f} s)"


@pytest.mark.fuse
def test_one_forbidden_path_does_not_delay_other_secrets(sandbox, vault, vault_pki):
    _, _, auth = approle_auth(sandbox, vault)
    a1, b1 = rand_token(24), rand_token(24)
    vault.kv_put("secret/a", {"v": a1})
    vault.kv_put("secret/b", {"v": b1})
    secrets = {"a": kv("secret/a", field="v"), "b": kv("secret/b", field="v")}
    d, _ = start_kv(sandbox, vault, vault_pki, secrets=secrets, auth=auth)
    vault.fault_status("secret/metadata/a", 403, times=None)
    vault.fault_status("secret/data/a", 403, times=None)
    vault.kv_put("secret/a", {"v": rand_token(24)})
    d.wait_log(r"source vault:secret/a: .*failed.*403", timeout=3 * SLOW)
    for _ in range(2):
        b = rand_token(24)
        vault.kv_put("secret/b", {"v": b})
        wait_until(lambda: d.read("b") == b, timeout=2.5 * SLOW, what="b keeps updating")
    assert d.read("a") == a1
    assert len(login_requests(vault)) == 1, "a forbidden path is not a dead token"


# =========================================================================== shutdown

@pytest.mark.fuse
@pytest.mark.parametrize("revoke", [True, False], ids=["revoke_on_shutdown", "default"])
def test_revoke_on_shutdown(sandbox, vault, vault_pki, revoke):
    token, auth = token_auth(sandbox, vault)
    kw = {"revoke_on_shutdown": True} if revoke else {}
    d = start_db(sandbox, vault, vault_pki, auth, ttl=60, **kw)
    (lease,) = leases_of(vault, "database", "app")
    assert d.stop() == 0
    revokes = [r for r in reqs(vault, "PUT", "sys/leases/revoke")
               if (r.json or {}).get("lease_id") == lease.lease_id]
    if revoke:
        assert len(revokes) == 1 and revokes[0].status == 204
        assert lease.revoked and lease.revoked_by == "api"
    else:
        assert not revokes
        assert lease.live


# =========================================================================== config errors

CHECK_CASES = {
    "unknown_auth_method": (lambda be: be["auth"].update(method="ldap"),
                            r"backends\.vault\.auth\.method: unknown auth method \"ldap\""),
    "approle_missing_role_id_file": (
        lambda be: be.update(auth={"method": "approle", "secret_id_file": "/x"}),
        r"backends\.vault\.auth: missing required key \"role_id_file\""),
    "kubernetes_missing_role": (
        lambda be: be.update(auth={"method": "kubernetes"}),
        r"backends\.vault\.auth: missing required key \"role\""),
    "jwt_missing_jwt_file": (
        lambda be: be.update(auth={"method": "jwt", "role": "app"}),
        r"backends\.vault\.auth: missing required key \"jwt_file\""),
    "client_cert_without_key": (
        lambda be: be.update(tls={"client_cert": "/etc/hostname"}),
        r"backends\.vault\.tls: client_cert and client_key go together"),
    "unknown_backend_key": (lambda be: be.update(adress="https://x"),
                            r"backends\.vault\.adress: unknown key"),
    "unknown_auth_key": (lambda be: be["auth"].update(role="x"),
                         r"backends\.vault\.auth\.role: unknown key \"role\" for auth method token"),
    "unknown_tls_key": (lambda be: be.update(tls={"verify": False}),
                        r"backends\.vault\.tls\.verify: unknown key"),
    "bad_timeout": (lambda be: be.update(timeout="soon"), r"backends\.vault\.timeout: "),
}


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_check_reports_vault_config_errors_with_key_paths(workdir, case):
    mutate, expected = CHECK_CASES[case]
    be = {"type": "vault", "address": "https://127.0.0.1:8200",
          "auth": {"method": "token", "token_file": "/dev/null"}}
    mutate(be)
    cfg = workdir.config({"api": {"backend": "vault", "path": CFG}}, backends={"vault": be})
    workdir.write_config(cfg, workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"], env=clean_env())
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"cfg\.json: " + expected, r.stderr), r.stderr


@pytest.mark.parametrize("secret,expected", [
    ({"params": {"common_name": "x"}}, r"secrets\.api\.params: needs \"method\""),
    ({"method": "DELETE"}, r"secrets\.api\.method: must be"),
    ({"version": 0}, r"secrets\.api\.version: must be a positive integer"),
    ({"version": 2, "method": "POST"}, r"secrets\.api\.version: applies to KV reads only"),
], ids=["params_without_method", "bad_method", "bad_version", "version_with_post"])
def test_check_reports_vault_secret_errors_with_key_paths(workdir, secret, expected):
    be = {"type": "vault", "address": "https://127.0.0.1:8200",
          "auth": {"method": "token", "token_file": "/dev/null"}}
    cfg = workdir.config({"api": {"backend": "vault", "path": CFG, **secret}},
                         backends={"vault": be})
    workdir.write_config(cfg, workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"], env=clean_env())
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"cfg\.json: " + expected, r.stderr), r.stderr


def test_check_accepts_a_valid_vault_config(workdir):
    be = {"type": "vault", "address": "https://127.0.0.1:8200", "namespace": "team-a",
          "tls": {"ca_file": "/etc/hostname", "server_name": "vault.internal"},
          "auth": {"method": "approle", "role_id_file": "/x", "secret_id_file": "/y"},
          "timeout": "2s", "revoke_grace": "10s", "revoke_on_shutdown": True}
    cfg = workdir.config({"api": {"backend": "vault", "path": CFG, "version": 3},
                          "cert": {"backend": "vault", "path": "pki/issue/web", "method": "POST",
                                   "params": {"common_name": "a"}}},
                         backends={"vault": be})
    workdir.write_config(cfg, workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"], env=clean_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration OK"


# =========================================================================== memory

@pytest.mark.fuse
def test_no_plaintext_values_or_token_at_rest(sandbox, vault, vault_pki):
    token, auth = token_auth(sandbox, vault, token="hvs." + rand_token(60))
    a, b, c = rand_token(40), rand_token(40), rand_token(40)
    vault.kv_put(CFG, {"api_key": a, "other": b})
    vault.kv_put("secret/app/second", {"key": c})
    vault.add_dynamic_role("database", "app", default_ttl=3600)
    # Long refresh and lease: after start-up the daemon is quiet, so what
    # it left in memory is not overwritten by later requests by chance.
    secrets = {"api": kv(field="api_key", refresh="1h"),
               "all.json": kv(format="json", refresh="1h"),
               "second": kv("secret/app/second", field="key", refresh="1h"),
               "db/password": dyn("database/creds/app", field="password"),
               "db.env": dyn("database/creds/app", format="env")}
    d = start(sandbox, secrets, backend(vault, vault_pki, auth))
    for name in secrets:
        d.read_bytes(name)
    (lease,) = leases_of(vault, "database", "app")
    pw = lease.data["password"]
    assert d.read("db/password") == pw
    assert token in {r.token for r in vault.find_requests()}
    labels = {a.encode(): "KV value api_key", b.encode(): "KV value other",
              c.encode(): "KV value of a second path",
              pw.encode(): "dynamic password", token.encode(): "Vault token",
              token[4:].encode(): "Vault token (without hvs.)"}
    state = {}

    def clean():
        state["hits"], state["scanned"] = scan_memory(d.pid, list(labels))
        return not state["hits"]
    try:
        wait_until(clean, timeout=3, interval=0.2, what="no plaintext")
    except WaitTimeout:
        pytest.fail("plaintext in the daemon's memory with no file open:\n"
                    + describe_hits(state["hits"], labels), pytrace=False)
    assert state["scanned"] > 1 << 20
    # Control: the scanner does find what the daemon holds in the clear.
    hits, _ = scan_memory(d.pid, [vault.url.encode()])
    assert hits
