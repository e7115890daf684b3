"""Hardening of a running daemon: no capability once the mount is in place
(the privileged monitor keeps what unmounting, on_change and directory
owners need), a syscall filter and a file sandbox, and a SIGKILL that
leaves no mount behind."""

import json
import os
import re
import signal
import time

import pytest

from helpers.harness import (SANITIZE, TIMEOUT, assert_no_plaintext, errno_of, is_mounted, rand_token,
                             wait_until)
from test_reload import reload_with, write_atomic

LOCAL = {"local": {"type": "file", "path": "secrets.json"}}


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(ln.split(":\t", 1) for ln in f.read().splitlines() if ":\t" in ln)


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def monitor_of(d):
    """The daemon's monitor: its child named secretfs-mon."""
    def find():
        for c in children(d.pid):
            with open(f"/proc/{c}/comm") as f:
                if f.read().strip() == "secretfs-mon":
                    return c
        return None
    return wait_until(find, what="the monitor process")


def start_with_hook(sandbox, hook, mount_type="fuse", **cfg_kw):
    """A daemon on one file whose test hook (SECRETFS_TEST_HOOK) runs inside
    the sandbox once start-up is over; not waited for."""
    cfg = sandbox.config({"api-key": {"backend": "local", "path": "api"}}, backends=LOCAL,
                         mount={"type": mount_type}, **cfg_kw)
    return sandbox.start(config=cfg, data={"api": "v"}, wait=False,
                         extra_env={"SECRETFS_TEST_HOOK": hook})


def start(sandbox, mount_type="fuse", value=None, **mount):
    cfg = sandbox.config({"api-key": {"backend": "local", "path": "api"}},
                         backends=LOCAL, mount={"type": mount_type, **mount})
    d = sandbox.start(config=cfg, data={"api": value or rand_token(16)})
    # A directory mount is written before the sandbox is entered.
    d.wait_log(r"seccomp: syscall filter loaded")
    return d


@pytest.mark.fuse
@pytest.mark.parametrize("mount_type", ["fuse", "directory"])
def test_running_daemon_has_no_capability_and_the_monitor_only_its_own(sandbox, mount_type):
    d = start(sandbox, mount_type)
    st = proc_status(d.pid)
    assert st["CapEff"].strip() == "0000000000000000"
    assert st["CapPrm"].strip() == "0000000000000000"
    mon = proc_status(monitor_of(d))
    # CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_KILL
    keep = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 5
    if mount_type == "fuse":
        keep |= 1 << 21  # CAP_SYS_ADMIN: the unmount
    assert int(mon["CapEff"], 16) == keep
    assert int(mon["CapBnd"], 16) == keep
    assert mon["NoNewPrivs"].strip() == "1"


@pytest.mark.fuse
def test_monitor_holds_no_secret_and_no_descriptor_of_the_daemon(sandbox):
    value = rand_token(32)
    token = rand_token(32)
    cfg = sandbox.config({"api-key": {"backend": "local", "path": "api"}}, backends=LOCAL)
    d = sandbox.start(config=cfg, data={"api": value}, extra_env={"VAULT_TOKEN": token})
    assert d.read("api-key") == value
    mon = monitor_of(d)
    # The sanitizer runtime (ASan builds) keeps its own copy of
    # /proc/self/environ, read at its start (sanitizer_common's GetEnv), in
    # the daemon as in the monitor it forks: only the value is checked there.
    assert_no_plaintext(mon, [value] if SANITIZE else [value, token], "in the monitor")
    fds = sorted(int(n) for n in os.listdir(f"/proc/{mon}/fd"))
    assert fds == [0, 1, 2, 3], fds
    with open(f"/proc/{mon}/environ", "rb") as f:
        assert token.encode() not in f.read()


@pytest.mark.fuse
def test_sigkill_of_the_daemon_leaves_no_mount(sandbox):
    d = start(sandbox)
    mon = monitor_of(d)
    os.kill(d.pid, signal.SIGKILL)
    d.proc.wait(TIMEOUT)
    wait_until(lambda: not is_mounted(sandbox.mount), what="the mount to go")
    # The mount point answers at once: an empty directory, no ENOTCONN.
    t0 = time.monotonic()
    assert os.listdir(sandbox.mount) == []
    assert time.monotonic() - t0 < 1
    wait_until(lambda: not os.path.exists(f"/proc/{mon}"), what="the monitor to exit")


@pytest.mark.fuse
def test_sigterm_unmounts_through_the_monitor_before_the_exit(sandbox):
    d = start(sandbox)
    assert d.stop() == 0
    assert not is_mounted(sandbox.mount)
    assert "failed to unmount" not in d.log_text()


