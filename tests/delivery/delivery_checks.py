"""Checks on the delivery files (Kubernetes manifests, workflows, Dockerfile,
systemd units), written as functions that return a list of problems so that
each can be shown to fail on a mutated copy (the negative self-checks in the
tests). Paths and the binary under test are here too."""

import copy
import os
import re
import shutil
import subprocess

import yaml

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(REPO, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")
EXAMPLES = ("restricted", "aws", "fuse")
SECRETFS_BIN = os.environ.get("SECRETFS_BIN", os.path.join(REPO, "build", "secretfs"))

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod", "CronJob"}


# ------------------------------------------------------------------ loading

def repo_files(suffixes):
    """Files git tracks or would track (untracked, not ignored) with one of
    the suffixes, as absolute paths."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
        paths = out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        # Not a git checkout (a source tarball): every file but build trees.
        paths = []
        for d, dirs, files in os.walk(REPO):
            dirs[:] = [x for x in dirs if not x.startswith(("build", "__pycache__"))
                       and (x == ".github" or not x.startswith("."))]
            paths += [os.path.relpath(os.path.join(d, f), REPO) for f in files]
    return sorted(os.path.join(REPO, p) for p in paths
                  if p.endswith(suffixes) and os.path.exists(os.path.join(REPO, p)))


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomize(directory):
    """The example rendered by kubectl's built-in kustomize, or None when
    kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    r = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d is not None]


def pod_spec(doc):
    """The pod spec of a workload object, or None."""
    kind = doc.get("kind")
    if kind not in WORKLOAD_KINDS:
        return None
    if kind == "Pod":
        return doc.get("spec")
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc.get("spec", {}).get("template", {}).get("spec")


def workloads(docs):
    """[(label, pod spec)] for the workload objects among docs."""
    out = []
    for d in docs:
        spec = pod_spec(d)
        if spec is not None:
            out.append((f"{d['kind']}/{d['metadata']['name']}", spec))
    return out


def containers(spec):
    """[(where, container)] for every container kind of a pod spec."""
    out = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            out.append((f"{key}[{c.get('name')}]", c))
    return out


def is_secretfs(container):
    image = container.get("image", "")
    return container.get("name") == "secretfs" or "secretfs" in image.rsplit("/", 1)[-1]


# ----------------------------------------------------- Pod Security restricted
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (the
# baseline rules plus the restricted ones), with each container's effective
# settings (container level overrides pod level).

RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                           "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}


def check_restricted(spec):
    """Problems that Pod Security admission at level "restricted" would
    refuse (plus Bidirectional mount propagation, which needs privileged)."""
    problems = []
    psc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(f"pod: {key} is true (host namespaces)")
    for v in spec.get("volumes") or []:
        types = [k for k in v if k != "name"]
        for t in types:
            if t == "hostPath":
                problems.append(f"volume {v['name']}: hostPath volume")
            elif t not in RESTRICTED_VOLUME_TYPES:
                problems.append(f"volume {v['name']}: volume type {t} not allowed")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            problems.append(f"pod: unsafe sysctl {s.get('name')}")
    if psc.get("runAsUser") == 0:
        problems.append("pod: runAsUser 0")
    if psc.get("seccompProfile", {}).get("type") == "Unconfined":
        problems.append("pod: seccompProfile Unconfined")
    for where, c in containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile is {seccomp!r}, "
                            "not RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{where}: capabilities do not drop ALL")
        extra = [a for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            problems.append(f"{where}: capabilities add {extra}")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount {sc['procMount']}")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                problems.append(f"{where}: hostPort {p['hostPort']}")
        for m in c.get("volumeMounts") or []:
            if m.get("mountPropagation") == "Bidirectional":
                problems.append(f"{where}: mountPropagation Bidirectional")
    return problems


# -------------------------------------------------------- rules for all pods

def check_propagation(spec):
    """Bidirectional mount propagation only in privileged containers (the API
    server refuses it otherwise)."""
    problems = []
    for where, c in containers(spec):
        privileged = (c.get("securityContext") or {}).get("privileged") is True
        for m in c.get("volumeMounts") or []:
            if m.get("mountPropagation") == "Bidirectional" and not privileged:
                problems.append(f"{where}: Bidirectional propagation without privileged: true")
    return problems


DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def floating_image(image):
    """Why an image reference floats (no tag, or :latest, without a digest),
    or None when it is pinned by tag or digest."""
    if DIGEST.search(image):
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "no tag"
    if last.rsplit(":", 1)[1] == "latest":
        return "tag latest"
    return None


def check_images(spec):
    problems = []
    for where, c in containers(spec):
        why = floating_image(c.get("image", ""))
        if why:
            problems.append(f"{where}: image {c.get('image')!r} floats ({why})")
    return problems


def check_probes_and_resources(spec):
    """Every container has requests and limits for cpu and memory; secretfs
    also has a startup or readiness probe."""
    problems = []
    for where, c in containers(spec):
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(kind) or {}):
                    problems.append(f"{where}: no {kind}.{r}")
        if is_secretfs(c) and not (c.get("startupProbe") or c.get("readinessProbe")):
            problems.append(f"{where}: secretfs without startupProbe or readinessProbe")
    return problems


