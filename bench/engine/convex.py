"""Batched L-BFGS for multinomial logistic regression: B models on one design matrix at once.

Model b, with mask weights m_b in {0, 1}^n and S_b = sum_i m_bi, minimises

    f_b(W, c) = (1 / S_b) sum_i m_bi CE(softmax(W x_i + c), y_i) + ||W||^2 / (2 C S_b)

over all K classes (one weight vector when K = 2) with an unpenalised intercept c. This is
scikit-learn's `LogisticRegression`
objective  C sum_i m_bi CE_i + ||W||^2 / 2  divided by C S_b, exactly as its lbfgs solver scales it,
so the same `tol` means the same stopping rule: max_j |d f_b / d theta_j| <= tol (scipy's `gtol`).

The solver is L-BFGS with scipy's memory of 10 pairs, started like scipy's (first step of length 1
along -g), in the compact form of Byrd, Nocedal & Schnabel (1994, eq. 2.6 / Nocedal & Wright,
Numerical Optimization, eq. 7.24), with a backtracking Armijo line search (N&W Alg. 3.1). Every step is
batched over the B models: one (K B, D) x (D, n) matmul gives all logits, one (K B, n) x (n, D) matmul
all gradients, and a few (B, 2m, p) batched matmuls the quasi-Newton directions. Converged models
leave the working set, so the tail costs only what is still running.

Optionally (`Preconditioner`) the solver runs in preconditioned variables u, theta = theta0 + M_b u, with
M_b from the eigen-decomposition of the Hessian's diagonal blocks (one per class row) at a reference
point (the full-data fit) and model b's own penalty (first step still of length 1, as scipy's). Only
the path changes: the iterations stop on the gradient in theta, max_j
|d f_b / d theta_j| <= tol, the same rule, and the minimiser is the same.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ARMIJO_C1 = 1e-4
MAX_LINE_SEARCH = 30
MIN_ROWS = MIN_COLS = 16  # rowwise_mm's smallest shape (see there)
PAD = 32  # the objective's rows are padded to a multiple of this (see LogregObjective)


def rowwise_mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b (M, N), row i a function of a[i] and b alone, bitwise, whatever the other rows of a.

    Each row of a belongs to one model, so this makes a model's result independent of the batch
    it is solved in. BLAS libraries pick kernels, and with them the order of the sums, by shape; on
    one thread MKL's order per row is the same for every M >= 4 and N >= 12 (measured), so fewer
    than MIN_ROWS rows or MIN_COLS columns are padded with zeros (the padding is cut off again).
    Reductions split over threads are not invariant: the engine runs each CPU chunk on one thread.
    """
    m, n = a.shape[0], b.shape[1]
    if m >= MIN_ROWS and n >= MIN_COLS:
        return torch.mm(a, b, out=out)
    if m < MIN_ROWS:
        a = torch.cat([a, a.new_zeros((MIN_ROWS - m, a.shape[1]))])
    if n < MIN_COLS:
        b = torch.cat([b, b.new_zeros((b.shape[0], MIN_COLS - n))], 1)
    result = (a @ b)[:m, :n]
    return result if out is None else out.copy_(result)


def pad_rows(t: torch.Tensor, multiple: int) -> torch.Tensor:
    """t with zero rows appended up to a multiple of `multiple` rows."""
    extra = -len(t) % multiple
    return torch.cat([t, t.new_zeros((extra, *t.shape[1:]))]) if extra else t


def nonzero_features(x: torch.Tensor) -> torch.Tensor:
    """Indices of the columns of x (n, d) with a non-zero value. An all-zero feature (a constant
    one, standardised) has zero gradient at weight 0 and adds nothing to any L-BFGS direction (its
    coordinate of every s and y is 0), so its weight stays 0: leaving it out changes no iterate."""
    return (x != 0).any(0).nonzero()[:, 0]


