"""Exact leave-one-out retraining of a FinalModel's objective, the reference for influence functions
and further training: vectorised float64 Newton steps on

    J_w(theta) = (1/n) sum_j w_j CE_j + sum_k decay_k / 2 ||theta_k||^2   (fixed 1/n normaliser).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import grad, hessian, vmap

from valbench.methods.final_model import FinalModel
from valbench.methods.gradients import as_params, as_vector


def objective(final: FinalModel, flat: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    params = as_params(flat, final.params)
    ce = F.cross_entropy(final.logits(params, final.x), final.y, reduction="none")
    penalty = sum(final.decay[k] / 2 * (p * p).sum() for k, p in params.items())
    return (weights * ce).sum() / final.n + penalty


def newton(final: FinalModel, weights: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Exact minimisers of J_w for a batch of weight rows (B, n): Newton steps from `flat`,
    vectorised over the rows (pinv: the softmax's redundant intercept direction)."""

    def step(w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        g = grad(lambda u: objective(final, u, w))(t)
        h = hessian(lambda u: objective(final, u, w))(t)
        return t - torch.linalg.pinv(h, hermitian=True) @ g

    theta = flat.expand(len(weights), -1)
    for _ in range(8):
        theta = vmap(step)(weights, theta)
    gradient = vmap(grad(lambda u, w: objective(final, u, w)))(theta, weights)
    assert gradient.abs().max() < 1e-12
    return theta


def exact_leave_one_out(final: FinalModel, x_eval: torch.Tensor, y_eval: torch.Tensor):
    """Moves `final` to the exact optimum; returns the actual changes L(theta_{-i}) - L(theta) of the
    evaluation losses (Q, n) and of every point's own training loss (n,)."""
    ones = torch.ones((1, final.n), dtype=final.x.dtype)
    theta = newton(final, ones, as_vector(final.params))[0]
    final.params = as_params(theta, final.params)
    loo = newton(final, 1 - torch.eye(final.n, dtype=final.x.dtype), theta)

    def losses(flat, x, y):
        return F.cross_entropy(final.logits(as_params(flat, final.params), x), y, reduction="none")

    change = vmap(losses, in_dims=(0, None, None))(loo, x_eval, y_eval) - losses(
        theta, x_eval, y_eval
    )
    own = vmap(losses, in_dims=(0, None, None))(loo, final.x, final.y).diagonal()
    return change.T.numpy(), (own - losses(theta, final.x, final.y)).numpy()
