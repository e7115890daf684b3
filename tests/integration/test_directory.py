"""The directory mount type: files written into a directory and swapped in
atomically through a "..data" symlink (Kubernetes' AtomicWriter layout), for
hosts where FUSE is not allowed; --once and --ready on it."""

import json
import os
import re
import signal
import stat
import subprocess
import time

import pytest

from helpers.harness import (HELPERS_DIR, MS_NODEV, MS_NOSUID, NOBODY, PYTHON, SLOW, TIMEOUT,
                             errno_of, mount_syscall, parse_env_file, rand_token, umount_detach,
                             wait_until)

GEN_RE = re.compile(r"\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d{9}")
DIRECTORY = {"type": "directory"}


def local(path, **kw):
    return {"backend": "local", "path": path, **kw}


def dev(field=None, **kw):
    return {"backend": "gen", "path": "database/creds/app",
            **({"field": field} if field else {}), **kw}


def dir_config(sb, secrets, backends=None, mount=None, **kw):
    return sb.config(secrets, backends=backends, mount={**DIRECTORY, **(mount or {})}, **kw)


def generations(mount):
    return sorted(n for n in os.listdir(mount) if GEN_RE.fullmatch(n))


def current_generation(mount):
    return os.readlink(os.path.join(mount, "..data"))


def our_entries(mount):
    """Everything in mount that secretfs makes: ..data, generations, links."""
    return sorted(n for n in os.listdir(mount)
                  if n.startswith("..") or os.path.islink(os.path.join(mount, n)))


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# ------------------------------------------------------------ files and layout

def test_files_appear_with_their_content(workdir):
    api, pw = "h\u00e9llo-" + rand_token(20), rand_token(32)
    d = workdir.start(config=dir_config(workdir, {
        "api-key": local("api"), "db/password": local("db", field="password"),
        "db/username": local("db", field="username")}),
        data={"api": api, "db": {"password": pw, "username": "app"}})
    assert d.read_bytes("api-key") == api.encode()
    assert d.read("db/password") == pw
    assert d.read("db/username") == "app"
    assert os.stat(d.path("api-key")).st_size == len(api.encode())
    assert d.alive()


def test_layout_is_a_data_link_to_one_generation_and_a_link_per_top_level_name(workdir):
    d = workdir.start(config=dir_config(workdir, {
        "api-key": local("api"), "db/password": local("db", field="password"),
        "a/b/c": local("api")}), data={"api": "k", "db": {"password": "p"}})
    mount = workdir.mount
    gen = current_generation(mount)
    assert GEN_RE.fullmatch(gen), gen
    assert sorted(os.listdir(mount)) == sorted(["..data", gen, "a", "api-key", "db"])
    for top in ("a", "api-key", "db"):
        assert os.readlink(os.path.join(mount, top)) == f"..data/{top}"
    g = os.path.join(mount, gen)
    assert stat.S_ISDIR(os.lstat(g).st_mode)
    assert sorted(os.listdir(g)) == ["a", "api-key", "db"]
    for rel in ("api-key", "db/password", "a/b/c"):
        assert stat.S_ISREG(os.lstat(os.path.join(g, rel)).st_mode), rel
    for rel in ("a", "a/b", "db"):
        assert stat.S_ISDIR(os.lstat(os.path.join(g, rel)).st_mode), rel
    assert d.read("a/b/c") == "k"


