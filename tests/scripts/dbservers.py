"""Throw-away PostgreSQL 15 and MariaDB servers in temporary directories, on free loopback ports.

Used by the database tests' session fixtures, by the examples' tests and by
benchmarks/bench_db.py. It knows nothing about dhaga or pytest: it finds the server programs,
starts one server, waits until it accepts connections (bounded), and stops it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

from netkit import free_port

PG_BIN_DIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)


def find_postgres() -> str | None:
    """The directory holding initdb/pg_ctl/postgres, or None."""
    for d in PG_BIN_DIRS + [os.path.dirname(shutil.which("initdb") or "") or "/nonexistent"]:
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


def find_mariadb() -> tuple[str, str] | None:
    """(mariadbd, mariadb-install-db) paths, or None."""
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    install = shutil.which("mariadb-install-db")
    return (server, install) if server and install else None


def _wait_port(port: int, proc: subprocess.Popen | None, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on port {port} in {timeout}s") from None
            time.sleep(0.05)


class Postgres:
    """A PostgreSQL cluster of its own: ``dsn``, ``params`` (for psycopg), ``url`` (SQLAlchemy)."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="dhaga-pg-")
        self.port = free_port()
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
            self._as = [runuser or "runuser", "-u", "postgres", "--"]
        self.data = os.path.join(self.dir, "data")
        self.params = {"host": "127.0.0.1", "port": self.port, "user": self.user,
                       "dbname": "postgres"}
        self.dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        self.url = f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> Postgres:
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.data, "-A", "trust",
                  "-U", self.user, "--no-sync", "-E", "UTF8")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.dir} -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=400 "
                   f"-c shared_buffers=32MB")
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l",
                  os.path.join(self.dir, "log"), "-o", options, "-w", "-t", "60", "start")
        _wait_port(self.port, None, "postgres")
        return self

    def stop(self) -> None:
        try:
            self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "immediate",
                      "-w", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class MariaDB:
    """A MariaDB server of its own (no grant tables: any user, no password)."""

    def __init__(self, server: str, install: str) -> None:
        self.server, self.install = server, install
        self.dir = tempfile.mkdtemp(prefix="dhaga-maria-")
        self.port = free_port()
        self.data = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.params = {"host": "127.0.0.1", "port": self.port, "user": "root", "database": "test",
                       "ssl_disabled": True}
        self.proc: subprocess.Popen | None = None

    def start(self) -> MariaDB:
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run([self.install, "--no-defaults", f"--datadir={self.data}", *user,
                        "--skip-test-db", "--auth-root-authentication-method=normal"],
                       check=True, capture_output=True, timeout=120)
        os.makedirs(os.path.join(self.data, "test"), exist_ok=True)
        self.proc = subprocess.Popen(
            [self.server, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-grant-tables",
             "--skip-name-resolve", f"--pid-file={self.dir}/mariadbd.pid",
             "--innodb-buffer-pool-size=16M", "--max-connections=400",
             f"--log-error={self.dir}/error.log", *user],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, "mariadbd")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
