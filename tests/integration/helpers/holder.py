"""Holds a value in memory, for the memory scanner's positive control.

Reads one line from stdin, keeps it (as bytes and as str), prints "ready",
then waits for stdin to close.
"""

import sys


def main():
    value = sys.stdin.buffer.readline().rstrip(b"\n")
    held = [value, value.decode("ascii")]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()
    return len(held)


if __name__ == "__main__":
    main()
