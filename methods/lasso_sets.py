"""Pieces of the LASSO path (methods/lasso_path.py): the (K + 1) problems' training rows and
residualisation (Problems); the working sets of the 'sets' schedule, one LASSO on its own columns
with their residualised Gram computed from the design's columns as they join (DesignGrams),
solved by scikit-learn's coordinate descent on the Gram (the solver of the reference,
methods/lasso.py, with its settings); and every problem's whole residualised Gram H_k = X~_k' X~_k
for the Gram schedules (rows_gram, problem_grams).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import _cd_fast

from .mask_design import MaskDesign
from .mask_gram import counted_gram, row_codes

CD_TOL, CD_MAX_ITER = 1e-6, 5000  # the reference's coordinate descent settings (methods/lasso.py)
_UNUSED_RNG = np.random.RandomState(0)  # coordinate descent runs cyclic: the generator is not drawn


class _threads:
    """`with _threads(n):` torch runs on n threads inside the block."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.old)


def stacked_rmatmul(design: MaskDesign, r: torch.Tensor, threads: int) -> torch.Tensor:
    """X' r for r (m, ...) stacked over problems: (p, ...), one product on `threads` threads."""
    with _threads(threads):
        return design.rmatmul(r.reshape(r.shape[0], -1)).view(design.p, *r.shape[1:])


class Problems:
    """The (K + 1) training-row sets (0: all rows; k: all but fold k) and their residualisation."""

    def __init__(self, basis: torch.Tensor, folds: np.ndarray, device) -> None:
        self.fold_ids = np.unique(folds)
        k = len(self.fold_ids)
        fold_index = np.searchsorted(self.fold_ids, folds)
        w = np.ones((k + 1, len(folds)))
        w[1 + fold_index, np.arange(len(folds))] = 0.0
        self.fold = torch.as_tensor(fold_index, device=device)
        self.rows = [
            torch.as_tensor(np.flatnonzero(fold_index == f), device=device) for f in range(k)
        ]
        self.w = torch.as_tensor(w, device=device)  # (K + 1, m)
        self.size = self.w.sum(1)  # |T_k|
        self.basis = basis  # (m, G) float64
        gram = torch.einsum("mg,km,mh->kgh", basis, self.w, basis)
        self.gram_pinv = torch.linalg.pinv(gram)  # (K + 1, G, G)

    def resid(self, v: torch.Tensor) -> torch.Tensor:
        """(I - H_Tk) v_k for v (m, K + 1, Q): the basis fit on training rows, applied to all rows."""
        coef = self.gram_pinv @ torch.einsum("mg,km,mkq->kgq", self.basis, self.w, v)
        return v - torch.einsum("mg,kgq->mkq", self.basis, coef)


class WorkingSet:
    """One LASSO (training rows of problem k, response q) on columns `cols`: their residualised
    Gram h, correlations c = X~_W' y~, coefficients beta, basis products pb = X_W' diag(w_k) B."""

    def __init__(self, k: int, q: int, n_basis: int) -> None:
        self.k, self.q = k, q
        self.cols = np.zeros(0, dtype=np.int64)
        self.h = np.zeros((0, 0))
        self.c = np.zeros(0)
        self.pb = np.zeros((0, n_basis))
        self.beta = np.zeros(0)
        self.before = None  # the solution at the lambda before, on the same columns (predict)

    def keep(self, keep: np.ndarray) -> None:
        """Restrict the working set to the columns marked in `keep`."""
        aligned = self.before is not None and len(self.before) == len(self.beta)
        self.cols, self.c, self.beta = self.cols[keep], self.c[keep], self.beta[keep]
        self.before = self.before[keep] if aligned else None
        if len(self.pb):  # design Grams only
            self.pb = self.pb[keep]
        self.h = np.ascontiguousarray(self.h[np.ix_(keep, keep)])

    def predict(self, ratio: float) -> None:
        """Warm start for the next lambda on the path's secant, b + ratio (b - b_before) with
        ratio = (lambda_next - lambda) / (lambda - lambda_before): exact where the path is linear
        (a fixed active set and signs, LARS), which dense solutions keep for many lambdas;
        coefficients the step would move through zero start at 0."""
        now = self.beta.copy()
        if self.before is not None and len(self.before) == len(now):
            step = now + ratio * (now - self.before)
            self.beta = np.where(step * now > 0, step, 0.0)
        self.before = now

    def solve(self, alpha: float, y: np.ndarray) -> None:
        """Coordinate descent on the Gram, warm-started: min 1/2 b'hb - c'b + alpha ||b||_1 (alpha =
        lambda |T_k|); y, the problem's training response, scales the duality-gap tolerance."""
        if len(self.cols):
            _cd_fast.enet_coordinate_descent_gram(
                self.beta, alpha, 0.0, self.h.astype(np.float64, copy=False), self.c, y,
                CD_MAX_ITER, CD_TOL, _UNUSED_RNG, False, False,
            )  # fmt: skip


