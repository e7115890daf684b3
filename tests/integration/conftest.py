"""Fixtures for the secretfs integration tests.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest tests/integration
The daemon under test is $SECRETFS_BIN (default build/secretfs). Tests that
mount need root and /dev/fuse and are skipped without them. Set
SECRETFS_SANITIZE=1 for the ASan build (longer bounds).

Every daemon a test starts is stopped by PID, and its mount removed, even when
the test fails; a failing test's report carries the daemon logs.
"""

import os

import pytest

from helpers.harness import HARD_LIMIT, SECRETFS_BIN, Sandbox, rand_token


def fuse_unavailable_reason():
    if os.geteuid() != 0:
        return "needs root (mounts FUSE file systems)"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "fuse: needs root and /dev/fuse (mounts secretfs)")


def pytest_collection_modifyitems(config, items):
    reason = fuse_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "fuse" in item.keywords:
            item.add_marker(skip)


def require_binary():
    if not (os.path.isfile(SECRETFS_BIN) and os.access(SECRETFS_BIN, os.X_OK)):
        pytest.fail(f"secretfs binary not found at {SECRETFS_BIN}: build it "
                    "(cmake -S . -B build && cmake --build build) or set SECRETFS_BIN",
                    pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    sandbox = getattr(item, "_secretfs_sandbox", None)
    if sandbox is None or not report.failed:
        return
    if sandbox.aborted:
        report.sections.append(("secretfs watchdog",
                                f"the test ran past {HARD_LIMIT:.0f} s; its daemons were killed"))
    for d in sandbox.daemons:
        report.sections.append((f"secretfs log: {d.name} (pid {d.pid}, rc {d.returncode})",
                                d.log_text() or "(empty)"))
    for i, fake in enumerate(getattr(item, "_fake_vaults", ())):
        from helpers.vault import describe_leases, describe_requests
        report.sections.append((f"fake vault {i}: requests", describe_requests(fake)))
        report.sections.append((f"fake vault {i}: leases", describe_leases(fake)))


def _sandbox(request):
    require_binary()
    sb = Sandbox(request.node.name)
    request.node._secretfs_sandbox = sb
    sb.start_watchdog(HARD_LIMIT)
    return sb


@pytest.fixture
def sandbox(request):
    """A Sandbox for tests that mount (root + /dev/fuse)."""
    reason = fuse_unavailable_reason()
    if reason:
        pytest.skip(reason)
    sb = _sandbox(request)
    try:
        yield sb
    finally:
        errors = sb.cleanup()
        assert not errors, f"cleanup problems: {errors}"


@pytest.fixture(params=["default", "fast_open"])
def open_mode(request):
    """Both ways files are opened, the default and mount.fast_open: a test
    module whose sandbox fixture takes it (helpers.harness.in_open_mode)
    runs each of its tests in both."""
    return request.param


@pytest.fixture
def workdir(request):
    """A Sandbox for tests that only run the program (no mount)."""
    sb = _sandbox(request)
    try:
        yield sb
    finally:
        sb.cleanup()


@pytest.fixture
def daemon(sandbox):
    """A running secretfs on a small file-backend config: db/username,
    db/password and api-key. d.expected maps each file name to its content."""
    user, password, api = "app", rand_token(32), rand_token(32)
    d = sandbox.start({
        "db/username": {"backend": "local", "path": "db", "field": "username"},
        "db/password": {"backend": "local", "path": "db", "field": "password"},
        "api-key": {"backend": "local", "path": "api"},
    }, data={"db": {"username": user, "password": password}, "api": api})
    d.expected = {"db/username": user, "db/password": password, "api-key": api}
    return d


# ------------------------------------------------------------------ fake AWS

@pytest.fixture
def fake_aws(sandbox):
    """An in-process fake AWS (Secrets Manager, STS), stopped before the
    sandbox's daemons."""
    from helpers.aws import FakeAws
    fake = FakeAws().start()
    try:
        yield fake
    finally:
        fake.stop()


# ---------------------------------------------------------------- fake Vault

@pytest.fixture(scope="session")
def vault_pki():
    """A throwaway CA with a server certificate for 127.0.0.1 and localhost
    and a client certificate (openssl CLI)."""
    from helpers.vault import make_test_pki
    pki = make_test_pki()
    try:
        yield pki
    finally:
        pki.cleanup()


@pytest.fixture
def make_vault(request, sandbox, vault_pki):
    """Starts in-process fake Vault servers: make_vault(**FakeVault kwargs),
    HTTPS with the test PKI unless tls=False. They are stopped before the
    sandbox's daemons (which then see connection refused, never a hang); a
    failing test's report carries their request logs and leases."""
    from helpers.vault import FakeVault
    started = []
    request.node._fake_vaults = started

    def make(tls=True, **kw):
        if tls:
            kw.setdefault("tls_cert", vault_pki.server_cert)
            kw.setdefault("tls_key", vault_pki.server_key)
        kw.setdefault("root_token", None)
        fake = FakeVault(**kw).start()
        started.append(fake)
        return fake
    try:
        yield make
    finally:
        for fake in started:
            fake.stop()


@pytest.fixture
def vault(make_vault):
    """A fake Vault over HTTPS (test CA), default mounts, no root token."""
    return make_vault()
