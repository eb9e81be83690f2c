"""Web benchmarks: dhaga.web against gevent.pywsgi and gunicorn's gevent worker, driven by wrk.

Three applications, each served by one process:

- ``hello``: a hello-world WSGI app.
- ``wait10``: each request waits 10 ms on a green socket: a read with a 10 ms timeout on an
  idle socket (one end of a socket pair nobody writes to), taken from a small pool.
- ``backend10``: each request calls a 10 ms backend over a green socket: it takes a
  connection from a pool to a local *delay server*, sends one byte, and receives the byte the
  delay server sends back 10 ms later. The delay server runs in its own process, on uvloop;
  alone, it manages fewer than 10,000 round trips a second with 100 connections (about 8,000
  here), which caps every server's figure.

Servers: dhaga.web (``python -m dhaga.web``) on asyncio's loop and on uvloop, and with
``--processes 2`` (two workers sharing the server's CPU: the supervisor's path), gevent.pywsgi
(with TCP_NODELAY on each connection, as dhaga.web sets it), gunicorn with one gevent worker,
gunicorn with one dhaga.web.GunicornWorker, and granian (Rust; one worker, its WSGI interface
running the application in its blocking threads; skipped if it is not installed). Every server
is measured in the same run, in rounds (one wrk run per server per round), with ``wrk -t1
-c100 -dNs``; an app written ``name@N`` is run with N connections instead (the default list
has ``wait10@1000``: 1,000 connections each waiting 10 ms, a ceiling of 100k req/s). The table
shows the median requests per second of the rounds, the server's CPU time per request (user +
system, of the server's processes: steadier than throughput on a busy machine, where wrk, the
server and the delay server compete for the same CPUs), wrk's p99 latency, and the ratios the
goals name. ``--compare DIR`` adds the dhaga.web of another source tree (a checkout of main,
say) as a row, for before/after figures from the same rounds. ``--parser`` also
times the HTTP head parser against Tornado's, alone and in the server (hello world with
browser-like heads, Tornado's parser swapped in). Usage::

    python benchmarks/bench_web.py [--duration 5] [--rounds 3] [--apps hello,wait10@1000]
                                   [--servers granian,dhaga] [--compare ../main-checkout]
                                   [--parser] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = "benchmarks.bench_web"
BODY = b"Hello, world!"


# ---------------------------------------------------------------------------- the apps
def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [BODY]


_idle: list = []  # (waiting end, other end) of socket pairs nobody ever writes to
_pool: list = []  # connections to the delay server


def _idle_socket():
    if _idle:
        return _idle.pop()
    if os.environ.get("BENCH_GREEN") == "dhaga":
        from dhaga import net
        pair = net.socketpair()
    else:  # gevent, with the socket module patched
        pair = socket.socketpair()
    pair[0].settimeout(0.010)
    return pair


def wait10_app(environ, start_response):
    """Wait 10 ms on a green socket (a read that times out), then answer."""
    pair = _idle_socket()
    try:
        pair[0].recv(1)
    except TimeoutError:
        pass
    else:
        raise RuntimeError("nobody writes to this socket")
    _idle.append(pair)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [BODY]


def _delay_connection():
    if _pool:
        return _pool.pop()
    host, port = os.environ["BENCH_DELAY_ADDR"].split(":")
    if os.environ.get("BENCH_GREEN") == "dhaga":
        from dhaga import net
        sock = net.create_connection((host, int(port)))
    else:  # gevent, with the socket module patched
        sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def backend10_app(environ, start_response):
    """Wait for the delay server's 10 ms reply on a green socket, then answer."""
    sock = _delay_connection()
    sock.sendall(b"x")
    if sock.recv(1) != b"x":
        raise RuntimeError("the delay server went away")
    _pool.append(sock)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [BODY]


def _tornado_parse_head(head: bytes, limits=None):
    """dhaga.web's parse_head with Tornado's grammar functions doing the parsing."""
    from tornado.httputil import HTTPHeaders, HTTPInputError, parse_request_start_line

    from dhaga.web import protocol as p

    text = head.decode("latin-1")
    line, _, rest = text.partition("\r\n")
    try:
        start = parse_request_start_line(line)
        headers = HTTPHeaders.parse(rest)
    except HTTPInputError as e:
        raise p.RequestError(400, str(e)) from None
    req = p.RequestHead()
    req.method, req.target = start.method, start.path
    http11 = start.version != "HTTP/1.0"
    req.version = "HTTP/1.1" if http11 else "HTTP/1.0"
    req.fields = list(headers.get_all())
    req.content_length = None
    req.chunked = req.expect_continue = False
    req.keep_alive = http11
    for name, value in req.fields:  # the framing facts, as parse_head derives them
        low = name.lower()
        if low == "content-length":
            req.content_length = int(value)
        elif low == "connection" and "close" in value.lower():
            req.keep_alive = False
    return req


