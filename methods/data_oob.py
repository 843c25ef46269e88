"""Data-OOB (Kwon & Zou, ICML 2023, "Data-OOB: Out-of-bag Estimate as a Simple and Efficient Data
Value", Eq. 3): the out-of-bag accuracy of each point over B bootstrap submodels.

Submodel b is trained on a bootstrap sample of the training set, drawn with replacement, which enters
the engine as sample weights N_b (the multiplicity of every point, sum_i N_bi = n); all B submodels are
trained as one engine batch. The value of point i is

    psi_i = sum_b 1[N_bi = 0] 1[f_b(x_i) = y_i] / sum_b 1[N_bi = 0]

the accuracy on point i of the submodels that did not see it. A point that no submodel left out (chance
(1 - 1/n)^(n B), about e^-B) gets the mean value of the others; info["never_out_of_bag"] counts them.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from valbench.types import Game, Problem, Valuation, shows_progress

from .base import BaseMethod
from .checks import check_int, require_problem
from .final_model import check_differentiable, problem_engine
from .sampling import rng_for
from .timing import Stopwatch


def bootstrap_counts(n: int, n_models: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicities (n_models, n) of n draws with replacement from n points, one row per model."""
    draws = rng.integers(0, n, size=(n_models, n))
    return np.stack([np.bincount(row, minlength=n) for row in draws])


def out_of_bag_accuracy(counts: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, int]:
    """psi (n,) from multiplicities and correctness (B, n), and how many points were never OOB."""
    out = counts == 0
    seen = out.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        psi = (out & correct).sum(0) / seen
    never = int((seen == 0).sum())
    if never:
        psi[seen == 0] = psi[seen > 0].mean()
    return psi, never


class DataOOB(BaseMethod):
    """Data-OOB values from `n_models` bootstrap submodels trained through the engine (module doc)."""

    needs_problem = True

    def __init__(self, n_models: int = 200) -> None:
        self.n_models = n_models

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        problem = require_problem(problem, "data_oob")
        n_models = check_int(self.n_models, "n_models", "data_oob", low=2)
        check_differentiable(problem, "data_oob")  # trains the problem's torch model
        split = problem.split
        with Stopwatch() as t:
            engine = problem_engine(problem)
            counts = bootstrap_counts(split.n_train, n_models, rng_for(seed, 21))
            show = shows_progress(problem.game) and n_models >= 64
            with tqdm(total=n_models, desc="data_oob", unit="model", disable=not show) as bar:
                probs = engine.fit_predict(counts, split.x_train, on_chunk=bar.update)
            correct = probs.argmax(-1) == split.y_train
            values, never = out_of_bag_accuracy(counts, correct)
        return Valuation(
            values,
            n_evals=n_models,
            seconds=t.seconds,
            info={"n_models": n_models, "never_out_of_bag": never},
        )
