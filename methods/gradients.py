"""Per-sample loss gradients of a FinalModel (torch.func) and the attribution loop they feed.

g_j(theta) = grad_theta CE(f_theta(x_j), y_j), flattened to a vector of the model's p parameters, is
computed for many points at once by `vmap(grad(...))` and handed out in blocks of rows so that an
(n, p) matrix never has to exist for large models. `attribute` turns a kernel k(g_q, g_i) into values
for a target (methods/targets.py): (Q, n) for queries, (n,) for the mean validation loss, and for
`self` the (n,) values -s(g_i) of each point's own loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from valbench.types import Game, Problem, Valuation

from .base import BaseMethod
from .checks import check_int, require_problem
from .final_model import FinalModel, check_checkpoints, check_differentiable, train_final_model
from .targets import check_target, evaluation_points, resolve_target
from .timing import Stopwatch

BLOCK_FLOATS = 2**25  # floats per block of per-sample gradients (256 MiB in float64)


def as_vector(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in params.values()])


def as_params(vector: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, p in like.items():
        out[name] = vector[start : start + p.numel()].view_as(p)
        start += p.numel()
    return out


def loss_grads(
    final: FinalModel, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Per-sample loss gradients (m, p) of the points (x, y) at `params`."""

    def one(p: dict, xj: torch.Tensor, yj: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(final.logits(p, xj[None]), yj[None])

    grads = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g.reshape(len(x), -1) for g in grads.values()], 1)


def grad_blocks(
    final: FinalModel, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, per-sample gradients of those rows) over the points (x, y), in memory-sized blocks."""
    size = max(1, BLOCK_FLOATS // final.n_params)
    for start in range(0, len(x), size):
        rows = slice(start, min(len(x), start + size))
        yield rows, loss_grads(final, params, x[rows], y[rows])


def target_grads(
    final: FinalModel, params: dict[str, torch.Tensor], problem: Problem, target: str
) -> torch.Tensor:
    """Loss gradients of the target: (Q, p) for queries, (1, p) for the mean validation loss."""
    x, y = evaluation_points(problem, target)
    x, y = final.inputs(x), final.labels(y)
    if target == "queries":
        return torch.cat([g for _, g in grad_blocks(final, params, x, y)])
    total = sum(g.sum(0) for _, g in grad_blocks(final, params, x, y))
    return (total / len(x))[None]


Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def attribute(
    final: FinalModel,
    problem: Problem,
    target: str,
    kernel: Kernel,
    self_kernel: Callable[[torch.Tensor], torch.Tensor] | None = None,
    points: list[tuple[dict[str, torch.Tensor], float]] | None = None,
    transform_queries: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Values sum_c w_c k(g_q(theta_c), g_i(theta_c)) over parameter points (theta_c, w_c)
    (default: the final parameters with weight 1), for the target (module doc).

    `kernel(Gq (Q, p), G (r, p)) -> (Q, r)`, with Gq first mapped by `transform_queries` when given;
    for `self`, value_i = -sum_c w_c self_kernel(G)_i.
    """
    points = points or [(final.params, 1.0)]
    n = final.n
    out = None
    for params, weight in points:
        if target == "self":
            part = torch.zeros(n, dtype=final.x.dtype, device=final.x.device)
            for rows, g in grad_blocks(final, params, final.x, final.y):
                part[rows] = -self_kernel(g)
        else:
            gq = target_grads(final, params, problem, target)
            if transform_queries is not None:
                gq = transform_queries(gq)
            part = torch.zeros((len(gq), n), dtype=final.x.dtype, device=final.x.device)
            for rows, g in grad_blocks(final, params, final.x, final.y):
                part[:, rows] = kernel(gq, g)
        out = weight * part if out is None else out + weight * part
    values = out.cpu().numpy()
    return values[0] if target == "val" else values


class GradientMethod(BaseMethod):
    """Shared by the gradient methods: checks before training, the final model, the Valuation.

    `target` is auto | self | val | queries (methods/targets.py); `auto` means queries for per-query
    utilities, else `fallback`. Subclasses implement `attribute_final(final, problem, target, seed)`.
    """

    name = "gradient"
    fallback = "self"
    targets = ("auto", "self", "val", "queries")

    n_checkpoints = 0

    needs_problem = True

    def __init__(self, target: str = "auto") -> None:
        self.target = target

    def check(self, problem: Problem) -> str:
        """Check the configuration against `problem` before any training; the concrete target."""
        check_differentiable(problem, self.name)
        check_target(self.target, self.name, self.targets)
        return resolve_target(self.target, problem, self.fallback)

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        problem = require_problem(problem, self.name)
        target = self.check(problem)
        with Stopwatch() as t:
            final = train_final_model(problem, self.n_checkpoints)
            values = self.attribute_final(final, problem, target, seed)
        info = {"target": target, "n_params": final.n_params}
        return Valuation(values, n_evals=1, seconds=t.seconds, info=info)

    def attribute_final(
        self, final: FinalModel, problem: Problem, target: str, seed: int
    ) -> np.ndarray:
        raise NotImplementedError


def dot(gq: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return gq @ g.T


def squared_norm(g: torch.Tensor) -> torch.Tensor:
    return (g * g).sum(1)


def cosine(gq: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return F.normalize(gq, dim=1) @ F.normalize(g, dim=1).T


class GradDot(GradientMethod):
    """Grad-Dot: value(q, i) = g_q . g_i at the final model (Charpiat et al. 2019; Wei et al. 2024
    Sec. 4: one gradient step on the full data, first order); self-value -||g_i||^2."""

    name = "grad_dot"

    def attribute_final(self, final, problem, target, seed):
        return attribute(final, problem, target, dot, squared_norm)


class GradCos(GradientMethod):
    """Grad-Cos: value(q, i) = g_q . g_i / (||g_q|| ||g_i||) (Charpiat et al. 2019), invariant to the
    scale of either gradient. Its self-value would be the constant 1, so it has no `self` target:
    `auto` falls back to `val`."""

    name = "grad_cos"
    fallback = "val"
    targets = ("auto", "val", "queries")

    def attribute_final(self, final, problem, target, seed):
        return attribute(final, problem, target, cosine)


class TracIn(GradientMethod):
    """TracIn-CP (Pruthi et al., NeurIPS 2020, Eq. 3): value(q, i) = sum_c eta_c g_q(theta_c) . g_i(theta_c)
    over `checkpoints` states saved evenly along the training of the final model, eta_c the learning
    rate there; self-value -sum_c eta_c ||g_i(theta_c)||^2 (the paper's self-influence, negated)."""

    name = "tracin"
    models = ("mlp", "cnn", "resnet9")  # checkpoints need optimiser steps: not logreg (L-BFGS)

    def __init__(self, target: str = "auto", checkpoints: int = 5) -> None:
        super().__init__(target)
        self.checkpoints = checkpoints

    def check(self, problem: Problem) -> str:
        check_int(self.checkpoints, "checkpoints", self.name)
        target = super().check(problem)
        check_checkpoints(problem)
        return target

    @property
    def n_checkpoints(self) -> int:
        return int(self.checkpoints)

    def attribute_final(self, final, problem, target, seed):
        return attribute(final, problem, target, dot, squared_norm, final.checkpoints)
