"""Exact leave-one-out: LOO_i = U(N) - U(N \\ {i})."""

from __future__ import annotations

import numpy as np

from valbench.types import Game, Problem, Valuation, evaluate

from .base import BaseMethod
from .checks import check_budget
from .timing import Stopwatch


class LeaveOneOut(BaseMethod):
    """Leave-one-out values from the n + 1 coalitions N and N \\ {i}, evaluated as one batch."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget

    def min_budget(self, n_players: int) -> int:
        return n_players + 1

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        n = game.n_players
        check_budget(self.budget, self.min_budget(n), "loo")
        with Stopwatch() as t:
            masks = np.vstack([np.ones((1, n), bool), ~np.eye(n, dtype=bool)])
            u = evaluate(game, masks)
            values = u[0] - u[1:]  # (n,) or (n, Q)
        return Valuation(values.T, n_evals=n + 1, seconds=t.seconds)
