"""mount.fast_open: the kernel opens files without asking the daemon. The
consistency tests it shares with the default mode are in test_rotation,
test_files and test_permissions (run in both modes); here what is its own:
the config checks, the price --check states, and that opens really stop
reaching the daemon."""

import os
import signal

import pytest

from helpers.harness import errno_of, free_port, metric, rand_token, read_text, wait_until

SECRETS = {"token": {"backend": "local", "path": "t"}}


def check(workdir, **top):
    cfg = workdir.config(SECRETS, **top)
    return workdir.run(["--config", workdir.write_config(cfg), "--check"])


def test_check_states_the_price_of_fast_open(workdir):
    r = check(workdir, mount={"fast_open": True})
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout
    note = r.stdout.lower()
    assert "mount.fast_open" in note
    assert "no per-open audit" in note and "open counting" in note
    assert "page cache" in note
    # The default mode has no such note.
    r = check(workdir)
    assert r.returncode == 0 and "fast_open" not in r.stdout


def test_fast_open_with_an_audit_is_refused_naming_both_keys(workdir):
    r = check(workdir, mount={"fast_open": True},
              audit={"path": workdir.file("audit.jsonl")})
    assert r.returncode != 0
    assert "mount.fast_open" in r.stderr and '"audit"' in r.stderr, r.stderr


@pytest.mark.parametrize("mount, why", [
    ({"fast_open": "yes"}, "mount.fast_open"),
    ({"fast_open": True, "type": "directory"}, "mount.fast_open"),
])
def test_bad_fast_open_values_are_refused(workdir, mount, why):
    r = check(workdir, mount=mount)
    assert r.returncode != 0
    assert why in r.stderr, r.stderr


@pytest.mark.fuse
def test_opens_do_not_reach_the_daemon_and_rotation_is_seen_at_once(sandbox):
    listen = f"127.0.0.1:{free_port()}"
    old, new = rand_token(5000), rand_token(3000)
    d = sandbox.start(SECRETS, data={"t": old}, mount={"fast_open": True},
                      telemetry={"listen": listen})
    opens = lambda: metric(listen, "secretfs_fuse_request_duration_seconds_count", op="open")
    for _ in range(20):
        assert d.read("token") == old
    # The first OPEN is answered ENOSYS; the kernel sends no more.
    assert opens() <= 1
    assert metric(listen, "secretfs_fuse_request_duration_seconds_count", op="release") <= 1
    assert metric(listen, "secretfs_file_opens_total", file="token", result="ok") == 0

    fd = os.open(d.path("token"), os.O_RDONLY)
    try:
        sandbox.write_data({"t": new})
        wait_until(lambda: read_text(d.path("token")) == new, what="the new version")
        assert os.pread(fd, 10000, 0).decode() == old
        assert os.stat(d.path("token")).st_size == len(new)
    finally:
        os.close(fd)
    for _ in range(5):
        assert d.read("token") == new
    assert opens() <= 1


@pytest.mark.fuse
def test_listings_do_not_reach_the_daemon_and_follow_new_files(sandbox):
    listen = f"127.0.0.1:{free_port()}"
    d = sandbox.start({"dir/a": {"backend": "local", "path": "a"},
                       "dir/b": {"backend": "local", "path": "b"}},
                      data={"a": "one"}, startup_timeout="1s", mount={"fast_open": True},
                      telemetry={"listen": listen})
    count = lambda op: metric(listen, "secretfs_fuse_request_duration_seconds_count", op=op)
    assert os.listdir(d.path("dir")) == ["a"]
    filled = count("readdir")
    for _ in range(10):
        assert os.listdir(d.path("dir")) == ["a"]
    # The first OPENDIR is answered ENOSYS; the listing is cached.
    assert count("opendir") <= 1
    assert count("readdir") == filled
    sandbox.write_data({"a": "one", "b": "bee"})
    wait_until(lambda: sorted(os.listdir(d.path("dir"))) == ["a", "b"],
               what="the listing to show dir/b")
    assert read_text(d.path("dir/b")) == "bee"
    assert count("opendir") <= 1


@pytest.mark.fuse
def test_turning_fast_open_off_live_is_refused_and_the_running_config_stays(sandbox):
    d = sandbox.start(SECRETS, data={"t": "value"}, mount={"fast_open": True})
    new = sandbox.config({**SECRETS, "new": {"backend": "local", "path": "t"}})
    sandbox.write_config(new, d.config_path)
    d.send(signal.SIGHUP)
    d.wait_log(r"mount\.fast_open: cannot change while mounted.*keeping the running "
               r"configuration")
    assert errno_of(lambda: open(d.path("new"))) == "ENOENT"
    assert d.read("token") == "value"
