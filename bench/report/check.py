"""The CI regression check: run the CI sweep and compare each method x setting with a baseline.

valbench-report check --baseline results/baselines/ci.csv            # exit 1 on any regression
valbench-report check --baseline results/baselines/ci.csv --update   # rewrite the baseline

The sweep is conf/experiment/ci.yaml (small data, fixed seeds, CPU), run fresh in a temporary folder
(or --sweep-dir; --results compares records already made). Rows are method x setting as in
`tables.summarize`, keyed by `method` and `setting`, with means over seeds. A row passes when

* quality: neither AUROC nor AP is more than QUALITY_TOLERANCE = 0.02 (absolute) below the baseline;
* evaluations: the mean n_evals is at most EVALS_FACTOR = 1.1 times the baseline;
* time: the mean method seconds are at most TIME_FACTOR = 5 times max(baseline, MIN_SECONDS = 1 s),
  a generous bound because machines differ.

Quality more than the tolerance above the baseline is reported as `improved` (passes; --update
records it). A row the baseline lacks is NEW (passes, so adding a method to the CI sweep only needs
--update). A baseline row the sweep no longer produces is MISSING and FAILS: the sweep changed or a
method stopped finishing, and the baseline must be updated on purpose. A failed job fails the check.
Exit status: 0 pass, 1 regression / missing / failed job, 2 bad input.

The baseline is read and validated (exists, not empty, the right columns, at least one row) before
any job runs. It records the torch, scikit-learn and numpy versions it was made with; where they
differ from the running ones the check prints both (numbers may drift across versions; the
tolerances above decide, as for any other difference).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.device import device_name, versions
from .collect import load_table, report_failures
from .markdown import markdown_table
from .tables import summarize

CHECKED_KEYS = ("auroc", "ap")  # the quality metrics (score.QUALITY_KEYS) the baseline holds
QUALITY_TOLERANCE = 0.02
EVALS_FACTOR = 1.1
TIME_FACTOR = 5.0
MIN_SECONDS = 1.0
KEY = ["method", "setting"]
BASELINE_COLUMNS = [
    *KEY,
    "seeds",
    *(c for k in CHECKED_KEYS for c in (k, f"{k}_std")),
    "n_evals",
    "seconds",
]
VERSION_KEYS = ("torch", "scikit-learn", "numpy")  # recorded in a baseline, compared by `drift`


def run_sweep(experiment: str, sweep_dir: Path) -> int:
    """`valbench -m experiment=EXPERIMENT` with its sweep folder at `sweep_dir` (a subprocess);
    its exit status (1 when a job failed)."""
    cmd = [
        sys.executable,
        "-m",
        "valbench.runner",
        "-m",
        f"experiment={experiment}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    print("running", " ".join(cmd[2:]), flush=True)
    return subprocess.run(cmd).returncode


def baseline_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The baseline's columns of a summary, one row per method x setting, sorted, with the device
    and the running VERSION_KEYS."""
    missing = [c for c in BASELINE_COLUMNS if c not in summary]
    if missing:
        raise ValueError(f"the results lack column(s) {missing} that a baseline needs")
    rows = summary[BASELINE_COLUMNS].sort_values(KEY).reset_index(drop=True)
    return rows.assign(device=device_name("cpu"), **{k: versions()[k] for k in VERSION_KEYS})


