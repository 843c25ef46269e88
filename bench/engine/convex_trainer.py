"""The engine's convex trainer: logreg submodels solved by batched L-BFGS (bench/engine/lbfgs.py).

Submodel b minimises scikit-learn's objective C sum_i w_bi CE_i + ||W||^2 / 2, its mask or sample
weights w_b (scikit-learn's `sample_weight`), to max |gradient| <= tol (`ConvexSpec`), all B models
in one batched solve, optionally started from a full-data fit at the submodel's own penalty
(`warm_start`, `_starts`) in variables scaled by the Hessian of the full-data fit (`precondition`). All-zero features (constant ones, standardised) keep weight 0
and are left out of the solve (`convex.nonzero_features`). The solver's matmuls are row-invariant
(`convex.rowwise_mm`): on one thread a submodel's result is bitwise the same in any batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .chunks import one_thread_on_cpu
from .convex import PAD, LogregObjective, Preconditioner, nonzero_features, pad_rows
from .lbfgs import LbfgsResult, lbfgs_logreg
from .specs import ConvexSpec

COLUMNS = 8  # the solver's parameters per class row are padded to a multiple of this
STARTS_PER_OCTAVE = 2  # warm starts: full-data fits at sizes n 2^(-j / 2) down to one point


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
        self._starts: tuple[torch.Tensor, torch.Tensor] | None = None
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
        start = masks.new_zeros(len(masks), dtype=torch.long)  # all at theta0
        if self.spec.warm_start:
            theta0, start = self._warm_starts()[1], self._nearest_start(masks.to(theta0).sum(1))
        result = self._solve(masks, theta0, pre, start)
        self.record(
            iterations=int(result.n_iter.sum()), not_converged=int((~result.converged).sum())
        )
        theta = result.theta.new_zeros((len(masks), self.objective.n_rows, self.x[0].numel() + 1))
        theta[..., self.features] = result.theta[..., : len(self.features)]  # others: weight 0
        theta[..., -1] = result.theta[..., -1]
        return theta

    def _solve(
        self, masks: torch.Tensor, theta0: torch.Tensor, pre=None, start=None
    ) -> LbfgsResult:
        """`lbfgs_logreg` of the masks from theta0 (B, R, D), or theta0[start] (see there)."""
        spec = self.spec
        return lbfgs_logreg(
            self.objective, masks.to(self.x.dtype), spec.C, theta0, spec.tol, spec.max_iter,
            spec.history, pre, start,
        )  # fmt: skip

    def _shape(self, b: int) -> tuple[int, int, int]:
        """Solver parameters of b models: (b, R, D), over the features kept, intercept last."""
        return b, self.objective.n_rows, self.objective.x.shape[1]

    def _warm_starts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """log2 of the sizes S_j = n 2^(-j / STARTS_PER_OCTAVE) >= 1 and the full-data fits
        (G, R, D) at those sizes' penalties 1 / (C S_j), solved once in one batch (each point
        weighted S_j / n). A submodel of S_b points starts at the fit of the nearest S_j in log
        scale: its penalty's share of the objective is about its own, and on digits it needs ~7%
        fewer iterations than from the fit at S = n (10.4 instead of 11.2)."""
        if self._starts is None:
            n = len(self.y)
            exponents = torch.arange(int(STARTS_PER_OCTAVE * math.log2(n)) + 1).double()
            shares = 2.0 ** (-exponents / STARTS_PER_OCTAVE)  # S_j / n, the first exactly 1
            weights = shares.to(self.x)[:, None].expand(-1, n).contiguous()
            at_zero = torch.zeros(len(weights), dtype=torch.long, device=self.x.device)
            fits = self._solve(weights, self.x.new_zeros(self._shape(1)), start=at_zero).theta
            self._starts = (math.log2(n) + shares.log2()).to(self.x.device), fits
        return self._starts

    def _nearest_start(self, sizes: torch.Tensor) -> torch.Tensor:
        """(b,) for each submodel of `sizes` (b,) points (or weight sums), the index of the warm
        start nearest in log2 size; a function of the size alone, so of no other submodel."""
        log_sizes = self._warm_starts()[0]
        return (sizes.double().log2()[:, None] - log_sizes[None]).abs().argmin(1)

    def _start(self) -> tuple[torch.Tensor, Preconditioner | None]:
        """The full-data fit (1, R, D) (or 0 without `warm_start`) and the preconditioner, built
        once at that point."""
        if self.spec.warm_start:
            theta0 = self._warm_starts()[1][:1]
        else:
            theta0 = self.x.new_zeros(self._shape(1))
        if self.spec.precondition and self._preconditioner is None:
            self._preconditioner = Preconditioner(self.objective, theta0[0])
        return theta0, self._preconditioner
