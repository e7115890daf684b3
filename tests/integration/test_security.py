"""Security properties: no plaintext at rest in the daemon's memory, no
secret values in its logs."""

import base64
import json
import os
import subprocess

import pytest

from helpers.harness import (HELPERS_DIR, PYTHON, TIMEOUT, assert_no_plaintext,
                             parse_env_file, rand_token, scan_memory, wait_until)

MEMORY_SECRETS = {
    "api-key": {"backend": "local", "path": "api"},
    "db/password": {"backend": "local", "path": "db", "field": "password"},
    "db.env": {"backend": "local", "path": "db", "format": "env"},
    "app.conf": {"backend": "local", "path": "cfg", "format": "template",
                 "template": "key={{deep.k}}\n"},
    "blob": {"backend": "local", "path": "b64", "decode": "base64"},
    "dyn/password": {"backend": "gen", "path": "database/creds/app", "field": "password"},
    "dyn.env": {"backend": "gen", "path": "database/creds/app", "format": "env"},
}
BACKENDS = {"local": {"type": "file", "path": "secrets.json"},
            "gen": {"type": "dev", "ttl": "2s", "revoke_grace": "1s"}}


def file_values():
    return {"api": rand_token(32), "user": rand_token(32), "password": rand_token(32),
            "deep": rand_token(32), "blob": rand_token(32)}


def forms_of(v):
    """Every form a file-backend value takes: as served, and base64 as stored."""
    return set(v.values()) | {base64.b64encode(v["blob"].encode()).decode()}


def data_of(v):
    return {"api": v["api"], "db": {"username": v["user"], "password": v["password"]},
            "cfg": {"deep": {"k": v["deep"]}}, "b64": base64.b64encode(v["blob"].encode()).decode()}


def read_everything(d):
    """Reads every file (each opened and closed); returns the dev passwords."""
    for name in MEMORY_SECRETS:
        d.read_bytes(name)
    return {d.read("dyn/password"), parse_env_file(d.read("dyn.env"))["password"]}


def test_memory_scanner_finds_a_value_held_by_a_process(workdir):
    value = rand_token(32)
    p = workdir.popen([PYTHON, str(HELPERS_DIR / "holder.py")], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE)
    p.stdin.write(value.encode() + b"\n")
    p.stdin.flush()
    assert p.stdout.readline() == b"ready\n"
    hits, scanned = scan_memory(p.pid, [value.encode(), rand_token(32).encode()])
    p.stdin.close()
    assert value.encode() in hits, "the scanner must find a value the process holds"
    assert len(hits) == 1
    assert scanned > 1 << 20


@pytest.mark.fuse
@pytest.mark.parametrize("mount_type", ["fuse", "directory"])
def test_daemon_memory_holds_no_plaintext_secret_at_rest(sandbox, mount_type):
    # In a directory mount the files on disk are plaintext (the documented
    # trade-off); the process itself must still hold none.
    v1 = file_values()
    cfg = sandbox.config(MEMORY_SECRETS, backends=BACKENDS, mount={"type": mount_type})
    d = sandbox.start(config=cfg, data=data_of(v1))
    seen = forms_of(v1)
    dev1 = read_everything(d)
    seen |= dev1
    assert_no_plaintext(d.pid, seen, "after reading every file")
    # Control: the same scan does see what the daemon holds in the clear.
    hits, _ = scan_memory(d.pid, [sandbox.mount.encode()])
    assert hits, "the scanner should find the mount path in the daemon's memory"

    v2 = file_values()
    sandbox.write_data(data_of(v2))
    wait_until(lambda: d.read("api-key") == v2["api"], what="file backend rotation")
    wait_until(lambda: d.read("dyn/password") not in dev1, timeout=2 + TIMEOUT,
               what="dev backend rotation")
    seen |= forms_of(v2) | read_everything(d)
    assert_no_plaintext(d.pid, seen, "after a rotation")


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(ln.split(":\t", 1) for ln in f.read().splitlines() if ":\t" in ln)


