"""What every method shares: scikit-learn-style parameters and the two facts the runner asks for.

`BaseMethod` gives a method `get_params()` / `set_params(**params)` and a repr from its `__init__`
signature (so `__init__` must only store each argument under its own name, as in scikit-learn),
`needs_problem` (True for model-based methods, which read the run's Problem), `models` (the model
configs a model-based method can value; None: any) and `min_budget(n)` (the least number of game
evaluations it accepts on n players; None for methods without a budget).
A method brought by a user may subclass it too; `valbench.testing.check_method` checks the contract.
"""

from __future__ import annotations

import inspect
from typing import ClassVar


class BaseMethod:
    """Parameters from the `__init__` signature; see the module docstring."""

    needs_problem: ClassVar[bool] = False
    models: ClassVar[tuple[str, ...] | None] = (
        None  # model configs it accepts (conf/model/); None: any
    )

    @classmethod
    def param_names(cls) -> list[str]:
        """The names of `__init__`'s parameters (no *args / **kwargs allowed)."""
        if cls.__init__ is object.__init__:
            return []
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(
                    f"{cls.__name__}.__init__ may not take *{p.name}: name each parameter"
                )
        return [p.name for p in params]

    def get_params(self) -> dict:
        """{name: value} of every `__init__` parameter."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params) -> BaseMethod:
        """Set parameters by name (unknown names raise, listing the known ones); returns self."""
        known = self.param_names()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no parameter(s) {unknown}; its parameters: {known}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def min_budget(self, n_players: int) -> int | None:
        """The least budget accepted on `n_players` players; None: the method takes no budget."""
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
