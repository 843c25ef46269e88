"""The `valbench-report paper` subcommand's arguments and its run (see paper.py)."""

from __future__ import annotations

import sys
from pathlib import Path


def cmd_paper(args) -> int:
    from .paper import TINY_RUNS, make_paper, plan_markdown

    runs = Path(args.runs or (TINY_RUNS if args.tiny else "multirun"))
    out = Path(args.output or (runs / "paper" if args.tiny else "results/paper"))
    if args.plan:
        table, total = plan_markdown(runs, args.tiny)
        print(table)
        print(f"\nestimated {total / 60:.0f} min on 2 shared CPU cores (seconds per job measured)")
        return 0
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    entries = make_paper(runs, out, args.tiny, only, run=not args.no_run, stream=sys.stderr)
    return 0 if all(e["state"] == "complete" for e in entries) else 1


def add_paper(sub) -> None:
    p = sub.add_parser(
        "paper",
        help="the AME and final-model-only papers' figures: run what is missing, plot, compare",
        description="Runs the sweeps conf/experiment/paper_*.yaml (finished jobs are skipped) under "
        "RUNS/NAME, then writes OUTPUT/NAME.{csv,md,png,pdf} per figure and OUTPUT/summary.md (each "
        "figure beside the paper's claim). Exit 1 when a figure is partial or missing: it says which "
        "sweep to rerun (see valbench.report.paper).",
    )
    p.add_argument("--runs", help="where the sweeps' records go (default: multirun)")
    p.add_argument(
        "-o", "--output", help="figures and tables (default: results/paper; --tiny: RUNS/paper)"
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="toy sizes and two seeds: every figure's code path in about a minute (default RUNS: "
        "multirun/paper_tiny); not results",
    )
    p.add_argument("--only", help="comma-separated sweeps to run (the figures are all drawn)")
    p.add_argument(
        "--no-run", action="store_true", help="run nothing: figures from existing records"
    )
    p.add_argument("--plan", action="store_true", help="print jobs and estimated time; run nothing")
    p.set_defaults(func=cmd_paper)
