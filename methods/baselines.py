"""The random baseline: values carry no information, so every metric sits at its chance level."""

from __future__ import annotations

from valbench.types import Game, Problem, Valuation, n_queries

from .base import BaseMethod
from .sampling import rng_for


class RandomValues(BaseMethod):
    """Values drawn i.i.d. from N(0, 1), one per point (and per query for multi-query games)."""

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        q = n_queries(game)
        shape = (q, game.n_players) if q else (game.n_players,)
        return Valuation(rng_for(seed).standard_normal(shape), n_evals=0)