def test_default_modes_are_0400_for_files_and_0555_for_directories(workdir):
    d = workdir.start(config=dir_config(workdir, {"db/password": local("db", field="password")}),
                      data={"db": {"password": "p"}})
    gen = os.path.join(workdir.mount, current_generation(workdir.mount))
    assert mode_of(d.path("db/password")) == 0o400
    for p in (gen, os.path.join(gen, "db")):
        assert mode_of(p) == 0o555, p
    st = os.stat(d.path("db/password"))
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to other users")
def test_mount_and_per_file_mode_uid_gid_apply(workdir):
    d = workdir.start(config=dir_config(workdir, {
        "custom": local("v", mode="0444", uid=NOBODY, gid=NOBODY),
        "only-mode": local("v", mode="0440"),
        "sub/plain": local("v"),
    }, mount={"uid": 1000, "gid": 2000, "mode": "0440", "dir_mode": "0550"}),
        data={"v": "value"})
    got = {n: os.stat(d.path(n)) for n in ("custom", "only-mode", "sub/plain")}
    summary = {n: (s.st_uid, s.st_gid, oct(stat.S_IMODE(s.st_mode))) for n, s in got.items()}
    assert summary == {
        "custom": (NOBODY, NOBODY, "0o444"),
        "only-mode": (1000, 2000, "0o440"),
        "sub/plain": (1000, 2000, "0o440"),
    }
    for p in (d.path("sub"), os.path.join(workdir.mount, current_generation(workdir.mount))):
        st = os.stat(p)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 2000, 0o550), p


def test_secret_never_fetched_is_absent_until_it_appears(workdir):
    d = workdir.start(config=dir_config(workdir, {"present": local("present"),
                                                  "later": local("later")},
                                        startup_timeout="1s"),
                      data={"present": "here"})
    assert d.read("present") == "here"
    assert not os.path.lexists(d.path("later")), "no link to a file that is not there"
    assert "later" not in os.listdir(os.path.join(workdir.mount, "..data"))
    value = rand_token(32)
    workdir.write_data({"present": "here", "later": value})
    wait_until(lambda: d.read("later") == value, what="later to appear")
    assert os.readlink(d.path("later")) == "..data/later"


def test_an_update_makes_a_new_generation_and_removes_the_old_one(workdir):
    d = workdir.start(config=dir_config(workdir, {"a": local("a"), "b": local("b")}),
                      data={"a": "1", "b": "x"})
    g1 = current_generation(workdir.mount)
    workdir.write_data({"a": "2", "b": "x"})
    wait_until(lambda: d.read("a") == "2", what="the update")
    g2 = current_generation(workdir.mount)
    assert g2 != g1 and g2 > g1, (g1, g2)
    assert d.read("b") == "x", "every present file is in each generation"
    wait_until(lambda: generations(workdir.mount) == [g2], timeout=2 + TIMEOUT,
               what="the old generation to be removed")
    assert not os.path.lexists(os.path.join(workdir.mount, "..data_tmp"))


def test_on_change_runs_after_the_new_value_is_in_place(workdir):
    out = workdir.file("seen")
    script = workdir.file("hook.sh")
    with open(script, "w") as f:
        f.write(f'#!/bin/sh\ncat "$SECRETFS_MOUNT/a" > {out}\n')
    os.chmod(script, 0o755)
    d = workdir.start(config=dir_config(workdir, {
        "a": local("a", on_change={"command": [script], "debounce": "100ms"})}),
        data={"a": "old"})
    assert d.read("a") == "old"
    workdir.write_data({"a": "new"})
    wait_until(lambda: os.path.exists(out) and open(out).read() == "new",
               what="on_change to see the new value")


# ------------------------------------------------------------ atomicity

BIG_LEN = 200_000


def big_value(n):
    pad = BIG_LEN - 2 * 8 - 2
    return f"{n:08d}:{'x' * pad}:{n:08d}"


