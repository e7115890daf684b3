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
    # timing_renew_after: 70-73 % of the validity, never after its end.
    assert ttl * 0.6 <= gap < ttl, f"re-issued after {gap:.2f} s of {ttl} s"
    # Both files come from the new answer, and on_change ran.
    wait_until(lambda: d.read("tls/cert.pem") != cert1, what="new certificate served")
    assert d.read("tls/key.pem") != key1
    wait_until(lambda: os.path.exists(changes), what="on_change after the new certificate")
    # The next one follows the new certificate's validity in the same way.
    wait_until(lambda: len(issue_requests(vault)) >= 3, timeout=ttl * 1.5,
               what="the new certificate re-issued in turn")
    third = issue_requests(vault)[2]
    assert ttl * 0.6 <= third.time - second.time < ttl
    assert key1 not in d.log_text() and d.read("tls/key.pem") not in d.log_text()


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
