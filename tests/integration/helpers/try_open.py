"""Tries to read files and list directories, reporting the outcome as JSON.

usage: try_open.py PATH...   (run as another user by the permission tests)

Prints {"PATH": {"data": TEXT} | {"entries": [...]} | {"errno": "EACCES"}}.
"""

import errno
import json
import os
import sys


def main():
    out = {}
    for path in sys.argv[1:]:
        try:
            if os.path.isdir(path):
                out[path] = {"entries": sorted(os.listdir(path))}
            else:
                with open(path, "rb") as f:
                    out[path] = {"data": f.read().decode("utf-8", errors="replace")}
        except OSError as exc:
            out[path] = {"errno": errno.errorcode.get(exc.errno, str(exc.errno))}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
