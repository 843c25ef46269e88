"""`valbench-report paper`: the tiny mode runs every figure's code path; reruns skip finished jobs;
missing and stale inputs are named on the figure with the sweep to rerun."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

from valbench.report.cli import main
from valbench.report.paper import BY_NAME, FIGURES, SWEEPS, make_paper, plan_markdown
from valbench.report.paper_ame import false_discovery_proportion
from valbench.report.paper_sweeps import Progress, sweep_jobs, sweep_state
from valbench.store.records import RECORD_NAME

FILES = ("csv", "md", "png", "pdf")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny run of every sweep and figure (shared by the tests of this module)."""
    root = tmp_path_factory.mktemp("paper")
    runs, out, stream = root / "runs", root / "out", io.StringIO()
    entries = make_paper(runs, out, tiny=True, stream=stream)
    return runs, out, entries, stream.getvalue()


def test_tiny_mode_draws_every_figure_with_its_files(tiny):
    runs, out, entries, progress = tiny
    assert [e["figure"].name for e in entries] == [f.name for f in FIGURES]
    assert {e["state"] for e in entries} == {"complete"}
    for figure in FIGURES:
        for suffix in FILES:
            assert (out / f"{figure.name}.{suffix}").stat().st_size > 0
    summary = (out / "summary.md").read_text()
    assert "Tiny mode" in summary and "not results" in summary
    assert summary.count("Ours: ") == len(FIGURES) and summary.count("Paper: ") == len(FIGURES)
    assert "Measured: the last run of every sweep took" in summary  # out/run.json
    # one progress line per job: done of total and the time left
    total = sum(len(sweep_jobs(s, runs, tiny=True)) for s in SWEEPS)
    assert f"[paper] {total}/{total} jobs" in progress and "left" in progress


def test_tiny_tables_hold_the_plotted_numbers(tiny):
    _, out, _, _ = tiny
    import pandas as pd

    fdr = pd.read_csv(out / "fdr.csv")
    assert sorted(fdr["q"]) == [0.1, 0.5] and fdr["fdp"].between(0, 1).all()
    poison = pd.read_csv(out / "poison.csv")
    assert set(poison["method"]) == {"ame", "ame_knockoff"}
    assert poison["base"].str.contains("synthetic_images").any()
    agreement = pd.read_csv(out / "fmo_agreement.csv")
    assert set(agreement["model"]) == {"logreg", "mlp"}
    assert agreement["spearman"].between(-1, 1).all()


def test_a_rerun_skips_finished_jobs(tiny):
    runs, _, _, _ = tiny
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob(RECORD_NAME)}
    stream = io.StringIO()
    out = runs.parent / "again"
    entries = make_paper(runs, out, tiny=True, only=["paper_fmo_loo", "paper_cost"], stream=stream)
    assert {e["state"] for e in entries} == {"complete"}
    assert stream.getvalue().count("(done before)") == sum(
        len(sweep_jobs(BY_NAME[n], runs, tiny=True)) for n in ("paper_fmo_loo", "paper_cost")
    )
    assert {p: p.stat().st_mtime_ns for p in runs.rglob(RECORD_NAME)} == stamps


def test_missing_and_stale_jobs_are_named_on_the_figure(tiny, capsys):
    runs, _, _, _ = tiny
    copy = runs.parent / "partial"
    shutil.copytree(runs, copy)
    jobs = sweep_jobs(BY_NAME["paper_cost"], copy, tiny=True)
    shutil.rmtree(jobs[0].folder)  # missing
    record = jobs[1].folder / RECORD_NAME  # stale: made with another config
    data = json.loads(record.read_text())
    data["config"]["dataset.n_train"] = 41
    record.write_text(json.dumps(data))
    state = sweep_state(BY_NAME["paper_cost"], copy, tiny=True)
    assert (state.missing, state.stale, state.fresh) == (1, 1, state.total - 2)
    curve = sweep_jobs(BY_NAME["paper_ame_digits"], copy, tiny=True)[0].folder
    shutil.rmtree(curve / "c=2")  # a budget curve killed before its largest c
    assert sweep_state(BY_NAME["paper_ame_digits"], copy, tiny=True).missing == 1
    shutil.rmtree(copy / "paper_fdr")  # a figure without any input
    out = copy / "out"
    entries = {e["figure"].name: e for e in make_paper(copy, out, tiny=True, run=False)}
    assert entries["cost"]["state"] == "partial"
    assert "1 missing, 1 stale" in entries["cost"]["why"]
    assert "--only paper_cost" in entries["cost"]["why"]
    assert entries["fdr"]["state"] == "missing" and "--only paper_fdr" in entries["fdr"]["why"]
    assert not (out / "fdr.png").exists()
    assert "PARTIAL" in (out / "cost.md").read_text()
    summary = (out / "summary.md").read_text()
    assert "PARTIAL" in summary and "Not generated" in summary
    assert "figure fdr: missing" in capsys.readouterr().out


def test_plan_counts_every_job_and_the_cli_prints_it(tmp_path, capsys):
    table, total = plan_markdown(tmp_path)
    assert all(s.name in table for s in SWEEPS)
    assert total == sum(s.seconds * len(sweep_jobs(s, tmp_path)) for s in SWEEPS)
    assert main(["paper", "--plan", "--runs", str(tmp_path)]) == 0
    assert "estimated" in capsys.readouterr().out
    assert main(["paper", "--no-run", "--only", "nope", "--runs", str(tmp_path)]) == 2


def test_false_discovery_proportion():
    planted = np.array([1, 1, 0, 0, 0], bool)
    assert false_discovery_proportion(np.array([1, 0, 1, 1, 0], bool), planted) == 2 / 3
    assert false_discovery_proportion(np.zeros(5, bool), planted) == 0.0  # empty selection
    per_query = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0]], bool)
    assert false_discovery_proportion(per_query, planted) == 0.5


def test_progress_scales_the_plan_by_the_speed_so_far():
    stream = io.StringIO()
    progress = Progress([10.0, 10.0, 20.0], stream)
    progress.update("a (done before)", None)
    assert progress.left() == 30.0  # nothing timed yet: the plan
    line = progress.update("b", 5.0)  # twice as fast as planned
    assert progress.left() == 10.0
    assert line.startswith("[paper] 2/3 jobs") and "~0m10s left" in line
