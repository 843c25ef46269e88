"""Dataset loaders: raw features and labels from scikit-learn, a generator, a user's file, torchvision.

Each loader returns a `RawData` (features flat (N, d) float32 in their natural units, integer labels).
`load(name, **params)` is the registry; unknown names list what exists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

MISSING = "???"  # how a config marks a value the user must set (OmegaConf's missing value)


@dataclass(frozen=True)
class RawData:
    x: np.ndarray
    y: np.ndarray
    n_classes: int
    name: str
    image_shape: tuple[int, int, int] | None = None
    x_test: np.ndarray | None = None  # a dataset's own test set, when it ships one
    y_test: np.ndarray | None = None


def _sklearn(loader, name: str, image_shape=None) -> RawData:
    x, y = loader(return_X_y=True)
    return RawData(x.astype(np.float32), y.astype(np.int64), int(y.max()) + 1, name, image_shape)


def digits() -> RawData:
    from sklearn.datasets import load_digits

    return _sklearn(load_digits, "digits", (1, 8, 8))


def breast_cancer() -> RawData:
    from sklearn.datasets import load_breast_cancer

    return _sklearn(load_breast_cancer, "breast_cancer")


def wine() -> RawData:
    from sklearn.datasets import load_wine

    return _sklearn(load_wine, "wine")


def synthetic(
    n_samples: int = 2000,
    n_features: int = 20,
    n_informative: int = 10,
    n_classes: int = 2,
    class_sep: float = 1.0,
    seed: int = 0,
) -> RawData:
    """A Gaussian-clusters classification problem (scikit-learn's `make_classification`)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        class_sep=class_sep,
        random_state=seed,
    )
    return RawData(x.astype(np.float32), y.astype(np.int64), n_classes, "synthetic")


def synthetic_images(
    n_samples: int = 3000,
    n_classes: int = 10,
    shape: tuple[int, int, int] | list[int] = (3, 32, 32),
    noise: float = 0.2,
    seed: int = 0,
) -> RawData:
    """Generated images of CIFAR-10's shape (3 x 32 x 32 in [0, 1], 10 classes; no download): each
    class a smooth random template (a 4 x 4 grid of colours upsampled), each image its class's template
    plus Gaussian pixel noise of std `noise`, clipped to [0, 1]. A stand-in where no CIFAR-10 files exist."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1 or shape[1] % 4 or shape[2] % 4:
        raise ValueError(f"shape must be (channels, h, w) with h and w multiples of 4, got {shape}")
    if n_classes < 2 or n_samples < n_classes:
        raise ValueError(
            f"need n_classes >= 2 and n_samples >= n_classes, got {n_classes}, {n_samples}"
        )
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    c, h, w = shape
    coarse = rng.uniform(0.2, 0.8, size=(n_classes, c, 4, 4))
    templates = coarse.repeat(h // 4, axis=2).repeat(w // 4, axis=3)
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    x = templates[y] + noise * rng.standard_normal((n_samples, c, h, w))
    x = np.clip(x, 0.0, 1.0).reshape(n_samples, -1).astype(np.float32)
    return RawData(x, y.astype(np.int64), n_classes, "synthetic_images", shape)


def _numeric_features(x, where: str) -> np.ndarray:
    """Features as float32 (n, d) or (n, c, h, w); a ValueError names non-numeric columns, a bad
    shape or the first NaN/inf (row and column)."""
    if hasattr(x, "columns"):  # a pandas DataFrame
        from pandas.api.types import is_numeric_dtype

        bad = [c for c in x.columns if not is_numeric_dtype(x[c].dtype)]
        if bad:
            raise ValueError(f"{where}: feature columns must be numeric, these are not: {bad}")
        x = x.to_numpy()
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{where}: features must be numeric, got dtype {x.dtype}")
    if x.ndim not in (2, 4):
        raise ValueError(f"{where}: features must be (n, d) or (n, c, h, w), got shape {x.shape}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        row, col = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0]
        raise ValueError(f"{where}: features contain NaN or inf (first at row {row}, column {col})")
    return x


def _encode_labels(labels, n_rows: int, where: str) -> tuple[np.ndarray, int]:
    """Labels of any type (numbers or strings) as 0..C-1 in sorted order of their values."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ValueError(
            f"{where}: labels must be one per row of the features ({n_rows}), got shape {labels.shape}"
        )
    if labels.dtype == object and any(v is None or v != v for v in labels):  # None or NaN
        raise ValueError(f"{where}: labels contain a missing value")
    if np.issubdtype(labels.dtype, np.floating) and np.isnan(labels).any():
        raise ValueError(
            f"{where}: labels contain NaN (first at row {int(np.isnan(labels).argmax())})"
        )
    classes, y = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"{where}: labels have {len(classes)} distinct value(s) {classes.tolist()}; need at least 2 classes"
        )
    return y.astype(np.int64), len(classes)


