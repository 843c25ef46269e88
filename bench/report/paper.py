"""`valbench-report paper` (`make paper`): the figures of the two papers the suite is built on, from
sweeps that rerun only what is missing, each figure beside the paper's claim.

    valbench-report paper                   # run the sweeps (skipping finished jobs), write results/paper/
    valbench-report paper --plan            # jobs and estimated time per sweep; runs nothing
    valbench-report paper --no-run          # figures from the records that exist
    valbench-report paper --only paper_fdr  # run only these sweeps, then every figure
    valbench-report paper --tiny -o DIR     # every figure's code path in seconds (small data, 2 seeds)

Writes OUT/NAME.{csv,md,png,pdf} per figure and OUT/summary.md: per figure its image, the setting,
what it mirrors and our number next to the paper's claim. A figure whose sweeps are partial or stale
(a record made with another config) is drawn from the fresh records only and says so on the figure
and in summary.md, naming the command that completes it; one without any fresh record is skipped
with that command. The sweeps and their jobs: paper_sweeps.py; the figures: paper_ame.py,
paper_fmo.py; the papers' claims and our numbers: paper_claims.py.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .collect import collect
from .markdown import markdown_table
from .paper_claims import CLAIMS
from .paper_sweeps import Sweep, SweepState, plan, run_sweeps, sweep_state

TINY_RUNS = Path("multirun/paper_tiny")
RUN_FILE = "run.json"
DOCS = "docs"  # the page that shows OUT/summary.md: docs/paper.md

# Seconds per job of the full configs, measured on the project's shared 2-core machine at load average
# 4-6 (other engineers' jobs): one job of each kind timed (the largest budget or T, a whole budget
# curve), in-process seconds. `--plan` sums them; the progress line rescales them as jobs finish.
SWEEPS = [
    Sweep(
        "paper_ame_digits",
        52.0,
        ("dataset.n_train=64", "budget_c=[1,2]", "method.cv_folds=2", "seed=0"),
    ),
    Sweep(
        "paper_ame_cifar",
        40.0,
        (
            "dataset.n_train=40",
            "corruption.count=4",
            "budget_c=[1]",
            "model.steps=5",
            "method.cv_folds=2",
            "seed=0",
        ),
    ),
    Sweep(
        "paper_fdr",
        7.0,
        ("dataset.n_train=64", "budget_c=[1]", "method.cv_folds=2", "method.fdr=0.1,0.5", "seed=0"),
    ),
    Sweep("paper_cost", 3.3, ("dataset.n_train=40", "method.budget=80,160", "seed=0")),
    Sweep("paper_sv_exact", 2.0, ("dataset.n_train=6", "method.budget=50,100", "seed=0")),
    Sweep("paper_sv_exact_reference", 15.0, ("dataset.n_train=6", "seed=0")),
    Sweep(
        "paper_fmo_logreg",
        15.0,
        ("dataset.n_train=40", "method.steps=1,3", "method.compare=[grad_dot,grad_cos]", "seed=0"),
    ),
    Sweep("paper_fmo_loo", 2.0, ("dataset.n_train=40", "seed=0")),
    Sweep(
        "paper_fmo_mlp",
        65.0,
        (
            "dataset.n_train=40",
            "method.steps=[1,3]",
            "model.steps=50",
            "model.widths=[4]",
            "seed=0",
        ),
    ),
]
BY_NAME = {s.name: s for s in SWEEPS}


@dataclass(frozen=True)
class Figure:
    """A paper figure: its `name` (file stem), `title`, the `sweeps` it reads and `build`, which
    takes {sweep: SweepState} and returns (matplotlib figure, table)."""

    name: str
    title: str
    sweeps: tuple[str, ...]
    build: Callable[[dict[str, SweepState]], tuple]


def _frame(states: dict[str, SweepState], *names: str) -> pd.DataFrame:
    paths = [p for n in names for p in states[n].paths]
    return collect(*paths)


def _poison(states):
    from .paper_ame import poison_figure

    return poison_figure(
        _frame(states, *(n for n in ("paper_ame_digits", "paper_ame_cifar") if states[n].paths))
    )


def _fdr(states):
    from .paper_ame import fdr_figure

    return fdr_figure(_frame(states, "paper_fdr"))


def _cost(states):
    from .paper_ame import cost_figure

    return cost_figure(_frame(states, "paper_cost"))


def _sv_exact(states):
    from .paper_ame import sv_exact_figure

    return sv_exact_figure(_frame(states, "paper_sv_exact", "paper_sv_exact_reference"))


def _agreement(states):
    from .paper_fmo import agreement_figure

    return agreement_figure([*states["paper_fmo_logreg"].paths, *states["paper_fmo_mlp"].paths])


def _loo(states):
    from .paper_fmo import loo_figure

    return loo_figure(states["paper_fmo_logreg"].paths, states["paper_fmo_loo"].paths)


FIGURES = [
    Figure(
        "poison", "Poison attribution vs. budget", ("paper_ame_digits", "paper_ame_cifar"), _poison
    ),
    Figure("fdr", "Knockoff FDR control", ("paper_fdr",), _fdr),
    Figure("cost", "Cost vs. quality at equal evaluations", ("paper_cost",), _cost),
    Figure(
        "sv_exact",
        "Shapley estimates vs. the exact Shapley value",
        ("paper_sv_exact", "paper_sv_exact_reference"),
        _sv_exact,
    ),
    Figure(
        "fmo_agreement",
        "Final-model-only methods vs. further training",
        ("paper_fmo_logreg", "paper_fmo_mlp"),
        _agreement,
    ),
    Figure(
        "fmo_loo", "Further training -> leave-one-out", ("paper_fmo_logreg", "paper_fmo_loo"), _loo
    ),
]


def plan_markdown(runs: Path, tiny: bool = False) -> tuple[str, float]:
    """A table of the sweeps: jobs, seconds per job (measured), estimated total; and the total."""
    rows, total = [], 0.0
    for sweep, jobs in plan(SWEEPS, runs, tiny):
        seconds = sweep.seconds * len(jobs)
        total += seconds
        rows.append([sweep.name, len(jobs), f"{sweep.seconds:g}", f"{seconds / 60:.1f}"])
    rows.append(["total", sum(r[1] for r in rows), "", f"{total / 60:.1f}"])
    header = ["sweep", "jobs", "s / job (measured)", "estimate (min)"]
    return markdown_table(header, rows, "lrrr"), total


def _save(fig, table: pd.DataFrame, out: Path, name: str, caption: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.csv", out / f"{name}.md"]
    table.to_csv(paths[0], index=False)
    shown = table.drop(columns=[c for c in table if c in ("path", "reference")], errors="ignore")
    rows = [[_cell(v) for v in row] for row in shown.itertuples(index=False)]
    paths[1].write_text(f"{caption}\n\n{markdown_table(list(shown.columns), rows)}\n")
    for suffix in (".png", ".pdf"):
        paths.append(out / f"{name}{suffix}")
        fig.savefig(paths[-1])
    return paths


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if pd.isna(value) else f"{value:.3g}"
    return str(value)


def make_figure(figure: Figure, states: dict[str, SweepState], out: Path, tiny: bool) -> dict:
    """Draw, annotate and save one figure; returns its summary entry (state, sentence, paths)."""
    from .style import paper_style

    notes = [states[s].note(tiny) for s in figure.sweeps if not states[s].complete]
    claim = CLAIMS[figure.name]
    if not any(states[s].paths for s in figure.sweeps):
        reruns = f"--only {','.join(figure.sweeps)}"
        why = f"no fresh records; rerun: valbench-report paper{' --tiny' if tiny else ''} {reruns}"
        for suffix in (".csv", ".md", ".png", ".pdf"):  # never leave an older run's figure
            (Path(out) / f"{figure.name}{suffix}").unlink(missing_ok=True)
        return {"figure": figure, "state": "missing", "why": why, "paths": []}
    with paper_style():
        fig, table = figure.build(states)
        seeds = _seeds(states, figure.sweeps)
        title = f"{figure.title}: {claim.setting} ({seeds}); mirrors {claim.mirrors}"
        if tiny:
            title = "TINY MODE (code-path check, toy sizes: not results). " + title
        fig.suptitle(textwrap.fill(title, 110), fontsize=7)
        if notes:
            fig.text(
                0.5, -0.04, "\n".join(notes), ha="center", va="top", color="#b00000", fontsize=6
            )
        ours = claim.ours(table)
        caption = f"**{figure.title}** ({claim.setting}, {seeds}; mirrors {claim.mirrors})."
        if tiny:
            caption = "**Tiny mode: toy sizes, not results.** " + caption
        paths = _save(
            fig, table, out, figure.name, caption + ("\n\n" + "\n".join(notes) if notes else "")
        )
    return {
        "figure": figure,
        "state": "partial" if notes else "complete",
        "why": " ".join(notes),
        "paths": paths,
        "ours": ours,
    }


def _seeds(states: dict[str, SweepState], sweeps) -> str:
    seeds = set()
    for name in sweeps:
        for path in states[name].paths:
            seeds.add(json.loads(Path(path).read_text()).get("seed"))
    return f"{len(seeds)} seeds, 95% t intervals"


def _last_run(path: Path) -> str:
    """The measured wall time of the last run that trained something (OUT/run.json)."""
    if not path.is_file():
        return "Measured: no run yet."
    run = json.loads(path.read_text())
    every = len(run["sweeps"]) == len(SWEEPS)
    which = "every sweep" if every else "the sweeps " + ", ".join(run["sweeps"])
    return (
        f"Measured: the last run of {which} took {run['seconds'] / 60:.1f} min wall, "
        f"{run['ran']} jobs run and {run['skipped']} skipped as finished "
        f"(load average {run['load'][0]:.1f} at the start, {run['load'][1]:.1f} at the end)."
    )


def summary_markdown(entries: list[dict], tiny: bool, plan: str = "", images: str = "") -> str:
    """summary.md: per figure its image (at IMAGES/NAME.png), what it mirrors, our number and the
    paper's claim; then the `plan` table (jobs and estimated time per sweep)."""
    lines = []
    if all(e["state"] == "missing" for e in entries):
        lines += [
            "**The figures have not been generated yet**: `make paper` runs the sweeps below "
            "(their records go to multirun/; a rerun skips finished jobs) and rewrites this section.",
            "",
        ]
    if tiny:
        lines += [
            "**Tiny mode (`--tiny`): a code-path check on toy sizes; these are not results.**",
            "",
        ]
    for entry in entries:
        figure, claim = entry["figure"], CLAIMS[entry["figure"].name]
        lines.append(f"### {figure.title}")
        lines.append("")
        if entry["state"] == "missing":
            lines += [f"Not generated: {entry['why']}.", ""]
            continue
        lines.append(f"![{figure.title}]({images}{figure.name}.png)")
        lines.append("")
        lines.append(
            f"Reproduces {claim.mirrors} ({claim.setting}). Ours: {entry['ours']} "
            f"Paper: {claim.paper}"
        )
        if entry["state"] == "partial":
            lines += ["", f"**{entry['why']}**"]
        lines.append("")
    if plan:
        lines += ["Sweeps (seconds per job measured on the shared 2-core machine):", "", plan, ""]
    return "\n".join(lines).rstrip("\n")


