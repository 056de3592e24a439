#!/usr/bin/env python3
"""The seed bug as a tiny Python WAL: every third line starts a new segment, created and
fsynced, but its directory is fsynced only for the first segment (unless --fixed).
Usage: seedwal.py append DIR [--fixed] < lines  |  seedwal.py dump DIR"""
import os, sys

cmd, d = sys.argv[1], sys.argv[2]
fixed = "--fixed" in sys.argv[3:]
if cmd == "append":
    os.makedirs(d, exist_ok=True)
    seg, f = 0, None
    for n, line in enumerate(sys.stdin):
        if n % 3 == 0:
            seg += 1
            if f is not None:
                os.close(f)
            f = os.open(os.path.join(d, "%06d.wal" % seg), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
            if fixed or seg == 1:
                dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                os.fsync(dfd)
                os.close(dfd)
        os.write(f, line.encode())
        os.fsync(f)
        print("ack %d" % (n + 1), flush=True)
elif cmd == "dump":
    # Bytes, not text: a crash can leave a torn tail of garbage after the synced lines.
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            sys.stdout.buffer.write(f.read())
