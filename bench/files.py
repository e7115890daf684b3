#!/usr/bin/python3
"""Benchmark: 1000 secrets from the file backend.

Measures, against the targets in the project brief:
  - time from exec to every file readable (target <= 0.5 s),
  - the daemon's RSS once serving (target <= 6 MiB),
  - open+read+close of an unchanged file through the mount, compared with
    the same on tmpfs (target: page-cache speed, one daemon round trip),
  - repeated pread of an open file (page cache hits).
With --audit the mount audits every open (an "audit" block writing to a
file in the temporary directory), to compare open+read+close both ways.
Run as root: /usr/bin/python3 bench/files.py [--audit] [path/to/secretfs]
SECRETFS_BENCH_FILES=N serves N secrets instead of 1000 (100 per directory).
With SECRETFS_BENCH_TELEMETRY=1 the config gains a "telemetry" listener on
a free loopback port, scraped once (/metrics) before RSS is measured: the
difference from a run without it is what the listener costs.
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import urllib.request
import sys
import tempfile
import time

N = int(os.environ.get("SECRETFS_BENCH_FILES", "1000"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUDIT = "--audit" in sys.argv[1:]
ARGS = [a for a in sys.argv[1:] if a != "--audit"]
BIN = ARGS[0] if ARGS else os.path.join(ROOT, "build", "secretfs")


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def time_loop(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def open_read_close(path):
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 4096)
    os.close(fd)


def main():
    tmp = tempfile.mkdtemp(prefix="secretfs-bench-")
    mnt = os.path.join(tmp, "mnt")
    values = {f"s{i}": secrets.token_hex(16) for i in range(N)}
    with open(os.path.join(tmp, "secrets.json"), "w") as f:
        json.dump(values, f)
    cfg = {
        "mount": {"path": mnt},
        "backends": {"local": {"type": "file", "path": "secrets.json"}},
        "secrets": {f"d{i // 100}/s{i}": {"backend": "local", "path": f"s{i}"} for i in range(N)},
        "log": {"level": "warn"},
    }
    if AUDIT:
        cfg["audit"] = {"path": os.path.join(tmp, "audit.jsonl")}
    telemetry = os.environ.get("SECRETFS_BENCH_TELEMETRY", "") not in ("", "0")
    if telemetry:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            cfg["telemetry"] = {"listen": f"127.0.0.1:{s.getsockname()[1]}"}
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f)

    t0 = time.perf_counter()
    proc = subprocess.Popen([BIN, "--config", os.path.join(tmp, "config.json")])
    try:
        pending = set(range(N))
        deadline = t0 + 20
        while pending and time.perf_counter() < deadline:
            for i in list(pending):
                try:
                    with open(f"{mnt}/d{i // 100}/s{i}") as f:
                        if f.read() == values[f"s{i}"]:
                            pending.discard(i)
                except OSError:
                    break
        ready = time.perf_counter() - t0
        if pending:
            print(f"FAIL: {len(pending)} files not readable after 20 s")
            return 1
        scraped = 0
        if telemetry:
            url = f"http://{cfg['telemetry']['listen']}/metrics"
            with urllib.request.urlopen(url, timeout=10) as r:
                scraped = len(r.read())
        rss = rss_kib(proc.pid)
        rss_anon, rss_file = rss_kib(proc.pid, "RssAnon"), rss_kib(proc.pid, "RssFile")
        path = f"{mnt}/d0/s0"
        open_read_close(path)
        fuse_orc = time_loop(lambda: open_read_close(path), 20000)

        tpath = "/dev/shm/secretfs-bench-tmpfs"
        with open(tpath, "w") as f:
            f.write(values["s0"])
        tmpfs_orc = time_loop(lambda: open_read_close(tpath), 20000)
        os.unlink(tpath)

        fd = os.open(path, os.O_RDONLY)
        fuse_pread = time_loop(lambda: os.pread(fd, 4096, 0), 100000)
        os.close(fd)

        print(f"files={N} all_readable_s={ready:.3f} (target <= 0.5)")
        print(f"daemon_rss_kib={rss} (target <= {6 * 1024})"
              + f" anon={rss_anon} file={rss_file}"
              + (f" with telemetry, /metrics {scraped} bytes" if telemetry else ""))
        print(f"open_read_close_us fuse={fuse_orc:.2f} tmpfs={tmpfs_orc:.2f}"
              f" audit={'on' if AUDIT else 'off'}")
        print(f"pread_cached_us fuse={fuse_pread:.2f}")
        ok = ready <= 0.5 and rss <= 6 * 1024
        print("targets:", "met" if ok else "NOT met")
        return 0 if ok else 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
