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
