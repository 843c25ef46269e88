"""Multinomial logistic regression for the batched L-BFGS solver (bench/engine/lbfgs.py): B models
on one design matrix at once.

Model b, with mask weights m_b in {0, 1}^n and S_b = sum_i m_bi, minimises

    f_b(W, c) = (1 / S_b) sum_i m_bi CE(softmax(W x_i + c), y_i) + ||W||^2 / (2 C S_b)

over all K classes (one weight vector when K = 2) with an unpenalised intercept c. This is
scikit-learn's `LogisticRegression`
objective  C sum_i m_bi CE_i + ||W||^2 / 2  divided by C S_b, exactly as its lbfgs solver scales it,
so the same `tol` means the same stopping rule: max_j |d f_b / d theta_j| <= tol (scipy's `gtol`).
`LogregObjective` gives f_b and its gradient for all B models by one (K B, D) x (D, n) matmul for
the logits and one (K B, n) x (n, D) matmul for the gradients, each model's rows bitwise the same
in any batch (`rowwise_mm`).

Optionally (`Preconditioner`) the solver runs in preconditioned variables u, theta = theta0 + M_b u, with
M_b from the eigen-decomposition of the Hessian's diagonal blocks (one per class row) at a reference
point (the full-data fit) and model b's own penalty, where the first step is the unit one. Only
the path changes: the iterations stop on the gradient in theta, max_j
|d f_b / d theta_j| <= tol, the same rule, and the minimiser is the same.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F

MIN_ROWS = MIN_COLS = 16  # rowwise_mm's smallest shape (see there)
PAD = 32  # the objective's rows are padded to a multiple of this (see LogregObjective)
BLOCK = 256  # the objective runs over blocks of this many points (a multiple of PAD), whose
# (K, B, BLOCK) logits stay in the core's cache between the passes over them


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

    The points are kept sorted by label (stably; `prepare` puts weights in that order), so each
    point's own logit z_y is a slice per class, not a gather. The cross-entropy is taken relative
    to it: CE_i = log sum_k e^(z_ik - z_iy), whose label term is e^0 = 1, so the sum is >= 1 and
    needs no max over classes; a model with a logit more than ~88 above its label's (e^(z - z_y)
    overflows float32) is evaluated again with the max shift (`_stable`), its result a function
    of its own values alone.

    The n points are padded with all-zero rows of weight 0 to a multiple of PAD: elementwise
    kernels compute a contiguous tensor's tail (numel mod two vectors: 32 float32 with AVX-512) by
    scalar code, whose exp2 / log round differently from the vector code, so without the padding a
    model's values would depend on how many models share its tensors.

    The gradient is (P - Y)' diag(w_b) X; its labels' part Y' diag(w_b) X depends on the weights
    alone, so a solve forms it once (`label_sums`) and each evaluation only P' diag(w_b) X.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        self.n = len(x)
        x1 = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        self.xt = x1.T.contiguous()  # (D, n), the points only, in their given order
        self.order = torch.argsort(y, stable=True)  # the solver's order of the points
        self.x = pad_rows(x1[self.order], PAD)  # (n_pad, D)
        self._xt_log2 = (self.x.T * math.log2(math.e)).contiguous()  # in bits: exp2 beats exp 6x
        self.y, self.n_classes = pad_rows(y[self.order], PAD), n_classes
        self.n_rows = 1 if n_classes == 2 else n_classes
        labels, counts = torch.unique_consecutive(self.y[: self.n], return_counts=True)
        ends = counts.cumsum(0).tolist()
        starts = [0, *ends[:-1]]
        self._classes = list(zip(labels.tolist(), starts, ends, strict=True))  # (r, start, end)
        n_pad = len(self.x)
        segments = [*self._classes, (0, self.n, n_pad)]  # padding: class 0's logits, all 0
        self._whole = _clip(segments, 0, n_pad)
        self._blocks = [
            (a, min(a + BLOCK, n_pad), _clip(segments, a, min(a + BLOCK, n_pad)))
            for a in range(0, n_pad, BLOCK)
        ]
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

    def prepare(self, weights: torch.Tensor) -> torch.Tensor:
        """Weights (B, n) of the points in their given order -> (B, n_pad) in the solver's (sorted
        by label), the padding rows' weights 0."""
        return pad_rows(weights[:, self.order].T, PAD).T.contiguous()

    def label_sums(self, weights: torch.Tensor) -> torch.Tensor:
        """(B, R, D): sum_i w_bi [y_i = r] x_i, the labels' part of each model's gradient; fixed
        while the weights are (`prepare`d): one product per class over its points."""
        sums = weights.new_zeros((len(weights), self.n_rows, self.x.shape[1]))
        for r, start, end in self._classes:
            if r >= self.n_classes - self.n_rows:
                row = r - (self.n_classes - self.n_rows)
                sums[:, row] = rowwise_mm(weights[:, start:end], self.x[start:end])
        return sums

    def _label_logits(self, z: torch.Tensor, segments: list) -> torch.Tensor:
        """(B, m): each point's logit of its own label from logits z (K, B, m) of the points
        that `segments` ((label, start, end), in z's columns) cover, in a reused buffer."""
        b, m = z.shape[1:]
        buffer = getattr(self._local, "labels", None)
        if buffer is None or buffer.numel() < b * m or buffer.dtype != z.dtype:
            buffer = self._local.labels = z.new_empty(b * m)
        parts = [z[r, :, start:end] for r, start, end in segments]
        return torch.cat(parts, 1, out=buffer[: b * m].view(b, m))

    def __call__(
        self,
        theta: torch.Tensor,
        weights: torch.Tensor,
        penalty: torch.Tensor,
        label_sums: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """f (B,) and grad (B, R, D); weights (B, n) = m_b / S_b, penalty (B,) = 1 / (C S_b). A
        caller that keeps `label_sums` passes them with the weights `prepare`d."""
        if label_sums is None:
            weights = self.prepare(weights)
            label_sums = self.label_sums(weights)
        b, rows, d = theta.shape
        k, n = self.n_classes, len(self.x)
        flat = theta.transpose(0, 1).reshape(rows * b, d)
        ce, grad = weights.new_empty((b, n)), None
        for start, end, segments in self._blocks:  # logits, softmax and gradient, block by block
            m = end - start
            z = self._workspace(k * b * m, theta).view(k, b, m)
            if rows < k:
                z[0].zero_()
            rowwise_mm(flat, self._xt_log2[:, start:end], out=z[k - rows :].view(-1, m))
            e = z.sub_(self._label_logits(z, segments)).exp2_()  # e^(z_k - z_y): 1 at the label
            total = e.sum(0)
            torch.log(total, out=ce[:, start:end])
            pw = e.mul_(weights[:, start:end] / total)[k - rows :].view(rows * b, m)
            part = rowwise_mm(pw, self.x[start:end])
            grad = part if grad is None else grad.add_(part)
        self.count(b, b * self.flops_per_eval)
        grad = grad.view(rows, b, d).transpose(0, 1)
        f, grad = self._penalise(theta, ce, grad, weights, penalty, label_sums)
        if not math.isfinite(f.sum()):  # e^(z_k - z_y) overflowed: those models again, max-shifted
            rows = (~torch.isfinite(f)).nonzero()[:, 0]
            f[rows], grad[rows] = self._stable(
                theta[rows], weights[rows], penalty[rows], label_sums[rows]
            )
        return f, grad

    def _stable(self, theta, weights, penalty, label_sums):
        """(f, grad) as `__call__`, the softmax shifted by each point's largest logit."""
        z = self._logits_bits(theta)
        e, ce = self._shifted_softmax(z)
        pw = e.mul_(weights)
        return self._finish(theta, pw, ce, weights, penalty, label_sums)

    def at_start(self, theta, weights, penalty, label_sums):
        """(f, grad) as `__call__` (weights `prepare`d) of b models at the same parameters theta
        (R, D): one softmax for all of them, so only the gradient's product is per model."""
        k, b, n = self.n_classes, len(weights), len(self.x)
        p, ce = self._shifted_softmax(self.logits(theta[None], self._xt_log2))  # (K, 1, n)
        pw = torch.mul(p, weights, out=self._workspace(k * b * n, theta).view(k, b, n))
        return self._finish(theta.expand(b, -1, -1), pw, ce, weights, penalty, label_sums)

    def _shifted_softmax(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax (in z's memory) and cross-entropies (B, n) of logits z (K, B, n) in bits,
        shifted by each point's largest logit."""
        zmax = z.amax(0)
        ce = (zmax - self._label_logits(z, self._whole)).mul_(math.log(2))  # + log sum e^(z - zmax)
        e = z.sub_(zmax).exp2_()
        total = e.sum(0)
        return e.div_(total), ce.add_(total.log())

    def _logits_bits(self, theta: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, n_pad) in bits (times log2 e), in the reused workspace."""
        k, b, n = self.n_classes, len(theta), len(self.x)
        self.count(0, b * self.flops_per_eval // 2)
        return self.logits(theta, self._xt_log2, self._workspace(k * b * n, theta))

    def _finish(self, theta, pw, ce, weights, penalty, label_sums):
        """f and grad from the softmax times the weights, pw (K, B, n_pad) = P m_b / S_b, and
        the cross-entropies `ce` (B or 1, n_pad)."""
        b, rows, d = theta.shape
        k, n = self.n_classes, len(self.x)
        grad = rowwise_mm(pw[k - rows :].reshape(rows * b, n), self.x)
        self.count(b, b * self.flops_per_eval // 2)  # the gradient's product
        return self._penalise(theta, ce, grad.view(rows, b, d).transpose(0, 1), weights, penalty,
                              label_sums)  # fmt: skip

    @staticmethod
    def _penalise(theta, ce, pgrad, weights, penalty, label_sums):
        """f from the cross-entropies `ce` (B or 1, n_pad), grad from P' diag(w_b) X (B, R, D):
        the labels' part and the penalty's added."""
        w = theta[..., :-1]
        f = torch.linalg.vecdot(ce, weights) + 0.5 * penalty * w.square().sum((1, 2))
        grad = pgrad.sub(label_sums)  # (P - Y)' diag(w_b) X
        grad[..., :-1].add_(w * penalty[:, None, None])
        return f, grad


def _clip(segments: list, start: int, end: int) -> list:
    """The (label, start, end) segments' parts within points [start, end), in its columns."""
    return [(r, max(a, start) - start, min(b, end) - start)
            for r, a, b in segments if a < end and b > start]  # fmt: skip


class Preconditioner:
    """theta_b = theta0_b + M_b u_b, row by row: M_br = V_r diag((lambda_r + penalty_b)^(-1/2)), with
    (lambda_r, V_r) the eigen-decomposition of row r's (D, D) block of the Hessian of the mean
    cross-entropy over all n points at `theta_ref` (R, D), and penalty_b = 1 / (C S_b) model b's own.

    In u the Hessian of f_b is about I (exactly so for its block-diagonal part at theta_ref, but for
    the unpenalised intercept): on digits L-BFGS needs ~11 iterations from the full-data fit instead
    of ~28 from zero. Its first step is therefore -g_u, a block-Newton step (H_0 = I), not scipy's
    step of length 1: on digits that saves one iteration and the first step's backtracking, ~20% of
    the evaluations, and the fits stay as close to the exact optimum as scikit-learn's own
    (tests/engine/test_engine.py).
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
    """(B, R, D) with row r = x[:, r] @ mats[r]: one batched product over the R rows, each a
    row-invariant one as in `rowwise_mm` (padded to at least MIN_ROWS x MIN_COLS)."""
    b, d = x.shape[0], mats.shape[2]
    a = x.transpose(0, 1)  # (R, >= MIN_ROWS, D); F.pad copies even where it adds nothing
    a = F.pad(a, (0, 0, 0, MIN_ROWS - b)) if b < MIN_ROWS else a
    mats = F.pad(mats, (0, MIN_COLS - d)) if d < MIN_COLS else mats
    return torch.bmm(a, mats)[:, :b, :d].transpose(0, 1)
