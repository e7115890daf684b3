"""Resource bounds (README "Limits"): each one exceeded is refused with an error
that names it, nothing is truncated, and a refused refresh keeps the last
good value. Also: thousands of handles open on one file across a rotation."""

import errno
import json
import os
import resource

import pytest

from helpers.harness import rand_token, read_bytes, read_text, wait_until
from helpers.vault import backend, start as vault_start, token_auth

pytestmark = pytest.mark.fuse

MiB = 1024 * 1024
RENDER_MAX = 1 * MiB          # RENDER_MAX_LEN: one file's content
FILE_BACKEND_MAX = 16 * MiB   # the file backend's secrets file
HTTP_MAX = 4 * MiB            # a Vault answer
CONFIG_MAX = 16 * MiB         # the config file
DEFAULT_MAX_OPEN_HANDLES = 12288


def check(sandbox, cfg):
    """--check on cfg (a dict or text): (returncode, stdout + stderr)."""
    path = sandbox.write_config(cfg)
    r = sandbox.run(["--config", path, "--check"])
    return r.returncode, r.stdout + r.stderr


def small_secrets(n):
    return {f"s{i}": {"backend": "local", "path": "x"} for i in range(n)}


# ---------------------------------------------------------------- config


def test_more_files_than_limits_max_files_are_refused_naming_the_bound(workdir):
    cfg = workdir.config(small_secrets(4), limits={"max_files": 3})
    rc, out = check(workdir, cfg)
    assert rc != 0
    assert "secrets: too many secrets: 4, at most 3 (limits.max_files)" in out, out
    cfg["limits"]["max_files"] = 4
    workdir.write_data({"x": "v"})
    rc, out = check(workdir, cfg)
    assert rc == 0, out


def test_default_max_files_is_100000(workdir):
    workdir.write_data({"x": "v"})
    cfg = workdir.config(small_secrets(100001))
    text = json.dumps(cfg, separators=(",", ":"))
    assert len(text) < CONFIG_MAX                 # the count, not the size, is refused
    rc, out = check(workdir, text)
    assert rc != 0
    assert "too many secrets: 100001, at most 100000 (limits.max_files)" in out, out


@pytest.mark.parametrize("limits, message", [
    ({"max_files": 0}, "limits.max_files: must be an integer from 1 to 1000000"),
    ({"max_files": 1000001}, "limits.max_files: must be an integer from 1 to 1000000"),
    ({"max_files": "10"}, "limits.max_files: must be an integer from 1 to 1000000"),
    ({"max_open_handles": -1},
     "limits.max_open_handles: must be an integer from 1 to 1000000"),
    ({"max_handles": 5}, "limits"),
    ([], "limits: must be an object"),
])
def test_bad_limits_are_refused_with_their_key_path(workdir, limits, message):
    workdir.write_data({"x": "v"})
    rc, out = check(workdir, workdir.config(small_secrets(1), limits=limits))
    assert rc != 0
    assert message in out, out
    if limits == {"max_handles": 5}:
        assert "max_handles" in out, out


def test_config_file_larger_than_16_mib_is_refused_naming_the_bound(workdir):
    workdir.write_data({"x": "v"})
    cfg = workdir.config(small_secrets(1))
    text = json.dumps(cfg)

    def padded(size):                             # whitespace before the last brace
        return text[:-1] + " " * (size - len(text)) + "}"
    rc, out = check(workdir, padded(CONFIG_MAX))
    assert rc == 0, out                           # exactly at the bound: read whole
    rc, out = check(workdir, padded(CONFIG_MAX + 1))
    assert rc != 0
    assert "cannot read: the file is larger than 16 MiB" in out, out


# ---------------------------------------------------------------- secret size


