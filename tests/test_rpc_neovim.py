"""dhaga.rpc against a real peer nobody here wrote: Neovim (``nvim --headless --listen``)."""

from __future__ import annotations

import subprocess
import time

import pytest
from conftest import need_program
from scripts.netfixtures import no_fd_leak  # noqa: F401 - autouse fixture

import dhaga
from dhaga import net, rpc
from dhaga.sync import Queue

pytestmark = [pytest.mark.peer, pytest.mark.usefixtures("each_loop")]

STARTUP_TIMEOUT = 15.0


def _wait_until_accepting(path: str, proc: subprocess.Popen) -> None:
    """Connect to ``path`` until Neovim accepts (bounded: it is a child process starting)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        probe = net.socket(net.AF_UNIX)
        try:
            probe.connect(path)
            return
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"nvim exited with status {proc.returncode} before listening")
            if time.monotonic() > deadline:
                pytest.fail(f"nvim did not listen on {path} within {STARTUP_TIMEOUT}s")
            dhaga.sleep(0.02)
        finally:
            probe.close()


@pytest.fixture
def nvim(tmp_path):
    """The Unix socket path of a fresh headless Neovim, killed after the test."""
    exe = need_program("nvim")
    path = str(tmp_path / "nvim.sock")
    proc = subprocess.Popen(
        [exe, "--headless", "--clean", "-n", "--listen", path],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_accepting(path, proc)
        yield path
    finally:
        proc.kill()
        proc.wait(10)


# (a) ---------------------------------------------------------------------------------------
def test_hundred_dhagas_call_neovim_through_one_client(nvim):
    in_flight = peak = 0

    with rpc.Client(nvim, timeout=20) as c:
        def call(method, *args):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return c.call(method, *args)
            finally:
                in_flight -= 1

        buf = c.call("nvim_get_current_buf")
        assert isinstance(buf, rpc.ExtHandle) and buf.kind == "Buffer"
        c.call("nvim_buf_set_lines", buf, 0, -1, True, [""] * 100)

        def worker(i):
            assert call("nvim_eval", f"{i} * 3") == i * 3
            call("nvim_command", f"let g:dhaga_{i} = 'value {i}'")
            assert call("nvim_eval", f"g:dhaga_{i}") == f"value {i}"
            call("nvim_buf_set_lines", buf, i, i + 1, True, [f"line {i}"])
            assert call("nvim_buf_get_lines", buf, i, i + 1, True) == [f"line {i}"]
            return i

        with dhaga.Group() as g:
            tasks = [g.spawn(worker, i) for i in range(100)]
        assert sorted(t.result() for t in tasks) == list(range(100))
        assert c.call("nvim_buf_get_lines", buf, 0, -1, True) == [f"line {i}" for i in range(100)]
        assert peak >= 50  # the calls really were in flight together...
        assert c.connections_opened == 1  # ...on one connection


def test_neovim_errors_arrive_as_remote_error(nvim):
    with rpc.Client(nvim, timeout=10) as c:
        with pytest.raises(rpc.RemoteError) as info:
            c.call("nvim_eval", "no_such_function(")
        code, message = info.value.error  # Neovim's convention: [error type, message]
        assert code in (0, 1) and ("E116" in message or "E15" in message)
        with pytest.raises(rpc.RemoteError):
            c.call("nvim_no_such_api_function")
        assert c.call("nvim_eval", "1 + 1") == 2  # the connection is fine


# (b) ---------------------------------------------------------------------------------------
def test_client_receives_notifications_neovim_sends(nvim):
    got: Queue = Queue()
    with rpc.Client(nvim, timeout=10) as c:
        c.register("dhaga_event", lambda *args: got.put(("direct", *args)))
        c.register("broadcast", lambda *args: got.put(("broadcast", *args)))
        channel = c.call("nvim_get_api_info")[0]
        c.call("nvim_command", f"call rpcnotify({channel}, 'dhaga_event', 'hi', 42, [1, 2])")
        assert got.get(timeout=10) == ("direct", "hi", 42, [1, 2])
        c.call("nvim_subscribe", "broadcast")
        c.call("nvim_command", "call rpcnotify(0, 'broadcast', {'k': 'v'})")
        assert got.get(timeout=10) == ("broadcast", {"k": "v"})


def test_client_serves_neovims_requests_during_its_own_call(nvim):
    with rpc.Client(nvim, timeout=10) as c:
        c.register("triple", lambda x: x * 3)
        channel = c.call("nvim_get_api_info")[0]
        # Neovim calls us back while our nvim_eval waits for its answer.
        assert c.call("nvim_eval", f"rpcrequest({channel}, 'triple', 14)") == 42


# (c) ---------------------------------------------------------------------------------------
def test_neovim_connects_to_a_dhaga_server_and_calls_it(nvim):
    notes: Queue = Queue()
    server = rpc.Server(format_error=rpc.neovim_error)
    server.register("add", lambda a, b: a + b)
    server.register("greet", lambda name: f"hello {name}")
    server.register("note", notes.put)
    server.register("ask_back", lambda: rpc.current_connection().call("nvim_eval", "20 + 1"))

    def fail():
        raise ValueError("handler refused")

    server.register("fail", fail)
    host, port = server.listen(("127.0.0.1", 0))
    server.start()
    try:
        with rpc.Client(nvim, timeout=10) as c:
            c.call("nvim_command",
                   f"let g:ch = sockconnect('tcp', '{host}:{port}', {{'rpc': v:true}})")
            assert c.call("nvim_eval", "g:ch") > 0
            c.call("nvim_command", "let g:sum = rpcrequest(g:ch, 'add', 40, 2)")
            assert c.call("nvim_eval", "g:sum == 42 && type(g:sum) == v:t_number") == 1
            c.call("nvim_command", "let g:hi = rpcrequest(g:ch, 'greet', 'nvim')")
            assert c.call("nvim_eval", "g:hi ==# 'hello nvim'") == 1
            # Our handler calls Neovim back on the connection Neovim opened.
            c.call("nvim_command", "let g:back = rpcrequest(g:ch, 'ask_back')")
            assert c.call("nvim_eval", "g:back == 21") == 1
            c.call("nvim_exec", "try\n call rpcrequest(g:ch, 'fail')\ncatch\n"
                                " let g:err = v:exception\nendtry", False)
            assert c.call("nvim_eval", "g:err =~# 'ValueError: handler refused'") == 1
            c.call("nvim_command", "call rpcnotify(g:ch, 'note', 'from neovim')")
            assert notes.get(timeout=10) == "from neovim"
            assert len(server.connections) == 1
    finally:
        server.stop(timeout=0)
