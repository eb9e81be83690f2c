"""What a dhaga is: 10,000 blocking-style tasks running at once in one OS thread."""

import threading
import time

import dhaga


def fetch(i):
    dhaga.sleep(0.1)  # any blocking wait: a socket read, an RPC call, a queue get
    return i * i


def main():
    start = time.perf_counter()
    with dhaga.Group() as group:  # leaving the block waits for every member
        tasks = [group.spawn(fetch, i) for i in range(10_000)]
    elapsed = time.perf_counter() - start
    total = sum(t.result() for t in tasks)
    print(f"10000 tasks, sum {total}, {elapsed:.2f}s, {threading.active_count()} OS thread")


if __name__ == "__main__":
    dhaga.run(main)
