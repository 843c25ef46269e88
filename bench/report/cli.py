"""`valbench-report`: job records -> one tidy table -> summary tables, paper figures, the CI check.

valbench-report collect multirun/quickstart -o report/results     # report/results.{parquet,csv}
valbench-report table report/results.parquet [--latex] [-o report/table]
valbench-report plot report/results.parquet [-o report/figures]
valbench-report check --baseline results/baselines/ci.csv [--update]
valbench-report sv-error multirun/ame_paper_mnist_sv multirun/ame_paper_mnist_sv_reference [-o DIR]
valbench-report agreement multirun/final_model_only            # attributions vs further training
valbench-report readme [--check]          # README/docs tables <- their committed results/ files
valbench-report leaderboard multirun/leaderboard multirun/leaderboard_poison -o results/leaderboard
valbench-report html multirun/quickstart -o report.html          # one self-contained page
valbench-report paper [--tiny] [--plan] [--only SWEEP]            # the papers' figures (make paper)

`table` and `plot` also take record folders instead of a collected file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from ..score import METRIC_KEYS
from .check import EVALS_FACTOR, QUALITY_TOLERANCE, TIME_FACTOR, run_check
from .collect import collect, load_table, report_failures, write_table
from .paper_cli import add_paper
from .tables import ok_jobs, summarize, to_latex, to_markdown


def _cmd_collect(args) -> int:
    frame = collect(*args.dirs)
    paths = write_table(frame, args.output)
    print(f"{len(frame)} records ({len(ok_jobs(frame))} ok) -> {paths[0]} and {paths[1]}")
    report_failures(frame)
    if ok_jobs(frame).empty:
        print("valbench-report: no job finished (status ok): nothing to show", file=sys.stderr)
        return 1
    return 0


def _cmd_table(args) -> int:
    frame = load_table(args.sources)
    metrics = _metrics(args.metrics, frame)
    summary = summarize(frame, metrics)
    markdown, latex = to_markdown(summary, metrics), to_latex(summary, metrics)
    print(latex if args.latex else markdown)
    report_failures(frame)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(markdown + "\n")
        out.with_suffix(".tex").write_text(latex + "\n")
        print(f"tables -> {out.with_suffix('.md')} and {out.with_suffix('.tex')}")
    return 0


def _metrics(names: str | None, frame: pd.DataFrame) -> list[str] | None:
    """The --metrics list, each checked to be a metric column of `frame`."""
    if names is None:
        return None
    metrics = [m.strip() for m in names.split(",") if m.strip()]
    bad = [m for m in metrics if m not in METRIC_KEYS or m not in frame]
    if bad or not metrics:
        raise ValueError(f"--metrics {names!r}: unknown {bad}; allowed: {', '.join(METRIC_KEYS)}")
    return metrics


def _cmd_plot(args) -> int:
    from .plots import plot_all

    frame = load_table(args.sources)
    source = Path(args.sources[0])
    out = Path(args.output or (source.parent if source.is_file() else source) / "figures")
    paths = plot_all(frame, out, removal=not args.no_removal, width=args.width)
    print(f"{len(paths)} figures in {out}:")
    for path in paths:
        print(f"  {path}")
    return 0


def _cmd_check(args) -> int:
    return run_check(
        baseline=Path(args.baseline),
        update=args.update,
        results=args.results,
        sweep_dir=args.sweep_dir,
        experiment=args.experiment,
        tolerance=args.tolerance,
        evals_factor=args.evals_factor,
        time_factor=args.time_factor,
    )


def _cmd_sv_error(args) -> int:
    from .style import paper_style
    from .sv_error import error_figure, error_table, summarize_errors, to_markdown

    frame = load_table(args.sources)
    table = error_table(frame, args.reference)
    summary = summarize_errors(table)
    markdown = to_markdown(summary)
    print(markdown)
    source = Path(args.sources[0])
    out = Path(args.output or (source.parent if source.is_file() else source) / "sv_error")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "sv_error_jobs.csv", out / "sv_error.csv", out / "sv_error.md"]
    table.to_csv(paths[0], index=False)
    summary.to_csv(paths[1], index=False)
    paths[2].write_text(markdown + "\n")
    with paper_style():
        fig = error_figure(summary, args.width)
        for suffix in (".png", ".pdf"):
            fig.savefig(out / f"sv_error{suffix}")
            paths.append(out / f"sv_error{suffix}")
    print(f"{len(table)} jobs against {table['reference'].nunique()} reference job(s) ->")
    for path in paths:
        print(f"  {path}")
    return 0


def _cmd_agreement(args) -> int:
    from .agreement import agreement_table, to_markdown, wide_markdown

    table = agreement_table(*args.dirs)
    markdown = wide_markdown(table, args.wide) if args.wide else to_markdown(table)
    print(markdown)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(markdown + "\n")
    return 0


def _cmd_readme(args) -> int:
    from .method_docs import PAGE, page
    from .readme import pages, render

    readmes = [Path(p) for p in args.readme] if args.readme else pages(Path("."))
    stale = 0
    for readme in readmes:
        text, changed = render(readme)
        for path in changed:
            print(f"{'STALE' if args.check else 'updated'} {readme}: the block of {path}")
        stale += len(changed)
        if changed and not args.check:
            readme.write_text(text)
    if not args.readme:  # the whole repository: also the method reference
        methods, text = Path(PAGE), page()
        if not methods.is_file() or methods.read_text() != text:
            print(f"{'STALE' if args.check else 'updated'} {methods}: from conf/method/")
            stale += 1
            if not args.check:
                methods.parent.mkdir(exist_ok=True)
                methods.write_text(text)
    names = ", ".join(str(r) for r in readmes)
    if args.check:
        print(f"readme: {stale} block(s) or page(s) differ from their sources ({names})")
        return 1 if stale else 0
    print(f"{names}: {stale} block(s) or page(s) rewritten")
    return 0


def _cmd_leaderboard(args) -> int:
    from .leaderboard import (
        leaderboard,
        leaderboard_markdown,
        pairs_markdown,
        settings_markdown,
        statistics_markdown,
    )
    from .leaderboard_plots import leaderboard_figures
    from .style import paper_style

    frame = load_table(args.sources)
    board = leaderboard(frame, args.alpha)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "leaderboard.md": leaderboard_markdown(board.table),
        "settings.md": settings_markdown(board.cells),
        "pairs.md": pairs_markdown(board.pairs, list(board.table["method"])),
        "statistics.md": statistics_markdown(board, args.alpha),
    }
    tables = {
        "jobs": frame,
        "leaderboard": board.table,
        "settings": board.cells,
        "pairs": board.pairs,
    }
    paths = []
    for name, text in texts.items():
        paths.append(out / name)
        paths[-1].write_text(text + "\n")
    for name, table in tables.items():
        paths.append(out / f"{name}.csv")
        table.to_csv(paths[-1], index=False)
    with paper_style():
        for name, fig in leaderboard_figures(board, args.width, args.alpha).items():
            for suffix in (".png", ".pdf"):
                paths.append(out / f"{name}{suffix}")
                fig.savefig(paths[-1])
    print(texts["leaderboard.md"] + "\n\n" + texts["statistics.md"])
    report_failures(frame)
    print(f"{len(board.cells)} method x setting cells ->")
    for path in paths:
        print(f"  {path}")
    return 0


def _cmd_html(args) -> int:
    from .html import render

    frame = load_table(args.sources)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(frame, args.title or f"valbench: {args.sources[0]}", args.alpha))
    report_failures(frame)
    print(f"report -> {out.resolve()}")
    return 0


def _add_sources(p) -> None:
    p.add_argument("sources", nargs="+", help="a collected .parquet/.csv, or record folders")


def _add_alpha(p) -> None:
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")


def _add_leaderboard(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="mean ranks across settings, Friedman / Nemenyi tests, CD diagram, cost vs. quality",
        description="Writes OUTPUT/leaderboard.{md,csv} (one row per method: mean rank, mean AUROC, "
        "AP, wins / ties / losses, costs), settings.{md,csv} (method x setting), pairs.{md,csv} "
        "(paired Wilcoxon tests), statistics.md (Friedman, Iman-Davenport, Nemenyi CD), jobs.csv "
        "(the job rows) and cd.{png,pdf} and cost_quality.{png,pdf} (see valbench.report.leaderboard).",
    )
    _add_sources(p)
    p.add_argument("-o", "--output", required=True, help="folder for the tables and figures")
    _add_alpha(p)
    p.add_argument("--width", choices=("single", "double"), default="double")
    p.set_defaults(func=_cmd_leaderboard)


def _add_html(sub) -> None:
    p = sub.add_parser(
        "html",
        help="one self-contained HTML page: leaderboard, settings, figures, every job",
        description="Writes OUTPUT (its folder is made when missing): sortable tables, figures "
        "embedded as data URIs, per job its config, seed, versions, device and cost; no network.",
    )
    _add_sources(p)
    p.add_argument("-o", "--output", required=True, help="the page, e.g. report.html")
    p.add_argument("--title", help="page title (default: valbench: SOURCE)")
    _add_alpha(p)
    p.set_defaults(func=_cmd_html)


def _add_check(sub) -> None:
    p = sub.add_parser(
        "check",
        help="run the CI sweep and compare it with a baseline",
        description="Exit 0 when every method x setting passes, 1 on a regression, a baseline row the "
        "sweep no longer makes, or a failed job; 2 on bad input. Rows the baseline lacks are NEW.",
    )
    p.add_argument("--baseline", required=True, help="e.g. results/baselines/ci.csv")
    p.add_argument("--update", action="store_true", help="rewrite the baseline from this sweep")
    p.add_argument("--results", nargs="+", help="compare these records/table; run no sweep")
    p.add_argument(
        "--sweep-dir",
        help="run the sweep here and keep it (default: a temporary folder); a rerun there reuses "
        "the finished jobs",
    )
    p.add_argument("--experiment", default="ci", help="the sweep: conf/experiment/NAME.yaml")
    p.add_argument(
        "--tolerance",
        type=float,
        default=QUALITY_TOLERANCE,
        help="largest allowed drop of mean AUROC and AP (absolute; default %(default)s)",
    )
    p.add_argument(
        "--evals-factor",
        type=float,
        default=EVALS_FACTOR,
        help="largest allowed ratio of mean n_evals to the baseline (default %(default)s)",
    )
    p.add_argument(
        "--time-factor",
        type=float,
        default=TIME_FACTOR,
        help="largest allowed ratio of mean seconds to max(baseline, 1 s) (default %(default)s)",
    )
    p.set_defaults(func=_cmd_check)


def _add_sv_error(sub) -> None:
    p = sub.add_parser(
        "sv-error",
        help="error of Shapley estimates vs. a reference job, by budget (table and figure)",
        description="Relative L2 error ||v - v_ref|| / ||v_ref|| and Spearman of every job against "
        "the reference job of its seed and problem (see valbench.report.sv_error); writes DIR/sv_error_jobs.csv, "
        "DIR/sv_error.{csv,md} (mean ± 95% CI over seeds per method x budget) and DIR/sv_error.{png,pdf}.",
    )
    _add_sources(p)
    p.add_argument(
        "--reference",
        help="the reference method (default: the records' sv_reference key, else sv_reference)",
    )
    p.add_argument(
        "-o", "--output", help="folder for the tables and figure (default: SOURCE/sv_error)"
    )
    p.add_argument("--width", choices=("auto", "single", "double"), default="auto")
    p.set_defaults(func=_cmd_sv_error)


def _add_collect(sub) -> None:
    p = sub.add_parser("collect", help="job records -> one table (parquet and CSV)")
    p.add_argument("dirs", nargs="+", help="sweep or job folders")
    p.add_argument("-o", "--output", required=True, help="writes OUTPUT.parquet and OUTPUT.csv")
    p.set_defaults(func=_cmd_collect)


def _add_table(sub) -> None:
    p = sub.add_parser("table", help="mean ± std over seeds per method x setting")
    _add_sources(p)
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of Markdown")
    p.add_argument(
        "--metrics",
        help="comma-separated quality columns, e.g. auroc,ap,precision_at_k (default: auroc, ap, "
        "f1_2means and the selection's precision and recall where a method selects)",
    )
    p.add_argument("-o", "--output", help="also write OUTPUT.md and OUTPUT.tex")
    p.set_defaults(func=_cmd_table)


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="paper figures (PNG and PDF)")
    _add_sources(p)
    p.add_argument("-o", "--output", help="folder for the figures (default: beside the table)")
    p.add_argument("--width", choices=("auto", "single", "double"), default="auto")
    p.add_argument(
        "--no-removal", action="store_true", help="skip the point-removal curves (they retrain)"
    )
    p.set_defaults(func=_cmd_plot)


def _add_agreement(sub) -> None:
    p = sub.add_parser(
        "agreement", help="agreement of attributions with the further-training gold standard"
    )
    p.add_argument("dirs", nargs="+", help="folders of result records (e.g. a sweep's)")
    p.add_argument(
        "--wide",
        choices=("cosine", "spearman"),
        help="only this metric's means, one column per number of steps T",
    )
    p.add_argument("-o", "--output", help="also write the table to this Markdown file")
    p.set_defaults(func=_cmd_agreement)


def _add_readme(sub) -> None:
    p = sub.add_parser(
        "readme",
        help="copy each committed results table into its README or docs/ block",
        description="Rewrite every <!-- valbench-table: PATH --> ... <!-- /valbench-table --> block "
        "of README.md and the docs/*.md pages with the content of PATH (a Markdown table under "
        "results/), and docs/methods.md from conf/method/. With --check, change nothing and exit 1 "
        "when a block or page differs from its source. Run it in the repository root.",
    )
    p.add_argument(
        "--readme",
        action="append",
        help="only this page (repeatable); default: README.md, docs/*.md and docs/methods.md",
    )
    p.add_argument("--check", action="store_true", help="only report blocks that differ (exit 1)")
    p.set_defaults(func=_cmd_readme)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="valbench-report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_collect(sub)
    _add_table(sub)
    _add_plot(sub)
    _add_check(sub)
    _add_sv_error(sub)
    _add_agreement(sub)
    _add_readme(sub)
    _add_leaderboard(sub)
    _add_html(sub)
    add_paper(sub)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("valbench").setLevel(logging.INFO)
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"valbench-report: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
