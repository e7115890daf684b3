"""secretfs --from-vault-annotations: vault-k8s injector annotations on a pod
or workload (kubectl get ... -o json) converted into a secretfs config.

The annotated objects are the shapes of the vault-k8s documentation's
examples (the injector's annotation reference and its Kubernetes sidecar
tutorial). Each conversion is checked for the files it names (the paths the
injector would render under /vault/secrets or secret-volume-path), their
modes, templates and on_change commands, the lines on stderr for what does
not carry over, and the exit status: 0 complete, 7 partial, 1 bad input.
"""

import json
import os

import pytest

A = "vault.hashicorp.com/"

DEFAULT_MAP = ('{{ with secret "%s" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n'
               '{{ end }}{{ end }}')
DEFAULT_JSON = '{{ with secret "%s" }}{{ .Data | toJSON }}\n{{ end }}'

TUTORIAL_TEMPLATE = ('{{- with secret "internal/data/database/config" -}}\n'
                     'postgresql://{{ .Data.data.username }}:{{ .Data.data.password }}'
                     '@postgres:5432/wizard\n{{- end -}}\n')


def pod(annotations, kind="Pod", spec=None):
    spec = spec or {"containers": [{"name": "app", "image": "jweissig/app:0.0.1"}]}
    tmpl = {"metadata": {"labels": {"app": "orgchart"}, "annotations": annotations},
            "spec": spec}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "orgchart", **tmpl["metadata"]}, "spec": spec}
    if kind == "CronJob":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": "orgchart"},
                "spec": {"schedule": "* * * * *",
                         "jobTemplate": {"spec": {"template": tmpl}}}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "orgchart"},
            "spec": {"replicas": 1, "template": tmpl}}


def convert(workdir, obj, env=None):
    path = os.path.join(workdir.root, "pod.json")
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj, indent=1))
    r = workdir.run(["--from-vault-annotations", path], env=env)
    cfg = json.loads(r.stdout) if r.returncode in (0, 7) else None
    return r, cfg


def check_passes(workdir, cfg):
    cfg["mount"]["path"] = os.path.join(workdir.root, "mnt")
    path = os.path.join(workdir.root, "converted.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = workdir.run(["--check", "--config", path])
    assert r.returncode == 0, r.stderr


def test_tutorial_pod_converts_completely(workdir):
    """The sidecar tutorial's pod: one secret with a template, a role."""
    r, cfg = convert(workdir, pod({
        A + "agent-inject": "true",
        A + "agent-inject-status": "update",
        A + "role": "internal-app",
        A + "service": "https://vault.vault.svc:8200",
        A + "agent-inject-secret-database-config.txt": "internal/data/database/config",
        A + "agent-inject-template-database-config.txt": TUTORIAL_TEMPLATE,
    }, spec={"securityContext": {"runAsUser": 1000, "runAsGroup": 3000},
             "containers": [{"name": "app", "image": "app"}]}))
    assert r.returncode == 0, r.stderr
    assert "not carried over" not in r.stderr
    assert cfg["mount"] == {"path": "/vault/secrets", "type": "fuse", "allow_other": True,
                            "uid": 1000, "gid": 3000}
    be = cfg["backends"]["vault"]
    assert be == {"type": "vault", "address": "https://vault.vault.svc:8200",
                  "auth": {"method": "kubernetes", "role": "internal-app"}}
    assert cfg["secrets"] == {"database-config.txt": {
        "backend": "vault", "format": "consul-template", "template": TUTORIAL_TEMPLATE}}
    check_passes(workdir, cfg)


def test_secret_without_template_gets_the_injectors_default_template(workdir):
    r, cfg = convert(workdir, pod({
        A + "agent-inject": "true", A + "role": "app",
        A + "agent-inject-secret-foo": "database/roles/app",
        A + "agent-inject-secret-bar.json": "secret/data/bar",
        A + "agent-inject-default-template": "json",
    }), env={"PATH": os.environ["PATH"]})
    assert r.returncode == 0, r.stderr
    # json default applies to every secret without a template of its own
    assert cfg["secrets"]["foo"]["template"] == DEFAULT_JSON % "database/roles/app"
    assert cfg["secrets"]["bar.json"]["template"] == DEFAULT_JSON % "secret/data/bar"
    # no runAsUser: files readable by every uid of the pod, as the injector's 0644
    assert cfg["secrets"]["foo"]["mode"] == "0444"
    assert "no runAsUser" in r.stderr
    assert "VAULT_ADDR" in r.stderr


def test_default_map_template_and_name_case(workdir):
    r, cfg = convert(workdir, pod({
        A + "agent-inject": "true", A + "role": "app",
        A + "agent-inject-secret-DB": "secret/data/db",
        A + "agent-inject-secret-Keep": "secret/data/keep",
        A + "preserve-secret-case-Keep": "true",
    }))
    assert r.returncode == 0, r.stderr
    assert set(cfg["secrets"]) == {"db", "Keep"}
    assert cfg["secrets"]["db"]["template"] == DEFAULT_MAP % "secret/data/db"


def test_deployment_file_perms_command_and_volume_paths(workdir):
    r, cfg = convert(workdir, pod({
        A + "agent-inject": "true", A + "role": "web",
        A + "auth-path": "auth/k8s-east",
        A + "namespace": "team-a",
        A + "secret-volume-path": "/etc/secrets",
        A + "agent-inject-secret-db": "database/creds/web",
        A + "agent-inject-file-db": "db.properties",
        A + "agent-inject-perms-db": "0640",
        A + "agent-inject-command-db": "kill -HUP $(pidof app)",
        A + "agent-inject-secret-tls": "pki/issue/web",
        A + "secret-volume-path-tls": "/etc/secrets/tls",
        A + "ca-cert": "/vault/tls/ca.crt",
        A + "tls-server-name": "vault.internal",
        A + "agent-revoke-on-shutdown": "true",
        A + "agent-revoke-grace": "30",
        A + "template-static-secret-render-interval": "2m",
        A + "log-level": "trace",
        A + "log-format": "json",
    }, kind="Deployment"))
    assert r.returncode == 0, r.stderr
    assert "0640 carried over as 0440" in r.stderr
    assert cfg["mount"]["path"] == "/etc/secrets"
    db = cfg["secrets"]["db.properties"]
    assert db["mode"] == "0440"
    assert db["refresh"] == "2m"
    assert db["on_change"] == {"command": ["/bin/sh", "-c", "kill -HUP $(pidof app)"]}
    assert "tls/tls" in cfg["secrets"]
    be = cfg["backends"]["vault"]
    assert be["namespace"] == "team-a"
    assert be["auth"] == {"method": "kubernetes", "role": "web", "mount": "k8s-east"}
    assert be["tls"] == {"ca_file": "/vault/tls/ca.crt", "server_name": "vault.internal"}
    assert be["revoke_on_shutdown"] is True and be["revoke_grace"] == "30s"
    assert cfg["log"] == {"level": "debug", "format": "json"}


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", "Job", "CronJob"])
def test_pod_templates_of_workloads(workdir, kind):
    r, cfg = convert(workdir, pod({A + "agent-inject": "true", A + "role": "r",
                                   A + "agent-inject-secret-x": "secret/data/x"}, kind=kind))
    assert r.returncode == 0, r.stderr
    assert list(cfg["secrets"]) == ["x"]


def test_what_does_not_carry_over_is_listed_and_exit_is_7(workdir):
    r, cfg = convert(workdir, pod({
        A + "agent-inject": "true", A + "role": "app",
        A + "agent-inject-secret-a": "secret/data/a",
        A + "tls-skip-verify": "true",
        A + "agent-inject-token": "true",
        A + "agent-limits-cpu": "250m",
        A + "agent-cache-enable": "true",
        A + "agent-inject-perms-ghost": "0400",
        A + "secret-volume-path-a": "/elsewhere",
        A + "agent-inject-secret-b": "secret/data/b",
        A + "made-up": "1",
        "other.example/annotation": "ignored",
    }))
    assert r.returncode == 7, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("not carried over: ")]
    named = {ln.split(": ")[1] for ln in lines}
    assert named == {A + "tls-skip-verify", A + "agent-inject-token", A + "agent-limits-cpu",
                     A + "agent-cache-enable", A + "agent-inject-perms-ghost",
                     A + "secret-volume-path-a", A + "made-up"}, r.stderr
    assert "always verifies" in r.stderr and "never writes the Vault token" in r.stderr
    # the rest is still converted
    assert list(cfg["secrets"]) == ["b"]


