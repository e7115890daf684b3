"""The Kubernetes examples under deploy/kubernetes: Pod Security "restricted"
for the restricted (and aws) example, rules every manifest keeps, and the
embedded secretfs configs. Offline: the raw files always; the kustomize
output too when kubectl is installed. Each rule has a negative self-check
on a mutated copy to show it can fail."""

import json
import os
import subprocess

import pytest

import delivery_checks as dc

RAW_DEPLOYMENTS = {ex: os.path.join(dc.K8S, ex, "deployment.yaml")
                   for ex in ("restricted", "fuse")}


def raw_spec(example):
    docs = dc.load_docs(RAW_DEPLOYMENTS[example])
    [(label, spec)] = dc.workloads(docs)
    return spec


_rendered = {}


def rendered(example):
    """The example's kustomize output (cached), or a skip without kubectl."""
    if example not in _rendered:
        _rendered[example] = dc.kustomize(os.path.join(dc.K8S, example))
    if _rendered[example] is None:
        pytest.skip("kubectl is not installed: the kustomize output is not checked "
                    "(the raw manifests are)")
    return _rendered[example]


def resource_files():
    """The files kustomization.yaml files under deploy/kubernetes list as
    resources (patches are not objects of their own: they are checked in the
    rendered output)."""
    files = set()
    for path in dc.repo_files(("kustomization.yaml",)):
        if not path.startswith(dc.K8S + os.sep):
            continue
        [k] = dc.load_docs(path)
        for r in k.get("resources") or []:
            full = os.path.normpath(os.path.join(os.path.dirname(path), r))
            if os.path.isfile(full):
                files.add(full)
    return sorted(files)


def all_raw_manifests():
    """Every Kubernetes object in the files the kustomizations list."""
    out = []
    for path in resource_files():
        for d in dc.load_docs(path):
            if isinstance(d, dict) and "apiVersion" in d and "kind" in d \
                    and d["kind"] != "Kustomization":
                out.append((os.path.relpath(path, dc.REPO), d))
    return out


def pod_specs_everywhere():
    """(label, spec) of every workload: raw files, and rendered examples when
    kubectl is there."""
    specs = [(f"{p}:{label}", spec) for p, d in all_raw_manifests()
             for label, spec in dc.workloads([d])]
    for ex in dc.EXAMPLES:
        docs = dc.kustomize(os.path.join(dc.K8S, ex))
        if docs is not None:
            specs += [(f"kustomize {ex}:{label}", spec) for label, spec in dc.workloads(docs)]
    return specs


# ----------------------------------------------------------- restricted

def test_restricted_example_passes_pod_security_restricted():
    assert dc.check_restricted(raw_spec("restricted")) == []


@pytest.mark.parametrize("example", ["restricted", "aws"])
def test_rendered_restricted_examples_pass_pod_security_restricted(example):
    specs = dc.workloads(rendered(example))
    assert specs, f"no workload in {example}"
    for label, spec in specs:
        assert dc.check_restricted(spec) == [], label


@pytest.mark.parametrize("example", ["restricted", "aws"])
def test_restricted_namespace_enforces_restricted(example):
    docs = rendered(example)
    namespaces = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Namespace"}
    for d in docs:
        if dc.pod_spec(d) is not None:
            ns = namespaces[d["metadata"]["namespace"]]
            assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_raw_restricted_namespace_label():
    [ns] = dc.load_docs(os.path.join(dc.K8S, "restricted", "namespace.yaml"))
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_fuse_example_is_not_restricted_and_its_namespace_says_privileged():
    # The FUSE example needs privileged; the checker must see that.
    problems = dc.check_restricted(raw_spec("fuse"))
    assert any("privileged" in p for p in problems)
    [ns] = dc.load_docs(os.path.join(dc.K8S, "fuse", "namespace.yaml"))
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def _sc(name):
    return lambda s: dc.container_named(s, name).setdefault("securityContext", {})


