"""The Clone pattern with real processes: a primary, a backup and clients, each its own
process; the primary is killed with SIGKILL while clients write, and every client converges
to the same map. Also TTLs, a late joiner's snapshot, a subtree, and bad input, through the
command line.

Run as a script, this file is the writing client the failover test starts (``client`` mode).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
T = 0.4  # the failover timeout in these tests (seconds)
HEARTBEAT = 0.1


class Child:
    """A child process whose output lines are collected, with the time each arrived."""

    def __init__(self, args: list[str], stdin: bool = False) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: list[tuple[float, str]] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            with self._arrived:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._arrived.notify_all()
        with self._arrived:  # end of output: wake a waiter, which then gives up
            self._arrived.notify_all()

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def find(self, prefix: str, after: float = 0.0) -> tuple[float, str] | None:
        for when, line in list(self.lines):
            if when >= after and line.startswith(prefix):
                return when, line
        return None

    def wait_until(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate()`` holds, re-checking as each line arrives; False on timeout
        (or when the output ended first)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    return predicate()
                self._arrived.wait(left)  # woken by each new line, and at end of output
        return True

    def wait_line(
        self, prefix: str, timeout: float = 10.0, after: float = 0.0
    ) -> tuple[float, str]:
        if not self.wait_until(lambda: self.find(prefix, after) is not None, timeout):
            raise AssertionError(f"no line {prefix!r} from {self.proc.args}:\n{self.text()}")
        return self.find(prefix, after)  # type: ignore[return-value]

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def stop(self, sig: int = signal.SIGKILL) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout=5)
            for stream in (self.proc.stdout, self.proc.stdin):
                if stream is not None:
                    stream.close()
        return code


CLONE = [sys.executable, "-m", "dhaga.mq.clone"]


@pytest.fixture
def children():
    made: list[Child] = []

    def start(args: list[str], stdin: bool = False) -> Child:
        child = Child(args, stdin)
        made.append(child)
        return child

    yield start
    for child in made:
        child.stop()


def free_base() -> str:
    from dhaga.mq.clone import free_base as _free_base

    return _free_base()


def server(children, *extra: str) -> Child:
    return children(
        [*CLONE, "server", "--timeout", str(T), "--heartbeat", str(HEARTBEAT), *extra]
    )


def lone_server(children) -> tuple[Child, str]:
    srv = server(children)
    _, ready = srv.wait_line("ready ")
    return srv, ready.split()[1].split("=", 1)[1]


def cli(base: str, *args: str, timeout: float = 15) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [*CLONE, "client", "--servers", base, "--timeout", str(T), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def dumps(clients: list[Child], after: float) -> list[dict]:
    for c in clients:
        c.send("dump")
    return [json.loads(c.wait_line("map ", after=after)[1][4:]) for c in clients]


def test_failover_under_writes_converges(children):
    import dhaga
    from dhaga import mq

    a, b = free_base(), free_base()
    primary = server(children, "--primary", "--bind", a, "--peer", b)
    backup = server(children, "--backup", "--bind", b, "--peer", a)
    primary.wait_line("state ACTIVE")
    backup.wait_line("state PASSIVE")
    port = int(a.rsplit(":", 1)[1])
    observer = mq.Socket(mq.SUB, linger=0, rcvhwm=0)  # what the primary publishes
    observer.subscribe(b"")
    observer.connect(f"tcp://127.0.0.1:{port + 1}")
    published: set[str] = set()
    clients = [
        children(
            [sys.executable, __file__, "client", f"c{i}", f"{a},{b}", str(T)],
            stdin=True,
        )
        for i in range(3)
    ]
    try:
        for c in clients:
            c.wait_line("synced ")
        for c in clients:
            c.send("go")

        def observe(until: float) -> None:
            while time.monotonic() < until:
                try:
                    frames = observer.recv_multipart(
                        timeout=max(0.0, until - time.monotonic())
                    )
                except dhaga.Timeout:
                    return
                if frames[0] != b"HUGZ" and frames[4]:
                    published.add(frames[0].decode())

        deadline = time.monotonic() + 10
        while not all(
            sum(line.startswith("sent ") for _, line in c.lines) >= 15 for c in clients
        ):
            assert time.monotonic() < deadline, "clients are not writing"
            observe(time.monotonic() + 0.05)
        killed_at = time.monotonic()
        primary.proc.send_signal(signal.SIGKILL)
        primary.proc.wait(timeout=10)
        observe(time.monotonic() + 0.2)  # what was in flight from the primary
        active_at, _ = backup.wait_line("state ACTIVE", after=killed_at)
        resynced = [c.wait_line("synced ", after=killed_at)[0] for c in clients]
        for c in clients:  # each one now follows the backup
            assert c.find("synced ", after=killed_at)[1].endswith(" " + b)
        failover_done = max(resynced)
        # every client soon holds everything the primary published before it died
        deadline = time.monotonic() + 10
        while not all(published <= set(m) for m in dumps(clients, time.monotonic())):
            assert time.monotonic() < deadline, "the clients never caught up"
        caught_up_at = time.monotonic()
        # more writes after every client failed over
        for c, resync in zip(clients, resynced):
            assert c.wait_until(
                lambda c=c, resync=resync: sum(
                    w > resync and line.startswith("sent ") for w, line in list(c.lines)
                ) >= 10,
                10,
            ), "clients stopped writing after the failover"
        for c in clients:
            c.send("stop")
        for c in clients:
            c.wait_line("stopped")
        # every client converges to the same map
        deadline = time.monotonic() + 10
        while True:
            maps = dumps(clients, time.monotonic())
            if all(m == maps[0] for m in maps):
                break
            assert time.monotonic() < deadline, "the clients' maps never converged"
        converged_at = time.monotonic()
    finally:
        observer.close()
    final = set(maps[0])
    sent_after = {
        line.split()[1]
        for c, resync in zip(clients, resynced)
        for w, line in c.lines
        if w > resync and line.startswith("sent ")
    }
    assert published and published <= final, published - final
    assert sent_after and sent_after <= final, sent_after - final
    failover = active_at - killed_at
    print(
        f"\nfailover: backup active {failover:.3f}s after SIGKILL (timeout {T}s); clients "
        f"resynced {failover_done - killed_at:.3f}s after; every client held all "
        f"{len(published)} keys published before the kill {caught_up_at - failover_done:.3f}s "
        f"after the last resync; {len(final)} keys in the end, all maps equal "
        f"{converged_at - failover_done:.3f}s after the last resync (writes went on meanwhile)"
    )
    assert failover < 2 * T + 1.5  # goal 2 x timeout; slack for a loaded machine
    assert failover_done - killed_at < 2 * T + 3.0


def test_ttl_keys_expire_on_every_client(children):
    srv, base = lone_server(children)
    watchers = [
        children([*CLONE, "client", "--servers", base, "--timeout", "2", "watch"])
        for _ in range(2)
    ]
    for w in watchers:
        w.wait_line("synced ")
    done = cli(base, "set", "/ttl/x", "short-lived", "--ttl", "0.3")
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    for w in watchers:
        set_at, _ = w.wait_line("set /ttl/x short-lived")
        del_at, _ = w.wait_line("del /ttl/x")
        assert del_at > set_at
    assert cli(base, "get", "/ttl/x").returncode == 1  # gone from the server too
    assert srv.stop(signal.SIGTERM) == 0


def test_late_joiner_gets_a_consistent_snapshot(children):
    from dhaga import mq

    _srv, base = lone_server(children)
    port = int(base.rsplit(":", 1)[1])
    observer = mq.Socket(mq.SUB, linger=0, rcvhwm=0)
    observer.subscribe(b"")
    observer.connect(f"tcp://127.0.0.1:{port + 1}")
    log: list[tuple[int, str, str]] = []  # (sequence, key, value) as published
    try:
        observer.recv_multipart(timeout=10)  # a HUGZ: our subscription is in place
        writer = children(
            [sys.executable, __file__, "client", "w", base, "2", "cycle"], stdin=True
        )
        writer.wait_line("synced ")
        writer.send("go")
        writer.wait_line("sent ")
        late = children([*CLONE, "client", "--servers", base, "watch"])
        _, synced = late.wait_line("synced ")
        seq = int(synced.split()[1])
        writer.send("stop")
        writer.wait_line("stopped")
        while not log or log[-1][0] < seq:
            frames = observer.recv_multipart(timeout=10)
            if frames[0] != b"HUGZ":
                log.append(
                    (
                        int.from_bytes(frames[1], "big"),
                        frames[0].decode(),
                        frames[4].decode(),
                    )
                )
    finally:
        observer.close()
    expected: dict[str, str] = {}
    for s, key, value in log:
        if s <= seq:
            if value:
                expected[key] = value
            else:
                expected.pop(key, None)
    snapshot = {}
    for _, line in late.lines:
        if line.startswith("synced "):
            break
        verb, key, *value = line.split(" ", 2)
        assert verb == "set", line
        snapshot[key] = value[0]
    assert seq > 0 and expected and snapshot == expected
    assert [s for s, _, _ in log] == list(
        range(1, len(log) + 1)
    )  # numbered without gaps


def test_subtree_client_sees_only_its_subtree(children):
    _srv, base = lone_server(children)
    watcher = children(
        [*CLONE, "client", "--servers", base, "watch", "--subtree", "/a/"]
    )
    watcher.wait_line("synced ")
    for key, value in (("/b/1", "no"), ("/a/1", "yes"), ("/ab", "no"), ("/a/2", "yes")):
        assert cli(base, "set", key, value).returncode == 0
    watcher.wait_line("set /a/2 yes")
    assert [line for _, line in watcher.lines if line.startswith(("set", "del"))] == [
        "set /a/1 yes",
        "set /a/2 yes",
    ]
    got = cli(base, "get", "/a/1")
    assert (got.returncode, got.stdout) == (0, "yes\n")
    dump = cli(base, "dump", "--subtree", "/a/")
    assert json.loads(dump.stdout) == {"/a/1": "yes", "/a/2": "yes"}


def test_malformed_messages_are_logged_and_the_map_survives(children):
    import dhaga
    from dhaga import mq

    srv, base = lone_server(children)
    port = int(base.rsplit(":", 1)[1])
    assert cli(base, "set", "/ok", "1").returncode == 0
    bad = mq.Socket(mq.PUB, linger=0)
    asker = mq.Socket(mq.DEALER, linger=0)
    try:
        bad.connect(f"tcp://127.0.0.1:{port + 2}")
        asker.connect(f"tcp://127.0.0.1:{port}")
        garbage = [
            [b"/x"],
            [b"/x", b"\0" * 3, b"", b"", b"v"],
            [b"\xff", bytes(8), b"", b"", b"v"],
            [b"/x", bytes(8), b"", b"ttl=never\n", b"v"],
            [b"/x", bytes(8), b"", b"", b"v" * (2**20 + 10)],
        ]
        def all_dropped() -> bool:
            return srv.text().count("dropped a bad update from a client") >= len(garbage)

        # PUB drops what it sends before the server's subscription arrives: send again until
        # the server has logged every message. Each round waits (in a thread, so that this
        # thread's sockets keep moving) for the log to grow, at most 50 ms.
        for _ in range(200):
            for frames in garbage:
                bad.send_multipart(frames)
            if dhaga.to_thread(srv.wait_until, all_dropped, 0.05):
                break
        assert all_dropped(), srv.text()
        asker.send_multipart([b"ICANHAZ?", b"", b"extra"])
        assert dhaga.to_thread(
            srv.wait_until, lambda: "dropped a bad snapshot request" in srv.text(), 10
        ), srv.text()
    finally:
        bad.close()
        asker.close()
    for reason in (
        "1 frames",
        "sequence of 3 bytes",
        "key is not UTF-8",
        "bad ttl",
        "value of 1048586 bytes",
        "3 frames",
    ):
        assert reason in srv.text()
    assert cli(base, "set", "/after", "2").returncode == 0
    assert json.loads(cli(base, "dump").stdout) == {"/ok": "1", "/after": "2"}
    assert srv.stop(signal.SIGINT) == 0


# ---------------------------------------------------------------------------- child mode
def _child(name: str, servers: str, timeout: float, mode: str = "unique") -> None:
    """A writing client driven by commands on stdin: go, stop, dump."""
    import dhaga
    from dhaga.mq.clone import CloneClient

    def on_sync(server, sequence) -> None:
        print(f"synced {sequence} {server.snapshot}", flush=True)

    client = CloneClient(
        servers.split(","), timeout=timeout, resend=0.2, on_sync=on_sync
    )
    state = {"writing": False}

    def write() -> None:
        i = 0
        while state["writing"]:
            if mode == "unique":
                key = f"/load/{name}-{i}"
                client.set(key, str(i))
            else:  # overwrite a few keys, deleting now and then
                key = f"/cycle/{i % 7}"
                client.set(key, b"" if i % 5 == 4 else str(i))
            print(f"sent {key}", flush=True)
            i += 1
            dhaga.sleep(0.01)  # pace the writes (a workload, not an ordering)

    writer = None
    while True:
        command = dhaga.to_thread(sys.stdin.readline).strip()
        if command == "go":
            state["writing"] = True
            writer = dhaga.spawn(write)
        elif command == "stop":
            state["writing"] = False
            if writer is not None:
                writer.join()
            client.flush(timeout=10)
            print("stopped", flush=True)
        elif command == "dump":
            print(
                "map " + json.dumps({k: v.decode() for k, v in client.items()}),
                flush=True,
            )
        else:
            client.close()
            return


if __name__ == "__main__" and sys.argv[1:2] == ["client"]:
    import dhaga

    dhaga.run(_child, sys.argv[2], sys.argv[3], float(sys.argv[4]), *sys.argv[5:6])


def test_curve_clone_server_and_clients(children, tmp_path):
    pytest.importorskip("nacl")
    keys = {}
    for name in ("server", "client"):
        path = str(tmp_path / name)
        out = subprocess.run([*CLONE, "keygen", path], capture_output=True, text=True,
                             timeout=30, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
        assert out.stdout.startswith("public key ")
        assert os.stat(path + "_secret").st_mode & 0o077 == 0  # the key pair: owner only
        keys[name] = path
    srv = server(children, "--curve", keys["server"] + "_secret")
    _, ready = srv.wait_line("ready ")
    base = ready.split()[1].split("=", 1)[1]
    secured = ("--curve", keys["client"] + "_secret", "--server-key", keys["server"])
    assert cli(base, *secured, "set", "db/url", "postgres://x").stdout.strip() == "ok"
    got = cli(base, *secured, "get", "db/url")
    assert got.stdout.strip() == "postgres://x", (got.returncode, got.stderr, srv.text())
    plain = cli(base, "--wait", "1", "get", "db/url")  # a NULL client: never answered
    assert plain.returncode == 2 and "no server answered" in plain.stderr
    wrong = cli(base, "--curve", keys["client"] + "_secret", "--server-key", keys["client"],
                "--wait", "1", "get", "db/url")  # the wrong server key
    assert wrong.returncode == 2
    missing = cli(base, "--curve", keys["client"] + "_secret", "get", "db/url")
    assert "go together" in missing.stdout
