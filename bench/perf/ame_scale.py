"""AME's cost at scale: time and peak memory of the estimator against n, in the paper's regimes.

python -m valbench.perf ame-scale              # backdoor n = 1k, 5k, 20k, 50k; mislabel n = 1k-8k; digits
python -m valbench.perf ame-scale --quick      # small sizes (a smoke run; the tests run it)

Three studies, each configuration in a process of its own (its peak RSS is the configuration's):
- backdoor: `valbench.games.BackdoorGame` of the AME paper's poison shape (Lin et al. 2022, Sec. 5.1):
  n players, k = 50 poisons whose joint effect saturates, Q = 20 queries with independent noise,
  m = 8 k log2 n samples, p in {0.2, 0.4, 0.6, 0.8}, knockoff selection at q = 0.1. Reports the
  estimator's seconds, peak RSS and the selection's precision and recall on the poisons.
- mislabel: synthetic data, 10% flipped labels (k = 0.1 n), logistic regression, validation
  log-likelihood, m = 8 k log2 n: the whole AME run, split into training and estimation.
- poison_digits: `experiment=poison_digits` at c = 8 (n = 1000, 10 poisons, 10 queries): the path
  solver against the scikit-learn reference (`solver: reference`) on the same evaluations.

Writes results/perf/ame_scale.{csv,md,png} with the machine, its load average and the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from .. import games
from ..engine.device import cpu_model
from ..problem import load_problem, make_method
from ..score import score, selection_precision_recall
from ..store.records import write_atomic

FULL = {
    "backdoor": [1000, 5000, 20000, 50000],
    "mislabel": [1000, 2000, 4000, 8000],
    "digits": [1000],
}
QUICK = {"backdoor": [1000, 2000], "mislabel": [300], "digits": []}


def budget(k: int, n: int, c: float = 8) -> int:
    """m = c k log2 n, as the AME paper sizes its experiments."""
    return int(round(c * k * np.log2(n)))


def backdoor(n: int, k: int, queries: int) -> dict:
    game = games.BackdoorGame(n, k, queries, seed=0)
    method = make_method("ame", budget=budget(k, n), knockoffs="knockoff", select="helpful")
    valuation = method.value(game, seed=0)
    found = [selection_precision_recall(row, game.poisons) for row in valuation.selected]
    metrics = {"auroc": roc_auc_score(game.poisons, valuation.values.mean(0))}
    metrics["sel_precision"], metrics["sel_recall"] = np.mean(found, axis=0)
    return _row("backdoor", n, k, queries, valuation, metrics)


def mislabel(n: int) -> dict:
    problem = load_problem(
        "synthetic",
        "mislabel",
        overrides=[f"dataset.n_train={n}", f"dataset.n_samples={n + 800}", "progress=false"],
    )
    k = int(problem.truth.planted.sum())
    valuation = make_method("ame", budget=budget(k, n)).value(problem.game, seed=0, problem=problem)
    return _row("mislabel", n, k, 1, valuation, score(valuation, problem.truth))


def digits(n: int) -> dict:
    """poison_digits at c = 8: the same evaluations through both solvers."""
    problem = load_problem(
        "digits",
        "poison",
        utility="query_prob",
        overrides=[
            f"dataset.n_train={n}", "corruption.count=10", "corruption.n_queries=10",
            "corruption.trigger_size=2", "progress=false",
        ],
    )  # fmt: skip
    m = budget(10, n)
    ref = make_method("ame_knockoff", budget=m, solver="reference")
    reference = ref.value(problem.game, seed=0, problem=problem)  # trains; evaluations are cached
    path = make_method("ame_knockoff", budget=m).value(problem.game, seed=0, problem=problem)
    row = _row("digits", n, 10, 10, path, score(path, problem.truth))
    ref_metrics = score(reference, problem.truth)
    row.update(
        reference_estimate_s=round(reference.info["seconds_estimate"], 2),
        speedup=round(reference.info["seconds_estimate"] / path.info["seconds_estimate"], 1),
        reference_auroc=round(ref_metrics["auroc"], 3),
        reference_sel_precision=round(ref_metrics["sel_precision"], 3),
        reference_sel_recall=round(ref_metrics["sel_recall"], 3),
    )
    return row


def _row(regime, n, k, queries, valuation, metrics) -> dict:
    estimate = valuation.info["seconds_estimate"]
    return {
        "regime": regime,
        "n": n,
        "k": k,
        "m": valuation.n_evals,
        "queries": queries,
        "total_s": round(valuation.seconds, 2),
        "estimate_s": round(estimate, 2),
        "train_s": round(valuation.seconds - estimate, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "auroc": round(metrics["auroc"], 3),
        "sel_precision": round(metrics["sel_precision"], 3),
        "sel_recall": round(metrics["sel_recall"], 3),
        "lambda_index": int(np.median(valuation.info["lambda_index"])),
        "lambdas_reached": int(np.max(valuation.info["lambdas_reached"])),
        "device": valuation.info["device"],
    }


def run_one(regime: str, n: int, k: int, queries: int, timeout: float) -> dict:
    """One configuration in a fresh process, so that its peak RSS is its own."""
    cmd = [sys.executable, "-m", "valbench.perf", "ame-scale", "--one", regime, str(n)]
    cmd += ["--k", str(k), "--queries", str(queries)]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"regime": regime, "n": n, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"regime": regime, "n": n, "error": last}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["wall_s"] = round(time.perf_counter() - start, 1)
    return row


def markdown(table: pd.DataFrame) -> str:
    """The README's cost-growth table."""
    cols = ["regime", "n", "m", "queries", "estimate_s", "train_s", "peak_rss_gb", "auroc"]
    cols += ["sel_precision", "sel_recall", "lambda_index", "lambdas_reached", "speedup"]
    cols += ["reference_estimate_s", "load_avg", "error"]
    shown = table[[c for c in cols if c in table]].astype(object)
    shown = shown.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    shown = shown.where(table[shown.columns].notna(), "")
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += [
        "| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


def figure(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..report.style import paper_style

    with paper_style():
        fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
        for regime, part in table.dropna(subset=["estimate_s"]).groupby("regime"):
            if len(part) < 2:
                continue
            axes[0].plot(part["n"], part["estimate_s"], "o-", label=regime)
            axes[1].plot(part["n"], part["peak_rss_gb"], "o-", label=regime)
        for ax, label in zip(axes, ["estimator seconds", "peak RSS (GB)"], strict=True):
            ax.set(xscale="log", yscale="log", xlabel="n (players)", ylabel=label)
        if axes[0].lines:
            axes[0].legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valbench.perf ame-scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--one", nargs=2, metavar=("REGIME", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=None, help="poisons of the backdoor game (50)")
    parser.add_argument(
        "--queries", type=int, default=None, help="queries of the backdoor game (20)"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="REGIME:N", help="these configurations, in this order"
    )
    parser.add_argument(
        "--update", action="store_true",
        help="keep the other configurations' rows of the existing results, replacing those re-run",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    args = parser.parse_args(argv)
    k = args.k or (10 if args.quick else 50)
    queries = args.queries or (5 if args.quick else 20)
    if args.one:
        regime, n = args.one[0], int(args.one[1])
        runs = {"backdoor": lambda: backdoor(n, k, queries), "mislabel": lambda: mislabel(n)}
        runs["digits"] = lambda: digits(n)
        if regime not in runs:
            raise SystemExit(f"unknown regime {regime!r}; expected one of {sorted(runs)}")
        print(json.dumps(runs[regime]()))
        return
    sizes = QUICK if args.quick else FULL
    configs = [(regime, n) for regime, ns in sizes.items() for n in ns]
    if args.only:
        configs = [(item.split(":")[0], int(item.split(":")[1])) for item in args.only]
    previous = args.out / "ame_scale.csv"
    rows = pd.read_csv(previous).to_dict("records") if args.update and previous.exists() else []
    for regime, n in configs:  # the files are rewritten after every configuration
        load = os.getloadavg()[0]
        row = run_one(regime, n, k, queries, args.timeout)
        row["load_avg"] = f"{load:.1f}-{os.getloadavg()[0]:.1f}"
        row["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        row["machine"] = f"{cpu_model()}, {os.cpu_count()} cores ({platform.machine()})"
        print(json.dumps(row), flush=True)
        rows = replace_row(rows, row)
        write_results(pd.DataFrame(rows), args.out)
    print(markdown(pd.DataFrame(rows)))
    print(f"wrote {args.out}/ame_scale.csv, .md, .png")


def replace_row(rows: list[dict], row: dict) -> list[dict]:
    """`rows` with `row` in place of the one of the same configuration (regime, n), else appended."""
    same = [i for i, r in enumerate(rows) if (r["regime"], r["n"]) == (row["regime"], row["n"])]
    if not same:
        return [*rows, row]
    return [row if i == same[0] else r for i, r in enumerate(rows)]


def write_results(table: pd.DataFrame, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "ame_scale.csv", table.to_csv(index=False).encode())
    write_atomic(out / "ame_scale.md", markdown(table).encode())
    if "estimate_s" in table:
        figure(table, out / "ame_scale.png")
