"""Data Banzhaf with the maximum-sample-reuse (MSR) estimator (Wang & Jia 2023).

Draw coalitions S_1..S_m with every point in independently with probability 1/2, evaluate U once each,
and reuse every evaluation for every point:

    phi_i = mean_{j : i in S_j} U(S_j) - mean_{j : i not in S_j} U(S_j),

an unbiased estimate of the Banzhaf value (the two groups are independent uniform coalitions with and
without i). Each sample costs O(n) work (one pass over its mask). stderr is the two-sample standard
error sqrt(s_in^2 / m_in + s_out^2 / m_out). The masks come from one stream seeded by `seed`, so a
larger budget starts with the smaller one's masks.
"""

from __future__ import annotations

import numpy as np

from valbench.types import Game, Problem, Valuation, evaluate

from .base import BaseMethod
from .checks import check_budget, check_players
from .queries import as_columns, per_query
from .sampling import MAX_ROWS, bernoulli_masks, rng_for
from .timing import Stopwatch

# Below this many samples some point may, by chance, sit in (or out of) fewer than two of them
# (probability < n * m * 2^-(m-1), about 1e-8 for n = 10^6 points at m = 64).
MIN_SAMPLES = 64


class DataBanzhaf(BaseMethod):
    """Banzhaf values from `budget` uniform random coalitions, every evaluation used for every point."""

    def __init__(self, budget: int = 2000) -> None:
        self.budget = budget

    def min_budget(self, n_players: int) -> int:
        return MIN_SAMPLES

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        n = check_players(game, 1, "banzhaf")
        m = check_budget(self.budget, self.min_budget(game.n_players), "banzhaf")
        rng = rng_for(seed)
        with Stopwatch() as t:
            count_in = np.zeros(n)
            sums = sumsq = None  # (n, Q): sums of U and U^2 over the samples holding each point
            total = total_sq = 0.0
            shift = None
            for start in range(0, m, MAX_ROWS):
                masks = bernoulli_masks(rng, np.full(min(MAX_ROWS, m - start), 0.5), n)
                raw = evaluate(game, masks)
                u = as_columns(raw)
                if shift is None:  # centre the utilities for stable variances
                    single, shift = raw.ndim == 1, u.mean(0)
                    sums, sumsq = np.zeros((n, u.shape[1])), np.zeros((n, u.shape[1]))
                u = u - shift
                weights = masks.T.astype(np.float64)
                count_in += masks.sum(0)
                sums += weights @ u
                sumsq += weights @ u**2
                total = total + u.sum(0)
                total_sq = total_sq + (u**2).sum(0)
            count_in = count_in[:, None]
            count_out = m - count_in
            if np.any(np.minimum(count_in, count_out) < 2):
                bad = int(np.flatnonzero(np.minimum(count_in, count_out)[:, 0] < 2)[0])
                raise ValueError(
                    f"banzhaf: point {bad} is in (or out of) fewer than 2 of the {m} samples; "
                    "raise the budget"
                )
            mean_in, mean_out = sums / count_in, (total - sums) / count_out
            var_in = (sumsq - count_in * mean_in**2) / (count_in - 1)
            var_out = (total_sq - sumsq - count_out * mean_out**2) / (count_out - 1)
            values = (mean_in - mean_out).T
            stderr = np.sqrt(np.maximum(var_in / count_in + var_out / count_out, 0.0)).T
        return Valuation(
            per_query(values, single),
            stderr=per_query(stderr, single),
            n_evals=m,
            seconds=t.seconds,
        )
