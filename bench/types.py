"""Core contracts: the Game protocol, Valuation, the Method protocol and Problem (see DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from valbench.datasets import Split, Truth


class BudgetTooSmall(ValueError):
    """A budget below a method's minimum number of evaluations (kept in `minimum`)."""

    def __init__(self, message: str, minimum: int) -> None:
        super().__init__(message)
        self.minimum = minimum


@runtime_checkable
class Game(Protocol):
    """A cooperative game over `n_players` training points.

    `game(masks)` takes a bool array (B, n_players) of coalitions and returns float values (B,) or,
    for Q queries at once, (B, Q).
    """

    n_players: int

    def __call__(self, masks: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class PerQueryGame(Game, Protocol):
    """A game that may answer per query: `n_queries` = Q when it returns (B, Q), None for (B,)."""

    n_queries: int | None


@runtime_checkable
class TrainableGame(Game, Protocol):
    """A game whose U(S) trains a model on S (valbench.utility): `n_trainings` done and their
    `seconds`, `progress` bars on or off, `train` False when it answers only from its evaluation
    store, `stored(masks)` which coalitions (B,) it can answer without training, and `persist`."""

    n_trainings: int
    seconds: float
    progress: bool
    train: bool

    def stored(self, masks: np.ndarray) -> np.ndarray: ...

    def persist(self, store: Any, name: str, train: bool = True) -> None: ...


@runtime_checkable
class EngineGame(TrainableGame, Protocol):
    """A trainable game whose submodels the batched `engine` trains, on `device`."""

    engine: Any
    device: str


def n_queries(game: Game) -> int | None:
    """Q of a game that answers per query ((B, Q) values), None for one value per coalition."""
    return game.n_queries if isinstance(game, PerQueryGame) else None


def shows_progress(game: Game) -> bool:
    """Whether long loops over `game` should show a progress bar (a TrainableGame may turn it off)."""
    return game.progress if isinstance(game, TrainableGame) else True


def check_masks(masks: Any, n_players: int) -> np.ndarray:
    """`masks` as a C-contiguous bool array (B, n_players), or a ValueError naming what is wrong."""
    masks = np.asarray(masks)
    if masks.dtype != bool:
        if masks.dtype.kind in "iu" and masks.size and np.isin(masks, (0, 1)).all():
            masks = masks.astype(bool)
        elif masks.size:
            raise ValueError(
                f"masks must be a bool array (B, {n_players}), got dtype {masks.dtype}"
            )
        else:
            masks = masks.astype(bool)
    if masks.ndim == 1:
        masks = masks[None]
    if masks.ndim != 2 or masks.shape[1] != n_players:
        raise ValueError(f"masks must have shape (B, {n_players}), got {masks.shape}")
    return np.ascontiguousarray(masks)


def evaluate(game: Game, masks: np.ndarray) -> np.ndarray:
    """Call `game` on `masks` and check its answer: finite floats shaped (B,) or (B, Q)."""
    masks = check_masks(masks, game.n_players)
    values = np.asarray(game(masks), dtype=np.float64)
    if values.ndim not in (1, 2) or values.shape[0] != len(masks):
        raise ValueError(
            f"game returned shape {values.shape} for {len(masks)} masks; expected ({len(masks)},) "
            f"or ({len(masks)}, Q)"
        )
    if values.ndim == 2 and values.shape[1] == 0:
        raise ValueError(
            f"game returned no queries (Q = 0) for {len(masks)} masks: nothing to value"
        )
    finite = np.isfinite(values) if values.ndim == 1 else np.isfinite(values).all(1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        raise ValueError(
            f"game returned non-finite values (NaN or inf) for {len(bad)} of {len(masks)} masks "
            f"[{shown}]"
        )
    return values


@dataclass
class Valuation:
    """What a method returns: `values` (n,) or (Q, n), higher = the point helps the utility more.

    `stderr` matches `values` when the method estimates it; `selected` is a bool mask of the same shape
    when the method selects points (e.g. knockoffs); `n_evals` counts game evaluations spent.
    """

    values: np.ndarray
    stderr: np.ndarray | None = None
    selected: np.ndarray | None = None
    n_evals: int = 0
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim not in (1, 2):
            raise ValueError(f"values must be (n,) or (Q, n), got shape {self.values.shape}")
        if self.stderr is not None:
            self.stderr = np.asarray(self.stderr, dtype=np.float64)
            if self.stderr.shape != self.values.shape:
                raise ValueError(
                    f"stderr shape {self.stderr.shape} != values shape {self.values.shape}"
                )
        if self.selected is not None:
            self.selected = np.asarray(self.selected, dtype=bool)
            if self.selected.shape != self.values.shape:
                raise ValueError(
                    f"selected shape {self.selected.shape} != values shape {self.values.shape}"
                )

    @property
    def n(self) -> int:
        return self.values.shape[-1]


class Method(Protocol):
    """A valuation method: `__init__` stores parameters only; `value` computes a Valuation.

    Subset-based methods use only the game (and take `budget`, the maximum number of game evaluations);
    model-based methods (`needs_problem` True) need `problem` and raise a clear error without it;
    one may declare `models`, the model configs it can value (e.g. ("mlp", "cnn"); absent or None:
    any), which `valbench.testing.check_method` reads to pick its test problem.
    `get_params()` returns the `__init__` parameters (valbench.methods.base.BaseMethod gives all this).
    """

    needs_problem: bool

    def get_params(self) -> dict: ...

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation: ...


@runtime_checkable
class BudgetedMethod(Method, Protocol):
    """A method that spends at most `budget` game evaluations (None: its least budget) and says
    the least budget it accepts on n players (below it, `value` raises BudgetTooSmall)."""

    budget: int | None

    def min_budget(self, n_players: int) -> int: ...


@runtime_checkable
class PresampledMethod(Method, Protocol):
    """A method that draws all its coalitions up front: `samples(n_players, seed)` (B, n) bool, so
    their evaluations can be trained in shards before the method runs."""

    def samples(self, n_players: int, seed: int) -> np.ndarray: ...


@dataclass
class Problem:
    """One run's data and game: the split, what was planted, the model's config (the conf/model/
    keys, e.g. {"name": "logreg", ...}, not a trained model) and the utility game."""

    split: Split
    truth: Truth
    model_config: dict
    game: Game
    config: dict = field(default_factory=dict)
