#!/usr/bin/env python3
"""Works in DIR through chdir and relative names: writes x.tmp, fsyncs it, renames it to x and
acknowledges, without fsyncing DIR (D001), unless --fixed. Also fsyncs /dev/null (EINVAL:
no failed write-back, so no D005) and reuses a leftover x.tmp (O_TRUNC then rename: a replace,
no D006)."""
import os, sys

d, fixed = sys.argv[1], "--fixed" in sys.argv[2:]
os.makedirs(d, exist_ok=True)
os.chdir(d)
try:
    os.fsync(os.open("/dev/null", os.O_WRONLY))
except OSError:
    pass
for i in range(2):
    f = os.open("x.tmp", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(f, b"v%d" % i)
    os.fsync(f)
    os.close(f)
    os.rename("x.tmp", "x")
    if fixed:
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
    print("ack %d" % i, flush=True)