def test_readers_never_see_a_missing_partial_or_mixed_generation(workdir):
    """A reader process polls as fast as it can while the file backend is
    edited many times and the dev backend replaces its pair every ~0.9 s:
    every read through a name is a whole old or new value, and the files of
    one pair, read through one resolution of ..data, always match."""
    backends = {"local": {"type": "file", "path": "secrets.json"},
                "gen": {"type": "dev", "ttl": "1s", "revoke_grace": "1s"}}
    d = workdir.start(config=dir_config(workdir, {
        "big": local("big"),
        "db/username": dev("username"), "db/password": dev("password"),
        "db.env": dev(format="env")}, backends=backends), data={"big": big_value(0)})
    duration = 4.0 * SLOW
    reader = workdir.popen([PYTHON, str(HELPERS_DIR / "dir_reader.py"), workdir.mount,
                            str(duration), str(BIG_LEN)], stdout=subprocess.PIPE)
    n, end = 0, time.monotonic() + duration - 0.5
    while time.monotonic() < end:
        n += 1
        workdir.write_data({"big": big_value(n)})
        time.sleep(0.04)
    out, _ = reader.communicate(timeout=duration + TIMEOUT)
    r = json.loads(out)
    assert r["errors"] == [], r["errors"]
    assert r["path_reads"] > 100 and r["pair_reads"] > 100, r
    assert len(r["big_values"]) >= 10, f"too few rotations observed: {r['big_values']}"
    assert len(r["users"]) >= 2, f"no dev rotation observed: {r['users']}"
    wait_until(lambda: d.read("big") == big_value(n), what="the last edit")
    assert r["gone"] <= r["pair_reads"] // 100, r


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_a_failed_write_keeps_the_last_generation_and_is_retried(workdir):
    """On a full tmpfs the new generation cannot be written: readers keep
    the complete previous one, nothing half-written is left, and the source
    is read again (with backoff) until its content is written."""
    tmp = workdir.file("tmpfs")
    os.mkdir(tmp)
    mount_syscall("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "size=512k,mode=0755")
    workdir.cleanups.append(lambda: umount_detach(tmp))
    d = workdir.start(config=dir_config(workdir, {"a": local("a"), "b": local("b")},
                                        mount={"path": tmp}),
                      data={"a": "v1", "b": "x"}, mount_path=tmp)
    g1 = current_generation(tmp)
    with open(os.path.join(tmp, "filler"), "wb") as f:
        f.write(b"\0" * 400_000)
    big = rand_token(200_000)
    workdir.write_data({"a": big, "b": "x"})
    d.wait_log(r"cannot write a: No space left on device")
    assert d.read("a") == "v1" and current_generation(tmp) == g1
    wait_until(lambda: generations(tmp) == [g1], what="the unfinished generation to go")
    os.unlink(os.path.join(tmp, "filler"))
    wait_until(lambda: d.read("a") == big, timeout=2 * TIMEOUT, what="the retried write")
    assert d.read("b") == "x"
    assert d.stop() == 0
    assert re.search(r"write_failures=[1-9]", d.log_text()), d.log_text()
    assert os.listdir(tmp) == []


# ------------------------------------------------------------ foreign entries

def test_a_planted_symlink_under_a_file_name_refuses_the_start(workdir):
    target = workdir.file("outside")
    with open(target, "w") as f:
        f.write("ORIGINAL")
    before = os.stat(target)
    os.symlink(target, os.path.join(workdir.mount, "password"))
    d = workdir.start(config=dir_config(workdir, {"password": local("pw"),
                                                  "other": local("pw")}),
                      data={"pw": "s3cret"}, wait=False)
    assert d.proc.wait(TIMEOUT) == 5             # start-up failure
    log = d.log_text()
    assert re.search(r"password is a symbolic link that secretfs did not make", log), log
    with open(target) as f:
        assert f.read() == "ORIGINAL"
    after = os.stat(target)
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == \
        (before.st_mode, before.st_uid, before.st_mtime_ns)
    assert os.readlink(os.path.join(workdir.mount, "password")) == target
    assert sorted(os.listdir(workdir.mount)) == ["password"], "nothing else written"
    assert "s3cret" not in log


def test_a_planted_regular_file_under_a_file_name_refuses_the_start(workdir):
    with open(os.path.join(workdir.mount, "token"), "w") as f:
        f.write("mine")
    d = workdir.start(config=dir_config(workdir, {"token": local("t")}), data={"t": "v"},
                      wait=False)
    assert d.proc.wait(TIMEOUT) == 5             # start-up failure
    assert "token is a regular file that secretfs did not make" in d.log_text()
    with open(os.path.join(workdir.mount, "token")) as f:
        assert f.read() == "mine"


def test_a_link_planted_while_running_is_neither_followed_nor_replaced(workdir):
    target = workdir.file("outside")
    with open(target, "w") as f:
        f.write("ORIGINAL")
    d = workdir.start(config=dir_config(workdir, {"password": local("pw"),
                                                  "other": local("o")}),
                      data={"pw": "one", "o": "x"})
    link = d.path("password")
    os.unlink(link)
    os.symlink(target, link)
    workdir.write_data({"pw": "two", "o": "y"})
    wait_until(lambda: d.read("other") == "y", what="the next generation")
    d.wait_log(r"password is a symbolic link that secretfs did not make")
    assert os.readlink(link) == target
    with open(target) as f:
        assert f.read() == "ORIGINAL"
    assert open(os.path.join(workdir.mount, "..data", "password")).read() == "two"
    assert d.stop() == 0
    assert os.readlink(link) == target, "a link we did not make is not ours to remove"
    assert re.search(r"refused_entries=1\b", d.log_text()), d.log_text()


# ------------------------------------------------------------ start and stop

def test_leftovers_of_an_earlier_run_are_cleaned_and_others_kept(workdir):
    mount = workdir.mount
    old = "..2020_01_01_00_00_00.000000000"
    older = "..2019_01_01_00_00_00.000000000"
    for g in (old, older):
        os.makedirs(os.path.join(mount, g, "db"))
        with open(os.path.join(mount, g, "db", "password"), "w") as f:
            f.write("stale")
        os.chmod(os.path.join(mount, g, "db"), 0o555)
    os.symlink(old, os.path.join(mount, "..data"))
    os.symlink(older, os.path.join(mount, "..data_tmp"))
    os.symlink("..data/db", os.path.join(mount, "db"))
    os.symlink("..data/gone", os.path.join(mount, "gone"))     # a file no longer configured
    with open(os.path.join(mount, "unrelated"), "w") as f:
        f.write("keep me")
    d = workdir.start(config=dir_config(workdir, {"db/password": local("pw")}),
                      data={"pw": "fresh"})
    assert d.read("db/password") == "fresh"
    gen = current_generation(mount)
    wait_until(lambda: sorted(os.listdir(mount)) == sorted(["..data", gen, "db", "unrelated"]),
               timeout=2 + TIMEOUT, what="leftovers to be removed")
    with open(os.path.join(mount, "unrelated")) as f:
        assert f.read() == "keep me"


def test_files_of_a_killed_instance_stay_until_the_next_one_replaces_them(workdir):
    cfg = dir_config(workdir, {"a": local("a")})
    d1 = workdir.start(config=cfg, data={"a": "v1"})
    g1 = current_generation(workdir.mount)
    d1.kill()
    assert d1.read("a") == "v1", "files survive a crash (plaintext on disk: documented)"
    workdir.write_data({"a": "v2"})
    d2 = workdir.start(config=cfg)
    assert d2.read("a") == "v2"
    wait_until(lambda: g1 not in os.listdir(workdir.mount), timeout=2 + TIMEOUT,
               what="the killed instance's generation to go")
    assert d2.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_removes_the_files_and_exits_0(workdir, sig):
    d = workdir.start(config=dir_config(workdir, {"a": local("a"), "db/p": local("a")}),
                      data={"a": "v"})
    with open(os.path.join(workdir.mount, "unrelated"), "w") as f:
        f.write("x")
    assert d.read("a") == "v"
    assert d.stop(sig) == 0
    assert os.listdir(workdir.mount) == ["unrelated"]
    assert "files removed" in d.log_text()


def test_keep_on_exit_leaves_the_files_in_place(workdir):
    d = workdir.start(config=dir_config(workdir, {"a": local("a"), "db/p": local("a")},
                                        mount={"keep_on_exit": True}),
                      data={"a": "v"})
    gen = current_generation(workdir.mount)
    assert d.stop() == 0
    assert sorted(os.listdir(workdir.mount)) == sorted(["..data", gen, "a", "db"])
    assert d.read("a") == "v" and d.read("db/p") == "v"


# ------------------------------------------------------------ --once

def run_once(sb, cfg, timeout=None):
    sb.write_config(cfg)
    return sb.run(["--config", sb.config_path, "--once"], timeout=timeout)


def test_once_writes_every_file_and_exits_0(workdir):
    workdir.write_data({"a": "va", "db": {"password": "pw"}})
    backends = {"local": {"type": "file", "path": "secrets.json"},
                "gen": {"type": "dev", "ttl": "1h"}}
    r = run_once(workdir, dir_config(workdir, {
        "a": local("a"), "db/password": local("db", field="password"),
        "dyn.env": dev(format="env")}, backends=backends))
    assert r.returncode == 0, r.stderr
    mount = workdir.mount
    assert open(os.path.join(mount, "a")).read() == "va"
    assert open(os.path.join(mount, "db/password")).read() == "pw"
    assert set(parse_env_file(open(os.path.join(mount, "dyn.env")).read())) == \
        {"username", "password"}
    assert generations(mount) == [current_generation(mount)]
    assert not [ln for ln in r.stderr.splitlines() if "not written" in ln]


def test_once_replaces_an_earlier_generation_and_leaves_one(workdir):
    cfg = dir_config(workdir, {"a": local("a")})
    workdir.write_data({"a": "1"})
    assert run_once(workdir, cfg).returncode == 0
    workdir.write_data({"a": "2"})
    assert run_once(workdir, cfg).returncode == 0
    assert open(os.path.join(workdir.mount, "a")).read() == "2"
    assert len(generations(workdir.mount)) == 1


def test_once_with_a_failing_secret_writes_the_others_and_exits_3(workdir):
    workdir.write_data({"a": "va", "db": {"username": "u"}})
    r = run_once(workdir, dir_config(workdir, {
        "a": local("a"),
        "missing-key": local("nope"),
        "db/password": local("db", field="password"),
        "db/username": local("db", field="username")}, startup_timeout="30s"),
        timeout=TIMEOUT)
    assert r.returncode == 3, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if "not written" in ln]
    assert len(lines) == 2, r.stderr
    assert any(ln.startswith("secretfs: missing-key: not written: ") and "not found" in ln
               for ln in lines), lines
    assert any(ln.startswith("secretfs: db/password: not written: ") for ln in lines), lines
    assert open(os.path.join(workdir.mount, "a")).read() == "va"
    assert open(os.path.join(workdir.mount, "db/username")).read() == "u"
    assert not os.path.lexists(os.path.join(workdir.mount, "missing-key"))


