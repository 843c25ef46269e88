"""AME-LASSO: the average marginal effect by randomized subset experiments (Lin et al., ICML 2022).

    AME_i(P) = E_{p ~ P} E_{S ~ Bernoulli(p)^(N \\ i)} [U(S + i) - U(S)]

Each of the m = `budget` samples draws its own p_j ~ P, then includes every point independently with
probability p_j; y_j = U(S_j). With features X_ji = 1/p_j if i is in S_j else -1/(1 - p_j) (mean 0
and variance 1/(p(1 - p)) given p_j), the least-squares coefficient of X_i is

    beta_i = E_p Cov(X_i, y | p) / E_p Var(X_i | p) = AME_i(P) / v,    v = E_p[1 / (p (1 - p))]

(E[X_i y | p] = E[U | i in S, p] - E[U | i not in S, p] = AME_i(p), the marginal effect at p)

so the values returned are v * beta: utility units (on an additive game, the a_i). beta is estimated
by the LASSO (methods/lasso.py), lambda by K-fold cross-validation; one unpenalised indicator column
per grid value of p absorbs E[U | p] (no global intercept then). For a continuous P the unpenalised
columns are a degree-7 polynomial in the uniform variate that drew p (on digits with val_loglik it
left a smaller CV error than a cubic or 16 or 32 bins); any function of p is uncorrelated with the
features, so these columns only remove variance. All Q queries share the samples, the folds and each fold's Gram matrix.

AME-SV: p from the density proportional to 1/(p(1 - p)) on [eps, 1 - eps] and features
X_ji = 1[i in S_j] - p_j. Then Cov(X_i, y | p) = p(1 - p) AME_i(p) and Var(X_i | p) = p(1 - p), so the
least-squares coefficient is the average of AME_i(p) over p ~ Uniform[eps, 1 - eps] (no rescaling):
the Shapley value as eps -> 0.

stderr is the heteroscedasticity-consistent (Eicker-Huber-White HC1) standard error

    se_i = scale * sqrt(m / (m - df) * sum_j X_ji^2 r_j^2) / sum_j X_ji^2,

r the residuals y - X b - B c of the full fit at the chosen lambda, df = nonzero coefficients + basis
columns (the LASSO's degrees of freedom, Zou, Hastie & Tibshirani 2007; inf where df >= m). The
features are uncorrelated by design (E[X_i X_k | p] = 0), so this is the sandwich
(X'X)^-1 X' diag(r^2) X (X'X)^-1 with X'X replaced by its diagonal: the standard error of the one-step
debiased LASSO b_i + X_i' r / sum_j X_ji^2 (Zhang & Zhang 2014; Javanmard & Montanari 2014, with the
design's known diagonal covariance). The error's variance depends on p, which the homoscedastic
sigma^2 / sum_j X_ji^2 misses: utility noise that changes with the coalition's size, and on every
game the part the linear model leaves out (on an additive game X_i's effect is a_i p (1 - p), of
mean a_i / v), weighted by X_i^2 = 1/p^2 or 1/(1-p)^2 at the extreme p. The LASSO value itself is
shrunk towards 0 by about info["threshold"] (lambda in value units: exact for an orthogonal design),
so value +/- 1.96 stderr is a 95% interval where that threshold is small against stderr (strong
dense effects: tests/methods/test_ame_stderr.py); elsewhere allow the threshold as well.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from scipy.special import expit, logit

from valbench.types import Game, Problem, TrainableGame, Valuation, evaluate

from .base import BaseMethod
from .checks import check_budget, check_players
from .knockoffs import KNOCKOFFS, knockoff_select
from .lasso import RULES, lasso_cv, residualise
from .lasso_cd import warm_up
from .lasso_path import lasso_cv_path, plan_schedule, release_free_memory
from .mask_design import MaskDesign
from .queries import as_columns, per_query
from .sampling import bernoulli_masks, rng_for
from .timing import Stopwatch

MIN_SAMPLES_PER_FOLD = 10


def _polynomial(c: np.ndarray, degree: int = 7) -> np.ndarray:
    return c[:, None] ** np.arange(degree + 1)[None, :]


class GridDesign:
    """p uniform over a grid; features 1/p, -1/(1-p); one indicator column per grid value."""

    def __init__(self, grid) -> None:
        self.grid = np.asarray(grid, dtype=np.float64)
        self.scale = float(np.mean(1 / (self.grid * (1 - self.grid))))

    def draw(self, u: np.ndarray) -> np.ndarray:
        return self.grid[np.minimum((u * len(self.grid)).astype(np.int64), len(self.grid) - 1)]

    def coding(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature values (a_j, b_j) of sample j for points in / out of S_j."""
        return 1 / p, -1 / (1 - p)

    def basis(self, p: np.ndarray) -> np.ndarray:
        return (p[:, None] == self.grid[None, :]).astype(np.float64)


