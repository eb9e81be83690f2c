"""An ordinary Flask + SQLAlchemy app over PostgreSQL, served by dhaga.web with patching.

Usage: python examples/db_flask_sqlalchemy.py postgresql+psycopg2://user@127.0.0.1:5432/db

The Flask and SQLAlchemy code is what you would write anyway. ``patch_all()`` makes psycopg2
cooperative and SQLAlchemy's pool lock and condition green, so 100 requests share a pool of
10 connections without blocking each other. In production: ``python -m dhaga.web
--monkey-patch myapp:app`` or ``gunicorn -k dhaga.web.GunicornWorker myapp:app``.
"""

from dhaga import monkey

monkey.patch_all()  # first: before Flask, SQLAlchemy and the driver are imported

import sys  # noqa: E402
import time  # noqa: E402

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from flask import Flask, jsonify  # noqa: E402

import dhaga  # noqa: E402
from dhaga.web import WSGIServer  # noqa: E402

app = Flask(__name__)
engine = None  # made in main(), from the URL on the command line


@app.route("/slow")
def slow():
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid() FROM pg_sleep(0.1)")).scalar()
    return jsonify(pid=pid)


def main(url: str) -> None:
    global engine
    engine = sa.create_engine(url, pool_size=10, max_overflow=0)
    server = WSGIServer(app, ("127.0.0.1", 0))
    server.start()
    base = f"http://127.0.0.1:{server.address[1]}"
    started = time.monotonic()
    with dhaga.Group() as group:
        replies = [group.spawn(requests.get, f"{base}/slow", timeout=30) for _ in range(100)]
    pids = {r.result().json()["pid"] for r in replies}
    elapsed = time.monotonic() - started
    print(f"100 requests of a 100 ms query through a pool of {len(pids)} connections "
          f"in {elapsed:.1f}s")
    server.stop()
    engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
