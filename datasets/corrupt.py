"""Corruptions that plant known-bad training points and record them in a `Truth`.

All act on raw (unstandardised) features so that triggers and noise are in the data's own units.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .types import Split, Truth


def _n_corrupt(n: int, fraction: float | None, count: int | None, what: str) -> int:
    """How many of `n` points to corrupt: `count` when given, else round(fraction * n)."""
    if count is not None:
        if not isinstance(count, (int, np.integer)) or not 0 <= count <= n:
            raise ValueError(f"count must be an integer in [0, {n}] ({what}), got {count!r}")
        return int(count)
    if fraction is None or not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    return int(round(float(fraction) * n))


def none(split: Split, rng: np.random.Generator) -> tuple[Split, Truth]:
    return split, Truth(np.zeros(split.n_train, bool), "none")


def _flip(y: np.ndarray, idx: np.ndarray, n_classes: int, mode: str, rng) -> np.ndarray:
    y = y.copy()
    if mode == "uniform":  # a uniformly drawn different class
        y[idx] = (y[idx] + rng.integers(1, n_classes, size=len(idx))) % n_classes
    elif mode == "pair":  # every class c goes to one fixed other class perm[c]
        perm = (np.arange(n_classes) + rng.integers(1, n_classes)) % n_classes
        y[idx] = perm[y[idx]]
    else:
        raise ValueError(f"unknown mislabel mode {mode!r}; use uniform or pair")
    return y


def mislabel(
    split: Split,
    rng: np.random.Generator,
    fraction: float | None = 0.1,
    count: int | None = None,
    mode: str = "uniform",
    corrupt_val: bool = False,
) -> tuple[Split, Truth]:
    """Flip the labels of a fraction (or count) of training points to a different class."""
    k = _n_corrupt(split.n_train, fraction, count, "training points")
    idx = rng.choice(split.n_train, size=k, replace=False)
    planted = np.zeros(split.n_train, bool)
    planted[idx] = True
    changes = {"y_train": _flip(split.y_train, idx, split.n_classes, mode, rng)}
    if corrupt_val:
        kv = int(round(k / split.n_train * len(split.y_val)))
        changes["y_val"] = _flip(
            split.y_val, rng.choice(len(split.y_val), kv, replace=False), split.n_classes, mode, rng
        )
    return replace(split, **changes), Truth(planted, "mislabel", sign=-1, info={"mode": mode})


def noise(
    split: Split,
    rng: np.random.Generator,
    fraction: float | None = 0.1,
    count: int | None = None,
    sigma: float = 1.0,
) -> tuple[Split, Truth]:
    """Add Gaussian noise sigma * std_j to every feature j of a fraction (or count) of training points."""
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    k = _n_corrupt(split.n_train, fraction, count, "training points")
    idx = rng.choice(split.n_train, size=k, replace=False)
    x = split.x_train.copy()
    std = x.std(0)
    std = np.where(std > 0, std, x.std())
    x[idx] += (sigma * std * rng.standard_normal(x[idx].shape)).astype(np.float32)
    planted = np.zeros(split.n_train, bool)
    planted[idx] = True
    return replace(split, x_train=x), Truth(planted, "noise", sign=-1, info={"sigma": sigma})


def make_trigger(split: Split, size: int, value, rng: np.random.Generator) -> dict:
    """A backdoor trigger: a size x size patch at the top-left of each image channel (value: one per
    channel, default the channel's training maximum), or for tabular data `size` fixed features set
    to max + std of the training column."""
    x = split.x_train
    if split.image_shape is not None:
        c, h, w = split.image_shape
        if not 1 <= size <= min(h, w):
            raise ValueError(
                f"trigger_size {size} does not fit images of shape {split.image_shape}"
            )
        if value is None:
            value = x.reshape(len(x), c, -1).max(axis=(0, 2))
        value = np.atleast_1d(np.asarray(value, np.float32))
        if len(value) not in (1, c):
            raise ValueError(
                f"trigger_value needs 1 or {c} values (one per channel), got {len(value)}"
            )
        value = np.broadcast_to(value, (c,))
        pattern = np.zeros((c, h, w), bool)
        pattern[:, :size, :size] = True
        values = np.broadcast_to(value[:, None, None], (c, h, w))
        return {
            "kind": "patch",
            "size": size,
            "mask": pattern.reshape(-1),
            "values": values.reshape(-1),
        }
    d = x.shape[1]
    if not 1 <= size <= d:
        raise ValueError(f"trigger_size {size} does not fit {d} features")
    features = np.sort(rng.choice(d, size=size, replace=False))
    mask = np.zeros(d, bool)
    mask[features] = True
    values = np.zeros(d, np.float32)
    values[features] = x[:, features].max(0) + x[:, features].std(0) + (value or 0.0)
    return {"kind": "features", "size": size, "mask": mask, "values": values}


def stamp(x: np.ndarray, trigger: dict) -> np.ndarray:
    """Apply `trigger` to flat or image-shaped features `x`."""
    flat = x.reshape(len(x), int(np.prod(x.shape[1:]))).copy()
    flat[:, trigger["mask"]] = trigger["values"][trigger["mask"]]
    return flat.reshape(x.shape)


def poison(
    split: Split,
    rng: np.random.Generator,
    fraction: float | None = None,
    count: int | None = 10,
    target: int = 0,
    n_queries: int = 10,
    trigger_size: int = 2,
    trigger_value=None,
) -> tuple[Split, Truth]:
    """Backdoor: stamp a trigger on k non-target training points and relabel them `target`; triggered
    non-target test points become the queries whose target-class predictions the poisons raise."""
    if not isinstance(target, (int, np.integer)) or not 0 <= target < split.n_classes:
        raise ValueError(f"target must be a class in [0, {split.n_classes - 1}], got {target!r}")
    candidates = np.flatnonzero(split.y_train != target)
    k = _n_corrupt(split.n_train, fraction, count, "training points")
    if k > len(candidates):
        raise ValueError(
            f"cannot poison {k} points: only {len(candidates)} training points are outside target class {target}"
        )
    query_pool = np.flatnonzero(split.y_test != target)
    if not isinstance(n_queries, (int, np.integer)) or n_queries < 1:
        raise ValueError(f"n_queries must be a positive integer, got {n_queries!r}")
    if n_queries > len(query_pool):
        raise ValueError(
            f"n_queries={n_queries} exceeds the {len(query_pool)} non-target test points available as queries"
        )
    trigger = make_trigger(split, trigger_size, trigger_value, rng)
    idx = rng.choice(candidates, size=k, replace=False)
    x, y = split.x_train.copy(), split.y_train.copy()
    x[idx] = stamp(x[idx], trigger)
    y[idx] = target
    planted = np.zeros(split.n_train, bool)
    planted[idx] = True
    q = np.sort(rng.choice(query_pool, size=n_queries, replace=False))
    truth = Truth(
        planted,
        "poison",
        sign=1,
        target=int(target),
        trigger=trigger,
        x_queries=stamp(split.x_test[q], trigger),
        y_queries=split.y_test[q],
    )
    return replace(split, x_train=x, y_train=y), truth


CORRUPTIONS = {"none": none, "mislabel": mislabel, "noise": noise, "poison": poison}


def corrupt(split: Split, name: str, seed: int, **params) -> tuple[Split, Truth]:
    """Apply corruption `name` with its parameters; the random stream is a function of `seed` alone."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; available: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name](split, np.random.default_rng([seed, 7]), **params)
