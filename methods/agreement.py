"""Agreement of attributions with a gold standard: cosine similarity and Spearman correlation.

Wei et al. (2024, Sec. 5) score a method by how well its attribution vector over the training points
matches the further-training gold standard, per test instance, averaged over instances. Here each row
of (Q, n) values is one query; (n,) values are one row. The table over a sweep is
`valbench-report agreement DIR` (valbench.report.agreement).
"""

from __future__ import annotations

import numpy as np

from valbench.score import spearman


def _rows(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[None] if values.ndim == 1 else values


def agreement(gold: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Mean over rows of the cosine similarity and of the Spearman rank correlation (ties averaged)."""
    gold, values = _rows(gold), _rows(values)
    if gold.shape != values.shape:
        raise ValueError(f"gold standard {gold.shape} and values {values.shape} differ in shape")
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (gold * values).sum(1) / (
            np.linalg.norm(gold, axis=1) * np.linalg.norm(values, axis=1)
        )
    return {"cosine": float(np.nanmean(cos)), "spearman": float(np.nanmean(spearman(gold, values)))}
