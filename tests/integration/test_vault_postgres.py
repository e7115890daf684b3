"""Database credential rotation end to end: the fake Vault's database engine
creates and drops real PostgreSQL roles (a throwaway cluster started here,
Unix socket only), secretfs serves db/username and db/password, and the
test connects with psql as the application would.

Skipped when the PostgreSQL 15 binaries are missing. The cluster is
stopped (pg_ctl stop -m immediate) and its directory removed even when a
test fails.
"""

import pathlib
import time

import pytest

from helpers.harness import SLOW, wait_until
from helpers.pg import PgCluster, PgRoles, pg_unavailable_reason
from helpers.vault import backend, leases_of, start, token_auth

pytestmark = pytest.mark.fuse

SECRETS = {"db/username": {"backend": "vault", "path": "database/creds/app", "field": "username"},
           "db/password": {"backend": "vault", "path": "database/creds/app", "field": "password"}}


@pytest.fixture(scope="module")
def pg():
    reason = pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def served_pair(d):
    return d.read("db/username"), d.read("db/password")


def test_app_connects_with_served_credentials_and_shutdown_revocation_drops_the_role(
        sandbox, vault, vault_pki, pg):
    roles = PgRoles(pg, ttl=60)
    vault.add_dynamic_role("database", "app", default_ttl=60, max_ttl=3600,
                           issue=roles.issue, renew=roles.renew, revoke=roles.revoke)
    _, auth = token_auth(sandbox, vault)
    d = start(sandbox, SECRETS, backend(vault, vault_pki, auth, revoke_on_shutdown=True))
    user, password = served_pair(d)
    assert user in roles.created and pg.role_exists(user)
    ok, out = pg.connect(user, password)
    assert ok, f"the served credentials do not work: {out}"
    assert not pg.connect(user, password + "x")[0], "the cluster must check passwords"

    assert d.stop() == 0
    (lease,) = leases_of(vault, "database", "app")
    assert lease.revoked_by == "api"
    assert user in roles.dropped and not pg.role_exists(user)
    assert not pg.connect(user, password)[0]
    assert not roles.errors


def test_rotation_at_max_ttl_always_leaves_a_working_pair_and_drops_the_old_role_after_grace(
        sandbox, vault, vault_pki, pg):
    # Lease ttl 6 s, max_ttl 20 s, grace 1 s. The role is VALID UNTIL the
    # end of its lease: it keeps working only because renewals extend it.
    grace = 1.0
    roles = PgRoles(pg, ttl=6)
    vault.add_dynamic_role("database", "app", default_ttl=6, max_ttl=20,
                           issue=roles.issue, renew=roles.renew, revoke=roles.revoke)
    _, auth = token_auth(sandbox, vault)
    changes = pathlib.Path(sandbox.root) / "on_change.log"
    on_change = {"command": ["/bin/sh", "-c", f'echo "$SECRETFS_FILES" >> {changes}'],
                 "debounce": "200ms"}
    secrets = {name: {**spec, "on_change": on_change} for name, spec in SECRETS.items()}
    d = start(sandbox, secrets, backend(vault, vault_pki, auth, revoke_grace="1s"))
    old_user, old_password = served_pair(d)
    ok, out = pg.connect(old_user, old_password)
    assert ok, out

    polls = []          # (read at, user, ok, connect finished at, error)

    def poll():
        t = time.time()
        user, password = served_pair(d)
        ok, out = pg.connect(user, password)
        polls.append((t, user, ok, time.time(), out))
        return old_user in roles.dropped and user != old_user

    wait_until(poll, timeout=26 * SLOW, interval=0.05,
               what="rotation: new pair served and the old role dropped")

    new_user, new_password = served_pair(d)
    assert new_user != old_user and new_user in roles.created
    ok, out = pg.connect(new_user, new_password)
    assert ok, f"the new credentials do not work: {out}"
    ok, out = pg.connect(old_user, old_password)
    assert not ok, "the old credentials still work after their lease was revoked"
    assert not pg.role_exists(old_user)
    # The old role lived past its first VALID UNTIL through renewals.
    assert len(roles.renewed.get(old_user, [])) >= 2, "the old lease was not renewed"
    assert max(roles.renewed[old_user]) > roles.created[old_user] + 6 + PgRoles.SLACK
    # The application was told once, for both files, after the swap.
    wait_until(lambda: changes.exists() and changes.read_text().strip(),
               timeout=5 * SLOW, what="on_change after the rotation")
    lines = changes.read_text().split("\n")[:-1]
    assert len(lines) == 1, f"on_change ran {len(lines)} times for one rotation: {lines}"
    assert sorted(lines[0].split()) == ["db/password", "db/username"]

    old, new = leases_of(vault, "database", "app")[:2]
    swapped_at = new.issued
    dropped_at, dropped_by = roles.dropped[old_user]
    # Every pair read from the files worked. The only failure the grace
    # semantics allow: an old pair read just before the swap whose
    # connection came after the old role was dropped, a full grace later.
    bad = [(round(t - swapped_at, 3), u, out) for t, u, ok, done, out in polls
           if not ok and not (u == old_user and t < swapped_at
                              and done > dropped_at >= swapped_at + grace - 0.2)]
    assert not bad, f"the files held a non-working pair (s after the swap, user, error): {bad}"
    assert len(polls) >= 50, f"only {len(polls)} polls: the check saw too little"
    assert dropped_by == "api", \
        f"the old role was dropped by {dropped_by!r}, not by secretfs's revocation " \
        f"(swap {old.max_expires - swapped_at:.2f} s before the lease's max TTL)"
    assert dropped_at - swapped_at >= grace - 0.2, \
        f"old role dropped {dropped_at - swapped_at:.2f} s after the swap (grace {grace} s)"
    assert not roles.errors
