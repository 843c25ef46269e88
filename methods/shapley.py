"""The Shapley family by permutation sampling: Monte Carlo, truncated Monte Carlo, Beta Shapley.

A uniformly random permutation pi puts player i after a prefix P_i(pi) whose size k is uniform on
0..n-1 and which, given k, is a uniform k-subset of N \\ i. So the marginal U(P_i + i) - U(P_i)
averaged over permutations is the Shapley value (Castro et al. 2009), and reweighting the marginal at
prefix size k by n * P_w(k) turns it into any semivalue with cardinality law P_w (Beta Shapley below).

U(empty) and U(N) are shared by every permutation and evaluated once; each permutation then costs its
n - 1 inner prefixes, handed to the game as one batch (several permutations per call for small n).
Permutations come from one stream seeded by `seed`, so a larger budget starts with the smaller one's
permutations and (through the utility's cache) reuses their evaluations. The stderr of a value is the
standard deviation of its per-permutation estimates over sqrt(#permutations).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import beta as beta_fn
from scipy.stats import betabinom
from tqdm.auto import tqdm

from valbench.types import Game, Problem, Valuation, evaluate

from .base import BaseMethod
from .checks import check_budget, check_players
from .queries import as_columns, per_query
from .sampling import MAX_ROWS, prefix_masks, rng_for
from .timing import Stopwatch


def scatter_marginals(perms: np.ndarray, prefix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-player marginals (G, n, Q) from prefix values (G, n + 1, Q) of permutations (G, n).

    The player at position k gets weights[k] * (U(prefix_{k+1}) - U(prefix_k)).
    """
    by_position = np.diff(prefix, axis=1) * weights[None, :, None]
    out = np.empty_like(by_position)
    np.put_along_axis(out, perms[:, :, None], by_position, axis=1)
    return out


def marginals_valuation(marginals: np.ndarray, single: bool, n_evals: int, seconds: float, **info):
    """Valuation from per-permutation marginals (T, n, Q): their mean and its standard error."""
    n_perms = len(marginals)
    values = marginals.mean(0).T
    stderr = marginals.std(0, ddof=1).T / math.sqrt(n_perms)
    return Valuation(
        per_query(values, single),
        stderr=per_query(stderr, single),
        n_evals=n_evals,
        seconds=seconds,
        info={"n_permutations": n_perms, **info},
    )


def endpoints(game: Game, n: int) -> np.ndarray:
    """U(empty) and U(N), evaluated as one batch: (2,) or (2, Q)."""
    return evaluate(game, np.array([np.zeros(n, bool), np.ones(n, bool)]))


