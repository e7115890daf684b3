"""The files in the mount: content, size, modes, owners, layout, read-only;
in both open modes, the default and mount.fast_open."""

import os
import stat

import pytest

from helpers.harness import NOBODY, errno_of, in_open_mode, rand_token, wait_until

pytestmark = pytest.mark.fuse


@pytest.fixture
def sandbox(sandbox, open_mode):
    return in_open_mode(sandbox, open_mode)


def local(path, **kw):
    return {"backend": "local", "path": path, **kw}


def test_file_content_and_st_size_are_exact(sandbox):
    api = "h\u00e9llo-" + rand_token(20)          # multi-byte UTF-8: size counts bytes
    pw = rand_token(32)
    d = sandbox.start({"api-key": local("api"), "db/password": local("db", field="password")},
                      data={"api": api, "db": {"password": pw, "username": "app"}})
    assert d.read_bytes("api-key") == api.encode()
    assert os.stat(d.path("api-key")).st_size == len(api.encode())
    assert d.read_bytes("db/password") == pw.encode()
    assert os.stat(d.path("db/password")).st_size == len(pw)


def test_large_file_is_read_completely(sandbox):
    big = rand_token(300_000)                    # several FUSE read requests
    d = sandbox.start({"big": local("big")}, data={"big": big})
    assert os.stat(d.path("big")).st_size == len(big)
    assert d.read("big") == big
    with open(d.path("big"), "rb") as f:
        f.seek(123_457)
        assert f.read(1000) == big[123_457:124_457].encode()


def test_default_modes_are_0400_for_files_and_0555_for_directories(daemon):
    f = os.stat(daemon.path("db/password"))
    assert stat.S_ISREG(f.st_mode) and stat.S_IMODE(f.st_mode) == 0o400, oct(f.st_mode)
    for dirpath in (daemon.path("db"), daemon.mount):
        st = os.stat(dirpath)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o555, \
            (dirpath, oct(st.st_mode))


def test_default_owner_is_the_daemons_euid_and_egid(daemon):
    for p in (daemon.path("db/password"), daemon.path("api-key"), daemon.path("db")):
        st = os.stat(p)
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()), p


def test_mount_uid_gid_mode_and_dir_mode_apply_to_all_entries(sandbox):
    d = sandbox.start({"a/b/secret": local("api"), "top": local("api")},
                      data={"api": "v"},
                      mount={"uid": 1234, "gid": 2345, "mode": "0440", "dir_mode": "0550"})
    for p in (d.path("a/b/secret"), d.path("top")):
        st = os.stat(p)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o440), p
    for p in (d.path("a"), d.path("a/b")):
        st = os.stat(p)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o550), p


def test_per_file_mode_uid_gid_override_mount_defaults(sandbox):
    d = sandbox.start({
        "custom": local("api", mode="0444", uid=NOBODY, gid=NOBODY),
        "only-mode": local("api", mode="0440"),
        "plain": local("api"),
    }, data={"api": "v"}, mount={"uid": 1000, "gid": 1000})
    got = {n: os.stat(d.path(n)) for n in ("custom", "only-mode", "plain")}
    summary = {n: (s.st_uid, s.st_gid, oct(stat.S_IMODE(s.st_mode))) for n, s in got.items()}
    assert summary == {
        "custom": (NOBODY, NOBODY, "0o444"),
        "only-mode": (1000, 1000, "0o440"),
        "plain": (1000, 1000, "0o400"),
    }


def test_nested_names_imply_directories_listed_by_readdir(sandbox):
    d = sandbox.start({
        "a/b/c/deep": local("v"),
        "a/b/other": local("v"),
        "a/top": local("v"),
        "root-file": local("v"),
    }, data={"v": "value"})
    assert sorted(os.listdir(d.mount)) == ["a", "root-file"]
    assert sorted(os.listdir(d.path("a"))) == ["b", "top"]
    assert sorted(os.listdir(d.path("a/b"))) == ["c", "other"]
    assert os.listdir(d.path("a/b/c")) == ["deep"]
    kinds = {e.name: (e.is_dir(), e.is_file()) for e in os.scandir(d.path("a"))}
    assert kinds == {"b": (True, False), "top": (False, True)}
    assert d.read("a/b/c/deep") == "value"
    assert errno_of(lambda: os.stat(d.path("a/nothing"))) == "ENOENT"
    assert errno_of(lambda: os.stat(d.path("nothing/deeper"))) == "ENOENT"


def test_files_cannot_be_opened_for_writing(daemon):
    p = daemon.path("db/password")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        assert errno_of(lambda: os.close(os.open(p, flags))) in ("EROFS", "EACCES"), flags
    assert errno_of(lambda: os.close(os.open(daemon.path("db/new"), os.O_WRONLY | os.O_CREAT,
                                             0o600))) in ("EROFS", "EACCES")
    assert daemon.read("db/password") == daemon.expected["db/password"]


def test_files_and_directories_cannot_be_changed_created_or_removed(sandbox):
    d = sandbox.start({"db/password": local("db", field="password")},
                      data={"db": {"password": "original"}})
    p = d.path("db/password")
    refused = {"EROFS", "EACCES", "EPERM"}
    ops = {
        "truncate": lambda: os.truncate(p, 0),
        "unlink": lambda: os.unlink(p),
        "rename": lambda: os.rename(p, d.path("db/moved")),
        "chmod": lambda: os.chmod(p, 0o644),
        "chown": lambda: os.chown(p, NOBODY, NOBODY),
        "mkdir": lambda: os.mkdir(d.path("newdir")),
        "rmdir": lambda: os.rmdir(d.path("db")),
        "symlink": lambda: os.symlink("/etc/passwd", d.path("link")),
    }
    results = {name: errno_of(op) for name, op in ops.items()}
    assert all(r in refused for r in results.values()), results
    assert d.read("db/password") == "original"
    assert sorted(os.listdir(d.mount)) == ["db"]


def test_secret_never_fetched_is_absent_until_it_appears(sandbox):
    d = sandbox.start({"present": local("present"), "later/token": local("later")},
                      data={"present": "here"}, startup_timeout="1s")
    assert d.read("present") == "here"
    assert errno_of(lambda: os.stat(d.path("later/token"))) == "ENOENT"
    assert errno_of(lambda: open(d.path("later/token"), "rb").close()) == "ENOENT"
    assert "token" not in (os.listdir(d.path("later")) if os.path.isdir(d.path("later")) else [])

    value = rand_token(32)
    sandbox.write_data({"present": "here", "later": value})
    wait_until(lambda: d.read("later/token") == value, what="later/token to appear")
    assert os.stat(d.path("later/token")).st_size == len(value)
    # The directory's cached listing is invalidated right after the file
    # became visible by name (microseconds later, another thread): polled.
    wait_until(lambda: "token" in os.listdir(d.path("later")), what="token in the listing")
    assert d.read("present") == "here"


def test_root_can_read_every_file_regardless_of_mode(sandbox):
    d = sandbox.start({"locked": local("v", mode="0000")}, data={"v": "value"})
    assert stat.S_IMODE(os.stat(d.path("locked")).st_mode) == 0
    assert d.read("locked") == "value"
