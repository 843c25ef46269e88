"""Every GPU target of the engine in one prepared command: results/perf/gpu.csv and gpu.md.

python -m valbench.perf gpu                  # on a CUDA machine: a few minutes on one H100/H200
python -m valbench.perf gpu --tiny           # the same steps at toy sizes (the default without CUDA)

Targets (issue 15), each a row with its goal and whether it was met:
- logreg, digits (n = 1,000), B up to 16k: >= 100x the CPU per-mask scikit-learn loop, timed in
  the same run on a prefix of the same masks; >= 30% of the matmul FLOP/s measured in the run;
- the MLP engine against the per-model torch loop (engine.loop) on the same device;
- ResNet-9 on 50,000 CIFAR-shaped images (generated, or CIFAR-10 with --cifar-root): seconds per
  submodel and submodels per hour at the AME paper's 2,500 steps x batch 500, extrapolated from
  `--resnet-steps` steps, goal < 5 s; clean validation accuracy after one full 2,500-step run;
- the AME estimator at the paper's CIFAR10-50 shape (issue 11; `perf ame-scale`'s backdoor game:
  n = 50,000, k = 50 poisons, Q = 20 queries, m = 6,244, knockoffs) on the device AME picks (CUDA
  when present): seconds, goal <= 5 minutes with knockoff precision and recall >= 0.8.
In tiny mode the numbers are not measurements (toy sizes, CPU): no goal is judged, and the files are
gpu_tiny.csv / gpu_tiny.md, so that the committed GPU figures are never overwritten by it.
"""

from __future__ import annotations

import argparse
import os
import time
from argparse import Namespace
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..engine.device import device_name
from ..engine.engine import engine_for, resolve_device
from .ame_scale import backdoor
from .engine import bench_engine, problem
from .output import load_average, write_csv, write_markdown

PAPER_STEPS, PAPER_BATCH = 2500, 500  # Lin et al. 2022, Sec. 5: each CIFAR-10 submodel
SIZES = {  # full (GPU) and tiny (CPU test) sizes of every step
    "logreg_masks": ([1024, 4096, 16384], [16, 32]),
    "logreg_reference": (256, 8),
    "mlp": ((1024, 500, 8), (4, 5, 2)),  # masks, steps, reference masks
    "resnet": ((50_000, 16, PAPER_BATCH), (64, 2, 8)),  # images, masks, batch
    "resnet_arch": ([], ["model.width=8", "model.groups=2"]),
    "ame": ((50_000, 50, 20), (300, 5, 3)),  # players, poisons, queries
}


def engine_row(device: str, tiny: bool, model: str, masks: int, refs: int, overrides=(), **kw):
    args = Namespace(model=model, dataset=kw.get("dataset"), n_train=kw.get("n_train", 1000),
                     masks=masks, reference_masks=refs, device=device, threads=os.cpu_count(),
                     repeats=1 if tiny else 2, seed=0, matmul_size=256 if tiny else None,
                     overrides=list(overrides), corruptions=["none"], p=[0.5], loops=False,
                     jobs=None)  # fmt: skip
    return bench_engine(args)[0]


def resnet_rows(device: str, tiny: bool, steps: int, cifar_root: str | None) -> list[dict]:
    """ResNet-9 at the paper's batch: throughput over `steps` steps, then one full run."""
    pick = 1 if tiny else 0
    n_images, masks, batch = SIZES["resnet"][pick]
    dataset = "cifar10" if cifar_root else None  # None: generated (perf.engine.cifar_like)
    fixed = [*SIZES["resnet_arch"][pick], f"model.batch_size={batch}"]
    fixed += [f"dataset.root={cifar_root}"] if cifar_root else []
    row = engine_row(device, tiny, "resnet9", masks, 0, [*fixed, f"model.steps={steps}"],
                     dataset=dataset, n_train=n_images)  # fmt: skip
    per_step = row["engine_seconds"] / masks / steps  # one submodel, one step
    per_model = per_step * PAPER_STEPS * (PAPER_BATCH / batch)
    rows = [{"target": "ResNet-9: seconds per submodel at 2,500 steps x batch 500",
             "value": round(per_model, 2), "goal": "< 5", "met": per_model < 5,
             "detail": f"{3600 / per_model:.0f} submodels/h; {masks} submodels x {steps} steps "
                       f"measured, {row['engine_gflops']} GFLOP/s = "
                       f"{100 * row['flop_fraction']:.0f}% of {row['peak']}"}]  # fmt: skip
    full_steps = 3 if tiny else PAPER_STEPS
    split, _, model = problem(Namespace(model="resnet9", n_train=n_images, seed=0, dataset=dataset,
                                        overrides=[*fixed, f"model.steps={full_steps}"]))  # fmt: skip
    engine = engine_for(model, split, device=device)
    t0 = time.perf_counter()
    probs = engine.fit_predict(np.ones((1, split.n_train), bool), split.as_images().x_val)
    accuracy = float((probs[0].argmax(-1) == split.y_val).mean())
    rows.append({"target": f"ResNet-9: clean accuracy after {full_steps} steps x batch {batch}",
                 "value": round(accuracy, 4), "goal": ">= 0.92 (CIFAR-10)",
                 "met": accuracy >= 0.92 if cifar_root else None,
                 "detail": f"{split.name}, {split.n_train} images, "
                           f"{time.perf_counter() - t0:.0f} s"})  # fmt: skip
    return rows


