"""Compiled coordinate descent for the LASSO on Gram matrices, every problem of a path in one call.

For problem r (training rows of problem k, response q) at penalty alpha_r = lambda |T_k|:

    min_b 1/2 b' H_k b - c_r' b + alpha_r ||b||_1,    H_k = X~_k' X~_k,  c_r = X~_k' y~_r,

by cyclic coordinate descent with covariance updates (Friedman, Hastie & Tibshirani 2010, Sec.
2.2, glmnet's "covariance" mode): the gradient g = c - H b is kept up to date, one axpy with row
j of H when b_j moves (up to 8 moves held back and added in one pass: _sweep), so a coordinate at
zero that stays there costs O(1). The solve ends as scikit-learn's (enet_coordinate_descent_gram,
which the reference methods/lasso.py runs) once the duality gap (formulation A), computed from g
and b in O(p), is at most tol ||y~_r||^2.

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

# numba's workqueue threads sleep between launches; OpenMP's spin for a while after each one, and on
# a 2-core machine the spinning thread took the core from the torch product that followed (0.26 s
# for a 10 x 200 one after the first threaded batch)
numba.config.THREADING_LAYER = "workqueue"

from .mask_gram import weighted_counts  # noqa: E402 (after the check above)


@numba.njit(cache=True, nogil=True)
def _row_axpy(g, step, h, j):
    """g -= step * h[j] (row j of a symmetric Gram is its column j)."""
    for i in range(g.shape[0]):
        g[i] -= step * h[j, i]


@numba.njit(cache=True, nogil=True)
def _soft(z, alpha, h_jj):
    mag = abs(z) - alpha
    if mag <= 0.0:
        return 0.0
    return (mag if z > 0 else -mag) / h_jj


PENDING = 8  # coordinate moves held back and added to the gradient in one pass over it (_sweep)


@numba.njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _apply_moves(g, h, rows, steps, n):
    """g -= sum_e steps[e] h[rows[e]] over the n <= PENDING moves held back, in one pass over g."""
    if n == PENDING:
        r0, r1, r2, r3 = h[rows[0]], h[rows[1]], h[rows[2]], h[rows[3]]
        r4, r5, r6, r7 = h[rows[4]], h[rows[5]], h[rows[6]], h[rows[7]]
        s0, s1, s2, s3 = steps[0], steps[1], steps[2], steps[3]
        s4, s5, s6, s7 = steps[4], steps[5], steps[6], steps[7]
        for i in range(g.shape[0]):
            g[i] -= (s0 * r0[i] + s1 * r1[i] + s2 * r2[i] + s3 * r3[i]) + (
                s4 * r4[i] + s5 * r5[i] + s6 * r6[i] + s7 * r7[i]
            )
    else:
        for e in range(n):
            _row_axpy(g, steps[e], h, rows[e])


@numba.njit(cache=True, nogil=True)
def _sweep(h, cols, diag, b, g, alpha, rows, steps):
    """One cyclic sweep over the positions a of cols (column cols[a]: gradient g[a], Gram row
    h[a]). Moves are held back, up to PENDING, and applied to g in one pass (_apply_moves); a
    column's gradient is corrected for those held back from their rows' entries, so the iterates
    are cyclic coordinate descent's, to rounding (mislabel n = 4,000: 5.0 -> 2.4 ms a sweep).
    Returns the largest |coefficient| and the largest move."""
    n = 0
    w_max = 0.0
    d_max = 0.0
    for a in range(cols.shape[0]):
        j = cols[a]
        if diag[j] <= 0.0:
            continue
        z = g[a]
        for e in range(n):
            z -= steps[e] * h[rows[e], a]
        old = b[j]
        new = _soft(z + diag[j] * old, alpha, diag[j])
        if new != old:
            rows[n], steps[n] = a, new - old
            n += 1
            b[j] = new
            d_max = max(d_max, abs(new - old))
            if n == PENDING:
                _apply_moves(g, h, rows, steps, n)
                n = 0
        w_max = max(w_max, abs(new))
    _apply_moves(g, h, rows, steps, n)
    return w_max, d_max


@numba.njit(cache=True, nogil=True)
def _full_sweeps(h, diag, c, b, g, alpha, y_norm2, tol, max_iter):
    """Cyclic sweeps over all p columns (_sweep) until the duality gap is at most tol ||y||^2,
    checked after every sweep: O(p) against the sweep's O(p x nonzeros) (dense solutions;
    scikit-learn checks it only once the largest move is small: mislabel n = 1,000, 2,337 ->
    2,061 sweeps). Returns the sweeps, negative if max_iter ran out."""
    cols = np.arange(c.shape[0])
    rows = np.empty(PENDING, dtype=np.int64)
    steps = np.empty(PENDING)
    for sweep in range(max_iter):
        _sweep(h, cols, diag, b, g, alpha, rows, steps)
        if _gap(c, b, g, alpha, y_norm2) <= tol * y_norm2:
            return sweep + 1
    return -max_iter


@numba.njit(cache=True, nogil=True)
def _gradient(h, c, b, g):
    """g = c - H b, over b's nonzeros (their rows of h, PENDING at a time: _apply_moves)."""
    g[:] = c
    rows = np.empty(PENDING, dtype=np.int64)
    steps = np.empty(PENDING)
    n = 0
    for j in range(c.shape[0]):
        if b[j] != 0.0:
            rows[n], steps[n] = j, b[j]
            n += 1
            if n == PENDING:
                _apply_moves(g, h, rows, steps, n)
                n = 0
    _apply_moves(g, h, rows, steps, n)


