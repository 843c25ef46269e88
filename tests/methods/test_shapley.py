"""Permutation-sampling estimators (MC, truncated MC, Beta Shapley) against exact values."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import within_stderr, z_scores

from valbench import games
from valbench.methods.exact import exact_semivalue
from valbench.methods.shapley import (
    BetaShapley,
    MonteCarloShapley,
    TruncatedMonteCarloShapley,
    beta_set_weights,
)

THRESHOLD = games.ThresholdGame(1000)  # U = 1 if at least 2 of players 0-2: Shapley 1/3 each
PAIRWISE = games.random_pairwise(40, n_pairs=60, seed=4)


def estimators(budget):
    return {
        "mc": (MonteCarloShapley(budget), games.shapley),
        "tmc": (TruncatedMonteCarloShapley(budget, tol=0.0), games.shapley),
        "beta": (BetaShapley(budget, 4.0, 1.0), lambda g: games.beta_semivalue(g, 4.0, 1.0)),
    }


@pytest.mark.parametrize("name", ["mc", "tmc", "beta"])
def test_threshold_game_within_stderr(name):
    method, exact = estimators(60_000)[name]
    valuation = method.value(THRESHOLD, seed=1)
    within_stderr(valuation.values, valuation.stderr, exact(THRESHOLD))
    assert valuation.n_evals <= 60_000
    assert np.all(valuation.values[3:] == 0)  # null players: every marginal is exactly 0


@pytest.mark.parametrize("name", ["mc", "tmc", "beta"])
def test_pairwise_game_stderr_is_calibrated_and_error_shrinks(name):
    errors = []
    for budget in (40 * 25, 40 * 400):
        method, exact = estimators(budget)[name]
        valuation = method.value(PAIRWISE, seed=2)
        truth = exact(PAIRWISE)
        within_stderr(valuation.values, valuation.stderr, truth)
        errors.append(np.sqrt(np.mean((valuation.values - truth) ** 2)))
    z = z_scores(valuation.values, valuation.stderr, truth)
    assert 0.3 < np.mean(z**2) < 2.5  # stderr neither far too small nor far too large
    assert errors[1] < errors[0] / 2  # 16x the budget: about 1/4 of the error


def test_beta_shapley_matches_exact_enumeration_of_the_beta_semivalue():
    game = games.MultiQueryGame([games.random_pairwise(8, 6, seed=5), games.ThresholdGame(8)])
    exact = exact_semivalue(game, beta_set_weights(16.0, 1.0), "beta").values
    valuation = BetaShapley(budget=20_000, alpha=16.0, beta=1.0).value(game, seed=0)
    assert valuation.values.shape == (2, 8)
    within_stderr(valuation.values, valuation.stderr, exact)
    np.testing.assert_allclose(exact, games.beta_semivalue(game, 16.0, 1.0), atol=1e-10)


def test_truncation_saves_evaluations_on_the_threshold_game():
    valuation = TruncatedMonteCarloShapley(budget=30_000, tol=0.01).value(THRESHOLD, seed=0)
    # truncation at the second member: about half-way through a permutation on average
    assert valuation.info["mean_prefixes_evaluated"] < 600
    assert valuation.info["n_permutations"] > 30_000 // 999
    within_stderr(valuation.values, valuation.stderr, games.shapley(THRESHOLD))


@pytest.mark.parametrize("name", ["mc", "tmc", "beta"])
def test_larger_budget_starts_with_the_smaller_budgets_masks(name, recording):
    runs = []
    for budget in (300, 900):
        game = recording(PAIRWISE)
        estimators(budget)[name][0].value(game, seed=7)
        runs.append({m.tobytes() for m in game.masks})
    assert runs[0] <= runs[1] and len(runs[0]) < len(runs[1])


@pytest.mark.parametrize("name", ["mc", "tmc", "beta"])
def test_bad_input(name, broken):
    method = estimators(50)[name][0]
    with pytest.raises(ValueError, match="minimum of 80"):
        method.value(PAIRWISE, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        estimators(1000)[name][0].value(broken(5, "nan"), seed=0)
    with pytest.raises(ValueError, match="shape"):
        estimators(1000)[name][0].value(broken(5, "shape"), seed=0)
    with pytest.raises(ValueError, match="tol"):
        TruncatedMonteCarloShapley(1000, tol=-1).value(PAIRWISE, seed=0)
    with pytest.raises(ValueError, match="alpha"):
        BetaShapley(1000, alpha=0).value(PAIRWISE, seed=0)
