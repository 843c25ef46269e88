"""The final model that model-based methods explain: the engine's submodel on the FULL training set.

It is the very model the utility game trains for the grand coalition (same engine, same seed, same
randomness), held in functional form (module template + parameters) for torch.func, in float64, with
the objective it was trained on:

    J(theta) = (1 / n) sum_i CE(f_theta(x_i), y_i) + sum_k decay_k / 2 ||theta_k||^2

(logreg: decay 1 / (C n) on the weights, none on the intercept, which is scikit-learn's
C sum_i CE_i + ||W||^2 / 2 divided by C n; networks: the optimiser's `weight_decay` on every
parameter, the L2 term that torch's SGD and Adam add to the gradient). TracIn's checkpoints are
states saved, with their learning rate, while the engine trains a network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from valbench.engine.engine import Engine, engine_for
from valbench.engine.models import ARCH_KEYS, MLP
from valbench.types import EngineGame, Problem

DTYPE = torch.float64


@dataclass
class FinalModel:
    """A trained classifier in functional form with its training data and objective (module doc)."""

    module: nn.Module  # template; parameters are passed to `logits`
    params: dict[str, torch.Tensor]
    x: torch.Tensor  # training inputs (n, *input_shape)
    y: torch.Tensor  # training labels (n,)
    decay: dict[str, float]  # L2 coefficient per parameter
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    activations: int = 0  # activation elements per sample (sizes batched HVPs); 0: unknown
    checkpoints: list[tuple[dict[str, torch.Tensor], float]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (params, self.buffers), (x,))

    def inputs(self, x: np.ndarray) -> torch.Tensor:
        """Evaluation inputs shaped and placed like the training inputs."""
        x = torch.as_tensor(np.asarray(x), dtype=self.x.dtype, device=self.x.device)
        return x.reshape(len(x), *self.x.shape[1:])

    def labels(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(y), dtype=torch.long, device=self.y.device)


class BinomialLogreg(MLP):
    """scikit-learn's two-class logistic regression, as the engine fits it: one weight vector and
    intercept give class 1's logit; class 0's logit is fixed at 0."""

    def __init__(self, in_features: int) -> None:
        super().__init__(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = super().forward(x)
        return torch.cat([torch.zeros_like(z), z], 1)


def check_differentiable(problem: Problem, method: str) -> None:
    """A clear error, before any training, when the problem's model is not a torch model."""
    name = (problem.model_config or {}).get("name")
    if name not in ARCH_KEYS:
        raise ValueError(
            f"{method} needs a differentiable torch model that the engine trains "
            f"({', '.join(ARCH_KEYS)}); "
            f"the problem's model is {name!r}"
        )


def check_checkpoints(problem: Problem) -> None:
    """A clear error, before any training, when the problem's model has no training trajectory."""
    if problem.model_config["name"] == "logreg":
        raise ValueError(
            "checkpoints need a model trained by optimiser steps (mlp, cnn, resnet9): logreg is "
            "solved by L-BFGS; model=mlp model.widths=[] is logistic regression trained by SGD/Adam"
        )


def problem_engine(problem: Problem) -> Engine:
    """The engine of the problem's utility game, or a new one for its model on the CPU/GPU."""
    if isinstance(problem.game, EngineGame):
        return problem.game.engine
    seed = int((problem.config or {}).get("seed", 0))
    return engine_for(problem.model_config, problem.split, "auto", seed)


def objective_decay(engine: Engine, module: nn.Module) -> dict[str, float]:
    """The L2 coefficient per parameter of the objective the engine trains (module doc)."""
    names = [name for name, _ in module.named_parameters()]
    if engine.convex:
        n = len(engine.y)
        return {
            name: 1.0 / (engine.spec.C * n) if name.endswith("weight") else 0.0 for name in names
        }
    return dict.fromkeys(names, float(engine.spec.weight_decay))


def checkpoint_steps(total: int, count: int) -> list[int]:
    """`count` evenly spaced optimiser steps (0-based) among `total`, the last one included."""
    return sorted({int(round(total * (j + 1) / count)) - 1 for j in range(count)})


def train_final_model(problem: Problem, checkpoints: int = 0) -> FinalModel:
    """Train the full-data model through the problem's engine, saving `checkpoints` states.

    Checkpoints need a network (logreg is solved by L-BFGS and has no trajectory to save).
    """
    engine = problem_engine(problem)
    saved: list[tuple[dict, float]] = []
    on_step = None
    if checkpoints:
        check_checkpoints(problem)
        steps = set(checkpoint_steps(int(engine.spec.steps), int(checkpoints)))

        def on_step(step: int, params: dict) -> None:
            if step in steps:
                state = {k: v[0].detach().to(DTYPE, copy=True) for k, v in params.items()}
                saved.append((state, float(engine.spec.lr)))

    stacked = engine.fit(np.ones((1, len(engine.y)), bool), on_step=on_step)
    binomial = engine.convex and engine.n_classes == 2
    module = BinomialLogreg(engine.x[0].numel()) if binomial else engine.new_model(0)
    module = module.to(DTYPE)
    return FinalModel(
        module=module,
        params={k: v[0].detach().to(DTYPE) for k, v in stacked.items()},
        x=engine.x.to(DTYPE),
        y=engine.y,
        decay=objective_decay(engine, module),
        buffers={k: b.to(DTYPE) for k, b in module.named_buffers()},
        activations=engine.activations,
        checkpoints=saved,
    )
