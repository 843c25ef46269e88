"""Plumbing shared by the methods: budget and problem checks, seeded generators, timing."""

from __future__ import annotations

import time

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


def require_problem(problem: Problem | None, method: str) -> Problem:
    """The run's Problem, or a clear error for model-based methods called with a bare game."""
    if problem is None:
        raise ValueError(f"{method} is model-based: call value(game, seed=..., problem=problem)")
    return problem


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator for `seed` (and an optional stream id)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), *stream])


class Stopwatch:
    """`with Stopwatch() as t: ...` then `t.seconds`."""

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0


MAX_ROWS = 4096  # masks handed to the game per call by the samplers (the engine chunks further)


def check_players(game, minimum: int, method: str) -> int:
    """`game.n_players` when it is at least `minimum`, or a ValueError naming both."""
    n = int(game.n_players)
    if n < minimum:
        raise ValueError(f"{method}: needs a game with at least {minimum} players, got {n}")
    return n


def as_columns(values: np.ndarray) -> np.ndarray:
    """Game values (B,) or (B, Q) as a (B, Q) array (Q = 1 for a single-utility game)."""
    return values[:, None] if values.ndim == 1 else values


def per_query(array: np.ndarray, single: bool) -> np.ndarray:
    """A (Q, n) result as (n,) for a single-utility game, else unchanged."""
    return array[0] if single else array


def bernoulli_masks(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    """Masks (len(p), n): row j includes each point independently with probability p[j].

    The uniforms are drawn row after row, so the first m rows depend only on the generator's state
    and p[:m]: a larger budget with the same seed starts with the smaller budget's masks.
    """
    masks = np.empty((len(p), n), dtype=bool)
    step = max(1, (1 << 22) // max(n, 1))
    for start in range(0, len(p), step):
        stop = min(start + step, len(p))
        masks[start:stop] = rng.random((stop - start, n)) < p[start:stop, None]
    return masks


def check_int(value, name: str, method: str, low: int = 1, high: int | None = None) -> int:
    """`value` as an int in [low, high], or a ValueError naming the key, the value and the range."""
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if not ok or value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{method}: {name} must be {allowed}, got {value!r}")
    return int(value)
