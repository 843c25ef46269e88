"""budget_c sweeps (m = c k log2 n, the AME paper's budgets) and the poison_digits experiment."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from valbench.problem import compose
from valbench.report.collect import collect
from valbench.report.plots import budget_figure
from valbench.runner import budget_for, run_job
from valbench.store.records import read_arrays

POISON = [
    "dataset=digits",
    "dataset.n_train=100",
    "dataset.n_val=40",
    "corruption=poison",
    "corruption.count=4",
    "corruption.n_queries=3",
    "utility=query_prob",
    "progress=false",
]


def records(folder):
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.rglob("result.json"))}


def test_budget_for_is_c_k_log2_n():
    assert budget_for(8, 10, 1000) == round(8 * 10 * math.log2(1000)) == 797
    assert budget_for(1, 4, 100) == 27


def test_curve_trains_the_largest_budget_once_and_raises_small_budgets(tmp_path):
    # k = 4, n = 100: c = 1, 2, 3 ask for 27, 53, 80; AME's minimum is 50, so c = 1 runs at 50
    cfg = compose([*POISON, "method=ame_knockoff", "budget_c=[2,1,3]"])
    last = run_job(cfg, tmp_path, "ame_knockoff")
    found = records(tmp_path)
    assert sorted(found) == ["c=1.88", "c=2", "c=3"]
    budgets = [found[c]["n_evals"] for c in ("c=1.88", "c=2", "c=3")]
    assert budgets == [50, 53, 80] and last["n_evals"] == 80
    for name, record in found.items():
        assert record["status"] == "ok"
        assert record["config"]["method.budget"] == record["n_evals"]
        assert record["config"]["budget_c"] == float(name.removeprefix("c="))
        # nested samples: each budget's trainings include the smaller ones', none retrained
        assert record["n_trainings"] == record["n_evals"]
        values = read_arrays(tmp_path / name)["values"]
        assert values.shape == (3, 100) and np.isfinite(values).all()
    seconds = [found[c]["seconds"] for c in ("c=1.88", "c=2", "c=3")]
    assert seconds == sorted(seconds)  # reused trainings count towards each budget's cost
    # a rerun skips every point
    mtimes = [p.stat().st_mtime_ns for p in sorted(tmp_path.rglob("result.json"))]
    run_job(cfg, tmp_path, "ame_knockoff")
    assert mtimes == [p.stat().st_mtime_ns for p in sorted(tmp_path.rglob("result.json"))]


def test_curve_leaves_methods_without_a_budget_to_one_record(tmp_path):
    cfg = compose([*POISON, "method=knn_shapley", "budget_c=[1,2]"])
    record = run_job(cfg, tmp_path, "knn_shapley")
    assert list(records(tmp_path)) == [tmp_path.name]
    assert record["status"] == "ok" and record["config"]["budget_c"] is None


def test_budget_figure_from_a_curve(tmp_path):
    for method in ("ame_knockoff", "banzhaf", "grad_dot"):
        cfg = compose([*POISON, f"method={method}", "budget_c=[2,3]"])
        run_job(cfg, tmp_path / method, method)
    frame = collect(tmp_path)
    fig = budget_figure(frame)
    assert [ax.get_title() for ax in fig.axes] == ["precision", "recall"]
    assert budget_figure(frame[frame["method"] == "grad_dot"]) is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["budget_c=[0,1]"], r"budget_c must be a list of positive numbers, got \[0, 1\]"),
        (["budget_c=[]"], r"budget_c must be a list of positive numbers, got \[\]"),
        (["corruption.count=0", "utility=val_loglik", "budget_c=[1]"], "budget_c needs planted"),
    ],
)
def test_bad_curves_fail_before_training(tmp_path, overrides, message):
    cfg = compose([*POISON, "method=ame", *overrides])
    with pytest.raises(ValueError, match=message):
        run_job(cfg, tmp_path, "ame")
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "error"


def test_poison_digits_experiment_is_the_issue_default():
    cfg = compose(["experiment=poison_digits"], return_hydra_config=True)
    assert cfg.dataset.name == "digits" and cfg.dataset.n_train == 1000
    assert cfg.corruption.name == "poison" and cfg.corruption.count == 10
    assert cfg.corruption.trigger_size == 2 and cfg.utility.name == "query_prob"
    assert cfg.model.name == "logreg" and list(cfg.budget_c) == [1, 2, 4, 8]
    swept = cfg.hydra.sweeper.params.method.split(",")
    assert {"ame_knockoff", "tmc_shapley", "banzhaf", "knn_shapley", "grad_dot"} <= set(swept)
    assert {"influence", "further_training"} <= set(swept)
    ame = compose(["experiment=poison_digits", "method=ame_knockoff"]).method
    assert ame.knockoffs == "knockoff" and ame.fdr == 0.1


@pytest.mark.slow
def test_poison_digits_default_reaches_the_issue_targets_at_c8(tmp_path):
    # the issue's targets (mean over the 10 queries): AUROC >= 0.95, recall >= 0.85, precision >= 0.7
    cfg = compose(["experiment=poison_digits", "method=ame_knockoff", "budget_c=[8]", "seed=0"])
    record = run_job(cfg, tmp_path, "ame_knockoff")
    assert record["n_evals"] == 797 and record["n_trainings"] == 797
    assert record["auroc"] >= 0.95 and record["sel_recall"] >= 0.85
    assert record["sel_precision"] >= 0.7
