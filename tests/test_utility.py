from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from valbench.datasets import prepare
from valbench.types import evaluate
from valbench.utility import SklearnUtility, score_probs


def test_reference_matches_a_plain_fit_on_the_subset(digits_split):
    game = SklearnUtility(digits_split, metric="val_accuracy", progress=False)
    mask = np.random.default_rng(0).random(digits_split.n_train) < 0.6
    clf = LogisticRegression(C=1.0, max_iter=500).fit(
        digits_split.x_train[mask], digits_split.y_train[mask]
    )
    expected = (clf.predict(digits_split.x_val) == digits_split.y_val).mean()
    assert game(mask[None])[0] == pytest.approx(expected, abs=1.5 / len(digits_split.y_val))


def test_reference_fits_the_weighted_objective_on_the_rows_of_s(digits_split):
    """A coalition with every class is fitted on its rows alone, one missing a class on all rows
    with weights 0 off S: both minimise C sum_i m_i CE_i + ||W||^2 / 2 (at a tight tolerance, the
    weighted all-row fit's optimum)."""
    x, y = digits_split.x_train.astype(np.float64), digits_split.y_train
    masks = np.random.default_rng(1).random((2, digits_split.n_train)) < 0.5
    masks[1] &= y != 3  # class 3 absent
    game = SklearnUtility(digits_split, tol=1e-9, max_iter=5000, progress=False)
    got = game._predict_proba(masks, digits_split.x_val)
    for mask, probs in zip(masks, got, strict=True):
        weighted = LogisticRegression(tol=1e-9, max_iter=5000)
        weighted.fit(x, y, sample_weight=mask.astype(np.float64))
        assert probs == pytest.approx(weighted.predict_proba(digits_split.x_val), abs=1e-5)
    assert got[1][:, 3].max() < 1e-3  # the absent class keeps its column, near 0


def test_empty_and_one_class_coalitions_use_the_smoothed_constant_predictor(digits_split):
    game = SklearnUtility(digits_split, metric="val_loglik", progress=False)
    empty = np.zeros(digits_split.n_train, bool)
    one_class = digits_split.y_train == 3
    values = game(np.stack([empty, one_class]))
    assert values[0] == pytest.approx(np.log(1 / 10))
    k = one_class.sum()
    p = np.where(digits_split.y_val == 3, (k + 1) / (k + 10), 1 / (k + 10))
    assert values[1] == pytest.approx(np.log(p).mean())
    acc = SklearnUtility(digits_split, metric="val_accuracy", progress=False)(one_class[None])
    assert acc[0] == pytest.approx((digits_split.y_val == 3).mean())


def test_cache_and_counter(digits_split):
    game = SklearnUtility(digits_split, metric="val_loglik", progress=False)
    masks = np.random.default_rng(1).random((3, digits_split.n_train)) < 0.5
    first = game(np.vstack([masks, masks[:1]]))
    assert game.n_trainings == 3 and first[0] == first[3]
    again = game(masks[::-1])
    assert game.n_trainings == 3 and np.array_equal(again, first[:3][::-1])


def test_query_utilities_return_one_value_per_query():
    split, truth = prepare(
        {"name": "digits", "n_train": 150, "n_val": 50, "n_test": 100},
        {"name": "poison", "count": 8, "n_queries": 5},
        seed=0,
    )
    masks = np.random.default_rng(0).random((4, split.n_train)) < 0.5
    prob = SklearnUtility(split, truth, metric="query_prob", progress=False)
    margin = SklearnUtility(split, truth, metric="query_margin", progress=False)
    p, m = evaluate(prob, masks), evaluate(margin, masks)
    assert p.shape == m.shape == (4, 5) and np.all((p >= 0) & (p <= 1))
    assert np.array_equal(m > 0, p > 0.5) or np.all(
        np.abs(p - 0.5) > 1e-3
    )  # margin > 0 iff target wins
    with pytest.raises(ValueError, match="needs triggered queries"):
        SklearnUtility(split, None, metric="query_prob")
    success = SklearnUtility(split, truth, metric="query_accuracy", progress=False)
    assert success.n_queries is None and prob.n_queries == 5
    # one value per coalition: the fraction of queries whose target class wins
    np.testing.assert_allclose(evaluate(success, masks), (m > 0).mean(1))


def test_score_probs_definitions():
    probs = np.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]])
    y = np.array([0, 1])
    assert score_probs(probs, "val_accuracy", y)[0] == 0.5
    assert score_probs(probs, "val_loglik", y)[0] == pytest.approx((np.log(0.7) + np.log(0.1)) / 2)
    assert np.allclose(score_probs(probs, "query_prob", target=2), [[0.1, 0.8]])
    assert np.allclose(
        score_probs(probs, "query_margin", target=2), [[np.log(0.1 / 0.7), np.log(8)]]
    )


@pytest.mark.parametrize(
    "masks, message",
    [
        (np.ones((2, 5), bool), r"masks must have shape \(B, 120\), got \(2, 5\)"),
        (np.full((2, 120), 0.5), "masks must be a bool array"),
    ],
)
def test_bad_masks(digits_split, masks, message):
    with pytest.raises(ValueError, match=message):
        SklearnUtility(digits_split, progress=False)(masks)


def test_bad_utility_settings(digits_split):
    with pytest.raises(ValueError, match="unknown utility 'val_f1'; available: val_accuracy"):
        SklearnUtility(digits_split, metric="val_f1")
    with pytest.raises(ValueError, match="C must be positive, got -1"):
        SklearnUtility(digits_split, C=-1)


def test_evaluate_rejects_nan_and_wrong_shapes():
    class Bad:
        n_players = 3

        def __init__(self, out):
            self.out = out

        def __call__(self, masks):
            return self.out

    masks = np.ones((2, 3), bool)
    with pytest.raises(ValueError, match=r"non-finite values.*1 of 2 masks \[1\]"):
        evaluate(Bad(np.array([1.0, np.nan])), masks)
    with pytest.raises(ValueError, match=r"game returned shape \(3,\) for 2 masks"):
        evaluate(Bad(np.zeros(3)), masks)
