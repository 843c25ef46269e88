"""The engine's convex trainer: logreg submodels solved by batched L-BFGS (bench/engine/lbfgs.py).

Submodel b minimises scikit-learn's objective C sum_i w_bi CE_i + ||W||^2 / 2, its mask or sample
weights w_b (scikit-learn's `sample_weight`), to max |gradient| <= tol (`ConvexSpec`), all B models
in one batched solve, optionally started from the full-data fit (`warm_start`) in variables scaled
by the Hessian there (`precondition`). All-zero features (constant ones, standardised) keep weight 0
and are left out of the solve (`convex.nonzero_features`). The solver's matmuls are row-invariant
(`convex.rowwise_mm`): on one thread a submodel's result is bitwise the same in any batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .chunks import one_thread_on_cpu
from .convex import PAD, LogregObjective, Preconditioner, nonzero_features, pad_rows
from .lbfgs import LbfgsResult, lbfgs_logreg
from .specs import ConvexSpec

COLUMNS = 8  # the solver's parameters per class row are padded to a multiple of this


class ConvexTrainer:
    """Fits logreg submodels for the `Engine`: parameters theta (b, R, d + 1), intercept last, with
    R = K class rows, or 1 for two classes (class 0's logit is 0). `record(**counts)` adds the
    solver's iterations and non-converged models to the engine's stats."""

    min_batch = 1  # a solve of one model runs the same kernels (rowwise_mm pads small batches)

    def __init__(
        self,
        spec: ConvexSpec,
        x: torch.Tensor,
        y: torch.Tensor,
        n_classes: int,
        n_params: int,
        record: Callable[..., None],
    ) -> None:
        self.spec, self.x, self.y = spec, x, y
        self.n_classes, self.n_params, self.record = n_classes, n_params, record
        self.features = nonzero_features(x.flatten(1))
        kept = x.flatten(1)[:, self.features]
        # zero features up to a multiple of COLUMNS parameters per class row (intercept included):
        # BLAS runs such widths at full speed (digits: 61 -> 64, the gradient's product ~25% faster)
        kept = F.pad(kept, (0, -(len(self.features) + 1) % COLUMNS))
        self.objective = LogregObjective(kept, y, n_classes)
        self._full_fit: torch.Tensor | None = None
        self._preconditioner: Preconditioner | None = None

    def bytes_per_model(self, n_eval: int) -> int:
        """Peak memory of one model's solve (logits, gradients, curvature pairs) and prediction."""
        n, k, p = len(self.y), self.n_classes, self.n_params
        item = self.x.element_size()
        return item * (n * (k + 6) + p * (2 * self.spec.history + 10) + n_eval * (k + 2))

    def prepare(self) -> None:
        """The start and preconditioner, built once before chunks run in parallel threads."""
        with one_thread_on_cpu(self.x.device):
            self._start()

    def fit(self, masks: torch.Tensor, keys: torch.Tensor, on_step=None) -> dict[str, torch.Tensor]:
        """Parameters of one model per row of `masks`, named as a one-layer MLP's; `keys` unused
        (nothing is drawn at random)."""
        if on_step is not None:
            raise ValueError("logreg is solved by L-BFGS: it has no optimiser steps to report")
        with one_thread_on_cpu(self.x.device):
            theta = self.train(masks)
        return {"layers.0.weight": theta[..., :-1], "layers.0.bias": theta[..., -1]}

    def fit_predict(
        self, masks: torch.Tensor, keys: torch.Tensor, x_eval: torch.Tensor
    ) -> np.ndarray:
        """Class probabilities (b, m, K) on `x_eval` of one model per row of `masks`."""
        theta = self.train(masks)
        x1 = torch.cat([x_eval.flatten(1), torch.ones_like(x_eval[:, :1].flatten(1))], 1)
        logits = self.objective.logits(theta, pad_rows(x1, PAD).T)  # (K, b, m_pad), see PAD
        probs = torch.softmax(logits, 0)[:, :, : len(x1)]
        return probs.permute(1, 2, 0).double().cpu().numpy()

    def train(self, masks: torch.Tensor) -> torch.Tensor:
        """Fitted parameters theta (b, R, d + 1) over all features, the left-out ones at 0."""
        theta0, pre = self._start()
        result = self._solve(masks, theta0.expand(self._shape(len(masks))), pre)
        self.record(
            iterations=int(result.n_iter.sum()), not_converged=int((~result.converged).sum())
        )
        theta = result.theta.new_zeros((len(masks), self.objective.n_rows, self.x[0].numel() + 1))
        theta[..., self.features] = result.theta[..., : len(self.features)]  # others: weight 0
        theta[..., -1] = result.theta[..., -1]
        return theta

    def _solve(self, masks: torch.Tensor, theta0: torch.Tensor, pre=None) -> LbfgsResult:
        spec = self.spec
        return lbfgs_logreg(
            self.objective, masks.to(self.x.dtype), spec.C, theta0, spec.tol, spec.max_iter,
            spec.history, pre,
        )  # fmt: skip

    def _shape(self, b: int) -> tuple[int, int, int]:
        """Solver parameters of b models: (b, R, D), over the features kept, intercept last."""
        return b, self.objective.n_rows, self.objective.x.shape[1]

    def _warm_start(self) -> torch.Tensor:
        """The full-data fit (1, R, D), solved once."""
        if self._full_fit is None:
            full = torch.ones((1, len(self.y)), dtype=torch.bool, device=self.x.device)
            self._full_fit = self._solve(full, self.x.new_zeros(self._shape(1))).theta
        return self._full_fit

    def _start(self) -> tuple[torch.Tensor, Preconditioner | None]:
        """The starting point (1, R, D) of every submodel and the preconditioner (built once, at
        that point)."""
        theta0 = self._warm_start() if self.spec.warm_start else self.x.new_zeros(self._shape(1))
        if self.spec.precondition and self._preconditioner is None:
            self._preconditioner = Preconditioner(self.objective, theta0[0])
        return theta0, self._preconditioner