def test_once_that_writes_nothing_exits_4(workdir):
    workdir.write_data({"a": "va"})
    r = run_once(workdir, dir_config(workdir, {"x": local("nope"), "y": local("gone")}),
                 timeout=TIMEOUT)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert len([ln for ln in r.stderr.splitlines() if "not written" in ln]) == 2, r.stderr
    assert not os.path.lexists(os.path.join(workdir.mount, "x"))


def test_once_counts_files_written_not_sources_read(workdir):
    # The source is read ("ready") but its only file cannot be rendered.
    workdir.write_data({"a": {"user": "u"}})
    r = run_once(workdir, dir_config(workdir, {
        "app.conf": local("a", format="template", template="pw={{ password }}\n")}),
        timeout=TIMEOUT)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert re.search(r"info  wrote \S+: 0 of 1 files from 1 sources \(1 ready\)", r.stderr), \
        r.stderr
    assert "secretfs: app.conf: not written: template key \"password\" not found" in r.stderr


def test_once_that_wrote_some_logs_how_many(workdir):
    workdir.write_data({"a": "va"})
    r = run_once(workdir, dir_config(workdir, {"a": local("a"), "b": local("nope")}),
                 timeout=TIMEOUT)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert re.search(r"info  wrote \S+: 1 of 2 files from 2 sources \(1 ready\)", r.stderr), \
        r.stderr


