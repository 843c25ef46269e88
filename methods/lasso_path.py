"""Cross-validated LASSO paths for every response and every fold at once, on an implicit mask design.

The problem, the lambda grid, both CV rules and the early stop are those of methods/lasso.py (the
scikit-learn reference the tests compare this solver against): for response q and training rows T,

    min_b 1/(2|T|) ||(I - H_T)(y_q - X b)||^2 + lambda ||b||_1,

H_T the projection on the unpenalised basis B fitted on T (Frisch-Waugh-Lovell). X is never formed
(methods/mask_design.py). The residualisation is a rank-G correction applied to vectors,
(I - H_T) v = v - B (B_T'B_T)^+ B_T' v_T, fitted on T and applied to every row, which is also how
held-out rows are predicted; on Gram matrices it subtracts P (B_T'B_T)^+ P', P = X_T'B_T.

Three schedules (plan_schedule picks the first that fits `memory_mb`, before any training):

- resident / sequential: every problem's whole Gram, all at once or two at a time, solved by the
  compiled coordinate descent of methods/lasso_cd.py (methods/lasso_gram_path.py).
- sets (here), for designs whose Grams do not fit: working sets (the KKT-checked active-set
  strategy of glmnet; Tibshirani et al. 2012). Each problem keeps its own set W of columns with
  their Gram X~_W' X~_W, computed from the design as columns join (methods/lasso_sets.py). At
  each lambda the columns of the sequential strong rule join W, each problem is solved on W by
  scikit-learn's coordinate descent on the Gram (the reference's own solver), and the KKT
  conditions of every column are checked through one X' r of all R = (K + 1) Q problems'
  residuals, (p x m) @ (m x R), a bounded product (MaskDesign.rmatmul_bounded: float32 on a
  cached float64 design, int8 digits on the bits where those pay) whose near-threshold columns
  are re-checked exactly; violators join W and only their problems are solved again. Zero
  columns far from entering leave W. Each solve starts on the path's secant through the last two
  solutions. When the working sets' Grams outgrow `memory_mb`, the sets are cut to their active
  columns, once; when they outgrow it again, or the active sets alone do (dense solutions), a
  small design switches to FISTA over every column (methods/lasso_dense.py); a large one stops
  the path there, as glmnet's pmax does, with a warning, and lambda is chosen among those reached.

Runs on torch: CUDA when asked, the CPU otherwise (the compiled kernel on the CPU); products with
the design in its `dtype` (float32 for large designs: exact for the masks), coefficients and
errors in float64.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .lasso import RULES, LassoCV, lambda_grid
from .lasso_dense import DensePath
from .lasso_gram_path import (
    choose_lambdas,
    cv_result,
    early_stop,
    fit_from_history,
    gram_cv_path,
    resident_bytes,
    sequential_bytes,
)
from .lasso_sets import (
    DesignGrams,
    Problems,
    WorkingSet,
    _threads,
    stacked_rmatmul,
)
from .mask_design import MaskDesign

THREADED_SETS = 200  # mean working-set size from which the solves run on several threads
SCHEDULES = ("auto", "resident", "sequential", "sets")
PRUNE = 0.5  # at a full check, working-set columns at zero with |g| < PRUNE * lambda leave the set


class OverBudget(Exception):
    """The working sets' Grams outgrew the memory budget on a design too large for dense mode."""


@cache
def _libc_function(name: str):
    """glibc's function `name` (malloc_trim, mallopt), or None where the C library has none."""
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), name, None) if libc else None


def _restore_mmap_threshold() -> None:
    """glibc serves allocations from 128 KiB up by mmap, freed at once, until a freed mapping raises
    that threshold to its size; loading numba's LLVM does so, after which working-set Grams up to
    tens of MB came from the heap and stayed resident (backdoor n = 50,000: 3.4 -> 4.4 GB peak).
    Fixing the threshold at glibc's default (mallopt M_MMAP_THRESHOLD) keeps the old behaviour."""
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the system: working-set Grams are freed and
    reallocated at growing sizes, and their holes would otherwise stay resident."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


