"""The audit trail: one JSON line per open of a secret file through the mount,
written off the request path, and the permission checks secretfs does itself
while it is on (the mount then goes without default_permissions)."""

import errno
import fcntl
import json
import os
import re
import signal
import stat
import time

import pytest

from helpers.harness import SLOW, TIMEOUT, rand_token, wait_until

pytestmark = pytest.mark.fuse

TS_RX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
KEYS = ["ts", "file", "version", "pid", "uid", "gid", "comm", "result", "count"]


def audit_lines(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines()]


def wait_line(path, **match):
    """Waits for an audit line whose members include match; returns it."""
    def find():
        for line in audit_lines(path):
            if all(line.get(k) == v for k, v in match.items()):
                return line
        return None
    return wait_until(find, what=f"audit line with {match} in {path}")


def read_file(path):
    with open(path, "rb", buffering=0) as f:
        return f.read()


def errno_name(exc):
    return errno.errorcode.get(exc.errno, str(exc.errno))


def run_as(uid, gid, groups, fn):
    """Runs fn() in a forked child with the given ids (real, effective and
    saved) and supplementary groups; returns (child pid, fn's JSON result)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.write(w, json.dumps(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    box = {}

    def exited():
        if os.waitpid(pid, os.WNOHANG)[0] != pid:
            return False
        box["done"] = True
        return True
    try:
        wait_until(exited, what=f"child {pid} as uid {uid}")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        chunks = []
        while box and (chunk := os.read(r, 65536)):
            chunks.append(chunk)
        os.close(r)
    assert chunks, f"child {pid} as uid {uid} failed"
    return pid, json.loads(b"".join(chunks))


def audited(sandbox, secrets, data, **audit):
    return sandbox.config(secrets, mount={"allow_other": True},
                          audit={"path": sandbox.file("audit.jsonl"), **audit}), data


# ---------------------------------------------------------------- lines

def test_an_open_by_this_process_is_audited_with_its_pid_uid_and_comm(sandbox):
    value = rand_token()
    cfg, data = audited(sandbox, {"db/password": {"backend": "local", "path": "p"}},
                        {"p": value})
    d = sandbox.start(config=cfg, data=data)
    assert read_file(d.path("db/password")) == value.encode()
    line = wait_line(sandbox.file("audit.jsonl"), file="db/password")
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    assert list(line) == KEYS
    assert TS_RX.match(line["ts"]), line
    assert (line["pid"], line["uid"], line["gid"]) == (os.getpid(), os.geteuid(),
                                                       os.getegid())
    assert (line["comm"], line["result"], line["count"]) == (comm, "ok", 1)
    assert isinstance(line["version"], int) and line["version"] >= 1


def test_a_refused_open_by_another_uid_is_audited_as_eacces(sandbox):
    cfg, data = audited(sandbox, {"token": {"backend": "local", "path": "t",
                                            "mode": "0400"}}, {"t": rand_token()})
    d = sandbox.start(config=cfg, data=data)

    def try_read():
        try:
            return {"data": read_file(d.path("token")).decode()}
        except OSError as exc:
            return {"errno": errno_name(exc)}
    child, got = run_as(4242, 4343, [], try_read)
    assert got == {"errno": "EACCES"}
    line = wait_line(sandbox.file("audit.jsonl"), pid=child)
    assert (line["file"], line["uid"], line["gid"], line["result"]) == (
        "token", 4242, 4343, "EACCES")


def test_repeats_within_a_second_are_coalesced_into_one_line_with_a_count(sandbox):
    cfg, data = audited(sandbox, {"k": {"backend": "local", "path": "k"}}, {"k": "v"})
    d = sandbox.start(config=cfg, data=data)
    for _ in range(5):
        read_file(d.path("k"))
    path = sandbox.file("audit.jsonl")
    wait_until(lambda: sum(x["count"] for x in audit_lines(path)) == 5,
               what="five opens counted")
    counts = [x["count"] for x in audit_lines(path)]
    # The first at once, the rest when their second is over (unless the
    # loop straddled a window's end).
    assert counts[0] == 1 and len(counts) <= 3, counts


def test_the_audit_file_is_0600_and_holds_no_secret_value(sandbox):
    values = {"a": rand_token(), "b": rand_token()}
    cfg, data = audited(sandbox, {"a": {"backend": "local", "path": "a"},
                                  "b": {"backend": "local", "path": "b"}}, values)
    d = sandbox.start(config=cfg, data=data)
    for name in ("a", "b", "a"):
        read_file(d.path(name))
    assert d.stop() == 0
    path = sandbox.file("audit.jsonl")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    raw = open(path, "rb").read()
    assert sum(x["count"] for x in audit_lines(path)) == 3
    for v in values.values():
        assert v.encode() not in raw


def test_sigusr1_reopens_the_audit_file_after_it_was_renamed(sandbox):
    cfg, data = audited(sandbox, {"one": {"backend": "local", "path": "x"},
                                  "two": {"backend": "local", "path": "x"}}, {"x": "v"})
    d = sandbox.start(config=cfg, data=data)
    path = sandbox.file("audit.jsonl")
    read_file(d.path("one"))
    wait_line(path, file="one")
    os.rename(path, path + ".1")
    d.send(signal.SIGUSR1)
    d.wait_log(r"audit: reopened")
    read_file(d.path("two"))
    wait_line(path, file="two")
    assert [x["file"] for x in audit_lines(path + ".1")] == ["one"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert d.alive()


def test_a_full_queue_drops_and_counts_lines_and_never_slows_readers(sandbox):
    """The audit file is a FIFO that nobody drains (4 KiB of pipe): the
    writer stalls, the 4-record ring fills, and the opens go on."""
    fifo = sandbox.file("audit.fifo")
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    sandbox.cleanups.append(lambda: os.close(reader))
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
    names = [f"f{i:02d}" for i in range(40)]
    cfg = sandbox.config({n: {"backend": "local", "path": "x"} for n in names},
                         audit={"path": fifo, "queue_size": 4})
    d = sandbox.start(config=cfg, data={"x": "value"})
    opens, slowest = 0, 0.0
    for _ in range(25):
        for n in names:
            t0 = time.monotonic()
            assert read_file(d.path(n)) == b"value"
            slowest = max(slowest, time.monotonic() - t0)
            opens += 1
    assert slowest < 0.5 * SLOW, f"an open took {slowest:.3f} s"
    d.wait_log(r"audit: queue full")
    # Shutdown gives up on the stuck FIFO after about a second.
    assert d.stop() == 0
    lines = []
    buf = b""
    while chunk := os.read(reader, 65536):
        buf += chunk
    lines = [json.loads(x) for x in buf.decode().splitlines()]
    m = re.search(r"audit_written=(\d+) audit_dropped=(\d+)", d.log_text())
    assert m, d.log_text()
    written, dropped = int(m.group(1)), int(m.group(2))
    assert written == len(lines) and dropped > 0
    assert sum(x["count"] for x in lines) + dropped == opens
    assert len(re.findall(r"audit: queue full", d.log_text())) <= 2


# ---------------------------------------------------------------- permissions

OWNER, GROUP, OTHER_GROUP = 1000, 2000, 3000
TABLE_FILES = {
    "o400": {"mode": "0400"},
    "g440": {"mode": "0440", "gid": OTHER_GROUP},
    "g040": {"mode": "0040"},
    "o044": {"mode": "0044"},
    "a444": {"mode": "0444"},
    "n000": {"mode": "0000"},
    "sub/a444": {"mode": "0444"},
    "sub/g440": {"mode": "0440"},
}
CALLERS = {
    "root": (0, 0, []),
    "owner": (OWNER, OWNER, []),
    "fsgid": (1001, GROUP, []),
    "supplementary": (1002, 1002, [GROUP]),
    "other-group": (1004, 1004, [OTHER_GROUP]),
    "other": (1003, 1003, []),
}


def probe(mount):
    """What a caller may do in mount: open+read, stat, access(R_OK) of each
    file, list and enter the directories."""
    out = {}

    def outcome(key, fn):
        try:
            fn()
            out[key] = "ok"
        except OSError as exc:
            out[key] = errno_name(exc)
    for name in TABLE_FILES:
        path = os.path.join(mount, name)
        outcome(f"open {name}", lambda: read_file(path))
        outcome(f"stat {name}", lambda: os.stat(path))
        out[f"access {name}"] = os.access(path, os.R_OK)
    for name in ("", "sub"):
        path = os.path.join(mount, name)
        outcome(f"list /{name}", lambda: os.listdir(path))
        outcome(f"chdir /{name}", lambda: os.chdir(path))
        out[f"access x /{name}"] = os.access(path, os.X_OK)
    return out


@pytest.mark.parametrize("dir_mode", ["0555", "0750", "0711", "0501"])
def test_secretfs_and_the_kernel_agree_on_a_table_of_permission_cases(sandbox, dir_mode):
    secrets = {n: {"backend": "local", "path": "x", **v} for n, v in TABLE_FILES.items()}
    mount = {"allow_other": True, "uid": OWNER, "gid": GROUP, "dir_mode": dir_mode}
    kernel_mnt = sandbox.file("mnt-kernel")
    os.mkdir(kernel_mnt, 0o755)
    sandbox.extra_mounts.append(kernel_mnt)
    sandbox.start(config=sandbox.config(secrets, mount={**mount, "path": kernel_mnt}),
                  data={"x": "value"})
    ours = sandbox.start(config=sandbox.config(
        secrets, mount=mount, audit={"path": sandbox.file("audit.jsonl")}))
    seen = set()
    for who, (uid, gid, groups) in CALLERS.items():
        # Twice each: the second time through dentries the first cached.
        for _ in range(2):
            _, by_kernel = run_as(uid, gid, groups, lambda: probe(kernel_mnt))
            _, by_secretfs = run_as(uid, gid, groups, lambda: probe(ours.mount))
            assert by_secretfs == by_kernel, f"{who} (dir_mode {dir_mode})"
            seen.update(by_kernel.values())
    assert {"ok", "EACCES"} <= seen


def test_a_lookup_refused_by_the_directory_mode_is_audited(sandbox):
    cfg = sandbox.config({"g440": {"backend": "local", "path": "x", "mode": "0440"}},
                         mount={"allow_other": True, "uid": OWNER, "gid": GROUP,
                                "dir_mode": "0750"},
                         audit={"path": sandbox.file("audit.jsonl")})
    d = sandbox.start(config=cfg, data={"x": "value"})
    path = d.path("g440")

    def try_read():
        try:
            return read_file(path).decode()
        except OSError as exc:
            return errno_name(exc)
    # Not allowed to search the mount's root: refused in lookup, never opened.
    child, got = run_as(1003, 1003, [], try_read)
    assert got == "EACCES"
    line = wait_line(sandbox.file("audit.jsonl"), pid=child)
    assert (line["file"], line["uid"], line["result"]) == ("g440", 1003, "EACCES")
    # Allowed through a supplementary group.
    child, got = run_as(1002, 1002, [GROUP], try_read)
    assert got == "value"
    wait_line(sandbox.file("audit.jsonl"), pid=child, result="ok")


# ---------------------------------------------------------------- --check

@pytest.mark.parametrize("audit, mount, why", [
    ({"path": "audit.jsonl"}, {}, r"audit\.path: must be an absolute path"),
    ({"path": "/tmp/a", "size": 1}, {}, r"audit\.size: unknown key"),
    ({"path": "/tmp/a", "queue_size": 0}, {}, r"audit\.queue_size: must be an integer"),
    ({}, {}, r"audit: missing required key \"path\""),
    ("/tmp/a", {}, r"audit: must be an object"),
    ({"path": "/tmp/a"}, {"type": "directory"},
     r"audit: is not available with a directory mount"),
])
def test_check_names_the_audit_key_and_the_reason(workdir, audit, mount, why):
    cfg = workdir.config({"k": {"backend": "local", "path": "k"}}, mount=mount,
                         audit=audit)
    workdir.write_data({"k": "v"})
    r = workdir.run(["--config", workdir.write_config(cfg), "--check"])
    assert r.returncode == 1, r
    assert re.search(why, r.stderr), r.stderr


def test_check_accepts_audit_to_stderr(workdir):
    cfg = workdir.config({"k": {"backend": "local", "path": "k"}}, audit={"path": "-"})
    r = workdir.run(["--config", workdir.write_config(cfg), "--check"])
    assert r.returncode == 0 and "configuration OK" in r.stdout, r