@pytest.mark.fuse
@pytest.mark.parametrize("revoke", [True, False], ids=["revoke_on_shutdown", "default"])
def test_once_leaves_leases_alive_unless_revoke_on_shutdown(sandbox, vault, vault_pki, revoke):
    from helpers.vault import backend, clean_env, leases_of, token_auth
    vault.add_dynamic_role("database", "app", default_ttl=3600, max_ttl=7200)
    _, auth = token_auth(sandbox, vault)
    be = backend(vault, vault_pki, auth, **({"revoke_on_shutdown": True} if revoke else {}))
    gen = {"backend": "vault", "path": "database/creds/app"}
    sandbox.write_config(dir_config(sandbox, {"db/username": {**gen, "field": "username"},
                                              "db/password": {**gen, "field": "password"}},
                                    backends={"vault": be}))
    r = sandbox.run(["--config", sandbox.config_path, "--once"], env=clean_env())
    assert r.returncode == 0, r.stderr
    (lease,) = leases_of(vault, "database", "app")
    assert open(os.path.join(sandbox.mount, "db/password")).read(), "written"
    if revoke:
        assert lease.revoked, "revoke_on_shutdown revokes what --once fetched"
    else:
        assert lease.live, "the credentials written must stay valid"


def test_once_needs_a_directory_mount(workdir):
    workdir.write_data({"a": "v"})
    workdir.write_config(workdir.config({"a": local("a")}))
    r = workdir.run(["--config", workdir.config_path, "--once"])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--once needs a directory mount" in r.stderr
    assert os.listdir(workdir.mount) == []


