"""The AME paper's figures (Lin et al., ICML 2022) at CPU scale, from collected job tables.

Each function returns (figure, table): the figure in the paper style, the table (one row per plotted
point: mean and 95% t interval over seeds) that the CSV and Markdown of the figure are written from.

poison    precision and recall of the poisons against c (m = c k log2 N), AME with and without
          knockoffs (the precision / recall vs. budget figure of Sec. 5.1); reuses plots.budget_figure
fdr       realised false-discovery proportion of the knockoff selection against the target q, with
          the line y = x (Sec. 4.2: knockoffs control the FDR at q)
cost      AUROC against game evaluations (submodels) of AME, MC / TMC Shapley and Banzhaf at equal
          budgets (Sec. 5); reuses plots.tradeoff_figure
sv_exact  relative L2 error and Spearman of AME-SV, MC and TMC Shapley against the exact Shapley
          value, by budget (Sec. 5.3); reuses sv_error
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..store.records import read_arrays
from .plots import budget_figure, tradeoff_figure
from .style import new_figure
from .sv_error import error_figure, error_table, summarize_errors
from .tables import ci95, ok_jobs, summarize

POISON_METRICS = ["sel_precision", "sel_recall", "precision_at_k", "recall_at_k", "auroc"]


def _table(summary: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """`summary`'s key columns, seeds and per metric its mean and 95% half-width (`_ci`)."""
    out = summary[[k for k in keys if k in summary] + ["seeds"]].copy()
    for metric in metrics:
        out[metric] = summary[metric]
        out[f"{metric}_ci"] = ci95(summary[f"{metric}_std"], summary["seeds"])
    return out.reset_index(drop=True)


def poison_figure(frame: pd.DataFrame):
    """Precision and recall of the poisons against c, a row of panels per task (Lin et al. 2022,
    Sec. 5.1): a method's knockoff selection where it makes one, else its k top-valued points."""
    fig = budget_figure(frame, "double")
    if fig is None:
        raise ValueError("poison: no job ran at a budget_c point: nothing to plot")
    summary = summarize(frame, POISON_METRICS)
    summary["config.budget_c"] = pd.to_numeric(summary["config.budget_c"], errors="coerce")
    summary = summary.sort_values(["base", "method", "config.budget_c"])
    keys = ["base", "method", "config.budget_c", "n_evals"]
    return fig, _table(summary, keys, POISON_METRICS)


def false_discovery_proportion(selected: np.ndarray, planted: np.ndarray) -> float:
    """Selected points that are not planted over max(1, selected) (0 for an empty selection, as in
    the FDR's definition); for a (Q, n) selection, the mean over queries."""
    selected = np.atleast_2d(np.asarray(selected, bool))
    planted = np.asarray(planted, bool)
    false = (selected & ~planted).sum(1)
    return float(np.mean(false / np.maximum(1, selected.sum(1))))


def fdr_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per target q (`config.method.fdr`): seeds, mean realised FDP and power (selected planted
    over planted) with 95% t half-widths over seeds."""
    rows = []
    for _, job in ok_jobs(frame).iterrows():
        arrays = read_arrays(Path(job["path"]).parent)
        if "selected" not in arrays:
            raise ValueError(f"{job['path']}: no selection saved: not a knockoff job")
        selected = np.atleast_2d(arrays["selected"].astype(bool))
        planted = arrays["planted"].astype(bool)
        power = float(np.mean((selected & planted).sum(1) / max(1, planted.sum())))
        fdp = false_discovery_proportion(selected, planted)
        rows.append(
            {"q": float(job["config.method.fdr"]), "seed": job["seed"], "fdp": fdp, "power": power}
        )
    if not rows:
        raise ValueError("fdr: no finished knockoff job: nothing to plot")
    jobs = pd.DataFrame(rows)
    grouped = jobs.groupby("q")
    out = grouped[["fdp", "power"]].mean()
    out.insert(0, "seeds", grouped.size())
    for key in ("fdp", "power"):
        out[f"{key}_ci"] = ci95(grouped[key].std(ddof=1), grouped[key].count())
    return out.reset_index()


def fdr_figure(frame: pd.DataFrame):
    """Realised FDP (left) and power (right) against the target q, means with 95% intervals over
    seeds; dashed: y = x, the bound that knockoffs guarantee in expectation (Lin et al. 2022, Sec. 4.2)."""
    table = fdr_table(frame)
    fig, axes = new_figure(1, 2, "double")
    colour = "#7f0000"  # ame_knockoff's colour (style.METHOD_COLOURS)
    for ax, key, label in zip(
        axes[0], ("fdp", "power"), ("false-discovery proportion", "power (recall)"), strict=True
    ):
        ax.errorbar(
            table["q"], table[key], yerr=np.nan_to_num(table[f"{key}_ci"]), color=colour, marker="o"
        )
        ax.set_xlabel("target FDR q")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0, max(0.55, table["q"].max() * 1.1))
    axes[0, 0].plot([0, 1], [0, 1], color="0.4", linestyle="--", label="y = x")
    axes[0, 0].legend(loc="upper left")
    axes[0, 0].set_title("realised FDP vs. target q")
    axes[0, 1].set_title("power vs. target q")
    return fig, table


def cost_figure(frame: pd.DataFrame):
    """AUROC against game evaluations per method at equal budgets (Lin et al. 2022, Sec. 5)."""
    summary = summarize(frame, ["auroc"])
    fig = tradeoff_figure(summary, "n_evals", "single")
    table = _table(summary, ["base", "method", "config.method.budget", "n_evals"], ["auroc"])
    return fig, table.sort_values(["method", "config.method.budget"]).reset_index(drop=True)


def sv_exact_figure(frame: pd.DataFrame):
    """Error of the Shapley estimates against the exact Shapley value by budget (Lin et al. 2022,
    Sec. 5.3); the reference is the sweep's `sv_reference` (exact_shapley)."""
    summary = summarize_errors(error_table(frame))
    return error_figure(summary, "double"), summary
