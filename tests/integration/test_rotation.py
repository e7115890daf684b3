"""Rotation: new opens see the new version at once; open handles keep theirs."""

import os
import threading
import time

import pytest

from helpers.harness import TIMEOUT, rand_token, read_fd_to_end, read_text, wait_until

pytestmark = pytest.mark.fuse


def test_open_handle_keeps_reading_old_version_while_new_opens_see_new(sandbox):
    # Several pages, and different lengths, so that page-cache and st_size
    # mix-ups between versions show.
    old, new = rand_token(20000), rand_token(12345)
    d = sandbox.start({"big": {"backend": "local", "path": "big"}}, data={"big": old})
    p = d.path("big")

    fd = os.open(p, os.O_RDONLY)
    try:
        first = os.read(fd, 1)
        assert first == old[:1].encode()

        sandbox.write_data({"big": new})
        wait_until(lambda: read_text(p) == new, what="a new open to see the new version")

        rest = read_fd_to_end(fd)
        assert (first + rest).decode() == old, "old handle must read the old version in full"
        assert os.pread(fd, len(old) + 4096, 0).decode() == old, "pread on the old handle"
        # Reading the old handle must not have put old pages where new opens read.
        assert read_text(p) == new
        assert os.stat(p).st_size == len(new)
    finally:
        os.close(fd)
    assert read_text(p) == new


def test_two_handles_on_two_versions_read_independently(sandbox):
    v1, v2, v3 = rand_token(9000), rand_token(7000), rand_token(5000)
    d = sandbox.start({"s": {"backend": "local", "path": "s"}}, data={"s": v1})
    p = d.path("s")
    fd1 = os.open(p, os.O_RDONLY)
    fd2 = None
    try:
        sandbox.write_data({"s": v2})
        wait_until(lambda: read_text(p) == v2, what="version 2")
        fd2 = os.open(p, os.O_RDONLY)
        sandbox.write_data({"s": v3})
        wait_until(lambda: read_text(p) == v3, what="version 3")
        assert read_fd_to_end(fd2).decode() == v2
        assert read_fd_to_end(fd1).decode() == v1
        assert os.pread(fd2, 100, 0).decode() == v2[:100]
        assert read_text(p) == v3
    finally:
        os.close(fd1)
        if fd2 is not None:
            os.close(fd2)
    assert read_text(p) == v3


def test_readers_during_rapid_rotation_always_get_one_whole_version(sandbox):
    written = []
    first = "v000:" + rand_token(15000)
    written.append(first)
    d = sandbox.start({"s": {"backend": "local", "path": "s"}}, data={"s": first})
    p = d.path("s")
    valid = set(written)
    bad, reads = [], [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError as exc:             # the name must never vanish
                bad.append(f"open: {exc!r}")
                continue
            try:
                content = bytearray()
                while True:                    # small reads: several FUSE requests
                    b = os.read(fd, 4096)
                    if not b:
                        break
                    content += b
            except OSError as exc:
                bad.append(f"read: {exc!r}")
                continue
            finally:
                os.close(fd)
            text = content.decode()
            reads[0] += 1
            if text not in valid:
                bad.append(text[:12] + f"... ({len(text)} bytes)")

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 26):                 # a churn of edits, ~40 ms apart
            v = f"v{i:03d}:" + rand_token(9000 + 311 * i)
            written.append(v)
            valid.add(v)
            sandbox.write_data({"s": v})
            time.sleep(0.04)
        wait_until(lambda: read_text(p) == written[-1], what="the last version")
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a reader is stuck"
    assert not bad, f"torn or unknown contents read: {bad[:5]}"
    assert reads[0] > 20
