"""Live configuration reload: SIGHUP and edits of the config file (watched
with inotify, including a Kubernetes ConfigMap's ..data symlink swap) apply
the new config as a difference while readers keep reading.

What is pinned here: files added, removed and re-rendered under polling
readers with no partial or missing read of an unchanged file; a dynamic
Vault lease that survives ten reloads with no new creds request and no new
login, and is revoked after the grace period once no file uses it; an
invalid edit that keeps the running config, names the key path and counts
a failed reload; the mount path refused; the ConfigMap swap noticed with no
signal.
"""

import json
import os
import re
import signal
import threading
import urllib.error
import urllib.request

import pytest

from helpers.harness import (SLOW, TIMEOUT, assert_no_plaintext, errno_of, free_port, metric,
                             parse_env_file, rand_token, wait_until)
from helpers.vault import approle_auth, backend, clean_env, leases_of, login_requests, reqs

pytestmark = pytest.mark.fuse

APPLIED = r"reload: applied"


def write_atomic(path, cfg):
    """Replaces the config as editors and kubectl cp do: a new file renamed over."""
    tmp = os.path.join(os.path.dirname(path), ".config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(cfg, f, indent=1)
    os.rename(tmp, path)


def applied_count(d):
    return len(re.findall(APPLIED, d.log_text()))


def failed_count(d):
    return len(re.findall(r"reload: .*keeping the running configuration", d.log_text()))


def reload_with(d, cfg, sighup=True):
    """Writes cfg and (with sighup) signals; returns once one more reload
    was applied."""
    before = applied_count(d)
    write_atomic(d.config_path, cfg)
    if sighup:
        d.send(signal.SIGHUP)
    wait_until(lambda: applied_count(d) > before, what="the reload applied")


class Readers:
    """Threads that open, read and check unchanged files in a loop; every
    read must be whole and equal to the expected content."""

    def __init__(self, d, expected, n=4):
        self.d, self.expected = d, expected
        self.stop = threading.Event()
        self.reads = 0
        self.errors = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(n)]

    def run(self, i):
        names = sorted(self.expected)
        k = i
        while not self.stop.is_set():
            name = names[k % len(names)]
            k += 1
            try:
                with open(self.d.path(name), "rb") as f:
                    got = f.read()
                ok = got == self.expected[name].encode()
                err = None if ok else f"{name}: read {got!r}"
            except OSError as exc:
                err = f"{name}: {exc!r}"
            with self.lock:
                self.reads += 1
                if err:
                    self.errors.append(err)

    def __enter__(self):
        for t in self.threads:
            t.start()
        wait_until(lambda: self.reads > 20, what="the readers running")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in self.threads), "a reader hung"


def file_secrets():
    return {
        "keep/api": {"backend": "local", "path": "api"},
        "keep/user": {"backend": "local", "path": "db", "field": "username"},
        "gone": {"backend": "local", "path": "db", "field": "password"},
        "db.conf": {"backend": "local", "path": "db", "format": "json"},
    }


def test_sighup_adds_removes_and_re_renders_files_while_readers_poll(sandbox):
    data = {"db": {"username": "app", "password": rand_token(32)}, "api": rand_token(24)}
    d = sandbox.start(file_secrets(), data=data)
    assert json.loads(d.read("db.conf")) == data["db"]
    reads_before = d.log_text().count("file keep/api: published")
    new = file_secrets()
    del new["gone"]
    new["db.conf"]["format"] = "env"
    new["added/api-copy"] = {"backend": "local", "path": "api"}
    new["added/user"] = {"backend": "local", "path": "db", "field": "username"}
    expected = {"keep/api": data["api"], "keep/user": "app"}
    assert sorted(os.listdir(d.path())) == ["db.conf", "gone", "keep"]  # listing cached
    with Readers(d, expected) as readers:
        reload_with(d, sandbox.config(new))
        wait_until(lambda: os.path.exists(d.path("added/api-copy")), what="added file")
        assert d.read("added/api-copy") == data["api"]
        assert d.read("added/user") == "app"
        assert errno_of(lambda: open(d.path("gone"))) == "ENOENT"
        # The cached listing of the root was invalidated: a new directory too.
        assert sorted(os.listdir(d.path())) == ["added", "db.conf", "keep"]
        assert sorted(os.listdir(d.path("added"))) == ["api-copy", "user"]
        assert parse_env_file(d.read("db.conf")) == data["db"]
        n = readers.reads
        wait_until(lambda: readers.reads > n + 20, what="reads after the reload")
    assert readers.errors == [], readers.errors[:5]
    assert readers.reads > 50
    # Nothing was read again for the reload: the added files came from the kept values.
    assert "file keep/api: updated" not in d.log_text()
    assert d.log_text().count("file keep/api: published") == reads_before
    log = d.log_text()
    assert re.search(r"2 files added, 1 removed, 1 changed; 2 sources kept", log), log


