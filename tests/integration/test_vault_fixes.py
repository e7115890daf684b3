"""Vault backend correctness fixes (issue 9), against the in-process fake Vault.

- KV v2 under a policy that grants data/ but refuses metadata/: new
  versions still arrive (probes read data/), logged once.
- A write (method POST) whose answer has no lease is issued once and
  replaced only by its own validity, or every refresh when the user asks.
- Environment conventions: BAO_* variables, proxy variables (through a
  counting proxy in helpers/proxy.py), VAULT_SKIP_VERIFY refused.

Timings come from the fake's request log; every wait is bounded.
"""

import os
import re

import pytest

from helpers.harness import SLOW, holds_for, rand_token, wait_until
from helpers.vault import backend, clean_env, reqs, start, token_auth

CFG = "secret/app/config"
META = "secret/metadata/app/config"
DATA = "secret/data/app/config"


def kv(path=CFG, refresh="1s", **kw):
    return {"backend": "vault", "path": path, "refresh": refresh, **kw}


def start_kv(sandbox, vault, pki, secrets=None, data=None, env=None, **be_kw):
    if data is not None:
        vault.kv_put(CFG, data)
    _, auth = token_auth(sandbox, vault, token="hvs." + rand_token(40))
    secrets = secrets or {"api": kv(field="api_key")}
    return start(sandbox, secrets, backend(vault, pki, auth, **be_kw), env=env)


def lines_matching(log, pattern):
    return [ln for ln in log.splitlines() if re.search(pattern, ln, re.IGNORECASE)]


# =========================================================================== KV v2, metadata denied

@pytest.mark.fuse
def test_kv2_with_metadata_denied_by_policy_still_serves_new_versions(
        sandbox, vault, vault_pki):
    v1, v2, v3 = rand_token(24), rand_token(24), rand_token(24)
    vault.deny_by_policy("secret/metadata/")
    d = start_kv(sandbox, vault, vault_pki, data={"api_key": v1})
    assert d.read("api") == v1

    vault.kv_put(CFG, {"api_key": v2})
    # refresh 1 s: a new version within a few intervals.
    wait_until(lambda: d.read("api") == v2, timeout=4 * SLOW, what="version 2 served")
    vault.kv_put(CFG, {"api_key": v3})
    wait_until(lambda: d.read("api") == v3, timeout=4 * SLOW, what="version 3 served")

    # metadata/ was tried once, then the data was read each interval.
    assert len(reqs(vault, "GET", META)) == 1
    assert len(lines_matching(d.log_text(), r"metadata.*instead|instead.*metadata")) == 1
    assert not lines_matching(d.log_text(), r"version probe failed")
    assert v1 not in d.log_text() and v2 not in d.log_text()


# =========================================================================== leaseless writes

def issue_requests(vault, role="web", mount="pki"):
    return reqs(vault, "POST", f"{mount}/issue/{role}")


def pki_secrets(sandbox, role="web", **kw):
    out = os.path.join(sandbox.root, "on-change.log")
    script = f'echo changed >> "{out}"'
    common = {"backend": "vault", "path": f"pki/issue/{role}", "method": "POST",
              "params": {"common_name": "app.example"}, **kw}
    return out, {
        "tls/cert.pem": {**common, "field": "certificate",
                         "on_change": {"command": ["/bin/sh", "-c", script]}},
        "tls/key.pem": {**common, "field": "private_key"},
    }


@pytest.mark.fuse
def test_leaseless_certificate_is_reissued_once_at_two_thirds_of_its_validity(
        sandbox, vault, vault_pki):
    ttl = 6 * SLOW
    vault.add_pki_role("web", ttl=ttl)
    changes, secrets = pki_secrets(sandbox)
    _, auth = token_auth(sandbox, vault)
    d = start(sandbox, secrets, backend(vault, vault_pki, auth))
    first = issue_requests(vault)
    assert len(first) == 1
    cert1, key1 = d.read("tls/cert.pem"), d.read("tls/key.pem")

    wait_until(lambda: len(issue_requests(vault)) >= 2, timeout=ttl * 1.5,
               what="the certificate re-issued before it expires")
    second = issue_requests(vault)[1]
    gap = second.time - first[0].time
    # timing_renew_after: 70-73 % of the validity, never after its end. The
    # expiration is in whole seconds, so up to 1 s of it is gone when read.
    assert (ttl - 1) * 0.6 <= gap < ttl, f"re-issued after {gap:.2f} s of {ttl} s"
    # Both files come from the new answer, and on_change ran.
    wait_until(lambda: d.read("tls/cert.pem") != cert1, what="new certificate served")
    assert d.read("tls/key.pem") != key1
    wait_until(lambda: os.path.exists(changes), what="on_change after the new certificate")
    # The next one follows the new certificate's validity in the same way.
    wait_until(lambda: len(issue_requests(vault)) >= 3, timeout=ttl * 1.5,
               what="the new certificate re-issued in turn")
    third = issue_requests(vault)[2]
    assert (ttl - 1) * 0.6 <= third.time - second.time < ttl
    assert key1 not in d.log_text() and d.read("tls/key.pem") not in d.log_text()