def permutation_semivalue(
    game: Game, budget, seed: int, method: str, weights: np.ndarray | None = None
) -> Valuation:
    """Mean over (budget - 2) // (n - 1) permutations of the (reweighted) prefix marginals.

    `weights[k]` multiplies the marginal at prefix size k (all ones: the Shapley value).
    Minimum budget: 2n (the two endpoints and two permutations, for a stderr).
    """
    n = check_players(game, 2, method)
    budget = check_budget(budget, 2 * n, method)
    weights = np.ones(n) if weights is None else weights
    rng = rng_for(seed)
    n_perms = (budget - 2) // (n - 1)
    per_call = max(1, MAX_ROWS // (n - 1))
    with Stopwatch() as t:
        ends = endpoints(game, n)
        single, ends = ends.ndim == 1, as_columns(ends)
        marginals = []
        for start in tqdm(range(0, n_perms, per_call), desc=method, leave=False, disable=None):
            perms = np.stack([rng.permutation(n) for _ in range(min(per_call, n_perms - start))])
            inner = as_columns(evaluate(game, prefix_masks(perms, np.arange(1, n))))
            prefix = np.concatenate(
                [
                    np.broadcast_to(ends[0], (len(perms), 1, ends.shape[1])),
                    inner.reshape(len(perms), n - 1, -1),
                    np.broadcast_to(ends[1], (len(perms), 1, ends.shape[1])),
                ],
                axis=1,
            )
            marginals.append(scatter_marginals(perms, prefix, weights))
        marginals = np.concatenate(marginals)
    return marginals_valuation(marginals, single, 2 + n_perms * (n - 1), t.seconds)


def beta_weights(n: int, alpha: float, beta: float) -> np.ndarray:
    """Beta(alpha, beta)-Shapley's law of the prefix size k = 0..n-1 (Kwon & Zou 2022).

    Their weight w(j) = n * int_0^1 t^(j-1) (1-t)^(n-j) Beta(t; beta, alpha) dt makes the size of the
    coalition a point joins BetaBinomial(n - 1, beta, alpha); alpha > beta favours small coalitions.
    """
    return betabinom(n - 1, beta, alpha).pmf(np.arange(n))


def beta_set_weights(alpha: float, beta: float):
    """Per-coalition weights w(k) = P(k) / C(n-1, k) for methods.exact.exact_semivalue."""

    def weights(n: int) -> np.ndarray:
        k = np.arange(n)
        return beta_fn(k + beta, n - 1 - k + alpha) / beta_fn(beta, alpha)

    return weights


class MonteCarloShapley(BaseMethod):
    """Shapley values by permutation sampling (Castro et al. 2009; Ghorbani & Zou 2019 without
    truncation): the mean marginal contribution over random permutations."""

    def __init__(self, budget: int = 2500) -> None:
        self.budget = budget

    def min_budget(self, n_players: int) -> int:
        return 2 * n_players

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        return permutation_semivalue(game, self.budget, seed, "mc_shapley")


class ReferenceShapley(MonteCarloShapley):
    """Monte Carlo Shapley on a permutation stream of its own, for a large-budget reference.

    MC and TMC Shapley both draw their permutations from rng_for(seed), and a larger budget extends
    a smaller one's permutations; a reference run with the same seed would contain the estimates'
    permutations and understate their error. This one draws from rng_for(seed + seed_offset): the
    same problem (the run's seed still fixes the data), permutations independent of every swept
    seed below `seed_offset`.
    """

    def __init__(self, budget: int = 320_000, seed_offset: int = 1_000_000) -> None:
        super().__init__(budget)
        self.seed_offset = seed_offset

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        if not isinstance(self.seed_offset, int) or self.seed_offset <= 0:
            raise ValueError(
                f"sv_reference: seed_offset must be a positive integer, got {self.seed_offset!r}"
            )
        valuation = permutation_semivalue(
            game, self.budget, seed + self.seed_offset, "sv_reference"
        )
        valuation.info.update(seed_offset=self.seed_offset)
        return valuation


class BetaShapley(BaseMethod):
    """Beta(alpha, beta)-Shapley (Kwon & Zou 2022) by permutation sampling with reweighting.

    A permutation's marginal at prefix size k is reweighted by n * P(k), P the BetaBinomial(n - 1,
    beta, alpha) law of `beta_weights`: unbiased, since permutation sampling draws k uniformly.
    (1, 1) is the Shapley value; the paper recommends (16, 1) for finding mislabelled points.
    """

    def __init__(self, budget: int = 2500, alpha: float = 4.0, beta: float = 1.0) -> None:
        self.budget, self.alpha, self.beta = budget, alpha, beta

    def min_budget(self, n_players: int) -> int:
        return 2 * n_players

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        for name in ("alpha", "beta"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"beta_shapley: {name} must be positive, got {getattr(self, name)!r}"
                )
        n = game.n_players
        weights = n * beta_weights(n, self.alpha, self.beta)
        valuation = permutation_semivalue(game, self.budget, seed, "beta_shapley", weights)
        valuation.info.update(alpha=self.alpha, beta=self.beta)
        return valuation


class TruncatedMonteCarloShapley(BaseMethod):
    """Truncated Monte Carlo Shapley (Ghorbani & Zou 2019, Algorithm 1).

    A permutation is scanned in chunks of `chunk` prefixes (each chunk one batch, several
    permutations per call); once |U(N) - U(prefix)| <= tol * |U(N)| the remaining marginals of that
    permutation are set to 0 and its remaining prefixes are not evaluated. With Q queries a query's
    marginals stop at its own truncation point and the permutation stops when every query has.
    A permutation starts only when the unspent budget covers all its n - 1 prefixes, so every started
    permutation finishes within the budget. `chunk=None` uses ceil(n / 16). When few permutations
    are active (a budget of a few permutations' worth), each scans more prefixes per call, so that a
    call holds at least `fill` masks: a batched engine's cost is mostly per call, and the prefixes
    scanned past a truncation point (spent, not used) cost less than the calls they save.
    """

    def __init__(
        self, budget: int = 2500, tol: float = 0.01, chunk: int | None = None, fill: int = 1024
    ) -> None:
        self.budget, self.tol, self.chunk, self.fill = budget, tol, chunk, fill

    def min_budget(self, n_players: int) -> int:
        return 2 * n_players

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        if not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise ValueError(f"tmc_shapley: tol must be a number >= 0, got {self.tol!r}")
        n = check_players(game, 2, "tmc_shapley")
        budget = check_budget(self.budget, 2 * n, "tmc_shapley")
        chunk = math.ceil(n / 16) if self.chunk is None else int(self.chunk)
        if chunk < 1:
            raise ValueError(f"tmc_shapley: chunk must be a positive integer, got {self.chunk!r}")
        rng = rng_for(seed)
        with Stopwatch() as t:
            ends = endpoints(game, n)
            single, ends = ends.ndim == 1, as_columns(ends)
            spent, reserved = 2, 0
            active: list[_Scan] = []
            marginals, cut_sizes = [], []
            slots = max(1, MAX_ROWS // chunk)
            while True:
                while len(active) < slots and budget - spent - reserved >= n - 1:
                    active.append(_Scan(rng.permutation(n), ends, self.tol))
                    reserved += n - 1
                if not active:
                    break
                step = max(chunk, -(-self.fill // len(active)))  # a call of >= `fill` masks
                sizes = [np.arange(s.next, min(s.next + step, n)) for s in active]
                masks = np.concatenate(
                    [prefix_masks(s.perm[None], k) for s, k in zip(active, sizes, strict=True)]
                )
                values = as_columns(evaluate(game, masks))
                spent += len(masks)
                reserved -= len(masks)
                offsets = np.cumsum([0] + [len(k) for k in sizes])
                for s, k, lo, hi in zip(active, sizes, offsets[:-1], offsets[1:], strict=True):
                    s.record(k, values[lo:hi])
                for s in [s for s in active if s.done]:
                    reserved -= n - s.next
                    marginals.append(s.marginals())
                    cut_sizes.append(s.next)
                    active.remove(s)
            marginals = np.stack(marginals)
        return marginals_valuation(
            marginals,
            single,
            spent,
            t.seconds,
            mean_prefixes_evaluated=float(np.mean(cut_sizes)) - 1,
        )


class _Scan:
    """One permutation of truncated Monte Carlo: its prefix values so far and per-query cut points."""

    def __init__(self, perm: np.ndarray, ends: np.ndarray, tol: float) -> None:
        n, n_queries = len(perm), ends.shape[1]
        self.perm, self.tol, self.next = perm, tol, 1
        self.prefix = np.full((n + 1, n_queries), np.nan)
        self.prefix[0], self.prefix[n] = ends
        self.cut = np.full(n_queries, n)  # first prefix size where each query's scan stops

    @property
    def done(self) -> bool:
        return self.next >= len(self.perm) or bool(np.all(self.cut < len(self.perm)))

    def record(self, sizes: np.ndarray, values: np.ndarray) -> None:
        full = self.prefix[-1]
        self.prefix[sizes] = values
        close = np.abs(full - values) <= self.tol * np.abs(full)  # (chunk, Q)
        for q in np.flatnonzero(self.cut == len(self.perm)):
            hits = np.flatnonzero(close[:, q])
            if len(hits):
                self.cut[q] = sizes[hits[0]]
        self.next = int(sizes[-1]) + 1

    def marginals(self) -> np.ndarray:
        """(n, Q) per-player marginals, zero after each query's truncation point."""
        prefix = self.prefix.copy()
        for q, k in enumerate(self.cut):
            prefix[k + 1 :, q] = prefix[k, q]
        return scatter_marginals(self.perm[None], prefix[None], np.ones(len(self.perm)))[0]
