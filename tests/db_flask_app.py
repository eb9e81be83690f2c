"""An ordinary Flask + SQLAlchemy 2 application over PostgreSQL, for test_web_db.py.

Nothing here knows about dhaga: it is served by ``python -m dhaga.web --monkey-patch`` or
``gunicorn -k dhaga.web.GunicornWorker``. ``DATABASE_URL`` names the database.
"""

import os

import sqlalchemy as sa
from flask import Flask, jsonify, request

app = Flask(__name__)
URL = os.environ["DATABASE_URL"]
# Made at import, used first by many requests at once: the "cold engine" case.
engine = sa.create_engine(URL, pool_size=int(os.environ.get("POOL_SIZE", "20")), max_overflow=0,
                          pool_timeout=30)
# One connection, a short pool timeout: for SQLAlchemy's own TimeoutError.
tiny = sa.create_engine(URL, pool_size=1, max_overflow=0, pool_timeout=0.3)


@app.route("/sleep")
def sleep():
    seconds = float(request.args.get("s", "0.1"))
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid() FROM pg_sleep(:s)"),
                           {"s": seconds}).scalar()
    return jsonify(pid=pid)


@app.route("/interrupted")
def interrupted():
    """A query cut short by dhaga.timeout (the user's boundary raises dhaga.Timeout)."""
    import dhaga

    try:
        with dhaga.timeout(0.2), engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_sleep(30) /* dhaga-cut */"))
        outcome = "finished"
    except dhaga.Timeout:
        outcome = "Timeout"
    return jsonify(outcome=outcome)


@app.route("/active")
def active():
    with engine.connect() as conn:
        n = conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE '%dhaga-cut%' AND pid <> pg_backend_pid()")).scalar()
        backends = conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")).scalar()
    return jsonify(active=n, checked_out=engine.pool.checkedout(), backends=backends)


@app.route("/hold")
def hold():
    """Hold tiny's only connection for ``s`` seconds."""
    with tiny.connect() as conn:
        conn.execute(sa.text("SELECT pg_sleep(:s)"), {"s": float(request.args.get("s", "1"))})
    return jsonify(held=True)


@app.route("/tiny")
def tiny_query():
    try:
        with tiny.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return jsonify(error=None)
    except sa.exc.TimeoutError as exc:
        return jsonify(error=type(exc).__module__ + "." + type(exc).__name__)
