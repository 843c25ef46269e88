"""The Hydra app `valbench`: compose a run, value the data, score it, write one result record.

valbench method=loo dataset=wine            # one run under outputs/
valbench -m method=random,loo seed=0,1,2    # a sweep under multirun/NAME/
valbench -m hydra/launcher=parallel ...     # the same sweep, jobs in parallel processes (joblib)

A sweep writes each job to multirun/NAME/OVERRIDES (the job's overrides, less experiment, name and
progress), so a rerun finds the records of the jobs that already finished and skips them.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from valbench.datasets import check_seed

from .engine.device import device_name, versions
from .problem import build_problem
from .score import METRIC_KEYS, score
from .store.keys import NOT_RESULT_KEYS
from .store.records import (
    RECORD_NAME,
    SCHEMA_VERSION,
    arrays_problem,
    as_stored,
    flatten,
    job_lock,
    read_record,
    remove_partial_writes,
    write_arrays,
    write_record,
)
from .store.shards import attach_store, check_evals, train_shard
from .sweeps import group_key_overrides
from .types import BudgetedMethod, EngineGame, TrainableGame

log = logging.getLogger("valbench")


def _result_config(config: dict) -> dict:
    return as_stored({k: v for k, v in config.items() if k not in NOT_RESULT_KEYS})


def finished_record(job_dir: Path, config: dict) -> dict | None:
    """The job's earlier record if it finished ok, in this schema and with this config, and its
    arrays read back with the recorded checksum; else None."""
    path = Path(job_dir) / RECORD_NAME
    old = read_record(path) if path.exists() else None
    if old is None or old.get("status") != "ok" or old.get("schema") != SCHEMA_VERSION:
        return None
    if _result_config(old.get("config") or {}) != _result_config(config):
        log.info("rerunning %s: its record was made with another config", job_dir)
        return None
    if problem := arrays_problem(job_dir, old):
        log.warning("rerunning %s: %s", job_dir, problem)
        return None
    return old


def budget_for(c: float, n_planted: int, n_players: int) -> int:
    """m = c k log2 n, rounded: the AME paper's budget for k planted points among n (Lin et al.
    2022, Thm. 1: O(k log N) submodels; rounded half up as in its CIFAR-10 script)."""
    return int(c * n_planted * math.log2(n_players) + 0.5)


def _budget_curve(cfg: DictConfig, method) -> list[float] | None:
    """The job's sorted budget_c values; None without them or for a method without a budget."""
    curve = cfg.get("budget_c")
    return _check_curve(curve) if curve is not None and isinstance(method, BudgetedMethod) else None


def _check_curve(curve) -> list[float]:
    values = list(curve)
    if not values or any(
        isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0 for c in values
    ):
        raise ValueError(f"budget_c must be a list of positive numbers, got {values!r}")
    return sorted(set(float(c) for c in values))


def run_job(cfg: DictConfig, job_dir: Path, method_name: str, raise_errors: bool = True) -> dict:
    """Run one job and write its record (and its values) to `job_dir`.

    A job whose earlier record finished ok with the same config is skipped, so a rerun of a sweep
    only does what is missing or failed. A failing job writes a record with status "error" and the
    traceback; it raises when `raise_errors` (single runs) and returns the record otherwise (sweeps).
    The job holds its folder's lock (`job_lock`) throughout, so concurrent identical sweeps run each
    job once: the second waits for the first and then skips the finished job.

    With `budget_c` (a list of c), a method that has a `budget` runs once per c, smallest first, at
    m = `budget_for(c, k, n)` (raised to the method's minimum where it is below it), on one game:
    each larger budget starts with the smaller one's samples, so its trainings are reused and the
    largest budget's submodels are trained once. Each point writes job_dir/c=C/ (a budget raised to
    the minimum gets C = m / (k log2 n)) with `budget_c` = C in its config; its `seconds` add the
    training time of the reused evaluations, so they are what a fresh run at that budget costs.
    Methods without a budget write one record as usual.

    With `evals.dir` the game's evaluations persist in a store there (bench/store/shards.py), and with
    `evals.shard` the job only trains its shard of the method's samples and records status "shard".
    """
    with job_lock(job_dir):
        return _run_job(cfg, Path(job_dir), method_name, raise_errors)


