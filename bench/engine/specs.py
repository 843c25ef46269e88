"""The engine's settings, read from a conf/model/*.yaml: where and how precisely it computes
(`Options`), how logreg is solved (`ConvexSpec`) and how networks are trained (`NetworkSpec`).
Every value is checked when the spec is built, before any training."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Options:
    """Where and how precisely the engine computes (keys of every conf/model/*.yaml)."""

    dtype: str = "float32"  # float32 | float64
    tf32: bool = False  # CUDA only: TF32 matmuls and convolutions
    memory_mb: float = 2048  # memory budget of one chunk of submodels
    cpu_chunk: int | None = None  # CPU only: at most this many submodels per chunk; None: sized
    # to the problem, a chunk's training state about CPU_CHUNK_MB (bench/engine/engine.py)

    def __post_init__(self) -> None:
        _check(self.dtype in DTYPES, "dtype", self.dtype, f"one of {', '.join(DTYPES)}")
        _check(self.memory_mb > 0, "memory_mb", self.memory_mb, "a positive number of MiB")
        _check(
            self.cpu_chunk is None or int(self.cpu_chunk) >= 1,
            "cpu_chunk",
            self.cpu_chunk,
            "null (sized to the problem) or an integer >= 1",
        )


@dataclass(frozen=True)
class ConvexSpec:
    """logreg: scikit-learn's objective, solved by batched L-BFGS to max |gradient| <= tol."""

    C: float = 1.0
    tol: float = 1e-4
    max_iter: int = 500
    history: int = 5  # L-BFGS memory (scipy: 10; 5 costs ~the same iterations, each cheaper)
    warm_start: bool = True  # start from a full-data fit at the own size's penalty instead of zero
    precondition: bool = True  # L-BFGS in variables scaled by the Hessian at the start (see convex)

    def __post_init__(self) -> None:
        _check(self.C > 0, "C", self.C, "positive")
        _check(self.tol > 0, "tol", self.tol, "positive")
        _check(int(self.max_iter) >= 1, "max_iter", self.max_iter, "an integer >= 1")
        _check(int(self.history) >= 1, "history", self.history, "an integer >= 1")


@dataclass(frozen=True)
class NetworkSpec:
    """mlp, cnn, resnet9: `steps` minibatch steps of `optimizer` per submodel."""

    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0
    steps: int = 500
    batch_size: int = 64
    path: str = "auto"  # auto (fast for MLPs, else generic) | fast | generic
    bf16: bool = False  # CUDA only: bfloat16 autocast of forward and backward

    def __post_init__(self) -> None:
        _check(self.optimizer in ("adam", "sgd"), "optimizer", self.optimizer, "adam or sgd")
        _check(self.lr > 0, "lr", self.lr, "positive")
        _check(self.momentum >= 0 and self.weight_decay >= 0, "momentum/weight_decay",
               (self.momentum, self.weight_decay), ">= 0")  # fmt: skip
        _check(int(self.steps) >= 1, "steps", self.steps, "an integer >= 1")
        _check(int(self.batch_size) >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.path in ("auto", "fast", "generic"), "path", self.path, "auto, fast or generic")


def _check(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"model.{key}={value!r} is not allowed; it must be {allowed}")


def keys_of(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))
