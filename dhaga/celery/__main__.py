"""``python -m dhaga.celery ...``: the ``celery`` command with ``-P dhaga`` available.

Celery's ``-P`` accepts only the names in ``celery.concurrency.ALIASES``, fixed when its command
line is built, before any plugin or app code runs; this entry point patches the process
(when a worker on dhaga is asked for), adds the ``dhaga`` alias, then runs Celery's own
``main`` unchanged. Everything after ``python -m dhaga.celery`` is Celery's command line.

A worker on dhaga started this way runs Celery's ``main`` -- and so the consumer loop -- in a
dhaga (`dhaga.run`) rather than at the thread's top level: each time the consumer waits on the
broker it parks like any task, where a top-level wait would start and stop the event loop
once per wait (one to three times per message). Started with ``-P custom``, Celery's ``main``
is already running when the pool is imported, and the consumer stays at the top level.

This module must not know how the pool works.
"""

from __future__ import annotations

import sys

from ._patching import POOL_NAME, POOL_PATH, patch_worker, selects_dhaga


def main() -> None:
    """Run ``celery`` with the ``dhaga`` pool alias registered."""
    if selects_dhaga(sys.argv):
        patch_worker(warn=False)  # usually done already by the package's import
    from celery import concurrency
    from celery.__main__ import main as celery_main

    concurrency.ALIASES.setdefault(POOL_NAME, POOL_PATH)
    sys.argv[0] = "celery"
    if selects_dhaga(sys.argv):
        from ..scheduler import run

        run(celery_main)
    else:
        celery_main()


if __name__ == "__main__":
    main()
