#!/usr/bin/python3
"""Benchmark: open+read+close of unchanged secrets: tmpfs, secretfs in its
default mode and secretfs with mount.fast_open, side by side from one run
(min and median of REPEAT rounds):
  - single-threaded open+read+close latency in µs,
  - throughput (open+read+close per second) with 1, 2 and 8 readers, each
    on its own file ("different") and all on one file ("same"); readers are
    processes (Python threads would queue on the interpreter's lock),
  - FUSE requests the daemon answered per open+read+close and per listing
    of a directory, by operation (from the request-duration histogram
    counts in /metrics).
Goals (issue 12): default at most 4x tmpfs single-threaded, fast_open at
most 1.5x, throughput that grows with readers.

Run as root: /usr/bin/python3 bench/reads.py [--audit] [--quick] [path/to/secretfs]
--audit runs the default mode with an "audit" (every open audited, no
default_permissions; fast_open refuses an audit, so it is left out);
--quick runs short rounds (a smoke test for CI). The last line is
"RESULT {json}" with every figure.
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
BIN = os.path.abspath(ARGS[0]) if ARGS else os.path.join(ROOT, "build", "secretfs")
AUDIT = "--audit" in FLAGS
QUICK = "--quick" in FLAGS
N_FILES = 16
REPEAT = int(os.environ.get("REPEAT", 2 if QUICK else 5))
LAT_OPS = 2000 if QUICK else 20000
TPUT_SECONDS = 0.3 if QUICK else 1.5
READERS = (1, 2, 8)
COUNTED = 200 if QUICK else 1000


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


def settled_scrape(url, tries=100):
    """The counts once two scrapes 10 ms apart agree: a request is counted
    after its reply, and close does not wait for the RELEASE it sends."""
    last = scrape(url)
    for _ in range(tries):
        time.sleep(0.01)
        now = scrape(url)
        if now == last:
            break
        last = now
    return last


def requests_per(url, fn, n):
    """FUSE requests by operation per call of fn (n calls, after a warm one)."""
    fn()
    before = settled_scrape(url)
    for _ in range(n):
        fn()
    after = settled_scrape(url)
    return {op: (after.get(op, 0) - before.get(op, 0)) / n for op in after
            if after.get(op, 0) != before.get(op, 0)}


def free_listen():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


class Daemon:
    """A secretfs on its own mount and telemetry port, over the shared
    secrets file; stop() ends it by PID and detaches the mount."""

    def __init__(self, tmp, name, values, mount_keys, top):
        self.mnt = os.path.join(tmp, f"mnt-{name}")
        self.listen = free_listen()
        cfg = {
            "mount": {"path": self.mnt, **mount_keys},
            "backends": {"local": {"type": "file", "path": "secrets.json"}},
            "secrets": {f"d/{n}": {"backend": "local", "path": n} for n in values},
            "telemetry": {"listen": self.listen},
            "log": {"level": "warn"},
            **top,
        }
        path = os.path.join(tmp, f"config-{name}.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.proc = subprocess.Popen([BIN, "--config", path], cwd=tmp)

    def wait(self, values):
        deadline = time.time() + 20
        while time.time() < deadline and self.proc.poll() is None:
            try:
                with open(os.path.join(self.mnt, "d", "s0")) as f:
                    if f.read() == values["s0"]:
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["fusermount3", "-uz", self.mnt], stderr=subprocess.DEVNULL)


def minmed(xs, fmt="9.1f"):
    return f"min={min(xs):{fmt}} med={statistics.median(xs):{fmt}}"


def summary(xs):
    return {"min": round(min(xs), 2), "median": round(statistics.median(xs), 2)}


def main():
    tmp = tempfile.mkdtemp(prefix="secretfs-reads-")
    shm = tempfile.mkdtemp(prefix="secretfs-reads-", dir="/dev/shm")
    values = {f"s{i}": secrets.token_hex(32) for i in range(N_FILES)}
    with open(os.path.join(tmp, "secrets.json"), "w") as f:
        json.dump(values, f)
    os.mkdir(os.path.join(shm, "d"))
    for name, v in values.items():
        with open(os.path.join(shm, "d", name), "w") as f:
            f.write(v)
    modes = {"default": ({}, {"audit": {"path": os.path.join(tmp, "audit.jsonl")}}
                         if AUDIT else {})}
    if not AUDIT:
        modes["fast_open"] = ({"fast_open": True}, {})
    daemons = {}
    try:
        for name, (mount_keys, top) in modes.items():
            daemons[name] = Daemon(tmp, name, values, mount_keys, top)
        for name, d in daemons.items():
            if not d.wait(values):
                print(f"FAIL: the {name} mount did not come up")
                return 1
        bases = {"tmpfs": shm, **{name: d.mnt for name, d in daemons.items()}}

        per_open, per_listing = {}, {}
        for name, d in daemons.items():
            url = f"http://{d.listen}/metrics"
            one = os.path.join(d.mnt, "d", "s1")
            per_open[name] = requests_per(url, lambda: open_read_close(one), COUNTED)
            listing = os.path.join(d.mnt, "d")
            per_listing[name] = requests_per(url, lambda: os.listdir(listing), COUNTED)
            # Every file is read whole and right (a benchmark of wrong
            # answers measures nothing).
            for n, v in values.items():
                with open(os.path.join(d.mnt, "d", n)) as f:
                    if f.read() != v:
                        print(f"FAIL: {name}: d/{n} reads wrong")
                        return 1

        lat = {fs: [] for fs in bases}
        tput = {}
        for _ in range(REPEAT):
            for fs, base in bases.items():
                lat[fs].append(latency_us(os.path.join(base, "d", "s1"), LAT_OPS))
            for k in READERS:
                for kind in ("different", "same"):
                    for fs, base in bases.items():
                        paths = [os.path.join(base, "d",
                                              f"s{i if kind == 'different' else 0}")
                                 for i in range(k)]
                        tput.setdefault((k, kind, fs), []).append(throughput(paths))

        print(f"machine: {os.cpu_count()} CPUs, {os.uname().release};"
              f" audit={'on' if AUDIT else 'off'}; {REPEAT} rounds")
        for name in daemons:
            print(f"{name}: fuse requests per open+read+close "
                  f"{sum(per_open[name].values()):.2f} (" +
                  ", ".join(f"{op}={v:.2f}" for op, v in sorted(per_open[name].items())) +
                  f"); per listing {sum(per_listing[name].values()):.2f}")
        t_med = statistics.median(lat["tmpfs"])
        print("open+read+close, µs (single-threaded):")
        for fs in bases:
            ratio = statistics.median(lat[fs]) / t_med
            print(f"  {fs:9} {minmed(lat[fs])}   median/tmpfs {ratio:5.2f}")
        print("throughput, open+read+close per second (min, median of the rounds):")
        for kind in ("different", "same"):
            for k in READERS:
                print(f"  {k} readers, {kind:9} files: " + "   ".join(
                    f"{fs} {minmed(tput[(k, kind, fs)], '8.0f')}" for fs in bases))
        result = {
            "audit": AUDIT, "rounds": REPEAT, "cpus": os.cpu_count(),
            "kernel": os.uname().release,
            "requests_per_open": per_open, "requests_per_listing": per_listing,
            "latency_us": {fs: summary(v) for fs, v in lat.items()},
            "throughput": {f"{fs}/{kind}/{k}": summary(v)
                           for (k, kind, fs), v in tput.items()},
        }
        print("RESULT " + json.dumps(result))
        return 0
    finally:
        for d in daemons.values():
            d.stop()
        subprocess.run(["rm", "-rf", tmp, shm])


if __name__ == "__main__":
    sys.exit(main())
