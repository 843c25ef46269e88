"""The agreement table of a sweep: every job's info["agreement"] (cosine and Spearman of each
method's attributions with the further-training gold standard, see valbench.methods.agreement),
mean ± std over seeds per (model, method, steps).

    valbench-report agreement multirun/final_model_only
    valbench-report agreement multirun/final_model_only --wide spearman -o FILE.md   # T as columns
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..store.records import find_records, read_record
from .markdown import markdown_table


def agreement_rows(paths) -> pd.DataFrame:
    """One row per (record, compared method, T) of the finished records' info["agreement"] at
    `paths`: model, seed, method, steps, spearman, cosine (no rows: an empty frame)."""
    rows = []
    for path in paths:
        record = read_record(path)
        if not record or record.get("status") != "ok":
            continue
        for entry in (record.get("info") or {}).get("agreement", []):
            rows.append({"model": record.get("model"), "seed": record.get("seed"), **entry})
    return pd.DataFrame(rows)


def agreement_table(*dirs) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every job's info["agreement"] under `dirs`, one row
    per (model, method, steps)."""
    frame = agreement_rows(find_records(*dirs))
    if frame.empty:
        raise FileNotFoundError(
            f"no records with info['agreement'] under {', '.join(map(str, dirs))}"
        )
    table = frame.groupby(["model", "method", "steps"])[["cosine", "spearman"]].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    return table.reset_index()


def to_markdown(table: pd.DataFrame) -> str:
    """The agreement table as Markdown, each metric as mean ± std over seeds."""
    rows = [
        [row.model, row.method, row.steps]
        + [
            f"{getattr(row, f'{m}_mean'):.3f} ± {np.nan_to_num(getattr(row, f'{m}_std')):.3f}"
            for m in ("cosine", "spearman")
        ]
        for row in table.itertuples()
    ]
    return markdown_table(["model", "method", "steps", "cosine", "Spearman"], rows, "llrrr")


def wide_markdown(table: pd.DataFrame, metric: str = "spearman") -> str:
    """One metric's means as Markdown: a row per model x method, a column per number of steps T."""
    steps = sorted(table["steps"].unique())
    means = table.set_index(["model", "method", "steps"])[f"{metric}_mean"]
    pairs = table[["model", "method"]].drop_duplicates().itertuples(index=False)
    rows = [
        [model, method]
        + [
            f"{means[(model, method, t)]:.3f}" if (model, method, t) in means.index else "–"
            for t in steps
        ]
        for model, method in pairs
    ]
    header = ["model", "method", *(f"T = {t}" for t in steps)]
    return markdown_table(header, rows, "ll" + "r" * len(steps))
