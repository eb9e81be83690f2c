"""Coverage-guided fuzzing of dhaga's network parsers with atheris (libFuzzer for Python).

Usage (from the repository root)::

    pip install atheris            # wheels for CPython 3.11 on Linux
    PYTHONPATH=. python tests/fuzz/fuzz.py msgpack_rpc -max_total_time=600
    PYTHONPATH=. python tests/fuzz/fuzz.py zmtp -runs=1000000
    PYTHONPATH=. python tests/fuzz/fuzz.py http_head -max_total_time=60 /tmp/new-inputs

Targets: msgpack_rpc, zmtp, http_head (see fuzz_targets.py). Any libFuzzer option may follow.
The seed corpus in tests/fuzz/corpus/<target>/ is read, never written: new inputs go to the
directory given (default: a temporary one, removed afterwards). A crash leaves
``crash-<hash>`` in the working directory; replay it with
``python tests/fuzz/fuzz.py <target> crash-<hash>``. To add what a run found to the seeds::

    PYTHONPATH=. python tests/fuzz/fuzz.py zmtp -merge=1 tests/fuzz/corpus/zmtp /tmp/new-inputs
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

with atheris.instrument_imports(include=["dhaga"]):
    import fuzz_targets


def main() -> None:
    argv = sys.argv
    if len(argv) > 1 and argv[1] in fuzz_targets.TARGETS:
        name, rest = argv[1], argv[2:]
        os.environ["DHAGA_FUZZ_TARGET"] = name  # libFuzzer's child processes (-merge, -fork)
    elif os.environ.get("DHAGA_FUZZ_TARGET") in fuzz_targets.TARGETS:  # ...run us without it
        name, rest = os.environ["DHAGA_FUZZ_TARGET"], argv[1:]
    else:
        sys.exit(f"usage: fuzz.py {{{','.join(fuzz_targets.TARGETS)}}} [libFuzzer options]")
    target = fuzz_targets.TARGETS[name]
    # libFuzzer's child processes run argv[0] through the shell: this interpreter, this file.
    args = [f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))}", *rest]
    dirs = [a for a in rest if not a.startswith("-")]
    scratch = None
    if not dirs:  # libFuzzer writes into its first directory: keep the seeds read-only
        scratch = tempfile.mkdtemp(prefix=f"fuzz-{name}-")
        args += [scratch, os.path.join(HERE, "corpus", name)]
    atheris.Setup(args, target)
    try:
        atheris.Fuzz()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
