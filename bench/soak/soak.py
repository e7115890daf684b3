#!/usr/bin/python3
"""Soak benchmark (issue 15 item 6): one secretfs FUSE daemon under constant rotation.

One real secretfs daemon serves, through a FUSE mount:
  file   FILES keys of a file backend whose JSON file is rewritten (atomic
         rename) every second;
  dev    a dev backend pair with a 1 s lease (replaced at 85-90 % of it,
         the old one revoked after revoke_grace);
  db     a dynamic database credential of an in-process fake Vault
         (tests/fakes/fake_vault.py) with a short non-renewable lease (--lease,
         default 3 s): replaced before expiry and the old lease revoked,
         continuously;
  kv     KV_KEYS KV v2 secrets whose version changes every second (refresh 1 s).
Every value written by the bench is self-describing and of a fixed length,
"v<N>-<name>-<checksum>", so a torn or mixed read is detectable; the database
credential's username and password carry the same N (a read of db.env that
mixes two credentials is torn). The dev pair (made up by secretfs) is served
as JSON and checked for shape and length. An on_change command (argv, no
shell of secretfs's own: /bin/sh -c appending a line) counts firings.

READERS threads open/fstat/read/close the files in a loop; a read is good when
it has exactly st_size bytes and is one whole version. The daemon's RSS, fd
count (/proc/PID/fd), threads and memory mappings (/proc/PID/maps lines) are
sampled every 10 s (2 s with --quick) and the least-squares slope of each over
the second half of the run is reported per hour (goal: flat). At the end the
daemon is killed with SIGKILL while the readers run: each must get an error,
not hang (bounded wait): ENOTCONN/EIO in flight, or ENOENT once the
privileged monitor has detached the mount (with the hardening off, a stale
mount stays, which secretfs detaches at its next start); and a new daemon
on the same config must serve the mount again.

Run as root: /usr/bin/python3 bench/soak/soak.py [--quick] [--minutes N]
             [--readers N] [--pause-ms MS] [--lease S] [--daemon-nice N]
             [--bin path/to/secretfs] [--keep DIR]
Prints progress lines and one "RESULT {json}" line; exit 0 when every goal
that is a count (torn, failed, hung readers, recovery) is met, 1 otherwise.
"""
import argparse
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from fakes.fake_vault import FakeVault  # noqa: E402

FILES = 4           # keys of the file backend
KV_KEYS = 2         # KV v2 secrets
KILL_BOUND_S = 10   # every reader must have its error within this after SIGKILL
VALUE_RE = re.compile(r"^v(\d{10})-([a-z0-9]+)-([0-9a-f]{16})$")


def value(n, name):
    """The self-describing value of version n of name: fixed length per name."""
    body = f"v{n:010d}-{name}"
    return f"{body}-{hashlib.sha256(body.encode()).hexdigest()[:16]}"


def parse_value(text, name):
    """Version number of a whole value of name, or None when it is not one."""
    m = VALUE_RE.match(text)
    if not m or m.group(2) != name or value(int(m.group(1)), name) != text:
        return None
    return int(m.group(1))


def parse_env(text):
    out = {}
    for ln in text.splitlines():
        k, sep, v = ln.partition("=")
        if not sep or len(v) < 2 or v[0] != "'" or v[-1] != "'":
            return None
        out[k] = v[1:-1]
    return out


def check_plain(name):
    return lambda text: parse_value(text, name)


def check_db(text):
    """db.env: password and username of one credential, same N."""
    env = parse_env(text)
    if env is None or set(env) != {"username", "password"}:
        return None
    n = parse_value(env["password"], "db")
    m = re.fullmatch(r"db-(\d{10})", env["username"])
    if n is None or not m or int(m.group(1)) != n:
        return None
    return n


def check_dev(text):
    """dev.json: {"password": 24 characters, "username": "dev-soak-<n>"}."""
    try:
        d = json.loads(text)
    except ValueError:
        return None
    if not isinstance(d, dict) or set(d) != {"username", "password"}:
        return None
    m = re.fullmatch(r"dev-soak-(\d+)", d["username"])
    if not m or not isinstance(d["password"], str) or len(d["password"]) != 24:
        return None
    return int(m.group(1))


