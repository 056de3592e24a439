#!/usr/bin/env python3
"""Appends to DIR/log, fsyncing each line: with mode `retry` an fsync that fails is retried and
the line acknowledged anyway (fsyncgate: D005); with `failstop` the program stops (clean)."""
import os, sys
d = sys.argv[1]; mode = sys.argv[2]
os.makedirs(d, exist_ok=True)
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY); os.fsync(dfd)
f = os.open(os.path.join(d, "log"), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644); os.fsync(dfd)
for i in range(4):
    os.write(f, b"x\n")
    try:
        os.fsync(f)
    except OSError:
        if mode == "failstop":
            sys.exit(1)
        os.fsync(f)  # retry: fsyncgate
    print("ack %d" % i, flush=True)