@pytest.mark.fuse
def test_leaseless_certificate_without_expiration_takes_its_validity_from_not_after(
        sandbox, vault, vault_pki):
    # No "expiration" in the answer: the certificate's own notAfter (one
    # day: the openssl CLI's unit) sets when it is replaced.
    vault.add_pki_role("web", ttl=60, expiration=False)
    _, secrets = pki_secrets(sandbox)
    _, auth = token_auth(sandbox, vault)
    d = start(sandbox, secrets, backend(vault, vault_pki, auth))
    d.wait_log(r"issued value valid for \d+ ms")
    valid_ms = int(re.search(r"issued value valid for (\d+) ms", d.log_text()).group(1))
    assert 86400_000 - 120_000 <= valid_ms <= 86400_000, valid_ms
    holds_for(lambda: len(issue_requests(vault)) == 1, 2 * SLOW,
              what="issued once, not every refresh")
    assert not lines_matching(d.log_text(), r"not issued again")


@pytest.mark.fuse
def test_leaseless_write_without_validity_is_issued_once(sandbox, vault, vault_pki):
    vault.add_dynamic_role("database", "static", generate_lease=False)
    _, auth = token_auth(sandbox, vault)
    secrets = {"db/user": {"backend": "vault", "path": "database/creds/static",
                           "method": "POST", "field": "username"}}
    d = start(sandbox, secrets, backend(vault, vault_pki, auth))
    d.wait_log(r"issued without a lease or a validity; not issued again")
    holds_for(lambda: len(reqs(vault, "POST", "database/creds/static")) == 1, 3 * SLOW,
              what="issued once only")
    assert len(lines_matching(d.log_text(), r"not issued again")) == 1


