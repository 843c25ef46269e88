"""The engine benchmark; results go to results/perf/engine_MODEL_DEVICE.csv with the machine.

python -m valbench.perf engine                      # logreg on digits, B = 1024, vs scikit-learn
python -m valbench.perf engine --model mlp --masks 256 model.steps=200   # Hydra overrides last

It measures submodels per second of the batched engine and of the per-mask scikit-learn loop
(`SklearnUtility`, one BLAS thread, logreg only) on the same masks, their agreement, and the engine's
achieved FLOP/s as a fraction of a plain square matmul's FLOP/s measured in the same run. Wall
times decide the speed-up; process CPU times are recorded beside them (on a machine shared with other
work they show what each side cost).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from valbench.datasets import prepare

from ..engine.device import device_name, versions
from ..problem import SKLEARN_KEYS, _plain, compose
from ..store.records import write_atomic
from ..utility import EngineUtility, SklearnUtility


def matmul_flops(device: torch.device, dtype: torch.dtype, tf32: bool, size: int) -> float:
    """FLOP/s of a plain (size x size) @ (size x size) matmul: best of several, after a warm-up."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        best = float("inf")
        for _ in range(6):
            t0 = time.perf_counter()
            for _ in range(3):
                a @ b
            _sync(device)
            best = min(best, (time.perf_counter() - t0) / 3)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2 * size**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_flops(game: EngineUtility, n_models: int, n_eval: int, count_from: int) -> float:
    """Matmul/conv FLOPs the engine spent on `n_models` submodels.

    logreg: the matmul FLOPs the L-BFGS objective (2 matmuls per evaluation) and its preconditioner
    counted since `count_from`;
    networks: FLOPs of one training step (forward + backward) and of the predictions, counted by
    torch's FlopCounterMode on one model, times steps and models.
    """
    engine = game.engine
    if engine.convex:
        return engine.objective.flops - count_from
    model = engine.new_model(0).to(engine.device)
    batch = torch.zeros((engine.spec.batch_size, *engine.input_shape), device=engine.device)
    with FlopCounterMode(display=False) as counter:
        labels = torch.zeros(len(batch), dtype=torch.long, device=engine.device)
        F.cross_entropy(model(batch.to(engine.dtype)), labels).backward()
    step = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(batch[:1].to(engine.dtype))
    return n_models * (engine.spec.steps * step + n_eval * counter.get_total_flops())


def bench_engine(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    names = [f"dataset={args.dataset}", "corruption=none", f"model={args.model}"]
    cfg = compose([*names, *args.overrides])
    split, truth = prepare(_plain(cfg.dataset), _plain(cfg.corruption), seed=args.seed)
    rng = np.random.default_rng(args.seed)
    masks = rng.random((args.masks, split.n_train)) < 0.5
    x_eval = split.x_val
    game = EngineUtility(
        split, truth, model=_plain(cfg.model), device=args.device, seed=args.seed, progress=False
    )
    engine = game.engine
    engine.fit_predict(masks[: min(len(masks), 32)], x_eval)  # warm-up: library start-up, buffers
    seconds, probs, flops = float("inf"), None, 0.0
    for _ in range(args.repeats):
        counted = engine.objective.flops if engine.convex else 0
        engine.stats.update(iterations=0, not_converged=0)
        t0, cpu0 = time.perf_counter(), time.process_time()
        out = engine.fit_predict(masks, x_eval)
        _sync(engine.device)
        elapsed = time.perf_counter() - t0
        if elapsed < seconds:
            seconds, cpu_seconds, probs = elapsed, time.process_time() - cpu0, out
            flops = engine_flops(game, len(masks), len(x_eval), counted)
    tf32 = engine.options.tf32
    size = args.matmul_size or (8192 if engine.device.type == "cuda" else 2048)
    peak = matmul_flops(engine.device, engine.dtype, tf32, size)
    row = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(str(engine.device)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "torch_threads": torch.get_num_threads(),
        "torch": versions()["torch"],
        "dataset": split.name,
        "n_train": split.n_train,
        "n_eval": len(x_eval),
        "model": engine.name,
        "dtype": engine.options.dtype,
        "tf32": tf32,
        "masks": len(masks),
        "engine_seconds": round(seconds, 4),
        "engine_models_per_s": round(len(masks) / seconds, 1),
        "engine_cpu_seconds": round(cpu_seconds, 4),  # process CPU time, all threads
        "engine_gflops": round(flops / seconds / 1e9, 2),
        "matmul_gflops": round(peak / 1e9, 2),
        "matmul_size": size,
        "flop_fraction": round(flops / seconds / peak, 4),
        "iterations_mean": round(engine.stats["iterations"] / len(masks), 2),
        "not_converged": engine.stats["not_converged"],
    }
    n_ref = min(args.reference_masks, len(masks)) if engine.name == "logreg" else 0
    if n_ref:
        reference = SklearnUtility(
            split, truth, **{k: cfg.model[k] for k in SKLEARN_KEYS}, progress=False
        )
        t0, cpu0 = time.perf_counter(), time.process_time()
        ref = reference._predict_proba(masks[:n_ref], x_eval)
        ref_seconds, ref_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        same = (probs[:n_ref].argmax(-1) == ref.argmax(-1)).mean(1)
        acc = lambda p: (p.argmax(-1) == split.y_val).mean()  # noqa: E731
        row.update(
            reference_masks=n_ref,
            reference_seconds=round(ref_seconds, 3),
            reference_models_per_s=round(n_ref / ref_seconds, 1),
            reference_cpu_seconds=round(ref_cpu, 3),
            speedup=round((len(masks) / seconds) / (n_ref / ref_seconds), 2),
            cpu_time_ratio=round((ref_cpu / n_ref) / (cpu_seconds / len(masks)), 2),
            agreement_min=round(float(same.min()), 4),
            agreement_mean=round(float(same.mean()), 5),
            accuracy_diff_points=round(100 * float(acc(probs[:n_ref]) - acc(ref)), 3),
        )
    return [row]


def write_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valbench.perf engine", description=__doc__)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="logreg")
    parser.add_argument("--masks", type=int, default=1024, help="B, submodels trained")
    parser.add_argument(
        "--reference-masks", type=int, default=1024, help="of those, fit by sklearn"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="engine timings; the best is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--matmul-size", type=int, help="reference matmul (default 2048 CPU, 8192 GPU)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.steps=100")
    args = parser.parse_args(argv)
    rows = bench_engine(args)
    kind = torch.device(rows[0]["device"].split()[0]).type
    path = args.out / f"engine_{args.model}_{kind}.csv"
    write_csv(rows, path)
    for key, value in rows[0].items():
        print(f"{key:>24}: {value}")
    print(f"wrote {path}")
