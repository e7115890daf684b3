"""Access by other users: allow_other with default_permissions enforcing modes,
in both open modes (with fast_open the kernel opens without asking secretfs:
the modes must hold all the same)."""

import json
import subprocess

import pytest

from helpers.harness import HELPERS_DIR, NOBODY, PYTHON, TIMEOUT, in_open_mode

pytestmark = pytest.mark.fuse


@pytest.fixture
def sandbox(sandbox, open_mode):
    return in_open_mode(sandbox, open_mode)

SECRETS = {
    "nobody-token": {"backend": "local", "path": "t", "uid": NOBODY, "gid": NOBODY, "mode": "0400"},
    "root-token": {"backend": "local", "path": "t"},
}


def try_as_nobody(*paths):
    """Opens each path as user nobody (uid/gid 65534, no groups)."""
    script = (HELPERS_DIR / "try_open.py").read_text()
    r = subprocess.run([PYTHON, "-c", script, *paths], user=NOBODY, group=NOBODY,
                       extra_groups=[], cwd="/", env={"PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert r.returncode == 0, r.stderr
    return {p: json.loads(r.stdout)[p] for p in paths}


def test_allow_other_lets_other_users_read_files_their_mode_allows(sandbox):
    d = sandbox.start(SECRETS, data={"t": "token-value"}, mount={"allow_other": True})
    got = try_as_nobody(d.path("nobody-token"), d.path("root-token"), d.mount)
    assert got[d.path("nobody-token")] == {"data": "token-value"}
    assert got[d.path("root-token")] == {"errno": "EACCES"}
    assert got[d.mount] == {"entries": ["nobody-token", "root-token"]}


def test_without_allow_other_other_users_are_refused(sandbox):
    d = sandbox.start(SECRETS, data={"t": "token-value"})
    got = try_as_nobody(d.path("nobody-token"), d.mount)
    assert got[d.path("nobody-token")] == {"errno": "EACCES"}
    assert got[d.mount] == {"errno": "EACCES"}
    assert d.read("root-token") == "token-value"
