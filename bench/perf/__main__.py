"""python -m valbench.perf COMMAND [ARGS] (see valbench.perf)."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
