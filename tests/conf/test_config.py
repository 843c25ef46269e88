"""Every config in conf/ composes; names users type map to what exists; bad names list the options."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from valbench.problem import GROUPS, compose, make_method, options

DESIGN_NAMES = {
    "dataset": {
        "digits",
        "breast_cancer",
        "wine",
        "synthetic",
        "csv",
        "mnist",
        "fashion_mnist",
        "cifar10",
    },
    "corruption": {"none", "mislabel", "noise", "poison"},
    "model": {"logreg", "mlp", "cnn", "resnet9"},
    "utility": {"val_accuracy", "val_loglik", "query_prob", "query_margin"},
    "method": {"random", "loo"},
}
ALL = [(g, o) for g in GROUPS for o in options(g)]


def test_design_names_exist():
    for group, names in DESIGN_NAMES.items():
        assert names <= set(options(group)), group


@pytest.mark.parametrize("group, option", ALL, ids=[f"{g}={o}" for g, o in ALL])
def test_every_group_option_composes(group, option):
    cfg = compose([f"{group}={option}"])
    assert OmegaConf.select(cfg, group) is not None
    if group == "method":
        method = instantiate(cfg.method)
        assert hasattr(method, "value")
    elif group == "dataset":
        assert {"name", "n_train", "n_val", "n_test", "standardize"} <= set(cfg.dataset)
    else:
        assert cfg[group].name == option


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose([f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.name == experiment
    for method in str(
        OmegaConf.select(cfg, "hydra.sweeper.params.method") or cfg.hydra.runtime.choices.method
    ).split(","):
        assert method.strip() in options("method")


def test_unknown_group_option_lists_what_exists():
    with pytest.raises(Exception, match="(?s)dataset/nope.*digits"):
        compose(["dataset=nope"])


def test_make_method_checks_names_and_parameters():
    assert make_method("loo", budget=None).budget is None
    with pytest.raises(ValueError, match="unknown method 'shap'; available: .*loo.*random"):
        make_method("shap")
    with pytest.raises(
        ValueError,
        match=r"method 'loo' has no parameter\(s\) \['tol'\]; its parameters: \['budget'\]",
    ):
        make_method("loo", tol=0.1)