@numba.njit(cache=True, nogil=True)
def _solve_one(h, diag, c, b, g, alpha, alpha_last, y_norm2, tol, max_iter):
    """Coordinate descent on one problem from b (in place); on entry g is the gradient at the
    last lambda's solution, on return c - H b. Sweeps run on a working set W with W's own Gram,
    moving only g_W: W starts as b's nonzeros and the columns of the sequential strong rule
    |g_j| >= 2 alpha - alpha_last (Tibshirani et al. 2012); the sweeps end once W's own duality
    gap is at most tol ||y||^2 (checked in O(|W|) after each), then g over all p columns (from
    the nonzeros' rows), the KKT check of the columns outside W (violators join W, whose Gram is
    then gathered anew) and the whole problem's gap. Once W holds half the columns, sweeps run
    over all of them (_full_sweeps). Returns the sweeps, negative when max_iter ran out."""
    p = c.shape[0]
    inside = (b != 0.0) | (np.abs(g) >= 2 * alpha - alpha_last)
    rows = np.empty(PENDING, dtype=np.int64)
    steps = np.empty(PENDING)
    sweeps = 0
    violated = True
    while sweeps < max_iter:
        if violated:  # W changed: its Gram anew
            work = np.flatnonzero(inside & (diag > 0.0))
            n_in = len(work)
            if 2 * n_in > p:
                _gradient(h, c, b, g)
                done = _full_sweeps(h, diag, c, b, g, alpha, y_norm2, tol, max_iter - sweeps)
                return sweeps + done if done > 0 else -max_iter
            h_in = np.empty((n_in, n_in), dtype=h.dtype)  # W's Gram, contiguous rows
            for a in range(n_in):
                for e in range(n_in):
                    h_in[a, e] = h[work[a], work[e]]
            g_in = c[work].copy()
            for a in range(n_in):
                if b[work[a]] != 0.0:
                    g_in -= b[work[a]] * h_in[a]
        else:  # W as it was: its gradient from the full one just computed
            g_in = g[work]
        c_in = c[work]
        while sweeps < max_iter:
            sweeps += 1
            w_max, d_max = _sweep(h_in, work, diag, b, g_in, alpha, rows, steps)
            if w_max == 0.0 or _gap(c_in, b[work], g_in, alpha, y_norm2) <= tol * y_norm2:
                break
        _gradient(h, c, b, g)
        violated = False
        for j in range(p):  # the KKT check of every column outside W
            if not inside[j] and diag[j] > 0.0 and abs(g[j]) > alpha:
                inside[j] = violated = True
        if not violated and _gap(c, b, g, alpha, y_norm2) <= tol * y_norm2:
            return sweeps
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


