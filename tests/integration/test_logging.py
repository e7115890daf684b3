"""Structured logs: with "format": "json" every line is one JSON object, and
the named events carry their file, source, backend, version, lease and pid
as members of their own (README.md, "Logging and counters")."""

import json
import os

import pytest

from helpers.harness import rand_token, wait_until

pytestmark = pytest.mark.fuse

JSON_LOG = {"level": "debug", "format": "json"}


def records(d):
    """Every line the daemon wrote, each parsed as a JSON object."""
    out = []
    for line in d.log_text().splitlines():
        rec = json.loads(line)
        assert isinstance(rec, dict), line
        out.append(rec)
    return out


def events(d, name):
    return [r for r in records(d) if r.get("event") == name]


def wait_event(d, name, **fields):
    """Waits until an event with these field values was logged; returns it."""
    def found():
        for r in events(d, name):
            if all(r.get(k) == v for k, v in fields.items()):
                return r
        return None
    return wait_until(found, what=f"event {name} {fields}", ignore=(OSError, ValueError))


def test_every_json_line_is_an_object_with_ts_level_and_msg(sandbox):
    d = sandbox.start({"a": {"backend": "local", "path": "a"}}, data={"a": "v"},
                      log=JSON_LOG)
    assert d.stop() == 0
    recs = records(d)
    assert recs
    for r in recs:
        assert set(r) >= {"ts", "level", "msg"}, r
        assert r["level"] in ("debug", "info", "warn", "error"), r
    assert [r["event"] for r in recs if r.get("event", "").startswith("daemon.")] == \
        ["daemon.starting", "daemon.mounted", "daemon.stopping", "daemon.stats",
         "daemon.stopped"]


def test_file_source_and_onchange_events_carry_their_fields(sandbox):
    pw1, pw2 = rand_token(), rand_token()
    marker = sandbox.file("ran")
    secrets = {
        "db.env": {"backend": "local", "path": "db", "format": "env",
                   "on_change": {"command": ["/bin/sh", "-c", f"touch {marker}"],
                                 "debounce": "100ms"}},
        "app.conf": {"backend": "local", "path": "db", "format": "template",
                     "template": "token={{ token }}\n"},
        "gone": {"backend": "local", "path": "nope"},
    }
    d = sandbox.start(secrets, data={"db": {"password": pw1}}, log=JSON_LOG,
                      startup_timeout="300ms")
    start = wait_event(d, "daemon.starting")
    assert start["pid"] == d.pid and start["level"] == "info"
    mounted = wait_event(d, "daemon.mounted")
    assert mounted["mount"] == sandbox.mount
    assert "1 of 3 files" in mounted["msg"], mounted

    pub = wait_event(d, "file.published", file="db.env")
    assert (pub["source"], pub["backend"], pub["version"]) == ("local:db", "local", 1), pub
    assert pub["msg"] == "file db.env: published version 1 from local:db"
    bad = wait_event(d, "file.render_failed", file="app.conf")
    assert (bad["level"], bad["source"], bad["backend"]) == ("error", "local:db", "local")
    assert "version" not in bad
    failed = wait_event(d, "source.read_failed", source="local:nope")
    assert (failed["level"], failed["backend"]) == ("warn", "local"), failed
    assert "file" not in failed

    sandbox.write_data({"db": {"password": pw2}})
    upd = wait_event(d, "file.updated", file="db.env")
    assert (upd["source"], upd["backend"], upd["version"]) == ("local:db", "local", 2), upd
    ran = wait_event(d, "onchange.ran", files="db.env")
    assert isinstance(ran["pid"], int) and ran["pid"] > 1, ran
    wait_event(d, "onchange.exited", pid=ran["pid"])
    assert os.path.exists(marker)

    assert d.stop() == 0
    stopped = wait_event(d, "daemon.stopped")
    assert stopped["mount"] == sandbox.mount
    text = d.log_text()
    assert pw1 not in text and pw2 not in text


def test_lease_events_name_the_lease(sandbox):
    gen = {"backend": "gen", "path": "database/creds/app"}
    cfg = sandbox.config({"db.env": {**gen, "format": "env"}},
                         backends={"gen": {"type": "dev", "ttl": "2s",
                                           "revoke_grace": "200ms"}},
                         log=JSON_LOG)
    d = sandbox.start(config=cfg)
    granted = wait_event(d, "lease.granted")
    assert (granted["source"], granted["backend"]) == ("gen:database/creds/app", "gen")
    replaced = wait_event(d, "lease.replaced", lease=granted["lease"])
    assert replaced["source"] == "gen:database/creds/app" and replaced["backend"] == "gen"
    revoked = wait_event(d, "lease.revoked", lease=granted["lease"])
    assert revoked["backend"] == "gen"
    upd = wait_event(d, "file.updated", file="db.env")
    assert upd["version"] >= 2
    assert d.stop() == 0
