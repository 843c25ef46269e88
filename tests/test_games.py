"""Reference games: closed-form values against brute force over coalitions and permutations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import beta as beta_dist

from valbench import games


def small_games():
    rng = np.random.default_rng(0)
    pairwise = games.random_pairwise(6, n_pairs=5, seed=1)
    threshold = games.ThresholdGame(6, members=(1, 3, 4), k=2)
    return {
        "additive": games.AdditiveGame(rng.standard_normal(6)),
        "pairwise": pairwise,
        "threshold": threshold,
        "multi": games.MultiQueryGame([pairwise, threshold]),
    }


def brute_shapley(game) -> np.ndarray:
    """Average marginal over all n! orderings."""
    n = game.n_players
    total = 0.0
    for order in itertools.permutations(range(n)):
        masks = np.zeros((n + 1, n), bool)
        for k, player in enumerate(order):
            masks[k + 1 :, player] = True
        u = np.asarray(game(masks))
        marg = np.diff(u, axis=0)
        total = total + marg[np.argsort(order)]
    return (total / math.factorial(n)).T


def brute_set_weighted(game, weight) -> np.ndarray:
    """sum over S not holding i of weight(|S|, n) [U(S + i) - U(S)], by listing all coalitions."""
    n = game.n_players
    out = 0.0
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            for subset in itertools.combinations(others, size):
                s = np.zeros((2, n), bool)
                s[:, list(subset)] = True
                s[1, i] = True
                u = np.asarray(game(s))
                delta = np.zeros((n,) + u.shape[1:])
                delta[i] = u[1] - u[0]
                out = out + weight(size, n) * delta
    return np.asarray(out).T


@pytest.mark.parametrize("name", ["additive", "pairwise", "threshold", "multi"])
def test_closed_forms_match_brute_force(name):
    game = small_games()[name]
    np.testing.assert_allclose(games.shapley(game), brute_shapley(game), atol=1e-10)
    banzhaf = brute_set_weighted(game, lambda k, n: 0.5 ** (n - 1))
    np.testing.assert_allclose(games.banzhaf(game), banzhaf, atol=1e-10)
    grid = [0.2, 0.4, 0.6, 0.8]
    ame = brute_set_weighted(
        game, lambda k, n: np.mean([p**k * (1 - p) ** (n - 1 - k) for p in grid])
    )
    np.testing.assert_allclose(games.ame(game, grid), ame, atol=1e-10)

    def beta_weight(k, n, a=4.0, b=1.0):  # Kwon & Zou's integral, by numerical quadrature
        return quad(lambda t: t**k * (1 - t) ** (n - 1 - k) * beta_dist.pdf(t, b, a), 0, 1)[0]

    np.testing.assert_allclose(
        games.beta_semivalue(game, 4.0, 1.0), brute_set_weighted(game, beta_weight), atol=1e-8
    )

    def range_weight(k, n, lo=0.3, hi=0.9):
        return quad(lambda t: t**k * (1 - t) ** (n - 1 - k), lo, hi)[0] / (hi - lo)

    np.testing.assert_allclose(
        games.ame(game, p_range=(0.3, 0.9)), brute_set_weighted(game, range_weight), atol=1e-10
    )


def test_threshold_game_values_from_the_issue():
    game = games.ThresholdGame(1000)
    expected = np.zeros(1000)
    for values, v in [(games.shapley(game), 1 / 3), (games.banzhaf(game), 1 / 2)]:
        expected[:3] = v
        np.testing.assert_allclose(values, expected, atol=1e-12)
    expected[:3] = 0.4
    np.testing.assert_allclose(games.ame(game, [0.2, 0.4, 0.6, 0.8]), expected, atol=1e-12)
    masks = np.zeros((3, 1000), bool)
    masks[1, [0, 5]] = True
    masks[2, [0, 2, 7]] = True
    np.testing.assert_array_equal(game(masks), [0.0, 0.0, 1.0])


def test_additive_game_values_are_its_weights():
    game, support = games.sparse_additive(300, 7, seed=3)
    assert support.sum() == 7 and np.all(np.abs(game.weights[support]) >= 1)
    for values in (games.shapley(game), games.banzhaf(game), games.ame_sv(game, 0.05)):
        np.testing.assert_allclose(values, game.weights)


def test_ame_sv_target_tends_to_shapley():
    game = games.ThresholdGame(10)
    gaps = [np.abs(games.ame_sv(game, eps) - games.shapley(game)).max() for eps in (0.1, 0.01)]
    assert gaps[1] < gaps[0] / 5


def test_games_reject_bad_construction():
    with pytest.raises(ValueError, match="members"):
        games.ThresholdGame(3, members=(0, 3))
    with pytest.raises(ValueError, match="k must"):
        games.ThresholdGame(5, k=4)
    with pytest.raises(ValueError, match="symmetric"):
        games.AdditiveGame(np.zeros(2), np.array([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="same number"):
        games.MultiQueryGame([games.ThresholdGame(4), games.ThresholdGame(5)])