class RangeDesign(GridDesign):
    """p ~ Uniform[lo, hi]; features 1/p, -1/(1-p); unpenalised polynomial in p.

    v = (1 / (hi - lo)) int_lo^hi dp / (p (1 - p)) = (logit(hi) - logit(lo)) / (hi - lo).
    """

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi
        self.scale = float((logit(hi) - logit(lo)) / (hi - lo))

    def draw(self, u: np.ndarray) -> np.ndarray:
        return self.lo + (self.hi - self.lo) * u

    def basis(self, p: np.ndarray) -> np.ndarray:
        return _polynomial((2 * p - self.lo - self.hi) / (self.hi - self.lo))


class ShapleyDesign:
    """AME-SV: logit(p) ~ Uniform[-L, L], L = logit(1 - eps) (density prop. to 1/(p(1-p)));
    features 1[i in S] - p; unpenalised polynomial in logit(p) / L; no rescaling."""

    scale = 1.0

    def __init__(self, eps: float) -> None:
        self.half_width = float(logit(1 - eps))

    def draw(self, u: np.ndarray) -> np.ndarray:
        return expit(self.half_width * (2 * u - 1))

    def coding(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return 1 - p, -p

    def basis(self, p: np.ndarray) -> np.ndarray:
        return _polynomial(logit(p) / self.half_width)


def draw_samples(design, seed: int, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The m sampled (p_j, S_j): p_j ~ P, then S_j ~ Bernoulli(p_j)^n; the first rows of a larger m
    are the rows of a smaller one (same seed), so budgets nest and shards of them can be trained
    anywhere (bench/store/evals.py)."""
    p = design.draw(rng_for(seed, 0).random(m))
    return p, bernoulli_masks(rng_for(seed, 1), p, n)


SELECT = ("helpful", "harmful", "auto")
SOLVERS = ("path", "reference")


def check_settings(
    cv_folds, cv_rule, knockoffs, fdr, select, method: str, solver: str = "path"
) -> None:
    """Refuse bad estimator settings before any evaluation, naming the key and what is allowed."""
    if isinstance(cv_folds, bool) or not isinstance(cv_folds, (int, np.integer)) or cv_folds < 2:
        raise ValueError(f"{method}: cv_folds must be an integer >= 2, got {cv_folds!r}")
    if cv_rule not in RULES:
        raise ValueError(f"{method}: cv_rule must be one of {RULES}, got {cv_rule!r}")
    if knockoffs not in KNOCKOFFS:
        raise ValueError(f"{method}: knockoffs must be one of {KNOCKOFFS}, got {knockoffs!r}")
    if not (isinstance(fdr, (int, float)) and 0 < fdr < 1):
        raise ValueError(f"{method}: fdr (q) must lie in (0, 1), got {fdr!r}")
    if select not in SELECT:
        raise ValueError(f"{method}: select must be one of {SELECT}, got {select!r}")
    if solver not in SOLVERS:
        raise ValueError(f"{method}: solver must be one of {SOLVERS}, got {solver!r}")


def fit_ame(
    game: Game,
    seed: int,
    budget,
    design,
    cv_folds: int,
    cv_rule: str,
    knockoffs: str,
    fdr: float,
    method: str,
    select: str = "helpful",
    solver: str = "path",
    memory_mb: float = 1536,
    schedule: str = "auto",
) -> Valuation:
    """Sample, evaluate, regress: the estimator described in the module docstring. A game with
    `train = False` (a store of sharded evaluations) answers only some samples: the others are left
    out (the samples are i.i.d., so any subset of them is a smaller experiment of the same design).
    `select` ('helpful' | 'harmful') is the side the knockoff selection keeps."""
    check_settings(cv_folds, cv_rule, knockoffs, fdr, select, method, solver)
    n = check_players(game, 1, method)
    m = check_budget(budget, MIN_SAMPLES_PER_FOLD * cv_folds, method)
    if solver == "path":  # the path's memory, before any training
        width = n * (1 if knockoffs == "none" else 2)
        try:
            plan_schedule(schedule, m, width, cv_folds, _placement(m, width)["dtype"], memory_mb)
        except ValueError as err:
            raise ValueError(f"{method}: {err}") from None
        warm_up()  # the kernel's compile (or load from disk) stays out of `seconds`: in info
    with Stopwatch() as t:
        p, masks = draw_samples(design, seed, m, n)
        fakes = None if knockoffs == "none" else bernoulli_masks(rng_for(seed, 2), p, n)
        if isinstance(game, TrainableGame) and not game.train:  # answers stored evaluations only
            p, masks, fakes = _stored_only(game, p, masks, fakes, cv_folds, method)
            m = len(masks)
        raw = evaluate(game, masks)
        release_free_memory()  # the training's freed arrays, before the regression's
        parts = [masks] if fakes is None else [masks, fakes]
        del masks, fakes  # the design keeps its own copy of the bits: n = 50,000 needs the room
        with Stopwatch() as t_fit:
            fit, col_sq, stderr, device = _regress(
                design, p, parts, as_columns(raw), seed, cv_folds, cv_rule, solver,
                getattr(game, "progress", False), memory_mb, schedule,
            )  # fmt: skip
            values = design.scale * fit.coef[:, :n]
            stderr = design.scale * stderr
            selected = None
            if knockoffs != "none":
                selected = knockoff_select(fit.coef[:, :n], fit.coef[:, n:], fdr, knockoffs, select)
    single = raw.ndim == 1
    return Valuation(
        per_query(values, single),
        stderr=per_query(stderr, single),
        selected=None if selected is None else per_query(selected, single),
        n_evals=m,
        seconds=t.seconds,
        info=_info(fit, design, m, n, col_sq)
        | {
            "select": select,
            "solver": solver,
            "device": device,
            "seconds_estimate": t_fit.seconds,
        },  # fmt: skip
    )


def _info(fit, design, m: int, n: int, col_sq: np.ndarray) -> dict:
    """The fit's record: lambda (and the value threshold it implies), CV error, support size,
    where on the path lambda was chosen and how far the path ran."""
    return {
        "scale": design.scale,
        "lambda": fit.lam.tolist(),
        "threshold": (fit.lam * design.scale * m / col_sq.mean()).tolist(),
        "cv_error": fit.cv_error.tolist(),
        "n_nonzero": np.count_nonzero(fit.coef[:, :n], axis=1).tolist(),
        "lambda_index": [
            int(np.flatnonzero(row == lam)[0])
            for row, lam in zip(fit.lambdas, fit.lam, strict=True)
        ],
        "lambdas_reached": np.isfinite(fit.cv_curve).sum(1).tolist(),
        **fit.info,  # the path's schedule, coordinate-descent sweeps and compile seconds
    }


def _stored_only(game, p, masks, fakes, cv_folds: int, method: str):
    """The samples whose evaluations the store holds, or an error when too few for the folds."""
    keep = game.stored(masks)
    minimum = MIN_SAMPLES_PER_FOLD * cv_folds
    if keep.sum() < minimum:
        raise ValueError(
            f"{method}: only {keep.sum()} of its {len(masks)} samples have stored evaluations; "
            f"it needs at least {minimum} ({MIN_SAMPLES_PER_FOLD} per fold, {cv_folds} folds)"
        )
    return p[keep], masks[keep], None if fakes is None else fakes[keep]


def _regress(design, p, parts, y, seed, cv_folds, cv_rule, solver, progress, memory_mb, schedule):
    """The LASSO-CV fit of y on the design's features of the masks `parts` ([masks] or [masks,
    knockoff masks]; emptied once the design holds them): by the batched path on the implicit
    design (solver 'path'), or by scikit-learn on the dense design ('reference', for small problems
    and comparisons). Returns the fit, sum_j X_ji^2 of the real points, their standard errors (Q, n)
    in coefficient units (`_sandwich`), the device."""
    m, n = parts[0].shape
    folds = rng_for(seed, 3).permutation(m) % cv_folds
    a, b = design.coding(p)
    basis, every = design.basis(p), np.arange(m)  # the full fit's residuals: over every sample
    if solver == "reference":
        x = np.hstack([np.where(part, a[:, None], b[:, None]) for part in parts])
        fit = lasso_cv(x, y, basis, folds, cv_rule)
        r2 = residualise(basis, y - x @ fit.coef.T, every, every) ** 2
        col_sq = (x[:, :n] ** 2).sum(0)
        return fit, col_sq, _sandwich(fit.coef, basis, col_sq, r2.T @ x[:, :n] ** 2), "cpu"
    width = sum(part.shape[1] for part in parts)
    x = MaskDesign(parts, a, b, **_placement(m, width))
    parts.clear()
    fit = lasso_cv_path(
        x, y, basis, folds, cv_rule, progress=progress, memory_mb=memory_mb, schedule=schedule
    )
    coef = torch.as_tensor(fit.coef.T, dtype=torch.float64, device=x.device)
    r2 = residualise(basis, y - x.matmul(coef).cpu().numpy(), every, every) ** 2
    # sum_j X_ji^2 r_j^2 and sum_j X_ji^2 by one product with the design: X^2 = (a + b) X - a b
    # for X in {a, b}
    w = np.c_[r2, np.ones(m)]
    squares = x.rmatmul(torch.as_tensor((a + b)[:, None] * w, device=x.device))[:n]
    squares = squares.cpu().numpy().T - ((a * b) @ w)[:, None]
    sq_resid, col_sq = squares[:-1], squares[-1]
    return fit, col_sq, _sandwich(fit.coef, basis, col_sq, sq_resid), str(x.device)


def _sandwich(coef, basis, col_sq: np.ndarray, sq_resid: np.ndarray) -> np.ndarray:
    """The HC1 standard errors (Q, n) of the module docstring in coefficient units, from the fit's
    coef (Q, p), the basis (m, G), col_sq = sum_j X_ji^2 (n,) and sq_resid = sum_j X_ji^2 r_j^2
    (Q, n); inf for a query whose df (nonzero coefficients + rank of the basis) reaches m."""
    m = len(basis)
    df = np.count_nonzero(coef, axis=1) + np.linalg.matrix_rank(basis)
    factor = np.where(df < m, m / np.maximum(m - df, 1), np.inf)
    return np.sqrt(factor[:, None] * np.maximum(sq_resid, 0.0)) / col_sq[None, :]


def _placement(m: int, n_columns: int) -> dict:
    """Where the regression runs: CUDA when present, else the CPU; float64 products for small
    designs (exact agreement with the reference), float32 (exact for the masks, accumulated in
    float64 between blocks) once the design has more than 2^24 entries."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float64 if m * n_columns <= 2**24 else torch.float32
    return {"device": device, "dtype": dtype}


