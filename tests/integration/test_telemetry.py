"""Telemetry: the "telemetry" listener's /metrics (checked by promtool and
scraped by a real Prometheus), /healthz and /readyz, its bounds, its
config checks and start-up errors, on a real FUSE daemon."""

import json
import os
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request

import pytest

from helpers.harness import TIMEOUT, free_port, rand_token, sample, wait_until

pytestmark = pytest.mark.fuse

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

SECRETS = {"db/password": {"backend": "local", "path": "db", "field": "password"},
           "api-key": {"backend": "local", "path": "api"}}


def http(address, method, path, headers=None, body=None):
    """One HTTP/1.1 request over TCP ("host:port") or a unix socket path
    ("unix:/p"); returns (status, headers dict, body text). Bounded."""
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(address[5:])
        host = "localhost"
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    with sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for h in header_lines:
        k, _, v = h.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    status = int(status_line.split()[1]) if status_line else 0
    return status, hdrs, payload.decode("utf-8", "replace")


def get(address, path):
    return http(address, "GET", path)


def start(sandbox, listen=None, secrets=SECRETS, data=None, startup_timeout="10s",
          **telemetry):
    listen = listen or f"127.0.0.1:{free_port()}"
    data = data if data is not None else {"db": {"password": rand_token(32)},
                                          "api": rand_token(24)}
    d = sandbox.start(secrets, data=data, startup_timeout=startup_timeout,
                      telemetry={"listen": listen, **telemetry})
    d.listen = listen
    d.data = data
    wait_until(lambda: get(listen, "/healthz")[0] == 200, what="/healthz 200")
    return d


def test_metrics_pass_promtool_and_hold_the_required_families(sandbox):
    d = start(sandbox)
    assert d.read("db/password") == d.data["db"]["password"]
    status, hdrs, body = get(d.listen, "/metrics")
    assert status == 200
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, text=True,
                       capture_output=True, timeout=TIMEOUT, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    for family in ("secretfs_build_info", "secretfs_backend_requests_total",
                   "secretfs_backend_request_duration_seconds",
                   "secretfs_source_last_success_timestamp_seconds",
                   "secretfs_source_ready", "secretfs_lease_expiry_timestamp_seconds",
                   "secretfs_lease_renewals_total", "secretfs_lease_replacements_total",
                   "secretfs_lease_revocations_total", "secretfs_file_updates_total",
                   "process_resident_memory_bytes", "process_cpu_seconds_total",
                   "process_open_fds", "process_start_time_seconds"):
        assert f"# TYPE {family} " in body, family
    assert sample(body, "secretfs_source_ready", source="local:db") == 1
    assert sample(body, "secretfs_file_updates_total", file="api-key") == 1
    assert sample(body, "secretfs_backend_requests_total", backend="local",
                  operation="read", outcome="ok") >= 2
    assert sample(body, "process_resident_memory_bytes") > 1 << 20
    assert sample(body, "process_start_time_seconds") > 1.6e9


def test_fuse_opens_and_request_durations_are_counted(sandbox):
    d = start(sandbox)
    for _ in range(5):
        assert d.read("api-key") == d.data["api"]

    def opens():
        body = get(d.listen, "/metrics")[2]
        return body, sample(body, "secretfs_file_opens_total", file="api-key", result="ok")

    wait_until(lambda: (opens()[1] or 0) >= 5, what="five opens of api-key counted")
    body, n = opens()
    assert n == 5, body
    assert "# TYPE secretfs_fuse_request_duration_seconds histogram" in body
    assert sample(body, "secretfs_fuse_request_duration_seconds_count", op="open") >= 5
    assert sample(body, "secretfs_fuse_request_duration_seconds_count", op="release") >= 1
    # The file never opened has no ok opens.
    assert not sample(body, "secretfs_file_opens_total", file="db/password", result="ok")


def test_metrics_never_carry_a_secret_value(sandbox):
    d = start(sandbox)
    d.read("api-key")
    body = get(d.listen, "/metrics")[2]
    assert d.data["api"] not in body
    assert d.data["db"]["password"] not in body


