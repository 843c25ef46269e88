"""Figures on a synthetic record set: files, panels, colours; point-removal curves vs. references."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from fake_records import write_sweep

from valbench.problem import load_problem
from valbench.report.cli import main
from valbench.report.collect import collect
from valbench.report.plots import (
    plot_all,
    quality_figure,
    rank_correlations,
    removal_figure,
    selection_figure,
    tradeoff_figure,
)
from valbench.report.removal import (
    FRACTIONS,
    removal_curves,
    removal_game,
    removal_masks,
    removal_table,
)
from valbench.report.style import FALLBACK_COLOURS, METHOD_COLOURS, method_colour
from valbench.report.tables import label_jobs, largest_budget, summarize

KNOWN = (
    "random loo exact_shapley exact_banzhaf mc_shapley tmc_shapley beta_shapley banzhaf ame ame_knockoff ame_sv "
    "knn_shapley data_oob grad_dot grad_cos tracin influence further_training"
).split()


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    write_sweep(root)
    return collect(root)


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_every_known_method_has_its_own_fixed_colour():
    assert set(KNOWN) == set(METHOD_COLOURS)
    assert len(set(METHOD_COLOURS.values())) == len(KNOWN)
    assert all(method_colour(m) == METHOD_COLOURS[m] for m in KNOWN)


def test_unknown_methods_get_a_colour_that_is_the_same_in_every_process():
    here = method_colour("my_method")
    assert here in FALLBACK_COLOURS
    code = "from valbench.report.style import method_colour; print(method_colour('my_method'))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here


def test_figures_have_the_expected_panels(frame):
    summary = summarize(frame)
    assert titles(quality_figure(summary)) == ["AUROC", "average precision"]
    assert titles(tradeoff_figure(summary, "n_evals")) == ["AUROC vs. game evaluations"]
    assert titles(tradeoff_figure(summary, "seconds")) == ["AUROC vs. seconds"]
    assert titles(selection_figure(summary)) == ["selection precision", "selection recall"]
    # one colour per method: the quality panel's markers carry the methods' colours
    fig = quality_figure(summary)
    colours = {line.get_color() for line in fig.axes[0].get_lines() if line.get_marker() == "o"}
    assert colours == {method_colour(m) for m in summary["method"]}


def test_selection_figure_is_skipped_when_no_method_selects(frame):
    assert selection_figure(summarize(frame[frame["method"] != "ame"])) is None


def test_rank_correlations_are_spearman_of_the_best_funded_values(frame):
    from scipy.stats import spearmanr

    jobs = label_jobs(frame)
    (matrix,) = rank_correlations(jobs).values()
    assert list(matrix.index) == ["random", "ame", "my_method", "oracle"]
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    np.testing.assert_allclose(matrix, matrix.T)
    best = largest_budget(jobs)
    assert set(best[best["method"] == "ame"]["config.method.budget"]) == {200}
    expected = []
    for seed in (0, 1, 2):
        pick = best[best["seed"] == seed].set_index("method")["path"]
        a, b = (
            np.load(pick[m].replace("result.json", "valuation.npz"))["values"]
            for m in ("ame", "oracle")
        )
        expected.append(spearmanr(a, b).statistic)
    assert matrix.loc["ame", "oracle"] == pytest.approx(np.mean(expected))


def test_no_rank_correlation_for_a_single_method(frame):
    assert rank_correlations(label_jobs(frame[frame["method"] == "oracle"])) == {}


def test_removal_masks_drop_the_highest_or_lowest_values_first():
    values = np.array([0.3, -1.0, 2.0, 0.5, 0.5, -0.2])
    rng = np.random.default_rng(0)
    high = removal_masks(values, (0.0, 1 / 6, 0.5), True, rng)
    low = removal_masks(values, (0.0, 1 / 6, 0.5), False, rng)
    assert high[0].all() and low[0].all()
    assert np.flatnonzero(~high[1]).tolist() == [2]
    assert set(np.flatnonzero(~high[2])) == {2, 3, 4}
    assert set(np.flatnonzero(~low[2])) == {1, 5, 0}


def test_removal_game_scores_test_accuracy_of_the_runs_model():
    from sklearn.linear_model import LogisticRegression

    problem = load_problem("wine", overrides=["dataset.n_train=30", "progress=false"])
    game = removal_game(problem)
    mask = np.ones(30, bool)
    mask[:5] = False
    split = problem.split
    clf = LogisticRegression(C=1.0, max_iter=500, tol=1e-4)
    clf.fit(split.x_train[mask], split.y_train[mask])
    assert game(mask[None])[0] == pytest.approx(clf.score(split.x_test, split.y_test))

    class Counting:  # a game whose value is the number of kept points, to check the curves' masks
        n_players = 30

        def __call__(self, masks):
            return masks.sum(1).astype(float)

    curves = removal_curves(Counting(), np.arange(30.0), seed=0)
    expected = [30 - round(f * 30) for f in FRACTIONS]
    np.testing.assert_array_equal(curves["highest"], expected)
    np.testing.assert_array_equal(curves["lowest"], expected)


def test_removal_table_and_figure(frame):
    jobs = largest_budget(label_jobs(frame))
    curves = removal_table(jobs[jobs["seed"] == 0])
    assert len(curves) == 4 * 2 * len(FRACTIONS)  # 4 methods at their largest budget
    full = curves[curves["fraction"] == 0.0]["accuracy"]
    assert full.nunique() == 1  # every method starts from the model on all points
    oracle = curves[curves["method"] == "oracle"].set_index(["removed", "fraction"])["accuracy"]
    # removing the 3 flipped labels (the oracle's lowest values) cannot hurt much here
    assert oracle[("lowest", 0.1)] >= oracle[("lowest", 0.0)] - 0.05
    fig = removal_figure(curves)
    assert titles(fig) == ["highest-valued removed", "lowest-valued removed"]


def test_plot_command_writes_every_figure_as_png_and_pdf(frame, tmp_path, capsys):
    table = tmp_path / "results.parquet"
    frame.to_parquet(table)
    assert main(["plot", str(table)]) == 0
    out = tmp_path / "figures"
    names = ("quality", "cost", "time", "selection", "rank_correlation", "removal")
    for name in names:
        for suffix in (".png", ".pdf"):
            path = out / f"{name}{suffix}"
            assert path.stat().st_size > 1000, path
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "quality.pdf").read_bytes()[:5] == b"%PDF-"
    printed = capsys.readouterr().out
    assert all(str(out / f"{n}.png") in printed for n in names)


def test_figures_without_job_folders_are_skipped(frame, tmp_path, caplog):
    moved = frame.assign(path=[str(tmp_path / "gone" / "result.json")] * len(frame))
    paths = plot_all(moved, tmp_path / "figs")
    assert {p.stem for p in paths} == {"quality", "cost", "time", "selection"}
    assert "no removal curve" in caplog.text
