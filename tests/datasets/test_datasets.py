from __future__ import annotations

import numpy as np
import pytest

from valbench.datasets import LOADERS, Split, load, prepare, split_data

SMALL = {
    "digits": (200, 100, 100),
    "breast_cancer": (200, 100, 100),
    "wine": (80, 40, 40),
    "synthetic": (200, 100, 100),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bundled_datasets_split_stratified_and_standardised(name):
    n_train, n_val, n_test = SMALL[name]
    split, truth = prepare(
        {"name": name, "n_train": n_train, "n_val": n_val, "n_test": n_test},
        {"name": "none"},
        seed=3,
    )
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (n_train, n_val, n_test)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    # stratified: class proportions of train and val agree to within one point per class
    full = load(name) if name != "synthetic" else load(name, n_samples=2000)
    share = np.bincount(full.y, minlength=split.n_classes) / len(full.y)
    assert np.all(
        np.abs(np.bincount(split.y_train, minlength=split.n_classes) - share * n_train) <= 1.01
    )
    # standardised on train only: train columns have mean 0 and std 1 (or 0 for constant columns)
    assert np.allclose(split.x_train.mean(0), 0, atol=1e-4)
    std = split.x_train.std(0)
    assert np.all(np.isclose(std, 1, atol=1e-3) | np.isclose(std, 0))
    assert not np.allclose(split.x_val.mean(0), 0, atol=1e-4)
    assert truth.n_planted == 0


def test_split_is_seeded_and_disjoint():
    raw = load("wine")
    a = split_data(raw, 60, 30, 30, seed=1)
    b = split_data(raw, 60, 30, 30, seed=1)
    c = split_data(raw, 60, 30, 30, seed=2)
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(a.x_train, c.x_train)
    rows = [tuple(r) for r in np.vstack([a.x_train, a.x_val, a.x_test])]
    assert len(set(rows)) == len(rows)  # wine has no duplicate rows: the parts do not overlap


def test_n_test_null_takes_the_rest():
    split = split_data(load("wine"), 100, 40, None)
    assert len(split.y_test) == 178 - 140


def test_unknown_dataset_lists_what_exists():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*breast_cancer.*cifar10.*digits"):
        prepare({"name": "nope", "n_train": 10, "n_val": 10}, {"name": "none"})
    assert set(LOADERS) == {
        "digits",
        "breast_cancer",
        "wine",
        "synthetic",
        "synthetic_images",
        "csv",
        "mnist",
        "fashion_mnist",
        "cifar10",
    }


@pytest.mark.parametrize(
    "sizes, message",
    [
        ((2000, 10, 10), "exceeds the 178 points"),
        ((0, 10, 10), "dataset.n_train must be a positive integer, got dataset.n_train=0"),
        (("abc", 10, 10), "dataset.n_train must be a positive integer, got dataset.n_train=.abc."),
        ((50, 2.5, 10), "dataset.n_val must be a positive integer, got dataset.n_val=2.5"),
        ((50, 10, True), "dataset.n_test must be a positive integer or null"),
        ((50, 20, 500), "n_test=500 exceeds"),
    ],
)
def test_bad_split_sizes(sizes, message):
    with pytest.raises(ValueError, match=message):
        split_data(load("wine"), *sizes)


def test_csv_and_npz_files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    labels = np.where(x[:, 0] > 0, "cat", "dog")
    import pandas as pd

    pd.DataFrame({**{f"f{j}": x[:, j] for j in range(4)}, "label": labels}).to_csv(
        tmp_path / "t.csv", index=False
    )
    split, _ = prepare(
        {
            "name": "csv",
            "path": str(tmp_path / "t.csv"),
            "label_column": "label",
            "n_train": 60,
            "n_val": 30,
        },
        {"name": "none"},
    )
    assert split.x_train.shape == (60, 4) and split.n_classes == 2 and split.name == "t"
    np.savez(tmp_path / "t.npz", x=x, y=(x[:, 1] > 0).astype(int))
    split, _ = prepare(
        {"name": "csv", "path": str(tmp_path / "t.npz"), "n_train": 60, "n_val": 30},
        {"name": "none"},
    )
    assert split.x_train.shape == (60, 4)


def test_file_with_nan_features_or_wrong_label_length_fails(tmp_path):
    x = np.ones((20, 3))
    x[7, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(20) % 2)
    with pytest.raises(ValueError, match="NaN or inf.*row 7"):
        load("csv", path=str(tmp_path / "nan.npz"))
    np.savez(tmp_path / "short.npz", x=np.ones((20, 3)), y=np.arange(19) % 2)
    with pytest.raises(ValueError, match=r"one per row of the features \(20\).*\(19,\)"):
        load("csv", path=str(tmp_path / "short.npz"))
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load("csv", path=str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="dataset.path"):
        load("csv")


def test_split_rejects_nan_and_wrong_label_length():
    x, y = np.zeros((10, 3)), np.arange(10) % 2
    bad = x.copy()
    bad[4, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"train features contain NaN or inf \(first at row 4, column 1\)"
    ):
        Split(bad, y, x, y, x, y, 2, "t")
    with pytest.raises(ValueError, match="val labels must be a vector of length 10"):
        Split(x, y, x, y[:9], x, y, 2, "t")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        Split(x, y + 1, x, y, x, y, 2, "t")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_torchvision_datasets_name_the_missing_root(name, tmp_path):
    root = tmp_path / "no-data-here"
    with pytest.raises(FileNotFoundError, match=f"{name} files not found under root {root}"):
        load(name, root=str(root))


def test_images_reshape(digits_split):
    img = digits_split.as_images()
    assert img.x_train.shape == (120, 1, 8, 8)
    assert np.array_equal(img.as_flat().x_train, digits_split.x_train)


@pytest.mark.parametrize(
    ("dataset", "seed", "error", "message"),
    [
        (
            {"n_train": "abc"},
            0,
            ValueError,
            "dataset.n_train must be a positive integer, got dataset.n_train='abc'",
        ),
        ({"n_test": -3}, 0, ValueError, "dataset.n_test must be a positive integer or null"),
        ({}, -1, ValueError, r"seed must be an integer in \[0, 4294967295\], got seed=-1"),
        ({}, "abc", ValueError, "got seed='abc'"),
        ({}, 2**32, ValueError, "got seed=4294967296"),
        ({"name": "csv", "path": "???"}, 0, ValueError, "dataset=csv needs dataset.path="),
        (
            {"name": "csv", "path": "/no/such.csv"},
            0,
            FileNotFoundError,
            "dataset.path=/no/such.csv: no such file",
        ),
    ],
)
def test_bad_settings_are_named_before_loading(dataset, seed, error, message):
    config = {"name": "wine", "n_train": 50, "n_val": 20, **dataset}
    with pytest.raises(error, match=message):
        prepare(config, {"name": "none"}, seed=seed)


def test_synthetic_images_have_cifar10_shape_and_learnable_classes():
    raw = load("synthetic_images", n_samples=200, seed=1)
    assert raw.image_shape == (3, 32, 32) and raw.x.shape == (200, 3 * 32 * 32)
    assert raw.x.min() >= 0 and raw.x.max() <= 1 and set(raw.y) == set(range(10))
    again = load("synthetic_images", n_samples=200, seed=1)
    np.testing.assert_array_equal(raw.x, again.x)
    # nearest class mean separates the classes far above chance (0.1)
    means = np.stack([raw.x[raw.y == k].mean(0) for k in range(10)])
    pred = ((raw.x[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == raw.y).mean() > 0.5
    with pytest.raises(ValueError, match="multiples of 4"):
        load("synthetic_images", shape=(3, 30, 30))
