#!/usr/bin/python3
"""Benchmark: open+read+close of unchanged secrets, secretfs against tmpfs.

From one run, side by side (min and median of REPEAT rounds):
  - single-threaded open+read+close latency in µs,
  - throughput (open+read+close per second) with 1, 2 and 8 reader
    processes, each on its own file ("different") and all on one file
    ("same"),
  - FUSE requests the daemon answered per open+read+close, by operation
    (from the request-duration histogram counts in /metrics).
Goal (issue 12): at most 4x tmpfs single-threaded, one round trip per
open, throughput that grows with readers.

Run as root: /usr/bin/python3 bench/reads.py [--audit] [--quick] [path/to/secretfs]
--audit adds an "audit" block (every open audited, no default_permissions);
--quick runs short rounds (a smoke test for CI).
"""
import json
import multiprocessing
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = {a for a in sys.argv[1:] if a.startswith("--")}
ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
BIN = ARGS[0] if ARGS else os.path.join(ROOT, "build", "secretfs")
AUDIT = "--audit" in FLAGS
QUICK = "--quick" in FLAGS
N_FILES = 16
REPEAT = 2 if QUICK else int(os.environ.get("REPEAT", 5))
LAT_OPS = 2000 if QUICK else 20000
TPUT_SECONDS = 0.3 if QUICK else 1.5
READERS = (1, 2, 8)


def open_read_close(path):
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 4096)
    os.close(fd)


def latency_us(path, n):
    open_read_close(path)
    t0 = time.perf_counter()
    for _ in range(n):
        open_read_close(path)
    return (time.perf_counter() - t0) / n * 1e6


def reader(path, start, stop, out):
    while time.time() < start:
        pass
    n = 0
    while time.time() < stop:
        open_read_close(path)
        n += 1
    out.put(n)


def throughput(paths):
    """Open+read+close per second, one process per path, all at once."""
    out = multiprocessing.Queue()
    start = time.time() + 0.2
    stop = start + TPUT_SECONDS
    procs = [multiprocessing.Process(target=reader, args=(p, start, stop, out))
             for p in paths]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total / TPUT_SECONDS


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    counts = {}
    for m in re.finditer(r'^secretfs_fuse_request_duration_seconds_count\{op="(\w+)"\} (\d+)',
                         text, re.M):
        counts[m.group(1)] = int(m.group(2))
    return counts


def minmed(xs):
    return f"min={min(xs):9.1f} med={statistics.median(xs):9.1f}"


def maxmed(xs):
    return f"max={max(xs):9.0f} med={statistics.median(xs):9.0f}"


def main():
    tmp = tempfile.mkdtemp(prefix="secretfs-reads-")
    shm = tempfile.mkdtemp(prefix="secretfs-reads-", dir="/dev/shm")
    mnt = os.path.join(tmp, "mnt")
    values = {f"s{i}": secrets.token_hex(32) for i in range(N_FILES)}
    with open(os.path.join(tmp, "secrets.json"), "w") as f:
        json.dump(values, f)
    for name, v in values.items():
        with open(os.path.join(shm, name), "w") as f:
            f.write(v)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{s.getsockname()[1]}"
    cfg = {
        "mount": {"path": mnt},
        "backends": {"local": {"type": "file", "path": "secrets.json"}},
        "secrets": {name: {"backend": "local", "path": name} for name in values},
        "telemetry": {"listen": listen},
        "log": {"level": "warn"},
    }
    if AUDIT:
        cfg["audit"] = {"path": os.path.join(tmp, "audit.jsonl")}
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f)

    proc = subprocess.Popen([BIN, "--config", os.path.join(tmp, "config.json")])
    try:
        deadline = time.time() + 20
        while True:
            try:
                with open(os.path.join(mnt, "s0")) as f:
                    if f.read() == values["s0"]:
                        break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                print("FAIL: the mount did not come up")
                return 1
            time.sleep(0.05)

        url = f"http://{listen}/metrics"
        fuse_file, tmpfs_file = os.path.join(mnt, "s1"), os.path.join(shm, "s1")
        open_read_close(fuse_file)
        before = scrape(url)
        n_counted = 1000
        for _ in range(n_counted):
            open_read_close(fuse_file)
        after = scrape(url)
        per_op = {op: (after.get(op, 0) - before.get(op, 0)) / n_counted
                  for op in after}
        requests = sum(per_op.values())

        lat = {"fuse": [], "tmpfs": []}
        tput = {}
        for _ in range(REPEAT):
            lat["fuse"].append(latency_us(fuse_file, LAT_OPS))
            lat["tmpfs"].append(latency_us(tmpfs_file, LAT_OPS))
            for k in READERS:
                for kind in ("different", "same"):
                    for fsname, base in (("fuse", mnt), ("tmpfs", shm)):
                        paths = [os.path.join(base, f"s{i if kind == 'different' else 0}")
                                 for i in range(k)]
                        tput.setdefault((k, kind, fsname), []).append(throughput(paths))

        print(f"machine: {os.cpu_count()} CPUs, {os.uname().release};"
              f" audit={'on' if AUDIT else 'off'}; {REPEAT} rounds")
        print("fuse requests per open+read+close: "
              f"{requests:.2f} (" + ", ".join(f"{op}={v:.2f}" for op, v in
                                             sorted(per_op.items()) if v) + ")")
        f_med, t_med = statistics.median(lat["fuse"]), statistics.median(lat["tmpfs"])
        print(f"open_read_close_us  fuse  {minmed(lat['fuse'])}")
        print(f"open_read_close_us  tmpfs {minmed(lat['tmpfs'])}")
        print(f"ratio (median) fuse/tmpfs = {f_med / t_med:.2f} (goal <= 4)")
        print("throughput, open+read+close per second:")
        for kind in ("different", "same"):
            for k in READERS:
                fu, tm = tput[(k, kind, "fuse")], tput[(k, kind, "tmpfs")]
                print(f"  {k} readers, {kind:9} files: fuse {maxmed(fu)}"
                      f"   tmpfs {maxmed(tm)}")
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", tmp, shm])


if __name__ == "__main__":
    sys.exit(main())
