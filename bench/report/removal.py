"""Point-removal curves: how test accuracy changes as the highest- or lowest-valued points go.

For a job's values v (the mean over queries for (Q, n) values) and a fraction f, the curve is the
TEST accuracy of the run's model (its `model` config, trained by its utility backend) fitted on the
training set minus the round(f * n) points of highest (or lowest) value; ties are broken by a
permutation seeded from the job's seed. This is the "remove high/low value data" experiment of
Ghorbani & Zou (ICML 2019, Sec. 4 and Fig. 2) and OpenDataVal: good values make accuracy fall fast
when the highest go and hold or rise when the lowest (e.g. flipped labels) go. The test split is used
because the validation split may have steered the values. Each job costs 2 * len(fractions) - 1
trainings; jobs of one dataset, corruption and seed share their data and the fit on all points.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from ..problem import build_problem, make_utility
from ..store.records import ARRAYS_NAME, read_arrays, read_record, unflatten
from ..types import Game, Problem, evaluate

FRACTIONS = tuple(float(f) for f in np.round(np.linspace(0.0, 0.5, 11), 2))
log = logging.getLogger(__name__)


def removal_masks(
    values: np.ndarray, fractions, highest: bool, rng: np.random.Generator
) -> np.ndarray:
    """Bool masks (len(fractions), n): all points but the round(f * n) highest (or lowest) valued."""
    n = len(values)
    tiebreak = rng.permutation(n)
    order = np.lexsort((tiebreak, -values if highest else values))
    masks = np.ones((len(fractions), n), dtype=bool)
    for mask, fraction in zip(masks, fractions, strict=True):
        mask[order[: int(round(fraction * n))]] = False
    return masks


def removal_game(problem: Problem) -> Game:
    """The game the curves are scored with: the run's utility, scoring accuracy on the TEST split."""
    split = replace(problem.split, x_val=problem.split.x_test, y_val=problem.split.y_test)
    utility = {**problem.config["utility"], "name": "val_accuracy"}
    return make_utility(split, problem.truth, problem.config["model"], utility, progress=False)


def removal_curves(
    game: Game, values: np.ndarray, seed: int, fractions=FRACTIONS
) -> dict[str, np.ndarray]:
    """{"highest": accuracies, "lowest": accuracies} after removing each fraction of points."""
    values = np.asarray(values, dtype=np.float64)
    values = values.mean(0) if values.ndim == 2 else values
    rng = np.random.default_rng(seed)
    masks = np.vstack(
        [removal_masks(values, fractions, True, rng), removal_masks(values, fractions, False, rng)]
    )
    accuracy = evaluate(game, masks)
    return {"highest": accuracy[: len(fractions)], "lowest": accuracy[len(fractions) :]}


def removal_table(jobs: pd.DataFrame, fractions=FRACTIONS) -> pd.DataFrame:
    """Removal curves of labelled jobs (see tables.label_jobs) whose record folder still holds
    its values: one row per job x removed (highest | lowest) x fraction with the test `accuracy`.
    Jobs whose folder or values are gone, or whose data no longer rebuild the same planted points,
    are skipped with a warning."""
    games: dict[str, tuple[np.ndarray, Game]] = {}  # by data config: (planted mask, test game)
    rows = []
    for job in tqdm(jobs.itertuples(index=False), total=len(jobs), desc="removal", leave=False):
        job_dir = Path(job.path).parent
        record = read_record(Path(job.path)) if Path(job.path).exists() else None
        if record is None or not (job_dir / ARRAYS_NAME).exists():
            log.warning("no removal curve for %s: its record or values are gone", job_dir)
            continue
        config = {k: v for k, v in record["config"].items() if not k.startswith("method.")}
        key = json.dumps(config, sort_keys=True)
        if key not in games:
            problem = build_problem(OmegaConf.create(unflatten(config)))
            games[key] = problem.truth.planted, removal_game(problem)
        planted, game = games[key]
        try:
            arrays = read_arrays(job_dir)
        except ValueError as err:
            log.warning("no removal curve for %s: %s", job_dir, err)
            continue
        if not np.array_equal(arrays["planted"], planted):
            log.warning("no removal curve for %s: its data rebuild differently now", job_dir)
            continue
        curves = removal_curves(game, arrays["values"], int(job.seed), fractions)
        for removed, accuracy in curves.items():
            rows += [
                {
                    "path": job.path,
                    "method": job.method,
                    "base": job.base,
                    "setting": job.setting,
                    "seed": job.seed,
                    "removed": removed,
                    "fraction": f,
                    "accuracy": a,
                }
                for f, a in zip(fractions, accuracy, strict=True)
            ]
    return pd.DataFrame(rows)
