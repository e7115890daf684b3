"""Helpers for the Vault integration tests: the in-process fake Vault
(tests/fakes/fake_vault.py), backend configs pointing secretfs at it, and
small readers of the fake's request log and lease records.

Standard library only. The fake runs in the test process; secretfs talks to
it over HTTPS (a throwaway CA from make_test_pki) like it talks to Vault.
"""

import json
import os
import sys
import time

from helpers.harness import REPO_ROOT, replace_private, write_private  # noqa: F401

_TESTS_DIR = str(REPO_ROOT / "tests")
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from fakes.fake_vault import FakeVault, make_test_pki  # noqa: E402,F401

# Environment variables secretfs reads for Vault; never inherited from the
# developer's shell into a test daemon.
VAULT_ENV = ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_CAPATH",
             "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY", "VAULT_TLS_SERVER_NAME")


def clean_env(**extra):
    """The test process's environment without any VAULT_*, BAO_* or proxy
    variables, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VAULT_", "BAO_")) and k.lower() not in (
               "http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(extra)
    return env


def backend(vault, pki=None, auth=None, tls=None, **kw):
    """A "vault" backend config on the fake: TLS verified against the test
    CA unless tls is given (tls=False: no "tls" key at all)."""
    cfg = {"type": "vault", "address": vault.url}
    if tls is None and pki is not None:
        tls = {"ca_file": pki.ca_cert}
    if tls:
        cfg["tls"] = tls
    if auth is not None:
        cfg["auth"] = auth
    cfg.update(kw)
    return cfg


def token_auth(sandbox, vault, token=None, ttl=3600, **token_kw):
    """Creates a token in the fake (a distinctive random one unless given),
    writes it to a 0600 file and returns (token, auth config)."""
    token = vault.create_token(token_id=token, ttl=ttl, **token_kw)
    path = write_private(sandbox, "vault-token", token)
    return token, {"method": "token", "token_file": path}


def approle_auth(sandbox, vault, role="app", wrapped=False, **role_kw):
    """Creates an AppRole in the fake with one secret ID, writes role_id and
    secret_id files, returns (role_id, secret_id or wrapping token, auth)."""
    role_id = vault.add_approle(role, **role_kw)
    if wrapped:
        sid = vault.wrap_secret_id(role)
    else:
        sid = vault.add_secret_id(role)
    auth = {"method": "approle",
            "role_id_file": write_private(sandbox, "role-id", role_id),
            "secret_id_file": write_private(sandbox, "secret-id", sid)}
    return role_id, sid, auth


def start(sandbox, secrets, be, env=None, name="vault", top=None, **kw):
    """Starts secretfs on secrets with the one vault backend be, in a clean
    environment (env adds variables); top adds top-level config keys."""
    cfg = sandbox.config(secrets, backends={name: be}, **(top or {}))
    return sandbox.start(config=cfg, env=clean_env(**(env or {})), **kw)


# ---------------------------------------------------------------- request log

def reqs(vault, method=None, path=None, prefix=None, since=0):
    """Recorded requests by method and exact path or path prefix (with or
    without /v1/), with seq > since."""
    def norm(p):
        return p if p.startswith("/v1/") else "/v1/" + p.lstrip("/")
    out = []
    for r in vault.find_requests(method):
        if r.seq <= since:
            continue
        if path is not None and r.path != norm(path):
            continue
        if prefix is not None and not r.path.startswith(norm(prefix)):
            continue
        out.append(r)
    return out


def last_seq(vault):
    with vault._lock:
        return vault.requests[-1].seq if vault.requests else 0


def lease_by_id(vault, lease_id):
    le = vault.lease(lease_id)
    assert le is not None, f"no lease {lease_id} in the fake"
    return le


def leases_of(vault, mount, role):
    """Every lease (live or not) of mount/role, oldest first."""
    with vault._lock:
        les = [le for le in vault.leases.values()
               if le.mount == mount.strip("/") + "/" and le.role == role]
    return sorted(les, key=lambda le: le.issued)


def login_requests(vault, mount="approle"):
    return reqs(vault, "POST", f"auth/{mount}/login")


def tokens_issued_by_logins(vault, mount="approle"):
    """client_token of each successful login, in order (from the fake's
    token table: tokens whose path is auth/<mount>/login)."""
    with vault._lock:
        toks = [t for t in vault._tokens.values() if t.path == f"auth/{mount}/login"]
    return [t.id for t in sorted(toks, key=lambda t: t.issued)]


def describe_requests(vault, limit=300):
    """The fake's request log as text, for failure reports."""
    with vault._lock:
        rs = list(vault.requests)
    t0 = rs[0].time if rs else time.time()
    lines = []
    for r in rs[-limit:]:
        body = ""
        if r.json is not None:
            j = dict(r.json) if isinstance(r.json, dict) else r.json
            if isinstance(j, dict):
                for k in ("secret_id", "jwt", "token", "password"):
                    if k in j:
                        j[k] = "<redacted>"
            body = " " + json.dumps(j)[:160]
        lines.append(f"{r.time - t0:8.3f} #{r.seq} {r.method} {r.raw_path} -> {r.status}"
                     f"{' fault=' + r.fault if r.fault else ''}{body}")
    return "\n".join(lines) or "(no requests)"


def describe_leases(vault):
    with vault._lock:
        les = sorted(vault.leases.values(), key=lambda le: le.issued)
    return "\n".join(
        f"{le.lease_id} issued={le.issued:.3f} expires={le.expires:.3f} "
        f"max_expires={le.max_expires:.3f} renewals={len(le.renewals)} "
        f"revoked={le.revoked} by={le.revoked_by} at={le.revoked_at}"
        for le in les) or "(no leases)"
