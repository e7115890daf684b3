"""Reads the files of a directory-mode secretfs as fast as it can while they
rotate, and reports (one JSON object on stdout) every read that was not a
complete value.

Usage: dir_reader.py MOUNT SECONDS BIG_LEN

- "big" is read through its name (top-level link -> ..data -> generation):
  every read must be a whole value "<n:08d>:xxx...:<n:08d>" of BIG_LEN
  bytes, never missing, empty or cut.
- "db/username", "db/password" and "db.env" (one dev credential pair) are
  read through one resolution of ..data (a descriptor of the generation it
  points to): they must always belong to the same pair.
"""

import json
import os
import re
import sys
import time

BIG_RE = re.compile(rb"(\d{8}):x+:(\d{8})")
USER_RE = re.compile(r"dev-.+-\d+")


def parse_env(text):
    out = {}
    for line in text.splitlines():
        key, _, val = line.partition("=")
        out[key] = val[1:-1] if len(val) >= 2 and val[0] == val[-1] == "'" else val
    return out


def read_at(dfd, name):
    fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
    try:
        out = b""
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return out
            out += b
    finally:
        os.close(fd)


def main():
    mount, seconds, big_len = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    big_path = os.path.join(mount, "big")
    data_path = os.path.join(mount, "..data")
    errors, big_seen, users_seen = [], set(), set()
    path_reads = pair_reads = gone = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(errors) < 20:
        try:
            with open(big_path, "rb", buffering=0) as f:
                data = f.read()
        except OSError as exc:
            errors.append(f"big: {exc!r}")
            continue
        m = BIG_RE.fullmatch(data)
        if len(data) != big_len or not m or m.group(1) != m.group(2):
            errors.append(f"big: incomplete value of {len(data)} bytes: {data[:20]!r}...")
            continue
        big_seen.add(m.group(1).decode())
        path_reads += 1

        dfd = os.open(data_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            user = read_at(dfd, "db/username").decode()
            password = read_at(dfd, "db/password").decode()
            env = parse_env(read_at(dfd, "db.env").decode())
        except FileNotFoundError:
            gone += 1  # that generation was removed after its grace period
            continue
        finally:
            os.close(dfd)
        if not USER_RE.fullmatch(user) or len(password) != 24 or \
                env != {"username": user, "password": password}:
            errors.append(f"pair mismatch: user {user!r}, env user {env.get('username')!r}, "
                          f"password match {env.get('password') == password}")
            continue
        users_seen.add(user)
        pair_reads += 1
    print(json.dumps({"errors": errors, "path_reads": path_reads, "pair_reads": pair_reads,
                      "gone": gone, "big_values": sorted(big_seen),
                      "users": sorted(users_seen)}))


if __name__ == "__main__":
    main()
