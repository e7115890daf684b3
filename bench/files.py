#!/usr/bin/python3
"""Benchmark: many secrets from the file backend (issue 12, scale).

Measures, against targets that depend on the number of secrets:
  - time from exec to every file readable (1000: <= 0.5 s; 10 000: <= 2 s),
  - the daemon's RSS once serving (1000: <= 6 MiB; 10 000: <= 16 MiB), and
    the cost per secret: RSS above that of a daemon serving one secret,
    divided by the number of secrets,
  - the daemon's memory mappings (/proc/PID/maps lines; vm.max_map_count
    is 65 530 by default),
  - readdir of the first directory (--per-dir files), the first listing
    (the daemon answers) and a repeat (the kernel's cached listing),
  - the daemon's CPU (utime + stime) over --idle seconds of idle,
  - open+read+close of an unchanged file through the mount, compared with
    the same on tmpfs, and repeated pread of an open file.
With --audit the mount audits every open.

Run as root:
  /usr/bin/python3 bench/files.py [--secrets N] [--per-dir K] [--idle S]
                                  [--audit] [path/to/secretfs]
SECRETFS_BENCH_FILES=N is the default of --secrets (1000 otherwise).
With SECRETFS_BENCH_TELEMETRY=1 the config gains a "telemetry" listener on
a free loopback port, scraped once (/metrics) before RSS is measured: the
difference from a run without it is what the listener costs.
"""
import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bin", nargs="?", default=os.path.join(ROOT, "build", "secretfs"))
    ap.add_argument("--secrets", type=int,
                    default=int(os.environ.get("SECRETFS_BENCH_FILES", "1000")))
    ap.add_argument("--per-dir", type=int, default=100,
                    help="files per directory (the readdir figure lists one)")
    ap.add_argument("--idle", type=float, default=20,
                    help="seconds of idle to measure CPU over (0: skip)")
    ap.add_argument("--audit", action="store_true")
    return ap.parse_args()


def proc_status(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def map_count(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for _ in f)


def time_loop(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def open_read_close(path):
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 4096)
    os.close(fd)


class Daemon:
    """A secretfs serving n secrets from a file backend, in a temporary
    directory; stopped (by PID) and cleaned up by stop()."""

    def __init__(self, args, n, tmp):
        self.n, self.per_dir = n, args.per_dir
        self.mnt = os.path.join(tmp, "mnt")
        self.values = {f"s{i}": secrets.token_hex(16) for i in range(n)}
        with open(os.path.join(tmp, "secrets.json"), "w") as f:
            json.dump(self.values, f)
        cfg = {
            "mount": {"path": self.mnt},
            "backends": {"local": {"type": "file", "path": "secrets.json"}},
            "secrets": {self.name(i): {"backend": "local", "path": f"s{i}"}
                        for i in range(n)},
            "log": {"level": "warn"},
        }
        if args.audit:
            cfg["audit"] = {"path": os.path.join(tmp, "audit.jsonl")}
        self.listen = None
        if os.environ.get("SECRETFS_BENCH_TELEMETRY", "") not in ("", "0"):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.listen = f"127.0.0.1:{s.getsockname()[1]}"
            cfg["telemetry"] = {"listen": self.listen}
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([args.bin, "--config",
                                      os.path.join(tmp, "config.json")])

    def name(self, i):
        return f"d{i // self.per_dir}/s{i}"

    def wait_all_readable(self, timeout=60):
        """Seconds from exec until every file has read back its value, or
        None. A pass stops at the first file not there yet and goes on from
        it: the time includes one open+read+close of every file."""
        want = [self.values[f"s{i}"].encode() for i in range(self.n)]
        paths = [f"{self.mnt}/{self.name(i)}" for i in range(self.n)]
        deadline = self.t0 + timeout
        i = 0
        while i < self.n:
            if time.perf_counter() > deadline or self.proc.poll() is not None:
                return None
            try:
                fd = os.open(paths[i], os.O_RDONLY)
                try:
                    ok = os.read(fd, 4096) == want[i]
                finally:
                    os.close(fd)
            except OSError:
                ok = False
            if ok:
                i += 1
            else:
                time.sleep(0.002)
        return time.perf_counter() - self.t0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["fusermount3", "-uz", self.mnt], stderr=subprocess.DEVNULL)


