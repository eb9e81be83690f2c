"""Bounded concurrency with dhaga.pool.Pool: crawl 40 (simulated) pages, at most 5 at a time.

``imap_unordered`` yields results as pages finish; ``map`` keeps the input order; the pool's
size is the backpressure (``spawn`` waits while the pool is full).
"""

import dhaga
from dhaga.pool import Pool

running = {"now": 0, "peak": 0}


def fetch(page: int) -> tuple[int, int]:
    running["now"] += 1
    running["peak"] = max(running["peak"], running["now"])
    try:
        dhaga.sleep(0.001 * (page % 7))  # a slow server, different per page
        return page, len(f"content of page {page}")
    finally:
        running["now"] -= 1


def main() -> None:
    pool = Pool(5)
    sizes = dict(pool.imap_unordered(fetch, range(40)))
    print(f"crawled {len(sizes)} pages, {sum(sizes.values())} bytes, "
          f"at most {running['peak']} at once")
    in_order = pool.map(fetch, range(10))
    print(f"map keeps order: {[p for p, _ in in_order] == list(range(10))}")
    pool.join()
    print(f"pool empty: {len(pool) == 0}, free slots: {pool.free_count()}")


if __name__ == "__main__":
    dhaga.run(main)