def arrays(x, y, name: str = "arrays") -> RawData:
    """A user's own data: features `x` (n, d), or (n, c, h, w) images, as a numpy array or a pandas
    DataFrame of numeric columns, and labels `y` (n,) of any type (numbers or strings; classes are
    their sorted distinct values). A ValueError names non-numeric columns, NaN/inf, a length
    mismatch or a single class."""
    x = _numeric_features(x, name)
    labels, n_classes = _encode_labels(y, len(x), name)
    image_shape = tuple(x.shape[1:]) if x.ndim == 4 else None
    return RawData(x.reshape(len(x), -1), labels, n_classes, name, image_shape)


def csv(path: str | None = None, label_column: str | int = -1) -> RawData:
    """A user's own table: a CSV file (numeric features, one label column) or an NPZ file with `x`, `y`."""
    if not path or path == MISSING:
        raise ValueError("dataset=csv needs dataset.path=/path/to/file.csv (or .npz), got none")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"dataset.path={path}: no such file")
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as f:
            keys = {k.lower(): k for k in f.files}
            if "x" not in keys or "y" not in keys:
                raise ValueError(f"{p}: an NPZ dataset needs arrays 'x' and 'y', found {f.files}")
            x, labels = f[keys["x"]], f[keys["y"]]
    else:
        import pandas as pd

        frame = pd.read_csv(p)
        if isinstance(label_column, int) and not -len(frame.columns) <= label_column < len(
            frame.columns
        ):
            raise ValueError(
                f"{p}: label_column={label_column} is out of range for its {len(frame.columns)} columns"
            )
        col = frame.columns[label_column] if isinstance(label_column, int) else label_column
        if col not in frame.columns:
            raise ValueError(f"{p}: no label column {col!r}; columns are {list(frame.columns)}")
        x, labels = frame.drop(columns=[col]), frame[col].to_numpy()
    return replace(arrays(x, labels, name=str(p)), name=p.stem)  # errors name the file


_TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def _torchvision(name: str, root: str | None, download: bool) -> RawData:
    import torchvision

    if not root:
        raise ValueError(
            f"dataset={name} needs dataset.root=/path/to/data (download is off by default)"
        )
    root_path = Path(root).expanduser()
    cls = getattr(torchvision.datasets, _TORCHVISION[name])
    parts = []
    for train in (True, False):
        try:
            ds = cls(str(root_path), train=train, download=download)
        except RuntimeError as err:
            raise FileNotFoundError(
                f"{name} files not found under root {root_path} ({err}). Put the torchvision "
                f"{_TORCHVISION[name]} files there or set dataset.download=true where the internet is reachable."
            ) from None
        x = np.asarray(ds.data, dtype=np.float32) / 255.0
        if x.ndim == 4:  # CIFAR: (N, h, w, c) -> (N, c, h, w)
            x = x.transpose(0, 3, 1, 2)
        else:
            x = x[:, None]
        parts.append((x, np.asarray(ds.targets, dtype=np.int64)))
    (x, y), (xt, yt) = parts
    shape = tuple(x.shape[1:])
    flat = lambda a: np.ascontiguousarray(a.reshape(len(a), -1))  # noqa: E731
    return RawData(flat(x), y, 10, name, shape, flat(xt), yt)


def mnist(root: str | None = None, download: bool = False) -> RawData:
    return _torchvision("mnist", root, download)


def fashion_mnist(root: str | None = None, download: bool = False) -> RawData:
    return _torchvision("fashion_mnist", root, download)


def cifar10(root: str | None = None, download: bool = False) -> RawData:
    return _torchvision("cifar10", root, download)


LOADERS = {
    "digits": digits,
    "breast_cancer": breast_cancer,
    "wine": wine,
    "synthetic": synthetic,
    "synthetic_images": synthetic_images,
    "csv": csv,
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
}


def load(name: str, **params) -> RawData:
    """Load dataset `name` with the loader's own parameters."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(LOADERS))}")
    return LOADERS[name](**params)
