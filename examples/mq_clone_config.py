"""Live configuration shared by worker processes, with the Clone pattern (dhaga.mq.clone).

Run it as is. It starts a Binary Star pair of Clone servers (a primary and a backup, each a
process) and three worker processes. Each worker keeps a replica of the ``/config/`` subtree
and reacts as soon as a setting changes. This script, the admin, then:

1. sets ``/config/batch_size`` and ``/config/mode``: every worker picks them up;
2. kills the primary with SIGKILL: the backup takes over (Binary Star failover), and every
   client, the workers and the admin, resyncs with it;
3. changes ``batch_size`` again, through the backup: every worker picks it up;
4. sets ``/config/maintenance`` with a TTL of one second: it appears on every worker and then
   expires everywhere;
5. asks each worker for its whole configuration: they are all the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import dhaga
from dhaga.mq.clone import CloneClient, CloneServer, free_base

TIMEOUT = 0.5  # seconds of silence before a failover
HEARTBEAT = 0.1
WORKERS = 3


# ---------------------------------------------------------------------------- a worker
def worker(name: str, servers: str) -> None:
    """Follow /config/ and react to each change; answer "report" on stdin."""
    config = CloneClient(servers.split(","), "/config/", timeout=TIMEOUT)
    changes = config.watch()
    config.wait_synced()
    print(f"{name} ready", flush=True)

    def react() -> None:
        for change in changes:
            setting = change.key.removeprefix("/config/")
            if change.value is None:
                print(f"{name} sees {setting} removed", flush=True)
            else:
                print(f"{name} sees {setting}={change.value.decode()}", flush=True)

    dhaga.spawn(react)
    while dhaga.to_thread(sys.stdin.readline).strip() == "report":
        snapshot = {k: v.decode() for k, v in sorted(config.items())}
        print(f"{name} config {json.dumps(snapshot)}", flush=True)
    config.close()


# ---------------------------------------------------------------------------- a server
def server(role: str, bind: str, peer: str) -> None:
    def on_state(state) -> None:
        print(f"{role} {state.name.lower()}", flush=True)

    CloneServer(
        bind,
        peer,
        primary=role == "primary",
        timeout=TIMEOUT,
        heartbeat=HEARTBEAT,
        on_state=on_state,
    ).serve_forever()


# ---------------------------------------------------------------------------- the admin
class Child:
    """A child process of this script, its output lines collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, line: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.lines:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no {line!r} from {self.proc.args[2:]}: {self.lines}"
                )
            dhaga.sleep(0.02)  # our own clone client keeps running meanwhile

    def tell(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()  # type: ignore[union-attr]


def everyone_sees(workers: list[Child], line: str) -> None:
    for i, w in enumerate(workers, 1):
        w.wait_for(f"worker-{i} sees {line}")
    print(f"  every worker sees {line}", flush=True)


def main() -> int:
    a, b = free_base(), free_base()
    primary, backup = Child("server", "primary", a, b), Child("server", "backup", b, a)
    children = [primary, backup]
    try:
        primary.wait_for("primary active")
        backup.wait_for("backup passive")
        print("servers: primary active, backup passive", flush=True)
        workers = [
            Child("worker", f"worker-{i}", f"{a},{b}") for i in range(1, WORKERS + 1)
        ]
        children += workers
        for i, w in enumerate(workers, 1):
            w.wait_for(f"worker-{i} ready")
        admin = CloneClient([a, b], "/config/", timeout=TIMEOUT)
        admin.wait_synced(timeout=10)

        admin.set("/config/batch_size", "10")
        admin.set("/config/mode", "fast")
        everyone_sees(workers, "batch_size=10")
        everyone_sees(workers, "mode=fast")

        killed = time.monotonic()
        os.kill(primary.proc.pid, signal.SIGKILL)
        print(f"primary (pid {primary.proc.pid}) killed with SIGKILL", flush=True)
        backup.wait_for("backup active")
        while admin.server is None or admin.server.snapshot != b:
            dhaga.sleep(0.02)
        print(
            f"backup is active; the admin follows it {time.monotonic() - killed:.1f}s "
            "after the kill",
            flush=True,
        )

        admin.set("/config/batch_size", "20")
        everyone_sees(workers, "batch_size=20")
        admin.set("/config/maintenance", "on", ttl=1.0)
        everyone_sees(workers, "maintenance=on")
        everyone_sees(workers, "maintenance removed")
        print("maintenance expired on every worker", flush=True)

        reports = []
        for i, w in enumerate(workers, 1):
            w.tell("report")
            prefix = f"worker-{i} config "
            deadline = time.monotonic() + 10
            while not any(line.startswith(prefix) for line in w.lines):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker-{i} did not report")
                dhaga.sleep(0.02)
            reports.append(
                next(line for line in w.lines if line.startswith(prefix))[len(prefix) :]
            )
        mine = json.dumps({k: v.decode() for k, v in sorted(admin.items())})
        admin.close()
        if all(r == mine for r in reports):
            print(f"every worker has the same configuration: {mine}", flush=True)
            return 0
        print(f"configurations differ: admin {mine}, workers {reports}", flush=True)
        return 1
    finally:
        for child in children:
            child.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        dhaga.run(worker, sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["server"]:
        dhaga.run(server, sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(dhaga.run(main))
