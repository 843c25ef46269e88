"""Stratified train/val/test splits and standardisation fitted on the training part only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .load import RawData
from .types import Split, Truth


def _stratified_take(
    idx: np.ndarray, y: np.ndarray, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` into `size` stratified indices and the rest."""
    from sklearn.model_selection import train_test_split

    if size == len(idx):
        return idx, idx[:0]
    counts = np.bincount(y[idx])
    stratify = (
        y[idx]
        if counts[counts > 0].min() >= 2 and min(size, len(idx) - size) >= (counts > 0).sum()
        else None
    )
    take, rest = train_test_split(idx, train_size=size, stratify=stratify, random_state=seed)
    return np.sort(take), np.sort(rest)


MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's random_state range


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_seed(seed) -> int:
    """The run's `seed` as an int, or a ValueError naming it and the allowed range."""
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got seed={seed!r}")
    return int(seed)


def check_sizes(n_train, n_val, n_test=None) -> None:
    """A ValueError naming `dataset.n_train`, `dataset.n_val` or `dataset.n_test` when it is not a
    positive integer (n_test may be null: the rest)."""
    for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if not (_is_int(value) and value >= 1) and not (key == "n_test" and value is None):
            allowed = "a positive integer" + (" or null (the rest)" if key == "n_test" else "")
            raise ValueError(f"dataset.{key} must be {allowed}, got dataset.{key}={value!r}")


def split_data(
    raw: RawData, n_train: int, n_val: int, n_test: int | None = None, seed: int = 0
) -> Split:
    """A seeded stratified split of `raw` into `n_train`, `n_val` and `n_test` points (`n_test=None`: the rest).

    A dataset that ships its own test set (torchvision) draws the test part from it.
    """
    check_sizes(n_train, n_val, n_test)
    own_test = raw.x_test is not None
    pool = len(raw.y)
    test_pool = len(raw.y_test) if own_test else pool - n_train - n_val
    if n_train + n_val + (0 if own_test else (n_test or 1)) > pool:
        raise ValueError(
            f"n_train={n_train} + n_val={n_val}"
            + ("" if own_test else f" + n_test={n_test or 1}")
            + f" exceeds the {pool} points of dataset {raw.name!r}"
        )
    n_test = test_pool if n_test is None else n_test
    if n_test > test_pool:
        raise ValueError(
            f"n_test={n_test} exceeds the {test_pool} points left for testing in {raw.name!r}"
        )

    train, rest = _stratified_take(np.arange(pool), raw.y, n_train, seed)
    val, rest = _stratified_take(rest, raw.y, n_val, seed + 1)
    if own_test:
        xt, yt = raw.x_test, raw.y_test
        rest = np.arange(len(yt))
    else:
        xt, yt = raw.x, raw.y
    test, _ = _stratified_take(rest, yt, n_test, seed + 2)
    return Split(
        raw.x[train],
        raw.y[train],
        raw.x[val],
        raw.y[val],
        xt[test],
        yt[test],
        n_classes=raw.n_classes,
        name=raw.name,
        image_shape=raw.image_shape,
        train_rows=train,
    )


def standardize(split: Split, truth: Truth, mode: str = "feature") -> tuple[Split, Truth]:
    """Shift and scale features by statistics of the training part: per `feature`, per image `channel`,
    or `none`. Constant features keep scale 1. Triggered queries get the same transform."""
    if mode == "none":
        return split, truth
    x = split.x_train.reshape(split.n_train, -1).astype(np.float64)
    if mode == "feature":
        mean, std = x.mean(0), x.std(0)
    elif mode == "channel":
        if split.image_shape is None:
            raise ValueError(f"standardize=channel needs image data; {split.name!r} is tabular")
        c = split.image_shape[0]
        per = x.reshape(len(x), c, -1)
        mean = np.repeat(per.mean((0, 2)), per.shape[2])
        std = np.repeat(per.std((0, 2)), per.shape[2])
    else:
        raise ValueError(f"unknown standardize mode {mode!r}; use feature, channel or none")
    std = np.where(std > 1e-8, std, 1.0)

    def tf(a: np.ndarray) -> np.ndarray:
        return ((a.reshape(len(a), -1) - mean) / std).astype(np.float32).reshape(a.shape)

    split = replace(
        split, **{f"x_{p}": tf(getattr(split, f"x_{p}")) for p in ("train", "val", "test")}
    )
    if truth.x_queries is not None:
        truth = replace(truth, x_queries=tf(truth.x_queries))
    return split, truth
