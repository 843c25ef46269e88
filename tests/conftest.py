"""Shared fixtures and helpers."""

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


class Recording:
    """Wraps a game and keeps every mask it was asked for, in order (to check nested sampling)."""

    def __init__(self, game) -> None:
        self.game, self.n_players, self.masks = game, game.n_players, []

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self.masks.extend(np.asarray(masks))
        return self.game(masks)


class Broken:
    """A game that answers NaN, or values of the wrong shape."""

    def __init__(self, n_players: int, kind: str) -> None:
        self.n_players, self.kind = n_players, kind

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        if self.kind == "nan":
            return np.full(len(masks), np.nan)
        return np.zeros(len(masks) + 1)


@pytest.fixture
def recording():
    return Recording


@pytest.fixture
def broken():
    return Broken


def within_stderr(values, stderr, exact, z: float = 5.0, slack=0.0) -> None:
    """Assert |values - exact| <= z * stderr + slack elementwise, naming the worst point."""
    gap = np.abs(np.asarray(values) - exact) - (z * np.asarray(stderr) + slack)
    worst = np.unravel_index(np.argmax(gap), gap.shape)
    assert gap.max() <= 1e-9, (
        f"value {values[worst]:.4f} at {worst} is {np.abs(values[worst] - exact[worst]):.4f} from "
        f"exact {exact[worst]:.4f}; allowed {z} * stderr {stderr[worst]:.4f} + {np.max(slack):.4f}"
    )


def z_scores(values, stderr, exact) -> np.ndarray:
    """(values - exact) / stderr where stderr is above rounding noise (constant marginals)."""
    ok = np.asarray(stderr) > 1e-9
    return ((np.asarray(values) - exact)[ok]) / np.asarray(stderr)[ok]
