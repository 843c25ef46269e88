"""The paper figures' sweeps: their jobs, running what is missing with one progress line, and which
records are fresh, stale (made with another config) or missing.

Each sweep is a Hydra experiment, conf/experiment/paper_*.yaml; its jobs are the product of the
experiment's `hydra.sweeper.params`, written to RUNS/NAME/JOB (JOB = Hydra's job folder name, so
`valbench -m experiment=NAME hydra.sweep.dir=RUNS/NAME` makes the same records and either skips the
other's finished jobs). `run_sweeps` runs each job in this process through `runner.run_job`, which
skips a job whose record exists with this config and arrays of the recorded checksum. `--tiny` runs
every sweep at `Sweep.tiny` (smaller data, two seeds, fewer points) in its own RUNS folder.
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..store.keys import NOT_RESULT_KEYS
from ..store.records import RECORD_NAME, arrays_problem, as_stored, flatten, read_record

log = logging.getLogger("valbench.report")
CURVE_KEYS = ("budget_c", "method.budget")  # set per point of a budget curve by the runner


@dataclass(frozen=True)
class Sweep:
    """A paper sweep: its experiment `name`, the measured `seconds` per job of the full sweep on
    2 shared CPU cores (the plan's estimate), and `tiny`: overrides of `--tiny` (`key=value`
    strings; a swept key's value replaces its sweep)."""

    name: str
    seconds: float
    tiny: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Job:
    sweep: str
    overrides: tuple[str, ...]  # the swept key=value of this job
    folder: Path


@functools.lru_cache(maxsize=4096)
def _composed(overrides: tuple[str, ...], hydra: bool) -> DictConfig:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)
    with initialize_config_module("valbench.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def _compose(overrides: list[str], hydra: bool = False) -> DictConfig:
    """The composed config (cached: a copy), as `valbench` composes it from these overrides."""
    return copy.deepcopy(_composed(tuple(overrides), hydra))


def sweep_params(sweep: Sweep, tiny: bool) -> dict[str, list[str]]:
    """{key: [value, ...]} of the experiment's sweep, `--tiny`'s swept keys replacing theirs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = _compose([f"experiment={sweep.name}"], hydra=True)
    params = dict(OmegaConf.to_container(cfg.hydra.sweeper.params) or {})
    parser = OverridesParser.create()
    for line in sweep.tiny if tiny else ():
        key, value = line.split("=", 1)
        if key in params:
            params[key] = value
    out = {}
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        if override.is_sweep_override():
            out[key] = list(override.sweep_string_iterator())
        else:
            out[key] = [override.get_value_element_as_str()]
    return out


def sweep_jobs(sweep: Sweep, runs: Path, tiny: bool = False) -> list[Job]:
    """Every job of `sweep`, in the sweep's order, with its folder under RUNS/NAME."""
    from ..sweeps import job_dirname

    params = sweep_params(sweep, tiny)
    keys = list(params)
    jobs = []
    for values in itertools.product(*(params[k] for k in keys)):
        overrides = tuple(f"{k}={v}" for k, v in zip(keys, values, strict=True))
        folder = Path(runs) / sweep.name / job_dirname(list(overrides), ["experiment", "name"])
        jobs.append(Job(sweep.name, overrides, folder))
    return jobs


def job_config(job: Job, sweep: Sweep, tiny: bool) -> DictConfig:
    """The composed run config of `job` (as `valbench -m` composes it), `--tiny`'s other keys set."""
    swept = {o.split("=", 1)[0] for o in job.overrides}
    extra = [o for o in (sweep.tiny if tiny else ()) if o.split("=", 1)[0] not in swept]
    return _compose([f"experiment={sweep.name}", *extra, *job.overrides, "progress=false"])


def _comparable(config: dict) -> dict:
    """A record's flattened config as compared for freshness (curve keys and NOT_RESULT_KEYS out)."""
    drop = (*CURVE_KEYS, *NOT_RESULT_KEYS)
    return as_stored({k: v for k, v in config.items() if k not in drop})


def job_records(job: Job, config: DictConfig) -> tuple[list[Path], str]:
    """(the job's usable record paths, state): state "fresh" when every record finished ok with this
    config and its arrays' checksum, "stale" when some record was made with another config, else
    "missing" (no record, a failed or unfinished one, or bad arrays)."""
    paths = [job.folder / RECORD_NAME] if (job.folder / RECORD_NAME).is_file() else []
    paths += sorted(job.folder.glob(f"c=*/{RECORD_NAME}"))
    expected = _comparable(flatten(OmegaConf.to_container(config, resolve=True)))
    good, state = [], "missing"
    for path in paths:
        record = read_record(path)
        if record is None or record.get("status") != "ok" or arrays_problem(path.parent, record):
            continue
        if _comparable(record.get("config") or {}) != expected:
            state = "stale"
            continue
        good.append(path)
    if good and state != "stale" and _curve_finished(good, config):
        state = "fresh"
    return good, state


def _curve_finished(paths: list[Path], config: DictConfig) -> bool:
    """Whether a budget-curve job (records in c=C/ folders) reached its largest c (a killed job
    leaves its smaller points only); True for a job of one record."""
    curve = config.get("budget_c")
    if not curve or not any(p.parent.name.startswith("c=") for p in paths):
        return True
    done = [
        float(p.parent.name.removeprefix("c=")) for p in paths if p.parent.name.startswith("c=")
    ]
    return max(done) >= max(float(c) for c in curve) - 1e-9


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


class Progress:
    """One line: jobs done of total, elapsed, and time left = each remaining job's planned seconds
    scaled by how fast the jobs run so far compare with their plan (skipped jobs count as done)."""

    def __init__(self, planned: list[float], stream=None) -> None:
        self.planned, self.stream = planned, stream or sys.stderr
        self.done, self.spent, self.spent_plan, self.t0 = 0, 0.0, 0.0, time.perf_counter()

    def left(self) -> float:
        rest = sum(self.planned[self.done :])
        ratio = self.spent / self.spent_plan if self.spent_plan > 0 else 1.0
        return rest * ratio

    def update(self, label: str, seconds: float | None) -> str:
        """Count one job (`seconds` None: skipped) and print the line."""
        if seconds is not None:
            self.spent += seconds
            self.spent_plan += self.planned[self.done]
        self.done += 1
        line = (
            f"[paper] {self.done}/{len(self.planned)} jobs, "
            f"{_clock(time.perf_counter() - self.t0)} elapsed, ~{_clock(self.left())} left: {label}"
        )
        end = "\r" if getattr(self.stream, "isatty", lambda: False)() else "\n"
        print(f"{line[:150]:<150}", end=end, file=self.stream, flush=True)
        return line


def plan(sweeps: list[Sweep], runs: Path, tiny: bool = False) -> list[tuple[Sweep, list[Job]]]:
    return [(sweep, sweep_jobs(sweep, runs, tiny)) for sweep in sweeps]


def run_sweeps(sweeps: list[Sweep], runs: Path, tiny: bool = False, stream=None) -> dict:
    """Run every missing or stale job of `sweeps` (fresh ones are skipped), one progress line per
    job; returns `failed` ({sweep name: jobs that failed}), jobs `ran` and `skipped`, wall `seconds`
    and the 1-minute load average at the start and the end (`load`)."""
    from ..runner import run_job

    planned = plan(sweeps, runs, tiny)
    progress = Progress([s.seconds for s, jobs in planned for _ in jobs], stream)
    failed, ran, load = {}, 0, [os.getloadavg()[0]]
    for sweep, jobs in planned:
        failed[sweep.name] = 0
        for job in jobs:
            config = job_config(job, sweep, tiny)
            label = f"{sweep.name} {','.join(job.overrides)}"
            if job_records(job, config)[1] == "fresh":
                progress.update(label + " (done before)", None)
                continue
            t0, ran = time.perf_counter(), ran + 1
            method = _method_name(job, sweep)
            record = run_job(config, job.folder, method, raise_errors=False)
            if record.get("status") == "error":
                failed[sweep.name] += 1
                log.error("%s failed: %s", job.folder, record.get("error"))
            progress.update(label, time.perf_counter() - t0)
    if getattr(progress.stream, "isatty", lambda: False)():
        print(file=progress.stream)
    seconds = time.perf_counter() - progress.t0
    load.append(os.getloadavg()[0])
    return {
        "failed": failed,
        "ran": ran,
        "skipped": progress.done - ran,
        "seconds": seconds,
        "load": load,
    }


def _method_name(job: Job, sweep: Sweep) -> str:
    for line in job.overrides:
        if line.startswith("method="):
            return line.split("=", 1)[1]
    return str(_compose([f"experiment={sweep.name}"], hydra=True).hydra.runtime.choices.method)


@dataclass
class SweepState:
    """Which of a sweep's jobs have fresh records: `paths` (usable records), counts by state."""

    sweep: str
    paths: list[Path]
    total: int
    fresh: int
    stale: int
    missing: int

    @property
    def complete(self) -> bool:
        return self.fresh == self.total

    def note(self, tiny: bool = False) -> str:
        """What a figure says about its inputs: '' when complete, else counts and the command."""
        if self.complete:
            return ""
        rerun = f"valbench-report paper{' --tiny' if tiny else ''} --only {self.sweep}"
        return (
            f"PARTIAL: {self.fresh} of {self.total} jobs of {self.sweep} "
            f"({self.missing} missing, {self.stale} stale); rerun: {rerun}"
        )


def sweep_state(sweep: Sweep, runs: Path, tiny: bool = False) -> SweepState:
    """The fresh records of `sweep` under RUNS and how many jobs are fresh, stale or missing."""
    paths, counts = [], {"fresh": 0, "stale": 0, "missing": 0}
    jobs = sweep_jobs(sweep, runs, tiny)
    for job in jobs:
        good, state = job_records(job, job_config(job, sweep, tiny))
        counts[state] += 1
        if state == "fresh":
            paths += good
    return SweepState(sweep.name, paths, len(jobs), **counts)
