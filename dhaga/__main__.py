"""``python -m dhaga demo``: the command-line entry point."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m dhaga demo [--tasks N] [--latency SECONDS] [--quick]")
        return 0 if argv else 2
    if argv[0] == "demo":
        from .demo import main as demo_main

        return demo_main(argv[1:])
    print(f"unknown command {argv[0]!r}; try: python -m dhaga demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
