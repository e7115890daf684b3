"""consul-template files ("format": "consul-template") served through a real
mount from the in-process fake Vault (tests/fakes/fake_vault.py).

The templates are those of the Vault Agent and vault-k8s injector
documentation (the injector's annotation examples and its sidecar tutorial,
Vault Agent's template examples): KV v2 fields and ranges over .Data.data,
database credentials as a connection string, PKI certificate and key, toJSON
and printf. Each file's content is compared with what Vault Agent renders
from the same replies. The template's secrets are sources like any other:
shared (one creds request for two templates), re-rendered when a KV version
changes or a lease is replaced, and refused constructs are named by --check
with their line and column.
"""

import json
import os
import re

import pytest

from helpers.harness import SLOW, wait_until
from helpers.vault import backend, leases_of, reqs, start, token_auth

KV = {"username": "db-readonly-username", "password": "db-secret-password",
      "api-key": "k<1>&2", "port": 5432, "ratio": 0.5, "tags": ["a", "b"]}


def ctmpl(template, **kw):
    return {"backend": "vault", "format": "consul-template", "template": template, **kw}


def creds(vault, role="app"):
    """The data of each lease of database/creds/<role>, oldest first."""
    return [le.data for le in leases_of(vault, "database", role)]


# Vault Agent / vault-k8s documentation templates, and what they render from
# KV (secret/data/app/config, version 1) and the fake's database credentials.
TABLE = [
    # vault-k8s sidecar tutorial (agent-inject-template-database-config.txt)
    ("tutorial.txt",
     '{{- with secret "secret/data/app/config" -}}\n'
     'postgresql://{{ .Data.data.username }}:{{ .Data.data.password }}@postgres:5432/wizard\n'
     '{{- end -}}\n',
     lambda c: "postgresql://db-readonly-username:db-secret-password@postgres:5432/wizard"),
    # injector annotations reference: database credentials as a connection string
    ("db-uri",
     '{{- with secret "database/creds/app" -}}\n'
     'postgres://{{ .Data.username }}:{{ .Data.password }}@postgres:5432/appdb?sslmode=disable\n'
     '{{- end }}\n',
     lambda c: f"postgres://{c['username']}:{c['password']}@postgres:5432/appdb?sslmode=disable\n"),
    # Vault Agent "environment variable" example
    ("env.sh",
     '{{ with secret "secret/data/app/config" -}}\n'
     '  export DB_USER="{{ .Data.data.username }}"\n'
     '  export DB_PASS="{{ .Data.data.password }}"\n'
     '{{- end }}\n',
     # "-}}" trims the newline and the indent after it, not the next line's
     lambda c: 'export DB_USER="db-readonly-username"\n'
               '  export DB_PASS="db-secret-password"\n'),
    # a range over the KV v2 map (sorted keys, as Go's text/template)
    ("range.env",
     '{{ with secret "secret/data/app/config" }}{{ range $k, $v := .Data.data }}'
     '{{ $k }}={{ $v }}\n{{ end }}{{ end }}',
     lambda c: "api-key=k<1>&2\npassword=db-secret-password\nport=5432\nratio=0.5\n"
               "tags=[a b]\nusername=db-readonly-username\n"),
    # the injector's "json" default template (agent-inject-default-template: json)
    ("config.json",
     '{{ with secret "secret/data/app/config" }}{{ .Data.data | toJSON }}\n{{ end }}',
     lambda c: '{"api-key":"k\\u003c1\\u003e\\u00262","password":"db-secret-password",'
               '"port":5432,"ratio":0.5,"tags":["a","b"],"username":"db-readonly-username"}\n'),
    ("pretty.json",
     '{{ with secret "database/creds/app" }}{{ .Data | toJSONPretty }}{{ end }}',
     lambda c: json.dumps(c, indent=2, sort_keys=True)),
    # printf, index of a key with a dash, the version from .Data.metadata
    ("printf",
     '{{ with secret "secret/data/app/config" }}'
     '{{ printf "%s@%v" .Data.data.username .Data.data.port }} '
     '{{ index .Data.data "api-key" | base64Encode }} v{{ .Data.metadata.version }}'
     '{{ end }}',
     lambda c: "db-readonly-username@5432 azwxPiYy v1"),
    # two secrets in one file, variables, if/else, pipes
    ("both",
     '{{- $kv := secret "secret/data/app/config" -}}\n'
     '{{- with secret "database/creds/app" -}}\n'
     'user={{ .Data.username | toUpper }} kv={{ $kv.Data.data.username | replaceAll "-" "_" }}\n'
     '{{- if .Renewable }} renewable{{ else }} fixed{{ end }}\n'
     '{{ end -}}',
     lambda c: f"user={c['username'].upper()} kv=db_readonly_username renewable\n"),
]


@pytest.mark.fuse
def test_documentation_templates_render_as_vault_agent_renders_them(sandbox, vault, vault_pki):
    vault.kv_put("secret/app/config", KV)
    vault.add_dynamic_role("database", "app", default_ttl=3600)
    _, auth = token_auth(sandbox, vault)
    d = start(sandbox, {name: ctmpl(t) for name, t, _ in TABLE},
              backend(vault, vault_pki, auth))
    [c] = creds(vault)
    wrong = {}
    for name, _, expected in TABLE:
        got = d.read(name)
        if got != expected(c):
            wrong[name] = (got, expected(c))
    assert not wrong, wrong
    # The KV v2 path as the template names it (data/ already in it) is read
    # as is, not as secret/data/data/...
    assert reqs(vault, "GET", "secret/data/app/config")
    assert not reqs(vault, prefix="secret/data/data/")
    assert c["password"] not in d.log_text()


