"""Batched L-BFGS for multinomial logistic regression: B models (bench/engine/convex.py's f_b)
solved at once.

The solver is L-BFGS with a memory of `history` pairs (scipy keeps 10), started like scipy's (first
step of length 1 along -g) or, in a preconditioner's variables, by the unit step -g (a block-Newton
step at the reference point), in the compact form of Byrd, Nocedal & Schnabel (1994, eq. 2.6 /
Nocedal & Wright, Numerical Optimization, eq. 7.24), with a backtracking Armijo line search (N&W
Alg. 3.1). Every step is batched over the B models: two matmuls give all logits and gradients
(`convex.LogregObjective`), and a few (B, 2m, p) batched matmuls the quasi-Newton directions.
Converged models leave the working set, so the tail costs only what is still running. It stops each
model at max_j |d f_b / d theta_j| <= tol (scipy's `gtol`), optionally running in a
`convex.Preconditioner`'s variables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .convex import LogregObjective, Preconditioner

ARMIJO_C1 = 1e-4
MAX_LINE_SEARCH = 30


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

    def __init__(self, g: torch.Tensor, m: int, unit_start: bool = False) -> None:
        b, p = g.shape
        self.m, self.count = m, 0
        self.pairs = g.new_zeros((b, 2 * m, p))  # slots 0..m-1: s; m..2m-1: y
        # `keep` compacts the pairs into a second buffer and back: a fresh multi-MB tensor per
        # compaction page-faults, costing as much as an iteration's matmuls
        self._spare = g.new_empty((b, 2 * m, p))
        self.sy = g.new_zeros((b, 0, 0))  # s_i^T y_j, time order
        self.yy = g.new_zeros((b, 0, 0))
        self.rinv = g.new_zeros((b, 0, 0))  # R^{-1}
        self.valid = torch.zeros((b, 0), dtype=torch.bool, device=g.device)
        self._orders: dict[tuple[int, int], torch.Tensor] = {}
        if unit_start:  # first step -g: Newton's where the Hessian is about I
            self.gamma = torch.ones_like(g[:, 0])
        else:  # first step of length 1, as scipy's
            self.gamma = 1.0 / g.norm(dim=1).clamp_min(torch.finfo(g.dtype).tiny)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep the models at indices `rows` (increasing)."""
        for name in ("sy", "yy", "rinv", "valid", "gamma"):
            setattr(self, name, getattr(self, name).index_select(0, rows))
        pairs, self._spare = self._spare[: len(rows)], self.pairs
        self.pairs = torch.index_select(self._spare, 0, rows, out=pairs)

    def _slots(self, device) -> torch.Tensor:
        """Ring slots of the stored pairs, oldest first, as indices into `pairs`: s's, then y's
        (one tensor per ring position, made once)."""
        filled = min(self.count, self.m)
        key = (filled, self.count % self.m)
        if key not in self._orders:
            slots = [(self.count - filled + j) % self.m for j in range(filled)]
            self._orders[key] = torch.tensor(slots + [j + self.m for j in slots], device=device)
        return self._orders[key]

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
        dots = torch.cat([_dots(self.pairs[:, j], self.pairs) for j in (m + k, k)], 1)[:, :, order]
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
        uv = _dots(g, self.pairs).mT[:, order]  # (B, 2 filled, 1)
        u, v = uv[:, :filled], uv[:, filled:]
        diag = torch.diagonal(self.sy, dim1=1, dim2=2)
        gamma = self.gamma[:, None, None]
        c = (self.rinv * u.mT).sum(2, keepdim=True)  # R^{-1} u
        yyc = (self.yy * c.mT).sum(2, keepdim=True)
        w = diag.where(self.valid, 0.0)[:, :, None] * c + gamma * (yyc - v)
        a = (self.rinv * w).sum(1)[:, :, None]  # R^{-T} w
        coef = torch.cat([a, -gamma * c], 1)[..., 0]  # (B, 2 filled), oldest first
        hg = self.gamma[:, None] * g
        for j, slot in enumerate(order.tolist()):  # pairs^T coef, one slot at a time: elementwise
            hg.addcmul_(self.pairs[:, slot], coef[:, j : j + 1])
        return hg


