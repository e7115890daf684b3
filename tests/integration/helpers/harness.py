"""Harness for the secretfs integration tests.

A Sandbox is a temporary directory holding a config, a secrets file for the
file backend, a mount point and the logs of the daemons started in it. It
starts secretfs processes, waits (bounded) until they have mounted, and on
cleanup always stops them by PID, unmounts whatever is left and removes the
directory. Everything here uses the Python standard library only.
"""

import ctypes
import ctypes.util
import errno
import json
import os
import re
import secrets as _secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
HELPERS_DIR = Path(__file__).resolve().parent
SECRETFS_BIN = os.environ.get("SECRETFS_BIN") or str(REPO_ROOT / "build" / "secretfs")
PYTHON = "/usr/bin/python3"

SANITIZE = os.environ.get("SECRETFS_SANITIZE", "") not in ("", "0")
SLOW = 3.0 if SANITIZE else 1.0
# Default bound of every wait, generous for the ASan build.
TIMEOUT = float(os.environ.get("SECRETFS_TEST_TIMEOUT", "10")) * SLOW
# Hard limit of one test: past it the watchdog kills the test's daemons so
# that a reader blocked in a FUSE request returns (ENOTCONN) and the test fails.
HARD_LIMIT = float(os.environ.get("SECRETFS_TEST_HARD_LIMIT", "60")) * SLOW

FSTYPE = "fuse.secretfs"
NOBODY = 65534

MNT_DETACH = 2
MS_NOSUID = 2
MS_NODEV = 4

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class WaitTimeout(AssertionError):
    """A bounded wait ran out of time."""


def wait_until(predicate, timeout=None, interval=0.02, what=None, ignore=(OSError,)):
    """Polls predicate() until it returns a true value, which is returned.

    Exceptions listed in ignore count as "not yet". Raises WaitTimeout
    (an AssertionError) after timeout seconds (default TIMEOUT).
    """
    timeout = TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ignore as exc:  # noqa: PERF203 - polling
            last_exc = exc
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout:.1f} s waiting for {what or predicate}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            raise WaitTimeout(msg)
        time.sleep(interval)


def holds_for(predicate, duration, interval=0.02, what=None):
    """Asserts that predicate() stays true during a window of duration seconds.

    Used only to observe that something does NOT happen (e.g. a second
    signal); it is an observation window, not synchronisation.
    """
    deadline = time.monotonic() + duration
    while True:
        assert predicate(), f"stopped holding: {what or predicate}"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def call_with_timeout(fn, timeout=None, what=None):
    """Runs fn() in a thread and returns its result, bounded by timeout.

    For calls that could block forever in the kernel (first access to a FUSE
    mount whose server is not answering). On timeout the thread is left
    blocked; killing the daemon (cleanup) releases it.
    """
    timeout = TIMEOUT if timeout is None else timeout
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise WaitTimeout(f"{what or fn} did not return within {timeout:.1f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def rand_token(n=32):
    """A distinctive random ASCII value (letters and digits)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(_secrets.choice(alphabet) for _ in range(n))


def read_bytes(path):
    """Opens path afresh and reads it to the end."""
    with open(path, "rb", buffering=0) as f:
        return f.read()


def read_text(path):
    return read_bytes(path).decode("utf-8")


def read_fd_to_end(fd, chunk=65536):
    out = bytearray()
    while True:
        b = os.read(fd, chunk)
        if not b:
            return bytes(out)
        out += b


def errno_of(fn):
    """Runs fn() and returns the errno it raised as a name, or None."""
    try:
        fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return None


def sample(body, name, **labels):
    """The value of the series name{labels} in a Prometheus exposition, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        sname, _, rest = series.partition("{")
        got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
        if sname == name and got == want:
            return float(value)
    return None


def free_port():
    """A TCP port on 127.0.0.1 free a moment ago (for a listener to bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(listen, name, **labels):
    """The value of name{labels} on the telemetry listener's /metrics (a
    "host:port"); 0 when absent (a labelled counter appears at its first
    count)."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=TIMEOUT) as r:
        return sample(r.read().decode(), name, **labels) or 0


def parse_env_file(text):
    """Parses KEY='value' lines as secretfs's env format writes them."""
    out = {}
    for line in text.splitlines():
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        assert m, f"not an env line: {line!r}"
        key, val = m.group(1), m.group(2)
        if len(val) >= 2 and val[0] == "'" and val[-1] == "'":
            val = val[1:-1].replace("'\\''", "'")
        out[key] = val
    return out


# ---------------------------------------------------------------- mounts

