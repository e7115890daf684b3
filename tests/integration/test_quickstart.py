"""The README's Vault quick-start, run against the fake Vault: the example
config deploy/vault-quickstart.json (only its address, token file and
mount path moved into the sandbox) serves the KV v2 secret the quick-start
writes, and a new version reaches the files within the refresh it sets.
"""

import json

import pytest

from helpers.harness import REPO_ROOT, parse_env_file, wait_until
from helpers.vault import clean_env, token_auth

EXAMPLE = REPO_ROOT / "deploy" / "vault-quickstart.json"


def quickstart_config(sandbox, vault, token_file):
    cfg = json.loads(EXAMPLE.read_text())
    cfg["mount"]["path"] = sandbox.mount
    be = cfg["backends"]["vault"]
    assert be["address"] == "http://127.0.0.1:8200", "the README's address changed"
    be["address"] = vault.url
    be["auth"]["token_file"] = token_file
    return cfg


@pytest.mark.fuse
def test_the_vault_quickstart_serves_the_secret_and_its_new_version(sandbox, make_vault):
    vault = make_vault(tls=False)
    # vault kv put secret/app/config username=app api_key=...
    vault.kv_put("secret/app/config", {"username": "app", "api_key": "first-key"})
    _, auth = token_auth(sandbox, vault)
    cfg = quickstart_config(sandbox, vault, auth["token_file"])
    # The example's refresh is 10 s; the test does not wait that long.
    for s in cfg["secrets"].values():
        s["refresh"] = "1s"
    d = sandbox.start(config=cfg, env=clean_env())

    assert d.read("app/username") == "app"
    assert d.read("app/api-key") == "first-key"
    assert parse_env_file(d.read("app.env")) == {"api_key": "first-key", "username": "app"}

    vault.kv_put("secret/app/config", {"username": "app", "api_key": "second-key"})
    wait_until(lambda: d.read("app/api-key") == "second-key", timeout=15,
               what="the new version in app/api-key")
    assert parse_env_file(d.read("app.env"))["api_key"] == "second-key"


def test_the_vault_quickstart_config_is_valid(sandbox):
    r = sandbox.run(["--config", str(EXAMPLE), "--check"])
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout
