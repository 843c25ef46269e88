"""python -m valbench.report ... is `valbench-report ...` (valbench.report.cli)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
