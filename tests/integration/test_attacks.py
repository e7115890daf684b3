"""Attacks on the daemon, as an outsider would try them (issue 15, item 7).

Hostile configs (deep nesting, invalid UTF-8, NUL bytes, huge files, absurd
durations), hostile backend answers (huge and endless bodies, NUL bytes and
invalid UTF-8 inside values, negative and huge lease durations, a huge
Retry-After, a redirect to another host), FUSE abuse (mmap, writes,
truncation, many concurrent readers during rotations) and a full tmpfs
under a directory mount. Each test states the outcome it pins: refused
with a reason, last good value kept, nothing followed, nothing torn.
Symlinks planted in a directory mount are covered in test_directory.py.
"""

import errno
import mmap
import os
import re
import subprocess
import threading
import time

import pytest

from helpers.harness import (SLOW, call_with_timeout, errno_of, holds_for, rand_token,
                             wait_until)
from helpers.vault import backend, last_seq, reqs, start, token_auth

CFG = "secret/app/config"


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


# ====================================================================== configs

def _cfg_text(secrets_json, mount="/tmp/secretfs-attack"):
    return ('{"mount": {"path": "%s"}, "backends": {"l": {"type": "file", '
            '"path": "/tmp/secretfs-attack.json"}}, "secrets": %s}' % (mount, secrets_json))


HOSTILE_CONFIGS = {
    "deep nesting": ('{"mount": {"path": "/tmp/x"}, "secrets": ' + "[" * 200000 + "]" * 200000
                     + "}", r"maximum parsing depth"),
    "invalid UTF-8": (_cfg_text('{"a\xff\xfe": {"backend": "l", "path": "x"}}'),
                      r"unable to decode byte 0xff"),
    "NUL escape in a key": (_cfg_text('{"a\\u0000b": {"backend": "l", "path": "x"}}'),
                            r"NUL byte in object key not supported"),
    "NUL escape in a value": (_cfg_text('{"a": {"backend": "l", "path": "x\\u0000y"}}'),
                              r"line 1, column \d+"),
    "raw NUL byte": (_cfg_text('{"a": {"backend": "l", "path": "x"}}\x00{}'),
                     r"line 1, column \d+"),
    "huge file": (" " * (64 << 20) + "{}", r"larger than 16 MiB"),
    "duration beyond ten years": (_cfg_text(
        '{"a": {"backend": "l", "path": "x", "refresh": "99999999999h"}}'),
        r"secrets\.a\.refresh: .*too large \(the limit is 10 years\)"),
    "negative duration": (_cfg_text('{"a": {"backend": "l", "path": "x", "refresh": "-1s"}}'),
                          r"secrets\.a\.refresh: .*must not be negative"),
    "number overflowing a double": (_cfg_text(
        '{"a": {"backend": "l", "path": "x", "refresh": 1e400}}'), r"real number overflow"),
    "huge number of seconds": (_cfg_text(
        '{"a": {"backend": "l", "path": "x", "refresh": 1e300}}'),
        r"secrets\.a\.refresh: .*too large"),
    "mode beyond 07777": (_cfg_text('{"a": {"backend": "l", "path": "x", "mode": "0177777"}}'),
                          r"secrets\.a\.mode: "),
    "path escaping the mount": (_cfg_text('{"../../etc/x": {"backend": "l", "path": "x"}}'),
                                r"secrets\.\.\./\.\./etc/x|\.\."),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_CONFIGS))
def test_a_hostile_config_is_refused_with_its_reason(workdir, name):
    text, why = HOSTILE_CONFIGS[name]
    path = workdir.file("config.json")
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)
    if "\xff" in text:   # the bytes themselves, not their UTF-8 encoding
        with open(path, "wb") as f:
            f.write(text.encode("latin-1"))
    r = workdir.run(["--check", "--config", path], timeout=20 * SLOW)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert re.search(why, r.stderr), r.stderr
    assert "configuration OK" not in r.stdout


# ============================================================= backend answers

def start_kv(sandbox, vault, pki, value, refresh="1s", **be_kw):
    vault.kv_put(CFG, {"api_key": value})
    _, auth = token_auth(sandbox, vault, token="hvs." + rand_token(40))
    d = start(sandbox, {"api": {"backend": "vault", "path": CFG, "field": "api_key",
                                "refresh": refresh}},
              backend(vault, pki, auth, **be_kw))
    assert d.read("api") == value
    return d


