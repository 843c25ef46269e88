"""Working sets of the LASSO path (methods/lasso_path.py): a shared cache of feature columns, and
one LASSO on its own columns with their residualised Gram, solved by scikit-learn's coordinate
descent on the Gram (the solver of the reference, methods/lasso.py, with its settings)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import _cd_fast

from .mask_design import MaskDesign

CD_TOL, CD_MAX_ITER = 1e-6, 5000  # the reference's coordinate descent settings (methods/lasso.py)


class Columns:
    """Feature columns X[:, U] of the union U of the working sets, stored transposed (one contiguous
    row per column) in the design's dtype, grown in place."""

    def __init__(self, design: MaskDesign) -> None:
        self.design = design
        self.position = np.full(design.p, -1, dtype=np.int64)
        self.xt = torch.empty((0, design.m), dtype=design.dtype, device=design.device)
        self.n = 0

    def get(self, cols: np.ndarray) -> torch.Tensor:
        """X[:, cols]' (len(cols), m), adding the columns not cached yet."""
        new = np.unique(cols[self.position[cols] < 0])
        if len(new):
            if self.n + len(new) > len(self.xt):
                size = max(len(self.xt) * 5 // 4, self.n + len(new), 64)
                grown = torch.empty(
                    (size, self.design.m), dtype=self.xt.dtype, device=self.xt.device
                )
                grown[: self.n] = self.xt[: self.n]
                self.xt = grown
            ids = torch.as_tensor(new, device=self.xt.device)
            for rows in self.design.row_blocks(len(new)):
                self.xt[self.n : self.n + len(new), rows] = self.design.features(rows, ids).T
            self.position[new] = np.arange(self.n, self.n + len(new))
            self.n += len(new)
        return self.xt[torch.as_tensor(self.position[cols], device=self.xt.device)]


class Subproblem:
    """One LASSO (training rows of problem k, response q) on its working set: columns `cols`, their
    residualised Gram h, correlations c = X~_W' y~, basis products p = X_W' diag(w_k) B, coefficients."""

    def __init__(self, k: int, q: int, n_basis: int) -> None:
        self.k, self.q = k, q
        self.cols = np.zeros(0, dtype=np.int64)
        self.h = np.zeros((0, 0))
        self.c = np.zeros(0)
        self.p = np.zeros((0, n_basis))
        self.beta = np.zeros(0)

    def extend(self, new: np.ndarray, columns: Columns, problems, c_all: np.ndarray) -> None:
        """Add columns `new` with their Gram entries over the problem's training rows."""
        cols = np.concatenate([self.cols, new])
        xt = columns.get(cols)
        xt_new = xt[len(self.cols) :] * problems.w[self.k][None, :].to(xt.dtype)
        cross = (xt @ xt_new.T).double()
        p_new = xt_new.double() @ problems.basis
        p = torch.cat([torch.as_tensor(self.p, device=cross.device), p_new])
        cross -= p @ (problems.gram_pinv[self.k] @ p_new.T)
        cross = cross.cpu().numpy()
        old = len(self.cols)
        h = np.empty((len(cols), len(cols)))
        h[:old, :old] = self.h
        h[:, old:] = cross
        h[old:, :old] = cross[:old].T
        self.h, self.p, self.cols = h, p.cpu().numpy(), cols
        self.c = np.concatenate([self.c, c_all[new]])
        self.beta = np.concatenate([self.beta, np.zeros(len(new))])

    def keep(self, keep: np.ndarray) -> None:
        """Restrict the working set to the columns marked in `keep`."""
        self.cols, self.c, self.beta, self.p = (
            self.cols[keep],
            self.c[keep],
            self.beta[keep],
            self.p[keep],
        )
        self.h = np.ascontiguousarray(self.h[np.ix_(keep, keep)])

    def solve(self, lam: float, size: float, y_norm: np.ndarray) -> None:
        """Coordinate descent on the Gram, warm-started: min 1/2 b'hb - c'b + |T| lambda ||b||_1."""
        if len(self.cols):
            _cd_fast.enet_coordinate_descent_gram(
                self.beta, lam * size, 0.0, self.h, self.c, y_norm, CD_MAX_ITER, CD_TOL,
                np.random.RandomState(0), False, False,
            )  # fmt: skip
