"""deploy/systemd: the hardening each unit must keep, and systemd-analyze
verify when systemd is installed."""

import json
import os
import shutil
import subprocess

import pytest

import delivery_checks as dc

UNITS = os.path.join(dc.DEPLOY, "systemd")

COMMON = {
    "Type": "simple",
    "NoNewPrivileges": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "LimitCORE": "0",
    "KillSignal": "SIGTERM",
    "LockPersonality": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "SystemCallArchitectures": "native",
    "RuntimeDirectory": None,
}
# FUSE: the mount must be visible to the host, so no option that gives the
# service its own mount namespace (see the unit's comments).
FUSE_REQUIRED = {**COMMON,
                 "ExecStart": "/usr/local/bin/secretfs --config /etc/secretfs/config.json",
                 "CapabilityBoundingSet": "CAP_SYS_ADMIN",
                 "DevicePolicy": "closed",
                 "DeviceAllow": "/dev/fuse rw",
                 "SystemCallFilter": "@system-service @mount"}
FUSE_FORBIDDEN = ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                  "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "PrivateMounts",
                  "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                  "ProtectControlGroups", "ProtectProc", "ProcSubset", "TemporaryFileSystem",
                  "BindPaths", "BindReadOnlyPaths", "MountFlags", "RootDirectory", "DynamicUser",
                  "PrivateNetwork")
DIRECTORY_REQUIRED = {**COMMON,
                      "CapabilityBoundingSet": "",
                      "ProtectSystem": "strict",
                      "ProtectHome": "yes",
                      "PrivateTmp": "yes",
                      "PrivateDevices": "yes",
                      "ReadWritePaths": "/run/secretfs",
                      "SystemCallFilter": "@system-service",
                      "User": None}


def unit(name):
    with open(os.path.join(UNITS, name)) as f:
        return dc.parse_unit(f.read())


def check(name, required, forbidden=()):
    return dc.check_unit_hardening(unit(name), required, forbidden)


def test_fuse_unit_hardening():
    assert check("secretfs.service", FUSE_REQUIRED, FUSE_FORBIDDEN) == []


def test_directory_unit_hardening():
    u = unit("secretfs-directory.service")
    assert dc.check_unit_hardening(u, DIRECTORY_REQUIRED) == []
    # an empty bounding set: the empty assignment must be there, not absent
    assert u["Service"]["CapabilityBoundingSet"] == [""]


@pytest.mark.parametrize("edit,expect", [
    (lambda s: s.pop("NoNewPrivileges"), "NoNewPrivileges missing"),
    (lambda s: s.update(CapabilityBoundingSet=["CAP_SYS_ADMIN CAP_NET_ADMIN"]),
     "CapabilityBoundingSet="),
    (lambda s: s.update(ProtectSystem=["strict"]), "ProtectSystem is set"),
    (lambda s: s.update(LimitCORE=["infinity"]), "LimitCORE="),
    (lambda s: s.pop("DeviceAllow"), "DeviceAllow missing"),
])
def test_hardening_checker_catches(edit, expect):
    u = unit("secretfs.service")
    edit(u["Service"])
    problems = dc.check_unit_hardening(u, FUSE_REQUIRED, FUSE_FORBIDDEN)
    assert any(expect in p for p in problems), problems


def analyze_verify(paths):
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run([exe, "verify", *paths], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


def copies_pointing_at(tmp_path, binary, names):
    """The units with ExecStart pointing at an existing binary (verify
    insists that the command exists)."""
    out = []
    for name in names:
        text = open(os.path.join(UNITS, name)).read()
        p = tmp_path / name
        p.write_text(text.replace("/usr/local/bin/secretfs", binary))
        out.append(str(p))
    return out


def test_systemd_analyze_verify(tmp_path):
    names = sorted(f for f in os.listdir(UNITS) if f.endswith(".service"))
    paths = copies_pointing_at(tmp_path, "/bin/true", names)
    r = analyze_verify(paths)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_systemd_analyze_verify_catches_a_bad_key(tmp_path):
    [path] = copies_pointing_at(tmp_path, "/bin/true", ["secretfs.service"])
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("[Service]\n", "[Service]\nNoNewPrivilege=yes\n"))
    r = analyze_verify([path])
    assert "NoNewPrivilege" in r.stderr


@pytest.mark.parametrize("name,example", [("secretfs.service", "config.json"),
                                          ("secretfs-directory.service", "directory.json")])
def test_unit_config_example_passes_check(name, example, tmp_path):
    """The ExecStart config is shipped as an example beside the unit, passes
    --check, and (directory mode) writes where the sandbox lets it."""
    exec_start = unit(name)["Service"]["ExecStart"][-1].split()
    cfg_path = exec_start[exec_start.index("--config") + 1]
    assert os.path.basename(cfg_path) == example
    src = os.path.join(UNITS, example)
    if not os.access(dc.SECRETFS_BIN, os.X_OK):
        pytest.skip(f"no secretfs binary at {dc.SECRETFS_BIN} (set SECRETFS_BIN)")
    r = subprocess.run([dc.SECRETFS_BIN, "--config", src, "--check"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(src) as f:
        mount = json.load(f)["mount"]
    if mount.get("type") == "directory":
        rw = unit(name)["Service"]["ReadWritePaths"][-1]
        assert mount["path"].startswith(rw + "/")
