"""The engine benchmark; results go to results/perf/engine_MODEL_DEVICE.csv with the machine, and a
summary of every model's latest run to results/perf/engine_DEVICE.md (the README's perf table).

python -m valbench.perf engine                          # logreg on digits, B = 1024, vs the loops
python -m valbench.perf engine --model mlp              # digits, vs a per-model torch loop
python -m valbench.perf engine --model cnn              # generated CIFAR-shaped images, ditto
python -m valbench.perf engine --model resnet9 model.steps=100   # Hydra overrides last

It measures submodels per second of the batched engine and of the plain per-mask reference on the
same masks (a prefix of them): scikit-learn's LogisticRegression for logreg (one BLAS thread), for
networks a per-model torch loop with the same steps, minibatches, optimiser and seed
(`engine.loop`, on one thread too), their agreement, and the engine's achieved FLOP/s as a fraction
of a plain square matmul's (or, for convolutional models, a plain convolution's) FLOP/s measured in
the same run. For logreg it also times the loops a user would write on all the masks (`loops.py`:
scikit-learn's default LogisticRegression per mask on one BLAS thread, and over every core with
joblib), once with no flipped labels and once with 10% (corruption=mislabel); masks come in equal
blocks at p = 0.2, 0.4, 0.6, 0.8. Wall times decide the speed-up (against the loops: the engine's
median run, each loop timed once); process CPU times and the load average before and after are
recorded beside them (on a machine shared with other work they show what each side cost).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from valbench.datasets import Split, prepare

from ..engine.chunks import one_thread
from ..engine.device import device_name, versions
from ..engine.loop import loop_fit_predict
from ..engine.models import ARCH_KEYS, IMAGE_MODELS
from ..problem import SKLEARN_KEYS, _plain, compose
from ..utility import EngineUtility, SklearnUtility
from .loops import grid_masks, loop_columns
from .output import load_average, write_csv, write_markdown


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


def conv_flops(device: torch.device, dtype: torch.dtype, tf32: bool, batch: int = 64) -> float:
    """FLOP/s of a plain 3x3 convolution, 64 -> 64 channels on 32 x 32 images (ResNet-9's prep
    layer): best of several, after a warm-up."""
    x = torch.randn(batch, 64, 32, 32, device=device, dtype=dtype)
    w = torch.randn(64, 64, 3, 3, device=device, dtype=dtype)
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        F.conv2d(x, w, padding=1)
        best = float("inf")
        for _ in range(4):
            t0 = time.perf_counter()
            F.conv2d(x, w, padding=1)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.backends.cudnn.allow_tf32 = old
    return 2 * batch * 64 * 64 * 9 * 32 * 32 / best


def cifar_like(n_train: int = 1000, n_val: int = 200, seed: int = 0) -> Split:
    """A generated CIFAR-shaped split (3 x 32 x 32, 10 classes): noise around a per-class colour."""
    rng = np.random.default_rng(seed)
    parts = {}
    for part, n in (("train", n_train), ("val", n_val), ("test", 10)):
        y = np.arange(n) % 10
        x = rng.standard_normal((n, 3, 32, 32), dtype=np.float32)
        parts[f"x_{part}"] = x + (y[:, None, None, None] - 4.5) / 4
        parts[f"y_{part}"] = y
    return Split(**parts, n_classes=10, name="cifar_like", image_shape=(3, 32, 32))


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


def problem(args: argparse.Namespace, corruption: str = "none"):
    """(split, truth, model config) of the benchmark: `--dataset` (default digits, or generated
    CIFAR-shaped images for the convolutional models) with `--model`, `corruption` and the
    overrides."""
    dataset = args.dataset or ("cifar_like" if args.model in IMAGE_MODELS else "digits")
    names = [f"model={args.model}", f"corruption={corruption}"]
    names.append("dataset=digits" if dataset == "cifar_like" else f"dataset={dataset}")
    cfg = compose([*names, *args.overrides])
    if dataset == "cifar_like":
        return cifar_like(args.n_train, seed=args.seed), None, _plain(cfg.model)
    split, truth = prepare(_plain(cfg.dataset), _plain(cfg.corruption), seed=args.seed)
    return split, truth, _plain(cfg.model)


def bench_engine(args: argparse.Namespace) -> list[dict]:
    """One row per corruption: the engine's best of `--repeats` timings on `--masks` random masks
    (blocks at inclusion probabilities `--p`), its FLOP/s against a plain kernel's, the per-mask
    reference on the first `--reference-masks` and, for logreg, the loops a user would write
    (`loops.py`) on all the masks."""
    torch.set_num_threads(args.threads)
    convex = args.model == "logreg"
    corruptions = args.corruptions or (["none", "mislabel"] if convex else ["none"])
    ps = args.p or ([0.2, 0.4, 0.6, 0.8] if convex else [0.5])
    rows = []
    for corruption in corruptions:
        split, truth, model = problem(args, corruption)
        masks = grid_masks(args.masks, split.n_train, ps, args.seed)
        game = EngineUtility(split, truth, model=model, device=args.device, seed=args.seed,
                             progress=False)  # fmt: skip
        timing = time_engine(game, masks, split.x_val, args.repeats)
        row = engine_row(game.engine, split, len(masks), timing, args.matmul_size)
        row.update(corruption=corruption, p=" ".join(f"{p:g}" for p in ps))
        if convex and args.loops:
            jobs = args.jobs or os.cpu_count()
            row.update(loop_columns(split, masks, timing.median_seconds, timing.probs, jobs))
        n_ref = min(args.reference_masks, len(masks))
        if n_ref:
            reference = reference_predictions(game.engine, split, truth, model, masks[:n_ref])
            row.update(reference_columns(reference, timing, split.y_val))
        row["load_average_after"] = load_average()
        rows.append(row)
    return rows


class EngineTiming(NamedTuple):
    """The fastest of the timed engine runs."""

    seconds: float  # wall time of one fit_predict on all the masks
    median_seconds: float  # the median run's
    cpu_seconds: float  # process CPU time of that run, all threads
    probs: np.ndarray  # its predictions (B, m, K)
    flops: float  # matmul/conv FLOPs it spent (`engine_flops`)


def time_engine(game: EngineUtility, masks: np.ndarray, x_eval, repeats: int) -> EngineTiming:
    """The best of `repeats` timed `fit_predict` runs, after a warm-up on a few masks."""
    engine, best, times = game.engine, None, []
    engine.fit_predict(masks[: min(len(masks), 4)], x_eval)  # warm-up: library start-up, buffers
    for _ in range(repeats):
        counted = engine.objective.flops if engine.convex else 0
        engine.stats.update(iterations=0, not_converged=0)
        t0, cpu0 = time.perf_counter(), time.process_time()
        out = engine.fit_predict(masks, x_eval)
        _sync(engine.device)
        elapsed = time.perf_counter() - t0
        times.append(elapsed)
        if best is None or elapsed < best.seconds:
            cpu_seconds = time.process_time() - cpu0
            flops = engine_flops(game, len(masks), len(x_eval), counted)
            best = EngineTiming(elapsed, 0.0, cpu_seconds, out, flops)
    return best._replace(median_seconds=float(np.median(times)))


def peak_flops(engine, matmul_size: int | None) -> tuple[float, str]:
    """FLOP/s and name of the plain kernel the engine is compared with: a 3x3 convolution for the
    convolutional models, else a square matmul (by default 8192^2 on CUDA, 2048^2 on CPU)."""
    tf32 = engine.options.tf32
    if engine.name in IMAGE_MODELS:
        return conv_flops(engine.device, engine.dtype, tf32), "conv 3x3 64->64"
    size = matmul_size or (8192 if engine.device.type == "cuda" else 2048)
    return matmul_flops(engine.device, engine.dtype, tf32, size), f"matmul {size}^2"


def engine_row(engine, split: Split, n_masks: int, timing: EngineTiming, matmul_size) -> dict:
    """The machine, the problem and the engine's speed, FLOP/s and share of the plain kernel's."""
    peak, peak_name = peak_flops(engine, matmul_size)
    seconds, n_eval = timing.seconds, len(split.x_val)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(str(engine.device)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average(),
        "torch": versions()["torch"],
        "dataset": split.name,
        "n_train": split.n_train,
        "n_eval": n_eval,
        "model": engine.name,
        "dtype": engine.options.dtype,
        "tf32": engine.options.tf32,
        "masks": n_masks,
        "engine_seconds": round(seconds, 4),
        "engine_models_per_s": float(f"{n_masks / seconds:.4g}"),
        "engine_median_seconds": round(timing.median_seconds, 4),
        "engine_cpu_seconds": round(timing.cpu_seconds, 4),  # process CPU time, all threads
        "engine_gflops": round(timing.flops / seconds / 1e9, 2),
        "peak": peak_name,
        "peak_gflops": round(peak / 1e9, 2),
        "flop_fraction": round(timing.flops / seconds / peak, 4),
        "iterations_mean": round(engine.stats["iterations"] / n_masks, 2),
        "not_converged": engine.stats["not_converged"],
        "chunk": engine.chunk_size(n_masks, n_eval, torch.get_num_threads()),
    }


class Reference(NamedTuple):
    """The per-mask reference's predictions on the first masks, and what they cost."""

    name: str
    probs: np.ndarray  # (n_ref, m, K)
    seconds: float
    cpu_seconds: float


