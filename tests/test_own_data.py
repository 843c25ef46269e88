"""Your own data as a Problem: arrays (numpy or pandas) and the dataset=csv config, with errors
that name what is wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import valbench
from valbench.problem import load_problem, problem_from_arrays

QUIET = ["progress=false", "utility.device=cpu"]


def _data(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.where(x[:, 0] + 0.3 * rng.normal(size=n) > 0, "spam", "ham")
    return x, y


def test_arrays_become_a_problem_whose_rows_map_back():
    x, y = _data()
    problem = problem_from_arrays(x, y, mislabel=0.1, overrides=QUIET)
    split, truth = problem.split, problem.truth
    assert (split.n_train, len(split.y_val), len(split.y_test)) == (84, 24, 12)
    assert truth.kind == "mislabel" and truth.n_planted == round(0.1 * 84)
    labels = (y == "spam").astype(int)  # classes in sorted order: ham = 0, spam = 1
    rows = split.train_rows
    assert len(np.unique(rows)) == 84 and rows.max() < 120
    assert np.array_equal(split.y_train[~truth.planted], labels[rows][~truth.planted])
    assert np.all(split.y_train[truth.planted] != labels[rows][truth.planted])
    z = (x[rows] - x[rows].mean(0)) / x[rows].std(0)  # standardised by the training part
    np.testing.assert_allclose(split.x_train, z, atol=1e-5)
    assert problem.config["dataset"] == {
        "name": "arrays",
        "n_train": 84,
        "n_val": 24,
        "n_test": 12,
        "standardize": "feature",
    }


def test_a_dataframe_gives_the_split_of_its_array_and_methods_run_on_it():
    x, y = _data()
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    from_frame = problem_from_arrays(frame, pd.Series(y), mislabel=0.1, overrides=QUIET)
    from_array = problem_from_arrays(x, y, mislabel=0.1, overrides=QUIET)
    assert np.array_equal(from_frame.split.x_train, from_array.split.x_train)
    assert np.array_equal(from_frame.truth.planted, from_array.truth.planted)
    valuation = valbench.make_method("knn_shapley").value(
        from_frame.game, seed=0, problem=from_frame
    )
    assert valbench.score(valuation, from_frame.truth)["auroc"] > 0.8


def test_no_mislabel_plants_nothing():
    x, y = _data()
    problem = problem_from_arrays(x, y, overrides=QUIET)
    assert problem.truth.kind == "none" and problem.truth.n_planted == 0
    assert np.array_equal(
        problem.split.y_train, (y == "spam").astype(int)[problem.split.train_rows]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, y: (pd.DataFrame({"a": x[:, 0], "b": ["u"] * len(x)}), y), r"not: \['b'\]"),
        (
            lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 9, np.nan, x), y),
            "row 2, column 1",
        ),
        (lambda x, y: (x, np.full(len(y), "ham")), r"1 distinct value\(s\) \['ham'\].*2 classes"),
        (lambda x, y: (x, y[:-1]), r"one per row of the features \(120\), got shape \(119,\)"),
        (lambda x, y: (x[:, 0], y), r"\(n, d\) or \(n, c, h, w\), got shape \(120,\)"),
        (lambda x, y: (x, np.where(np.arange(len(y)) == 5, np.nan, 1.0)), "labels contain NaN"),
        (lambda x, y: (np.array([["1"] * 4] * len(x)), y), "must be numeric, got dtype <U1"),
    ],
)
def test_bad_arrays_are_named(change, message):
    x, y = change(*_data())
    with pytest.raises(ValueError, match=message):
        problem_from_arrays(x, y, overrides=QUIET)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mislabel": 1.5}, r"mislabel must lie in \[0, 1\), got mislabel=1.5"),
        ({"val_fraction": 0.0}, r"val_fraction must lie in \(0, 1\)"),
        ({"model": "svm"}, "unknown model 'svm'; available: cnn, logreg"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        problem_from_arrays(*_data(), **params)


def _csv(tmp_path, **columns):
    path = tmp_path / "mine.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


def test_the_csv_config_names_its_file_and_label_column(tmp_path):
    x, y = _data()
    path = _csv(tmp_path, label=y, **{f"f{j}": x[:, j] for j in range(4)})
    sizes = ["dataset.n_train=80", "dataset.n_val=30"]
    problem = load_problem(
        "csv", overrides=[f"dataset.path={path}", "dataset.label_column=label", *sizes, *QUIET]
    )
    assert problem.split.name == "mine" and problem.split.x_train.shape == (80, 4)
    labels = (y == "spam").astype(int)[problem.split.train_rows]
    planted = problem.truth.planted
    assert np.array_equal(problem.split.y_train[~planted], labels[~planted])


@pytest.mark.parametrize(
    ("columns", "overrides", "error", "message"),
    [
        (
            {"f": [1.0, 2.0], "y": [0, 1]},
            ["dataset.label_column=label"],
            ValueError,
            "no label column 'label'; columns are \\['f', 'y'\\]",
        ),
        (
            {"f": [1.0, 2.0], "y": [0, 1]},
            ["dataset.label_column=5"],
            ValueError,
            "label_column=5 is out of range for its 2 columns",
        ),
        (
            {"f": ["a", "b"], "y": [0, 1]},
            [],
            ValueError,
            r"feature columns must be numeric, these are not: \['f'\]",
        ),
        (
            {"f": [1.0, np.nan], "y": [0, 1]},
            [],
            ValueError,
            "NaN or inf \\(first at row 1, column 0\\)",
        ),
        ({"f": [1.0, 2.0], "y": [1, 1]}, [], ValueError, "1 distinct value"),
        (None, [], FileNotFoundError, "no such file"),
    ],
)
def test_bad_csv_files_are_named(tmp_path, columns, overrides, error, message):
    path = _csv(tmp_path, **columns) if columns else str(tmp_path / "gone.csv")
    with pytest.raises(error, match=message) as info:
        load_problem("csv", overrides=[f"dataset.path={path}", *overrides, *QUIET])
    assert "mine.csv" in str(info.value) or "gone.csv" in str(info.value)