def _check_probability(p, name: str, method: str) -> float:
    if not (isinstance(p, (int, float)) and 0 < p < 1):
        raise ValueError(f"{method}: {name} values must lie in (0, 1), got {p!r}")
    return float(p)


class _RandomizedExperiment(BaseMethod, ABC):
    """What AME and AME-SV share: a design (set by the subclass), its samples, the estimator."""

    name = "ame"

    @abstractmethod
    def design(self):
        """The sampling design: draw(u) -> p, coding(p) -> (a, b), basis(p), scale."""

    def min_budget(self, n_players: int) -> int:
        return MIN_SAMPLES_PER_FOLD * self.cv_folds

    def samples(self, n_players: int, seed: int) -> np.ndarray:
        """The coalitions (budget, n_players) this method evaluates: what a shard trains."""
        m = check_budget(self.budget, self.min_budget(n_players), self.name)
        return draw_samples(self.design(), seed, m, n_players)[1]

    def side(self, problem: Problem | None) -> str:
        """The side the knockoff selection keeps: `select`, with 'auto' following the problem's
        truth sign (-1: the planted points are harmful) and 'helpful' without a problem."""
        if self.select != "auto":
            return self.select
        truth = getattr(problem, "truth", None)
        return "harmful" if truth is not None and truth.sign < 0 else "helpful"

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        return fit_ame(
            game,
            seed,
            self.budget,
            self.design(),
            self.cv_folds,
            self.cv_rule,
            self.knockoffs,
            self.fdr,
            self.name,
            self.side(problem),
            self.solver,
            self.memory_mb,
            self.schedule,
        )


