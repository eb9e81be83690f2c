"""``python -m dhaga.demo``: runs the demonstration (or one of its parts, for its children)."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
