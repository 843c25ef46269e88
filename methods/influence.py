"""Influence functions (Koh & Liang, ICML 2017) on the final model, with three inverse-Hessian solvers.

Removing point i from the objective J(theta) = (1/n) sum_j l_j + R (methods/final_model.py) moves the
optimum by about (1/n) H^{-1} g_i (Koh & Liang Eq. 2 with epsilon = -1/n), so the query loss changes by

    value(q, i) = (1/n) g_q^T (H + damping I)^{-1} g_i  ~  L_q(theta_{-i}) - L_q(theta)

(positive: the point helps the query), and the self-value is -(1/n) g_i^T (H + damping I)^{-1} g_i.
H is the exact Hessian of J, applied as Hessian-vector products (forward-over-reverse torch.func).
Solvers of (H + damping I) s = v:
- explicit: the p x p matrix built from p HVPs and pseudo-inverted once (small models only);
- cg: conjugate gradients (Nocedal & Wright Alg. 5.2) on every right-hand side at once; needs
  H + damping I positive definite (negative curvature is an error that asks for more damping);
- lissa: the LiSSA recursion s_j = v + s_{j-1} - (H + damping I) s_{j-1} / scale, s = s_J / scale
  (Agarwal et al. 2017; Koh & Liang Sec. 3), HVPs on random minibatches when `batch_size` is set;
  `scale` defaults to 1.1 x the largest eigenvalue, estimated by power iteration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vmap

from .checks import check_int
from .final_model import FinalModel, problem_engine
from .gradients import GradientMethod, as_params, as_vector, attribute
from .sampling import rng_for

log = logging.getLogger(__name__)
SOLVERS = ("explicit", "cg", "lissa")
EXPLICIT_MAX_PARAMS = 10_000  # a p x p float64 Hessian of 800 MB
DATA_BLOCK = 512  # training points per batched HVP
HVP_FLOATS = 2**24  # activation floats of one batched HVP (right-hand sides x points x activations)
POWER_ITERATIONS = 30

Operator = Callable[[torch.Tensor], torch.Tensor]


def hessian_operator(
    final: FinalModel, damping: float, rows: torch.Tensor | None = None
) -> Operator:
    """V (r, p) -> V (H + damping I) for the Hessian H of J at the final parameters; with `rows`, the
    data term of H is averaged over those training points only (a stochastic estimate)."""
    params = final.params
    theta = as_vector(params)
    decay = as_vector({k: torch.full_like(p, final.decay[k]) for k, p in params.items()}) + damping
    x, y = (final.x, final.y) if rows is None else (final.x[rows], final.y[rows])

    def data_loss(flat: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(final.logits(as_params(flat, params), xb), yb, reduction="sum")

    def hvp(v: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return jvp(lambda t: grad(data_loss)(t, xb, yb), (theta,), (v,))[1]

    batched = vmap(hvp, in_dims=(0, None, None))
    width = max(final.activations, final.x[0].numel())
    rhs_block = max(1, HVP_FLOATS // (4 * width * min(len(x), DATA_BLOCK)))

    def apply(v: torch.Tensor) -> torch.Tensor:
        out = v * decay
        for r in range(0, len(v), rhs_block):
            block = v[r : r + rhs_block]
            acc = torch.zeros_like(block)
            for start in range(0, len(x), DATA_BLOCK):
                stop = start + DATA_BLOCK
                acc += batched(block, x[start:stop], y[start:stop])
            out[r : r + rhs_block] += acc / len(x)
        return out

    return apply


def explicit_solver(final: FinalModel, damping: float) -> Operator:
    """(H + damping I)^+ from its eigendecomposition; eigenvalues below 1e-10 of the largest count as
    zero (the multinomial softmax's redundant intercept direction, orthogonal to every gradient)."""
    p = final.n_params
    operator = hessian_operator(final, damping)
    matrix = operator(torch.eye(p, dtype=final.x.dtype, device=final.x.device))
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    keep = values.abs() > 1e-10 * values.abs().max()
    negative = values < -1e-10 * values.abs().max()
    if negative.any():
        log.warning(
            "H + damping I has %d negative eigenvalues (down to %.3g) at damping=%g: the model is not "
            "at a minimum; damping above %.3g makes the influence solve positive definite",
            int(negative.sum()), float(values[0]), damping, damping - float(values[0]),
        )  # fmt: skip
    inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    return lambda v: v @ inverse


def cg_solver(final: FinalModel, damping: float, max_iter: int, tol: float) -> Operator:
    operator = hessian_operator(final, damping)

    def solve(b: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(b)
        r = b.clone()
        d = r.clone()
        rs = (r * r).sum(1)
        target = tol * rs.sqrt()
        active = rs.sqrt() > target
        for _ in range(max_iter):
            if not active.any():
                break
            ad = operator(d)
            curvature = (d * ad).sum(1)
            if (curvature[active] <= 0).any():
                raise ValueError(
                    f"cg met negative curvature: H + damping I is not positive definite at "
                    f"damping={damping}; raise damping or use solver=explicit"
                )
            alpha = torch.where(active, rs / curvature.where(active, 1.0), 0.0)
            x += alpha[:, None] * d
            r -= alpha[:, None] * ad
            rs_new = (r * r).sum(1)
            beta = torch.where(active, rs_new / rs.where(active, 1.0), 0.0)
            d = r + beta[:, None] * d
            rs = rs_new
            active = active & (rs.sqrt() > target)
        return x

    return solve


def largest_eigenvalue(operator: Operator, p: int, like: torch.Tensor, seed: int) -> float:
    """Power-iteration estimate of the largest eigenvalue of a symmetric operator."""
    gen = torch.Generator().manual_seed(int(rng_for(seed, 11).integers(2**62)))
    v = torch.randn(1, p, generator=gen, dtype=like.dtype).to(like.device)
    value = 0.0
    for _ in range(POWER_ITERATIONS):
        w = operator(v / v.norm())
        value = float((w * v / v.norm()).sum())
        v = w
    return value


def lissa_solver(
    final: FinalModel, damping: float, depth: int, scale, batch_size, seed: int
) -> Operator:
    full = hessian_operator(final, damping)
    if scale is None:
        scale = 1.1 * largest_eigenvalue(full, final.n_params, final.x, seed)
    rng = rng_for(seed, 12)

    def solve(v: torch.Tensor) -> torch.Tensor:
        s = v.clone()
        for _ in range(depth):
            if batch_size is None:
                operator = full
            else:
                rows = torch.as_tensor(rng.choice(final.n, size=batch_size), device=v.device)
                operator = hessian_operator(final, damping, rows)
            s = v + s - operator(s) / scale
        if not torch.isfinite(s).all():
            raise ValueError(f"lissa diverged with scale={scale:.4g}: raise scale")
        return s / scale

    solve.scale = scale
    return solve


class Influence(GradientMethod):
    """Influence-function values on the final model; see the module doc for the formula and solvers."""

    name = "influence"

    def __init__(
        self,
        target: str = "auto",
        solver: str = "explicit",
        damping: float = 0.001,
        max_iter: int = 100,
        tol: float = 1e-6,
        scale: float | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(target)
        self.solver, self.damping, self.max_iter = solver, damping, max_iter
        self.tol, self.scale, self.batch_size = tol, scale, batch_size

    def check(self, problem):
        if self.solver not in SOLVERS:
            raise ValueError(f"influence: unknown solver {self.solver!r}; use {', '.join(SOLVERS)}")
        if not (np.isfinite(self.damping) and self.damping >= 0):
            raise ValueError(f"influence: damping must be a number >= 0, got {self.damping!r}")
        check_int(self.max_iter, "max_iter", "influence")
        if not self.tol > 0:
            raise ValueError(f"influence: tol must be positive, got {self.tol!r}")
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"influence: scale must be positive or null, got {self.scale!r}")
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", "influence")
        target = super().check(problem)
        if (
            self.solver == "explicit"
            and (p := problem_engine(problem).n_params) > EXPLICIT_MAX_PARAMS
        ):
            raise ValueError(
                f"influence: solver=explicit builds a {p} x {p} Hessian (limit "
                f"{EXPLICIT_MAX_PARAMS} parameters); use solver=cg or solver=lissa"
            )
        return target

    def make_solver(self, final: FinalModel, seed: int) -> Operator:
        if self.solver == "explicit":
            return explicit_solver(final, self.damping)
        if self.solver == "cg":
            return cg_solver(final, self.damping, int(self.max_iter), self.tol)
        return lissa_solver(
            final, self.damping, int(self.max_iter), self.scale, self.batch_size, seed
        )

    def attribute_final(self, final, problem, target, seed):
        solve = self.make_solver(final, seed)
        n = final.n
        return attribute(
            final,
            problem,
            target,
            kernel=lambda sq, g: sq @ g.T / n,
            self_kernel=lambda g: (g * solve(g)).sum(1) / n,
            transform_queries=solve,
        )