class MountEntry:
    __slots__ = ("mount_id", "mountpoint", "fstype", "source")

    def __init__(self, mount_id, mountpoint, fstype, source):
        self.mount_id = mount_id
        self.mountpoint = mountpoint
        self.fstype = fstype
        self.source = source

    def __repr__(self):
        return f"MountEntry({self.mount_id}, {self.mountpoint!r}, {self.fstype!r}, {self.source!r})"


def _unescape(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mounts():
    """The entries of /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            out.append(MountEntry(int(lf[0]), _unescape(lf[4]), rf[0] if rf else "",
                                  _unescape(rf[1]) if len(rf) > 1 else ""))
    return out


def mounts_at(path, fstype=None):
    return [m for m in mounts()
            if m.mountpoint == path and (fstype is None or m.fstype == fstype)]


def is_mounted(path, fstype=FSTYPE):
    return bool(mounts_at(path, fstype))


def mount_syscall(source, target, fstype, flags, data):
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode(), flags,
                     data.encode() if data is not None else None)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount({target}): {os.strerror(e)}")


def umount_detach(path):
    """umount2(path, MNT_DETACH); returns 0 or the errno."""
    rc = _libc.umount2(path.encode(), MNT_DETACH)
    return 0 if rc == 0 else ctypes.get_errno()


def force_unmount(path, attempts=5):
    """Lazily unmounts every mount stacked on path: fusermount3 -uz, then
    umount2(MNT_DETACH). Bounded."""
    for _ in range(attempts):
        if not mounts_at(path):
            return True
        if shutil.which("fusermount3"):
            try:
                subprocess.run(["fusermount3", "-uz", path], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=TIMEOUT, check=False)
            except subprocess.TimeoutExpired:
                pass
        if mounts_at(path):
            umount_detach(path)
    return not mounts_at(path)


def listdir_errno(path):
    """errno name of os.listdir(path), or None. Opening a directory always
    asks the FUSE server, so a stale mount shows ENOTCONN here; stat() may
    be answered from the kernel's cached attributes of a dead server."""
    return errno_of(lambda: os.listdir(path))


# ---------------------------------------------------------------- memory

def scan_memory(pid, needles, max_mapping=256 << 20, chunk=1 << 20):
    """Searches the readable memory of process pid for each needle (bytes).

    Reads /proc/<pid>/maps and /proc/<pid>/mem; skips [vvar], [vsyscall],
    mappings larger than max_mapping, and chunks whose reads fail with
    EIO/EFAULT. Returns (hits, scanned) where hits maps each found needle to
    a list of (address, mapping description) and scanned is the number of
    bytes read.
    """
    needles = [n for n in needles if n]
    overlap = max(len(n) for n in needles) - 1 if needles else 0
    hits = {}
    scanned = 0
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read().splitlines()
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for line in maps:
            parts = line.split(None, 5)
            addr, perms = parts[0], parts[1]
            name = parts[5].strip() if len(parts) > 5 else ""
            if not perms.startswith("r"):
                continue
            if name.startswith("[vvar") or name == "[vsyscall]":
                continue
            start, end = (int(x, 16) for x in addr.split("-"))
            if end - start > max_mapping:
                continue
            pos, tail = start, b""
            while pos < end:
                n = min(chunk, end - pos)
                try:
                    data = os.pread(fd, n, pos)
                except OSError as exc:
                    if exc.errno in (errno.EIO, errno.EFAULT, errno.ENOMEM):
                        pos += n
                        tail = b""
                        continue
                    raise
                if not data:
                    break
                scanned += len(data)
                buf = tail + data
                base = pos - len(tail)
                for needle in needles:
                    i = buf.find(needle)
                    while i >= 0:
                        where = (base + i, f"{addr} {perms} {name}")
                        lst = hits.setdefault(needle, [])
                        if where not in lst:
                            lst.append(where)
                        i = buf.find(needle, i + 1)
                tail = buf[-overlap:] if overlap else b""
                pos += len(data)
    finally:
        os.close(fd)
    return hits, scanned


def assert_no_plaintext(pid, values, when, labels=None):
    """Fails (AssertionError) if any of values (str or bytes) is in the
    memory of process pid, allowing a moment for asynchronous releases to
    land; labels maps a value's bytes to what it is, for the message."""
    needles = [v if isinstance(v, bytes) else v.encode() for v in values]
    state = {}

    def clean():
        # Releases of closed handles reach the daemon asynchronously; give
        # them a moment before calling a copy a leak.
        state["hits"], state["scanned"] = scan_memory(pid, needles)
        return not state["hits"]
    try:
        wait_until(clean, timeout=3, interval=0.2, what="no plaintext")
    except WaitTimeout:
        raise AssertionError(f"plaintext secret(s) in the daemon's memory {when}:\n"
                             + describe_hits(state["hits"], labels)) from None
    assert state["scanned"] > 1 << 20, "the scan read suspiciously little memory"


def describe_hits(hits, labels=None):
    labels = labels or {}
    lines = []
    for needle, where in hits.items():
        lab = labels.get(needle, needle.decode(errors="replace"))
        lines.append(f"{lab}: {len(where)} copies, e.g. "
                     + ", ".join(f"{a:#x} in [{m}]" for a, m in where[:4]))
    return "\n".join(lines)


# ---------------------------------------------------------------- processes

class Daemon:
    """One secretfs process started by a Sandbox."""

    def __init__(self, sandbox, proc, mount, log_path, config_path, name):
        self.sandbox = sandbox
        self.proc = proc
        self.mount = mount
        self.log_path = log_path
        self.config_path = config_path
        self.name = name
        self._log_cache = ""
        self.started_ns = time.time_ns()  # a little after the process started

    @property
    def pid(self):
        return self.proc.pid

    @property
    def returncode(self):
        return self.proc.poll()

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                self._log_cache = f.read().decode("utf-8", errors="replace")
        except OSError:
            pass
        return self._log_cache

    def path(self, name=""):
        return os.path.join(self.mount, name) if name else self.mount

    def read(self, name):
        return read_text(self.path(name))

    def read_bytes(self, name):
        return read_bytes(self.path(name))

    def wait_log(self, pattern, timeout=None, flags=re.IGNORECASE, count=1):
        """Waits until the log matches the regular expression pattern (at
        least count times); fails fast if the daemon exits."""
        rx = re.compile(pattern, flags)

        def check():
            n = len(rx.findall(self.log_text()))
            if n >= count:
                return True
            if not self.alive() and len(rx.findall(self.log_text())) < count:
                raise AssertionError(
                    f"secretfs exited ({self.returncode}) while waiting for log /{pattern}/")
            return False
        return wait_until(check, timeout, interval=0.05, what=f"log line /{pattern}/")

    def wait_mounted(self, timeout=None):
        """Waits until the daemon's mount is up and answering; fails fast if
        the process exits first."""
        def check():
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"secretfs exited with {rc} before mounting {self.mount}")
            if not mounts_at(self.mount, FSTYPE):
                return False
            # A stale mount of a dead instance is listed too; a live one
            # answers (stat() could be served from cached attributes).
            os.listdir(self.mount)
            return True
        wait_until(check, timeout, interval=0.02, what=f"{FSTYPE} mounted at {self.mount}")

    def wait_written(self, timeout=None):
        """Directory mounts: waits until ..data points to a generation this
        daemon wrote (its name is its UTC time, which is not before the
        daemon started); fails fast if the process exits first."""
        data = os.path.join(self.mount, "..data")
        sec, ns = divmod(self.started_ns, 10**9)
        since = time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime(sec)) + f".{ns:09d}"

        def check():
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"secretfs exited with {rc} before writing {self.mount}")
            return os.readlink(data) >= since
        wait_until(check, timeout, interval=0.02, what=f"{data} to point to a new generation")

    def send(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Sends sig and waits (bounded) for the exit; returns the return
        code. If the daemon does not exit in time it is killed and the
        caller gets an AssertionError."""
        timeout = TIMEOUT if timeout is None else timeout
        self.send(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"secretfs (pid {self.pid}) did not exit within "
                                 f"{timeout:.1f} s of signal {sig}") from None

    def kill(self):
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self):
        if self.alive():
            try:
                self.stop(signal.SIGTERM)
            except AssertionError:
                pass
        self.kill()
        self.log_text()


def is_directory_config(config):
    return isinstance(config, dict) and config.get("mount", {}).get("type") == "directory"


def in_open_mode(sandbox, open_mode):
    """sandbox, its configs set for open_mode ("default" or "fast_open")."""
    if open_mode == "fast_open":
        sandbox.mount_defaults = {"fast_open": True}
    return sandbox


class Sandbox:
    """A temporary directory with a mount point, a config and a secrets file,
    and the processes started in it. cleanup() undoes everything."""

    def __init__(self, name="test"):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
        self.root = os.path.realpath(tempfile.mkdtemp(prefix=f"secretfs-{safe}-"))
        # Traversable by other users (the allow_other tests run as nobody).
        os.chmod(self.root, 0o755)
        self.mount = os.path.join(self.root, "mnt")
        os.mkdir(self.mount, 0o755)
        self.data_path = os.path.join(self.root, "secrets.json")
        self.config_path = os.path.join(self.root, "config.json")
        self.daemons = []
        self.helpers = []
        self.extra_mounts = []
        self.cleanups = []
        self.aborted = False
        self.mount_defaults = {}   # keys every config() puts under "mount"
        self._watchdog = None
        self._lock = threading.Lock()

    # -- files

    def file(self, name):
        return os.path.join(self.root, name)

    def write_data(self, data, atomic=True, path=None):
        """Writes the file backend's secrets file: a dict is written as JSON,
        a str as is. atomic: write a temporary file and rename it over;
        otherwise rewrite the existing file in place (same inode)."""
        path = path or self.data_path
        text = data if isinstance(data, str) else json.dumps(data, indent=1)
        if atomic:
            tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o600)
            os.rename(tmp, path)
        else:
            with open(path, "w") as f:
                f.write(text)

    def config(self, secrets, backends=None, mount=None, log=None, **top):
        """A config dict: the file backend "local" on secrets.json by default,
        log level debug, startup_timeout 10s, mount_defaults under "mount";
        keyword arguments add or replace top-level keys."""
        cfg = {
            "mount": {"path": self.mount, **self.mount_defaults, **(mount or {})},
            "backends": backends if backends is not None
            else {"local": {"type": "file", "path": "secrets.json"}},
            "secrets": secrets,
            "log": log or {"level": "debug", "format": "text"},
            "startup_timeout": "10s",
        }
        cfg.update(top)
        return cfg

    def write_config(self, cfg, path=None):
        path = path or self.config_path
        with open(path, "w") as f:
            if isinstance(cfg, str):
                f.write(cfg)
            else:
                json.dump(cfg, f, indent=1)
        return path

    # -- processes

    def popen(self, argv, env=None, **kw):
        """Starts a helper process that cleanup() will end (by PID)."""
        p = subprocess.Popen(argv, env=env, **kw)
        self.helpers.append(p)
        return p

    def start(self, secrets=None, *, data=None, config=None, env=None, extra_env=None,
              wait=True, pass_fds=(), args=(), config_path=None, mount_path=None,
              timeout=None, **cfg_kw):
        """Starts secretfs --config on a config built from secrets (or on the
        given config dict / text), writing data as the secrets file first.
        With wait, returns once the mount is up (first values fetched): for a
        directory mount, once its first generation is written."""
        if data is not None:
            self.write_data(data)
        if config is None:
            config = self.config(secrets, **cfg_kw)
        cfg_path = self.write_config(config, config_path)
        mount = mount_path
        if mount is None:
            mount = config["mount"]["path"] if isinstance(config, dict) else self.mount
        n = len(self.daemons)
        log_path = self.file(f"daemon-{n}.log")
        started_ns = time.time_ns()
        full_env = dict(os.environ if env is None else env)
        full_env.update(extra_env or {})
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([SECRETFS_BIN, "--config", cfg_path, *args],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=full_env, pass_fds=pass_fds, cwd=self.root,
                                    start_new_session=True)
        d = Daemon(self, proc, mount, log_path, cfg_path, f"daemon-{n}")
        d.started_ns = started_ns
        with self._lock:
            self.daemons.append(d)
        if self.aborted:
            d.kill()
        if wait and is_directory_config(config):
            d.wait_written(timeout)
        elif wait:
            d.wait_mounted(timeout)
        return d

    def run(self, args, timeout=None, cwd=None, env=None):
        """Runs secretfs with args to completion (bounded); returns the
        CompletedProcess (text stdout/stderr)."""
        return subprocess.run([SECRETFS_BIN, *args], cwd=cwd or self.root, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout or TIMEOUT, check=False)

    # -- watchdog and cleanup

    def start_watchdog(self, limit=HARD_LIMIT):
        self._watchdog = threading.Timer(limit, self.abort)
        self._watchdog.daemon = True
        self._watchdog.start()

    def abort(self):
        """Kills every daemon (SIGKILL by PID) so blocked FUSE requests fail."""
        self.aborted = True
        with self._lock:
            daemons = list(self.daemons)
        for d in daemons:
            if d.alive():
                try:
                    os.kill(d.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def cleanup(self):
        if self._watchdog is not None:
            self._watchdog.cancel()
        errors = []
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - keep cleaning
                errors.append(repr(exc))
        for d in self.daemons:
            d.cleanup()
        for p in self.helpers:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(TIMEOUT)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(TIMEOUT)
        for mp in [self.mount, *self.extra_mounts]:
            if mounts_at(mp) and not force_unmount(mp):
                errors.append(f"could not unmount {mp}")
        # Anything else still mounted below the sandbox (should not happen).
        for m in mounts():
            if m.mountpoint.startswith(self.root + "/"):
                force_unmount(m.mountpoint)
        shutil.rmtree(self.root, ignore_errors=True)
        return errors


def write_private(sandbox, name, text):
    """Writes text to a 0600 file in the sandbox (a token, an ID, a JWT, a credentials file)."""
    path = sandbox.file(name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def replace_private(path, text):
    """Atomically replaces a private file's content (as kubelet does)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.rename(tmp, path)
