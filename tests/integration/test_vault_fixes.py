"""Vault backend correctness fixes (issue 9), against the in-process fake Vault.

- KV v2 under a policy that grants data/ but refuses metadata/: new
  versions still arrive (probes read data/), logged once.
- A write (method POST) whose answer has no lease is issued once and
  replaced only by its own validity, or every refresh when the user asks.
- Environment conventions: BAO_* variables, proxy variables (through a
  counting proxy in helpers/proxy.py), VAULT_SKIP_VERIFY refused.

Timings come from the fake's request log; every wait is bounded.
"""

import re

import pytest

from helpers.harness import SLOW, holds_for, rand_token, wait_until
from helpers.vault import backend, reqs, start, token_auth

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
