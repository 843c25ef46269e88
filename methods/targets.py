"""What a model-based method attributes to: the `target` key of knn_shapley, the gradient methods and
further_training.

- ``self``: (n,) values, minus each point's effect on its OWN training loss (self-influence, Koh &
  Liang 2017 Sec. 5.4; Pruthi et al. 2020 Sec. 4). Points the model has to bend to fit, such as
  flipped labels, get the lowest values, so that higher still means "more helpful".
- ``val``: (n,) values, the effect on the mean loss over the validation set (what the val_* utilities
  measure).
- ``queries``: (Q, n) values, the effect on each query's loss. With a per-query utility (poison) the
  queries are the triggered test points labelled with the target class (a helpful point raises the
  target-class probability); otherwise every validation point is a query with its own label.
- ``auto``: ``queries`` for per-query utilities, else the method's `fallback` (``self`` where the
  method has a self-value, ``val`` where it has none).
"""

from __future__ import annotations

import numpy as np

from valbench.types import Problem, n_queries

TARGETS = ("auto", "self", "val", "queries")


def has_query_utility(problem: Problem) -> bool:
    """Whether the problem's utility gives one value per query (values (B, Q))."""
    return n_queries(problem.game) is not None


def check_target(target: str, method: str, allowed: tuple[str, ...] = TARGETS) -> str:
    """`target` if it is one of `allowed`, else a ValueError listing them (before any training)."""
    if target not in allowed:
        raise ValueError(f"{method}: unknown target {target!r}; allowed: {', '.join(allowed)}")
    return target


def resolve_target(target: str, problem: Problem, fallback: str) -> str:
    """The concrete target (self | val | queries) that `auto` stands for on `problem`."""
    if target != "auto":
        return target
    return "queries" if has_query_utility(problem) else fallback


def evaluation_points(problem: Problem, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels whose loss a `val` or `queries` target measures (see the module doc)."""
    if target not in ("val", "queries"):
        raise ValueError(f"target {target!r} has no evaluation points; use val or queries")
    if target == "queries" and has_query_utility(problem):
        truth = problem.truth
        return truth.x_queries, np.full(truth.n_queries, truth.target, dtype=np.int64)
    return problem.split.x_val, problem.split.y_val
