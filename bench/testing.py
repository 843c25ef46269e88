"""`check_method(method)`: the contract every valuation method keeps, checked in one call (as
scikit-learn's `check_estimator`). Use it on a method you bring:

    from valbench import games
    from valbench.testing import check_method
    check_method(MyMethod(budget=500), target=games.shapley)   # raises AssertionError if broken

It checks, on copies of `method` made from its `get_params()`, that
* `__init__` only stores its parameters (a copy holds the very objects passed) and the repr works;
* subset methods (`needs_problem` False) value REFERENCE_GAME, model-based ones a tiny problem (and
  fail with a ValueError without it) whose model the method accepts: logistic regression, or a small
  MLP when the method's `models` (the model configs it declares it can value) leave logreg out;
* the values are (n,) or (Q, n) floats, all finite; a stderr has their shape; n_evals <= budget;
* the same seed gives the same values;
* a budget below `min_budget(n)` raises BudgetTooSmall naming that minimum (BudgetedMethod);
* where `target` (a function of the game, e.g. valbench.games.shapley) is given, the relative L2
  error ||values - target(game)|| / ||target(game)|| is at most `tol`.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from . import games
from .types import BudgetedMethod, BudgetTooSmall, Game, Problem, Valuation, n_queries

REFERENCE_GAME = games.random_pairwise(8, 6, seed=0)  # 8 players, additive plus 6 interactions
TINY_PROBLEM = ["dataset.n_train=24", "dataset.n_val=20", "progress=false", "utility.device=cpu"]
TINY_MLP = ["model.widths=[8]", "model.steps=30", "model.batch_size=16"]
TINY_MODELS = ("logreg", "mlp")  # the models tiny_problem builds, in the order check_method tries


@cache
def tiny_problem(model: str = "logreg") -> Problem:
    """A 24-point wine problem with mislabelled points on the CPU, for model-based methods; model
    logreg (solved by L-BFGS) or mlp (a small one, trained by optimiser steps)."""
    from .problem import load_problem

    overrides = TINY_PROBLEM + (TINY_MLP if model == "mlp" else [])
    return load_problem("wine", "mislabel", model=model, overrides=overrides)


def problem_for(method) -> Problem:
    """The tiny problem of the first model in TINY_MODELS that `method.models` accepts (a method
    without `models`, or with None, accepts any); a ValueError when it accepts none of them."""
    accepted = getattr(method, "models", None)
    for model in TINY_MODELS:
        if accepted is None or model in accepted:
            return tiny_problem(model)
    raise ValueError(
        f"{type(method).__name__}.models = {accepted!r} holds none of the tiny problems' models "
        f"{TINY_MODELS}: pass check_method(..., problem=...) with a problem of a model it accepts"
    )


def _copy(method, **changes):
    return type(method)(**{**method.get_params(), **changes})


def check_params(method) -> None:
    """`__init__` stores each parameter unchanged under its own name; set_params and repr work."""
    params = method.get_params()
    copy = type(method)(**params)
    for name, value in copy.get_params().items():
        assert value is params[name], (
            f"{type(method).__name__}.__init__ changed parameter {name!r} ({params[name]!r} -> "
            f"{value!r}): store it as given and check it in value()"
        )
    assert copy.set_params(**params) is copy, "set_params must return the method"
    assert repr(copy).startswith(type(method).__name__), f"repr names the class: {copy!r}"


def check_valuation(valuation, game: Game, budget: int | None) -> None:
    """Shapes, finiteness and the evaluation count of one Valuation."""
    assert isinstance(valuation, Valuation), f"value() returned {type(valuation).__name__}"
    q = n_queries(game)
    shapes = [(game.n_players,)] + ([(q, game.n_players)] if q else [])
    assert valuation.values.shape in shapes, f"values {valuation.values.shape}, expected {shapes}"
    assert np.isfinite(valuation.values).all(), "values must be finite"
    if valuation.stderr is not None:
        finite = valuation.stderr[np.isfinite(valuation.stderr)]
        assert (finite >= 0).all(), "a stderr must be non-negative"
    assert valuation.n_evals >= 0, f"n_evals {valuation.n_evals} < 0"
    if budget is not None:
        assert valuation.n_evals <= budget, f"n_evals {valuation.n_evals} > budget {budget}"


def check_budget(method, game: Game, problem: Problem | None) -> None:
    """Below `min_budget(n)` value() raises BudgetTooSmall carrying that minimum."""
    minimum = method.min_budget(game.n_players)
    assert isinstance(minimum, int) and minimum >= 1, f"min_budget gave {minimum!r}"
    if minimum > 1:
        try:
            _copy(method, budget=minimum - 1).value(game, seed=0, problem=problem)
        except BudgetTooSmall as err:
            assert err.minimum == minimum, (
                f"BudgetTooSmall says {err.minimum}, min_budget {minimum}"
            )
            assert str(minimum) in str(err), f"the error should name the minimum: {err}"
        else:
            raise AssertionError(f"budget {minimum - 1} < min_budget {minimum} was accepted")


def check_method(method, target=None, tol: float = 0.25, problem: Problem | None = None) -> None:
    """Check `method` against the contract in the module docstring; AssertionError when broken.

    `problem` replaces the tiny problem of model-based methods (`problem_for(method)`); `target(game)` gives the exact
    values the method estimates on REFERENCE_GAME (subset methods only)."""
    check_params(method)
    if method.needs_problem:
        problem = problem or problem_for(method)
        game = problem.game
        try:
            method.value(game, seed=0)
        except ValueError:
            pass
        else:
            raise AssertionError("a model-based method must raise a ValueError without a problem")
    else:
        game, problem = REFERENCE_GAME, None
    budget = None
    if isinstance(method, BudgetedMethod):
        check_budget(method, game, problem)
        budget = method.budget
    first = _copy(method).value(game, seed=0, problem=problem)
    check_valuation(
        first, game, budget if budget is not None else method.min_budget(game.n_players)
    )
    again = _copy(method).value(game, seed=0, problem=problem)
    assert np.array_equal(first.values, again.values), "the same seed gave other values"
    if target is not None:
        exact = np.asarray(target(game), dtype=np.float64)
        error = np.linalg.norm(first.values - exact) / np.linalg.norm(exact)
        assert error <= tol, f"relative L2 error {error:.3f} to the target exceeds {tol}"
