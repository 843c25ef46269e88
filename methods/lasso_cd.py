"""Compiled coordinate descent for the LASSO on Gram matrices, every problem of a path in one call.

For problem r (training rows of problem k, response q) at penalty alpha_r = lambda |T_k|:

    min_b 1/2 b' H_k b - c_r' b + alpha_r ||b||_1,    H_k = X~_k' X~_k,  c_r = X~_k' y~_r,

by cyclic coordinate descent with covariance updates (Friedman, Hastie & Tibshirani 2010, Sec.
2.2, glmnet's "covariance" mode): the gradient g = c - H b is kept up to date, one axpy with row
j of H when b_j moves, so a coordinate at zero that stays there costs O(1) and a sweep over all p
columns needs no working set and no KKT check afterwards. The stopping rule is scikit-learn's
(enet_coordinate_descent_gram, which the reference methods/lasso.py runs): after a sweep whose
largest move is at most tol x the largest coefficient, the duality gap (formulation A) is
computed from g and b in O(p), and the solve ends once it is at most tol ||y~_r||^2.

Each problem names its Gram in a stack of them (every problem's, or, where memory is short, one
problem at a time: methods/lasso_gram_path.py).

numba compiles the kernel on its first call in a process and caches the machine code on disk
(`cache=True`, beside this file or in NUMBA_CACHE_DIR), so a second process loads it instead;
`warm_up()` returns the seconds the first call took (the AME record's `info["compile_s"]`).
"""

from __future__ import annotations

import time
from functools import cache

import numpy as np

try:
    import numba
except ImportError as err:  # a required dependency: an install that lacks it is broken
    raise ImportError(
        "valbench's LASSO path needs numba (a required dependency): pip install 'numba>=0.68'"
    ) from err


@numba.njit(cache=True, nogil=True)
def _row_axpy(g, step, h, j):
    """g -= step * h[j] (row j of a symmetric Gram is its column j)."""
    for i in range(g.shape[0]):
        g[i] -= step * h[j, i]


@numba.njit(cache=True, nogil=True)
def _solve_one(h, c, b, g, alpha, y_norm2, tol, max_iter):
    """Coordinate descent on one problem from b (in place); g <- c - H b on return. Returns the
    sweeps run, or -sweeps when max_iter was reached without meeting the tolerance."""
    p = c.shape[0]
    # the gradient at the warm start: c - H b over b's nonzeros
    for i in range(p):
        g[i] = c[i]
    for j in range(p):
        if b[j] != 0.0:
            _row_axpy(g, b[j], h, j)
    gap_tol = tol * y_norm2
    for sweep in range(max_iter):
        w_max = 0.0
        d_max = 0.0
        for j in range(p):
            h_jj = h[j, j]
            if h_jj <= 0.0:
                continue
            old = b[j]
            z = g[j] + h_jj * old
            mag = abs(z) - alpha
            new = (mag if z > 0 else -mag) / h_jj if mag > 0.0 else 0.0
            if new != old:
                _row_axpy(g, new - old, h, j)
                b[j] = new
                d = abs(new - old)
                if d > d_max:
                    d_max = d
            if abs(new) > w_max:
                w_max = abs(new)
        if w_max == 0.0 or d_max / w_max <= tol or sweep == max_iter - 1:
            if _gap(c, b, g, alpha, y_norm2) <= gap_tol:
                return sweep + 1
    return -max_iter


@numba.njit(cache=True, nogil=True)
def _gap(c, b, g, alpha, y_norm2):
    """Duality gap of the LASSO at b (formulation A, as scikit-learn's gap_enet_gram) from the
    gradient g = X'r: ||r||^2 = ||y||^2 - c'b - b'g, r'y = ||y||^2 - c'b."""
    cb = 0.0
    bg = 0.0
    l1 = 0.0
    dual_norm = 0.0
    for i in range(c.shape[0]):
        cb += c[i] * b[i]
        bg += b[i] * g[i]
        l1 += abs(b[i])
        if abs(g[i]) > dual_norm:
            dual_norm = abs(g[i])
    r_norm2 = y_norm2 - cb - bg
    ry = y_norm2 - cb
    scale = alpha / dual_norm if dual_norm > alpha else 1.0
    primal = 0.5 * r_norm2 + alpha * l1
    dual = -0.5 * scale * scale * r_norm2 + scale * ry
    return primal - dual


@numba.njit(cache=True, nogil=True, parallel=True)
def solve_batch(grams, gram_of, c, b, g, alpha, y_norm2, tol, max_iter):
    """Every problem r of the batch at its alpha[r] on Gram grams[gram_of[r]], threads over the
    problems; c, b, g (R, p), b and g in place. Returns each problem's sweeps (R,), negative where
    max_iter ran out."""
    n = c.shape[0]
    sweeps = np.zeros(n, dtype=np.int64)
    for r in numba.prange(n):
        sweeps[r] = _solve_one(
            grams[gram_of[r]], c[r], b[r], g[r], alpha[r], y_norm2[r], tol, max_iter
        )
    return sweeps


@cache
def warm_up() -> float:
    """Seconds the kernel's first call took in this process: compiling it, or loading it from
    numba's on-disk cache (then milliseconds)."""
    start = time.perf_counter()
    solve_batch(
        np.eye(2)[None], np.zeros(1, np.int64), np.ones((1, 2)), np.zeros((1, 2)),
        np.zeros((1, 2)), np.full(1, 0.5), np.ones(1), 1e-6, 10,
    )  # fmt: skip
    return time.perf_counter() - start