class AME(_RandomizedExperiment):
    """AME-LASSO over P = uniform on `p_grid`, or Uniform[lo, hi] when `p_range` is set (it then
    replaces the grid). `knockoffs` ('none' | 'knockoff' | 'knockoff+') adds a selection at FDR `fdr`
    of the points on side `select` ('helpful' | 'harmful' | 'auto'). `solver` 'path' (methods/lasso_path.py)
    or 'reference' (scikit-learn on the dense design); the path's `schedule` ('auto' | 'resident' |
    'sequential' | 'sets', methods/lasso_path.py) within `memory_mb`. `cv_rule` '1se' is this project's
    paired-difference one-standard-error rule (methods/lasso.py), not glmnet's spread of fold means.
    Minimum budget: 10 * cv_folds evaluations."""

    def __init__(
        self,
        budget: int = 2000,
        p_grid=(0.2, 0.4, 0.6, 0.8),
        p_range=None,
        cv_folds: int = 5,
        cv_rule: str = "1se",
        knockoffs: str = "none",
        fdr: float = 0.1,
        select: str = "auto",
        solver: str = "path",
        memory_mb: float = 1536,
        schedule: str = "auto",
    ) -> None:
        self.budget, self.p_grid, self.p_range = budget, p_grid, p_range
        self.cv_folds, self.cv_rule, self.knockoffs, self.fdr = cv_folds, cv_rule, knockoffs, fdr
        self.select, self.solver = select, solver
        self.memory_mb, self.schedule = memory_mb, schedule

    def design(self):
        if self.p_range is not None:
            if len(self.p_range) != 2:
                raise ValueError(f"ame: p_range must be [lo, hi], got {self.p_range!r}")
            lo, hi = (_check_probability(p, "p_range", "ame") for p in self.p_range)
            if not lo < hi:
                raise ValueError(f"ame: p_range needs lo < hi, got {list(self.p_range)}")
            return RangeDesign(lo, hi)
        if self.p_grid is None or len(self.p_grid) == 0:
            raise ValueError("ame: give p_grid (a list of probabilities) or p_range ([lo, hi])")
        return GridDesign(sorted({_check_probability(p, "p_grid", "ame") for p in self.p_grid}))


