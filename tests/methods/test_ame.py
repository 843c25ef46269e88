"""AME-LASSO and AME-SV against closed-form AME values of the reference games."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import within_stderr

from valbench import games
from valbench.methods.ame import AME, AMESV

GRID = [0.2, 0.4, 0.6, 0.8]


def check_against(valuation, exact, z=5.0):
    """Within z stderr plus the LASSO's shrinkage (about lambda in value units) of exact values."""
    threshold = np.asarray(valuation.info["threshold"])
    slack = threshold[:, None] if valuation.values.ndim == 2 else threshold[0]
    within_stderr(valuation.values, valuation.stderr, exact, z=z, slack=slack)


def test_additive_game_values_are_in_utility_units():
    game = games.AdditiveGame(np.random.default_rng(0).standard_normal(100))
    valuation = AME(budget=2000).value(game, seed=0)
    check_against(valuation, game.weights)
    # the slope of the values on the weights is 1: not 1/v^2 (dividing by v) nor z-scored rows
    slope = np.polyfit(game.weights, valuation.values, 1)[0]
    assert 0.9 < slope <= 1.0
    assert valuation.info["scale"] == pytest.approx(np.mean([1 / (p * (1 - p)) for p in GRID]))


def test_threshold_game_n1000():
    game = games.ThresholdGame(1000)  # at least 2 of players 0-2: AME on the default grid = 0.4
    valuation = AME(budget=1500).value(game, seed=1)
    exact = games.ame(game, GRID)
    assert exact[0] == pytest.approx(0.4)
    check_against(valuation, exact)
    assert np.all(valuation.values[:3] > 0.25) and np.all(np.abs(valuation.values[3:]) < 0.1)


def test_p_range_and_ame_sv_targets():
    game = games.random_pairwise(60, n_pairs=40, seed=2)
    ame = AME(budget=1500, p_range=[0.1, 0.9]).value(game, seed=3)
    check_against(ame, games.ame(game, p_range=(0.1, 0.9)))
    sv = AMESV(budget=2000, eps=0.01).value(game, seed=3)
    check_against(sv, games.ame_sv(game, 0.01))
    assert np.corrcoef(sv.values, games.shapley(game))[0, 1] > 0.95


def test_error_shrinks_with_budget():
    game = games.random_pairwise(100, n_pairs=50, seed=4)
    exact = games.ame(game, GRID)
    errors = [
        np.sqrt(np.mean((AME(budget=m).value(game, seed=5).values - exact) ** 2))
        for m in (400, 3200)
    ]
    assert errors[1] < 0.6 * errors[0]


def test_many_queries_equal_one_fit_per_query():
    parts = [games.random_pairwise(80, 30, seed=s) for s in range(3)] + [games.ThresholdGame(80)]
    multi = AME(budget=800, knockoffs="knockoff+").value(games.MultiQueryGame(parts), seed=6)
    assert multi.values.shape == multi.stderr.shape == multi.selected.shape == (4, 80)
    for q, part in enumerate(parts):
        single = AME(budget=800, knockoffs="knockoff+").value(part, seed=6)
        np.testing.assert_allclose(multi.values[q], single.values, atol=1e-10)
        np.testing.assert_array_equal(multi.selected[q], single.selected)


def test_sparse_support_recovery_n2000_k10():
    """k = 10 points of large effect among n = 2000: found within 8 k log2(n) = 877 evaluations."""
    n, k = 2000, 10
    game, support = games.sparse_additive(n, k, seed=0)
    game.weights = np.abs(game.weights)  # knockoff selection keeps the points that help
    valuation = AME(budget=int(8 * k * np.log2(n)), knockoffs="knockoff+", fdr=0.1).value(
        game, seed=0
    )
    hits = (valuation.selected & support).sum()
    assert hits / max(1, valuation.selected.sum()) >= 0.9 and hits / k >= 0.9
    # the ranking alone finds them with half that budget
    ranking = AME(budget=int(4 * k * np.log2(n))).value(game, seed=1).values
    assert support[np.argsort(-ranking)[:k]].mean() >= 0.9


def test_cv_rule_keeps_small_effects():
    """Many small effects and few samples: the 1-SE rule must not zero every coefficient."""
    weights = 0.05 * np.random.default_rng(7).standard_normal(300)
    game = games.MultiQueryGame([games.AdditiveGame(weights), games.ThresholdGame(300)])
    for rule in ("1se", "min"):
        valuation = AME(budget=300, cv_rule=rule).value(game, seed=7)
        assert min(valuation.info["n_nonzero"]) > 0
        assert np.corrcoef(valuation.values[0], weights)[0, 1] > 0.5


def test_larger_budget_starts_with_the_smaller_budgets_masks(recording):
    runs = []
    for budget in (100, 400):
        game = recording(games.ThresholdGame(50))
        AMESV(budget=budget).value(game, seed=8)
        runs.append(np.array(game.masks))
    np.testing.assert_array_equal(runs[1][:100], runs[0])


@pytest.mark.parametrize(
    "method, message",
    [
        (AME(budget=40), "minimum of 50"),
        (AME(p_grid=[0.0, 0.5]), r"p_grid values must lie in \(0, 1\)"),
        (AME(p_grid=[]), "p_grid"),
        (AME(p_range=[0.5, 1.2]), r"p_range values must lie in \(0, 1\)"),
        (AME(p_range=[0.6, 0.4]), "lo < hi"),
        (AMESV(eps=0.5), r"eps must lie in \(0, 0.5\)"),
        (AMESV(eps=0.0), r"eps must lie in \(0, 0.5\)"),
        (AME(fdr=1.0, knockoffs="knockoff"), r"fdr \(q\) must lie in \(0, 1\)"),
        (AME(fdr=0.0), r"fdr \(q\) must lie in \(0, 1\)"),
        (AME(cv_rule="best"), "cv_rule must be one of"),
        (AME(knockoffs="yes"), "knockoffs must be one of"),
        (AME(cv_folds=1), "cv_folds must be an integer >= 2"),
    ],
)
def test_bad_parameters(method, message, recording):
    game = recording(games.ThresholdGame(20))
    with pytest.raises(ValueError, match=message):
        method.value(game, seed=0)
    assert game.masks == []  # refused before any evaluation


@pytest.mark.parametrize("kind, message", [("nan", "non-finite"), ("shape", "shape")])
def test_bad_games(kind, message, broken):
    with pytest.raises(ValueError, match=message):
        AME(budget=100).value(broken(10, kind), seed=0)
