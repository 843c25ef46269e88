"""Cross-validated LASSO paths for every response and every fold at once, on an implicit mask design.

The problem, the lambda grid, both CV rules and the early stop are those of methods/lasso.py (the
scikit-learn reference the tests compare this solver against): for response q and training rows T,

    min_b 1/(2|T|) ||(I - H_T)(y_q - X b)||^2 + lambda ||b||_1,

H_T the projection on the unpenalised basis B fitted on T (Frisch-Waugh-Lovell). What differs is how:

- X is never formed (methods/mask_design.py). The residualisation is a rank-G correction applied to
  vectors, (I - H_T) v = v - B (B_T'B_T)^+ B_T' v_T, fitted on T and applied to every row, which is
  also how held-out rows are predicted; on Gram matrices it subtracts P (B_T'B_T)^+ P', P = X_T'B_T.
- The full fit and the K fold fits of all Q responses, R = (K + 1) Q problems, share every product
  with the whole design: the residuals of all of them go through one X' r, (p x m) @ (m x R).
- Working sets (the KKT-checked active-set strategy of glmnet; Tibshirani et al. 2012): each problem
  keeps its own set W of columns with their Gram X~_W' X~_W, built from a shared cache of feature
  columns. At each lambda a problem adds the columns whose gradient violates |g_i| <= lambda, is
  solved on W by scikit-learn's coordinate descent on the Gram (the reference's own solver), and the
  KKT conditions of every column are checked with the full product; violators join W and the problem
  is solved again. The work per lambda is the active sets' plus one full gradient.
- When the active sets' Grams alone would outgrow `memory_mb` (dense solutions: many small
  effects), every column joins and each problem is solved by FISTA (Beck & Teboulle 2009, with adaptive restart,
  O'Donoghue & Candes 2015) whose iterations are two products with X, batched over the problems.

Runs on torch: CUDA when asked, the CPU otherwise; products with the design in its `dtype` (float32
for large designs: exact for the masks), Grams, coefficients and errors in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .lasso import BLOCK, PATIENCE, RULES, LassoCV, choose, lambda_grid
from .lasso_sets import CD_TOL, Columns, Subproblem
from .mask_design import MaskDesign

FISTA_MAX_ITER = 5000
PRUNE = 0.5  # at a full check, working-set columns at zero with |g| < PRUNE * lambda leave the set
FULL_GRAM_COLUMNS = 512  # up to here every column is in every working set (no KKT checks needed)


class _Problems:
    """The (K + 1) training-row sets (0: all rows; k: all but fold k) and their residualisation."""

    def __init__(self, basis: torch.Tensor, folds: np.ndarray, device) -> None:
        self.fold_ids = np.unique(folds)
        k = len(self.fold_ids)
        fold_index = np.searchsorted(self.fold_ids, folds)
        w = np.ones((k + 1, len(folds)))
        w[1 + fold_index, np.arange(len(folds))] = 0.0
        self.fold = torch.as_tensor(fold_index, device=device)
        self.w = torch.as_tensor(w, device=device)  # (K + 1, m)
        self.size = self.w.sum(1)  # |T_k|
        self.basis = basis  # (m, G) float64
        gram = torch.einsum("mg,km,mh->kgh", basis, self.w, basis)
        self.gram_pinv = torch.linalg.pinv(gram)  # (K + 1, G, G)

    def resid(self, v: torch.Tensor) -> torch.Tensor:
        """(I - H_Tk) v_k for v (m, K + 1, Q): the basis fit on training rows, applied to all rows."""
        coef = self.gram_pinv @ torch.einsum("mg,km,mkq->kgq", self.basis, self.w, v)
        return v - torch.einsum("mg,kgq->mkq", self.basis, coef)


def _problem_grams(design: MaskDesign, problems: _Problems) -> np.ndarray:
    """Residualised Grams H_k = X~' X~ over the training rows of every problem (K + 1, p, p): the
    folds' Grams in one pass over the rows (m p^2 products), each problem's the sum of the others."""
    n_folds, p = len(problems.fold_ids), design.p
    grams = torch.zeros((n_folds + 1, p, p), dtype=torch.float64, device=design.device)
    cross = torch.zeros(
        (n_folds + 1, p, problems.basis.shape[1]), dtype=torch.float64, device=design.device
    )
    for rows in design.row_blocks(p):
        x, fold, basis = design.rows(rows), problems.fold[rows], problems.basis[rows]
        for f in range(n_folds):
            xf = x[fold == f]
            grams[f + 1] += (xf.T @ xf).double()
            cross[f + 1] += xf.double().T @ basis[fold == f]
    for part in (grams, cross):  # problem 0: all folds; problem k: all but fold k
        part[0] = part[1:].sum(0)
        part[1:] = part[0] - part[1:]
    grams -= cross @ problems.gram_pinv @ cross.transpose(1, 2)
    return grams.cpu().numpy()


class _threads:
    """`with _threads(n):` torch runs on n threads inside the block."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.old)