def test_ten_reloads_in_a_row_never_break_a_read_of_an_unchanged_file(sandbox):
    data = {"db": {"username": "app", "password": rand_token(32)}, "api": rand_token(24)}
    d = sandbox.start(file_secrets(), data=data)
    expected = {"keep/api": data["api"], "keep/user": "app", "gone": data["db"]["password"]}
    with Readers(d, expected, n=6) as readers:
        for i in range(10):
            s = file_secrets()
            s["db.conf"]["format"] = "env" if i % 2 == 0 else "json"
            if i % 2 == 0:
                s[f"dir{i}/x"] = {"backend": "local", "path": "api"}
            reload_with(d, sandbox.config(s), sighup=i % 3 == 0)
            assert os.path.exists(d.path(f"dir{i}/x")) == (i % 2 == 0)
            assert os.path.exists(d.path(f"dir{i - 1}")) is False
    assert readers.errors == [], readers.errors[:5]
    assert readers.reads > 100


def test_an_invalid_edit_keeps_the_running_config_and_counts_a_failure(sandbox):
    listen = f"127.0.0.1:{free_port()}"
    data = {"db": {"username": "app", "password": rand_token(32)}, "api": rand_token(24)}
    cfg = sandbox.config(file_secrets(), telemetry={"listen": listen})
    d = sandbox.start(config=cfg, data=data)
    assert metric(listen, "secretfs_config_reloads_total", result="failed") == 0
    bad = json.loads(json.dumps(cfg))
    bad["secrets"]["db.conf"]["format"] = "yaml"
    bad["secrets"]["new"] = {"backend": "local", "path": "api"}
    write_atomic(d.config_path, bad)
    d.send(signal.SIGHUP)
    d.wait_log(r'reload: .*secrets\."db\.conf"\.format: must be one of .*keeping the running')
    wait_until(lambda: metric(listen, "secretfs_config_reloads_total", result="failed") >= 1,
               what="the failed reload counted")
    assert metric(listen, "secretfs_config_reloads_total", result="ok") == 0
    assert json.loads(d.read("db.conf")) == data["db"]
    assert d.read("gone") == data["db"]["password"]
    assert errno_of(lambda: open(d.path("new"))) == "ENOENT"
    # A JSON syntax error is refused the same way, and a good edit then applies.
    with open(d.config_path, "w") as f:
        f.write('{"mount": ')
    wait_until(lambda: failed_count(d) >= 2, what="the syntax error refused")
    good = json.loads(json.dumps(cfg))
    good["secrets"]["new"] = {"backend": "local", "path": "api"}
    reload_with(d, good)
    assert d.read("new") == data["api"]
    assert metric(listen, "secretfs_config_reloads_total", result="ok") >= 1


def test_a_mount_path_change_is_refused_and_the_running_config_stays(sandbox):
    data = {"db": {"username": "app", "password": rand_token(32)}, "api": rand_token(24)}
    d = sandbox.start(file_secrets(), data=data)
    other = sandbox.file("elsewhere")
    os.mkdir(other)
    new = sandbox.config({**file_secrets(), "new": {"backend": "local", "path": "api"}},
                         mount={"path": other})
    write_atomic(d.config_path, new)
    d.send(signal.SIGHUP)
    d.wait_log(r"mount\.path: cannot change while mounted.*keeping the running configuration")
    assert errno_of(lambda: open(d.path("new"))) == "ENOENT"
    assert d.read("gone") == data["db"]["password"]
    assert os.listdir(other) == []


def test_a_limits_change_is_refused_and_the_running_config_stays(sandbox):
    data = {"db": {"username": "app", "password": rand_token(32)}, "api": rand_token(24)}
    d = sandbox.start(file_secrets(), data=data)
    new = sandbox.config({**file_secrets(), "new": {"backend": "local", "path": "api"}},
                         limits={"max_open_handles": 10})
    write_atomic(d.config_path, new)
    d.send(signal.SIGHUP)
    d.wait_log(r"limits: cannot change live.*keeping the running configuration")
    assert errno_of(lambda: open(d.path("new"))) == "ENOENT"
    assert d.read("gone") == data["db"]["password"]


