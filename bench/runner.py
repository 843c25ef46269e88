"""The Hydra app `valbench`: compose a run, value the data, score it, write one result record.

valbench method=loo dataset=wine            # one run under outputs/
valbench -m method=random,loo seed=0,1,2    # a sweep under multirun/NAME/
valbench -m hydra/launcher=parallel ...     # the same sweep, jobs in parallel processes (joblib)

A sweep writes each job to multirun/NAME/OVERRIDES (the job's overrides, less experiment, name and
progress), so a rerun finds the records of the jobs that already finished and skips them.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .machine import device_name, versions
from .problem import build_problem
from .score import METRIC_KEYS, score
from .store import (
    RECORD_NAME,
    SCHEMA_VERSION,
    as_stored,
    flatten,
    read_record,
    remove_partial_writes,
    write_arrays,
    write_record,
)

log = logging.getLogger("valbench")


# Config keys that do not change a job's result: a rerun that differs only in them skips the job.
NOT_RESULT_KEYS = ("progress",)


def _result_config(config: dict) -> dict:
    return as_stored({k: v for k, v in config.items() if k not in NOT_RESULT_KEYS})


def finished_record(job_dir: Path, config: dict) -> dict | None:
    """The job's earlier record if it finished ok, in this schema and with this config; else None."""
    path = Path(job_dir) / RECORD_NAME
    old = read_record(path) if path.exists() else None
    if old is None or old.get("status") != "ok" or old.get("schema") != SCHEMA_VERSION:
        return None
    if _result_config(old.get("config") or {}) != _result_config(config):
        log.info("rerunning %s: its record was made with another config", job_dir)
        return None
    return old


def run_job(cfg: DictConfig, job_dir: Path, method_name: str, raise_errors: bool = True) -> dict:
    """Run one job and write its record (and its values) to `job_dir`.

    A job whose earlier record finished ok with the same config is skipped, so a rerun of a sweep
    only does what is missing or failed. A failing job writes a record with status "error" and the
    traceback; it raises when `raise_errors` (single runs) and returns the record otherwise (sweeps).
    """
    from hydra.utils import instantiate

    job_dir = Path(job_dir)
    remove_partial_writes(job_dir)  # left behind by a run that was killed mid-write
    record = {
        "schema": SCHEMA_VERSION,
        "status": "running",
        "method": method_name,
        "versions": versions(),
        **dict.fromkeys(METRIC_KEYS, float("nan")),
        "n_evals": None,
        "seconds": None,
        "error": None,
    }
    t0 = time.perf_counter()
    try:
        config = flatten(OmegaConf.to_container(cfg, resolve=True))
        if old := finished_record(job_dir, config):
            log.info("skipping %s: its record exists", job_dir)
            return old
        record.update(
            seed=int(cfg.seed),
            dataset=cfg.dataset.name,
            corruption=cfg.corruption.name,
            model=cfg.model.name,
            utility=cfg.utility.name,
            device=device_name("cpu"),
            config=config,
        )
        method = instantiate(cfg.method)  # a bad method config fails before any training
        problem = build_problem(cfg)
        record["device"] = device_name(getattr(problem.game, "device", "cpu"))
        valuation = method.value(problem.game, seed=int(cfg.seed), problem=problem)
        record.update(score(valuation, problem.truth))
        record.update(
            status="ok",
            n_evals=int(valuation.n_evals),
            seconds=float(valuation.seconds),
            n_trainings=getattr(problem.game, "n_evals", None),
            wall_seconds=time.perf_counter() - t0,
            n_planted=problem.truth.n_planted,
            n_train=problem.split.n_train,
            info=valuation.info,
        )
        arrays = {"values": valuation.values, "planted": problem.truth.planted}
        for key in ("stderr", "selected"):
            if getattr(valuation, key) is not None:
                arrays[key] = getattr(valuation, key)
        write_arrays(job_dir, arrays)
    except Exception as err:  # the record says what failed; a sweep goes on
        record.update(
            status="error",
            error=f"{type(err).__name__}: {err}",
            traceback=traceback.format_exc(),
            wall_seconds=time.perf_counter() - t0,
        )
        write_record(job_dir, record)
        if raise_errors:
            raise
        log.error("job %s failed: %s", job_dir, record["error"])
        return record
    write_record(job_dir, record)
    log.info(
        "%s on %s: auroc=%.3f ap=%.3f n_evals=%s %.1fs",
        method_name,
        record["dataset"],
        record["auroc"],
        record["ap"],
        record["n_evals"],
        record["seconds"],
    )
    return record


@hydra.main(config_path="pkg://valbench.conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_job(
        cfg,
        Path(hc.runtime.output_dir),
        hc.runtime.choices["method"],
        raise_errors=hc.mode != RunMode.MULTIRUN,
    )


if __name__ == "__main__":
    main()