def test_pre_populate_only_becomes_a_directory_mount_with_once_advice(workdir):
    r, cfg = convert(workdir, pod({A + "agent-inject": "true", A + "role": "r",
                                   A + "agent-pre-populate-only": "true",
                                   A + "agent-inject-secret-x": "secret/data/x"}))
    assert r.returncode == 0, r.stderr
    assert cfg["mount"]["type"] == "directory"
    assert "--once" in r.stderr


def test_missing_role_is_incomplete(workdir):
    r, cfg = convert(workdir, pod({A + "agent-inject": "true",
                                   A + "agent-inject-secret-x": "secret/data/x"}))
    assert r.returncode == 7
    assert "vault.hashicorp.com/role: missing" in r.stderr
    assert "role" not in cfg["backends"]["vault"]["auth"]


@pytest.mark.parametrize("obj,why", [
    ("not json {", "not JSON"),
    ({"kind": "Service", "metadata": {}}, "unsupported kind"),
    ({"kind": "Pod", "metadata": {"name": "p"}}, "no annotations"),
    ({"kind": "List", "items": []}, "exactly one"),
    (None, "nothing to convert"),
])
def test_bad_input_is_refused_with_exit_1(workdir, obj, why):
    if obj is None:
        obj = pod({A + "agent-inject": "true", A + "role": "r"})
    r, cfg = convert(workdir, obj)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    assert why in r.stderr, r.stderr


def test_templates_and_commands_never_reach_stderr(workdir):
    r, _ = convert(workdir, pod({
        A + "agent-inject": "true", A + "role": "r",
        A + "agent-inject-secret-x": "secret/data/x",
        A + "agent-inject-template-x": '{{ with secret "secret/data/x" }}S3CR3T-LITERAL{{ end }}',
        A + "agent-inject-command-x": "echo C0MMAND-LITERAL",
        A + "tls-skip-verify": "true",
    }))
    assert "S3CR3T-LITERAL" not in r.stderr and "C0MMAND-LITERAL" not in r.stderr


def test_stdin_and_list_of_one(workdir):
    obj = {"kind": "List", "items": [pod({A + "agent-inject": "true", A + "role": "r",
                                          A + "agent-inject-secret-x": "secret/data/x"})]}
    path = os.path.join(workdir.root, "list.json")
    with open(path, "w") as f:
        json.dump(obj, f)
    import subprocess
    from helpers.harness import SECRETFS_BIN, TIMEOUT
    with open(path) as f:
        r = subprocess.run([SECRETFS_BIN, "--from-vault-annotations", "-"], stdin=f,
                           capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert r.returncode == 0, r.stderr
    assert list(json.loads(r.stdout)["secrets"]) == ["x"]
