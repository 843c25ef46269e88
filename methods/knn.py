"""KNN-Shapley (Jia et al., VLDB 2019, "Efficient task-specific data valuation for nearest neighbor
algorithms", Theorem 1): exact Shapley values of the K-nearest-neighbour utility in O(n log n) per
evaluation point.

For one evaluation point (x, y), the utility of a coalition S is the unweighted KNN likelihood of y,
U(S) = (1/K) sum_{k <= min(K, |S|)} 1[y_{alpha_k(S)} = y], alpha_k(S) the k-th nearest member of S.
With the training points sorted by distance to x, alpha_1 nearest, the Shapley values satisfy

    s_{alpha_n} = 1[y_{alpha_n} = y] / n
    s_{alpha_i} = s_{alpha_{i+1}} + (1[y_{alpha_i} = y] - 1[y_{alpha_{i+1}} = y]) / K * min(K, i) / i

computed here for a block of evaluation points at once (a reversed cumulative sum). Distances are
Euclidean, on the raw features or on a trained model's embedding (the input of its last linear layer);
ties are broken by training index. Multi-class as is: only "same label or not" enters.
"""

from __future__ import annotations

import numpy as np
import torch

from valbench.types import Game, Problem, Valuation

from .base import BaseMethod
from .checks import check_int, require_problem
from .final_model import FinalModel, check_differentiable, train_final_model
from .targets import check_target, evaluation_points, resolve_target
from .timing import Stopwatch

EMBEDDINGS = ("raw", "model")
BLOCK = 256  # evaluation points per block of the distance matrix


def knn_shapley_values(
    x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray, k: int
) -> np.ndarray:
    """KNN-Shapley values (m, n) of the n training points for each of the m evaluation points."""
    x_train = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
    x_eval = np.asarray(x_eval, np.float64).reshape(len(x_eval), -1)
    n = len(x_train)
    ranks = np.arange(1, n)  # i = 1 .. n-1
    coef = np.minimum(k, ranks) / (k * ranks)
    out = np.empty((len(x_eval), n))
    sq_train = (x_train**2).sum(1)
    for start in range(0, len(x_eval), BLOCK):
        xb, yb = x_eval[start : start + BLOCK], y_eval[start : start + BLOCK]
        dist = sq_train[None, :] - 2 * xb @ x_train.T  # + ||x_eval||^2, the same along each row
        order = np.argsort(dist, axis=1, kind="stable")
        match = (y_train[order] == yb[:, None]).astype(np.float64)  # nearest first
        steps = (match[:, :-1] - match[:, 1:]) * coef  # s_i - s_{i+1}
        sorted_values = np.empty_like(match)
        sorted_values[:, -1] = match[:, -1] / n
        sorted_values[:, :-1] = sorted_values[:, -1:] + np.cumsum(steps[:, ::-1], 1)[:, ::-1]
        np.put_along_axis(out[start : start + BLOCK], order, sorted_values, axis=1)
    return out


def embed(final: FinalModel, x: torch.Tensor) -> np.ndarray:
    """The input of the model's last linear layer for inputs `x` (for logreg: the raw features)."""
    last = [m for m in final.module.modules() if isinstance(m, torch.nn.Linear)][-1]
    captured = []
    hook = last.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    try:
        with torch.no_grad():
            final.logits(final.params, x)
    finally:
        hook.remove()
    return captured[0].reshape(len(x), -1).cpu().numpy()


class KNNShapley(BaseMethod):
    """Exact KNN-Shapley values; see the module doc.

    `target` (methods/targets.py): `val` averages over the validation points (values (n,)); `queries`
    gives one row per query (Q, n); `auto` is queries for per-query utilities, else val. There is no
    self target. n_evals counts model trainings: 0 on raw features, 1 for the model embedding.
    """

    needs_problem = True

    def __init__(self, k: int = 10, embedding: str = "raw", target: str = "auto") -> None:
        self.k, self.embedding, self.target = k, embedding, target

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        problem = require_problem(problem, "knn_shapley")
        n = problem.split.n_train
        k = check_int(self.k, "k", "knn_shapley", 1, n)
        if self.embedding not in EMBEDDINGS:
            raise ValueError(
                f"knn_shapley: unknown embedding {self.embedding!r}; use {' or '.join(EMBEDDINGS)}"
            )
        if self.embedding == "model":
            check_differentiable(problem, "knn_shapley with embedding=model")
        check_target(self.target, "knn_shapley", ("auto", "val", "queries"))
        target = resolve_target(self.target, problem, "val")
        x_eval, y_eval = evaluation_points(problem, target)
        with Stopwatch() as t:
            x_train = problem.split.x_train
            if self.embedding == "model":
                final = train_final_model(problem)
                x_train, x_eval = embed(final, final.x), embed(final, final.inputs(x_eval))
            values = knn_shapley_values(x_train, problem.split.y_train, x_eval, y_eval, k)
            if target == "val":
                values = values.mean(0)
        return Valuation(
            values,
            n_evals=int(self.embedding == "model"),
            seconds=t.seconds,
            info={"target": target, "k": k, "embedding": self.embedding},
        )