@pytest.mark.fuse
def test_explicit_refresh_on_a_leaseless_write_reissues_it_and_check_notes_it(
        sandbox, vault, vault_pki):
    vault.add_pki_role("web", ttl=3600)
    _, secrets = pki_secrets(sandbox, refresh="1s")
    _, auth = token_auth(sandbox, vault)
    cfg = sandbox.config(secrets, backends={"vault": backend(vault, vault_pki, auth)})
    path = sandbox.write_config(cfg, os.path.join(sandbox.root, "check.json"))
    r = sandbox.run(["--config", path, "--check"], env=clean_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration OK"
    notes = [ln for ln in r.stderr.splitlines() if "note:" in ln]
    assert len(notes) == 2 and all("POST is re-issued every 1 s" in ln for ln in notes), \
        r.stderr

    d = start(sandbox, secrets, backend(vault, vault_pki, auth))
    wait_until(lambda: len(issue_requests(vault)) >= 3, timeout=5 * SLOW,
               what="re-issued every refresh, as asked")
    assert d.alive()


# =========================================================================== environment conventions

def proc_environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read()


@pytest.mark.fuse
def test_bao_variables_supply_address_token_namespace_and_ca(sandbox, vault, vault_pki):
    value = rand_token(24)
    vault.kv_put(CFG, {"api_key": value})
    token = vault.create_token(token_id="s." + rand_token(40))
    be = {"type": "vault", "auth": {"method": "token"}}
    # BAO_* wins over VAULT_* (as OpenBao's own client): the VAULT_ ones
    # here point nowhere.
    env = {"BAO_ADDR": vault.url, "BAO_TOKEN": token, "BAO_CACERT": vault_pki.ca_cert,
           "BAO_NAMESPACE": "team-b", "VAULT_ADDR": "https://127.0.0.1:1",
           "VAULT_CACERT": "/nonexistent/ca.pem", "VAULT_TOKEN": "hvs.not-this-one"}
    d = start(sandbox, {"api": kv(field="api_key")}, be, env=env)
    assert d.read("api") == value
    r = reqs(vault, "GET", DATA)[0]
    assert r.header("X-Vault-Token") == token
    assert r.header("X-Vault-Namespace") == "team-b"
    environ = proc_environ(d.pid)
    assert token.encode() not in environ and b"hvs.not-this-one" not in environ
    # Both values were wiped in place (the names stay in the initial block).
    assert b"BAO_TOKEN=\0" in environ and b"VAULT_TOKEN=\0" in environ
    assert token not in d.log_text()


@pytest.mark.parametrize("var,value", [("VAULT_SKIP_VERIFY", "true"),
                                       ("BAO_SKIP_VERIFY", "1")])
def test_skip_verify_is_refused_by_check_and_at_start(workdir, var, value):
    cfg = workdir.config({"api": kv(field="api_key")},
                         backends={"vault": {"type": "vault",
                                             "address": "https://127.0.0.1:1",
                                             "auth": {"method": "token",
                                                      "token_file": "/dev/null"}}})
    path = workdir.write_config(cfg, os.path.join(workdir.root, "cfg.json"))
    r = workdir.run(["--config", path, "--check"], env=clean_env(**{var: value}))
    assert r.returncode != 0
    assert f"{var} is set to a true value" in r.stderr and "never" in r.stderr, r.stderr
    r = workdir.run(["--config", path], env=clean_env(**{var: value}))
    assert r.returncode != 0 and f"{var} is set" in r.stderr, r.stderr
    r = workdir.run(["--config", path, "--check"], env=clean_env(**{var: "false"}))
    assert r.returncode == 0, r.stderr


@pytest.fixture
def make_proxy():
    from helpers.proxy import CountingProxy
    started = []

    def make(**kw):
        p = CountingProxy(**kw).start()
        started.append(p)
        return p
    try:
        yield make
    finally:
        for p in started:
            p.stop()


@pytest.mark.fuse
@pytest.mark.parametrize("var", ["VAULT_HTTP_PROXY", "BAO_PROXY_ADDR"])
def test_vault_http_proxy_tunnels_vault_traffic_and_hides_its_credentials(
        sandbox, vault, vault_pki, make_proxy, var):
    password = "pw-" + rand_token(16)
    proxy = make_proxy(credentials=("squid-user", password))
    value = rand_token(24)
    # VAULT_HTTP_PROXY (or its OpenBao name) is for Vault alone and applies
    # even to loopback.
    d = start_kv(sandbox, vault, vault_pki, data={"api_key": value},
                 env={var: proxy.url(), "HTTPS_PROXY": "http://127.0.0.1:1"})
    assert d.read("api") == value
    assert proxy.count("CONNECT") >= 1
    assert all(t == f"127.0.0.1:{vault.port}" for m, t, _ in proxy.requests)
    assert password not in d.log_text()
    assert lines_matching(d.log_text(), r"through proxy http://\*\*\*@127\.0\.0\.1")


def plain_vault_on_non_loopback(make_vault):
    from helpers.aws import non_loopback_ipv4
    ip = non_loopback_ipv4()
    if not ip:
        pytest.skip("no non-loopback IPv4 address (loopback never goes through a proxy)")
    return ip, make_vault(tls=False, host=ip)


@pytest.mark.fuse
@pytest.mark.parametrize("case", ["proxied", "no_proxy", "switched_off"])
def test_standard_proxy_variables_for_vault(sandbox, make_vault, make_proxy, case):
    ip, vault = plain_vault_on_non_loopback(make_vault)
    proxy = make_proxy()
    value = rand_token(24)
    env = {"http_proxy": proxy.url()}
    be_kw = {}
    if case == "no_proxy":
        env["NO_PROXY"] = f"example.com,{ip}"
    if case == "switched_off":
        be_kw["proxy_from_environment"] = False
    d = start_kv(sandbox, vault, None, data={"api_key": value}, env=env, **be_kw)
    assert d.read("api") == value
    through = [t for m, t, _ in proxy.requests if t.startswith(f"http://{ip}:{vault.port}/v1/")]
    if case == "proxied":
        assert through and len(through) == len(proxy.requests)
        assert any(t.endswith("/v1/" + DATA) for t in through)
    else:
        assert proxy.requests == []


@pytest.mark.fuse
@pytest.mark.parametrize("switched_off", [False, True], ids=["proxied", "switched_off"])
def test_standard_proxy_variables_for_aws(sandbox, make_proxy, switched_off):
    from helpers import aws as awsh
    ip = awsh.non_loopback_ipv4()
    if not ip:
        pytest.skip("no non-loopback IPv4 address (loopback never goes through a proxy)")
    fake = awsh.FakeAws(host=ip).start()
    try:
        proxy = make_proxy()
        value = rand_token(24)
        fake.add_secret("app/key", string=value)
        env, _, _ = awsh.static_keys(fake, sandbox, HTTP_PROXY=proxy.url())
        be = awsh.backend(fake, **({"proxy_from_environment": False} if switched_off else {}))
        d = awsh.start(sandbox, {"key": awsh.sm("app/key")}, be, env)
        assert d.read("key") == value
        if switched_off:
            assert proxy.requests == []
        else:
            assert proxy.count("POST") >= 1
            assert all(t.startswith(f"http://{ip}:") for _, t, _ in proxy.requests)
    finally:
        fake.stop()
