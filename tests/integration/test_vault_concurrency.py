"""Start-up with many Vault secrets: read concurrently, within a bound.

Every data read is held by the fake for HOLD seconds, so requests that
arrived less than HOLD apart were in flight together: the largest number of
arrivals inside one HOLD window is a lower bound on the concurrency, and
never more than the real number in flight.
"""

import pytest

from helpers.vault import backend, start, token_auth

N = 120
HOLD = 0.4
WORKERS = 8  # secretfs's bound on concurrent requests (README: Vault backend)


def peak_in_flight(times, hold):
    times = sorted(times)
    return max(sum(1 for t in times if a - hold < t <= a) for a in times)


@pytest.mark.fuse
def test_many_secrets_are_read_concurrently_at_start_up_within_the_bound(
        sandbox, vault, vault_pki):
    _, auth = token_auth(sandbox, vault)
    for i in range(N):
        vault.kv_put(f"secret/many/s{i}", {"v": f"value-{i}"})
    # One after another, start-up would take N * HOLD = 48 s.
    vault.fault_hang("secret/data/many/", seconds=HOLD, times=None)
    secrets = {f"s{i}": {"backend": "vault", "path": f"secret/many/s{i}", "field": "v",
                         "refresh": "1h"} for i in range(N)}
    d = start(sandbox, secrets, backend(vault, vault_pki, auth),
              top={"startup_timeout": "120s"})

    for i in range(N):
        assert d.read(f"s{i}") == f"value-{i}"
    reads = [r.time for r in vault.find_requests("GET", "secret/data/many/")]
    assert len(reads) == N, "one read per secret"
    peak = peak_in_flight(reads, HOLD)
    assert peak >= WORKERS // 2, f"start-up reads were not concurrent (peak {peak})"
    assert peak <= WORKERS, f"{peak} requests in flight, more than the bound"