def _run_job(cfg: DictConfig, job_dir: Path, method_name: str, raise_errors: bool) -> dict:
    """The body of `run_job`, under the job's lock."""
    from hydra.utils import instantiate

    job_dir = Path(job_dir)
    record = _new_record(method_name)
    t0 = time.perf_counter()
    where = job_dir
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        config = flatten(resolved)
        evals = resolved.get("evals") or {}
        shard = check_evals(evals)
        method = instantiate(cfg.method)  # a bad method config fails before any training
        curve = _budget_curve(cfg, method)
        if curve is None:
            if "budget_c" in config:
                config["budget_c"] = None  # not applicable: the method has no budget
            if old := finished_record(job_dir, config):
                log.info("skipping %s: its record exists", job_dir)
                return old
        record.update(_setting(cfg), config=config)
        problem = build_problem(cfg)
        game = problem.game
        record["device"] = device_name(game.device if isinstance(game, EngineGame) else "cpu")
        if evals.get("dir") is not None:
            attach_store(problem.game, resolved, evals, job_dir)
        points = {} if curve is None else _curve_points(curve, method, problem)
        if shard is not None:  # the largest budget's samples start with every smaller one's
            if points:
                method = instantiate(cfg.method, budget=max(points))
            return _train_shard(job_dir, record, method, game, shard, evals, t0)
        if curve is None:
            return _value_and_write(job_dir, record, method, problem, t0)
        last = record
        for budget, c in sorted(points.items()):
            method = instantiate(cfg.method, budget=budget)
            point = {**config, "method.budget": budget, "budget_c": c}
            where = job_dir / f"c={c:g}"
            if old := finished_record(where, point):
                log.info("skipping %s: its record exists", where)
                last = old
                continue
            reused = game.seconds if isinstance(game, TrainableGame) else 0.0
            last = _value_and_write(where, {**record, "config": point}, method, problem, t0, reused)
        return last
    except Exception as err:  # the record says what failed; a sweep goes on
        record.update(
            status="error",
            error=f"{type(err).__name__}: {err}",
            traceback=traceback.format_exc(),
            wall_seconds=time.perf_counter() - t0,
        )
        write_record(where, record)
        if raise_errors:
            raise
        log.error("job %s failed: %s", where, record["error"])
        return record


def _new_record(method_name: str) -> dict:
    """A record before the run: schema, method, versions, NaN metrics."""
    return {
        "schema": SCHEMA_VERSION,
        "status": "running",
        "method": method_name,
        "versions": versions(),
        **dict.fromkeys(METRIC_KEYS, float("nan")),
        "n_evals": None,
        "seconds": None,
        "error": None,
    }


def _setting(cfg: DictConfig) -> dict:
    """The record's seed and names of the dataset, corruption, model and utility."""
    return {
        "seed": check_seed(cfg.seed),
        "dataset": cfg.dataset.name,
        "corruption": cfg.corruption.name,
        "model": cfg.model.name,
        "utility": cfg.utility.name,
        "device": device_name("cpu"),
    }


def _train_shard(job_dir: Path, record: dict, method, game, shard, evals: dict, t0: float) -> dict:
    """Train the job's shard of the method's samples into the store; a record of status "shard"."""
    rows = train_shard(method, game, record["seed"], shard, evals.get("block", 256))
    record.update(
        status="shard",
        n_evals=rows,
        n_trainings=game.n_trainings,
        seconds=game.seconds,
        wall_seconds=time.perf_counter() - t0,
    )
    write_record(job_dir, record)
    log.info("shard %d/%d: %d samples, %d trained now", *shard, rows, game.n_trainings)
    return record


def _curve_points(curve: list[float], method, problem) -> dict[int, float]:
    """{budget: c} of a budget_c curve: m = budget_for(c, k, n), raised to the method's minimum
    (c then the effective m / (k log2 n)); c values that give the same budget run once."""
    k, n = problem.truth.n_planted, problem.game.n_players
    if k == 0:
        raise ValueError("budget_c needs planted points: m = c k log2 n is 0 for k = 0")
    minimum, points = method.min_budget(n), {}
    for c in curve:
        budget = budget_for(c, k, n)
        if budget < minimum:
            budget, c = minimum, round(minimum / (k * math.log2(n)), 2)
        points.setdefault(budget, c)
    return points


def _value_and_write(
    job_dir: Path, record: dict, method, problem, t0: float, reused_seconds: float = 0.0
) -> dict:
    """Value the problem's game with `method`, score it and write the record and arrays."""
    game = problem.game
    valuation = method.value(game, seed=record["seed"], problem=problem)
    record = {**record, **score(valuation, problem.truth)}
    record.update(
        status="ok",
        n_evals=int(valuation.n_evals),
        seconds=float(valuation.seconds) + reused_seconds,
        n_trainings=game.n_trainings if isinstance(game, TrainableGame) else None,
        wall_seconds=time.perf_counter() - t0,
        n_planted=problem.truth.n_planted,
        n_train=problem.split.n_train,
        info=valuation.info,
    )
    arrays = {"values": valuation.values, "planted": problem.truth.planted}
    for key in ("stderr", "selected"):
        if getattr(valuation, key) is not None:
            arrays[key] = getattr(valuation, key)
    remove_partial_writes(job_dir)  # left behind by a run that was killed mid-write
    record["arrays_sha256"] = write_arrays(job_dir, arrays)
    write_record(job_dir, record)
    log.info(
        "%s on %s: auroc=%.3f ap=%.3f n_evals=%s %.1fs",
        record["method"],
        record["dataset"],
        record["auroc"],
        record["ap"],
        record["n_evals"],
        record["seconds"],
    )
    return record


@hydra.main(config_path="pkg://valbench.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_job(
        cfg,
        Path(hc.runtime.output_dir),
        hc.runtime.choices["method"],
        raise_errors=hc.mode != RunMode.MULTIRUN,
    )


def main() -> None:
    """The `valbench` command: Hydra's, with a swept group's keys settable (`sweeps`)."""
    try:
        sys.argv[1:] = group_key_overrides(sys.argv[1:])
    except ValueError as err:
        print(f"valbench: {err}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
