"""The random baseline: values carry no information, so every metric sits at its chance level."""

from __future__ import annotations

from valbench.types import Game, Problem, Valuation

from .common import rng_for


class RandomValues:
    """Values drawn i.i.d. from N(0, 1), one per point (and per query for multi-query games)."""

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        n_queries = getattr(game, "n_queries", None)
        shape = (n_queries, game.n_players) if n_queries else (game.n_players,)
        return Valuation(rng_for(seed).standard_normal(shape), n_evals=0)