@pytest.mark.fuse
def test_directory_owners_are_given_and_taken_back_without_a_capability(sandbox):
    # Files and directories go to another user through the monitor; the old
    # generation, read-only and no longer ours, is still removed.
    cfg = sandbox.config({"sub/api-key": {"backend": "local", "path": "api"}}, backends=LOCAL,
                         mount={"type": "directory", "uid": 1000, "gid": 2000,
                                "mode": "0440", "dir_mode": "0550"})
    d = sandbox.start(config=cfg, data={"api": "one"})
    assert proc_status(d.pid)["CapEff"].strip() == "0000000000000000"
    first = os.readlink(os.path.join(sandbox.mount, "..data"))
    f = os.path.join(sandbox.mount, "sub", "api-key")
    st = os.stat(f)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 2000, 0o440)
    sandbox.write_data({"api": "two"})
    wait_until(lambda: open(f).read() == "two", what="the rotation")
    st = os.stat(os.path.dirname(f))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 2000, 0o550)
    wait_until(lambda: not os.path.lexists(os.path.join(sandbox.mount, first)),
               what="the old generation to be removed")
    assert "cannot remove" not in d.log_text()


@pytest.mark.fuse
@pytest.mark.parametrize("mount_type", ["fuse", "directory"])
def test_running_daemon_is_in_its_syscall_filter(sandbox, mount_type):
    d = start(sandbox, mount_type)
    assert proc_status(d.pid)["Seccomp"].strip() == "2"
    # Every thread, not only the one that loaded it (TSYNC).
    for tid in os.listdir(f"/proc/{d.pid}/task"):
        assert proc_status(f"{d.pid}/task/{tid}")["Seccomp"].strip() == "2", tid
    assert d.read("api-key")
    assert d.stop() == 0


@pytest.mark.fuse
def test_seccomp_false_loads_no_filter(sandbox):
    cfg = sandbox.config({"api-key": {"backend": "local", "path": "api"}}, backends=LOCAL,
                         hardening={"seccomp": False})
    d = sandbox.start(config=cfg, data={"api": "v"})
    assert proc_status(d.pid)["Seccomp"].strip() == "0"
    d.wait_log(r"seccomp: off \(hardening\.seccomp false\)")
    assert d.stop() == 0


def test_hardening_switches_are_validated_with_their_key_paths(workdir):
    cfg = workdir.config({"a": {"backend": "local", "path": "a"}},
                         hardening={"seccomp": "no", "landlok": True})
    workdir.write_config(cfg)
    r = workdir.run(["--config", workdir.config_path, "--check"])
    assert r.returncode == 1
    assert "hardening.seccomp: must be true or false" in r.stderr
    assert "landlok" in r.stderr


@pytest.mark.fuse
@pytest.mark.parametrize("mount_type", ["fuse", "directory"])
def test_a_forbidden_syscall_kills_the_daemon_with_a_line_naming_it(sandbox, mount_type):
    d = start_with_hook(sandbox, "syscall", mount_type)
    d.wait_log(r"test hook: calling mount\(2\)")
    assert d.proc.wait(TIMEOUT) == -signal.SIGSYS
    assert f"seccomp: refused syscall {165 if os.uname().machine == 'x86_64' else ''}" \
        in d.log_text()
    assert "mount(2) returned" not in d.log_text()
    # Killed, yet nothing stays mounted.
    wait_until(lambda: not is_mounted(sandbox.mount), what="the mount to go")


@pytest.mark.fuse
@pytest.mark.skipif(not SANITIZE, reason="the sanitizer build (SECRETFS_SANITIZE=1)")
@pytest.mark.parametrize("mount_type", ["fuse", "directory"])
def test_leak_check_at_exit_still_reports_inside_the_syscall_filter(sandbox, mount_type):
    # LeakSanitizer stops the threads from a helper task it clones and
    # ptraces them: the filter of a sanitizer build allows that. A leak
    # made inside the filter is reported, and the exit neither hangs nor
    # dies of SIGSYS.
    d = start_with_hook(sandbox, "leak", mount_type)
    d.wait_log(r"seccomp: syscall filter loaded")
    d.wait_log(r"test hook: 4242 bytes allocated and dropped \(leaked\)")
    rc = d.stop()
    log = d.log_text()
    assert "seccomp: refused syscall" not in log
    assert rc not in (0, -signal.SIGSYS), rc
    assert "ERROR: LeakSanitizer: detected memory leaks" in log
    assert re.search(r"Direct leak of 4242 byte\(s\) in 1 object", log)
    # Nothing else leaked.
    assert re.search(r"SUMMARY: AddressSanitizer: 4242 byte\(s\) leaked in 1 allocation", log)


