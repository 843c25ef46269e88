"""Leaderboard statistics against Demšar (2006) and scipy, on job tables whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from valbench.report.cli import main
from valbench.report.leaderboard import (
    critical_difference,
    friedman,
    holm,
    label_settings,
    leaderboard,
    nemenyi_q,
    pareto_front,
)
from valbench.report.leaderboard_plots import cliques

# Demšar 2006, Table 5(a): critical values q_0.05 of the two-tailed Nemenyi test, k = 2..10.
DEMSAR_Q05 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]


def job_table(quality: dict, settings=("wine", "digits", "breast_cancer"), seeds=5, noise=0.02):
    """One ok job per method x setting x seed: AUROC = quality[method] + noise (seeded)."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset in settings:
        for method, q in quality.items():
            for seed in range(seeds):
                rows.append(
                    {
                        "status": "ok",
                        "method": method,
                        "seed": seed,
                        "dataset": dataset,
                        "corruption": "mislabel",
                        "model": "logreg",
                        "utility": "val_loglik",
                        "auroc": q + noise * rng.standard_normal(),
                        "ap": q / 2,
                        "n_evals": 100.0,
                        "seconds": 0.5 if method != "random" else 0.0,
                        "config.dataset.name": dataset,
                        "config.seed": seed,
                    }
                )
    return pd.DataFrame(rows)


def test_nemenyi_critical_values_are_demsars_table():
    for k, q in enumerate(DEMSAR_Q05, start=2):
        assert nemenyi_q(k) == pytest.approx(q, abs=1e-3)
    # Demšar's worked example (Sec. 3.2.4): 4 classifiers on 14 data sets, CD = 1.25
    assert critical_difference(4, 14) == pytest.approx(1.25, abs=0.005)


def test_friedman_is_demsars_worked_example_and_scipys_statistic():
    # Demšar 2006, Sec. 3.2.4: mean ranks 3.143, 2.000, 2.893, 1.964 over N = 14: chi2_F = 9.28,
    # F_F = 3.69
    test = friedman([3.143, 2.000, 2.893, 1.964], 14)
    assert test["chi2"] == pytest.approx(9.28, abs=0.01)
    assert test["F"] == pytest.approx(3.69, abs=0.01)
    assert test["p_F"] == pytest.approx(stats.f.sf(test["F"], 3, 39))
    scores = np.random.default_rng(1).random((12, 5))  # ties have probability 0
    ranks = stats.rankdata(-scores, axis=1)
    expected = stats.friedmanchisquare(*scores.T)
    test = friedman(ranks.mean(0), 12)
    assert test["chi2"] == pytest.approx(expected.statistic)
    assert test["p"] == pytest.approx(expected.pvalue)


def test_holm_adjusts_sorted_p_values_step_down():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # 2 x 0.5 caps at 1, then the max


def test_pareto_front_keeps_the_undominated_points():
    cost = np.array([1.0, 2.0, 3.0, 0.5, 2.0])
    quality = np.array([0.7, 0.9, 0.8, 0.6, 0.9])
    assert pareto_front(cost, quality).tolist() == [True, True, False, True, True]


def test_cliques_join_runs_of_ranks_closer_than_cd():
    assert cliques(np.array([1.0, 1.5, 2.6, 3.0]), 1.2) == [(0, 1), (1, 2), (2, 3)]
    assert cliques(np.array([1.0, 2.0, 3.0]), 0.5) == []
    assert cliques(np.array([1.0, 1.1, 1.2]), 5.0) == [(0, 2)]