def test_a_configmap_data_symlink_swap_reloads_without_a_signal(sandbox):
    """The kubelet's layout: config.json -> ..data/config.json, ..data -> a
    timestamped directory; an update writes a new directory, points a new
    ..data_tmp at it and renames it over ..data."""
    data = {"db": {"username": "app", "password": rand_token(32)}, "api": rand_token(24)}
    sandbox.write_data(data)
    cm = sandbox.file("configmap")
    os.mkdir(cm)

    def publish(stamp, cfg):
        gen = os.path.join(cm, f"..2026_12_03_{stamp}")
        os.mkdir(gen)
        with open(os.path.join(gen, "config.json"), "w") as f:
            json.dump(cfg, f)
        os.symlink(os.path.basename(gen), os.path.join(cm, "..data_tmp"))
        os.rename(os.path.join(cm, "..data_tmp"), os.path.join(cm, "..data"))

    backends = {"local": {"type": "file", "path": sandbox.data_path}}
    publish("01", sandbox.config(file_secrets(), backends=backends))
    os.symlink("..data/config.json", os.path.join(cm, "config.json"))
    d = sandbox.start(config=sandbox.config(file_secrets(), backends=backends),
                      config_path=os.path.join(cm, "config.json"))
    assert d.read("gone") == data["db"]["password"]
    before = applied_count(d)
    new = {**file_secrets(), "from-configmap": {"backend": "local", "path": "api"}}
    publish("02", sandbox.config(new, backends=backends))
    wait_until(lambda: applied_count(d) > before, what="the swap noticed")
    assert d.read("from-configmap") == data["api"]
    assert d.read("keep/api") == data["api"]


# ------------------------------------------------------------------ Vault

def vault_config(sandbox, vault, pki, auth, secrets):
    return sandbox.config(secrets, backends={"vault": backend(
        vault, pki, auth, revoke_grace="1s")})


def dyn(field, **kw):
    return {"backend": "vault", "path": "database/creds/app", "field": field, **kw}


def test_a_dynamic_lease_survives_ten_reloads_and_is_revoked_once_unused(
        sandbox, vault, vault_pki):
    vault.add_dynamic_role("database", "app", default_ttl=600, max_ttl=3600)
    api_key = rand_token(24)
    vault.kv_put("secret/app/config", {"api_key": api_key})
    _rid, _sid, auth = approle_auth(sandbox, vault)
    secrets = {"db/username": dyn("username"), "db/password": dyn("password")}
    cfg = vault_config(sandbox, vault, vault_pki, auth, secrets)
    d = sandbox.start(config=cfg, env=clean_env())
    (lease,) = leases_of(vault, "database", "app")
    assert d.read("db/password") == lease.data["password"]
    creds, logins = len(reqs(vault, "GET", "database/creds/app")), len(login_requests(vault))
    assert (creds, logins) == (1, 1)
    for i in range(10):
        s = dict(secrets)
        # Each reload changes something else: a file added, a format, a mode.
        s[f"extra-{i}"] = {"backend": "vault", "path": "secret/app/config",
                           "field": "api_key", "refresh": "1h"}
        s["db.env"] = dyn(None, format="env") if i % 2 else dyn(None, format="json")
        del s["db.env"]["field"]
        s["db/username"] = dyn("username", mode="0440" if i % 2 else "0400")
        reload_with(d, vault_config(sandbox, vault, vault_pki, auth, s), sighup=i % 2 == 0)
        assert d.read("db/password") == lease.data["password"]
        assert d.read("db/username") == lease.data["username"]
        assert os.stat(d.path("db/username")).st_mode & 0o777 == (0o440 if i % 2 else 0o400)
        env_or_json = d.read("db.env")
        assert lease.data["password"] in env_or_json
        # A new source: read once, as at start.
        wait_until(lambda: d.read(f"extra-{i}") == api_key, what=f"extra-{i}")
        if i:
            assert errno_of(lambda: open(d.path(f"extra-{i - 1}"))) == "ENOENT"
    assert len(reqs(vault, "GET", "database/creds/app")) == 1, "no creds request for a reload"
    assert len(login_requests(vault)) == 1, "no new login for a reload"
    assert not vault.lease(lease.lease_id).revoked
    # The last file of the lease goes: it is revoked after the grace period.
    only_kv = {"api": {"backend": "vault", "path": "secret/app/config", "field": "api_key"}}
    reload_with(d, vault_config(sandbox, vault, vault_pki, auth, only_kv))
    assert errno_of(lambda: open(d.path("db/password"))) == "ENOENT"
    # A directory whose files are all gone goes too.
    assert errno_of(lambda: os.stat(d.path("db"))) == "ENOENT"
    assert sorted(os.listdir(d.path())) == ["api"]
    wait_until(lambda: vault.lease(lease.lease_id).revoked, timeout=TIMEOUT + 2 * SLOW,
               what="the unused lease revoked")
    assert len(reqs(vault, "GET", "database/creds/app")) == 1
    assert len(login_requests(vault)) == 1