def reference_predictions(engine, split: Split, truth, model: dict, masks) -> Reference:
    """scikit-learn's LogisticRegression for logreg, else the per-model torch loop (one thread, as
    scikit-learn's BLAS: small ops on 2 threads stall on a busy CPU), on `masks`."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    if engine.convex:
        keys = {k: model[k] for k in SKLEARN_KEYS if k in model}
        sklearn = SklearnUtility(split, truth, **keys, progress=False)
        name, probs = "scikit-learn", sklearn._predict_proba(masks, split.x_val)
    else:
        with one_thread():
            name, probs = "torch loop", loop_fit_predict(engine, masks, split.x_val)
    return Reference(name, probs, time.perf_counter() - t0, time.process_time() - cpu0)


def reference_columns(ref: Reference, timing: EngineTiming, y_eval: np.ndarray) -> dict:
    """The reference's speed against the engine's, and how far their predictions agree."""
    n_ref, n_masks = len(ref.probs), len(timing.probs)
    probs = timing.probs[:n_ref]
    same = (probs.argmax(-1) == ref.probs.argmax(-1)).mean(1)
    acc = lambda p: (p.argmax(-1) == y_eval).mean()  # noqa: E731
    return {
        "reference": ref.name,
        "reference_masks": n_ref,
        "reference_seconds": round(ref.seconds, 3),
        "reference_models_per_s": float(f"{n_ref / ref.seconds:.4g}"),
        "reference_cpu_seconds": round(ref.cpu_seconds, 3),
        "speedup": round((n_masks / timing.seconds) / (n_ref / ref.seconds), 2),
        "cpu_time_ratio": round((ref.cpu_seconds / n_ref) / (timing.cpu_seconds / n_masks), 2),
        "agreement_min": round(float(same.min()), 4),
        "agreement_mean": round(float(same.mean()), 5),
        "max_prob_diff": float(f"{np.abs(probs - ref.probs).max():.2g}"),
        "accuracy_diff_points": round(100 * float(acc(probs) - acc(ref.probs)), 3),
    }


SUMMARY = {  # column of engine_DEVICE.md -> key of a row
    "model": "model",
    "data (n)": "data",
    "flipped labels": "corruption",
    "submodels": "masks",
    "engine /s": "engine_models_per_s",
    "loop, joblib /s": "joblib_models_per_s",
    "vs joblib loop": "speedup_vs_joblib",
    "loop, 1 thread /s": "loop_models_per_s",
    "vs 1-thread loop": "speedup_vs_loop",
    "accuracy diff": "accuracy_diff",
    "reference": "reference",
    "reference /s": "reference_models_per_s",
    "vs reference": "speedup",
    "GFLOP/s": "engine_gflops",
    "share of peak": "flop_fraction",
    "peak": "peak",
    "agreement": "agreement_mean",
    "load average": "load_average",
}
FLIPPED = {"none": "no", "mislabel": "10%"}


def write_summary(out: Path, kind: str) -> Path:
    """engine_KIND.md: the latest row of every engine_MODEL_KIND.csv under `out`, in ARCH order."""
    rows, code = [], ""
    for name in ARCH_KEYS:
        path = out / f"engine_{name}_{kind}.csv"
        if path.exists():
            with open(path, newline="") as f:
                for row in csv.DictReader(f):  # the file holds one run
                    row["data"] = f"{row['dataset']} ({row['n_train']})"
                    row["corruption"] = FLIPPED.get(row.get("corruption", "none"), "?")
                    rows.append({col: row.get(key) or "" for col, key in SUMMARY.items()})
                    code = row.get("loop_code") or code
    target = out / f"engine_{kind}.md"
    write_markdown(rows, list(SUMMARY), target,
                   f"Engine vs the per-mask loops on {kind} (python -m valbench.perf engine "
                   "--model MODEL; rows from results/perf/engine_MODEL_" + kind + ".csv). logreg: "
                   "the loops a user writes (valbench/perf/loops.py: scikit-learn's default "
                   "LogisticRegression(max_iter=1000).fit(X[m], y[m]) per mask, on one BLAS thread "
                   "and over all cores with joblib) on the same masks; reference: the project's "
                   "own per-mask reference (SklearnUtility, or the per-model torch loop)"
                   + (f". The loops timed: `{code}`" if code else ""))  # fmt: skip
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valbench.perf engine", description=__doc__)
    parser.add_argument("--dataset", help="a dataset config, or cifar_like (generated images); "
                        "default: digits, cifar_like for cnn and resnet9")  # fmt: skip
    parser.add_argument("--n-train", type=int, default=1000, help="cifar_like training images")
    parser.add_argument("--model", default="logreg", help=f"one of {', '.join(ARCH_KEYS)}")
    parser.add_argument("--masks", type=int, default=1024, help="B, submodels trained")
    parser.add_argument(
        "--p",
        type=float,
        nargs="+",
        help="inclusion probabilities, equal blocks of masks at each "
        "(default: 0.2 0.4 0.6 0.8 for logreg, else 0.5)",
    )
    parser.add_argument(
        "--corruptions",
        nargs="+",
        choices=["none", "mislabel"],
        help="one row each (default: none mislabel for logreg, else none)",
    )
    parser.add_argument(
        "--no-loops",
        dest="loops",
        action="store_false",
        help="logreg: skip the plain scikit-learn loops (loops.py)",
    )
    parser.add_argument("--jobs", type=int, help="joblib loop's workers (default: all cores)")
    parser.add_argument("--reference-masks", type=int, default=1024,
                        help="of those, trained by the reference too")  # fmt: skip
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
    if args.model not in ARCH_KEYS:
        parser.error(f"unknown --model {args.model!r}; available: {', '.join(ARCH_KEYS)}")
    rows = bench_engine(args)
    kind = torch.device(rows[0]["device"].split()[0]).type
    path = args.out / f"engine_{args.model}_{kind}.csv"
    write_csv(rows, path)
    for row in rows:
        for key, value in row.items():
            print(f"{key:>24}: {value}")
    print(f"wrote {path} and {write_summary(args.out, kind)}")
