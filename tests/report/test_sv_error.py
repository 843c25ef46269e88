"""Shapley error vs. budget (experiment=ame_paper_mnist_sv): configs, the reference method, the error
table against a direct computation, the report subcommand and its errors on bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from valbench import games, make_method
from valbench.methods.shapley import MonteCarloShapley, ReferenceShapley
from valbench.problem import compose
from valbench.report.cli import main
from valbench.report.collect import collect
from valbench.report.sv_error import (
    error_figure,
    error_table,
    relative_l2,
    summarize_errors,
    to_markdown,
)
from valbench.runner import run_job
from valbench.store.records import (
    RECORD_NAME,
    read_arrays,
    read_record,
    write_arrays,
    write_record,
)

# A tiny poison problem: 30 players, 3 of them poisoned, accuracy on 20 triggered queries.
TINY = [
    "dataset=synthetic",
    "dataset.n_samples=400",
    "dataset.n_features=5",
    "dataset.n_informative=3",
    "dataset.n_train=30",
    "dataset.n_val=20",
    "corruption=poison",
    "corruption.count=3",
    "corruption.n_queries=20",
    "utility=query_accuracy",
    "progress=false",
]
METHODS = ("ame_sv", "mc_shapley", "tmc_shapley")
BUDGETS = (60, 240, 960)
SEEDS = (0, 1)
REFERENCE_BUDGET = 6000


def run(root, method, budget, seed, extra=()):
    cfg = compose([*TINY, *extra, f"method={method}", f"method.budget={budget}", f"seed={seed}"])
    folder = root / f"method={method},method.budget={budget},seed={seed}"
    record = run_job(cfg, folder, method)
    assert record["status"] == "ok", record["error"]
    return folder


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Estimates and references in two folders, as the two experiments write them."""
    root = tmp_path_factory.mktemp("sv")
    for seed in SEEDS:
        for method in METHODS:
            for budget in BUDGETS:
                run(root / "estimates", method, budget, seed)
        run(root / "reference", "sv_reference", REFERENCE_BUDGET, seed)
    return root


@pytest.fixture(scope="module")
def frame(sweep):
    return collect(sweep)


def test_experiment_is_the_papers_shapley_setting():
    cfg = compose(["experiment=ame_paper_mnist_sv"], return_hydra_config=True)
    assert cfg.name == "ame_paper_mnist_sv" and cfg.sv_reference == "sv_reference"
    assert cfg.dataset.name == "mnist" and cfg.dataset.n_train == 1000
    assert not cfg.dataset.download
    assert cfg.corruption.name == "poison" and cfg.corruption.count == 10  # 1%
    assert cfg.corruption.target == 0 and cfg.corruption.trigger_size == 3
    assert cfg.corruption.n_queries == 100
    assert cfg.model.name == "logreg" and cfg.utility.name == "query_accuracy"
    params = cfg.hydra.sweeper.params
    assert params.method.split(",") == ["ame_sv", "mc_shapley", "tmc_shapley"]
    budgets = [int(b) for b in params["method.budget"].split(",")]
    assert budgets == sorted(budgets) and min(budgets) >= 2 * cfg.dataset.n_train
    assert len(params.seed.split(",")) >= 3 and cfg.get("budget_c") is None

    ref = compose(["experiment=ame_paper_mnist_sv_reference"], return_hydra_config=True)
    for group in ("dataset", "corruption", "model", "utility"):
        assert ref[group] == cfg[group], group
    assert ref.sv_reference == "sv_reference" and ref.hydra.sweeper.params.seed == params.seed
    assert ref.hydra.sweeper.params.method == "sv_reference"
    assert int(ref.hydra.sweeper.params["method.budget"]) >= 10 * max(budgets)
    assert ref.method._target_.endswith("ReferenceShapley")
    assert ref.method.seed_offset > max(int(s) for s in params.seed.split(","))


@pytest.mark.parametrize("experiment", ["ame_paper_mnist_sv", "ame_paper_mnist_sv_reference"])
def test_a_single_budget_override_composes(experiment):
    # `valbench -m experiment=... method.budget=M` is applied before the sweep picks the method
    cfg = compose([f"experiment={experiment}", "method.budget=1234"])
    assert cfg.method.budget == 1234


