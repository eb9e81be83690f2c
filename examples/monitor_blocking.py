"""A blocking call caught: the monitor names the dhaga that held the thread, and the line.

One handler calls ``time.sleep`` (imported before any patching, as old code does): it holds
the OS thread, so the heartbeat dhaga misses its beats. ``dhaga.monitor.start()`` reports it.

    python examples/monitor_blocking.py
"""

import logging
import time

import dhaga
import dhaga.monitor

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def heartbeat():
    for _ in range(30):
        dhaga.sleep(0.01)


def legacy_handler():
    time.sleep(0.3)  # not cooperative: every other dhaga on this thread stalls


def main():
    beats = dhaga.spawn(heartbeat)
    dhaga.sleep(0.05)
    dhaga.spawn(legacy_handler).join()
    beats.join()


reports = []
with dhaga.monitor.start(block_threshold=0.1, on_block=reports.append):
    dhaga.run(main)

r = reports[0]
print(f"caught: {r.dhaga} held the thread for at least {r.seconds:.2f}s at {r.where}")
print(f"blocking episodes: {dhaga.stats()['blocked']}")