class _Path:
    """Every problem's solution along the shared lambda index; see the module docstring."""

    def __init__(self, design, y, problems, n_lambdas, memory_mb, threads: int, pool) -> None:
        self.design, self.problems, self.dev = design, problems, design.device
        self.threads = threads  # for the products with the whole design; one thread otherwise
        k1, n_queries = problems.w.shape[0], y.shape[1]
        self.y = problems.resid(y[:, None, :].expand(-1, k1, -1).contiguous())  # (m, K + 1, Q)
        self.memory = memory_mb * 2**20
        self.size = problems.size.cpu().numpy()  # |T_k|
        self.c = stacked_rmatmul(
            design, problems.w.T[:, :, None] * self.y, threads
        )  # X~' y~ (p, K + 1, Q)
        self.c_np = self.c.cpu().numpy()
        self.lambdas = lambda_grid(self.c_np[:, 0], len(y), n_lambdas)  # (Q, L), the full fits'
        self.grad = self.c_np.copy()  # X~' r at b = 0, (p, K + 1, Q_live)
        self.alpha_last = None  # lambda |T_k| of the last solve (K + 1, Q_live)
        y_train = (problems.w.T[:, :, None] * self.y).cpu().numpy()
        self.y_train = [
            [np.ascontiguousarray(y_train[:, k, q]) for q in range(n_queries)] for k in range(k1)
        ]
        g = problems.basis.shape[1]
        self.sets = [[WorkingSet(k, q, g) for q in range(n_queries)] for k in range(k1)]
        self.inside = np.zeros((design.p, k1, n_queries), dtype=bool)  # column in working set
        self.live = np.arange(n_queries)
        self.slot = {q: q for q in range(n_queries)}  # each live response's place in `live`
        self.grams = DesignGrams(design, problems, self.c_np, threads)
        self.pruned = False  # the working sets were cut to their active columns at the budget
        self.dense = None  # DensePath once every column is in
        self.pool = pool if threads > 1 else None  # for the working sets' solves

    def _gradient(self) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """X~' r of every live problem (p, K + 1, Q_live), a bound on each problem's error
        (K + 1, Q_live) and the residuals (m, K + 1, Q_live), which also give the CV errors: one
        bounded product with the design (MaskDesign.rmatmul_bounded)."""
        resid = self.problems.resid(self.y[..., self.live] - self._fits())
        train = self.problems.w.T[:, :, None] * resid
        with _threads(self.threads):
            grad, bound = self.design.rmatmul_bounded(train.reshape(train.shape[0], -1))
        shape = train.shape[1:]
        return grad.view(-1, *shape).cpu().numpy(), bound.view(shape).cpu().numpy(), resid

    def _live_sets(self) -> list:
        return [self.sets[k][q] for k in range(len(self.sets)) for q in self.live]

    def _stack(self) -> tuple[np.ndarray, np.ndarray]:
        """The union U of the live problems' nonzero coefficients and their values (|U|, K + 1,
        Q_live)."""
        where = [(ws, ws.beta != 0) for ws in self._live_sets()]
        cols = np.unique(np.concatenate([ws.cols[nz] for ws, nz in where]))
        coef = np.zeros((len(cols), len(self.sets), len(self.live)))
        for ws, nz in where:
            j = self.slot[ws.q]
            coef[np.searchsorted(cols, ws.cols[nz]), ws.k, j] = ws.beta[nz]
        return cols, coef

    def _fits(self) -> torch.Tensor:
        """X b of every live problem (m, K + 1, Q_live): one product over the union of their
        nonzero coefficients while it is small, else one per problem over its own (the unions of
        many problems' noise columns can be far larger than any of them)."""
        sets = self._live_sets()
        cols, coef = self._stack()
        n_union, n_nonzero = len(cols), np.count_nonzero(coef)
        shape = (self.design.m, len(self.sets), len(self.live))
        if n_union == 0:
            return torch.zeros(shape, dtype=torch.float64, device=self.dev)
        with _threads(self.threads):
            if n_union * len(sets) <= 8 * n_nonzero or n_union * self.design.m <= 2**21:
                flat = torch.as_tensor(coef.reshape(len(cols), -1), device=self.dev)
                return self.design.matmul_cols(cols, flat).view(shape)
            fits = torch.zeros(shape, dtype=torch.float64, device=self.dev)
            for ws in sets:
                nz = ws.beta != 0
                if nz.any():
                    beta = torch.as_tensor(ws.beta[nz], device=self.dev)[:, None]
                    fit = self.design.matmul_cols(ws.cols[nz], beta)[:, 0]
                    fits[:, ws.k, self.slot[ws.q]] = fit
            return fits

    def _alpha(self, index: int) -> np.ndarray:
        """lambda |T_k| of every live problem (K + 1, Q_live): coordinate descent's penalty."""
        return self.size[:, None] * self.lambdas[self.live, index][None, :]

    # ----- working sets -----
    def _extend(self, add: np.ndarray) -> dict:
        """Mark as joining each live problem's set the columns marked in `add` (p, K + 1, Q_live);
        returns the columns joining each problem (k, q), their Grams formed from the design."""
        k, j, cols = np.nonzero(add.transpose(1, 2, 0))  # grouped by problem, columns sorted
        if not len(cols):
            return {}
        cuts = np.flatnonzero(np.diff(k * len(self.live) + j)) + 1
        joining = {}
        for kk, jj, new in zip(
            k[np.r_[0, cuts]], j[np.r_[0, cuts]], np.split(cols, cuts), strict=True
        ):
            q = int(self.live[jj])
            self.grams.extend(self.sets[kk][q], new)
            self.inside[new, kk, q] = True
            joining[int(kk), q] = new
        return joining

    def _keep(self, ws: WorkingSet, keep: np.ndarray) -> None:
        if not keep.all():
            self.inside[ws.cols[~keep], ws.k, ws.q] = False
            ws.keep(keep)

    def _gram_bytes(self, add: np.ndarray | None = None) -> int:
        """Bytes of the working sets' Grams, once the columns marked in `add` (p, K + 1, Q_live)
        have joined them (checked before they are built: the budget bounds the peak)."""
        size = np.array([len(ws.cols) for ws in self._live_sets()])  # k-major, as add.sum(0)
        if add is not None:
            size = size + add.sum(0).ravel()
        return int((size.astype(np.int64) ** 2).sum()) * np.dtype(self.grams.dtype).itemsize

    def _violators(self, grad, bound, alpha, resid) -> np.ndarray:
        """Columns outside each working set whose |X~' r| exceeds lambda |T_k| (p, K + 1, Q_live).
        Columns whose bounded gradient is within its error bound of the threshold get it exact."""
        outside = ~self.inside[:, :, self.live]
        limit = alpha * (1 + 1e-9)
        if bound.any():
            near = np.flatnonzero(((np.abs(grad) > limit - bound) & outside).any((1, 2)))
            if len(near):
                x = self.design.features(near).double()
                train = self.problems.w.T[:, :, None] * resid
                exact = x @ train.reshape(train.shape[0], -1)
                grad[near] = exact.view(len(near), *grad.shape[1:]).cpu().numpy()
        return (np.abs(grad) > limit) & outside

    def solve(self, index: int) -> torch.Tensor:
        """Solve every live problem at lambda `index`; returns the residuals (m, K + 1, Q_live).
        Columns enter by the sequential strong rule, |g_i| >= 2 alpha_l - alpha_{l-1} with the
        gradient at the last solution (Tibshirani et al. 2012), and by the KKT checks of every
        column after each solve; only the problems whose sets grew are solved again. Each solve
        starts on the path's secant through the last two solutions (WorkingSet.predict; mislabel
        n = 2,000: 6.8 -> 5.9 coordinate descent sweeps per solve)."""
        if self.dense is not None:
            return self.dense.solve(index, self.live)
        alpha = self._alpha(index)
        last = alpha if self.alpha_last is None else self.alpha_last
        if index >= 2:
            lam = self.lambdas[:, index - 2 : index + 1]
            ratio = (lam[:, 2] - lam[:, 1]) / (lam[:, 1] - lam[:, 0])
            for ws in self._live_sets():
                ws.predict(ratio[ws.q])
        add = (np.abs(self.grad) >= 2 * alpha - last) & ~self.inside[:, :, self.live]
        dirty = {(ws.k, ws.q) for ws in self._live_sets()}
        while True:
            over = self._gram_bytes(add) > self.memory
            if over and not self.pruned:  # once: keep only the active columns, if that is enough
                for ws in self._live_sets():
                    self._keep(ws, ws.beta != 0)
                self.pruned, over = True, self._gram_bytes(add) > self.memory
            if over:  # a second time (pruning again would only churn) or pruning was not enough
                if self.design.cache is None:  # too large for FISTA's products: glmnet's pmax stop
                    raise OverBudget(self._gram_bytes(add))
                self._go_dense()
                return self.dense.solve(index, self.live)
            joining = self._extend(add)
            self._solve_sets(sorted(dirty | set(joining)), alpha)
            grad, bound, resid = self._gradient()
            add = self._violators(grad, bound, alpha, resid)
            if not add.any():
                break
            dirty = set()
        self.grad, self.alpha_last = grad, alpha
        self._prune(alpha)
        return resid

    def _solve_sets(self, problems: list, alpha: np.ndarray) -> None:
        """Coordinate descent on each problem (k, q) in `problems`, on the path's threads once the
        sets are large enough to repay them (the solver releases the GIL)."""

        def job(k, q):
            self.sets[k][q].solve(alpha[k, self.slot[q]], self.y_train[k][q])

        sizes = [len(self.sets[k][q].cols) for k, q in problems]
        if self.pool is not None and np.mean(sizes) >= THREADED_SETS:
            list(self.pool.map(lambda kq: job(*kq), problems))
        else:
            for k, q in problems:
                job(k, q)

    def _prune(self, alpha: np.ndarray) -> None:
        """Drop from each working set the zero coefficients whose gradient is below PRUNE x lambda
        (far from entering): the sets follow the active sets down the path instead of growing."""
        for ws in self._live_sets():
            j = self.slot[ws.q]
            g = self.grad[ws.cols, ws.k, j]
            self._keep(ws, (ws.beta != 0) | (np.abs(g) >= PRUNE * alpha[ws.k, j]))

    def _go_dense(self) -> None:
        """Every column in: the dense mode (methods/lasso_dense.py) from the current solutions."""
        cols, coef = self._stack()
        beta = torch.zeros((self.design.p, *coef.shape[1:]), dtype=torch.float64)
        beta[torch.as_tensor(cols)] = torch.as_tensor(coef)
        self.dense = DensePath(
            self.design, self.problems, self.y, self.c, self.lambdas, beta.to(self.dev),
            self.threads,
        )  # fmt: skip
        self.sets, self.grams = None, None

    def full_fit(self) -> tuple[np.ndarray, np.ndarray]:
        """Nonzero coefficients of the full fits: (col, q) pairs and values."""
        if self.dense is not None:
            return self.dense.full_fit(self.live)
        where, values = [], []
        for q in self.live:
            ws = self.sets[0][q]
            keep = ws.beta != 0
            where.append(np.c_[ws.cols[keep], np.full(keep.sum(), q)])
            values.append(ws.beta[keep])
        return np.concatenate(where), np.concatenate(values)

    def stop(self, going: np.ndarray) -> None:
        """Keep only the responses still `going` (bool over the live ones)."""
        if self.dense is not None:
            self.dense.stop(going)
        self.grad = self.grad[..., going]
        if self.alpha_last is not None:
            self.alpha_last = self.alpha_last[:, going]
        self.live = self.live[going]
        self.slot = {int(q): j for j, q in enumerate(self.live)}


