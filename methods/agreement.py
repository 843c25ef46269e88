"""Agreement of attributions with a gold standard: cosine similarity and Spearman correlation.

Wei et al. (2024, Sec. 5) score a method by how well its attribution vector over the training points
matches the further-training gold standard, per test instance, averaged over instances. Here each row
of (Q, n) values is one query; (n,) values are one row.

    python -m valbench.methods.agreement multirun/final_model_only   # the table of a sweep
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def _rows(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[None] if values.ndim == 1 else values


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def agreement(gold: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Mean over rows of the cosine similarity and of the Spearman rank correlation (ties averaged)."""
    gold, values = _rows(gold), _rows(values)
    if gold.shape != values.shape:
        raise ValueError(f"gold standard {gold.shape} and values {values.shape} differ in shape")
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (gold * values).sum(1) / (
            np.linalg.norm(gold, axis=1) * np.linalg.norm(values, axis=1)
        )
    spearman = _pearson(rankdata(gold, axis=1), rankdata(values, axis=1))
    return {"cosine": float(np.nanmean(cos)), "spearman": float(np.nanmean(spearman))}


def agreement_table(*dirs) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every job's info["agreement"] under `dirs`, one row
    per (model, method, steps)."""
    from valbench.store import find_records, read_record

    rows = []
    for path in find_records(*dirs):
        record = read_record(path)
        if not record or record.get("status") != "ok":
            continue
        for entry in (record.get("info") or {}).get("agreement", []):
            rows.append({"model": record.get("model"), "seed": record.get("seed"), **entry})
    if not rows:
        raise FileNotFoundError(
            f"no records with info['agreement'] under {', '.join(map(str, dirs))}"
        )
    frame = pd.DataFrame(rows)
    table = frame.groupby(["model", "method", "steps"])[["cosine", "spearman"]].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    return table.reset_index()


def to_markdown(table: pd.DataFrame) -> str:
    """The agreement table as Markdown, each metric as mean ± std over seeds."""
    lines = ["| model | method | steps | cosine | Spearman |", "|---|---|---:|---:|---:|"]
    for row in table.itertuples():
        cells = [
            f"{getattr(row, f'{m}_mean'):.3f} ± {np.nan_to_num(getattr(row, f'{m}_std')):.3f}"
            for m in ("cosine", "spearman")
        ]
        lines.append(f"| {row.model} | {row.method} | {row.steps} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="folders of result records (e.g. a sweep's)")
    args = parser.parse_args(argv)
    print(to_markdown(agreement_table(*args.dirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