def test_a_directory_mount_refuses_files_added_or_removed_but_applies_the_rest(sandbox):
    data = {"db": {"username": "app", "password": rand_token(32)}, "api": rand_token(24)}
    cfg = sandbox.config(file_secrets(), mount={"type": "directory"})
    d = sandbox.start(config=cfg, data=data)
    assert d.read("gone") == data["db"]["password"]
    added = json.loads(json.dumps(cfg))
    added["secrets"]["new"] = {"backend": "local", "path": "api"}
    del added["secrets"]["gone"]
    write_atomic(d.config_path, added)
    d.send(signal.SIGHUP)
    d.wait_log(r'secrets\.new: a new file cannot be added live with a directory mount')
    d.wait_log(r'secrets\.gone: a file cannot be removed live with a directory mount')
    assert not os.path.exists(d.path("new"))
    assert d.read("gone") == data["db"]["password"]
    # A format change is applied: rendered from the kept value.
    changed = json.loads(json.dumps(cfg))
    changed["secrets"]["db.conf"]["format"] = "env"
    reload_with(d, changed)
    wait_until(lambda: parse_env_file(d.read("db.conf")) == data["db"],
               what="db.conf re-rendered")


def test_a_rebuilt_backend_logs_in_anew_and_its_old_lease_is_revoked_after_grace(
        sandbox, vault, vault_pki):
    vault.add_dynamic_role("database", "app", default_ttl=600, max_ttl=3600)
    _rid, _sid, auth = approle_auth(sandbox, vault)
    secrets = {"db/password": dyn("password")}
    listen = f"127.0.0.1:{free_port()}"
    cfg = vault_config(sandbox, vault, vault_pki, auth, secrets)
    cfg["telemetry"] = {"listen": listen}
    d = sandbox.start(config=cfg, env=clean_env())
    (old,) = leases_of(vault, "database", "app")
    cfg = json.loads(json.dumps(cfg))
    cfg["backends"]["vault"]["timeout"] = "20s"  # any change rebuilds it
    reload_with(d, cfg)
    d.wait_log(r"1 backends rebuilt")
    wait_until(lambda: len(leases_of(vault, "database", "app")) == 2, what="a new lease")
    new = leases_of(vault, "database", "app")[1]
    wait_until(lambda: d.read("db/password") == new.data["password"], what="new creds served")
    assert len(login_requests(vault)) == 2, "the rebuilt backend logs in once"
    wait_until(lambda: vault.lease(old.lease_id).revoked, timeout=TIMEOUT + 2 * SLOW,
               what="the old backend's lease revoked after grace")
    assert not vault.lease(new.lease_id).revoked
    # The new backend and source count on in the series of the old ones.
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=TIMEOUT) as r:
        series = [ln.rsplit(" ", 1)[0] for ln in r.read().decode().splitlines()
                  if ln and not ln.startswith("#")]
    assert len(series) == len(set(series)), sorted(x for x in series if series.count(x) > 1)
    assert metric(listen, "secretfs_source_reads_total",
                  source="vault:database/creds/app") == 2


