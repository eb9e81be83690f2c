"""PostgreSQL from dhagas with psycopg 3: many queries at once, and a timeout that cancels.

Usage: python examples/db_postgres.py "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

``patch_all()`` makes psycopg's waits park the dhaga (its C speed-ups included). A query cut
short by ``dhaga.timeout()`` raises ``dhaga.Timeout`` at the block's edge (never a driver
error), is cancelled on the server, and its connection stays usable.
"""

from dhaga import monkey

monkey.patch_all()  # first, before importing the driver

import sys  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402

import dhaga  # noqa: E402


def one_query(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_sleep(0.1)").fetchone()[0]


def main(dsn: str) -> None:
    started = time.monotonic()
    with dhaga.Group() as group:
        queries = [group.spawn(one_query, dsn) for _ in range(100)]
    total = sum(q.result() for q in queries)
    print(f"{total} queries of 100 ms in {time.monotonic() - started:.1f}s, one OS thread")

    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            with dhaga.timeout(0.2):
                conn.execute("SELECT pg_sleep(10) /* example-slow */")
        except dhaga.Timeout:
            print("the slow query timed out: dhaga.Timeout")
        running = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%example-slow%' "
            "AND state = 'active' AND pid <> pg_backend_pid()").fetchone()[0]
        print(f"still running on the server: {running}")
        print(f"the connection still works: {conn.execute('SELECT 6 * 7').fetchone()[0]}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
