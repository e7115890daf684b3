"""The file backend: live reload on change, resilience to bad edits."""

import os

import pytest

from helpers.harness import holds_for, rand_token, read_text, wait_until

pytestmark = pytest.mark.fuse

SECRETS = {"app/token": {"backend": "local", "path": "token"},
           "db/password": {"backend": "local", "path": "db", "field": "password"}}


def assert_stays_new(d, name, value, opens=30):
    """Once an open has seen the new value, every later open and stat does."""
    for _ in range(opens):
        assert d.read(name) == value
        assert os.stat(d.path(name)).st_size == len(value.encode())


def test_atomic_rename_of_secrets_file_is_picked_up(sandbox):
    old, new = rand_token(32), rand_token(40)
    d = sandbox.start(SECRETS, data={"token": old, "db": {"password": "p1"}})
    assert d.read("app/token") == old
    sandbox.write_data({"token": new, "db": {"password": "p2"}}, atomic=True)
    wait_until(lambda: d.read("app/token") == new, what="new token after rename")
    assert_stays_new(d, "app/token", new)
    wait_until(lambda: d.read("db/password") == "p2", what="new password after rename")


def test_in_place_rewrite_of_secrets_file_is_picked_up(sandbox):
    old, new = rand_token(32), rand_token(24)
    d = sandbox.start(SECRETS, data={"token": old, "db": {"password": "p1"}})
    ino = os.stat(sandbox.data_path).st_ino
    sandbox.write_data({"token": new, "db": {"password": "p2"}}, atomic=False)
    assert os.stat(sandbox.data_path).st_ino == ino
    wait_until(lambda: d.read("app/token") == new, what="new token after in-place write")
    assert_stays_new(d, "app/token", new)


def test_reload_keeps_watching_after_several_renames(sandbox):
    d = sandbox.start(SECRETS, data={"token": "v0", "db": {"password": "p"}})
    for i in range(1, 4):
        value = f"v{i}-{rand_token(8)}"
        sandbox.write_data({"token": value, "db": {"password": "p"}}, atomic=(i % 2 == 1))
        wait_until(lambda v=value: d.read("app/token") == v, what=f"edit {i}")


def test_malformed_edit_keeps_last_good_values_and_is_logged(sandbox):
    good = rand_token(32)
    d = sandbox.start(SECRETS, data={"token": good, "db": {"password": "p1"}})
    sandbox.write_data('{"token": "half-written', atomic=True)
    d.wait_log(r"malformed")
    assert d.read("app/token") == good
    assert d.read("db/password") == "p1"
    # The watch survives: the next good edit is served.
    fixed = rand_token(32)
    sandbox.write_data({"token": fixed, "db": {"password": "p1"}})
    wait_until(lambda: d.read("app/token") == fixed, what="value after the file is fixed")


def test_key_removed_from_file_keeps_last_good_value(sandbox):
    d = sandbox.start(SECRETS, data={"token": "t1", "db": {"password": "p1"}})
    sandbox.write_data({"token": "t2"})          # "db" is gone
    wait_until(lambda: d.read("app/token") == "t2", what="the edit to be applied")
    assert d.read("db/password") == "p1"
    assert "password" in os.listdir(d.path("db"))


def test_secrets_file_path_is_relative_to_the_config_directory(sandbox):
    sub = sandbox.file("conf")
    os.mkdir(sub)
    sandbox.write_data({"token": "from-conf-dir"}, path=os.path.join(sub, "dev.json"))
    cfg = sandbox.config({"t": {"backend": "local", "path": "token"}},
                         backends={"local": {"type": "file", "path": "dev.json"}})
    d = sandbox.start(config=cfg, config_path=os.path.join(sub, "config.json"))
    assert read_text(d.path("t")) == "from-conf-dir"


def test_deleted_secrets_file_keeps_values_and_its_recreation_is_picked_up(sandbox):
    d = sandbox.start(SECRETS, data={"token": "t1", "db": {"password": "p1"}})
    os.unlink(sandbox.data_path)
    assert d.read("app/token") == "t1"
    sandbox.write_data({"token": "t2", "db": {"password": "p1"}})
    wait_until(lambda: d.read("app/token") == "t2", what="the recreated file to be read")
    assert d.read("db/password") == "p1"
    assert d.alive()


class _OpenWatch:
    """Counts opens of one file with inotify (IN_OPEN), through libc."""

    IN_OPEN = 0x20

    def __init__(self, path):
        import ctypes
        import ctypes.util
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        wd = self._libc.inotify_add_watch(self.fd, path.encode(), self.IN_OPEN)
        assert wd >= 0, os.strerror(ctypes.get_errno())

    def opens(self):
        n = 0
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return n
            off = 0
            while off < len(buf):
                length = int.from_bytes(buf[off + 12:off + 16], "little")
                n += 1
                off += 16 + length

    def close(self):
        os.close(self.fd)


def test_idle_refreshes_stat_the_file_without_reading_it(sandbox):
    """Each refresh is a stat(2) probe: an idle daemon does not open, read or
    parse the secrets file again (it did once per due source)."""
    secrets = {f"s{i}": {"backend": "local", "path": f"k{i}", "refresh": "200ms"}
               for i in range(20)}
    data = {f"k{i}": rand_token(16) for i in range(20)}
    d = sandbox.start(secrets, data=data)
    watch = _OpenWatch(sandbox.data_path)
    try:
        # 20 sources at 200 ms for 2 s: ~200 refreshes, each an open before.
        opened = []
        holds_for(lambda: not opened.append(watch.opens()) and sum(opened) == 0, 2,
                  what="no open of the secrets file while idle")
        assert d.read("s0") == data["k0"]
        # A change is still seen (inotify, and the probe behind it).
        sandbox.write_data({**data, "k0": "changed"}, atomic=True)
        wait_until(lambda: d.read("s0") == "changed", what="the edit")
        assert watch.opens() >= 1
    finally:
        watch.close()
