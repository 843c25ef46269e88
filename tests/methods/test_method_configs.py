"""The subset methods' configs: each builds its method, runs on a plain game, and fails early."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from valbench import games, make_method
from valbench.problem import compose
from valbench.runner import run_job
from valbench.store.records import ARRAYS_NAME

SUBSET_METHODS = {
    "ame": "AME",
    "ame_sv": "AMESV",
    "mc_shapley": "MonteCarloShapley",
    "tmc_shapley": "TruncatedMonteCarloShapley",
    "beta_shapley": "BetaShapley",
    "banzhaf": "DataBanzhaf",
    "exact_shapley": "ExactShapley",
    "exact_banzhaf": "ExactBanzhaf",
}


@pytest.mark.parametrize("name", sorted(SUBSET_METHODS))
def test_config_builds_the_method_and_it_runs(name):
    method = make_method(name)
    assert type(method).__name__ == SUBSET_METHODS[name]
    game = games.ThresholdGame(10)
    valuation = method.value(game, seed=0)
    assert valuation.values.shape == (10,)
    assert 0 < valuation.n_evals <= (method.budget or 2**10)
    exact = games.shapley(game) if "shapley" in name else games.banzhaf(game)
    if name in ("exact_shapley", "exact_banzhaf"):
        np.testing.assert_allclose(valuation.values, exact, atol=1e-12)


def test_quickstart_sweeps_the_sampling_methods():
    cfg = compose(["experiment=quickstart"], return_hydra_config=True)
    swept = set(cfg.hydra.sweeper.params.method.split(","))
    assert swept >= set(SUBSET_METHODS) - {"exact_shapley", "exact_banzhaf"}


def test_bad_method_config_writes_no_valuation(tmp_path):
    cfg = compose(
        ["dataset=wine", "method=ame", "method.p_grid=[0.5,1.5]", "progress=false", "seed=0"]
    )
    with pytest.raises(ValueError, match=r"p_grid values must lie in \(0, 1\), got 1.5"):
        run_job(cfg, tmp_path, "ame")
    assert not (tmp_path / ARRAYS_NAME).exists()
    record = OmegaConf.load(tmp_path / "result.json")
    assert record.status == "error" and record.n_evals is None
