"""Exact semivalues by enumeration against the closed forms of the reference games."""

from __future__ import annotations

import numpy as np
import pytest

from valbench import games
from valbench.methods.exact import ExactBanzhaf, ExactShapley, exact_semivalue
from valbench.methods.shapley import beta_set_weights


def reference_games():
    pairwise = games.random_pairwise(9, n_pairs=8, seed=2)
    threshold = games.ThresholdGame(9, members=(0, 4, 8), k=2)
    return [pairwise, threshold, games.MultiQueryGame([pairwise, threshold])]


@pytest.mark.parametrize("game", reference_games())
def test_exact_shapley_and_banzhaf(game):
    shapley = ExactShapley().value(game, seed=0)
    banzhaf = ExactBanzhaf().value(game, seed=0)
    np.testing.assert_allclose(shapley.values, games.shapley(game), atol=1e-10)
    np.testing.assert_allclose(banzhaf.values, games.banzhaf(game), atol=1e-10)
    assert shapley.n_evals == banzhaf.n_evals == 2**9


@pytest.mark.parametrize("alpha, beta", [(4.0, 1.0), (16.0, 1.0), (1.0, 3.0)])
def test_exact_beta_semivalue(alpha, beta):
    game = reference_games()[2]
    valuation = exact_semivalue(game, beta_set_weights(alpha, beta), "beta")
    np.testing.assert_allclose(
        valuation.values, games.beta_semivalue(game, alpha, beta), atol=1e-10
    )


def test_exact_methods_refuse_large_games_and_small_budgets(broken):
    with pytest.raises(ValueError, match="exceeds the limit of 16"):
        ExactShapley().value(games.ThresholdGame(17), seed=0)
    with pytest.raises(ValueError, match="minimum of 1024"):
        ExactBanzhaf(budget=1000).value(games.ThresholdGame(10), seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        ExactShapley().value(broken(4, "nan"), seed=0)
    with pytest.raises(ValueError, match="shape"):
        ExactBanzhaf().value(broken(4, "shape"), seed=0)