def ame_row(tiny: bool) -> dict:
    """The AME estimator on `perf ame-scale`'s backdoor game of the paper's shape."""
    n, k, queries = SIZES["ame"][1 if tiny else 0]
    row = backdoor(n, k, queries)
    seconds, found = row["estimate_s"], min(row["sel_precision"], row["sel_recall"])
    return {"target": f"AME estimator, backdoor game n = {n:,}, k = {k}, Q = {queries}, knockoffs",
            "value": seconds, "goal": "<= 300 s, precision and recall >= 0.8",
            "met": seconds <= 300 and found >= 0.8,
            "detail": f"m = {row['m']} samples on {row['device']}; knockoff precision "
                      f"{row['sel_precision']}, recall {row['sel_recall']}"}  # fmt: skip


def measure(device: str, tiny: bool, resnet_steps: int, cifar_root: str | None) -> Iterator[dict]:
    """Every target's row, in order."""
    pick = 1 if tiny else 0
    masks = SIZES["logreg_masks"][pick]
    for b in masks:
        r = engine_row(device, tiny, "logreg", b, SIZES["logreg_reference"][pick])
        yield {"target": f"logreg engine vs CPU per-mask loop, B = {b}",
               "value": r["speedup"], "goal": ">= 100x", "met": r["speedup"] >= 100,
               "detail": f"{r['engine_models_per_s']} vs {r['reference_models_per_s']} "
                         f"submodels/s, agreement {r['agreement_mean']}"}  # fmt: skip
        yield {"target": f"logreg engine share of matmul FLOP/s, B = {b}",
               "value": r["flop_fraction"], "goal": ">= 0.30",
               "met": r["flop_fraction"] >= 0.30,
               "detail": f"{r['engine_gflops']} of {r['peak_gflops']} GFLOP/s "
                         f"({r['peak']})"}  # fmt: skip
    n_masks, steps, refs = SIZES["mlp"][pick]
    r = engine_row(device, tiny, "mlp", n_masks, refs, [f"model.steps={steps}"])
    yield {"target": f"MLP engine vs per-model torch loop, B = {n_masks}",
           "value": r["speedup"], "goal": "report", "met": None,
           "detail": f"{r['engine_models_per_s']} vs {r['reference_models_per_s']} "
                     f"submodels/s; {100 * r['flop_fraction']:.0f}% of {r['peak']}; "
                     f"max prob. diff {r['max_prob_diff']}"}  # fmt: skip
    yield from resnet_rows(device, tiny, resnet_steps, cifar_root)
    yield ame_row(tiny)


def write(rows: list[dict], out: Path, device: str, tiny: bool, seconds: float) -> str:
    """gpu.csv / gpu.md (gpu_tiny.* in tiny mode) with the rows so far, rewritten after every
    target: a run cut short (a device's time limit) keeps what it measured."""
    stamp = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "device": device_name(device), "tiny": tiny, "load_average": load_average(),
             "seconds_total": round(seconds, 1)}  # fmt: skip
    rows = [{**row, **stamp} for row in rows]
    name = "gpu_tiny" if tiny else "gpu"
    write_csv(rows, out / f"{name}.csv")
    write_markdown(rows, ["target", "value", "goal", "met", "detail"], out / f"{name}.md",
                   f"GPU targets ({'tiny mode: toy sizes, not a measurement; ' if tiny else ''}"
                   f"{stamp['device']}, {stamp['date']}, {stamp['seconds_total']} s, load "
                   f"average {stamp['load_average']})")  # fmt: skip
    return name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valbench.perf gpu", description=__doc__)
    parser.add_argument("--device", default="auto", help="auto, cuda or cuda:INDEX (cpu: tiny)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (default without CUDA)")
    parser.add_argument("--resnet-steps", type=int, default=200, help="ResNet-9 steps timed")
    parser.add_argument("--cifar-root", help="CIFAR-10 files (dataset.root); default: generated")
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    tiny = args.tiny or device.type != "cuda"
    steps = 2 if tiny else args.resnet_steps
    t0, rows = time.perf_counter(), []
    for row in measure(str(device), tiny, steps, args.cifar_root):
        rows.append({**row, "met": "" if tiny or row["met"] is None else row["met"]})
        print(f"{row['target']}: {row['value']} (goal {row['goal']}) {row['detail']}", flush=True)
        name = write(rows, args.out, str(device), tiny, time.perf_counter() - t0)
    print(f"wrote {args.out / name}.csv and .md")
