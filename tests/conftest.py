from __future__ import annotations

import numpy as np
import pytest

from valbench.datasets import Split, prepare


@pytest.fixture(scope="session")
def digits_split() -> Split:
    split, _ = prepare(
        {"name": "digits", "n_train": 120, "n_val": 80, "n_test": 60}, {"name": "none"}
    )
    return split


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