def test_a_renamed_file_keeps_its_source_and_lease_and_nothing_is_left_in_memory(
        sandbox, vault, vault_pki):
    vault.add_dynamic_role("database", "app", default_ttl=600, max_ttl=3600)
    _rid, _sid, auth = approle_auth(sandbox, vault)
    d = sandbox.start(config=vault_config(sandbox, vault, vault_pki, auth,
                                          {"db/password": dyn("password")}),
                      env=clean_env())
    (lease,) = leases_of(vault, "database", "app")
    # Renamed, and a template file added from the same lease: rendered from
    # the kept value, in guarded memory.
    renamed = {"pass": dyn("password"),
               "dsn": dyn(None, format="template",
                          template="postgres://{{username}}:{{password}}@db/app")}
    del renamed["dsn"]["field"]
    reload_with(d, vault_config(sandbox, vault, vault_pki, auth, renamed))
    assert d.read("pass") == lease.data["password"]
    assert d.read("dsn") == (f"postgres://{lease.data['username']}:"
                             f"{lease.data['password']}@db/app")
    assert errno_of(lambda: open(d.path("db/password"))) == "ENOENT"
    assert len(reqs(vault, "GET", "database/creds/app")) == 1
    assert not vault.lease(lease.lease_id).revoked
    assert_no_plaintext(d.pid, [lease.data["password"]], "after a reload re-rendered files")


def ctmpl(template=None, **kw):
    s = {"backend": "vault", "format": "consul-template", **kw}
    if template is not None:
        s["template"] = template
    return s


def test_consul_template_files_re_render_from_kept_replies_and_drop_unused_sources(
        sandbox, vault, vault_pki):
    vault.add_dynamic_role("database", "app", default_ttl=600, max_ttl=3600)
    vault.kv_put("secret/app/config", {"a": "kv-one"})
    _rid, _sid, auth = approle_auth(sandbox, vault)
    db = '{{ with secret "database/creds/app" }}{{ .Data.%s }}{{ end }}'
    kv = '{{ with secret "secret/data/app/config" }}{{ .Data.data.a }}{{ end }}'
    tmpl = os.path.join(sandbox.root, "g.tmpl")
    with open(tmpl, "w") as f:
        f.write(db % "username")
    # "plain" reads the creds: a source that feeds no template at first.
    secrets = {"f": ctmpl(kv), "plain": dyn("username")}
    d = sandbox.start(config=vault_config(sandbox, vault, vault_pki, auth, secrets),
                      env=clean_env())
    (lease,) = leases_of(vault, "database", "app")
    user, pw = lease.data["username"], lease.data["password"]
    assert (d.read("f"), d.read("plain")) == ("kv-one", user)
    # The template changes to name the creds: rendered from the reply the
    # source kept, not read again; the KV source, unused, ends.
    secrets["f"] = ctmpl(db % "password")
    reload_with(d, vault_config(sandbox, vault, vault_pki, auth, secrets))
    wait_until(lambda: d.read("f") == pw, what="f re-rendered")
    # A second secret call (a new source, read) and a new file from a
    # template_file naming the kept creds.
    secrets["f"] = ctmpl(db % "username" + "/" + kv)
    secrets["g"] = ctmpl(template_file="g.tmpl")
    reload_with(d, vault_config(sandbox, vault, vault_pki, auth, secrets))
    wait_until(lambda: d.read("f") == f"{user}/kv-one", what="f with both secrets")
    assert d.read("g") == user
    assert len(reqs(vault, "GET", "secret/data/app/config")) == 2
    # The template file's text changed: a SIGHUP renders it again.
    with open(tmpl, "w") as f:
        f.write("[" + db % "password" + "]")
    reload_with(d, vault_config(sandbox, vault, vault_pki, auth, secrets))
    wait_until(lambda: d.read("g") == f"[{pw}]", what="g re-rendered from its new file")
    assert len(reqs(vault, "GET", "database/creds/app")) == 1, "no creds read for a reload"
    assert len(login_requests(vault)) == 1
    # Nothing names the creds any more: their lease is revoked after grace.
    reload_with(d, vault_config(sandbox, vault, vault_pki, auth, {"f": ctmpl(kv)}))
    wait_until(lambda: d.read("f") == "kv-one", what="f from the KV secret only")
    assert errno_of(lambda: open(d.path("g"))) == "ENOENT"
    wait_until(lambda: vault.lease(lease.lease_id).revoked, timeout=TIMEOUT + 2 * SLOW,
               what="the unused lease revoked")
    assert len(reqs(vault, "GET", "secret/data/app/config")) == 2
    assert_no_plaintext(d.pid, [pw], "after template files were re-rendered")


# ------------------------------------------------------------- AWS agent API

@pytest.fixture
def aws(fake_aws):
    return fake_aws


