"""What each paper figure mirrors, its setting, the paper's claim and our number, side by side.

The papers' claims are quoted from their text (abstracts and the sections named); where a paper
states no number that we could check for a setting comparable to ours, `paper` says so instead of
giving one. `ours(table)` reads our number from the figure's table (paper_ame.py, paper_fmo.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

LIN = "Lin et al. (ICML 2022)"
WEI = "Wei et al. (2024)"
NO_NUMBER = "no number of the paper is given here: none found in its text for a comparable setting."


@dataclass(frozen=True)
class Claim:
    mirrors: str
    setting: str
    paper: str
    ours: Callable[[pd.DataFrame], str]


def _pm(mean, ci) -> str:
    return f"{mean:.2f}" + ("" if pd.isna(ci) else f" ± {ci:.2f}")


def _poison(table: pd.DataFrame) -> str:
    parts = []
    for (base, method), rows in table.groupby(["base", "method"], sort=True):
        top = rows.loc[rows["config.budget_c"].idxmax()]
        sel = "sel_" if pd.notna(top.get("sel_recall")) else ""
        kind = "selection" if sel else "top-k"
        precision = _pm(
            top[f"{sel}precision" if sel else "precision_at_k"],
            top[f"{sel}precision_ci" if sel else "precision_at_k_ci"],
        )
        recall = _pm(
            top[f"{sel}recall" if sel else "recall_at_k"],
            top[f"{sel}recall_ci" if sel else "recall_at_k_ci"],
        )
        dataset = base.split()[0].removeprefix("dataset=")
        parts.append(
            f"{method} on {dataset} at c = {top['config.budget_c']:g} ({kind}): precision {precision}, recall {recall}"
        )
    return "; ".join(parts) + "."


def _fdr(table: pd.DataFrame) -> str:
    over = table[table["fdp"] > table["q"]]
    cells = ", ".join(f"q = {r.q:g}: {r.fdp:.2f}" for r in table.itertuples())
    verdict = (
        "at or below q at every q"
        if over.empty
        else f"above q at q = {', '.join(f'{q:g}' for q in over['q'])}"
    )
    return f"mean realised FDP {verdict} ({cells})."


def _at_largest(table: pd.DataFrame, budget: str, value: str, label: str) -> str:
    """Each method's `value` (with its interval) at its largest `budget`."""
    top = table.loc[table.groupby("method")[budget].idxmax()]
    cells = ", ".join(
        f"{r.method} {_pm(getattr(r, value), getattr(r, value + '_ci'))} "
        f"({getattr(r, budget):.0f} evaluations)"
        for r in top.itertuples()
    )
    return f"{label} at the largest budget: {cells}."


def _cost(table: pd.DataFrame) -> str:
    return _at_largest(table, "n_evals", "auroc", "AUROC")


def _sv(table: pd.DataFrame) -> str:
    return _at_largest(table, "budget", "rel_l2", "relative L2 error")


def _agreement(table: pd.DataFrame) -> str:
    parts = []
    for (model, method), rows in table.groupby(["model", "method"], sort=True):
        rows = rows.sort_values("steps")
        first, last = rows.iloc[0], rows.iloc[-1]
        parts.append(
            f"{model} {method} {first.spearman:.2f} at T = {first.steps} -> {last.spearman:.2f} at T = {last.steps}"
        )
    return "Spearman " + "; ".join(parts) + "."


def _loo(table: pd.DataFrame) -> str:
    rows = table.sort_values("steps")
    return (
        "Spearman with LOO "
        + ", ".join(f"{_pm(r.spearman, r.spearman_ci)} at T = {r.steps}" for r in rows.itertuples())
        + "."
    )


CLAIMS = {
    "poison": Claim(
        f"{LIN}, Sec. 5.1, Fig. 3 (poison precision / recall vs. c)",
        "digits N = 1,000 (logreg, k = 10 poisons) and GENERATED CIFAR-10-shaped images N = 100 "
        "(small CNN, k = 5 poisons; no CIFAR-10 files), m = c k log2 N",
        f"AME finds the poisons with O(k log N) submodels and high precision and recall, knockoffs "
        f"trading recall for precision (abstract, Sec. 5.1); {NO_NUMBER}",
        _poison,
    ),
    "fdr": Claim(
        f"{LIN}, Sec. 4.2 (knockoff FDR control)",
        "digits N = 200, k = 10 poisons, AME-knockoff at c = 4 (306 evaluations)",
        "knockoffs control the false discovery rate at the target q: E[FDP] <= q (Sec. 4.2, "
        f"the knockoff guarantee); {NO_NUMBER}",
        _fdr,
    ),
    "cost": Claim(
        f"{LIN}, Sec. 5 (quality per submodel trained)",
        "digits N = 200, k = 10 poisons, budgets 400-3,200 evaluations",
        "AME needs O(k log N) submodels, improving on prior Shapley estimators (abstract); "
        f"{NO_NUMBER}",
        _cost,
    ),
    "sv_exact": Claim(
        f"{LIN}, Sec. 5.3 (Shapley error vs. budget)",
        "digits N = 12 with 10% flipped labels, budgets 100-1,600, exact Shapley over all 2^12 "
        "coalitions",
        "AME-SV is in many settings a more efficient Shapley estimator than those known before "
        f"(abstract, Sec. 5.3); {NO_NUMBER}",
        _sv,
    ),
    "fmo_agreement": Claim(
        f"{WEI}, Sec. 5 (agreement with further training vs. T)",
        "digits N = 200 with 10% flipped labels, logreg (T <= 300) and MLP (32 hidden, T <= 100), "
        "30 validation queries",
        "first-order methods' approximation quality is sometimes high but decays with the amount of "
        "further training; influence functions are more stable but lower (abstract); "
        f"{NO_NUMBER}",
        _agreement,
    ),
    "fmo_loo": Claim(
        f"{WEI}, Sec. 3 (the further-training gold standard)",
        "digits N = 200 with 10% flipped labels, logreg, full-batch further training",
        "the paper proposes further training as the final-model-only gold standard; its "
        "convergence to leave-one-out for a convex model is not a figure of the paper but a "
        "property checked here",
        _loo,
    ),
}
