"""The engine's network trainer: mlp, cnn and resnet9 submodels trained together, parameters stacked.

Each submodel takes a fixed number of minibatch SGD/Adam steps (`NetworkSpec`), as the AME paper
trains its submodels (Lin et al., ICML 2022, Sec. 5). Parameters are stacked (B, ...) by
`torch.func.stack_module_state`; each step is one forward/backward for all B models, by batched
matmuls for MLPs (fast path) or `vmap(functional_call)` for any nn.Module (generic path). Model b
draws its minibatches uniformly, with replacement, from its own coalition, at positions that are a
function of its key alone (`randomness.draw_positions`).

For sample weights w_b instead of a mask, model b draws from the points with w_bi > 0 and weighs
each sampled loss by w_bi / mean_{w_bj > 0} w_bj, so that it descends its weighted mean loss
sum_i w_bi l_i / sum_i w_bi (for a mask: the plain mean over its coalition).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .models import MLP
from .randomness import draw_positions
from .specs import NetworkSpec


class NetworkTrainer:
    """Trains network submodels for the `Engine`. `new_model(key)` gives a freshly initialised
    model seeded by `key`, `template` one of them (the architecture the generic path calls), with
    `n_params` parameters and `activations` activation elements per sample (memory planning)."""

    def __init__(
        self,
        spec: NetworkSpec,
        template: nn.Module,
        new_model: Callable[[int], nn.Module],
        x: torch.Tensor,
        y: torch.Tensor,
        n_classes: int,
        n_params: int,
        activations: int,
        name: str,
    ) -> None:
        is_mlp = isinstance(template, MLP)
        if spec.path == "fast" and not is_mlp:
            raise ValueError(f"model.path=fast needs an MLP (mlp, logreg); {name} is not")
        self.fast = is_mlp if spec.path == "auto" else spec.path == "fast"
        # vmap over a single model runs other kernels (another rounding): batches of two at least
        self.min_batch = 1 if self.fast else 2
        self.spec, self.new_model, self.x, self.y = spec, new_model, x, y
        self.n_classes, self.n_params, self.activations = n_classes, n_params, activations
        self.input_shape = tuple(x.shape[1:])
        self._template = template
        self._local = threading.local()  # per-thread meta copies of the template (see _forward)

    def bytes_per_model(self, n_eval: int) -> int:
        """Peak memory of one model's training (parameters, gradients, optimiser state, a batch's
        activations) and prediction."""
        spec, k, p = self.spec, self.n_classes, self.n_params
        slots = {"adam": 2, "sgd": 1 if spec.momentum else 0}[spec.optimizer]
        per_sample = 3 * self.activations + int(np.prod(self.input_shape))
        item = self.x.element_size()
        return item * (p * (2 + slots) + spec.batch_size * per_sample + 2 * n_eval * k)

    def prepare(self) -> None:
        """Nothing is shared between chunks: each model starts from its own initialisation."""

    def fit(self, masks: torch.Tensor, keys: torch.Tensor, on_step=None) -> dict[str, torch.Tensor]:
        """Stacked parameters of one model per row of `masks`; `on_step(step, params)` after every
        optimiser step."""
        params, _ = self.train(masks, keys, on_step)
        return {k: v.detach() for k, v in params.items()}

    def fit_predict(
        self, masks: torch.Tensor, keys: torch.Tensor, x_eval: torch.Tensor
    ) -> np.ndarray:
        """Class probabilities (b, m, K) on `x_eval` of one model per row of `masks`."""
        params, buffers = self.train(masks, keys)
        with torch.no_grad(), self._autocast():  # eval points in blocks of a training batch
            logits = [
                self._forward(params, buffers, xb) for xb in x_eval.split(self.spec.batch_size)
            ]
        return torch.softmax(torch.cat(logits, 1).float(), -1).double().cpu().numpy()

    def train(self, masks: torch.Tensor, keys: torch.Tensor, on_step=None):
        """Stacked parameters and buffers of one network per mask or weight row, trained at once."""
        spec = self.spec
        params, buffers = stack_module_state([self.new_model(k) for k in keys.tolist()])
        params = {k: v.to(self.x.device).detach().requires_grad_() for k, v in params.items()}
        buffers = {k: v.to(self.x.device) for k, v in buffers.items()}
        opt = self._optimizer(list(params.values()))
        support = masks > 0
        sizes = support.sum(1)
        members = torch.argsort((~support).to(torch.uint8), dim=1, stable=True)  # members first
        # Sampled losses weighted by w_i / (mean weight over the support): 1 for bool masks.
        scale = (
            None if masks.dtype == torch.bool else (masks * (sizes / masks.sum(1))[:, None]).float()
        )
        for step in range(int(spec.steps)):
            idx = members.gather(1, draw_positions(keys, step, int(spec.batch_size), sizes))
            with self._autocast():
                logits = self._forward(params, buffers, self.x[idx])
            # classes on dim 1 (b, K, batch): several times faster on CPU than K last
            logits = logits.float().transpose(1, 2)
            if scale is None:
                loss = F.cross_entropy(logits, self.y[idx], reduction="sum")
            else:  # sample weights: each sampled loss scaled (b, batch)
                losses = F.cross_entropy(logits, self.y[idx], reduction="none")
                loss = (losses * scale.gather(1, idx)).sum()
            opt.zero_grad(set_to_none=True)
            (loss / spec.batch_size).backward()  # sum over models of each model's mean loss
            opt.step()
            if on_step is not None:
                on_step(step, params)
        return params, buffers

    def _optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        spec = self.spec
        if spec.optimizer == "adam":
            return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )

    def _forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (b, N, K) of b stacked models on x (b, N, *input) or shared x (N, *input)."""
        if self.fast:
            h = x.flatten(-len(self.input_shape))
            n_layers = len(params) // 2
            for i in range(n_layers):
                weight, bias = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
                h = torch.matmul(h, weight.mT) + bias[:, None, :]
                if i < n_layers - 1:
                    h = torch.relu(h)
            return h
        if not hasattr(
            self._local, "meta"
        ):  # functional_call swaps a module's tensors: one per thread
            self._local.meta = copy.deepcopy(self._template).to("meta")

        def one(p, b, xs):
            return functional_call(self._local.meta, (p, b), (xs,))

        shared = x.dim() == len(self.input_shape) + 1
        return vmap(one, in_dims=(0, 0, None if shared else 0))(params, buffers, x)

    def _autocast(self):
        """bfloat16 autocast on CUDA when `bf16` is set; otherwise off."""
        device = self.x.device.type
        return torch.autocast(
            device, dtype=torch.bfloat16, enabled=device == "cuda" and self.spec.bf16
        )
