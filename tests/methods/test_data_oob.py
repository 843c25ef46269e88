"""Data-OOB: bootstrap multiplicities, the out-of-bag accuracy, flipped labels found on digits."""

from __future__ import annotations

import numpy as np
import pytest

import valbench
from valbench.methods.data_oob import DataOOB, bootstrap_counts, out_of_bag_accuracy

SMALL = ["dataset.n_train=300", "dataset.n_val=100", "progress=false"]


def test_bootstrap_counts_are_seeded_resamples():
    counts = bootstrap_counts(50, 400, np.random.default_rng(0))
    assert counts.shape == (400, 50) and (counts.sum(1) == 50).all()
    assert np.array_equal(counts, bootstrap_counts(50, 400, np.random.default_rng(0)))
    assert (counts == 0).mean() == pytest.approx((1 - 1 / 50) ** 50, abs=0.01)  # ~ e^-1 left out


def test_out_of_bag_accuracy_by_hand():
    counts = np.array([[0, 2, 1, 0], [1, 0, 1, 2], [0, 1, 2, 1]])
    correct = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 1, 1]], bool)
    psi, never = out_of_bag_accuracy(counts, correct)
    # point 0: out of bag in models 0 and 2 -> (1 + 0) / 2; point 1: model 1 -> 1;
    # point 2: never out of bag -> the mean of the others; point 3: model 0 -> 0
    assert psi[[0, 1, 3]] == pytest.approx([0.5, 1.0, 0.0])
    assert psi[2] == pytest.approx(0.5) and never == 1


def test_finds_flipped_labels_on_digits():
    problem = valbench.load_problem("digits", "mislabel", overrides=SMALL)
    valuation = DataOOB(n_models=50).value(problem.game, seed=0, problem=problem)
    assert valuation.n_evals == 50 and valuation.values.shape == (300,)
    assert ((valuation.values >= 0) & (valuation.values <= 1)).all()
    metrics = valbench.score(valuation, problem.truth)
    assert metrics["auroc"] > 0.95 and metrics["recall_at_k"] > 0.7  # measured 0.971 and 0.77
    again = DataOOB(n_models=50).value(problem.game, seed=0, problem=problem)
    assert np.array_equal(valuation.values, again.values)


def test_networks_train_on_bootstrap_weights():
    mlp = ["model.widths=[16]", "model.steps=60", "model.batch_size=32", "model.lr=0.01"]
    problem = valbench.load_problem("digits", "mislabel", model="mlp", overrides=[*SMALL, *mlp])
    valuation = DataOOB(n_models=8).value(problem.game, seed=1, problem=problem)
    assert valbench.score(valuation, problem.truth)["auroc"] > 0.8


def test_bad_inputs_fail_before_training(monkeypatch):
    problem = valbench.load_problem("digits", "mislabel", overrides=SMALL)
    monkeypatch.setattr("valbench.methods.data_oob.problem_engine", None)  # no training
    with pytest.raises(ValueError, match="n_models must be an integer >= 2, got 1"):
        DataOOB(n_models=1).value(problem.game, seed=0, problem=problem)
    with pytest.raises(ValueError, match="data_oob is model-based"):
        DataOOB().value(problem.game, seed=0)
    other = valbench.types.Problem(problem.split, problem.truth, {"name": "tree"}, problem.game)
    with pytest.raises(ValueError, match="the problem's model is 'tree'"):
        DataOOB().value(problem.game, seed=0, problem=other)
