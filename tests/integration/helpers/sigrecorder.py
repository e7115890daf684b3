"""Records the signals it receives, for on_change tests.

usage: sigrecorder.py PIDFILE LOGFILE [WATCHED_FILE]

Installs handlers for SIGHUP, SIGUSR1 and SIGUSR2, then writes its pid to
PIDFILE (atomically). For each signal it appends one line to LOGFILE:
"<SIGNAME> <sha256 of WATCHED_FILE's content at that moment>" (or "-" when no
file is watched, or "error:<errno>" when it cannot be read). Exits 0 on
SIGTERM.
"""

import hashlib
import os
import signal
import sys


def main():
    pidfile, logfile = sys.argv[1], sys.argv[2]
    watched = sys.argv[3] if len(sys.argv) > 3 else None

    def record(signum, frame):
        what = "-"
        if watched:
            try:
                with open(watched, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            except OSError as exc:
                what = f"error:{exc.errno}"
        line = f"{signal.Signals(signum).name} {what}\n".encode()
        fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, record)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

    tmp = pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, pidfile)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
