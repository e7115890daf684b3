"""A throwaway PostgreSQL cluster for the database-rotation tests (Debian's
postgresql 15 binaries), and the FakeVault callbacks that turn dynamic
database leases into real roles.

The cluster lives in a temporary directory owned by the postgres user and
listens on a Unix socket only (listen_addresses=''). The superuser
"postgres" is trusted on the socket (the test administers the cluster as
root); every other role must give its password (scram-sha-256). stop()
always runs `pg_ctl stop -m immediate` and removes the directory.
"""

import os
import pwd
import secrets as _secrets
import shutil
import socket
import string
import subprocess
import tempfile
import threading
import time

PG_BINDIRS = ("/usr/lib/postgresql/15/bin",)
PG_USER = "postgres"


def pg_bindir():
    """The directory of initdb/pg_ctl/psql, or None when not installed."""
    for d in PG_BINDIRS:
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "psql",
                                                                  "postgres")):
            return d
    return None


def pg_unavailable_reason():
    if pg_bindir() is None:
        return "PostgreSQL 15 binaries not installed (/usr/lib/postgresql/15/bin)"
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        return "no postgres user"
    if os.geteuid() != 0:
        return "needs root to run the cluster as the postgres user"
    return None


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text):
    return "'" + text.replace("'", "''") + "'"


class PgCluster:
    def __init__(self, timeout=30):
        self.bindir = pg_bindir()
        self.timeout = timeout
        pw = pwd.getpwnam(PG_USER)
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="secretfs-pg-"))
        os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        self.data = os.path.join(self.root, "data")
        self.sockdir = self.root
        self.logfile = os.path.join(self.root, "server.log")
        self.port = _free_port()
        self.database = "app"

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def _as_postgres(self, argv):
        r = subprocess.run(["runuser", "-u", PG_USER, "--", *argv], capture_output=True,
                           text=True, timeout=self.timeout, check=False, cwd="/")
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stderr.strip()}"
                               f"\n{self.server_log()}")
        return r.stdout

    def server_log(self):
        try:
            with open(self.logfile) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def start(self):
        self._as_postgres([self._bin("initdb"), "-D", self.data, "-U", PG_USER, "-A", "trust",
                           "-E", "UTF8", "--no-sync", "--no-instructions"])
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write(f"local all {PG_USER} trust\n"
                    "local all all scram-sha-256\n")
        opts = (f"-k {self.sockdir} -p {self.port} -c listen_addresses='' -c fsync=off "
                "-c password_encryption=scram-sha-256 -c max_connections=50")
        self._as_postgres([self._bin("pg_ctl"), "-D", self.data, "-l", self.logfile, "-w",
                           "-t", str(self.timeout), "-o", opts, "start"])
        self.admin(f"CREATE DATABASE {quote_ident(self.database)}", db="postgres")
        self.admin(f"REVOKE CONNECT ON DATABASE {quote_ident(self.database)} FROM PUBLIC",
                   db="postgres")
        return self

    def stop(self):
        """pg_ctl stop -m immediate (if it was started) and remove the directory."""
        try:
            if os.path.exists(os.path.join(self.data, "postmaster.pid")):
                subprocess.run(["runuser", "-u", PG_USER, "--", self._bin("pg_ctl"), "-D",
                                self.data, "-m", "immediate", "-w", "-t", "10", "stop"],
                               capture_output=True, timeout=20, check=False, cwd="/")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, sql, db=None):
        """Runs SQL as the superuser; returns the unaligned output."""
        r = subprocess.run([self._bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            "-h", self.sockdir, "-p", str(self.port), "-U", PG_USER,
                            "-d", db or self.database, "-c", sql],
                           capture_output=True, text=True, timeout=self.timeout, check=False,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def connect(self, user, password, timeout=5):
        """Connects as the app would, with psql and PGPASSWORD in the child's
        environment only; returns (ok, output or error)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": password,
               "PGCONNECT_TIMEOUT": "3"}
        try:
            r = subprocess.run([self._bin("psql"), "-X", "-w", "-At", "-h", self.sockdir,
                                "-p", str(self.port), "-U", user, "-d", self.database,
                                "-c", "SELECT current_user"],
                               capture_output=True, text=True, timeout=timeout, check=False,
                               env=env)
        except subprocess.TimeoutExpired:
            return False, "psql timed out"
        if r.returncode == 0 and r.stdout.strip() == user:
            return True, r.stdout.strip()
        return False, (r.stderr or r.stdout).strip()

    def role_exists(self, name):
        return self.admin(f"SELECT count(*) FROM pg_roles WHERE rolname = {quote_literal(name)}") \
            == "1"


class PgRoles:
    """FakeVault issue/renew/revoke callbacks creating, extending and
    dropping real roles, like Vault's database secrets engine: a role is
    VALID UNTIL the end of its lease, and each renewal moves that forward.
    Records when each role was created, renewed and dropped (time.time())."""

    SLACK = 2  # seconds of VALID UNTIL beyond the lease, for clock reads

    def __init__(self, cluster, ttl):
        self.cluster = cluster
        self.ttl = ttl
        self.lock = threading.Lock()
        self.created = {}       # username -> time
        self.renewed = {}       # username -> [VALID UNTIL after each renewal]
        self.dropped = {}       # username -> (time, revoked_by)
        self.errors = []

    @staticmethod
    def _timestamp(t):
        return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(t))

    def valid_until(self, user):
        return self.cluster.admin(
            "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles "
            f"WHERE rolname = {quote_literal(user)}")

    def issue(self, req):
        alphabet = string.ascii_lowercase + string.digits
        user = "v-app-" + "".join(_secrets.choice(alphabet) for _ in range(16))
        password = "".join(_secrets.choice(string.ascii_letters + string.digits)
                           for _ in range(32))
        valid_until = self._timestamp(time.time() + self.ttl + self.SLACK)
        db = quote_ident(self.cluster.database)
        self.cluster.admin(
            f"CREATE ROLE {quote_ident(user)} LOGIN PASSWORD {quote_literal(password)} "
            f"VALID UNTIL {quote_literal(valid_until)}; "
            f"GRANT CONNECT ON DATABASE {db} TO {quote_ident(user)};")
        with self.lock:
            self.created[user] = time.time()
        return {"username": user, "password": password}

    def renew(self, lease):
        user = lease.data["username"]
        until = lease.expires + self.SLACK
        self.cluster.admin(f"ALTER ROLE {quote_ident(user)} VALID UNTIL "
                           f"{quote_literal(self._timestamp(until))};")
        with self.lock:
            self.renewed.setdefault(user, []).append(until)

    def revoke(self, lease):
        user = lease.data["username"]
        try:
            self.cluster.admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE usename = {quote_literal(user)}; "
                f"REVOKE ALL ON DATABASE {quote_ident(self.cluster.database)} "
                f"FROM {quote_ident(user)}; "
                f"DROP ROLE {quote_ident(user)};")
        except Exception as exc:  # noqa: BLE001 - recorded, the fake reports it too
            with self.lock:
                self.errors.append(f"{user}: {exc}")
            raise
        with self.lock:
            self.dropped[user] = (time.time(), lease.revoked_by)
