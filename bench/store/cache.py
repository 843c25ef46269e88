"""The evaluations a game already knows, keyed by the packed coalition mask.

A game answers a known coalition without training it again (nested budgets with one seed reuse their
trainings). With `persist`, an EvalStore's evaluations become known too, and after each batch the
store's file `name` is rewritten with everything this game wrote there (earlier runs' included), so
a killed run resumes.
"""

from __future__ import annotations

import numpy as np

from .evals import EvalStore


def coalition_keys(masks: np.ndarray) -> list[bytes]:
    """One hashable key per coalition: its packed bits."""
    return [np.packbits(m).tobytes() for m in masks]


class KnownEvaluations:
    """{mask key: U(S)}; `keep=False` remembers nothing but what a store holds."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self._known: dict[bytes, np.ndarray] = {}
        self._store: tuple[EvalStore, str] | None = None
        self._written: dict[bytes, np.ndarray] = {}

    def persist(self, store: EvalStore, name: str) -> None:
        """Know every file's evaluations now, and write this game's to file `name` from now on."""
        path = store.path(name)
        self._written = store.read(path) if path.exists() else {}
        self._known.update(store.load())
        self._store = (store, name)

    def __contains__(self, key: bytes) -> bool:
        return key in self._known

    def missing(self, keys: list[bytes]) -> dict[bytes, int]:
        """{key: first row} of the keys not known yet, in order."""
        todo: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._known and key not in todo:
                todo[key] = i
        return todo

    def add(self, fresh: dict[bytes, np.ndarray]) -> None:
        """Remember `fresh` evaluations (when keeping) and write them to the store (when persisting)."""
        if self.keep:
            self._known.update(fresh)
        if self._store is not None:
            self._written.update(fresh)
            self._store[0].write(self._store[1], self._written)

    def values(self, keys: list[bytes], fresh: dict[bytes, np.ndarray]) -> np.ndarray:
        """The values of `keys`, (B,) or (B, Q), from `fresh` or the known evaluations."""
        return np.stack([fresh[k] if k in fresh else self._known[k] for k in keys])