@pytest.mark.fuse
@pytest.mark.parametrize("kind", ["100 MB with a length", "endless"])
def test_a_huge_or_endless_reply_is_cut_at_its_bound(sandbox, vault, vault_pki, kind):
    v1 = rand_token(24)
    d = start_kv(sandbox, vault, vault_pki, v1, timeout="20s")
    hwm_before = vm_hwm_kib(d.pid)
    if kind == "endless":
        vault.add_fault("secret/data", "flood", times=None)
    else:
        body = b'{"data": {"data": {"api_key": "' + b"x" * (100 << 20) + b'"}}}'
        vault.fault_status("secret/data", 200, body=body, times=None)
    vault.kv_put(CFG, {"api_key": rand_token(24)})     # a new version: a data read
    d.wait_log(r"source vault:secret/app/config: .*failed.*(4 MiB|too large|larger)"
               r".*serving the last good value", timeout=20 * SLOW)
    assert call_with_timeout(lambda: d.read("api"), timeout=2) == v1
    # Nothing past the bound was kept: the peak grew by far less than the body.
    grown = vm_hwm_kib(d.pid) - hwm_before
    assert grown < 24 * 1024, f"peak RSS grew by {grown} KiB"
    vault.clear_faults()
    v3 = rand_token(24)
    vault.kv_put(CFG, {"api_key": v3})
    wait_until(lambda: d.read("api") == v3, timeout=30 * SLOW, what="recovery")
    assert d.alive()


@pytest.mark.fuse
def test_nul_bytes_and_any_bytes_inside_a_value_are_served_as_they_are(
        sandbox, vault, vault_pki):
    v1 = rand_token(24)
    d = start_kv(sandbox, vault, vault_pki, v1)
    hostile = "a\x00b\u00ff\u2603\ufffd\x7f\x01z"
    vault.kv_put(CFG, {"api_key": hostile})
    want = hostile.encode("utf-8")
    wait_until(lambda: d.read_bytes("api") == want, timeout=10 * SLOW,
               what="the value with a NUL inside, byte for byte")
    assert os.stat(d.path("api")).st_size == len(want)


@pytest.mark.fuse
def test_a_nul_inside_a_file_backend_value_is_served_as_it_is(sandbox):
    d = sandbox.start({"s": {"backend": "local", "path": "s"}}, data={"s": "a\x00b"})
    assert d.read_bytes("s") == b"a\x00b"


@pytest.mark.fuse
def test_invalid_utf8_in_a_reply_keeps_the_last_good_value(sandbox, vault, vault_pki):
    v1 = rand_token(24)
    d = start_kv(sandbox, vault, vault_pki, v1)
    body = b'{"data": {"data": {"api_key": "\xff\xfe\xc3("}, "metadata": {"version": 9}}}'
    vault.fault_status("secret/data", 200, body=body, times=None)
    vault.kv_put(CFG, {"api_key": rand_token(24)})
    d.wait_log(r"source vault:secret/app/config: .*failed.*serving the last good value",
               timeout=10 * SLOW)
    assert call_with_timeout(lambda: d.read("api"), timeout=2) == v1
    assert "\\xff" not in d.log_text() and "\xff" not in d.log_text()


def _dyn(sandbox, vault, pki, **role_kw):
    vault.add_dynamic_role("database", "app", **role_kw)
    _, auth = token_auth(sandbox, vault)
    return start(sandbox, {"db/user": {"backend": "vault", "path": "database/creds/app",
                                       "field": "username"}},
                 backend(vault, pki, auth), wait=False)


def _lease_reply(duration):
    return {"request_id": "1", "lease_id": "database/creds/app/abc", "renewable": True,
            "lease_duration": duration, "data": {"username": "u-" + rand_token(8),
                                                  "password": rand_token(20)},
            "wrap_info": None, "warnings": None, "auth": None}


@pytest.mark.fuse
def test_a_negative_lease_duration_is_refused(sandbox, vault, vault_pki):
    vault.fault_status("database/creds/app", 200, body=_lease_reply(-5), times=1)
    d = _dyn(sandbox, vault, vault_pki, default_ttl=3600)
    d.wait_log(r"source vault:database/creds/app: .*failed.*lease_duration", timeout=10 * SLOW)
    # The retry gets a proper lease, and it is the one served.
    d.wait_mounted()
    wait_until(lambda: d.read("db/user").startswith("v-"), timeout=20 * SLOW,
               what="the next, well-formed lease served")
    assert "u-" not in d.read("db/user")


@pytest.mark.fuse
def test_a_huge_lease_duration_is_capped_and_does_not_spin(sandbox, vault, vault_pki):
    vault.fault_status("database/creds/app", 200, body=_lease_reply(10 ** 15), times=1)
    d = _dyn(sandbox, vault, vault_pki, default_ttl=3600)
    d.wait_mounted()
    assert d.read("db/user").startswith("u-")
    mark = last_seq(vault)
    # A lease "for ever" is renewed at its capped time, not in a loop.
    holds_for(lambda: len(reqs(vault, since=mark)) <= 3 and d.read("db/user"), 3,
              what="at most 3 requests in 3 s")
    assert d.alive()


@pytest.mark.fuse
def test_a_huge_retry_after_is_honoured_only_up_to_its_bound(sandbox, vault, vault_pki):
    v1 = rand_token(24)
    d = start_kv(sandbox, vault, vault_pki, v1)
    vault.fault_rate_limit("secret/", retry_after=86000, times=1)
    vault.kv_put(CFG, {"api_key": rand_token(24)})
    d.wait_log(r"source vault:secret/app/config: .*HTTP 429.*retrying in (\d+) ms",
               timeout=10 * SLOW)
    delays = [int(m) for m in re.findall(r"HTTP 429.*retrying in (\d+) ms", d.log_text())]
    assert delays and max(delays) <= 5 * 60 * 1000, delays
    assert d.read("api") == v1