def make_paper(
    runs: Path, out: Path, tiny: bool = False, only=None, run: bool = True, stream=None
) -> list[dict]:
    """Run the sweeps (those in `only`, else all; none when not `run`), then every figure; write
    OUT/summary.md. Returns the figures' summary entries."""
    unknown = sorted(set(only or ()) - set(BY_NAME))
    if unknown:
        raise ValueError(
            f"--only {','.join(unknown)}: unknown sweep(s); allowed: {', '.join(BY_NAME)}"
        )
    if run:
        chosen = [s for s in SWEEPS if not only or s.name in only]
        report = run_sweeps(chosen, runs, tiny, stream)
        for name, count in report["failed"].items():
            if count:
                print(
                    f"paper: {count} job(s) of {name} failed (see its records under {runs / name})"
                )
        if report["ran"]:  # the run's measured time, shown in summary.md
            report["sweeps"] = [s.name for s in chosen]
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / RUN_FILE).write_text(json.dumps(report, indent=1) + "\n")
    states = {s.name: sweep_state(s, runs, tiny) for s in SWEEPS}
    entries = []
    for figure in FIGURES:
        entry = make_figure(figure, states, out, tiny)
        entries.append(entry)
        state = (
            entry["state"] if entry["state"] == "complete" else f"{entry['state']}: {entry['why']}"
        )
        print(f"figure {figure.name}: {state}")
        for path in entry["paths"]:
            print(f"  {path}")
    Path(out).mkdir(parents=True, exist_ok=True)
    # summary.md is shown in docs/paper.md (valbench-report readme): images relative to docs/
    images = "" if Path(out).is_absolute() else f"{os.path.relpath(out, DOCS)}/"
    table, total = plan_markdown(runs, tiny)
    plan = f"{table}\n\nEstimated {total / 60:.0f} min in all. {_last_run(Path(out) / RUN_FILE)}"
    text = summary_markdown(entries, tiny, plan, images)
    (Path(out) / "summary.md").write_text(text + "\n")
    print(f"summary -> {Path(out) / 'summary.md'}")
    return entries
