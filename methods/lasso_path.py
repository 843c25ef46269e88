"""Cross-validated LASSO paths for every response and every fold at once, on an implicit mask design.

The problem, the lambda grid, both CV rules and the early stop are those of methods/lasso.py (the
scikit-learn coordinate-descent reference the tests compare this solver against): for response q and
training rows T,

    min_b 1/(2|T|) ||(I - H_T)(y_q - X b)||^2 + lambda ||b||_1,

H_T the projection on the unpenalised basis B fitted on T (Frisch-Waugh-Lovell). What differs is how:

- X is never formed (methods/mask_design.py). The residualisation is a rank-G correction applied to
  vectors: (I - H_T) v = v - B (B_T'B_T)^+ B_T' v_T, fitted on T and applied to every row, which is
  also how held-out rows are predicted.
- Problems are batched: the full fit and the K fold fits of all Q responses, R = (K + 1) Q problems,
  go through each product together, e.g. X' r as one (p x m) @ (m x R) product.
- Screening (Tibshirani et al. 2012): at lambda_l the working set W adds every column whose gradient
  at the previous solution has |g_i| >= 2 lambda_l - lambda_{l-1} (the sequential strong rule); the
  problems are solved on W, then the KKT conditions |x_i' r| / |T| <= lambda are checked for every
  column with one full product, and violators join W until none are left. On W each fold keeps its
  Gram matrix X_W' X_W (less the rank-G residualisation term, applied implicitly), so the inner solver
  costs O(|W|^2) per iteration. When the Grams would outgrow `memory_mb` (a dense solution: many small
  effects), W becomes every column and each iteration uses two products with X instead.
- The inner solver is FISTA (Beck & Teboulle 2009) with adaptive restart (O'Donoghue & Candes 2015),
  step 1/L from a power iteration, warm-started from the previous solution extrapolated along the
  path (the LASSO path is piecewise linear in lambda). It stops when the prox-gradient residual
  L (y - prox(y - grad/L)) is below `tol` * lambda_max in every coordinate.

Runs on torch: CUDA when asked, the CPU otherwise; products in `dtype` (float32 for large designs),
Grams, coefficients and errors accumulated in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .lasso import BLOCK, PATIENCE, RULES, LassoCV, choose
from .mask_design import MaskDesign

MAX_ITER = 20_000
POLISH = 10  # FISTA iterations between attempts at the exact solution on the support
POLISH_MAX = 400  # largest support solved exactly (a dense solve costs |A|^3 / 3)


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


class _Gram:
    """Per-problem Grams on a working set W: H_k = X~_W' X~_W over the training rows of problem k,
    i.e. A_k - P_k (B_T'B_T)^+ P_k' with A_k = X_W' diag(w_k) X_W and P_k = X_W' diag(w_k) B."""

    def __init__(self, design: MaskDesign, problems: _Problems) -> None:
        self.design, self.problems = design, problems
        k1, g = problems.w.shape[0], problems.basis.shape[1]
        self.cols = torch.zeros(0, dtype=torch.long, device=design.device)
        self.h = torch.zeros((k1, 0, 0), dtype=torch.float64, device=design.device)
        self.p = torch.zeros((k1, 0, g), dtype=torch.float64, device=design.device)

    def bytes_with(self, extra: int) -> int:
        u = len(self.cols) + extra
        return self.h.shape[0] * u * u * 8

    def extend(self, new: torch.Tensor) -> None:
        """Add columns `new`: their products with the old and new columns, fold by fold, then the
        training-row sums of each problem (all folds less its own)."""
        cols = torch.cat([self.cols, new])
        u, n_new, old = len(cols), len(new), len(self.cols)
        n_folds = len(self.problems.fold_ids)
        dev = self.design.device
        cross = torch.zeros((n_folds, u, n_new), dtype=torch.float64, device=dev)
        basis_cross = torch.zeros((n_folds, n_new, self.p.shape[2]), dtype=torch.float64, device=dev)
        for rows in self.design.row_blocks(u):
            x = self.design.features(rows, cols)
            fold, basis = self.problems.fold[rows], self.problems.basis[rows]
            for f in range(n_folds):
                xf = x[fold == f]
                cross[f] += (xf.T @ xf[:, old:]).double()
                basis_cross[f] += xf[:, old:].double().T @ basis[fold == f]
        cross = torch.cat([cross.sum(0, keepdim=True), cross.sum(0, keepdim=True) - cross])
        basis_cross = torch.cat(
            [basis_cross.sum(0, keepdim=True), basis_cross.sum(0, keepdim=True) - basis_cross]
        )
        p = torch.cat([self.p, basis_cross], dim=1)
        cross -= p @ (self.problems.gram_pinv @ basis_cross.transpose(1, 2))  # residualise
        h = torch.empty((cross.shape[0], u, u), dtype=torch.float64, device=dev)
        h[:, :old, :old] = self.h
        h[:, :, old:] = cross
        h[:, old:, :old] = cross[:, :old].transpose(1, 2)
        self.h, self.p, self.cols = h, p, cols

    def hessian(self, beta: torch.Tensor) -> torch.Tensor:
        """H_k beta_k for beta (u, K + 1, Q)."""
        return (self.h @ beta.permute(1, 0, 2)).permute(1, 0, 2)


def _soft(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.sign(z) * torch.clamp(z.abs() - t, min=0.0)


def _top_eigen(hessian, v: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Power iteration on every problem's H_k from vectors v (u, K + 1, 1): (Rayleigh quotients
    (K + 1,), the last vectors). The quotient approaches the top eigenvalue from below."""
    top = torch.zeros(v.shape[1], dtype=v.dtype, device=v.device)
    for _ in range(steps):
        v = v / v.norm(dim=0, keepdim=True).clamp_min(1e-300)
        hv = hessian(v)
        top = (v * hv).sum(0)[:, 0]
        v = hv
    return top, v


class _Path:
    """All problems' solutions along the shared lambda index; see the module docstring."""

    def __init__(self, design, y, problems, n_lambdas, tol, memory_mb) -> None:
        self.design, self.problems = design, problems
        self.dev = design.device
        self.y = problems.resid(y[:, None, :].expand(-1, problems.w.shape[0], -1).contiguous())
        self.size = problems.size[None, :, None]
        self.c = design.rmatmul(self._flat(problems.w.T[:, :, None] * self.y)).view(
            design.p, *self.y.shape[1:]
        )  # X~' y~ per problem (p, K + 1, Q)
        # the grid of methods/lasso.lambda_grid, from the full problem
        top = self.c[:, 0].abs().amax(0) / len(y)
        top = torch.where(top > 0, top, torch.ones_like(top))
        ratio = 1e-2 if len(y) < design.p else 1e-3
        grid = torch.as_tensor(np.geomspace(1.0, ratio, n_lambdas), device=self.dev)
        self.lambdas = top[:, None] * grid  # (Q, L), shrinks as responses stop
        self.lambdas_all = self.lambdas.cpu().numpy()
        self.tol = tol * top  # (Q,)
        self.grad = -self.c / self.size  # gradient at b = 0
        self.memory = memory_mb * 2**20
        self.gram = _Gram(design, problems)
        self.dense = False  # True once every column is in the working set
        self.beta = torch.zeros((0, *self.y.shape[1:]), dtype=torch.float64, device=self.dev)
        self.previous = self.beta
        self.step = None
        self.eigvec = torch.zeros((0, self.y.shape[1], 1), dtype=torch.float64, device=self.dev)
        self.generator = torch.Generator().manual_seed(0)

    @staticmethod
    def _flat(v: torch.Tensor) -> torch.Tensor:
        return v.reshape(v.shape[0], -1)

    def cols(self) -> torch.Tensor:
        if self.dense:
            return torch.arange(self.design.p, device=self.dev)
        return self.gram.cols

    # ----- products on the working set -----
    def hessian(self, beta: torch.Tensor) -> torch.Tensor:
        if not self.dense:
            return self.gram.hessian(beta)
        z = self.design.matmul(self._flat(beta)).view(-1, *beta.shape[1:])
        r = self.problems.w.T[:, :, None] * self.problems.resid(z)
        return self.design.rmatmul(self._flat(r)).view(beta.shape)

    def fit(self, beta: torch.Tensor) -> torch.Tensor:
        """X_W beta for every problem: (m, K + 1, Q)."""
        flat = self._flat(beta)
        z = self.design.matmul(flat) if self.dense else self.design.matmul_cols(self.gram.cols, flat)
        return z.view(-1, *beta.shape[1:])

    # ----- the working set -----
    def _add(self, new: torch.Tensor) -> None:
        if len(new) == 0 or self.dense:
            return
        if self.gram.bytes_with(len(new)) > self.memory:
            full = torch.zeros((self.design.p, *self.beta.shape[1:]), dtype=torch.float64, device=self.dev)
            full[self.gram.cols] = self.beta
            prev = torch.zeros_like(full)
            prev[self.gram.cols] = self.previous
            vec = torch.zeros((self.design.p, *self.eigvec.shape[1:]), dtype=torch.float64, device=self.dev)
            vec[self.gram.cols] = self.eigvec
            self.beta, self.previous, self.eigvec, self.dense = full, prev, vec, True
            self.gram = None
        else:
            self.gram.extend(new)
            pad = torch.zeros((len(new), *self.beta.shape[1:]), dtype=torch.float64, device=self.dev)
            self.beta = torch.cat([self.beta, pad])
            self.previous = torch.cat([self.previous, pad])
        self.step = None

    def _outside(self) -> torch.Tensor:
        inside = torch.zeros(self.design.p, dtype=torch.bool, device=self.dev)
        inside[self.cols()] = True
        return ~inside

    # ----- one lambda -----
    def solve(self, l: int) -> torch.Tensor:
        """Solve every problem at lambda index l; return the residuals (I - H)(y - X b) (m, K+1, Q)."""
        lam = self.lambdas[:, l][None, None, :]
        if not self.dense:  # the columns that violate the KKT conditions at the new lambda
            violators = (self.grad.abs() > lam).flatten(1).any(1) & self._outside()
            self._add(torch.nonzero(violators).flatten())
        if l >= 2:  # extrapolate along the (piecewise linear) path
            ratio = (self.lambdas[0, l] - self.lambdas[0, l - 1]) / (
                self.lambdas[0, l - 1] - self.lambdas[0, l - 2]
            )
            start = self.beta + ratio * (self.beta - self.previous)
        else:
            start = self.beta
        self.previous = self.beta
        while True:
            cols = self.cols()
            self.beta = self._fista(start, self.c[cols], lam)
            resid = self.problems.resid(self.y - self.fit(self.beta))
            if self.dense:
                self.grad = None
                return resid
            r = self.problems.w.T[:, :, None] * resid
            self.grad = -self.design.rmatmul(self._flat(r)).view(self.c.shape) / self.size
            violators = (self.grad.abs() > lam + self.tol[None, None, :]).flatten(1).any(1)
            violators = torch.nonzero(violators & self._outside()).flatten()
            if len(violators) == 0:
                return resid
            self._add(violators)
            start = self.beta

    def _fista(self, beta, c, lam) -> torch.Tensor:
        """FISTA from `beta` on the working set; in Gram mode, every POLISH iterations each problem's
        support and signs are tried for the exact solution (see _polish)."""
        if len(beta) == 0:
            return beta
        if self.step is None:
            self.step = self._step(len(beta))
        step = self.step
        x, v = beta, beta
        t = torch.ones(beta.shape[1:], dtype=torch.float64, device=self.dev)
        exact, done = beta, torch.zeros(beta.shape[1:], dtype=torch.bool, device=self.dev)
        for it in range(MAX_ITER):
            grad = (self.hessian(v) - c) / self.size
            x_new = _soft(v - step * grad, step * lam)
            residual = ((v - x_new) / step).abs().amax(0)  # prox-gradient residual per problem
            converged = (residual <= self.tol[None, :]) | done
            if bool(converged.all()):
                break
            if not self.dense and it % POLISH == 1:
                polished, ok = self._polish(x_new, c, lam, ~converged)
                exact = torch.where(ok[None], polished, exact)
                done |= ok
            restart = ((v - x_new) * (x_new - x)).sum(0) > 0
            t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            momentum = torch.where(restart, 0.0, (t - 1) / t_new)
            t = torch.where(restart, 1.0, t_new)
            v = x_new + momentum * (x_new - x)
            x = x_new
        return torch.where(done[None], exact, x_new)

    def _step(self, u: int) -> torch.Tensor:
        """1 / L per problem, L = 1.2 x the top eigenvalue of H_k / |T_k| by power iteration (the
        margin covers the estimate from below), warm-started from the last working set's vector."""
        fresh = torch.rand((u - len(self.eigvec), *self.eigvec.shape[1:]), generator=self.generator)
        v = torch.cat([self.eigvec, fresh.to(self.dev, torch.float64) + 0.1])
        top, self.eigvec = _top_eigen(self.hessian, v, 40 if len(fresh) == u else 8)
        return 1 / (1.2 * top / self.problems.size).clamp_min(1e-300)[None, :, None]

    def _polish(self, x, c, lam, todo) -> tuple[torch.Tensor, torch.Tensor]:
        """For the problems in `todo` (K + 1, Q) whose support A has at most POLISH_MAX columns, the
        solution with x's support and signs s: H_AA b_A = c_A - |T| lambda s_A (stationarity on A),
        kept where its signs agree with s and |g_i| <= lambda (+ tol) holds off A. FISTA finds the
        support long before it converges."""
        out = torch.zeros_like(x)
        found = torch.zeros(x.shape[1:], dtype=torch.bool, device=self.dev)
        support = (x != 0).sum(0)
        todo = todo & (support > 0) & (support <= min(POLISH_MAX, int(self.problems.size.min()) - 1))
        for k, q in torch.nonzero(todo).tolist():
            size = float(self.problems.size[k])
            a = torch.nonzero(x[:, k, q]).flatten()
            s = torch.sign(x[a, k, q])
            h = self.gram.h[k][a][:, a]
            b, info = torch.linalg.solve_ex(h, c[a, k, q] - size * lam[0, 0, q] * s)
            if int(info) == 0 and bool((torch.sign(b) == s).all()):
                out[a, k, q] = b
                found[k, q] = True
        grad = (self.hessian(out) - c) / self.size
        kkt = (grad.abs() <= lam + self.tol[None, None, :]) | (out != 0)
        return out, found & kkt.all(0)


def lasso_cv_path(
    design: MaskDesign,
    y: np.ndarray,
    basis: np.ndarray,
    folds: np.ndarray,
    rule: str = "1se",
    n_lambdas: int = 100,
    *,
    tol: float | None = None,
    memory_mb: float = 1024,
    progress: bool = False,
) -> LassoCV:
    """The LASSO of each column of y (m, Q) on `design` with unpenalised `basis` (m, G), lambda by
    K-fold CV (`folds`: each sample's fold id) and `rule`; the result of methods/lasso.lasso_cv."""
    if rule not in RULES:
        raise ValueError(f"cv_rule must be one of {RULES}, got {rule!r}")
    dev = design.device
    if tol is None:
        tol = 1e-9 if design.dtype == torch.float64 else 1e-6
    problems = _Problems(torch.as_tensor(basis, dtype=torch.float64, device=dev), folds, dev)
    y_t = torch.as_tensor(y, dtype=torch.float64, device=dev)
    path = _Path(design, y_t, problems, n_lambdas, tol, memory_mb)
    return _run(path, problems, rule, n_lambdas, progress)


def _run(path: _Path, problems: _Problems, rule: str, n_lambdas: int, progress: bool) -> LassoCV:
    m, n_queries = path.y.shape[0], path.y.shape[2]
    held_out = (torch.arange(m, device=path.dev), problems.fold + 1)
    errors = np.full((n_queries, m, n_lambdas), np.inf)
    history: list[tuple[np.ndarray, np.ndarray]] = []  # per lambda: nonzero (col, q), values (full fit)
    live = np.arange(n_queries)  # responses whose CV curve may still reach a new minimum
    reached = np.zeros(n_queries, dtype=np.int64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_lambdas, desc="lasso path", leave=False)
    for l in range(n_lambdas):
        resid = path.solve(l)
        errors[live, :, l] = (resid[held_out] ** 2).T.cpu().numpy()
        full = path.beta[:, 0]
        nz = torch.nonzero(full).cpu().numpy()
        history.append(
            (np.c_[path.cols().cpu().numpy()[nz[:, 0]], live[nz[:, 1]]], full[full != 0].cpu().numpy())
        )
        reached[live] = l + 1
        if bar is not None:
            bar.update()
        if (l + 1) % BLOCK == 0 or l + 1 == n_lambdas:
            curves = errors[live, :, : l + 1].mean(1)
            going = l - np.argmin(curves, axis=1) < PATIENCE
            if not going.all():
                if not going.any():
                    break
                _keep(path, torch.as_tensor(np.flatnonzero(going), device=path.dev))
                live = live[going]
    if bar is not None:
        bar.close()
    p = path.design.p
    coef = np.zeros((n_queries, p))
    chosen = np.empty(n_queries, dtype=np.int64)
    for q in range(n_queries):
        chosen[q] = choose(errors[q, :, : reached[q]], rule)
        where, values = history[chosen[q]]
        mine = where[:, 1] == q
        coef[q, where[mine, 0]] = values[mine]
    lambdas = path.lambdas_all
    rows = np.arange(n_queries)
    curve = errors.mean(1)
    return LassoCV(coef, lambdas[rows, chosen], curve[rows, chosen], lambdas, curve)


def _keep(path: _Path, going: torch.Tensor) -> None:
    """Drop the responses that have stopped from every per-response tensor of the path."""
    path.y = path.y[..., going]
    path.c = path.c[..., going]
    path.beta = path.beta[..., going]
    path.previous = path.previous[..., going]
    if path.grad is not None:
        path.grad = path.grad[..., going]
    path.lambdas = path.lambdas[going]
    path.tol = path.tol[going]
