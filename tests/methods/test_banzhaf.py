"""Data Banzhaf (MSR) against exact Banzhaf values."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import within_stderr, z_scores

from valbench import games
from valbench.methods.banzhaf import DataBanzhaf
from valbench.methods.exact import ExactBanzhaf


def test_threshold_game_within_stderr():
    game = games.ThresholdGame(1000)  # Banzhaf 1/2 for players 0-2, 0 for the rest
    valuation = DataBanzhaf(budget=20_000).value(game, seed=0)
    within_stderr(valuation.values, valuation.stderr, games.banzhaf(game))
    assert (
        0.6 < np.mean(z_scores(valuation.values, valuation.stderr, games.banzhaf(game)) ** 2) < 1.5
    )
    assert valuation.n_evals == 20_000


def test_multi_query_stderr_calibrated_and_error_shrinks():
    game = games.MultiQueryGame([games.random_pairwise(12, 10, seed=1), games.ThresholdGame(12)])
    exact = ExactBanzhaf().value(game, seed=0).values
    np.testing.assert_allclose(exact, games.banzhaf(game), atol=1e-12)
    errors = []
    for budget in (500, 8000):
        valuation = DataBanzhaf(budget).value(game, seed=3)
        assert valuation.values.shape == valuation.stderr.shape == (2, 12)
        within_stderr(valuation.values, valuation.stderr, exact)
        errors.append(np.sqrt(np.mean((valuation.values - exact) ** 2)))
    assert 0.3 < np.mean(z_scores(valuation.values, valuation.stderr, exact) ** 2) < 2.5
    assert errors[1] < errors[0] / 2


def test_larger_budget_starts_with_the_smaller_budgets_masks(recording):
    runs = []
    for budget in (100, 5000):
        game = recording(games.ThresholdGame(30))
        DataBanzhaf(budget).value(game, seed=4)
        runs.append(np.array(game.masks))
    np.testing.assert_array_equal(runs[1][:100], runs[0])


def test_bad_input(broken):
    with pytest.raises(ValueError, match="minimum of 64"):
        DataBanzhaf(budget=10).value(games.ThresholdGame(5), seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        DataBanzhaf(budget=100).value(broken(5, "nan"), seed=0)
    with pytest.raises(ValueError, match="shape"):
        DataBanzhaf(budget=100).value(broken(5, "shape"), seed=0)