@pytest.mark.fuse
@pytest.mark.parametrize("mount_type", ["fuse", "directory"])
def test_daemon_keeps_no_capability_after_mounting(sandbox, mount_type):
    # Started as root with every capability; once the mount is in place the
    # daemon holds none (the monitor keeps what unmounting and on_change
    # need), and it can never regain one.
    before = int(proc_status(os.getpid())["CapBnd"], 16)
    assert before & (1 << 12), "the test runs with CAP_NET_ADMIN in its bounding set"
    cfg = sandbox.config({"api-key": {"backend": "local", "path": "api"}},
                         backends={"local": {"type": "file", "path": "secrets.json"}},
                         mount={"type": mount_type})
    d = sandbox.start(config=cfg, data={"api": rand_token(16)})
    st = proc_status(d.pid)
    for key in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert int(st[key], 16) == 0, (key, st[key])
    assert st["NoNewPrivs"].strip() == "1"
    # Still serving, and it unmounts (or cleans up) at SIGTERM without one.
    assert d.read("api-key")
    assert d.stop() == 0
    with open("/proc/self/mountinfo") as f:
        assert f" {sandbox.mount} " not in f.read()
    assert not os.path.lexists(os.path.join(sandbox.mount, "..data"))


@pytest.mark.fuse
def test_open_handle_snapshot_is_wiped_on_release(sandbox):
    value = rand_token(32)
    d = sandbox.start({"a": {"backend": "local", "path": "a"}}, data={"a": value})
    fd = os.open(d.path("a"), os.O_RDONLY)
    try:
        assert os.read(fd, 100) == value.encode()
        hits, _ = scan_memory(d.pid, [value.encode()])
    finally:
        os.close(fd)
    if not hits:
        pytest.skip("no readable plaintext even while a handle is open: nothing to observe")
    assert_no_plaintext(d.pid, [value], "after the only handle was closed")


def secrets_used_in_log_test(sandbox, fmt):
    values = file_values()
    extra = rand_token(32)
    secrets = dict(MEMORY_SECRETS)
    secrets["app/token"] = {"backend": "local", "path": "api",
                            "on_change": {"command": ["/bin/true"], "debounce": "100ms"}}
    cfg = sandbox.config(secrets, backends=BACKENDS, log={"level": "debug", "format": fmt})
    d = sandbox.start(config=cfg, data=data_of(values))
    seen = forms_of(values) | {extra}
    dev1 = read_everything(d)
    seen |= dev1
    # A malformed edit whose parse error is right at a secret value: parser
    # messages like "expected '}' near '\"...\"'" must not reach the log.
    sandbox.write_data('{"api": "%s" "%s"}' % (values["api"], extra))
    d.wait_log("malformed")
    values2 = file_values()
    sandbox.write_data(data_of(values2))
    seen |= forms_of(values2)
    wait_until(lambda: d.read("api-key") == values2["api"], what="reload")
    wait_until(lambda: d.read("dyn/password") not in dev1, timeout=2 + TIMEOUT,
               what="dev rotation")
    seen |= read_everything(d)
    d.wait_log("revoked lease", timeout=1 + TIMEOUT)
    d.wait_log("on_change", timeout=TIMEOUT)
    assert d.stop() == 0
    return d, seen


@pytest.mark.fuse
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_never_contains_secret_values(sandbox, fmt):
    d, seen = secrets_used_in_log_test(sandbox, fmt)
    log = d.log_text()
    assert log.strip(), "expected debug log lines"
    leaked = [v for v in seen if v in log]
    assert not leaked, f"{len(leaked)} secret value(s) in the log: {leaked}"


@pytest.mark.fuse
def test_json_log_format_writes_one_json_object_per_line(sandbox):
    cfg = sandbox.config({"t": {"backend": "local", "path": "t"}},
                         log={"level": "debug", "format": "json"})
    d = sandbox.start(config=cfg, data={"t": "v"})
    sandbox.write_data({"t": "v2"})
    wait_until(lambda: d.read("t") == "v2", what="reload")
    assert d.stop() == 0
    lines = [ln for ln in d.log_text().splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        assert isinstance(json.loads(ln), dict), ln

