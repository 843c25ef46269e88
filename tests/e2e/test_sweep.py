"""Sweeps: reruns skip finished jobs, failing jobs record their error, a killed sweep completes on
rerun with the same results, and the launcher configs compose (no Slurm needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from valbench.problem import compose
from valbench.report.cli import main as report_main
from valbench.report.collect import collect
from valbench.runner import finished_record
from valbench.score import METRIC_KEYS
from valbench.store.records import (
    RECORD_NAME,
    SCHEMA_VERSION,
    read_arrays,
    read_record,
    remove_partial_writes,
    write_arrays,
    write_record,
)
from valbench.sweeps import group_key_overrides, job_dirname

TINY = ["dataset=wine", "dataset.n_train=40", "progress=false"]


def sweep(folder: Path, *overrides: str, background: bool = False, status: int = 0):
    cmd = [sys.executable, "-m", "valbench.runner", "-m", *overrides, f"hydra.sweep.dir={folder}"]
    if background:
        return subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == status, done.stderr[-3000:]
    return done.stdout + done.stderr


def records(folder: Path) -> dict[str, dict]:
    return {p.parent.name: read_record(p) for p in sorted(folder.rglob(RECORD_NAME))}


@pytest.mark.slow
def test_a_killed_sweep_completes_on_rerun_with_the_same_results(tmp_path):
    args = ["method=loo", "seed=0,1,2,3,4,5", *TINY]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = sweep(killed, *args, background=True)
    deadline = time.monotonic() + 120
    while not list(killed.rglob(RECORD_NAME)):
        assert proc.poll() is None, "the sweep ended before it wrote a record"
        assert time.monotonic() < deadline, "no record after 120 s"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    before = records(killed)
    assert 1 <= len(before) < 6, f"killed after {len(before)} of 6 jobs: not mid-way"
    for name, record in before.items():  # whatever was written reads back whole
        assert record is not None and record["status"] == "ok"
        assert read_arrays(killed / name)["values"].shape == (40,)
    written = {name: (killed / name / RECORD_NAME).read_bytes() for name in before}

    log = sweep(killed, *args)
    assert log.count("its record exists") == len(before)
    sweep(clean, *args)
    after, reference = records(killed), records(clean)
    assert sorted(after) == sorted(reference) and len(after) == 6
    assert not list(killed.rglob("*.tmp"))
    for name, record in after.items():
        if name in written:
            assert (killed / name / RECORD_NAME).read_bytes() == written[name]  # skipped
        assert record["status"] == "ok"
        for key in (*METRIC_KEYS, "n_evals", "config"):
            assert record[key] == reference[name][key], (name, key)
        np.testing.assert_array_equal(
            read_arrays(killed / name)["values"], read_arrays(clean / name)["values"]
        )


@pytest.mark.slow
def test_a_failing_job_records_its_error_and_the_parallel_sweep_goes_on(tmp_path):
    args = ["method=loo", "method.budget=5,null", "seed=0,1", *TINY]
    log = sweep(tmp_path, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *args, status=1)
    assert f"valbench: 2 job(s) of the sweep in {tmp_path} failed:" in log
    for seed in (0, 1):
        job = tmp_path / f"dataset.n_train=40,dataset=wine,method.budget=5,method=loo,seed={seed}"
        assert f"{job}: BudgetTooSmall: loo: budget 5 is below" in log
    first = records(tmp_path)
    assert len(first) == 4
    for name, record in first.items():
        if "method.budget=5" in name:
            assert record["status"] == "error"
            assert "budget 5 is below this method's minimum of 41" in record["error"]
            assert "Traceback" in record["traceback"]
        else:
            assert record["status"] == "ok" and record["n_evals"] == 41

    log = sweep(tmp_path, *args, status=1)  # the basic launcher finds the same job folders
    assert log.count("its record exists") == 2
    assert log.count("failed: BudgetTooSmall") == 2  # failed jobs are tried again
    assert "valbench: 2 job(s) of the sweep" in log
    assert records(tmp_path).keys() == first.keys()
    # the error records of jobs outside this sweep do not fail it
    log = sweep(tmp_path, "method=loo", "method.budget=null", "seed=0,1", *TINY)
    assert log.count("its record exists") == 2 and "failed" not in log


@pytest.mark.slow
def test_a_key_of_a_swept_group_applies_to_every_option(tmp_path):
    """Hydra alone rejects method.budget=5 here, since the default method has no budget."""
    log = sweep(tmp_path, "method=ame,banzhaf", "method.budget=5", *TINY, status=1)
    assert "use +method.budget" not in log
    assert "valbench: 2 job(s) of the sweep" in log
    for method, minimum in (("ame", 50), ("banzhaf", 64)):
        job = tmp_path / f"dataset.n_train=40,dataset=wine,method.budget=5,method={method}"
        assert (
            f"{job}: BudgetTooSmall: {method}: budget 5 is below this method's minimum of {minimum}"
            in log
        )
        assert read_record(job / RECORD_NAME)["config"]["method.budget"] == 5


def test_group_key_overrides_names_options_without_the_key():
    args = ["-m", "method=ame,banzhaf", "method.budget=5", "seed=0,1", "dataset.n_train=9"]
    assert group_key_overrides(args) == [*args[:2], "++method.budget=5", *args[3:]]
    assert group_key_overrides(["method=ame", "method.budget=5"]) == [
        "method=ame",
        "method.budget=5",
    ]
    inherited = ["method=ame,ame_knockoff", "method.budget=5"]  # ame_knockoff: defaults [ame]
    assert group_key_overrides(inherited) == [inherited[0], "++method.budget=5"]
    with pytest.raises(
        ValueError,
        match="method knn_shapley of the sweep method=ame,knn_shapley has no key 'budget'",
    ):
        group_key_overrides(["method=ame,knn_shapley", "method.budget=5"])
    assert (
        job_dirname(["++method.budget=5", "seed=1", "name=x"], ["name"]) == "method.budget=5,seed=1"
    )


def test_a_record_is_reused_only_with_the_same_config_and_schema(tmp_path):
    config = {"seed": 0, "method.budget": None, "progress": True, "dataset.n_train": 40}
    digest = write_arrays(tmp_path, {"values": np.zeros(3)})
    ok = {"schema": SCHEMA_VERSION, "status": "ok", "config": config, "arrays_sha256": digest}
    write_record(tmp_path, ok)
    assert finished_record(tmp_path, config)["status"] == "ok"
    assert finished_record(tmp_path, {**config, "progress": False}) is not None
    assert finished_record(tmp_path, {**config, "dataset.n_train": 50}) is None
    write_record(tmp_path, {"schema": SCHEMA_VERSION + 1, "status": "ok", "config": config})
    assert finished_record(tmp_path, config) is None
    write_record(tmp_path, {"schema": SCHEMA_VERSION, "status": "error", "config": config})
    assert finished_record(tmp_path, config) is None
    assert finished_record(tmp_path / "nothing", config) is None


@pytest.mark.slow
def test_a_job_with_damaged_arrays_is_rerun_and_named_by_collect_and_plot(tmp_path, caplog):
    args = ["method=random,loo", "seed=0", *TINY]
    sweep(tmp_path, *args)
    table = tmp_path / "report" / "results"
    assert report_main(["collect", str(tmp_path), "-o", str(table)]) == 0
    job = next(p.parent for p in tmp_path.rglob(RECORD_NAME) if "method=loo" in p.parent.name)
    npz = job / "valuation.npz"
    npz.write_bytes(b"")  # a 0-byte file, as a full disk leaves it

    frame = collect(tmp_path)  # names the file, counts the job as failed, goes on
    failed = frame[frame["status"] == "error"]
    assert failed["path"].tolist() == [str(job / RECORD_NAME)]
    assert f"{npz} does not match its record's checksum" in failed["error"].iloc[0]
    assert f"counting {job} as failed" in caplog.text
    caplog.clear()
    figures = tmp_path / "figures"  # from the table collected before the damage
    assert report_main(["plot", str(table) + ".parquet", "-o", str(figures), "--no-removal"]) == 0
    assert (figures / "quality.png").exists() and f"{npz} does not read back" in caplog.text

    log = sweep(tmp_path, *args)  # the rerun redoes the job
    assert log.count("its record exists") == 1
    assert f"rerunning {job}: {npz} does not match its record's checksum" in log
    assert len(read_arrays(job)["values"]) == 40


@pytest.mark.slow
def test_identical_sweeps_started_together_run_each_job_once(tmp_path):
    args = ["method=loo", "seed=0,1,2", *TINY]
    cmd = [sys.executable, "-m", "valbench.runner", "-m", *args, f"hydra.sweep.dir={tmp_path}"]
    runs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    logs = "".join(run.communicate(timeout=300)[0] for run in runs)
    assert [run.returncode for run in runs] == [0, 0], logs[-3000:]
    assert logs.count("loo on wine: auroc=") == 3, logs[-3000:]  # each job trained once
    assert logs.count("its record exists") == 3
    assert all(r["status"] == "ok" for r in records(tmp_path).values())


def test_partial_writes_of_a_killed_job_are_removed(tmp_path):
    (tmp_path / ".result.json.x1.tmp").write_text('{"sch')
    (tmp_path / ".valuation.npz.x2.tmp").write_bytes(b"PK")
    (tmp_path / "result.json").write_text("{}")
    removed = remove_partial_writes(tmp_path)
    assert [p.name for p in removed] == [".result.json.x1.tmp", ".valuation.npz.x2.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ],
)
def test_launcher_configs_compose_and_build(launcher, target):
    cfg = compose([f"hydra/launcher={launcher}", "experiment=ci"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target
    assert type(instantiate(cfg.hydra.launcher)).__name__ == target.rsplit(".", 1)[1]


def test_slurm_launcher_settings_can_be_overridden():
    cfg = compose(
        ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1"],
        return_hydra_config=True,
    )
    launcher = cfg.hydra.launcher
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 120)
    assert launcher.submitit_folder == "multirun/default/.submitit/%j"


def test_ci_experiment_is_a_small_fixed_seed_sweep():
    cfg = compose(["experiment=ci"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.name == "ci"
    assert params.seed == "0,1,2"
    assert set(params.method.split(",")) >= {"random", "loo"}
    assert cfg.dataset.n_train <= 100
    assert "progress" in cfg.hydra.job.config.override_dirname.exclude_keys