def test_file_backend_value_past_the_render_bound_keeps_the_last_good_value(sandbox):
    good = rand_token(32)
    d = sandbox.start({"big": {"backend": "local", "path": "v"},
                       "other": {"backend": "local", "path": "o"}},
                      data={"v": good, "o": "o1"})
    assert d.read("big") == good
    # just under the bound is served whole
    edge = "e" * RENDER_MAX
    sandbox.write_data({"v": edge, "o": "o2"})
    wait_until(lambda: d.read("other") == "o2", what="the edit")
    assert read_bytes(d.path("big")) == edge.encode()
    assert os.stat(d.path("big")).st_size == RENDER_MAX
    sandbox.write_data({"v": "x" * (RENDER_MAX + 1), "o": "o3"})
    wait_until(lambda: d.read("other") == "o3", what="the edit")
    d.wait_log(r"file big: cannot render from local:v: rendered content exceeds the size "
               r"limit \(1048576 bytes\); keeping the last good content")
    assert read_bytes(d.path("big")) == edge.encode()      # not truncated


def test_secrets_file_past_16_mib_keeps_the_last_good_values(sandbox):
    good = rand_token(32)
    d = sandbox.start({"t": {"backend": "local", "path": "t"}}, data={"t": good})
    pad = "p" * (FILE_BACKEND_MAX // 2)
    sandbox.write_data(json.dumps({"t": "new", "a": pad, "b": pad}))
    d.wait_log(r"backend local: secrets file \S+ is larger than 16 MiB, the file backend's "
               r"bound; keeping last good values \(1 refused so far\)")
    assert d.read("t") == good
    fixed = rand_token(32)
    sandbox.write_data({"t": fixed})
    wait_until(lambda: d.read("t") == fixed, what="the file fixed")


def test_template_output_past_the_render_bound_keeps_the_last_good_value(sandbox):
    tmpl = "{{v}}" * 1024
    d = sandbox.start({"t.conf": {"backend": "local", "path": "m", "format": "template",
                                  "template": tmpl},
                       "o": {"backend": "local", "path": "o"}},
                      data={"m": {"v": "ab"}, "o": "o1"})
    assert d.read("t.conf") == "ab" * 1024
    sandbox.write_data({"m": {"v": "z" * 1025}, "o": "o2"})   # 1025 KiB of output
    wait_until(lambda: d.read("o") == "o2", what="the edit")
    d.wait_log(r"file t\.conf: cannot render from local:m: .*1048576 bytes")
    assert d.read("t.conf") == "ab" * 1024


def test_vault_answer_past_4_mib_keeps_the_last_good_value(sandbox, vault, vault_pki):
    vault.kv_put("secret/app/big", {"v": "small"})
    _, auth = token_auth(sandbox, vault)
    d = vault_start(sandbox, {"big": {"backend": "vault", "path": "secret/app/big",
                                      "field": "v", "refresh": "1s"}},
                    backend(vault, vault_pki, auth=auth))
    assert d.read("big") == "small"
    vault.kv_put("secret/app/big", {"v": "y" * HTTP_MAX})
    d.wait_log(r"response larger than 4194304 bytes", timeout=20)
    assert d.read("big") == "small"


# ---------------------------------------------------------------- handles


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(n, hard), max(n, hard)))


def maps_lines(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for _ in f)


