#!/usr/bin/env python3
"""Rewrites DIR/state: `in-place` truncates and rewrites it (D006); `replace` writes a new
file, fsyncs it, renames it over the old one and fsyncs the directory (clean)."""
import os, sys

d, mode = sys.argv[1], sys.argv[2]
p = os.path.join(d, "state")
if mode == "in-place":
    f = os.open(p, os.O_WRONLY | os.O_TRUNC)
    os.write(f, b"new")
    os.fsync(f)
    os.close(f)
else:
    t = p + ".tmp"
    f = os.open(t, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(f, b"new")
    os.fsync(f)
    os.close(f)
    os.rename(t, p)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
print("ack", flush=True)
