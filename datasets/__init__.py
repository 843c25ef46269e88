"""valbench.datasets: loaders, splits and corruptions with planted ground truth.

`prepare` is the whole pipeline: load -> stratified split -> corrupt (raw units) -> standardise.
"""

from __future__ import annotations

from .corrupt import CORRUPTIONS, corrupt, stamp
from .load import LOADERS, RawData, arrays, load
from .split import check_seed, check_sizes, split_data, standardize
from .types import Split, Truth

SPLIT_KEYS = ("n_train", "n_val", "n_test")


def prepare(
    dataset: dict, corruption: dict, seed: int = 0, raw: RawData | None = None
) -> tuple[Split, Truth]:
    """Build the (Split, Truth) of one run from a dataset and a corruption parameter dict.

    `dataset` holds `name`, the split sizes `n_train`/`n_val`/`n_test`, `standardize`
    (feature | channel | none) and the loader's own keys; `corruption` holds `name` and its keys.
    `raw` (e.g. `arrays(x, y)`) replaces the loader: `dataset` then holds only the sizes and
    `standardize`.
    """
    dataset, corruption = dict(dataset), dict(corruption)
    name = dataset.pop("name", None)
    if raw is None and name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(LOADERS))}")
    cname = corruption.pop("name", None)
    if cname not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {cname!r}; available: {', '.join(CORRUPTIONS)}")
    sizes = {k: dataset.pop(k, None) for k in SPLIT_KEYS}
    check_sizes(**sizes)
    seed = check_seed(seed)
    mode = dataset.pop("standardize", "feature")
    if raw is None:
        raw = load(name, **dataset)
    elif dataset:
        raise ValueError(f"with raw data, dataset keys {sorted(dataset)} have no loader to go to")
    split = split_data(raw, sizes["n_train"], sizes["n_val"], sizes["n_test"], seed=seed)
    split, truth = corrupt(split, cname, seed, **corruption)
    return standardize(split, truth, mode)


__all__ = [
    "CORRUPTIONS",
    "LOADERS",
    "RawData",
    "arrays",
    "Split",
    "Truth",
    "corrupt",
    "load",
    "check_seed",
    "check_sizes",
    "prepare",
    "split_data",
    "stamp",
    "standardize",
]