def test_mnist_without_files_fails_before_training(tmp_path):
    cfg = compose(
        ["experiment=ame_paper_mnist_sv", f"dataset.root={tmp_path}", "method=mc_shapley"]
    )
    with pytest.raises(FileNotFoundError, match=f"mnist files not found under root {tmp_path}"):
        run_job(cfg, tmp_path / "job", "mc_shapley")
    record = json.loads((tmp_path / "job" / "result.json").read_text())
    assert record["status"] == "error" and "dataset.download=true" in record["error"]


def test_reference_draws_permutations_of_its_own():
    game = games.random_pairwise(12, 20)
    ref = ReferenceShapley(budget=500, seed_offset=1000).value(game, seed=3)
    same = MonteCarloShapley(budget=500).value(game, seed=1003)
    np.testing.assert_array_equal(ref.values, same.values)
    assert not np.array_equal(ref.values, MonteCarloShapley(budget=500).value(game, seed=3).values)
    assert ref.info["seed_offset"] == 1000 and ref.stderr is not None
    assert make_method("sv_reference").budget == 320000
    with pytest.raises(ValueError, match="seed_offset must be a positive integer, got -1"):
        ReferenceShapley(budget=500, seed_offset=-1).value(game, seed=0)


def test_error_table_matches_a_direct_computation(frame):
    table = error_table(frame)
    assert len(table) == len(METHODS) * len(BUDGETS) * len(SEEDS)
    assert set(table["method"]) == set(METHODS) and set(table["budget"]) == set(BUDGETS)
    assert (table["problem"] == "").all() and (table["variant"] == "").all()
    for _, row in table.iterrows():
        job = read_arrays(Path(row["path"]).parent)
        ref = read_arrays(Path(row["reference"]).parent)
        assert f"seed={row['seed']}" in row["reference"]  # the reference of the job's own seed
        v, r = job["values"], ref["values"]
        assert v.shape == r.shape == (30,)
        assert row["rel_l2"] == pytest.approx(np.sqrt(((v - r) ** 2).sum() / (r**2).sum()))
        floor = np.sqrt((ref["stderr"] ** 2).sum() / (r**2).sum())
        assert row["ref_floor"] == pytest.approx(floor)
        debiased = max(((v - r) ** 2).sum() - (ref["stderr"] ** 2).sum(), 0) / (r**2).sum()
        assert row["rel_l2_debiased"] == pytest.approx(np.sqrt(debiased))
        rho = spearmanr(v, r).statistic if np.ptp(v) > 0 else np.nan
        assert row["spearman"] == pytest.approx(rho, nan_ok=True)
        assert row["ref_n_evals"] <= REFERENCE_BUDGET and row["n_evals"] <= row["budget"]

    summary = summarize_errors(table)
    assert len(summary) == len(METHODS) * len(BUDGETS) and (summary["seeds"] == 2).all()
    mc = table[(table["method"] == "mc_shapley") & (table["budget"] == 240)]["rel_l2"]
    row = summary[(summary["method"] == "mc_shapley") & (summary["budget"] == 240)].iloc[0]
    assert row["rel_l2"] == pytest.approx(mc.mean())
    assert row["rel_l2_std"] == pytest.approx(mc.std(ddof=1))
    assert row["rel_l2_ci"] == pytest.approx(12.7062 * mc.std(ddof=1) / math.sqrt(2), rel=1e-4)


def test_monte_carlo_error_falls_with_the_budget(frame):
    # an unbiased estimator: the error falls like 1 / sqrt(budget), about halving per 4x here
    summary = summarize_errors(error_table(frame))
    errors = summary[summary["method"] == "mc_shapley"].sort_values("budget")["rel_l2"].to_numpy()
    assert (errors[1:] < errors[:-1] / 1.3).all(), errors
    assert errors[-1] < 0.5
    ame = summary[summary["method"] == "ame_sv"].sort_values("budget")["rel_l2"].to_numpy()
    assert ame[-1] < ame[0]  # AME-SV (LASSO, eps-truncated) need not fall at every step