def write_atomic(path, text):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(ln.split()[4] == path for ln in f)


def proc_sample(pid):
    """(rss KiB, fds, threads, maps lines) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            st = dict(ln.split(":", 1) for ln in f if ":" in ln)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/maps") as f:
            maps = sum(1 for _ in f)
        return (int(st["VmRSS"].split()[0]), fds, int(st["Threads"]), maps)
    except (OSError, KeyError, ValueError):
        return None


def slope_per_hour(points):
    """Least-squares slope of [(t seconds, y)] in y per hour (None under 3 points)."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in points) / var * 3600


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reads = 0
        self.torn = 0
        self.torn_examples = []
        self.failed = {}            # errno name -> count
        self.backwards = 0          # a reader saw a version older than its last one
        self.versions = {}          # file -> set of versions seen

    def good(self, name, n):
        with self.lock:
            self.reads += 1
            self.versions.setdefault(name, set()).add(n)

    def bad(self, name, length, size):
        with self.lock:
            self.torn += 1
            if len(self.torn_examples) < 5:      # lengths only: never a value
                self.torn_examples.append({"file": name, "read": length, "st_size": size})

    def fail(self, e):
        with self.lock:
            k = errno.errorcode.get(e.errno, str(e.errno))
            self.failed[k] = self.failed.get(k, 0) + 1


class Reader(threading.Thread):
    """Opens, reads and closes the files in turn until stopped. After the daemon
    is killed (kill_mode), records the first error and stops."""

    def __init__(self, idx, mount, checks, stats, pause=0.0):
        super().__init__(daemon=True, name=f"reader{idx}")
        self.idx, self.mount, self.checks, self.stats = idx, mount, checks, stats
        self.pause = pause
        self.stop = threading.Event()
        self.kill_mode = False
        self.kill_errno = None
        self.last_op = time.monotonic()
        self.done = threading.Event()

    def read_one(self, name):
        fd = os.open(os.path.join(self.mount, name), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks), size
        finally:
            os.close(fd)

    def run(self):
        names = list(self.checks)
        last = {}
        i = self.idx
        try:
            while not self.stop.is_set():
                name = names[i % len(names)]
                i += 1
                if self.pause:
                    time.sleep(self.pause)
                try:
                    data, size = self.read_one(name)
                except OSError as e:
                    if self.kill_mode:
                        self.kill_errno = errno.errorcode.get(e.errno, str(e.errno))
                        return
                    self.stats.fail(e)
                    continue
                finally:
                    self.last_op = time.monotonic()
                if self.kill_mode:
                    continue
                try:
                    n = self.checks[name](data.decode()) if len(data) == size else None
                except UnicodeDecodeError:
                    n = None
                if n is None:
                    self.stats.bad(name, len(data), size)
                    continue
                if n < last.get(name, -1):
                    with self.stats.lock:
                        self.stats.backwards += 1
                last[name] = n
                self.stats.good(name, n)
        finally:
            self.done.set()


def config(workdir, vault, token_file, lease_s, counter):
    mount = os.path.join(workdir, "mnt")
    hook = ["/bin/sh", "-c", f'echo "$SECRETFS_FILES" >> {counter}']
    on_change = {"command": hook, "debounce": "200ms"}
    secrets = {f"file/f{i}": {"backend": "local", "path": f"f{i}"} for i in range(FILES)}
    secrets["file/f0"]["on_change"] = on_change
    secrets["dev.json"] = {"backend": "fake", "path": "soak", "format": "json",
                           "on_change": on_change}
    secrets["db.env"] = {"backend": "vault", "path": "database/creds/soak", "format": "env",
                         "on_change": on_change}
    for k in range(KV_KEYS):
        secrets[f"kv/k{k}"] = {"backend": "vault", "path": f"secret/soak/k{k}", "field": "v",
                               "refresh": "1s"}
    cfg = {"mount": {"path": mount},
           "backends": {
               "local": {"type": "file", "path": "secrets.json"},
               "fake": {"type": "dev", "ttl": "1s", "revoke_grace": "1s",
                        "username_prefix": "dev-"},
               "vault": {"type": "vault", "address": vault.url, "revoke_grace": "1s",
                         "auth": {"method": "token", "token_file": token_file}}},
           "secrets": secrets, "log": {"level": "info", "format": "text"},
           "startup_timeout": "30s"}
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    return path, mount


