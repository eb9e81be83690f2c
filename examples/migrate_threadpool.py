"""Migrating a ThreadPoolExecutor to GreenExecutor: the same code, 1,000 slow calls at once.

Before: each call holds an OS thread while it waits (here ``time.sleep``, as for a slow
server), so 1,000 concurrent calls would need 1,000 threads. After: each call is a dhaga; the
wait (``dhaga.sleep``, a green socket read, an RPC call...) parks it, and one OS thread runs
them all. The executor code itself does not change: submit, map, as_completed, shutdown.
"""

import concurrent.futures as cf
import threading
import time

import dhaga
from dhaga.pool import GreenExecutor

N = 1000
LATENCY = 0.05  # what each call waits for, as on a slow server


def lookup_blocking(key: int) -> int:
    """The old call: blocks its OS thread."""
    time.sleep(LATENCY)
    return key * 2


def lookup_green(key: int) -> int:
    """The migrated call: the wait parks the dhaga, not the thread."""
    dhaga.sleep(LATENCY)
    return key * 2


def run(executor: cf.Executor, fn) -> tuple[list[int], float, int]:
    """The unchanged application code: works with either executor."""
    start = time.perf_counter()
    with executor as ex:
        results = list(ex.map(fn, range(N)))
        first = ex.submit(fn, -1)
        done, _ = cf.wait([first], timeout=5)
        assert first in done and first.result() == -2
        threads = threading.active_count()
    return results, time.perf_counter() - start, threads


def main() -> None:
    before, t_before, threads_before = run(cf.ThreadPoolExecutor(max_workers=100), lookup_blocking)
    after, t_after, threads_after = run(GreenExecutor(max_workers=N), lookup_green)
    print(f"ThreadPoolExecutor(100): {len(before)} results")
    print(f"GreenExecutor({N}): {len(after)} results")
    print(f"same results: {before == after}")
    print(f"OS threads while running: {threads_before} before, {threads_after} after")
    print(f"timing: {t_before:.2f}s before, {t_after:.2f}s after "
          f"(one call waits {LATENCY}s)")


if __name__ == "__main__":
    main()