@pytest.mark.fuse
@pytest.mark.parametrize("mount_type", ["fuse", "directory"])
def test_a_path_outside_the_landlock_set_is_refused(sandbox, mount_type):
    # /etc/passwd is readable to root, and no part of what the config names.
    d = start_with_hook(sandbox, "open:/etc/passwd", mount_type)
    d.wait_log(r"landlock: file access restricted")
    d.wait_log(r"test hook: open /etc/passwd: Permission denied")
    assert d.stop() == 0


@pytest.mark.fuse
def test_landlock_false_leaves_file_access_alone(sandbox):
    d = start_with_hook(sandbox, "open:/etc/passwd", hardening={"landlock": False})
    d.wait_log(r"landlock: off \(hardening\.landlock false\)")
    d.wait_log(r"test hook: open /etc/passwd: opened")
    assert d.stop() == 0


@pytest.mark.fuse
def test_files_the_config_names_stay_readable_in_the_sandbox(sandbox):
    # The file backend's directory is in the set: a rotation still lands.
    d = start(sandbox, value="one")
    assert d.read("api-key") == "one"
    sandbox.write_data({"api": "two"})
    wait_until(lambda: d.read("api-key") == "two", what="the rotation")
    assert d.alive()


# ------------------------------------------------- live reload in the sandbox

def reload_and_wait_refusal(d, cfg, pattern):
    """Reloads cfg and waits for the refusal matching pattern."""
    write_atomic(d.config_path, cfg)
    d.send(signal.SIGHUP)
    d.wait_log(pattern + r".*keeping the running configuration")


def split_layout(sandbox):
    """The config in conf/, the secrets file in data/, and other/ that
    nothing names at start: three sibling directories, none the others'."""
    for sub in ("conf", "data", "other"):
        os.mkdir(sandbox.file(sub))
    data = sandbox.file("data/secrets.json")
    other = sandbox.file("other/secrets.json")
    value, stray = rand_token(16), rand_token(16)
    sandbox.write_data({"api": value}, path=data)
    sandbox.write_data({"api": stray}, path=other)
    return data, other, value, stray


@pytest.mark.fuse
@pytest.mark.parametrize("mount_type", ["fuse", "directory"])
def test_a_reload_naming_a_file_outside_the_landlock_set_is_refused(sandbox, mount_type):
    data, other, value, stray = split_layout(sandbox)
    backends = {"local": {"type": "file", "path": data}}
    secrets = {"api-key": {"backend": "local", "path": "api"}}
    cfg = sandbox.config(secrets, backends=backends, mount={"type": mount_type})
    d = sandbox.start(config=cfg, config_path=sandbox.file("conf/config.json"))
    d.wait_log(r"landlock: file access restricted")
    # A new backend on other/, and the kept one moved there: both named.
    bad = sandbox.config({**secrets, "stray": {"backend": "elsewhere", "path": "api"}},
                         backends={"local": {"type": "file", "path": other},
                                   "elsewhere": {"type": "file", "path": other}},
                         mount={"type": mount_type})
    reload_and_wait_refusal(d, bad, r'backends\.elsewhere\.path: "/[^"]*" '
                            r"is not readable under the sandbox set at start \(Landlock\); "
                            r"restart secretfs to apply")
    assert re.search(r"backends\.local\.path: .*not readable under the sandbox", d.log_text())
    assert d.alive()
    assert d.read("api-key") == value
    assert stray not in d.log_text()
    # A backend on a file in the config's directory (which stays readable
    # for reloads), named relative to it, applies.
    sandbox.write_data({"extra": "x"}, path=sandbox.file("conf/more.json"))
    good = sandbox.config({"api-key": {"backend": "conf", "path": "extra"}},
                          backends={**backends, "conf": {"type": "file", "path": "more.json"}},
                          mount={"type": mount_type})
    reload_with(d, good)
    wait_until(lambda: d.read("api-key") == "x", what="the file from the new backend")
    assert d.alive()


@pytest.mark.fuse
def test_a_reload_adding_a_network_backend_to_a_filter_without_one_is_refused(sandbox):
    d = start(sandbox)
    d.wait_log(r"seccomp: syscall filter loaded \(FUSE mode\)")
    token = sandbox.file("vault-token")
    with open(token, "w") as f:
        f.write(rand_token(20))
    bad = sandbox.config({"api-key": {"backend": "local", "path": "api"},
                          "remote": {"backend": "v", "path": "secret/data/x"}},
                         backends={**LOCAL, "v": {
                             "type": "vault", "address": "http://127.0.0.1:9",
                             "auth": {"method": "token", "token_file": token}}})
    reload_and_wait_refusal(d, bad, r"backends\.v: needs the network, which the syscall "
                            r"filter set at start does not allow")
    assert d.alive()
    assert errno_of(lambda: open(d.path("remote"))) == "ENOENT"