@pytest.mark.fuse
def test_templates_naming_the_same_dynamic_secret_share_one_lease(sandbox, vault, vault_pki):
    vault.add_dynamic_role("database", "app", default_ttl=3600)
    _, auth = token_auth(sandbox, vault)
    user = '{{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}'
    pw = '{{ with secret "database/creds/app" }}{{ .Data.password }}{{ end }}'
    d = start(sandbox, {"db/user": ctmpl(user), "db/pass": ctmpl(pw),
                        # a plain file naming the same path shares it too
                        "db/plain": {"backend": "vault", "path": "database/creds/app",
                                     "field": "username"}},
              backend(vault, vault_pki, auth))
    assert len(reqs(vault, "GET", "database/creds/app")) == 1
    [c] = creds(vault)
    assert d.read("db/user") == c["username"] == d.read("db/plain")
    assert d.read("db/pass") == c["password"]


@pytest.mark.fuse
def test_new_kv_version_rerenders_the_file(sandbox, vault, vault_pki):
    vault.kv_put("secret/app/config", {"username": "u1"})
    _, auth = token_auth(sandbox, vault)
    t = '{{ with secret "secret/data/app/config" }}{{ .Data.data.username }} ' \
        'v{{ .Data.metadata.version }}{{ end }}'
    d = start(sandbox, {"f": ctmpl(t, refresh="1s")}, backend(vault, vault_pki, auth))
    assert d.read("f") == "u1 v1"
    vault.kv_put("secret/app/config", {"username": "u2"})
    wait_until(lambda: d.read("f") == "u2 v2", timeout=5 * SLOW, what="re-rendered")
    # probes read metadata/, the data only when the version moved
    assert reqs(vault, "GET", "secret/metadata/app/config")
    assert len(reqs(vault, "GET", "secret/data/app/config")) == 2


@pytest.mark.fuse
def test_replaced_lease_rerenders_the_file(
        sandbox, vault, vault_pki):
    ttl = 4 * SLOW
    vault.add_dynamic_role("database", "app", default_ttl=ttl, max_ttl=ttl)
    _, auth = token_auth(sandbox, vault)
    t = '{{ with secret "database/creds/app" }}{{ .Data.username }}:{{ .LeaseDuration }}{{ end }}'
    d = start(sandbox, {"f": ctmpl(t)}, backend(vault, vault_pki, auth))
    first = creds(vault)[0]["username"]
    assert d.read("f") == f"{first}:{int(ttl)}"
    wait_until(lambda: len(creds(vault)) >= 2, timeout=ttl * 2, what="lease replaced")
    second = creds(vault)[1]["username"]
    wait_until(lambda: d.read("f").startswith(second + ":"), what="re-rendered from the new lease")


@pytest.mark.parametrize("template,message", [
    ('a\n{{ env "HOME" }}',
     'line 2, column 4: function "env" is refused: a template must not read '
     "secretfs's environment"),
    ('{{ define "x" }}y{{ end }}', "line 1, column 4: "),
    ('{{ with secret "secret/data/x" }}{{ .Data | nosuch }}{{ end }}', "line 1, column 45: function \"nosuch\" not defined"),
])
def test_check_refuses_constructs_outside_the_subset_with_line_and_column(
        workdir, template, message):
    path = os.path.join(workdir.root, "cfg.json")
    with open(path, "w") as f:
        json.dump({"mount": {"path": os.path.join(workdir.root, "m")},
                   "backends": {"vault": {"type": "vault", "address": "http://127.0.0.1:1",
                                          "auth": {"method": "kubernetes", "role": "r"}}},
                   "secrets": {"f": ctmpl(template)}}, f)
    r = workdir.run(["--check", "--config", path])
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"{path}: secrets.f.template: {message}"), r.stderr
    assert "HOME" not in r.stderr or "env" in template


def test_check_takes_template_file_beside_the_config_and_the_only_vault_backend(workdir):
    with open(os.path.join(workdir.root, "app.tmpl"), "w") as f:
        f.write('{{ with secret "secret/data/x" }}{{ .Data.data.a }}{{ end }}')
    with open(os.path.join(workdir.root, "bad.tmpl"), "w") as f:
        f.write('{{ with secret "secret/data/x" }}\n {{ template "t" }}{{ end }}')
    cfg = {"mount": {"path": os.path.join(workdir.root, "m")},
           "backends": {"vault": {"type": "vault", "address": "http://127.0.0.1:1",
                                  "auth": {"method": "kubernetes", "role": "r"}}},
           "secrets": {"ok": {"format": "consul-template", "template_file": "app.tmpl"}}}
    path = os.path.join(workdir.root, "cfg.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = workdir.run(["--check", "--config", path])
    assert r.returncode == 0, r.stderr
    cfg["secrets"]["bad"] = {"format": "consul-template", "template_file": "bad.tmpl"}
    cfg["secrets"]["both"] = {"format": "consul-template", "template_file": "app.tmpl",
                              "template": "x"}
    cfg["secrets"]["pathed"] = ctmpl("{{ with secret \"a\" }}{{ end }}", path="a")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = workdir.run(["--check", "--config", path])
    assert r.returncode == 1
    got = sorted(re.sub(r"^.*?: ", "", ln, count=1) for ln in r.stderr.splitlines())
    assert got == sorted([
        'secrets.bad.template_file: line 2, column 5: {{template}} is not supported',
        'secrets.both: give "template" or "template_file", not both',
        'secrets.pathed.path: is not used with format "consul-template": the template '
        'names its secrets ({{ with secret "path" "key=value" }})',
    ]), r.stderr
