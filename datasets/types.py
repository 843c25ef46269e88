"""The data contracts: a train/val/test `Split` and the planted ground `Truth`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

KINDS = ("none", "mislabel", "noise", "poison")


def _check_part(name: str, x: np.ndarray, y: np.ndarray, n_classes: int) -> None:
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} features must be (n, d) or (n, c, h, w), got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"{name} labels must be a vector of length {len(x)} (one per row), got shape {y.shape}"
        )
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0]
        raise ValueError(
            f"{name} features contain NaN or inf (first at row {bad[0]}, column {bad[1]})"
        )
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{name} labels must lie in [0, {n_classes - 1}], got range [{y.min()}, {y.max()}]"
        )


@dataclass(frozen=True)
class Split:
    """Train/val/test arrays: float32 features, int64 labels in [0, n_classes).

    `image_shape` is (c, h, w) when the features are images (stored flat or as images), else None;
    corruptions use it to place patch triggers and models use it to reshape. `train_rows` (when
    known) is the row of the loaded data (e.g. of your own arrays or CSV) of each training point.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str
    image_shape: tuple[int, int, int] | None = None
    train_rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        for part in ("train", "val", "test"):
            x = np.ascontiguousarray(getattr(self, f"x_{part}"), dtype=np.float32)
            y = np.asarray(getattr(self, f"y_{part}"))
            if y.size and not np.issubdtype(y.dtype, np.integer):
                if not np.all(np.equal(np.mod(y, 1), 0)):
                    raise ValueError(f"{part} labels must be integers, got dtype {y.dtype}")
            y = y.astype(np.int64)
            object.__setattr__(self, f"x_{part}", x)
            object.__setattr__(self, f"y_{part}", y)
            _check_part(part, x, y, self.n_classes)
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if len(self.x_train) == 0:
            raise ValueError("the training set is empty")
        if self.train_rows is not None and np.shape(self.train_rows) != (len(self.x_train),):
            raise ValueError(
                f"train_rows must hold one row per training point ({len(self.x_train)}), "
                f"got shape {np.shape(self.train_rows)}"
            )
        shapes = {getattr(self, f"x_{p}").shape[1:] for p in ("train", "val", "test")}
        if len(shapes) != 1:
            raise ValueError(f"train/val/test features differ in shape: {sorted(shapes)}")

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    def as_images(self) -> Split:
        """The same split with features shaped (n, c, h, w); needs `image_shape`."""
        if self.image_shape is None:
            raise ValueError(f"dataset {self.name!r} has no image shape; use a flat-input model")
        return replace(
            self,
            **{
                f"x_{p}": _reshape(getattr(self, f"x_{p}"), self.image_shape)
                for p in ("train", "val", "test")
            },
        )

    def as_flat(self) -> Split:
        """The same split with features shaped (n, d)."""
        return replace(
            self,
            **{
                f"x_{p}": getattr(self, f"x_{p}").reshape(len(getattr(self, f"x_{p}")), -1)
                for p in ("train", "val", "test")
            },
        )


def _reshape(x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    return x.reshape(len(x), *shape)


@dataclass(frozen=True)
class Truth:
    """What a corruption planted in the training set.

    `planted` marks the corrupted training points; `sign` is +1 when they should get the HIGHEST values
    (poisons that raise a query's target utility) and -1 when the LOWEST (flipped labels, noise).
    Poisons also carry the trigger, the target label and the triggered test queries.
    """

    planted: np.ndarray
    kind: str
    sign: int = -1
    target: int | None = None
    trigger: dict | None = None
    x_queries: np.ndarray | None = None
    y_queries: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        planted = np.asarray(self.planted)
        if planted.ndim != 1 or planted.dtype != bool:
            raise ValueError(
                f"planted must be a 1-D bool array, got {planted.dtype} {planted.shape}"
            )
        if self.kind not in KINDS:
            raise ValueError(f"unknown truth kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.sign not in (-1, 1):
            raise ValueError(f"sign must be +1 or -1, got {self.sign}")
        if self.kind == "poison" and (self.x_queries is None or len(self.x_queries) == 0):
            raise ValueError("a poison truth needs at least one triggered query")

    @property
    def n_planted(self) -> int:
        return int(self.planted.sum())

    @property
    def n_queries(self) -> int:
        return 0 if self.x_queries is None else len(self.x_queries)
