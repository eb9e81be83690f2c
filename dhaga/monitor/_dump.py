"""``dhaga.dump()``: every live dhaga on every thread, as text for people and as data for tools.

It formats what `dhaga._core.census` finds; it must not know how the kernel parks or switches.
"""

from __future__ import annotations

import sys
import traceback
from typing import IO, Any

from .._core.census import DhagaInfo, census

__all__ = ["dump", "dump_data"]


def _header(w: DhagaInfo) -> str:
    text = f"--- {w.name} [{w.state}] thread {w.thread} ({w.thread_name})"
    if w.state == "parked":
        text += f"\n    waits on {w.waits_on}"
        if w.waiting is not None:
            text += f" for {w.waiting:.3f}s"
    return text + f"\n    at {w.where}\n"


def dump(file: IO[str] | None = None) -> str:
    """A report of every live dhaga on every OS thread's scheduler, and each thread's top level.

    For each: its name, thread, state (running, runnable, parked, new), what it waits on (the
    lock, queue, event, file descriptor and direction, timer, dhaga being joined) and for how
    long, and its stack, innermost call last.

    Args:
        file: also write the report there (``sys.stderr``, a log file...).

    Returns:
        the report.
    """
    infos = census()
    parts = [f"dhaga.dump(): {len(infos)} waiting or live\n"]
    for w in infos:
        parts.append(_header(w))
        if w.stack:
            parts.append("".join("  " + line for line in traceback.format_list(w.stack)))
    text = "".join(parts)
    if file is not None:
        file.write(text)
        flush = getattr(file, "flush", None)
        if flush is not None:
            flush()
    return text


def dump_data() -> list[dict[str, Any]]:
    """`dump` as JSON-ready data: one dict per live dhaga (what ``/dhagas.json`` serves)."""
    return [
        {
            "name": w.name,
            "id": w.id,
            "thread": w.thread,
            "thread_name": w.thread_name,
            "state": w.state,
            "waits_on": w.waits_on,
            "waiting": w.waiting,
            "where": w.where,
            "stack": [
                {"file": fs.filename, "line": fs.lineno, "function": fs.name, "code": fs.line}
                for fs in w.stack
            ],
        }
        for w in census()
    ]


def _write_dump(signum: int, frame: Any, file: IO[str] = sys.stderr) -> None:
    dump(file)
