"""Smoke run of bench/fleet in quick mode: correctness only, no timing asserts."""
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
    assert set(res["kill_reader_errors"]) <= {"ENOTCONN", "ECONNABORTED", "EIO"}, res
    assert sum(res["kill_reader_errors"].values()) == 8, res
    assert res["restart_recovered"], res
    assert r.returncode == 0, r.stdout + r.stderr
