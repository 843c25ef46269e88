"""The evaluation store and sharded, resumable training (bench/store/evals.py, bench/store/shards.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from valbench.datasets import prepare
from valbench.problem import compose, make_utility
from valbench.runner import run_job
from valbench.store.evals import EvalStore, fingerprint
from valbench.store.keys import defines_problem
from valbench.store.records import read_arrays

DIGITS = {"name": "digits", "n_train": 60, "n_val": 30, "n_test": 60}
POISON = {"name": "poison", "count": 3, "n_queries": 2}


def packed(masks):
    return {np.packbits(m).tobytes(): float(i) for i, m in enumerate(masks)}


def test_store_round_trip_and_refusals(tmp_path):
    masks = np.random.default_rng(0).random((5, 20)) < 0.5
    store = EvalStore(tmp_path, "a" * 64, 20)
    path = store.write("shard-0000-of-0002", packed(masks))
    assert store.load() == packed(masks) and path.parent == tmp_path / ("a" * 16)
    # truncated: refused with its path
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match=r"shard-0000-of-0002.evals.npz is truncated or corrupt"):
        store.load()
    # another problem's file in this problem's folder: refused
    other = EvalStore(tmp_path, "b" * 64, 20).write("x", packed(masks))
    shutil.move(other, path)
    with pytest.raises(ValueError, match="was written for another problem"):
        store.load()
    EvalStore(tmp_path, "b" * 64, 20).write("x", packed(masks))
    with pytest.raises(ValueError, match="this problem has 21"):
        EvalStore(tmp_path, "b" * 64, 21).load()


def test_fingerprint_ignores_where_a_problem_runs_and_nothing_else():
    cfg = {"dataset": {"name": "wine"}, "corruption": {}, "model": {"name": "logreg"}, "seed": 0}
    base = fingerprint({**cfg, "utility": {"name": "val_loglik", "device": "cpu"}})
    assert base == fingerprint({**cfg, "utility": {"name": "val_loglik", "device": "cuda"}})
    moved = {"name": "wine", "root": "/elsewhere"}
    assert base == fingerprint({**cfg, "dataset": moved, "utility": {"name": "val_loglik"}})
    assert base != fingerprint({**cfg, "utility": {"name": "val_accuracy", "device": "cpu"}})
    assert base != fingerprint({**cfg, "utility": {"name": "val_loglik"}, "seed": 1})
    assert defines_problem("seed") and defines_problem("model.steps")
    assert not defines_problem("dataset.root") and not defines_problem("method.budget")
    assert not defines_problem("evals.dir") and not defines_problem("budget_c")


def test_a_persisted_utility_resumes_without_retraining(tmp_path):
    split, truth = prepare(DIGITS, POISON, seed=0)
    masks = np.random.default_rng(1).random((6, split.n_train)) < 0.5
    model, utility = {"name": "logreg"}, {"name": "query_prob"}
    first = make_utility(split, truth, model, utility, progress=False)
    first.persist(EvalStore(tmp_path, "f" * 64, split.n_train), "job-a")
    values = first(masks[:4])
    again = make_utility(split, truth, model, utility, progress=False)
    again.persist(EvalStore(tmp_path, "f" * 64, split.n_train), "job-a")
    np.testing.assert_array_equal(again(masks[:4]), values)
    assert again.n_trainings == 0 and again.stored(masks).tolist() == [True] * 4 + [False] * 2
    again(masks)  # its file keeps the earlier run's evaluations and adds the new ones
    assert len(EvalStore(tmp_path, "f" * 64, split.n_train).load()) == 6
    reader = make_utility(split, truth, model, utility, progress=False)
    reader.persist(EvalStore(tmp_path / "empty", "f" * 64, split.n_train), "r", train=False)
    with pytest.raises(ValueError, match="2 of 2 coalitions have no stored evaluation"):
        reader(masks[:2])


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    """A tiny CIFAR-shaped (3, 32, 32) data file: 10 classes, a class-dependent mean colour."""
    rng = np.random.default_rng(0)
    y = np.arange(90) % 10
    x = rng.random((90, 3, 32, 32), dtype=np.float32) * 0.5 + (y / 20)[:, None, None, None]
    path = tmp_path_factory.mktemp("data") / "cifar_like.npz"
    np.savez(path, x=x, y=y)
    return path


def paper_setup(path, store, *extra):
    """experiment=ame_paper_cifar10 shrunk to CPU size: a tiny ResNet-9, 2 steps per submodel."""
    return compose(
        [
            "experiment=ame_paper_cifar10",
            "dataset=csv",
            f"dataset.path={path}",
            "dataset.n_train=40",
            "dataset.n_val=10",
            "dataset.n_test=40",
            "dataset.standardize=channel",
            "corruption.count=3",
            "corruption.n_queries=2",
            "model.width=4",
            "model.groups=2",
            "model.steps=2",
            "model.batch_size=8",
            "utility.device=cpu",
            "budget_c=null",
            "method.budget=100",
            f"evals.dir={store}",
            "evals.n_shards=2",
            "evals.block=20",
            "progress=false",
            *extra,
        ]
    )


def test_cifar_pipeline_sharded_equals_unsharded(cifar_like, tmp_path):
    store = tmp_path / "evals"
    shard0 = run_job(paper_setup(cifar_like, store, "evals.shard=0"), tmp_path / "s0", "ame")
    assert shard0["status"] == "shard" and shard0["n_evals"] == 50 and shard0["n_trainings"] == 50
    # the estimator reads whatever shards exist: half of the samples now
    half = run_job(paper_setup(cifar_like, store, "evals.train=false"), tmp_path / "e0", "ame")
    assert half["status"] == "ok" and half["n_evals"] == 50
    run_job(paper_setup(cifar_like, store, "evals.shard=1"), tmp_path / "s1", "ame")
    # a rerun of a finished shard trains nothing (resumed from its file)
    again = run_job(paper_setup(cifar_like, store, "evals.shard=1"), tmp_path / "s1", "ame")
    assert again["n_trainings"] == 0
    full = run_job(paper_setup(cifar_like, store, "evals.train=false"), tmp_path / "e1", "ame")
    assert full["n_evals"] == 100 and full["n_trainings"] == 0
    # the same as one unsharded run in memory (up to float32 rounding: other chunks, other sums)
    plain = paper_setup(cifar_like, store, "evals.dir=null")
    direct = run_job(plain, tmp_path / "plain", "ame")
    assert direct["n_trainings"] == 100
    np.testing.assert_allclose(
        read_arrays(tmp_path / "e1")["values"],
        read_arrays(tmp_path / "plain")["values"],
        rtol=1e-5,
        atol=1e-8,
    )
    assert read_arrays(tmp_path / "e1")["values"].shape == (2, 40)


def test_cifar_pipeline_refuses_truncated_and_foreign_shards(cifar_like, tmp_path):
    store = tmp_path / "evals"
    for shard in (0, 1):
        run_job(
            paper_setup(cifar_like, store, f"evals.shard={shard}"), tmp_path / f"s{shard}", "ame"
        )
    (folder,) = store.iterdir()
    shard1 = folder / "shard-0001-of-0002.evals.npz"
    data = shard1.read_bytes()
    shard1.write_bytes(data[: len(data) // 2])
    estimate = paper_setup(cifar_like, store, "evals.train=false")
    with pytest.raises(ValueError, match="shard-0001-of-0002.evals.npz is truncated or corrupt"):
        run_job(estimate, tmp_path / "e", "ame")
    # a shard of another config (seed 1) copied into this problem's folder
    other = tmp_path / "other"
    run_job(paper_setup(cifar_like, other, "evals.shard=1", "seed=1"), tmp_path / "o", "ame")
    (foreign,) = next(other.iterdir()).iterdir()
    shutil.copy(foreign, shard1)
    with pytest.raises(ValueError, match="written for another problem"):
        run_job(estimate, tmp_path / "e", "ame")
    assert json.loads((tmp_path / "e" / "result.json").read_text())["status"] == "error"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["evals.shard=2"], r"evals.shard must be an integer in \[0, 1\]"),
        (["evals.n_shards=0"], "evals.n_shards must be a positive integer, got 0"),
        (["evals.dir=null", "evals.shard=0"], "need a store: set evals.dir"),
        (["evals.shard=0", "evals.train=false"], "a shard trains its evaluations"),
    ],
)
def test_bad_shard_configs(cifar_like, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run_job(paper_setup(cifar_like, tmp_path / "evals", *overrides), tmp_path / "j", "x")


def test_only_methods_that_sample_up_front_shard():
    from valbench.methods.banzhaf import DataBanzhaf
    from valbench.store.shards import train_shard

    with pytest.raises(ValueError, match="DataBanzhaf does not draw its samples up front"):
        train_shard(DataBanzhaf(budget=100), None, 0, (0, 2), 10)


def test_estimate_with_too_few_stored_samples(cifar_like, tmp_path):
    store = tmp_path / "evals"
    run_job(
        paper_setup(cifar_like, store, "evals.shard=0", "evals.n_shards=4"), tmp_path / "s", "ame"
    )
    estimate = paper_setup(cifar_like, store, "evals.train=false")
    with pytest.raises(ValueError, match="only 25 of its 100 samples have stored evaluations"):
        run_job(estimate, tmp_path / "e", "ame")
