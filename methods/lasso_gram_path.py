"""The LASSO-CV path on every problem's whole residualised Gram, solved by the compiled kernel.

When the problems' Grams H_k = X~_k' X~_k (p x p, in the design's dtype) fit the memory budget,
the path needs no Grams built column by column and no products with the whole design per lambda:
every problem of a lambda is solved in one call of the coordinate-descent kernel
(methods/lasso_cd.py: working sets on the Gram, its KKT checks from c - H_k b, threads over
problems). Products with the design remain only for the CV errors: the fold problems' fits on their
held-out rows, once per block of lambdas, over the nonzero columns.

Two schedules, the same solutions (each problem's path is its own; the early stop only cuts it):

- resident: all (K + 1) Grams formed once (lasso_sets.problem_grams: one pass over the rows,
  the folds' Grams summed); lambda by lambda, every problem at once, with the reference's early
  stop checked every BLOCK lambdas.
- one problem at a time, where only two p x p Grams fit: the full Gram G = X' X from one pass over
  the rows, then each fold problem's H_k = G - X_f' X_f - P_k (B_k'B_k)^+ P_k' from one pass over
  fold f's rows, solved down the whole grid; the early stop is applied to the CV errors afterwards,
  and the full problem (its Gram G itself, corrected in place) runs down to the lambda chosen.

Both end as the working-set path does (methods/lasso_path.py): `choose_lambdas`, `fit_from_history`
and `cv_result` serve all three.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .lasso import BLOCK, PATIENCE, LassoCV, choose, lambda_grid
from .lasso_cd import solve_batch, warm_up
from .lasso_sets import (
    CD_MAX_ITER,
    CD_TOL,
    _threads,
    gram_dtype,
    problem_grams,
    residualise_gram,
    rows_gram,
    stacked_rmatmul,
)
from .mask_design import MaskDesign

# multiply-adds of a held-out product from which it runs on several threads (mislabel n = 1,000:
# a fold's 1,000 x 1,594 float64 features times 5 lambdas, 2.1 ms on one thread, 0.8 ms on two)
THREADED_FIT = 2**20


def resident_bytes(p: int, n_problems: int, itemsize: int) -> int:
    """Every problem's Gram at once (itemsize: of the design's dtype, which the Grams keep)."""
    return itemsize * n_problems * p * p


def sequential_bytes(p: int, itemsize: int) -> int:
    """The full Gram and one problem's."""
    return 2 * itemsize * p * p