@pytest.mark.fuse
def test_a_reload_may_move_a_known_on_change_action_but_not_add_one(sandbox):
    out = sandbox.file("ran")
    hook = {"command": ["/bin/sh", "-c", f"echo \"$SECRETFS_FILES\" >> {out}"],
            "debounce": "0s"}
    secrets = {"a": {"backend": "local", "path": "a", "on_change": hook},
               "b": {"backend": "local", "path": "b"}}
    sandbox.write_data({"a": "1", "b": "1"})
    d = sandbox.start(config=sandbox.config(secrets, backends=LOCAL))
    # A new command (or a new signal) is refused naming the key path ...
    other = {"command": ["/bin/touch", sandbox.file("never")]}
    reload_and_wait_refusal(
        d, sandbox.config({**secrets, "b": {**secrets["b"], "on_change": other}},
                          backends=LOCAL),
        r"secrets\.b\.on_change: cannot change live: the monitor runs only the actions "
        r"of the configuration secretfs started with \(restart secretfs\)")
    # ... while the action the monitor knows may be given to another file.
    moved = {"a": {"backend": "local", "path": "a"},
             "b": {"backend": "local", "path": "b", "on_change": hook}}
    reload_with(d, sandbox.config(moved, backends=LOCAL))
    sandbox.write_data({"a": "2", "b": "2"})
    wait_until(lambda: os.path.exists(out) and "b" in open(out).read().split(),
               what="the moved action ran for b")
    assert not os.path.exists(sandbox.file("never"))
    assert d.alive()


@pytest.mark.fuse
def test_a_hardening_change_is_refused_live(sandbox):
    d = start(sandbox)
    cfg = sandbox.config({"api-key": {"backend": "local", "path": "api"}}, backends=LOCAL,
                         hardening={"seccomp": False})
    reload_and_wait_refusal(d, cfg, r"hardening: cannot change live: the sandbox is "
                            r"entered at start \(restart secretfs\)")
    assert proc_status(d.pid)["Seccomp"].strip() == "2"


@pytest.mark.fuse
def test_a_configmap_swap_to_a_new_directory_is_read_under_landlock(sandbox):
    # The config's real directory at start (..2026_12_03_01) is not where
    # the next update is: the directory it was named in stays readable.
    data, _, value, _ = split_layout(sandbox)
    cm = sandbox.file("conf")
    backends = {"local": {"type": "file", "path": data}}

    def publish(stamp, secrets):
        gen = os.path.join(cm, f"..2026_12_03_{stamp}")
        os.mkdir(gen)
        with open(os.path.join(gen, "config.json"), "w") as f:
            json.dump(sandbox.config(secrets, backends=backends), f)
        os.symlink(os.path.basename(gen), os.path.join(cm, "..data_tmp"))
        os.rename(os.path.join(cm, "..data_tmp"), os.path.join(cm, "..data"))

    secrets = {"api-key": {"backend": "local", "path": "api"}}
    publish("01", secrets)
    os.symlink("..data/config.json", os.path.join(cm, "config.json"))
    d = sandbox.start(config=sandbox.config(secrets, backends=backends),
                      config_path=os.path.join(cm, "config.json"))
    d.wait_log(r"landlock: file access restricted")
    before = d.log_text().count("reload: applied")
    publish("02", {**secrets, "again": {"backend": "local", "path": "api"}})
    wait_until(lambda: d.log_text().count("reload: applied") > before, what="the swap read")
    assert d.read("again") == value
    assert "Permission denied" not in d.log_text()


@pytest.mark.fuse
def test_every_thread_is_confined_a_symlink_out_of_the_set_is_not_followed(sandbox):
    # The file backend reads on the scheduler's threads, started before the
    # sandbox: they confine themselves too. A symlink planted over the
    # secrets file, to a file outside the set, is refused and the last good
    # value stays.
    data, other, value, stray = split_layout(sandbox)
    d = sandbox.start(config=sandbox.config({"api-key": {"backend": "local", "path": "api",
                                                         "refresh": "1s"}},
                                            backends={"local": {"type": "file", "path": data}}),
                      config_path=sandbox.file("conf/config.json"))
    d.wait_log(r"landlock: file access restricted")
    assert d.read("api-key") == value
    link = data + ".link"
    os.symlink(other, link)
    os.rename(link, data)
    d.wait_log(r"source local:api: read failed .*data/secrets\.json.*serving the last good value")
    assert d.read("api-key") == value
    assert stray not in d.log_text()
    assert d.alive()
