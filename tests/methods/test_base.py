"""BaseMethod: parameters from the __init__ signature, set by name, shown in the repr; min_budget
agrees with the BudgetTooSmall that value raises."""

from __future__ import annotations

import pytest

from valbench import games
from valbench.methods.base import BaseMethod
from valbench.methods.shapley import TruncatedMonteCarloShapley
from valbench.types import BudgetedMethod, BudgetTooSmall


def test_params_round_trip_and_repr():
    method = TruncatedMonteCarloShapley(budget=100, tol=0.1)
    assert method.get_params() == {"budget": 100, "tol": 0.1, "chunk": None, "fill": 1024}
    assert method.set_params(chunk=4) is method and method.chunk == 4
    assert repr(method) == "TruncatedMonteCarloShapley(budget=100, tol=0.1, chunk=4, fill=1024)"
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['tolerance'\].*'tol'"):
        method.set_params(tolerance=0.2)
    assert isinstance(method, BudgetedMethod) and not method.needs_problem


def test_min_budget_is_what_value_enforces():
    game = games.AdditiveGame([1.0, 2.0, 3.0, 4.0])
    method = TruncatedMonteCarloShapley(budget=7)
    assert method.min_budget(4) == 8
    with pytest.raises(BudgetTooSmall) as err:
        method.value(game, seed=0)
    assert err.value.minimum == 8


def test_init_with_var_arguments_is_refused():
    class Loose(BaseMethod):
        def __init__(self, **params) -> None:
            self.params = params

        def value(self, game, *, seed, problem=None): ...

    with pytest.raises(TypeError, match=r"may not take \*params"):
        Loose().get_params()