if os.environ.get("BENCH_TORNADO_PARSER") == "1":  # the server process of --parser's comparison
    import dhaga.web.wsgi

    dhaga.web.wsgi.parse_head = _tornado_parse_head


# ---------------------------------------------------------------------------- helper servers
def serve_delay() -> None:
    """The delay server: every byte received is echoed 10 ms later."""

    class Delay(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data):
            loop.call_later(0.010, self.reply, data)

        def reply(self, data):
            if not self.transport.is_closing():
                self.transport.write(data)

    if _importable("uvloop"):  # the more punctual of the two
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Delay, "127.0.0.1", 0, backlog=1024))
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.run_forever()


def serve_gevent(app_name: str) -> None:
    """gevent.pywsgi, TCP_NODELAY on every connection, no access log."""
    from gevent import monkey
    monkey.patch_all()
    from gevent import pywsgi

    class Server(pywsgi.WSGIServer):
        def handle(self, sock, address):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return super().handle(sock, address)

    os.environ["BENCH_GREEN"] = "gevent"
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    print(f"listening on {listener.getsockname()[1]}", flush=True)
    Server(listener, globals()[app_name], log=None).serve_forever()


# ---------------------------------------------------------------------------- running
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_connectable(port: int, deadline: float) -> None:
    """Some servers say they listen before they accept (granian's worker starts later)."""
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


#: CPU lists for the server and for wrk (``--pin``): one core each, as the goals are stated.
PIN: dict[str, list[str]] = {"server": [], "wrk": []}