def read_baseline(path: Path) -> pd.DataFrame:
    """A baseline CSV, checked to exist, to have the baseline's columns and at least one row, and
    no duplicate rows; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no baseline {path}; make one with --update")
    try:
        baseline = pd.read_csv(path, dtype=dict.fromkeys(VERSION_KEYS, str))
    except pd.errors.EmptyDataError:
        raise ValueError(f"baseline {path} is empty; rewrite it with --update") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"baseline {path} is not a CSV table ({err})") from None
    missing = [c for c in BASELINE_COLUMNS if c not in baseline]
    if missing:
        raise ValueError(f"baseline {path} lacks column(s) {missing}; rewrite it with --update")
    if baseline.empty:
        raise ValueError(
            f"baseline {path} has a header but no rows (every row would pass as NEW); "
            "rewrite it with --update"
        )
    duplicated = baseline[baseline.duplicated(KEY)]
    if not duplicated.empty:
        raise ValueError(f"baseline {path} has duplicate rows: {duplicated[KEY].values.tolist()}")
    return baseline


def drift(baseline: pd.DataFrame) -> list[str]:
    """One line per package of VERSION_KEYS: the baseline's version and the running one, marked
    where they differ."""
    lines, running = [], versions()
    for key in VERSION_KEYS:
        recorded = sorted(baseline[key].dropna().astype(str).unique()) if key in baseline else []
        made = ", ".join(recorded) or "not recorded"
        if not recorded:
            mark = "  <- not recorded: --update records it"
        elif recorded != [str(running[key])]:
            mark = "  <- differs: numbers may drift; the tolerances decide"
        else:
            mark = ""
        lines.append(f"{key}: baseline {made}, running {running[key]}{mark}")
    return lines


def compare(
    current: pd.DataFrame,
    baseline: pd.DataFrame,
    tolerance: float = QUALITY_TOLERANCE,
    evals_factor: float = EVALS_FACTOR,
    time_factor: float = TIME_FACTOR,
) -> pd.DataFrame:
    """One row per method x setting in either table: baseline and current values, and a `status`
    (ok | improved | NEW | MISSING | REGRESSED) with the `reasons` of a regression."""
    both = baseline.merge(current, on=KEY, how="outer", suffixes=("_base", ""), indicator=True)
    statuses, reasons = [], []
    for _, row in both.iterrows():
        if row["_merge"] == "right_only":
            statuses.append("NEW")
            reasons.append("not in the baseline")
            continue
        if row["_merge"] == "left_only":
            statuses.append("MISSING")
            reasons.append("the sweep no longer produces it")
            continue
        why, better = [], False
        for key in CHECKED_KEYS:
            delta = row[key] - row[f"{key}_base"]
            if not np.isfinite(row[key]) and np.isfinite(row[f"{key}_base"]):
                why.append(f"{key} is NaN")
            elif delta < -tolerance:
                why.append(f"{key} {delta:+.3f} < -{tolerance}")
            elif delta > tolerance:
                better = True
        if row["n_evals"] > evals_factor * row["n_evals_base"]:
            why.append(f"n_evals {row['n_evals']:.0f} > {evals_factor} x {row['n_evals_base']:.0f}")
        time_bound = time_factor * max(row["seconds_base"], MIN_SECONDS)
        if row["seconds"] > time_bound:
            why.append(f"seconds {row['seconds']:.2f} > {time_bound:.2f}")
        statuses.append("REGRESSED" if why else "improved" if better else "ok")
        reasons.append("; ".join(why))
    return both.drop(columns="_merge").assign(status=statuses, reasons=reasons).sort_values(KEY)


def comparison_markdown(comparison: pd.DataFrame) -> str:
    """The comparison as a Markdown table: 'baseline -> current' per quality metric and cost."""

    def pair(row, key, fmt):
        base, now = row.get(f"{key}_base"), row.get(key)
        show = lambda v: fmt.format(v) if pd.notna(v) else "–"  # noqa: E731
        return f"{show(base)} → {show(now)}"

    header = ["method", "setting", *CHECKED_KEYS, "n_evals", "seconds", "status"]
    rows = []
    for _, row in comparison.iterrows():
        cells = [row["method"], row["setting"]]
        cells += [pair(row, k, "{:.3f}") for k in CHECKED_KEYS]
        cells += [pair(row, "n_evals", "{:.0f}"), pair(row, "seconds", "{:.2f}")]
        cells.append(row["status"] + (f": {row['reasons']}" if row["status"] != "ok" else ""))
        rows.append(cells)
    return markdown_table(header, rows)


def run_check(
    baseline: Path,
    update: bool = False,
    results=None,
    sweep_dir=None,
    experiment: str = "ci",
    tolerance: float = QUALITY_TOLERANCE,
    evals_factor: float = EVALS_FACTOR,
    time_factor: float = TIME_FACTOR,
) -> int:
    """The `check` command: validate the baseline, sweep (unless `results` are given), compare or
    `update`; exit code."""
    old = None if update else read_baseline(baseline)  # before any job runs
    with tempfile.TemporaryDirectory(prefix="valbench-check-") as tmp:
        if results is None:
            folder = Path(sweep_dir) if sweep_dir else Path(tmp)
            status = run_sweep(experiment, folder)
            if status != 0 and not any(folder.rglob("result.json")):
                print(f"FAILED: the {experiment} sweep exited with status {status}, no job ran")
                return 1
            results = [folder]
        frame = load_table(results)
    failed = frame[frame["status"] != "ok"]
    report_failures(frame)
    current = baseline_rows(summarize(frame, metrics=CHECKED_KEYS))
    if update:
        if not failed.empty:
            print(f"not updating {baseline}: {len(failed)} job(s) failed")
            return 1
        baseline.parent.mkdir(parents=True, exist_ok=True)
        current.to_csv(baseline, index=False, float_format="%.6g")
        print(f"baseline {baseline} rewritten with {len(current)} rows")
        return 0
    comparison = compare(current, old, tolerance, evals_factor, time_factor)
    print(comparison_markdown(comparison))
    print("\nversions: " + "\n          ".join(drift(old)))
    bad = comparison["status"].isin(["REGRESSED", "MISSING"])
    counts = ", ".join(f"{n} {s}" for s, n in comparison["status"].value_counts().items())
    print(
        f"\nrows: {counts}; tolerances: quality -{tolerance} (absolute), n_evals x{evals_factor}, "
        f"seconds x{time_factor} (min {MIN_SECONDS} s)"
    )
    # The closing line in the "N passed, N failed" form that CI logs are read for.
    n_failed = int(bad.sum()) + len(failed)
    print(f"check: {int((~bad).sum())} passed, {n_failed} failed")
    return 1 if n_failed else 0
