"""Argument checks shared by the methods: budget, number of players, integer keys, the Problem."""

from __future__ import annotations

import numpy as np

from valbench.types import BudgetTooSmall, Problem


def check_budget(budget, minimum: int, method: str) -> int:
    """`budget` (max game evaluations) as an int >= `minimum`, or a ValueError naming both."""
    if budget is None:
        return minimum
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, np.integer))
        and not (isinstance(budget, float) and budget.is_integer())
    ):
        raise ValueError(
            f"{method}: budget must be an integer number of evaluations, got {budget!r}"
        )
    if budget < minimum:
        raise BudgetTooSmall(
            f"{method}: budget {int(budget)} is below this method's minimum of {minimum} evaluations",
            minimum,
        )
    return int(budget)


def check_players(game, minimum: int, method: str) -> int:
    """`game.n_players` when it is at least `minimum`, or a ValueError naming both."""
    n = int(game.n_players)
    if n < minimum:
        raise ValueError(f"{method}: needs a game with at least {minimum} players, got {n}")
    return n


def check_int(value, name: str, method: str, low: int = 1, high: int | None = None) -> int:
    """`value` as an int in [low, high], or a ValueError naming the key, the value and the range."""
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if not ok or value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{method}: {name} must be {allowed}, got {value!r}")
    return int(value)


def require_problem(problem: Problem | None, method: str) -> Problem:
    """The run's Problem, or a clear error for model-based methods called with a bare game."""
    if problem is None:
        raise ValueError(f"{method} is model-based: call value(game, seed=..., problem=problem)")
    return problem