def read_through_daemon(fd, size):
    """A READ that reaches the daemon (the page cache dropped first), so this
    handle unseals its own snapshot."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return os.pread(fd, size + 1, 0)


def test_3000_handles_on_one_file_across_a_rotation(sandbox):
    """Each handle holds its own guarded snapshot: 70 KiB is past the arenas'
    largest block, so every snapshot is a sodium_malloc of its own."""
    n = 3000
    raise_nofile(2 * n + 100)
    with open("/proc/sys/vm/max_map_count") as f:
        max_map_count = int(f.read())
    old, new = "o" * (70 * 1024), "n" * (70 * 1024)
    d = sandbox.start({"big": {"backend": "local", "path": "v"}}, data={"v": old})
    base_maps = maps_lines(d.pid)
    old_fds, new_fds = [], []
    try:
        for _ in range(n):
            fd = os.open(d.path("big"), os.O_RDONLY)
            old_fds.append(fd)
            assert read_through_daemon(fd, len(old)) == old.encode()
        peak = maps_lines(d.pid)
        sandbox.write_data({"v": new})
        wait_until(lambda: read_text(d.path("big")) == new, what="the rotation")
        for _ in range(n):
            fd = os.open(d.path("big"), os.O_RDONLY)
            new_fds.append(fd)
            assert read_through_daemon(fd, len(new)) == new.encode()
        for fd in old_fds:                       # old handles keep the old version
            assert read_through_daemon(fd, len(old)) == old.encode()
        peak = max(peak, maps_lines(d.pid))
        # At most 4 mappings per snapshot, and a few for whatever else the
        # daemon (or the sanitizer's runtime) maps meanwhile.
        assert 2 * n <= peak - base_maps <= 4 * 2 * n + 64, (base_maps, peak)
        # the default limits.max_open_handles keeps a daemon that also loaded
        # libcurl and OpenSSL (a few hundred mappings) within vm.max_map_count
        assert 500 + 4 * DEFAULT_MAX_OPEN_HANDLES < max_map_count, max_map_count
    finally:
        for fd in old_fds + new_fds:
            os.close(fd)
    # every snapshot wiped and unmapped once closed
    wait_until(lambda: maps_lines(d.pid) <= base_maps + 16,
               what=f"mappings back near {base_maps} (peak {peak})")
    assert d.alive()


def test_opens_past_limits_max_open_handles_get_enfile_and_are_logged(sandbox):
    d = sandbox.start({"a": {"backend": "local", "path": "a"}}, data={"a": "va"},
                      limits={"max_open_handles": 10})
    fds = [os.open(d.path("a"), os.O_RDONLY) for _ in range(10)]
    try:
        with pytest.raises(OSError) as e:
            os.open(d.path("a"), os.O_RDONLY)
        assert e.value.errno == errno.ENFILE
        d.wait_log(r"open of a refused \(ENFILE\): 10 handles open, the bound "
                   r"limits\.max_open_handles; 1 refused so far")
        assert all(os.pread(fd, 10, 0) == b"va" for fd in fds)
        os.close(fds.pop())
        fds.append(os.open(d.path("a"), os.O_RDONLY))   # room again
    finally:
        for fd in fds:
            os.close(fd)
    assert read_text(d.path("a")) == "va"


# ---------------------------------------------------------------- on_change


def test_changed_names_past_secretfs_files_bound_are_flagged_not_cut_silently(sandbox):
    out = sandbox.file("env.out")
    hook = {"command": ["/bin/sh", "-c", f"env > {out}.tmp && mv {out}.tmp {out}"],
            "debounce": "300ms"}
    names = [f"d/{'n' * 200}{i:03d}" for i in range(40)]     # 8 KiB of names
    secrets = {name: {"backend": "local", "path": f"k{i}", "on_change": hook}
               for i, name in enumerate(names)}
    d = sandbox.start(secrets, data={f"k{i}": "v1" for i in range(40)})
    sandbox.write_data({f"k{i}": "v2" for i in range(40)})
    wait_until(lambda: os.path.exists(out), what="the on_change command's output")
    env = dict(ln.split("=", 1) for ln in read_text(out).splitlines() if "=" in ln)
    assert env.get("SECRETFS_FILES_INCOMPLETE") == "1", env
    listed = env["SECRETFS_FILES"].split(" ")
    assert 0 < len(listed) < 40 and set(listed) <= set(names), listed
    assert len(env["SECRETFS_FILES"]) <= 4095
    d.wait_log(r"on_change: the changed files' names pass 4095 bytes, the bound of "
               r"SECRETFS_FILES; \S+ and later names not listed")
