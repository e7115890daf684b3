"""Smoke runs of the benchmarks in quick mode: correctness only, no timing asserts."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SECRETFS_BIN", os.path.join(ROOT, "build", "secretfs"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the fleet bench runs as root")
def test_fleet_quick_probes_once_per_interval_and_every_agent_recovers(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "fleet", "fleet.py"),
                        "--quick", "--agents", "3", "--outage", "5", "--bin", BIN,
                        "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, r.stdout
    res = json.loads(line[-1][len("RESULT "):])
    assert res["probes_per_secret_per_interval"] <= 1.2, res
    assert res["steady_data_reads"] == 0, res
    assert res["recovery_s"] is not None, res


@pytest.mark.skipif(os.geteuid() != 0, reason="the soak bench mounts FUSE as root")
def test_soak_quick_reads_only_whole_versions_and_survives_kill_9(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "soak", "soak.py"),
                        "--quick", "--minutes", "0.5", "--bin", BIN, "--keep", str(tmp_path)],
                       capture_output=True, text=True, timeout=180)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, r.stdout + r.stderr
    res = json.loads(line[-1][len("RESULT "):])
    assert res["reads"] > 1000, res
    assert res["torn"] == 0 and res["failed"] == 0, res
    assert res["stuck_readers"] == [] and res["kill_hung_readers"] == [], res
    assert all(n > 0 for n in res["rotations_seen"].values()), res
    assert len(res["rotations_seen"]) == 8, res
    assert res["db_leases_revoked"] > 0 and res["on_change_firings"] > 0, res
    # In flight: the connection is gone; a new open after the monitor's
    # unmount: the bare mount point has no such file.
    assert set(res["kill_reader_errors"]) <= {"ENOTCONN", "ECONNABORTED", "EIO", "ENOENT"}, res
    assert sum(res["kill_reader_errors"].values()) == 8, res
    assert res["restart_recovered"], res
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the reads bench mounts FUSE as root")
def test_reads_quick_counts_requests_per_open_in_both_open_modes():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "reads.py"), "--quick", BIN],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, r.stdout
    res = json.loads(line[-1][len("RESULT "):])
    # Default: one OPEN and one RELEASE per open+read+close, reads cached.
    assert res["requests_per_open"]["default"] == {"open": 1.0, "release": 1.0}, res
    # fast_open: the daemon is not asked at all.
    assert res["requests_per_open"]["fast_open"] == {}, res
    # Listings are cached and directories opened by the kernel (no audit).
    assert res["requests_per_listing"] == {"default": {}, "fast_open": {}}, res
    for fs in ("tmpfs", "default", "fast_open"):
        assert res["latency_us"][fs]["min"] > 0, res
        assert res["throughput"][f"{fs}/same/8"]["min"] > 0, res
