"""Bring your own method: a class in the user's own package, outside valbench, runs in a sweep
through the user's own config folder (`hydra.searchpath`) and appears in the leaderboard next to
the built-in methods (the README's "Your own method" section, step by step)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from valbench import games
from valbench.report.collect import collect
from valbench.testing import check_method

METHOD = '''
"""A method of my own, outside valbench (the README's example)."""

import time

import numpy as np

from valbench.methods.base import BaseMethod
from valbench.types import BudgetTooSmall, Valuation


class HalfSubsetDifference(BaseMethod):
    """v_i = mean U(S) over uniform random subsets S holding i, minus the mean over those without
    i: a Monte Carlo estimate of the Banzhaf value."""

    def __init__(self, budget: int = 200):
        self.budget = budget

    def min_budget(self, n_players):
        return 2

    def value(self, game, *, seed, problem=None):
        if self.budget < 2:
            raise BudgetTooSmall(f"budget {self.budget} < 2 evaluations", minimum=2)
        start = time.perf_counter()
        masks = np.random.default_rng(seed).random((self.budget, game.n_players)) < 0.5
        utility = np.asarray(game(masks), dtype=float)
        if utility.ndim == 2:  # per-query games: one column per query
            utility = utility.mean(axis=1)
        inside = masks.T @ utility / np.maximum(masks.sum(0), 1)
        outside = (~masks).T @ utility / np.maximum((~masks).sum(0), 1)
        return Valuation(inside - outside, n_evals=self.budget, seconds=time.perf_counter() - start)
'''
CONFIG = """# conf/method/half_diff.yaml in my own config folder
_target_: mypkg.HalfSubsetDifference
budget: 200
"""


def run(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow  # a sweep in a subprocess
def test_a_method_from_my_own_package_runs_in_a_sweep_and_enters_the_leaderboard(
    tmp_path, monkeypatch
):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text(METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    from mypkg import HalfSubsetDifference

    check_method(HalfSubsetDifference(budget=2000), target=games.banzhaf)
    (tmp_path / "myconf" / "method").mkdir(parents=True)
    (tmp_path / "myconf" / "method" / "half_diff.yaml").write_text(CONFIG)
    bin_ = Path(sys.executable).parent
    run(
        str(bin_ / "valbench"),
        "-m",
        f"hydra.searchpath=[file://{tmp_path / 'myconf'}]",
        "method=random,loo,half_diff",
        "dataset=wine,breast_cancer",
        "dataset.n_train=30",
        "seed=0,1",
        "progress=false",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        cwd=tmp_path,
    )
    jobs = collect(tmp_path / "multirun")
    mine = jobs[jobs["method"] == "half_diff"]
    assert len(mine) == 4 and (mine["status"] == "ok").all()
    assert (mine["n_evals"] == 200).all()
    assert (mine["config.method._target_"] == "mypkg.HalfSubsetDifference").all()

    out = run(
        str(bin_ / "valbench-report"),
        "leaderboard",
        str(tmp_path / "multirun"),
        "-o",
        str(tmp_path / "leaderboard"),
        cwd=tmp_path,
    )
    board = pd.read_csv(tmp_path / "leaderboard" / "leaderboard.csv")
    assert set(board["method"]) == {"random", "loo", "half_diff"}
    assert "| half_diff " in out
    assert (tmp_path / "leaderboard" / "cd.png").exists()  # two settings: a rank test
