"""Batched L-BFGS for multinomial logistic regression: B models on one design matrix at once.

Model b, with mask weights m_b in {0, 1}^n and S_b = sum_i m_bi, minimises

    f_b(W, c) = (1 / S_b) sum_i m_bi CE(softmax(W x_i + c), y_i) + ||W||^2 / (2 C S_b)

over all K classes with an unpenalised intercept c. This is scikit-learn's `LogisticRegression`
objective  C sum_i m_bi CE_i + ||W||^2 / 2  divided by C S_b, exactly as its lbfgs solver scales it,
so the same `tol` means the same stopping rule: max_j |d f_b / d theta_j| <= tol (scipy's `gtol`).

The solver is L-BFGS (Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 7.4 two-loop recursion,
Alg. 7.5) with a backtracking Armijo line search (Alg. 3.1), every step batched over the B models:
one (K B, D) x (D, n) matmul gives all logits, one (K B, n) x (n, D) matmul all gradients.
Converged models leave the working set, so the tail costs only what is still running.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ARMIJO_C1 = 1e-4
MAX_LINE_SEARCH = 30


class LogregObjective:
    """f_b and its gradient for a stack of parameters theta (B, K, D), D = d + 1 (intercept last)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        self.x = torch.cat([x, torch.ones_like(x[:, :1])], 1)  # (n, D)
        self.y, self.n_classes = y, n_classes
        self.n_evals = 0  # model-evaluations of (f, grad), for FLOP accounting
        self._buffer: torch.Tensor | None = None

    @property
    def flops_per_eval(self) -> int:
        """Matmul FLOPs of one model's (f, grad): logits and gradient, 2 n D K each."""
        return 4 * self.x.shape[0] * self.x.shape[1] * self.n_classes

    def logits(self, theta: torch.Tensor, x: torch.Tensor, out: torch.Tensor | None = None):
        """Class logits (K, B, m) of B models on inputs x (m, D), written into `out` if given."""
        b, k, d = theta.shape
        flat = theta.transpose(0, 1).reshape(k * b, d)
        if out is None:
            return (flat @ x.T).view(k, b, len(x))
        return torch.mm(flat, x.T, out=out.view(k * b, len(x))).view(k, b, len(x))

    def _workspace(self, size: int, like: torch.Tensor) -> torch.Tensor:
        """A reused buffer for the (K, B, n) logits: fresh multi-MB allocations page-fault on CPU."""
        if self._buffer is None or self._buffer.numel() < size or self._buffer.dtype != like.dtype:
            self._buffer = like.new_empty(size)
        return self._buffer[:size]

    def __call__(
        self, theta: torch.Tensor, weights: torch.Tensor, penalty: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """f (B,) and grad (B, K, D); weights (B, n) = m_b / S_b, penalty (B,) = 1 / (C S_b)."""
        b, k, d = theta.shape
        n = len(self.x)
        z = self.logits(theta, self.x, self._workspace(k * b * n, theta))  # (K, B, n)
        index = self.y.expand(1, b, n)
        zmax = z.amax(0)
        ce = zmax - z.gather(0, index)[0]  # (B, n), completed by log-sum-exp below
        e = z.sub_(zmax).exp_()
        total = e.sum(0)
        ce.add_(total.log())
        w = theta[..., :-1]
        f = (ce * weights).sum(1) + 0.5 * penalty * (w * w).sum((1, 2))
        e.div_(total).scatter_add_(0, index, torch.full_like(index, -1, dtype=e.dtype))
        e.mul_(weights)  # (P - Y) m_b / S_b
        grad = (e.view(k * b, n) @ self.x).view(k, b, d).transpose(0, 1).contiguous()
        grad[..., :-1] += penalty[:, None, None] * w
        self.n_evals += b
        return f, grad


@dataclass
class LbfgsResult:
    theta: torch.Tensor  # (B, K, D)
    n_iter: torch.Tensor  # (B,) iterations per model
    converged: torch.Tensor  # (B,) bool: max |grad| <= tol reached


def _two_loop(g, s_hist, y_hist, rho, gamma, newest: int) -> torch.Tensor:
    """H_k g by the L-BFGS two-loop recursion; history slots are a ring, `newest` the last written.

    Slots of models whose update was skipped hold zeros (rho = 0) and drop out of both loops.
    """
    m = len(rho)
    order = [(newest - j) % m for j in range(m)]
    q, alphas = g.clone(), []
    for j in order:
        a = rho[j] * (s_hist[j] * q).sum(1)
        q.sub_(a[:, None] * y_hist[j])
        alphas.append(a)
    r = q.mul_(gamma[:, None])
    for j, a in zip(reversed(order), reversed(alphas), strict=True):
        beta = rho[j] * (y_hist[j] * r).sum(1)
        r.add_(s_hist[j] * (a - beta)[:, None])
    return r


def lbfgs_logreg(
    objective: LogregObjective,
    masks: torch.Tensor,
    C: float,
    theta0: torch.Tensor,
    tol: float = 1e-4,
    max_iter: int = 500,
    history: int = 10,
) -> LbfgsResult:
    """Minimise f_b for each mask b (rows of `masks`, (B, n)) from `theta0` (B, K, D); see module doc."""
    n_models, k, d = theta0.shape
    sizes = masks.sum(1)
    all_weights, all_penalty = masks / sizes[:, None], 1.0 / (C * sizes)
    out = theta0.clone()
    n_iter = torch.zeros(n_models, dtype=torch.long, device=out.device)
    converged = torch.zeros(n_models, dtype=torch.bool, device=out.device)

    # Working set: the models still running, compacted whenever some of them stop.
    ids = torch.arange(n_models, device=out.device)
    weights, penalty = all_weights, all_penalty
    x = theta0.reshape(n_models, -1).clone()
    f, g = objective(theta0, weights, penalty)
    g = g.reshape(n_models, -1)
    s_hist = x.new_zeros((history, *x.shape))
    y_hist = x.new_zeros((history, *x.shape))
    rho = x.new_zeros((history, n_models))
    gamma = 1.0 / g.norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    stop = g.abs().amax(1) <= tol
    converged[ids[stop]] = True
    for it in range(max_iter + 1):
        if stop.any():  # write back the stopped models, keep the rest
            out[ids[stop]] = x[stop].view(-1, k, d)
            keep = ~stop
            ids, x, f, g, gamma = ids[keep], x[keep], f[keep], g[keep], gamma[keep]
            weights, penalty = weights[keep], penalty[keep]
            s_hist, y_hist, rho = s_hist[:, keep], y_hist[:, keep], rho[:, keep]
        if len(ids) == 0 or it == max_iter:
            break
        direction = -_two_loop(g, s_hist, y_hist, rho, gamma, (it - 1) % history)
        slope = (g * direction).sum(1)
        uphill = slope >= 0  # cannot happen with exact curvature pairs; guard against round-off
        if uphill.any():
            direction[uphill] = -gamma[uphill, None] * g[uphill]
            slope[uphill] = -(gamma[uphill] * (g[uphill] * g[uphill]).sum(1))
        x_new, f_new, g_new, failed = _line_search(
            objective, x, f, g, direction, slope, weights, penalty, k, d
        )
        s, y = x_new - x, g_new - g
        sy, yy = (s * y).sum(1), (y * y).sum(1)
        valid = sy > torch.finfo(x.dtype).eps * yy
        slot = it % history
        s_hist[slot] = s * valid[:, None]
        y_hist[slot] = y * valid[:, None]
        rho[slot] = torch.where(valid, 1.0 / sy.where(valid, 1.0), 0.0)
        gamma = torch.where(valid, sy / yy.where(valid, 1.0), gamma)
        x, f, g = x_new, f_new, g_new
        n_iter[ids] += 1
        done = g.abs().amax(1) <= tol
        converged[ids[done]] = True
        stop = done | failed
    if len(ids):
        out[ids] = x.view(-1, k, d)
    return LbfgsResult(out, n_iter, converged)


def _line_search(objective, x, f, g, direction, slope, weights, penalty, k, d):
    """Backtracking from step 1 until f(x + t d) <= f + c1 t slope, per model; `failed` marks models
    with no such step in MAX_LINE_SEARCH halvings (they keep x and stop, as scipy's lbfgs does)."""
    x_new, f_new, g_new = x.clone(), f.clone(), torch.empty_like(x)
    step = torch.ones_like(f)
    todo = torch.arange(len(x), device=x.device)
    for _ in range(MAX_LINE_SEARCH):
        trial = x[todo] + step[todo, None] * direction[todo]
        f_try, g_try = objective(trial.view(-1, k, d), weights[todo], penalty[todo])
        ok = f_try <= f[todo] + ARMIJO_C1 * step[todo] * slope[todo]
        accepted = todo[ok]
        x_new[accepted], f_new[accepted] = trial[ok], f_try[ok]
        g_new[accepted] = g_try.reshape(len(todo), -1)[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            break
        step[todo] *= 0.5
    failed = torch.zeros_like(f, dtype=torch.bool)
    failed[todo] = True
    g_new[todo] = g[todo]  # no decrease found: keep the old point and its gradient
    return x_new, f_new, g_new, failed
