import sqlite3, sys
mode = sys.argv[1]
c = sqlite3.connect("db/t.db", isolation_level=None)
c.execute("PRAGMA journal_mode=DELETE")
c.execute("PRAGMA synchronous=" + mode)
c.execute("CREATE TABLE IF NOT EXISTS t(x)")
for i in range(3):
    c.execute("BEGIN"); c.execute("INSERT INTO t VALUES (?)", (i,)); c.execute("COMMIT")
    print("ack", i, flush=True)
