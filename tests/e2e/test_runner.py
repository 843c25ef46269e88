"""End to end: random and loo on digits through the public API, run_job and the `valbench` command."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

import valbench
from valbench.problem import compose
from valbench.report.collect import collect
from valbench.runner import run_job
from valbench.store.records import write_record
from valbench.sweeps import SweepOutcome

SMALL = [
    "dataset=digits",
    "dataset.n_train=80",
    "dataset.n_val=60",
    "dataset.n_test=60",
    "progress=false",
]


def test_public_api_end_to_end():
    problem = valbench.load_problem("digits", "mislabel", overrides=SMALL[1:])
    assert problem.split.n_train == 80 and problem.truth.n_planted == 8
    assert problem.model_config["name"] == "logreg" and problem.game.n_players == 80
    loo = valbench.make_method("loo").value(problem.game, seed=0, problem=problem)
    assert loo.values.shape == (80,) and loo.n_evals == 81
    metrics = valbench.score(loo, problem.truth)
    assert metrics["auroc"] > 0.6  # flipped labels hurt the validation likelihood


def test_load_problem_rejects_unknown_names():
    with pytest.raises(
        ValueError, match="unknown corruption 'flip'; available: mislabel, noise, none, poison"
    ):
        valbench.load_problem("digits", "flip")


@pytest.mark.parametrize("method", ["random", "loo"])
def test_run_job_writes_a_complete_record(method, tmp_path):
    cfg = compose([*SMALL, f"method={method}", "seed=3"])
    record = run_job(cfg, tmp_path, method)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["status"] == "ok" and saved["method"] == method and saved["seed"] == 3
    for key in (
        "auroc",
        "ap",
        "precision_at_k",
        "recall_at_k",
        "f1_2means",
        "n_evals",
        "seconds",
        "device",
        "versions",
        "config",
    ):
        assert key in saved
    assert saved["config"]["dataset.n_train"] == 80 and saved["versions"]["numpy"]
    assert saved["n_evals"] == (81 if method == "loo" else 0)
    arrays = np.load(tmp_path / "valuation.npz")
    assert arrays["values"].shape == (80,) and arrays["planted"].sum() == 8
    assert record["auroc"] == pytest.approx(saved["auroc"])


def test_run_job_skips_finished_jobs_and_records_errors(tmp_path):
    cfg = compose([*SMALL, "method=loo"])
    run_job(cfg, tmp_path / "a", "loo")
    stamp = (tmp_path / "a" / "result.json").stat().st_mtime_ns
    run_job(cfg, tmp_path / "a", "loo")
    assert (tmp_path / "a" / "result.json").stat().st_mtime_ns == stamp
    bad = compose([*SMALL, "method=loo", "method.budget=5"])
    with pytest.raises(ValueError, match="budget 5 is below this method's minimum of 81"):
        run_job(bad, tmp_path / "b", "loo")
    saved = json.loads((tmp_path / "b" / "result.json").read_text())
    assert saved["status"] == "error" and "minimum of 81" in saved["error"]
    assert run_job(bad, tmp_path / "c", "loo", raise_errors=False)["status"] == "error"


def test_valbench_command_runs_a_sweep(tmp_path):
    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "valbench.runner",
        "-m",
        *SMALL,
        "method=random,loo",
        f"hydra.sweep.dir={out}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    records = sorted(out.rglob("result.json"))
    names = [r.parent.name for r in records]
    assert (
        len(names) == 2 and names[0].endswith("method=loo") and names[1].endswith("method=random")
    )
    assert "progress" not in names[0]
    assert all(json.loads(r.read_text())["status"] == "ok" for r in records)
    table = subprocess.run(
        [sys.executable, "-m", "valbench.report", "table", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "| loo | 1 |" in table and "| random | 1 |" in table


def test_a_finished_job_whose_arrays_are_damaged_is_rerun(tmp_path, caplog):
    cfg = compose([*SMALL, "method=loo"])
    first = run_job(cfg, tmp_path, "loo")
    npz = tmp_path / "valuation.npz"
    npz.write_bytes(b"")  # what a full disk leaves
    assert collect(tmp_path)["status"].tolist() == ["error"]  # collect names it, see test_sweep
    with caplog.at_level(logging.INFO, logger="valbench"):
        again = run_job(cfg, tmp_path, "loo")
    assert f"rerunning {tmp_path}: {npz} does not match its record's checksum" in caplog.text
    assert again["auroc"] == first["auroc"] and again["arrays_sha256"] == first["arrays_sha256"]
    assert collect(tmp_path)["status"].tolist() == ["ok"]


def test_the_end_of_a_sweep_names_the_jobs_that_failed_in_it(tmp_path, capsys):
    """SweepOutcome (a Hydra callback): records written during the sweep, not earlier ones."""
    error = {"schema": 1, "status": "error"}
    write_record(tmp_path / "earlier", error | {"error": "ValueError: an earlier sweep"})
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    outcome = SweepOutcome()
    outcome.on_multirun_start(cfg)
    write_record(tmp_path / "a", error | {"error": "BudgetTooSmall: loo: budget 5\nmore lines"})
    write_record(tmp_path / "ok", {"schema": 1, "status": "ok"})
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "result.json").write_text('{"sch')
    with pytest.raises(SystemExit) as ended:
        outcome.on_multirun_end(cfg)
    assert ended.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"valbench: 2 job(s) of the sweep in {tmp_path} failed:",
        f"  {tmp_path / 'a'}: BudgetTooSmall: loo: budget 5",
        f"  {tmp_path / 'cut'}: its record {tmp_path / 'cut' / 'result.json'} does not read back",
    ]
    outcome.on_multirun_start(cfg)  # a rerun that only skips finished jobs ends quietly
    outcome.on_multirun_end(cfg)
    assert capsys.readouterr().err == ""
