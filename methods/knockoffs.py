"""Model-X knockoff selection with false discovery rate control (Barber & Candes 2015; Candes et al.
2018), as AME uses it (Lin et al. 2022).

Each point i gets a knockoff column: fresh Bernoulli(p_j) draws for every sample j, featurised like
the real column, so a point with no effect is exchangeable with its knockoff. From the LASSO
coefficients of both, W_i = max(b_i, 0) - max(b~_i, 0) (large when the point helps; for the harmful
side, W_i = max(-b_i, 0) - max(-b~_i, 0)), and

    t = min{ t > 0 : (c + #{i : W_i <= -t}) / max(1, #{i : W_i >= t}) <= q },

c = 0 (knockoff, controls a modified FDR) or c = 1 (knockoff+, controls the FDR at level q).
The selection is {i : W_i >= t} (empty when no t qualifies).
"""

from __future__ import annotations

import numpy as np

KNOCKOFFS = ("none", "knockoff", "knockoff+")


def knockoff_threshold(w: np.ndarray, fdr: float, offset: int) -> float:
    """The knockoff threshold t for statistics w (n,), level `fdr`, offset c (0 or 1); inf if none."""
    candidates = np.unique(np.abs(w[w != 0]))  # increasing
    ordered = np.sort(w)
    n_above = len(w) - np.searchsorted(ordered, candidates, side="left")  # #{W >= t}
    n_below = np.searchsorted(ordered, -candidates, side="right")  # #{W <= -t}
    ok = np.flatnonzero((offset + n_below) / np.maximum(1, n_above) <= fdr)
    return float(candidates[ok[0]]) if len(ok) else float("inf")


SIDES = ("helpful", "harmful")


def knockoff_select(
    beta: np.ndarray, beta_knockoff: np.ndarray, fdr: float, kind: str, side: str = "helpful"
) -> np.ndarray:
    """Selected points (Q, n) from coefficients of the points and of their knockoffs (Q, n): those
    that help the utility (`side` 'helpful') or that hurt it ('harmful')."""
    if kind not in KNOCKOFFS[1:]:
        raise ValueError(f"knockoffs must be one of {KNOCKOFFS}, got {kind!r}")
    if side not in SIDES:
        raise ValueError(f"select must be one of {SIDES}, got {side!r}")
    offset = 1 if kind == "knockoff+" else 0
    sign = 1.0 if side == "helpful" else -1.0
    w = np.maximum(sign * beta, 0) - np.maximum(sign * beta_knockoff, 0)
    return np.stack([row >= knockoff_threshold(row, fdr, offset) for row in w])