def check_native_sidecar(spec):
    """secretfs is an init container with restartPolicy: Always (a native
    sidecar) and is not among the regular containers."""
    problems = []
    inits = [c for c in spec.get("initContainers") or [] if is_secretfs(c)]
    if any(is_secretfs(c) for c in spec.get("containers") or []):
        problems.append("secretfs is a regular container, not a native sidecar")
    if not inits:
        problems.append("no secretfs init container")
    for c in inits:
        if c.get("restartPolicy") != "Always":
            problems.append(f"initContainers[{c.get('name')}]: restartPolicy is "
                            f"{c.get('restartPolicy')!r}, not Always")
    return problems


def mutated(spec, fn):
    """A deep copy of spec changed by fn (for the negative self-checks)."""
    s = copy.deepcopy(spec)
    fn(s)
    return s


def container_named(spec, name):
    for _, c in containers(spec):
        if c.get("name") == name:
            return c
    raise KeyError(name)


# ------------------------------------------------------------------ workflows

PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def workflow_uses(doc):
    """[(job/step, uses)] of a workflow document."""
    out = []
    for job_name, job in (doc.get("jobs") or {}).items():
        if "uses" in job:      # a reusable workflow
            out.append((job_name, job["uses"]))
        for i, step in enumerate(job.get("steps") or []):
            if "uses" in step:
                out.append((f"{job_name}/{step.get('name', i)}", step["uses"]))
    return out


def check_workflow_pins(doc, text):
    """Every action outside this repository is pinned by a full 40-hex commit
    SHA with its version in a comment on the same line; container images by
    digest."""
    problems = []
    for where, uses in workflow_uses(doc):
        if uses.startswith("./") or uses.startswith("docker://"):
            if uses.startswith("docker://") and not DIGEST.search(uses):
                problems.append(f"{where}: {uses} not pinned by digest")
            continue
        if not PINNED_USES.match(uses):
            problems.append(f"{where}: {uses} not pinned by a 40-hex commit SHA")
            continue
        line = next((ln for ln in text.splitlines() if uses in ln), "")
        if not re.search(r"#\s*v\d", line):
            problems.append(f"{where}: {uses} has no '# vX.Y.Z' comment")
    for job_name, job in (doc.get("jobs") or {}).items():
        image = job.get("container")
        if isinstance(image, dict):
            image = image.get("image")
        if image and not DIGEST.search(image):
            problems.append(f"{job_name}: container image {image} not pinned by digest")
    return problems


# ----------------------------------------------------------------- Dockerfile

def dockerfile_from_lines(text):
    """[(image, stage name or None)] of the FROM instructions."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", line,
                     re.IGNORECASE)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def check_dockerfile_pins(text):
    """Every FROM that pulls an image names it by @sha256 digest (scratch and
    earlier stages excepted)."""
    problems, stages = [], set()
    froms = dockerfile_from_lines(text)
    if not froms:
        problems.append("no FROM line")
    for image, stage in froms:
        if image != "scratch" and image not in stages and not DIGEST.search(image):
            problems.append(f"FROM {image}: not pinned by @sha256 digest")
        if stage:
            stages.add(stage)
    return problems


# ------------------------------------------------------------------- systemd

def parse_unit(text):
    """{section: {key: [values]}} of a systemd unit file."""
    units, section = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = units.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return units


def check_unit_hardening(unit, required, forbidden=()):
    """required: {key: expected value, or None for "present and non-empty"}
    in [Service]; forbidden: keys that must not be set there."""
    problems = []
    service = unit.get("Service", {})
    for key, want in required.items():
        values = service.get(key)
        if not values:
            problems.append(f"[Service] {key} missing")
        elif want is not None and values[-1] != want:
            problems.append(f"[Service] {key}={values[-1]}, want {want}")
    for key in forbidden:
        if key in service:
            problems.append(f"[Service] {key} is set")
    return problems
