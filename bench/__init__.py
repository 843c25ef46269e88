"""valbench: a data-valuation benchmark suite with planted ground truth.

import valbench
problem = valbench.load_problem("digits", "mislabel", overrides=["dataset.n_train=200"])
valuation = valbench.make_method("loo").value(problem.game, seed=0, problem=problem)
print(valbench.score(valuation, problem.truth))
"""

from __future__ import annotations

from valbench.datasets import Split, Truth

from .score import score
from .types import Game, Method, Problem, Valuation, evaluate

_PROBLEM = ("build_problem", "load_problem", "make_method", "problem_from_arrays")


def __getattr__(name: str):
    """The problem builders load on first use (they import torch), so `import valbench.report` and
    `import valbench.store` stay light."""
    if name in _PROBLEM:
        from . import problem

        return getattr(problem, name)
    raise AttributeError(f"module 'valbench' has no attribute {name!r}")


__all__ = [
    "Game",
    "Method",
    "Problem",
    "Split",
    "Truth",
    "Valuation",
    "build_problem",
    "evaluate",
    "load_problem",
    "make_method",
    "problem_from_arrays",
    "score",
]