class LogregObjective:
    """f_b and its gradient for a stack of parameters theta (B, R, D), D = d + 1 (intercept last).

    R = K rows (one per class) for K > 2. For K = 2, R = 1 as in scikit-learn's binomial loss: class
    0's logit is fixed at 0, so the penalty is on one weight vector (two symmetric rows would halve
    it: a different C).

    The n points are padded with all-zero rows of weight 0 to a multiple of PAD: elementwise
    kernels compute a contiguous tensor's tail (numel mod two vectors: 32 float32 with AVX-512) by
    scalar code, whose exp2 / log round differently from the vector code, so without the padding a
    model's values would depend on how many models share its tensors.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        self.n = len(x)
        self.x = pad_rows(torch.cat([x, torch.ones_like(x[:, :1])], 1), PAD)  # (n_pad, D)
        self.xt = self.x[: self.n].T.contiguous()  # (D, n), the points only
        self._xt_log2 = (self.x.T * math.log2(math.e)).contiguous()  # in bits: exp2 beats exp 6x
        self.y, self.n_classes = pad_rows(y, PAD), n_classes
        self.n_rows = 1 if n_classes == 2 else n_classes
        self.n_evals = 0  # model-evaluations of (f, grad)
        self.flops = 0  # matmul FLOPs spent (objective and preconditioner), for FLOP accounting
        self._lock, self._local = threading.Lock(), threading.local()  # per-thread workspaces

    @property
    def flops_per_eval(self) -> int:
        """Matmul FLOPs of one model's (f, grad): logits and gradient, 2 n D R each."""
        return 4 * self.x.shape[0] * self.x.shape[1] * self.n_rows

    def count(self, models: int, flops: int) -> None:
        with self._lock:
            self.n_evals += models
            self.flops += flops

    def logits(self, theta: torch.Tensor, xt: torch.Tensor, out: torch.Tensor | None = None):
        """Class logits (K, B, m) of B models on inputs xt (D, m), written into `out` if given."""
        b, rows, d = theta.shape
        k, m = self.n_classes, xt.shape[1]
        z = (xt.new_empty(k * b * m) if out is None else out).view(k, b, m)
        if rows < k:
            z[0].zero_()
        rowwise_mm(theta.transpose(0, 1).reshape(rows * b, d), xt, out=z[k - rows :].view(-1, m))
        return z

    def _workspace(self, size: int, like: torch.Tensor) -> torch.Tensor:
        """A reused buffer for the (K, B, n) logits: fresh multi-MB allocations page-fault on CPU."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or buffer.numel() < size or buffer.dtype != like.dtype:
            buffer = self._local.buffer = like.new_empty(size)
        return buffer[:size]

    def pad(self, weights: torch.Tensor) -> torch.Tensor:
        """Weights (B, n) -> (B, n_pad), the padding rows' weights 0."""
        return pad_rows(weights.T, PAD).T.contiguous()

    def __call__(
        self, theta: torch.Tensor, weights: torch.Tensor, penalty: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """f (B,) and grad (B, R, D); weights (B, n) = m_b / S_b (or padded, see `pad`), penalty
        (B,) = 1 / (C S_b)."""
        b, rows, d = theta.shape
        k, n = self.n_classes, len(self.x)
        if weights.shape[1] != n:
            weights = self.pad(weights)
        z = self.logits(theta, self._xt_log2, self._workspace(k * b * n, theta))  # (K, B, n) bits
        index = self.y.expand(1, b, n)
        zmax = z.amax(0)
        ce = (zmax - z.gather(0, index)[0]).mul_(math.log(2))  # (B, n), + log sum_k e^(z_k - zmax)
        e = z.sub_(zmax).exp2_()
        total = e.sum(0)
        ce.add_(total.log())
        w = theta[..., :-1]
        f = torch.linalg.vecdot(ce, weights) + 0.5 * penalty * w.square().sum((1, 2))
        e.mul_(weights / total).scatter_add_(0, index, -weights[None])  # (P - Y) m_b / S_b
        e = e[k - rows :].reshape(rows * b, n)
        grad = rowwise_mm(e, self.x).view(rows, b, d).transpose(0, 1).contiguous()
        grad[..., :-1].add_(w * penalty[:, None, None])
        self.count(b, b * self.flops_per_eval)
        return f, grad


class CurvatureMemory:
    """The last m pairs (s, y) of each of B models and H g in compact form (N&W eq. 7.24):

    H g = gamma g + S a - gamma Y c,   c = R^{-1} S^T g,   a = R^{-T} ((D + gamma Y^T Y) c - gamma Y^T g)

    with R the upper triangle of S^T Y in time order, D its diagonal, gamma = s^T y / y^T y of the
    newest pair. The vectors sit in a ring of m slots, the small matrices in time order (oldest
    first); a skipped update (no positive curvature) stores zeros and drops out of both formulas.

    R^{-1} is kept up to date instead of solving with R: dropping the oldest pair keeps the trailing
    block of R^{-1}, a new pair (column r, diagonal d) appends [-R^{-1} r / d; 1 / d]. The small
    products are written as elementwise sums, not batched BLAS calls: MKL's batched triangular
    solves and (1, k) x (k, p) products round differently by a model's position in the batch.
    """

    def __init__(self, g: torch.Tensor, m: int) -> None:
        b, p = g.shape
        self.m, self.count = m, 0
        self.pairs = g.new_zeros((b, 2 * m, p))  # slots 0..m-1: s; m..2m-1: y
        self.sy = g.new_zeros((b, 0, 0))  # s_i^T y_j, time order
        self.yy = g.new_zeros((b, 0, 0))
        self.rinv = g.new_zeros((b, 0, 0))  # R^{-1}
        self.valid = torch.zeros((b, 0), dtype=torch.bool, device=g.device)
        self.gamma = 1.0 / g.norm(dim=1).clamp_min(
            torch.finfo(g.dtype).tiny
        )  # first step: length 1

    def keep(self, rows: torch.Tensor) -> None:
        for name in ("pairs", "sy", "yy", "rinv", "valid", "gamma"):
            setattr(self, name, getattr(self, name)[rows])

    def _slots(self, device) -> torch.Tensor:
        """Ring slots of the stored pairs, oldest first, as indices into `pairs`: s's, then y's."""
        filled = min(self.count, self.m)
        slots = torch.tensor([(self.count - filled + j) % self.m for j in range(filled)])
        return torch.cat([slots, slots + self.m]).to(device)

    def push(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Store the newest pair; models whose pair has no positive curvature skip it."""
        m, k = self.m, self.count % self.m
        sy, yy = torch.linalg.vecdot(s, y), torch.linalg.vecdot(y, y)
        valid = sy > torch.finfo(s.dtype).eps * yy
        self.pairs[:, k] = s * valid[:, None]
        self.pairs[:, m + k] = y * valid[:, None]
        self.count += 1
        order = self._slots(s.device)
        filled = len(order) // 2
        dots = torch.bmm(self.pairs[:, [m + k, k]], self.pairs.mT)[:, :, order]  # [y, s]^T [S, Y]
        keep = slice(1, None) if self.sy.shape[1] == filled else slice(None)  # drop the oldest
        self.sy = _grow(self.sy[:, keep, keep], dots[:, 0, :filled], dots[:, 1, filled:])
        self.yy = _grow(self.yy[:, keep, keep], dots[:, 0, filled:], dots[:, 0, filled:])
        self.valid = torch.cat([self.valid[:, keep], valid[:, None]], 1)
        self.gamma = torch.where(valid, sy / yy.where(valid, 1.0), self.gamma)
        rinv, inv_d = self.rinv[:, keep, keep], 1.0 / sy.where(valid, 1.0)[:, None]
        top = -(rinv * self.sy[:, None, :-1, -1]).sum(2) * inv_d
        self.rinv = _grow(rinv, torch.cat([top, inv_d], 1), F.pad(inv_d, (len(top[0]), 0)))

    def apply(self, g: torch.Tensor) -> torch.Tensor:
        """H g for g (B, p)."""
        if self.count == 0:
            return self.gamma[:, None] * g
        order = self._slots(g.device)
        filled = len(order) // 2
        uv = torch.bmm(g[:, None, :], self.pairs.mT).mT[:, order]  # (B, 2 filled, 1)
        u, v = uv[:, :filled], uv[:, filled:]
        diag = torch.diagonal(self.sy, dim1=1, dim2=2)
        gamma = self.gamma[:, None, None]
        c = (self.rinv * u.mT).sum(2, keepdim=True)  # R^{-1} u
        yyc = (self.yy * c.mT).sum(2, keepdim=True)
        w = diag.where(self.valid, 0.0)[:, :, None] * c + gamma * (yyc - v)
        a = (self.rinv * w).sum(1)[:, :, None]  # R^{-T} w
        coef = g.new_zeros((len(g), 2 * self.m, 1))
        coef[:, order] = torch.cat([a, -gamma * c], 1)
        # pairs^T coef, not coef^T pairs: MKL's batched (1, 2m) x (2m, p) products pair up batch
        # items, so a model's result would depend on the batch's parity (measured)
        return self.gamma[:, None] * g + torch.bmm(self.pairs.mT, coef)[..., 0]


def _grow(matrix: torch.Tensor, column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """(B, f, f) -> (B, f + 1, f + 1) with a new last `column` (B, f + 1) and last `row`."""
    top = torch.cat([matrix, column[:, :-1, None]], 2)
    return torch.cat([top, row[:, None, :]], 1)


class Preconditioner:
    """theta_b = theta0_b + M_b u_b, row by row: M_br = V_r diag((lambda_r + penalty_b)^(-1/2)), with
    (lambda_r, V_r) the eigen-decomposition of row r's (D, D) block of the Hessian of the mean
    cross-entropy over all n points at `theta_ref` (R, D), and penalty_b = 1 / (C S_b) model b's own.

    In u the Hessian of f_b is about I (exactly so for its block-diagonal part at theta_ref, but for
    the unpenalised intercept): on digits L-BFGS needs ~11 iterations from the full-data fit instead
    of ~28 from zero. (Starting with H_0 = I, a block-Newton first step, saves one more but lands
    farther from scikit-learn's fits within the tolerance: kept scipy's first step of length 1.)
    """

    def __init__(self, objective: LogregObjective, theta_ref: torch.Tensor) -> None:
        x = objective.x.double()
        k, rows = objective.n_classes, objective.n_rows
        z = objective.logits(theta_ref[None].double(), x.T)[:, 0]  # (K, n)
        p = torch.softmax(z, 0)[k - rows :]
        q = p * (1 - p) / objective.n  # (R, n); padding rows have x = 0
        blocks = torch.einsum("rn,nd,ne->rde", q, x, x)
        lam, vectors = torch.linalg.eigh(blocks)
        dtype = objective.x.dtype
        self.lam = lam.clamp_min(0).to(dtype)  # (R, D)
        self.vectors = vectors.to(dtype)  # (R, D, D), columns: eigenvectors
        self.vectors_t = self.vectors.mT.contiguous()
        self.objective = objective
        self.flops_per_model = 2 * rows * x.shape[1] ** 2  # one transform of one model

    def scales(self, penalty: torch.Tensor) -> torch.Tensor:
        """(B, R, D) diagonal of the scaling, for penalties (B,)."""
        return (self.lam[None] + penalty[:, None, None]).rsqrt()

    def to_theta(self, u: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """M_b u_b (B, R, D): row r is (scale_br * u_br) V_r^T."""
        self.objective.count(0, len(u) * self.flops_per_model)
        return _per_row(u * scale, self.vectors_t)

    def to_u(self, grad: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """M_b^T g_b (B, R, D): the gradient in u of a gradient g_b in theta."""
        self.objective.count(0, len(grad) * self.flops_per_model)
        return _per_row(grad, self.vectors) * scale


def _per_row(x: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """(B, R, D) with row r = x[:, r] @ mats[r], each model's row by `rowwise_mm`."""
    return torch.stack([rowwise_mm(x[:, r], mats[r]) for r in range(len(mats))], 1)


@dataclass
class LbfgsResult:
    theta: torch.Tensor  # (B, R, D)
    n_iter: torch.Tensor  # (B,) iterations per model
    converged: torch.Tensor  # (B,) bool: max |grad| <= tol reached


class _Models:
    """The working set: per-model tensors, compacted together as models stop."""

    def __init__(self, **tensors) -> None:
        self.__dict__.update(tensors)

    def keep(self, rows: torch.Tensor) -> None:
        for name, value in vars(self).items():
            if value is not None:
                setattr(self, name, value[rows])


def lbfgs_logreg(
    objective: LogregObjective,
    masks: torch.Tensor,
    C: float,
    theta0: torch.Tensor,
    tol: float = 1e-4,
    max_iter: int = 500,
    history: int = 10,
    preconditioner: Preconditioner | None = None,
) -> LbfgsResult:
    """Minimise f_b for each mask b (rows of `masks`, (B, n)) from `theta0` (B, R, D); see module doc.
    With a `preconditioner`, in its variables u, from u = 0 (theta0)."""
    n_models, k, d = theta0.shape
    sizes = masks.sum(1)
    penalty = 1.0 / (C * sizes)
    pre = preconditioner
    ws = _Models(  # the models still running, compacted whenever some of them stop
        ids=torch.arange(n_models, device=theta0.device),
        weights=objective.pad(masks / sizes[:, None]),
        penalty=penalty,
        base=theta0 if pre is not None else None,
        scale=pre.scales(penalty) if pre is not None else None,
    )
    out = theta0.clone()
    n_iter = torch.zeros(n_models, dtype=torch.long, device=out.device)
    converged = torch.zeros(n_models, dtype=torch.bool, device=out.device)

    def evaluate(x: torch.Tensor, rows: torch.Tensor | None = None):
        """(f, gradient in x, max |gradient in theta|, theta) at x (b, p) of working-set `rows`."""
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        u = x.view(-1, k, d)
        theta = u if pre is None else pick(ws.base) + pre.to_theta(u, pick(ws.scale))
        f, g = objective(theta, pick(ws.weights), pick(ws.penalty))
        gmax = g.abs().amax((1, 2))
        if pre is not None:
            g = pre.to_u(g, pick(ws.scale))
        return f, g.reshape(len(x), -1), gmax, theta

    x = theta0.new_zeros((n_models, k * d)) if pre is not None else theta0.reshape(n_models, -1)
    f, g, gmax, theta = evaluate(x)
    ws.x, ws.f, ws.g, ws.gmax, ws.theta = x, f, g, gmax, theta
    memory = CurvatureMemory(g, history)
    failed = torch.zeros_like(f, dtype=torch.bool)
    for it in range(max_iter + 1):
        done = ws.gmax <= tol
        stop = done | failed if it < max_iter else torch.ones_like(done)
        if stop.any():  # write back the stopped models, keep the rest
            rows = ws.ids[stop]
            out[rows], n_iter[rows], converged[rows] = ws.theta[stop], it, done[stop]
            keep = ~stop
            ws.keep(keep)
            memory.keep(keep)
            if len(ws.ids) == 0:
                break
        x, f, g = ws.x, ws.f, ws.g
        direction = -memory.apply(g)
        slope = torch.linalg.vecdot(g, direction)
        uphill = slope >= 0  # cannot happen with exact curvature pairs; guard against round-off
        if uphill.any():
            direction[uphill] = -memory.gamma[uphill, None] * g[uphill]
            slope = torch.linalg.vecdot(g, direction)
        current = (x, f, g, ws.gmax, ws.theta)
        new, failed = _line_search(evaluate, current, direction, slope)
        memory.push(new[0] - x, new[2] - g)
        ws.x, ws.f, ws.g, ws.gmax, ws.theta = new[0], new[1], new[2], new[3], new[4]
    return LbfgsResult(out, n_iter, converged)


def _line_search(evaluate, current, direction, slope):
    """Backtracking from step 1 until f(x + t d) <= f + c1 t slope, per model; `failed` marks models
    with no such step in MAX_LINE_SEARCH halvings (they keep x and stop, as scipy's lbfgs does).
    `current` and the result: (x, f, g, max |g_theta|, theta) per model, and `failed`."""
    x, f = current[:2]
    trial = x + direction
    f_new, g_new, gmax_new, theta_new = evaluate(trial)
    new = [trial, f_new, g_new, gmax_new, theta_new]
    step = torch.ones_like(f)
    todo = (f_new > f + ARMIJO_C1 * slope).nonzero()[:, 0]
    for _ in range(MAX_LINE_SEARCH):
        if len(todo) == 0:
            break
        step[todo] *= 0.5
        trial = x[todo] + step[todo, None] * direction[todo]
        tried = (trial, *evaluate(trial, todo))
        ok = tried[1] <= f[todo] + ARMIJO_C1 * step[todo] * slope[todo]
        accepted = todo[ok]
        for target, value in zip(new, tried, strict=True):
            target[accepted] = value[ok]
        todo = todo[~ok]
    failed = torch.zeros_like(f, dtype=torch.bool)
    failed[todo] = True
    for target, value in zip(new, current, strict=True):  # no decrease: stay
        target[todo] = value[todo]
    return new, failed
