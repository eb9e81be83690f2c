"""Loop lag without a monitor: dhaga.stats() shows a dhaga that held its thread.

Twenty dhagas take turns fairly (``dhaga.sleep(0)``); one calls ``time.sleep`` from the
standard library (not patched), which holds the OS thread for 0.1 s while the others are
runnable. Every scheduler times each batch of dhagas it runs, so ``loop_lag_p99`` shows the
0.1 s with no monitor running, while ``loop_lag_p50`` stays small.

    python examples/loop_lag.py            # asyncio's loop
    python examples/loop_lag.py uvloop     # the same on uvloop
"""

import sys
import time

import dhaga

if sys.argv[1:] == ["uvloop"]:
    dhaga.use_loop("uvloop")


def fair():
    for _ in range(100):
        dhaga.sleep(0)


def legacy_call():
    time.sleep(0.1)  # not cooperative: the other dhagas wait for it


dhaga.joinall([dhaga.spawn(fair) for _ in range(20)])
before = dhaga.stats()
print(f"fair only: p50 {before['loop_lag_p50'] * 1000:.2f} ms, "
      f"p99 {before['loop_lag_p99'] * 1000:.2f} ms")
dhaga.joinall([dhaga.spawn(fair) for _ in range(20)] + [dhaga.spawn(legacy_call)])
after = dhaga.stats()
print(f"with legacy_call: p50 {after['loop_lag_p50'] * 1000:.2f} ms, "
      f"p99 {after['loop_lag_p99'] * 1000:.2f} ms")
print(f"held at least 0.1 s: {after['loop_lag_p99'] >= 0.1}")