@numba.njit(cache=True, nogil=True)
def _solve_at(r, grams, diags, gram_of, c, b, g, alpha, alpha_last, y_norm2, tol, max_iter):
    """Problem r of a batch (solve_batch)."""
    k = gram_of[r]
    return _solve_one(
        grams[k], diags[k], c[r], b[r], g[r], alpha[r], alpha_last[r], y_norm2[r], tol, max_iter
    )


@numba.njit(cache=True, nogil=True)
def _batch_serial(grams, diags, gram_of, c, b, g, alpha, alpha_last, y_norm2, tol, max_iter):
    sweeps = np.zeros(c.shape[0], dtype=np.int64)
    for r in range(c.shape[0]):
        sweeps[r] = _solve_at(
            r, grams, diags, gram_of, c, b, g, alpha, alpha_last, y_norm2, tol, max_iter
        )
    return sweeps


# two functions, not one compiled twice: numba's disk cache keys a function by its name and
# signature, not by `parallel`, so the threaded build loaded the serial one's machine code
@numba.njit(cache=True, nogil=True, parallel=True)
def _batch_threaded(grams, diags, gram_of, c, b, g, alpha, alpha_last, y_norm2, tol, max_iter):
    sweeps = np.zeros(c.shape[0], dtype=np.int64)
    for r in numba.prange(c.shape[0]):
        sweeps[r] = _solve_at(
            r, grams, diags, gram_of, c, b, g, alpha, alpha_last, y_norm2, tol, max_iter
        )
    return sweeps


THREADED_WORK = 2**23  # p x (problems + nonzeros) from which a batch runs on several threads


def solve_batch(grams, diags, gram_of, c, b, g, alpha, alpha_last, y_norm2, tol, max_iter):
    """Every problem r of the batch at its alpha[r] on Gram grams[gram_of[r]] (its diagonal
    diags[gram_of[r]]); c, b, g (R, p), b and g in place (g: on entry the gradient at the last
    lambda's solution, alpha_last[r]; on return c - H b). Returns each problem's sweeps (R,),
    negative where max_iter ran out. Threads over the problems only for batches with much work:
    for light ones, waking threads costs about what they save (poison_digits' path: the same
    0.63 s on two cores with the threshold anywhere in 2^18-2^23, against 0.96 s on one)."""
    heavy = c.shape[1] * (c.shape[0] + np.count_nonzero(b)) >= THREADED_WORK
    kernel = _batch_threaded if heavy and numba.get_num_threads() > 1 else _batch_serial
    return kernel(grams, diags, gram_of, c, b, g, alpha, alpha_last, y_norm2, tol, max_iter)


@cache
def warm_up() -> float:
    """Seconds the kernels' first calls took in this process (serial and threaded, on float64
    and float32 Grams, and the counted Gram's, methods/mask_gram.py): compiling them, or loading
    them from numba's on-disk cache."""
    start = time.perf_counter()
    for dtype in (np.float64, np.float32):
        weighted_counts(
            np.zeros((1, 1, 1), np.uint64), np.ones(1), np.zeros(1), 0.0, np.zeros((1, 1), dtype)
        )
        for kernel in (_batch_serial, _batch_threaded):
            kernel(
                np.eye(2, dtype=dtype)[None], np.ones((1, 2), dtype), np.zeros(1, np.int64),
                np.ones((1, 2)), np.zeros((1, 2)), np.ones((1, 2)), np.full(1, 0.5), np.full(1, 0.5),
                np.ones(1), 1e-6, 10,
            )  # fmt: skip
    return time.perf_counter() - start