def test_report_subcommand_writes_tables_and_figure(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        main(["sv-error", str(sweep / "estimates"), str(sweep / "reference"), "-o", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert (
        "| method | budget | seeds | rel. L2 error |" in printed and "18 jobs against 2" in printed
    )
    for name in (
        "sv_error_jobs.csv",
        "sv_error.csv",
        "sv_error.md",
        "sv_error.png",
        "sv_error.pdf",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "sv_error.md").read_text().count("| mc_shapley |") == len(BUDGETS)


def test_figure_panels_and_lines(frame):
    fig = error_figure(summarize_errors(error_table(frame)))
    error_ax, rank_ax = fig.axes[:2]
    assert error_ax.get_title() == "relative L2 error" and error_ax.get_yscale() == "log"
    assert error_ax.get_xscale() == "log" and rank_ax.get_title() == "rank correlation"
    labels = error_ax.get_legend_handles_labels()[1]
    assert set(METHODS) <= set(labels) and "reference floor" in labels
    assert [t.get_text() for t in error_ax.get_xticklabels()] == [str(b) for b in BUDGETS]


def test_markdown_has_one_row_per_method_and_budget(frame):
    text = to_markdown(summarize_errors(error_table(frame)))
    assert len(text.splitlines()) == 2 + len(METHODS) * len(BUDGETS)


def test_without_a_reference_job_the_error_says_what_to_run(sweep, capsys):
    estimates = collect(sweep / "estimates")
    with pytest.raises(ValueError, match=r"no finished reference job: no ok record of method "):
        error_table(estimates)
    with pytest.raises(ValueError, match="no finished reference job.*'loo'"):
        error_table(collect(sweep), reference="loo")
    assert main(["sv-error", str(sweep / "estimates")]) == 2
    assert "experiment=ame_paper_mnist_sv_reference" in capsys.readouterr().err


def test_a_seed_without_its_reference_is_named(sweep, tmp_path):
    run(tmp_path, "mc_shapley", 60, 5)
    frame = collect(sweep / "reference", tmp_path)
    with pytest.raises(
        ValueError, match=r"no reference job \('sv_reference'\) for mc_shapley at seed=5"
    ):
        error_table(frame)


def test_a_reference_of_another_problem_does_not_match(sweep, tmp_path):
    run(tmp_path, "mc_shapley", 60, 0, extra=["corruption.n_queries=10"])
    frame = collect(sweep / "reference", tmp_path)
    with pytest.raises(ValueError, match=r"corruption.n_queries=10 seed=0"):
        error_table(frame)


def rewrite(job: Path, arrays: dict) -> None:
    """Replace a job's arrays and the checksum its record holds (a consistent, different job)."""
    record = read_record(job / RECORD_NAME)
    write_record(job, {**record, "arrays_sha256": write_arrays(job, arrays)})


def test_mismatched_players_raise(sweep, tmp_path):
    folder = run(tmp_path / "est", "mc_shapley", 60, 0)
    ref = run(tmp_path / "ref", "sv_reference", 200, 0)
    arrays = read_arrays(ref)
    rewrite(ref, {**arrays, "values": arrays["values"][:-1], "stderr": arrays["stderr"][:-1]})
    with pytest.raises(
        ValueError, match=r"values of shape \(30,\) but its reference .* has \(29,\)"
    ):
        error_table(collect(tmp_path))
    arrays["planted"] = np.roll(arrays["planted"], 1)
    rewrite(ref, arrays)
    with pytest.raises(ValueError, match="plant different points: not the same problem"):
        error_table(collect(tmp_path))
    rewrite(ref, {**arrays, "values": np.zeros(30)})
    with pytest.raises(ValueError, match="all-zero values"):
        error_table(collect(tmp_path))
    assert folder.exists()


def test_error_functions():
    r = np.array([3.0, 4.0, 0.0])
    assert relative_l2(r, r) == 0 and relative_l2(np.zeros(3), r) == 1
    assert relative_l2(r + [0, 0, 5], r) == pytest.approx(1)
    with pytest.raises(ValueError, match="all zero"):
        relative_l2(r, np.zeros(3))
