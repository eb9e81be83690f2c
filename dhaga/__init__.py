"""dhaga: greenlet-based cooperative concurrency that lives inside asyncio.

Blocking-style code runs in lightweight green threads (dhagas) that yield to a per-thread
scheduler whenever they wait; Tornado's IOLoop on asyncio (or uvloop) drives the waiting.
"""

from .bridge import green, wait
from .errors import BlockingError, Deadlock, DhagaError, Killed, Timeout
from .group import Group, iwait, joinall
from .monitor import dump, stats
from .scheduler import (
    Dhaga,
    Scheduler,
    current,
    get_scheduler,
    run,
    sleep,
    spawn,
    spawn_later,
    use_loop,
)
from .threads import to_thread
from .timeouts import timeout

__version__ = "0.1.0"

__all__ = [
    "BlockingError",
    "Deadlock",
    "Dhaga",
    "DhagaError",
    "Group",
    "Killed",
    "Scheduler",
    "Timeout",
    "current",
    "dump",
    "get_scheduler",
    "green",
    "iwait",
    "joinall",
    "run",
    "sleep",
    "spawn",
    "spawn_later",
    "stats",
    "timeout",
    "to_thread",
    "use_loop",
    "wait",
]
