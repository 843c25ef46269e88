"""Influence functions: the explicit solve predicts actual leave-one-out retraining on a tiny logistic
regression; CG and LiSSA reproduce the explicit solve; bad configurations fail before training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exact_logreg import exact_leave_one_out, objective
from torch.func import grad

import valbench
from valbench.methods.final_model import train_final_model
from valbench.methods.gradients import as_vector
from valbench.methods.influence import Influence

SMALL = ["dataset.n_train=100", "dataset.n_val=10", "dataset.n_test=40", "progress=false"]


@pytest.fixture(scope="module")
def wine():
    # C = 0.1: a well-conditioned objective, for which first-order influence is accurate at n = 100
    return valbench.load_problem("wine", "mislabel", overrides=[*SMALL, "model.C=0.1"])


@pytest.fixture(scope="module")
def exact(wine):
    """The final model at the exact optimum and the actual leave-one-out change of every validation
    point's loss, L_q(theta_{-i}) - L_q(theta), from exact retraining."""
    final = train_final_model(wine)
    xv, yv = final.inputs(wine.split.x_val), final.labels(wine.split.y_val)
    return final, exact_leave_one_out(final, xv, yv)[0]  # (Q, n)


def test_explicit_influence_predicts_leave_one_out_retraining(wine, exact):
    final, actual = exact
    predicted = Influence(target="queries", damping=0.0).attribute_final(
        final, wine, "queries", seed=0
    )
    assert predicted.shape == actual.shape == (10, 100)
    for q in range(len(actual)):
        assert np.corrcoef(predicted[q], actual[q])[0, 1] > 0.98
        # not only correlated: the same size (least-squares slope of actual on predicted)
        slope = (predicted[q] @ actual[q]) / (predicted[q] @ predicted[q])
        assert 0.8 < slope < 1.4  # measured 0.99-1.26: removal also lowers the curvature


@pytest.mark.slow
@pytest.mark.parametrize("target", ["queries", "val", "self"])
def test_cg_and_lissa_match_the_explicit_solve(wine, exact, target):
    final, _ = exact
    kw = {"target": target, "damping": 0.01}
    want = Influence(**kw).attribute_final(final, wine, target, seed=0)
    cg = Influence(solver="cg", tol=1e-10, max_iter=200, **kw).attribute_final(
        final, wine, target, seed=0
    )
    lissa = Influence(solver="lissa", max_iter=300, **kw).attribute_final(
        final, wine, target, seed=0
    )
    scale = np.abs(want).max()
    assert np.abs(cg - want).max() < 1e-8 * scale
    assert np.abs(lissa - want).max() < 1e-3 * scale
    if target == "self":
        assert (want < 0).all()  # minus a positive-definite quadratic form


@pytest.mark.slow
def test_stochastic_lissa_is_seeded_and_close(wine, exact):
    final, _ = exact
    method = Influence(target="val", solver="lissa", damping=0.01, max_iter=300, batch_size=20)
    first = method.attribute_final(final, wine, "val", seed=0)
    assert np.array_equal(first, method.attribute_final(final, wine, "val", seed=0))
    want = Influence(target="val", damping=0.01).attribute_final(final, wine, "val", seed=0)
    assert np.corrcoef(first, want)[0, 1] > 0.95


@pytest.mark.slow
def test_negative_curvature_and_divergence_are_reported(wine, exact):
    final, _ = exact
    with pytest.raises(ValueError, match="not positive definite"):
        Influence(target="val", solver="cg", damping=-10.0).attribute_final(
            final, wine, "val", seed=0
        )
    with pytest.raises(ValueError, match="lissa diverged"):
        Influence(target="val", solver="lissa", scale=1e-3, max_iter=500).attribute_final(
            final, wine, "val", seed=0
        )


@pytest.mark.parametrize(
    "params, message",
    [
        ({"solver": "newton"}, "unknown solver 'newton'"),
        ({"damping": -1.0}, "damping must be a number >= 0"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"tol": 0.0}, "tol must be positive"),
        ({"scale": -2.0}, "scale must be positive"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
        ({"target": "train"}, "unknown target 'train'"),
    ],
)
def test_bad_configurations_fail_before_training(wine, params, message, monkeypatch):
    monkeypatch.setattr("valbench.methods.gradients.train_final_model", None)  # no training
    with pytest.raises(ValueError, match=message):
        valbench.make_method("influence", **params).value(wine.game, seed=0, problem=wine)


def test_explicit_refuses_large_models_and_needs_a_problem():
    problem = valbench.load_problem(
        "digits", "mislabel", model="mlp", overrides=[*SMALL, "model.widths=[256]"]
    )
    with pytest.raises(ValueError, match="use solver=cg or solver=lissa"):
        Influence().value(problem.game, seed=0, problem=problem)
    with pytest.raises(ValueError, match="influence is model-based"):
        Influence().value(problem.game, seed=0)


def test_explicit_solve_warns_about_negative_curvature(caplog):
    mlp = ["model.widths=[8]", "model.steps=30", "model.batch_size=16"]
    problem = valbench.load_problem("digits", "mislabel", model="mlp", overrides=[*SMALL, *mlp])
    final = train_final_model(problem)
    with caplog.at_level("WARNING", logger="valbench.methods.influence"):
        Influence(damping=0.0).attribute_final(final, problem, "val", seed=0)
    assert "negative eigenvalues" in caplog.text and "damping above" in caplog.text


@pytest.mark.parametrize("dataset", ["wine", "breast_cancer"])  # 3 classes; 2: binomial form
def test_final_logreg_is_the_optimum_of_its_objective(dataset):
    """The engine's fit, as a FinalModel, is stationary for J (so the decay terms and the parameter
    layout are the engine's), and influence predicts exact retraining in both logreg forms."""
    problem = valbench.load_problem(dataset, "mislabel", overrides=[*SMALL, "model.C=0.1"])
    final = train_final_model(problem)
    weights = torch.ones(final.n, dtype=final.x.dtype)
    gradient = grad(lambda t: objective(final, t, weights))(as_vector(final.params))
    assert gradient.abs().max() < 1e-3  # the engine's float32 tolerance, 1e-4 per sample / C
    xv, yv = final.inputs(problem.split.x_val), final.labels(problem.split.y_val)
    actual, _ = exact_leave_one_out(final, xv, yv)
    predicted = Influence(damping=0.0).attribute_final(final, problem, "queries", seed=0)
    corr = [np.corrcoef(p, a)[0, 1] for p, a in zip(predicted, actual, strict=True)]
    assert np.median(corr) > 0.98  # measured: wine all >= 0.989; breast_cancer 9 of 10 >= 0.985
