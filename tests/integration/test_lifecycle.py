"""Process life: signals unmount and exit 0, stale mounts are recovered,
and a descriptor mounted by a privileged helper (/dev/fd/N) is served."""

import os
import signal

import pytest

from helpers.harness import (FSTYPE, MS_NODEV, MS_NOSUID, call_with_timeout, errno_of,
                             listdir_errno, mount_syscall, mounts_at, read_text, umount_detach,
                             wait_until)

pytestmark = pytest.mark.fuse

SECRETS = {"db/password": {"backend": "local", "path": "db", "field": "password"}}
DATA = {"db": {"password": "s3cret-value"}}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_unmounts_and_exits_0(daemon, sig):
    assert daemon.read("db/password") == daemon.expected["db/password"]
    assert daemon.stop(sig) == 0
    assert not mounts_at(daemon.mount), "the mount must be gone after exit"
    assert not os.path.exists(os.path.join(daemon.mount, "db"))


def test_sigterm_with_a_file_open_still_unmounts_and_exits_0(sandbox):
    d = sandbox.start(SECRETS, data=DATA)
    fd = os.open(d.path("db/password"), os.O_RDONLY)
    try:
        assert os.read(fd, 2) == b"s3"
        assert d.stop(signal.SIGTERM) == 0
        assert not mounts_at(sandbox.mount)
        # The open handle must not hang (it may still be served from the page cache).
        call_with_timeout(lambda: errno_of(lambda: os.read(fd, 100)), what="read after exit")
    finally:
        os.close(fd)


def test_stale_mount_of_killed_daemon_is_recovered_by_next_start(sandbox):
    d1 = sandbox.start(SECRETS, data=DATA)
    assert d1.read("db/password") == "s3cret-value"
    d1.kill()                                    # SIGKILL: no chance to unmount
    # listdir, not stat: stat() may be answered from cached attributes.
    state = wait_until(lambda: ("stale" if listdir_errno(sandbox.mount) == "ENOTCONN" else
                                "gone" if not mounts_at(sandbox.mount) else None),
                       what="the mount to go stale (ENOTCONN)")
    if state == "stale":
        assert mounts_at(sandbox.mount, FSTYPE)
        assert errno_of(lambda: open(os.path.join(sandbox.mount, "db/password")).close()) \
            == "ENOTCONN"

    d2 = sandbox.start(SECRETS)                  # same mount point
    assert d2.read("db/password") == "s3cret-value"
    assert len(mounts_at(sandbox.mount)) == 1, \
        f"the stale mount should be replaced, not stacked over: {mounts_at(sandbox.mount)}"
    assert d2.stop() == 0
    assert not mounts_at(sandbox.mount)


def test_serves_a_fuse_descriptor_passed_as_dev_fd(sandbox):
    target = sandbox.file("fdmnt")
    os.mkdir(target, 0o755)
    sandbox.extra_mounts.append(target)
    fd = os.open("/dev/fuse", os.O_RDWR)
    try:
        mount_syscall("secretfs", target, FSTYPE, MS_NOSUID | MS_NODEV,
                      f"fd={fd},rootmode=40000,user_id=0,group_id=0,default_permissions")
        sandbox.cleanups.append(lambda: umount_detach(target))
        cfg = sandbox.config(SECRETS, mount={"path": f"/dev/fd/{fd}"})
        d = sandbox.start(config=cfg, data=DATA, pass_fds=(fd,), wait=False,
                          mount_path=target)
    finally:
        # Only the daemon may hold the connection: if it dies, readers get
        # ENOTCONN instead of hanging.
        os.close(fd)

    def first_read():
        return read_text(os.path.join(target, "db/password"))
    assert call_with_timeout(first_read, what="the first read through the passed fd") \
        == "s3cret-value"
    assert d.alive()
    assert sorted(os.listdir(target)) == ["db"]
    assert d.stop() == 0
