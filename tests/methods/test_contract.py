"""Every method config keeps the method contract (valbench.testing.check_method), and its YAML keys
are its __init__ parameters with the same defaults (variants, with a defaults list, change a few)."""

from __future__ import annotations

import inspect
from importlib import resources

import numpy as np
import pytest
from omegaconf import OmegaConf

from valbench import games, make_method
from valbench.methods.base import BaseMethod
from valbench.problem import method_config, options
from valbench.testing import check_method, problem_for, tiny_problem
from valbench.types import BudgetTooSmall, Valuation, evaluate

TARGETS = {  # the exact values of what each subset method estimates, on the reference game
    "exact_shapley": games.shapley,
    "mc_shapley": games.shapley,
    "tmc_shapley": games.shapley,
    "sv_reference": games.shapley,
    "beta_shapley": lambda g: games.beta_semivalue(g, 4.0, 1.0),
    "exact_banzhaf": games.banzhaf,
    "banzhaf": games.banzhaf,
    "ame": lambda g: games.ame(g, [0.2, 0.4, 0.6, 0.8]),
    "ame_knockoff": lambda g: games.ame(g, [0.05, 0.1, 0.15, 0.2]),
    "ame_sv": lambda g: games.ame_sv(g, 0.05),
}
CHEAPER = {"further_training": {"steps": 10, "seeds": 2}}  # its defaults take about a minute


@pytest.mark.parametrize("name", options("method"))
def test_method_keeps_the_contract(name):
    check_method(make_method(name, **CHEAPER.get(name, {})), target=TARGETS.get(name))


def test_every_estimating_config_has_a_target():
    assert set(TARGETS) <= set(options("method"))


def _plain(value):
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", options("method"))
def test_yaml_keys_are_the_init_parameters_with_its_defaults(name):
    cfg = method_config(name)
    method = make_method(name)
    signature = inspect.signature(type(method).__init__).parameters
    keys = {k: _plain(v) for k, v in cfg.items() if k != "_target_"}
    assert sorted(keys) == sorted(method.get_params())
    text = resources.files("valbench.conf").joinpath("method", f"{name}.yaml").read_text()
    raw = OmegaConf.create(text)
    changed = set(raw) - {"defaults", "_target_"} if "defaults" in raw else set()
    for key, value in keys.items():
        if key not in changed:
            assert value == _plain(signature[key].default), f"{name}.{key}: YAML {value!r}"


class _Sketch(BaseMethod):
    """A correct budgeted method (leave-one-out), or broken in one rule by `flaw`."""

    def __init__(self, budget: int = 20, flaw: str = "none") -> None:
        self.budget, self.flaw = budget, flaw

    def min_budget(self, n_players: int) -> int:
        return n_players + 1

    def value(self, game, *, seed, problem=None):
        n = game.n_players
        if self.budget < self.min_budget(n) and self.flaw != "accepts_small_budget":
            raise BudgetTooSmall(f"budget {self.budget} < {n + 1}", n + 1)
        masks = np.vstack([np.ones((1, n), bool), ~np.eye(n, dtype=bool)])
        u = evaluate(game, masks)
        values = u[0] - u[1:]
        if self.flaw == "ignores_seed":
            values = values + np.random.default_rng().normal(size=n)
        n_evals = 10 * self.budget if self.flaw == "overspends" else n + 1
        return Valuation(values, n_evals=n_evals)


class _Converts(_Sketch):
    def __init__(self, budget: int = 20, flaw: str = "none", grid=(0.5,)) -> None:
        super().__init__(budget, flaw)
        self.grid = list(grid)  # a copy: a later set_params(grid=...) would not be what is used


@pytest.mark.parametrize(
    "method, message",
    [
        (_Converts(), "changed parameter 'grid'"),
        (_Sketch(flaw="ignores_seed"), "same seed gave other values"),
        (_Sketch(flaw="overspends"), "n_evals 200 > budget 20"),
        (_Sketch(flaw="accepts_small_budget"), "budget 8 < min_budget 9 was accepted"),
    ],
)
def test_check_method_finds_each_broken_rule(method, message):
    check_method(_Sketch())  # the unbroken sketch passes
    with pytest.raises(AssertionError, match=message):
        check_method(method)


class _NetworkOnly(BaseMethod):
    """A user's model-based method that, like tracin, refuses logistic regression."""

    needs_problem = True
    models = ("mlp", "cnn")

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def value(self, game, *, seed, problem=None):
        if problem is None or problem.model_config["name"] not in self.models:
            raise ValueError(f"needs a problem with a model in {self.models}")
        return Valuation(self.scale * (problem.split.y_train == 0).astype(float), n_evals=0)


def test_check_method_picks_a_problem_of_a_model_the_method_accepts():
    assert problem_for(make_method("tracin")).model_config["name"] == "mlp"
    assert problem_for(make_method("grad_dot")).model_config["name"] == "logreg"
    assert problem_for(_NetworkOnly()) is tiny_problem("mlp")
    check_method(_NetworkOnly())  # one line, no problem given


def test_check_method_names_a_method_whose_models_it_cannot_build():
    class _ResNetOnly(_NetworkOnly):
        models = ("resnet9",)

    with pytest.raises(ValueError, match=r"_ResNetOnly.models = \('resnet9',\).*problem="):
        check_method(_ResNetOnly())
