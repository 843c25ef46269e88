"""Exact semivalues by enumerating all 2^n coalitions (n <= 16), evaluated in batches.

A semivalue weights each marginal contribution by the size of the coalition it is added to:

    phi_i = sum_{S subset of N \\ i} w(|S|) [U(S + i) - U(S)],

with w(k) = 1 / (n C(n-1, k)) for Shapley (Shapley 1953) and w(k) = 2^-(n-1) for Banzhaf
(Banzhaf 1965). `exact_semivalue` takes any w, e.g. Beta Shapley's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import comb

from valbench.types import Game, Problem, Valuation, evaluate

from .base import BaseMethod
from .checks import check_budget, check_players
from .queries import as_columns, per_query
from .sampling import MAX_ROWS
from .timing import Stopwatch

MAX_PLAYERS = 16


def shapley_weights(n: int) -> np.ndarray:
    """w(k) = 1 / (n C(n-1, k)), k = 0..n-1."""
    k = np.arange(n)
    return 1.0 / (n * comb(n - 1, k))


def banzhaf_weights(n: int) -> np.ndarray:
    """w(k) = 2^-(n-1), k = 0..n-1."""
    return np.full(n, 0.5 ** (n - 1))


def all_coalitions(n: int) -> np.ndarray:
    """Bool masks (2^n, n); row s holds coalition s read as a bit set (bit i = player i)."""
    return (np.arange(2**n)[:, None] >> np.arange(n)) & 1 == 1


def exact_semivalue(
    game: Game, weights: Callable[[int], np.ndarray], method: str, budget: int | None = None
) -> Valuation:
    """phi_i = sum_S w(|S|) [U(S + i) - U(S)] over all S not holding i, from 2^n evaluations."""
    n = check_players(game, 1, method)
    if n > MAX_PLAYERS:
        raise ValueError(
            f"{method}: enumeration needs 2^n evaluations; n = {n} exceeds the limit of "
            f"{MAX_PLAYERS} players (use a sampling method)"
        )
    check_budget(budget, 2**n, method)
    with Stopwatch() as t:
        masks = all_coalitions(n)
        chunks = [evaluate(game, masks[s : s + MAX_ROWS]) for s in range(0, 2**n, MAX_ROWS)]
        u = np.concatenate([as_columns(c) for c in chunks])  # (2^n, Q)
        index = np.arange(2**n)
        size = masks.sum(1)
        w = weights(n)
        values = np.empty((u.shape[1], n))
        for i in range(n):
            without = index[(index >> i) & 1 == 0]
            values[:, i] = w[size[without]] @ (u[without | (1 << i)] - u[without])
    single = chunks[0].ndim == 1
    return Valuation(per_query(values, single), n_evals=2**n, seconds=t.seconds)


class ExactShapley(BaseMethod):
    """Shapley values by enumeration of all 2^n coalitions (n <= 16)."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget

    def min_budget(self, n_players: int) -> int:
        return 2**n_players

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        return exact_semivalue(game, shapley_weights, "exact_shapley", self.budget)


class ExactBanzhaf(BaseMethod):
    """Banzhaf values by enumeration of all 2^n coalitions (n <= 16)."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget

    def min_budget(self, n_players: int) -> int:
        return 2**n_players

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        return exact_semivalue(game, banzhaf_weights, "exact_banzhaf", self.budget)
