from __future__ import annotations

import numpy as np
import pytest

from valbench.datasets import corrupt, prepare, stamp


def test_mislabel_flips_exactly_the_planted_points(digits_split):
    split, truth = corrupt(digits_split, "mislabel", seed=0, fraction=0.1)
    assert truth.kind == "mislabel" and truth.sign == -1 and truth.n_planted == 12
    changed = split.y_train != digits_split.y_train
    assert np.array_equal(changed, truth.planted)  # every planted label moved to another class
    assert np.array_equal(split.y_val, digits_split.y_val)  # validation stays clean
    assert np.array_equal(split.x_train, digits_split.x_train)


def test_mislabel_count_pair_mode_and_val_flag(digits_split):
    split, truth = corrupt(
        digits_split, "mislabel", seed=1, count=30, mode="pair", corrupt_val=True
    )
    assert truth.n_planted == 30
    src, dst = digits_split.y_train[truth.planted], split.y_train[truth.planted]
    mapping = {(a, b) for a, b in zip(src, dst, strict=True)}
    assert len({a for a, _ in mapping}) == len(mapping)  # each class goes to one fixed class
    assert all(a != b for a, b in mapping)
    assert (split.y_val != digits_split.y_val).sum() == round(30 / 120 * 80)


def test_noise_moves_only_planted_rows(digits_split):
    split, truth = corrupt(digits_split, "noise", seed=0, fraction=0.25, sigma=2.0)
    moved = np.any(split.x_train != digits_split.x_train, axis=1)
    assert np.array_equal(moved, truth.planted) and truth.n_planted == 30
    assert np.array_equal(split.y_train, digits_split.y_train)


def test_poison_on_images_stamps_patch_and_relabels():
    split, truth = prepare(
        {"name": "digits", "n_train": 300, "n_val": 100, "n_test": 100, "standardize": "none"},
        {"name": "poison", "count": 10, "target": 0, "n_queries": 7, "trigger_size": 2},
        seed=0,
    )
    assert (
        truth.kind == "poison" and truth.sign == 1 and truth.target == 0 and truth.n_planted == 10
    )
    assert np.all(split.y_train[truth.planted] == 0)
    img = split.x_train.reshape(-1, 8, 8)
    assert np.all(img[truth.planted][:, :2, :2] == 16.0)  # digits' pixel maximum
    assert truth.x_queries.shape == (7, 64) and np.all(truth.y_queries != 0)
    assert np.all(truth.x_queries.reshape(-1, 8, 8)[:, :2, :2] == 16.0)
    assert np.array_equal(stamp(truth.x_queries, truth.trigger), truth.x_queries)


def test_poison_on_tabular_data_uses_a_feature_pattern():
    split, truth = prepare(
        {"name": "breast_cancer", "n_train": 200, "n_val": 100, "n_test": 100},
        {"name": "poison", "count": 5, "target": 1, "n_queries": 4, "trigger_size": 3},
        seed=0,
    )
    assert truth.trigger["kind"] == "features" and truth.trigger["mask"].sum() == 3
    cols = truth.trigger["mask"]
    poisoned = split.x_train[truth.planted][:, cols]
    assert np.allclose(poisoned, poisoned[0]) and np.all(
        poisoned > split.x_train[~truth.planted][:, cols].max(0)
    )


@pytest.mark.parametrize(
    "params, message",
    [
        ({"fraction": 1.5}, r"fraction must lie in \[0, 1\], got 1.5"),
        ({"fraction": -0.1}, r"fraction must lie in \[0, 1\], got -0.1"),
        ({"count": 500}, r"count must be an integer in \[0, 120\].*got 500"),
        ({"mode": "swap"}, "unknown mislabel mode 'swap'"),
    ],
)
def test_bad_mislabel_parameters(digits_split, params, message):
    with pytest.raises(ValueError, match=message):
        corrupt(digits_split, "mislabel", seed=0, **params)


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"count": 115, "target": 0},
            "cannot poison 115 points: only 10[0-9] training points are outside target class 0",
        ),
        (
            {"count": 5, "trigger_size": 9},
            r"trigger_size 9 does not fit images of shape \(1, 8, 8\)",
        ),
        ({"count": 5, "n_queries": 0}, "n_queries must be a positive integer, got 0"),
        ({"count": 5, "n_queries": 500}, "n_queries=500 exceeds the"),
        ({"count": 5, "target": 10}, r"target must be a class in \[0, 9\], got 10"),
        ({"count": 5, "trigger_value": [1, 2]}, "trigger_value needs 1 or 1 values"),
    ],
)
def test_bad_poison_parameters(digits_split, params, message):
    with pytest.raises(ValueError, match=message):
        corrupt(digits_split, "poison", seed=0, **params)


def test_unknown_corruption_lists_what_exists(digits_split):
    with pytest.raises(
        ValueError, match="unknown corruption 'flip'; available: none, mislabel, noise, poison"
    ):
        corrupt(digits_split, "flip", seed=0)


def test_bad_noise_sigma(digits_split):
    with pytest.raises(ValueError, match="sigma must be a positive number, got -1"):
        corrupt(digits_split, "noise", seed=0, sigma=-1)
