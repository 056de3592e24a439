"""sqlite_check.py DIR: the check `durable audit --explore` runs on each crash state of
sqlite_commit.py. Opening the database recovers it as SQLite does (a hot journal left
behind is rolled back); every row whose commit was acknowledged ("ack I", I = 0, 1, ...)
must then be there. The explorer gives the acknowledgements' count in $DURABLE_AUDIT_ACKS."""
import os, sqlite3, sys

acked = int(os.environ["DURABLE_AUDIT_ACKS"])
path = os.path.join(sys.argv[1], "t.db")
try:
    rows = {r[0] for r in sqlite3.connect(path).execute("SELECT x FROM t")}
except sqlite3.Error as e:
    rows = set()
    print("cannot read the table:", e)
missing = [i for i in range(acked) if i not in rows]
if missing:
    print("acknowledged rows %s, missing after the crash: %s" % (list(range(acked)), missing))
    sys.exit(1)
