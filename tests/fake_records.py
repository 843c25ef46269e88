"""A synthetic sweep written with bench/store/records.py, shaped like the runner's records.

Real data (wine, 30 training points, 10% flipped labels) so that the point-removal curves can rebuild
each job's problem; made-up values whose quality is known by construction:

* `oracle`: minus the planted mask plus small noise (AUROC 1);
* `random`: standard normal noise;
* `ame` at budgets 100 and 200: the planted mask buried in noise that shrinks with the budget, and
  a selection of its k most suspicious points (k = number planted);
* `my_method`: a method name the style does not know (fallback colour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from valbench import score
from valbench.engine.device import versions
from valbench.problem import build_problem, compose
from valbench.store.records import SCHEMA_VERSION, flatten, write_arrays, write_record
from valbench.types import Valuation

OVERRIDES = ("dataset=wine", "dataset.n_train=30", "progress=false")
METHODS = ("random", "oracle", "ame@100", "ame@200", "my_method")


def fake_values(name: str, planted: np.ndarray, rng: np.random.Generator) -> Valuation:
    noise = rng.standard_normal(len(planted))
    planted = planted.astype(float)
    if name == "random":
        return Valuation(noise, n_evals=0, seconds=1e-4)
    if name == "oracle":
        return Valuation(-planted + 0.01 * noise, n_evals=31, seconds=0.2)
    if name == "my_method":
        return Valuation(-0.5 * planted + noise, n_evals=50, seconds=0.3)
    budget = int(name.split("@")[1])
    values = -planted + noise * 100 / budget
    selected = np.zeros(len(planted), bool)
    selected[np.argsort(values)[: int(planted.sum())]] = True
    return Valuation(values, selected=selected, n_evals=budget, seconds=budget / 100)


def write_sweep(root: Path, seeds=(0, 1, 2), methods=METHODS) -> list[Path]:
    """Write one job folder per method x seed under `root`; return the record paths."""
    paths = []
    for seed in seeds:
        problem = build_problem(compose([*OVERRIDES, f"seed={seed}"]))
        for name in methods:
            method, _, budget = name.partition("@")
            overrides = [*OVERRIDES, f"seed={seed}", f"method={'loo' if budget else 'random'}"]
            if budget:
                overrides.append(f"method.budget={budget}")
            config = compose(overrides)
            rng = np.random.default_rng([seed, len(name)])
            valuation = fake_values(name, problem.truth.planted, rng)
            job_dir = Path(root) / f"method={name},seed={seed}"
            record = {
                "schema": SCHEMA_VERSION,
                "status": "ok",
                "method": method,
                "seed": seed,
                "dataset": "wine",
                "corruption": "mislabel",
                "model": "logreg",
                "utility": "val_loglik",
                "device": "cpu (test)",
                "versions": versions(),
                "config": flatten(dict(_plain(config))),
                **score(valuation, problem.truth),
                "n_evals": valuation.n_evals,
                "seconds": valuation.seconds,
                "n_planted": problem.truth.n_planted,
                "n_train": problem.split.n_train,
                "error": None,
            }
            arrays = {"values": valuation.values, "planted": problem.truth.planted}
            if valuation.selected is not None:
                arrays["selected"] = valuation.selected
            record["arrays_sha256"] = write_arrays(job_dir, arrays)
            paths.append(write_record(job_dir, record))
    return paths


def _plain(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)