def start(cmd: list[str], pattern: str, env: dict,
          pin: str = "server") -> tuple[subprocess.Popen, int]:
    """Start a server; wait for ``pattern``, whose group 1 is the port it listens on.

    For servers that cannot bind port 0, ``{port}`` in ``cmd`` is replaced by a free port, and
    ``pattern`` (then without a group) says when the server is ready.
    """
    port = 0
    if "{port}" in cmd:
        port = _free_port()
        cmd = [str(port) if a == "{port}" else a for a in cmd]
    # ``python -m`` puts the working directory first on sys.path: a --compare tree's server
    # must run there, or it would import this tree's dhaga whatever PYTHONPATH says.
    cwd = env.get("DHAGA_BENCH_TREE", str(ROOT))
    proc = subprocess.Popen(PIN[pin] + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=cwd, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")  # type: ignore[union-attr]
        if not line:
            break
        m = re.search(pattern, line)
        if m:
            # keep draining its output so that it never blocks on a full pipe
            import threading
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]
            port = int(m.group(1)) if m.groups() else port
            _wait_connectable(port, deadline)
            return proc, port
    proc.kill()
    raise RuntimeError(f"{cmd} did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def server_commands(app: str, compare: list[str] | None = None) -> dict[str, tuple[list[str], str, dict]]:
    """The servers to measure; ``compare``: other dhaga trees, run as extra dhaga.web rows."""
    py = sys.executable
    spec = f"{HERE}:{app}_app"
    listening = r"on http://127\.0\.0\.1:(\d+)"
    gunicorn_at = r"Listening at: http://127\.0\.0\.1:(\d+)"
    gunicorn = [py, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:0", "--no-control-socket",
                "--log-level", "warning", "--backlog", "1024"]
    cmds = {
        "dhaga.web asyncio": ([py, "-m", "dhaga.web", spec, "--bind", "127.0.0.1:0",
                               "--loop", "asyncio"], listening, {"BENCH_GREEN": "dhaga"}),
        "dhaga.web uvloop": ([py, "-m", "dhaga.web", spec, "--bind", "127.0.0.1:0",
                              "--loop", "uvloop"], listening, {"BENCH_GREEN": "dhaga"}),
        "dhaga.web --processes 2": ([py, "-m", "dhaga.web", spec, "--bind", "127.0.0.1:0",
                                     "--loop", "asyncio", "--processes", "2"], listening,
                                    {"BENCH_GREEN": "dhaga"}),
        "gevent.pywsgi": ([py, __file__, "--serve", app], r"listening on (\d+)", {}),
        "gunicorn -k gevent": (gunicorn + ["--log-level", "info", "-k", "gevent", spec],
                               gunicorn_at, {"BENCH_GREEN": "gevent"}),
        "gunicorn -k dhaga": (gunicorn + ["--log-level", "info", "-k", "dhaga.web.GunicornWorker",
                                          spec], gunicorn_at, {"BENCH_GREEN": "dhaga"}),
        "granian WSGI": ([py, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1",
                          "--port", "{port}", "--workers", "1", "--backlog", "1024",
                          "--no-access-log", spec], r"Started worker-1", {}),
    }
    for tree in compare or []:
        label = Path(tree).name
        for loop in ("asyncio", "uvloop"):
            cmds[f"dhaga.web {label} {loop}"] = (
                cmds[f"dhaga.web {loop}"][0], listening,
                {"BENCH_GREEN": "dhaga", "PYTHONPATH": str(Path(tree).resolve()),
                 "DHAGA_BENCH_TREE": str(Path(tree).resolve())})
    return cmds


def cpu_seconds(root: int) -> float:
    """User + system CPU time of process ``root`` and its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    tree, total, grew = {root}, 0.0, True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    for pid in tree:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def wrk(port: int, duration: float, connections: int,
        extra: list[str] | None = None, latency: list | None = None) -> tuple[float, int]:
    """Run wrk; returns (requests per second, requests completed); appends p99 ms to latency."""
    out = subprocess.run(
        [*PIN["wrk"], "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
         *(extra or []), f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=duration + 60,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if m is None or n is None:
        raise RuntimeError(f"wrk failed:\n{out}")
    if errors:
        print(f"    (wrk reported: {errors.group(0)})", file=sys.stderr)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if latency is not None:
        latency.append(_ms(p99.group(1)) if p99 else float("nan"))
    return float(m.group(1)), int(n.group(1))


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def bench_app(spec: str, args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """Run every server on ``spec`` (``app`` or ``app@connections``); returns rps, CPU, p99."""
    app, _, conns = spec.partition("@")
    connections = int(conns) if conns else args.connections
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    delay = None
    if app == "backend10":
        delay, delay_port = start([sys.executable, __file__, "--serve", "delay"],
                                  r"listening on (\d+)", env, pin="wrk")
        env["BENCH_DELAY_ADDR"] = f"127.0.0.1:{delay_port}"
    results: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    p99: dict[str, list[float]] = {}
    try:
        cmds = server_commands(app, args.compare)
        if args.servers:
            wanted = args.servers.split(",")
            cmds = {k: v for k, v in cmds.items() if any(w in k for w in wanted)}
        for rnd in range(args.rounds):
            for name, (cmd, pattern, extra) in cmds.items():
                if name.startswith("gunicorn") and not _importable("gunicorn"):
                    continue
                if "gevent" in name and not _importable("gevent"):
                    continue
                if "uvloop" in name and not _importable("uvloop"):
                    continue
                if name.startswith("granian") and not _importable("granian"):
                    continue
                proc, port = start(cmd, pattern, dict(env, **extra))
                try:
                    wrk(port, 1, connections)  # warm up
                    before = cpu_seconds(proc.pid)
                    rps, done = wrk(port, args.duration, connections,
                                    latency=p99.setdefault(name, []))
                    us = (cpu_seconds(proc.pid) - before) / done * 1e6
                finally:
                    stop(proc)
                results.setdefault(name, []).append(rps)
                cpu.setdefault(name, []).append(us)
                print(f"  {spec:<11} round {rnd + 1}: {name:<20} {rps:>10,.0f} req/s "
                      f"{us:>7.1f} us CPU/request  p99 {p99[name][-1]:.1f} ms", file=sys.stderr)
    finally:
        if delay is not None:
            stop(delay)
    return results, cpu, p99


BROWSER_HEADERS = [
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language: en-US,en;q=0.5", "Accept-Encoding: gzip, deflate, br",
    "Cookie: a=b; c=d; session=abcdef0123456789", "Upgrade-Insecure-Requests: 1",
    "Cache-Control: max-age=0", "Referer: http://example.org/",
]


def bench_parser_end_to_end(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Hello world with browser-like heads: dhaga.web's parser against Tornado's, swapped in."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "dhaga.web", f"{HERE}:hello_app", "--bind", "127.0.0.1:0"]
    headers = [a for h in BROWSER_HEADERS for a in ("-H", h)]
    out: dict[str, dict[str, list[float]]] = {}
    for rnd in range(args.rounds):
        for name, flag in (("dhaga.web parser", "0"), ("Tornado's parser", "1")):
            proc, port = start(cmd, r"on http://127\.0\.0\.1:(\d+)",
                               dict(env, BENCH_TORNADO_PARSER=flag))
            try:
                wrk(port, 1, args.connections, headers)
                before = cpu_seconds(proc.pid)
                rps, done = wrk(port, args.duration, args.connections, headers)
                us = (cpu_seconds(proc.pid) - before) / done * 1e6
            finally:
                stop(proc)
            out.setdefault(name, {}).setdefault("rps", []).append(rps)
            out[name].setdefault("cpu_us", []).append(us)
            print(f"  parser  round {rnd + 1}: {name:<20} {rps:>10,.0f} req/s "
                  f"{us:>7.1f} us CPU/request", file=sys.stderr)
    return out


def bench_parser() -> dict[str, float]:
    import timeit

    from tornado.httputil import HTTPHeaders, parse_request_start_line

    from dhaga.web.protocol import parse_head

    heads = {
        "wrk": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080",
        "browser": (b"GET /some/path?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\n"
                    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n"
                    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
                    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
                    b"Connection: keep-alive\r\nCookie: a=b; c=d; session=abcdef0123456789\r\n"
                    b"Upgrade-Insecure-Requests: 1\r\nCache-Control: max-age=0"),
    }

    def tornado_parse(head: bytes):
        text = head.decode("latin-1")
        line, _, rest = text.partition("\r\n")
        return parse_request_start_line(line), HTTPHeaders.parse(rest)

    out = {}
    for name, head in heads.items():
        for label, fn in (("dhaga", parse_head), ("tornado", tornado_parse)):
            n = 20000
            t = min(timeit.repeat(lambda fn=fn, head=head: fn(head), number=n, repeat=5)) / n
            out[f"{name} {label}"] = t * 1e6
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="wrk runs per server (median taken)")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--apps", default="hello,wait10,backend10,wait10@1000",
                    help="comma-separated; app@N runs it with N connections")
    ap.add_argument("--parser", action="store_true", help="also time the head parser")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction,
                    default=(os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None,
                    help="server on CPU 0, wrk (and the delay server) on CPU 1 (default if "
                         "there are 2 CPUs and taskset)")
    ap.add_argument("--servers", help="comma-separated: only the servers whose name holds one")
    ap.add_argument("--compare", action="append", metavar="DIR",
                    help="also run the dhaga.web of another source tree (a checkout of main, "
                         "say) as a row named after DIR; repeatable")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve == "delay":
        serve_delay()
        return 0
    if args.serve:
        serve_gevent(f"{args.serve}_app")
        return 0
    if args.pin:
        PIN["server"], PIN["wrk"] = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    report: dict = {"settings": {"duration": args.duration, "rounds": args.rounds,
                                 "connections": args.connections, "cpus": os.cpu_count(),
                                 "pinned": args.pin}}
    for spec in [a for a in args.apps.split(",") if a]:
        app, _, conns = spec.partition("@")
        results, cpu, p99 = bench_app(spec, args)
        medians = {name: statistics.median(v) for name, v in results.items()}
        cpu_medians = {name: statistics.median(v) for name, v in cpu.items()}
        p99_medians = {name: statistics.median(v) for name, v in p99.items()}
        report[spec] = {"runs": results, "median": medians, "cpu_us_per_request": cpu,
                        "cpu_median": cpu_medians, "p99_ms": p99, "p99_median": p99_medians}
        print(f"\n{spec}: wrk -t1 -c{conns or args.connections} -d{args.duration:g}s, median of "
              f"{args.rounds} rounds (one server process each)")
        print(f"  {'server':<22}{'req/s':>10}{'CPU us/req':>12}{'p99 ms':>9}")
        for name, rps in medians.items():
            print(f"  {name:<22}{rps:>10,.0f}{cpu_medians[name]:>12.1f}{p99_medians[name]:>9.1f}")
        peers = ["gevent.pywsgi", "gunicorn -k gevent"] if app == "hello" else ["gevent.pywsgi"]
        peers.append("granian WSGI")
        for mine in ("dhaga.web asyncio", "dhaga.web uvloop", "dhaga.web --processes 2",
                     "gunicorn -k dhaga"):
            for peer in peers:
                if mine in medians and peer in medians:
                    print(f"  {mine} / {peer}: {medians[mine] / medians[peer]:.2f}x req/s, "
                          f"{cpu_medians[peer] / cpu_medians[mine]:.2f}x less CPU per request")
    if args.parser:
        figures = bench_parser()
        report["parser_us"] = figures
        print("\nhead parser alone, microseconds per head (best of 5)")
        for name, us in figures.items():
            print(f"  {name:<18}{us:>8.2f}")
        e2e = bench_parser_end_to_end(args)
        report["parser_end_to_end"] = e2e
        print(f"\nhello with {len(BROWSER_HEADERS) + 1} browser-like header fields, median of "
              f"{args.rounds} rounds")
        print(f"  {'head parser':<22}{'req/s':>10}{'CPU us/req':>12}")
        for name, fig in e2e.items():
            print(f"  {name:<22}{statistics.median(fig['rps']):>10,.0f}"
                  f"{statistics.median(fig['cpu_us']):>12.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
