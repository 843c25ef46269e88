"""Further training: the final-model-only gold standard of Wei et al. (2024, "Final-Model-Only Data
Attribution with a Unifying View of Gradient-Based Methods", Sec. 3).

From the final model theta_0, continue training for T steps on the full data (theta_T) and, with the
same seed (the same minibatches), with point i left out (weight 0) or down-weighted to `weight`
(theta_T^{-i}); the value of i for a loss L is

    value_T(i) = E_seeds[ L(theta_T^{-i}) - L(theta_T) ] / (1 - weight)

= the change of the loss caused by the point's removal, minus the change caused by further training
alone (which theta_T carries), averaged over `seeds` minibatch orders; dividing by 1 - weight makes a
down-weighting estimate the removal to first order. Positive: the point helps. L is the target's
loss (methods/targets.py); `self` values are minus the point's effect on its own loss. All n + 1 runs
of a seed are one warm-started batch of bench/engine/continuation.py (plain SGD at `lr`, the final model's
own L2 terms, `batch_size` shared minibatch positions; null: full-batch gradient descent), in float64.

`steps` may list several T: one continuation is evaluated at each of them, and the values at the
largest T are returned. `compare` lists gradient methods (grad_dot, grad_cos, tracin, influence), by
name or as {name: influence, damping: 0.1}, to run on the same final model and target;
info["agreement"] then holds, for every T, the cosine similarity and Spearman correlation of each with
the gold standard (averaged over queries).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from valbench.engine.continuation import continue_training, stacked_logits
from valbench.types import Game, Problem, Valuation, shows_progress

from .agreement import agreement
from .base import BaseMethod
from .checks import check_int, require_problem
from .final_model import FinalModel, check_differentiable, train_final_model
from .gradients import GradCos, GradDot, GradientMethod, TracIn
from .influence import Influence
from .sampling import rng_for
from .targets import check_target, evaluation_points, resolve_target
from .timing import Stopwatch

# The gradient methods `compare` takes, by config name (their configs' defaults are their __init__'s).
COMPARABLE = {"grad_dot": GradDot, "grad_cos": GradCos, "tracin": TracIn, "influence": Influence}
CHUNK_FLOATS = 2**26  # floats of one batch of continued models (512 MiB in float64)


class FurtherTraining(BaseMethod):
    """The further-training gold standard; see the module doc."""

    needs_problem = True

    def __init__(
        self,
        steps: int | list[int] = 100,
        seeds: int = 5,
        lr: float = 0.1,
        batch_size: int | None = 32,
        weight: float = 0.0,
        target: str = "auto",
        compare: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.steps, self.seeds, self.lr, self.batch_size = steps, seeds, lr, batch_size
        self.weight, self.target, self.compare = weight, target, compare

    def check(self, problem: Problem) -> tuple[str, list[int], dict[str, GradientMethod]]:
        """Every key checked against `problem` before any training: target, steps, compared methods."""
        method = "further_training"
        check_differentiable(problem, method)
        steps = [self.steps] if np.ndim(self.steps) == 0 else list(self.steps)
        if not steps:
            raise ValueError(f"{method}: steps must be an integer >= 1 or a non-empty list of them")
        steps = sorted({check_int(t, "steps", method) for t in steps})
        seeds = check_int(self.seeds, "seeds", method)
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"{method}: lr must be a positive number, got {self.lr!r}")
        if self.batch_size is None:
            if seeds > 1:
                raise ValueError(
                    f"{method}: batch_size=null is full-batch gradient descent, the same for every "
                    f"seed; set seeds=1 (got {seeds}) or a batch_size"
                )
        else:
            check_int(self.batch_size, "batch_size", method)
        if not 0 <= self.weight < 1:
            raise ValueError(
                f"{method}: weight must lie in [0, 1) (0: leave out), got {self.weight!r}"
            )
        check_target(self.target, method)
        target = resolve_target(self.target, problem, "self")
        compared = {}
        for item in self.compare:
            name, params = _method_spec(item)
            if name not in COMPARABLE:
                raise ValueError(
                    f"{method}: compare takes the gradient methods {', '.join(COMPARABLE)}, "
                    f"got {name!r}"
                )
            other = COMPARABLE[name]().set_params(**{**params, "target": target})
            other.check(problem)
            compared[_label(name, params)] = other
        return target, steps, compared

    def value(self, game: Game, *, seed: int, problem: Problem | None = None) -> Valuation:
        problem = require_problem(problem, "further_training")
        target, steps, compared = self.check(problem)
        with Stopwatch() as t:
            checkpoints = max([m.n_checkpoints for m in compared.values()], default=0)
            final = train_final_model(problem, checkpoints)
            gold = self.gold_standard(final, problem, target, steps, seed)
            info = {"target": target, "steps": steps, "seeds": int(self.seeds)}
            if compared:
                info["agreement"] = [
                    {"method": label, "steps": s, **agreement(gold[s], values)}
                    for label, other in compared.items()
                    for values in [other.attribute_final(final, problem, target, seed)]
                    for s in steps
                ]
        n_runs = int(self.seeds) * (final.n + 1)
        return Valuation(gold[steps[-1]], n_evals=1 + n_runs, seconds=t.seconds, info=info)

    def gold_standard(
        self, final: FinalModel, problem: Problem, target: str, steps: list[int], seed: int
    ) -> dict[int, np.ndarray]:
        """Values (n,) or (Q, n) of the gold standard at every T in `steps` (module doc)."""
        n, weight = final.n, float(self.weight)
        losses = self._loss_function(final, problem, target)
        width = max(final.activations, final.x[0].numel())
        rows_per_step = n if self.batch_size is None else int(self.batch_size)
        chunk = max(1, CHUNK_FLOATS // (4 * final.n_params + 3 * rows_per_step * width))
        total = {s: 0.0 for s in steps}
        bar = tqdm(
            total=int(self.seeds) * (n + 1),
            desc="further_training",
            unit="run",
            disable=not shows_progress(problem.game),
            leave=False,
        )
        with bar:
            for s in range(int(self.seeds)):
                key = int(rng_for(seed, 31, s).integers(2**62))
                runs = {t: [] for t in steps}  # per T: the loss of every run, run 0 = full data

                def record(t: int, params: dict, rows: torch.Tensor, runs: dict = runs) -> None:
                    runs[t].append(losses(params, rows))

                for start in range(0, n + 1, chunk):
                    rows = torch.arange(start, min(n + 1, start + chunk), device=final.x.device)
                    weights = torch.ones((len(rows), n), dtype=final.x.dtype, device=final.x.device)
                    left_out = rows >= 1
                    weights[left_out.nonzero()[:, 0], rows[left_out] - 1] = weight
                    continue_training(
                        final.module, final.params, final.x, final.y, weights, final.decay,
                        float(self.lr), steps, self.batch_size, key,
                        on_eval=lambda t, p, rows=rows: record(t, p, rows),
                        buffers=final.buffers,
                    )  # fmt: skip
                    bar.update(len(rows))
                for t in steps:
                    total[t] = total[t] + self._differences(runs[t], target)
        return {t: (total[t] / int(self.seeds)) / (1 - weight) for t in steps}

    def _loss_function(self, final: FinalModel, problem: Problem, target: str):
        """losses(stacked params, run ids) -> (per-run losses, full-data losses or None): per run (b,)
        for val, (b, Q) for queries; for self, run i's loss on its own point i (b,) and, from the
        chunk holding run 0 (the full data), that run's loss on every training point (n,)."""
        if target == "self":

            def losses(params, rows):
                own = torch.full((len(rows),), torch.nan, dtype=final.x.dtype)
                left = (rows >= 1).nonzero()[:, 0]
                if len(left):
                    points = rows[left] - 1
                    logits = stacked_logits(final.module, _take(params, left), final.buffers,
                                            final.x[points][:, None], per_model=True)  # fmt: skip
                    ce = F.cross_entropy(logits[:, 0], final.y[points], reduction="none")
                    own[left.cpu()] = ce.cpu()
                if rows[0] != 0:
                    return own, None
                logits = stacked_logits(final.module, _take(params, [0]), final.buffers, final.x)
                return own, F.cross_entropy(logits[0], final.y, reduction="none").cpu()

            return losses
        x, y = evaluation_points(problem, target)
        x, y = final.inputs(x), final.labels(y)

        def losses(params, rows):
            logits = stacked_logits(final.module, params, final.buffers, x)  # (b, m, K)
            ce = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(rows)), reduction="none")
            ce = ce.view(len(rows), len(y)).cpu()
            return (ce.mean(1) if target == "val" else ce), None

        return losses

    @staticmethod
    def _differences(parts: list[tuple[torch.Tensor, torch.Tensor | None]], target: str):
        """L(theta_T^{-i}) - L(theta_T) from the losses of all n + 1 runs, run 0 the full data."""
        runs = torch.cat([own for own, _ in parts])
        if target == "self":  # minus the effect on the point's own loss
            full = next(f for _, f in parts if f is not None)
            return -(runs[1:] - full).numpy()
        change = runs[1:] - runs[0]
        return (change.T if change.dim() == 2 else change).numpy()  # (Q, n) or (n,)


def _take(params: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[index] for k, v in params.items()}


def _method_spec(item) -> tuple[str, dict]:
    """A `compare` entry: a method name, or a mapping with `name` and parameter overrides."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping) and "name" in item:
        params = {k: v for k, v in item.items() if k != "name"}
        return str(item["name"]), params
    raise ValueError(
        f"further_training: a compare entry is a method name or {{name: ..., key: value}}, got {item!r}"
    )


def _label(name: str, params: dict) -> str:
    """influence(damping=0.1) for {name: influence, damping: 0.1}."""
    return f"{name}({', '.join(f'{k}={v}' for k, v in params.items())})" if params else name
