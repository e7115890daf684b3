#!/usr/bin/python3
"""Fleet simulation (issue 12 item 5): many secretfs agents against one fake Vault.

Each agent is a real secretfs process with a directory mount, K static KV v2
secrets at a short refresh and one dynamic (leased) database credential, all
against one in-process fake Vault (tests/fakes/fake_vault.py, plain HTTP,
ThreadingHTTPServer). Printed:
  capacity   requests/s the fake answers on its own (metadata GETs, 8 threads)
  start-up   peak requests/s while the whole fleet starts at once
  steady     metadata probes per secret per refresh interval (goal <= 1.0) and
             data reads (goal: 0 while nothing changes)
  outage     the fake sealed (503 "Vault is sealed") for OUTAGE seconds while
             every secret gets a new version; after unseal: peak and mean
             requests/s over the recovery window, peak / mean (goal <= 2) and
             the time until every agent's files hold the new value
  rss/cpu    total RSS of the fleet and CPU seconds used in steady state
The per-second request rate is written to fleet-rate.dat and, with gnuplot,
plotted to fleet-rate.png (in --out, default the current directory).

Run as root: /usr/bin/python3 bench/fleet/fleet.py [--quick] [--agents N]
             [--outage S] [--refresh S] [--out DIR] [--bin path/to/secretfs]
"""
import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from fakes.fake_vault import FakeVault  # noqa: E402

SECRETS_PER_AGENT = 3