class DesignGrams:
    """Working-set Grams from the design's columns, X~_W' X~_new as columns join; kept in the
    precision of the design's products (float32 for large designs), read in float64 by each solve."""

    def __init__(self, design: MaskDesign, problems, c: np.ndarray, threads: int) -> None:
        self.design, self.problems, self.c = design, problems, c
        self.threads = threads  # for the products with many rows
        self.dtype = np.float64 if design.dtype == torch.float64 else np.float32

    def extend(self, ws: WorkingSet, new: np.ndarray) -> None:
        """Add columns `new` with their Gram entries over the problem's training rows."""
        old = len(ws.cols)
        cols = np.concatenate([ws.cols, new])
        with _threads(self.threads):
            cross, pb_new = self.design.cross(cols, new, self.problems.w[ws.k], self.problems.basis)
        pb = torch.cat([torch.as_tensor(ws.pb, device=cross.device), pb_new])
        cross -= pb @ (self.problems.gram_pinv[ws.k] @ pb_new.T)
        cross = cross.cpu().numpy()
        h = np.empty((len(cols), len(cols)), dtype=self.dtype)
        h[:old, :old] = ws.h
        h[:, old:] = cross
        h[old:, :old] = cross[:old].T
        ws.h, ws.pb, ws.cols = h, pb.cpu().numpy(), cols
        ws.c = np.concatenate([ws.c, self.c[new, ws.k, ws.q]])
        ws.beta = np.concatenate([ws.beta, np.zeros(len(new))])


GRAM_BLOCK = 1024  # columns per block of a Gram's upper block triangle


def rows_gram(design: MaskDesign, rows: torch.Tensor, basis: torch.Tensor, out: torch.Tensor):
    """X_R' X_R over the rows R into `out` (p, p, the design's dtype); returns X_R' B_R (p, G)
    float64. Where R's rows take few codings (AME's p_grid), from counts of their bits
    (methods/mask_gram.py); else in one pass of float products over them (only the upper block
    triangle's products: ~5/8 of m p^2 at p = 4,000, mirrored)."""
    codes = row_codes(design, rows, basis)
    if codes is not None:
        return counted_gram(design, rows, basis, out, *codes)
    p = design.p
    cross = torch.zeros((p, basis.shape[1]), dtype=torch.float64, device=design.device)
    step = -(-p // max(1, round(p / GRAM_BLOCK)))
    blocks = [slice(start, min(start + step, p)) for start in range(0, p, step)]
    out.zero_()
    for start in range(0, len(rows), design.block_rows(p)):
        part = rows[start : start + design.block_rows(p)]
        xt = design.columns_at(part)  # (p, rows)
        for i, rows_i in enumerate(blocks):
            for cols_j in blocks[i:]:
                out[rows_i, cols_j].addmm_(xt[rows_i], xt[cols_j].T)
        cross += (xt @ basis[part].to(xt.dtype)).double()
    for i, rows_i in enumerate(blocks):  # the lower block triangle, mirrored
        for cols_j in blocks[i + 1 :]:
            out[cols_j, rows_i] = out[rows_i, cols_j].T
    return cross


def residualise_gram(gram: torch.Tensor, cross: torch.Tensor, pinv: torch.Tensor) -> None:
    """gram -= P (B'B)^+ P' in place, P = X_T'B_T: the Gram of the residualised design."""
    gram.addmm_((cross @ pinv).to(gram.dtype), cross.T.to(gram.dtype), alpha=-1)


def gram_dtype(design: MaskDesign, problems) -> torch.dtype:
    """The dtype the problems' Grams are kept in: float32 where they are counted (exact counts,
    rounded once; the kernel's sweeps read half the bytes: poison_digits' kernel ~15% faster,
    coefficients within 1e-7 of float64 Grams'), else the design's (float32 for large designs, as
    their products)."""
    counted = row_codes(design, problems.rows[0], problems.basis) is not None
    return torch.float32 if counted else design.dtype


def problem_grams(design: MaskDesign, problems) -> tuple[np.ndarray, torch.Tensor]:
    """Residualised Grams H_k = X~' X~ over the training rows of every problem (K + 1, p, p), in
    gram_dtype, and the products X_T' B_T with the basis (K + 1, p, G): the folds' in one pass
    over the rows (rows_gram), each problem's the sum of the others. Every step writes into the one (K + 1) p^2 array: a
    temporary of that size costs more in page faults than its products."""
    n_folds, p = len(problems.fold_ids), design.p
    dtype = gram_dtype(design, problems)
    grams = torch.empty((n_folds + 1, p, p), dtype=dtype, device=design.device)
    cross = torch.zeros(
        (n_folds + 1, p, problems.basis.shape[1]), dtype=torch.float64, device=design.device
    )
    for f, rows in enumerate(problems.rows):
        cross[f + 1] = rows_gram(design, rows, problems.basis, grams[f + 1])
    for part in (grams, cross):  # problem 0: all folds; problem k: all but fold k
        torch.sum(part[1:], 0, out=part[0])
        torch.sub(part[0], part[1:], out=part[1:])
    for k in range(n_folds + 1):
        residualise_gram(grams[k], cross[k], problems.gram_pinv[k])
    return grams.cpu().numpy(), cross