class AMESV(_RandomizedExperiment):
    """AME-SV: AME-LASSO whose target is the Shapley value averaged over p in [eps, 1 - eps].
    Lambda by the least CV error (`cv_rule` 'min', the authors' lambda_min for their Shapley
    estimator); the other keys as AME's. Minimum budget: 10 * cv_folds evaluations."""

    name = "ame_sv"

    def __init__(
        self,
        budget: int = 2000,
        eps: float = 0.05,
        cv_folds: int = 5,
        cv_rule: str = "min",
        knockoffs: str = "none",
        fdr: float = 0.1,
        select: str = "auto",
        solver: str = "path",
        memory_mb: float = 1536,
        schedule: str = "auto",
    ) -> None:
        self.budget, self.eps = budget, eps
        self.cv_folds, self.cv_rule, self.knockoffs, self.fdr = cv_folds, cv_rule, knockoffs, fdr
        self.select, self.solver = select, solver
        self.memory_mb, self.schedule = memory_mb, schedule

    def design(self) -> ShapleyDesign:
        if not (isinstance(self.eps, (int, float)) and 0 < self.eps < 0.5):
            raise ValueError(f"ame_sv: eps must lie in (0, 0.5), got {self.eps!r}")
        return ShapleyDesign(float(self.eps))