class Rotator(threading.Thread):
    """Every second: the file backend's file rewritten, each KV v2 secret a new version."""

    def __init__(self, workdir, vault):
        super().__init__(daemon=True, name="rotator")
        self.path = os.path.join(workdir, "secrets.json")
        self.vault = vault
        self.n = 0
        self.stop = threading.Event()
        self.step()

    def step(self):
        self.n += 1
        write_atomic(self.path, json.dumps({f"f{i}": value(self.n, f"f{i}")
                                            for i in range(FILES)}))
        for k in range(KV_KEYS):
            self.vault.kv_put(f"secret/soak/k{k}", {"v": value(self.n, f"k{k}")})

    def run(self):
        nxt = time.monotonic() + 1
        while not self.stop.wait(max(0.0, nxt - time.monotonic())):
            self.step()
            nxt += 1
            # the fake keeps every request; a long soak must not grow the bench
            if self.n % 60 == 0:
                self.vault.clear_requests()


def served(mount):
    try:
        with open(os.path.join(mount, "db.env"), "rb") as f:
            return check_db(f.read().decode()) is not None
    except (OSError, UnicodeDecodeError):
        return False


def start_daemon(binary, cfg, log_path, mount, nice=None, timeout=60):
    log = open(log_path, "a")
    pre = None if nice is None else (lambda: os.setpriority(os.PRIO_PROCESS, 0, nice))
    p = subprocess.Popen([binary, "--config", cfg], stdout=log, stderr=log,
                         stdin=subprocess.DEVNULL, preexec_fn=pre)
    log.close()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            raise SystemExit(f"secretfs exited with {p.returncode} at start (log {log_path})")
        # a read, not a stat: after a kill -9 the kernel's cached dentries and
        # attributes of the stale mount still answer stat(2)
        if is_mounted(mount) and served(mount):
            return p
        time.sleep(0.05)
    p.kill()
    p.wait()
    raise SystemExit(f"secretfs did not serve {mount} within {timeout} s")


def stop_daemon(p, mount):
    if p is not None and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if is_mounted(mount):
        subprocess.run(["umount", "-l", mount], check=False)


