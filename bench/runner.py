"""The Hydra app `valbench`: compose a run, value the data, score it, write one result record.

valbench method=loo dataset=wine            # one run under outputs/
valbench -m method=random,loo seed=0,1,2    # a sweep under multirun/NAME/
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from .machine import device_name, versions
from .problem import build_problem
from .score import METRIC_KEYS, score
from .store import RECORD_NAME, SCHEMA_VERSION, read_record, write_atomic, write_record

log = logging.getLogger("valbench")


def flatten(cfg: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def run_job(cfg: DictConfig, job_dir: Path, method_name: str, raise_errors: bool = True) -> dict:
    """Run one job and write its record to `job_dir`; a job whose record says ok is skipped."""
    from hydra.utils import instantiate

    job_dir = Path(job_dir)
    done = job_dir / RECORD_NAME
    if done.exists() and (old := read_record(done)) and old.get("status") == "ok":
        log.info("skipping %s: its record exists", job_dir)
        return old
    plain = OmegaConf.to_container(cfg, resolve=True)
    record = {
        "schema": SCHEMA_VERSION,
        "status": "running",
        "method": method_name,
        "seed": int(cfg.seed),
        "dataset": cfg.dataset.name,
        "corruption": cfg.corruption.name,
        "model": cfg.model.name,
        "utility": cfg.utility.name,
        "device": device_name("cpu"),
        "versions": versions(),
        "config": flatten(plain),
        **dict.fromkeys(METRIC_KEYS, float("nan")),
        "n_evals": None,
        "seconds": None,
        "error": None,
    }
    t0 = time.perf_counter()
    try:
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
        _save_arrays(job_dir / "valuation.npz", arrays)
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


def _save_arrays(path: Path, arrays: dict) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(path, buf.getvalue())


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