RESTRICTED_MUTATIONS = [
    ("allowPrivilegeEscalation",
     lambda s: _sc("secretfs")(s).update(allowPrivilegeEscalation=True)),
    ("allowPrivilegeEscalation", lambda s: _sc("app")(s).pop("allowPrivilegeEscalation")),
    ("runAsNonRoot", lambda s: _sc("secretfs")(s).update(runAsNonRoot=False)),
    ("runAsNonRoot", lambda s: (s["securityContext"].pop("runAsNonRoot"),
                                _sc("app")(s).pop("runAsNonRoot"))),
    ("runAsUser 0", lambda s: _sc("app")(s).update(runAsUser=0)),
    ("drop ALL", lambda s: _sc("secretfs")(s).update(capabilities={"drop": ["NET_RAW"]})),
    ("capabilities add", lambda s: _sc("app")(s)["capabilities"].update(add=["SYS_ADMIN"])),
    ("seccompProfile", lambda s: _sc("secretfs")(s).update(
        seccompProfile={"type": "Unconfined"})),
    ("seccompProfile", lambda s: (s["securityContext"].pop("seccompProfile"),
                                  _sc("app")(s).pop("seccompProfile"))),
    ("privileged", lambda s: _sc("secretfs")(s).update(privileged=True)),
    ("hostPath", lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}})),
    ("volume type", lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "x",
                                                                        "path": "/"}})),
    ("hostNetwork", lambda s: s.update(hostNetwork=True)),
    ("hostPID", lambda s: s.update(hostPID=True)),
    ("hostIPC", lambda s: s.update(hostIPC=True)),
    ("hostPort", lambda s: dc.container_named(s, "app").update(
        ports=[{"containerPort": 80, "hostPort": 80}])),
    ("Bidirectional", lambda s: dc.container_named(s, "secretfs")["volumeMounts"][0].update(
        mountPropagation="Bidirectional")),
    ("sysctl", lambda s: s["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}])),
    ("procMount", lambda s: _sc("app")(s).update(procMount="Unmasked")),
]


@pytest.mark.parametrize("rule,mutate", RESTRICTED_MUTATIONS,
                         ids=[f"{i}-{r}" for i, (r, _) in enumerate(RESTRICTED_MUTATIONS)])
def test_restricted_checker_catches(rule, mutate):
    problems = dc.check_restricted(dc.mutated(raw_spec("restricted"), mutate))
    assert any(rule in p for p in problems), problems


# ------------------------------------------------------------ every manifest

def test_manifests_found():
    kinds = {d["kind"] for _, d in all_raw_manifests()}
    assert {"Deployment", "Namespace", "ServiceAccount", "NetworkPolicy"} <= kinds


def test_bidirectional_only_in_privileged_containers():
    specs = pod_specs_everywhere()
    assert specs
    for label, spec in specs:
        assert dc.check_propagation(spec) == [], label


def test_propagation_checker_catches_unprivileged_bidirectional():
    spec = dc.mutated(raw_spec("fuse"),
                      lambda s: dc.container_named(s, "secretfs")["securityContext"].update(
                          privileged=False))
    assert dc.check_propagation(spec)
    assert dc.check_propagation(raw_spec("fuse")) == []


def test_no_floating_image_tags():
    for label, spec in pod_specs_everywhere():
        assert dc.check_images(spec) == [], label


@pytest.mark.parametrize("image,floats", [
    ("registry.example.com/secretfs", True),
    ("registry.example.com/secretfs:latest", True),
    ("registry.example.com:5000/secretfs", True),
    ("busybox:latest", True),
    ("registry.example.com:5000/secretfs:0.1.0", False),
    ("busybox:1.36.1", False),
    ("secretfs:latest@sha256:" + "a" * 64, False),
    ("secretfs@sha256:" + "b" * 64, False),
])
def test_floating_tag_rule(image, floats):
    assert (dc.floating_image(image) is not None) == floats


def test_image_checker_catches_latest():
    spec = dc.mutated(raw_spec("restricted"),
                      lambda s: dc.container_named(s, "app").update(image="busybox:latest"))
    assert dc.check_images(spec)


def test_probes_and_resources():
    for label, spec in pod_specs_everywhere():
        assert dc.check_probes_and_resources(spec) == [], label


@pytest.mark.parametrize("mutate,expect", [
    (lambda s: dc.container_named(s, "secretfs").pop("startupProbe"), "startupProbe"),
    (lambda s: dc.container_named(s, "app")["resources"].pop("limits"), "limits"),
    (lambda s: dc.container_named(s, "secretfs")["resources"]["requests"].pop("memory"),
     "requests.memory"),
])
def test_probe_resource_checker_catches(mutate, expect):
    problems = dc.check_probes_and_resources(dc.mutated(raw_spec("restricted"), mutate))
    assert any(expect in p for p in problems), problems


@pytest.mark.parametrize("example", ["restricted", "fuse"])
def test_secretfs_is_a_native_sidecar(example):
    assert dc.check_native_sidecar(raw_spec(example)) == []


def test_native_sidecar_checker_catches():
    no_restart = dc.mutated(raw_spec("restricted"),
                            lambda s: dc.container_named(s, "secretfs").pop("restartPolicy"))
    assert dc.check_native_sidecar(no_restart)

    def move(s):
        c = dc.container_named(s, "secretfs")
        s["initContainers"].remove(c)
        c.pop("restartPolicy")
        s["containers"].append(c)
    assert dc.check_native_sidecar(dc.mutated(raw_spec("restricted"), move))


@pytest.mark.parametrize("example", ["restricted", "fuse"])
def test_startup_probe_uses_the_config_the_sidecar_runs(example):
    c = dc.container_named(raw_spec(example), "secretfs")
    cmd = c["startupProbe"]["exec"]["command"]
    assert cmd[-1] == "--ready"
    assert cmd[cmd.index("--config") + 1] == c["args"][c["args"].index("--config") + 1]
    assert cmd[0] == "/usr/local/bin/secretfs"      # the image has no PATH search to lean on


def test_app_reads_secrets_read_only_from_a_memory_emptydir():
    spec = raw_spec("restricted")
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["secrets"]["emptyDir"]["medium"] == "Memory"
    assert vols["secrets"]["emptyDir"]["sizeLimit"]
    app = dc.container_named(spec, "app")
    [m] = [m for m in app["volumeMounts"] if m["name"] == "secrets"]
    assert m["readOnly"] is True


def test_fuse_propagation_pairs():
    spec = raw_spec("fuse")
    side = dc.container_named(spec, "secretfs")
    app = dc.container_named(spec, "app")
    assert side["securityContext"]["privileged"] is True
    assert [m["mountPropagation"] for m in side["volumeMounts"] if m["name"] == "secrets"] \
        == ["Bidirectional"]
    assert [m["mountPropagation"] for m in app["volumeMounts"] if m["name"] == "secrets"] \
        == ["HostToContainer"]
    assert spec["terminationGracePeriodSeconds"] >= 10


@pytest.mark.parametrize("example", ["restricted", "fuse"])
def test_vault_token_is_projected_audience_scoped_and_short_lived(example):
    spec = raw_spec(example)
    assert spec["automountServiceAccountToken"] is False
    vols = {v["name"]: v for v in spec["volumes"]}
    [src] = vols["vault-token"]["projected"]["sources"]
    tok = src["serviceAccountToken"]
    assert tok["audience"] == "vault" and tok["expirationSeconds"] <= 3600
    side = dc.container_named(spec, "secretfs")
    [m] = [m for m in side["volumeMounts"] if m["name"] == "vault-token"]
    cfg = json.load(open(os.path.join(dc.K8S, example, "config.json")))
    assert cfg["backends"]["vault"]["auth"]["jwt_file"] == \
        os.path.join(m["mountPath"], tok["path"])


def test_aws_overlay_uses_irsa_and_drops_the_vault_token():
    docs = rendered("aws")
    [sa] = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    [(_, spec)] = dc.workloads(docs)
    assert "vault-token" not in {v["name"] for v in spec["volumes"]}
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert json.loads(cm["data"]["config.json"])["backends"]["aws"]["type"] == "aws"


def test_network_policy_allows_dns_and_the_backend_only():
    docs = rendered("restricted")
    [np] = [d for d in docs if d["kind"] == "NetworkPolicy"
            and d["spec"]["policyTypes"] == ["Egress"]]
    ports = sorted((p["protocol"], p["port"]) for rule in np["spec"]["egress"]
                   for p in rule["ports"])
    assert ports == [("TCP", 53), ("TCP", 8200), ("UDP", 53)]
    [(_, spec)] = dc.workloads(docs)
    pod_labels = [d for d in docs if d["kind"] == "Deployment"][0]["spec"]["template"][
        "metadata"]["labels"]
    for k, v in np["spec"]["podSelector"]["matchLabels"].items():
        assert pod_labels[k] == v


def test_telemetry_port_is_open_to_prometheus_only():
    for example in ("restricted", "fuse"):
        docs = rendered(example)
        [np] = [d for d in docs if d["kind"] == "NetworkPolicy"
                and d["spec"]["policyTypes"] == ["Ingress"]]
        [rule] = np["spec"]["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 9464}]
        [peer] = rule["from"]
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
        [(_, spec)] = dc.workloads(docs)
        sidecar = [c for c in spec.get("initContainers", []) + spec["containers"]
                   if c["name"] == "secretfs"][0]
        assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in sidecar["ports"]
        assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


# ------------------------------------------------------- the embedded configs

def configmap_config(example):
    """The secretfs config the example's ConfigMap carries: from the
    kustomize output when kubectl is there, else the generator's file."""
    docs = dc.kustomize(os.path.join(dc.K8S, example))
    if docs is None:
        with open(os.path.join(dc.K8S, example, "config.json")) as f:
            return f.read()
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    return cm["data"]["config.json"]


@pytest.mark.parametrize("example", dc.EXAMPLES)
def test_configmap_config_passes_secretfs_check(example, tmp_path):
    if not os.access(dc.SECRETFS_BIN, os.X_OK):
        pytest.skip(f"no secretfs binary at {dc.SECRETFS_BIN} (set SECRETFS_BIN)")
    path = tmp_path / "config.json"
    path.write_text(configmap_config(example))
    r = subprocess.run([dc.SECRETFS_BIN, "--config", str(path), "--check"],
                       capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    if r.returncode != 0 and 'unknown backend type "aws"' in out:
        pytest.skip("this secretfs has no aws backend yet (--check: unknown backend type)")
    assert r.returncode == 0, out
    assert "configuration OK" in out
