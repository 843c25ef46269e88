"""One code path for single- and multi-query games: values as (B, Q) columns, results back per query."""

from __future__ import annotations

import numpy as np


def as_columns(values: np.ndarray) -> np.ndarray:
    """Game values (B,) or (B, Q) as a (B, Q) array (Q = 1 for a single-utility game)."""
    return values[:, None] if values.ndim == 1 else values


def per_query(array: np.ndarray, single: bool) -> np.ndarray:
    """A (Q, n) result as (n,) for a single-utility game, else unchanged."""
    return array[0] if single else array
