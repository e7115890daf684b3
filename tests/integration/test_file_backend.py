"""The file backend: live reload on change, resilience to bad edits."""

import os

import pytest

from helpers.harness import rand_token, read_text, wait_until

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
