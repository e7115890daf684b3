#!/usr/bin/python3
"""Benchmark: secretfs against the fake AWS Secrets Manager (tests/fakes).

Measures, against the project brief's steady-state target:
  - time from exec to every file readable with N secrets (concurrent
    GetSecretValue on the worker pool, SigV4 on every request),
  - the daemon's RSS once serving (libcurl + OpenSSL loaded),
  - calls per secret per refresh interval in steady state: DescribeSecret
    probes (target <= 1) and GetSecretValue reads (target 0 when nothing
    changed), then the reads a rotation of one secret costs (target 1).
Run as root: /usr/bin/python3 bench/aws.py [path/to/secretfs] [N]
"""
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from fakes.fake_aws import FakeAws  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "secretfs")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200
REFRESH_S = 2
STEADY_S = 10


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def count(fake, op):
    return sum(1 for r in fake.requests if r.op == op and r.status == 200)


def main():
    tmp = tempfile.mkdtemp(prefix="secretfs-bench-aws-")
    mnt = os.path.join(tmp, "mnt")
    with FakeAws() as fake:
        fake.add_static_credentials("AKIDBENCH", "bench-secret-key")
        names = [f"app/s{i}" for i in range(N)]
        for name in names:
            fake.add_secret(name, string=json.dumps({"v": secrets.token_hex(16)}))
        cfg = {
            "mount": {"path": mnt},
            "backends": {"aws": {"type": "aws", "region": fake.region, "endpoint": fake.url}},
            "secrets": {f"s{i}": {"backend": "aws", "path": n, "field": "v",
                                  "refresh": f"{REFRESH_S}s"} for i, n in enumerate(names)},
            "log": {"level": "warn"},
        }
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench-secret-key",
                   AWS_EC2_METADATA_DISABLED="true", HOME=tmp)
        t0 = time.perf_counter()
        p = subprocess.Popen([BIN, "--config", os.path.join(tmp, "config.json")], env=env)
        try:
            last = os.path.join(mnt, f"s{N - 1}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all(os.path.exists(os.path.join(mnt, f"s{i}")) for i in (0, N // 2, N - 1)):
                    if all(os.path.exists(os.path.join(mnt, f"s{i}")) for i in range(N)):
                        break
                time.sleep(0.005)
            ready = time.perf_counter() - t0
            assert os.path.exists(last), "not every file appeared within 60 s"
            print(f"{N} secrets over SigV4: all readable {ready:.2f} s after exec")
            print(f"RSS serving: {rss_kib(p.pid) / 1024:.1f} MiB")

            d0, g0 = count(fake, "DescribeSecret"), count(fake, "GetSecretValue")
            time.sleep(STEADY_S)
            d1, g1 = count(fake, "DescribeSecret"), count(fake, "GetSecretValue")
            intervals = STEADY_S / REFRESH_S
            print(f"steady state over {STEADY_S} s (refresh {REFRESH_S} s): "
                  f"{(d1 - d0) / N / intervals:.2f} DescribeSecret and "
                  f"{(g1 - g0) / N / intervals:.2f} GetSecretValue per secret per interval")
            fake.rotate(names[0], json.dumps({"v": "rotated"}))
            deadline = time.monotonic() + 5 * REFRESH_S
            while time.monotonic() < deadline:
                with open(os.path.join(mnt, "s0")) as f:
                    if f.read() == "rotated":
                        break
                time.sleep(0.05)
            print(f"a rotation of one secret cost {count(fake, 'GetSecretValue') - g1} "
                  f"GetSecretValue in {time.monotonic() - deadline + 5 * REFRESH_S:.1f} s")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(30)


if __name__ == "__main__":
    main()
