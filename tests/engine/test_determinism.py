"""A job's values do not depend on the CPU thread count or the engine's chunk size (bitwise)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from valbench.problem import compose
from valbench.runner import run_job

JOBS = {
    "logreg": ["dataset.n_train=200", "method.budget=300"],
    "mlp": ["model=mlp", "model.steps=20", "dataset.n_train=100", "method.budget=60"],
}


@pytest.mark.parametrize("model", list(JOBS))
def test_values_are_the_same_at_any_thread_count_and_chunk_size(model, tmp_path):
    base = ["dataset=digits", "corruption=mislabel", "method=ame", "seed=3", "progress=false"]
    values = {}
    threads = torch.get_num_threads()
    try:
        for n_threads, chunk in [(1, 4096), (2, 4096), (1, 7), (2, 7)]:
            torch.set_num_threads(n_threads)
            cfg = compose([*base, *JOBS[model], f"model.cpu_chunk={chunk}"])
            job = tmp_path / f"{n_threads}_{chunk}"
            record = run_job(cfg, job, "ame")
            assert record["status"] == "ok"
            values[n_threads, chunk] = np.load(job / "valuation.npz")["values"]
    finally:
        torch.set_num_threads(threads)
    first = values[1, 4096]
    assert np.abs(first).max() > 0
    for key, got in values.items():
        assert np.array_equal(got, first), f"threads, chunk = {key}"
