"""Further training: one step is Grad-Dot, many full-batch steps are exact leave-one-out retraining;
shared minibatches, down-weighting, the agreement table, and bad inputs that fail before training."""

from __future__ import annotations

import numpy as np
import pytest
from exact_logreg import exact_leave_one_out

import valbench
from valbench.methods.agreement import agreement
from valbench.methods.final_model import train_final_model
from valbench.methods.further_training import FurtherTraining
from valbench.methods.gradients import GradDot
from valbench.problem import compose
from valbench.report.agreement import agreement_table
from valbench.report.cli import main as report_main
from valbench.runner import run_job

SMALL = ["dataset.n_train=100", "dataset.n_val=10", "dataset.n_test=40", "progress=false"]


@pytest.fixture(scope="module")
def wine():
    return valbench.load_problem("wine", "mislabel", overrides=[*SMALL, "model.C=0.1"])


@pytest.fixture(scope="module")
def exact(wine):
    final = train_final_model(wine)
    xv, yv = final.inputs(wine.split.x_val), final.labels(wine.split.y_val)
    return (final, *exact_leave_one_out(final, xv, yv))


@pytest.mark.slow
def test_one_step_is_grad_dot_and_many_steps_are_leave_one_out(wine, exact):
    final, actual, own = exact
    # one small gradient step without point i moves theta by lr g_i / n: to first order, Grad-Dot
    step = FurtherTraining(steps=1, seeds=1, lr=0.01, batch_size=None)
    gold = step.gold_standard(final, wine, "queries", [1], seed=0)[1]
    first_order = 0.01 * GradDot().attribute_final(final, wine, "queries", seed=0) / final.n
    assert np.abs(gold - first_order).max() < 1e-3 * np.abs(first_order).max()
    # 400 steps of gradient descent converge (rate 1 - 0.08 per step) to the retrained optimum
    method = FurtherTraining(steps=400, seeds=1, lr=1.0, batch_size=None)
    gold = method.gold_standard(final, wine, "queries", [400], seed=0)[400]
    assert np.abs(gold - actual).max() < 1e-6 * np.abs(actual).max()
    own_gold = method.gold_standard(final, wine, "self", [400], seed=0)[400]
    assert own_gold == pytest.approx(-own, abs=1e-6 * np.abs(own).max())


def test_minibatch_runs_are_seeded_and_down_weighting_estimates_removal(wine):
    kw = {"steps": 30, "seeds": 2, "lr": 0.5, "batch_size": 20, "target": "val"}
    first = FurtherTraining(**kw).value(wine.game, seed=0, problem=wine)
    assert first.values.shape == (100,) and first.n_evals == 1 + 2 * 101
    again = FurtherTraining(**kw).value(wine.game, seed=0, problem=wine)
    other = FurtherTraining(**kw).value(wine.game, seed=1, problem=wine)
    assert np.array_equal(first.values, again.values)
    assert not np.allclose(first.values, other.values)
    half = FurtherTraining(**kw, weight=0.5).value(wine.game, seed=0, problem=wine)
    assert np.corrcoef(first.values, half.values)[0, 1] > 0.99
    # a point is only in the minibatches it is drawn into: those never drawn have value 0
    assert np.isclose(first.values, 0).sum() < 100


def test_compare_reports_agreement_per_steps(wine):
    method = FurtherTraining(
        steps=[1, 100], seeds=1, lr=1.0, batch_size=None, target="queries",
        compare=["grad_dot", "influence", {"name": "influence", "damping": 1.0}],
    )  # fmt: skip
    valuation = method.value(wine.game, seed=0, problem=wine)
    rows = {(r["method"], r["steps"]): r for r in valuation.info["agreement"]}
    methods = ("grad_dot", "influence", "influence(damping=1.0)")
    assert set(rows) == {(m, s) for m in methods for s in (1, 100)}
    assert rows["grad_dot", 1]["cosine"] > 0.999 and rows["grad_dot", 1]["spearman"] > 0.99
    assert rows["influence", 100]["spearman"] > rows["influence", 1]["spearman"]
    assert rows["influence", 100]["spearman"] > rows["influence(damping=1.0)", 100]["spearman"]


def test_agreement_metrics():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=(3, 50))
    assert agreement(gold, 2 * gold) == pytest.approx({"cosine": 1.0, "spearman": 1.0})
    assert agreement(gold, -gold) == pytest.approx({"cosine": -1.0, "spearman": -1.0})
    assert agreement(gold[0], np.exp(gold[0]))["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        agreement(gold, gold[:2])


def test_experiment_job_and_agreement_table(tmp_path, capsys):
    cfg = compose(
        ["experiment=final_model_only", "dataset.n_train=40", "dataset.n_val=10",
         "method.steps=[1,5]", "progress=false"]
    )  # fmt: skip
    record = run_job(cfg, tmp_path / "job", "further_training")
    assert record["status"] == "ok" and record["info"]["agreement"]
    table = agreement_table(tmp_path)
    assert set(table["steps"]) == {1, 5} and "grad_dot" in set(table["method"])
    assert table["cosine_mean"].between(-1, 1).all()
    assert report_main(["agreement", str(tmp_path)]) == 0
    assert "| grad_dot |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "params, message",
    [
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"steps": []}, "steps must be an integer >= 1 or a non-empty list"),
        ({"seeds": 0}, "seeds must be an integer >= 1, got 0"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"batch_size": None}, "set seeds=1"),
        ({"weight": 1.0}, r"weight must lie in \[0, 1\)"),
        ({"target": "test"}, "unknown target 'test'"),
        ({"compare": ["nope"]}, "compare takes the gradient methods .*, got 'nope'"),
        ({"compare": ["loo"]}, "compare takes the gradient methods .*, got 'loo'"),
        ({"compare": ["grad_cos"]}, "grad_cos: unknown target 'self'"),
        ({"compare": ["tracin"]}, "logreg is solved by L-BFGS"),
        ({"compare": [{"damping": 0.1}]}, "a compare entry is a method name or"),
        ({"compare": [{"name": "influence", "solver": "qr"}]}, "unknown solver 'qr'"),
    ],
)
def test_bad_inputs_fail_before_training(wine, params, message, monkeypatch):
    monkeypatch.setattr("valbench.methods.further_training.train_final_model", None)
    with pytest.raises(ValueError, match=message):
        FurtherTraining(**params).value(wine.game, seed=0, problem=wine)
    with pytest.raises(ValueError, match="further_training is model-based"):
        FurtherTraining().value(wine.game, seed=0)
