"""Keep an asyncio app, move its blocking libraries into dhagas (docs/migrating-from-asyncio.md).

The app stays ``asyncio.run(main())``. A blocking client library (here the standard library's
``urllib``, against a slow HTTP backend served by the same loop) used to run in ``loop.run_in_executor`` threads; now
each call runs in a dhaga with `dhaga.green`, its socket made green by `dhaga.monkey`, while
the loop keeps serving (a ticker coroutine proves it). The blocking code awaits an async cache
with `dhaga.wait`. Run: python examples/migrate_asyncio.py
"""

from dhaga import monkey

monkey.patch_all()  # before the blocking libraries are imported: their sockets become green

import asyncio  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import dhaga  # noqa: E402

CALLS, DELAY = 10, 0.2


async def slow_backend(reader, writer):
    """A slow HTTP service, written with asyncio (it stands for some remote API)."""
    request_line = await reader.readline()
    while (await reader.readline()).strip():  # skip the headers
        pass
    await asyncio.sleep(DELAY)
    body = request_line.split()[1].strip(b"/")
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()


CACHE = {"user-3": "cached"}
CALLER_THREADS = set()


async def cache_get(key):
    """An async library the blocking code wants too."""
    await asyncio.sleep(0)
    return CACHE.get(key)


@dhaga.green  # from async code: runs in its own dhaga and returns an awaitable
def profile(base, user):
    """Legacy blocking code, unchanged but for the decorator."""
    CALLER_THREADS.add(threading.get_ident())
    hit = dhaga.wait(cache_get(user), timeout=5)  # blocking code awaiting async code
    if hit is not None:
        return f"{user}:{hit}"
    with urllib.request.urlopen(f"{base}/{user}", timeout=5) as reply:  # a green socket
        return reply.read().decode()


async def main():
    backend = await asyncio.start_server(slow_backend, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{backend.sockets[0].getsockname()[1]}"

    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    started = time.monotonic()
    # BEFORE: await asyncio.gather(*(loop.run_in_executor(None, blocking_profile, base, u) ...))
    results = await asyncio.gather(*(profile(base, f"user-{i}") for i in range(CALLS)))
    elapsed = time.monotonic() - started
    tick_task.cancel()
    backend.close()
    await backend.wait_closed()

    print("results:", results)
    print(f"{CALLS} blocking calls of {DELAY} s overlapped:", elapsed < CALLS * DELAY / 2)
    print("the loop kept running:", ticks >= 5)
    print("every call ran on the loop's own thread:", CALLER_THREADS == {threading.get_ident()})


if __name__ == "__main__":
    asyncio.run(main())
