"""Knockoff thresholds by hand, and the empirical FDR of AME's knockoff selection over seeds."""

from __future__ import annotations

import numpy as np
import pytest

from valbench import games
from valbench.methods.ame import AME
from valbench.methods.knockoffs import knockoff_select, knockoff_threshold


def test_threshold_by_hand():
    w = np.array([3.0, 2.5, 2.0, 1.5, -1.0, 1.0, 0.5, -0.5, 0.0])
    # t = 0.5: (0 + 2) / 7 > 0.2;  t = 1.0: 1 / 5 = 0.2 <= 0.2  -> knockoff picks t = 1.0
    assert knockoff_threshold(w, 0.2, offset=0) == 1.0
    # knockoff+: t = 1.0: (1 + 1) / 5 = 0.4;  t = 1.5: (1 + 0) / 4 = 0.25;  t = 2.0: 1 / 3 ...
    assert knockoff_threshold(w, 0.2, offset=1) == np.inf
    assert knockoff_threshold(w, 0.3, offset=1) == 1.5
    assert knockoff_threshold(np.zeros(4), 0.1, offset=0) == np.inf


def test_selection_uses_positive_parts():
    beta = np.array([[2.0, 1.0, -3.0, 0.5, 0.0]])
    knock = np.array([[0.0, 0.0, 0.0, 0.0, -2.0]])
    # W = [2, 1, 0, 0.5, 0]: no negative W, so t = 0.5 qualifies (0 / 3)
    np.testing.assert_array_equal(
        knockoff_select(beta, knock, 0.1, "knockoff"), [[True, True, False, True, False]]
    )
    with pytest.raises(ValueError, match="knockoffs"):
        knockoff_select(beta, knock, 0.1, "none")


@pytest.mark.parametrize("kind", ["knockoff+", "knockoff"])
def test_empirical_fdr_near_q(kind):
    """Sparse additive games (n = 200, 20 helpful points): the nulls are exchangeable with their
    knockoffs, so the FDR of the selection stays near q = 0.2 (knockoff+: at most q in expectation)."""
    fdp, power = [], []
    for seed in range(30):
        game, support = games.sparse_additive(200, 20, seed=seed)
        game.weights = np.abs(game.weights)
        selected = AME(budget=200, knockoffs=kind, fdr=0.2).value(game, seed=seed).selected
        fdp.append((selected & ~support).sum() / max(1, selected.sum()))
        power.append((selected & support).sum() / support.sum())
    se = np.std(fdp) / np.sqrt(len(fdp))
    assert np.mean(fdp) <= 0.2 + 2 * se + (0.03 if kind == "knockoff" else 0.0)
    assert np.mean(power) > 0.9
