from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from valbench import Truth, Valuation, score
from valbench.score import (
    auroc,
    average_precision,
    f1_two_means,
    precision_recall_at_k,
    selection_precision_recall,
)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_ap_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    planted = rng.random(200) < 0.15
    susp = np.round(rng.normal(size=200) + planted, 1)  # rounding makes ties
    assert auroc(susp, planted) == pytest.approx(roc_auc_score(planted, susp))
    assert average_precision(susp, planted) == pytest.approx(average_precision_score(planted, susp))


def test_hand_made_cases():
    planted = np.array([True, True, False, False, False])
    perfect = np.array([5.0, 4, 3, 2, 1])
    assert auroc(perfect, planted) == 1 and average_precision(perfect, planted) == 1
    assert auroc(-perfect, planted) == 0
    assert precision_recall_at_k(np.array([5.0, 1, 4, 2, 0]), planted) == (0.5, 0.5)
    assert auroc(np.ones(5), planted) == 0.5
    assert f1_two_means(np.array([10.0, 9.5, 0.1, 0, 0.2]), planted) == 1.0
    # 2-means flags the high cluster {10, 9.5, 9}: precision 2/3, recall 1 -> F1 0.8
    assert f1_two_means(np.array([10.0, 9.5, 9, 0, 0.2]), planted) == pytest.approx(0.8)
    assert selection_precision_recall(np.array([1, 0, 1, 0, 0], bool), planted) == (0.5, 0.5)
    assert selection_precision_recall(np.zeros(5, bool), planted) == (1.0, 0.0)


def test_score_uses_the_truth_sign_and_reports_every_key():
    planted = np.array([True, False, False, False])
    low = Valuation(np.array([-3.0, 1, 2, 3]))
    metrics = score(low, Truth(planted, "mislabel", sign=-1))
    assert set(metrics) == {
        "auroc",
        "ap",
        "precision_at_k",
        "recall_at_k",
        "f1_2means",
        "sel_precision",
        "sel_recall",
    }
    assert (
        metrics["auroc"] == 1 and metrics["precision_at_k"] == 1 and np.isnan(metrics["sel_recall"])
    )
    assert score(low, Truth(planted, "noise", sign=1))["auroc"] == 0


def test_query_values_are_scored_per_query_and_averaged():
    planted = np.array([True, True, False, False, False, False])
    truth = Truth(
        planted, "poison", sign=1, target=0, x_queries=np.zeros((2, 3)), y_queries=np.ones(2)
    )
    values = np.array([[9.0, 8, 1, 2, 3, 4], [1.0, 8, 9, 2, 3, 4]])
    selected = np.array([[1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0]], bool)
    metrics = score(Valuation(values, selected=selected), truth)
    expected_auc = np.mean([auroc(v, planted) for v in values])
    assert metrics["auroc"] == pytest.approx(expected_auc)
    assert metrics["sel_precision"] == pytest.approx((1 + 0.5) / 2)
    assert metrics["sel_recall"] == pytest.approx((1 + 0.5) / 2)


def test_nothing_planted_gives_nan_and_shape_mismatch_fails():
    truth = Truth(np.zeros(4, bool), "none")
    assert all(np.isnan(v) for v in score(Valuation(np.arange(4.0)), truth).values())
    with pytest.raises(ValueError, match="values have 3 points but the truth has 4"):
        score(Valuation(np.arange(3.0)), truth)


def test_spearman_per_row_against_scipy():
    from scipy.stats import spearmanr

    from valbench.score import spearman

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 20)), rng.normal(size=(3, 20))
    b[1] = np.round(b[1])  # ties are averaged
    expected = [spearmanr(x, y).statistic for x, y in zip(a, b, strict=True)]
    assert spearman(a, b) == pytest.approx(expected)
    assert spearman([1, 2, 3], [3, 4, 5]) == pytest.approx([1.0])
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3])).all()
    with pytest.raises(ValueError, match="one shape"):
        spearman(a, b[:2])
