"""on_change: a signal or a command after the new content is visible,
debounced, with a scrubbed environment."""

import hashlib
import json
import os
import time

import pytest

from helpers.harness import HELPERS_DIR, PYTHON, holds_for, rand_token, wait_until

pytestmark = pytest.mark.fuse


def start_recorder(sandbox, watched):
    pidfile, logfile = sandbox.file("app.pid"), sandbox.file("signals.log")
    rec = sandbox.popen([PYTHON, str(HELPERS_DIR / "sigrecorder.py"), pidfile, logfile, watched])
    wait_until(lambda: os.path.exists(pidfile), what="the signal recorder's pid file")
    return rec, pidfile, logfile


def recorded(logfile):
    try:
        with open(logfile) as f:
            return [ln.split() for ln in f.read().splitlines() if ln]
    except FileNotFoundError:
        return []


def test_on_change_signal_is_sent_once_for_a_burst_after_content_is_visible(sandbox):
    token_path = os.path.join(sandbox.mount, "app/token")
    rec, pidfile, logfile = start_recorder(sandbox, token_path)
    secrets = {"app/token": {"backend": "local", "path": "token",
                             "on_change": {"signal": "HUP", "pid_file": pidfile}}}
    d = sandbox.start(secrets, data={"token": "initial"})
    assert d.read("app/token") == "initial"
    before = len(recorded(logfile))

    values = [f"v{i}-{rand_token(16)}" for i in range(1, 6)]
    for v in values:                     # 5 edits within ~200 ms
        sandbox.write_data({"token": v})
        time.sleep(0.04)
    final = values[-1]
    wait_until(lambda: d.read("app/token") == final, what="the last edit to be served")
    wait_until(lambda: len(recorded(logfile)) > before, what="SIGHUP to reach the app")
    # Debounce default 1s: watch for longer than that that no second one comes.
    holds_for(lambda: len(recorded(logfile)) == before + 1, 2.0,
              what="exactly one signal for the burst")
    sig, digest = recorded(logfile)[before]
    assert sig == "SIGHUP"
    assert digest == hashlib.sha256(final.encode()).hexdigest(), \
        "when signalled, the app must already see the new content"
    assert rec.poll() is None


def test_on_change_command_runs_with_scrubbed_environment(sandbox):
    out = sandbox.file("cmd")
    script = (f'cat /proc/$$/environ > {out}.env; cat /proc/$$/cmdline > {out}.argv; '
              f'touch {out}.done')
    secrets = {"app/token": {"backend": "local", "path": "token",
                             "on_change": {"command": ["/bin/sh", "-c", script],
                                           "debounce": "200ms"}}}
    old, new = rand_token(32), rand_token(32)
    vault_token, aws_secret = "hvs." + rand_token(24), rand_token(40)
    d = sandbox.start(secrets, data={"token": old},
                      extra_env={"VAULT_TOKEN": vault_token, "AWS_SECRET_ACCESS_KEY": aws_secret,
                                 "AWS_ACCESS_KEY_ID": "AKIA" + rand_token(16)})
    sandbox.write_data({"token": new})
    wait_until(lambda: d.read("app/token") == new, what="the new token")
    wait_until(lambda: os.path.exists(out + ".done"), what="the on_change command to run")

    with open(out + ".env", "rb") as f:
        env_blob = f.read()
    with open(out + ".argv", "rb") as f:
        argv_blob = f.read()
    env = dict(kv.split(b"=", 1) for kv in env_blob.split(b"\0") if kv)
    env = {k.decode(): v.decode() for k, v in env.items()}
    assert set(env) == {"PATH", "SECRETFS_MOUNT", "SECRETFS_FILES"}, env
    assert env["SECRETFS_MOUNT"] == sandbox.mount
    assert "app/token" in env["SECRETFS_FILES"].split(" ")
    for leaked in (old, new, vault_token, aws_secret):
        assert leaked.encode() not in env_blob
        assert leaked.encode() not in argv_blob
    assert argv_blob.split(b"\0")[:3] == [b"/bin/sh", b"-c", script.encode()]


def test_on_change_command_is_debounced_for_a_burst(sandbox):
    count = sandbox.file("runs")
    secrets = {"t": {"backend": "local", "path": "token",
                     "on_change": {"command": ["/bin/sh", "-c", f"echo run >> {count}"],
                                   "debounce": "500ms"}}}
    d = sandbox.start(secrets, data={"token": "t0"})

    def runs():
        try:
            with open(count) as f:
                return len(f.read().split())
        except FileNotFoundError:
            return 0
    before = runs()
    for i in range(5):
        sandbox.write_data({"token": f"t{i + 1}"})
        time.sleep(0.04)
    wait_until(lambda: d.read("t") == "t5", what="the last edit")
    wait_until(lambda: runs() > before, what="the command to run")
    holds_for(lambda: runs() == before + 1, 1.5, what="one run for the burst")


def test_on_change_with_missing_pid_file_is_logged_and_daemon_keeps_serving(sandbox):
    secrets = {"t": {"backend": "local", "path": "token",
                     "on_change": {"signal": "HUP", "pid_file": sandbox.file("absent.pid"),
                                   "debounce": "100ms"}}}
    d = sandbox.start(secrets, data={"token": "t0"})
    sandbox.write_data({"token": "t1"})
    wait_until(lambda: d.read("t") == "t1", what="the edit")
    d.wait_log(r"on_change.*absent\.pid|absent\.pid.*on_change")
    sandbox.write_data({"token": "t2"})
    wait_until(lambda: d.read("t") == "t2", what="the next edit")
    assert d.alive()


def test_on_change_command_is_run_without_a_shell(sandbox):
    out, canary = sandbox.file("argv.json"), sandbox.file("canary")
    tricky = ["a b", f"$(touch {canary})", "*", "; touch " + canary, "'\"\\"]
    code = "import json, sys; json.dump(sys.argv[1:], open(sys.argv[1], 'w'))"
    secrets = {"t": {"backend": "local", "path": "token",
                     "on_change": {"command": [PYTHON, "-c", code, out, *tricky],
                                   "debounce": "100ms"}}}
    d = sandbox.start(secrets, data={"token": "t0"})
    sandbox.write_data({"token": "t1"})
    wait_until(lambda: d.read("t") == "t1", what="the edit")

    def argv_written():
        with open(out) as f:
            return json.load(f)
    got = wait_until(argv_written, ignore=(OSError, ValueError),
                     what="the command to write its argv")
    assert got == [out, *tricky]
    assert not os.path.exists(canary)