def wait_until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def capacity(vault, token, seconds=2.0, threads=8):
    """Requests/s the fake answers alone: keep-alive clients on one metadata path."""
    import http.client
    host, port = vault.host, vault.port
    stop = time.monotonic() + seconds
    counts = []

    def client():
        n = 0
        conn = http.client.HTTPConnection(host, port, timeout=5)
        while time.monotonic() < stop:
            conn.request("GET", "/v1/secret/metadata/fleet/s0", headers={"X-Vault-Token": token})
            conn.getresponse().read()
            n += 1
        conn.close()
        counts.append(n)
    ts = [threading.Thread(target=client) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    vault.clear_requests()
    return sum(counts) / seconds


def agent_config(workdir, i, url, token_file, refresh):
    mount = os.path.join(workdir, f"a{i}", "mnt")
    os.makedirs(mount)
    secrets = {f"s{k}": {"backend": "vault", "path": f"secret/fleet/s{k}", "field": "v",
                         "refresh": refresh} for k in range(SECRETS_PER_AGENT)}
    secrets["db"] = {"backend": "vault", "path": "database/creds/app", "field": "password"}
    cfg = {"mount": {"path": mount, "type": "directory"},
           "backends": {"vault": {"type": "vault", "address": url,
                                  "auth": {"method": "token", "token_file": token_file}}},
           "secrets": secrets, "log": {"level": "info", "format": "text"},
           "startup_timeout": "120s"}
    path = os.path.join(workdir, f"a{i}", "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path, mount


def read(mount, name):
    try:
        with open(os.path.join(mount, name)) as f:
            return f.read()
    except OSError:
        return None


def rate(vault, t0, t1):
    """Requests per whole second in [t0, t1)."""
    per = collections.Counter(int(r.time - t0) for r in list(vault.requests)
                              if t0 <= r.time < t1)
    return [per.get(s, 0) for s in range(int(t1 - t0))]


def proc_stat(pids):
    rss = cpu = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                rss += next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
            with open(f"/proc/{pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
                cpu += (int(st[11]) + int(st[12])) / tick
        except (OSError, StopIteration):
            pass
    return rss, cpu


def plot(dat, png, title):
    if not shutil.which("gnuplot"):
        subprocess.run(["apt-get", "install", "-y", "-q", "gnuplot-nox"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not shutil.which("gnuplot"):
        print("plot: gnuplot not available (apt-get install gnuplot-nox); skipped")
        return
    script = (f"set terminal png size 1000,400; set output '{png}';"
              f"set title '{title}'; set xlabel 's'; set ylabel 'requests/s to Vault';"
              f"plot '{dat}' using 1:2 with steps title 'requests/s'")
    subprocess.run(["gnuplot", "-e", script], check=False)
    print(f"plot: {png}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--agents", type=int)
    ap.add_argument("--outage", type=float)
    ap.add_argument("--refresh", type=float)
    ap.add_argument("--out", default=".")
    ap.add_argument("--bin", default=os.environ.get("SECRETFS_BIN",
                                                    os.path.join(ROOT, "build", "secretfs")))
    a = ap.parse_args()
    agents = a.agents or (5 if a.quick else 200)
    outage = a.outage or (10 if a.quick else 60)
    refresh = a.refresh or (2 if a.quick else 10)
    steady = 3 * refresh if a.quick else 6 * refresh

    workdir = tempfile.mkdtemp(prefix="sfs-fleet-")
    vault = FakeVault(root_token=None).start()
    procs = []
    result = {}
    try:
        token = vault.create_token(ttl=24 * 3600)
        token_file = os.path.join(workdir, "token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, token.encode())
        os.close(fd)
        for k in range(SECRETS_PER_AGENT):
            vault.kv_put(f"secret/fleet/s{k}", {"v": f"v1-s{k}"})
        vault.add_dynamic_role("database", "app", default_ttl=max(30, 3 * refresh),
                               max_ttl=24 * 3600)
        cap = capacity(vault, token)
        result["capacity_rps"] = round(cap)
        print(f"fake capacity: {cap:.0f} requests/s (8 keep-alive clients)")

        mounts = []
        for i in range(agents):
            cfg, mount = agent_config(workdir, i, vault.url, token_file, f"{refresh:g}s")
            mounts.append(mount)
            log = open(os.path.join(workdir, f"a{i}", "log"), "w")
            procs.append(subprocess.Popen([a.bin, "--config", cfg], stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL))
            log.close()
        t_start = time.time()

        def all_have(value_of):
            return all(read(m, f"s{k}") == value_of(k) for m in mounts
                       for k in range(SECRETS_PER_AGENT))
        wait_until(lambda: all_have(lambda k: f"v1-s{k}") and
                   all(read(m, "db") for m in mounts), 120, "every agent's files")
        t_ready = time.time()
        time.sleep(2)
        start_rate = rate(vault, t_start, time.time())
        result["startup_s"] = round(t_ready - t_start, 2)
        result["startup_peak_rps"] = max(start_rate)
        print(f"start-up: {agents} agents all current in {t_ready - t_start:.1f} s; "
              f"peak {max(start_rate)} requests/s, {sum(start_rate)} requests")
        dead = [p.pid for p in procs if p.poll() is not None]
        if dead:
            raise SystemExit(f"agents exited: {dead}")

        # steady state
        pids = [p.pid for p in procs]
        t0 = time.time()
        _, cpu0 = proc_stat(pids)
        time.sleep(steady)
        t1 = time.time()
        rss, cpu1 = proc_stat(pids)
        reqs = [r for r in list(vault.requests) if t0 <= r.time < t1]
        probes = sum(1 for r in reqs if "/secret/metadata/fleet/" in r.path)
        data = sum(1 for r in reqs if "/secret/data/fleet/" in r.path)
        intervals = (t1 - t0) / refresh
        ppi = probes / (agents * SECRETS_PER_AGENT * intervals)
        result.update(probes_per_secret_per_interval=round(ppi, 3), steady_data_reads=data,
                      steady_requests=len(reqs), fleet_rss_mib=round(rss / 1024, 1),
                      rss_per_agent_kib=rss // agents,
                      steady_cpu_percent=round(100 * (cpu1 - cpu0) / (t1 - t0), 1))
        print(f"steady: {ppi:.3f} metadata probes per secret per {refresh:g} s interval "
              f"(goal <= 1.0); {data} data reads (goal 0); {len(reqs)} requests in "
              f"{t1 - t0:.0f} s; fleet RSS {rss / 1024:.1f} MiB ({rss // agents} KiB/agent); "
              f"CPU {100 * (cpu1 - cpu0) / (t1 - t0):.1f}% of one core")

        # outage: sealed (503), new versions written meanwhile, then unseal
        vault.seal()
        t_out = time.time()
        for k in range(SECRETS_PER_AGENT):
            vault.kv_put(f"secret/fleet/s{k}", {"v": f"v2-s{k}"})
        time.sleep(outage)
        vault.unseal()
        t_up = time.time()
        wait_until(lambda: all_have(lambda k: f"v2-s{k}"), outage + 600,
                   "every agent current after the outage")
        t_cur = time.time()
        window = max(t_cur - t_up, 2 * refresh)
        time.sleep(max(0.0, t_up + window - time.time()) + 1)
        rec = rate(vault, t_up, t_up + window)
        mean = sum(rec) / len(rec) if rec else 0
        peak = max(rec) if rec else 0
        result.update(outage_s=outage, outage_kind="503 sealed",
                      recovery_s=round(t_cur - t_up, 2), recovery_peak_rps=peak,
                      recovery_mean_rps=round(mean, 1),
                      recovery_peak_over_mean=round(peak / mean, 2) if mean else None)
        during = rate(vault, t_out, t_up)
        print(f"outage: sealed (503) {outage:g} s, {sum(during)} requests during it "
              f"(peak {max(during) if during else 0}/s)")
        print(f"recovery: every agent current {t_cur - t_up:.1f} s after unseal; window "
              f"{window:.0f} s: peak {peak}/s, mean {mean:.1f}/s, peak/mean "
              f"{peak / mean if mean else float('nan'):.2f} (goal <= 2)")

        all_rate = rate(vault, t_start, time.time())
        os.makedirs(a.out, exist_ok=True)
        dat = os.path.join(a.out, "fleet-rate.dat")
        with open(dat, "w") as f:
            for s, n in enumerate(all_rate):
                f.write(f"{s} {n}\n")
        result["marks_s"] = {"ready": round(t_ready - t_start), "seal": round(t_out - t_start),
                             "unseal": round(t_up - t_start)}
        plot(dat, os.path.join(a.out, "fleet-rate.png"),
             f"{agents} agents: start, steady, {outage:g} s outage at "
             f"{t_out - t_start:.0f} s, unseal at {t_up - t_start:.0f} s")
        print("RESULT " + json.dumps(result))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        vault.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
