"""deploy/image-rootfs.sh, the script the Dockerfile runs to assemble the
image: run here into a temporary directory from the built binary, then
checked without Docker: every ELF file's libraries resolve inside it (the
dlopen'd libcurl/OpenSSL included), no shell or package manager, the
non-root user, dpkg metadata for every copied file's package, and secretfs
really serving a Vault secret over TLS from inside it (chroot)."""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

import delivery_checks as dc

sys.path.insert(0, os.path.join(dc.REPO, "tests"))
from fakes.fake_vault import FakeVault, make_test_pki  # noqa: E402

SCRIPT = os.path.join(dc.DEPLOY, "image-rootfs.sh")
LOADER = "/lib64/ld-linux-x86-64.so.2"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
DLOPENED = ("libcrypto.so.3", "libssl.so.3", "libcurl.so.4", "libmicrohttpd.so.12")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64",
            "/usr/lib", "/lib")
FORBIDDEN = {"sh", "bash", "dash", "ash", "zsh", "busybox", "apt", "apt-get", "apt-cache",
             "dpkg", "dpkg-query", "rpm", "yum", "dnf", "apk", "perl", "python3", "env",
             "su", "sudo", "ldd"}


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    if not os.access(dc.SECRETFS_BIN, os.X_OK):
        pytest.skip(f"no secretfs binary at {dc.SECRETFS_BIN} (set SECRETFS_BIN)")
    for tool in ("dpkg-query", "ldd", "ldconfig", "strip"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (the script runs on Debian)")
    root = tmp_path_factory.mktemp("image") / "rootfs"
    r = subprocess.run(["bash", SCRIPT, dc.SECRETFS_BIN, str(root)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return str(root)


def inside(root, path):
    return os.path.join(root, path.lstrip("/"))


def walk(root):
    """(path inside the image, host path) of every regular file."""
    for d, _, files in os.walk(root):
        for f in files:
            host = os.path.join(d, f)
            if os.path.isfile(host) and not os.path.islink(host):
                yield "/" + os.path.relpath(host, root), host


def is_elf(host):
    with open(host, "rb") as f:
        return f.read(4) == b"\x7fELF"


def needed(host):
    out = subprocess.run(["objdump", "-p", host], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"^\s*NEEDED\s+(\S+)", out, re.M)


def resolve(root, soname):
    """Where the loader's default directories find soname in the image, or None."""
    for d in LIB_DIRS:
        p = inside(root, os.path.join(d, soname))
        if os.path.exists(p):     # follows links, which must stay inside
            real = os.path.realpath(p)
            if real.startswith(os.path.realpath(root) + os.sep):
                return real
    return None


def unresolved(root, host):
    return [n for n in needed(host) if resolve(root, n) is None]


def test_elf_files_and_their_libraries(rootfs):
    elves = [p for p, h in walk(rootfs) if is_elf(h)]
    assert "/usr/local/bin/secretfs" in elves
    assert "/usr/bin/fusermount3" in elves
    for so in DLOPENED:
        assert resolve(rootfs, so), f"{so} (dlopen'd) is not in the image"
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    for path, host in walk(rootfs):
        if is_elf(host):
            assert unresolved(rootfs, host) == [], path


def test_unresolved_library_is_caught(rootfs, tmp_path):
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    broken = tmp_path / "root"
    shutil.copytree(rootfs, broken, symlinks=True)
    victim = resolve(str(broken), "libjansson.so.4")
    os.unlink(victim)
    assert unresolved(str(broken), inside(str(broken), "/usr/local/bin/secretfs")) \
        == ["libjansson.so.4"]


def test_runs_inside_the_image(rootfs):
    needs_root()
    r = subprocess.run([CHROOT, rootfs, "/usr/local/bin/secretfs", "--version"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("secretfs "), r.stderr


def preload(rootfs, libs):
    """secretfs --version inside the image with libs loaded first the way
    dlopen finds them (by soname, the loader's default search)."""
    return subprocess.run([CHROOT, rootfs, LOADER, "--preload", " ".join(libs),
                           "/usr/local/bin/secretfs", "--version"],
                          capture_output=True, text=True, timeout=30)


def test_dlopened_libraries_load_inside_the_image(rootfs):
    needs_root()
    r = preload(rootfs, DLOPENED)
    assert r.returncode == 0 and "cannot be preloaded" not in r.stderr, r.stderr
    listing = subprocess.run([CHROOT, rootfs, LOADER, "--list", "--preload", " ".join(DLOPENED),
                              "/usr/local/bin/secretfs"], capture_output=True, text=True,
                             timeout=30)
    assert listing.returncode == 0 and "not found" not in listing.stdout, listing.stdout
    for so in DLOPENED:
        assert re.search(rf"^\s*{re.escape(so)} => /", listing.stdout, re.M), listing.stdout
    # ...and the check does fail for a library that is not there.
    assert "cannot be preloaded" in preload(rootfs, ["libnot-there.so.9"]).stderr


def forbidden_files(root):
    names = {f for _, _, fs in os.walk(root) for f in fs}
    return sorted(n for n in names
                  if n in FORBIDDEN or re.fullmatch(r"(python|perl)[\d.]*", n))


def test_no_shell_or_package_manager(rootfs):
    assert forbidden_files(rootfs) == []


def test_forbidden_file_is_caught(tmp_path):
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "dash").write_text("")
    os.symlink("dash", tmp_path / "usr" / "bin" / "sh")
    (tmp_path / "usr" / "bin" / "python3.11").write_text("")
    assert forbidden_files(str(tmp_path)) == ["dash", "python3.11", "sh"]


def test_fusermount3_is_not_setuid(rootfs):
    mode = os.stat(inside(rootfs, "/usr/bin/fusermount3")).st_mode
    assert mode & stat.S_IXUSR and not mode & (stat.S_ISUID | stat.S_ISGID)


def test_nonroot_user(rootfs):
    passwd = open(inside(rootfs, "/etc/passwd")).read().splitlines()
    users = {line.split(":")[0]: line.split(":") for line in passwd}
    assert users["nonroot"][2:4] == ["65532", "65532"]
    assert all(u[6] == "/sbin/nologin" for u in users.values())
    groups = {line.split(":")[0]: line.split(":")[2]
              for line in open(inside(rootfs, "/etc/group")).read().splitlines()}
    assert groups["nonroot"] == "65532"


def test_ca_bundle_and_os_release(rootfs):
    bundle = open(inside(rootfs, "/etc/ssl/certs/ca-certificates.crt")).read()
    assert bundle.count("BEGIN CERTIFICATE") > 50
    assert "ID=debian" in open(inside(rootfs, "/etc/os-release")).read()


def status_entries(rootfs):
    d = inside(rootfs, "/var/lib/dpkg/status.d")
    out = {}
    for name in os.listdir(d):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", open(os.path.join(d, name)).read(), re.M))
        out[name] = fields
    return out


def spellings(path):
    """path and its other merged-/usr spelling (/usr/lib/x and /lib/x)."""
    m = re.match(r"^/usr(/(?:bin|sbin|lib|lib64)/.*)$", path)
    if m:
        return [path, m.group(1)]
    if re.match(r"^/(?:bin|sbin|lib|lib64)/", path):
        return [path, "/usr" + path]
    return [path]


def owners(paths):
    """{path: Debian package} for the host paths, in one dpkg-query call."""
    queries = [q for p in paths for q in spellings(p)]
    out = subprocess.run(["dpkg-query", "-S", *queries], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        if not line.startswith("diversion"):
            pkg, _, path = line.partition(": ")
            found[path] = pkg.split(", ")[0]
    return {p: next((found[q] for q in spellings(p) if q in found), None) for p in paths}


def metadata_problems(rootfs):
    """Copied files whose Debian package has no (or a wrong) status.d entry."""
    entries = status_entries(rootfs)
    generated = {"/usr/local/bin/secretfs", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
                 "/etc/ssl/certs/ca-certificates.crt"}
    problems = [] if "ca-certificates" in entries else ["no entry for ca-certificates"]
    paths = [p for p, _ in walk(rootfs)
             if p not in generated and not p.startswith("/var/lib/dpkg/")]
    owned = owners(paths)
    versions = {}
    for path in paths:
        pkg = owned[path]
        if not pkg:
            problems.append(f"{path}: no Debian package owns it on this machine")
            continue
        name = pkg.split(":")[0]
        e = entries.get(name)
        if e is None:
            problems.append(f"{path}: no status.d entry for {name}")
            continue
        if pkg not in versions:
            versions[pkg] = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                           capture_output=True, text=True).stdout
        if (e.get("Package"), e.get("Status"), e.get("Version")) != \
                (name, "install ok installed", versions[pkg]):
            problems.append(f"{path}: status.d/{name} does not match the installed package")
    return problems, len(paths)


def test_dpkg_metadata_for_every_copied_file(rootfs):
    problems, checked = metadata_problems(rootfs)
    assert problems == []
    assert checked > 20
    entries = status_entries(rootfs)
    for name in ("libc6", "libcurl4", "libssl3", "libsodium23", "libfuse3-3", "fuse3"):
        assert name in entries


def test_missing_metadata_is_caught(rootfs, tmp_path):
    broken = tmp_path / "root"
    shutil.copytree(rootfs, broken, symlinks=True)
    os.unlink(broken / "var" / "lib" / "dpkg" / "status.d" / "libsodium23")
    text = (broken / "var/lib/dpkg/status.d/zlib1g").read_text()
    (broken / "var/lib/dpkg/status.d/zlib1g").write_text(
        re.sub(r"^Version: .*$", "Version: 0.0-old", text, flags=re.M))
    problems, _ = metadata_problems(str(broken))
    assert any("no status.d entry for libsodium23" in p for p in problems), problems
    assert any("status.d/zlib1g does not match" in p for p in problems), problems


# ------------------------------------------------- secretfs running in the image

@pytest.fixture
def image_root(rootfs, tmp_path):
    """A private copy of the image tree with /dev/fuse and /etc/secretfs."""
    root = tmp_path / "root"
    shutil.copytree(rootfs, root, symlinks=True)
    os.makedirs(root / "dev")
    os.mknod(root / "dev" / "fuse", 0o666 | stat.S_IFCHR, os.makedev(10, 229))
    os.makedirs(root / "etc" / "secretfs")
    os.makedirs(root / "run" / "secrets" / "app")
    yield str(root)
    mnt = str(root / "run" / "secrets" / "app")
    with open("/proc/self/mountinfo") as f:
        if f" {mnt} " in f.read():
            subprocess.run(["umount", "-l", mnt], check=False)


def test_serves_a_vault_secret_over_tls_from_inside_the_image(image_root):
    """FUSE mode as the privileged sidecar runs it (root): libcurl, OpenSSL
    and the CA handling are the image's own."""
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root (chroot, FUSE mount) and /dev/fuse")
    pki = make_test_pki(os.path.join(image_root, "..", "pki"))
    etc = os.path.join(image_root, "etc", "secretfs")
    shutil.copy(pki.ca_cert, os.path.join(etc, "ca.pem"))
    with FakeVault(tls_cert=pki.server_cert, tls_key=pki.server_key) as vault:
        vault.kv_put("secret/app/config", {"api_key": "image-test-k1"})
        with open(os.path.join(etc, "token"), "w") as f:
            f.write(vault.create_token(ttl=3600))
        os.chmod(os.path.join(etc, "token"), 0o600)
        cfg = {"mount": {"path": "/run/secrets/app"},
               "backends": {"vault": {"type": "vault", "address": vault.url,
                                      "tls": {"ca_file": "/etc/secretfs/ca.pem"},
                                      "auth": {"method": "token",
                                               "token_file": "/etc/secretfs/token"}}},
               "secrets": {"api-key": {"backend": "vault", "path": "secret/app/config",
                                       "field": "api_key"}},
               "startup_timeout": "20s"}
        with open(os.path.join(etc, "config.json"), "w") as f:
            json.dump(cfg, f)
        proc = subprocess.Popen([CHROOT, image_root, "/usr/local/bin/secretfs",
                                 "--config", "/etc/secretfs/config.json"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={"PATH": "/usr/local/bin:/usr/bin"})
        target = os.path.join(image_root, "run", "secrets", "app", "api-key")
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(target) and proc.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            assert os.path.exists(target), "secretfs did not serve the file"
            with open(target) as f:
                assert f.read() == "image-test-k1"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
        assert proc.returncode == 0, out
        assert "unmounted" in out
        assert not os.path.exists(target)


def test_directory_mode_once_as_the_nonroot_user(image_root):
    """The restricted sidecar's situation: uid 65532, no capabilities,
    directory mode into a writable directory, read-only everything else."""
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot)")
    out_dir = os.path.join(image_root, "run", "secrets", "app")
    os.chown(out_dir, 65532, 65532)
    etc = os.path.join(image_root, "etc", "secretfs")
    with open(os.path.join(etc, "secrets.json"), "w") as f:
        json.dump({"app": {"api_key": "dir-k1"}}, f)
    cfg = {"mount": {"type": "directory", "path": "/run/secrets/app", "mode": "0400"},
           "backends": {"local": {"type": "file", "path": "secrets.json"}},
           "secrets": {"api-key": {"backend": "local", "path": "app", "field": "api_key"}}}
    with open(os.path.join(etc, "config.json"), "w") as f:
        json.dump(cfg, f)
    r = subprocess.run([CHROOT, "--userspec=65532:65532", image_root, "/usr/local/bin/secretfs",
                        "--config", "/etc/secretfs/config.json", "--once"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode == 2 and ("unrecognized option" in r.stderr or "Usage" in r.stderr):
        pytest.skip("this secretfs has no --once (directory mode) yet")
    assert r.returncode == 0, r.stdout + r.stderr
    with open(os.path.join(out_dir, "api-key")) as f:
        assert f.read() == "dir-k1"
