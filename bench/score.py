"""Scoring a valuation against the planted ground truth.

Suspicion = truth.sign * values, so planted points should rank first. Metrics: AUROC and average
precision (scikit-learn's definitions), precision@k and recall@k with k = number planted, the 2-means
F1 of OpenDataVal (1-D k-means with two clusters on the values; the cluster on the planted side is the
prediction), and the precision/recall of a method's own selection. (Q, n) values are scored per query
and averaged.
"""

from __future__ import annotations

import numpy as np

from valbench.datasets import Truth

from .types import Valuation

METRIC_KEYS = (
    "auroc",
    "ap",
    "precision_at_k",
    "recall_at_k",
    "f1_2means",
    "sel_precision",
    "sel_recall",
)
QUALITY_KEYS = ("auroc", "ap", "f1_2means")  # how well a valuation ranks: the tables' headline
SELECTION_KEYS = ("sel_precision", "sel_recall")  # of a method's own selection (knockoffs)


def spearman(a, b) -> np.ndarray:
    """Spearman rank correlation (ties averaged) of each row of `a` with the same row of `b`, for
    (n,) vectors (one row) or (Q, n) arrays: shape (rows,), NaN for a row where either is constant."""
    from scipy.stats import rankdata

    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"spearman needs two arrays of one shape (n,) or (Q, n), got {a.shape}, {b.shape}"
        )
    ra = rankdata(a, axis=1) - (a.shape[1] + 1) / 2
    rb = rankdata(b, axis=1) - (b.shape[1] + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(1) / np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    return np.where((np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0), np.nan, rho)


def auroc(suspicion: np.ndarray, planted: np.ndarray) -> float:
    """Area under the ROC curve, ties counted half (Mann-Whitney U / (n_pos * n_neg))."""
    from scipy.stats import rankdata

    pos = planted.sum()
    neg = len(planted) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(suspicion)
    return float((ranks[planted].sum() - pos * (pos + 1) / 2) / (pos * neg))


def average_precision(suspicion: np.ndarray, planted: np.ndarray) -> float:
    """AP = sum_k (R_k - R_{k-1}) P_k over distinct thresholds (as sklearn.metrics.average_precision_score)."""
    if planted.sum() == 0:
        return float("nan")
    order = np.argsort(-suspicion, kind="stable")
    s, hit = suspicion[order], planted[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tied block
    tp = np.cumsum(hit)[last]
    precision = tp / (last + 1)
    recall = tp / hit.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_recall_at_k(
    suspicion: np.ndarray, planted: np.ndarray, k: int | None = None
) -> tuple[float, float]:
    """Precision and recall of the k most suspicious points (k = number planted by default)."""
    n_pos = int(planted.sum())
    k = n_pos if k is None else k
    if n_pos == 0 or k == 0:
        return float("nan"), float("nan")
    top = np.argsort(-suspicion, kind="stable")[:k]
    tp = planted[top].sum()
    return float(tp / k), float(tp / n_pos)


def f1_two_means(suspicion: np.ndarray, planted: np.ndarray) -> float:
    """F1 of the high-suspicion cluster of a 2-means clustering of the values (OpenDataVal)."""
    from sklearn.cluster import KMeans

    if planted.sum() == 0 or np.ptp(suspicion) == 0:
        return float("nan") if planted.sum() == 0 else 0.0
    km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(suspicion.reshape(-1, 1))
    flagged = km.labels_ == np.argmax(km.cluster_centers_.ravel())
    return _f1(flagged, planted)


def _f1(flagged: np.ndarray, planted: np.ndarray) -> float:
    tp = (flagged & planted).sum()
    denom = flagged.sum() + planted.sum()
    return float(2 * tp / denom) if denom else float("nan")


def selection_precision_recall(selected: np.ndarray, planted: np.ndarray) -> tuple[float, float]:
    """Precision (1 when nothing is selected, the FDR convention) and recall of a selection."""
    if planted.sum() == 0:
        return float("nan"), float("nan")
    tp = (selected & planted).sum()
    precision = tp / selected.sum() if selected.sum() else 1.0
    return float(precision), float(tp / planted.sum())


def score_values(values: np.ndarray, truth: Truth, selected: np.ndarray | None = None) -> dict:
    """All metrics for one vector of values (n,)."""
    planted = np.asarray(truth.planted, bool)
    if values.shape != planted.shape:
        raise ValueError(f"values have {values.shape[-1]} points but the truth has {len(planted)}")
    susp = truth.sign * values
    p_at_k, r_at_k = precision_recall_at_k(susp, planted)
    out = {
        "auroc": auroc(susp, planted),
        "ap": average_precision(susp, planted),
        "precision_at_k": p_at_k,
        "recall_at_k": r_at_k,
        "f1_2means": f1_two_means(susp, planted),
        "sel_precision": float("nan"),
        "sel_recall": float("nan"),
    }
    if selected is not None:
        out["sel_precision"], out["sel_recall"] = selection_precision_recall(selected, planted)
    return out


def score(valuation: Valuation, truth: Truth) -> dict:
    """Metrics of `valuation` against `truth`; for (Q, n) values, the mean over queries."""
    values = valuation.values
    if values.ndim == 1:
        return score_values(values, truth, valuation.selected)
    sel = valuation.selected if valuation.selected is not None else [None] * len(values)
    rows = [score_values(v, truth, s) for v, s in zip(values, sel, strict=True)]
    with np.errstate(all="ignore"):
        return {
            k: float(np.nanmean([r[k] for r in rows]))
            if not all(np.isnan(r[k]) for r in rows)
            else float("nan")
            for k in METRIC_KEYS
        }
