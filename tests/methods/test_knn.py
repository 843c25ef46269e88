"""KNN-Shapley: the closed form against brute-force Shapley values of the same KNN utility."""

from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pytest

import valbench
from valbench.methods.knn import KNNShapley, knn_shapley_values

SMALL = ["dataset.n_train=300", "dataset.n_val=100", "progress=false"]


def knn_utility(subset, order, match, k) -> float:
    """(1/K) * number of the K nearest members of `subset` that carry the evaluation label."""
    members = [i for i in order if i in subset][:k]
    return sum(match[i] for i in members) / k


def brute_force_shapley(x_train, y_train, x, y, k) -> np.ndarray:
    """Shapley values by enumerating every coalition: sum_S |S|! (n-|S|-1)! / n! (U(S+i) - U(S))."""
    n = len(x_train)
    order = list(np.argsort(np.linalg.norm(x_train - x, axis=1), kind="stable"))
    match = y_train == y
    values = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = factorial(size) * factorial(n - size - 1) / factorial(n)
            for subset in combinations(others, size):
                s = set(subset)
                gain = knn_utility(s | {i}, order, match, k) - knn_utility(s, order, match, k)
                values[i] += weight * gain
    return values


@pytest.mark.parametrize("n, k", [(6, 1), (9, 3), (12, 5), (10, 10)])
def test_closed_form_equals_brute_force(n, k):
    rng = np.random.default_rng(n + k)
    x_train, y_train = rng.normal(size=(n, 3)), rng.integers(0, 3, n)  # three classes
    x_eval, y_eval = rng.normal(size=(4, 3)), rng.integers(0, 3, 4)
    got = knn_shapley_values(x_train, y_train, x_eval, y_eval, k)  # all evaluation points at once
    assert got.shape == (4, n)
    for q in range(4):
        want = brute_force_shapley(x_train, y_train, x_eval[q], y_eval[q], k)
        assert got[q] == pytest.approx(want, abs=1e-12)
        # efficiency: the values add up to U(N) - U(empty set)
        order = np.argsort(np.linalg.norm(x_train - x_eval[q], axis=1))
        assert got[q].sum() == pytest.approx((y_train[order[:k]] == y_eval[q]).sum() / k)


def test_finds_flipped_labels_on_digits():
    problem = valbench.load_problem("digits", "mislabel", overrides=SMALL)
    valuation = valbench.make_method("knn_shapley").value(problem.game, seed=0, problem=problem)
    assert valuation.values.shape == (300,) and valuation.n_evals == 0
    metrics = valbench.score(valuation, problem.truth)
    assert metrics["auroc"] > 0.95 and metrics["recall_at_k"] > 0.7  # measured 0.983 and 0.80


def test_model_embedding_and_query_targets():
    mlp = ["model.widths=[16]", "model.steps=50", "model.batch_size=32"]
    problem = valbench.load_problem(
        "digits", "poison", model="mlp", utility="query_prob", overrides=[*SMALL, *mlp]
    )
    raw = KNNShapley(k=5).value(problem.game, seed=0, problem=problem)
    assert raw.values.shape == (10, 300) and raw.info["target"] == "queries"
    embedded = KNNShapley(k=5, embedding="model").value(problem.game, seed=0, problem=problem)
    assert embedded.values.shape == (10, 300) and embedded.n_evals == 1
    assert not np.allclose(raw.values, embedded.values)
    # the triggered queries' nearest neighbours carry the poison's target label
    assert valbench.score(raw, problem.truth)["auroc"] > 0.9


@pytest.mark.parametrize(
    "params, message",
    [
        ({"k": 0}, r"k must be an integer in \[1, 300\], got 0"),
        ({"k": 301}, r"k must be an integer in \[1, 300\], got 301"),
        ({"k": 2.5}, "k must be an integer"),
        ({"embedding": "pca"}, "unknown embedding 'pca'"),
        ({"target": "self"}, "unknown target 'self'"),
    ],
)
def test_bad_inputs(params, message):
    problem = valbench.load_problem("digits", "mislabel", overrides=SMALL)
    with pytest.raises(ValueError, match=message):
        KNNShapley(**params).value(problem.game, seed=0, problem=problem)
    with pytest.raises(ValueError, match="knn_shapley is model-based"):
        KNNShapley().value(problem.game, seed=0)
