"""The dev backend: short leases, replaced before expiry, old ones revoked."""

import re
import time

import pytest

from helpers.harness import TIMEOUT, parse_env_file, wait_until

pytestmark = pytest.mark.fuse

USERNAME_RE = re.compile(r"dev-.+-(\d+)")


def dev_config(sandbox, ttl="2s", grace="1s"):
    gen = {"backend": "gen", "path": "database/creds/app"}
    return sandbox.config(
        {"db/username": {**gen, "field": "username"},
         "db/password": {**gen, "field": "password"},
         "db.env": {**gen, "format": "env"}},
        backends={"gen": {"type": "dev", "ttl": ttl, "revoke_grace": grace}})


def read_pair(d):
    env = parse_env_file(d.read("db.env"))
    assert set(env) == {"username", "password"}, env
    return env["username"], env["password"]


def test_dev_credentials_have_the_documented_shape(sandbox):
    d = sandbox.start(config=dev_config(sandbox, ttl="30s"))
    user, password = read_pair(d)
    assert USERNAME_RE.fullmatch(user), user
    assert len(password) == 24, password
    assert d.read("db/username") == user
    assert d.read("db/password") == password


def test_dev_lease_is_replaced_with_a_new_username_and_password_together(sandbox):
    d = sandbox.start(config=dev_config(sandbox))
    u1, p1 = read_pair(d)
    # ttl 2s: a new pair every ~1.8 s.
    pair2 = wait_until(lambda: (lambda pr: pr if pr[1] != p1 else None)(read_pair(d)),
                       timeout=2 + TIMEOUT, what="a new password in db.env")
    u2, p2 = pair2
    assert u2 != u1, "the username must change with the password (new lease)"
    assert USERNAME_RE.fullmatch(u2) and len(p2) == 24
    wait_until(lambda: d.read("db/password") != p1, what="db/password to rotate too")


def test_files_of_one_source_always_show_the_same_lease(sandbox):
    d = sandbox.start(config=dev_config(sandbox))
    checked, seen_users = 0, set()
    deadline = time.monotonic() + 4.5          # spans at least two rotations
    while time.monotonic() < deadline:
        u_before = d.read("db/username")
        env_user, env_pass = read_pair(d)
        password = d.read("db/password")
        u_after = d.read("db/username")
        if u_before != u_after:
            continue                           # a rotation fell between the reads
        assert env_user == u_before and env_pass == password, \
            "username and password files disagree with db.env for one lease"
        checked += 1
        seen_users.add(u_before)
    assert checked > 10
    assert len(seen_users) >= 2, "no rotation observed"


def test_old_lease_is_revoked_after_the_grace_period(sandbox):
    d = sandbox.start(config=dev_config(sandbox, ttl="2s", grace="1s"))
    _, p1 = read_pair(d)
    wait_until(lambda: read_pair(d)[1] != p1, timeout=2 + TIMEOUT, what="rotation")
    t_rotated = time.monotonic()
    assert "revoked lease" not in d.log_text().lower(), "revoked before the grace period"
    d.wait_log(r"revoked lease", timeout=1 + TIMEOUT)
    assert time.monotonic() - t_rotated >= 0.5, "revoked well before revoke_grace (1s)"