def lasso_cv_path(
    design: MaskDesign,
    y: np.ndarray,
    basis: np.ndarray,
    folds: np.ndarray,
    rule: str = "1se",
    n_lambdas: int = 100,
    *,
    memory_mb: float = 1536,
    progress: bool = False,
    schedule: str = "auto",
) -> LassoCV:
    """The LASSO of each column of y (m, Q) on `design` with unpenalised `basis` (m, G), lambda by
    K-fold CV (`folds`: each sample's fold id) and `rule`: what methods/lasso.lasso_cv returns.
    `schedule`: 'resident' (every problem's Gram at once, methods/lasso_gram_path.py),
    'sequential' (two Grams at a time), 'sets' (working sets), or 'auto': the first of these
    that fits `memory_mb` (plan_schedule)."""
    if rule not in RULES:
        raise ValueError(f"cv_rule must be one of {RULES}, got {rule!r}")
    n_folds = len(np.unique(folds))
    schedule = plan_schedule(schedule, design.m, design.p, n_folds, design.dtype, memory_mb)
    threads = torch.get_num_threads()
    if schedule != "sets":
        dev = design.device
        problems = Problems(torch.as_tensor(basis, dtype=torch.float64, device=dev), folds, dev)
        y_t = torch.as_tensor(y, dtype=torch.float64, device=dev)
        with _threads(1), threadpool_limits(1, user_api="blas"), _bar(progress, n_lambdas) as bar:
            fit = gram_cv_path(
                design, y_t, problems, rule, n_lambdas, schedule == "resident", threads, bar
            )
        fit.info["schedule"] = schedule
        return fit
    with (
        _threads(1),
        threadpool_limits(1, user_api="blas"),
        ThreadPoolExecutor(threads) as pool,
    ):  # many small products: threads would only synchronise
        return _cv_path(
            design, y, basis, folds, rule, n_lambdas, memory_mb, progress, threads, pool
        )