def baseline_rss(args):
    """RSS of a daemon serving one secret (what every daemon costs)."""
    tmp = tempfile.mkdtemp(prefix="secretfs-bench-")
    d = Daemon(args, 1, tmp)
    try:
        if d.wait_all_readable(20) is None:
            return None
        return proc_status(d.proc.pid)
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", tmp])


def main():
    args = parse_args()
    n = args.secrets
    big = n >= 10000
    target_s, target_kib = (2.0, 16 * 1024) if big else (0.5, 6 * 1024)
    base = baseline_rss(args)
    tmp = tempfile.mkdtemp(prefix="secretfs-bench-")
    d = Daemon(args, n, tmp)
    try:
        ready = d.wait_all_readable()
        if ready is None:
            print(f"FAIL: not every file readable after 60 s (exit {d.proc.poll()})")
            return 1
        scraped = 0
        if d.listen:
            with urllib.request.urlopen(f"http://{d.listen}/metrics", timeout=10) as r:
                scraped = len(r.read())
        pid = d.proc.pid
        rss = proc_status(pid)
        rss_anon, rss_file = proc_status(pid, "RssAnon"), proc_status(pid, "RssFile")
        maps = map_count(pid)

        first_dir = os.path.join(d.mnt, "d0")
        t = time.perf_counter()
        listed = len(os.listdir(first_dir))
        readdir_cold = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        os.listdir(first_dir)
        readdir_warm = (time.perf_counter() - t) * 1e3

        idle_s = 0.0
        if args.idle > 0:
            c0, t = cpu_ticks(pid), time.perf_counter()
            time.sleep(args.idle)
            idle_s = (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK")
            idle_wall = time.perf_counter() - t

        path = f"{d.mnt}/{d.name(0)}"
        open_read_close(path)
        fuse_orc = time_loop(lambda: open_read_close(path), 20000)
        tpath = os.path.join(tempfile.mkdtemp(dir="/dev/shm"), "s0")
        with open(tpath, "w") as f:
            f.write(d.values["s0"])
        tmpfs_orc = time_loop(lambda: open_read_close(tpath), 20000)
        subprocess.run(["rm", "-rf", os.path.dirname(tpath)])
        fd = os.open(path, os.O_RDONLY)
        fuse_pread = time_loop(lambda: os.pread(fd, 4096, 0), 100000)
        os.close(fd)

        print(f"files={n} all_readable_s={ready:.3f} (target <= {target_s})")
        print(f"daemon_rss_kib={rss} (target <= {target_kib})"
              f" anon={rss_anon} file={rss_file}"
              + (f" with telemetry, /metrics {scraped} bytes" if d.listen else ""))
        if base is not None:
            print(f"per_secret_bytes={(rss - base) * 1024 / n:.0f}"
                  f" (above a 1-secret daemon's rss {base} KiB)")
        print(f"memory_mappings={maps}")
        print(f"readdir_ms entries={listed} first={readdir_cold:.2f}"
              f" cached={readdir_warm:.2f}")
        if args.idle > 0:
            print(f"idle_cpu_s={idle_s:.2f} over {idle_wall:.0f} s")
        print(f"open_read_close_us fuse={fuse_orc:.2f} tmpfs={tmpfs_orc:.2f}"
              f" audit={'on' if args.audit else 'off'}")
        print(f"pread_cached_us fuse={fuse_pread:.2f}")
        ok = ready <= target_s and rss <= target_kib
        print("targets:", "met" if ok else "NOT met")
        return 0 if ok else 1
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
