"""Reference games whose exact values are known in closed form, for testing the estimators.

Every value computed here is a mixture of the same building block, the expected marginal contribution
when every other point joins independently with probability t (the gradient of the multilinear
extension, Owen 1972):

    g_i(t) = E_{S ~ Bernoulli(t)^(N \\ i)} [U(S + i) - U(S)],

which each game gives in closed form (`marginal_at`). Then, with the mixing law of t:

    Shapley       t ~ Uniform[0, 1]                      (Owen's integral formula)
    Banzhaf       t = 1/2
    Beta(a, b)    t ~ Beta(b, a)   (Kwon & Zou 2022: weight on t^(b-1) (1-t)^(a-1))
    AME(P)        t ~ P, a grid (uniform over its values) or Uniform[lo, hi] (Lin et al. 2022)
    AME-SV(eps)   t ~ Uniform[eps, 1 - eps]  (the limit of the AME-SV regression, see methods/ame.py)

The integrals use Gauss quadrature, exact for these polynomial g. Nothing here calls an estimator.
Games are plain objects with `n_players` and `__call__(masks)`; values are (B,) or, for
`MultiQueryGame`, (B, Q).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import comb, roots_jacobi, roots_legendre

_NODES = 64  # Gauss nodes: exact for polynomials in t of degree < 128


class AdditiveGame:
    """U(S) = sum_{i in S} a_i + sum_{i < j, both in S} B_ij: additive, plus optional pairwise terms.

    g_i(t) = a_i + t * sum_j B_ij (each partner j is present with probability t).
    """

    def __init__(self, weights: np.ndarray, pairwise: np.ndarray | None = None) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.ndim != 1:
            raise ValueError(f"weights must be a vector (n,), got shape {self.weights.shape}")
        self.n_players = len(self.weights)
        if pairwise is not None:
            pairwise = np.asarray(pairwise, dtype=np.float64)
            if pairwise.shape != (self.n_players, self.n_players):
                raise ValueError(f"pairwise must be ({self.n_players}, {self.n_players})")
            if not np.allclose(pairwise, pairwise.T) or np.any(np.diag(pairwise) != 0):
                raise ValueError("pairwise must be symmetric with a zero diagonal")
        self.pairwise = pairwise

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        m = np.asarray(masks, dtype=np.float64)
        values = m @ self.weights
        if self.pairwise is not None:
            values += 0.5 * np.einsum("bi,bi->b", m @ self.pairwise, m)
        return values

    def marginal_at(self, t: float) -> np.ndarray:
        if self.pairwise is None:
            return self.weights.copy()
        return self.weights + t * self.pairwise.sum(1)


class ThresholdGame:
    """U(S) = 1 if at least `k` of the `members` are in S, else 0.

    For a member, g_i(t) = P(exactly k - 1 of the other |T| - 1 members present)
    = C(|T| - 1, k - 1) t^(k-1) (1 - t)^(|T|-k); every other point is a null player (g = 0).
    With T = {0, 1, 2}, k = 2: Shapley 1/3 and Banzhaf 1/2 per member, AME(0.2..0.8 grid) 0.4.
    """

    def __init__(self, n_players: int, members: Sequence[int] = (0, 1, 2), k: int = 2) -> None:
        self.n_players = int(n_players)
        self.members = np.asarray(members, dtype=np.int64)
        if len(set(self.members.tolist())) != len(self.members) or not (
            0 <= self.members.min() and self.members.max() < self.n_players
        ):
            raise ValueError(f"members must be distinct players in [0, {n_players}), got {members}")
        if not 1 <= k <= len(self.members):
            raise ValueError(f"k must lie in [1, {len(self.members)}], got {k}")
        self.k = int(k)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return (np.asarray(masks)[:, self.members].sum(1) >= self.k).astype(np.float64)

    def marginal_at(self, t: float) -> np.ndarray:
        size = len(self.members)
        g = np.zeros(self.n_players)
        g[self.members] = (
            comb(size - 1, self.k - 1) * t ** (self.k - 1) * (1 - t) ** (size - self.k)
        )
        return g


class MultiQueryGame:
    """Q games over the same players as one game with values (B, Q) (like per-query utilities)."""

    def __init__(self, games: Sequence) -> None:
        self.games = list(games)
        sizes = {g.n_players for g in self.games}
        if len(sizes) != 1:
            raise ValueError(f"all games must have the same number of players, got {sorted(sizes)}")
        self.n_players = sizes.pop()
        self.n_queries = len(self.games)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return np.stack([g(masks) for g in self.games], axis=1)

    def marginal_at(self, t: float) -> np.ndarray:
        return np.stack([g.marginal_at(t) for g in self.games])


def sparse_additive(
    n: int, k: int, effect: float = 1.0, background: float = 0.0, seed: int = 0
) -> tuple[AdditiveGame, np.ndarray]:
    """An additive game with `k` random points of effect `effect` * (1 + Uniform[0, 1]) and random
    signs, the rest N(0, background^2); returns the game and the bool support of the large effects."""
    rng = np.random.default_rng(seed)
    support = np.zeros(n, dtype=bool)
    support[rng.choice(n, size=k, replace=False)] = True
    weights = background * rng.standard_normal(n)
    weights[support] = effect * (1 + rng.random(k)) * rng.choice([-1.0, 1.0], size=k)
    return AdditiveGame(weights), support


def random_pairwise(n: int, n_pairs: int, seed: int = 0) -> AdditiveGame:
    """Additive N(0, 1) effects plus `n_pairs` random pairwise interactions of size N(0, 1)."""
    rng = np.random.default_rng(seed)
    b = np.zeros((n, n))
    pairs = rng.choice(n * (n - 1) // 2, size=n_pairs, replace=False)
    rows, cols = np.triu_indices(n, 1)
    b[rows[pairs], cols[pairs]] = rng.standard_normal(n_pairs)
    return AdditiveGame(rng.standard_normal(n), b + b.T)


def _mix(game, nodes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return sum(w * game.marginal_at(float(t)) for t, w in zip(nodes, weights, strict=True))


def beta_semivalue(game, alpha: float, beta: float) -> np.ndarray:
    """Beta(alpha, beta)-Shapley (Kwon & Zou 2022): E_{t ~ Beta(beta, alpha)} g(t)."""
    x, w = roots_jacobi(_NODES, alpha - 1, beta - 1)  # weight (1 - x)^(alpha-1) (1 + x)^(beta-1)
    return _mix(game, (1 + x) / 2, w / w.sum())


def shapley(game) -> np.ndarray:
    """Shapley values: int_0^1 g(t) dt."""
    return beta_semivalue(game, 1.0, 1.0)


def banzhaf(game) -> np.ndarray:
    """Banzhaf values: g(1/2)."""
    return game.marginal_at(0.5)


def uniform_average(game, lo: float, hi: float) -> np.ndarray:
    """(1 / (hi - lo)) int_lo^hi g(t) dt."""
    x, w = roots_legendre(_NODES)
    return _mix(game, lo + (hi - lo) * (1 + x) / 2, w / 2)


def ame(game, p_grid: Sequence[float] | None = None, p_range=None) -> np.ndarray:
    """AME(P) (Lin et al. 2022): the mean of g over the grid, or its average over [lo, hi]."""
    if p_range is not None:
        return uniform_average(game, *p_range)
    return np.mean([game.marginal_at(float(p)) for p in p_grid], axis=0)


def ame_sv(game, eps: float) -> np.ndarray:
    """What AME-SV estimates for a given eps: the average of g over [eps, 1 - eps]."""
    return uniform_average(game, eps, 1 - eps)


class BackdoorGame:
    """A backdoor-like game with Q queries, where k random points (`poisons`, bool (n,)) act together:

    U_q(S) = sigmoid((|S & poisons| - k/2) / (k/8)) + e_q(S),   e_q ~ N(0, sigma^2) i.i.d.,

    so one poison matters most when about half of them are present and little once the backdoor is
    in force (it saturates); every other point is a null player. The noise is drawn per call from a
    generator seeded by `seed`, independently per query (the same masks give the same values only
    when called in the same order). The shape of the AME paper's poison experiments (Sec. 5.1)."""

    def __init__(
        self, n_players: int, k: int, n_queries: int = 20, sigma: float = 0.1, seed: int = 0
    ):
        if not 1 <= k <= n_players:
            raise ValueError(f"k (poisons) must lie in [1, {n_players}], got {k}")
        rng = np.random.default_rng(seed)
        self.n_players, self.k, self.n_queries, self.sigma = (
            int(n_players),
            int(k),
            int(n_queries),
            sigma,
        )
        self.poisons = np.zeros(n_players, dtype=bool)
        self.poisons[rng.choice(n_players, size=k, replace=False)] = True
        self._noise = np.random.default_rng([seed, 1])

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        count = np.asarray(masks)[:, self.poisons].sum(1)
        clean = 1 / (1 + np.exp(-(count - self.k / 2) / (self.k / 8)))
        noise = self.sigma * self._noise.standard_normal((len(count), self.n_queries))
        return clean[:, None] + noise
