"""Engine throughput vs CPU chunk size, to calibrate the default (engine.CPU_CHUNK_MB).

python -m valbench.perf chunks     # -> results/perf/chunks.csv and chunks.md

logreg on two problem sizes: digits (n = 1,000, 10 classes) and breast_cancer (n = 200, 2 classes),
each at chunk caps whose training state spans 4-256 MiB (cut into equal chunks, a multiple of the
threads: the chunk that ran is reported, and whether it is the default's); submodels per second
on the same masks, best of `--repeats`, all in one run. The chunk size changes no value (engine).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from valbench.datasets import prepare

from ..engine.device import device_name
from ..engine.engine import CPU_CHUNK_MB, Engine
from ..problem import _plain, compose
from .output import load_average, write_csv, write_markdown

PROBLEMS = {
    "digits": ["dataset=digits"],
    "breast_cancer": ["dataset=breast_cancer", "dataset.n_train=200", "dataset.n_val=100"],
}


def sweep(problem: str, masks_n: int, repeats: int, seed: int = 0) -> list[dict]:
    cfg = compose([*PROBLEMS[problem], "corruption=mislabel", "model=logreg"])
    split, _ = prepare(_plain(cfg.dataset), _plain(cfg.corruption), seed=seed)
    masks = np.random.default_rng(seed).random((masks_n, split.n_train)) < 0.5
    engine = Engine(_plain(cfg.model), split.x_train, split.y_train, split.n_classes, "cpu", seed)
    per_model = engine.bytes_per_model(0)
    workers = torch.get_num_threads()
    default = engine.chunk_size(masks_n, len(split.x_val), workers)
    caps = sorted({max(1, int(mb * 2**20 // per_model)) for mb in (4, 8, 16, 32, 64, 128, 256)})
    rows = []
    for cap in caps:
        engine = Engine({**_plain(cfg.model), "cpu_chunk": cap}, split.x_train, split.y_train,
                        split.n_classes, "cpu", seed)  # fmt: skip
        chunk = engine.chunk_size(masks_n, len(split.x_val), workers)
        engine.fit_predict(masks[:64], split.x_val)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            engine.fit_predict(masks, split.x_val)
            best = min(best, time.perf_counter() - t0)
        rows.append(
            {
                "problem": problem,
                "n_train": split.n_train,
                "masks": masks_n,
                "cpu_chunk": cap,
                "chunk": chunk,
                "chunk_state_mib": round(chunk * per_model / 2**20, 1),
                "default": chunk == default,
                "models_per_s": round(masks_n / best, 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valbench.perf chunks", description=__doc__)
    parser.add_argument("--masks", type=int, default=4096, help="submodels per timing")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    stamp = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name("cpu"),
        "torch_threads": args.threads,
        "load_average": load_average(),
    }
    rows = [{**stamp, **row} for p in PROBLEMS for row in sweep(p, args.masks, args.repeats)]
    write_csv(rows, args.out / "chunks.csv")
    keys = [
        "problem",
        "n_train",
        "cpu_chunk",
        "chunk",
        "chunk_state_mib",
        "default",
        "models_per_s",
    ]
    write_markdown(
        rows, keys, args.out / "chunks.md",
        f"CPU chunk size vs throughput, logreg, {args.masks} masks, default CPU_CHUNK_MB = "
        f"{CPU_CHUNK_MB}; {stamp['device']}, {args.threads} threads, load average "
        f"{stamp['load_average']}",
    )  # fmt: skip