@pytest.mark.fuse
def test_a_redirect_to_another_host_is_not_followed(sandbox, make_vault, vault_pki):
    vault, other = make_vault(), make_vault()
    v1 = rand_token(24)
    other.kv_put(CFG, {"api_key": "from-the-other-host"})
    d = start_kv(sandbox, vault, vault_pki, v1)
    vault.fault_status("secret/", 307, body=b"", times=None,
                       headers={"Location": other.url + "/v1/" + CFG})
    vault.kv_put(CFG, {"api_key": rand_token(24)})
    d.wait_log(r"source vault:secret/app/config: .*failed.*307.*serving the last good value",
               timeout=10 * SLOW)
    assert d.read("api") == v1
    assert other.find_requests() == [], "the token went to the other host"


# ==================================================================== FUSE abuse

@pytest.mark.fuse
def test_mmap_reads_the_content_and_cannot_write(daemon):
    p = daemon.path("db/password")
    want = daemon.expected["db/password"].encode()
    fd = os.open(p, os.O_RDONLY)
    try:
        with mmap.mmap(fd, 0, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED) as m:
            assert m[:] == want
        with mmap.mmap(fd, 0, prot=mmap.PROT_READ | mmap.PROT_WRITE,
                       flags=mmap.MAP_PRIVATE) as m:
            m[0:1] = b"!"                     # a private copy: the file keeps its bytes
        with pytest.raises(OSError) as e:
            mmap.mmap(fd, 0, prot=mmap.PROT_READ | mmap.PROT_WRITE, flags=mmap.MAP_SHARED)
        assert e.value.errno in (errno.EACCES, errno.EPERM)
    finally:
        os.close(fd)
    assert daemon.read_bytes("db/password") == want
    for flags in (os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_TRUNC | os.O_CREAT):
        assert errno_of(lambda: os.close(os.open(p, flags))) in ("EROFS", "EACCES", "EPERM")
    assert errno_of(lambda: os.truncate(p, 0)) in ("EROFS", "EACCES", "EPERM")
    assert daemon.read_bytes("db/password") == want


@pytest.mark.fuse
def test_many_concurrent_readers_during_rotations_never_see_a_torn_value(sandbox):
    def value(n):
        return f"v{n:06d}-" + ("%06d" % n) * 100      # 608 bytes, self-describing

    d = sandbox.start({"s": {"backend": "local", "path": "s"}}, data={"s": value(0)})
    stop = threading.Event()
    bad, reads = [], [0]
    lock = threading.Lock()

    def reader():
        n = 0
        while not stop.is_set():
            try:
                with open(d.path("s"), "rb") as f:
                    got = f.read().decode()
            except OSError as e:
                with lock:
                    bad.append(repr(e))
                continue
            k = int(got[1:7]) if len(got) == 608 and got[0] == "v" else -1
            if k < 0 or got != value(k):
                with lock:
                    bad.append(got[:40])
            n += 1
        with lock:
            reads[0] += n

    threads = [threading.Thread(target=reader) for _ in range(64)]
    for t in threads:
        t.start()
    held = [os.open(d.path("s"), os.O_RDONLY) for _ in range(500)]
    try:
        for n in range(1, 31):
            sandbox.write_data({"s": value(n)})
            wait_until(lambda: d.read("s") == value(n), timeout=10 * SLOW,
                       what=f"rotation {n}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    try:
        # Handles opened at the start still read the first version, whole.
        for fd in held[:50]:
            assert os.pread(fd, 1000, 0).decode() == value(0)
    finally:
        for fd in held:
            os.close(fd)
    assert not bad, bad[:5]
    assert reads[0] > 1000
    assert d.alive()


# ======================================================== directory, full tmpfs

@pytest.mark.fuse
def test_a_full_tmpfs_under_a_directory_mount_keeps_the_last_whole_files(workdir):
    mnt = workdir.file("small")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", mnt],
                   check=True)
    d = None
    try:
        cfg = workdir.config({"a": {"backend": "local", "path": "a"},
                              "b": {"backend": "local", "path": "b"}},
                             mount={"type": "directory", "path": mnt})
        d = workdir.start(config=cfg, data={"a": "first-a", "b": "first-b"})
        assert d.read("a") == "first-a"
        workdir.write_data({"a": "x" * (200 << 10), "b": "second-b"})
        d.wait_log(r"cannot write a: No space left on device", timeout=10 * SLOW)
        # Nothing half-written: a keeps its last whole value; b, which
        # fits, moves on alone.
        wait_until(lambda: d.read("b") == "second-b", timeout=10 * SLOW, what="b updated")
        assert d.read("a") == "first-a"
        # The failed writes' leftovers do not hold the space.
        workdir.write_data({"a": "third-a", "b": "third-b"})
        wait_until(lambda: d.read("a") == "third-a" and d.read("b") == "third-b",
                   timeout=15 * SLOW, what="the next values once they fit")
        assert d.stop() == 0
    finally:
        if d is not None and d.alive():
            d.kill()
        subprocess.run(["umount", "-l", mnt])