def test_mean_ranks_friedman_and_wins_of_a_known_order():
    quality = {"knn_shapley": 0.9, "ame": 0.8, "loo": 0.7, "random": 0.5}
    board = leaderboard(job_table(quality))
    assert board.table["method"].tolist() == list(quality)
    assert board.table["mean_rank"].tolist() == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(board.ranks[list(quality)].to_numpy(), np.tile([1, 2, 3, 4], (3, 1)))
    assert board.friedman["chi2"] == pytest.approx(9.0)  # perfect agreement: N (k - 1)
    assert board.cd == pytest.approx(critical_difference(4, 3))
    # every pair differs in all 15 (setting, seed) pairs: Wilcoxon's exact p = 2 / 2^15
    pairs = board.pairs.set_index(["method", "other"])
    assert pairs.loc[("ame", "loo"), "p"] == pytest.approx(2 / 2**15)
    assert pairs.loc[("ame", "loo"), "outcome"] == "win"
    assert pairs.loc[("loo", "ame"), "outcome"] == "loss"
    wins = board.table.set_index("method")[["wins", "ties", "losses"]]
    assert wins.loc["knn_shapley"].tolist() == [3, 0, 0]
    assert wins.loc["random"].tolist() == [0, 0, 3]
    scores = board.cells.set_index(["method", "setting"])
    assert (scores["seeds"] == 5).all() and scores["complete"].all()


def test_methods_within_noise_of_each_other_tie():
    board = leaderboard(job_table({"ame": 0.8, "banzhaf": 0.8}, noise=0.05))
    assert set(board.pairs["outcome"]) == {"tie"}
    assert board.table["ties"].tolist() == [1, 1]


def test_a_method_that_failed_a_seed_leaves_its_setting_out_of_the_ranks():
    frame = job_table({"ame": 0.8, "loo": 0.7, "random": 0.5})
    failed = (frame["method"] == "loo") & (frame["dataset"] == "wine") & (frame["seed"] == 4)
    frame.loc[failed, ["status", "auroc"]] = ["error", np.nan]
    board = leaderboard(frame)
    assert board.left_out == {"wine": "incomplete: loo"}
    assert list(board.ranks.index) == ["breast_cancer", "digits"]
    cell = board.cells.set_index(["method", "setting"]).loc[("loo", "wine")]
    assert (cell["seeds"], cell["failed"], cell["expected"], cell["complete"]) == (4, 1, 5, False)
    assert board.table.set_index("method").loc["loo", "incomplete"] == 1


def test_settings_of_one_base_are_told_apart_by_their_problem_keys():
    easy = job_table({"ame": 0.9}, settings=("synthetic",)).assign(
        **{"config.dataset.class_sep": 2.0}
    )
    hard = job_table({"ame": 0.6}, settings=("synthetic",)).assign(
        **{"config.dataset.class_sep": 0.5}
    )
    labels = set(label_settings(pd.concat([easy, hard]))["setting"])
    assert labels == {"synthetic class_sep=2", "synthetic class_sep=0.5"}


def test_one_method_gives_tables_but_no_rank_test(tmp_path, capsys):
    frame = job_table({"ame": 0.8})
    frame.to_csv(tmp_path / "jobs.csv", index=False)
    frame.assign(schema=1).to_csv(tmp_path / "jobs.csv", index=False)
    assert main(["leaderboard", str(tmp_path / "jobs.csv"), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "only one method (ame): no rank test possible" in out
    for name in ("leaderboard.md", "settings.md", "pairs.md", "statistics.md", "jobs.csv"):
        assert (tmp_path / "out" / name).exists()
    assert not (tmp_path / "out" / "cd.png").exists()
    assert (tmp_path / "out" / "cost_quality.png").exists()


def test_leaderboard_command_writes_tables_and_figures(tmp_path, capsys):
    frame = job_table({"knn_shapley": 0.9, "ame": 0.8, "random": 0.5}).assign(schema=1)
    frame.to_csv(tmp_path / "jobs.csv", index=False)
    assert main(["leaderboard", str(tmp_path / "jobs.csv"), "-o", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    for name in ("cd", "cost_quality"):
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.pdf").exists()
    table = (out / "leaderboard.md").read_text().splitlines()
    assert table[0].startswith("| method | mean rank | AUROC | AP | W / T / L")
    assert table[2].startswith("| knn_shapley | 1.00 | ")
    assert "Friedman test over N = 3 settings and k = 3 methods" in capsys.readouterr().out
    back = pd.read_csv(out / "jobs.csv")
    assert len(back) == len(frame)


def test_a_folder_without_records_is_a_clear_error(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "no valbench result records" in capsys.readouterr().err
