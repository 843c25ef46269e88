"""The Slurm launcher's machinery run for real: hydra-submitit-launcher with submitit's local
executor (`hydra/launcher=submitit_local`, the same submission, pickling and result collection as
`hydra/launcher=slurm`, without a cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from valbench.store.records import RECORD_NAME, read_arrays, read_record

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
pytestmark = pytest.mark.slow  # each job starts a Python process: about a minute per test

AME = ["dataset=wine", "dataset.n_train=40", "method=ame", "method.budget=100", "progress=false"]
LOCAL = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]


def valbench(folder: Path, *overrides: str, status: int = 0) -> str:
    cmd = [sys.executable, "-m", "valbench.runner", "-m", *overrides, f"hydra.sweep.dir={folder}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == status, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def records(folder: Path) -> dict[str, dict]:
    return {p.parent.name: read_record(p) for p in sorted(folder.rglob(RECORD_NAME))}


def test_a_two_shard_sweep_through_submitit_equals_an_unsharded_run(tmp_path):
    store = f"evals.dir={tmp_path / 'evals'}"
    shards = tmp_path / "shards"
    valbench(shards, *LOCAL, *AME, store, "evals.shard=0,1", "evals.n_shards=2", "evals.block=20")
    done = records(shards)
    assert [r["status"] for r in done.values()] == ["shard", "shard"]
    assert sorted(r["n_evals"] for r in done.values()) == [50, 50]
    assert len(list((tmp_path / "evals").rglob("shard-*-of-0002.evals.npz"))) == 2
    assert list((shards / ".submitit").rglob("*_log.out")), "submitit did not run the jobs"

    valbench(tmp_path / "estimate", *AME, store, "evals.train=false")
    valbench(tmp_path / "plain", *AME)
    (estimate,) = records(tmp_path / "estimate").values()
    assert estimate["status"] == "ok" and estimate["n_evals"] == 100
    assert estimate["n_trainings"] == 0  # every evaluation came from the shards
    values = [
        read_arrays(next((tmp_path / run).rglob(RECORD_NAME)).parent)["values"]
        for run in ("estimate", "plain")
    ]
    np.testing.assert_array_equal(*values)


def test_a_failing_job_through_submitit_is_reported_like_under_the_basic_launcher(tmp_path):
    args = [*AME[:-2], "method.budget=5,100", "progress=false"]
    log = valbench(tmp_path, *LOCAL, *args, status=1)
    job = tmp_path / "dataset.n_train=40,dataset=wine,method.budget=5,method=ame"
    assert f"valbench: 1 job(s) of the sweep in {tmp_path} failed:" in log
    assert f"{job}: BudgetTooSmall: ame: budget 5 is below this method's minimum of 50" in log
    assert {k: r["status"] for k, r in records(tmp_path).items()} == {
        job.name: "error",
        job.name.replace("budget=5", "budget=100"): "ok",
    }
