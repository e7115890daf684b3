"""Bounded shutdown: SIGTERM cuts every backend request in flight at once,
whatever the backend does (an endless trickling body, a connection that is
accepted and never answered, a TLS handshake that never completes), and
the only network work after it, the revocations the user asked for, ends
within `shutdown_timeout`. Each case exits 0, unmounted (or cleaned up),
far sooner than the hung request would have ended by itself.

The hung state is reached by polling the fake's request log (or the
listener's accept count), never by sleeping.
"""

import os
import socket
import threading
import time

import pytest

from helpers.harness import is_mounted, wait_until
from helpers.vault import (backend, clean_env, leases_of, reqs, start, token_auth,
                           write_private)

CFG = "secret/app/config"
BUDGET = 2.0          # the shutdown_timeout the tests configure, seconds
MARGIN = 3.0          # scheduling slack on a loaded 2-core machine
HANG = "60s"          # the backend timeout: what a hung request would cost


class SilentListener:
    """Accepts TCP connections and never sends a byte: a hung server, or,
    for an https:// URL, a TLS handshake that never completes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for c in self.accepted:
            c.close()
        self.sock.close()


@pytest.fixture
def listener():
    lst = SilentListener()
    try:
        yield lst
    finally:
        lst.close()


def timed_stop(d):
    t0 = time.monotonic()
    rc = d.stop(timeout=BUDGET + MARGIN + 10)
    took = time.monotonic() - t0
    print(f"shutdown took {took:.2f} s")
    return rc, took


def kv(**kw):
    return {"backend": "vault", "path": CFG, "field": "api_key", "refresh": "1s", **kw}


def hung_backend_config(sandbox, listener, scheme="http", tls=None, **top):
    """A config whose one Vault backend is the silent listener."""
    be = {"type": "vault", "address": f"{scheme}://127.0.0.1:{listener.port}",
          "auth": {"method": "token",
                   "token_file": write_private(sandbox, "token", "hvs." + "x" * 24)},
          "timeout": HANG}
    if tls:
        be["tls"] = tls
    return sandbox.config({"api": kv()}, backends={"vault": be},
                          shutdown_timeout=f"{BUDGET}s", startup_timeout="60s", **top)


def in_flight(vault, kind, path):
    return [r for r in reqs(vault, path=path) if r.fault == kind]


@pytest.mark.fuse
def test_sigterm_during_an_endless_body_exits_at_once_and_unmounts(sandbox, vault, vault_pki):
    vault.kv_put(CFG, {"api_key": "k1"})
    _, auth = token_auth(sandbox, vault)
    d = start(sandbox, {"api": kv()}, backend(vault, vault_pki, auth, timeout=HANG),
              top={"shutdown_timeout": f"{BUDGET}s"})
    assert d.read("api") == "k1"
    # The next probe (metadata) gets a body that never ends.
    vault.fault_trickle("secret/metadata/app/config", seconds=0.5, times=None)
    wait_until(lambda: in_flight(vault, "trickle", "secret/metadata/app/config"),
               timeout=10, what="a probe receiving the endless body")
    rc, took = timed_stop(d)
    assert rc == 0, d.log_text()
    assert took < BUDGET + MARGIN, f"took {took:.1f} s"
    assert not is_mounted(sandbox.mount)
    assert "stopped;" in d.log_text()


@pytest.mark.fuse
def test_a_trickling_body_is_cut_at_the_request_bound_and_others_keep_refreshing(
        sandbox, vault, vault_pki):
    """While running: one request ends within the backend's `timeout`, a
    body that trickles counts against it, and another source meanwhile
    keeps refreshing on the other workers."""
    vault.kv_put(CFG, {"api_key": "k1"})
    vault.kv_put("secret/other", {"v": "o1"})
    _, auth = token_auth(sandbox, vault)
    d = start(sandbox, {"api": kv(), "other": {"backend": "vault", "path": "secret/other",
                                               "field": "v", "refresh": "1s"}},
              backend(vault, vault_pki, auth, timeout="2s"))
    fid = vault.fault_trickle("secret/metadata/app/config", seconds=0.2, times=1)
    wait_until(lambda: in_flight(vault, "trickle", "secret/metadata/app/config"),
               timeout=10, what="the trickling probe")
    t0 = time.monotonic()
    vault.kv_put("secret/other", {"v": "o2"})
    wait_until(lambda: d.read("other") == "o2", timeout=8,
               what="the other source refreshed during the trickle")
    d.wait_log(r"no complete answer within 2000 ms", timeout=10)
    assert time.monotonic() - t0 < 2 + MARGIN + 2
    vault.remove_fault(fid)
    vault.kv_put(CFG, {"api_key": "k2"})
    wait_until(lambda: d.read("api") == "k2", timeout=15, what="recovery after the cut")
    assert d.stop() == 0


@pytest.mark.fuse
def test_sigterm_during_a_connect_that_is_never_answered(sandbox, listener):
    """SIGTERM while start-up waits for a server that accepted the
    connection and says nothing: exit 0 at once, nothing mounted."""
    cfg = hung_backend_config(sandbox, listener)
    d = sandbox.start(config=cfg, env=clean_env(), wait=False)
    wait_until(lambda: listener.accepted, timeout=10, what="the daemon's connection")
    rc, took = timed_stop(d)
    assert rc == 0, d.log_text()
    assert took < BUDGET + MARGIN, f"took {took:.1f} s"
    assert not is_mounted(sandbox.mount)


@pytest.mark.fuse
def test_sigterm_during_a_tls_handshake_that_never_completes(sandbox, listener, vault_pki):
    cfg = hung_backend_config(sandbox, listener, "https", tls={"ca_file": vault_pki.ca_cert})
    d = sandbox.start(config=cfg, env=clean_env(), wait=False)
    wait_until(lambda: listener.accepted, timeout=10, what="the daemon's TLS connection")
    rc, took = timed_stop(d)
    assert rc == 0, d.log_text()
    assert took < BUDGET + MARGIN, f"took {took:.1f} s"


def test_sigterm_during_once_with_a_hung_backend_is_bounded(sandbox, listener):
    """--once (a Job's init container) is not stuck by a hung server either."""
    cfg = hung_backend_config(sandbox, listener, mount={"path": sandbox.mount,
                                                        "type": "directory"})
    d = sandbox.start(config=cfg, env=clean_env(), wait=False, args=("--once",))
    wait_until(lambda: listener.accepted, timeout=10, what="the daemon's connection")
    t0 = time.monotonic()
    d.send(15)
    d.proc.wait(BUDGET + MARGIN + 10)
    assert time.monotonic() - t0 < BUDGET + MARGIN
    assert not os.path.exists(os.path.join(sandbox.mount, "api"))


def test_sigterm_in_directory_mode_during_an_endless_body_cleans_up(
        sandbox, vault, vault_pki):
    vault.kv_put(CFG, {"api_key": "k1"})
    _, auth = token_auth(sandbox, vault)
    d = start(sandbox, {"api": kv()}, backend(vault, vault_pki, auth, timeout=HANG),
              top={"shutdown_timeout": f"{BUDGET}s", "mount": {"path": sandbox.mount,
                                                               "type": "directory"}})
    assert d.read("api") == "k1"
    vault.fault_trickle("secret/metadata/app/config", seconds=0.5, times=None)
    wait_until(lambda: in_flight(vault, "trickle", "secret/metadata/app/config"),
               timeout=10, what="the endless body")
    rc, took = timed_stop(d)
    assert rc == 0, d.log_text()
    assert took < BUDGET + MARGIN, f"took {took:.1f} s"
    assert not os.path.lexists(os.path.join(sandbox.mount, "api"))
    assert not os.path.lexists(os.path.join(sandbox.mount, "..data"))


@pytest.mark.fuse
@pytest.mark.parametrize("slow_first", [False, True], ids=["fast_first", "slow_first"])
def test_revocations_at_shutdown_end_within_the_budget(sandbox, make_vault, vault_pki,
                                                       slow_first):
    """Two backends with revoke_on_shutdown: the fast Vault's lease is
    revoked; the slow one's revoke hangs and is cut at its share of the
    budget, logged as not revoked, so it cannot starve the other whichever
    runs first; the exit is still 0 and within the budget."""
    fast, slow = make_vault(), make_vault()
    for v in (fast, slow):
        v.add_dynamic_role("database", "app", default_ttl=600, max_ttl=3600)
    auth_fast = {"method": "token", "token_file": write_private(
        sandbox, "fast-token", fast.create_token(ttl=3600))}
    auth_slow = {"method": "token", "token_file": write_private(
        sandbox, "slow-token", slow.create_token(ttl=3600))}
    names = ("b-fast", "a-slow") if slow_first else ("a-fast", "b-slow")
    secrets = {names[0]: {"backend": "fast", "path": "database/creds/app",
                          "field": "username"},
               names[1]: {"backend": "slow", "path": "database/creds/app",
                          "field": "username"}}
    if slow_first:
        secrets = dict(reversed(list(secrets.items())))
    cfg = sandbox.config(secrets, backends={
        "fast": backend(fast, vault_pki, auth_fast, revoke_on_shutdown=True),
        "slow": backend(slow, vault_pki, auth_slow, revoke_on_shutdown=True,
                        timeout=HANG)}, shutdown_timeout=f"{BUDGET}s")
    d = sandbox.start(config=cfg, env=clean_env())
    (fast_lease,) = leases_of(fast, "database", "app")
    (slow_lease,) = leases_of(slow, "database", "app")
    slow.fault_hang("sys/leases/revoke", seconds=None, times=None)
    rc, took = timed_stop(d)
    assert rc == 0, d.log_text()
    assert took < BUDGET + MARGIN, f"took {took:.1f} s"
    assert fast_lease.revoked, d.log_text()
    assert not slow_lease.revoked
    log = d.log_text()
    assert f"revoked lease {fast_lease.lease_id}" in log
    assert f"lease {slow_lease.lease_id} not revoked" in log, log
    assert not is_mounted(sandbox.mount)