def test_a_real_prometheus_scrapes_the_endpoint_and_sees_a_counter_move(sandbox):
    d = start(sandbox)
    prom_port = free_port()
    prom_dir = sandbox.file("prometheus")
    os.mkdir(prom_dir)
    cfg = os.path.join(prom_dir, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: secretfs\n    static_configs:\n"
                f"      - targets: ['{d.listen}']\n")
    log = open(os.path.join(prom_dir, "log"), "wb")
    sandbox.popen([PROMETHEUS, f"--config.file={cfg}",
                   f"--storage.tsdb.path={prom_dir}/data",
                   f"--web.listen-address=127.0.0.1:{prom_port}"],
                  stdout=log, stderr=log, start_new_session=True)
    log.close()

    def query(expr):
        url = (f"http://127.0.0.1:{prom_port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            result = json.load(r)["data"]["result"]
        return [float(x["value"][1]) for x in result]

    wait_until(lambda: query('up{job="secretfs"}') == [1.0], timeout=60,
               what="Prometheus scraping secretfs (up == 1)", ignore=(OSError, KeyError))
    # Move a counter: a new version of api-key is one more update.
    sandbox.write_data({"db": d.data["db"], "api": rand_token(24)})
    wait_until(lambda: query('secretfs_file_updates_total{file="api-key"}') == [2.0],
               timeout=60, what="the moved counter in Prometheus",
               ignore=(OSError, KeyError))


def test_readyz_names_a_missing_file_then_turns_ready_when_it_appears(sandbox):
    secrets = {**SECRETS, "later": {"backend": "local", "path": "later"}}
    d = start(sandbox, secrets=secrets, startup_timeout="1s")
    status, _, body = get(d.listen, "/readyz")
    assert status == 503
    assert "later" in body and "api-key" not in body, body
    sandbox.write_data({**d.data, "later": rand_token(16)})
    wait_until(lambda: get(d.listen, "/readyz")[0] == 200, what="/readyz 200")
    assert get(d.listen, "/readyz")[2].startswith("ready")


def test_healthz_is_ok_while_alive_and_fails_when_the_scheduler_is_stuck(sandbox):
    d = start(sandbox, liveness_timeout="1s")
    assert get(d.listen, "/healthz")[0] == 200
    # A FIFO in place of the secrets file blocks the file backend's open
    # on the scheduler thread until someone writes to it.
    fifo = sandbox.file("fifo")
    os.mkfifo(fifo, 0o600)
    os.rename(fifo, sandbox.data_path)
    wait_until(lambda: get(d.listen, "/healthz")[0] == 503, timeout=TIMEOUT,
               what="/healthz 503 with a stuck scheduler")
    assert "scheduler" in get(d.listen, "/healthz")[2]
    # Opening the FIFO's other end lets the backend's open return; a regular
    # file takes the FIFO's name before that end closes (the backend's read
    # then ends), so no later open finds a FIFO again.
    writer = os.open(sandbox.data_path, os.O_WRONLY)
    try:
        sandbox.write_data(d.data)
    finally:
        os.close(writer)
    wait_until(lambda: get(d.listen, "/healthz")[0] == 200, what="/healthz 200 again")
    assert d.read("api-key") == d.data["api"]


def test_only_three_paths_and_two_methods_are_served(sandbox):
    d = start(sandbox)
    assert get(d.listen, "/")[0] == 404
    assert get(d.listen, "/metrics/x")[0] == 404
    assert get(d.listen, "/db/password")[0] == 404
    status, hdrs, _ = http(d.listen, "POST", "/metrics", body=b"x=1")
    assert status == 405 and "GET" in hdrs.get("allow", "")
    assert http(d.listen, "DELETE", "/healthz")[0] == 405
    status, hdrs, body = http(d.listen, "HEAD", "/metrics")
    assert status == 200 and body == ""


def test_an_oversized_request_is_refused_and_the_listener_lives_on(sandbox):
    d = start(sandbox)
    status = http(d.listen, "GET", "/metrics", headers={"X-Big": "a" * 64 * 1024})[0]
    assert status in (0, 413, 414, 431), status
    status = http(d.listen, "GET", "/" + "a" * 64 * 1024)[0]
    assert status in (0, 413, 414, 431), status
    assert get(d.listen, "/healthz")[0] == 200


def test_unix_socket_listener_is_0660_and_serves(sandbox):
    path = sandbox.file("metrics.sock")
    d = start(sandbox, listen=f"unix:{path}")
    assert oct(os.stat(path).st_mode & 0o777) == "0o660"
    status, _, body = get(d.listen, "/metrics")
    assert status == 200 and "secretfs_build_info" in body
    d.stop()
    assert not os.path.exists(path)


def test_a_port_in_use_is_a_start_up_error_naming_the_address(sandbox):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        d = sandbox.start(SECRETS, data={"db": {"password": "p"}, "api": "a"},
                          telemetry={"listen": address}, wait=False)
        wait_until(lambda: d.returncode is not None, what="secretfs exiting")
        assert d.returncode == 5
        assert f"cannot listen on {address}: address already in use" in d.log_text()


@pytest.mark.parametrize("listen,why", [
    ("9464", "must be ADDRESS:PORT"),
    ("localhost:9464", "not a numeric IPv4 address"),
    ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
    ("127.0.0.1:70000", "the port must be a number from 1 to 65535"),
    ("::1:9464", "not a numeric IPv4 address"),
    ("[::1]9464", "an IPv6 address is written [address]:port"),
    ("unix:relative.sock", "must be absolute"),
])
def test_check_refuses_bad_listen_values_with_the_key_path(workdir, listen, why):
    workdir.write_config(workdir.config(SECRETS, telemetry={"listen": listen}),
                         workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"])
    assert r.returncode == 1
    assert "telemetry.listen: invalid address" in r.stderr and why in r.stderr, r.stderr


def test_check_accepts_every_address_form_and_refuses_unknown_keys(workdir):
    for listen in ("127.0.0.1:9464", "0.0.0.0:9464", "[::1]:9464", "unix:/run/m.sock"):
        workdir.write_config(workdir.config(SECRETS, telemetry={"listen": listen}),
                             workdir.file("cfg.json"))
        r = workdir.run(["--config", "cfg.json", "--check"])
        assert r.returncode == 0, (listen, r.stderr)
    workdir.write_config(workdir.config(SECRETS, telemetry={"listen": "127.0.0.1:1",
                                                            "port": 2}),
                         workdir.file("cfg.json"))
    r = workdir.run(["--config", "cfg.json", "--check"])
    assert r.returncode == 1 and "telemetry.port: unknown key" in r.stderr, r.stderr
