"""Child script: ``dhaga.monkey.patch_psycopg()`` alone (nothing else patched) with psycopg2
and psycopg 3. Usage: python db_psycopg_alone.py DSN. Prints one JSON line."""

from dhaga import monkey

monkey.patch_psycopg()  # before the drivers are imported; the other half after import below

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import psycopg2  # noqa: E402

import dhaga  # noqa: E402

DSN = sys.argv[1]


def two():
    conn = psycopg2.connect(DSN)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 2 FROM pg_sleep(0.2)")
        return cur.fetchone()[0]
    finally:
        conn.close()


def three():
    import psycopg  # imported after patch_psycopg(): patched on import

    with psycopg.connect(DSN) as conn:
        return conn.execute("SELECT 3 FROM pg_sleep(0.2)").fetchone()[0]


t0 = time.monotonic()
results = [d.result() for d in [dhaga.spawn(f) for f in [two, three] * 10]]
print(json.dumps({"sum": sum(results), "elapsed": time.monotonic() - t0,
                  "socket_patched": monkey.is_patched("socket"),
                  "threading_patched": monkey.is_patched("threading")}))
