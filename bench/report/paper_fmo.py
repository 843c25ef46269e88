"""The final-model-only attribution figures (Wei et al. 2024) from job records.

agreement  Spearman correlation of each final-model-only method (Grad-Dot, Grad-Cos, TracIn,
           influence) with the further-training gold standard against the further-training length T,
           a panel per model (logistic regression, MLP): each job's info["agreement"] (mean over the
           validation queries), mean and 95% t interval over seeds
loo        the gold standard's own convergence: Spearman of its values after T steps (averaged over
           the queries) with leave-one-out retraining on the same problem (utility = mean
           validation log-likelihood, whose LOO value is that average), against T
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..score import spearman
from ..store.records import read_arrays, read_record
from .agreement import agreement_rows
from .style import method_colour, new_figure
from .tables import ci95


def _summarise(rows: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    grouped = rows.groupby(keys)
    out = grouped[value].mean().to_frame(value)
    out.insert(0, "seeds", grouped[value].count())
    out[f"{value}_ci"] = ci95(grouped[value].std(ddof=1), out["seeds"])
    return out.reset_index()


def _steps_axis(ax, steps) -> None:
    """A log x axis ticked at the further-training lengths T that were run."""
    from matplotlib.ticker import NullLocator

    ticks = sorted({int(t) for t in steps})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("further-training steps T")


def _base_method(label: str) -> str:
    """The method of a compare label: influence(damping=0.1) -> influence (its colour)."""
    return label.split("(", 1)[0]


def agreement_figure(paths):
    """Spearman with further training against T, a panel per model (Wei et al. 2024)."""
    rows = agreement_rows(paths)
    if rows.empty:
        raise ValueError("agreement: no finished job with info['agreement']: nothing to plot")
    table = _summarise(rows, ["model", "method", "steps"], "spearman")
    models = sorted(table["model"].unique())
    fig, axes = new_figure(1, len(models), "double" if len(models) > 1 else "single", sharey=True)
    for ax, model in zip(axes[0], models, strict=True):
        part = table[table["model"] == model]
        labels = sorted(part["method"].unique())
        for label in labels:
            line = part[part["method"] == label].sort_values("steps")
            dashed = "--" if label != _base_method(label) else "-"
            ax.errorbar(
                line["steps"],
                line["spearman"],
                yerr=np.nan_to_num(line["spearman_ci"]),
                color=method_colour(_base_method(label)),
                linestyle=dashed,
                marker="o",
                label=label,
            )
        _steps_axis(ax, part["steps"])
        ax.set_ylabel("Spearman with further training")
        ax.set_ylim(-0.05, 1.02)
        ax.set_title(model)
        ax.legend(loc="lower left")
    return fig, table


def loo_table(gold_paths, loo_paths) -> pd.DataFrame:
    """Per T: seeds, mean Spearman of the gold standard's values after T steps (mean over queries)
    with the LOO job of the same seed, and its 95% t half-width."""
    loo = {}
    for path in loo_paths:
        record = read_record(path)
        if record and record.get("status") == "ok":
            loo[record["seed"]] = read_arrays(Path(path).parent)["values"]
    rows = []
    for path in gold_paths:
        record = read_record(path)
        if not record or record.get("status") != "ok" or record["seed"] not in loo:
            continue
        gold = np.atleast_2d(read_arrays(Path(path).parent)["values"]).mean(0)
        ref = loo[record["seed"]]
        if gold.shape != ref.shape:
            raise ValueError(f"{path}: {gold.shape[0]} players but its LOO job has {ref.shape[0]}")
        steps = (record.get("config") or {}).get("method.steps")
        rows.append(
            {
                "steps": steps,
                "seed": record["seed"],
                "spearman": float(np.mean(spearman(gold, ref))),
            }
        )
    if not rows:
        raise ValueError("loo: no gold-standard job with a LOO job of its seed: nothing to plot")
    return _summarise(pd.DataFrame(rows), ["steps"], "spearman")


def loo_figure(gold_paths, loo_paths):
    """The further-training gold standard's Spearman with leave-one-out retraining against T."""
    table = loo_table(gold_paths, loo_paths)
    fig, axes = new_figure(1, 1, "single")
    ax = axes[0, 0]
    ax.errorbar(
        table["steps"],
        table["spearman"],
        yerr=np.nan_to_num(table["spearman_ci"]),
        color=method_colour("further_training"),
        marker="o",
        label="further training vs. LOO",
    )
    ax.axhline(1.0, color="0.4", linestyle=":")
    _steps_axis(ax, table["steps"])
    ax.set_ylabel("Spearman with leave-one-out")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("gold standard -> LOO (logreg)")
    return fig, table
