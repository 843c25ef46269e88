"""Benchmark of the subset estimators on the reference games: error against budget, and AME's cost
for many queries at once.

python -m valbench.perf estimators                 # writes results/perf/estimators.{csv,md,png}
python -m valbench.perf estimators --quick         # fewer budgets and seeds (a smoke run)

Each estimator is scored against its own exact target (computed in closed form by valbench.games):
relative error ||v - exact|| / ||exact||, and the calibration of its stderr (mean squared z-score over
the points with stderr > 0; about 1 when the stderr is right, AME's excepted: its stderr leaves out
the LASSO's shrinkage). The second table, estimators_queries.csv, times AME on Q queries at once
against Q separate fits (n = 2000 points, m = 1000 samples; n = 500, m = 2000).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import games
from ..engine.device import device_name
from ..problem import make_method
from ..report.markdown import markdown_table
from ..store.records import write_atomic

MAX_DESIGN = 2 * 10**7  # AME runs where budget * n fits this many design entries (160 MB)
EPS = 0.05  # ame_sv's default
FLOOR = 1e-4  # errors below it (MC Shapley is exact on additive games) are drawn at it
PERMUTATION_METHODS = ("mc_shapley", "tmc_shapley", "beta_shapley")  # minimum budget 2n


def reference_games() -> dict:
    rng = np.random.default_rng(0)
    return {
        "additive n=200": games.AdditiveGame(rng.standard_normal(200)),
        "pairwise n=200": games.random_pairwise(200, n_pairs=400, seed=1),
        "threshold n=1000": games.ThresholdGame(1000),
    }


def estimators(budget: int) -> dict:
    """name -> (method built from its config conf/method/NAME.yaml, target(game))."""
    grid = [0.2, 0.4, 0.6, 0.8]
    return {
        "ame": (make_method("ame", budget=budget, p_grid=grid), lambda g: games.ame(g, grid)),
        "ame_sv": (make_method("ame_sv", budget=budget, eps=EPS), lambda g: games.ame_sv(g, EPS)),
        "mc_shapley": (make_method("mc_shapley", budget=budget), games.shapley),
        "tmc_shapley": (make_method("tmc_shapley", budget=budget, tol=0.01), games.shapley),
        "beta_shapley": (
            make_method("beta_shapley", budget=budget, alpha=4.0, beta=1.0),
            lambda g: games.beta_semivalue(g, 4, 1),
        ),
        "banzhaf": (make_method("banzhaf", budget=budget), games.banzhaf),
    }


def error_curves(budgets: list[int], seeds: int) -> pd.DataFrame:
    rows = []
    jobs = [
        (game_name, game, budget, name, seed)
        for game_name, game in reference_games().items()
        for budget in budgets
        for name in estimators(budget)
        for seed in range(seeds)
    ]
    for game_name, game, budget, name, seed in tqdm(jobs, desc="estimators"):
        method, target = estimators(budget)[name]
        minimum = 2 * game.n_players if name in PERMUTATION_METHODS else 64
        if budget < minimum or (name.startswith("ame") and budget * game.n_players > MAX_DESIGN):
            continue
        exact = target(game)
        valuation = method.value(game, seed=seed)
        ok = valuation.stderr > 1e-9
        z = (valuation.values - exact)[ok] / valuation.stderr[ok]
        rows.append(
            {
                "game": game_name,
                "method": name,
                "budget": budget,
                "seed": seed,
                "n_evals": valuation.n_evals,
                "seconds": valuation.seconds,
                "rel_error": float(
                    np.linalg.norm(valuation.values - exact) / np.linalg.norm(exact)
                ),
                "mean_z2": float(np.mean(z**2)) if len(z) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def query_timing(queries: list[int], sizes=((2000, 1000), (500, 2000))) -> pd.DataFrame:
    """Seconds of one AME fit on Q sparse additive queries at once vs Q single-query fits,
    for each (n points, m samples) in `sizes`."""
    rows = []
    for (n, m), n_queries in itertools.product(sizes, queries):
        parts = [games.sparse_additive(n, 10, seed=q)[0] for q in range(n_queries)]
        t0 = time.perf_counter()
        make_method("ame", budget=m).value(games.MultiQueryGame(parts), seed=0)
        together = time.perf_counter() - t0
        t0 = time.perf_counter()
        for part in parts:
            make_method("ame", budget=m).value(part, seed=0)
        separate = time.perf_counter() - t0
        rows.append(
            {"n": n, "m": m, "queries": n_queries, "seconds_together": together,
             "seconds_separate": separate}
        )  # fmt: skip
    return pd.DataFrame(rows)


def error_markdown(table: pd.DataFrame, budgets=(2000, 8000, 32000)) -> str:
    """Mean relative error over seeds as a Markdown table, one row per game and one column per
    method, each cell the errors at `budgets` ('–' where a method did not run at that budget)."""
    mean = table.groupby(["game", "method", "budget"]).rel_error.mean()
    methods = list(estimators(1))
    rows = [
        [game]
        + [
            " / ".join(
                f"{mean[key]:.2f}" if (key := (game, method, b)) in mean.index else "–"
                for b in budgets
            )
            for method in methods
        ]
        for game in table.game.unique()
    ]
    return markdown_table(["game", *methods], rows)


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table.game.unique())
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        part = table[table.game == name]
        for method, rows in part.groupby("method"):
            mean = rows.groupby("budget").rel_error.mean().clip(lower=FLOOR)
            ax.loglog(mean.index, mean.values, marker="o", label=method)
        ax.set_title(name)
        ax.set_xlabel("budget (game evaluations)")
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel(f"relative error to the exact target (floor {FLOOR:g})")
    np.atleast_1d(axes)[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m valbench.perf estimators", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="results/perf", help="output folder")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="three budgets, one seed")
    args = parser.parse_args(argv)
    out = Path(args.out)
    budgets = [2000, 8000, 32000] if args.quick else [500, 1000, 2000, 4000, 8000, 16000, 32000]
    seeds = 1 if args.quick else args.seeds
    table = error_curves(budgets, seeds)
    table["device"] = device_name("cpu")
    write_atomic(out / "estimators.csv", table.to_csv(index=False).encode())
    write_atomic(out / "estimators.md", (error_markdown(table) + "\n").encode())
    plot(table, out / "estimators.png")
    timing = query_timing([1, 4] if args.quick else [1, 4, 16])
    timing["device"] = device_name("cpu")
    write_atomic(out / "estimators_queries.csv", timing.to_csv(index=False).encode())
    summary = table.groupby(["game", "method", "budget"])[["rel_error", "mean_z2", "seconds"]]
    print(summary.mean().round(4).to_string())
    print(timing.round(2).to_string(index=False))
    print(f"wrote {out}/estimators.csv, .md, .png and estimators_queries.csv")
