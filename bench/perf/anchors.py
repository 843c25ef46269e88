"""valbench against OpenDataVal on the shared task, side by side in one run (../shared/anchors/).

python -m valbench.perf anchors --odv-python $SCRATCH/odv/bin/python --anchors ../shared/anchors
    -> results/perf/anchors.csv and anchors.md

The task (the anchors' README): breast_cancer 200 / 100 / 100, 10% of the labels flipped, logistic
regression, validation accuracy. OpenDataVal 1.3 runs `odv_bench.py MC_EPOCHS AME_MODELS` in its own
venv on one BLAS thread (its best setting here); valbench runs `tmc_shapley` at the number of
evaluations OpenDataVal's TMC spent and `ame` at its 4 x AME_MODELS, timed around `value()` as
OpenDataVal is around `train()`. hit@20 = share of the 20 flipped points among the 20 lowest values.
Speed-ups are wall-time ratios measured in the same run; the load average is recorded, and CPU
times beside them (on a loaded machine valbench's two threads get a larger share of it than
OpenDataVal's one, so the CPU-time ratio is the fairer one there).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..engine.device import device_name
from ..problem import load_problem, make_method
from .output import load_average, write_csv, write_markdown

TASK = ["dataset.n_train=200", "dataset.n_val=100", "dataset.n_test=100"]
RESULT = re.compile(r"RESULT (?P<name>[^:]+): wall=(?P<wall>[\d.]+)s fits=(?P<fits>\d+) .*"
                    r"top10%_precision_on_flipped=(?P<hit>[\d.]+)")  # fmt: skip
RUNS = {"TMC DataShapley": "tmc_shapley", "AME": "ame"}


def run_opendataval(python: str, anchors: Path, mc_epochs: int, ame_models: int) -> dict:
    """{run name: (wall seconds, fits, hit@20)} from odv_bench.py on one BLAS thread, and under
    "cpu_seconds" the CPU time of the whole script (both runs, start-up included)."""
    one = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env = {**os.environ, **one, "PYTHONPATH": str(anchors / "odv_stub")}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [python, str(anchors / "odv_bench.py"), str(mc_epochs), str(ame_models)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = {m["name"]: m for m in RESULT.finditer(proc.stdout)}
    if proc.returncode or set(found) != set(RUNS):
        raise RuntimeError(f"odv_bench.py failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs = {k: (float(m["wall"]), int(m["fits"]), float(m["hit"])) for k, m in found.items()}
    return {**runs, "cpu_seconds": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime}


def run_valbench(method: str, budget: int, seed: int = 0) -> tuple[float, float, int, float]:
    """(wall and CPU seconds of value(), evaluations, hit@20) of `method` on the task."""
    problem = load_problem("breast_cancer", "mislabel", utility="val_accuracy", seed=seed,
                           overrides=[*TASK, "progress=false"])  # fmt: skip
    valuation_method = make_method(method, budget=budget)
    t0, cpu0 = time.perf_counter(), time.process_time()
    valuation = valuation_method.value(problem.game, seed=seed, problem=problem)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    planted = problem.truth.planted
    lowest = np.argsort(valuation.values, kind="stable")[: int(planted.sum())]
    return seconds, cpu, int(valuation.n_evals), float(planted[lowest].mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m valbench.perf anchors", description=__doc__)
    parser.add_argument("--odv-python", required=True, help="python of OpenDataVal's own venv")
    parser.add_argument("--anchors", type=Path, default=Path("../shared/anchors"))
    parser.add_argument("--mc-epochs", type=int, default=200)
    parser.add_argument("--ame-models", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="valbench's threads")
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    args = parser.parse_args(argv)
    if not (args.anchors / "odv_bench.py").exists():
        parser.error(f"--anchors {args.anchors}: no odv_bench.py there")
    torch.set_num_threads(args.threads)
    load_before = load_average()
    odv = run_opendataval(args.odv_python, args.anchors, args.mc_epochs, args.ame_models)
    stamp = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "device": device_name("cpu"), "valbench_threads": args.threads}  # fmt: skip
    rows, valbench_cpu = [], 0.0
    for name, method in RUNS.items():
        odv_wall, odv_fits, odv_hit = odv[name]
        budget = odv_fits if method == "tmc_shapley" else 4 * args.ame_models
        wall, cpu, evals, hit = run_valbench(method, budget)
        valbench_cpu += cpu
        rows.append({
            **stamp, "run": f"`{method}` at {budget:,} evaluations",
            "opendataval_s": round(odv_wall, 2), "opendataval_fits": odv_fits,
            "valbench_s": round(wall, 2), "valbench_evals": evals,
            "speedup": round(odv_wall / wall, 1), "valbench_cpu_s": round(cpu, 2),
            "hit20_opendataval": odv_hit, "hit20_valbench": round(hit, 2),
            "load_average": f"{load_before} -> {load_average()}",
        })  # fmt: skip
        print(rows[-1], flush=True)
    cpu_ratio = round(odv["cpu_seconds"] / valbench_cpu, 1)  # both runs: start-up counts for ODV
    rows = [{**row, "cpu_time_speedup_both_runs": cpu_ratio} for row in rows]
    write_csv(rows, args.out / "anchors.csv")
    keys = ["run", "opendataval_s", "valbench_s", "speedup", "hit20_opendataval",
            "hit20_valbench", "load_average"]  # fmt: skip
    write_markdown(rows, keys, args.out / "anchors.md",
                   f"valbench vs OpenDataVal 1.3 (one BLAS thread) on breast_cancer 200/100/100, "
                   f"10% flips, logreg, validation accuracy; {stamp['device']}, "
                   f"{stamp['date']}, machine shared (load average before -> after). Wall-time "
                   f"speed-ups; in CPU time (OpenDataVal's whole script incl. start-up vs "
                   f"valbench's value() calls) {cpu_ratio}x")  # fmt: skip