def kill_mid_read(daemon, mount, checks, held_name):
    """SIGKILL while readers run; returns (errors by reader, hung readers, seconds)."""
    stats = Stats()
    readers = [Reader(i, mount, checks, stats) for i in range(8)]
    for r in readers:
        r.start()
    end = time.monotonic() + 5
    while stats.reads < 50 and time.monotonic() < end:
        time.sleep(0.01)
    # a handle held open across the kill, read after it
    held = os.open(os.path.join(mount, held_name), os.O_RDONLY)
    for r in readers:
        r.kill_mode = True
    t0 = time.monotonic()
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    for r in readers:
        r.done.wait(max(0.0, t0 + KILL_BOUND_S - time.monotonic()))
    t_all = time.monotonic() - t0
    held_out = []

    def read_held():
        try:
            held_out.append("read %d bytes (page cache)" % len(os.pread(held, 4096, 0)))
        except OSError as e:
            held_out.append(errno.errorcode.get(e.errno, str(e.errno)))
    th = threading.Thread(target=read_held, daemon=True)
    th.start()
    th.join(KILL_BOUND_S)
    held_result = held_out[0] if held_out else "hung"
    if held_out:
        os.close(held)
    hung = [r.name for r in readers if not r.done.is_set()]
    for r in readers:
        r.stop.set()
    errs = {}
    for r in readers:
        if r.kill_errno:
            errs[r.kill_errno] = errs.get(r.kill_errno, 0) + 1
    return errs, held_result, hung, t_all


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few minutes, samples every 2 s")
    ap.add_argument("--minutes", type=float, help="run length (default 60, quick 3)")
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--lease", type=float, default=3.0,
                    help="TTL of the database credential (s)")
    ap.add_argument("--pause-ms", type=float, default=0.0,
                    help="each reader sleeps this long between reads (default 0: flat out)")
    ap.add_argument("--daemon-nice", type=int,
                    help="nice value of the daemon (default: the bench's own; run the bench "
                         "under nice and the daemon at 0 to load only the readers down)")
    ap.add_argument("--keep", help="copy the daemon's log and samples here")
    ap.add_argument("--bin", default=os.environ.get("SECRETFS_BIN",
                                                    os.path.join(ROOT, "build", "secretfs")))
    a = ap.parse_args()
    minutes = a.minutes if a.minutes is not None else (3 if a.quick else 60)
    interval = 2 if a.quick else 10

    workdir = tempfile.mkdtemp(prefix="sfs-soak-")
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    counter = os.path.join(workdir, "on_change.count")
    open(counter, "w").close()
    log_path = os.path.join(workdir, "secretfs.log")
    vault = FakeVault(root_token=None).start()
    issued, revoked = [0], [0]
    lock = threading.Lock()

    def issue(req):
        with lock:
            issued[0] += 1
            n = issued[0]
        return {"username": f"db-{n:010d}", "password": value(n, "db")}

    def revoke(lease):
        with lock:
            revoked[0] += 1

    daemon = rotator = None
    mount = os.path.join(workdir, "mnt")
    readers = []
    result = {"minutes": minutes, "readers": a.readers, "pause_ms": a.pause_ms,
              "sample_interval_s": interval}
    ok = False
    try:
        token = vault.create_token(ttl=0)
        token_file = os.path.join(workdir, "token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, token.encode())
        os.close(fd)
        vault.add_dynamic_role("database", "soak", default_ttl=a.lease, max_ttl=a.lease,
                               renewable=False, issue=issue, revoke=revoke)
        rotator = Rotator(workdir, vault)
        cfg, mount = config(workdir, vault, token_file, a.lease, counter)
        daemon = start_daemon(a.bin, cfg, log_path, mount, a.daemon_nice)
        pid = daemon.pid
        print(f"secretfs pid {pid} serving {mount}; {minutes:g} min, {a.readers} readers, "
              f"samples every {interval} s", flush=True)

        checks = {f"file/f{i}": check_plain(f"f{i}") for i in range(FILES)}
        checks.update({f"kv/k{k}": check_plain(f"k{k}") for k in range(KV_KEYS)})
        checks["db.env"] = check_db
        checks["dev.json"] = check_dev
        stats = Stats()
        rotator.start()
        readers = [Reader(i, mount, checks, stats, a.pause_ms / 1000)
                   for i in range(a.readers)]
        for r in readers:
            r.start()

        samples = []                  # (t, rss KiB, fds, threads, maps)
        t0 = time.monotonic()
        t_end = t0 + minutes * 60
        next_print = t0
        while True:
            now = time.monotonic()
            s = proc_sample(pid)
            if s is None or daemon.poll() is not None:
                raise SystemExit(f"secretfs exited during the soak (log {log_path})")
            samples.append((now - t0,) + s)
            if now >= next_print:
                with stats.lock:
                    print(f"[{(now - t0) / 60:5.1f} min] rss {s[0]} KiB fds {s[1]} threads "
                          f"{s[2]} maps {s[3]}; reads {stats.reads} torn {stats.torn} "
                          f"failed {sum(stats.failed.values())}", flush=True)
                next_print = now + (30 if a.quick else 300)
            if now >= t_end:
                break
            time.sleep(min(interval, max(0.0, t_end - now)))
        for r in readers:
            r.stop.set()
        for r in readers:
            r.join(timeout=KILL_BOUND_S)
        elapsed = time.monotonic() - t0
        stuck = [r.name for r in readers if r.is_alive()]

        half = [x for x in samples if x[0] >= samples[-1][0] / 2]
        names = ("rss_kib", "fds", "threads", "maps")
        slopes = {f"{k}_per_hour": slope_per_hour([(x[0], x[1 + i]) for x in half])
                  for i, k in enumerate(names)}
        slopes = {k: (round(v, 2) if v is not None else None) for k, v in slopes.items()}
        with open(counter) as f:
            firings = sum(1 for _ in f)
        rotations = {k: len(v) - 1 for k, v in sorted(stats.versions.items())}
        result.update(
            elapsed_s=round(elapsed, 1), reads=stats.reads, torn=stats.torn,
            torn_examples=stats.torn_examples, failed=sum(stats.failed.values()),
            failed_by_errno=stats.failed, backwards=stats.backwards, stuck_readers=stuck,
            reads_per_s=round(stats.reads / elapsed, 1), rotations_seen=rotations,
            writes=rotator.n, db_leases_issued=issued[0], db_leases_revoked=revoked[0],
            on_change_firings=firings, samples=len(samples),
            first={k: samples[0][1 + i] for i, k in enumerate(names)},
            last={k: samples[-1][1 + i] for i, k in enumerate(names)},
            peak={k: max(x[1 + i] for x in samples) for i, k in enumerate(names)},
            slope_second_half=slopes)
        print(f"reads {stats.reads} ({stats.reads / elapsed:.0f}/s): torn {stats.torn}, "
              f"failed {sum(stats.failed.values())} {stats.failed or ''}, backwards "
              f"{stats.backwards}; rotations seen {rotations}; db leases issued {issued[0]} "
              f"revoked {revoked[0]}; on_change firings {firings}", flush=True)
        print("slopes over the second half, per hour: " +
              ", ".join(f"{k} {v}" for k, v in slopes.items()), flush=True)
        if a.keep:
            with open(os.path.join(a.keep, "soak-samples.dat"), "w") as f:
                f.write("# t_s rss_kib fds threads maps\n")
                for x in samples:
                    f.write(" ".join(str(round(v, 1) if isinstance(v, float) else v)
                                     for v in x) + "\n")

        # kill -9 mid-read, then a new start on the same mount point
        kill_errs, held_result, hung, t_kill = kill_mid_read(daemon, mount, checks, "file/f1")
        result.update(kill_reader_errors=kill_errs, kill_held_handle=held_result,
                      kill_hung_readers=hung, kill_all_errored_s=round(t_kill, 3))
        print(f"kill -9 mid-read: reader errors {kill_errs}, held handle {held_result}, "
              f"hung {hung or 'none'} ({t_kill:.2f} s)", flush=True)
        t1 = time.monotonic()
        daemon = start_daemon(a.bin, cfg, log_path, mount, a.daemon_nice)
        data, _ = Reader(0, mount, checks, Stats()).read_one("file/f0")
        recovered = check_plain("f0")(data.decode()) is not None
        result.update(restart_recovered=recovered, restart_s=round(time.monotonic() - t1, 2))
        print(f"restart on the mount point: {'recovered' if recovered else 'NOT recovered'} in "
              f"{time.monotonic() - t1:.2f} s", flush=True)
        ok = (stats.torn == 0 and not stats.failed and not stuck and not hung and
              recovered and firings > 0 and all(v > 0 for v in rotations.values()) and
              len(kill_errs) > 0 and held_result != "hung")
        result["ok"] = ok
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        for r in readers:
            r.stop.set()
        if rotator is not None:
            rotator.stop.set()
        stop_daemon(daemon, mount)
        vault.stop()
        if a.keep:
            shutil.copy(log_path, os.path.join(a.keep, "secretfs.log"))
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