# ------------------------------------------------------------ --ready

def ready(sb):
    return sb.run(["--config", sb.config_path, "--ready"])


def test_ready_fails_before_the_first_fetch_and_passes_after(workdir):
    cfg = dir_config(workdir, {"a": local("a"), "db/b": local("b")}, startup_timeout="60s")
    d = workdir.start(config=cfg, wait=False)       # secrets.json does not exist yet
    d.wait_log(r"source local:a: read failed")
    r = ready(workdir)
    assert r.returncode == 6, r.stdout
    assert "not ready" in r.stdout and "nothing written yet" in r.stdout, r.stdout
    assert not os.path.lexists(os.path.join(workdir.mount, "..data"))
    workdir.write_data({"a": "va", "b": "vb"})
    wait_until(lambda: ready(workdir).returncode == 0, what="--ready to pass")
    assert ready(workdir).stdout.startswith("ready: 2 files")
    assert d.read("db/b") == "vb"


def test_ready_names_each_missing_file(workdir):
    d = workdir.start(config=dir_config(workdir, {"a": local("a"), "late/b": local("b")},
                                        startup_timeout="500ms"), data={"a": "va"})
    r = ready(workdir)
    assert r.returncode == 6
    assert r.stdout.splitlines() == ["not ready: late/b: missing"], r.stdout
    workdir.write_data({"a": "va", "b": "vb"})
    wait_until(lambda: ready(workdir).returncode == 0, what="--ready to pass")
    assert d.alive()


def test_ready_does_not_follow_or_accept_a_foreign_link(workdir):
    d = workdir.start(config=dir_config(workdir, {"a": local("a")}), data={"a": "va"})
    assert ready(workdir).returncode == 0
    target = workdir.file("fake")
    with open(target, "w") as f:
        f.write("fake")
    os.unlink(d.path("a"))
    os.symlink(target, d.path("a"))
    r = ready(workdir)
    assert r.returncode == 6 and "a: its top-level entry was not made by secretfs" in r.stdout, \
        r.stdout


def test_ready_touches_nothing_when_the_directory_is_missing(workdir):
    missing = workdir.file("nowhere")
    workdir.write_config(dir_config(workdir, {"a": local("a")}, mount={"path": missing}))
    r = ready(workdir)
    assert r.returncode == 6 and "not ready" in r.stdout
    assert not os.path.exists(missing)
    assert errno_of(lambda: os.lstat(missing)) == "ENOENT"
