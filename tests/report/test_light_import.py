"""Reporting and the stores import without torch (seconds saved on every `valbench-report`)."""

from __future__ import annotations

import subprocess
import sys


def test_report_and_store_do_not_import_torch():
    code = (
        "import sys, valbench.report.cli, valbench.report.check, valbench.report.plots, "
        "valbench.report.sv_error, valbench.report.agreement, valbench.report.html, "
        "valbench.report.leaderboard_plots, valbench.store.shards; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('valbench.engine.e')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