def test_the_aws_api_allow_list_and_listener_are_refused_live_the_rest_applies(sandbox, aws):
    from helpers.aws import backend as aws_backend, sm, static_keys
    token, value = rand_token(32), rand_token(40)
    aws.add_secret("app/db", string=value)
    aws.add_secret("app/other", string=rand_token(40))
    sandbox.write_data({"api": "plain"})
    env, _, _ = static_keys(aws, sandbox, AWS_TOKEN=token)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def config(secrets, **api):
        return sandbox.config(secrets, backends={
            "aws": aws_backend(aws), "local": {"type": "file", "path": "secrets.json"}},
            aws_api={"listen": f"127.0.0.1:{port}", **api})

    def api_get(secret_id):
        req = urllib.request.Request(f"{base}/secretsmanager/get?secretId={secret_id}",
                                     headers={"X-Aws-Parameters-Secrets-Token": token})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    secrets = {"db": sm("app/db")}
    d = sandbox.start(config=config(secrets), env=env)
    wait_until(lambda: api_get("app/db") == 200, what="the API answering")
    assert api_get("app/other") != 200
    # Not the API's business: applied.
    reload_with(d, config({**secrets, "plain": {"backend": "local", "path": "api"}}))
    assert d.read("plain") == "plain"
    assert api_get("app/db") == 200
    # A new secret of its backend would change its allow-list: refused.
    before = failed_count(d)
    write_atomic(d.config_path, config({**secrets, "other": sm("app/other")}))
    d.send(signal.SIGHUP)
    d.wait_log(r"secrets\.other: adds a secret of the aws_api listener's allow-list")
    assert errno_of(lambda: open(d.path("other"))) == "ENOENT"
    assert api_get("app/other") != 200
    # Its listener settings: refused.
    write_atomic(d.config_path, config(secrets, max_connections=10))
    d.send(signal.SIGHUP)
    d.wait_log(r"aws_api: cannot change live")
    assert failed_count(d) >= before + 2
    assert api_get("app/db") == 200 and d.read("db") == value


def test_thousands_of_files_added_and_removed_keep_every_file_right(sandbox):
    """2000 -> 1000 -> 3000 files: sources are found by an identity hash,
    filled again when a reload ends sources and grown when it adds them. A
    file moved to the source another file leaves is served from its kept
    value; every file served reads its own secret."""
    data = {f"k{i}": rand_token(16) for i in range(3000)}
    log = {"level": "info", "format": "text"}

    def check(files, gone):
        for name, key in files.items():
            assert d.read(name) == data[key], name
        for name in gone:
            assert errno_of(lambda: open(d.path(name))) == "ENOENT", name
        listed = {f"{top}/{n}" for top in {n.split("/")[0] for n in files}
                  for n in os.listdir(d.path(top))}
        assert listed == set(files)

    # 2000 files of 2000 sources, and 200 more files sharing 200 of them.
    a = {f"a/{i}": f"k{i}" for i in range(2000)}
    a.update({f"b/{i}": f"k{i}" for i in range(200)})
    d = sandbox.start({n: {"backend": "local", "path": k} for n, k in a.items()},
                      data=data, log=log)
    check(a, [])
    # 1000 files: the even a/ files, a quarter moved to the source of the
    # odd file after them (whose file goes): 1000 sources kept, 1000 ended.
    b = {f"a/{i}": f"k{i + 1}" if i % 4 == 0 else f"k{i}" for i in range(0, 2000, 2)}
    reload_with(d, sandbox.config({n: {"backend": "local", "path": k} for n, k in b.items()},
                                  log=log))
    assert re.search(r"0 files added, 1200 removed, 500 changed; 1000 sources kept "
                     r"\(nothing read again\), 0 new, 1000 ended", d.log_text()), d.log_text()[-2000:]
    check(b, [n for n in a if n not in b])
    assert not os.path.exists(d.path("b"))
    # 3000 more files, one per secret: the 1000 sources in use are kept, the
    # 2000 others made again (ended sources of the same identity included).
    c = {**b, **{f"c/{i}": f"k{i}" for i in range(3000)}}
    reload_with(d, sandbox.config({n: {"backend": "local", "path": k} for n, k in c.items()},
                                  log=log))
    assert re.search(r"3000 files added, 0 removed, 0 changed; 1000 sources kept "
                     r"\(nothing read again\), 2000 new, 0 ended", d.log_text()), d.log_text()[-2000:]
    wait_until(lambda: all(os.path.exists(d.path(f"c/{i}")) for i in range(3000)),
               what="the new sources read")
    check(c, [f"a/{i}" for i in range(1, 2000, 2)])
