"""Child script: database drivers under dhaga.monkey.patch_all(), against real servers.

Usage: python db_drivers.py SCENARIO JSON-PARAMS. Prints one JSON line of measurements that
tests/test_monkey_db.py checks. Patches before importing any driver, as users must.
"""

from dhaga import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import dhaga  # noqa: E402

SCENARIO, PARAMS = sys.argv[1], json.loads(sys.argv[2])
N, DELAY = 50, 0.2
out: dict = {}


def loop_ticks(stop):
    """Count loop-driven wake-ups while queries run: a stalled loop counts none."""
    n = 0
    while not stop.is_set():
        dhaga.sleep(0.01)
        n += 1
    return n


def concurrently(query):
    stop = threading.Event()  # green: patched
    ticker = dhaga.spawn(loop_ticks, stop)
    t0 = time.monotonic()
    results = [d.result() for d in [dhaga.spawn(query) for _ in range(N)]]
    out["elapsed"] = time.monotonic() - t0
    stop.set()
    out["ticks"] = ticker.result()
    out["ok"] = sum(1 for r in results if r)


def pg_activity(connect, marker):
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                    "AND pid <> pg_backend_pid()", (f"%{marker}%",))
        return cur.fetchone()[0]
    finally:
        conn.close()


def settled(activity, marker):
    """The server's count of the marked query, once it stopped changing (bounded: 3 s)."""
    deadline = time.monotonic() + 3
    n = activity(marker)
    while n and time.monotonic() < deadline:
        dhaga.sleep(0.05)  # polling another process's state, with a deadline
        n = activity(marker)
    return n


def interrupt_cases(connect, sleep_sql, marker, activity, use_again):
    """Timeout and kill mid-query: what the user sees, the server, and the connection after."""
    conn = connect()
    t0 = time.monotonic()
    try:
        with dhaga.timeout(0.3):
            conn.cursor().execute(sleep_sql)
        out["timeout_raised"] = "nothing"
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        out["timeout_raised"] = type(exc).__module__ + "." + type(exc).__name__
    out["timeout_after"] = time.monotonic() - t0
    out["active_after_timeout"] = settled(activity, marker)
    out["state_after_timeout"] = use_again(conn)

    conn2 = connect()
    d = dhaga.spawn(lambda: conn2.cursor().execute(sleep_sql))
    dhaga.sleep(0.3)
    d.kill()
    out["kill_raised"] = type(d.exception()).__name__
    out["active_after_kill"] = settled(activity, marker)
    out["state_after_kill"] = use_again(conn2)


def psycopg2_use_again(conn):
    if conn.closed:
        return "closed"
    conn.rollback()
    cur = conn.cursor()
    cur.execute("SELECT 41 + 1")
    return "usable" if cur.fetchone()[0] == 42 else "wrong"


def psycopg3_use_again(conn):
    if conn.closed:
        return "closed"
    conn.rollback()
    return "usable" if conn.execute("SELECT 41 + 1").fetchone()[0] == 42 else "wrong"


def run_psycopg2():
    import psycopg2

    out["wait_callback"] = psycopg2.extensions.get_wait_callback().__module__
    dsn = PARAMS["dsn"]

    def query():
        conn = psycopg2.connect(dsn)
        try:
            cur = conn.cursor()
            cur.execute("SELECT pg_sleep(%s), 1", (DELAY,))
            return cur.fetchone()[1] == 1
        finally:
            conn.close()

    import gc
    import os

    dhaga.sleep(0)  # the scheduler and its loop (epoll, self-pipe) exist before counting
    fds_before = len(os.listdir("/proc/self/fd"))
    concurrently(query)
    gc.collect()
    out["fds_left"] = len(os.listdir("/proc/self/fd")) - fds_before  # sockets and duplicates
    # DNS: a host *name* must be resolved by dhaga's resolver (off the loop) before libpq sees
    # it, so this one case names the loopback host by name on purpose; /etc/hosts maps it to
    # 127.0.0.1, and the test checks libpq was given that address.
    conn = psycopg2.connect(dsn.replace("127.0.0.1", "localhost"))
    out["by_name"] = conn.get_dsn_parameters().get("hostaddr", "")
    conn.close()
    interrupt_cases(lambda: psycopg2.connect(dsn), "SELECT pg_sleep(5) /* dhaga-p2 */",
                    "dhaga-p2", lambda m: pg_activity(lambda: psycopg2.connect(dsn), m),
                    psycopg2_use_again)


def run_psycopg3():
    import psycopg
    import psycopg.waiting

    out["wait_func"] = psycopg.waiting.wait.__module__
    out["impl"] = psycopg.pq.__impl__
    params = PARAMS["params"]

    def connect():
        return psycopg.connect(**params)

    def query():
        with connect() as conn:
            return conn.execute("SELECT pg_sleep(%s), 1", (DELAY,)).fetchone()[1] == 1

    concurrently(query)

    def activity(marker):
        with connect() as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                "AND pid <> pg_backend_pid()", (f"%{marker}%",)).fetchone()[0]

    interrupt_cases(connect, "SELECT pg_sleep(5) /* dhaga-p3 */", "dhaga-p3", activity,
                    psycopg3_use_again)


def run_pymysql():
    import pymysql

    params = PARAMS["params"]

    def query():
        conn = pymysql.connect(**params)
        try:
            cur = conn.cursor()
            cur.execute("SELECT SLEEP(%s), 1", (DELAY,))
            return cur.fetchone()[1] == 1
        finally:
            conn.close()

    concurrently(query)

    def activity(marker):
        conn = pymysql.connect(**params)
        try:
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM information_schema.processlist "
                        "WHERE command = 'Query' AND info LIKE %s AND id <> CONNECTION_ID()",
                        (f"%{marker}%",))
            return cur.fetchone()[0]
        finally:
            conn.close()

    def use_again(conn):
        if not conn.open:
            return "closed"
        try:
            cur = conn.cursor()
            cur.execute("SELECT 41 + 1")
            return "usable" if cur.fetchone()[0] == 42 else "wrong"
        except pymysql.Error as exc:
            return f"broken: {exc!r}"

    interrupt_cases(lambda: pymysql.connect(**params), "SELECT SLEEP(5) /* dhaga-my */",
                    "dhaga-my", activity, use_again)


def run_subprocess():
    import subprocess

    stop = threading.Event()
    ticker = dhaga.spawn(loop_ticks, stop)
    t0 = time.monotonic()
    code = "import time; time.sleep(0.5); print('done')"
    runs = [dhaga.spawn(subprocess.run, [sys.executable, "-c", code], capture_output=True,
                        text=True) for _ in range(3)]
    outs = [r.result().stdout.strip() for r in runs]
    popen = subprocess.Popen([sys.executable, "-c", code])
    waited = popen.wait()
    out["elapsed"] = time.monotonic() - t0
    stop.set()
    out["ticks"] = ticker.result()
    out["outputs"] = outs
    out["wait_status"] = waited
    try:
        subprocess.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2)
        out["timeout"] = "none"
    except subprocess.TimeoutExpired:
        out["timeout"] = "TimeoutExpired"
    one_pipe = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    out["communicate"] = one_pipe.communicate()[0].strip()


{"psycopg2": run_psycopg2, "psycopg3": run_psycopg3, "pymysql": run_pymysql,
 "subprocess": run_subprocess}[SCENARIO]()
out["threads"] = threading.active_count()
print(json.dumps(out))