def schedule_bytes(schedule: str, m: int, p: int, n_folds: int, dtype: torch.dtype) -> int:
    """Bytes a Gram schedule holds beyond the design: the Grams (in the design's dtype; an upper
    bound where they are counted, in float32: lasso_sets.gram_dtype) and the folds' copies of the
    design for the held-out fits (every fold's, or one at a time); working sets ('sets') adapt to
    the budget."""
    itemsize = torch.finfo(dtype).bits // 8
    fold = MaskDesign.stored_bytes(-(-m // n_folds), p, dtype)
    if schedule == "resident":
        return resident_bytes(p, n_folds + 1, itemsize) + n_folds * fold
    return sequential_bytes(p, itemsize) + fold if schedule == "sequential" else 0


def plan_schedule(
    schedule: str, m: int, p: int, n_folds: int, dtype: torch.dtype, memory_mb: float
) -> str:
    """The schedule the path runs for m samples, p columns and n_folds folds: 'auto' takes every
    problem's Gram at once where that fits memory_mb, else two Grams at a time where m >= p,
    else working sets; a Gram schedule asked for by name must fit. Checked before any training."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lasso schedule must be one of {SCHEDULES}, got {schedule!r}")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, (int, float)) or memory_mb <= 0:
        raise ValueError(f"memory_mb must be a positive number of MB, got {memory_mb!r}")
    if schedule != "auto":
        need = schedule_bytes(schedule, m, p, n_folds, dtype) / 2**20
        if need > memory_mb:
            raise ValueError(
                f"the lasso path's {schedule!r} schedule needs {need:,.0f} MB for {m} samples x "
                f"{p} columns ({n_folds} folds), over memory_mb={memory_mb:g}: raise memory_mb to "
                f"at least {need:,.0f}, or set the schedule to 'auto' (it picks what fits)"
            )
        return schedule
    if schedule_bytes("resident", m, p, n_folds, dtype) <= memory_mb * 2**20:
        return "resident"
    # one problem at a time runs every fold down the whole grid, and with m < p the end of the
    # grid nears interpolation (supports ~ m): working sets stop early instead (backdoor n = 5,000:
    # m = 4,915, p = 10,000 took over 3 minutes against 76 s)
    if m >= p and schedule_bytes("sequential", m, p, n_folds, dtype) <= memory_mb * 2**20:
        return "sequential"
    return "sets"


def _bar(progress: bool, n_lambdas: int):
    from tqdm.auto import tqdm

    return tqdm(total=n_lambdas, desc="lasso path", leave=False, disable=not progress)


def _cv_path(
    design, y, basis, folds, rule, n_lambdas, memory_mb, progress, threads, pool
) -> LassoCV:
    _restore_mmap_threshold()
    dev = design.device
    problems = Problems(torch.as_tensor(basis, dtype=torch.float64, device=dev), folds, dev)
    y_t = torch.as_tensor(y, dtype=torch.float64, device=dev)
    path = _Path(design, y_t, problems, n_lambdas, memory_mb, threads, pool)
    m, n_queries = y.shape
    held_out = (torch.arange(m, device=dev), problems.fold + 1)
    errors = np.full((n_queries, m, n_lambdas), np.inf)
    history = {}  # per lambda index: the full fits' nonzero (col, q) and values
    reached = np.zeros(n_queries, dtype=np.int64)
    bar = _bar(progress, n_lambdas)
    for index in range(n_lambdas):
        try:
            resid = path.solve(index)
        except OverBudget as over:
            warnings.warn(
                f"lasso path stopped at lambda {index + 1} of {n_lambdas}: the active sets' Grams "
                f"need {over.args[0] / 2**20:.0f} MB, over memory_mb={memory_mb:g}; lambda is "
                f"chosen among the {index} reached (glmnet's pmax stop)",
                stacklevel=3,
            )
            break
        release_free_memory()  # working-set Grams come and go at growing sizes
        errors[path.live, :, index] = (resid[held_out] ** 2).T.cpu().numpy()
        history[index] = path.full_fit()
        reached[path.live] = index + 1
        bar.update()
        done = early_stop(errors, path.live, index)
        if done.all():
            break
        if done.any():
            path.stop(~done)
    bar.close()
    chosen = choose_lambdas(errors, reached, rule)
    coef = fit_from_history(history, chosen, design.p)
    return cv_result(coef, chosen, errors, path.lambdas, {"schedule": "sets"})