class GramPath:
    """Coefficients b (K + 1, Q, p) of every problem (k: 0 full, k fold k) and response q, moved
    along the lambda grid by `solve`; c = X~_k' y~_q, ||y~_q||^2 over T_k, lambdas (Q, L)."""

    def __init__(self, design: MaskDesign, y: torch.Tensor, problems, n_lambdas: int, threads):
        self.design, self.problems, self.threads = design, problems, threads
        k1 = problems.w.shape[0]
        self.y = problems.resid(y[:, None, :].expand(-1, k1, -1).contiguous())  # (m, K + 1, Q)
        train = problems.w.T[:, :, None] * self.y
        c = stacked_rmatmul(design, train, threads).cpu().numpy()  # (p, K + 1, Q)
        self.c = np.ascontiguousarray(c.transpose(1, 2, 0))
        self.y_norm2 = (train**2).sum(0).cpu().numpy()  # (K + 1, Q)
        self.lambdas = lambda_grid(c[:, 0], len(y), n_lambdas)  # the full fits' grid (Q, L)
        self.size = problems.size.cpu().numpy()  # |T_k|
        self.beta = np.zeros_like(self.c)
        self.before = np.zeros_like(self.c)  # the solution at the lambda before (the secant)
        self.grad = self.c.copy()  # c - H b at the last solution (b = 0 to start)
        self.alpha_last = self.size[:, None] * self.lambdas[:, 0][None, :]  # (K + 1, Q)
        self.sweeps = 0
        self.pending = []  # fold solutions awaiting their held-out errors (record)
        self.diags = (None, None)  # a stack of Grams and its diagonals (solve)
        self.compile_s = warm_up()  # in this process; outside AME's seconds (fit_ame)

    def solve(self, grams: np.ndarray, ks: list[int], index: int, live: np.ndarray) -> None:
        """Problems ks (problem k on grams[i] for k = ks[i]) for the responses `live` at lambda
        `index`, each from its secant prediction b + r (b - b_before), r = (lambda_l -
        lambda_{l-1}) / (lambda_{l-1} - lambda_{l-2}): exact while the active set and signs hold
        (LARS); coefficients the step would move through zero start at 0."""
        ks_, qs = np.repeat(ks, len(live)), np.tile(live, len(ks))
        b = self.beta[ks_, qs]
        if index >= 2:
            lam = self.lambdas[qs, index - 2 : index + 1]
            ratio = ((lam[:, 2] - lam[:, 1]) / (lam[:, 1] - lam[:, 0]))[:, None]
            step = b + ratio * (b - self.before[ks_, qs])
            self.before[ks_, qs] = b
            b = np.where(step * b > 0, step, 0.0)
        else:
            self.before[ks_, qs] = b
        alpha = self.size[ks_] * self.lambdas[qs, index]
        numba.set_num_threads(max(1, min(self.threads, numba.config.NUMBA_NUM_THREADS)))
        if self.diags[0] is not grams:  # the Grams' diagonals, once per stack of Grams
            self.diags = (grams, np.ascontiguousarray(np.diagonal(grams, axis1=1, axis2=2)))
        diags = self.diags[1]
        grad = self.grad[ks_, qs]
        sweeps = solve_batch(
            grams, diags, np.repeat(np.arange(len(ks)), len(live)), self.c[ks_, qs], b, grad,
            alpha, self.alpha_last[ks_, qs], self.y_norm2[ks_, qs], CD_TOL, CD_MAX_ITER,
        )  # fmt: skip
        self.sweeps += int(np.abs(sweeps).sum())
        self.beta[ks_, qs], self.grad[ks_, qs], self.alpha_last[ks_, qs] = b, grad, alpha

    def record(self, index: int, ks, live: np.ndarray) -> None:
        """Keep the fold problems' (k in ks, k > 0) coefficients at lambda `index` for the next
        held_out_errors."""
        for k in ks:
            if k > 0:
                self.pending.append((index, k, live.copy(), self.beta[k, live].copy()))

    def held_out_errors(self, folds: dict, crosses, errors: np.ndarray) -> None:
        """The recorded fold solutions' squared held-out residuals into errors (Q, m, L): per fold
        problem k, one product of its held-out rows' design folds[k] with the union of the
        nonzero columns of its recorded coefficients (a block of lambdas in one pass). On the rows
        h held out by problem k, (I - H_k)(y~ - X b) = y~_h - X_h b + B_h (B_T'B_T)^+ (X_T'B_T)' b;
        crosses[k] = X_T'B_T."""
        dev = self.design.device
        for k in sorted({item[1] for item in self.pending}):
            items = [item for item in self.pending if item[1] == k]
            coefs = np.concatenate([coef for *_, coef in items]).T  # (p, n)
            nz = np.flatnonzero(coefs.any(1))
            rows = self.problems.rows[k - 1]
            beta = torch.as_tensor(coefs[nz], device=dev)
            cols = torch.as_tensor(nz, device=dev)
            shift = self.problems.gram_pinv[k] @ (crosses[k][cols].T @ beta)
            threads = self.threads if len(nz) * len(rows) * len(coefs.T) >= THREADED_FIT else 1
            with _threads(threads):  # threads on small products would only synchronise
                fits = folds[k].matmul_cols(nz, beta) if len(nz) else 0.0
            fits = self.problems.basis[rows] @ shift - fits
            start, rows_np = 0, rows.cpu().numpy()
            for index, _, live, _ in items:
                part = slice(start, start + len(live))
                start += len(live)
                resid = self.y[rows, k][:, live] + fits[:, part]
                errors[live[:, None], rows_np[None, :], index] = (resid**2).T.cpu().numpy()
        self.pending = []

    def full_fit(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nonzero coefficients of the full fits: (col, q) pairs and values."""
        q, col = np.nonzero(self.beta[0, live])
        return np.c_[col, live[q]], self.beta[0, live][q, col]


def early_stop(errors: np.ndarray, live: np.ndarray, index: int) -> np.ndarray:
    """Which live responses' CV curves (errors (Q, m, L) up to `index`) have had no new minimum
    for PATIENCE lambdas: the reference's stop, checked where it checks it (every BLOCK lambdas)."""
    if (index + 1) % BLOCK:
        return np.zeros(len(live), dtype=bool)
    curve = errors[live, :, : index + 1].mean(1)
    return index - np.argmin(curve, axis=1) >= PATIENCE


def choose_lambdas(errors: np.ndarray, reached: np.ndarray, rule: str) -> np.ndarray:
    """Each response's chosen lambda index by `rule` among the lambdas it reached (errors (Q, m, L))."""
    return np.array([choose(errors[q, :, : reached[q]], rule) for q in range(len(errors))])


def fit_from_history(history: dict, chosen: np.ndarray, p: int) -> np.ndarray:
    """The full fits' coefficients (Q, p) at the chosen indices, from history[index] = (col, q)
    pairs and values of every lambda's nonzero coefficients."""
    coef = np.zeros((len(chosen), p))
    for q, index in enumerate(chosen):
        where, values = history[index]
        mine = where[:, 1] == q
        coef[q, where[mine, 0]] = values[mine]
    return coef


def cv_result(coef, chosen, errors, lambdas, info: dict) -> LassoCV:
    """The fit methods/lasso.lasso_cv returns: coefficients, chosen lambda and CV error, the grid
    and the CV curves (mean held-out error, infinite where a response's path did not reach)."""
    rows = np.arange(len(chosen))
    curve = errors.mean(1)
    return LassoCV(coef, lambdas[rows, chosen], curve[rows, chosen], lambdas, curve, info)


def gram_cv_path(design, y, problems, rule, n_lambdas, resident, threads, bar) -> LassoCV:
    """The LASSO-CV fit (methods/lasso.lasso_cv's result) on full Grams; see the module docstring.
    `resident`: all Grams at once, else one problem at a time."""
    path = GramPath(design, y, problems, n_lambdas, threads)
    m, n_queries = y.shape
    k1 = len(problems.rows) + 1
    errors = np.full((n_queries, m, n_lambdas), np.inf)
    reached = np.zeros(n_queries, dtype=np.int64)
    if resident:
        with _threads(threads):
            grams, cross = problem_grams(design, problems)
        folds = {k + 1: design.row_subset(rows) for k, rows in enumerate(problems.rows)}
        history, live = {}, np.arange(n_queries)
        for index in range(n_lambdas):
            path.solve(grams, list(range(k1)), index, live)
            path.record(index, range(1, k1), live)
            history[index] = path.full_fit(live)
            reached[live] = index + 1
            bar.update()
            if (index + 1) % BLOCK == 0:
                path.held_out_errors(folds, cross, errors)
                done = early_stop(errors, live, index)
                if done.all():
                    break
                live = live[~done]
        path.held_out_errors(folds, cross, errors)
        chosen = choose_lambdas(errors, reached, rule)
        coef = fit_from_history(history, chosen, design.p)
    else:
        chosen = _one_problem_at_a_time(path, design, problems, errors, rule, bar)
        coef = path.beta[0].copy()
    info = {"sweeps": path.sweeps, "compile_s": path.compile_s}
    return cv_result(coef, chosen, errors, path.lambdas, info)


def _one_problem_at_a_time(path, design, problems, errors, rule, bar):
    """The schedule for two Grams' memory: every fold problem down the whole grid, the early stop
    applied to their CV errors afterwards, then the full problem down to the lambda chosen.
    Returns the chosen indices."""
    n_queries, _, n_lambdas = errors.shape
    every = np.arange(n_queries)
    dev = design.device
    with _threads(path.threads):
        full = torch.empty((design.p, design.p), dtype=gram_dtype(design, problems), device=dev)
        cross0 = rows_gram(design, torch.arange(design.m, device=dev), problems.basis, full)
        gram = torch.empty_like(full)
        for k in range(1, len(problems.rows) + 1):
            rows = problems.rows[k - 1]
            cross = cross0 - rows_gram(design, rows, problems.basis, gram)
            torch.sub(full, gram, out=gram)
            residualise_gram(gram, cross, problems.gram_pinv[k])
            fold, grams = design.row_subset(rows), gram.cpu().numpy()[None]
            for index in range(n_lambdas):
                path.solve(grams, [k], index, every)
                path.record(index, [k], every)
                if (index + 1) % BLOCK == 0 or index == n_lambdas - 1:
                    path.held_out_errors({k: fold}, {k: cross}, errors)
                bar.update(1 / len(problems.rows))
            del fold, grams
    reached = np.full(n_queries, n_lambdas)
    for index in range(n_lambdas):
        going = np.flatnonzero(reached == n_lambdas)
        reached[going[early_stop(errors, going, index)]] = index + 1
    for q in range(n_queries):
        errors[q, :, reached[q] :] = np.inf
    chosen = choose_lambdas(errors, reached, rule)
    del gram
    residualise_gram(full, cross0, problems.gram_pinv[0])
    grams = full.cpu().numpy()[None]
    for index in range(int(chosen.max()) + 1):
        live = every[chosen >= index]
        path.solve(grams, [0], index, live)
    return chosen