def _dots(v: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """(B, 1, 2m): v_b against each stored vector of model b. One (1, p) x (p, 2m) product per
    model: the batched form whose per-model result does not depend on the batch (MKL pairs up batch
    items in (1, 2m) x (2m, p) products and runs (2, p) x (p, 2m) ones 3x slower, measured)."""
    return torch.bmm(v[:, None, :], pairs.mT)


def _grow(matrix: torch.Tensor, column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """(B, f, f) -> (B, f + 1, f + 1) with a new last `column` (B, f + 1) and last `row`."""
    top = torch.cat([matrix, column[:, :-1, None]], 2)
    return torch.cat([top, row[:, None, :]], 1)


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
        """Keep the models at indices `rows` (index_select copies rows; a boolean index gathers
        element by element, several times slower)."""
        for name, value in vars(self).items():
            if value is not None:
                setattr(self, name, value.index_select(0, rows))


def lbfgs_logreg(
    objective: LogregObjective,
    masks: torch.Tensor,
    C: float,
    theta0: torch.Tensor,
    tol: float = 1e-4,
    max_iter: int = 500,
    history: int = 10,
    preconditioner: Preconditioner | None = None,
    start: torch.Tensor | None = None,
) -> LbfgsResult:
    """Minimise f_b for each mask b (rows of `masks`, (B, n)) from `theta0` (B, R, D), or from
    theta0[start] for indices `start` (B,) into starting points theta0 (G, R, D): the models that
    share a start share its softmax in their first evaluation (`LogregObjective.at_start`). See
    the module doc. With a `preconditioner`, in its variables u, from u = 0 (theta0)."""
    base = theta0 if start is None else theta0[start]
    n_models = len(base)
    ws, evaluate = _working_set(objective, masks, C, base, preconditioner)
    if preconditioner is None:
        x = base.reshape(n_models, -1)
    else:
        x = base.new_zeros((n_models, base[0].numel()))  # u = 0
    if start is None:
        ws.x, ws.f, ws.g, ws.gmax, ws.theta = x, *evaluate(x)
    else:
        ws.x, ws.f, ws.g, ws.gmax, ws.theta = x, *_evaluate_starts(objective, ws, theta0, start)
        if preconditioner is not None:
            ws.g = preconditioner.to_u(ws.g.view_as(base), ws.scale).reshape(n_models, -1)
    memory = CurvatureMemory(ws.g, history, unit_start=preconditioner is not None)
    result = LbfgsResult(
        base.clone(),
        torch.zeros(n_models, dtype=torch.long, device=theta0.device),
        torch.zeros(n_models, dtype=torch.bool, device=theta0.device),
    )
    failed = torch.zeros_like(ws.f, dtype=torch.bool)
    for it in range(max_iter + 1):
        done = ws.gmax <= tol
        stop = done | failed if it < max_iter else torch.ones_like(done)
        if stop.any():  # write back the stopped models, keep the rest
            _retire(result, ws, memory, stop, done, it)
            if len(ws.ids) == 0:
                break
        x, g = ws.x, ws.g
        direction, slope = _descent_direction(memory, g)
        current = (x, ws.f, g, ws.gmax, ws.theta)
        new, failed = _line_search(evaluate, current, direction, slope)
        memory.push(new[0] - x, new[2] - g)
        ws.x, ws.f, ws.g, ws.gmax, ws.theta = new
    return result


def _working_set(objective, masks, C, theta0, pre):
    """The models still running (`_Models`, compacted whenever some of them stop) and
    `evaluate(x, rows=None)`: (f, gradient in x, max |gradient in theta|, theta) at x (b, p) of
    working-set `rows` (all when None), x being theta, or u with a preconditioner `pre`."""
    n_models, k, d = theta0.shape
    sizes = masks.sum(1)
    penalty = 1.0 / (C * sizes)
    weights = objective.prepare(masks / sizes[:, None])
    ws = _Models(
        ids=torch.arange(n_models, device=theta0.device),
        weights=weights,
        label_sums=objective.label_sums(weights),
        penalty=penalty,
        base=theta0 if pre is not None else None,
        scale=pre.scales(penalty) if pre is not None else None,
    )

    def evaluate(x: torch.Tensor, rows: torch.Tensor | None = None):
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        u = x.view(-1, k, d)
        theta = u if pre is None else pick(ws.base) + pre.to_theta(u, pick(ws.scale))
        f, g = objective(theta, pick(ws.weights), pick(ws.penalty), pick(ws.label_sums))
        gmax = g.abs().amax((1, 2))
        if pre is not None:
            g = pre.to_u(g, pick(ws.scale))
        return f, g.reshape(len(x), -1), gmax, theta

    return ws, evaluate


def _evaluate_starts(objective: LogregObjective, ws: _Models, starts, start):
    """(f, gradient in theta, max |gradient|, theta) of every model at its start theta0[start],
    one `at_start` per distinct start."""
    f = ws.penalty.new_empty(len(start))
    g = starts.new_empty((len(start), *starts.shape[1:]))
    for j in start.unique().tolist():
        rows = (start == j).nonzero()[:, 0]
        f[rows], g[rows] = objective.at_start(
            starts[j], ws.weights[rows], ws.penalty[rows], ws.label_sums[rows]
        )
    return f, g.reshape(len(start), -1), g.abs().amax((1, 2)), starts[start]


def _retire(result: LbfgsResult, ws: _Models, memory: CurvatureMemory, stop, done, it: int):
    """Write the `stop`ped models' theta, iterations and convergence into `result`; drop them
    from the working set and the curvature memory."""
    rows = ws.ids[stop]
    result.theta[rows], result.n_iter[rows], result.converged[rows] = ws.theta[stop], it, done[stop]
    keep = (~stop).nonzero()[:, 0]
    ws.keep(keep)
    memory.keep(keep)


def _descent_direction(memory: CurvatureMemory, g: torch.Tensor):
    """The L-BFGS direction -H g and its slope g^T d per model; a model whose direction is not
    downhill (round-off: exact curvature pairs keep H positive definite) gets -gamma g instead."""
    direction = -memory.apply(g)
    slope = torch.linalg.vecdot(g, direction)
    uphill = slope >= 0
    if uphill.any():
        direction[uphill] = -memory.gamma[uphill, None] * g[uphill]
        slope = torch.linalg.vecdot(g, direction)
    return direction, slope


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
    if len(todo):
        failed[todo] = True
        for target, value in zip(new, current, strict=True):  # no decrease: stay
            target[todo] = value[todo]
    return new, failed
