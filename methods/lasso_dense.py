"""Dense mode of the LASSO path (methods/lasso_path.py): every column in, all problems solved at once
by FISTA (Beck & Teboulle 2009) with adaptive restart (O'Donoghue & Candes 2015),

    b <- soft(v - t (H_k v - c) / |T_k|, t lambda),   H_k v = X~_k' X~_k v,

each iteration two products with the design batched over the problems. The path switches to it
when the working sets' Grams outgrow the memory budget on a design small enough to cache.
"""

from __future__ import annotations

import numpy as np
import torch

from .lasso_sets import CD_TOL, _threads, stacked_rmatmul

FISTA_MAX_ITER = 5000


def _soft(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.sign(z) * torch.clamp(z.abs() - t, min=0.0)


class DensePath:
    """Coefficients beta (p, K + 1, Q_live) of every live problem over all columns."""

    def __init__(self, design, problems, y, c, lambdas, beta, threads: int) -> None:
        self.design, self.problems, self.y, self.c = design, problems, y, c
        self.lambdas, self.beta, self.threads = lambdas, beta, threads
        self.step = None  # 1 / L per problem, L = 1.2 x the top eigenvalue of H_k / |T_k|

    def _matmul(self, beta: torch.Tensor) -> torch.Tensor:
        with _threads(self.threads):
            return self.design.matmul(beta.reshape(beta.shape[0], -1)).view(-1, *beta.shape[1:])

    def _hessian(self, beta: torch.Tensor) -> torch.Tensor:
        r = self.problems.w.T[:, :, None] * self.problems.resid(self._matmul(beta))
        return stacked_rmatmul(self.design, r, self.threads)

    def _top_eigenvalues(self, n_problems: int) -> torch.Tensor:
        """Of each H_k / |T_k|, by 30 power steps."""
        v = torch.rand((self.design.p, n_problems, 1), generator=torch.Generator().manual_seed(0))
        v = v.to(self.design.device, torch.float64)
        for _ in range(30):
            v = v / v.norm(dim=0, keepdim=True)
            hv = self._hessian(v)
            top = (v * hv).sum(0)[:, 0]
            v = hv
        return top / self.problems.size

    def solve(self, index: int, live: np.ndarray) -> torch.Tensor:
        """Every live problem at lambda `index`, warm-started; returns the residuals (m, K + 1,
        Q_live)."""
        dev = self.design.device
        size = self.problems.size[None, :, None]
        lam = torch.as_tensor(self.lambdas[live, index], device=dev)[None, None, :]
        c = self.c[..., live]
        if self.step is None:
            self.step = 1 / (1.2 * self._top_eigenvalues(c.shape[1])).clamp_min(1e-300)
            self.step = self.step[None, :, None]
        tol = CD_TOL * torch.as_tensor(self.lambdas[live, 0], device=dev)
        x = v = self.beta
        t = torch.ones(x.shape[1:], dtype=torch.float64, device=dev)
        for _ in range(FISTA_MAX_ITER):
            x_new = _soft(v - self.step * (self._hessian(v) - c) / size, self.step * lam)
            if bool((((v - x_new) / self.step).abs().amax(0) <= tol).all()):
                break
            restart = ((v - x_new) * (x_new - x)).sum(0) > 0
            t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            momentum = torch.where(restart, 0.0, (t - 1) / t_new)
            t = torch.where(restart, 1.0, t_new)
            v = x_new + momentum * (x_new - x)
            x = x_new
        self.beta = x_new
        return self.problems.resid(self.y[..., live] - self._matmul(x_new))

    def full_fit(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nonzero coefficients of the full fits: (col, q) pairs and values."""
        full = self.beta[:, 0]
        nz = torch.nonzero(full).cpu().numpy()
        return np.c_[nz[:, 0], live[nz[:, 1]]], full[full != 0].cpu().numpy()

    def stop(self, going: np.ndarray) -> None:
        """Keep only the responses still `going` (bool over the live ones)."""
        self.beta = self.beta[..., torch.as_tensor(np.flatnonzero(going), device=self.beta.device)]