def _soft(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.sign(z) * torch.clamp(z.abs() - t, min=0.0)


class _Path:
    """Every problem's solution along the shared lambda index; see the module docstring."""

    def __init__(self, design, y, problems, n_lambdas, memory_mb, threads: int) -> None:
        self.design, self.problems, self.dev = design, problems, design.device
        self.threads = threads  # for the products with the whole design; one thread otherwise
        k1, n_queries = problems.w.shape[0], y.shape[1]
        self.y = problems.resid(y[:, None, :].expand(-1, k1, -1).contiguous())  # (m, K + 1, Q)
        self.memory = memory_mb * 2**20
        self.size = problems.size[None, :, None]
        self.c = self._rmatmul(problems.w.T[:, :, None] * self.y)  # X~' y~ (p, K + 1, Q)
        self.c_np = self.c.cpu().numpy()
        self.lambdas = lambda_grid(self.c_np[:, 0], len(y), n_lambdas)  # (Q, L), the full fits'
        self.grad = -self.c_np / self.size.cpu().numpy()  # at b = 0, (p, K + 1, Q)
        self.graded = 0  # the lambda index of the last full gradient
        y_train = (problems.w.T[:, :, None] * self.y).cpu().numpy()
        self.y_train = [
            [np.ascontiguousarray(y_train[:, k, q]) for q in range(n_queries)] for k in range(k1)
        ]
        self.columns = Columns(design)
        g = problems.basis.shape[1]
        self.subs = {(k, q): Subproblem(k, q, g) for k in range(k1) for q in range(n_queries)}
        self.live = np.arange(n_queries)
        self.full_gram = (design.m >= design.p or design.p <= FULL_GRAM_COLUMNS) and (
            8 * k1 * design.p**2 <= self.memory
        )
        if self.full_gram:  # every column in every working set, the Grams from the fold Grams
            grams = _problem_grams(design, problems)
            everything = np.arange(design.p)
            for (k, q), sub in self.subs.items():
                sub.cols, sub.h, sub.c = everything, grams[k], self.c_np[:, k, q].copy()
                sub.beta = np.zeros(design.p)
        self.beta_dense = None  # (p, K + 1, Q) once every column is in (dense mode)
        self.step = None

    def _rmatmul(self, r: torch.Tensor) -> torch.Tensor:
        with _threads(self.threads):
            return self.design.rmatmul(r.reshape(r.shape[0], -1)).view(self.design.p, *r.shape[1:])

    def _residuals(self, z: torch.Tensor) -> torch.Tensor:
        """(I - H)(y - X b) for the fits z (m, K + 1, Q_live)."""
        return self.problems.resid(self.y[..., self.live] - z)

    # ----- Gram mode: per-problem working sets -----
    def _extend_and_solve(self, index: int, additions: list) -> None:
        """Add the new columns of each (subproblem, columns) pair, then solve it at that lambda."""
        for sub, new in additions:
            new = new[~np.isin(new, sub.cols)]
            if len(new):
                sub.extend(new, self.columns, self.problems, self.c_np[:, sub.k, sub.q])
            sub.solve(
                self.lambdas[sub.q, index],
                float(self.problems.size[sub.k]),
                self.y_train[sub.k][sub.q],
            )

    def _violators(self, index: int, subs: list, grad: np.ndarray, cols: np.ndarray) -> list:
        """(subproblem, columns) pairs: the columns `cols` (rows of grad (len(cols), K + 1, Q_live))
        outside a problem's working set whose gradient exceeds its lambda."""
        out = []
        for sub in subs:
            j = int(np.searchsorted(self.live, sub.q))
            bad = cols[np.abs(grad[:, sub.k, j]) > self.lambdas[sub.q, index] * (1 + 1e-9)]
            bad = bad[~np.isin(bad, sub.cols)]
            if len(bad):
                out.append((sub, bad))
        return out

    def _coefficients(self, n_rows: int, position=None) -> torch.Tensor:
        """Every live problem's coefficients as one (n_rows, K + 1, Q_live) tensor, column i of the
        design at row position[i] (default: row i)."""
        k1 = self.problems.w.shape[0]
        coef = torch.zeros((n_rows, k1, len(self.live)), dtype=torch.float64)
        for j, q in enumerate(self.live):
            for k in range(k1):
                sub = self.subs[k, q]
                rows = sub.cols if position is None else position[sub.cols]
                coef[rows, k, j] = torch.as_tensor(sub.beta)
        return coef.to(self.dev)

    def _fits(self) -> torch.Tensor:
        """X b of every live problem (m, K + 1, Q_live) through the cached columns."""
        coef = self._coefficients(self.columns.n, self.columns.position)
        xt = self.columns.xt[: self.columns.n]
        flat = coef.reshape(self.columns.n, -1).to(xt.dtype)
        return (xt.T @ flat).double().view(-1, *coef.shape[1:])

    def _gram_bytes(self) -> int:
        if self.full_gram:
            return 0
        return sum(8 * len(s.cols) ** 2 for s in self.subs.values())

    def solve(self, index: int, full: bool) -> tuple[torch.Tensor, bool]:
        """Solve every live problem at lambda `index`: (residuals (m, K + 1, Q_live), whether a full
        KKT check found violators). With `full`, the KKT conditions of every column are checked and
        the gradient refreshed; otherwise only those of the candidates of the sequential strong rule
        from the last full gradient, |g_i| >= 2 lambda_l - lambda_last (Tibshirani et al. 2012)."""
        if self.beta_dense is not None:
            return self._solve_dense(index), False
        subs = [self.subs[k, q] for q in self.live for k in range(self.problems.w.shape[0])]
        if self.full_gram:  # nothing outside the working sets: no KKT checks
            self._extend_and_solve(index, [(sub, sub.cols[:0]) for sub in subs])
            return self._residuals(self._matmul(self._coefficients(self.design.p))), False
        everything = np.arange(self.design.p)
        new = dict(
            (id(sub), cols) for sub, cols in self._violators(index, subs, self.grad, everything)
        )
        additions = [(sub, new.get(id(sub), everything[:0])) for sub in subs]  # every problem, once
        threshold = 2 * self.lambdas[self.live, index] - self.lambdas[self.live, self.graded]
        candidates = np.flatnonzero((np.abs(self.grad) >= threshold).any((1, 2)))
        missed = False
        while True:
            self._extend_and_solve(index, additions)
            if self._gram_bytes() > self.memory:  # keep only the active columns, if that is enough
                for sub in subs:
                    sub.keep(sub.beta != 0)
            if self._gram_bytes() > self.memory:
                self._go_dense()
                return self._solve_dense(index), False
            resid = self._residuals(self._fits())
            r = self.problems.w.T[:, :, None] * resid
            if full:
                self.grad = (-self._rmatmul(r) / self.size).cpu().numpy()
                self.graded = index
                additions = self._violators(index, subs, self.grad, everything)
                missed |= bool(additions)
            else:
                xt = self.columns.get(candidates)
                grad = (xt @ r.reshape(r.shape[0], -1).to(xt.dtype)).double()
                grad = (-grad.view(len(candidates), *r.shape[1:]) / self.size).cpu().numpy()
                additions = self._violators(index, subs, grad, candidates)
            if not additions:
                if full:
                    self._prune(index, subs)
                return resid, missed

    def _prune(self, index: int, subs: list) -> None:
        """Drop from each working set the zero coefficients whose gradient is below half of lambda
        (far from entering): the sets follow the active sets down the path instead of growing."""
        for sub in subs:
            g = self.grad[sub.cols, sub.k, int(np.searchsorted(self.live, sub.q))]
            keep = (sub.beta != 0) | (np.abs(g) >= PRUNE * self.lambdas[sub.q, index])
            if not keep.all():
                sub.keep(keep)

    # ----- dense mode: every column, FISTA with products with X -----
    def _go_dense(self) -> None:
        self.beta_dense = self._coefficients(self.design.p)
        self.subs, self.columns = None, None

    def _matmul(self, beta: torch.Tensor) -> torch.Tensor:
        with _threads(self.threads):
            return self.design.matmul(beta.reshape(beta.shape[0], -1)).view(-1, *beta.shape[1:])

    def _hessian(self, beta: torch.Tensor) -> torch.Tensor:
        z = self._matmul(beta)
        return self._rmatmul(self.problems.w.T[:, :, None] * self.problems.resid(z))

    def _solve_dense(self, index: int) -> torch.Tensor:
        lam = torch.as_tensor(self.lambdas[self.live, index], device=self.dev)[None, None, :]
        c = self.c[..., self.live]
        if self.step is None:  # 1 / L, L = 1.2 x the top eigenvalue of H_k / |T_k|, by power steps
            v = torch.rand(
                (self.design.p, c.shape[1], 1), generator=torch.Generator().manual_seed(0)
            )
            v = v.to(self.dev, torch.float64)
            for _ in range(30):
                v = v / v.norm(dim=0, keepdim=True)
                hv = self._hessian(v)
                top = (v * hv).sum(0)[:, 0]
                v = hv
            self.step = 1 / (1.2 * top / self.problems.size).clamp_min(1e-300)[None, :, None]
        tol = CD_TOL * torch.as_tensor(self.lambdas[self.live, 0], device=self.dev)
        x = v = self.beta_dense
        t = torch.ones(x.shape[1:], dtype=torch.float64, device=self.dev)
        for _ in range(FISTA_MAX_ITER):
            x_new = _soft(v - self.step * (self._hessian(v) - c) / self.size, self.step * lam)
            if bool((((v - x_new) / self.step).abs().amax(0) <= tol).all()):
                break
            restart = ((v - x_new) * (x_new - x)).sum(0) > 0
            t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            momentum = torch.where(restart, 0.0, (t - 1) / t_new)
            t = torch.where(restart, 1.0, t_new)
            v = x_new + momentum * (x_new - x)
            x = x_new
        self.beta_dense = x_new
        return self._residuals(self._matmul(x_new))

    def full_fit(self) -> tuple[np.ndarray, np.ndarray]:
        """Nonzero coefficients of the full fits: (col, q) pairs and values."""
        if self.beta_dense is not None:
            full = self.beta_dense[:, 0]
            nz = torch.nonzero(full).cpu().numpy()
            return np.c_[nz[:, 0], self.live[nz[:, 1]]], full[full != 0].cpu().numpy()
        where, values = [], []
        for q in self.live:
            sub = self.subs[0, q]
            keep = sub.beta != 0
            where.append(np.c_[sub.cols[keep], np.full(keep.sum(), q)])
            values.append(sub.beta[keep])
        return np.concatenate(where), np.concatenate(values)

    def stop(self, going: np.ndarray) -> None:
        """Keep only the responses still `going` (bool over the live ones)."""
        if self.beta_dense is not None:
            self.beta_dense = self.beta_dense[
                ..., torch.as_tensor(np.flatnonzero(going), device=self.dev)
            ]
        self.grad = self.grad[..., going]
        self.live = self.live[going]


def lasso_cv_path(
    design: MaskDesign,
    y: np.ndarray,
    basis: np.ndarray,
    folds: np.ndarray,
    rule: str = "1se",
    n_lambdas: int = 100,
    *,
    memory_mb: float = 1024,
    progress: bool = False,
) -> LassoCV:
    """The LASSO of each column of y (m, Q) on `design` with unpenalised `basis` (m, G), lambda by
    K-fold CV (`folds`: each sample's fold id) and `rule`: what methods/lasso.lasso_cv returns."""
    if rule not in RULES:
        raise ValueError(f"cv_rule must be one of {RULES}, got {rule!r}")
    threads = torch.get_num_threads()
    with (
        _threads(1),
        threadpool_limits(1, user_api="blas"),
    ):  # many small products: threads would only synchronise
        return _cv_path(design, y, basis, folds, rule, n_lambdas, memory_mb, progress, threads)


def _cv_path(design, y, basis, folds, rule, n_lambdas, memory_mb, progress, threads) -> LassoCV:
    dev = design.device
    problems = _Problems(torch.as_tensor(basis, dtype=torch.float64, device=dev), folds, dev)
    y_t = torch.as_tensor(y, dtype=torch.float64, device=dev)
    path = _Path(design, y_t, problems, n_lambdas, memory_mb, threads)
    m, n_queries = y.shape
    held_out = (torch.arange(m, device=dev), problems.fold + 1)
    errors = np.full((n_queries, m, n_lambdas), np.inf)
    history = {}  # per lambda index: the full fits' nonzero (col, q) and values
    reached = np.zeros(n_queries, dtype=np.int64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_lambdas, desc="lasso path", leave=False)
    index, block_start = 0, 0
    while index < n_lambdas:
        block_end = (index + 1) % BLOCK == 0 or index + 1 == n_lambdas
        resid, missed = path.solve(index, full=block_end or index == 0)
        if missed and index > block_start:  # the strong rule missed a column: solve the block again
            index = block_start
            continue
        errors[path.live, :, index] = (resid[held_out] ** 2).T.cpu().numpy()
        history[index] = path.full_fit()
        reached[path.live] = index + 1
        if bar is not None:
            bar.n = index + 1
            bar.refresh()
        index += 1
        if block_end:
            block_start = index
            going = index - 1 - np.argmin(errors[path.live, :, :index].mean(1), axis=1) < PATIENCE
            if not going.any():
                break
            if not going.all():
                path.stop(going)
    if bar is not None:
        bar.close()
    coef = np.zeros((n_queries, design.p))
    chosen = np.array([choose(errors[q, :, : reached[q]], rule) for q in range(n_queries)])
    for q in range(n_queries):
        where, values = history[chosen[q]]
        mine = where[:, 1] == q
        coef[q, where[mine, 0]] = values[mine]
    rows = np.arange(n_queries)
    curve = errors.mean(1)
    return LassoCV(coef, path.lambdas[rows, chosen], curve[rows, chosen], path.lambdas, curve)
