"""Child script: patching after networking libraries were imported warns, naming them.

Imports requests and a module that captured ``time.sleep`` by name, then patches; prints the
warning messages and the patch state as one JSON line.
"""

import json
import sys
import time
import types
import warnings

import requests  # noqa: F401 - imported too early, on purpose

latecomer = types.ModuleType("latecomer")
latecomer.sleep = time.sleep  # as `from time import sleep` would
sys.modules["latecomer"] = latecomer

from dhaga import monkey  # noqa: E402

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    monkey.patch_all()

print(json.dumps({
    "warnings": [str(w.message) for w in caught],
    "categories": [w.category.__name__ for w in caught],
    "patched": {name: monkey.is_patched(name) for name in ("socket", "dns", "time", "select", "ssl")},
    "original_sleep_kept": monkey.original("time", "sleep") is latecomer.sleep,
}))
