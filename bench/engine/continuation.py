"""Warm-started, batched continuation of one trained model: the engine's further-training runs.

B copies of trained parameters theta_0 continue with plain SGD (learning rate `lr`) on

    J_b(theta) = (1/n) sum_i w_bi l_i(theta) + sum_k decay_k / 2 ||theta_k||^2,

row b of `weights` removing (w = 0) or down-weighting (0 < w < 1) some points. All B copies see the
SAME minibatches: `batch_size` positions drawn uniformly with replacement over all n points from one
key by the engine's counter-based `draw_positions`, the minibatch loss being
sum_{j in batch} w_bj l_j / batch_size (an unbiased estimate of the data term with a fixed normaliser),
so that the copies differ only through their weights, as Wei et al. (2024, Sec. 3) compare further
training with and without a point under the same seed. `batch_size=None` is full-batch gradient
descent. One forward/backward per step for all B copies: `vmap(grad(...))` over stacked parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from .randomness import draw_positions

Params = dict[str, torch.Tensor]


def stacked_logits(
    module: nn.Module, params: Params, buffers: Params, x: torch.Tensor, per_model: bool = False
) -> torch.Tensor:
    """Logits (B, m, K) of B stacked models on shared inputs x (m, ...) or, with `per_model`, on
    inputs x (B, m, ...) of their own."""
    one = lambda p, xs: functional_call(module, (p, buffers), (xs,))  # noqa: E731
    return vmap(one, in_dims=(0, 0 if per_model else None))(params, x)


def continue_training(
    module: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    decay: dict[str, float],
    lr: float,
    steps: list[int],
    batch_size: int | None,
    key: int,
    on_eval: Callable[[int, Params], object],
    buffers: Params | None = None,
) -> None:
    """Continue B = len(weights) copies of `params` (see the module doc) and call
    `on_eval(t, stacked_params)` after step t for every t in `steps`."""
    buffers = buffers or {}
    n = len(y)
    stacked = {k: v.expand(len(weights), *v.shape).clone() for k, v in params.items()}

    def objective(p: Params, xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor):
        logits = functional_call(module, (p, buffers), (xb,))
        data = (F.cross_entropy(logits, yb, reduction="none") * wb).sum() / len(yb)
        return data + sum(decay[k] / 2 * (v * v).sum() for k, v in p.items() if decay[k])

    step_grads = vmap(grad(objective), in_dims=(0, None, None, 0))
    keys = torch.tensor([key], dtype=torch.long, device=x.device)
    sizes = torch.tensor([n], dtype=torch.long, device=x.device)
    wanted = set(steps)
    for t in range(1, max(steps) + 1):
        if batch_size is None:
            xb, yb, wb = x, y, weights
        else:
            idx = draw_positions(keys, t - 1, batch_size, sizes)[0]
            xb, yb, wb = x[idx], y[idx], weights[:, idx]
        g = step_grads(stacked, xb, yb, wb)
        stacked = {k: v - lr * g[k] for k, v in stacked.items()}
        if t in wanted:
            on_eval(t, stacked)
